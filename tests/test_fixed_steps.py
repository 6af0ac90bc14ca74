"""Reads at a fixed step: ``h(end)`` (the last step, the book's h^(tau)) and ``h(1)``.

A time-free value computed from them runs after the loop that computes h (the book's
figure 10.5, a sequence summarised by one output at its end; an encoder's context
``C = h(end)``), an initial value may read them (``s(0) = tanh(W_c C + b)``), and so may a
later loop at every step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sequence_summary.rnn"

DECODER = """\
h(t) = tanh(W h(t-1) + U x(t) + b)
C = h(end)
s(0) = tanh(W_c C + b_c)
s(t) = tanh(A s(t-1) + D C + E h(1))
x: 3, h: 4, s: 5
"""


def test_fixed_steps_read_back_and_print_as_the_book():
    m = rnngraph.parse(DECODER)
    assert "C = h(end)" in m.to_text() and "E h(1)" in m.to_text()
    assert rnngraph.parse(m.to_text()) == m
    latex = m.to_latex()
    assert r"C &= h^{(\tau)}" in latex and r"h^{(1)}" in latex


@pytest.mark.parametrize("text,message,col", [
    ("h(t) = tanh(W h(t-1) + V h(end) + x(t))\n", "h(t) reads h(end), but h is computed from itself", 26),
    ("C = h(end)\nh(t) = tanh(W h(t-1) + C + x(t))\n", "C reads h(end), but h is computed from what C feeds", 5),
    ("h(t) = tanh(W h(t-1) + x(t))\ns(0) = h(end)\ns(t) = tanh(A s(t-1) + h(t))\nh2(t) = s(end)\n"
     "g(t) = h2(t) + h(t)\n", None, None),
    ("h(t) = tanh(W h(t-1) + x(t))\nC = h(end)\no = C(end)\n", "'C' has no time index", 5),
    ("parameter a\nh(t) = tanh(W h(t-1) + x(t)) + a(end)\n", "'a' is declared a parameter", 32),
    ("h(t) = x(end-1)\n", "a step counted from it", 10),
    ("h(t) = x(0.5)\n", "a fixed step is a whole number from 1", 10),
    ("h(end) = x(t)\n", "only an initial value h(0) is defined at a step", 1),
    ("C = end\n", "'end' is the number of steps: 'C' has no time index", 5),
])
def test_a_wrong_fixed_step_is_a_located_error(text, message, col):
    if message is None:                         # a valid chain of last steps: no error
        rnngraph.parse(text)
        return
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(text, "m.rnn")
    d = info.value.diagnostics[0]
    assert message in d.message, d.message
    assert d.location.column == col


@pytest.mark.parametrize("optimize", [False, True])
def test_what_is_read_at_a_fixed_step_is_that_step(optimize):
    """The compiled C is h at step T, h(1) is step 1, and the drawing draws C's edge from
    h's last column (what the diagram shows is what the code computes)."""
    m = rnngraph.parse(DECODER)
    net = m.compile(optimize=optimize)
    rng = np.random.default_rng(0)
    params = net.init_params(seed=0)
    T, B = 5, 2
    outs = net.forward(params, {"x": rng.normal(size=(T, B, 3))})
    assert np.array_equal(outs["C"], outs["h"][T - 1])
    s0 = np.tanh(outs["C"] @ params["W_c"].T + params["b_c"])
    s1 = np.tanh(s0 @ params["A"].T + outs["C"] @ params["D"].T + outs["h"][0] @ params["E"].T)
    assert np.allclose(outs["s"][0], s1)
    g = m.unroll(3)
    assert [u for u, v in g.in_edges(("C", None))] == [("h", 3)]
    assert sorted(u for u, v in g.in_edges(("s", 0))) == [("C", None)]
    assert ("h", 1) in {u for u, v in g.in_edges(("s", 2))}


def test_a_sequence_too_short_for_its_fixed_step_is_refused():
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\no = V h(end) + Q h(3)\nx: 2, h: 3, o: 2")
    net = m.compile()
    params = net.init_params(seed=0)
    with pytest.raises(RnnGraphError, match=r"reads h\(3\), but the sequence has 2 steps"):
        net.forward(params, {"x": np.zeros((2, 1, 2))})
    net.forward(params, {"x": np.zeros((3, 1, 2))})
    with pytest.raises(RnnGraphError, match=r"reads h\(end\), but the sequence has 0 steps"):
        net = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\no = V h(end)\nx: 2, h: 3, o: 2").compile()
        net.forward(net.init_params(seed=0), {"x": np.zeros((0, 1, 2))})


def test_the_summary_example_is_figure_10_5():
    """One output at the end: the values after the loop are drawn above its last step."""
    m = rnngraph.load(EXAMPLE)
    assert {n for n, s in m.symbols.items() if not s.timed and s.role != "parameter"} == \
        {"o", "y_hat", "L", "y"}
    from rnngraph.render import drawing_of
    d = drawing_of(m, unroll=4)
    cols = {i["name"]: i["col"] for i in d.nodes.values() if i["t"] in (None, 4)}
    assert cols["o"] == cols["y_hat"] == cols["L"] == cols["h"] == 4
