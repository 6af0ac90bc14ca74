"""The fused kernels of backend="numba" (rnngraph/compile/fuse.py): a run of a step's
elementwise ops, one pass over the rows, gives what the ops one after the other give, also
where its operands are lanes of one buffer (apart: the kernel runs) or share memory (it
declines, and NumPy's calls run), with a number and a bias row among them."""
import numpy as np
import pytest

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")

from rnngraph.compile.fuse import Fuser  # noqa: E402
from rnngraph.runtime import jitops  # noqa: E402

RUN = ["jitops.tanh(a, b)", "jitops.multiply(b, c, a)", "jitops.sigmoid(a, d)",
       "jitops.add(d, bias, c)", "jitops.subtract(1.0, c, d)", "jitops.exp(d, d)"]


def sequential(a, b, c, d, bias):
    np.tanh(a, out=b)
    np.multiply(b, c, out=a)
    np.divide(1, 1 + np.exp(-a), out=d)
    np.add(d, bias, out=c)
    np.subtract(1.0, c, out=d)
    np.exp(d, out=d)


def generated():
    """The statements the Fuser prints for RUN (the kernel's call, NumPy's calls where it
    declines) and the kernel, compiled as the loops' module compiles it."""
    fuser = Fuser({"a": 4, "b": 4, "c": 4, "d": 4})
    lines = fuser(["        " + line for line in RUN])
    assert lines[0].strip().startswith("if not fused_")          # one call for six ops
    name = lines[0].strip()[len("if not "):].split("(")[0]
    space = {"np": np, "jitops": jitops}
    exec("\n".join(fuser.kernels[name]), space)
    space[name] = numba.njit(space[name], error_model="numpy")
    return "\n".join(line[8:] for line in lines), space[name], space


LAYOUTS = {
    "apart": lambda buf: [buf[:, 0:4].copy(), buf[:, 4:8].copy(), buf[:, 8:12].copy(),
                          buf[:, 12:16].copy()],
    "lanes of one buffer": lambda buf: [buf[:, 0:4], buf[:, 4:8], buf[:, 8:12], buf[:, 12:16]],
    # c overlapping a and b from the right, and from the left (the ops go element by
    # element: only NumPy's buffering of overlapping operands gives the sequential result)
    "sharing memory": lambda buf: [buf[:, 0:4], buf[:, 4:8], buf[:, 2:6], buf[:, 12:16]],
    "sharing memory, the other way": lambda buf: [buf[:, 2:6], buf[:, 4:8], buf[:, 0:4], buf[:, 12:16]],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_a_fused_run_gives_what_its_ops_give_one_after_the_other(layout, dtype, rtol):
    """The printed statements, run: the kernel where its operands are apart (it runs: True),
    NumPy's calls where they share memory (it declines: False)."""
    code, fused, space = generated()
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 16)).astype(dtype)
    bias = rng.normal(size=4).astype(dtype)
    mine, ref = base.copy(), base.copy()
    ours, theirs = LAYOUTS[layout](mine), LAYOUTS[layout](ref)
    a, b, c, d = ours
    ran = fused(a, b, c, d, bias)                 # its parameters as the run first names them
    assert ran == layout.startswith(("apart", "lanes"))
    mine[...] = base
    ours = LAYOUTS[layout](mine)
    exec(code, {**space, **dict(zip("abcd", ours)), "bias": bias})
    sequential(*theirs, bias)
    for x, y in zip(ours, theirs):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=rtol)


def test_lanes_apart_are_told_from_memory_shared():
    """jitops.apart: a buffer's gate lanes beside each other are apart (the kernel goes
    element by element over them); overlapping lanes, a view and its base, are not."""
    buf = np.zeros((3, 12))

    @numba.njit
    def apart(x, y):
        return jitops.apart(x, y)
    assert apart(buf[:, 0:4], buf[:, 4:8]) and apart(buf[:, 8:12], buf[:, 0:4])
    assert not apart(buf[:, 0:6], buf[:, 4:8]) and not apart(buf, buf[:, 4:8])
    assert apart(buf[:, 0:4], np.zeros((3, 4))) and apart(buf, 1.0)
