"""The checked model: roles, directions, sizes, graphs, IR, printers; reading a file."""
import io
import os
import re
import signal
import sys

import networkx as nx
import pytest

import rnngraph
from rnngraph.check.limits import Limits
from rnngraph import RnnGraphError

from conftest import EXAMPLES


def roles(model):
    return {role: model.role(role) for role in ("input", "sequence", "state", "value", "parameter")
            if model.role(role)}


# -- every example, its roles and recurrent states -------------------------------

EXPECTED_ROLES = {
    "exercise": {"input": ["x"], "state": ["h1", "h2", "y"],
                 "parameter": ["U", "V", "W", "b", "R", "S", "T", "c", "P", "Q", "d"]},
    "elman": {"input": ["x", "target"], "sequence": ["a", "o", "y", "L"], "state": ["h"],
              "parameter": ["b", "W", "U", "c", "V"]},
    "bidirectional": {"input": ["x"], "sequence": ["o"], "state": ["h", "g"],
                      "parameter": ["W_h", "U_h", "b_h", "W_g", "U_g", "b_g", "V_h", "V_g", "c"]},
    # h is read only at the same step: a sequence; the recurrence runs through o
    "output_recurrence": {"input": ["x"], "sequence": ["h"], "state": ["o"],
                          "parameter": ["W", "U", "b", "V", "c"]},
    "tdnn": {"input": ["x"], "sequence": ["y"], "parameter": ["K0", "K1", "K2", "b"]},
    "autoencoder": {"input": ["x"], "value": ["h", "x_hat"], "parameter": ["W1", "b1", "b2"]},
    "torch_gru": {"input": ["x"], "sequence": ["r", "z", "n"], "state": ["h"],
                  "parameter": ["W_ir", "b_ir", "W_hr", "b_hr", "W_iz", "b_iz", "W_hz", "b_hz",
                                "W_in", "b_in", "W_hn", "b_hn"]},
    "lstm_dlbook": {"input": ["x"], "sequence": ["f", "g", "q"], "state": ["s", "h"],
                    "parameter": ["b_f", "U_f", "W_f", "b_g", "U_g", "W_g", "b_o", "U_o", "W_o",
                                  "b", "U", "W"]},
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_checks_round_trips_and_has_all_sizes(path):
    model = rnngraph.load(path)
    assert model.unknown_sizes == []
    assert rnngraph.parse(model.to_text()) == model
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 20          # names the model and its source
    model.ir().check()
    if path.stem in EXPECTED_ROLES:
        assert roles(model) == EXPECTED_ROLES[path.stem]


@pytest.mark.parametrize("stem, states", [
    ("exercise", {"h1": ("forward", 1), "h2": ("forward", 1), "y": ("forward", 1)}),
    ("bidirectional", {"h": ("forward", 1), "g": ("backward", 1)}),
    ("lstm_unicode", {"c": ("forward", 1), "h": ("forward", 1)}),
    ("output_recurrence", {"o": ("forward", 1)}),
])
def test_recurrent_states_have_direction_and_delay(stem, states):
    model = rnngraph.load(f"examples/{stem}.rnn")
    got = {n: (model.symbols[n].direction, model.symbols[n].delay) for n in model.role("state")}
    assert got == states


def test_delay_is_the_largest_offset():
    m = rnngraph.parse("h(t) = tanh(A h(t-1) + B h(t-3) + x(t))")
    assert (m.symbols["h"].direction, m.symbols["h"].delay) == ("forward", 3)


def test_outputs_losses_and_targets():
    m = rnngraph.load("examples/elman.rnn")
    kinds = {n: s.kind for n, s in m.symbols.items() if s.role != "parameter"}
    assert kinds == {"a": "sequence", "h": "state", "o": "sequence", "y": "output", "L": "loss",
                     "x": "input", "target": "target"}


def test_initial_value_is_attached_to_its_state():
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nh(0) = h0")
    assert m.symbols["h"].initial.name == "h"
    assert m.symbols["h0"].role == "parameter"


def test_time_free_input_of_a_timed_model():
    # c is read bare as the vector a matrix multiplies: a time-free input (a context vector)
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + C c + b)")
    assert (m.symbols["c"].role, m.symbols["c"].timed) == ("input", False)
    assert m.symbols["b"].role == "parameter"


# -- sizes -------------------------------------------------------------------------

def test_sizes_are_inferred_from_a_few_declared_ones(exercise):
    m = exercise.with_sizes({"x": 10, "h1": 20, "h2": 30, "y": 5})
    assert m.sizes == {"h1": 20, "h2": 30, "y": 5, "x": 10, "b": 20, "c": 30, "d": 5}
    assert m.param_shapes == {
        "U": (20, 10), "V": (20, 20), "W": (20, 30), "b": (20,), "R": (30, 20), "S": (30, 30),
        "T": (30, 5), "c": (30,), "P": (5, 10), "Q": (5, 30), "d": (5,)}


def test_concatenation_sizes_add_up_both_ways():
    m = rnngraph.load("examples/lstm_concat.rnn")
    assert m.param_shapes["W_f"] == (8, 8 + 4)
    # the other way round: from the matrix's width to the missing part
    m = rnngraph.parse("f(t) = W [h(t-1); x(t)]\nh(t) = f(t)\nh: 8").with_sizes({"f": 8})
    assert m.unknown_sizes[0].message.startswith("size of 'x' is unknown")


def test_tied_weights_give_the_decoder_the_transposed_shape():
    m = rnngraph.load("examples/autoencoder.rnn")
    assert m.param_shapes["W1"] == (3, 6)
    assert m.sizes["x_hat"] == 6


def test_every_unknown_size_is_reported_at_its_equation(exercise):
    with pytest.raises(RnnGraphError) as info:
        exercise.require_sizes()
    got = [(d.line, d.message) for d in info.value.diagnostics]
    assert got == [
        (1, "size of 'h1' is unknown; declare it (h1: 32) or pass it in sizes"),
        (2, "size of 'h2' is unknown; declare it (h2: 32) or pass it in sizes"),
        (3, "size of 'y' is unknown; declare it (y: 32) or pass it in sizes"),
        (1, "size of 'x' is unknown; declare it (x: 32) or pass it in sizes"),
    ]
    assert exercise.with_sizes({"x": 1, "h1": 2, "h2": 3, "y": 4}).require_sizes()


@pytest.mark.parametrize("sizes, message", [
    ({"h_1": 3}, "a size is given for 'h_1', which the model does not have; did you mean 'h1'?"),
    ({"z": 3}, "a size is given for 'z', which the model does not have"),
    ({"x": 0}, "the size of 'x' must be a positive integer, not 0"),
    ({"U": 3}, "'U' is a matrix: declare the sizes of the vectors it maps between"),
])
def test_bad_given_sizes(exercise, sizes, message):
    with pytest.raises(RnnGraphError, match="^error: " + re.escape(message) + "$"):
        exercise.with_sizes(sizes)


def test_given_sizes_override_declared_ones():
    m = rnngraph.load("examples/torch_rnn.rnn", sizes={"h": 16})
    assert m.param_shapes["W_hh"] == (16, 16)
    assert "h: 16" in m.to_text()


# -- graphs ------------------------------------------------------------------------

def edge_set(g):
    return {(u, v, d["delay"], d["weight"]) for u, v, d in g.edges(data=True)}


def test_exercise_folded_graph_exactly(exercise):
    g = exercise.graph()
    assert isinstance(g, nx.MultiDiGraph)
    assert {n: g.nodes[n]["role"] for n in g} == {"h1": "state", "h2": "state", "y": "state", "x": "input"}
    assert edge_set(g) == {
        ("x", "h1", 0, "U"), ("h1", "h1", 1, "V"), ("h2", "h1", 1, "W"),
        ("h1", "h2", 0, "R"), ("h2", "h2", 1, "S"), ("y", "h2", 1, "T"),
        ("x", "y", 0, "P"), ("h2", "y", 0, "Q"),
    }


def test_exercise_unrolled_three_steps_exactly(exercise):
    g = exercise.unroll(3)
    steps = range(1, 4)
    assert set(g.nodes) == ({(n, t) for n in ("x", "h1", "h2", "y") for t in steps}
                            | {("h1", 0), ("h2", 0), ("y", 0)})
    assert {n for n in g if g.nodes[n]["role"] == "initial"} == {("h1", 0), ("h2", 0), ("y", 0)}
    expected = set()
    for t in steps:
        expected |= {
            (("x", t), ("h1", t), 0, "U"), (("h1", t - 1), ("h1", t), 1, "V"),
            (("h2", t - 1), ("h1", t), 1, "W"), (("h1", t), ("h2", t), 0, "R"),
            (("h2", t - 1), ("h2", t), 1, "S"), (("y", t - 1), ("h2", t), 1, "T"),
            (("x", t), ("y", t), 0, "P"), (("h2", t), ("y", t), 0, "Q"),
        }
    assert edge_set(g) == expected


def test_backward_state_reads_boundary_values_after_the_end():
    g = rnngraph.load("examples/bidirectional.rnn").unroll(3)
    assert (("g", 4), ("g", 3)) in {(u, v) for u, v in g.edges()}
    assert g.nodes[("g", 4)]["role"] == "initial"
    assert ("g", 0) not in g and ("h", 0) in g


def test_time_delay_inputs_before_the_start_are_drawn_as_initial_zeros():
    # until issue 19 x(0) and x(-1) were left out, and y(1) looked as if it read x(1) alone
    g = rnngraph.load("examples/tdnn.rnn").unroll(3)
    assert sorted(g.in_edges(("y", 1))) == [(("x", -1), ("y", 1)), (("x", 0), ("y", 1)), (("x", 1), ("y", 1))]
    assert g.nodes[("x", 0)]["role"] == g.nodes[("x", -1)]["role"] == "initial"
    assert {u for u, _ in g.in_edges(("y", 3))} == {("x", 1), ("x", 2), ("x", 3)}


def test_edges_record_weights_transposes_and_concatenations():
    g = rnngraph.load("examples/autoencoder.rnn").graph()
    assert {(u, v, d["weight"], d["transpose"]) for u, v, d in g.edges(data=True)} == {
        ("x", "h", "W1", False), ("h", "x_hat", "W1", True)}
    g = rnngraph.load("examples/lstm_concat.rnn").graph()
    # each part of [h(t-1); x(t)] meets its own block of W_f: not W_f twice, which reads as tied
    assert ("x", "f", 0, "W_f[x]") in edge_set(g) and ("h", "f", 1, "W_f[h]") in edge_set(g)
    g = rnngraph.load("examples/torch_gru.rnn").graph()
    assert {e for e in edge_set(g) if e[1] == "h"} == {
        ("z", "h", 0, None), ("n", "h", 0, None), ("h", "h", 1, None)}


def test_unroll_rejects_a_bad_step_count(exercise):
    with pytest.raises(ValueError, match="steps must be a positive integer, not 0"):
        exercise.unroll(0)


# -- op-level IR ---------------------------------------------------------------------

def test_op_graph_has_a_node_per_primitive(exercise):
    g = exercise.op_graph()
    ops = [g.nodes[n]["op"] for n in g if g.nodes[n]["kind"] == "op"]
    # h1, h2: 3 products, 3 sums, tanh each; y: 2 products, 2 sums, softmax
    assert sorted(ops) == sorted(["matmul"] * 8 + ["add"] * 8 + ["tanh"] * 2 + ["softmax"])
    assert nx.is_directed_acyclic_graph(g)
    assert {n for n in g if g.nodes[n]["kind"] == "var"} == {"h1(t)", "h2(t)", "y(t)"}
    assert {n for n in g if g.nodes[n]["kind"] == "read"} == {"x(t)", "h1(t-1)", "h2(t-1)", "y(t-1)"}


def test_a_step_orders_equations_by_same_step_dependencies():
    from rnngraph.check.analysis import step_order
    m = rnngraph.parse("y(t) = V h(t)\nh(t) = tanh(W h(t-1) + U x(t))\nx: 2, h: 3, y: 2")
    assert [e.name for e in step_order(m)] == ["h", "y"]
    written = [e.out.name for b in m.ir().blocks for e in b.eqns]  # the compiler's IR follows it
    assert [n for n in written if not n.startswith("%")] == ["h", "y"]


def test_ir_check_names_the_failing_equation():
    from rnngraph.compile.program import Block, Eqn, Home, Program, Tmp
    bad = Program([Block("once", [Eqn(Tmp("%1"), "tanh", (Tmp("%2"),)),
                                  Eqn(Home("a"), "copy", (Tmp("%1"),))])])
    with pytest.raises(AssertionError, match=r"%2 used before it is bound:\n> %1 = tanh %2"):
        bad.check()


# -- printers ------------------------------------------------------------------------

def test_latex_of_the_exercise(exercise):
    assert exercise.to_latex() == (
        "\\begin{aligned}\n"
        "h_{1}^{(t)} &= \\tanh\\left(U x^{(t)} + V h_{1}^{(t-1)} + W h_{2}^{(t-1)} + b\\right) \\\\\n"
        "h_{2}^{(t)} &= \\tanh\\left(R h_{1}^{(t)} + S h_{2}^{(t-1)} + T y^{(t-1)} + c\\right) \\\\\n"
        "y^{(t)} &= \\operatorname{softmax}\\left(P x^{(t)} + Q h_{2}^{(t)} + d\\right)\n"
        "\\end{aligned}\n")


def test_latex_typesets_sigma_odot_accents_transpose_and_concatenation():
    text = rnngraph.load("examples/lstm_unicode.rnn").to_latex()
    assert r"f^{(t)} &= \sigma\left(W_{f} x^{(t)}" in text
    assert r"f^{(t)} \odot c^{(t-1)} + i^{(t)} \odot \tilde{c}^{(t)}" in text
    assert r"\hat{x} &= W_{1}^{\top} h + b_{2}" in rnngraph.load("examples/autoencoder.rnn").to_latex()
    assert r"W_{f} \begin{bmatrix}h^{(t-1)} \\ x^{(t)}\end{bmatrix}" in \
        rnngraph.load("examples/lstm_concat.rnn").to_latex()
    assert r"\alpha" in rnngraph.parse("h(t) = α * h(t-1) + x(t)").to_latex()
    assert r"h^{(t)} &= 0.5 x^{(t)} + \left(1 - z^{(t)}\right) \odot h^{(t-1)}" in \
        rnngraph.parse("h(t) = 0.5 x(t) + (1 - z(t)) * h(t-1)").to_latex()


def test_load_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.rnn"
    path.write_bytes("h(t) = W x(t)\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(RnnGraphError) as info:
        rnngraph.load(path)
    err = info.value
    assert (err.line, err.column) == (2, 6)
    assert err.message == "the file is not UTF-8: byte 0xe9 cannot be decoded; save it as UTF-8"


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(RnnGraphError, match="^error: cannot read .*nope.rnn: No such file or directory$"):
        rnngraph.load(tmp_path / "nope.rnn")


# -- reading: regular files only, at most 1 MiB; standard input as - ------------------------------
def test_load_reads_at_most_the_limit(tmp_path):
    path = tmp_path / "big.rnn"
    with open(path, "wb") as f:                    # sparse: 2 MiB that take no room
        f.truncate(2 << 20)
    with pytest.raises(RnnGraphError, match="the file is 2,097,152 bytes, more than the limit of "
                                            "1,048,576; raise it with --limit source_bytes=2097152"):
        rnngraph.load(path)
    path.write_text("h(t) = tanh(W h(t-1) + U x(t))\n" + "#" * 100)
    with pytest.raises(RnnGraphError, match="the file is 131 bytes, more than the limit of 100"):
        rnngraph.load(path, limits=Limits(max_source_bytes=100))
    assert rnngraph.load(path, limits=Limits(max_source_bytes=200)).role("state") == ["h"]


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: p.mkdir(), "a folder"),
])
def test_load_refuses_what_is_not_a_regular_file(tmp_path, make, kind, request):
    # A FIFO that no program writes to would block the open forever; nothing waits for it.
    path = tmp_path / "eqs.rnn"
    make(path)

    def hung(*_):
        raise TimeoutError("load waited for a writer")
    signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    request.addfinalizer(lambda: signal.alarm(0))
    hint = "" if kind == "a folder" else "; to read a pipe or a device, give - and redirect it to stdin"
    with pytest.raises(RnnGraphError, match=f"^error: cannot read {re.escape(str(path))}: it is {kind}, "
                                            f"not a regular file{re.escape(hint)}$"):
        rnngraph.load(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_load_refuses_an_endless_device_at_once():
    # Before: read_bytes() on /dev/zero ran 20 s and ended in MemoryError.  Reading it is harmless.
    with pytest.raises(RnnGraphError, match="^error: cannot read /dev/zero: it is a character device"):
        rnngraph.load("/dev/zero")


def test_dash_reads_standard_input_up_to_the_limit(monkeypatch):
    text = b"h(t) = tanh(W h(t-1) + U x(t))\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text)))
    model = rnngraph.load("-")
    assert (model.filename, model.role("state")) == ("<stdin>", ["h"])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"#" * ((1 << 20) + 1))))
    with pytest.raises(RnnGraphError, match="^<stdin>:1:1048577: error: the file is more than "
                                            "1,048,576 bytes, more than the limit of 1,048,576"):
        rnngraph.load("-")


def test_dash_with_stdin_closed(monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)                 # rnngraph check - <&-
    with pytest.raises(RnnGraphError, match="^error: cannot read standard input: it is closed$"):
        rnngraph.load("-")
