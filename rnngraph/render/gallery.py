"""docs/gallery: the folded and unrolled diagram of every example, by one command.

    python -m rnngraph.render.gallery [OUTDIR]

writes ``<example>.svg``/``.png`` (folded) and ``<example>-unrolled.svg``/``.png``
(unrolled over 3 steps; the exercise over 4) for each file in ``examples/``,
the exercise's op view, and ``index.md`` listing them with their quality
figures.  Look at every PNG before committing them.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..check.model import load
from .layout import layout
from .output import render, write_atomic
from .stats import measure
from .style import Style

ROOT = Path(__file__).resolve().parents[2]
FIRST = ["exercise"]
STEPS = {"exercise": 4}


def build(outdir: Path | None = None) -> list[Path]:
    """Write the gallery; returns the files written."""
    outdir = Path(outdir or ROOT / "docs" / "gallery")
    outdir.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in (ROOT / "examples").glob("*.rnn"))
    names = FIRST + [n for n in names if n not in FIRST]
    written, rows = [], []
    for name in names:
        model = load(ROOT / "examples" / f"{name}.rnn")
        views = [("", None, Style())]
        if model.timed:
            views.append(("-unrolled", STEPS.get(name, 3), Style()))
        if name == "exercise":
            views.append(("-ops", None, Style(detail="ops")))
        for suffix, steps, style in views:
            drawing = layout(model, steps, style)
            svg = render(drawing, "svg")
            for fmt, data in (("svg", svg), ("png", render(drawing, "png"))):
                written.append(write_atomic(data, outdir / f"{name}{suffix}.{fmt}"))
            f = measure(drawing, svg)
            overlaps = f["label_overlaps"] + f["label_marker_overlaps"] + f["label_node_overlaps"]
            rows.append(f"| [{name}{suffix}]({name}{suffix}.png) | {steps or '-'} | {f['crossings']} | {overlaps} | "
                        f"{f['labels_crossed']} | {f['labels_ambiguous']} | "
                        f"{f.get('column_error', '-')} | {f['min_font_pt']} |")
    index = ["# Gallery", "", "Made by `python -m rnngraph.render.gallery`.", "",
             "| diagram | steps | crossings | label overlaps | labels crossed by an edge "
             "| labels nearer another edge | column error | smallest text on a 16:9 slide (pt) |",
             "|---|---|---|---|---|---|---|---|", *rows, ""]
    written.append(write_atomic("\n".join(index).encode(), outdir / "index.md"))
    return written


if __name__ == "__main__":
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(path)
