"""Limits: what is refused (where, and how to raise the limit), and what raising a limit lets through."""
import argparse
import dataclasses
import re

import pytest

import rnngraph
from rnngraph import Limits, RnnGraphError
from rnngraph.cli import main
from rnngraph.check.limits import drawing_size, option
from rnngraph.render import layout

from conftest import EXAMPLES, ROOT

RNN = "h(t) = tanh(W h(t-1) + U x(t) + b)\n"


def raise_it(key, n):
    return f"raise it with --limit {key}={n} (in Python, limits=Limits(max_{key}={n}))"


# (source, parse's keyword arguments, line, column, exact message)
REFUSED = [
    # delays: k in h(t-k) or h(t+k), of states and inputs alike
    ("h(t) = tanh(W h(t-1001) + U x(t))", {}, 1, 15,
     f"a delay of 1,001 steps is more than the limit of 1,000; {raise_it('delay', 1001)}"),
    ("g(t) = tanh(W g(t+1001) + U x(t))", {}, 1, 15,
     f"a delay of 1,001 steps is more than the limit of 1,000; {raise_it('delay', 1001)}"),
    ("y(t) = K x(t-1000000000)", {}, 1, 10,
     f"a delay of 1,000,000,000 steps is more than the limit of 1,000; {raise_it('delay', 1000000000)}"),
    ("h(t) = tanh(W h(t-1e300) + U x(t))", {}, 1, 15,
     "a delay of 1e+300 steps is more than the limit of 1,000; no limit goes past 2**53"),
    ("h(t) = W h(t-6) + x(t)", {"limits": Limits(max_delay=5)}, 1, 10,
     f"a delay of 6 steps is more than the limit of 5; {raise_it('delay', 6)}"),
    # sizes: declared (at the declaration), given (at the first use), inferred (at the definition)
    (RNN + "x: 1000001", {}, 2, 1,
     f"'x' has size 1,000,001, more than the limit of 1,000,000 for a vector; {raise_it('size', 1000001)}"),
    (RNN, {"sizes": {"x": 10 ** 9}}, 1, 26,
     f"'x' is given size 1,000,000,000, more than the limit of 1,000,000 for a vector; "
     f"{raise_it('size', 10 ** 9)}"),
    (RNN, {"sizes": {"x": 10 ** 20}}, 1, 26,
     "'x' is given size 1e+20, more than the limit of 1,000,000 for a vector; no limit goes past 2**53"),
    ("y(t) = [x(t); x(t)]\nx: 600000", {}, 1, 1,
     f"'y' has size 1,200,000, more than the limit of 1,000,000 for a vector; {raise_it('size', 1200000)}"),
    # parameters: rows x columns, also of a matrix that multiplies a concatenation
    (RNN + "x: 20000, h: 10000", {}, 1, 24,
     "'U' would have 10,000 x 20,000 = 200,000,000 elements, more than the limit of 100,000,000; "
     + raise_it("parameter_elements", 200000000)),
    ("y = W [x; x; x]\nx: 600000, y: 100", {}, 1, 5,
     "'W' would have 100 x 1,800,000 = 180,000,000 elements, more than the limit of 100,000,000; "
     + raise_it("parameter_elements", 180000000)),
    ("y(t) = b * x(t)\nx: 20", {"limits": Limits(max_parameter_elements=10)}, 1, 8,
     f"'b' would have 20 elements, more than the limit of 10; {raise_it('parameter_elements', 20)}"),
    # the file: bytes (at the first character past the limit), equations (at the first one too many)
    ("y = x\n# " + "#" * 100, {"limits": Limits(max_source_bytes=50)}, 2, 45,
     f"the file is 108 bytes, more than the limit of 50; {raise_it('source_bytes', 108)}"),
    ("a = x\nb = x\nc = x\nd = x", {"limits": Limits(max_equations=3)}, 4, 1,
     f"the file has 4 equations, more than the limit of 3; {raise_it('equations', 4)}"),
]


@pytest.mark.parametrize("source, kwargs, line, column, message", REFUSED)
def test_refused(source, kwargs, line, column, message):
    with pytest.raises(RnnGraphError, match="^" + re.escape(f"bad.rnn:{line}:{column}: error: {message}") + "\n"):
        rnngraph.parse(source, "bad.rnn", **kwargs)


@pytest.mark.parametrize("source, kwargs", [
    ("h(t) = tanh(W h(t-1000) + U x(t))", {}),
    ("g(t) = tanh(W g(t+1000) + U x(t))", {}),
    (RNN + "x: 1000000", {}),
    (RNN + "x: 10000, h: 10000", {}),                                   # 10^8 elements
    ("h(t) = W h(t-6) + x(t)", {"limits": Limits(max_delay=6)}),
    (RNN, {"sizes": {"x": 2_000_000, "h": 1}, "limits": Limits(max_size=2_000_000)}),
    ("y = x\n# " + "#" * 100, {"limits": Limits(max_source_bytes=108)}),
    ("a = x\nb = x\nc = x", {"limits": Limits(max_equations=3)}),
])
def test_at_or_within_the_limit_accepted(source, kwargs):
    model = rnngraph.parse(source, **kwargs)
    assert model.limits == kwargs.get("limits", Limits())


def test_every_size_over_the_limit_is_reported():
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(RNN + "x: 2000000, h: 3000000")
    assert [(d.line, d.column, d.message.split(",")[0]) for d in info.value.diagnostics] == [
        (1, 33, "'b' has size 3"), (2, 1, "'x' has size 2"), (2, 13, "'h' has size 3")]


def test_a_model_keeps_its_limits_for_sizes_given_later():
    model = rnngraph.parse(RNN, limits=Limits(max_size=50))
    assert model.with_sizes({"x": 50, "h": 50}).limits == Limits(max_size=50)
    with pytest.raises(RnnGraphError, match=re.escape("'x' is given size 51, more than the limit of 50")):
        model.compile(sizes={"x": 51, "h": 4})


def test_a_long_file_is_refused_having_read_only_its_beginning(tmp_path):
    path = tmp_path / "long.rnn"
    path.write_text("y = x\n" + "# padding!\n" * 200_000, encoding="utf-8")
    # 6 + 95,324 lines of 11 bytes: the 1,048,577th byte is the 7th of line 95,326, where reading stopped
    with pytest.raises(RnnGraphError, match="^" + re.escape(
            f"{path}:95326:7: error: the file is 2,200,006 bytes, more than the limit of 1,048,576; "
            f"{raise_it('source_bytes', 2200006)}\n    # paddi\n          ^") + "$"):
        rnngraph.load(path)
    assert len(rnngraph.load(path, limits=Limits(max_source_bytes=2_200_006)).equations) == 1


def test_an_error_on_a_long_line_shows_the_line_around_the_column():
    source = "y = x + " + " + ".join(["x"] * 60) + " + [x; z]^T + " + " + ".join(["x"] * 30)
    with pytest.raises(RnnGraphError, match="only a matrix can be transposed") as info:
        rnngraph.parse(source)
    column = info.value.column
    shown, caret = str(info.value).split("\n")[1:]
    assert shown.startswith("    ...") and shown.endswith("...") and len(shown) <= 4 + 120
    assert shown[caret.index("^"):].startswith("[x; z]^T")
    assert shown[7:-3].strip() in source


# -- unrolling and drawing ------------------------------------------------------------
def test_unrolling_beyond_the_limit_is_refused_before_building_anything():
    model = rnngraph.parse(RNN, "rnn.rnn")
    message = f"unrolling over 1,000,000,000 steps is more than the limit of 100; {raise_it('unroll', 10 ** 9)}"
    with pytest.raises(RnnGraphError, match="^" + re.escape(f"rnn.rnn:1:1: error: {message}") + "\n"):
        model.unroll(10 ** 9)
    with pytest.raises(RnnGraphError, match=re.escape(message)):
        rnngraph.draw(model, unroll=10 ** 9)
    assert len(model.unroll(100)) == 201


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("steps", [None, 3])
def test_the_counted_size_of_a_drawing_is_what_is_drawn(path, steps):
    model = rnngraph.load(path)
    steps = steps if model.timed else None
    d = layout(model, steps, rnngraph.render.Style(detail="vars"))
    variables = [n for n, i in d.nodes.items() if i["kind"] not in ("initial", "stub", "marker")]
    labels = [e for e in d.edges if d.labels.get(e["key"]) or (steps is None and e["delay"])]
    assert drawing_size(model, steps)[:2] == (len(variables), len(labels))
    cells = layout(model, steps)                # a gated unit's cells: fewer, never more
    assert len(cells.nodes) <= len(d.nodes) and len(cells.edges) <= len(d.edges)
    if steps is not None and model.program.indices:     # not drawn yet, and it says so
        with pytest.raises(RnnGraphError, match="operation view of a model with several indices"):
            layout(model, steps, rnngraph.render.Style(detail="ops"))
        return
    ops = layout(model, steps, rnngraph.render.Style(detail="ops"))
    assert len(ops.nodes) <= drawing_size(model, steps, "ops")[0]


@pytest.mark.parametrize("source, unroll, detail, limits, message", [
    (RNN, 6, None, Limits(max_drawn_nodes=10),
     f"the drawing would have 12 nodes (2 variables a step x 6 steps), more than the limit of 10; "
     f"draw fewer steps or {raise_it('drawn_nodes', 12)}"),
    (RNN, 76, None, Limits(),
     f"the drawing would place 152 edge labels, more than the limit of 150; "
     f"draw fewer steps or {raise_it('edge_labels', 152)}"),
    ("\n".join(f"a{i} = 1" for i in range(1001)), None, None, Limits(),
     f"the drawing would have 1,001 nodes, more than the limit of 1,000; {raise_it('drawn_nodes', 1001)}"),
    ("y(t) = " + " + ".join(f"W{i} x(t)" for i in range(90)) + "\nz(t) = " +
     " + ".join(f"V{i} x(t)" for i in range(61)), None, None, Limits(),
     f"the drawing would place 151 edge labels, more than the limit of 150; {raise_it('edge_labels', 151)}"),
    (RNN, 3, "ops", Limits(max_drawn_nodes=20),
     f"the drawing would have 33 nodes (at most 11 nodes a step x 3 steps), more than the limit of 20; "
     f"draw fewer steps or {raise_it('drawn_nodes', 33)}"),
])
def test_drawings_beyond_the_limits_are_refused_before_layout(source, unroll, detail, limits, message):
    model = rnngraph.parse(source, "big.rnn", limits=limits)
    with pytest.raises(RnnGraphError, match="^" + re.escape(f"big.rnn:1:1: error: {message}") + "\n"):
        rnngraph.draw(model, unroll=unroll, detail=detail)


def test_raised_drawing_limits_let_the_drawing_through():
    model = rnngraph.parse(RNN, limits=Limits(max_edge_labels=152))
    assert b'"h.76"' in rnngraph.draw(model, unroll=76, format="dot")


# -- the limits themselves and the --limit option ---------------------------------------
def test_the_readme_table_gives_the_defaults():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `(\w+)` \| ([\d,]+|1 MiB|10\^8|8 GiB) \|", readme, re.M))
    shown = {"1 MiB": 1 << 20, "10^8": 10 ** 8, "8 GiB": 8 << 30}
    defaults = {f.name[len("max_"):]: f.default for f in dataclasses.fields(Limits)}
    assert {k: shown.get(v) or int(v.replace(",", "")) for k, v in table.items()} == defaults


@pytest.mark.parametrize("value", [0, -1, 2 ** 53 + 1, 2.5, True, "10"])
def test_a_limit_is_a_whole_number_from_1_to_2_53(value):
    with pytest.raises(ValueError, match=re.escape(f"max_delay must be a whole number from 1 to 2**53, not {value!r}")):
        Limits(max_delay=value)


@pytest.mark.parametrize("text, message", [
    ("speed=3", "unknown limit 'speed'; the limits are source_bytes, equations, delay, size, "
                "parameter_elements, unroll, drawn_nodes, edge_labels, memory_bytes"),
    ("delay=0", "expected NAME=N with N a whole number from 1 to 2**53, as in delay=5000; got 'delay=0'"),
    ("delay=1e4", "expected NAME=N with N a whole number from 1 to 2**53, as in delay=5000; got 'delay=1e4'"),
    ("delay", "expected NAME=N with N a whole number from 1 to 2**53, as in delay=5000; got 'delay'"),
])
def test_bad_limit_options_are_named(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match="^" + re.escape(message) + "$"):
        option(text)


def test_cli_refuses_beyond_a_limit_and_a_repeated_option_raises_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "rnn.rnn"
    path.write_text(RNN, encoding="utf-8")
    assert main(["draw", str(path), "--unroll", "10000"]) == 2
    assert capsys.readouterr().err == (
        f"{path}:1:1: error: unrolling over 10,000 steps is more than the limit of 100; "
        f"{raise_it('unroll', 10000)}\n    {RNN}    ^\n")
    assert not list(tmp_path.glob("*.svg"))
    assert main(["draw", str(path), "--unroll", "101", "--limit", "unroll=101",
                 "--limit", "edge_labels=202", "--format", "dot"]) == 0
    assert '"h.101"' in (tmp_path / "rnn-unrolled.dot").read_text()


@pytest.mark.parametrize("command", [["check"], ["compile"], ["draw", "--format", "dot"]])
def test_cli_limit_option_on_every_command(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tdnn.rnn"
    path.write_text("y(t) = tanh(K x(t-1500))\nx: 2, y: 2\n", encoding="utf-8")
    assert main([command[0], str(path), *command[1:]]) == 2
    assert "error: a delay of 1,500 steps is more than the limit of 1,000" in capsys.readouterr().err
    assert main([command[0], str(path), *command[1:], "--limit", "delay=1500"]) == 0


def test_cli_compile_refuses_sizes_beyond_the_limit(capsys):
    assert main(["compile", str(ROOT / "examples/torch_rnn.rnn"), "--sizes", "x=2000000"]) == 2
    assert "'x' is given size 2,000,000, more than the limit of 1,000,000 for a vector" in capsys.readouterr().err


def test_cli_bad_limit_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", str(ROOT / "examples/exercise.rnn"), "--limit", "speed=3"])
    assert info.value.code == 2
    assert "argument --limit: unknown limit 'speed'" in capsys.readouterr().err


def test_a_call_that_would_not_fit_in_memory_is_refused_before_it_allocates():
    """Size 10^5 and delay 1000 are each within their limits; over 10^5 steps they would
    take gigabytes: refused with the estimate and how to raise the limit."""
    import numpy as np
    model = rnngraph.parse("h(t) = tanh(u * h(t-1000) + v * x(t))\nx: 100000, h: 100000")
    net = model.compile(optimize=False)
    with pytest.raises(RnnGraphError, match=r"this call would take about 65\.6 GiB \(T = 10000, "
                       r"B = 1, 200,000 numbers a step, float64\), more than the limit of 8\.0 GiB; "
                       r"raise it with --limit memory_bytes=\d+"):
        net._check_memory(10000, 1)
    small = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nx: 1, h: 2",
                           limits=Limits(max_memory_bytes=1000)).compile()
    p = small.init_params()
    small.forward(p, {"x": np.zeros((3, 1))})
    with pytest.raises(RnnGraphError, match="more than the limit of 0.0 GiB"):
        small.forward(p, {"x": np.zeros((30, 1))})
