"""The quality figures of a drawing, measured on Graphviz's own layout.

Everything here is read back from what Graphviz writes (``-Tdot`` positions
and sizes, and the SVG's font sizes), not from what rnngraph asked for, so a
figure is what the reader of the picture gets:

``column_error``    the largest spread of x centres within one time step, as a
                    fraction of the column spacing (0: perfectly aligned)
``spacing_error``   how unequal the spacings of the steps' columns are, as a fraction of it
                    (the initial values' column may sit closer to the first step)
``row_error``       the largest spread of y centres of one variable, in points
``through_nodes``   edges that pass through a node they do not end at
``node_overlaps``   pairs of nodes whose boxes overlap
``detached_edges``  edges that do not start at their tail or do not end at their head
``wrong_way``       recurrent edges that do not point right (left when backward)
``crossings``       pairs of edges that cross, counted once per crossing (and once for
                    edges from two nodes that run on top of each other; edges from
                    one node may share a trunk)
``label_overlaps``  pairs of edge labels that overlap
``label_marker_overlaps``  edge labels that overlap a delay marker
``label_node_overlaps``    edge labels that overlap a node
``labels_crossed``  edge labels that an edge (their own or another) runs through
``labels_ambiguous``       edge labels nearer to another edge than to their own,
                    so that a reader could take them for that edge's label
``size_pt``         width and height in points, margins included, before any fitting
``min_font_pt``     the smallest text when the drawing fills a whole 13.33 x 7.5 in slide
                    edge to edge (what the natural size is laid out for: 14 pt)
``label_pt_beamer``, ``min_text_pt_beamer``  the names' size and the smallest text (a
                    sub- or superscript) once the drawing is fitted to a 16:9 beamer
                    frame (``--fit beamer``); ``_slide``: to a 13.33 x 7.5 in slide
"""
from __future__ import annotations

import math
import re
import statistics

import pygraphviz as pgv

from . import geometry as geo
from .drawing import POINTS, Drawing
from .metrics import SLIDE, TARGETS, fit_scale
from .placement import box_distance
from .quiet import graphviz_stderr



def _read(drawing: Drawing):
    """Node centres and radii, edge polylines and edge-label boxes, as Graphviz laid them out."""
    with graphviz_stderr():
        out = pgv.AGraph(string=drawing.agraph.draw(format="dot", prog="nop2").decode("utf-8"))
    nodes = {}
    for n in out.nodes():
        x, y = map(float, n.attr["pos"].split(","))
        nodes[str(n)] = ((x, y), float(n.attr["width"]) * POINTS / 2, float(n.attr["height"]) * POINTS / 2)
    edges, labels = [], []
    for u, v, k in out.edges(keys=True):
        e = out.get_edge(u, v, k)
        edges.append((str(u), str(v), geo.pos_path(e.attr["pos"])))
        own = len(edges) - 1
        size = drawing.label_sizes.get(str(k))
        if size and e.attr.get("lp"):
            x, y = map(float, e.attr["lp"].split(","))
            # the folded view's labels keep room for a marker on their left, and a little on their right
            left, right = size[2:4] if len(size) > 2 else (0, 0)
            if size[0] - left - right <= 1:        # no text: the room an unlabelled loop keeps for its square
                continue
            labels.append((x - size[0] / 2 + left, y - size[1] / 2, x + size[0] / 2 - right,
                           y + size[1] / 2, own))
    return nodes, edges, labels


def _overlap(a, b, tol: float = 0.5) -> bool:
    """Whether boxes a and b overlap by more than ``tol`` points both ways."""
    return min(a[2], b[2]) - max(a[0], b[0]) > tol and min(a[3], b[3]) - max(a[1], b[1]) > tol


def _box_meets_ellipse(box, centre, rx, ry) -> bool:
    """Whether a box and an ellipse overlap: the box's point nearest the centre lies inside."""
    x = min(max(centre[0], box[0]), box[2])
    y = min(max(centre[1], box[1]), box[3])
    return geo.inside_ellipse((x, y), centre, rx, ry)


def overlaps(nodes: dict, labels: list, markers: set) -> dict:
    """Label-label, label-marker and label-node overlaps (label boxes ``(x0, y0, x1, y1)``)."""
    mark_boxes = [(c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry)
                  for n, (c, rx, ry) in nodes.items() if n in markers]
    others = [(c, rx, ry) for n, (c, rx, ry) in nodes.items() if n not in markers]
    return dict(
        label_overlaps=sum(_overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]),
        label_marker_overlaps=sum(_overlap(a, m) for a in labels for m in mark_boxes),
        label_node_overlaps=sum(_box_meets_ellipse((a[0] + .5, a[1] + .5, a[2] - .5, a[3] - .5), c,
                                                   rx, ry) for a in labels for c, rx, ry in others))


def label_edges(labels: list, edges: list) -> dict:
    """Labels crossed by an edge, and labels nearer to another edge than to their own.

    ``labels`` are boxes ``(x0, y0, x1, y1, own)``, ``own`` the index of the
    labelled edge in ``edges`` (``(tail, head, polyline)``).  A box is shrunk by
    half a point so that an edge grazing its corner does not count; a label is
    ambiguous when another edge comes nearer to its box than its own edge, by
    more than a point.

    Examples
    --------
    >>> edges = [("a", "b", [(0, 0), (0, 100)]), ("c", "d", [(30, 0), (30, 100)])]
    >>> label_edges([(4, 40, 14, 50, 0)], edges)          # beside its own edge
    {'labels_crossed': 0, 'labels_ambiguous': 0}
    >>> label_edges([(18, 40, 28, 50, 0)], edges)         # beside the other one
    {'labels_crossed': 0, 'labels_ambiguous': 1}
    >>> label_edges([(25, 40, 35, 50, 1)], edges)         # its own edge runs through it
    {'labels_crossed': 1, 'labels_ambiguous': 0}
    """
    crossed = ambiguous = 0
    boxes = [(min(p[0] for p in poly), min(p[1] for p in poly), max(p[0] for p in poly),
              max(p[1] for p in poly)) for _, _, poly in edges]
    for x0, y0, x1, y1, own in labels:
        box = (x0 + .5, y0 + .5, x1 - .5, y1 - .5)
        mine = box_distance(box, edges[own][2])
        near = (box[0] - mine - 1, box[1] - mine - 1, box[2] + mine + 1, box[3] + mine + 1)
        hit = amb = False
        for j, (_, _, poly) in enumerate(edges):
            b = boxes[j]
            if b[2] < near[0] or b[0] > near[2] or b[3] < near[1] or b[1] > near[3]:
                continue
            if geo.polyline_cuts_box(poly, box):
                hit = True
            elif j != own and box_distance(box, poly) < mine - 1:
                amb = True
        crossed += hit or mine == 0
        ambiguous += amb
    return dict(labels_crossed=crossed, labels_ambiguous=ambiguous)


def label_quality(drawing: Drawing) -> tuple[int, int]:
    """(labels overlapping a label, a marker or a node, labels crossed or ambiguous): fewer is better."""
    nodes, edges, labels = _read(drawing)
    info = drawing.nodes
    o = overlaps(nodes, [b[:4] for b in labels], {n for n in nodes if info.get(n, {}).get("marker")})
    e = label_edges(labels, edges)
    return sum(o.values()), sum(e.values())


def _alignment(var: dict, info: dict) -> dict:
    """Columns (time steps) and rows (variables): spreads and spacing."""
    figures = {}
    cols: dict = {}
    rows: dict = {}
    for n, (c, _, _) in var.items():
        part = info[n].get("part", 0)             # two drawings side by side: each its own columns
        if info[n]["kind"] != "stub" and info[n]["t"] is not None and not info[n].get("beside"):
            cols.setdefault((part, info[n]["t"]), []).append(c[0])
        if not (info[n]["kind"] in ("initial", "stub") and info[n].get("row") is None):
            rows.setdefault((part, info[n]["name"]), []).append(c[1])
    # the steps are equally spaced; the initial values' column may sit closer to the first step
    steps = {(info[n].get("part", 0), info[n]["t"]) for n in var
             if info[n]["kind"] not in ("stub", "initial") and info[n]["t"] is not None}
    centres = [statistics.mean(xs) for t, xs in sorted(cols.items()) if t in steps and t[0] == 0]
    gaps = [b - a for a, b in zip(centres, centres[1:])]
    spacing = statistics.median(gaps) if gaps else 0.0
    figures["column_spacing_pt"] = round(spacing, 2)
    figures["column_error"] = round(max((max(xs) - min(xs)) for xs in cols.values()) / spacing, 4) \
        if spacing else 0.0
    figures["spacing_error"] = round(max(abs(g - spacing) for g in gaps) / spacing, 4) if spacing else 0.0
    figures["row_error"] = round(max((max(ys) - min(ys)) for ys in rows.values()), 2) if rows else 0.0

    return figures


def _near_boxes(a, b, pad: float = 1.0) -> bool:
    return not (max(p[0] for p in a) + pad < min(p[0] for p in b) or max(p[0] for p in b) + pad < min(p[0] for p in a)
                or max(p[1] for p in a) + pad < min(p[1] for p in b) or max(p[1] for p in b) + pad < min(p[1] for p in a))


def _near_ends(p, ends, nodes, pad=3.0) -> bool:
    """Whether p lies at one of the nodes ``ends`` (where edges meet anyway)."""
    return any(geo.inside_ellipse(p, nodes[e][0], nodes[e][1] + pad, nodes[e][2] + pad) for e in ends)


def measure(drawing: Drawing, svg: bytes | None = None) -> dict:
    """The quality figures of ``drawing``.

    Examples
    --------
    >>> from rnngraph import parse
    >>> from rnngraph.render.layout import layout
    >>> s = measure(layout(parse("h(t) = tanh(W h(t-1) + U x(t))"), unroll=3))
    >>> s["crossings"], s["through_nodes"], s["wrong_way"], s["column_error"] < 0.02
    (0, 0, 0, True)
    """
    nodes, edges, labels = _read(drawing)
    info = drawing.nodes
    var = {n: v for n, v in nodes.items() if not info[n]["marker"]}
    figures: dict = dict(nodes=len(var), edges=len(edges))

    if drawing.style.detail != "ops":          # the op view has no grid to align to
        figures.update(_alignment(var, info))

    # Edges through nodes, and recurrent edges pointing the wrong way.
    through = 0
    for u, v, poly in edges:
        for n, (c, rx, ry) in var.items():
            if n in (u, v):
                continue
            if any(geo.segment_hits_ellipse(p, q, c, rx - 1, ry - 1) for p, q in zip(poly, poly[1:])):
                through += 1
    figures["through_nodes"] = through
    # an edge that does not start at its tail and end at its head (a loop moved off its node)
    near = lambda p, n: abs(p[0] - nodes[n][0][0]) <= nodes[n][1] + 4 and abs(p[1] - nodes[n][0][1]) <= nodes[n][2] + 4
    figures["detached_edges"] = sum(1 for u, v, poly in edges if not (near(poly[0], u) and near(poly[-1], v)))
    boxes = [(c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry) for c, rx, ry in var.values()]
    figures["node_overlaps"] = sum(_overlap(a, b, 1.0) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    wrong = 0
    if drawing.unroll is not None and drawing.spacing is not None:   # on a time axis (not dot's one step)
        for e in drawing.edges:
            delay = e["delay"]
            if not delay:
                continue
            dx = nodes[e["head"]][0][0] - nodes[e["tail"]][0][0]
            wrong += (dx <= 0) if delay > 0 else (dx >= 0)
    figures["wrong_way"] = wrong

    # Crossings, away from the nodes where edges meet.
    crossings = 0
    for i, (u, v, a) in enumerate(edges):
        for x, y, b in edges[i + 1:]:
            ends = {u, v, x, y}
            # edges from one node that share a trunk and branch off it do not cross there;
            # edges from two nodes that run on top of each other count as crossing once
            crossings += sum(1 for p in geo.intersections(a, b, u == x) if not _near_ends(p, ends, nodes))
            if u != x and _near_boxes(a, b) and geo.shared_length(a, b) > 2:
                crossings += 1
    figures["crossings"] = crossings
    figures.update(overlaps(nodes, [b[:4] for b in labels], {n for n in nodes if info[n]["marker"]}))
    figures.update(label_edges(labels, edges))

    # Text size once fitted to each target.
    if svg is None:
        from .output import render
        svg = render(drawing, "svg")
    from .output import natural_size
    sizes = [float(s) for s in re.findall(r'<text[^>]*font-size="([\d.]+)"', svg.decode("utf-8"))]
    width, height = natural_size(drawing)
    figures["size_pt"] = (round(width, 1), round(height, 1))
    whole = min(SLIDE[0] / width, SLIDE[1] / height)
    figures["min_font_pt"] = round(min(sizes) * whole, 2) if sizes else math.inf
    for name, target in TARGETS.items():
        scale = fit_scale(width, height, drawing.style.fontsize, target)
        figures[f"label_pt_{name}"] = round(drawing.style.fontsize * scale, 2)
        figures[f"min_text_pt_{name}"] = round(min(sizes) * scale, 2) if sizes else math.inf
    return figures


def report(figures: dict) -> str:
    """``figures`` as the lines ``rnngraph draw --stats`` prints."""
    names = dict(nodes="nodes", edges="edges", crossings="edge crossings",
                 through_nodes="edges through a node", node_overlaps="nodes overlapping",
                 detached_edges="edges not touching their ends", wrong_way="recurrent edges pointing the wrong way",
                 column_error="column alignment error (fraction of spacing)",
                 spacing_error="column spacing error (fraction)", row_error="row alignment error (pt)",
                 column_spacing_pt="column spacing (pt)", label_overlaps="edge labels overlapping",
                 label_marker_overlaps="edge labels on a delay marker",
                 label_node_overlaps="edge labels on a node",
                 labels_crossed="edge labels crossed by an edge",
                 labels_ambiguous="edge labels nearer another edge than their own", size_pt="drawing size (pt)",
                 min_font_pt="smallest text, filling a whole 16:9 slide (pt)",
                 **{f"{k}_pt_{t}": f"{what} fitted to {target.what} (pt)" for t, target in TARGETS.items()
                    for k, what in (("label", "names"), ("min_text", "smallest text"))})
    return "\n".join(f"{names.get(k, k)}: {v if not isinstance(v, tuple) else ' x '.join(map(str, v))}"
                     for k, v in figures.items())
