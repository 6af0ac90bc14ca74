"""The cell view of a gated unit (LSTM, GRU, ...): each step's cell one box, as in colah's chain.

Unrolled, a gated unit's gates stacked in rows give a picture nobody reads
(an LSTM at 3 steps: 23 crossings).  Christopher Olah's "Understanding LSTM
Networks" draws the chain instead, and so does this view: each step's cell is
one box; the states it carries to the next step (``c`` and ``h``) run as
lines from box to box, labelled; the inputs come in from below and the
states the rest of the model reads go out at the top, where the variables
outside the cell (outputs, losses) sit above them.  The gates are drawn
folded, or unrolled with ``detail="vars"``.

What is in the cell (:func:`cell_of`): the recurrent variables of the model's
gated loop (a variable computed from an elementwise product of two computed
variables, as ``f(t) * c(t-1)``), and whatever only they read.

Examples
--------
>>> from rnngraph import load
>>> cell = cell_of(load("examples/torch_lstm.rnn"))
>>> cell.members, cell.exported, cell.carried
(('i', 'f', 'g', 'o', 'c', 'h'), ('h',), (('c', 1), ('h', 1)))
>>> cell_of(load("examples/exercise.rnn")) is None
True
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..check.analysis import step_order
from ..lang import ast
from . import geometry as geo
from .drawing import Drawing, new_graph, node_id, step_text
from .labels import text_label, var_label, weight_label

#: The name the box of each step goes by in the drawing (no variable can be called this).
CELL = "[cell]"


@dataclass(frozen=True)
class Cell:
    """The variables inside a gated unit's cell.

    Attributes
    ----------
    members : tuple of str
        Every variable computed in the cell, in step order.
    exported : tuple of str
        The members read outside the cell (the last member when none is): they go out at the top.
    carried : tuple of (str, int)
        Each member the cell reads at an earlier step, with its delay: the lines from box to box.
    """

    members: tuple[str, ...]
    exported: tuple[str, ...]
    carried: tuple[tuple[str, int], ...]


def _gating(model) -> set[str]:
    """The variables computed with an elementwise product of two computed variables."""
    computed = {e.name for e in model.equations if e.kind == "seq"}

    def reads(node) -> bool:
        return any(isinstance(n, (ast.Ref, ast.At)) and n.name in computed for n in ast.walk(node))

    return {e.name for e in model.equations if e.kind == "seq"
            and any(isinstance(n, ast.Binary) and n.op == "*" and reads(n.left) and reads(n.right)
                    for n in ast.walk(e.rhs))}


def cell_of(model) -> Cell | None:
    """The cell of ``model``'s gated unit, or None when it has no gated loop."""
    order = [e.name for e in step_order(model)]
    gated = _gating(model)
    if not gated:
        return None
    fold = model.graph()
    from ..graphs.unrolled import symbols_of
    sym = symbols_of(model)
    inner = fold.subgraph(n for n in order if sym[n].kind not in ("loss", "target"))
    loops = [c for c in nx.strongly_connected_components(inner)
             if c & gated and (len(c) > 1 or inner.has_edge(*(2 * tuple(c))))]
    if not loops:
        return None
    members = set().union(*loops)
    grown = True
    while grown:                     # what only the cell reads is in it (a pre-activation)
        grown = False
        for n in order:
            readers = set(fold.successors(n))
            if n not in members and readers and readers <= members and sym[n].kind != "output":
                members.add(n)
                grown = True
    members_in_order = tuple(n for n in order if n in members)
    exported = tuple(n for n in members_in_order
                     if any(v not in members for v in fold.successors(n))) or members_in_order[-1:]
    carried = sorted({(u, d["delay"]) for u, v, d in fold.edges(data=True)
                      if u in members and v in members and d["delay"]},
                     key=lambda c: (members_in_order.index(c[0]), c[1]))
    # The chain draws a cell that hands its states to the next step.  A cell read from the future
    # (a backward gated unit), a state read two or more steps back, or a time-free variable
    # beside the chain would each need lines the chain has no room for: those are drawn gate by gate.
    timeless = any(not s.timed and s.role != "parameter" for s in sym.values())
    if timeless or any(delay != 1 for _, delay in carried):
        return None
    return Cell(members_in_order, exported, tuple(carried))


# -- drawing ------------------------------------------------------------------------
_GAP = 26.0            # between a box and the node above or below it: room for an arrow
_LANE = 10.0           # extra room between two lines that run from box to box


def cell_graph(model, cell: Cell, steps: int, stubs: bool = False) -> nx.MultiDiGraph:
    """The unrolled graph with each step's cell one node ``(CELL, t)``.

    An edge into any member becomes an edge into the box (one per tail); a
    carried member read at a later step becomes an edge from box to box with
    ``carried`` set to its name; an exported member keeps its node, fed by its box.  With
    ``stubs``, the initial values and the states after the last step are ``...`` stubs.
    """
    g = model.unroll(steps)
    if stubs:
        from .layout import _with_stubs
        g = _with_stubs(g, steps)
    members = set(cell.members)
    out = nx.MultiDiGraph()

    def end(node, towards_member: bool):
        name, t = node
        if name not in members or t is None or not 1 <= t <= steps:
            if node not in out:
                out.add_node(node, **g.nodes[node])
            return node
        if towards_member or name not in cell.exported:
            box = (CELL, t)
            if box not in out:
                out.add_node(box, name=CELL, t=t, kind="cell", role="cell", timed=True)
            return box
        return exported(name, t)

    def exported(name, t):
        if (name, t) not in out:
            out.add_node((name, t), **g.nodes[(name, t)])
            out.add_edge(end((name, t), True), (name, t), key=("out", name), delay=0, weight=None,
                         transpose=False, carried=None)
        return (name, t)

    for t in range(1, steps + 1):
        for name in cell.exported:
            exported(name, t)
    weights: dict = {}
    for u, v, data in g.edges(data=True):
        into = v[0] in members
        if u[0] in members and into and (u[1] or 0) >= 1 and u[1] == v[1]:
            continue                                     # inside one step's cell
        a = end(u, into)
        carried = u[0] if u[0] in members and into and a[0] == CELL else None
        if carried and v[1] > steps:         # a stub after the last step: one per line, not per gate
            b = (carried, v[1])
            if b not in out:
                out.add_node(b, **{**g.nodes[v], "name": carried})
        else:
            b = end(v, True)
        key = (a, b, carried)
        weights.setdefault(key, set()).add((data["weight"], data["transpose"]))
        if not out.has_edge(a, b, key=carried or "in"):
            out.add_edge(a, b, key=carried or "in", delay=data["delay"], carried=carried,
                         weight=None, transpose=False)
    for (a, b, carried), ws in weights.items():
        if carried is None and len(ws) == 1:          # one weight: it is shown; several: none
            weight, transpose = next(iter(ws))
            out.edges[a, b, "in"].update(weight=weight, transpose=transpose)
    return out


def layout_cells(model, cell: Cell, steps: int, style) -> Drawing:
    """The cell view of ``model`` unrolled over ``steps``, placed as a chain of boxes."""
    from .layout import _size_nodes          # layout dispatches here: imported when drawn

    g = cell_graph(model, cell, steps, style.stubs)
    A = new_graph(style, "cells")
    A.graph_attr["splines"] = "true"         # what is not placed here, Graphviz routes round the nodes
    d = Drawing(A, unroll=steps, style=style)
    for n, attrs in g.nodes(data=True):
        name, t = n
        nid = node_id(name, t)
        shown = step_text(style, t, steps)
        kind = attrs["kind"]
        if name == CELL:
            label = var_label("cell", shown, style.fontsize)
        elif attrs.get("stub"):
            label, kind = text_label("⋯"), "stub"
        else:
            label = var_label(name, shown, style.fontsize)
        A.add_node(nid, label=label, **style.node(kind))
        d.nodes[nid] = dict(name=name, t=t, kind=kind, marker=False, label=label, shown=shown)
    for u, v, key, data in g.edges(keys=True, data=True):
        tail, head = node_id(*u), node_id(*v)
        if data["carried"]:
            label = var_label(data["carried"], step_text(style, u[1], steps), style.fontsize)
            extra = dict(fontcolor=style.colors["text"])
        else:
            label = weight_label(data["weight"], data["transpose"], style.fontsize)
            extra = {}
        ekey = f"{tail}->{head}:{len(d.edges)}"
        A.add_edge(tail, head, key=ekey, **({"label": label} if label else {}), **extra)
        d.edges.append(dict(tail=tail, head=head, delay=data["delay"], weight=data["weight"], key=ekey,
                            transpose=data["transpose"],
                            carried=data["carried"]))
        d.labels[ekey] = label
    sizes, label_sizes = _size_nodes(d)
    _place(d, cell, [e.name for e in step_order(model)], sizes, label_sizes)
    return d


def _place(d: Drawing, cell: Cell, order: list[str], sizes: dict, label_sizes: dict) -> None:
    """Positions of the nodes, and of the edges that run straight (the rest Graphviz routes)."""
    A, info = d.agraph, d.nodes
    k = d.style.fontsize / 16.0
    plain = [sizes[n] for n, i in info.items() if i["kind"] != "cell"]
    nw, nh = max(w for w, _ in plain), max(h for _, h in plain)
    lw = max((label_sizes[e["key"]][0] for e in d.edges if e["carried"]), default=0.0)
    lh = max((s[1] for s in label_sizes.values()), default=0.0)
    lanes = [name for name, _ in cell.carried]      # one each: cell_of takes delay 1 only
    lane_gap = max(nh, lh) + _LANE * k
    box_text = max(w for n, (w, _) in sizes.items() if info[n]["kind"] == "cell")
    wb = max(box_text + 24 * k, 2.2 * nh, nw + 20 * k)
    hb = max(nh + 14 * k, len(lanes) * lane_gap + 8 * k)
    dx = wb + max(lw + 20 * k, 48 * k)
    lane_y = {name: ((len(lanes) - 1) / 2 - i) * lane_gap for i, name in enumerate(lanes)}
    up = hb / 2 + _GAP * k + nh / 2                  # the first row above the box, and below it
    pos: dict = {}
    x_of = lambda t: (t - 1) * dx

    def row(names_at: list, y: float, t: int) -> None:
        widths = [sizes[n][0] for n in names_at]
        span = sum(widths) + 14 * k * (len(widths) - 1)
        x = x_of(t) - span / 2
        for n, w in zip(names_at, widths):
            pos[n] = (x + w / 2, y)
            x += w + 14 * k

    by_step: dict = {}
    for n, i in info.items():
        by_step.setdefault(i["t"], []).append(n)
    order = {name: j for j, name in enumerate(order)}
    sym_kind = {i["name"]: i["kind"] for i in info.values() if i["kind"] not in ("initial", "stub")}
    above = [n for n in dict.fromkeys(i["name"] for i in info.values())
             if n in sym_kind and n != CELL and n not in cell.exported and sym_kind[n] != "input"]
    above.sort(key=lambda n: order.get(n, len(order)))
    targets = [n for n in above if sym_kind[n] == "target"]
    rows_above = [n for n in above if n not in targets]
    dy = nh + _GAP * k + 4 * k
    # two or more outputs of the cell side by side, read with weights by the row above (the
    # NTM's y from h and r through W_y and U_y): their slanted edges are short, and a label
    # on one sat on a node; the row goes up by a label's height
    exported = {node_id(n, t) for n in cell.exported for t in range(1, d.unroll + 1)}
    if len(cell.exported) > 1 and any(e["tail"] in exported and d.labels.get(e["key"])
                                      and e["head"] not in exported for e in d.edges):
        dy += lh + 6 * k
    steps = d.unroll
    for t, nodes in by_step.items():
        if t is None or not 1 <= t <= steps:
            continue
        pos[node_id(CELL, t)] = (x_of(t), 0.0)
        row([n for n in nodes if info[n]["kind"] == "input"], -up, t)
        row([node_id(n, t) for n in cell.exported], up, t)
        for r, name in enumerate(rows_above):
            nid = node_id(name, t)
            if nid in info:
                pos[nid] = (x_of(t), up + (r + 1) * dy)
        for name in targets:               # beside the loss that reads it, as the book's figure 10.3
            nid = node_id(name, t)
            loss = next((e["head"] for e in d.edges if e["tail"] == nid), None)
            if nid in info:
                y = pos[loss][1] if loss in pos else up + (len(rows_above) + 1) * dy
                beside = sizes[loss][0] / 2 if loss in pos else 0.0
                pos[nid] = (x_of(t) + beside + 24 * k + sizes[nid][0] / 2, y)
                info[nid]["beside"] = True
    lead = wb / 2 + 30 * k + nw / 2                  # the initial values, left of the first box
    for n, i in info.items():
        if n in pos:
            continue
        y = lane_y.get(i["name"])
        if y is None:                                # an initial value outside the cell
            y = next((p[1] for m, p in pos.items() if info[m]["name"] == i["name"]), 0.0)
        t = i["t"] or 0
        if t > steps:                                # a backward state's value after the last step
            pos[n] = (x_of(steps) + lead + (t - steps - 1) * (sizes[n][0] + 20 * k), y)
        else:
            pos[n] = (x_of(1) - lead + t * (sizes[n][0] + 20 * k), y)
    for n, (x, y) in pos.items():
        A.get_node(n).attr["pos"] = f"{x:.2f},{y:.2f}"
        info[n]["col"] = info[n]["t"] if info[n]["t"] is not None else 0
        # a carried state's initial value sits on its line into the first box, not in its row
        info[n]["row"] = None if info[n]["name"] in lane_y and info[n]["kind"] in ("initial", "stub") \
            else info[n]["name"]
    for n, i in info.items():
        if i["kind"] == "cell":
            A.get_node(n).attr.update(width=f"{wb / 72:.4f}", height=f"{hb / 72:.4f}")
            sizes[n] = (wb, hb)
    arrow = 10 * float(A.edge_attr["arrowsize"])
    for e in d.edges:
        (x0, y0), (x1, y1) = pos[e["tail"]], pos[e["head"]]
        (w0, h0), (w1, h1) = sizes[e["tail"]], sizes[e["head"]]
        size = label_sizes.get(e["key"])
        if e["carried"]:                             # box t to box t + 1 (or its stub)
            y = lane_y[e["carried"]]
            path = [(x0 + w0 / 2, y), (x1 - w1 / 2 - 1, y)]
            lp = ((x0 + x1) / 2 + (w0 - w1) / 4, y + size[1] / 2 + 2 * k) if size else None
        elif info[e["head"]]["kind"] == "cell" and abs(y0 - lane_y.get(info[e["tail"]]["name"], 1e9)) < 1e-6:
            path = [(x0 + w0 / 2 + 1, y0), (x1 - w1 / 2 - 1, y0)]          # an initial value in
            lp = ((path[0][0] + path[1][0]) / 2, y0 + size[1] / 2 + 2 * k) if size else None
        elif (abs(x0 - x1) < 1e-6 or (info[e["head"]]["kind"] == "cell" and abs(x0 - x1) < wb / 2)
              or (info[e["tail"]]["kind"] == "cell" and abs(x0 - x1) < wb / 2)) \
                and not _blocked(pos, sizes, e, x0 if info[e["tail"]]["kind"] != "cell" else x1, y0, y1):
            x = x0 if info[e["tail"]]["kind"] != "cell" else x1
            s0 = h0 / 2 + 1 if info[e["tail"]]["kind"] != "cell" else h0 / 2
            s1 = h1 / 2 + 1 if info[e["head"]]["kind"] != "cell" else h1 / 2
            sign = 1 if y1 > y0 else -1
            path = [(x, y0 + sign * s0), (x, y1 - sign * s1)]
            # beside the line's middle (not the middle of the centres: inside a box's)
            lp = (x + size[0] / 2 + 5 * k, (path[0][1] + path[1][1]) / 2) if size else None
        elif abs(y0 - y1) < 1e-6:                    # side by side: a target into its loss
            sign = 1 if x1 > x0 else -1
            path = [(x0 + sign * (w0 / 2 + 1), y0), (x1 - sign * (w1 / 2 + 1), y1)]
            lp = ((x0 + x1) / 2, y0 + size[1] / 2 + 2 * k) if size else None
        elif e["tail"] in exported and len(cell.exported) > 1 and y1 > y0:
            # from outputs side by side up to what reads them (the NTM's h and r into y): a
            # straight line, its label beside its middle, on the outer side
            p0 = geo.ellipse_edge((x0, y0), w0 / 2, h0 / 2, (x1, y1))
            p1 = geo.ellipse_edge((x1, y1), w1 / 2 + 1, h1 / 2 + 1, (x0, y0))
            path = [p0, p1]
            side = -1 if x0 < x1 else 1
            lp = ((p0[0] + p1[0]) / 2 + side * (size[0] / 2 + 4 * k), (p0[1] + p1[1]) / 2) \
                if size else None
        else:
            continue                                 # anything else: Graphviz routes it
        edge = A.get_edge(e["tail"], e["head"], e["key"])
        edge.attr["pos"] = geo.to_pos(geo.line_path(path), arrow)
        if lp is not None:
            edge.attr["lp"] = f"{lp[0]:.2f},{lp[1]:.2f}"
    d.label_sizes = dict(label_sizes)
    d.spacing = (dx, dy)


def _blocked(pos: dict, sizes: dict, edge: dict, x: float, y0: float, y1: float) -> bool:
    """Whether a node other than the edge's ends stands on the line x between heights y0 and y1."""
    lo, hi = sorted((y0, y1))
    return any(abs(p[0] - x) < sizes[n][0] / 2 and lo < p[1] < hi
               for n, p in pos.items() if n not in (edge["tail"], edge["head"]))
