"""The folded view's placement: Graphviz's ``dot`` on levels, then the delay markers.

One node per variable, ranked bottom up by level, the longest chain of
same-step reads that leads to it: inputs at the bottom, then what reads them,
and so on, so the four gates of an LSTM share a row above x, c is above them
and h on top, as in the textbooks' cell diagrams.  ``dot`` orders the nodes
within a rank, routes the edges and places the weight labels beside them, all
without overlaps.  A recurrent edge that reads down the levels (``W h(t-1)``
into a gate below h) is given to ``dot`` upside down with ``dir=back``, so that
it is ranked like the forward edges and drawn apart from them.

The Deep Learning book's delay marker, a small black square (hollow for a read
from the future), goes on each recurrent edge right beside its label.  The
label keeps an empty cell on its left for it, so that ``dot`` leaves room for
both; once ``dot`` has routed the edges, :func:`place_labels` places labels and
markers again where no edge runs through a label and no other edge is nearer
to it than its own.
"""
from __future__ import annotations

from ..graphs.unrolled import symbols_of

import networkx as nx

from . import geometry as geo
from .placement import Label, place
from .quiet import graphviz_stderr

MARKER = 9.36                       # the side of a delay marker, in points (0.13 in)
_ROOM = 13                          # room a label leaves on its left for the markers, in points
_RIGHT = 6                          # room a label leaves on its right
_GAP = MARKER + 7                   # from one marker to the next along an edge


def _with_room(label: str | None, room: float, height: float) -> str:
    """``label`` with an empty cell of ``room`` points on its left, where the marker goes.

    ``dot`` sets a label just right of its edge, so the square on the edge
    beside the label lands in that cell, and an unlabelled self-loop (an LSTM's
    ``c(t-1)``) is drawn large enough to hold its square.
    """
    blank = f'<TD WIDTH="{room:g}" HEIGHT="{height:g}" FIXEDSIZE="TRUE"></TD>' if room else ""
    text = f"<TD>{label[1:-1]}</TD>" if label else ""
    # and a little room on its right, so that the next edge's squares keep off the text
    pad = f'<TD WIDTH="{_RIGHT:g}" HEIGHT="1" FIXEDSIZE="TRUE"></TD>' if label else ""
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
            f"<TR>{blank}{text}{pad}</TR></TABLE>>")


def levels(model, names) -> dict[str, int]:
    """Each variable's rank from the bottom: the longest chain of same-step reads into it.

    A source that is not an input (a target) sits just below what reads it.

    Examples
    --------
    >>> from rnngraph import load
    >>> levels(load("examples/torch_lstm.rnn"), ["x", "i", "f", "g", "o", "c", "h"])
    {'x': 0, 'i': 1, 'f': 1, 'g': 1, 'o': 1, 'c': 2, 'h': 3}
    """
    same = nx.DiGraph()
    same.add_nodes_from(names)
    for u, v, d in model.graph().edges(data=True):
        if u != v and u in same and v in same and d["delay"] in (0, None):
            same.add_edge(u, v)
    symbols = symbols_of(model)
    # values over two indices (attention's scores z, e, a: a chain of one step each) and the
    # sum that reads them (the context c) share a row with what the first of them reads,
    # read left to right, so the chain does not make the picture too tall for a slide
    pair = {n for n in names if isinstance(symbols[n].index, tuple)}
    level: dict[str, int] = {}
    for n in nx.topological_sort(same):
        level[n] = max((level[p] + (0 if p in pair or n in pair else 1)
                        for p in same.predecessors(n)), default=0)
    for n in reversed(list(nx.topological_sort(same))):
        if same.in_degree(n) == 0 and symbols[n].kind != "input" and same.out_degree(n):
            level[n] = min(level[s] for s in same.successors(n)) - 1
    for n in names:                # a sum over the steps beside what it sums, not a level above
        if symbols[n].over and same.in_degree(n):
            level[n] = max(level[p] for p in same.predecessors(n))
    return {n: level[n] for n in names}


def place_folded(d, model, size_nodes) -> None:
    """Lay out the folded drawing ``d`` with ``dot``, then add its delay markers.

    ``size_nodes(d)`` fixes the nodes' sizes and measures the edge labels.
    """
    A = d.agraph
    room = {}
    if d.style.delay_marker == "square":
        for e in d.edges:
            key = e["key"]
            if e["delay"]:
                count = min(abs(e["delay"]), 3)     # one square per step of delay, along the edge
                room[key] = _ROOM
                d.labels[key] = _with_room(d.labels.get(key), _ROOM, count * _GAP - 4)
            elif d.labels.get(key):
                room[key] = 0
                d.labels[key] = _with_room(d.labels[key], 0, 0)
            else:
                continue
            A.get_edge(e["tail"], e["head"], key).attr["label"] = d.labels[key]
    _, label_sizes = size_nodes(d)
    for key, r in room.items():          # the text's box: room for the marker left, a pad right
        w, h = label_sizes[key][:2]
        label_sizes[key] = (w, h, r, _RIGHT if d.labels.get(key) and "<TD>" in d.labels[key] else 0)
    names = [n for n, i in d.nodes.items() if not i["marker"]]
    level = levels(model, names)
    A.graph_attr.update(rankdir="BT", nodesep="0.32", ranksep="0.32", splines="true")
    for lv in sorted(set(level.values())):
        A.add_subgraph([n for n in names if level[n] == lv], name=f"level{lv}", rank="same")
    forward = {(e["tail"], e["head"]) for e in d.edges if not e["delay"]}
    loops = {e["tail"] for e in d.edges if e["tail"] == e["head"]}
    for e in d.edges:
        u, v, key = e["tail"], e["head"], e["key"]
        e["drawn"] = (u, v)
        if e["delay"] and u != v and level[u] >= level[v]:
            attrs = {k: x for k, x in A.get_edge(u, v, key).attr.items() if x}
            if d.labels.get(key):                  # pygraphviz hands HTML back unbracketed
                attrs["label"] = d.labels[key]
            if (v, u) in forward and not {u, v} & loops:
                # a 2-cycle (h reads a, a reads h(t-1)): an arc beside, not a second line on the first
                attrs.update(tailport="e", headport="e")
            A.delete_edge(u, v, key)
            A.add_edge(v, u, key=key, dir="back", **attrs)
            e["drawn"] = (v, u)
    with graphviz_stderr():
        A.layout(prog="dot")
    place_labels(d, label_sizes)
    _loops_aside(d, loops, label_sizes)


def _loops_aside(d, loops: set, label_sizes: dict) -> None:
    """Turn each self-loop (an LSTM's c(t-1) into c) to the side of its node where fewer other
    edges meet it, if the labels come out no worse: dot puts loops on the right, where f -> c
    and g -> c came in and the loop's delay square sat on their arrowheads.  The loop is
    mirrored about its node's centre; every other edge stays where dot routed it, and the
    labels and squares are placed again."""
    A = d.agraph
    if not loops:
        return
    from .stats import label_quality
    # measured first: Graphviz's nop2 moves the whole drawing to start at 0, so positions are
    # read after it (read before, the loops of the exercise came out 70 pt from their nodes)
    before = label_quality(d)
    at = lambda n: tuple(map(float, A.get_node(n).attr["pos"].split(",")))
    turn = []
    for n in loops:
        x, _ = at(n)
        others = [v if u == n else u for u, v in A.edges() if n in (u, v) and u != v]
        if sum(1 for m in others if at(m)[0] > x + 1) > sum(1 for m in others if at(m)[0] < x - 1):
            turn += [(A.get_edge(u, v, key), x) for u, v, key in A.edges(keys=True) if u == v == n]
    if not turn:
        return
    saved = {(u, v, k): dict(A.get_edge(u, v, k).attr) for u, v, k in A.edges(keys=True)}
    _drop_markers(d)
    for e, x in turn:
        e.attr["pos"] = geo.map_x(e.attr["pos"], lambda v, x=x: 2 * x - v)
        e.attr["lp"] = ""                  # its square: placed on the loop where it is now
    place_labels(d, label_sizes)
    if label_quality(d) > before:          # worse: back to dot's loops
        _drop_markers(d)
        for (u, v, k), attrs in saved.items():
            A.get_edge(u, v, k).attr.update(pos=attrs["pos"], lp=attrs.get("lp") or "")
        place_labels(d, label_sizes)


def _drop_markers(d) -> None:
    for n in [n for n, i in d.nodes.items() if i["marker"]]:
        d.agraph.delete_node(n)
        del d.nodes[n]


def place_one_step(d, model, size_nodes) -> None:
    """One step of a gated unit, gate by gate, as colah draws a cell: the gates side by side.

    The levels of the folded view, bottom up: x at the bottom, the gates on one row, c above
    them, h on top; each initial value beside its variable, left of it.
    """
    A = d.agraph
    _, label_sizes = size_nodes(d)
    names = [n for n, i in d.nodes.items() if not i["marker"]]
    by_name = levels(model, list(dict.fromkeys(d.nodes[n]["name"] for n in names
                                               if d.nodes[n]["kind"] not in ("initial", "stub"))))
    # an initial value on its own variable's row, left of it: c(0) beside c(1), h(0) beside h(1),
    # so that h(0)'s edges come down into the gates and x(1)'s go up: the two fans never cross
    level = {n: by_name.get(d.nodes[n]["name"], 0) for n in names}
    A.graph_attr.update(rankdir="BT", nodesep="0.32", ranksep="0.32", splines="true")
    for lv in sorted(set(level.values())):
        A.add_subgraph([n for n in names if level[n] == lv], name=f"level{lv}", rank="same")
    for e in d.edges:
        e["drawn"] = (e["tail"], e["head"])
        if e["delay"] and level[e["tail"]] > level[e["head"]]:   # drawn down, ranked like the rest
            u, v, key = e["tail"], e["head"], e["key"]
            attrs = {k: x for k, x in A.get_edge(u, v, key).attr.items() if x}
            if d.labels.get(key):
                attrs["label"] = d.labels[key]
            A.delete_edge(u, v, key)
            A.add_edge(v, u, key=key, dir="back", **attrs)
            e["drawn"] = (v, u)
    for n in names:                       # each initial value left of its variable at step 1
        info = d.nodes[n]
        step1 = f"{info['name']}.1"
        if info["kind"] in ("initial", "stub") and step1 in d.nodes and not A.has_edge(n, step1):
            A.add_edge(n, step1, key=f"{n} order", style="invis", weight="4", minlen="1")
    with graphviz_stderr():
        A.layout(prog="dot")
    place_labels(d, label_sizes, squares=False)      # unrolled, a delay is the step it reads


def place_labels(d, label_sizes, squares: bool = True) -> None:
    """Labels (and their delay markers) beside their edges, clear of everything: :mod:`.placement`.

    ``dot`` sets a label at the middle of its edge, where edges fanning out of
    one node (an LSTM's ``h -> gates``) may run through it or come nearer than
    its own; the labels are placed again on the routed edges.  ``squares=False``: no delay
    squares (one step unrolled, where a delay is the step a value is read at).
    """
    A = d.agraph
    squares = squares and d.style.delay_marker == "square"
    nodes, todo, keys = [], [], []
    for n in A.nodes():
        x, y = map(float, n.attr["pos"].split(","))
        w, h = float(n.attr["width"]) * 36, float(n.attr["height"]) * 36
        nodes.append((x - w, y - h, x + w, y + h))
    polys = []
    for e in d.edges:
        edge = A.get_edge(*e["drawn"], e["key"])
        polys.append(geo.pos_path(edge.attr["pos"]))
        size = label_sizes.get(e["key"])
        marks = min(abs(e["delay"]), 3) if e["delay"] and squares else 0
        if size is None and not marks:
            continue
        w, h, room, right = size if size and len(size) > 2 else (*(size or (0, 0)), 0, 0)
        text = (w - room - right, h) if w - room - right > 1 else None
        lx, ly = map(float, edge.attr["lp"].split(",")) if edge.attr.get("lp") else (None, None)
        # where dot put it: the text right of the room it keeps for the marker
        prefer = None if lx is None else (lx - w / 2 + (room + (w - right)) / 2 if text else lx - w / 2 + room / 2, ly)
        todo.append(Label(len(polys) - 1, text, marks, MARKER, _GAP, prefer))
        keys.append((e, room, right))
    # the longest edges first: they have the fewest good spots
    order = sorted(range(len(todo)), key=lambda i: -geo.length(polys[todo[i].edge]))
    place([todo[i] for i in order], polys, nodes)
    for lab, (e, room, right) in zip(todo, keys):
        edge = A.get_edge(*e["drawn"], e["key"])
        if lab.box is not None:
            edge.attr["lp"] = f"{lab.centre[0] - (room - right) / 2:.2f},{lab.centre[1]:.2f}"
        elif lab.squares:
            edge.attr["lp"] = f"{lab.squares[0][0]:.2f},{lab.squares[0][1]:.2f}"
        for j, (x, y) in enumerate(lab.squares):
            _marker(d, e, j, x, y)


def _marker(d, e, j, x, y) -> None:
    """The ``j``-th delay square of edge ``e``, at (x, y): black, hollow for a read from the future."""
    style = d.style
    mid = f"{e['key']} delay{j + 1}"
    fill = style.colors["marker"] if e["delay"] > 0 else style.colors["background"]
    d.agraph.add_node(mid, label="", shape="square", width=f"{MARKER / 72:.2f}",
                      height=f"{MARKER / 72:.2f}", fixedsize="true", style="filled", fillcolor=fill,
                      color=style.colors["marker"], penwidth="1.2", pos=f"{x:.2f},{y:.2f}")
    d.nodes[mid] = dict(name=None, t=None, kind="marker", marker=True, label="")
