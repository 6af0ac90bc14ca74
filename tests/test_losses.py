"""binary_cross_entropy: a yes/no target per unit (the Deep Learning book's Bernoulli output,
and the halting unit of its section 10.2.4), checked as every loss is.

Both of its forms run: on ``p = sigmoid(z)`` the compiler uses the logits
(``softplus(z) - d z``, finite where p rounds to 0 or 1); on any other p the
formula as written.  Each is checked against central finite differences in float64
on both paths, and against PyTorch's ``binary_cross_entropy`` where torch is installed.
The random-model generator (test_random_models.py) draws both forms too.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError

FUSED = """x: 3, h: 4, p: 2
h(t) = tanh(U x(t) + W h(t-1) + b)
p(t) = sigmoid(V h(t) + c)
L(t) = binary_cross_entropy(p(t), d(t))
"""
# p in (0.25, 0.75), not a sigmoid: the loss as written, its own gradient rule
PLAIN = FUSED.replace("p(t) = sigmoid(V h(t) + c)", "p(t) = 0.5 * sigmoid(V h(t) + c) + 0.25")
T, B = 5, 3


def _point(net, seed=0):
    rng = np.random.default_rng(seed)
    params = net.init_params(seed=seed)
    inputs = {"x": rng.normal(size=(T, B, 3)), "d": rng.uniform(size=(T, B, 2))}
    return params, inputs


@pytest.mark.parametrize("text", [FUSED, PLAIN], ids=["on-a-sigmoid", "as-written"])
@pytest.mark.parametrize("optimize", [True, False])
def test_gradients_match_central_differences(text, optimize):
    net = rnngraph.parse(text).compile(optimize=optimize)
    assert ("sigmoid_binary_cross_entropy(" in net.source) == (text == FUSED)   # from the logits
    params, inputs = _point(net)
    outs, pullback = net.vjp(params, inputs)
    grads = pullback({"L": np.ones_like(outs["L"])})
    rng = np.random.default_rng(1)
    for name, where in [(n, params) for n in params] + [("x", inputs), ("d", inputs)]:
        direction = rng.normal(size=where[name].shape)

        def total(step):
            moved = {**where, name: where[name] + step * direction}
            args = (moved, inputs) if where is params else (params, moved)
            return float(net.forward(*args)["L"].sum())
        eps = 1e-6
        numeric = (total(eps) - total(-eps)) / (2 * eps)
        analytic = float((grads[name] * direction).sum())
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(numeric)), name


def test_the_loss_is_what_it_says():
    net = rnngraph.parse(FUSED).compile()
    params, inputs = _point(net)
    outs = net.forward(params, inputs)
    p, d = outs["p"], inputs["d"]
    expected = -(d * np.log(p) + (1 - d) * np.log(1 - p)).sum(-1, keepdims=True)
    assert np.allclose(outs["L"], expected, rtol=1e-12, atol=0)


def test_on_a_sigmoid_it_stays_finite_where_p_rounds_to_one():
    net = rnngraph.parse(FUSED).compile()
    params, inputs = _point(net)
    params = {**params, "c": np.array([60.0, -60.0])}        # p rounds to 1 and to 0
    inputs["d"] = np.tile(np.array([0.0, 1.0]), (T, B, 1))   # and the target says the other
    outs, pullback = net.vjp(params, inputs)
    grads = pullback({"L": np.ones_like(outs["L"])})
    assert np.all(np.isfinite(outs["L"])) and outs["L"].min() > 100
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_a_number_is_refused_where_a_vector_is_needed():
    with pytest.raises(RnnGraphError, match="binary_cross_entropy takes a vector, not the number 0.5"):
        rnngraph.parse("x: 2\nL(t) = binary_cross_entropy(0.5, x(t))\n")


def test_it_prints_and_reads_back():
    m = rnngraph.parse(FUSED)
    assert rnngraph.parse(m.to_text()).to_text() == m.to_text()
    assert r"\operatorname{BCE}\left(p^{(t)}, d^{(t)}\right)" in m.to_latex()
    assert m.symbols["d"].target and m.symbols["L"].kind == "loss"


@pytest.mark.parametrize("text", [FUSED, PLAIN], ids=["on-a-sigmoid", "as-written"])
def test_against_pytorch(text):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference: pip install torch==2.13.0")
    net = rnngraph.parse(text).compile()
    params, inputs = _point(net, seed=3)
    outs, pullback = net.vjp(params, inputs)
    grads = pullback({"L": np.ones_like(outs["L"])})
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x, d = (torch.tensor(inputs[k], requires_grad=True) for k in ("x", "d"))
    h = torch.zeros(B, 4, dtype=torch.float64)
    total = 0
    for t in range(T):
        h = torch.tanh(x[t] @ tp["U"].T + h @ tp["W"].T + tp["b"])
        p = torch.sigmoid(h @ tp["V"].T + tp["c"])
        if text == PLAIN:
            p = 0.5 * p + 0.25
        loss = torch.nn.functional.binary_cross_entropy(p, d[t], reduction="none").sum(-1)
        assert np.allclose(outs["L"][t, :, 0], loss.detach().numpy(), rtol=1e-10, atol=0)
        total = total + loss.sum()
    total.backward()
    for k, v in tp.items():
        assert np.allclose(grads[k], v.grad.numpy(), rtol=1e-9, atol=1e-12), k
    assert np.allclose(grads["x"], x.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert np.allclose(grads["d"], d.grad.numpy(), rtol=1e-9, atol=1e-12)
