"""Limits on what rnngraph accepts, so that no input runs for minutes or fills the memory.

Every check raises a located :class:`RnnGraphError` that names the limit and how
to raise it, before anything large is allocated or laid out.  Give other limits
with ``parse(text, limits=Limits(max_delay=5000))``, ``load(path, limits=...)``
or ``--limit delay=5000`` on the command line; a model keeps its ``limits``
(``model.with_sizes`` too), so what it is later drawn or compiled with obeys them.

========================  ==========  ===============================================
limit (``--limit NAME=``)  default     what it bounds
========================  ==========  ===============================================
``source_bytes``          1 MiB       the equation text, in bytes of UTF-8
``equations``             10,000      equations in a file
``delay``                 1,000       k in ``h(t-k)`` and ``h(t+k)``
``size``                  1,000,000   the size of a vector (declared, given or inferred)
``parameter_elements``    10^8        rows x columns of one parameter (800 MB of float64)
``unroll``                100         steps of an unrolled graph or drawing
``drawn_nodes``           1,000       nodes of a drawing: variables (or ops) x steps
``edge_labels``           150         weight labels and delay markers a drawing places
``memory_bytes``          8 GiB       the arrays of one forward + backward call, estimated
========================  ==========  ===============================================

The nesting depth of an expression is fixed at :data:`rnngraph.lang.parser.MAX_DEPTH`.
The figures behind each default are in the commit that set it and in README.md.

Examples
--------
>>> from rnngraph import parse
>>> parse("h(t) = tanh(W h(t-2000) + U x(t))")
Traceback (most recent call last):
  ...
rnngraph.errors.RnnGraphError: <string>:1:15: error: a delay of 2,000 steps is more than the limit of 1,000; raise it with --limit delay=2000 (in Python, limits=Limits(max_delay=2000))
    h(t) = tanh(W h(t-2000) + U x(t))
                  ^
>>> parse("h(t) = tanh(W h(t-2000) + U x(t))", limits=Limits(max_delay=2000)).symbols["h"].delay
2000
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from ..lang import ast
from ..errors import RnnGraphError, Source

#: No limit may be set above this: every count stays an exact float64 and an int64.
CEILING = 2 ** 53


@dataclass(frozen=True)
class Limits:
    """The limits a model is checked against; see the module's table.

    Examples
    --------
    >>> Limits(max_unroll=500).max_unroll, Limits().max_delay
    (500, 1000)
    """

    max_source_bytes: int = 1 << 20
    max_equations: int = 10_000
    max_delay: int = 1000
    max_size: int = 1_000_000
    max_parameter_elements: int = 100_000_000
    max_unroll: int = 100
    max_drawn_nodes: int = 1000
    max_edge_labels: int = 150
    max_memory_bytes: int = 8 << 30

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= CEILING:
                raise ValueError(f"{f.name} must be a whole number from 1 to 2**53, not {value!r}")


def option(text: str) -> dict[str, int]:
    """The type of ``--limit``: ``delay=5000,unroll=200`` -> ``{"max_delay": 5000, "max_unroll": 200}``.

    Examples
    --------
    >>> option("delay=5000, unroll=200")
    {'max_delay': 5000, 'max_unroll': 200}
    """
    names = [f.name[len("max_"):] for f in fields(Limits)]
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = (s.strip() for s in item.partition("="))
        if name not in names:
            raise argparse.ArgumentTypeError(f"unknown limit {name!r}; the limits are {', '.join(names)}")
        if not eq or not value.isdigit() or not 1 <= int(value) <= CEILING:
            raise argparse.ArgumentTypeError(
                f"expected NAME=N with N a whole number from 1 to 2**53, as in delay=5000; got {item!r}")
        out[f"max_{name}"] = int(value)
    return out


def _raise_it(key: str, needed: int | None) -> str:
    if needed is not None and needed > CEILING:
        return "no limit goes past 2**53"
    n = "N" if needed is None else str(needed)
    return f"raise it with --limit {key}={n} (in Python, limits=Limits(max_{key}={n}))"


def check_memory(model, nbytes: int, what: str) -> None:
    """Refuse a call whose arrays would take more than ``max_memory_bytes`` (``what`` says
    how the estimate was made), before anything is allocated."""
    cap = model.limits.max_memory_bytes
    if nbytes > cap:
        raise RnnGraphError(f"this call would take about {nbytes / 2 ** 30:,.1f} GiB ({what}), "
                            f"more than the limit of {cap / 2 ** 30:,.1f} GiB; "
                            f"{_raise_it('memory_bytes', nbytes)}")


def _count(n: int) -> str:
    if n < 10 ** 15:
        return f"{n:,}"
    try:
        return f"{float(n):.3g}"
    except OverflowError:             # past 1e308: from the digits
        digits = str(n)
        return f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"


# -- the text, before it is parsed --------------------------------------------------------
def check_source(data: bytes, filename: str, limits: Limits, total: int | None) -> None:
    """Refuse the text if it is longer than ``max_source_bytes``.

    ``data`` is the text or at least its first ``max_source_bytes + 1`` bytes;
    ``total`` its whole length, None if unknown (a pipe).  The error points at
    the first character past the limit.
    """
    cap = limits.max_source_bytes
    if len(data) <= cap:
        return
    before = data[:cap].decode("utf-8", "replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    what = f"{total:,} bytes" if total is not None else f"more than {cap:,} bytes"
    raise Source(data.decode("utf-8", "replace"), filename).error(
        f"the file is {what}, more than the limit of {cap:,}; {_raise_it('source_bytes', total)}",
        line, column)


# -- the program: equations and delays ------------------------------------------------------
def check_program(program: ast.Program, source: Source, limits: Limits) -> None:
    """Refuse a program with too many equations or a time index too far from t."""
    n = len(program.equations)
    if n > limits.max_equations:
        eq = program.equations[limits.max_equations]
        raise source.error(f"the file has {n:,} equations, more than the limit of "
                           f"{limits.max_equations:,}; {_raise_it('equations', n)}", *eq.pos)
    for eq in program.equations:
        for node in ast.walk(eq.rhs):
            if isinstance(node, ast.Ref) and node.offset and abs(node.offset) > limits.max_delay:
                k = abs(node.offset)
                raise source.error(f"a delay of {_count(k)} steps is more than the limit of "
                                   f"{limits.max_delay:,}; {_raise_it('delay', k)}", *node.pos)


# -- sizes, once solved ----------------------------------------------------------------------
def check_sizes(program: ast.Program, symbols: dict, vectors: dict[str, int],
                shapes: dict[str, tuple[int, ...]], given: dict[str, int], source: Source,
                limits: Limits) -> None:
    """Refuse vectors and parameters too large to allocate; every one is reported.

    A size declared in the file is reported at its declaration, any other at the
    symbol's first appearance.
    """
    declared = {d.name: d.pos for d in program.sizes if d.name not in given}
    errors = []
    for name, size in vectors.items():
        if isinstance(size, tuple):              # a matrix-valued variable: as a parameter
            shapes = {**shapes, name: size}
            continue
        if size > limits.max_size:
            how = "is given size" if name in given else "has size"
            errors.append((declared.get(name) or _first(symbols[name]),
                           f"'{name}' {how} {_count(size)}, more than the limit of {limits.max_size:,} "
                           f"for a vector; {_raise_it('size', size)}"))
    # The parameters' shapes follow from the vectors': only when those are within their limit.
    for name, shape in shapes.items() if not errors else ():
        elements = 1
        for n in shape:
            elements *= n
        if elements > limits.max_parameter_elements:
            dims = " x ".join(_count(n) for n in shape) + " = " if len(shape) > 1 else ""
            errors.append((_first(symbols[name]),
                           f"'{name}' would have {dims}{_count(elements)} elements, more than the "
                           f"limit of {limits.max_parameter_elements:,}; "
                           f"{_raise_it('parameter_elements', elements)}"))
    if errors:
        errors.sort(key=lambda e: e[0])
        (pos, message), *rest = errors
        first = source.error(message, *pos)
        raise RnnGraphError(first.message, first.location, [source.error(m, *p) for p, m in rest])


def _first(sym) -> ast.Pos:
    return min([sym.pos, *(r.pos for r in sym.reads)])


# -- graphs and drawings -----------------------------------------------------------------
def check_unroll(model, steps: int | dict) -> None:
    """Refuse to unroll ``model`` over more than ``max_unroll`` steps (of any index)."""
    cap = model.limits.max_unroll
    if isinstance(steps, dict):
        steps = max((n for n in steps.values() if isinstance(n, int)), default=1)
    if steps > cap:
        raise _at_start(model, f"unrolling over {_count(steps)} steps is more than the limit of "
                               f"{cap:,}; {_raise_it('unroll', steps)}")


def drawing_size(model, unroll: int | None, detail: str | None = None) -> tuple[int, int, str]:
    """What a drawing of ``model`` would hold: ``(nodes, edge labels, how the nodes add up)``.

    Counted on the folded graph, before anything is built: the variables at each
    step, initial values aside (with ``detail="ops"``: the op graph's nodes, at
    most, at each step); the labels are the variable view's edges with a weight
    (folded, also those with a delay marker or into a sum over the steps), at every step each
    is drawn.

    Examples
    --------
    >>> from rnngraph import parse
    >>> drawing_size(parse("h(t) = tanh(W h(t-1) + U x(t))"), 4)
    (8, 8, '2 variables a step x 4 steps')
    """
    steps = unroll or 1
    if detail == "ops":
        ops = len(model.op_graph())
        return ops * steps, 0, f"at most {ops:,} nodes a step x {steps:,} steps"
    if unroll is not None and (any(isinstance(s.index, tuple) for s in model.symbols.values())
                               or any(d.tree for d in model.program.indices)):
        # attention's values over two indices are drawn into what reads them (a fan into the
        # first step, one edge into each other), a tree has 2 tau - 1 nodes over tau leaves:
        # counted on the unrolled graph itself, which check_unroll has bounded (at most 100
        # steps of each index by default)
        g = model.unroll(unroll)
        drawn = sum(1 for _, role in g.nodes(data="role") if role != "initial")
        labels = sum(1 for _, _, d in g.edges(data=True) if d["weight"] is not None or "attend" in d)
        return drawn, labels, f"{drawn:,} variables over {unroll:,} steps of each index"
    g = model.graph()
    timed = sum(1 for _, t in g.nodes(data="timed") if t)
    labels = sum(_instances(g, u, v, d, unroll) for u, v, d in g.edges(data=True)
                 if d["weight"] is not None or (unroll is None and (
                     d["delay"] or g.nodes[v].get("over") or "step" in d)))
    if unroll is not None:                     # what initial values read: into each h(0), h(-1), ...
        from ..graphs.unrolled import dependencies
        labels += sum(s.delay for s in model.symbols.values() if s.initial is not None
                      for ref, w in dependencies(s.initial.rhs)
                      if w is not None and model.symbols[ref.name].role != "parameter")
    return timed * steps + len(g) - timed, labels, f"{timed:,} variables a step x {steps:,} steps"


def check_drawing(model, unroll: int | None, detail: str | None = None) -> None:
    """Refuse a drawing with more nodes or edge labels than the limits (:func:`drawing_size`)."""
    limits = model.limits
    if unroll is not None:
        check_unroll(model, unroll)
    nodes, labels, per = drawing_size(model, unroll, detail)
    fewer = "draw fewer steps or " if unroll else ""
    if nodes > limits.max_drawn_nodes:
        what = f" ({per})" if unroll else ""
        raise _at_start(model, f"the drawing would have {nodes:,} nodes{what}, more than the limit of "
                               f"{limits.max_drawn_nodes:,}; {fewer}{_raise_it('drawn_nodes', nodes)}")
    if labels > limits.max_edge_labels:
        raise _at_start(model, f"the drawing would place {labels:,} edge labels, more than the limit of "
                               f"{limits.max_edge_labels:,}; {fewer}{_raise_it('edge_labels', labels)}")


def _instances(g, u, v, data, unroll: int | None) -> int:
    """How many times the folded edge ``u -> v`` is drawn over ``unroll`` steps."""
    if data.get("initial"):                    # into an initial value (s(0) = f(h(end))): folded
        return 1 if unroll is None else 0      # once; unrolled, counted with what s(0) reads
    if unroll is None or not (g.nodes[v]["timed"] or g.nodes[v].get("over")):
        return 1
    delay = data["delay"]
    if delay and delay < 0 and g.nodes[u]["role"] == "input":   # inputs after step N: no edge
        return max(unroll - abs(delay), 0)             # (those before step 1 are drawn, as zeros)
    return unroll


def _at_start(model, message: str) -> RnnGraphError:
    return model.source.error(message, *model.equations[0].pos)
