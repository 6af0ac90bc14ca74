"""Drawing: a model -> Graphviz (svg, pdf, png, dot), folded or unrolled.

:func:`draw` is the entry; ``rnngraph draw`` and ``Model._repr_svg_`` call it.
The modules, one job each: :mod:`.style` (the role -> style table and the
themes), :mod:`.labels` (textbook typography), :mod:`.layout` (graph ->
placed Graphviz graph), :mod:`.rows` (the unrolled view's row order),
:mod:`.grid` (the time grid and the edge routes), :mod:`.fans` (the fans' trunks),
:mod:`.folded` (the folded view on levels, delay markers), :mod:`.metrics`
(node sizes, spacing for a 16:9 slide), :mod:`.opview` (the op view),
:mod:`.stats` (the quality figures), :mod:`.output` (rendering and atomic
writes), :mod:`.quiet` (Graphviz's stderr without fontconfig noise),
:mod:`.gallery` (docs/gallery).
"""
from __future__ import annotations

from .layout import Drawing, layout
from .output import FORMATS, render
from .style import Style

#: The most steps an unrolled drawing shows: 100 steps of an LSTM take some 6 s and are
#: far too wide to read; 1000 took 14 s for the Elman network, 5000 more than 2 minutes.
MAX_UNROLL = 100


def draw(model, unroll: int | None = None, format: str = "svg", **style) -> bytes:
    """Draw ``model`` folded, or unrolled over ``unroll`` steps, and return the bytes.

    Parameters
    ----------
    model : rnngraph.Model
    unroll : int, optional
        Draw steps 1..unroll side by side (at most :data:`MAX_UNROLL`); None draws the folded graph.
    format : {"svg", "pdf", "png", "dot"}
    **style
        Options of :class:`rnngraph.render.style.Style`: ``theme``, ``transparent``,
        ``font``, ``fontsize``, ``delay_marker``, ``time_labels``, ``stubs``, ``detail``.

    Examples
    --------
    >>> import rnngraph
    >>> svg = rnngraph.draw(rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))"), unroll=3)
    >>> svg[:5], b"baseline-shift" in svg
    (b'<?xml', False)
    """
    if unroll is not None and (isinstance(unroll, bool) or not isinstance(unroll, int)
                               or not 1 <= unroll <= MAX_UNROLL):
        raise ValueError(f"unroll must be a whole number of steps from 1 to {MAX_UNROLL}, not {unroll!r}")
    return render(layout(model, unroll, Style.of(**style)), format)


__all__ = ["FORMATS", "MAX_UNROLL", "Drawing", "Style", "draw", "layout", "render"]
