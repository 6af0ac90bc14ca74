"""Teacher forcing (Deep Learning book, 10.2.1, figure 10.6): ``free y -> o``.

Trained, the model reads the target y(t-1); running free (at test time) it reads its own
output o(t-1) in its place.  One file gives both: the language line, the free-running
model, ``forward``/``vjp`` with ``mode="free"``, and ``rnngraph draw --mode train|test|both``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.render import draw, drawing_of
from rnngraph.render.stats import measure

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "teacher_forcing.rnn"
T, B = 6, 2


def _point(net, seed=0):
    rng = np.random.default_rng(seed)
    params = net.init_params(seed=seed)
    inputs = {"x": rng.normal(size=(T, B, 4)), "y": np.eye(3)[rng.integers(0, 3, size=(T, B))]}
    return params, inputs


def test_the_line_reads_back_and_names_the_swap():
    m = rnngraph.load(EXAMPLE)
    assert m.free == {"y": "o"}
    assert rnngraph.parse(m.to_text()) == m and "free y -> o" in m.to_text()
    free = m.free_running()
    assert "R o(t-1)" in free.to_text() and "y(t-1)" not in free.to_text()
    assert "cross_entropy(o(t), y(t))" in free.to_text()          # the target stays the target
    assert "running free (test): o(t-1) is read where training reads the target y(t-1)" in m.summary()


@pytest.mark.parametrize("text,message", [
    ("x: 2\nh(t) = tanh(W x(t))\nfree x -> h\n", "never reads 'x' at an earlier step"),
    ("x: 2, h: 3, y: 2\nh(t) = tanh(W h(t-1) + U x(t) + R y(t-1))\nfree y -> h\n",
     "'y' has size 2 but 'h' has size 3"),
    ("h(t) = tanh(W h(t-1) + R y(t-1))\nfree y -> z\n", "'z' is not a sequence the model defines"),
    ("h(t) = tanh(W h(t-1) + R y(t-1))\nfree h -> h\n", "'h' is not an input read at a time step"),
])
def test_a_wrong_free_line_is_a_located_error(text, message):
    with pytest.raises(RnnGraphError, match=re.escape(message)) as err:
        rnngraph.parse(text)
    assert err.value.diagnostics[0].location.line == text.count("\n")


@pytest.mark.parametrize("optimize", [True, False])
def test_running_free_reads_its_own_output(optimize):
    m = rnngraph.load(EXAMPLE)
    net = m.compile(optimize=optimize)
    p, inputs = _point(net)
    trained = net.forward(p, inputs)
    free = net.forward(p, inputs, mode="free")
    h, o = np.zeros((B, 8)), np.zeros((B, 3))              # the book's test-time graph, by hand
    y_prev = np.zeros((B, 3))
    for t in range(T):
        h_free = np.tanh(h @ p["W"].T + inputs["x"][t] @ p["U"].T + o @ p["R"].T + p["b"])
        z = h_free @ p["V"].T + p["c"]
        o = np.exp(z - z.max(-1, keepdims=True))
        o /= o.sum(-1, keepdims=True)
        assert np.allclose(free["o"][t], o, rtol=1e-12, atol=1e-14)
        h = h_free
    assert np.allclose(trained["o"][0], free["o"][0])       # step 1: y(0) and o(0) are both zero
    assert not np.allclose(trained["o"][2], free["o"][2])
    # teacher forcing, as written: y(t-1) from the data
    h = np.zeros((B, 8))
    for t in range(T):
        h = np.tanh(h @ p["W"].T + inputs["x"][t] @ p["U"].T + y_prev @ p["R"].T + p["b"])
        y_prev = inputs["y"][t]
    assert np.allclose(trained["h"][-1], h, rtol=1e-12)


@pytest.mark.parametrize("optimize", [True, False])
def test_running_free_gradients_match_central_differences(optimize):
    net = rnngraph.load(EXAMPLE).compile(optimize=optimize)
    p, inputs = _point(net, seed=2)
    outs, pullback = net.vjp(p, inputs, mode="free")
    grads = pullback({"L": np.ones_like(outs["L"])})
    rng = np.random.default_rng(3)
    for name in p:                    # R now carries the gradient through the outputs fed back
        d = rng.normal(size=p[name].shape)
        f = lambda e: float(net.forward({**p, name: p[name] + e * d}, inputs, mode="free")["L"].sum())  # noqa: E731
        numeric = (f(1e-6) - f(-1e-6)) / 2e-6
        assert abs(numeric - float((grads[name] * d).sum())) <= 1e-6 * max(1.0, abs(numeric)), name


def test_mode_free_without_a_free_line_is_refused():
    net = rnngraph.parse("x: 2, h: 3\nh(t) = tanh(W h(t-1) + U x(t))\n").compile()
    p = net.init_params()
    with pytest.raises(RnnGraphError, match="has no 'free y -> o' line"):
        net.forward(p, {"x": np.zeros((2, 2))}, mode="free")
    with pytest.raises(RnnGraphError, match="mode must be 'train' or 'free'"):
        net.forward(p, {"x": np.zeros((2, 2))}, mode="test")


def test_the_drawings_show_what_each_mode_computes():
    m = rnngraph.load(EXAMPLE)
    train, test = drawing_of(m, 3, "train"), drawing_of(m, 3, "test")
    into_h = lambda d: sorted((d.nodes[e["tail"]]["name"], d.nodes[e["tail"]]["t"])  # noqa: E731
                              for e in d.edges if e["head"] == "h.2")
    assert into_h(train) == [("h", 1), ("x", 2), ("y", 1)]   # the target, as trained
    assert into_h(test) == [("h", 1), ("o", 1), ("x", 2)]    # its own output, as compiled free
    both = drawing_of(m, 3, "both")
    assert {i["part"] for i in both.nodes.values()} == {0, 1}
    f = measure(both)
    assert (f["through_nodes"], f["node_overlaps"], f["label_overlaps"], f["detached_edges"]) == (0, 0, 0, 0)
    assert f["column_error"] <= 0.02 and f["row_error"] <= 0.5
    svg = draw(m, 3, mode="both").decode()
    assert "training: teacher forcing" in svg and "test: running free" in svg


def test_cli_mode(tmp_path, capsys):
    out = tmp_path / "tf.svg"
    assert main(["draw", str(EXAMPLE), "--unroll", "3", "--mode", "both", "-o", str(out)]) == 0
    assert "running free" in out.read_text()
    plain = Path(__file__).resolve().parent.parent / "examples" / "elman.rnn"
    assert main(["draw", str(plain), "--mode", "test", "-o", str(tmp_path / "e.svg")]) == 2
    assert "has no 'free y -> o' line" in capsys.readouterr().err


def test_running_free_with_no_target_generates():
    # a language model: no input but its own past output; given no target, running free
    # generates `steps` steps, its loss left out (the loss needs the target)
    m = rnngraph.parse("h: 4, o: 3\nh(t) = tanh(W h(t-1) + R y(t-1) + b)\no(t) = softmax(V h(t) + c)\n"
                       "L(t) = cross_entropy(o(t), y(t))\nfree y -> o\n")
    assert [e.name for e in m.generating().equations] == ["h", "o"]
    for optimize in (True, False):
        net = m.compile(optimize=optimize)
        p = net.init_params(seed=1)
        out = net.forward(p, {}, mode="free", steps=5)
        assert sorted(out) == ["h", "o"] and out["o"].shape == (5, 3)
        h, o = np.zeros(4), np.zeros(3)
        for t in range(5):
            h = np.tanh(h @ p["W"].T + o @ p["R"].T + p["b"])
            z = h @ p["V"].T + p["c"]
            o = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            assert np.allclose(out["o"][t], o, rtol=1e-12)
        with_target = net.forward(p, {"y": np.eye(3)[[0, 1, 2, 0, 1]]}, mode="free")
        assert np.allclose(with_target["o"], out["o"]) and "L" in with_target
        with pytest.raises(RnnGraphError, match="prepared for training"):
            net.forward(net.prepare(p), {}, mode="free", steps=5)
