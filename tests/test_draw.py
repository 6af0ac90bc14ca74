"""rnngraph draw: the quality figures, measured on Graphviz's layout, and safe output."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.render import draw, layout
from rnngraph.render.stats import measure
from rnngraph.render.style import Style

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent


def model(name):
    return rnngraph.load(EXAMPLES / f"{name}.rnn")


# -- the measured quality of the unrolled view ---------------------------------------
# The exercise at 4 steps: 9 crossings, P of each step but the last crossing the next step's S, V
# and W, as the textbook draws it (until issue 19: 6, the first step's P wrapped round the whole
# figure, its label 250 px from its edge, to save three of them).
# Attention at 3 steps of each index, the fan into the first decoder step and one edge into
# each other (every step's fan: 84 crossings for Bahdanau's at t=4,u=3, 25 so): 22 and 17.
CASES = [("exercise", 4, 9), ("torch_lstm", 3, None), ("lstm_unicode", 3, None),
         ("torch_gru", 3, None), ("bidirectional", 3, None), ("attention", 3, 22),
         ("attention_dot", 3, 17)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def figures(request):
    name, steps, _ = request.param
    d = layout(model(name), steps)
    return request.param, d, measure(d)


def test_columns_aligned_and_equally_spaced(figures):
    (name, _, _), _, f = figures
    assert f["column_error"] <= 0.02
    if model(name).program.indices:     # one empty column between the encoder's and the decoder's
        assert abs(f["spacing_error"] - 1.0) <= 0.02 or f["spacing_error"] <= 0.02
    else:
        assert f["spacing_error"] <= 0.02


def test_every_variable_keeps_its_row(figures):
    assert figures[2]["row_error"] <= 0.5


def test_no_edge_passes_through_a_node(figures):
    assert figures[2]["through_nodes"] == 0


def test_recurrent_edges_point_along_time(figures):
    assert figures[2]["wrong_way"] == 0


def test_crossings_within_the_issue_bound(figures):
    (name, steps, bound), _, f = figures
    if bound is not None:
        assert f["crossings"] <= bound


ALL = sorted(p.stem for p in EXAMPLES.glob("*.rnn"))
TIMED = [n for n in ALL if rnngraph.load(EXAMPLES / f"{n}.rnn").timed]   # unrolled too


@pytest.fixture(scope="module", params=[(n, s) for n in ALL for s in (None, 3)
                                        if s is None or n in TIMED],
                ids=lambda c: f"{c[0]}-{c[1] or 'folded'}")
def every(request):
    name, steps = request.param
    d = layout(model(name), steps)
    return name, steps, d, measure(d)


#: Drawings that miss the fit's 0.8 x body names, with the names they reach.  seq2seq at 4 steps
#: of each index is nine columns (encoder, the context, decoder): 7.58 pt names in a beamer frame
#: (t=4,u=3: 8.46, t=3,u=3: 9.3, which pass); a decoder drawn under its encoder, not beside
#: it, would halve the width.
#: Attention (issue 17) at 3 and 4 steps of each index: the encoder, a column, the decoder, and
#: the fan into the first decoder step: Bahdanau's names are 8.68 pt at 3 steps, 6.84 at 4;
#: Luong's (attention_dot), whose output layer z reads c(u) and s(u) through the blocks of one
#: matrix with c's row between them, so that s -> z takes a lane beside each column, 8.09 at
#: 2 steps, 7.84 at 3, 6.26 at 4; on the 13.33 in slide at 4 steps 15.3 and 14.0 pt, and
#: Luong's labels W_c[c] touch z(u) (3 at 3 steps, 4 at 4): the layout left for later.
CROWDED = {("seq2seq", 4, "beamer"): 7.5,
           ("attention", 3, "beamer"): 8.6, ("attention", 4, "beamer"): 6.8,
           ("attention", 4, "slide"): 15.3,
           ("attention_dot", 2, "beamer"): 8.0, ("attention_dot", 3, "beamer"): 7.8,
           ("attention_dot", 3, "slide"): 15.9, ("attention_dot", 4, "beamer"): 6.2,
           ("attention_dot", 4, "slide"): 14.0}
#: Smallest text on a whole 16:9 slide below 14 pt, and labels on a node, at 3 steps (see above)
SMALL = {"attention_dot": 13.0}
ON_NODES = {"attention_dot": 3}
#: The folded drawings known to fall short, with what they reach: (smallest text on a whole
#: 16:9 slide, labels on labels).  The Neural Turing machine (issue 18): its controller h fans
#: into five head values (g, k, beta, e, a) a level above it, and the labels W_g and W_k of
#: the two shortest edges meet (placed greedily, the first takes the spot the second needs);
#: 13.7 pt text.  Its unrolled cell view is clean.
FOLDED_SHORT = {"ntm": (13.7, 1)}


def test_every_example_readable_on_a_slide(every):
    # At least 14 pt, sub- and superscripts included, once filling a 13.33 x 7.5 in slide.
    name, steps = every[0], every[1]
    assert every[3]["min_font_pt"] >= (SMALL.get(name, 14) if steps else
                                       FOLDED_SHORT.get(name, (14, 0))[0])


@pytest.mark.parametrize("fit", ["beamer", "slide"])
@pytest.mark.parametrize("name,steps", [(n, s) for n in ALL for s in (None, 2, 3, 4) if s is None or n in TIMED],
                         ids=str)
def test_every_example_fits_its_target(name, steps, fit):
    # --fit: names at least 0.8 of the body text (8.8 pt in an 11 pt beamer frame, 14.4 pt on an
    # 18 pt slide), scripts at least 0.55 of it, nothing clipped: the picture is no larger than
    # the room under the frame's title.  Measured before issue 19 in a beamer frame: the
    # exercise x4 7.3 pt names and 5.0 pt scripts, the LSTM x3 4.9 pt names.
    from rnngraph.render.metrics import TARGETS
    target = TARGETS[fit]
    d = layout(model(name), steps, Style(fit=fit))
    f = measure(d)
    if (name, steps, fit) in CROWDED:
        assert f[f"label_pt_{fit}"] >= CROWDED[name, steps, fit]
        return
    short = steps is None and name in FOLDED_SHORT     # (see FOLDED_SHORT)
    assert f[f"label_pt_{fit}"] >= (0.7 if short else 0.8) * target.body
    assert f[f"min_text_pt_{fit}"] >= (0.48 if short else 0.55) * target.body
    svg = draw(model(name), steps, fit=fit).decode()
    w, h = map(float, re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert w <= target.width + 1 and h <= target.height + 1
    overlaps = FOLDED_SHORT[name][1] if short else 0
    assert (f["through_nodes"], f["node_overlaps"], f["label_overlaps"], f["label_node_overlaps"]) \
        == (0, 0, overlaps, 0)


def test_every_example_labels_clear_of_labels_markers_and_nodes(every):
    f = every[3]
    on_nodes = ON_NODES.get(every[0], 0) if every[1] else 0
    overlaps = 0 if every[1] else FOLDED_SHORT.get(every[0], (14, 0))[1]
    assert (f["label_overlaps"], f["label_marker_overlaps"]) == (overlaps, 0)
    assert f["label_node_overlaps"] <= on_nodes
    assert f["through_nodes"] == 0
    assert f["detached_edges"] == 0           # the exercise's loops once sat 70 pt off their nodes


# Labels crossed by an edge, and labels nearer another edge than their own, at 3 steps:
# none since fans are routed as trunk and branches and edges over two steps round the row
# between (before: torch_lstm 5/4, lstm_concat and lstm_unicode 5/1, lstm_dlbook 2/1,
# torch_gru 0/3, tdnn 1/0).  The folded view has none either.
# lstm_concat names each block of a concatenation's matrix since issue 19 (W_o[x], not W_o
# twice): one longer label meets an edge, 1/0.  (tdnn, drawing the zeros it reads before step 1,
# was 1/1 until an edge over several columns could also pass beyond its head's row: 0/0.)
# seq2seq: the context's fan into every decoder step (D) starts beside the W_c edge into s(0):
# the first D label sits by both, and a B label is crossed by a fan branch: 2/2 at 3 steps of
# each index; a bus from C, as a sum's, would clear them.
# attention: the fan's labels by each h(t) (the compact edges' in their middle): 2/1 for
# Bahdanau's at 3 steps; Luong's 4/5 (the lanes of s -> z beside the columns, see CROWDED).
UNROLLED_LABEL_BOUND: dict = {"seq2seq": (2, 2), "attention": (2, 1), "attention_dot": (4, 5)}
# teacher_forcing: y is an input at the bottom and L's target at the top, and the label R of
# its short edge into h sits by both edges that leave y: 0/1.
# tree: h reads both its children through two loops on itself, W_l's and W_r's, whose labels
# sit by both loops: 0/1.
# gru_cho: W multiplies r(t) * h(t-1), so both r's edge and h's loop into h carry W; the
# loop's label sits by both: 0/1.
FOLDED_LABEL_BOUND: dict = {"lstm_concat": (1, 0), "teacher_forcing": (0, 1), "tree": (0, 1),
                            "gru_cho": (0, 1)}


def test_every_example_labels_beside_their_own_edge(every):
    name, steps, _, f = every
    crossed, ambiguous = (FOLDED_LABEL_BOUND if steps is None else UNROLLED_LABEL_BOUND).get(name, (0, 0))
    assert f["labels_crossed"] <= crossed
    assert f["labels_ambiguous"] <= ambiguous


@pytest.mark.parametrize("steps", [4, 5])
@pytest.mark.parametrize("name", ["exercise", "elman", "bidirectional", "torch_rnn", "output_recurrence",
                                  "tdnn", "elman_total"])
def test_labels_unambiguous_at_more_steps(name, steps):
    f = measure(layout(model(name), steps))
    assert (f["labels_crossed"], f["labels_ambiguous"]) == (0, 0)


# The LSTMs and the GRU at 4 and 5 steps: smallest text on a 16:9 slide, and labels crossed/ambiguous
# (before trunks could sit 13-16 pt apart, columns close up to fit and the initial values' column
# sit closer to the first step: torch_lstm 13.57 pt 4/0 and
# 13.61 pt 5/0, lstm_unicode and lstm_concat 13.91 pt 0/0 and 13.59 pt 5/0, lstm_dlbook 13.97 pt 3/0
# and 13.63 pt 0/0, torch_gru 16.22 pt 0/4 and 14.16 pt 0/5).  lstm_concat at 5: 1/4 since its
# labels name the block of the matrix (W_f[h], W_f[x]: longer); the default unrolled view of
# these is the cell view, 0/0 (test_every_example_fits_its_target).
GATED = [("torch_lstm", 4, 14, (0, 0)), ("torch_lstm", 5, 14, (5, 0)),
         ("lstm_unicode", 4, 14, (0, 0)), ("lstm_unicode", 5, 14, (0, 0)),
         ("lstm_concat", 4, 14, (0, 0)), ("lstm_concat", 5, 14, (1, 4)),
         ("lstm_dlbook", 4, 14, (0, 0)), ("lstm_dlbook", 5, 14, (0, 0)),
         ("torch_gru", 4, 14, (0, 0)), ("torch_gru", 5, 14, (0, 0))]


@pytest.mark.parametrize("name,steps,points,labels", GATED, ids=lambda c: str(c))
def test_gated_models_at_more_steps(name, steps, points, labels):
    # the gate-level view, unrolled (the default unrolled view of a gated unit is its cells)
    f = measure(layout(model(name), steps, Style(detail="vars")))
    if points is not None:
        assert f["min_font_pt"] >= points
    assert f["labels_crossed"] <= labels[0] and f["labels_ambiguous"] <= labels[1]
    assert (f["label_overlaps"], f["label_node_overlaps"], f["through_nodes"], f["wrong_way"]) == (0, 0, 0, 0)
    assert f["column_error"] <= 0.02 and f["spacing_error"] <= 0.02 and f["row_error"] <= 0.5


def test_label_metrics_see_a_struck_and_a_misplaced_label():
    from rnngraph.render.geometry import point_at, pos_path
    d = layout(model("exercise"), 2)
    assert measure(d)["labels_crossed"] == measure(d)["labels_ambiguous"] == 0
    A = d.agraph
    u, v, k = next((u, v, k) for u, v, k in A.edges(keys=True) if A.get_edge(u, v, k).attr.get("lp"))
    (x, y), _ = point_at(pos_path(A.get_edge(u, v, k).attr["pos"]), 0.5)
    A.get_edge(u, v, k).attr["lp"] = f"{x},{y}"          # struck through by its own edge
    assert measure(d)["labels_crossed"] == 1
    other = next(e for e in A.edges(keys=True) if e[2] != k and {e[0], e[1]}.isdisjoint({u, v}))
    (x, y), (ux, uy) = point_at(pos_path(A.get_edge(*other).attr["pos"]), 0.5)
    A.get_edge(u, v, k).attr["lp"] = f"{x - uy * 25},{y + ux * 25}"   # beside another edge
    assert measure(d)["labels_ambiguous"] == 1


def test_crossings_see_edges_from_two_nodes_on_top_of_each_other():
    # edges from one node may share a trunk (the LSTM's fans); from two nodes, that hides an edge
    d = layout(model("elman"), 2)
    assert measure(d)["crossings"] == 0
    A = d.agraph
    u, v, k = next(e for e in A.edges(keys=True) if e[:2] == ("h.1", "o.1"))
    x, y, j = next(e for e in A.edges(keys=True) if e[0] == "x.2")
    A.get_edge(x, y, j).attr["pos"] = A.get_edge(u, v, k).attr["pos"]
    assert measure(d)["crossings"] == 1


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
def test_two_layers_up_to_five_steps_readable(steps):
    assert measure(layout(model("exercise"), steps))["min_font_pt"] >= 14


@pytest.mark.parametrize("name,folded,unrolled", [
    # measured when the folded view moved to dot on levels (before: 11/23, 9/27, 9/27, 3/20, 2/7)
    ("torch_lstm", 1, 23), ("lstm_concat", 1, 23), ("lstm_unicode", 1, 23), ("lstm_dlbook", 0, 14),
    ("torch_gru", 1, 5), ("elman", 0, 0), ("exercise", 0, None)])
def test_crossings_do_not_come_back(name, folded, unrolled):
    assert measure(layout(model(name)))["crossings"] <= folded
    if unrolled is not None:
        assert measure(layout(model(name), 3, Style(detail="vars")))["crossings"] <= unrolled


@pytest.mark.parametrize("text", [
    "h1(t) = tanh(U x(t) + V h1(t-1))\nh2(t) = tanh(R h1(t) + S h2(t-1))\ny(t) = P h2(t)",
    "h(t) = tanh(W h(t-1) + U x(t))\ny(t) = V h(t)",
])
def test_stacked_rnn_without_skips_has_no_crossings(text):
    assert measure(layout(rnngraph.parse(text), 4))["crossings"] == 0


def test_rows_inputs_bottom_outputs_top():
    d = layout(model("exercise"), 3)
    y = {info["name"]: float(d.agraph.get_node(n).attr["pos"].split(",")[1])
         for n, info in d.nodes.items() if info["t"] == 2}
    assert y["x"] < y["h1"] < y["h2"] < y["y"]


def test_backward_state_points_left_and_forward_right():
    d = layout(model("bidirectional"), 3)
    x = lambda n: float(d.agraph.get_node(n).attr["pos"].split(",")[0])
    assert x("g.1") < x("g.2") and ("g.2", "g.1") in [(e["tail"], e["head"]) for e in d.edges]
    assert x("h.0") < x("h.1")                   # the initial value at the left
    assert x("g.4") > x("g.3")                   # the backward boundary value at the right


def test_weight_label_on_every_step():
    svg = draw(model("exercise"), unroll=4).decode()
    # U on x -> h1 at each of the 4 steps, as an italic U in a label.
    assert len(re.findall(r'font-style="italic"[^>]*>U</text>', svg)) == 4


# -- folded view -------------------------------------------------------------------------
def test_folded_has_one_node_per_variable_and_delay_markers():
    d = layout(model("exercise"))
    variables = sorted(n for n, i in d.nodes.items() if not i["marker"])
    assert variables == ["h1", "h2", "x", "y"]
    # V, S (self loops), W and T (from the previous step): one black square each.
    assert sum(i["marker"] for i in d.nodes.values()) == 4
    assert measure(d)["crossings"] == 0


@pytest.mark.parametrize("name", ["exercise", "torch_lstm", "tdnn", "bidirectional", "elman"])
def test_delay_markers_sit_on_their_edge_apart(name):
    from rnngraph.render.geometry import pos_path
    from rnngraph.render.geometry import distance as _distance
    d = layout(model(name))
    A = d.agraph
    at = lambda n: tuple(map(float, A.get_node(n).attr["pos"].split(",")))
    marks = [n for n, i in d.nodes.items() if i["marker"]]
    for n in marks:
        key = n.split(" delay")[0]
        e = next(e for e in d.edges if e["key"] == key)
        assert e["delay"]
        assert _distance(at(n), pos_path(A.get_edge(*e["drawn"], key).attr["pos"])) < 1.0
    # tdnn reads x(t-2): two squares on that edge, with a gap between them
    for a in marks:
        for b in marks:
            if a < b:
                assert max(abs(at(a)[0] - at(b)[0]), abs(at(a)[1] - at(b)[1])) > 9.36 + 3


def test_future_edges_marked_differently():
    d = layout(model("bidirectional"))
    fills = {n.split(" ")[0]: d.agraph.get_node(n).attr["fillcolor"]
             for n, i in d.nodes.items() if i["marker"]}
    past = next(v for k, v in fills.items() if k.startswith("h->h"))
    future = next(v for k, v in fills.items() if k.startswith("g->g"))
    assert past == "black" and future == "white"


def test_delay_marker_label_writes_the_delay():
    svg = draw(model("elman"), delay_marker="label").decode()
    assert "t−1" in svg
    assert "t−1" not in draw(model("elman")).decode()


def test_time_labels_relative():
    svg = draw(model("elman"), unroll=3, time_labels="relative").decode()
    # (t−1): an italic t, then "−1)" upright; no step numbers.
    assert ">−1)<" in svg and ">+1)<" in svg and ">(3)<" not in svg


def test_stubs_replace_initial_values():
    d = layout(model("torch_rnn"), 3, Style(stubs=True))
    stubs = sorted(n for n, i in d.nodes.items() if i["kind"] == "stub")
    assert stubs == ["h.0", "h.4"]
    assert measure(d)["through_nodes"] == 0


def test_ops_detail_boxes_layers_circles_pointwise():
    d = layout(model("lstm_concat"), None, Style(detail="ops"))
    shapes = {}
    for n, i in d.nodes.items():
        shapes.setdefault(i["kind"], set()).add(d.agraph.get_node(n).attr["shape"])
    assert shapes["layer"] == {"box"} and shapes["pointwise"] == {"circle"}
    un = layout(model("exercise"), 2, Style(detail="ops"))
    assert {i["t"] for i in un.nodes.values()} >= {0, 1, 2}


@pytest.mark.parametrize("name", ["exercise", "elman", "torch_gru", "torch_lstm", "lstm_concat",
                                  "lstm_dlbook", "lstm_unicode"])
def test_ops_folded_fits_a_slide(name):
    # before: torch_lstm 686 x 760 pt portrait, 7.8 pt; the exercise 458 x 1034 pt, 5.7 pt
    d = layout(model(name), None, Style(detail="ops"))
    f = measure(d)
    width, height = f["size_pt"]
    assert width > height
    assert f["min_font_pt"] >= 14
    assert f["through_nodes"] == 0
    # every pointwise op (+, ⊙, tanh of a state) is a circle of one size (softmax grows to fit)
    sizes = {(d.agraph.get_node(n).attr["width"], d.agraph.get_node(n).attr["height"])
             for n, i in d.nodes.items() if i["kind"] == "pointwise" and "softmax" not in i["label"]}
    assert len(sizes) == 1 and len(next(iter(sizes))) == 2


def test_ops_weight_names_its_matmul_box():
    svg = draw(model("torch_rnn"), detail="ops").decode()
    assert ">×<" not in svg                          # W_ih x(t): one box named W_ih
    assert len(re.findall(r'<polygon fill="#ffe9b3"', svg)) >= 3


@pytest.mark.parametrize("name", ["exercise", "bidirectional", "torch_lstm"])
def test_ops_unrolled_initial_values_left_boundary_right(name):
    d = layout(model(name), 3, Style(detail="ops"))
    x = {n: float(d.agraph.get_node(n).attr["pos"].split(",")[0]) for n in d.nodes}
    first = [x[n] for n, i in d.nodes.items() if i["t"] == 1 and i["kind"] != "initial"]
    last = [x[n] for n, i in d.nodes.items() if i["t"] == 3 and i["kind"] != "initial"]
    initial = [n for n, i in d.nodes.items() if i["kind"] == "initial"]
    assert initial
    for n in initial:
        if d.nodes[n]["t"] < 1:
            assert x[n] < min(first), n
        else:
            assert x[n] > max(last), n
    f = measure(d)
    assert f["wrong_way"] == 0 and "column_error" not in f


# -- typography ---------------------------------------------------------------------------
def _texts(svg: str, node: str) -> dict:
    """The text pieces of a node of the SVG: text -> (x, y, font size)."""
    group = re.search(rf"<title>{re.escape(node)}</title>(.*?)</g>", svg, re.S).group(1)
    return {m[3]: (float(m[0]), float(m[1]), float(m[2])) for m in
            re.findall(r'<text[^>]*x="([-\d.]+)" y="([-\d.]+)"[^>]*font-size="([\d.]+)">([^<]*)</text>',
                       group)}


def test_superscript_stacked_above_subscript():
    # h1 at step 1 as LaTeX sets h_1^{(1)}: the (1) right above the 1, both right of the h.
    svg = draw(model("exercise"), unroll=2).decode()
    assert "baseline-shift" not in svg
    t = _texts(svg, "h1.1")
    (hx, hy, hsize), (subx, suby, subsize), (supx, supy, supsize) = t["h"], t["1"], t["(1)"]
    assert abs(subx - supx) < 0.5 and subx > hx
    assert suby > hy > supy                          # y grows downwards
    assert subsize == supsize < hsize
    # Folded, with a time superscript (t) in italics: stacked the same way.
    t = _texts(draw(model("exercise")).decode(), "h2")
    assert abs(t["2"][0] - t["("][0]) < 0.5 and t["2"][1] > t["h"][1] > t["t"][1]


def test_subscript_alone_sits_below_the_baseline():
    svg = draw(model("torch_rnn"), unroll=1).decode()
    assert "baseline-shift" not in svg
    label = re.search(r'y="([-\d.]+)"[^>]*font-style="italic" font-size="16.00"[^>]*>W</text>\s*'
                      r'<text[^>]*y="([-\d.]+)"[^>]*font-size="11.00"[^>]*>hh</text>', svg)
    assert label and float(label.group(2)) > float(label.group(1))


def test_accents_greek_and_upright_functions():
    svg = draw(rnngraph.parse("c_tilde(t) = tanh(alpha x(t))\ny(t) = W_hh c_tilde(t)"),
               detail="ops").decode()
    assert "c\u0303" in svg                        # c with a combining tilde
    assert ">α<" in svg and ">tanh<" in svg
    assert re.search(r'font-style="italic"[^>]*>W</text>', svg)


# -- themes, formats, determinism -----------------------------------------------------------
@pytest.mark.parametrize("theme,background", [("default", "white"), ("mono", "white"),
                                              ("dark", "#1e1e1e")])
def test_themes(theme, background):
    svg = draw(model("elman"), unroll=2, theme=theme).decode()
    assert f'<polygon fill="{background}"' in svg


def test_transparent_has_no_background():
    svg = draw(model("elman"), transparent=True).decode()
    assert '<polygon fill="white" stroke="none"' not in svg


def test_mono_has_no_colour():
    svg = draw(model("bidirectional"), unroll=2, theme="mono").decode()
    colours = set(re.findall(r'(?:fill|stroke)="(#[0-9a-f]{6})"', svg))
    assert all(c[1:3] == c[3:5] == c[5:7] for c in colours), colours


@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("pdf", b"%PDF"), ("png", b"\x89PNG"),
                                       ("dot", b"digraph")])
def test_byte_identical_every_format(fmt, magic):
    a = draw(model("exercise"), unroll=4, format=fmt)
    b = draw(model("exercise"), unroll=4, format=fmt)
    assert a == b and magic in a[:16]


def test_no_graphviz_version_or_date_in_output():
    svg = draw(model("exercise")).decode()
    assert "graphviz version" not in svg
    pdf = draw(model("exercise"), format="pdf")
    assert b"/CreationDate (D:20000101000000Z)" in pdf


def test_model_shows_itself_in_jupyter():
    assert model("elman")._repr_svg_().startswith("<?xml")


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown theme 'neon'; choose one of default, mono, dark"):
        draw(model("elman"), theme="neon")
    with pytest.raises(TypeError, match="unknown style option 'colour'"):
        draw(model("elman"), colour="red")
    for steps in (0, 2.0, True):
        with pytest.raises(ValueError, match=f"unroll must be a positive whole number of steps, "
                                             f"not {steps!r}"):
            draw(model("elman"), unroll=steps)
    with pytest.raises(RnnGraphError, match="unrolling over 101 steps is more than the limit of 100"):
        draw(model("elman"), unroll=101)


# -- the command line: files written safely ---------------------------------------------------
def test_cli_default_name_in_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["draw", str(EXAMPLES / "exercise.rnn"), "--unroll", "4"]) == 0
    assert capsys.readouterr().out.strip() == "exercise-unrolled.svg"
    assert (tmp_path / "exercise-unrolled.svg").read_bytes() == draw(model("exercise"), unroll=4)
    assert main(["draw", str(EXAMPLES / "exercise.rnn")]) == 0
    assert (tmp_path / "exercise.svg").exists()


def test_cli_output_extension_picks_format_and_stdout(tmp_path, capsysbinary):
    out = tmp_path / "x.pdf"
    assert main(["draw", str(EXAMPLES / "elman.rnn"), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")
    capsysbinary.readouterr()
    assert main(["draw", str(EXAMPLES / "elman.rnn"), "-o", "-", "--format", "dot"]) == 0
    assert capsysbinary.readouterr().out.startswith(b"digraph")


def test_cli_stats(capsys, tmp_path):
    assert main(["draw", str(EXAMPLES / "exercise.rnn"), "--unroll", "4", "--stats",
                 "-o", str(tmp_path / "e.svg")]) == 0
    out = capsys.readouterr().out
    assert "edge crossings: 9" in out and "names fitted to a 16:9 beamer frame" in out


def test_cli_stats_json_reports_each_target(capsys, tmp_path):
    import json
    assert main(["draw", str(EXAMPLES / "torch_lstm.rnn"), "--unroll", "3", "--stats", "--json",
                 "-o", str(tmp_path / "e.svg")]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out[out.index("{"):])
    assert figures["crossings"] == 0                    # the cell view: 23 gate by gate
    assert figures["label_pt_beamer"] >= 8.8 and figures["min_text_pt_beamer"] >= 6.0
    assert figures["min_text_pt_slide"] > figures["min_text_pt_beamer"]


def test_cli_refuses_to_overwrite_input(tmp_path, capsys):
    src = tmp_path / "eqs.svg"
    text = "h(t) = tanh(W h(t-1) + U x(t))\n"
    src.write_text(text)
    assert main(["draw", str(src), "-o", str(src)]) == 2
    assert "refusing to write the drawing over the input file" in capsys.readouterr().err
    assert src.read_text() == text


def test_cli_bad_input_exit_2_writes_nothing_keeps_earlier_output(tmp_path, capsys):
    good, bad, out = tmp_path / "good.rnn", tmp_path / "bad.rnn", tmp_path / "out.svg"
    good.write_text("h(t) = tanh(W h(t-1) + U x(t))\n")
    bad.write_text("h(t) = tanhh(W h(t-1) + U x(t))\n")
    assert main(["draw", str(good), "-o", str(out)]) == 0
    before = out.read_bytes()
    assert main(["draw", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1:8: error: unknown function 'tanhh'" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.rnn", "good.rnn", "out.svg"]


def test_failed_render_leaves_no_partial_file(tmp_path, monkeypatch):
    from rnngraph.render import output
    out = tmp_path / "out.svg"
    out.write_bytes(b"earlier")

    def broken_replace(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(output.os, "replace", broken_replace)
    with pytest.raises(rnngraph.RnnGraphError, match="No space left on device"):
        output.write_atomic(b"new", out)
    assert out.read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["out.svg"]


@pytest.mark.parametrize("fmt", ["svg", "pdf", "png", "dot"])
def test_every_format_without_a_dot_binary(tmp_path, fmt):
    # PATH holds only the venv's bin: no system Graphviz can be found.
    exe = BIN / "rnngraph"
    if not exe.exists():
        pytest.skip("the rnngraph script is not installed in this environment")
    env = {"PATH": str(BIN), "HOME": str(tmp_path)}
    assert shutil.which("dot", path=str(BIN)) is None
    out = tmp_path / f"ex.{fmt}"
    run = subprocess.run([str(exe), "draw", str(EXAMPLES / "exercise.rnn"), "--unroll", "3",
                          "-o", str(out)], env=env, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    assert out.stat().st_size > 200


# -- stderr: Graphviz's own messages, without the fontconfig noise ------------------------------
def test_draw_prints_nothing_on_stderr(tmp_path):
    # A new process: the bundled fontconfig complains at its first use, once per process.
    for fmt, steps in (("svg", ["--unroll", "3"]), ("png", []), ("pdf", ["--detail", "ops"])):
        run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", str(EXAMPLES / "tdnn.rnn"),
                              *steps, "-o", str(tmp_path / f"e.{fmt}")],
                             capture_output=True, timeout=120)
        assert run.returncode == 0 and run.stderr == b"", run.stderr.decode()


def test_graphviz_warnings_still_reach_stderr(capfd):
    import pygraphviz as pgv
    from rnngraph.render.quiet import graphviz_stderr
    A = pgv.AGraph()
    A.add_node("a", color="nocolour")
    with graphviz_stderr():
        A.draw(format="svg", prog="dot")
    assert "nocolour is not a known color" in capfd.readouterr().err


def test_route_checks_look_at_every_node_and_edge_a_route_may_touch():
    """The router checks a candidate against the nodes and edges near it only (an index
    by x); what it counts must be what checking every node and edge counts, or an edge
    would be drawn through a node or across another that a full check would avoid."""
    import random

    from rnngraph.render import geometry as geo
    from rnngraph.render.grid import Cell, Grid, Link, _bbox, _meet

    rng = random.Random(5)
    cells = {f"v{c}_{r}": Cell(c, r, rng.uniform(20, 60), rng.uniform(20, 30))
             for c in range(-1, 12) for r in range(5)}
    names = list(cells)
    links = [Link(rng.choice(names), rng.choice(names), None) for _ in range(60)]
    g = Grid(cells, [l for l in links if l.tail != l.head], dx=90.0, dy=70.0, ends=frozenset({-1}))
    g.place(labels=False)
    for _ in range(300):
        poly = [(rng.uniform(-150, 1100), rng.uniform(-50, 330)) for _ in range(rng.randint(2, 4))]
        ends = tuple(rng.sample(names, 2))
        every = sum(1 for cid, c in cells.items() if cid not in ends and any(
            geo.segment_hits_ellipse(p, q, c.pos, c.rx + 3, c.ry + 3) for p, q in zip(poly, poly[1:])))
        assert g._hits(poly, ends) == every
        box = _bbox(poly)
        assert {j for j in g.polys if _meet(box, g.boxes[j])} <= set(g._near(box))


@pytest.mark.parametrize("name, steps, detail", [("exercise", None, "ops"), ("exercise", 4, "vars"),
                                                 ("torch_lstm", None, "vars")])
def test_diagrams_keep_the_order_of_their_elements(name, steps, detail):
    """A lecturer's SVG in git changes only when the picture does: the order of its nodes
    and edges (their <title>s) is the committed gallery's, whatever the fonts (positions
    are not compared).  The op view's graph was rebuilt from the AST this session; this
    is what keeps its element order."""
    root = Path(__file__).resolve().parent.parent
    suffix = "-ops" if detail == "ops" else "-unrolled" if steps else ""
    committed = (root / "docs" / "gallery" / f"{name}{suffix}.svg").read_text(encoding="utf-8")
    model = rnngraph.load(root / "examples" / f"{name}.rnn")
    svg = draw(model, steps, "svg", detail=detail).decode("utf-8")
    titles = re.compile(r"<title>(.*?)</title>")
    assert titles.findall(svg) == titles.findall(committed)
