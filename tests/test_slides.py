"""Diagrams for a slide: the cell view, --fit, margins, --dpi, TikZ, --reveal, fonts, Jupyter."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import rnngraph
from rnngraph.cli import main
from rnngraph.render import Picture, draw, layout, render
from rnngraph.render.cells import CELL, cell_of
from rnngraph.render.fonts import FontWarning, check
from rnngraph.render.stats import measure
from rnngraph.render.style import Style

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GATED = ["torch_lstm", "torch_gru", "lstm_concat", "lstm_dlbook", "lstm_unicode"]


def model(name):
    return rnngraph.load(EXAMPLES / f"{name}.rnn")


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


# -- the cell view -----------------------------------------------------------------------
@pytest.mark.parametrize("name", GATED)
def test_a_gated_unit_unrolls_as_a_chain_of_cells(name):
    d = layout(model(name), 3)
    boxes = sorted(i["t"] for i in d.nodes.values() if i["kind"] == "cell")
    assert boxes == [1, 2, 3]
    f = measure(d)
    # colah's chain: nothing crosses, nothing overlaps (gate by gate the LSTM had 23 crossings)
    assert (f["crossings"], f["through_nodes"], f["node_overlaps"], f["label_overlaps"]) == (0, 0, 0, 0)
    assert f["row_error"] <= 0.5 and f["column_error"] <= 0.02
    # what runs from box to box is each state the cell carries, named at the step it leaves
    cell = cell_of(model(name))
    lines = sorted((e["carried"], d.nodes[e["tail"]]["t"]) for e in d.edges if e.get("carried"))
    assert lines == sorted((s, t) for s, _ in cell.carried for t in (1, 2))


@pytest.mark.parametrize("name", GATED)
def test_the_cell_view_shows_the_initial_values_the_compiled_code_takes(name):
    # drawing and compiling agree: each dashed value left of the first box is an initial value
    # of the compiled model, and every initial value it takes is drawn
    d = layout(model(name), 3)
    shown = sorted(f"{i['name']}({i['t']})" for i in d.nodes.values() if i["kind"] == "initial")
    assert shown == sorted(model(name).compile().initial_values)


def test_the_cell_view_keeps_what_lies_outside_the_cell():
    m = rnngraph.parse("x: 3, h: 4, y: 2\n"
                       "f(t) = sigmoid(W_f x(t) + U_f h(t-1))\n"
                       "g(t) = tanh(W_g x(t) + U_g h(t-1))\n"
                       "c(t) = f(t) * c(t-1) + (1 - f(t)) * g(t)\n"
                       "h(t) = tanh(c(t))\n"
                       "y(t) = softmax(V h(t) + R y(t-1))\n"
                       "L(t) = cross_entropy(y(t), target(t))\n")
    cell = cell_of(m)
    assert cell.members == ("f", "g", "c", "h") and cell.exported == ("h",)
    d = layout(m, 3)
    names = {i["name"] for i in d.nodes.values() if i["kind"] != "initial"}
    assert {"x", "h", "y", "L", "target", CELL} <= names and not {"f", "g", "c"} & names
    weights = {e["weight"] for e in d.edges}
    assert {"V", "R"} <= weights                     # the weights outside the cell keep their labels
    f = measure(d)
    assert (f["crossings"], f["through_nodes"], f["node_overlaps"]) == (0, 0, 0)
    # the target beside its loss, as the book's figure 10.3
    pos = {n: tuple(map(float, d.agraph.get_node(n).attr["pos"].split(","))) for n in d.nodes}
    assert pos["target.2"][1] == pos["L.2"][1] and pos["target.2"][0] > pos["L.2"][0]


def test_the_gate_level_view_stays_available():
    d = layout(model("torch_lstm"), 2, Style(detail="vars"))
    assert {i["name"] for i in d.nodes.values()} >= {"i", "f", "g", "o", "c", "h"}
    assert layout(model("exercise"), 2, Style(detail="cells")).style.detail == "vars"   # nothing gated


def test_the_targets_sit_beside_their_loss_unrolled():
    d = layout(model("elman"), 3)
    pos = {n: tuple(map(float, d.agraph.get_node(n).attr["pos"].split(","))) for n in d.nodes}
    for t in (1, 2, 3):
        assert pos[f"target.{t}"][1] == pos[f"L.{t}"][1] < pos[f"L.{t}"][1] + 1
        assert pos[f"target.{t}"][0] > pos[f"L.{t}"][0]
    f = measure(d)
    assert f["crossings"] == 0 and f["column_error"] <= 0.02 and f["column_spacing_pt"] < 205


# -- size, margins, resolution ------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_margins_are_at_most_four_points(fmt):
    # until issue 19 a PDF had 46 pt of white on every side
    d = layout(model("exercise"), 3)
    bb = [float(v) for v in re.search(rb'bb="([^"]+)"', render(d, "dot")).group(1).split(b",")]
    data = render(d, fmt)
    if fmt == "pdf":
        w, h = map(float, re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", data).groups())
    else:
        w, h = map(float, re.search(rb'<svg width="([\d.]+)pt" height="([\d.]+)pt"', data).groups())
    assert 0 <= (w - (bb[2] - bb[0])) / 2 <= 4.5 and 0 <= (h - (bb[3] - bb[1])) / 2 <= 4.5


def test_fit_sizes_the_picture_for_its_target():
    beamer = draw(model("exercise"), 4, "pdf", fit="beamer")
    w, h = map(float, re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", beamer).groups())
    assert w <= 396 + 1 and h <= 210 + 1
    slide = draw(model("exercise"), 4, "pdf", fit="slide")
    w2, _ = map(float, re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", slide).groups())
    assert w2 / w == pytest.approx(18 / 11, rel=0.02)       # names at each target's body size


def test_dpi_sets_the_png_resolution():
    d = layout(model("exercise"), 3)
    w96, h96 = _png_size(render(d, "png"))
    w300, h300 = _png_size(render(d, "png", dpi=300))
    assert w300 / w96 == pytest.approx(300 / 96, rel=0.01) and h300 / h96 == pytest.approx(300 / 96, rel=0.01)


def test_cli_dpi_and_fit(tmp_path, capsys):
    out = tmp_path / "e.png"
    assert main(["draw", str(EXAMPLES / "exercise.rnn"), "--unroll", "3", "--fit", "slide",
                 "--dpi", "200", "-o", str(out)]) == 0
    w, _ = _png_size(out.read_bytes())
    svg = draw(model("exercise"), 3, fit="slide")
    width_pt = float(re.search(rb'<svg width="([\d.]+)pt"', svg).group(1))
    assert abs(w - width_pt / 72 * 200) <= 2                # the slide's size in inches, at 200 dpi
    with pytest.raises(SystemExit) as exit_:
        main(["draw", str(EXAMPLES / "exercise.rnn"), "--dpi", "0", "-o", str(out)])
    assert exit_.value.code == 2 and "expected a resolution" in capsys.readouterr().err


# -- TikZ ---------------------------------------------------------------------------------
def test_tikz_labels_are_latex_math():
    tex = draw(model("exercise"), 3, "tex").decode()
    assert tex.count(r"\begin{tikzpicture}") == 1 and tex.rstrip().endswith(r"\end{tikzpicture}")
    assert "{$h_{1}^{(2)}$}" in tex and "{$y^{(0)}$}" in tex and "{$W$}" in tex
    nodes = re.findall(r"\\node\[(?:ellipse|rectangle)[^\]]*\] \(n\d+\) at", tex)
    assert len(nodes) == len(layout(model("exercise"), 3).nodes)
    assert len(re.findall(r"\\draw\[", tex)) == len(layout(model("exercise"), 3).edges)
    lstm = draw(model("torch_lstm"), None, "tex").decode()
    assert r"W_{\text{hi}}" in lstm and "$c^{(t)}$" in lstm


def test_tikz_positions_are_graphvizs():
    d = layout(model("torch_rnn"), 2)
    tex = render(d, "tex").decode()
    bb = [float(v) for v in re.search(rb'bb="([^"]+)"', render(d, "dot")).group(1).split(b",")]
    xs = [float(x) for x in re.findall(r"\) at \(([\d.]+),", tex)]
    scale = 11 / 16                                      # names at the beamer frame's body size
    assert max(xs) <= (bb[2] - bb[0]) * scale + 0.01 and min(xs) >= 0


@pytest.mark.skipif(not (shutil.which("pdflatex") and shutil.which("kpsewhich")), reason="pdflatex is not installed")
@pytest.mark.parametrize("name,steps", [("exercise", 4), ("torch_lstm", 3), ("torch_lstm", None), ("elman", 3)])
def test_tikz_compiles_in_a_beamer_frame(tmp_path, name, steps):
    needed = ["beamer.cls", "tikz.sty", "amsmath.sty"]
    if any(not subprocess.run(["kpsewhich", f], capture_output=True, text=True).stdout.strip() for f in needed):
        pytest.skip("beamer, tikz or amsmath is not installed for pdflatex")
    (tmp_path / "fig.tex").write_bytes(draw(model(name), steps, "tex"))
    (tmp_path / "reveal.tex").write_bytes(render(layout(model(name), steps), "tex", reveal=True))
    (tmp_path / "main.tex").write_text(
        "\\documentclass[aspectratio=169,11pt]{beamer}\n\\usepackage{tikz}\n"
        "\\usetikzlibrary{shapes.geometric,arrows.meta}\n\\begin{document}\n"
        "\\begin{frame}{A figure}\\centering\\input{fig.tex}\\end{frame}\n"
        "\\begin{frame}{Step by step}\\centering\\input{reveal.tex}\\end{frame}\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "Overfull \\hbox" not in run.stdout                 # fits the frame's width
    pages = int(re.search(r"Output written on main.pdf \((\d+) pages?", run.stdout).group(1))
    assert pages == 1 + (steps or 1)                         # one slide per step revealed


# -- reveal ------------------------------------------------------------------------------
def test_reveal_frames_are_one_size_and_show_steps_one_by_one():
    d = layout(model("exercise"), 3)
    frames = [render(d, "svg", upto=k).decode() for k in (1, 2, 3)]
    sizes = {re.search(r'<svg width="[^"]+" height="[^"]+"', f).group(0) for f in frames}
    assert len(sizes) == 1
    shown = [len(re.findall(r'<g id="node', f)) for f in frames]
    assert shown == [7, 11, 15]                  # initial values and step 1; then 4 nodes a step
    assert frames[2] == render(d, "svg").decode()             # the last frame is the whole drawing


def test_cli_reveal_writes_a_file_per_step(tmp_path, capsys):
    out = tmp_path / "fig.pdf"
    assert main(["draw", str(EXAMPLES / "torch_gru.rnn"), "--unroll", "3", "--reveal", "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig-1.pdf", "fig-2.pdf", "fig-3.pdf"]
    tex = tmp_path / "fig.tex"
    assert main(["draw", str(EXAMPLES / "torch_gru.rnn"), "--unroll", "3", "--reveal", "-o", str(tex)]) == 0
    assert r"\visible<3->{" in tex.read_text() and r"\visible<4->" not in tex.read_text()
    assert main(["draw", str(EXAMPLES / "torch_gru.rnn"), "--reveal", "-o", str(out)]) == 2
    assert "give --unroll N" in capsys.readouterr().err


# -- fonts, version, Jupyter ------------------------------------------------------------------
def test_a_font_that_cannot_be_used_is_named_with_the_one_used_instead():
    with pytest.warns(FontWarning, match="font 'No Such Font Anywhere' is not installed here.*uses '"):
        layout(model("torch_rnn"), None, Style(font="No Such Font Anywhere"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check("DejaVu Serif")                                   # the default: no word


def test_a_font_whose_name_ends_in_a_style_word_is_used():
    # Pango read "Latin Modern Roman" as the family "Latin Modern", style Roman, and fell back
    if not shutil.which("fc-list") or "LM Roman" not in subprocess.run(
            ["fc-list"], capture_output=True, text=True).stdout:
        pytest.skip("fontconfig lists no Latin Modern here")
    pdf = draw(model("torch_rnn"), None, "pdf", font="Latin Modern Roman")
    assert b"/FontFamily (LM Roman" in pdf


def test_no_usable_font_is_an_error_not_empty_boxes(tmp_path):
    conf = tmp_path / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?>\n<fontconfig><dir>{tmp_path / "none"}</dir>'
                    f'<cachedir>{tmp_path / "cache"}</cachedir></fontconfig>\n')
    run = subprocess.run([sys.executable, "-m", "rnngraph.cli", "draw", str(EXAMPLES / "torch_rnn.rnn"),
                          "-o", str(tmp_path / "out.svg")], capture_output=True, text=True,
                         env={"FONTCONFIG_FILE": str(conf), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 2
    assert "error: no usable font" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "out.svg").exists()


def test_cli_warns_once_on_a_missing_font(tmp_path, capsys):
    assert main(["draw", str(EXAMPLES / "torch_rnn.rnn"), "--font", "Nope Sans Nowhere",
                 "-o", str(tmp_path / "a.svg")]) == 0
    err = capsys.readouterr().err
    assert err.count("rnngraph: warning: font 'Nope Sans Nowhere'") == 1 and "Warning" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"rnngraph \S+\n", capsys.readouterr().out)


def test_an_unrolled_drawing_shows_itself_in_jupyter():
    picture = model("torch_lstm").draw(unroll=3)
    assert isinstance(picture, Picture) and isinstance(picture, bytes)
    assert picture._repr_svg_().startswith("<?xml") and picture._repr_png_() is None
    png = model("torch_lstm").draw(unroll=3, format="png", dpi=120)
    assert png._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n" and png._repr_svg_() is None


def test_words_are_upright_letters_italic():
    # "target" was set as six italic letters, a product t·a·r·g·e·t to a mathematician
    svg = draw(model("elman"), 2).decode()
    assert ">target<" in svg.replace("</tspan>", "<") or "target" in re.sub(r"<[^>]+>", "", svg)
    assert not re.search(r'font-style="italic"[^>]*>target<', svg)
    assert rnngraph.load(EXAMPLES / "elman.rnn").to_latex().count(r"\mathrm{target}") >= 1


def test_stats_json_is_what_measure_reports(tmp_path, capsys):
    assert main(["draw", str(EXAMPLES / "exercise.rnn"), "--unroll", "4", "--fit", "beamer", "--stats",
                 "--json", "-o", str(tmp_path / "e.svg")]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out[out.index("{"):])
    assert figures["label_pt_beamer"] == pytest.approx(11.0, abs=0.05)
    assert figures["min_text_pt_beamer"] >= 7.5 and figures["crossings"] == 9
    assert set(figures) >= {"min_text_pt_slide", "min_text_pt_beamer", "crossings", "node_overlaps"}


# -- what the review found -------------------------------------------------------------
@pytest.mark.parametrize("text", [
    # read from the future, and a state read two steps back: the chain has no lines for them
    "x: 3\nf(t) = sigmoid(W x(t) + U c(t+1))\nc(t) = f(t) * c(t+1) + x(t)\n",
    "x: 3\nf(t) = sigmoid(W x(t) + U h(t-1) + V h(t-2))\nh(t) = f(t) * h(t-1) + x(t)\n",
    "x: 3\ninput k\nf(t) = sigmoid(W x(t) + U h(t-1) + k)\nh(t) = f(t) * h(t-1) + x(t)\n"])
def test_a_gated_unit_the_chain_cannot_show_is_drawn_gate_by_gate(text):
    m = rnngraph.parse(text)
    assert cell_of(m) is None
    d = layout(m, 3)
    f = measure(d)
    assert d.style.detail == "vars" and (f["through_nodes"], f["node_overlaps"]) == (0, 0)


def test_stubs_in_the_cell_view_at_both_ends_one_per_line():
    d = layout(model("torch_lstm"), 3, Style(stubs=True))
    stubs = sorted((i["name"], i["t"]) for i in d.nodes.values() if i["kind"] == "stub")
    assert stubs == [("c", 0), ("c", 4), ("h", 0), ("h", 4)]
    f = measure(d)
    assert (f["node_overlaps"], f["label_overlaps"], f["crossings"]) == (0, 0, 0)


def test_tikz_of_the_op_view_names_every_op():
    tex = draw(model("torch_lstm"), None, "tex", detail="ops").decode()
    texts = re.findall(r"\) at \([\d.,]+\) \{(.*?)\};", tex)
    assert texts and all(t.startswith("$") and t.endswith("$") and len(t) > 2 for t in texts)
    assert r"$\odot$" in tex and r"$\sigma$" in tex and "$h^{(t-1)}$" in tex and ">" not in "".join(texts)
    unrolled = draw(model("exercise"), 2, "tex", detail="ops").decode()
    assert unrolled.count("rounded corners=4bp") == 2            # a frame round each step


def test_tikz_draws_the_background_and_leaves_out_layout_hints():
    dark = draw(model("torch_lstm"), 3, "tex", theme="dark").decode()
    assert r"\fill[fill={rgb,255:red,30;green,30;blue,30}]" in dark
    assert r"\fill" not in draw(model("torch_lstm"), 3, "tex", transparent=True).decode()
    one = layout(model("torch_lstm"), 1, Style(detail="vars"))
    drawn = render(one, "tex").decode().count(r"\draw[")
    assert drawn == len(one.edges)                               # not the invisible ordering edges


def test_reveal_of_the_op_view_is_refused():
    with pytest.raises(rnngraph.RnnGraphError, match="op view has no steps"):
        render(layout(model("exercise"), 2, Style(detail="ops")), "tex", reveal=True)


def test_a_font_list_reaches_the_svg_as_valid_css():
    svg = draw(model("torch_rnn"), None, font="DejaVu Serif, serif").decode()
    assert 'font-family="DejaVu Serif, serif,serif"' in svg and ",," not in svg


def test_a_loop_off_its_node_is_seen():
    # the folded exercise's S and V loops were once drawn 70 pt left of h2 and h1, touching nothing
    from rnngraph.render.geometry import parse_pos
    d = layout(model("exercise"), None)
    assert measure(d)["detached_edges"] == 0
    loops = [(u, k) for u, v, k in d.agraph.edges(keys=True) if u == v]
    assert len(loops) == 2
    for u, k in loops:                        # every loop beside its node, left of it here
        x = float(d.agraph.get_node(u).attr["pos"].split(",")[0])
        pts, _, _ = parse_pos(d.agraph.get_edge(u, u, k).attr["pos"])
        assert all(abs(p[0] - x) < 60 for p in pts)
    u, k = loops[0]
    e = d.agraph.get_edge(u, u, k)
    e.attr["pos"] = " ".join(",".join(f"{float(c) - 70 * (i == 0) if c[0].isdigit() or c[0] == '-' else c}"
                                      for i, c in enumerate(item.split(","))) if item[0] != "e"
                             else item for item in e.attr["pos"].split())
    d.size = None
    assert measure(d)["detached_edges"] == 1
