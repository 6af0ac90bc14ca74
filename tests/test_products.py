"""backend="numba"'s products over every step's rows (rnngraph/runtime/products.py): in chunks
on two cores, or gemm on one, or NumPy's; and the pool's thread that lingers for our next job."""
import time

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("scipy")

from rnngraph.runtime import jit, jitops, products  # noqa: E402
from test_numba import model  # noqa: E402


def operands(dtype, rng):
    """(a, b, out) as the generated code passes them: every step's rows of a (T, B, n) array,
    their transpose (g^T v), weights and their transpose (x W^T), out rows of a (T, B, n)."""
    x = rng.normal(size=(1201, 1, 48)).astype(dtype)     # no multiple of a chunk's 6 rows
    g = rng.normal(size=(1201, 1, 96)).astype(dtype)
    W = rng.normal(size=(96, 48)).astype(dtype)
    h = np.zeros((1203, 1, 96), dtype)
    return [(x.reshape(-1, 48), W.T, h[1:1202].reshape(-1, 96)),        # x W^T: b is W.T
            (g.reshape(-1, 96), W, np.zeros((1201, 48), dtype)),       # g W
            (g.reshape(-1, 96).T, x.reshape(-1, 48), np.zeros((96, 48), dtype))]   # g^T x


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_product_in_chunks_on_two_cores_is_gemms_on_one_and_numpys_to_rounding(dtype,
                                                                                  monkeypatch):
    """Every layout the generated code passes (b a transposed view, a transposed, out rows of
    a sequence): in chunks of 6 rows on two threads, the same bits as gemm on one (each row's
    sums in the same order, whichever thread takes its chunk), and NumPy's np.dot to
    rounding; the helper takes chunks in one of ten calls (its thread may be slow to wake)."""
    monkeypatch.setattr(jit, "may_split", lambda: True)          # (whatever else runs here)
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    monkeypatch.setattr(products, "CHUNK_FLOPS", 1)               # 6 rows a chunk
    rtol = 1e-12 if dtype == "float64" else 1e-5
    taken = []
    submit = products.submit

    def watched(fn, flags, *args):
        job = submit(fn, flags, *args)
        taken.append(flags)
        return job
    monkeypatch.setattr(products, "submit", watched)
    for a, b, out in operands(dtype, np.random.default_rng(0)):
        expect = np.dot(a, b)
        one = np.empty_like(expect)
        jitops.gemm(a, np.ascontiguousarray(b), one)
        for how, least in ((2, 0), (1, 1 << 62), (0, 1 << 62)):
            monkeypatch.setattr(products, "MIN_FLOPS", least)
            monkeypatch.setattr(products, "SOLO", how)
            for _ in range(10):
                out[...] = np.nan
                taken.clear()
                assert products.dot(a, b, out) is out
                if how == 2:
                    assert np.array_equal(out, one), "two threads, other bits than one"
                    assert len(taken) == 1
                    if taken[0][products.DONE + 16] > 0:
                        break
                else:
                    assert not taken
                    break
            else:
                pytest.fail("the helper took no chunk in ten calls")
            np.testing.assert_allclose(out, expect, rtol=rtol, atol=rtol * abs(expect).max())
            assert np.array_equal(products.matmul(a, b), out)


def test_one_thread_or_no_numbers_of_ours_take_numpys_product(monkeypatch):
    """One thread, a product too large, or a dtype gemm does not take: NumPy's np.dot, which
    a helper never runs."""
    monkeypatch.setattr(jit, "may_split", lambda: True)
    monkeypatch.setattr(products, "MIN_FLOPS", 0)
    a, b, out = operands("float64", np.random.default_rng(1))[1]
    monkeypatch.setenv("RNNGRAPH_THREADS", "1")
    assert products._how(a, b, out) == 0
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    assert products._how(a, b, out) == 2
    assert products._how(a.astype(int), b.astype(int), out.astype(int)) == 0
    monkeypatch.setattr(products, "MAX_FLOPS", 0)
    assert products._how(a, b, out) == 0


def test_a_lingering_thread_takes_the_next_job_once_its_ticket_is_out_and_keeps_errors(
        monkeypatch):
    """After a job, its thread lingers (spinning) until the next job's ticket is published
    (even where the job ended before its own was): with a linger of hours, the job
    submitted next has not started 50 ms later, and ends once its ticket is out (else this
    test would wait for hours).  A job that raises keeps its error for the caller, and its
    end sets STOP and OUT."""
    monkeypatch.setattr(jit, "_POOL", [])    # a pool of one thread (parts may have made two)
    linger = products.LINGER
    products.LINGER = 1 << 40                # (hours: only a new ticket ends it)
    try:
        first, ticket = products.submit(lambda flags: 1, np.zeros(jitops.HALVES, np.int64))
        products.handoff(products._JOBS, ticket, first.flags, 0)
        assert first.ended(1 << 30) and first.result == 1 and first.error is None
        second, ticket = products.submit(lambda flags: 1 / 0, np.zeros(jitops.HALVES, np.int64))
        time.sleep(0.05)
        assert not second.ended(0), "the thread took the job before its ticket was out"
        products.handoff(products._JOBS, ticket, second.flags, 0)
        assert second.ended(1 << 30), "the lingering thread did not take the next job"
        assert isinstance(second.error, ZeroDivisionError)
        assert second.flags[jitops.STOP] == 1 == second.flags[jitops.OUT]
    finally:
        products.LINGER = linger
        products.no_linger()                 # (the second job's linger ends)


def test_the_numba_backend_prints_products_over_the_steps_and_the_numpy_backend_does_not():
    """Where the generated code multiplies every step's rows at once (the input's product
    before a loop; the weights' gradients and the input's after), backend="numba" calls
    products.dot and products.matmul; the NumPy backend its own np.dot and @."""
    m = model("torch_lstm")
    numba_source = m.compile(backend="numba").source
    numpy_source = m.compile().source
    assert numba_source.count("products.dot(") >= 2 and "products.matmul(" in numba_source
    assert "products" not in numpy_source


def test_the_products_after_a_backward_loop_run_behind_it_to_rounding(monkeypatch):
    """Cho's GRU at a batch of one row, its products after the backward loop (the weights'
    gradients, the input's) run behind it (products.Behind): the pool's thread takes the
    rows of the steps the loop has finished, this thread the rest once it has ended.  Every
    gradient is the one of the products after the loop to rounding, in float64, whoever took
    which rows; in one of 30 calls the pool's thread took some and this thread others
    (Behind's job ended above step 0 and below T), and its rows beside the loop's (it
    started before the loop's first step: HANDOFF)."""
    monkeypatch.setattr(jit, "may_split", lambda: True)
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    monkeypatch.setattr(products, "HANDOFF", 1 << 22)
    monkeypatch.setattr(products, "LEAST", 2)
    net = model("gru_cho").compile(sizes={"x": 16, "h": 32}, backend="numba")
    assert "products.Behind(" in net.source
    params = net.init_params(seed=0)
    rng = np.random.default_rng(0)
    x = {"x": rng.normal(size=(120, 1, 16))}
    cot = {"h": rng.normal(size=(120, 1, 32))}

    def grads():
        outs, pullback = net.vjp(params, x)
        return {k: np.array(v) for k, v in pullback(cot).items()}
    monkeypatch.setattr(products, "BEHIND_STEPS", 1 << 30)
    after = grads()
    monkeypatch.setattr(products, "BEHIND_STEPS", 1)
    ends = []
    behind = products._behind

    def watched(tail, T, lag, least, flags):
        parts, hi = behind(tail, T, lag, least, flags)
        ends.append((hi, T))
        return parts, hi
    monkeypatch.setattr(products, "_behind", watched)
    for _ in range(30):
        ends.clear()
        got = grads()
        for k in after:
            np.testing.assert_allclose(got[k], after[k], rtol=1e-12, atol=1e-12, err_msg=k)
        if any(0 < hi < T for hi, T in ends):
            break
    else:
        pytest.fail(f"the pool's thread and this one never shared the rows in 30 calls: {ends}")


def test_the_takes_of_rows_behind_a_loop():
    """products._final and _close on their own: the pool's thread takes the rows of the
    steps the loop has finished, lag steps later, at least ``least`` at a time, all of them
    once the loop has ended; the caller's take ends its takes, whatever it was waiting for."""
    T, lag = 50, 2
    flags = np.zeros(products.BOUND + 8, np.int64)
    flags[products.BOUND] = T
    flags[products.STEPS] = 12                      # the steps T..39 done: 40..T - lag final
    assert products._final(flags, T, lag, T, 4) == 40
    assert flags[products.BOUND] == 40
    flags[products.STEPS] = T                       # the loop ended: every row final
    assert products._final(flags, T, lag, 40, 4) == 0
    flags[products.BOUND] = 40                      # (as if it had not taken them)
    assert products._close(flags) == 40 and flags[products.BOUND] == -1
    assert products._final(flags, T, lag, 40, 4) == -1, "a take after the caller's"
    flags[products.BOUND], flags[products.STEPS] = T, 3      # too few final for a take:
    import threading                                           # it waits, until the close
    took = []
    waiting = threading.Thread(target=lambda: took.append(products._final(flags, T, lag, T, 4)))
    waiting.start()
    time.sleep(0.05)
    assert not took
    assert products._close(flags) == T
    waiting.join(10)
    assert took == [-1]


def test_which_products_after_a_backward_loop_may_run_behind_it():
    """numba_loops.lag_behind: the steps by which the rows after a backward loop wait for it
    (a value it writes at t read at t - 1 there: 1), and None where the products cannot
    run beside it: a value it writes for all steps at once, a value it reads or writes that
    they write, an op other than a product or a copy, no product at all, a value they write
    read at another step or a sum of theirs read."""
    from rnngraph.compile.numba_loops import lag_behind
    from rnngraph.compile.program import Block, Eqn, Home, Program, Tmp
    g, x, dW = Home("g", 0), Home("x", 0), Home("W", grad=True)
    loop = Block("loop", [Eqn(g, "mul", (Home("h", 0), Home("h", 0))),
                          Eqn(Home("s", None, grad=True), "copy", (g,), accumulate=True)],
                 direction=-1)

    def lag(*eqns):
        tail = Block("all", list(eqns))
        return lag_behind(Program([loop, tail]), loop, [tail])
    summed = Eqn(dW, "copy", (Tmp("p"),), accumulate=True)
    assert lag(Eqn(Tmp("p"), "outer", (g, x)), summed) == 0
    assert lag(Eqn(Tmp("p"), "outer", (Home("g", -1), x)), summed) == 1
    assert lag(Eqn(Home("x", 0, grad=True), "vecmat", (g, Home("W"))), ) == 0
    assert lag(Eqn(Tmp("p"), "outer", (Home("s", None, grad=True), x)), summed) is None
    assert lag(Eqn(Home("h", 0), "vecmat", (g, Home("W")))) is None
    assert lag(Eqn(Tmp("p"), "mul", (g, x)), summed) is None
    assert lag(Eqn(Home("y", 0), "copy", (g,))) is None
    # within the tail: a value it writes read at another step (two takes' rows), a sum over
    # the steps read (a take has a part of it); a sum added to twice is one
    y = Home("y", 0)
    assert lag(Eqn(y, "vecmat", (g, Home("W"))), Eqn(Tmp("p"), "outer", (Home("y", -1), x)),
               summed) is None
    assert lag(Eqn(Tmp("p"), "outer", (g, x)), summed,
               Eqn(Home("z", 0), "vecmat", (x, dW))) is None
    assert lag(Eqn(Tmp("p"), "outer", (g, x)), summed,
               Eqn(Tmp("q"), "outer", (g, Home("x", -1))),
               Eqn(dW, "copy", (Tmp("q"),), accumulate=True)) == 0
