"""backend="numba": the same loops, compiled by Numba, give what NumPy gives.

The loops Numba runs are the optimized path's loops printed a second time from the
same IR, as functions of their own (rnngraph/compile/numba_loops.py); the NumPy backend is verified
against finite differences and PyTorch (test_gradients.py, test_torch_parity.py),
so here: the Numba backend agrees with it to rounding in float64 on models that
reach every kind of loop (states read one and two steps away, a loop backward in
time, a state another block reads, the GRU and the LSTM), with cotangents for every
output and for one, at batches up to SMALL (each loop one compiled function: a batch of
one, and of three rows) and larger (a Python loop: the products in NumPy, each run of
elementwise ops one fused kernel, rnngraph/compile/fuse.py); a loop Numba cannot compile
runs in NumPy with a warning
naming its line; and the machine code comes back from the cache in a new process.
Skipped without numba and scipy (pip install 'rnngraph[numba]').
"""
import json
import os
import subprocess
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph.errors import RnnGraphError
from test_fast import CORNERS, agree_to_rounding, per_step, problem
from test_gradients import TOLERANCE, worst_directional_error

from rnngraph.compile.numba_loops import SMALL

#: The batches of the tests: one, a few rows (the loops compiled whole), more than SMALL
#: (the Python loop over the steps, its fused kernels)
BATCHES = [1, 3, SMALL + 1]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent
# every function of the language in a loop, and softmax fed back (as in the exercise)
FUNCTIONS = ("h(t) = relu(W h(t-1) + U x(t)) * exp(V h(t-1)) + log(1 + sigmoid(A h(t-1)))\n"
             "y(t) = softmax(Q h(t) + R y(t-1))\nx: 3, h: 4, y: 2")
JIT = ["torch_rnn", "torch_gru", "torch_lstm", "bidirectional", "output_recurrence", "exercise",
       "state with an every-step part", "every function", "delays one and two"]


def model(name):
    if name == "every function":
        return rnngraph.parse(FUNCTIONS)
    return rnngraph.parse(CORNERS[name]) if name in CORNERS else rnngraph.load(EXAMPLES / f"{name}.rnn")


def loops(net, *functions):
    """The loops of a compiled model that Numba runs: all, or those ``functions`` call."""
    space = net._forward.__globals__
    names = space.get("LOOPS", ())
    if functions:
        names = [n for f in functions for n in f.__code__.co_names if n in names]
    return [space[name] for name in names]


@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("threshold", [0, 10 ** 9], ids=["derivatives in the loop", "before it"])
@pytest.mark.parametrize("name", JIT)
def test_numba_and_numpy_agree_to_rounding_with_every_cotangent(name, threshold, B):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = model(name)
    jit, ref = per_step(m.compile(backend="numba"), threshold), m.compile()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        # no loop may fall back to NumPy (NumPy's products at B = 3 may say inf * 0, as the
        # reference's do: this model's exp overflows)
        warnings.simplefilter("ignore")
        warnings.filterwarnings("error", message=".*Numba cannot compile")
        with watching(jit) as declined:
            agree_to_rounding(jit, ref, problem(ref, m, rng, B=B), rng)
    assert not declined                                          # every loop ran compiled
    backward = jit._backward_large if threshold == 0 else jit._backward
    ran = loops(jit, jit._forward, backward)
    if B <= SMALL or all(f.parts(B) > 1 for f in ran):           # (above SMALL: in parts)
        assert ran and all(f.run.signatures for f in ran)        # compiled, and ran
    else:
        assert jit._forward.__globals__["STEPS"]                  # the step loops ran, their
        fused = kernels(jit)                                     # kernels compiled (those of
        assert not fused or any(k.signatures for k in fused)     # the backward not run: not)


def loops_module(net):
    """The module of a compiled model's loop functions and fused kernels (rnngraph/runtime/
    jit.py's, named by its text's hash), or None if the model has no step loops."""
    space = net._forward.__globals__
    return sys.modules[space[space["STEPS"][0]].__module__] if space.get("STEPS") else None


@contextmanager
def watching(net):
    """The names of the loops compiled whole, the step loops and the fused kernels of ``net``
    that return False while inside (they decline: their checks fail, and NumPy's loop or
    ops run instead: right numbers, and none of the speed)."""
    space = net._forward.__globals__
    module = loops_module(net)
    targets = [(space, n) for n in (*space.get("LOOPS", ()), *space.get("STEPS", ()))]
    targets += [(vars(module), k) for k in space.get("KERNELS", ())] if module else []
    declined, saved = [], []
    for where, name in targets:
        def record(*args, _f=where[name], _n=name):
            done = _f(*args)
            if not done:
                declined.append(_n)
            return done
        record.compile = getattr(where[name], "compile", None)    # (jitops.ready's)
        record.parts = getattr(where[name], "parts", None)        # (the call's choice of loop)
        saved.append((where, name, where[name]))
        where[name] = record
    try:
        yield declined
    finally:
        for where, name, f in saved:
            where[name] = f


def kernels(net, *functions):
    """The fused kernels of a compiled model (rnngraph/compile/fuse.py), as Numba has them:
    all, or those the step loops that ``functions`` call call."""
    space = net._forward.__globals__
    module = loops_module(net)
    names = space.get("KERNELS", ())
    if functions:
        steps = [getattr(module, n) for f in functions for n in f.__code__.co_names
                 if n in space.get("STEPS", ())]
        names = [n for f in steps for n in f.__code__.co_names if n in names]
    return [getattr(module, k) for k in names] if module else []


@pytest.mark.parametrize("B", BATCHES)
def test_strided_parameters_and_cotangents_run_the_compiled_loops_and_agree(B):
    """A parameter or cotangent whose rows are not contiguous (a transposed matrix, every
    other number of a longer array, a reversed view) is copied C-ordered once a call, so the
    loops' kernels, which read rows through their pointers, run (they would hand the call
    to NumPy's loop otherwise): the same gradients as for the arrays C-ordered."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = model("torch_lstm")
    net = m.compile(backend="numba")
    rng = np.random.default_rng(2)
    params, inputs, initial = problem(net, m, rng, B=B)
    outs, pull = net.vjp(params, inputs, initial)
    cot = {n: rng.normal(size=outs[n].shape) for n in outs}
    want = pull(cot)

    def strided(a):
        if a.ndim == 2:
            return np.asfortranarray(a)             # last axis stride = a row's bytes
        wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],))
        wide[..., ::2] = a
        return wide[..., ::2]

    odd = {k: strided(v) for k, v in params.items()}
    assert any(not v.flags.c_contiguous for v in odd.values())
    with watching(net) as declined:
        outs2, pull2 = net.vjp(odd, inputs, initial)
        got = pull2({n: np.flip(np.flip(c, -1).copy(), -1) for n, c in cot.items()})
    assert not declined
    for n in want:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-12, atol=1e-14, err_msg=n)


def test_model_names_like_the_loop_functions_globals_still_compile():
    """A parameter named max, abs or jitops (names the loop functions' module uses: builtins
    the written-out runs call, the kernels' module) is renamed, and the loops compile."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t) + jitops) * max + abs\n"
                       "x: 3, h: 4, max: 4, abs: 4, jitops: 4")
    net, ref = m.compile(backend="numba"), m.compile()
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agree_to_rounding(net, ref, problem(ref, m, rng, B=1), rng)
    ran = loops(net, net._forward, net._backward_large)      # (per_step 0: numba's default)
    assert ran and all(f.run.signatures for f in ran)


def test_numba_gradients_match_finite_differences_in_float64():
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = model("torch_lstm")
    net = m.compile(backend="numba")
    # the derivatives in the loop (numba's default, per_step 0) and before it
    for threshold, backward in ((0, net._backward_large), (10 ** 9, net._backward)):
        net.per_step = threshold
        assert worst_directional_error(net, m, seed=7, B=1) <= TOLERANCE
        assert worst_directional_error(net, m, seed=8, batched=False) <= TOLERANCE
        assert all(f.run.signatures for f in loops(net, net._forward, backward))


def test_larger_batches_run_the_fused_kernels_and_get_the_same_results(monkeypatch):
    """At a batch larger than SMALL on one thread (RNNGRAPH_THREADS=1: no parts) the loop
    functions Numba compiles whole do not run; the step loops do, a step's elementwise ops
    between its products one kernel (the LSTM's gates, its cell, tanh to h, in one), in
    float64 and float32."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    monkeypatch.setenv("RNNGRAPH_THREADS", "1")
    m = model("torch_lstm")
    for dtype, rtol in (("float64", 1e-12), ("float32", 2e-5)):
        jit, ref = m.compile(backend="numba", dtype=dtype), m.compile(dtype=dtype)
        p, inputs, initial = problem(ref, m, np.random.default_rng(2), B=SMALL + 1)
        (outs, pull), (outs2, pull2) = jit.vjp(p, inputs, initial), ref.vjp(p, inputs, initial)
        g, g2 = pull({"h": np.ones_like(outs["h"])}), pull2({"h": np.ones_like(outs2["h"])})
        for n in g:
            np.testing.assert_allclose(g[n], g2[n], rtol=rtol, atol=rtol * 1e-2, err_msg=n)
        assert not any(f.run.signatures for f in loops(jit))     # the loops compiled whole: not
        fused = kernels(jit, jit._forward)
        assert any("sigmoid, tanh, multiply, multiply, add, tanh, multiply" in k.py_func.__doc__
                   for k in fused)                      # a step's gates to h in one kernel
        assert fused and all(k.signatures for k in fused)        # every kernel of theirs ran,
        assert any(all(k.signatures for k in kernels(jit, b))    # and a backward's
                   for b in (jit._backward, jit._backward_large))


def test_numba_runs_float32_as_numpy_does():
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = model("torch_gru")
    jit, ref = m.compile(backend="numba", dtype="float32"), m.compile(dtype="float32")
    p, inputs, initial = problem(ref, m, np.random.default_rng(3), T=20, B=1)
    (outs, pull), (outs2, pull2) = jit.vjp(p, inputs, initial), ref.vjp(p, inputs, initial)
    g, g2 = pull({"h": np.ones_like(outs["h"])}), pull2({"h": np.ones_like(outs2["h"])})
    for n in g:
        assert g[n].dtype == np.float32
        np.testing.assert_allclose(g[n], g2[n], rtol=2e-5, atol=1e-6, err_msg=n)


def test_a_loop_numba_cannot_compile_runs_in_numpy_with_a_warning_naming_its_line(monkeypatch):
    """A line Numba cannot compile (here a kernel that does not exist, in place of tanh):
    one warning per loop, at the user's line, naming the line of the loop; the loop runs
    in NumPy and the results are the NumPy backend's."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import dataclasses
    from rnngraph.compile.optable import OPS
    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], kernel="no_such_kernel"))
    m = rnngraph.load(EXAMPLES / "exercise.rnn")
    jit, ref = m.compile(backend="numba"), m.compile()
    p, inputs, initial = problem(ref, m, np.random.default_rng(1), B=1)
    with pytest.warns(RuntimeWarning, match=r"exercise.rnn: Numba cannot compile the loop forward "
                                            r"in time of h1\(t\), h2\(t\), y\(t\) "
                                            r"\(.*no_such_kernel.*\); that loop runs in NumPy"):
        outs, pull = jit.vjp(p, inputs, initial)
    outs2, pull2 = ref.vjp(p, inputs, initial)
    cot = {n: np.ones_like(v) for n, v in outs.items()}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        g = pull(cot)                                      # the backward loop has no tanh
    assert not said
    g2 = pull2(cot)
    for n in g:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-12, atol=1e-14, err_msg=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # said once, not at every call
        jit.vjp(p, inputs, initial)
    with pytest.warns(RuntimeWarning) as said:
        m.compile(backend="numba").vjp(p, inputs, initial)
    assert said[0].filename == __file__                  # the line of the user's call


CACHED = """
import json, sys, numpy as np, rnngraph
net = rnngraph.load(sys.argv[1]).compile(sizes={"x": int(sys.argv[2]), "h": 5}, backend="numba")
outs, pull = net.vjp(net.init_params(seed=0), {"x": np.ones((4, 1, int(sys.argv[2])))})
pull({"h": np.ones_like(outs["h"])})
space = net._forward.__globals__
ran = [n for f in (net._forward, net._backward_large) for n in f.__code__.co_names if n in space["LOOPS"]]
stats = [space[name].run.stats for name in ran]
print(json.dumps([sum(s.cache_hits.values()) for s in stats]))
"""


def test_a_new_process_loads_the_loops_from_the_cache_whatever_the_sizes(tmp_path):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    env = dict(os.environ, RNNGRAPH_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))

    def hits(x_size):
        done = subprocess.run([sys.executable, "-c", CACHED, str(EXAMPLES / "torch_rnn.rnn"),
                               str(x_size)], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    assert hits(3) == [0, 0]                             # compiled, and kept
    assert hits(7) == [1, 1]                             # other sizes: the same machine code
    assert [p.suffix for p in tmp_path.glob("rnngraph_loops_*")] == [".py"]


def test_backend_numba_without_numba_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)      # import numba raises ImportError
    with pytest.raises(RnnGraphError, match=r"pip install 'rnngraph\[numba\]'"):
        model("torch_rnn").compile(backend="numba")


@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="cuda"), "backend must be numpy or numba, not 'cuda'"),
    (dict(backend="numba", optimize=False), "optimize=False is the plain NumPy path"),
])
def test_backend_choices_that_cannot_work_are_errors(kwargs, message):
    with pytest.raises(RnnGraphError, match=message):
        model("torch_rnn").compile(**kwargs)


def test_cli_prints_the_loops_numba_compiles(capsys):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.cli import main
    assert main(["compile", str(EXAMPLES / "torch_rnn.rnn"), "--backend", "numba"]) == 0
    out = capsys.readouterr().out
    assert out == model("torch_rnn").compile(backend="numba").source
    assert f"run = loop_h if B <= {SMALL} or loop_h.parts(B) > 1 else steps_loop_h\n" in out
    assert f"run = back_h if B <= {SMALL} or back_h.parts(B) > 1 else steps_back_h\n" in out
    assert "if not run(T, " in out
    assert "def loop_h(T, " in out and "def back_h(T, " in out
    assert 'LOOPS = ("loop_h", "back_h", "back_h_2")' in out      # back_h_2: backward_large's
    assert 'STEPS = ("steps_loop_h", "steps_back_h", "steps_back_h_2")' in out
    assert "SPLIT = {\n    'loop_h': 'T" in out                   # each argument's kind
    assert "def fused_" in out and "tanh: one pass over the rows" in out


WITHOUT_NUMBA = """
import importlib, pkgutil, sys
sys.modules["numba"] = sys.modules["scipy"] = None        # import numba raises ImportError
import numpy as np, rnngraph
for info in pkgutil.walk_packages(rnngraph.__path__, "rnngraph."):
    if info.name not in ("rnngraph.runtime.jitops", "rnngraph.runtime.products",
                         "rnngraph.__main__"):
        importlib.import_module(info.name)
net = rnngraph.load(sys.argv[1]).compile()
outs, pull = net.vjp(net.init_params(seed=0), {"x": np.ones((3, 1, 4))})
pull({"h": np.ones_like(outs["h"])})
print("ok")
"""


def test_without_numba_everything_but_its_kernels_imports_and_the_numpy_backend_runs():
    """Numba is an optional extra: only rnngraph/runtime/jitops.py and products.py import it,
    and pytest's doctest collection leaves them out (pyproject.toml), else `pytest` fails
    without numba."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_NUMBA, str(EXAMPLES / "torch_rnn.rnn")],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["ok"], done.stderr
    addopts = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("addopts = ", 1)[1]
    assert "--ignore=rnngraph/runtime/jitops.py" in addopts.splitlines()[0]


def test_a_cache_folder_that_cannot_be_written_costs_the_cache_not_the_run(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv("RNNGRAPH_CACHE_DIR", str(blocked / "rnngraph"))
    m = rnngraph.parse("q(t) = tanh(Wq q(t-1) + Uq u(t)) * 0.5\nu: 2, q: 3")   # loops of its own
    jit, ref = m.compile(backend="numba"), m.compile()
    p, u = ref.init_params(seed=0), {"u": np.ones((4, 1, 2))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (outs, pull), (outs2, pull2) = jit.vjp(p, u), ref.vjp(p, u)
        g, g2 = pull({"q": np.ones_like(outs["q"])}), pull2({"q": np.ones_like(outs2["q"])})
    assert all(f.run.signatures for f in loops(jit, jit._forward, jit._backward_large))  # not cached
    for n in g:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-12, err_msg=n)
    assert blocked.read_text() == ""


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e-300, 5e-324, 88.7, 88.72,
           88.73, -87.3, -100.0, -103.9, -104.0, 709.78, 709.79, -745.1, -745.2, 0.625, -0.625]
POINTS = np.concatenate([np.linspace(-800, 800, 40001), np.linspace(-20, 20, 40001), SPECIAL])


def close_to_numpy(name, out, a, ulps):
    """out, jitops' ``name`` of a, within ``ulps`` of the float64 value (a result below the
    smallest normal number: within it; NumPy's float32 sigmoid of -100 is 0 too, its
    exp(100) being inf), inf, NaN and zeros (and their signs) as NumPy gives them."""
    dtype = a.dtype
    with np.errstate(all="ignore"):
        wide = a.astype(np.float64)
        ref = (np.exp(wide) if name == "exp" else np.tanh(wide) if name == "tanh"
               else 1 / (1 + np.exp(-wide))).astype(dtype)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=name)
    ok = ~np.isnan(ref)
    np.testing.assert_array_equal(np.signbit(out[ok]), np.signbit(ref[ok]), err_msg=name)
    edge = np.isinf(ref) | (ref == 0)
    np.testing.assert_array_equal(out[edge], ref[edge], err_msg=name)
    finite = np.isfinite(ref) & (ref != 0)
    floor = np.finfo(dtype).tiny
    spacing = np.spacing(np.maximum(np.abs(ref[finite]), floor)).astype(np.float64)
    error = np.abs(out[finite].astype(np.float64) - ref[finite].astype(np.float64))
    assert ((error <= ulps * spacing) | (error <= floor)).all(), \
        (name, dtype, (error / spacing).max())


@pytest.mark.parametrize("layout", ["rows", "lanes in place", "a bias over rows"])
def test_the_kernels_exp_tanh_sigmoid_give_numpys_values_specials_included(layout):
    """rnngraph/runtime/jitops.py's exp, tanh and sigmoid (the loops' for a batch of one)
    go a row at a time through vexp, vtanh, vsigmoid: within 2 ulp of the float64 value in
    float32, 4 in float64, also on a gate's lanes written in place and on a row spread over
    rows (a bias), with NumPy's inf, NaN, zeros and subnormals."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.runtime import jitops
    for name in ("exp", "tanh", "sigmoid"):
        for dtype, ulps in ((np.float64, 4), (np.float32, 2)):
            x = POINTS.astype(dtype)
            n = x.size // 2
            if layout == "rows":
                a = x[: 2 * n].reshape(2, n)
                out = np.empty_like(a)
            elif layout == "lanes in place":        # lanes 1..n+1 of a (2, n + 3) buffer
                buf = np.zeros((2, n + 3), dtype)
                buf[:, 1:n + 1] = x[: 2 * n].reshape(2, n)
                a = out = buf[:, 1:n + 1]
                x = a.copy()
            else:
                a = x[:n]
                out = np.empty((3, n), dtype)
            getattr(jitops, name)(a, out)
            want = np.broadcast_to(x[: 2 * n].reshape(2, n) if layout != "a bias over rows"
                                   else x[:n], out.shape)
            close_to_numpy(name, out, np.ascontiguousarray(want), ulps)


def test_the_row_kernels_of_the_fused_loops_give_numpys_values_specials_included():
    """jitops.vexp, vtanh and vsigmoid (a fused kernel's, over a contiguous row, vectorised):
    within 2 ulp of the float64 value in float32 and 4 in float64 (a subnormal result within
    the smallest normal number), with inf, NaN and zeros as NumPy gives them."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import numba
    from rnngraph.runtime import jitops

    @numba.njit
    def run(which, x, out):
        bits = jitops.scratch(x)
        if which == 0:
            jitops.vexp(x, out, bits)
        elif which == 1:
            jitops.vtanh(x, out, bits)
        else:
            jitops.vsigmoid(x, out, bits)

    for which, name in enumerate(("exp", "tanh", "sigmoid")):
        for dtype, ulps in ((np.float64, 4), (np.float32, 2)):
            a = POINTS.astype(dtype)
            out = np.empty_like(a)
            run(which, a, out)
            close_to_numpy(name, out, a, ulps)


def test_products_in_a_compiled_loop_are_the_product_to_rounding_at_every_batch():
    """jitops.dot in a loop Numba compiles: h W^T (jitops._times_rows, the loop reads W
    itself, no copy of W^T) and g W (_rows_times) go by W's rows for up to jitops._BY_ROWS
    rows, four at a time, two rows of the batch a pass over W, their sums reassociated: within
    rounding of the float64 product for every number of rows (4k and the rows left over),
    columns and batch rows (an odd one left over; more than jitops._BY_ROWS: gemm),
    float32 and float64; NaN and inf reach the values they touch."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import numba
    from rnngraph.runtime import jitops

    @numba.njit
    def times(h, W, out):
        jitops.dot(h, W.T, out)

    @numba.njit
    def by(g, W, out):
        jitops.dot(g, W, out)

    rng = np.random.default_rng(5)
    for dtype, eps in ((np.float32, 2.0 ** -23), (np.float64, 2.0 ** -52)):
        for rows, cols in ((1, 1), (3, 5), (4, 8), (7, 128), (130, 64), (512, 128)):
            W = rng.standard_normal((rows, cols)).astype(dtype)
            for B in (1, 2, 3, jitops._BY_ROWS, jitops._BY_ROWS + 1):
                for f, a, M in ((times, rng.standard_normal((B, cols)), W.T),
                                (by, rng.standard_normal((B, rows)), W)):
                    a = a.astype(dtype)
                    out = np.full((B, M.shape[1]), np.nan, dtype)
                    f(a, W, out)
                    exact = a.astype(np.float64) @ M.astype(np.float64)
                    bound = 2 * M.shape[0] * eps * (np.abs(a).astype(np.float64) @ np.abs(M))
                    assert (np.abs(out - exact) <= bound + 1e-300).all(), (f, dtype, rows, cols, B)
    W = rng.standard_normal((9, 6))
    W[2, 3], W[7, 0] = np.nan, np.inf
    for B in (1, 2, 3):
        h = rng.standard_normal((B, 6))
        out = np.zeros((B, 9))
        times(h, W, out)
        assert np.isnan(out[:, 2]).all() and np.isinf(out[:, 7]).all()
        assert np.isfinite(np.delete(out, [2, 7], 1)).all()
        g = rng.standard_normal((B, 9))
        out = np.zeros((B, 6))
        by(g, W, out)
        assert np.isnan(out[:, 3]).all() and np.isinf(out[:, 0]).all()
        assert np.isfinite(np.delete(out, [0, 3], 1)).all()


def test_a_product_into_an_out_of_another_layout_is_numpys_then_a_copy():
    """jitops.dot into an out the row kernels and gemm do not write (Fortran-ordered, 1-D):
    NumPy's dot, then a copy (an overload that handed back a compiled function instead of
    a plain one failed to compile there, and the loop fell back to NumPy)."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import numba
    from rnngraph.runtime import jitops

    @numba.njit
    def product(a, b, out):
        jitops.dot(a, b, out)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    for out, x in ((np.zeros((3, 4), order="F"), a), (np.zeros(4), a[0])):
        product(x, b, out)
        assert np.allclose(out, x @ b, rtol=1e-14, atol=0)


def test_gemm_is_the_product_to_rounding_in_blocks_and_the_columns_left_over():
    """jitops.gemm, a loop's product for more rows than jitops._BY_ROWS (g W directly, h W^T
    by a C-ordered W^T made before the loop: dot_t, transposed_if): within rounding of the
    float64 product for rows in blocks of 6 and those left over, columns in blocks of 64
    bytes x 4 and those left over, a strided left operand, float32 and float64; no product
    at all (k = 0) is zeros; NaN and inf reach the values they touch."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.runtime import jitops
    rng = np.random.default_rng(7)
    for dtype, eps in ((np.float32, 2.0 ** -23), (np.float64, 2.0 ** -52)):
        for m, k, n in ((1, 3, 5), (7, 5, 64), (9, 33, 70), (13, 256, 1024), (6, 17, 129),
                        (32, 1024, 256), (5, 0, 64)):
            a = rng.standard_normal((m, k + 3)).astype(dtype)[:, 1:k + 1]     # rows apart
            b = rng.standard_normal((k, n)).astype(dtype)
            exact = a.astype(np.float64) @ b.astype(np.float64)
            bound = 2 * max(k, 1) * eps * (np.abs(a).astype(np.float64) @ np.abs(b))
            out = np.full((m, n), np.nan, dtype)
            jitops.gemm(a, b, out)
            assert (np.abs(out - exact) <= bound + 1e-300).all(), ("gemm", dtype, m, k, n)
            w = np.ascontiguousarray(b.T)                       # h W^T, W (n, k) as a weight
            wt = jitops.transposed_if(w, m > jitops._BY_ROWS)
            assert (wt.shape == (k, n)) == (m > jitops._BY_ROWS)
            out = np.full((m, n), np.nan, dtype)
            jitops.dot_t(np.ascontiguousarray(a), w, wt, out)
            assert (np.abs(out - exact) <= bound + 1e-300).all(), ("dot_t", dtype, m, k, n)
    b = rng.standard_normal((6, 70))
    b[2, 3], b[4, 66] = np.nan, np.inf
    out = np.zeros((9, 70))
    jitops.gemm(rng.standard_normal((9, 6)), b, out)
    assert np.isnan(out[:, 3]).all() and np.isinf(out[:, 66]).all()
    assert np.isfinite(np.delete(out, [3, 66], 1)).all()
    for a, b, out in ((np.ones((9, 6)), np.ones((70, 6)).T, np.zeros((9, 70))),   # b's rows apart
                      (np.ones((9, 5)), np.ones((6, 70)), np.zeros((9, 70))),     # not a @ b
                      (np.ones((9, 6)), np.ones((6, 70)), np.zeros((70, 9)).T)):  # out's rows apart
        with pytest.raises(ValueError, match="gemm"):              # not memory out of bounds
            jitops.gemm(a, b, out)


@pytest.mark.parametrize("name", ["torch_lstm", "gru_cho", "lstm_peephole", "seq2seq",
                                  "output_recurrence"])
def test_a_batch_runs_in_parts_on_threads_and_gets_the_same_results(name, monkeypatch):
    """With two threads a loop compiled whole runs its batch in two parts at once
    (_JitLoop.split: each part its rows, every step, a bias's gradient summed in each part
    and added after), at a batch above SMALL too, where one thread runs the Python loop over
    the steps: outputs and every gradient as the NumPy backend's to rounding in float64,
    with cotangents of every output; RNNGRAPH_THREADS=1 runs every loop whole.  Another
    thread running Python (it might be in a BLAS call: jit.may_split) keeps it whole too."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.runtime import jit
    m = model(name)
    net, ref = m.compile(backend="numba"), m.compile()
    space = net._forward.__globals__
    runs = [space[n] for n in space["LOOPS"]]
    monkeypatch.setattr(jit, "may_split", lambda: True)          # (whatever else runs here)
    for threads, B in (("2", SMALL + 1), ("2", 4), ("2", 20), ("3", 7), ("1", 4)):
        monkeypatch.setenv("RNNGRAPH_THREADS", threads)
        for f in runs:
            f.ran_parts = 0
        rng = np.random.default_rng(3)
        agree_to_rounding(net, ref, problem(ref, m, rng, B=B), rng)
        parts = {f.ran_parts for f in runs if f.kinds and f.ran_parts}   # (those that ran)
        assert parts == {min(int(threads), B // 2)}, (threads, B, parts)
        assert any(f.kinds and "a" in f.kinds for f in runs) or name == "seq2seq"
    monkeypatch.undo()
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not jit.may_split() and all(f.parts(SMALL + 1) == 1 for f in runs)
    finally:
        stop.set()
        other.join()


@pytest.mark.parametrize("name", ["torch_lstm", "gru_cho", "output_recurrence"])
def test_a_batch_of_one_or_two_runs_its_large_products_in_halves_on_two_cores(name, monkeypatch):
    """At a batch of one or two rows, with two threads, a loop's products by large weights
    run in two halves, the second on a helper thread (the loop's half_ function;
    jitops.dot_t_halves, dot_halves, other_half): with every product large here (HALF_BYTES
    0), outputs and every gradient as the NumPy backend's to rounding in float64, with
    cotangents of every output, and every helper takes its halves in one of five calls
    (after a first, in which it may compile too late and leave them to the loop).  One
    thread, or a batch run in parts, runs no helper; a helper that cannot be compiled is
    said in a warning and leaves both halves to the loop, the same numbers; a loop that
    declines before its first step stops its helper, and NumPy's loop runs."""
    numba = pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.compile import numba_loops
    from rnngraph.runtime import jit
    monkeypatch.setattr(numba_loops, "HALF_BYTES", 0)
    m = model(name)
    net, ref = m.compile(backend="numba"), m.compile()
    assert "jitops.other_half(" in net.source and "jitops.dot_t_halves(" in net.source
    runs = loops(net)
    helped = [f for f in runs if f.helper is not None]
    assert helped, "no loop with a product in halves"
    monkeypatch.setattr(jit, "may_split", lambda: True)          # (whatever else runs here)
    for threads, B in (("2", 1), ("2", 2), ("1", 1), ("2", 4)):
        monkeypatch.setenv("RNNGRAPH_THREADS", threads)
        args = problem(ref, m, np.random.default_rng(3), B=B)
        agree_to_rounding(net, ref, args, np.random.default_rng(4))   # (compiled, helpers too)
        for _ in range(5):          # (a helper whose core another program holds comes late)
            for f in helped:
                f.ran_halves = None
            agree_to_rounding(net, ref, args, np.random.default_rng(4))
            ran = {f.ran_halves for f in helped if f.ran_halves is not None}  # (those that ran)
            if ran == {threads == "2" and B <= 2}:
                break
        assert ran == {threads == "2" and B <= 2}, (threads, B, ran)
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    fails = numba.njit(lambda *args: args[0] + "a helper Numba cannot type")
    for f in helped:          # (as a first helper: the loop waits for its end, and its error)
        f._helper_ended(1 << 62)                # (the last call's, if it has not ended yet)
        f.helper, f.ran_halves, f.helper_ran = fails, None, False
    rng = np.random.default_rng(4)
    with pytest.warns(RuntimeWarning, match="Numba cannot compile the helper of the loop"):
        agree_to_rounding(net, ref, problem(ref, m, rng, B=1), rng)
    ran = [f for f in helped if f.ran_halves is not None]
    assert ran and all(f.helper is None and not f.ran_halves for f in ran)
    net = m.compile(backend="numba")
    declines = numba.njit(lambda *arrays: False)
    for f in loops(net):
        f.run = declines if f.helper is not None else f.run
    rng = np.random.default_rng(5)
    agree_to_rounding(net, ref, problem(ref, m, rng, B=1), rng)


def test_a_notebooks_threads_do_not_keep_the_loops_on_one_thread(monkeypatch):
    """A Jupyter kernel's threads (ipykernel's classes; its I/O threads, plain Threads whose
    target is ipykernel's) and tqdm's monitor call no BLAS: the loops still run in parts
    beside them; beside any other thread of the program, or a kernel's thread that runs a
    user's code (a subshell), not.  (The threads as may_split sees them, made, not run:
    whatever else this process runs.)"""
    pytest.importorskip("numba")
    from rnngraph.runtime import jit

    def made_in(module, name):              # a function of that module
        space = {"__name__": module}
        exec(f"class {name.split('.')[0]}:\n    def wait_here():\n        pass\n", space)
        f = getattr(space[name.split(".")[0]], "wait_here")
        f.__qualname__ = name
        return f
    Heartbeat = type("Heartbeat", (threading.Thread,), {"__module__": "ipykernel.heartbeat"})
    TMonitor = type("TMonitor", (threading.Thread,), {"__module__": "tqdm._monitor"})
    Subshell = type("SubshellThread", (threading.Thread,), {"__module__": "ipykernel.subshell"})
    io = made_in("ipykernel.iostream", "OutStream._watch_pipe_fd")
    kernel = [Heartbeat(), threading.Thread(target=io), TMonitor()]
    me = threading.current_thread()
    monkeypatch.setattr(jit, "_openblas", lambda: [print])      # (an OpenBLAS found)
    monkeypatch.setattr(threading, "enumerate", lambda: [me, *kernel])
    assert jit.may_split()
    for other in (threading.Thread(target=print), Subshell(), threading.Thread(
            target=made_in("ipykernel.subshell", "SubshellThread.run"))):
        monkeypatch.setattr(threading, "enumerate", lambda: [me, *kernel, other])
        assert not jit.may_split(), other


def test_the_loops_may_run_in_parts_here_and_put_openblas_to_sleep():
    """In a process with no thread but its own (a script, this check's child), on Linux with
    NumPy's OpenBLAS: jit.may_split finds OpenBLAS's blas_thread_shutdown_, quiet_blas calls
    it, and NumPy's next product starts OpenBLAS's threads again (the same product)."""
    done = _in_a_child("import numpy as np\n"
                       "from rnngraph.runtime import jit\n"
                       "a = np.ones((300, 300))\n"
                       "before = a @ a\n"
                       "assert jit.may_split(), 'may_split'\n"
                       "jit.quiet_blas()\n"
                       "assert np.array_equal(a @ a, before)\n"
                       "print('ok')\n")
    assert done.stdout.strip() == "ok", done.stderr


def _in_a_child(code: str):
    """``code`` run by a new Python (a process with no thread but its own), on Linux with
    numba and scipy (else the test is skipped): its completed process."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    if not sys.platform.startswith("linux"):
        pytest.skip("parts only where /proc/self/maps names the BLAS")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_openblas_is_looked_for_again_only_after_an_import():
    """/proc/self/maps, which says which OpenBLAS libraries are loaded, is read once and
    again only after an import (a read took 1.2 ms here, three a call of a loop run in
    parts: 7 ms of the LSTM's 48 at batch 32), and the read after ``import scipy.linalg``
    finds SciPy's OpenBLAS too, whose threads quiet_blas then puts to sleep as well."""
    done = _in_a_child("import builtins\n"
                       "import numpy as np\n"
                       "from rnngraph.runtime import jit\n"
                       "reads, real = [], builtins.open\n"
                       "def counted(path, *args, **kw):\n"
                       "    reads.extend([path] if path == '/proc/self/maps' else [])\n"
                       "    return real(path, *args, **kw)\n"
                       "builtins.open = counted\n"
                       "ok = jit.may_split() and jit.may_split()\n"
                       "jit.quiet_blas()\n"
                       "numpy_only, first = len(jit._openblas()), len(reads)\n"
                       "import scipy.linalg\n"
                       "print(ok, first, numpy_only, len(jit._openblas()), len(reads))\n")
    ok, first, numpy_only, with_scipy, reads = done.stdout.split()
    assert (ok, first, reads) == ("True", "1", "2"), done.stderr
    assert int(with_scipy) == int(numpy_only) + 1


def _parts_in_a_child(name):
    """(in a forked process) The largest difference of a model's h from the NumPy
    backend's, its loops run in parts; and the parts of its forward loop's last run."""
    from rnngraph.runtime import jit
    jit.may_split = lambda: True
    m = model(name)
    net, ref = m.compile(backend="numba"), m.compile()
    p, inputs, initial = problem(ref, m, np.random.default_rng(1), B=SMALL + 1)
    h = net.forward(p, inputs, initial)["h"]
    loop = net._forward.__globals__[net._forward.__globals__["LOOPS"][0]]
    return float(np.abs(h - ref.forward(p, inputs, initial)["h"]).max()), loop.ran_parts


def test_a_forked_process_runs_its_loops_in_parts_too(monkeypatch):
    """A process forked after a loop ran in parts (a data loader's workers) has no threads
    of its parent's pool: it makes a pool of its own, and does not wait forever on one."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import multiprocessing

    from rnngraph.runtime import jit
    monkeypatch.setattr(jit, "may_split", lambda: True)
    monkeypatch.setenv("RNNGRAPH_THREADS", "2")
    assert _parts_in_a_child("torch_lstm")[1] == 2           # here: the pool made, used
    with multiprocessing.get_context("fork").Pool(1) as pool:
        error, parts = pool.apply_async(_parts_in_a_child, ("torch_lstm",)).get(timeout=300)
    assert parts == 2 and error < 1e-12


def test_products_from_python_are_the_product_in_either_form_and_keep_the_faster(monkeypatch):
    """jitops.dot called from the loop for a larger batch: from jitops._TUNED rows on, the
    product is ``a @ b`` or ``(b^T @ a^T)^T`` (jitops.transpose copying the result), the
    form its first call of those operands timed faster, kept for the process: a second
    call times nothing.  Either form is the product to rounding, for h W^T (b the view W.T)
    and g W, float32 and float64, rows and columns not multiples of transpose's blocks of
    16, a lane of a wider array as a; transpose refuses an out of another shape; with
    RNNGRAPH_PRODUCTS=plain every product is ``a @ b``, never timed."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import time
    from rnngraph.runtime import jitops
    monkeypatch.setattr(jitops, "_FORMS", {})
    timed = []
    clock = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: timed.append(1) or clock())
    rng = np.random.default_rng(7)
    for dtype, eps in ((np.float32, 2.0 ** -23), (np.float64, 2.0 ** -52)):
        for B, k, n in ((jitops._TUNED, 8, 16), (13, 37, 21), (32, 64, 256)):
            W = rng.standard_normal((n, k)).astype(dtype)
            wide = rng.standard_normal((B, k + 3)).astype(dtype)
            for a, b in ((wide[:, 1:k + 1], W.T), (rng.standard_normal((B, n)).astype(dtype), W)):
                out = np.full((B, b.shape[1]), np.nan, dtype)
                before = len(jitops._FORMS)
                jitops.dot(a, b, out)
                assert len(jitops._FORMS) == before + 1 and timed
                key = next(reversed(jitops._FORMS))
                timed.clear()
                jitops.dot(a, b, out)
                assert not timed, "timed again"
                exact = a.astype(np.float64) @ b.astype(np.float64)
                bound = 2 * b.shape[0] * eps * (np.abs(a).astype(np.float64) @ np.abs(b))
                for form in (False, True):
                    jitops._FORMS[key] = form
                    out[...] = np.nan
                    jitops.dot(a, b, out)
                    assert (np.abs(out - exact) <= bound + 1e-300).all(), (dtype, B, k, n, form)
    for dtype in (np.float32, np.float64):
        for m, n in ((1024, 32), (13, 9), (3, 17), (8, 8), (0, 4), (1000, 33), (40, 8)):
            a = rng.standard_normal((m, n)).astype(dtype)
            out = np.full((n, m), np.nan, dtype)
            jitops.transpose(a, out)
            assert np.array_equal(out, a.T), (m, n)
    with pytest.raises(ValueError):
        jitops.transpose(np.zeros((3, 4)), np.zeros((3, 4)))
    monkeypatch.setattr(jitops, "_PLAIN", True)        # RNNGRAPH_PRODUCTS=plain: no timing
    jitops._FORMS.clear()
    timed.clear()
    a, b = rng.standard_normal((32, 64)), rng.standard_normal((64, 48))
    out = np.empty((32, 48))
    jitops.dot(a, b, out)
    assert not timed and not jitops._FORMS and np.allclose(out, a @ b)


def test_the_loops_compiled_whole_take_as_many_rows_as_their_weights_allow():
    """A loop's products go two rows of the batch a pass over its weights where it runs
    compiled whole: up to SMALL rows for an LSTM of hidden 128 (256 KiB of weights a step
    in float32), 4 at hidden 256 (1 MiB), 2 at 512, half as many in float64; above, the
    Python loop over the steps with NumPy's GEMM (NumbaPrinter.small_batch)."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.runtime import jitops
    m = model("torch_lstm")
    for n, dtype, rows in ((128, "float32", SMALL), (256, "float32", 4), (512, "float32", 2),
                           (128, "float64", SMALL), (256, "float64", 2)):
        text = m.compile(backend="numba", sizes={"x": 16, "h": n}, dtype=dtype).source
        assert (f"run = loop_i_f_g_o_c_h if B <= {rows} or loop_i_f_g_o_c_h.parts(B) > 1 "
                "else steps_loop_i_f_g_o_c_h\n") in text, n
    # weights of HALF_BYTES or more: the products in halves where a helper runs, else through
    # dot_t as below; and the loop's helper
    assert "jitops.dot_t_halves(" in text and "def half_loop_i_f_g_o_c_h(" in text
    assert "jitops.dot_halves(" in text and "def half_back_i_f_g_o_c_h(" in text
    # the products by W^T go through dot_t, which takes jitops.gemm for more than _BY_ROWS
    # rows (by a C-ordered W^T made once a call), never Numba's np.dot (1.4-4x the time)
    text = m.compile(backend="numba", sizes={"x": 16, "h": 64}, dtype="float32").source
    assert "jitops.dot_t(" in text and "jitops.transposed_if(" in text
    assert "_halves(" not in text and "HELPERS = {\n}" in text


#: Models for the passes that move work into the compiled loops (compile/numba_layout.py):
#: (text, bias adds left before a loop, sums of a loop's steps left after it), in the numba
#: backend's programs (the sums: in its two backward programs together); the NumPy
#: backend's keep them all outside the loops.
MOVES = {
    "Elman (h(t-1) read in the loop: its bias added a step before)":
        ("h(t) = tanh(W h(t-1) + U x(t) + b)\nx: 3, h: 4", 0, 0),
    "two loops, one backward in time, one bias":
        ("a(t) = tanh(U x(t) + b + W a(t-1))\ng(t) = tanh(V x(t) + b + R g(t+1))\n"
         "x: 3, a: 4, g: 4", 0, 0),
    "a sum read two steps back and after the loop":
        ("a(t) = U x(t) + b\nh(t) = tanh(W h(t-1) + a(t)) * a(t-2)\ny(t) = V a(t) + h(t)\n"
         "x: 3, h: 4, y: 4", 0, 0),
    "a linear state (its cotangent also written a step back: summed after the loop)":
        ("h(t) = W h(t-1) + U x(t) + b\nx: 3, h: 4", 0, 2),
    "a bias of size 1 (added to every lane: stays out)":
        ("h(t) = tanh(W h(t-1) + U x(t) + a)\nx: 3, h: 4, a: 1", 1, 2),
}


def moved(c):
    """The bias adds in every-step blocks just before a loop, and the sums over the steps
    of a value a backward loop writes, in every-step blocks, of the programs of ``c``."""
    from rnngraph.compile.program import Home
    f = c.forward
    adds = [e for k, b in enumerate(f.blocks[:-1]) if b.kind == "all"
            and f.blocks[k + 1].kind == "loop" for e in b.eqns if e.op == "add"
            and any(isinstance(a, Home) and a.offset is None and a.step is None
                    and a.name not in f.timed for a in e.args)]
    sums = [e for p in c.printers for b in p.back.blocks if b.kind == "all" for e in b.eqns
            if e.op == "sum_to" and e.attrs[0] == 0 and isinstance(e.args[0], Home)
            and any(isinstance(x.out, Home) and x.out.name == e.args[0].name
                    for blk in p.back.blocks if blk.kind == "loop" for x in blk.eqns)]
    return adds, sums


@pytest.mark.parametrize("name", ["torch_rnn", "torch_gru", "torch_lstm", "gru_cho", "exercise",
                                  "bidirectional", *MOVES])
def test_the_numba_backend_adds_biases_and_sums_their_gradients_in_the_loops(name):
    """Where a loop reads a product of every step plus a bias (U x(t) + b, then + W h(t-1)),
    backend="numba" adds the bias in that loop and sums the bias's gradient in the loop of
    the backward pass that makes its steps (compile/numba_layout.py): no pass over every
    step's values for either, where the NumPy backend makes one for each; not where that
    would change a value (MOVES); and the two backends agree, outputs and gradients, at
    every batch of BATCHES, no compiled loop declining."""
    from rnngraph.compile import Numba, Optimized
    text, adds, sums = MOVES.get(name, (None, 0, 0))
    m = rnngraph.parse(text) if text else model(name)
    numpy_adds, numpy_sums = moved(Optimized(m, "float64"))
    numba_adds, numba_sums = moved(Numba(m, "float64"))
    assert numpy_adds and len(numpy_sums) >= sums and (numpy_sums or text)
    assert (len(numba_adds), len(numba_sums)) == (adds, sums), (numba_adds, numba_sums)
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    jit, ref = m.compile(backend="numba"), m.compile()
    for B in BATCHES:
        p, inputs, initial = problem(ref, m, np.random.default_rng(B), B=B)
        with watching(jit) as declined:
            outs, pull = jit.vjp(p, inputs, initial)
            g = pull({n: np.ones_like(v) for n, v in outs.items()})
        outs2, pull2 = ref.vjp(p, inputs, initial)
        g2 = pull2({n: np.ones_like(v) for n, v in outs2.items()})
        assert not declined, (B, declined)
        for n in outs2:
            np.testing.assert_allclose(outs[n], outs2[n], rtol=1e-12, atol=1e-13, err_msg=n)
        for n in g2:
            np.testing.assert_allclose(g[n], g2[n], rtol=1e-12, atol=1e-12, err_msg=(B, n))


def test_a_compiled_loop_that_declines_leaves_its_steps_to_numpys_loop():
    """A loop function's checks of its arrays may decline before its first step (returning
    False): the generated code then runs NumPy's loop, and the numbers are NumPy's."""
    numba = pytest.importorskip("numba")
    pytest.importorskip("scipy")
    m = model("torch_gru")
    jit, ref = m.compile(backend="numba"), m.compile()
    p, inputs, initial = problem(ref, m, np.random.default_rng(3), B=1)
    declines = numba.njit(lambda *arrays: False)
    for f in loops(jit):
        f.run = declines
    (outs, pull), (outs2, pull2) = jit.vjp(p, inputs, initial), ref.vjp(p, inputs, initial)
    g, g2 = pull({"h": np.ones_like(outs["h"])}), pull2({"h": np.ones_like(outs2["h"])})
    for n in g2:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-12, atol=1e-13, err_msg=n)
    np.testing.assert_allclose(outs["h"], outs2["h"], rtol=1e-12, atol=1e-13)


def test_jitops_sum_rows_sums_rows_of_any_layout():
    """The sum of a step's rows in a compiled loop (a bias's gradient): rows of a wider
    array's lanes, strided values, one column, no rows, reversed rows."""
    pytest.importorskip("numba")
    from rnngraph.runtime import jitops
    wide = np.random.default_rng(4).normal(size=(5, 12))
    for a in (wide, wide[:, 3:9], wide[:, ::3], wide[:, 4:5], wide[:0, :6], wide[::-1, 2:7]):
        out = np.full(a.shape[1], np.nan)
        jitops.sum_rows(a, out)
        np.testing.assert_allclose(out, a.sum(0), rtol=1e-14, atol=1e-14)
    out = np.full((6, 2), np.nan)[:, 0]                    # a strided out
    jitops.sum_rows(wide[:, :6], out)
    np.testing.assert_allclose(out, wide[:, :6].sum(0), rtol=1e-14)


def test_the_cached_loops_follow_the_kernels_they_call(tmp_path, monkeypatch):
    """Numba keys a function's cache on its own file: the loops' file is named by the
    kernels' text too, so a new rnngraph/runtime/jitops.py gets loops compiled with it."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from rnngraph.runtime import jit
    monkeypatch.setenv("RNNGRAPH_CACHE_DIR", str(tmp_path))
    m, kernels = model("torch_rnn"), jit._kernels_hash()
    m.compile(backend="numba")
    monkeypatch.setattr(jit, "_KERNELS_HASH", ["another jitops.py"])
    m.compile(backend="numba")
    files = sorted(tmp_path.glob("rnngraph_loops_*.py"))
    assert len(files) == 2
    firsts = sorted(f.read_text().splitlines()[0] for f in files)
    assert firsts == sorted(["# kernels: rnngraph/runtime/jitops.py another jitops.py",
                             f"# kernels: rnngraph/runtime/jitops.py {kernels}"])
