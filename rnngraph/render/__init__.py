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

from .drawing import Drawing
from .layout import layout
from .output import FORMATS, render
from .style import Style

class Picture(bytes):
    """The bytes of a drawing that Jupyter shows as the picture (svg or png).

    Examples
    --------
    >>> Picture(b"<svg/>", "svg")._repr_svg_()
    '<svg/>'
    """

    def __new__(cls, data: bytes, format: str):
        self = super().__new__(cls, data)
        self.format = format
        return self

    def _repr_svg_(self):
        return self.decode("utf-8") if self.format == "svg" else None

    def _repr_png_(self):
        return bytes(self) if self.format == "png" else None


MODES = ("train", "test", "both")


def drawing_of(model, unroll: int | None = None, mode: str = "train", chain: bool = False,
               **style):
    """The laid-out drawing of ``model`` in ``mode``: ``train`` (as written: teacher forcing),
    ``test`` (running free: each ``free y -> o`` line's output read in the target's place) or
    ``both`` side by side, as the Deep Learning book's figure 10.6.  ``chain``: a recursive
    network's balanced tree beside the chain over the same inputs (section 10.6: depth
    ceil(log2 tau) against tau - 1)."""
    if chain:
        return _tree_and_chain(model, unroll, Style.of(**style))
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "train" and not model.free:
        from ..errors import RnnGraphError
        raise RnnGraphError(f"{model.filename} has no 'free y -> o' line: its test graph is its "
                            "training graph; draw it without --mode")
    s = Style.of(**style)
    if mode == "train":
        return layout(model, unroll, s)
    if mode == "test":
        return layout(model.free_running(), unroll, s)
    from .compose import side_by_side
    return side_by_side([layout(model, unroll, s), layout(model.free_running(), unroll, s)],
                        ["training: teacher forcing", "test: running free"])


def _tree_and_chain(model, unroll, style):
    from ..errors import RnnGraphError
    from ..graphs.trees import Tree
    from .compose import side_by_side
    trees = [d.name for d in model.program.indices if d.tree]
    if not trees or unroll is None or isinstance(unroll, dict):
        raise RnnGraphError(f"{model.filename}: --chain draws a recursive network over a tree "
                            "(tree n) beside the chain over the same inputs: "
                            + ("the model has no tree" if not trees else "give --unroll N, the "
                               "number of leaves"))
    balanced, chain = Tree.balanced(unroll), Tree.chain(unroll)
    return side_by_side([layout(model, unroll, style),
                         layout(model, unroll, style, {i: chain for i in trees})],
                        [f"a balanced tree: depth {balanced.depth}",
                         f"the chain: depth {chain.depth}"])


def draw(model, unroll: int | None = None, format: str = "svg", dpi: float | None = None,
         mode: str = "train", chain: bool = False, **style) -> Picture:
    """Draw ``model`` folded, or unrolled over ``unroll`` steps, and return the bytes.

    Parameters
    ----------
    model : rnngraph.Model
    unroll : int, optional
        Draw steps 1..unroll side by side (at most the model's ``limits.max_unroll``, 100
        unless raised: see :mod:`rnngraph.check.limits`); None draws the folded graph.
    format : {"svg", "pdf", "png", "dot", "tex"}
        tex: a TikZ picture (:mod:`rnngraph.render.tikz`).
    dpi : float, optional
        The PNG's resolution (96 unless given).
    mode : {"train", "test", "both"}
        For a model with a ``free y -> o`` line: the training graph (teacher forcing),
        the test graph (running free), or both side by side (:func:`drawing_of`).
    chain : bool
        For a recursive network over a tree (``tree n``): the balanced tree over ``unroll``
        leaves beside the chain over the same inputs, to show depth log2 tau against tau.
    **style
        Options of :class:`rnngraph.render.style.Style`: ``theme``, ``transparent``,
        ``font``, ``fontsize``, ``delay_marker``, ``time_labels``, ``stubs``, ``detail``, ``fit``.

    Returns
    -------
    Picture
        The bytes, which Jupyter shows as the picture: ``model.draw(unroll=3)`` in a cell.

    Examples
    --------
    >>> import rnngraph
    >>> svg = rnngraph.draw(rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))"), unroll=3)
    >>> svg[:5], b"baseline-shift" in svg
    (b'<?xml', False)
    """
    if unroll is not None and not isinstance(unroll, dict) and (
            isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"unroll must be a positive whole number of steps, not {unroll!r} "
                         "(or a dict of them, one per index: {'t': 4, 'u': 3})")
    return Picture(render(drawing_of(model, unroll, mode, chain, **style), format, dpi=dpi),
                   format)


__all__ = ["FORMATS", "MODES", "Drawing", "Picture", "Style", "draw", "drawing_of", "layout", "render"]
