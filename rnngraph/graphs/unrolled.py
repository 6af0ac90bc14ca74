"""Model -> NetworkX graphs: folded, and unrolled over T steps.

Folded graph (``nx.MultiDiGraph``), one node per variable (every symbol but
the parameters, which label edges instead).  Node attributes:

``role``       input, sequence, state, value (see :mod:`rnngraph.check.analysis`)
``kind``       the role a drawing styles it by: also output, loss, target
``timed``      bool; ``direction`` and ``delay`` for states; ``size`` or None
``initial``    for a state with ``name(0) = e``: the text of e, else None

One edge per dependency ``u -> v`` (v's equation reads u), keyed by
``(delay, weight)``.  Edge attributes:

``delay``      how many steps back the read is: 0 for ``u(t)``, 1 for ``u(t-1)``,
               -1 for ``u(t+1)``; None for a time-free read
``weight``     the matrix through which u enters, as text (``U``, ``W1^T``), or None
``transpose``  whether that matrix enters transposed (``W1^T h``)

Unrolled graph: nodes ``(name, t)`` for t = 1..T, ``(name, None)`` for
time-free variables, the initial values ``(name, t <= 0)`` that step 1 reads
and the boundary values ``(name, t > T)`` that backward states read at the
end; those have role ``initial``, and so have the inputs read before step 1
(a time-delay net's ``x(0)``, ``x(-1)``: zeros, drawn as the initial values
are).  Node attributes: ``name``, ``t``, ``role``, ``kind``; edges as in the
folded graph.  Inputs read after step T are zero and have no node.
"""
from __future__ import annotations

import networkx as nx

from ..check.analysis import reads_a_step
from ..lang import ast
from ..lang.printing import expr_text
from .trees import Tree


class StepRead:
    """A term made of step values and numbers alone (``end - t``, the steps left): drawn as an
    input of its own at each step, as the book draws tau - t (section 10.2.4)."""

    offset = 0

    def __init__(self, expr):
        self.name = expr_text(expr)


def _step_only(node) -> bool:
    parts = list(ast.walk(node))
    return any(isinstance(n, ast.Step) for n in parts) and all(
        isinstance(n, (ast.Step, ast.Num, ast.Neg)) or isinstance(n, ast.Binary) and n.op != "@"
        for n in parts)


def step_symbols(model) -> dict:
    """A symbol for each step term of ``model`` (``end - t``): an input over the index of the
    equation that reads it."""
    from ..check.analysis import Symbol
    out = {}
    for eq in model.equations:
        stack = [eq.rhs]
        while stack:
            node = stack.pop()
            if _step_only(node):
                text = expr_text(node)
                out.setdefault(text, Symbol(text, "input", True, node.pos, index=eq.index))
                continue
            stack.extend(ast.children(node))
    return out


def symbols_of(model) -> dict:
    """The model's symbols and its step terms' (:func:`step_symbols`)."""
    steps = step_symbols(model)
    return {**model.symbols, **steps} if steps else model.symbols


def _vector(node, vectors) -> bool:
    """Whether ``node`` (under a transpose) is a vector: it reads a step, or names one of
    ``vectors`` (the model's variables), or is more than a name (a parameter alone is a
    matrix there)."""
    if isinstance(node, ast.Ref) and node.offset is None:
        return vectors is not None and node.name in vectors
    return not (isinstance(node, ast.Transpose) or isinstance(node, ast.Binary) and node.op == "@")


def dependencies(expr, vectors=None):
    """``(ref, weight_expr)`` for every variable read in ``expr``: the matrix it enters through
    (a term of step values alone, ``end - t``, as a :class:`StepRead`; both sides of a dot
    product ``q^T h`` as reads, no weight).  ``vectors``: the names of the model's variables,
    which a transpose makes one side of a dot product, not a matrix."""
    out = []
    stack = [(expr, None)]
    while stack:
        node, weight = stack.pop()
        if isinstance(node, ast.Binary) and node.op == "@" and ast.diagonal(node.left) is not None:
            v = ast.diagonal(node.left)             # diag(v) x: v's label, or v's reads as edges
            if isinstance(v, ast.Ref) and v.offset is None and (vectors is None or v.name not in vectors):
                stack.append((node.right, f"diag({v.name})"))       # one weight per unit
            else:
                stack.append((node.right, weight))
                stack.append((v, None))
        elif isinstance(node, ast.Binary) and node.op == "@" and isinstance(node.left, ast.Transpose) \
                and _vector(node.left.operand, vectors):
            stack.append((node.right, None))
            stack.append((node.left.operand, None))
        elif weight is None and vectors is not None and _unit_weight(node, vectors):
            name, other = _unit_weight(node, vectors)   # u * h(t-1): u's label, as a matrix's
            stack.append((other, f"{name}⊙"))
        elif _step_only(node):
            out.append((StepRead(node), weight))
        elif isinstance(node, (ast.Ref, ast.At)):
            out.append((node, weight))
        elif isinstance(node, ast.Binary) and node.op == "@" and reads_a_step(node.left, vectors or ()):
            # a product with a variable on the left (a memory's M(t-1) k(t), an outer product
            # w(t) e(t)^T): both sides are reads, as in a dot product; no weight to label
            stack.append((node.right, None))
            stack.append((node.left, None))
        elif isinstance(node, ast.Binary) and node.op == "@":
            stack.append((node.right, node.left))   # the matrix side is a label, not an edge
        elif isinstance(node, ast.Call):
            stack.extend((a, None) for a in reversed(node.args))
        elif isinstance(node, ast.Concat) and weight is not None:
            # each part meets its own block of the matrix: W_f [h(t-1); x(t)] is W_f[h] h + W_f[x] x,
            # labelled so, not W_f twice (which reads as one weight tied to both)
            stack.extend((part, _Block(weight, part)) for part in reversed(ast.children(node)))
        else:
            stack.extend((c, weight) for c in reversed(ast.children(node)))
    return out


def _unit_weight(node, vectors):
    """(u, h) for ``u * h`` or ``h * u`` with u a parameter (a name that is not one of the
    model's variables) and h reading a variable: a weight per unit (IndRNN, peepholes)."""
    if not (isinstance(node, ast.Binary) and node.op == "*"):
        return None
    for side, other in ((node.left, node.right), (node.right, node.left)):
        if isinstance(side, ast.Ref) and side.offset is None and side.name not in vectors and any(
                isinstance(n, ast.At) or isinstance(n, ast.Ref) and (n.offset is not None or
                                                                     n.name in vectors)
                for n in ast.walk(other)):
            return side.name, other
    return None


class _Block:
    """The block of a matrix that one part of a concatenation meets."""

    def __init__(self, matrix, part):
        self.matrix, self.part = matrix, part


def _weight(expr) -> tuple[str | None, bool]:
    """The label of the matrix ``expr``: its name, ``W^T`` as (W, True), ``W_f[h]`` for a block."""
    if expr is None:
        return None, False
    if isinstance(expr, _Block):
        name, transpose = _weight(expr.matrix)
        part = expr.part.name if isinstance(expr.part, ast.Ref) else "·"
        return f"{name}[{part}]", transpose
    if isinstance(expr, str):                  # diag(u), u⊙: a weight per unit
        return expr, False
    if isinstance(expr, ast.Transpose) and isinstance(expr.operand, ast.Ref):
        return expr.operand.name, True
    return expr_text(expr), False


def _edges(model):
    """Every (source, target, delay, weight, transpose) of the model, in file order, once."""
    seen: dict[tuple, None] = {}          # an ordered set
    sym = symbols_of(model)
    vectors = {n for n, s in model.symbols.items() if s.role != "parameter"}
    for eq in model.equations:
        if eq.kind == "init":
            continue
        for ref, wexpr in dependencies(eq.rhs, vectors):
            if sym[ref.name].role == "parameter":
                continue
            weight, transpose = _weight(wexpr)
            step = ref.step if isinstance(ref, ast.At) else None
            delay = None if step is not None or ref.offset is None else -ref.offset
            child = ref.child if isinstance(ref, ast.Ref) else None
            edge = (ref.name, eq.name, delay, weight, transpose, step, child)
            seen.setdefault(edge)
    return list(seen)


def _node_attrs(model, name, sym=None):
    s = (sym or model.symbols)[name]
    return dict(role=s.role, kind=s.kind, timed=s.timed, direction=s.direction, delay=s.delay,
                size=model.sizes.get(name), over=s.over,
                initial=expr_text(s.initial.rhs) if s.initial is not None else None)


def folded(model) -> nx.MultiDiGraph:
    """The folded graph of ``model``.

    Examples
    --------
    >>> from rnngraph import parse
    >>> g = parse("h(t) = tanh(W h(t-1) + U x(t))").graph()
    >>> sorted((u, v, d["delay"], d["weight"]) for u, v, d in g.edges(data=True))
    [('h', 'h', 1, 'W'), ('x', 'h', 0, 'U')]
    """
    g = nx.MultiDiGraph(name=model.filename)
    symbols = symbols_of(model)
    for name, sym in symbols.items():
        if sym.role != "parameter":
            g.add_node(name, **_node_attrs(model, name, symbols), **(
                {"step_term": True} if name not in model.symbols else {}))
    for u, v, delay, weight, transpose, step, child in _edges(model):
        key = (delay, weight) if step is None else (f"@{step}", weight)
        attrs = dict(delay=delay, weight=weight, transpose=transpose)
        if step is not None:
            attrs["step"] = step
        if child is not None:                      # h(left(n)): a tree's child, one level down
            key, attrs["child"] = (delay, weight, child), child
        g.add_edge(u, v, key=key, **attrs)
    for name, sym in model.symbols.items():       # what an initial value reads: into the state
        if sym.initial is not None:
            for ref, wexpr in dependencies(sym.initial.rhs):
                if model.symbols[ref.name].role == "parameter":
                    continue
                weight, transpose = _weight(wexpr)
                step = {"step": ref.step} if isinstance(ref, ast.At) else {}
                g.add_edge(ref.name, name, key=(f"@{ref.step}" if step else "(0)", weight),
                           delay=None, weight=weight, transpose=transpose, initial=True, **step)
    return g


def steps_of(model, steps) -> dict[str, int]:
    """The number of steps drawn of each index: ``steps`` a number (every index) or a dict
    ``{"t": 4, "u": 3}`` (an index it leaves out: the largest number it gives)."""
    indices = ["t"] + [d.name for d in model.program.indices]
    if isinstance(steps, dict):
        for i, n in steps.items():
            if i not in indices:
                known = ", ".join(indices)
                raise ValueError(f"'{i}' is not an index of this model (its indices: {known})")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"steps of {i} must be a positive integer, not {n!r}")
        default = max(steps.values(), default=1)
        return {i: steps.get(i, default) for i in indices}
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    return {i: steps for i in indices}


def unrolled(model, steps, shapes: dict | None = None) -> nx.MultiDiGraph:
    """The graph of ``model`` unrolled over steps 1..``steps`` (of every index; a dict gives
    each index its own: ``{"t": 4, "u": 3}``, an encoder over 4 steps, a decoder over 3).
    Nodes ``(name, k)`` are step k of the name's own index (its ``index`` attribute).
    ``shapes``: a tree index's tree (rnngraph.graphs.trees.Tree), where not the balanced one.

    Examples
    --------
    >>> from rnngraph import parse
    >>> g = parse("h(t) = tanh(W h(t-1) + U x(t))").unroll(2)
    >>> sorted(g.nodes, key=str)
    [('h', 0), ('h', 1), ('h', 2), ('x', 1), ('x', 2)]
    """
    per = steps_of(model, steps)
    g = nx.MultiDiGraph(name=model.filename, steps=steps, per_index=per)
    fold = folded(model)
    sym = symbols_of(model)
    # a tree's index: the balanced tree over as many leaves as steps drawn (figure 10.14)
    trees = {d.name: (shapes or {}).get(d.name) or Tree.balanced(per[d.name])
             for d in model.program.indices if d.tree}
    level = {i: {k + 1: lv for lv, nodes in enumerate(t.levels) for k in nodes}
             for i, t in trees.items()}

    def length(name) -> int:
        i = sym[name].loop or "t"
        return trees[i].nodes if i in trees and sym[name].role != "input" else per[i]

    # Values over two indices (attention's e(u, t), a(u, t)) have no nodes: what they read is
    # drawn into the value over u that reads them (c(u) = sum_t(a(u, t) h(t))), its encoder
    # states as a fan, each edge weighted a(u, t).
    pairs = {n for n, s in sym.items() if isinstance(s.index, tuple)}

    def node(name, t):
        if (name, t) not in g:
            attrs = dict(fold.nodes[name])
            if t is not None and not 1 <= t <= length(name):
                attrs.update(role="initial", kind="initial")
            g.add_node((name, t), name=name, t=t, index=sym[name].loop, **attrs)
            i = sym[name].loop
            if i in trees and t is not None:   # the node's level: 0 the leaves, -1 the inputs
                g.nodes[(name, t)]["level"] = -1 if sym[name].role == "input" else \
                    level[i].get(t, -1)
        return (name, t)

    for name, attrs in fold.nodes(data=True):
        if name in pairs:
            continue
        if attrs["timed"]:
            for t in range(1, length(name) + 1):
                node(name, t)
        elif sym[name].role != "parameter":
            node(name, None)
    for u, v, data in fold.edges(data=True):
        if data.get("initial"):
            continue                         # drawn below, into the initial nodes
        if u in pairs or v in pairs or fold.nodes[v]["timed"] and fold.nodes[u]["timed"] \
                and sym[u].loop != sym[v].loop and "step" not in data:
            continue                         # attention: drawn below
        delay = data["delay"]
        role = sym[u].role
        over = sym[v].over                   # J = sum_t(...): every step's value into J
        n = per[over] if over else length(v) if fold.nodes[v]["timed"] else None
        for t in range(1, n + 1) if n else [None]:
            src_t = None if delay is None else t - delay
            if "child" in data:                  # a node's child in the tree, none at a leaf
                kid = trees[sym[v].loop].children[t - 1][0 if data["child"] == "left" else 1]
                if kid < 0 and sym[v].initial is None:
                    continue                     # a leaf reads zeros below it: nothing drawn
                src_t = kid + 1 if kid >= 0 else 0
            if "step" in data:                   # h(end), h(1): the same step for every reader
                src_t = length(u) if data["step"] == "end" else data["step"]
                if src_t > length(u):
                    continue                     # beyond the steps drawn
            if src_t is not None and src_t > length(u) and role == "input":
                continue                     # beyond the last step drawn: the model reads zeros
            g.add_edge(node(u, src_t), node(v, None if over else t), key=(delay, data["weight"]),
                       **data)
    for v in fold.nodes:
        if v not in pairs and fold.nodes[v]["timed"]:
            _attention(g, fold, sym, pairs, v, length, node)
    # What an initial value reads (h(0) = tanh(W c)).
    for name, s in sym.items():
        if s.initial is None:
            continue
        for ref, wexpr in dependencies(s.initial.rhs):
            if sym[ref.name].role == "parameter":
                continue
            weight, transpose = _weight(wexpr)
            step = ref.step if isinstance(ref, ast.At) else None
            src = None if step is None else length(ref.name) if step == "end" else step
            for t in range(1 - s.delay, 1):         # the initial nodes step 1 reads
                if (name, t) in g and (src is None or src <= length(ref.name)):
                    extra = {} if step is None else {"step": step}
                    g.add_edge(node(ref.name, src), (name, t),
                               key=(None if step is None else f"@{step}", weight),
                               delay=None, weight=weight, transpose=transpose, **extra)
    return g


def _attention(g, fold, sym, pairs, v, length, node) -> None:
    """Into each step u of ``v`` (a context c(u) = sum_t(a(u, t) h(t))), what it reads through
    values over two indices and whole sequences: the steps of its own index it reads that
    way (the query s(u-1), through the scores) as edges of their own, and a sequence of
    another index as a fan from each of its steps into the first step (``attention`` "fan"),
    one edge from its last step into each other step ("compact"), weighted by the value
    over two indices that ``v`` reads (``attend``: ("a", 1, t), ("a", u, "·")) where v
    reads the sequence itself."""
    whole, query, weights = {}, {}, []
    stack, seen = [v], {v}
    while stack:
        x = stack.pop()
        for u, _, data in fold.in_edges(x, data=True):
            if data.get("initial") or "step" in data:
                continue
            if u in pairs:
                if x == v and u not in weights:
                    weights.append(u)
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
            elif fold.nodes[u]["timed"] and sym[u].loop != sym[v].loop:
                whole.setdefault(u, data)
            elif x != v and sym[u].role != "parameter":
                query.setdefault((u, data["delay"]), data)
    if not whole and not query:
        return
    for t in range(1, length(v) + 1):
        for (u, delay), data in query.items():
            src = None if delay is None else t - delay
            if src is not None and src > length(u) and sym[u].role == "input":
                continue
            g.add_edge(node(u, src), node(v, t), key=(delay, data["weight"]), **{
                **data, "attention": "query"})
        for u, data in whole.items():
            weighted = weights and fold.has_edge(u, v)
            # the first step's fan in full; the others' compactly, one edge from the last
            # state weighted a(u, ·) (every step's fan would cross the others' 4 x 3 times)
            for k in range(1, length(u) + 1) if t == 1 else [length(u)]:
                attend = (weights[0], t, k if t == 1 else "·") if weighted else None
                g.add_edge(node(u, k), node(v, t), key=(None, f"attend{k}"),
                           delay=None, weight=None, transpose=False,
                           attention="fan" if t == 1 else "compact",
                           **({"attend": attend} if attend else {}))
