"""Differentiable memory: matrix-valued variables (issue 18), the Neural Turing machine.

examples/ntm.rnn (Graves et al. 2014: content addressing, the gate with the last
weighting, the read M^T w, the erase and add write): the language (``M: 8x16``, outer
products ``w e^T`` and ``outer``, ``M^T w``, ``M k``, ``cosine``, ``norm``, elementwise ops
and functions of matrices) and its located errors, the semantics against NumPy written
from the equations, the compiled gradients against PyTorch autograd of the same equations,
and the drawing against what the code computes.  Central differences on both paths are in
test_gradients (every example) and the random models (tests/test_random_models.py draws
memories, their reads and writes in every operand position).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_random_models import worst_directional_error  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NTM = EXAMPLES / "ntm.rnn"
T, B = 5, 3


def _point(net, m, seed=0):
    rng = np.random.default_rng(seed)
    params = net.init_params(seed=seed)
    inputs = {n: rng.normal(size=(T, B, m.sizes[n])) for n in net.inputs}
    initial = {k: rng.normal(size=(B, *m.shape(k.split("(")[0]))) for k in net.initial_values}
    return params, inputs, initial


def test_the_language_of_memory():
    m = rnngraph.load(NTM)
    assert m.sizes["M"] == (8, 16) and m.shape("M") == (8, 16) and m.shape("h") == (32,)
    assert m.param_shapes["M0"] == (8, 16)
    assert m.symbols["M"].role == "state" and m.symbols["M"].delay == 1
    assert (m.sizes["r"], m.sizes["w"], m.sizes["k"]) == (16, 8, 16)
    text = m.to_text()
    assert text.startswith("M: 8x16, x: 8, h: 32, ")
    assert "M(t) = M(t-1) * (1 - w(t) e(t)^T) + w(t) a(t)^T\n" in text
    assert rnngraph.parse(text) == m
    latex = m.to_latex()
    assert r"M^{(t)} &= M^{(t-1)} \odot \left(1 - w^{(t)} {e^{(t)}}^{\top}\right) + w^{(t)} " \
        r"{a^{(t)}}^{\top}" in latex
    assert r"r^{(t)} &= {M^{(t-1)}}^{\top} w^{(t)}" in latex
    # the other spellings: the product sign, outer(), norm (LaTeX's double bars)
    other = rnngraph.parse("M: 4 × 3\nM(t) = M(t-1) + outer(x(t), y(t))\n"
                           "n(t) = norm(M(t)) + norm(x(t))\nx: 4, y: 3")
    assert other.sizes["M"] == (4, 3) and other.sizes["n"] == 4
    assert rnngraph.parse(other.to_text()) == other
    assert r"\left\lVert M^{(t)} \right\rVert" in other.to_latex()
    # a size given from outside: rows and columns, from Python and from the command line
    assert rnngraph.load(NTM, sizes={"M": (4, 6)}).sizes["r"] == 6


@pytest.mark.parametrize("text,message,at", [
    ("M: 4x3\nM(t) = tanh(W x(t))", "M(t) is a matrix (declared M: rows x columns), but its "
     "right side is a vector", (2, 8)),
    ("h(t) = tanh(x(t)) u(t)^T", "the right side of h(t) is a matrix; multiply it by a vector, or "
     "declare h a matrix (h: rows x columns, as M: 8x16)", (1, 8)),
    ("M: 4x3\nM(t) = M(t-1) * sigmoid(W x(t))", "'*' needs two vectors or two matrices: M(t-1) "
     "is a matrix and sigmoid(W x(t)) is a vector", (2, 8)),
    ("M: 4x3\nM(t) = outer(M(t-1), x(t))", "outer takes two vectors; M(t-1) is a matrix", (2, 14)),
    ("M: 4x3\nM(t) = M(t-1)\ny(t) = cosine(x(t), M(t-1))", "the second argument of cosine is a "
     "vector (the key each row is compared with); M(t-1) is a matrix", (3, 21)),
    ("M: 4x3\nM(t) = M(t-1)\ny(t) = softmax(M(t-1))", "softmax takes vectors; M(t-1) is a matrix",
     (3, 16)),
    ("M: 4x3\nM(t) = M(t-1)\ny(t) = cosine(2, x(t))", "cosine takes a vector or a matrix, not the "
     "number 2", (3, 15)),
    ("M: 4x3\nM(t) = M(t-1) + x(t) y(t)^T\nx: 5", "size conflict", (2, 8)),
    ("M: 4x3\nM(t) = M(t-1) + b y(t)^T\nb: 1", "size conflict", (2, 8)),
    ("M: 4x3\nM(t) = M(t-1) + 2 y(t)^T", "only a matrix can be transposed, or a vector in a dot "
     "product u^T v or an outer product u v^T; y(t) is not a matrix", (2, 19)),
    ("M: 4x3\nM(t) = M(t-1) + M(t-1) y(t)^T", "a transposed vector v^T is multiplied from the "
     "left by a vector (u v^T, an outer product); M(t-1) is a matrix", (2, 17)),
    ("M: 0x3\nM(t) = M(t-1)", "a size is a positive whole number, not 0", (1, 4)),
    ("X: 4x3\nr(t) = X(t)^T w(t)", "'X' is declared a matrix, and read as X(t), as an input; "
     "an input is a vector", (2, 8)),
])
def test_what_memory_refuses_is_located(text, message, at):
    with pytest.raises(RnnGraphError) as err:
        rnngraph.parse(text, "m.rnn").require_sizes()
    assert message in err.value.message
    assert (err.value.line, err.value.column) == at


def test_a_size_given_keeps_the_declared_kind(tmp_path, capsys):
    with pytest.raises(RnnGraphError, match=r"'M' is a matrix \(M: 8x16, line 5\): give its rows "
                                            r"and columns, as M=8x16"):
        rnngraph.load(NTM, sizes={"M": 8})
    assert main(["check", str(NTM), "--sizes", "M=4x6,h=10"]) == 0
    assert "M = 4 x 6, " in capsys.readouterr().out
    assert main(["check", str(NTM), "--sizes", "h=4x6"]) == 2
    assert "'h' is a vector (h: 32, line 6): give one size, as h=32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(NTM), "--sizes", "M=4x6x2"])
    assert exit_.value.code == 2 and "ROWSxCOLUMNS" in capsys.readouterr().err


def test_a_memory_too_large_is_refused_before_anything_is_allocated():
    with pytest.raises(RnnGraphError, match=r"'M' would have 100,000 x 100,000 = 10,000,000,000 "
                                            r"elements, more than the limit"):
        rnngraph.parse("M: 100000x100000\nM(t) = M(t-1) + x(t) y(t)^T")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("optimize", [False, True])
def test_the_ntm_computes_its_equations(optimize):
    """Each step against NumPy written from the paper's equations, from the compiled
    outputs of the step before."""
    m = rnngraph.load(NTM)
    net = m.compile(dtype="float64", optimize=optimize)
    params, inputs, _ = _point(net, m)
    out = net.forward(params, inputs)           # no initial values: M(0) = M0, the rest 0
    M = np.concatenate([np.broadcast_to(params["M0"], (1, B, 8, 16)), out["M"]])
    w = np.concatenate([np.zeros((1, B, 8)), out["w"]])
    for t in range(1, T + 1):
        k, beta, g, e, a = (out[n][t - 1] for n in ("k", "β", "g", "e", "a"))
        rows = np.linalg.norm(M[t - 1], axis=-1)
        cos = np.einsum("bnw,bw->bn", M[t - 1], k) / (rows * np.linalg.norm(k, axis=-1)[:, None]
                                                      + 1e-8)
        np.testing.assert_allclose(out["c"][t - 1], _softmax(beta * cos), rtol=1e-12)
        np.testing.assert_allclose(w[t], g * out["c"][t - 1] + (1 - g) * w[t - 1], rtol=1e-12)
        np.testing.assert_allclose(out["r"][t - 1], np.einsum("bnw,bn->bw", M[t - 1], w[t]),
                                   rtol=1e-12, atol=1e-14)
        write = M[t - 1] * (1 - w[t][:, :, None] * e[:, None, :]) + w[t][:, :, None] * a[:, None, :]
        np.testing.assert_allclose(M[t], write, rtol=1e-12, atol=1e-14)
    # the drawing shows what the code starts from: the initial value M0, a delay of 1
    g = m.graph()
    assert g.nodes["M"]["initial"] == "M0" and g.nodes["M"]["delay"] == 1
    into = {(u, d["delay"], d["weight"]) for u, _, d in g.in_edges("M", data=True)}
    assert into == {("w", 0, None), ("e", 0, None), ("a", 0, None), ("M", 1, None)}
    assert {(v, d["delay"]) for _, v, d in g.out_edges("M", data=True)} == \
        {("c", 1), ("r", 1), ("M", 1)}


def test_the_ntm_gradients_equal_pytorch_autograd():
    torch = pytest.importorskip("torch")
    m = rnngraph.load(NTM)
    net = m.compile(dtype="float64")
    params, inputs, initial = _point(net, m, seed=1)
    outs, pullback = net.vjp(params, inputs, initial)
    rng = np.random.default_rng(2)
    cot = {n: rng.normal(size=v.shape) for n, v in outs.items()}
    grads = pullback(cot)

    P = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    x = torch.tensor(inputs["x"], requires_grad=True)
    init = {n: torch.tensor(v, requires_grad=True) for n, v in initial.items()}
    lin = lambda W, v, b: v @ P[W].T + P[b]  # noqa: E731
    h, w, r, M = init["h(0)"], init["w(0)"], init["r(0)"], P["M0"].expand(B, 8, 16)
    seen = {n: [] for n in outs}
    for t in range(T):
        h = torch.tanh(h @ P["W_h"].T + x[t] @ P["U_h"].T + r @ P["V_h"].T + P["b_h"])
        k = torch.tanh(lin("W_k", h, "b_k"))
        beta = torch.nn.functional.softplus(lin("W_β", h, "b_β"))
        g = torch.sigmoid(lin("W_g", h, "b_g"))
        cos = (M @ k[:, :, None])[:, :, 0] / (M.norm(dim=-1) * k.norm(dim=-1, keepdim=True) + 1e-8)
        c = torch.softmax(beta * cos, -1)
        w = g * c + (1 - g) * w
        r = (w[:, None, :] @ M)[:, 0, :]
        e = torch.sigmoid(lin("W_e", h, "b_e"))
        a = torch.tanh(lin("W_a", h, "b_a"))
        M = M * (1 - w[:, :, None] * e[:, None, :]) + w[:, :, None] * a[:, None, :]
        y = torch.softmax(h @ P["W_y"].T + r @ P["U_y"].T + P["b_y"], -1)
        for n, v in dict(h=h, k=k, β=beta, g=g, c=c, w=w, r=r, e=e, a=a, M=M, y=y).items():
            seen[n].append(v)
    seen = {n: torch.stack(v) for n, v in seen.items()}
    for n in outs:
        np.testing.assert_allclose(seen[n].detach().numpy(), outs[n], rtol=1e-11, atol=1e-13)
    loss = sum((seen[n] * torch.tensor(cot[n])).sum() for n in outs)
    loss.backward()
    for n, p in P.items():
        np.testing.assert_allclose(grads[n], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)
    np.testing.assert_allclose(grads["x"], x.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n, v in init.items():
        np.testing.assert_allclose(grads[n], v.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("optimize", [False, True])
def test_memory_gradients_match_central_differences_from_a_zero_memory(optimize):
    """A memory that starts at zero: the cosine of a zero row is 0, its norm's derivative
    taken as 0 there (not NaN), and the gradients still match central differences."""
    m = rnngraph.parse(NTM.read_text().replace("M(0) = M0\n", ""),
                       "ntm.rnn", sizes={"h": 6, "M": (3, 4), "x": 3, "y": 3})
    net = m.compile(dtype="float64", optimize=optimize)
    params, inputs, initial = _point(net, m, seed=3)
    initial["M(0)"] = np.zeros((B, 3, 4))
    outs, pullback = net.vjp(params, inputs, initial)
    cot = {n: np.random.default_rng(4).normal(size=v.shape) for n, v in outs.items()}
    grads = pullback(cot)
    assert all(np.all(np.isfinite(g)) for n, g in grads.items() if n != "M(0)")
    point = (params, inputs, {k: v for k, v in initial.items() if k != "M(0)"})
    net_free = rnngraph.parse(m.to_text() + "M(0) = 0\n", "ntm.rnn").compile(
        dtype="float64", optimize=optimize)
    assert worst_directional_error(net_free, point, cot, seed=5) < 1e-6


def test_a_memory_runs_on_every_backend_and_batch():
    m = rnngraph.load(NTM, sizes={"h": 8})
    plain = m.compile(dtype="float64", optimize=False)
    params, inputs, initial = _point(plain, m, seed=6)
    ref = plain.forward(params, inputs, initial)
    one = plain.forward(params, {n: v[:, 0] for n, v in inputs.items()},
                        {n: v[0] for n, v in initial.items()})
    np.testing.assert_allclose(one["M"], ref["M"][:, 0], rtol=1e-13)
    pytest.importorskip("numba")
    fast = m.compile(dtype="float64", backend="numba")
    got = fast.forward(params, inputs, initial)
    for n in ref:
        np.testing.assert_allclose(got[n], ref[n], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("optimize", [False, True])
def test_a_number_per_example_scales_every_entry(optimize):
    """g(t) * M(t-1) with g of size 1 (a gate, as the NTM's interpolation): each example's
    number times every entry of its matrix; and a parameter of size 1 the same for all."""
    m = rnngraph.parse("M: 3x2\ng(t) = sigmoid(W x(t))\n"
                       "M(t) = g(t) * M(t-1) + (1 - g(t)) * outer(x(t), y(t)) + s * tanh(M(t-1))\n"
                       "x: 3, y: 2, g: 1, s: 1", "gate.rnn")
    net = m.compile(dtype="float64", optimize=optimize)
    params, inputs, initial = _point(net, m, seed=7)
    out = net.forward(params, inputs, initial)
    g, M0 = out["g"][0], initial["M(0)"]
    x, y = inputs["x"][0], inputs["y"][0]
    want = g[:, :, None] * M0 + (1 - g[:, :, None]) * x[:, :, None] * y[:, None, :] \
        + params["s"] * np.tanh(M0)
    np.testing.assert_allclose(out["M"][0], want, rtol=1e-12)
    outs, _ = net.vjp(params, inputs, initial)
    cot = {k: np.random.default_rng(8).normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, (params, inputs, initial), cot, seed=9) < 1e-6
    with pytest.raises(RnnGraphError, match="'\\*' needs two vectors or two matrices"):
        rnngraph.parse("M: 3x2\nM(t) = v * M(t-1)\nv: 2")       # a vector: along rows or columns?


@pytest.mark.parametrize("optimize", [False, True])
def test_a_weight_per_entry_of_a_memory_gets_its_gradient_in_one_pass(optimize):
    """P * M(t-1), P a parameter matrix (one weight per entry): P's gradient, the sum over
    steps and batch of dM(t) * M(t-1), is one einsum over both of a matrix's axes in the
    optimized path (layout.sums_of_products), and matches central differences, at a batch
    of one too."""
    m = rnngraph.parse("M: 3x4\nx: 4, h: 3, P: 3x4\nh(t) = tanh(W h(t-1) + U x(t))\n"
                       "M(t) = tanh(P * M(t-1) + outer(h(t), x(t)))\n", "weights.rnn")
    net = m.compile(dtype="float64", optimize=optimize)
    assert ('np.einsum("tuij,tuij->ij", ' in net.source) == optimize
    params, inputs, initial = _point(net, m, seed=10)
    for batch in (slice(None), slice(0, 1)):
        point = (params, {n: v[:, batch] for n, v in inputs.items()},
                 {n: v[batch] for n, v in initial.items()})
        outs, _ = net.vjp(*point)
        cot = {k: np.random.default_rng(11).normal(size=v.shape) for k, v in outs.items()}
        assert worst_directional_error(net, point, cot, seed=12) < 1e-6


def test_a_memory_from_a_number_and_from_parameters():
    """M(t) = t and M = s (a size-1 value in every entry), sizes given as a list or with
    NumPy's integers, and a matrix the same for every example exported to PyTorch."""
    m = rnngraph.parse("M: 3x4\nM(t) = t\na(t) = softmax(M(t-1) x(t))\nx: 4", "m.rnn")
    out = m.compile().forward(m.compile().init_params(), {"x": np.ones((3, 4))})
    assert np.array_equal(out["M"][:, 0, 0], [1, 2, 3]) and out["M"].shape == (3, 3, 4)
    m = rnngraph.parse("M = outer(a, b)\ny(t) = tanh(W x(t) + M^T v(t))\nx: 3, y: 4",
                       "m.rnn", sizes={"M": [3, np.int64(4)]})
    assert m.sizes["M"] == (3, 4)
    net = m.compile(dtype="float64")
    params = net.init_params(seed=0)
    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(size=(3, 2, 3)), "v": rng.normal(size=(3, 2, 3))}
    want = net.forward(params, inputs)
    torch = pytest.importorskip("torch")
    module = m.to_torch(dtype="float64")
    with torch.no_grad():
        for name, p in module.params.items():
            p.copy_(torch.tensor(params[name]))
    got = module({k: torch.tensor(v) for k, v in inputs.items()})
    for k in want:
        np.testing.assert_allclose(got[k].detach().numpy(), want[k], rtol=1e-12, atol=1e-14)
