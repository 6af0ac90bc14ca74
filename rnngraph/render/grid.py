"""The unrolled view's placement: a grid of time columns and variable rows.

Every variable keeps one row in every column, so the picture reads like the
Deep Learning book's unrolled figures; the rows' order comes from
:mod:`rnngraph.render.rows`.  The steps' columns are equally spaced; the
initial values' column may sit closer to the first step (``lead``), beside
its fan's trunk, where that lets every column's own fan have a trunk.  Graphviz then draws what is placed here (``nop2``).

Edges are routed in three kinds:

* between neighbouring cells, a straight line;
* a same-step edge that skips rows (``x(t) -> y(t)`` over ``h1(t)``), a
  detour beside the column, or round the first or last column, whichever
  crosses fewest edges already drawn;
* an edge that would pass through a node (a delay of two steps), an arc;
* a fan, two or more edges from one node into rows of a column
  (``h(t-1)`` into an LSTM's gates), as a circuit diagram draws it: one
  trunk beside that column, then a branch into each head along its row,
  the weight label on the branch (:mod:`rnngraph.render.fans`).

Labels go beside their edge by :mod:`rnngraph.render.placement`.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from . import geometry as geo
from .fans import Fans
from .placement import GAP, Label, nearest_fraction, place

#: What a detour round the first or last column costs, in crossings: it runs round the whole
#: picture, its label far from both ends, and the same edge in the other columns goes up a lane
#: beside its column (the exercise's x(1) -> y(1) wrapped round the figure to save three crossings).
ROUND_END = 3.5


@dataclass
class Cell:
    """A node to place: its column and row, and its size in points."""

    col: int
    row: int
    width: float
    height: float
    pos: geo.Point = (0.0, 0.0)
    beside: float = 0.0        # right of its column by this much (a target beside its loss)

    @property
    def rx(self) -> float:
        return self.width / 2

    @property
    def ry(self) -> float:
        return self.height / 2


@dataclass
class Link:
    """An edge to route, with its label's size (or None)."""

    tail: str
    head: str
    label: tuple[float, float] | None
    path: list = field(default_factory=list)
    label_pos: geo.Point | None = None
    # where along the edge its label goes, as fractions of its length: attention's fan into
    # one node labelled by each tail (0, 0.45), its compact edges by their heads (0.55, 1)
    within: tuple[float, float] = (0.0, 1.0)


@dataclass
class Grid(Fans):
    """A placed and routed unrolled drawing.

    Parameters
    ----------
    cells : dict of str to Cell
        The nodes by id.
    links : list of Link
        The edges, in drawing order.
    dx, dy : float
        Column and row spacing, in points.
    arrow : float
        The length of an arrowhead.
    ends : set of int
        The columns a detour may go round (those of initial values only).
    """

    cells: dict[str, Cell]
    links: list[Link]
    dx: float
    dy: float
    arrow: float = 8.0
    ends: frozenset = frozenset()
    polys: dict[int, list] = field(default_factory=dict)
    boxes: dict[int, tuple] = field(default_factory=dict)
    lanes: dict = field(default_factory=dict)
    fans: dict = field(default_factory=dict)
    lead: float | None = None
    bare: set = field(default_factory=set)
    # Where to look: the cells by x, and the routed edges by the columns their boxes span.
    # A candidate route is checked against the nodes and edges near it, not all of them:
    # LSTM --unroll 50 (500 nodes, 868 edges) drew in 5.5 s, 3.2 of them in these checks.
    _xs: list = field(default_factory=list, init=False, repr=False)
    _ids_by_x: list = field(default_factory=list, init=False, repr=False)
    _max_rx: float = field(default=0.0, init=False, repr=False)
    _bands: dict = field(default_factory=dict, init=False, repr=False)
    _columns: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for c in self.cells.values():              # a cell's column and row never change
            self._columns.setdefault(c.col, []).append(c)

    def place(self, labels: bool = True) -> None:
        first = min((c.col for c in self.cells.values() if c.col not in self.ends), default=0)
        shift = self.dx - (self.lead or self.dx)
        for c in self.cells.values():
            c.pos = (c.col * self.dx + shift * (c.col < first) + c.beside, c.row * self.dy)
        by_x = sorted((c.pos[0], cid) for cid, c in self.cells.items())
        self._xs, self._ids_by_x = [x for x, _ in by_x], [cid for _, cid in by_x]
        self._max_rx = max((c.rx for c in self.cells.values()), default=0.0)
        self._bands = {}
        for j in self.polys:
            self._file(j)
        self.fans = self._fans()
        order = sorted(range(len(self.links)), key=self._route_rank)
        for i in order:
            link = self.links[i]
            link.path = self._route(link, i)
            if i in self.polys:
                self._unfile(i)
            self.polys[i] = geo.flatten(link.path)
            self.boxes[i] = _bbox(self.polys[i])
            self._file(i)
        if labels:
            self._place_labels()

    def _band_range(self, box) -> range:
        """The bands (columns' widths of x) that a box spans."""
        return range(math.floor(box[0] / self.dx), math.floor(box[2] / self.dx) + 1)

    def _file(self, j: int) -> None:
        for k in self._band_range(self.boxes[j]):
            self._bands.setdefault(k, set()).add(j)

    def _unfile(self, j: int) -> None:
        for k in self._band_range(self.boxes[j]):
            self._bands[k].discard(j)

    def _near(self, box) -> list[int]:
        """The routed edges whose boxes may meet ``box``: those sharing a band with it
        (two boxes that overlap in x share the band of a point of both)."""
        found: set[int] = set()
        for k in self._band_range(box):
            found |= self._bands.get(k, set())
        return sorted(found)

    def crossings(self) -> int:
        """How many times two routed edges cross, away from the nodes they share."""
        n = 0
        items = sorted(self.polys.items())
        for k, (i, a) in enumerate(items):
            for j, b in items[k + 1:]:
                if not _meet(self.boxes[i], self.boxes[j]):
                    continue
                ends = [self.cells[e] for e in {self.links[i].tail, self.links[i].head,
                                                self.links[j].tail, self.links[j].head}]
                branch = self.links[i].tail == self.links[j].tail
                n += sum(1 for p in geo.intersections(a, b, branch)
                         if not any(geo.inside_ellipse(p, c.pos, c.rx + 3, c.ry + 3) for c in ends))
        return n

    def clashes(self) -> int:
        """How many labels overlap a node or another label."""
        boxes = [((x - w / 2 + .5, y - h / 2 + .5, x + w / 2 - .5, y + h / 2 - .5))
                 for (x, y), (w, h) in ((l.label_pos, l.label) for l in self.links if l.label_pos)]
        n = sum(_meet(a, b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
        for b in boxes:
            n += any(geo.inside_ellipse((min(max(c.pos[0], b[0]), b[2]), min(max(c.pos[1], b[1]), b[3])),
                                        c.pos, c.rx, c.ry) for c in self.cells.values()
                     if _meet(b, (c.pos[0] - c.rx, c.pos[1] - c.ry, c.pos[0] + c.rx, c.pos[1] + c.ry)))
        return n

    def extent(self) -> tuple:
        """The bounding box of the nodes, edges and labels: (x0, y0, x1, y1)."""
        boxes = [(c.pos[0] - c.rx, c.pos[1] - c.ry, c.pos[0] + c.rx, c.pos[1] + c.ry)
                 for c in self.cells.values()] + list(self.boxes.values())
        for link in self.links:
            if link.label_pos is not None:
                (x, y), (w, h) = link.label_pos, link.label
                boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))

    # -- routing ----------------------------------------------------------------
    def _between(self, a: Cell, b: Cell) -> list[Cell]:
        """The cells in the same column strictly between a and b."""
        lo, hi = sorted((a.row, b.row))
        return [c for c in self._columns.get(a.col, ()) if lo < c.row < hi]

    def _route_rank(self, i: int):
        link = self.links[i]
        a, b = self.cells[link.tail], self.cells[link.head]
        skip = a.col == b.col and bool(self._between(a, b))
        return (i not in self.fans, skip, abs(a.row - b.row) + abs(a.col - b.col), i)

    def _path(self, a: Cell, b: Cell, via: list[geo.Point], radius: float) -> list:
        first = via[0] if via else b.pos
        last = via[-1] if via else a.pos
        start = geo.ellipse_edge(a.pos, a.rx + 1, a.ry + 1, first)
        end = geo.ellipse_edge(b.pos, b.rx + 1, b.ry + 1, last)
        return geo.rounded_path([start, *via, end], radius)

    def _hits(self, poly, ends) -> int:
        """How many nodes other than ``ends`` the polyline passes through."""
        n = 0
        x0, y0, x1, y1 = _bbox(poly)
        # only cells whose centre is within the widest half-width of the box's x range
        lo = bisect_left(self._xs, x0 - 4 - self._max_rx)
        hi = bisect_right(self._xs, x1 + 4 + self._max_rx)
        for cid in self._ids_by_x[lo:hi]:
            c = self.cells[cid]
            if cid in ends or c.pos[0] + c.rx < x0 - 4 or c.pos[0] - c.rx > x1 + 4 \
                    or c.pos[1] + c.ry < y0 - 4 or c.pos[1] - c.ry > y1 + 4:
                continue
            if any(geo.segment_hits_ellipse(p, q, c.pos, c.rx + 3, c.ry + 3)
                   for p, q in zip(poly, poly[1:])):
                n += 1
        return n

    def _cost(self, poly, link) -> float:
        ends = (link.tail, link.head)
        cost = 100.0 * self._hits(poly, ends)
        box = _bbox(poly)
        for j in self._near(box):               # counts: the sum is exact in any order
            if _meet(box, self.boxes[j]):
                cost += geo.crossings(poly, self.polys[j], self.links[j].tail == link.tail)
        return cost + geo.length(poly) / (50 * self.dx)

    def _candidates(self, link: Link, i: int):
        a, b = self.cells[link.tail], self.cells[link.head]
        parallel = [j for j, l in enumerate(self.links) if {l.tail, l.head} == {link.tail, link.head}
                    and link.tail != link.head]
        spread = (parallel.index(i) - (len(parallel) - 1) / 2) * 0.5 * self.dy if len(parallel) > 1 else 0
        mid = ((a.pos[0] + b.pos[0]) / 2, (a.pos[1] + b.pos[1]) / 2)
        ux, uy = geo._unit(*sorted((a.pos, b.pos)))   # one normal for both directions
        normal = (-uy, ux)
        if spread:
            yield [(mid[0] + normal[0] * spread, mid[1] + normal[1] * spread)], self.dy
            return
        if a is b:                                   # a loop: out and back on one side
            for side in (1, -1):
                for reach in (22, 32, 42):
                    x = a.pos[0] + side * (a.rx + reach)
                    yield [(x, a.pos[1] + a.ry * 0.9), (x, a.pos[1] - a.ry * 0.9)], 11
            return
        between = self._between(a, b) if a.col == b.col else []
        if not between:
            yield [], 0
            for k in (0.3, 0.45, 0.6):               # arcs, for edges that would cross a node
                for s in (1, -1):
                    h = s * k * self.dy
                    yield [(mid[0] + normal[0] * h, mid[1] + normal[1] * h)], self.dx
            if abs(b.col - a.col) > 1 and a.row != b.row:
                # past the columns between, under (or over) the tail's row: crossing none of their edges
                side, up = (1 if b.col > a.col else -1), (1 if b.row > a.row else -1)
                rim = a.pos[1] - up * (max(c.ry for c in self.cells.values() if c.row == a.row) + 14)
                yield [(a.pos[0] + side * self.dx / 2, rim), (b.pos[0] - side * self.dx / 2, rim)], 0.3 * self.dy
                # or beyond the head's row (a sum over the steps, at the top right, from each step)
                rim = b.pos[1] + up * (max(c.ry for c in self.cells.values() if c.row == b.row) + 14)
                yield [(a.pos[0] + side * self.dx / 2, rim), (b.pos[0] - side * self.dx / 2, rim)], 0.3 * self.dy
            return
        up = 1 if b.row > a.row else -1
        half = max(c.rx for c in between)
        lanes = [half + 10 + 14 * k for k in range(4)]
        rise = 0.42 * self.dy
        for lane in lanes:
            for side in (1, -1):
                if (a.col, side) in self.bare:       # where an own fan's labels are
                    continue
                x = a.pos[0] + side * lane
                yield [(x, a.pos[1] + up * rise), (x, b.pos[1] - up * rise)], 0.3 * self.dy
        # Round the first or last column: across no edge between it and the next.
        cols = [c.col for c in self.cells.values()]
        for side, edge in ((-1, min(cols)), (1, max(cols))):
            if edge not in self.ends or abs(edge - a.col) != 1:   # round a neighbouring end only
                continue
            span = [c for c in self.cells.values() if (c.col - a.col) * side > 0]
            x = max((c.pos[0] * side + c.rx for c in span), default=0) * side + side * 16
            lo = a.pos[1] - up * (a.ry + 14)
            hi = b.pos[1] + up * (b.ry + 14)
            yield [(a.pos[0], lo), (x, lo), (x, hi), (b.pos[0], hi)], 0.3 * self.dy, ROUND_END

    def _route(self, link: Link, i: int) -> list:
        a, b = self.cells[link.tail], self.cells[link.head]
        if i in self.fans:
            path = self._path(a, b, self.fans[i], 8.0)
            if not self._hits(geo.flatten(path), (link.tail, link.head)):
                return path
            del self.fans[i]
        best, best_cost, best_lane = None, math.inf, None
        for via, radius, *extra in self._candidates(link, i):
            path = self._path(a, b, via, radius)
            cost = self._cost(geo.flatten(path), link) + sum(extra)
            lane = None
            if len(via) == 2 and via[0][0] == via[1][0]:        # a detour up a lane beside a column
                lane = (via[0][0], *sorted((a.pos[1], b.pos[1])))
                # two detours on one lane run on top of each other: worse than nearly a crossing
                cost += 0.6 * sum(1 for x, lo, hi in self.lanes.get(round(lane[0] / self.dx), ())
                                  if abs(x - lane[0]) < 6 and lo < lane[2] and lane[1] < hi)
            if cost < best_cost - 1e-9:
                best, best_cost, best_lane = path, cost, lane
        if best_lane is not None:                # by the nearest column, to look up few
            self.lanes.setdefault(round(best_lane[0] / self.dx), []).append(best_lane)
        return best

    # -- labels -----------------------------------------------------------------
    def _place_labels(self) -> None:
        nodes = [(c.pos[0] - c.rx, c.pos[1] - c.ry, c.pos[0] + c.rx, c.pos[1] + c.ry)
                 for c in self.cells.values()]
        order = sorted(range(len(self.links)), key=self._route_rank)
        todo = [Label(i, self.links[i].label, prefer=self._by_trunk(i), within=self._branch(i),
                      group=self._pattern(i), anchor=self._middle(i))
                for i in order if self.links[i].label is not None]
        for lab in place(todo, [self.polys[i] for i in range(len(self.links))], nodes):
            self.links[lab.edge].label_pos = lab.centre

    def _pattern(self, i: int) -> tuple | None:
        """What edge ``i`` is at every step: its rows, how many columns it spans, its label's size
        (None for a fan's branch, whose label goes by its trunk)."""
        if i in self.fans:
            return None
        link = self.links[i]
        a, b = self.cells[link.tail], self.cells[link.head]
        return (a.row, b.row, b.col - a.col, link.label)

    def _middle(self, i: int) -> geo.Point:
        a, b = self.cells[self.links[i].tail], self.cells[self.links[i].head]
        return ((a.pos[0] + b.pos[0]) / 2, (a.pos[1] + b.pos[1]) / 2)

    def _by_trunk(self, i: int) -> geo.Point | None:
        """A fan's label: above its branch, right beside the trunk (clear of the lanes by the column)."""
        if i not in self.fans:
            return None
        (x, y), head = self.fans[i][-1], self.cells[self.links[i].head]
        w, h = self.links[i].label
        side = 1 if head.pos[0] > x else -1
        return (x + side * (w / 2 + GAP + 3), y + h / 2 + GAP)

    def _branch(self, i: int) -> tuple[float, float]:
        """The part of edge ``i`` its label goes beside, as fractions of its length: a fan's branch."""
        if i not in self.fans:
            return self.links[i].within
        poly = self.polys[i]
        return (min(nearest_fraction(poly, self.fans[i][-1]) + 0.02, 0.95), 1.0)


def _bbox(poly) -> tuple:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    return (min(xs), min(ys), max(xs), max(ys))


def _meet(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])
