"""The op view (``--detail ops``): a node per primitive operation.

Drawn from :func:`rnngraph.graphs.ops.op_graph` as in colah's LSTM figures: a layer
(a matrix product, or a nonlinearity applied to one) is a box, a pointwise
operation (``+``, ``⊙``, a nonlinearity of a state) a circle, and the
variables are the role-styled nodes of the variable view.  Unrolled, each
step is a framed group of its ops, steps left to right, and what a step
reads from an earlier step is an edge from that step's node.  Graphviz's
``dot`` lays it out.
"""
from __future__ import annotations


from ..graphs.ops import op_graph
from ..lang.names import latex_name
from .labels import OP_SYMBOLS, name_html, op_label, text_label, time_text, var_label
from .quiet import graphviz_stderr
from .drawing import Drawing, new_graph, step_text
from .metrics import TARGETS
from .style import Style

_LAYER_INPUTS = {"matmul", "add", "sub"}


def _is_layer(g, n) -> bool:
    """A matmul, or a function whose argument comes from a chain of matmuls and sums."""
    op = g.nodes[n]["op"]
    if op == "matmul":
        return True
    if op in {"add", "sub", "mul", "div", "neg", "concat", "copy", "transpose"}:
        return False
    stack, seen = [u for u in g.predecessors(n)], set()
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        if g.nodes[u].get("op") == "matmul":
            return True
        if g.nodes[u].get("op") in _LAYER_INPUTS:
            stack.extend(g.predecessors(u))
    return False


def layout_ops(model, unroll: int | None, style: Style) -> Drawing:
    """The op view of ``model``, folded or unrolled, laid out by ``dot``.

    Folded, data flows left to right as on a 16:9 slide, in compact ranks, and
    the view is drawn with and without chains of sums merged into one ``+``,
    left to right and bottom up: whichever has the largest text on a slide.
    Unrolled, each step's ops flow bottom up in a frame of their own, the
    steps left to right.
    """
    if unroll is not None:
        return _build(model, unroll, style, True, None)
    best = None
    for merge in (True, False):
        for rankdir in ("LR", "BT"):
            d = _build(model, None, style, merge, rankdir)
            scale = _slide_scale(d.agraph)
            if best is None or scale > best[0] + 1e-6:
                best = (scale, d)
    return best[1]


def _build(model, unroll, style, merge, rankdir) -> Drawing:
    g = op_graph(model)
    g = _merge_sums(g) if merge else g
    A = new_graph(style, "ops")
    A.graph_attr.update(rankdir="BT", nodesep="0.3", ranksep="0.35", newrank="true",
                        compound="true")
    if rankdir is not None:
        A.graph_attr.update(rankdir=rankdir, nodesep="0.1" if rankdir == "LR" else "0.2",
                            ranksep="0.16" if rankdir == "LR" else "0.2")
    weights = _weights(g)
    d = Drawing(A, unroll=unroll, style=style)
    steps = [None] if unroll is None else list(range(1, unroll + 1))
    sym = model.symbols

    def add(nid, label, kind, name=None, t=None, tex=None, **extra):
        """A node; ``tex``: its text in LaTeX, for the TikZ output (a variable's comes from its name)."""
        if nid not in d.nodes:
            attrs = style.node(kind)
            attrs.update(extra)
            A.add_node(nid, label=label, **attrs)
            d.nodes[nid] = dict(name=name, t=t, kind=kind, marker=False, label=label, tex=tex)
        return nid

    # Initial values go left of step 1 and the boundary values of backward states right of
    # the last step, as in the variable view: each in a frameless cluster of its own.
    ends = {}
    if unroll is not None:
        ends["after"] = A.add_subgraph(name="cluster_after", label="", peripheries="0")

    def var_node(name, t):
        """A model variable at step t (t None: folded or time-free)."""
        kind = sym[name].kind
        if t is not None and not 1 <= t <= (unroll or 1):
            kind = "initial"
        shown = None if t is None and not sym[name].timed else \
            ("(t)" if unroll is None else step_text(style, t, unroll))
        nid = name if t is None else f"{name}.{t}"
        made = nid in d.nodes
        add(nid, var_label(name, shown, style.fontsize), kind, name, t)
        d.nodes[nid]["shown"] = shown
        if kind == "initial" and unroll is not None and not made:
            initial.append(nid) if t < 1 else ends["after"].add_node(nid)
        return nid

    initial: list[str] = []
    if unroll is not None:
        # Made before anything else, the initial values come out left of step 1.
        for n, data in g.nodes(data=True):
            offset = _read_offset(n) if data["kind"] not in ("op", "param", "const", "var") \
                and "step" not in data else None
            if offset and offset < 0 and 1 + offset < 1:
                for t in range(1, 1 - offset):
                    var_node(data["name"], t + offset)
    # dot lays the step clusters out right to left in the order they are made: make the last first.
    for t in (steps if unroll is None else steps[::-1]):
        sub = A.add_subgraph(name=f"cluster_step{t}", label=f"<{step_text(style, t, unroll) or ''}>" if t else "",
                             style="rounded,filled", fillcolor=style.colors["cluster"],
                             color=style.colors["muted"], fontcolor=style.colors["muted"]) if t else A
        ids = {}
        for n, data in g.nodes(data=True):
            kind = data["kind"]
            suffix = "" if t is None else f".{t}"
            if kind == "op":
                if data["block"] == "once" and t is not None and t != steps[-1]:
                    ids[n] = f"{n}.{steps[-1]}"
                    continue
                label, kind, attrs = _op_node(g, n, weights, style)
                tex = latex_name(g.nodes[weights[n]]["name"]) if n in weights else \
                    OP_TEX.get(data["op"], r"\mathrm{" + data["op"].replace("_", r"\_") + "}")
                if kind == "pointwise" and data["op"] not in OP_TEX:      # tanh in its circle
                    tex = r"\scriptstyle " + tex
                ids[n] = add(f"{n}{suffix}", label, kind, tex=tex, **attrs)
                sub.add_node(ids[n])
            elif n in weights.values():
                continue                                   # drawn as its matmul's box
            elif kind == "param":
                ids[n] = add(f"{n}{suffix}", f"<{name_html(data['name'])}>", "parameter",
                             tex=latex_name(data["name"]),
                             shape="plaintext", margin="0")
                sub.add_node(ids[n])
            elif kind == "const":
                ids[n] = add(f"{n}{suffix}", text_label(data["label"]), "parameter", shape="plaintext",
                             tex=data["label"],
                             margin="0")
                sub.add_node(ids[n])
            elif kind == "var":
                name = data["name"]
                ids[n] = var_node(name, t if sym[name].timed else None)
                if sym[name].timed:
                    sub.add_node(ids[n])
            elif "step" in data:                           # h(end), h(1): one node, that step's
                name, step = data["name"], data["step"]
                if t is None:
                    shown = "(τ)" if step == "end" else f"({step})"
                    ids[n] = add(n, var_label(name, shown, style.fontsize), "state", name, None,
                                 tex=latex_name(name, r"(\tau)" if step == "end" else shown))
                else:
                    ids[n] = var_node(name, unroll if step == "end" else step)
            else:                                          # a read: x(t), h(t-1), a time-free input
                name = data["name"]
                offset = _read_offset(n)
                if t is None:
                    label = var_label(name, None if offset is None else f"({time_text(offset)})",
                                      style.fontsize)
                    ids[n] = add(n, label, sym[name].kind if not offset else "state", name, None,
                                 tex=latex_name(name, None if offset is None else
                                                f"({time_text(offset).replace('−', '-')})"))
                else:
                    ids[n] = var_node(name, None if offset is None else t + offset)
                    if sym[name].role == "input" and offset == 0:
                        sub.add_node(ids[n])
        for u, v in g.edges():
            if u not in ids:
                continue
            if t is not None and u.startswith("op") and g.nodes[u]["block"] == "once" and t != steps[-1]:
                if g.nodes[v].get("block") == "once":
                    continue
            key = f"{ids[u]}->{ids[v]}"
            if A.has_edge(ids[u], ids[v], key):
                continue
            cross = t is not None and d.nodes[ids[u]]["t"] not in (None, t) \
                and d.nodes[ids[u]]["kind"] != "initial"      # initial values rank below their readers
            attrs = dict(constraint="false") if cross else {}
            A.add_edge(ids[u], ids[v], key=key, **attrs)
            d.edges.append(dict(tail=ids[u], head=ids[v], delay=None, weight=None, key=key))
    if initial:
        A.add_subgraph(initial, name="cluster_before", label="", peripheries="0")
    with graphviz_stderr():
        A.layout(prog="dot")
    return d


def _slide_scale(A) -> float:
    """How much a laid-out graph is scaled to fill a beamer frame."""
    x0, y0, x1, y1 = map(float, A.graph_attr["bb"].split(","))
    room = TARGETS["beamer"]
    return min(room.width / (x1 - x0 or 1), room.height / (y1 - y0 or 1))


def _merge_sums(g):
    """``g`` with each chain of additions drawn as one ``+`` of all the terms, as the textbooks do.

    Examples
    --------
    >>> from rnngraph import parse
    >>> from rnngraph.graphs.ops import op_graph
    >>> g = op_graph(parse("h(t) = tanh(W h(t-1) + U x(t) + b)"))
    >>> [g.nodes[n]["op"] for n in _merge_sums(g) if g.nodes[n]["kind"] == "op"]
    ['matmul', 'matmul', 'add', 'tanh']
    """
    g = g.copy()
    for n in list(g):
        data = g.nodes[n]
        if data["kind"] != "op" or data["op"] != "add" or g.out_degree(n) != 1:
            continue
        (s,) = g.successors(n)
        if g.nodes[s]["kind"] == "op" and g.nodes[s]["op"] == "add" and g.nodes[s]["block"] == data["block"]:
            for u in list(g.predecessors(n)):
                g.add_edge(u, s)
            g.remove_node(n)
    return g


def _weights(g) -> dict:
    """matmul op -> the weight it multiplies by, when that weight feeds nothing else.

    The op is then drawn as one box named after the weight (``W_hh``), as the
    textbooks label a layer, instead of a ``×`` box and a separate name.
    """
    out = {}
    for n, data in g.nodes(data=True):
        if data["kind"] == "op" and data["op"] == "matmul":
            params = [u for u in g.predecessors(n) if g.nodes[u]["kind"] == "param" and g.out_degree(u) == 1]
            if len(params) == 1:
                out[n] = params[0]
    return out


#: op name -> its symbol in LaTeX, for the TikZ output (labels.OP_SYMBOLS for Graphviz's).
OP_TEX = {"add": "+", "sub": "-", "mul": r"\odot", "div": r"\div", "neg": "-", "matmul": r"\times",
          "transpose": r"\top", "concat": r"[\,;\,]", "copy": "=", "sigmoid": r"\sigma",
          "cross_entropy": r"\mathrm{CE}", "binary_cross_entropy": r"\mathrm{BCE}",
          "sum_t": r"\sum_{t}"}


def _op_node(g, n, weights, style) -> tuple:
    """The label, kind and Graphviz attributes of op node ``n``.

    Pointwise ops are circles of one size, a longer name (``tanh``) written in
    the size of sub- and superscripts to fit, as in colah's LSTM figures.
    """
    data = g.nodes[n]
    if n in weights:
        return var_label(g.nodes[weights[n]]["name"], None, style.fontsize), "layer", \
            dict(fixedsize="false", width="0.3", height="0.3", margin="0.04,0.02")
    label = op_label(data["op"])
    if _is_layer(g, n):
        return label, "layer", dict(fixedsize="false", width="0.3", height="0.3", margin="0.04,0.02")
    if len(OP_SYMBOLS.get(data["op"], data["op"])) > 1:
        label = f'<<FONT POINT-SIZE="{style.small:g}">{label[1:-1]}</FONT>>'
    side = f"{0.40 * style.fontsize / 16:.3f}"
    fixed = "true" if len(OP_SYMBOLS.get(data["op"], data["op"])) <= 4 else "false"   # softmax: grows
    return label, "pointwise", dict(fixedsize=fixed, width=side, height=side, margin="0")


def _read_offset(node_id: str) -> int | None:
    """``x(t)`` -> 0, ``h(t-1)`` -> -1, ``W`` -> None."""
    if "(" not in node_id:
        return None
    inner = node_id[node_id.index("(") + 1:-1]
    return 0 if inner == "t" else int(inner[1:])
