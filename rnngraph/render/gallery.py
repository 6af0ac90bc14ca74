"""docs/gallery: every example at its best view, by one command.

    python -m rnngraph.render.gallery [OUTDIR]

writes ``<example>.svg``/``.png`` (folded) and ``<example>-unrolled.svg``/``.png``
(unrolled over 3 steps, the exercise over 4; a gated unit as its chain of
cells) for each file in ``examples/``, the exercise's op view, the LSTM's
gates unrolled over one step, a teacher-forced model's training and test graphs
side by side (``-both``), and ``index.md`` listing them with their
quality figures.  Where pdflatex and pdftoppm are installed it also builds
``slide-1.png`` and ``slide-2.png``: 16:9 beamer frames with the exercise,
and the LSTM's chain of cells, as TikZ pictures, as a lecturer's slides show them.  Look at every PNG before
committing them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dataclasses import fields

from ..check.model import load
from . import drawing_of
from .layout import layout
from .output import render, write_atomic
from .stats import measure
from .style import Style

ROOT = Path(__file__).resolve().parents[2]
FIRST = ["exercise"]
STEPS = {"exercise": 4, "tree": 8}      # the tree: 8 leaves, 3 levels above them (figure 10.14)
DPI = 192                       # a beamer-sized drawing 1000-1100 px wide: sharp in a README

SLIDES = r"""\documentclass[aspectratio=169,11pt]{beamer}
\usepackage{tikz}
\usetikzlibrary{shapes.geometric,arrows.meta}
\setbeamertemplate{navigation symbols}{}
\begin{document}
\begin{frame}{The exercise, unrolled}
\centering\input{exercise.tex}
\end{frame}
\begin{frame}{An LSTM, one cell per step}
\centering\input{lstm.tex}
\end{frame}
\end{document}
"""


def build(outdir: Path | None = None) -> list[Path]:
    """Write the gallery; returns the files written."""
    outdir = Path(outdir or ROOT / "docs" / "gallery")
    outdir.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in (ROOT / "examples").glob("*.rnn"))
    names = FIRST + [n for n in names if n not in FIRST]
    written, rows = [], []
    for name in names:
        model = load(ROOT / "examples" / f"{name}.rnn")
        views = [("", None, Style(fit="beamer"))]
        if model.timed:
            views.append(("-unrolled", STEPS.get(name, 3), Style(fit="beamer")))
        if name == "exercise":
            views.append(("-ops", None, Style(detail="ops", fit="beamer")))
        if name == "torch_lstm":
            views.append(("-gates", 1, Style(detail="vars", fit="beamer")))
        views = [(suffix, steps, style, "train") for suffix, steps, style in views]
        if model.free:                    # teacher forcing: the book's figure 10.6
            views.append(("-both", 3, Style(fit="beamer"), "both"))
        if name == "tree":                # section 10.6: the tree beside the chain
            views.append(("-chain", 8, Style(fit="beamer"), "chain"))
        for suffix, steps, style, mode in views:
            chain = mode == "chain"
            drawing = drawing_of(model, steps, "train" if chain else mode, chain,
                                 **{f.name: getattr(style, f.name) for f in fields(style)})
            svg = render(drawing, "svg")
            for fmt, data in (("svg", svg), ("png", render(drawing, "png", dpi=DPI))):
                written.append(write_atomic(data, outdir / f"{name}{suffix}.{fmt}"))
            f = measure(drawing, svg)
            overlaps = f["label_overlaps"] + f["label_marker_overlaps"] + f["label_node_overlaps"]
            rows.append(f"| [{name}{suffix}]({name}{suffix}.png) | {drawing.style.detail} | {steps or '-'} "
                        f"| {f['crossings']} | {overlaps} | {f['labels_crossed']} | {f['labels_ambiguous']} "
                        f"| {f.get('column_error', '-')} | {f['label_pt_beamer']} / {f['min_text_pt_beamer']} "
                        f"| {f['label_pt_slide']} / {f['min_text_pt_slide']} |")
    index = ["# Gallery", "", "Made by `python -m rnngraph.render.gallery`: each drawing made with `--fit beamer` "
             "(sized for a 16:9 beamer frame under its title, 11 pt body text), PNG at 192 dpi.  "
             "Text sizes: names / the smallest sub- or superscript, in that frame and, scaled, on a "
             "13.33 x 7.5 in slide under its title (18 pt).", "",
             "![a beamer slide](slide-1.png) ![another](slide-2.png)", "",
             "| diagram | view | steps | crossings | label overlaps | labels crossed by an edge "
             "| labels nearer another edge | column error | beamer (pt) | slide (pt) |",
             "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    written.append(write_atomic("\n".join(index).encode(), outdir / "index.md"))
    return written + _slides(outdir)


def _slides(outdir: Path) -> list[Path]:
    """slide-1.png, slide-2.png: the exercise, and the LSTM's chain of cells, as TikZ pictures in
    16:9 beamer frames (nothing without pdflatex and pdftoppm)."""
    if not (shutil.which("pdflatex") and shutil.which("pdftoppm")):
        print("pdflatex or pdftoppm not found: the slides are left as they were", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lstm = load(ROOT / "examples" / "torch_lstm.rnn")
        for name, model, steps in (("exercise", load(ROOT / "examples" / "exercise.rnn"), 3),
                                   ("lstm", lstm, 4)):
            (work / f"{name}.tex").write_bytes(render(layout(model, steps, Style(fit="beamer")), "tex"))
        (work / "slides.tex").write_text(SLIDES)
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "slides.tex"],
                             cwd=work, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError("pdflatex failed on the gallery's slides:\n" + run.stdout[-3000:])
        subprocess.run(["pdftoppm", "-r", str(DPI), "-png", "slides.pdf", "slide"], cwd=work, check=True)
        return [write_atomic(p.read_bytes(), outdir / p.name) for p in sorted(work.glob("slide-*.png"))]

if __name__ == "__main__":
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(path)
