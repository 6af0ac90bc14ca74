"""Attention: values over two indices, e(u, t), and the reductions over t inside a loop over u.

examples/attention.rnn (Bahdanau et al. 2015: additive scores from s(u-1)) and
examples/attention_dot.rnn (Luong et al. 2015: s(u)^T h(t)): the language and its checks,
the semantics of softmax_t and sum_t against NumPy written from the equations, the
compiled gradients against PyTorch autograd, the drawing (a fan into the first decoder
step's context) against what the code computes.  Central differences on both paths are
in test_gradients (every example) and the random models (tests/test_random_models.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.render import draw, drawing_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_random_models import worst_directional_error  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BAHDANAU, LUONG = EXAMPLES / "attention.rnn", EXAMPLES / "attention_dot.rnn"
TX, TU, B = 5, 3, 2


def _point(net, m, seed=0):
    rng = np.random.default_rng(seed)
    params = net.init_params(seed=seed)
    inputs = {}
    for n in net.inputs:
        s = m.symbols[n]
        length = {"t": TX, "u": TU}[s.index]
        inputs[n] = np.eye(m.sizes[n])[rng.integers(0, m.sizes[n], (length, B))] if n == "y" \
            else rng.normal(size=(length, B, m.sizes[n]))
    initial = {k: rng.normal(size=(B, m.sizes[k.split("(")[0]])) for k in net.initial_values}
    return params, inputs, initial


def test_the_language_of_attention():
    m = rnngraph.load(BAHDANAU)
    assert [(n, m.symbols[n].index) for n in ("h", "s", "z", "e", "a", "c")] == \
        [("h", "t"), ("s", "u"), ("z", ("u", "t")), ("e", ("u", "t")), ("a", ("u", "t")),
         ("c", "u")]
    assert m.symbols["a"].loop == "u"
    text = m.to_text()
    assert "a(u, t) = softmax_t(e(u, t))\nc(u) = sum_t(a(u, t) * h(t))\n" in text
    assert rnngraph.parse(text) == m
    latex = m.to_latex()
    assert r"a^{(u,t)} &= \operatorname{softmax}_{t}\left(e^{(u,t)}\right)" in latex
    assert r"c^{(u)} &= \sum_{t}\left(a^{(u,t)} \odot h^{(t)}\right)" in latex
    luong = rnngraph.load(LUONG)
    assert r"e^{(u,t)} &= {s^{(u)}}^{\top} h^{(t)}" in luong.to_latex()
    assert rnngraph.parse(luong.to_text()) == luong


@pytest.mark.parametrize("text,message", [
    ("e(u, t) = W h(t)\n", "'u' is not an index"),
    ("index u\ne(u, u) = W y(u)\n", "a value over two indices is written e(u, t)"),
    ("index u\ne(u, t+1) = W y(u)\n", "a value over two indices is written e(u, t)"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t)\nc(u) = e(u, t) * y(u)\n",
     "e(u, t) has a value for every step of t; read it inside sum_t(...)"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t)\nc(u) = sum_t(e(u-1, t) * h(t))\n",
     "it reads a value over two indices at the same pair only"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t-1)\n",
     "e(u, t) reads every step of t at once, as h(t); not h(t-1)"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\nc(u) = softmax_t(h(t))\n",
     "softmax_t(...) normalises across every step of t: it is read in a value over two indices"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = softmax_t(W y(u-1)) + v^T h(t)\n",
     "but W y(u-1) is the same at each"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\nc(u) = sum_t(W y(u))\n",
     "sums over every step of t, but W y(u) reads none"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\nc(u) = sum_t(h(t)) + h(t)\n",
     "c(u) runs over u: it cannot read h(t)"),
    ("h(t) = tanh(W h(t-1) + e(t, t))\n", "not e(t, t)"),
    # (a review's: a sum over t of a sum over t summed over the batch; softmax_t of one crashed)
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t)\nK(u) = sum_t(sum_t(e(u, t)))\n",
     "sum_t(...) sums over every step of t, but sum_t(e(u, t)) reads none"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t)\nf(u, t) = softmax_t(mean_t(e(u, t)))\n",
     "f(u, t) has a value for every step of t, but reads no sequence of t"),
    ("index u\nr: 3, e: 2\ne(u, t) = W r(u)\n",
     "e(u, t) has a value for every step of t, but reads no sequence of t"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ne(u, t) = v^T h(t)\nc(u) = W e(u, t)\n",
     "e(u, t) has a value for every step of t; read it inside sum_t(...) or mean_t(...)"),
])
def test_a_wrong_use_of_two_indices_is_a_located_error(text, message):
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(text, "m.rnn")
    d = info.value.diagnostics[0]
    assert message in d.message, d.message
    assert d.location is not None and d.location.line >= 1


@pytest.mark.parametrize("optimize", [False, True])
def test_softmax_t_and_sum_t_mean_what_they_say(optimize):
    """a(u, ·) sums to 1 over the encoder's steps; c(u) is the a-weighted sum of the states;
    e(u, t) is s(u)^T h(t); each an array (T_u, T, B, 1), read from the compiled code's
    outputs and recomputed in NumPy from the equations."""
    m = rnngraph.load(LUONG)
    net = m.compile(optimize=optimize)
    params, inputs, initial = _point(net, m, seed=2)
    out = net.forward(params, inputs, initial)
    h, s, e, a, c = (out[k] for k in "hseac")
    assert e.shape == (TU, TX, B, 1) and a.shape == (TU, TX, B, 1) and c.shape == (TU, B, 8)
    assert np.allclose(e[..., 0], np.einsum("ubn,tbn->utb", s, h), rtol=1e-12, atol=1e-12)
    want = np.exp(e - e.max(1, keepdims=True))
    assert np.allclose(a, want / want.sum(1, keepdims=True), rtol=1e-12, atol=1e-14)
    assert np.allclose(a.sum(1), 1, rtol=1e-12)
    assert np.allclose(c, np.einsum("utb,tbn->ubn", a[..., 0], h), rtol=1e-12, atol=1e-14)
    # unbatched: the batch axis of a value over two indices is its third
    one = net.forward(params, {k: v[:, 0] for k, v in inputs.items()},
                      {k: v[0] for k, v in initial.items()})
    assert one["a"].shape == (TU, TX, 1) and np.allclose(one["a"], a[:, :, 0], atol=1e-14)


@pytest.mark.parametrize("path", [BAHDANAU, LUONG], ids=["bahdanau", "luong"])
@pytest.mark.parametrize("optimize", [False, True])
def test_attention_gradients_match_central_differences(path, optimize):
    m = rnngraph.load(path)
    net = m.compile(optimize=optimize)
    point = _point(net, m, seed=5)
    outs, _ = net.vjp(*point)
    cot = {k: np.random.default_rng(6).normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, point, cot, seed=7) <= 1e-7


def test_the_optimized_path_computes_the_keys_once():
    """U_a h(t) for every encoder step is the same at every decoder step: one product, before
    the decoder's loop, not one per decoder step (what a hand-written attention does)."""
    net = rnngraph.load(BAHDANAU).compile(optimize=True)
    source = net.source
    forward = source[source.index("def forward("):source.index("def backward(")]
    before, loop = forward.split("a loop forward over u")
    assert "U_a_h = h[1:T + 1] @ U_a.T" in before
    assert "U_a.T" not in loop and "U_a_T" not in loop and "U_a_h = " not in loop


def test_bahdanau_attention_matches_pytorch_autograd():
    """The same equations written with torch in float64: every output and every gradient."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference: pip install torch==2.13.0")
    m = rnngraph.load(BAHDANAU)
    net = m.compile(optimize=True)
    params, inputs, initial = _point(net, m, seed=4)
    outs, pullback = net.vjp(params, inputs, initial)
    grads = pullback({"L": np.ones_like(outs["L"])})
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(inputs["x"], requires_grad=True)
    y = torch.tensor(inputs["y"])
    h0 = torch.tensor(initial["h(0)"], requires_grad=True)
    h, hs = h0, []
    for t in range(TX):
        h = torch.tanh(h @ P["W"].T + x[t] @ P["U"].T + P["b"])
        hs.append(h)
    H = torch.stack(hs)                                   # (T, B, n)
    s = torch.tanh(h @ P["W_s"].T + P["b_s"])
    prev = torch.zeros_like(y[0])
    losses, weights = [], []
    for u in range(TU):
        z = torch.tanh(s @ P["W_a"].T + H @ P["U_a"].T)   # (T, B, 10)
        e = z @ P["v"]                                    # v^T z: v is (10, 1)
        a = torch.softmax(e, 0)
        c = (a * H).sum(0)
        s = torch.tanh(s @ P["A"].T + prev @ P["B"].T + c @ P["C"].T + P["d"])
        logp = torch.log_softmax(s @ P["V"].T + P["k"], -1)
        losses.append(-(y[u] * logp).sum(-1, keepdim=True))
        weights.append(a)
        prev = y[u]
    torch.stack(losses).sum().backward()
    assert np.allclose(outs["L"], torch.stack(losses).detach().numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(outs["a"], torch.stack(weights).detach().numpy(), rtol=1e-12, atol=1e-14)
    for k, p in P.items():
        assert np.allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12), k
    assert np.allclose(grads["x"], x.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(grads["h(0)"], h0.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_the_drawing_is_what_the_code_computes():
    """Unrolled: the first decoder step's context is fed by every encoder state, each edge
    labelled a(1, t), and by the query s(0) through W_a; the other steps' by one edge
    a(u, ·).  The code: the context at u = 1 moves with every encoder state (a cotangent on
    c(1) alone gives every x(t) a gradient, with h not recurrent, so only through the fan),
    and with s(0), and with nothing of a later decoder step."""
    text = BAHDANAU.read_text().replace("h(t) = tanh(W h(t-1) + U x(t) + b)", "h(t) = tanh(U x(t) + b)")
    m = rnngraph.parse(text, "attention.rnn")
    d = drawing_of(m, unroll={"t": 4, "u": 3})
    into = {}
    for e in d.edges:
        into.setdefault(e["head"], []).append((e["tail"], e.get("attend"), e["weight"]))
    assert sorted(into["c.1"]) == sorted([(f"h.{t}", ("a", 1, t), None) for t in range(1, 5)]
                                         + [("s.0", None, "W_a")])
    assert sorted(into["c.2"]) == [("h.4", ("a", 2, "·"), None), ("s.1", None, "W_a")]
    assert not any(n.split(".")[0] in ("z", "e", "a") for n in d.nodes)
    net = m.compile()
    rng = np.random.default_rng(0)
    params = net.init_params(seed=1)
    inputs = {"x": rng.normal(size=(4, 1, 4)), "y": np.eye(5)[rng.integers(0, 5, (3, 1))]}
    outs, pullback = net.vjp(params, inputs)
    cot = {"c": np.zeros_like(outs["c"])}
    cot["c"][0] = 1
    grads = pullback(cot)
    assert all(np.abs(grads["x"][t]).sum() > 1e-8 for t in range(4))   # every h(t) feeds c(1)
    assert np.abs(grads["y"]).sum() == 0             # no later decoder step does
    tex = draw(m, {"t": 4, "u": 3}, format="tex").decode()
    assert tex.isascii() and "$a^{(1,3)}$" in tex and r"$a^{(2,\cdot)}$" in tex


def test_the_folded_drawing_shows_the_pairs_in_a_row():
    """Folded: z(u,t), e(u,t), a(u,t) are drawn once, named with both indices, on one row."""
    d = drawing_of(rnngraph.load(BAHDANAU))
    shown = {i["name"]: i["shown"] for i in d.nodes.values() if not i["marker"]}
    assert shown["z"] == shown["e"] == shown["a"] == "(u,t)" and shown["c"] == "(u)"
    y = {n: float(d.agraph.get_node(n).attr["pos"].split(",")[1]) for n in "zeahc"}
    assert y["z"] == y["e"] == y["a"] == y["h"] < y["c"]


@pytest.mark.parametrize("optimize", [False, True])
def test_a_total_over_u_may_sum_over_t_inside(optimize):
    """J = sum_u(sum_t(a(u, t) * e(u, t))): the sum over every pair of steps (it was refused
    with a message that asked for the sum_t it had)."""
    m = rnngraph.parse("index u\nx: 4, h: 3, s: 3, e: 1, r: 2\nh(t) = tanh(W h(t-1) + U x(t))\n"
                       "s(u) = tanh(A s(u-1) + B r(u))\ne(u, t) = s(u)^T Q h(t)\n"
                       "a(u, t) = softmax_t(e(u, t))\nJ = sum_u(sum_t(a(u, t) * e(u, t)))\n")
    net = m.compile(optimize=optimize)
    rng = np.random.default_rng(0)
    point = (net.init_params(seed=0), {"x": rng.normal(size=(5, 2, 4)), "r": rng.normal(size=(3, 2, 2))}, {})
    outs, _ = net.vjp(*point)
    assert np.allclose(outs["J"], (outs["a"] * outs["e"]).sum((0, 1)), rtol=1e-12)
    cot = {k: rng.normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, point, cot, seed=1) <= 1e-7


def test_the_memory_limit_counts_every_pair_of_steps():
    """(T_u + 1, T, B, n) arrays: 1000 x 1000 steps at batch 4 and an alignment model of 1000
    units is refused before it allocates (it asked NumPy for 29.8 GiB, counted as 0.25)."""
    net = rnngraph.load(BAHDANAU, sizes={"z": 1000}).compile()
    with pytest.raises(RnnGraphError, match=r"3 over two indices.*more than the limit"):
        net.forward(net.init_params(seed=0), {"x": np.zeros((1000, 4, 4)), "y": np.zeros((1000, 4, 5))})


@pytest.mark.parametrize("optimize", [False, True])
def test_a_weight_per_unit_is_drawn_and_computed_as_written(optimize):
    """IndRNN's u * h(t-1) and the peepholes' diag(p) s(t-1): drawn with their weight's label
    (u ⊙, diag(p): they had none), computed as u * h (no n x n matrix), gradients checked."""
    m = rnngraph.parse("h(t) = relu(W x(t) + u * h(t-1) + b)\n"
                       "g(t) = tanh(V x(t) + diag(p) g(t-1))\nx: 3, h: 4, g: 2\n")
    edges = {(u, v): d["weight"] for u, v, d in m.graph().edges(data=True)}
    assert edges[("h", "h")] == "u⊙" and edges[("g", "g")] == "diag(p)"
    assert m.param_shapes["u"] == (4,) and m.param_shapes["p"] == (2,)
    d = drawing_of(m, unroll=2)
    labels = [d.labels[e["key"]] for e in d.edges if e["tail"].startswith("g") and e["head"].startswith("g")]
    assert labels and all("diag(" in lab and ">p<" in lab for lab in labels)
    tex = draw(m, 2, format="tex").decode()
    assert r"\operatorname{diag}(p)" in tex and r"u \odot" in tex
    net = m.compile(optimize=optimize)
    assert "p @" not in net.source and "@ p" not in net.source
    rng = np.random.default_rng(0)
    params = net.init_params(seed=0)
    x = rng.normal(size=(4, 2, 3))
    out = net.forward(params, {"x": x})
    g = np.zeros((2, 2))
    for t in range(4):
        g = np.tanh(x[t] @ params["V"].T + params["p"] * g)
    assert np.allclose(out["g"][-1], g, rtol=1e-12)
    point = (params, {"x": x}, {})
    cot = {k: rng.normal(size=v.shape) for k, v in out.items()}
    assert worst_directional_error(net, point, cot, seed=1) <= 1e-7
    with pytest.raises(RnnGraphError, match="diag takes a vector"):
        rnngraph.parse("h(t) = tanh(diag(2) h(t-1) + x(t))\n")
    # (a review's: (diag(v) W) h gave W diag(v) on the optimized path, others failed to compile)
    for text in ("(diag(v) W) h(t-1)", "(W diag(v)) x(t)", "(diag(v) + W) h(t-1)", "(-diag(v)) h(t-1)"):
        with pytest.raises(RnnGraphError, match=r"diag\(v\) multiplies a vector"):
            rnngraph.parse(f"h(t) = tanh({text} + U x(t))\nx: 4, h: 4\n")
    # what a diag reads that is not a weight is drawn as a read; h(end) beside a unit weight
    g = rnngraph.parse("h(t) = tanh(diag(m(t)) h(t-1) + x(t))\nh: 3\no = u * h(end)\n").graph()
    assert ("m", "h") in g.edges() and ("h", "o") in g.edges()
