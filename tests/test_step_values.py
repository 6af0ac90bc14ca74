"""The step number and the number of steps as values: ``t`` and ``end`` (the book's tau).

Section 10.2.4 of the Deep Learning book: an extra input tau - t, the steps left, tells the
recurrence how near the end it is (examples/halting.rnn, with a Bernoulli halting output).
``mean_t`` divides a sum over the steps by their number.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "halting.rnn"


def test_step_values_read_back_and_print_as_the_book():
    m = rnngraph.load(EXAMPLE)
    assert "r * (end - t)" in m.to_text() and rnngraph.parse(m.to_text()) == m
    assert r"r \left(\tau - t\right)" in m.to_latex()
    total = rnngraph.parse(m.to_text() + "J = mean_t(L(t) + L_halt(t))\n")
    assert r"J &= \frac{1}{\tau} \sum_{t}" in total.to_latex()
    assert total.symbols["J"].over == "t" and total.symbols["J"].loss


@pytest.mark.parametrize("text,message", [
    ("h(t) = x(t)\nC = t + h(end)\n", "'t' is the step number: 'C' has no time index, so it has none"),
    ("h(t) = x(t)\nh(0) = end\n", "'end' is the number of steps: h(0) has no time index"),
    ("index u\nh(t) = u * x(t)\n", "'u' is the step number of u; h(t) runs over t"),
])
def test_a_step_value_where_there_is_no_step_is_a_located_error(text, message):
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(text, "m.rnn")
    assert message in info.value.diagnostics[0].message


@pytest.mark.parametrize("optimize", [False, True])
def test_the_steps_left_and_the_mean_are_what_they_say(optimize):
    m = rnngraph.parse("index u\no(t) = w * (end - t) + x(t)\nJ = mean_t(o(t))\n"
                       "s(u) = 0.5 * u * q + s(u-1)\nx: 2, s: 2")
    net = m.compile(optimize=optimize)
    params = net.init_params(seed=0)
    T, U = 5, 3
    x = np.random.default_rng(0).normal(size=(T, 1, 2))
    outs = net.forward(params, {"x": x}, steps={"u": U})
    want = params["w"] * (T - np.arange(1, T + 1))[:, None, None] + x
    assert np.allclose(outs["o"], want)
    assert np.allclose(outs["J"], want.mean(0))
    s = np.cumsum(0.5 * np.arange(1, U + 1)[:, None] * params["q"], 0)
    assert np.allclose(outs["s"][:, 0], s)


@pytest.mark.parametrize("optimize", [False, True])
def test_a_size_1_sequence_added_to_a_vector_gets_its_gradient(optimize):
    """Its cotangent is summed over the lanes, not over the steps: the optimized path's
    every-step block summed it over the steps (a size-1 term of t found it)."""
    m = rnngraph.parse("h(t) = tanh(3 + 0.25 * t * b) + W h(t-1)\nh: 2, b: 1")
    net = m.compile(optimize=optimize)
    params = net.init_params(seed=1)
    outs, pullback = net.vjp(params, {}, steps=4)
    grads = pullback({"h": np.ones_like(outs["h"])})
    eps = 1e-6
    moved = [net.forward({**params, "b": params["b"] + s * eps}, {}, steps=4)["h"].sum()
             for s in (1, -1)]
    assert np.isclose(grads["b"][0], (moved[0] - moved[1]) / (2 * eps), rtol=1e-6)


def test_the_steps_left_are_drawn_as_an_input_at_each_step():
    """tau - t beside x at every step, tau - k at step k, into h: what h reads."""
    from rnngraph.render import drawing_of
    d = drawing_of(rnngraph.load(EXAMPLE), unroll=3)
    steps = {nid: i for nid, i in d.nodes.items() if i["name"] == "end - t"}
    assert sorted(i["label"] for i in steps.values()) == ["<τ−1>", "<τ−2>", "<τ−3>"]
    assert {(e["tail"], e["head"]) for e in d.edges if e["tail"] in steps} == \
        {(f"end - t.{k}", f"h.{k}") for k in (1, 2, 3)}
    folded = drawing_of(rnngraph.load(EXAMPLE))
    assert [i["label"] for i in folded.nodes.values() if i["name"] == "end - t"] == ["<τ−t>"]


def test_the_halting_example_learns_where_to_stop_from_its_gradients():
    """Central differences along random directions on both paths, the halting unit included."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_random_models import worst_directional_error
    m = rnngraph.load(EXAMPLE)
    for optimize in (False, True):
        net = m.compile(optimize=optimize)
        rng = np.random.default_rng(0)
        T, B = 6, 2
        d = np.zeros((T, B, 1))
        d[-1] = 1
        point = (net.init_params(seed=0), {"x": rng.normal(size=(T, B, 4)),
                                           "y": np.eye(5)[rng.integers(0, 5, (T, B))], "d": d}, {})
        outs, _ = net.vjp(*point)
        cot = {k: rng.normal(size=v.shape) for k, v in outs.items()}
        assert worst_directional_error(net, point, cot, seed=1) < 1e-6


@pytest.mark.parametrize("optimize", [False, True])
def test_a_step_value_juxtaposed_scales(optimize):
    """t x(t) and (end - t) h(t-1), written as products, scale as t * x(t) does (the
    property tests' mutation 't y(t)' was an internal error)."""
    net = rnngraph.parse("h(t) = tanh(W h(t-1) + t x(t) + (end - t) h(t-1))\nx: 3, h: 3").compile(
        dtype="float64", optimize=optimize)
    ref = rnngraph.parse("h(t) = tanh(W h(t-1) + t * x(t) + (end - t) * h(t-1))\nx: 3, h: 3"
                         ).compile(dtype="float64", optimize=optimize)
    params = net.init_params(seed=0)
    x = {"x": np.random.default_rng(0).normal(size=(4, 2, 3))}
    assert np.array_equal(net.forward(params, x)["h"], ref.forward(params, x)["h"])
