"""Edge labels (and delay markers) beside their own edge, read unambiguously.

Both views place their weight labels here, once every edge is routed: the
unrolled grid (:mod:`rnngraph.render.grid`) and the folded view after ``dot``
(:mod:`rnngraph.render.folded`).  A label goes beside its edge, near its
middle when it can, else further along it, then a little further out, at the
first spot where

* it covers no node, no other label and no delay marker,
* no edge runs through it, its own included, and
* no other edge is nearer to it than its own (:func:`ambiguous`), so that a
  reader takes it for the right arrow's label.

A recurrent edge of the folded view carries its delay markers (squares on
the edge) right beside its label, and they are placed with it.

Examples
--------
>>> edges = [[(0, 0), (0, 100)], [(30, 0), (30, 100)]]
>>> [lab.centre for lab in place([Label(0, (10, 10)), Label(1, (10, 10))], edges, [])]
[(-11.0, 50.0), (19.0, 50.0)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import geometry as geo

GAP = 6.0                  # from a label's box to its edge, in points
PAD = 3.0                  # the clearance a label keeps from nodes, labels, markers and other edges
MARGIN = 2.0               # another edge must be this much farther from a label than its own
FRACTIONS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.74, 0.26, 0.82, 0.18, 0.88, 0.12, 0.92, 0.95, 0.08)
_BIN = 72.0                # the side of the square bins things are looked up in, in points


@dataclass
class Label:
    """A label to place beside edge number ``edge``.

    ``size`` is its text's width and height (None: markers only); ``marks``
    how many delay squares of side ``mark`` go on the edge beside it,
    ``mark_gap`` apart; ``prefer`` a centre to try first (where ``dot`` put it);
    ``within`` the part of the edge it may go beside, as fractions of its
    length (a fan's branch, not the trunk it shares).  Labels of one ``group``
    (the same edge at every step of an unrolled drawing) try first where the
    group's first label went, relative to their ``anchor``: the same side of
    the same edge in every column, as the textbooks draw them.
    """

    edge: int
    size: tuple[float, float] | None
    marks: int = 0
    mark: float = 0.0
    mark_gap: float = 0.0
    prefer: geo.Point | None = None
    within: tuple[float, float] = (0.0, 1.0)
    group: object = None
    anchor: geo.Point | None = None
    centre: geo.Point | None = None
    box: tuple | None = None
    squares: list = field(default_factory=list)


def box_distance(box, poly) -> float:
    """The distance from a box ``(x0, y0, x1, y1)`` to a polyline (0 when it runs through it)."""
    if geo.polyline_cuts_box(poly, box):
        return 0.0
    corners = [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]
    ring = corners + corners[:1]
    return min(min(geo.distance(c, poly) for c in corners), min(geo.distance(p, ring) for p in poly))


def ambiguous(box, own, other, margin: float = -1.0) -> bool:
    """Whether polyline ``other`` is nearer to the label ``box`` than its own edge ``own``, by more than ``-margin``."""
    return box_distance(box, other) < box_distance(box, own) + margin


def _meet(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _bbox(poly) -> tuple:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    return (min(xs), min(ys), max(xs), max(ys))


class _Bins:
    """Boxes and polylines by the square bins they touch, to look up only what is near."""

    def __init__(self):
        self.bins: dict = {}

    def add(self, box, item) -> None:
        for i in range(int(box[0] // _BIN), int(box[2] // _BIN) + 1):
            for j in range(int(box[1] // _BIN), int(box[3] // _BIN) + 1):
                self.bins.setdefault((i, j), []).append(item)

    def near(self, box) -> list:
        found = {}
        for i in range(int(box[0] // _BIN), int(box[2] // _BIN) + 1):
            for j in range(int(box[1] // _BIN), int(box[3] // _BIN) + 1):
                for item in self.bins.get((i, j), ()):
                    found[id(item)] = item
        return list(found.values())


def place(labels: list[Label], edges: list[list], nodes: list[tuple]) -> list[Label]:
    """Place ``labels`` in order beside their edges; ``nodes`` are the boxes to keep clear of.

    Sets each label's ``centre``, ``box`` and the centres of its ``squares``.
    """
    edge_boxes = [_bbox(p) for p in edges]
    things = _Bins()
    for k, box in enumerate(edge_boxes):
        things.add(box, ("edge", k, box))
    for box in nodes:
        things.add(box, ("box", -1, box))
    offsets: dict = {}                     # group -> where its first label went, from its anchor
    for lab in labels:
        follow = offsets.get(lab.group) if lab.group is not None and lab.prefer is None else None
        if follow is not None:
            lab.prefer = (lab.anchor[0] + follow[0], lab.anchor[1] + follow[1])
        _place_one(lab, edges, edge_boxes, things)
        if follow is not None:
            lab.prefer = None
        if lab.group is not None and lab.group not in offsets and lab.centre is not None:
            offsets[lab.group] = (lab.centre[0] - lab.anchor[0], lab.centre[1] - lab.anchor[1])
        for box in [lab.box] + [_square(c, lab.mark) for c in lab.squares]:
            if box is not None:
                things.add(box, ("box", lab.edge, box))
    return labels


def _square(c, side) -> tuple:
    return (c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2)


def nearest_fraction(poly, target) -> float:
    """The fraction of the length of ``poly`` at which it comes nearest to ``target``."""
    best, run = None, 0.0
    for p, q in zip(poly, poly[1:]):
        seg = math.dist(p, q)
        f = max(0.0, min(1.0, ((target[0] - p[0]) * (q[0] - p[0]) + (target[1] - p[1]) * (q[1] - p[1]))
                         / ((seg * seg) or 1)))
        dist = math.dist((p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1])), target)
        if best is None or dist < best[0]:
            best = (dist, run + f * seg)
        run += seg
    return best[1] / (run or 1)


def _candidates(lab: Label, poly):
    w, h = lab.size or (0.0, 0.0)
    total = geo.length(poly)
    gap0 = GAP + (lab.mark / 2 + 1 if lab.marks else 0.0)

    def squares_at(f):
        return [geo.point_at(poly, min(max(f + (j - (lab.marks - 1) / 2) * lab.mark_gap / (total or 1),
                                           0.0), 1.0))[0] for j in range(lab.marks)]
    if lab.prefer is not None:
        yield 0, lab.prefer, squares_at(nearest_fraction(poly, lab.prefer))
    k = 1
    for extra in (0.0, 5.0, 11.0):
        for f in FRACTIONS:
            f = lab.within[0] + f * (lab.within[1] - lab.within[0])
            p, (ux, uy) = geo.point_at(poly, f)
            squares = squares_at(f)
            for side in (1, -1):
                nx_, ny_ = -uy * side, ux * side
                # clear of its edge by a few points: italic capitals lean over their box
                gap = abs(nx_) * w / 2 + abs(ny_) * h / 2 + gap0 + extra
                c = (p[0] + nx_ * gap, p[1] + ny_ * gap)
                yield k, c, squares
                k += 1
            if not w:
                break                                   # markers only: no side to choose
        if not w:
            break


def _place_one(lab: Label, edges, edge_boxes, things) -> None:
    own = edges[lab.edge]
    w, h = lab.size or (0.0, 0.0)
    best = None
    for k, c, squares in _candidates(lab, own):
        box = (c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2) if w else None
        cost = 0.0
        for b in ([box] if box else []) + [_square(s, lab.mark + 2) for s in squares]:
            pad = (b[0] - PAD, b[1] - PAD, b[2] + PAD, b[3] + PAD)
            for kind, j, other in things.near(pad):
                if kind == "box" and _meet(pad, other):
                    cost += 10
        cost += 0.01 * k
        if box is not None and (best is None or cost < best[0]):
            pad = (box[0] - PAD, box[1] - PAD, box[2] + PAD, box[3] + PAD)
            near = [(j, other) for kind, j, other in things.near(pad) if kind == "edge" and _meet(pad, other)]
            cost += 10 * sum(1 for j, other in near if geo.polyline_cuts_box(edges[j], pad))
            if best is None or cost < best[0]:
                mine = box_distance(box, own)
                reach = (box[0] - mine - MARGIN, box[1] - mine - MARGIN,
                         box[2] + mine + MARGIN, box[3] + mine + MARGIN)
                for kind, j, other in things.near(reach):
                    if kind == "edge" and j != lab.edge and _meet(reach, other) \
                            and not geo.polyline_cuts_box(edges[j], pad) \
                            and box_distance(box, edges[j]) < mine + MARGIN:
                        cost += 5
        if best is None or cost < best[0]:
            best = (cost, c, box, squares)
        if cost < 1:                              # clear of everything: the first such is the best
            break
    _, lab.centre, lab.box, lab.squares = best
