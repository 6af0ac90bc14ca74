"""binary_cross_entropy: a yes/no target per unit (the Deep Learning book's Bernoulli output,
and the halting unit of its section 10.2.4), checked as every loss is; and sums over the
steps (``J = sum_t(L(t))``, the book's total loss), below.

Both of its forms run: on ``p = sigmoid(z)`` the compiler uses the logits
(``softplus(z) - d z``, finite where p rounds to 0 or 1); on any other p the
formula as written.  Each is checked against central finite differences in float64
on both paths, and against PyTorch's ``binary_cross_entropy`` where torch is installed.
The random-model generator (test_random_models.py) draws both forms too.
"""
from __future__ import annotations

import re

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


# -- sums over the steps: J = sum_t(...) ---------------------------------------------------
TOTAL = """x: 3, h: 4, o: 2
h(t) = tanh(U x(t) + W h(t-1) + b)
o(t) = softmax(V h(t) + c)
L(t) = cross_entropy(o(t), y(t))
J = sum_t(L(t))
K = sum_t(h(t) * h(t-1) + P x(t))
"""


@pytest.mark.parametrize("optimize", [True, False])
def test_a_sum_over_the_steps_is_the_sum_and_its_gradients_match_central_differences(optimize):
    net = rnngraph.parse(TOTAL).compile(optimize=optimize)
    rng = np.random.default_rng(0)
    params = net.init_params(seed=0)
    inputs = {"x": rng.normal(size=(T, B, 3)), "y": rng.uniform(size=(T, B, 2))}
    outs, pullback = net.vjp(params, inputs)
    assert outs["J"].shape == (B, 1) and np.allclose(outs["J"], outs["L"].sum(0), rtol=1e-13)
    h = np.concatenate([np.zeros((1, B, 4)), outs["h"]])
    assert np.allclose(outs["K"], (h[1:] * h[:-1] + inputs["x"] @ params["P"].T).sum(0), rtol=1e-13)
    cot = {"J": rng.normal(size=(B, 1)), "K": rng.normal(size=(B, 4))}
    grads = pullback(cot)
    for name, where in [(n, params) for n in params] + [("x", inputs), ("y", inputs)]:
        direction = rng.normal(size=where[name].shape)

        def total(step):
            moved = {**where, name: where[name] + step * direction}
            o = net.forward(*((moved, inputs) if where is params else (params, moved)))
            return float((cot["J"] * o["J"]).sum() + (cot["K"] * o["K"]).sum())
        numeric = (total(1e-6) - total(-1e-6)) / 2e-6
        assert abs(numeric - float((grads[name] * direction).sum())) <= 1e-6 * max(1.0, abs(numeric)), name


def test_a_sum_over_the_steps_is_drawn_fed_by_every_step():
    from rnngraph.render import draw, layout
    m = rnngraph.parse(TOTAL)
    d = layout(m, 3)
    into = sorted(d.nodes[e["tail"]]["t"] for e in d.edges if e["head"] == "J")
    assert into == [1, 2, 3]                       # what the compiled J adds: L at every step
    x_j = float(d.agraph.get_node("J").attr["pos"].split(",")[0])
    x_3 = float(d.agraph.get_node("L.3").attr["pos"].split(",")[0])
    assert x_j > x_3                               # after the last step, where the sum is done
    assert "Σ" in draw(m).decode() and r"$\sum_{t}$" in draw(m, None, "tex").decode()
    assert m.symbols["J"].kind == "loss" and m.symbols["K"].kind == "output"


def test_a_sum_over_the_steps_prints_as_the_book_writes_it():
    m = rnngraph.parse(TOTAL)
    assert r"J &= \sum_{t} L^{(t)}" in m.to_latex()
    assert rnngraph.parse(m.to_text()).to_text() == m.to_text()


@pytest.mark.parametrize("text,message", [
    ("x: 2\nh(t) = tanh(W x(t))\nJ = 2 * sum_t(h(t))\n",
     "sum_t(...) sums over every step: it is the whole right side of an equation with no time index"),
    ("x: 2\nh(t) = tanh(W x(t) + J)\nJ = sum_t(h(t))\n",
     "h(t) reads J, a sum over every step of t, but J is computed from what h(t) feeds"),
    ("x: 2\nh(t) = sum_t(x(t))\n", "sum_t(...) sums over every step"),
    ("x: 2\nh(t) = tanh(W x(t))\nJ = sum_t(b)\n", "sum_t(...) sums over the steps, but b reads none"),
])
def test_a_sum_over_the_steps_where_it_cannot_be_is_a_located_error(text, message):
    with pytest.raises(RnnGraphError, match=re.escape(message)) as err:
        rnngraph.parse(text)
    assert err.value.diagnostics[0].location is not None
