"""Plane geometry for laid-out drawings: Graphviz splines, polylines, crossings.

Points are ``(x, y)`` tuples in points (1/72 in), y up, as Graphviz writes
``pos``.  A path is a list of cubic Bézier segments ``(p0, c1, c2, p3)``, each
starting where the previous one ends.

Examples
--------
>>> path = line_path([(0, 0), (10, 0)])
>>> flatten(path)
[(0, 0), (10, 0)]
>>> crossings(flatten(line_path([(5, -5), (5, 5)])), flatten(path))
1
"""
from __future__ import annotations

import math
import re

Point = tuple[float, float]
Bezier = tuple[Point, Point, Point, Point]


def _lerp(a: Point, b: Point, f: float) -> Point:
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


def _unit(a: Point, b: Point) -> Point:
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    return (dx / n, dy / n)


def line_path(points: list[Point]) -> list[Bezier]:
    """Straight segments through ``points``, as Béziers."""
    return [(a, _lerp(a, b, 1 / 3), _lerp(a, b, 2 / 3), b) for a, b in zip(points, points[1:])]


def rounded_path(points: list[Point], radius: float) -> list[Bezier]:
    """Straight segments through ``points`` with each corner rounded off by up to ``radius``."""
    if len(points) < 3:
        return line_path(points)
    out: list[Bezier] = []
    start = points[0]
    for prev, corner, nxt in zip(points, points[1:], points[2:]):
        r = min(radius, math.dist(prev, corner) / 2, math.dist(corner, nxt) / 2)
        a = _lerp(corner, prev, r / (math.dist(prev, corner) or 1))
        b = _lerp(corner, nxt, r / (math.dist(corner, nxt) or 1))
        out += line_path([start, a])
        out.append((a, _lerp(a, corner, 0.55), _lerp(b, corner, 0.55), b))
        start = b
    out += line_path([start, points[-1]])
    return [seg for seg in out if math.dist(seg[0], seg[3]) > 1e-6]


def bezier_point(seg: Bezier, f: float) -> Point:
    p0, c1, c2, p3 = seg
    g = 1 - f
    return (g**3 * p0[0] + 3 * g * g * f * c1[0] + 3 * g * f * f * c2[0] + f**3 * p3[0],
            g**3 * p0[1] + 3 * g * g * f * c1[1] + 3 * g * f * f * c2[1] + f**3 * p3[1])


def flatten(path: list[Bezier], samples: int = 8) -> list[Point]:
    """A polyline that follows ``path`` (``samples`` points per curved segment)."""
    pts: list[Point] = [path[0][0]] if path else []
    for seg in path:
        straight = _collinear(seg)
        for i in range(1, 2 if straight else samples + 1):
            pts.append(seg[3] if straight else bezier_point(seg, i / samples))
    return pts


def _collinear(seg: Bezier) -> bool:
    p0, c1, c2, p3 = seg
    return all(abs(_cross(p0, p3, c)) < 1e-6 * (1 + math.dist(p0, p3)) for c in (c1, c2))


def _cross(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def length(poly: list[Point]) -> float:
    return sum(math.dist(a, b) for a, b in zip(poly, poly[1:]))


def point_at(poly: list[Point], f: float) -> tuple[Point, Point]:
    """The point at fraction ``f`` of the polyline's length, and the unit direction there."""
    target, run = f * length(poly), 0.0
    for a, b in zip(poly, poly[1:]):
        d = math.dist(a, b)
        if run + d >= target and d > 0:
            return _lerp(a, b, (target - run) / d), _unit(a, b)
        run += d
    return poly[-1], _unit(poly[-2], poly[-1])


def segment_intersection(p1: Point, p2: Point, q1: Point, q2: Point) -> Point | None:
    """Where segments p1p2 and q1q2 properly cross, or None."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if (d1 > 0) != (d2 > 0) and (d3 > 0) != (d4 > 0) and d1 != d2 and d3 != d4:
        return _lerp(p1, p2, d1 / (d1 - d2))
    return None


def strict_intersection(p1: Point, p2: Point, q1: Point, q2: Point) -> Point | None:
    """Where segments p1p2 and q1q2 cross with each one's ends strictly either side of the other.

    For two edges from one node: one that branches off the other's trunk
    only touches it, and a trunk they share runs on top of both; neither is
    a crossing.

    Examples
    --------
    >>> strict_intersection((0, -1), (0, 1), (-1, 0), (1, 0))
    (0.0, 0.0)
    >>> strict_intersection((0, -1), (0, 1), (0, 0), (1, 0)) is None     # a branch
    True
    >>> strict_intersection((0, -1), (0, 1), (0, 0), (0, 2)) is None     # a shared trunk
    True
    """
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return _lerp(p1, p2, d1 / (d1 - d2))
    return None


def intersections(a: list[Point], b: list[Point], branch: bool = False) -> list[Point]:
    """Every point where polylines ``a`` and ``b`` cross.

    ``branch``: the two are edges from one node, so that where one leaves the
    other's trunk (or runs on it) is no crossing (:func:`strict_intersection`).
    """
    meet = strict_intersection if branch else segment_intersection
    out = []
    boxes_b = [(min(p[0], q[0]), max(p[0], q[0]), min(p[1], q[1]), max(p[1], q[1]), p, q)
               for p, q in zip(b, b[1:])]
    for p1, p2 in zip(a, a[1:]):
        x0, x1 = min(p1[0], p2[0]), max(p1[0], p2[0])
        y0, y1 = min(p1[1], p2[1]), max(p1[1], p2[1])
        for bx0, bx1, by0, by1, q1, q2 in boxes_b:
            if bx1 < x0 or bx0 > x1 or by1 < y0 or by0 > y1:
                continue
            hit = meet(p1, p2, q1, q2)
            if hit is not None and all(math.dist(hit, o) > 0.5 for o in out):
                out.append(hit)
    return out


def shared_length(a: list[Point], b: list[Point], tol: float = 0.5) -> float:
    """How long polylines ``a`` and ``b`` run on top of each other (within ``tol`` points).

    Examples
    --------
    >>> shared_length([(0, 0), (0, 100)], [(0, 40), (0, 60), (30, 60)])
    20.0
    >>> shared_length([(0, 0), (0, 100)], [(5, 0), (5, 100)])
    0.0
    """
    total = 0.0
    for p1, p2 in zip(a, a[1:]):
        n = math.dist(p1, p2)
        if n < 1:
            continue
        ux, uy = (p2[0] - p1[0]) / n, (p2[1] - p1[1]) / n
        for q1, q2 in zip(b, b[1:]):
            if abs(_cross(p1, p2, q1)) > tol * n or abs(_cross(p1, p2, q2)) > tol * n:
                continue
            t1 = (q1[0] - p1[0]) * ux + (q1[1] - p1[1]) * uy
            t2 = (q2[0] - p1[0]) * ux + (q2[1] - p1[1]) * uy
            total += max(0.0, min(n, max(t1, t2)) - max(0.0, min(t1, t2)))
    return total


def crossings(a: list[Point], b: list[Point], branch: bool = False) -> int:
    return len(intersections(a, b, branch))


def ellipse_edge(center: Point, rx: float, ry: float, toward: Point) -> Point:
    """Where the ray from ``center`` toward ``toward`` leaves the ellipse (rx, ry)."""
    dx, dy = toward[0] - center[0], toward[1] - center[1]
    if dx == dy == 0:
        return center
    k = 1 / math.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    return (center[0] + dx * k, center[1] + dy * k)


def inside_ellipse(p: Point, center: Point, rx: float, ry: float) -> bool:
    return ((p[0] - center[0]) / rx) ** 2 + ((p[1] - center[1]) / ry) ** 2 < 1


def segment_hits_ellipse(p: Point, q: Point, center: Point, rx: float, ry: float) -> bool:
    """Whether segment pq passes inside the ellipse."""
    # Scale to the unit circle, then the distance from the origin to the segment.
    ax, ay = (p[0] - center[0]) / rx, (p[1] - center[1]) / ry
    bx, by = (q[0] - center[0]) / rx, (q[1] - center[1]) / ry
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, -(ax * dx + ay * dy) / ((dx * dx + dy * dy) or 1)))
    return (ax + t * dx) ** 2 + (ay + t * dy) ** 2 < 1


def parse_pos(pos: str) -> tuple[list[Point], Point | None, Point | None]:
    """Graphviz's edge ``pos``: the B-spline control points, the arrow tips at start and end."""
    start = end = None
    pts: list[Point] = []
    for item in pos.split(";")[0].split():
        parts = item.split(",")
        if parts[0] == "e":
            end = (float(parts[1]), float(parts[2]))
        elif parts[0] == "s":
            start = (float(parts[1]), float(parts[2]))
        else:
            pts.append((float(parts[0]), float(parts[1])))
    return pts, start, end


def map_x(pos: str, fn) -> str:
    """A Graphviz ``pos`` (a node's ``x,y`` or an edge's spline, arrow tips included) with every
    x replaced by ``fn(x)``: moved right, or mirrored about a node.

    Examples
    --------
    >>> map_x("e,10,5 1,2 3.5,4", lambda x: x + 1)
    'e,11.000,5 2.000,2 4.500,4'
    """
    return re.sub(r"(^|\s|[es],)(-?[\d.]+),", lambda m: f"{m.group(1)}{fn(float(m.group(2))):.3f},", pos)


def pos_path(pos: str) -> list[Point]:
    """The polyline an edge is drawn along, arrowheads included, from its ``pos``."""
    pts, start, end = parse_pos(pos)
    segs = [tuple(pts[i:i + 4]) for i in range(0, len(pts) - 3, 3)]
    poly = flatten(segs) if segs else list(pts)
    if start is not None:
        poly.insert(0, start)
    if end is not None:
        poly.append(end)
    return poly


def to_pos(path: list[Bezier], arrow: float) -> str:
    """``path`` as a Graphviz edge ``pos`` with an arrowhead of length ``arrow`` at its end."""
    *body, last = path
    p0, c1, c2, p3 = last
    # Shorten the last segment so the arrowhead ends at p3.
    d = math.dist(c2, p3) or 1.0
    u = ((p3[0] - c2[0]) / d, (p3[1] - c2[1]) / d)
    if _collinear(last):
        u = _unit(p0, p3)
    base = (p3[0] - u[0] * arrow, p3[1] - u[1] * arrow)
    if _collinear(last):
        last = (p0, _lerp(p0, base, 1 / 3), _lerp(p0, base, 2 / 3), base)
    else:
        last = (p0, c1, (c2[0] - u[0] * arrow, c2[1] - u[1] * arrow), base)
    pts = [body[0][0] if body else last[0]]
    for seg in body + [last]:
        pts += seg[1:]
    return f"e,{p3[0]:.2f},{p3[1]:.2f} " + " ".join(f"{x:.2f},{y:.2f}" for x, y in pts)


def distance(p: Point, poly: list[Point]) -> float:
    """The distance from point ``p`` to polyline ``poly``.

    Examples
    --------
    >>> distance((5, 3), [(0, 0), (10, 0)])
    3.0
    """
    # Unrolled, with plain comparisons for min and max: label placement calls this some
    # 100,000 times for an LSTM unrolled over 50 steps.
    best = math.inf
    if not poly:
        return best
    (px, py), (ax, ay) = p, poly[0]
    for bx, by in poly[1:]:
        dx, dy = bx - ax, by - ay
        f = ((px - ax) * dx + (py - ay) * dy) / ((dx * dx + dy * dy) or 1)
        if f < 0.0:
            f = 0.0
        elif f > 1.0:
            f = 1.0
        d = math.hypot(ax + f * dx - px, ay + f * dy - py)
        if d < best:
            best = d
        ax, ay = bx, by
    return best


def polyline_cuts_box(poly: list[Point], box: tuple) -> bool:
    """Whether polyline ``poly`` enters the box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    for p, q in zip(poly, poly[1:]):
        if max(p[0], q[0]) < x0 or min(p[0], q[0]) > x1 or max(p[1], q[1]) < y0 or min(p[1], q[1]) > y1:
            continue
        if x0 <= p[0] <= x1 and y0 <= p[1] <= y1 or x0 <= q[0] <= x1 and y0 <= q[1] <= y1:
            return True
        if any(segment_intersection(p, q, corners[k], corners[(k + 1) % 4]) for k in range(4)):
            return True
    return False
