"""Several indices: an encoder over t and a decoder over u, each of its own length.

``index u`` declares the second index; a sequence over u is defined as ``s(u)`` and read at
``s(u-1)``; the decoder reads the encoder at a fixed step only (``C = h(end)``).  The book's
figure 10.12 (examples/seq2seq.rnn): its language, its checks, its compiled forward and
backward (finite differences, PyTorch autograd), its running free, its drawing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.render import drawing_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_random_models import worst_directional_error  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seq2seq.rnn"
TX, TU, B = 5, 3, 2


def _point(net, m, seed=0, lengths=None):
    lengths = lengths or {"t": TX, "u": TU}
    rng = np.random.default_rng(seed)
    params = net.init_params(seed=seed)
    inputs = {}
    for n in net.inputs:
        s = m.symbols[n]
        shape = (lengths[s.index], B, m.sizes[n]) if s.timed else (B, m.sizes[n])
        inputs[n] = np.eye(m.sizes[n])[rng.integers(0, m.sizes[n], shape[:-1])] if s.target \
            or n == "y" else rng.normal(size=shape)
    initial = {k: rng.normal(size=(B, m.sizes[k.split("(")[0]])) for k in net.initial_values}
    return params, inputs, initial


def test_the_language_of_two_indices():
    m = rnngraph.load(EXAMPLE)
    assert [(n, m.symbols[n].index) for n in ("h", "x", "s", "y", "o", "C", "W")] == \
        [("h", "t"), ("x", "t"), ("s", "u"), ("y", "u"), ("o", "u"), ("C", None), ("W", None)]
    assert m.to_text().startswith("index u\n") and "s(u) = tanh(A s(u-1) + B y(u-1)" in m.to_text()
    assert rnngraph.parse(m.to_text()) == m
    assert r"s^{(u)} &= \tanh\left(A s^{(u-1)} + B y^{(u-1)}" in m.to_latex()
    assert "s            forward over u" in m.summary()


@pytest.mark.parametrize("text,message", [
    ("s(u) = tanh(A s(u-1))\n", "'u' is not an index: declare it on a line of its own, index u"),
    ("h(t) = tanh(W h(t-1) + x(t))\ns(t) = a(j-1) + s(t-1)\n", "'j' is not an index"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ns(u) = tanh(A s(u-1) + h(t))\n",
     "s(u) runs over u: it cannot read h(t), a step of t; read h(end)"),
    ("index u\ns(u) = tanh(A s(u-1) + y(u))\nh(t) = tanh(W h(t-1) + s(t-1))\n",
     "'s' has the steps of u (defined as s(u)), not of t"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\ns(u) = tanh(A s(u-1) + x(u))\n", "'x' has the steps of t"),
    ("index t\nh(t) = x(t)\n", "'t' is always an index"),
    ("index u, u\ns(u) = y(u)\n", "'u' is declared an index twice"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\nJ = sum_v(h(t))\n", "sums over 'v', which is not an index"),
    ("index u\nh(t) = tanh(W h(t-1) + x(t))\nJ = sum_u(h(t))\n", "J sums over u: it cannot read h(t)"),
])
def test_a_wrong_index_is_a_located_error(text, message):
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(text, "m.rnn")
    d = info.value.diagnostics[0]
    assert message in d.message, d.message
    assert d.location is not None and d.location.line >= 1


@pytest.mark.parametrize("optimize", [False, True])
def test_each_index_runs_its_own_length_and_gradients_match(optimize):
    m = rnngraph.load(EXAMPLE)
    net = m.compile(optimize=optimize)
    point = _point(net, m)
    outs, pullback = net.vjp(*point)
    assert outs["h"].shape == (TX, B, 8) and outs["s"].shape == (TU, B, 8)
    assert outs["L"].shape == (TU, B, 1) and outs["C"].shape == (B, 8)
    assert np.array_equal(outs["C"], outs["h"][-1])
    grads = pullback({"L": np.ones_like(outs["L"])})
    assert grads["x"].shape == (TX, B, 4) and set(grads) >= set(net.param_shapes)
    rng = np.random.default_rng(2)
    cot = {k: rng.normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, point, cot, seed=3) < 1e-6


def test_the_lengths_come_from_the_inputs_or_from_steps():
    m = rnngraph.load(EXAMPLE)
    net = m.compile()
    params, inputs, _ = _point(net, m)
    free = net.forward(params, {"x": inputs["x"]}, mode="free", steps={"u": 4})
    assert free["s"].shape == (4, B, 8) and free["h"].shape == (TX, B, 8)
    with pytest.raises(RnnGraphError, match=r"no input is read at the steps of u: give their "
                                            r"number, steps=\{'u': n\}"):
        net.forward(params, {"x": inputs["x"]}, mode="free")
    with pytest.raises(RnnGraphError, match="steps=4 for u, but input 'y' has 3 steps"):
        net.forward(params, inputs, steps={"u": 4})
    with pytest.raises(RnnGraphError, match="unknown index 'v'"):
        net.forward(params, inputs, steps={"v": 4})


def test_running_free_feeds_the_decoder_its_own_output():
    m = rnngraph.load(EXAMPLE)
    net = m.compile()
    params, inputs, _ = _point(net, m)
    free = net.forward(params, {"x": inputs["x"]}, mode="free", steps={"u": TU})
    C = free["h"][-1]
    s = np.tanh(C @ params["W_c"].T + params["b_c"])
    o = np.zeros((B, 5))
    for u in range(TU):
        s = np.tanh(s @ params["A"].T + o @ params["B"].T + C @ params["D"].T + params["e"])
        z = s @ params["V"].T + params["c"]
        o = np.exp(z - z.max(-1, keepdims=True))
        o /= o.sum(-1, keepdims=True)
        assert np.allclose(free["o"][u], o)


def test_the_encoder_decoder_matches_pytorch_autograd():
    """The same equations written with torch in float64: outputs and every gradient."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference: pip install torch==2.13.0")
    m = rnngraph.load(EXAMPLE)
    net = m.compile(optimize=True)
    params, inputs, initial = _point(net, m, seed=4)
    outs, pullback = net.vjp(params, inputs, initial)
    grads = pullback({"L": np.ones_like(outs["L"])})
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(inputs["x"], requires_grad=True)
    y = torch.tensor(inputs["y"])
    h0 = torch.tensor(initial["h(0)"], requires_grad=True)
    h = h0
    hs = []
    for t in range(TX):
        h = torch.tanh(h @ P["W"].T + x[t] @ P["U"].T + P["b"])
        hs.append(h)
    C = h
    s = torch.tanh(C @ P["W_c"].T + P["b_c"])
    prev = torch.zeros_like(y[0])
    losses = []
    for u in range(TU):
        s = torch.tanh(s @ P["A"].T + prev @ P["B"].T + C @ P["D"].T + P["e"])
        logp = torch.log_softmax(s @ P["V"].T + P["c"], -1)
        losses.append(-(y[u] * logp).sum(-1, keepdim=True))
        prev = y[u]
    total = torch.stack(losses).sum()
    total.backward()
    assert np.allclose(outs["L"], torch.stack(losses).detach().numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(outs["C"], C.detach().numpy(), rtol=1e-12, atol=1e-12)
    for k, p in P.items():
        assert np.allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12), k
    assert np.allclose(grads["x"], x.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(grads["h(0)"], h0.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_the_drawing_is_figure_10_12(tmp_path, capsys):
    """Encoder columns, the context C above the encoder's last step, then the decoder's
    columns, each index as many steps as asked; what it draws is what the code computes:
    C from h at the encoder's last step, s(0) from C, every s(u) reading C."""
    m = rnngraph.load(EXAMPLE)
    d = drawing_of(m, unroll={"t": 4, "u": 3})
    col = {nid: i["col"] for nid, i in d.nodes.items()}
    assert [col[f"h.{k}"] for k in range(1, 5)] == [1, 2, 3, 4]
    assert col["C"] == 4 and col["s.0"] == 5 and [col[f"s.{k}"] for k in (1, 2, 3)] == [6, 7, 8]
    edges = {(e["tail"], e["head"]) for e in d.edges}
    assert ("h.4", "C") in edges and ("C", "s.0") in edges
    assert all(("C", f"s.{k}") in edges for k in (1, 2, 3))
    shown = {nid: i["shown"] for nid, i in d.nodes.items()}
    assert shown["s.3"] == "(3)" and shown["h.4"] == "(4)"
    out = tmp_path / "s2s.svg"
    assert main(["draw", str(EXAMPLE), "--unroll", "t=4,u=3", "-o", str(out)]) == 0
    assert out.read_bytes().count(b"<g id=\"node") == len(d.nodes)
    assert main(["draw", str(EXAMPLE), "--unroll", "t=4,v=3", "-o", str(out)]) == 2
    assert "'v' is not an index of this model" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["seq2seq", "sequence_summary", "halting"])
@pytest.mark.parametrize("steps", [None, 3])
def test_the_tikz_of_the_new_constructs_is_plain_latex(name, steps):
    """(τ), τ−2 and →(0) become \\tau and \\to: pdflatex reads no Unicode in math."""
    from rnngraph.render import draw
    m = rnngraph.load(EXAMPLE.parent / f"{name}.rnn")
    tex = draw(m, steps, format="tex").decode()
    assert tex.isascii(), [c for c in tex if not c.isascii()][:5]
    if name == "seq2seq" and steps is None:
        assert r"W_{c}\,{\scriptstyle \to (0)}" in tex and r"{\scriptstyle (\tau)}" in tex


def test_the_folded_drawing_shows_what_the_initial_value_reads():
    """C -> s through W_c, marked as feeding s(0), beside C -> s through D at every step."""
    d = drawing_of(rnngraph.load(EXAMPLE))
    into_s = sorted((e["weight"], e["extra"]) for e in d.edges if (e["tail"], e["head"]) == ("C", "s"))
    assert into_s == [("D", None), ("W_c", "→(0)")]


@pytest.mark.parametrize("optimize", [False, True])
def test_a_transposed_vector_times_a_vector_is_their_dot_product(optimize):
    """Luong's score s^T h, here within one index: one number a row, which scales a vector."""
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nq(t) = tanh(Q x(t))\ne(t) = q(t)^T h(t)\n"
                       "o(t) = e(t) * h(t)\nx: 3, h: 4")
    assert m.sizes["e"] == 1 and "e(t) = q(t)^T h(t)" in m.to_text()
    # (braced: LaTeX refuses q^{(t)}^{\top}, a double superscript)
    assert r"e^{(t)} &= {q^{(t)}}^{\top} h^{(t)}" in m.to_latex()
    net = m.compile(optimize=optimize)
    point = (net.init_params(seed=0), {"x": np.random.default_rng(0).normal(size=(4, 2, 3))}, {})
    outs, _ = net.vjp(*point)
    assert np.allclose(outs["e"], (outs["q"] * outs["h"]).sum(-1, keepdims=True))
    assert np.allclose(outs["o"], outs["e"] * outs["h"])
    cot = {k: np.random.default_rng(1).normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, point, cot, seed=2) < 1e-6
    with pytest.raises(RnnGraphError, match="only a matrix can be transposed, or a vector in a "
                                            "dot product u.T v or an outer product u v.T; h.t. is "
                                            "not a matrix"):
        rnngraph.parse("h(t) = x(t)\no(t) = h(t)^T + x(t)\n")


def test_a_dot_product_is_drawn_as_two_reads():
    """q(t)^T h(t): both feed e, neither labels the other's edge (a weight q^T would say q
    is a matrix); w^T h(t) with w a parameter stays a weight."""
    g = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nq(t) = tanh(Q x(t))\ne(t) = q(t)^T h(t)\n"
                       "p(t) = sigmoid(w^T h(t))\nx: 3, h: 4, p: 1").graph()
    into = {v: sorted((u, d["weight"]) for u, w, d in g.in_edges(v, data=True)) for v in ("e", "p")}
    assert into == {"e": [("h", None), ("q", None)], "p": [("h", "w")]}


MEAN_CONTEXT = """\
index u
h(t) = tanh(W h(t-1) + U x(t) + b)
C = mean_t(h(t))
s(0) = tanh(W_c C + b_c)
s(u) = tanh(A s(u-1) + D C + e)
x: 3, h: 4, s: 5
"""


@pytest.mark.parametrize("optimize", [False, True])
def test_a_mean_over_the_steps_is_a_context_the_decoder_reads(optimize):
    """C = mean_t(h(t)), the encoder's states averaged, read by s(0) and every s(u); drawn
    right of the encoder's last step, before the decoder."""
    m = rnngraph.parse(MEAN_CONTEXT)
    net = m.compile(optimize=optimize)
    point = (net.init_params(seed=0), {"x": np.random.default_rng(0).normal(size=(5, 2, 3))}, {})
    outs, _ = net.vjp(*point, steps={"u": 3})
    assert np.allclose(outs["C"], outs["h"].mean(0))
    assert outs["s"].shape == (3, 2, 5)
    cot = {k: np.random.default_rng(1).normal(size=v.shape) for k, v in outs.items()}
    rng = np.random.default_rng(3)
    _, pullback = net.vjp(*point, steps={"u": 3})
    grads = pullback(cot)
    d = rng.normal(size=point[1]["x"].shape)
    f = lambda e: sum(float((cot[k] * v).sum()) for k, v in net.forward(  # noqa: E731
        point[0], {"x": point[1]["x"] + e * d}, steps={"u": 3}).items())
    assert np.isclose((f(1e-6) - f(-1e-6)) / 2e-6, float((grads["x"] * d).sum()), rtol=1e-6)
    col = {nid: i["col"] for nid, i in drawing_of(m, unroll=3).nodes.items()}
    assert col["h.3"] < col["C"] <= col["s.0"] < col["s.1"]


def test_what_a_sum_over_the_steps_feeds_cannot_read_it():
    with pytest.raises(RnnGraphError, match=r"h\(t\) reads C, a mean over every step of t, but C is "
                                            r"computed from what h\(t\) feeds"):
        rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t) + V C)\nC = mean_t(h(t))\n")


@pytest.mark.parametrize("steps,message", [
    ({"u": -1}, "steps['u'] must be a whole number of steps, 0 or more, not -1"),
    ({"u": 2.0}, "steps['u'] must be a whole number of steps, 0 or more, not 2.0"),
    ({"u": True}, "steps['u'] must be a whole number of steps, 0 or more, not True"),
    ({"u": [3]}, "steps['u'] must be a whole number of steps, 0 or more, not [3]"),
    ({"v": 2}, "unknown index 'v' (the indices are: t, u)"),
])
def test_a_wrong_number_of_steps_is_refused_with_a_message(steps, message):
    net = rnngraph.load(EXAMPLE).compile()
    with pytest.raises(RnnGraphError) as info:
        net.forward(net.init_params(seed=0), {"x": np.zeros((4, 2, 4))}, mode="free", steps=steps)
    assert message in str(info.value)


def test_a_model_of_one_index_takes_its_steps_as_a_dict_too():
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + b + r * t / end)\nh: 2").compile()
    assert m.forward(m.init_params(seed=0), {}, steps={"t": 3})["h"].shape == (3, 2)


def test_an_index_is_not_a_variable():
    with pytest.raises(RnnGraphError, match=r"'u' is declared an index \(line 1\), not a variable: "
                                            r"it cannot be read as u\(t\)"):
        rnngraph.parse("index u\nh(t) = tanh(W h(t-1) + U x(t) + V u(t))\n")


def test_the_op_view_draws_an_initial_value_read_from_a_sum_over_the_steps(tmp_path):
    from rnngraph.cli import main as cli
    src = tmp_path / "m.rnn"
    src.write_text("x: 2, h: 3, s: 3\nh(t) = tanh(W h(t-1) + U x(t))\nC = mean_t(h(t))\n"
                   "s(0) = tanh(P C)\ns(t) = tanh(A s(t-1))\n")
    for extra in ([], ["--unroll", "2"]):
        assert cli(["draw", str(src), "--detail", "ops", "-o", str(tmp_path / "o.svg"), *extra]) == 0


@pytest.mark.parametrize("optimize", [False, True])
def test_a_time_free_value_of_size_1_fills_its_declared_size(optimize):
    """S = x(end)^T q(end) (a dot product, one number) with S: 3 is that number in each of
    S's 3 lanes, as h(t) = x(t)^T q(t) with h: 3 is (the value's array had 1 lane, and the
    product with S failed); and softmax(h(end)) reads a vector (it was refused as a number)."""
    m = rnngraph.parse("S = (x(end)^T q(end)) * -2\nz(t) = tanh(V S + U x(t))\n"
                       "p = softmax(z(end))\nx: 3, q: 3, S: 3, z: 2\n")
    net = m.compile(optimize=optimize)
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    point = (net.init_params(seed=0), {"x": x, "q": q}, {})
    outs, _ = net.vjp(*point)
    assert outs["S"].shape == (2, 3)
    assert np.allclose(outs["S"], -2 * (x[-1] * q[-1]).sum(-1, keepdims=True))
    cot = {k: rng.normal(size=v.shape) for k, v in outs.items()}
    assert worst_directional_error(net, point, cot, seed=1) <= 1e-7
