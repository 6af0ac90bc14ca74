"""The unrolled view's fans: two or more edges from one node into rows of a column.

``h(t-1)`` into an LSTM's gates, or ``x(t)`` into them, drawn as a circuit
diagram draws them: one trunk beside the column, then a branch into each head
along its row, the weight label on the branch beside the trunk, so that
every label has a row of its own.  A fan from the previous column runs on the
side it comes from; a column's own fan on the other side.  Where the columns
are too close for both trunks (and their labels, clear of the detours' lanes
by the column), the settings in ``_PADS`` are tried from roomy to tight, and
failing all, every column's own fan takes lanes like any other detour.

:class:`Fans` is a part of :class:`rnngraph.render.grid.Grid`: the methods
that choose the trunks and the room they need.
"""
from __future__ import annotations

# A fan's room beside its labels (for lanes by the column), whether columns' own fans get trunks,
# the least room between two columns' trunks, and an own fan's room (12: on a side kept free of
# lanes, for columns with one detour at most), in points: the first that fits is taken.
_PADS = ((38, True, 16.0, 38), (24, True, 13.0, 24), (24, True, 13.0, 12), (38, False, 0.0, 38))
_LEAD = 10.0                # the least room between an initial value and the first step's trunk


class Fans:
    """The fans of a :class:`rnngraph.render.grid.Grid` (its ``cells``, ``links``, ``dx``, ``dy``, ``ends``)."""

    def _fan_groups(self) -> dict:
        """The fans' edges by (within a column?, tail, the heads' column, upwards?)."""
        groups: dict = {}
        for i, link in enumerate(self.links):
            a, b = self.cells[link.tail], self.cells[link.head]
            if a.row != b.row and (a.col != b.col or self._between(a, b)):
                groups.setdefault((a.col == b.col, link.tail, b.col, b.row > a.row), []).append(i)
        return {k: v for k, v in groups.items() if len({self.links[i].head for i in v}) > 1}

    def _fans(self) -> dict:
        """The fans' edges, each with its corners: the trunk's top, then its branch point.

        Every branch keeps room beside the trunk for its label, clear of two
        lanes by the column.  A column's own fan (``x(t)`` into the gates)
        runs on the side no fan comes in from; where the columns are too close
        for both trunks, with less room, else every column's own fans take
        lanes, so that all columns look alike.
        """
        groups = self._fan_groups()
        members = {i for v in groups.values() for i in v}
        detours: dict = {}
        for i, link in enumerate(self.links):
            a, b = self.cells[link.tail], self.cells[link.head]
            if i not in members and a.col == b.col and self._between(a, b):
                detours[a.col] = detours.get(a.col, 0) + 1
        for pad, own, gap, own_pad in _PADS:
            if own_pad < pad and max(detours.values(), default=0) > 1:
                continue                     # the detours would need lanes on both sides
            fans = self._fan_corners(groups, pad, own, gap, own_pad)
            if fans is not None:
                self.bare = {(col, side) for _, _, col, side, _, same in self._trunks(groups, pad, own, own_pad)
                             if same and own_pad < pad}
                return fans
        return {}

    def _trunks(self, groups: dict, pad: float, own: bool, own_pad: float) -> list:
        """The fans' trunks: (tail, members, heads' column, side, distance from that column)."""
        trunks: list = []
        slots: dict = {}
        for (same, tail, col, up), members in sorted(groups.items()):
            if same and not own:
                continue
            # the side of the column the trunk runs: the side it comes from, or
            # (a column's own fan) the side no fan comes in from
            side = -1 if col > self.cells[tail].col else 1
            if same:
                side = -1 if slots.get((col, 1)) and not slots.get((col, -1)) else 1
            width = max((self.links[i].label or (0, 0))[0] for i in members)
            rx = max(self.cells[self.links[i].head].rx for i in members)
            k = slots.setdefault((col, side), 0)
            slots[(col, side)] += 1
            trunks.append((tail, members, col, side, rx + width + (own_pad if same else pad) + 14 * k, same))
        return trunks

    def fan_room(self, k: int = 1) -> tuple[float, float]:
        """The column spacing at which every column's own fan gets a trunk with ``_PADS[k]`` (0: no
        own fans), and the least room from the initial values' column to the first step's."""
        pad, _, gap, own_pad = _PADS[k]
        trunks = self._trunks(self._fan_groups(), pad, True, own_pad)
        room = max((off + other + gap for _, _, col, side, off, same in trunks if same
                    for _, _, c, s, other, _ in trunks if c == col + side and s == -side), default=0.0)
        first = min((c.col for c in self.cells.values() if c.col not in self.ends), default=0)
        start = [c.rx for c in self.cells.values() if c.col == first - 1]
        lead = max((off for _, _, col, side, off, _ in trunks if col == first and side == -1), default=None)
        return room, (max(start) + _LEAD + lead if start and lead else 0.0)

    def lead_room(self) -> float | None:
        """Once placed: the least room from the initial values' column to the first step's, beside
        the trunks of the fans into the first step (None: no such fan, or no initial values)."""
        first = min((c.col for c in self.cells.values() if c.col not in self.ends), default=0)
        start = [c.rx for c in self.cells.values() if c.col == first - 1]
        trunks = [self.fans[i][0][0] for i in self.fans
                  if self.cells[self.links[i].head].col == first and self.cells[self.links[i].tail].col < first]
        if start and not trunks:          # no fan: room for the widest label between the columns
            links = [l for l in self.links if self.cells[l.tail].col == first - 1 and l.label]
            return max(start) + max((l.label[0] for l in links), default=0.0) + 36.0 \
                + max(c.rx for c in self.cells.values() if c.col == first)
        return first * self.dx - min(trunks) + max(start) + _LEAD if start and trunks else None

    def _fan_corners(self, groups: dict, pad: float, own: bool, gap: float, own_pad: float) -> dict | None:
        fans: dict = {}
        placed: list = []
        busy = self._busy()
        for tail, members, col, side, off, same in self._trunks(groups, pad, own, own_pad):
            a = self.cells[tail]
            x = col * self.dx + side * off
            if same and any(0 < side * (t - col * self.dx) < self.dx and side * (t - x) < gap for t in placed):
                return None                  # too close to the next column's trunk
            placed.append(x)
            near = min((self.links[i].head for i in members), key=lambda n: abs(self.cells[n].row - a.row))
            toward = 1 if a.row > self.cells[near].row else -1

            def corner(head):
                # a row with an edge along it on the trunk's side: the branch comes in from above or below
                return (x, self.cells[head].pos[1] + toward * 0.28 * self.dy * (head in busy[side]))
            for i in members:
                head = self.links[i].head
                fans[i] = [corner(near)] if head == near else [corner(near), corner(head)]
        return fans

    def _busy(self) -> dict:
        """The nodes with an edge along their row on their left (-1) and on their right (1)."""
        busy: dict = {1: set(), -1: set()}
        for link in self.links:
            a, b = self.cells[link.tail], self.cells[link.head]
            if a.row == b.row and a.col != b.col:
                busy[1 if b.col > a.col else -1].add(link.tail)
                busy[1 if a.col > b.col else -1].add(link.head)
        return busy
