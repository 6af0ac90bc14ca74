"""Sizes for a slide: nodes as small as their text allows, grid spacing within a target's budget.

A drawing is made for a target (:data:`TARGETS`): a 16:9 beamer frame under
its title (11 pt body text), or a 13.33 x 7.5 in slide under its title (18 pt
body).  Fitted to the target, a drawing's names are set at the body size, never
larger (a figure reads as part of the slide; scale it up in LaTeX if you
like), and smaller only when it cannot fit otherwise.  :func:`slide_budget` is
the largest drawing, in the layout's own points, that fits its target with
names at the body size; :func:`spacing` spends that budget: comfortable rows
and columns when they fit, tighter rows for tall models, and columns widened
towards the target's aspect.  Without ``--fit`` a drawing keeps its natural
size (names at 16 pt) and is laid out so that its smallest text would be 14 pt
on a whole 13.33 x 7.5 in slide.

Examples
--------
>>> from rnngraph.render.style import Style
>>> w, h = slide_budget(Style())
>>> round(w), round(h)
(749, 418)
>>> node_size(24.0, 19.5, 16.0)
(35.6, 28.6)
>>> fit_scale(600.0, 300.0, 16.0, TARGETS["beamer"])     # as wide as the frame allows
0.66
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Where a drawing goes: the room it has, in points (1/72 in), and the body text size."""

    name: str
    width: float
    height: float
    body: float
    what: str


#: The targets of ``--fit``.  beamer: ``\documentclass[aspectratio=169,11pt]{beamer}``, a
#: 160 x 90 mm frame, measured with pdflatex: \textwidth is 398 pt, and a frame title leaves
#: 214 pt above the navigation symbols.  slide: PowerPoint's and Google Slides' 16:9 page,
#: less a title (1.25 in) and half-inch margins.
TARGETS = {
    "beamer": Target("beamer", 396.0, 210.0, 11.0, "a 16:9 beamer frame under its title, 11 pt text"),
    "slide": Target("slide", 888.0, 414.0, 18.0, "a 13.33 x 7.5 in slide under its title, 18 pt text"),
}
PAD = 4.0                                # the white margin round a drawing, in points
SLIDE = (13.333 * 72, 7.5 * 72)          # a whole 16:9 slide, in points
MIN_TEXT_PT = 14.0                       # the natural size: smallest text on a whole slide
_SAFETY = 1.015                          # Graphviz rounds font sizes in its output


def fit_scale(width: float, height: float, fontsize: float, target: Target) -> float:
    """How much a drawing ``width`` x ``height`` points, names ``fontsize`` pt, is scaled for ``target``."""
    return round(min(target.body / fontsize, target.width / width, target.height / height), 4)


def node_size(text_w: float, text_h: float, fontsize: float) -> tuple[float, float]:
    """Width and height of an ellipse that holds a label of ``text_w`` x ``text_h`` points.

    Graphviz's own ellipse is the text box times sqrt(2), tall and roomy; the
    text's ink is about 85 % of its line height, so a flatter ellipse holds it.
    """
    k = fontsize / 16.0
    height = max(28.0 * k, 0.85 * text_h + 12.0 * k)
    width = max(height, 1.15 * text_w + 8.0 * k)
    return round(width, 1), round(height, 1)


def slide_budget(style) -> tuple[float, float]:
    """The largest drawing, in points and without its pad, that fits ``style.fit``'s target with
    names at the body size; with no target, the largest whose smallest text is 14 pt on a whole
    13.33 x 7.5 in slide (the natural size's budget, roomier than either target)."""
    if style.fit is None:
        scale = MIN_TEXT_PT / style.small * _SAFETY
        return SLIDE[0] / scale - 2 * PAD, SLIDE[1] / scale - 2 * PAD
    target = TARGETS[style.fit]
    scale = target.body / style.fontsize * _SAFETY
    return target.width / scale - 2 * PAD, target.height / scale - 2 * PAD


def spacing(rows: int, cols: int, node: tuple[float, float], label: tuple[float, float],
            style, extra: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    """Column and row spacing ``(dx, dy)`` of the unrolled grid, in points.

    Parameters
    ----------
    rows, cols : int
        How many variable rows and time columns (initial values included).
    node : (float, float)
        The widest and the tallest node.
    label : (float, float)
        The widest and the tallest edge label.
    extra : (float, float)
        Room needed beside the grid (detours round the first column, labels).

    Examples
    --------
    >>> from rnngraph.render.style import Style
    >>> spacing(7, 4, (36, 29), (28, 20), Style())     # an LSTM at --unroll 3: tight rows
    (158.0, 65.0)
    >>> spacing(4, 5, (40, 35), (20, 20), Style())     # the exercise at --unroll 4: roomy
    (116.0, 83.0)
    """
    (nw, nh), (lw, lh) = node, label
    budget_w, budget_h = slide_budget(style)
    k = style.fontsize / 16.0
    # Rows: room for a label between two nodes when it fits, else as tight as
    # arrows allow (labels of vertical edges sit beside them, not between rows).
    dy_comfort = nh + lh + 28 * k
    dy_min = nh + 24 * k
    dy_fit = (budget_h - extra[1] - nh) / max(rows - 1, 1)
    dy = max(dy_min, min(dy_comfort, dy_fit))
    height = (rows - 1) * dy + nh
    # Columns: room for two labels side by side, widened towards 16:9, within the budget.
    dx_comfort = nw + 2 * lw + 34 * k
    dx_min = nw + lw + 30 * k
    dx_aspect = (16 / 9 * height - nw - extra[0]) / max(cols - 1, 1)
    dx_fit = (budget_w - extra[0] - nw) / max(cols - 1, 1)
    # widened towards the target's shape, but not to columns of mostly white (Elman: 205 pt)
    dx = min(max(dx_comfort, min(dx_aspect, 1.25 * dx_comfort)), max(dx_fit, dx_min))
    return float(round(dx)), float(round(dy))
