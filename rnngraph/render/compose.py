"""Two laid-out drawings side by side in one picture, each under a title.

Teacher forcing (``--mode both``) is drawn as the Deep Learning book's figure 10.6:
the training graph, which reads the target y(t-1), beside the test graph, which
reads the model's own output o(t-1) in its place.  Each drawing keeps its own
layout; the second is moved right of the first, every position (nodes, edge
curves, labels) shifted alike, and a title set above each.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.render import layout
>>> m = parse("h(t) = tanh(W h(t-1) + R y(t-1))\\nL(t) = cross_entropy(softmax(V h(t)), y(t))\\n"
...           "o(t) = softmax(V h(t))\\nfree y -> o")
>>> d = side_by_side([layout(m, 2), layout(m.free_running(), 2)], ["training", "test"])
>>> sorted({i["part"] for i in d.nodes.values()})
[0, 1]
"""
from __future__ import annotations

from .drawing import Drawing, new_graph
from .geometry import map_x
from .labels import text_label
from .output import natural_size, render

GAP = 36.0                     # between the two drawings, in points


def _shift(pos: str, dx: float) -> str:
    """A Graphviz ``pos`` moved right by ``dx``."""
    return map_x(pos, lambda x: x + dx)


def side_by_side(drawings: list[Drawing], titles: list[str]) -> Drawing:
    """One drawing of ``drawings`` placed left to right, each under its title."""
    first = drawings[0]
    A = new_graph(first.style, "both")
    out = Drawing(A, unroll=first.unroll, style=first.style, spacing=first.spacing)
    x = 0.0
    top = max(natural_size(d)[1] for d in drawings)
    for part, (d, title) in enumerate(zip(drawings, titles)):
        render(d, "dot")                       # positions from the origin, as a render leaves them
        width, _ = natural_size(d)
        prefix = f"{part}:"
        for n in d.agraph.nodes():
            attrs = {k: v for k, v in n.attr.items() if v}
            # the label as made (HTML), or none: an empty one would become the node's name
            attrs["label"] = (d.nodes.get(str(n), {}).get("label") if n.attr.get("label") else None) or ""
            attrs["pos"] = _shift(n.attr["pos"], x)
            A.add_node(prefix + str(n), **attrs)
            out.nodes[prefix + str(n)] = {**d.nodes.get(str(n), {}), "part": part}
        for u, v, key in d.agraph.edges(keys=True):
            e = d.agraph.get_edge(u, v, key)
            attrs = {k: val for k, val in e.attr.items() if val}
            if d.labels.get(str(key)):
                attrs["label"] = d.labels[str(key)]
            attrs["pos"] = _shift(e.attr["pos"], x)
            if e.attr.get("lp"):
                attrs["lp"] = _shift(e.attr["lp"], x)
            A.add_edge(prefix + str(u), prefix + str(v), key=prefix + str(key), **attrs)
        for e in d.edges:
            out.edges.append({**e, "tail": prefix + e["tail"], "head": prefix + e["head"],
                              "key": prefix + e["key"]})
        out.labels.update({prefix + k: v for k, v in d.labels.items()})
        out.label_sizes.update({prefix + k: v for k, v in d.label_sizes.items()})
        tid = f"{prefix}title"
        A.add_node(tid, label=text_label(title), shape="plaintext", margin="0", width="0", height="0",
                   fontcolor=first.style.colors["muted"], pos=f"{x + width / 2:.2f},{top + 6:.2f}")
        out.nodes[tid] = dict(name=None, t=None, kind="title", marker=False, label=title, part=part,
                              tex=r"\text{" + title + "}")
        x += width + GAP
    return out
