"""Sizes for a slide: nodes as small as their text allows, grid spacing within a 16:9 budget.

The issue's bar is text of at least 14 pt once a drawing is fitted to a
13.33 x 7.5 in slide.  The smallest text is a sub- or superscript (70 % of
the font size), so a drawing may be at most :func:`slide_budget` points wide
and high for that to hold.  :func:`spacing` spends that budget: comfortable
rows and columns when they fit, tighter rows for tall models (the 7-variable
LSTM), and columns widened towards a 16:9 picture.

Examples
--------
>>> from rnngraph.render.style import Style
>>> w, h = slide_budget(Style())
>>> round(w), round(h)
(735, 404)
>>> node_size(24.0, 19.5, 16.0)
(35.6, 28.6)
"""
from __future__ import annotations

SLIDE = (13.333 * 72, 7.5 * 72)          # a 16:9 slide, in points
MIN_TEXT_PT = 14.0                       # the smallest text once fitted to the slide
_SAFETY = 1.015                          # Graphviz rounds font sizes in its output


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
    """The largest drawing, in points and without its pad, whose smallest text is 14 pt on the slide."""
    scale = MIN_TEXT_PT / style.small * _SAFETY
    pad = 2 * float(style.graph_attrs()["pad"]) * 72
    return SLIDE[0] / scale - pad, SLIDE[1] / scale - pad


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
    (202.0, 63.0)
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
    dx = min(max(dx_comfort, min(dx_aspect, 1.6 * dx_comfort)), max(dx_fit, dx_min))
    return float(round(dx)), float(round(dy))
