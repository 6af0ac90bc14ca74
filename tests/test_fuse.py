"""The fused kernels of backend="numba" (rnngraph/compile/fuse.py): a run of a step's
elementwise ops, one pass over the rows, gives what the ops one after the other give, with
ops of different widths, lanes of one buffer among the operands (read and written, also
a stacked gate and its parts), a number, a bias row and a column spread over a row; where
its operands share memory across rows it declines and NumPy's calls run; a temporary that
nothing outside the run reads is not stored; an op whose operand may be None (a user's
cotangent) is done only where it is given."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")

from rnngraph.compile.fuse import Fuser  # noqa: E402
from rnngraph.runtime import jitops  # noqa: E402

W = 4   # a gate's width; "big" is four gates, 16 wide


def printed(ops, scratch=(), owned=(), after=()):
    """The Fuser's lines for ``ops`` [(kernel, args, out, width, widths)] with ``after`` (plain
    lines after the run that read what they name), and the kernel compiled as the loops'
    module compiles it: (code, kernel, namespace)."""
    fuser = Fuser({"ONE"})
    fuser.scratch, fuser.owned = set(scratch), set(owned)
    tokens = ["    " + fuser.op(k, a, o, w, widths=ws) for k, a, o, w, ws in ops]
    lines = fuser(tokens + ["    " + x for x in after])
    assert lines[0].strip().startswith("if not fused_")          # one call for the run
    name = lines[0].strip()[len("if not "):].split("(")[0]
    space = {"np": np, "jitops": jitops}
    exec("\n".join(fuser.kernels[name]), space)
    space[name] = numba.njit(space[name], error_model="numpy")
    return "\n".join(line[4:] for line in lines), space[name], space, lines[0].strip()[7:-1]


# A step written as an LSTM's is: the products' sum into the stacked gates (16 wide), the
# sigmoid of three gates' lanes (12), tanh of the fourth, the cell from its parts (4 wide),
# a temporary (1 - tanh(c)^2, read outside the run or not), a bias row, a column spread
# over a row (one number an example), a number and a name bound to one.
RUN = [
    ("add", ("big", "prod"), "big", 16, (16, 16)),
    ("sigmoid", ("ifo",), "ifo", 12, (12,)),
    ("tanh", ("g",), "g", W, (W,)),
    ("multiply", ("f", "c"), "c", W, (W, W)),
    ("multiply", ("i", "g"), "z", W, (W, W)),
    ("add", ("c", "z"), "c", W, (W, W)),
    ("tanh", ("c",), "t", W, (W,)),
    ("multiply", ("t", "t"), "tmp", W, (W, W)),
    ("subtract", ("ONE", "tmp"), "tmp", W, (None, W)),
    ("multiply", ("o", "t"), "h", W, (W, W)),
    ("add", ("h", "bias"), "h", W, (W, W)),
    ("multiply", ("h", "col"), "h", W, (W, 1)),
    ("exp", ("h",), "e", W, (W,)),
    ("maximum", ("e", "0.5"), "e", W, (W, None)),
]


def sequential(a):
    """RUN, one NumPy call after the other, on the arrays ``a`` (a dict)."""
    np.add(a["big"], a["prod"], out=a["big"])
    np.divide(1.0, 1.0 + np.exp(-a["ifo"]), out=a["ifo"])
    np.tanh(a["g"], out=a["g"])
    np.multiply(a["f"], a["c"], out=a["c"])
    np.multiply(a["i"], a["g"], out=a["z"])
    np.add(a["c"], a["z"], out=a["c"])
    np.tanh(a["c"], out=a["t"])
    np.multiply(a["t"], a["t"], out=a["tmp"])
    np.subtract(1.0, a["tmp"], out=a["tmp"])
    np.multiply(a["o"], a["t"], out=a["h"])
    np.add(a["h"], a["bias"], out=a["h"])
    np.multiply(a["h"], a["col"], out=a["h"])
    np.exp(a["h"], out=a["e"])
    np.maximum(a["e"], 0.5, out=a["e"])


def arrays(dtype, layout, rows=5):
    """The operands of RUN; ``layout``: "lanes" (the gates lanes of one stacked buffer, as
    the printer makes them), "apart" (each its own), "across rows" (the cell an array
    whose rows overlap the next's)."""
    rng = np.random.default_rng(0)
    big = rng.normal(size=(rows, 16)).astype(dtype)
    a = {"big": big, "prod": rng.normal(size=(rows, 16)).astype(dtype),
         "ifo": big[:, 0:12], "i": big[:, 0:4], "f": big[:, 4:8], "o": big[:, 8:12],
         "g": big[:, 12:16], "bias": rng.normal(size=W).astype(dtype),
         "col": rng.normal(size=(rows, 1)).astype(dtype), "ONE": dtype(1.0)}
    for k in ("c", "z", "t", "tmp", "h", "e"):
        a[k] = rng.normal(size=(rows, W)).astype(dtype)
    if layout == "apart":
        for k in ("ifo", "i", "f", "o", "g"):
            a[k] = a[k].copy()
    if layout == "across rows":     # row r of c is row r + 1 of z's memory shifted by 2
        flat = rng.normal(size=rows * W + 8).astype(dtype)
        a["c"] = np.lib.stride_tricks.as_strided(flat, (rows, W), (2 * flat.itemsize, flat.itemsize))
    return a


@pytest.mark.parametrize("layout", ["lanes", "apart", "across rows"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 3e-6)])
@pytest.mark.parametrize("rows", [1, 5])
def test_a_fused_run_gives_what_its_ops_give_one_after_the_other(layout, dtype, rtol, rows):
    code, kernel, space, call = printed(RUN, scratch={"tmp", "z"}, after=["print(tmp)"])
    ref = arrays(dtype, layout, rows)
    sequential(ref)
    ran = eval(call, {**space, **arrays(dtype, layout, rows)})
    # row by row keeps the order where memory is shared within rows only (lanes of one
    # buffer, a gate over its parts) or by one row; across rows it declines
    assert ran == (layout != "across rows" or rows == 1)
    mine = arrays(dtype, layout, rows)
    exec(code.replace("print(tmp)", ""), {**space, **mine})    # the kernel, or NumPy's calls
    for k in ("big", "c", "t", "tmp", "h", "e"):
        np.testing.assert_allclose(mine[k], ref[k], rtol=rtol, atol=rtol, err_msg=k)


def test_a_temporary_nothing_outside_reads_stays_in_the_kernel():
    """z (i * g on its way into c) is not stored when nothing after the run reads it; tmp is,
    as the line after the run reads it."""
    code, kernel, space, call = printed(RUN, scratch={"tmp", "z"}, after=["print(tmp)"])
    a = arrays(np.float64, "lanes")
    before = a["z"].copy()
    ref = arrays(np.float64, "lanes")
    sequential(ref)
    assert eval(call, {**space, **a})
    np.testing.assert_array_equal(a["z"], before)              # never written
    np.testing.assert_allclose(a["tmp"], ref["tmp"], rtol=1e-13)
    np.testing.assert_allclose(a["c"], ref["c"], rtol=1e-13)   # which z went into


@pytest.mark.parametrize("given", [False, True])
def test_an_op_on_a_cotangent_is_done_where_it_is_given(given):
    """dc += cot[step] where cot is given (a user's cotangent), else nothing: inside the
    kernel, between two ops that keep dc in their buffer (dc the loop's own)."""
    fuser = Fuser()
    fuser.owned = {"dc"}
    tokens = ["    " + fuser.op("multiply", ("dc", "f"), "dc", W),
              "    " + fuser.op("add", ("dc", "cot[step]"), "dc", W, guard="cot"),
              "    " + fuser.op("multiply", ("dc", "g"), "dg", W)]
    lines = fuser(tokens)
    name = lines[0].strip()[len("if not "):].split("(")[0]
    space = {"np": np, "jitops": jitops}
    exec("\n".join(fuser.kernels[name]), space)
    space[name] = numba.njit(space[name], error_model="numpy")
    rng = np.random.default_rng(0)
    dc, f, g, dg = (rng.normal(size=(3, W)) for _ in range(4))
    cot = rng.normal(size=(2, 3, W)) if given else None
    want = dc * f + (cot[1] if given else 0)
    ns = {**space, "dc": dc, "f": f, "g": g, "dg": dg, "cot": cot, "step": 1}
    exec("\n".join(x[4:] for x in lines), ns)
    np.testing.assert_allclose(dc, want, rtol=1e-14)
    np.testing.assert_allclose(dg, want * g, rtol=1e-14)


def written_out(tokens_of, fuser, names):
    """A function Numba compiles, of ``names``, whose body is the Fuser's lines for a loop
    function run for a batch of one (Fuser.plain: each run of ops written out, checked and
    given its buffers once, before the loop over the steps)."""
    taken = set(names)

    def fresh(wish):
        name, n = wish, 2
        while name in taken:
            name, n = f"{wish}_{n}", n + 1
        taken.add(name)
        return name

    before, body = fuser.plain(tokens_of, fresh)
    source = "\n".join([f"def run({', '.join(names)}):"] + ["    " + x for x in before] + body +
                       ["    return True"])
    space = {"np": np, "jitops": jitops}
    exec(source, space)
    return numba.njit(space["run"], error_model="numpy"), source


@pytest.mark.parametrize("layout", ["lanes", "apart"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 3e-6)])
def test_a_run_written_out_for_a_batch_of_one_gives_what_its_ops_give(layout, dtype, rtol):
    """At a batch of one the loop function has each run written out in its body (no kernel
    call, no check a step): RUN gives what NumPy's calls one after the other give, a
    temporary read after the run stored, one not read left alone; an operand whose row is not
    contiguous makes the function decline before it writes anything."""
    fuser = Fuser({"ONE"})
    fuser.scratch = {"tmp", "z"}
    tokens = ["    " + fuser.op(k, a, o, w, widths=ws) for k, a, o, w, ws in RUN]
    names = sorted(arrays(dtype, layout, 1))
    run, source = written_out(tokens + ["    tmp[0, 0] += 0.0"], fuser, names)
    assert "jitops.multiply" not in source and "fused_" not in source
    ref = arrays(dtype, layout, 1)
    sequential(ref)
    mine = arrays(dtype, layout, 1)
    z = mine["z"].copy()
    assert run(*(mine[n] for n in names))
    for k in ("big", "c", "t", "tmp", "h", "e"):
        np.testing.assert_allclose(mine[k], ref[k], rtol=rtol, atol=rtol, err_msg=k)
    np.testing.assert_array_equal(mine["z"], z)                 # i * g: in its buffer only
    odd = arrays(dtype, layout, 1)
    odd["prod"] = np.asfortranarray(np.repeat(odd["prod"], 2, 0))[:1]   # its row strided
    kept = {k: v.copy() for k, v in odd.items() if isinstance(v, np.ndarray)}
    assert not run(*(odd[n] for n in names))
    for k, v in kept.items():
        np.testing.assert_array_equal(odd[k], v, err_msg=k)


@pytest.mark.parametrize("given", [False, True])
def test_a_cotangent_op_written_out_is_done_where_it_is_given(given):
    """dc += cot[step] in a loop function for a batch of one: the op where the user gives the
    cotangent (the function compiled for an array), nothing where not (for None)."""
    fuser = Fuser()
    fuser.owned = {"dc"}
    tokens = ["    " + fuser.op("multiply", ("dc", "f"), "dc", W),
              "    " + fuser.op("add", ("dc", "cot[step]"), "dc", W, guard="cot"),
              "    " + fuser.op("multiply", ("dc", "g"), "dg", W)]
    run, _ = written_out(tokens, fuser, ["dc", "f", "g", "dg", "cot", "step"])
    rng = np.random.default_rng(0)
    dc, f, g, dg = (rng.normal(size=(1, W)) for _ in range(4))
    cot = rng.normal(size=(2, 1, W)) if given else None
    want = dc * f + (cot[1] if given else 0)
    assert run(dc, f, g, dg, cot, 1)
    np.testing.assert_allclose(dc, want, rtol=1e-14)
    np.testing.assert_allclose(dg, want * g, rtol=1e-14)


def test_an_op_reading_a_value_the_step_binds_stays_a_kernel_call_at_batch_one():
    """relu's derivative is a value the step binds (pos = jitops.positive(u)), which does not
    exist before the loop, where a written-out run's operands are checked: an op reading it,
    whole or through a view, is its jitops kernel's call; the op after it is written out."""
    fuser = Fuser()
    tokens = ["    pos = jitops.positive(u)",
              "    " + fuser.op("multiply", ("d", "pos[..., 0:4]"), "d", W),
              "    " + fuser.op("multiply", ("d", "g"), "e", W)]
    run, source = written_out(tokens, fuser, ["u", "d", "g", "e"])
    assert "jitops.multiply(d, pos[..., 0:4], d)" in source
    rng = np.random.default_rng(0)
    u, d, g, e = (rng.normal(size=(1, W)) for _ in range(4))
    want = d * (u > 0)
    assert run(u, d, g, e)
    np.testing.assert_allclose(d, want, rtol=1e-15)
    np.testing.assert_allclose(e, want * g, rtol=1e-15)


def test_lanes_are_told_from_memory_shared_across_rows():
    """jitops.aligned: lanes of one buffer, a gate and the stacked gates over it share memory
    only within a row (the kernel may go row by row); rows shifted against each other do
    not; one row always; a number and arrays apart."""
    buf = np.zeros((3, 12))

    @numba.njit
    def aligned(x, y):
        return jitops.aligned(x, y)
    assert aligned(buf[:, 0:4], buf[:, 4:8]) and aligned(buf[:, 8:12], buf[:, 0:4])
    assert aligned(buf[:, 0:6], buf[:, 4:8]) and aligned(buf, buf[:, 4:8])
    assert not aligned(buf[1:, 0:4], buf[:-1, 2:6]) and not aligned(buf[:2], buf[1:])
    assert aligned(buf[:1], buf[0:1, 3:7]) and aligned(buf, np.zeros((3, 12))) and aligned(buf, 1.0)
