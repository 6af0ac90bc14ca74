"""The unrolled view's rows: which variable goes in which row, bottom up.

Inputs go at the bottom, outputs, targets and losses at the top, and the
others in between in an order where every same-step edge points up; among
those, the orders whose same-step edges skip fewest rows come first.
:mod:`rnngraph.render.layout` places and routes the first few on a
:class:`rnngraph.render.grid.Grid` and keeps the one with fewest crossings.
"""
from __future__ import annotations

import itertools

import networkx as nx

_ORDER_LIMIT = 2000          # dependency orders scored when choosing the rows
_CANDIDATES = 6             # of those, the best scored that are routed and counted


def row_order(model, names: list[str]) -> list[str]:
    """The variables' rows from the bottom up: the first of :func:`row_orders`.

    Examples
    --------
    >>> from rnngraph import load
    >>> m = load("examples/elman.rnn")
    >>> row_order(m, ["x", "target", "a", "h", "o", "y", "L"])
    ['x', 'a', 'h', 'o', 'y', 'target', 'L']
    """
    return row_orders(model, names, 1)[0]


def row_orders(model, names: list[str], limit: int | None = None) -> list[list[str]]:
    """Up to ``limit`` row orders, bottom up, the most promising first.

    Inputs are at the bottom, outputs, targets and losses at the top, and the
    others in between in an order where every same-step edge points up.  Among
    those orders, the ones whose same-step edges skip fewest rows come first;
    :mod:`rnngraph.render.layout` routes the first few and keeps the one with
    fewest crossings.
    """
    from ..graphs.unrolled import symbols_of
    sym = symbols_of(model)
    same = nx.DiGraph()
    same.add_nodes_from(names)
    near = nx.Graph()
    for u, v, d in model.graph().edges(data=True):
        if u in same and v in same and u != v:
            if d["delay"] == 0 or d["delay"] is None:
                same.add_edge(u, v)
            w = 1.0 if d["delay"] in (0, None) else 0.25
            near.add_edge(u, v, weight=max(w, near.get_edge_data(u, v, {}).get("weight", 0)))
    bottom = [n for n in names if sym[n].kind == "input"]
    losses = [n for n in names if sym[n].kind == "loss"]
    outputs = [n for n in names if sym[n].kind == "output"]
    targets = [n for n in names if sym[n].kind == "target"]
    middle = [n for n in names if n not in bottom + losses + outputs + targets]
    head = bottom
    tail = outputs + targets + losses

    def cost(order):
        row = {n: i for i, n in enumerate(order)}
        return sum(w * max(abs(row[u] - row[v]) - 1, 0) if w == 1.0 else w * abs(row[u] - row[v])
                   for u, v, w in near.edges(data="weight"))

    sub = same.subgraph(middle)
    scored = []
    for k, order in enumerate(itertools.islice(nx.all_topological_sorts(sub), _ORDER_LIMIT)):
        full = head + list(order) + tail
        scored.append((cost(full), k, full))
    scored.sort(key=lambda item: item[:2])
    return [full for _, _, full in scored[:limit or _CANDIDATES]] or [head + middle + tail]
