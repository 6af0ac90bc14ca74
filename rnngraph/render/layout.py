"""Model graphs -> a laid-out Graphviz graph (pygraphviz ``AGraph``).

:func:`layout` is the one entry: ``unroll=None`` draws the folded graph of
:func:`rnngraph.graphs.unrolled.folded`, ``unroll=N`` the graph of
:func:`rnngraph.graphs.unrolled.unrolled`; nodes and edges of both are made by the
same code from the same role -> style table, with nodes sized snugly to
their text (:mod:`rnngraph.render.metrics`).  The unrolled view is placed by
:mod:`rnngraph.render.grid` on a grid of time columns and variable rows,
spaced to fit a 16:9 slide; the folded view by Graphviz's ``dot`` on levels
(:mod:`rnngraph.render.folded`); Graphviz draws both as placed (``nop2``).
The op view (:mod:`rnngraph.render.opview`) is laid out by ``dot``.

Node ids are derived from the model (``h1``, ``h1.3`` for h1 at step 3,
``op4.2`` for op 4 at step 2), so the same input gives the same bytes.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace

import networkx as nx
import pygraphviz as pgv

from ..check.limits import check_drawing
from ..errors import RnnGraphError
from ..graphs.unrolled import symbols_of
from ..lang import ast
from . import geometry as geo
from .cells import cell_of, layout_cells
from .fonts import check as check_font
from .grid import Cell, Grid, Link
from .metrics import node_size, slide_budget, spacing
from .quiet import graphviz_stderr
from .rows import row_orders
from .labels import sum_label, text_label, time_text, var_label, weight_label
from .drawing import POINTS, Drawing, new_graph, node_id, step_text
from .style import Style

WINDOW = 3                     # the columns (initial values, steps 1 and 2) a row order is scored on
_FIT = 2.5                     # Graphviz rounds a 11.2 pt subscript down to 11: room for that, in points
def _delay_text(delay: int) -> str:
    return time_text(-delay)


def layout(model, unroll: int | None = None, style: Style | None = None,
           shapes: dict | None = None) -> Drawing:
    """Lay out ``model``: folded (``unroll=None``) or unrolled over ``unroll`` steps.

    Examples
    --------
    >>> from rnngraph import parse
    >>> d = layout(parse("h(t) = tanh(W h(t-1) + U x(t))"), unroll=2)
    >>> sorted(d.nodes), [e["weight"] for e in d.edges]
    (['h.0', 'h.1', 'h.2', 'x.1', 'x.2'], ['W', 'U', 'U', 'W'])
    """
    style = style or Style()
    per = None                  # several indices: the steps of each, their columns side by side
    if isinstance(unroll, dict) or unroll is not None and model.program.indices:
        from ..graphs.unrolled import steps_of
        try:
            per = steps_of(model, unroll)
        except ValueError as err:
            raise RnnGraphError(f"{model.filename}: --unroll: {err}") from None
        if style.detail == "ops":
            raise RnnGraphError(f"{model.filename}: the operation view of a model with several "
                                "indices is not drawn yet; draw it with --detail vars")
        style = replace(style, detail="vars")   # a cell is drawn along one index only
        # the indices drawn: those a sequence runs over (a tree-only model has no steps of t)
        used = {s.loop for s in model.symbols.values() if s.timed} or set(per)
        unroll, steps = sum(n for i, n in per.items() if i in used) + len(used) - 1, per
    else:
        steps = unroll
    if unroll is not None and not model.timed:
        # The folded picture under an -unrolled name, with no word, was what a user got
        raise RnnGraphError(f"{model.filename}: no equation has a time index (no name(t)): "
                            "there is nothing to unroll; draw it without --unroll")
    cell = cell_of(model) if unroll is not None else None
    if style.detail == "auto":
        style = replace(style, detail="cells" if cell is not None else "vars")
    elif style.detail == "cells" and cell is None:
        style = replace(style, detail="vars")         # nothing gated: a cell is every variable
    check_drawing(model, unroll, style.detail)      # before anything is built or laid out
    check_font(style.font)                          # a word if it falls back, an error if none
    if style.detail == "ops":
        from .opview import layout_ops
        return layout_ops(model, unroll, style)
    if style.detail == "cells":
        return layout_cells(model, cell, unroll, style)
    if shapes:
        from ..graphs.unrolled import unrolled
        g = unrolled(model, steps, shapes)
    else:
        g = model.graph() if unroll is None else model.unroll(steps)
    # each index's columns after the one before, a column between (the context, C = h(end))
    first_col, at = {}, 0
    for i, n in (per or {}).items():
        first_col[i] = at
        at += n + 1
    if unroll is not None and style.stubs:
        g = _with_stubs(g, unroll)
    A = new_graph(style, "unrolled" if unroll else "folded")
    d = Drawing(A, unroll=unroll, style=style)
    symbols = symbols_of(model)
    for n, attrs in g.nodes(data=True):
        name, t = (n if unroll is not None else (n, None))
        t = t if attrs.get("timed") or attrs.get("stub") else None
        nid = node_id(name, t)
        kind = "stub" if attrs.get("stub") else attrs["kind"]
        index = symbols[name].index if name in symbols else None
        if isinstance(index, tuple):               # folded, a value over two indices: (u,t)
            index = ",".join(index)
        shown = (None if not attrs["timed"] else f"({index or 't'})") if unroll is None else \
            step_text(style, t, per[index or "t"] if per else unroll)
        if per and t is not None:
            t = first_col[index or "t"] + t      # the column: the step of its index, shifted
        tex = None
        if attrs.get("step_term"):             # end - t: the steps left, tau - 2 at step 2
            text, tex = step_text_of(name, index or "t", None if unroll is None else n[1])
            label = text_label(text)
        else:
            label = text_label("⋯") if kind == "stub" else var_label(name, shown, style.fontsize)
        A.add_node(nid, label=label, **style.node(kind))
        d.nodes[nid] = dict(name=name, t=t, kind=kind, marker=False, label=label, shown=shown,
                            **({"tex": tex} if tex else {}),
                            **({"level": attrs["level"]} if "level" in attrs else {}))
    for u, v, key, data in g.edges(keys=True, data=True):
        tail = node_id(*(u if unroll is not None else (u, None)))
        head = node_id(*(v if unroll is not None else (v, None)))
        tail, head = (t if t in d.nodes else t.split(".")[0] for t in (tail, head))
        delay = data["delay"]
        extra = None
        if unroll is None and delay and style.delay_marker == "label":
            extra = _delay_text(delay)
        if unroll is None and "step" in data:       # folded, h(end) read: the step it reads, (τ)
            root = any(d.tree and d.name == symbols[u].loop for d in model.program.indices)
            extra = ("(root)" if root else "(τ)") if data["step"] == "end" else f"({data['step']})"
        if unroll is None and data.get("initial"):  # folded, into the initial value s(0)
            extra = "→(0)" if extra is None else f"{extra}→(0)"
        label = weight_label(data["weight"], data["transpose"], style.fontsize, extra)
        if "attend" in data:                        # attention's fan: a(u, t) weights h(t)
            name, su, st = data["attend"]
            label = var_label(name, f"({su},{st})", style.fontsize)
        over = model.symbols[v if unroll is None else v[0]].over
        mean = False
        if over and unroll is None:          # folded, a sum over the steps says so: Σ_t
            mean = any(e.name == v and e.kind == "value" and e.rhs.func.startswith("mean_")
                       for e in model.equations)
            label = sum_label(over, style.fontsize, mean)
        ekey = f"{tail}->{head}:{len(d.edges)}"
        attrs = dict(label=label) if label else {}
        if delay is not None and delay < 0:
            attrs.update(color=style.colors["future"])
        A.add_edge(tail, head, key=ekey, **attrs)
        d.edges.append(dict(tail=tail, head=head, delay=delay, weight=data["weight"], key=ekey,
                            transpose=data["transpose"], extra=extra,
                            over=over if unroll is None else None,
                            **({"attend": data["attend"]} if "attend" in data else {}),
                            mean=bool(over) and unroll is None and mean,
                            **({"step": data["step"]} if "step" in data else {})))
        d.labels[ekey] = label
    if unroll is None:
        from .folded import place_folded
        place_folded(d, model, _size_nodes)
    elif unroll == 1 and cell is not None:
        from .folded import place_one_step
        place_one_step(d, model, _size_nodes)
    elif any(i.get("level") is not None for i in d.nodes.values()):
        _place_tree(d, model)
    else:
        _place_grid(d, model)
    return d


def _place_tree(d: Drawing, model) -> None:
    """A recursive network unrolled over its tree, as the book's figure 10.14: the inputs in
    the bottom row in their order, the leaves above them, one row per level of the tree,
    each inner node centred over its children, the same weights labelled on every level;
    what reads the root (an output, a loss) in a column above it, a target beside its loss."""
    A = d.agraph
    sizes, label_sizes = _size_nodes(d)
    edges = list(A.edges(keys=True))
    tree_names = list(dict.fromkeys(i["name"] for i in d.nodes.values()
                                    if i.get("level") is not None and i["level"] >= 0))
    col: dict[str, float] = {}
    row: dict[str, int] = {}
    kids: dict[str, list] = {}
    for e in d.edges:
        if d.nodes[e["tail"]].get("level") is not None and d.nodes[e["head"]].get("level"):
            kids.setdefault(e["head"], []).append(e["tail"])
    levels = sorted({i["level"] for i in d.nodes.values() if i.get("level") is not None})
    # the inputs at the leaves, each in a row of its own below them (x and a target y)
    below = list(dict.fromkeys(i["name"] for i in d.nodes.values() if i.get("level") == -1))
    for lv in levels:
        for nid, i in d.nodes.items():
            if i.get("level") != lv:
                continue
            if lv <= 0:                                 # an input, a leaf: its step's column
                col[nid] = float(i["t"] - 1)
            else:                                       # over its children, one per level
                under = [col[k] for k in kids.get(nid, []) if k in col and
                         d.nodes[k]["name"] == i["name"]] or [col[k] for k in kids.get(nid, [])
                                                             if k in col]
                col[nid] = sum(under) / len(under)
            row[nid] = below.index(i["name"]) if lv < 0 else \
                len(below) + lv * len(tree_names) + tree_names.index(i["name"])
    top = max(row.values(), default=0)
    root = max((n for n in col if d.nodes[n].get("level", -1) >= 0), key=lambda n: row[n])
    rest = [n for n in d.nodes if n not in col]
    readers: dict[str, list] = {}
    for e in d.edges:
        readers.setdefault(e["tail"], []).append(e["head"])
    g = nx.DiGraph([(e["tail"], e["head"]) for e in d.edges if e["tail"] in rest
                    and e["head"] in rest])
    g.add_nodes_from(rest)
    for k, nid in enumerate(nx.lexicographical_topological_sort(g, key=rest.index)):
        col[nid] = col[root]
        row[nid] = top + 1 + k
    for nid in rest:                                    # a target beside the loss it feeds
        if d.nodes[nid]["kind"] == "target" and len(readers.get(nid, [])) == 1:
            loss = readers[nid][0]
            col[nid], row[nid] = col[loss] + 1, row[loss]
    rows = sorted(set(row.values()))
    row = {n: rows.index(r) for n, r in row.items()}
    node = (max(w for w, _ in sizes.values()), max(h for _, h in sizes.values()))
    label = (max((w for w, _ in label_sizes.values()), default=0),
             max((h for _, h in label_sizes.values()), default=0))
    dx = node[0] + 0.6 * label[0] + 12
    dy = node[1] + 0.6 * label[1] + 14
    cells = {nid: Cell(col[nid], row[nid], *sizes[nid]) for nid in d.nodes}
    links = [Link(u, v, label_sizes.get(k)) for u, v, k in edges]
    grid = Grid(cells, links, dx, dy, arrow=10 * float(A.edge_attr["arrowsize"]))
    grid.place()
    for nid, info in d.nodes.items():
        info["col"], info["row"], info["beside"] = col[nid], row[nid], False
    _placed(A, grid, edges)
    d.spacing = (dx, dy)


def _with_stubs(g: nx.MultiDiGraph, steps: int) -> nx.MultiDiGraph:
    """``g`` with the initial values shown as ``...`` and ``...`` after the last step."""
    g = g.copy()
    for n, attrs in g.nodes(data=True):
        if attrs["role"] == "initial":
            attrs["stub"] = True
    for u, v, data in list(g.edges(data=True)):
        delay = data["delay"]
        if not delay or u[1] is None or not 1 <= u[1] <= steps or v[1] != u[1] + delay:
            continue
        for s in (steps + 1 - delay, ) if delay > 0 else (-delay,):
            pass
    extra = []
    for u, v, data in g.edges(data=True):
        delay = data["delay"]
        if not delay or u[1] is None or not 1 <= u[1] <= steps:
            continue
        src_t = u[1]
        if src_t + delay == v[1] and 1 <= v[1] <= steps:
            # the same edge one period on, which falls outside the window
            t2 = src_t + delay
            beyond = (v[0], t2 + delay) if delay > 0 else (v[0], t2 + delay)
            if not 1 <= beyond[1] <= steps and (v[0], beyond[1]) not in g:
                extra.append(((u[0], t2), beyond, data))
    for u, v, data in extra:
        if u in g and v not in g:
            g.add_node(v, **{**g.nodes[u], "role": "initial", "kind": "initial", "stub": True,
                             "t": v[1]})
        if u in g:
            g.add_edge(u, v, key=(data["delay"], data["weight"]), **data)
    return g


# -- measuring --------------------------------------------------------------------
def _measure(A: pgv.AGraph, nodes: dict, labels: list[str]) -> tuple[dict, list]:
    """The text size of every node's label and of each edge label, in points, as Graphviz sets them."""
    M = pgv.AGraph(directed=True, strict=False)
    M.graph_attr.update(A.graph_attr)
    M.node_attr.update(A.node_attr)
    texts = [nodes[str(n)]["label"] for n in A.nodes()] + list(labels)
    for i, lab in enumerate(texts):
        M.add_node(f"t{i}", label=lab, shape="plaintext", margin="0", width="0", height="0",
                   fontsize=A.edge_attr.get("fontsize"), fontname=A.edge_attr.get("fontname"))
    with graphviz_stderr():
        M.layout(prog="dot")
    size = lambda i: (float(M.get_node(f"t{i}").attr["width"]) * POINTS,
                      float(M.get_node(f"t{i}").attr["height"]) * POINTS)
    names = [str(n) for n in A.nodes()]
    return ({n: size(i) for i, n in enumerate(names)},
            [size(len(names) + i) for i in range(len(labels))])


def _size_nodes(d: Drawing) -> tuple[dict, dict]:
    """Fix every node's size to hold its text snugly; the node and edge-label sizes, by id and key."""
    A = d.agraph
    keys = [k for _, _, k in A.edges(keys=True) if d.labels.get(k)]
    texts, label_sizes = _measure(A, d.nodes, [d.labels[k] for k in keys])
    sizes = {}
    for nid, (w, h) in texts.items():
        sizes[nid] = node_size(w, h, d.style.fontsize)
        A.get_node(nid).attr.update(width=f"{sizes[nid][0] / POINTS:.4f}",
                                    height=f"{sizes[nid][1] / POINTS:.4f}", fixedsize="true")
    d.label_sizes = dict(zip(keys, label_sizes))
    return sizes, d.label_sizes


def step_text_of(text: str, index: str, step: int | None) -> tuple[str, str]:
    r"""A step term's label and LaTeX: ``end - t`` is τ−t folded, τ−2 at step 2 (end is the
    book's tau).

    Examples
    --------
    >>> step_text_of("end - t", "t", 2)
    ('τ−2', '\\tau-2')
    """
    words = re.split(r"(\w+)", text)
    shown = "".join("τ" if w == "end" else str(step) if w == index and step is not None else w
                    for w in words).replace(" ", "")
    return shown.replace("-", "−"), shown.replace("τ", "\\tau ").replace(" -", "-").strip()


# -- the unrolled view: a time grid -------------------------------------------------
def _after_the_steps(d: Drawing, model, last: int) -> dict[str, int]:
    """The columns of the time-free variables computed after the steps: a sum over them right
    of the last step, where the sum is done; a value that reads a fixed step (``o = V
    h(end)``, the book's figure 10.5) above the latest step it reads, and so what reads it
    (and a time-free input only those read: the target of their loss)."""
    ends: dict[str, int] = {}                  # each index's last column (several indices)
    for i in d.nodes.values():
        s = model.symbols.get(i["name"])
        if s is not None and s.timed and i["t"] is not None:
            ends[s.loop] = max(ends.get(s.loop, i["t"]), i["t"])
    col = {n: ends.get(s.over, last) + 1 for n, s in model.symbols.items() if s.over}
    changed = True
    while changed:
        changed = False
        for e in d.edges:
            u, v = d.nodes[e["tail"]], d.nodes[e["head"]]
            if v["t"] is not None or model.symbols[v["name"]].over:
                continue
            if u["t"] is not None:                 # a step read: the fixed one (h(end)) only
                src = u["t"] if "step" in e else None
            else:
                src = col.get(u["name"])
            if src is not None and col.get(v["name"], -1) < src:
                col[v["name"]] = src
                changed = True
    readers: dict[str, set] = {}
    for e in d.edges:
        u, v = d.nodes[e["tail"]], d.nodes[e["head"]]
        if u["t"] is None and symbols_of(model)[u["name"]].role == "input":
            readers.setdefault(u["name"], set()).add(v["name"])
    for n, rs in readers.items():
        if rs <= set(col):
            col[n] = max(col[r] for r in rs)
    return col


def _place_grid(d: Drawing, model) -> None:
    A = d.agraph
    sizes, label_sizes = _size_nodes(d)
    edges = list(A.edges(keys=True))
    label_of = [label_sizes.get(k) for _, _, k in edges]
    # attention's fan: labels by each h(t); its compact edges (a(u, ·)): by c(u)
    within = {e["key"]: (0.3, 0.75) if e["attend"][2] == "·" else (0.0, 0.45)
              for e in d.edges if "attend" in e}
    names = list(dict.fromkeys(info["name"] for info in d.nodes.values()))
    first = min(0, -1 + min((i["t"] for i in d.nodes.values() if i["t"] is not None), default=1))
    last = max((i["t"] for i in d.nodes.values() if i["t"] is not None), default=1)
    after = _after_the_steps(d, model, last)
    for info in d.nodes.values():
        info["col"] = info["t"] if info["t"] is not None else after.get(info["name"], first)
    cols = sorted({info["col"] for info in d.nodes.values()})
    node = (max(w for w, _ in sizes.values()), max(h for _, h in sizes.values()))
    label = (max((w for w, _ in label_sizes.values()), default=0),
             max((h for _, h in label_sizes.values()), default=0))
    steps_cols = {i["col"] for i in d.nodes.values() if i["kind"] not in ("initial", "stub")}
    ends = frozenset(cols) - steps_cols
    arrow = 10 * float(A.edge_attr["arrowsize"])

    # A target sits beside the loss that reads it, as in the book's figure 10.3, not in a row of its
    # own between the output and the loss (the output's edge to the loss went round it).
    readers = {}
    for e in d.edges:
        readers.setdefault(d.nodes[e["tail"]]["name"], set()).add(d.nodes[e["head"]]["name"])
    kinds = {i["name"]: i["kind"] for i in d.nodes.values()}
    width: dict[str, float] = {}                   # the widest node of each variable
    for nid, i in d.nodes.items():
        width[i["name"]] = max(width.get(i["name"], 0.0), sizes[nid][0])
    beside = {n: next(iter(readers[n])) for n in names if kinds[n] == "target"
              and len(readers.get(n, ())) == 1 and kinds[next(iter(readers[n]))] == "loss"}
    # A step term (end - t, the steps left) beside an input read by the same variable, in its
    # row: an input of its own, the book's tau - t, with no row of its own
    for n in names:
        if n not in model.symbols:
            mates = [m for m in names if m in model.symbols and kinds[m] == "input"
                     and model.symbols[m].timed and readers.get(m, set()) & readers.get(n, set())]
            if mates:
                beside[n] = mates[0]
    offset = {n: width[loss] / 2 + 20 + width[n] / 2 for n, loss in beside.items()}
    names = [n for n in names if n not in beside]

    def grid(rows, dx, dy, window=None, lead=None):
        rows = {**rows, **{n: rows[loss] for n, loss in beside.items()}}
        cells = {nid: Cell(info["col"], rows[info["name"]], *sizes[nid], beside=offset.get(info["name"], 0.0))
                 for nid, info in d.nodes.items() if window is None or info["col"] in window}
        links = [Link(u, v, label_of[i], within=within.get(k, (0.0, 1.0)))
                 for i, (u, v, k) in enumerate(edges) if u in cells and v in cells]
        return Grid(cells, links, dx, dy, arrow=arrow, ends=ends, lead=lead)

    # Spacing from the slide's budget; rows by fewest crossings among the likeliest orders,
    # counted on the first steps (the pattern repeats from step to step).
    dx, dy = spacing(len(names), len(cols), node, label, d.style, extra=(0.6 * label[0], 8.0))
    # room for the target between its loss and the next column's loss (nothing else is in that row)
    dx = max([dx] + [float(math.ceil(offset[n] + width[n] / 2 + 14 + width[loss] / 2))
                     for n, loss in beside.items()])
    budget_w, budget_h = slide_budget(d.style)
    orders = row_orders(model, names)
    best = orders[0]
    if len(orders) > 1:
        window = set(cols[:WINDOW])
        scores = []
        for k, order in enumerate(orders):
            g = grid({n: i for i, n in enumerate(order)}, dx, dy, window)
            g.place(labels=False)
            scores.append((g.crossings(), k))
        best = orders[min(scores)[1]]
    rows = {n: i for i, n in enumerate(best)}
    g = grid(rows, dx, dy)
    rows.update({n: rows[loss] for n, loss in beside.items()})
    tries = []
    for k in (1, 2):
        # wide enough for every column's own fan to get a trunk, the initial values closer if need be
        room, lead = g.fan_room(k)
        wide = float(math.ceil(room))
        tries += [(wide, None), (wide, float(math.ceil(lead)) if ends and lead else None)] if dx < room else []
    for wide, lead in dict.fromkeys(tries):
        if (len(cols) - 1) * wide - (wide - (lead or wide)) + node[0] > budget_w:   # cannot fit
            continue
        h = grid(rows, wide, dy, lead=lead)
        h.place()
        x0, _, x1, _ = h.extent()
        if x1 - x0 <= budget_w - _FIT:
            g, dx = h, wide
            break
    if not g.polys:
        g.place()
    x0, y0, x1, y1 = g.extent()
    if y1 - y0 > budget_h + 0.5 and len(names) > 1:     # labels or detours stick out: tighten the rows
        # no closer than a label between two nodes needs: a smaller picture rather than labels
        # on nodes (Elman with its total loss, 7 rows in a beamer frame: 6 labels on nodes)
        dy = max(node[1] + max(20, label[1] + 6), dy - (y1 - y0 - budget_h) / (len(names) - 1))
        g = grid(rows, dx, dy, lead=g.lead)
        g.place()
    g, dx = _fit_columns(g, lambda dx, lead: grid(rows, dx, dy, lead=lead), budget_w - _FIT,
                         node[0] + label[0] + 30)
    for nid, info in d.nodes.items():
        info["row"] = rows[info["name"]]
        info["beside"] = info["name"] in beside
    _placed(A, g, edges)
    d.spacing = (dx, dy)


def _placed(A, g: Grid, edges) -> None:
    """The placed grid's positions written into the Graphviz graph: each node's, each edge's
    path and its label's."""
    for nid, c in g.cells.items():
        A.get_node(nid).attr["pos"] = f"{c.pos[0]:.2f},{c.pos[1]:.2f}"
    for (u, v, k), link in zip(edges, g.links):
        e = A.get_edge(u, v, k)
        e.attr["pos"] = geo.to_pos(link.path, g.arrow)
        if link.label_pos is not None:
            e.attr["lp"] = f"{link.label_pos[0]:.2f},{link.label_pos[1]:.2f}"


def _fit_columns(g: Grid, make, width: float, least: float) -> tuple[Grid, float]:
    """``g``, or the same grid narrowed so that it is at most ``width`` wide.

    Detours and labels beside the last column can stick out past what the
    spacing allowed for.  First the initial values' column closes up to the
    first step's fans, then the columns close up (no closer than ``least``);
    a narrower grid is kept only if it fits, crosses no more edges and puts
    no more labels on nodes or labels.
    """
    x0, _, x1, _ = g.extent()
    cols = len({c.col for c in g.cells.values()})
    if x1 - x0 <= width or cols < 2:
        return g, g.dx
    over = x1 - x0 - width
    leads = [g.lead]
    lead = g.lead_room() if g.lead is None else None
    if lead is not None and lead < g.dx - 1:
        leads.insert(0, float(math.ceil(lead)))
    tries = []
    for lead in leads:
        saved = g.dx - (lead or g.dx)
        if lead is not None and saved >= over:
            tries.append((g.dx, lead))
            continue
        narrow = math.floor(g.dx - (over - saved) / (cols - 1))
        tries += [(dx, lead) for dx in (narrow, narrow - 2, narrow - 4) if dx >= least]
    crossings = None
    for dx, lead in tries:
        h = make(float(dx), lead)
        h.place()
        x0, _, x1, _ = h.extent()
        crossings = (g.crossings(), g.clashes()) if crossings is None else crossings
        if x1 - x0 <= width and h.crossings() <= crossings[0] and h.clashes() <= crossings[1]:
            return h, float(dx)
    if leads[0] is not None and leads[0] < g.dx - 1 and not g.fans:
        # it cannot fit, but the initial values may still close up: a larger scale on the slide
        # (not beside fans, whose labels it would crowd: lstm_concat at 5 steps, 4 ambiguous)
        h = make(g.dx, leads[0])
        h.place()
        if h.extent()[2] - h.extent()[0] < g.extent()[2] - g.extent()[0] \
                and h.crossings() <= g.crossings() and h.clashes() <= g.clashes():
            return h, g.dx
    return g, g.dx
