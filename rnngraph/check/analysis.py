"""AST -> roles, time structure and checks.

Every symbol gets a role:

``input``      never defined; read with a time index (``x(t)``), or read bare as
               the vector a matrix multiplies (``W1 x`` in a time-free model)
``sequence``   defined as ``name(t)`` and read only at the same step
``state``      defined as ``name(t)`` and read at another step (recurrent)
``value``      defined without a time index (``h = relu(W1 x + b1)``)
``parameter``  never defined, no time index: matrices and biases

The target of a loss (``cross_entropy(o, y)``) is an input, and a file may
declare a role where use alone does not say: ``input c`` (a time-free input,
data) or ``parameter a`` (learned, also where a matrix multiplies it).
``name(0) = ...`` gives a state's initial value.  The checks use NetworkX:
a cycle among same-step dependencies is an algebraic loop; a state must read
itself (through its strongly connected component) only from the past or only
from the future.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..lang import ast
from ..errors import RnnGraphError, Source
from ..lang.functions import FUNCTIONS
from ..lang.printing import expr_text, time_text

ROLES = ("input", "sequence", "state", "value", "parameter")

#: Functions whose result in one lane depends on the other lanes (so not on a number).
LANE_MIXING = ("softmax", "cross_entropy", "binary_cross_entropy")


@dataclass
class Symbol:
    """What the model knows of one name.

    Attributes
    ----------
    role : str
        One of ``input``, ``sequence``, ``state``, ``value``, ``parameter``.
    timed : bool
        Whether it has a time index (inputs, sequences, states).
    direction : str or None
        For a state: ``forward`` (reads ``t-k``) or ``backward`` (reads ``t+k``).
    delay : int
        For a state: the largest ``k`` it is read at.
    output, loss, target : bool
        An output is a defined variable that only losses read at the same step;
        a loss is defined by a loss function; a target is an input read only as
        a loss function's target.
    matrix : bool
        For a parameter: whether it is used as a matrix (else a vector: a bias).
    initial : ast.Equation or None
        The ``name(0) = ...`` equation of a state, if any.
    over : str or None
        For a value defined as a reduction (``L = sum_t(L(t))``): the index it sums over.
    reads, fixed : list
        Where it is read: at a step relative to t (or time-free), and at a fixed step
        (``h(end)``, ``h(1)``: :class:`ast.At`).
    index : str, tuple or None
        The index whose steps it has: ``"t"``, another declared one (``index u``), a pair
        ``("u", "t")`` for a value over two indices (``e(u, t)``), or None for a time-free
        symbol.
    """

    def __post_init__(self):
        if self.timed and self.index is None:
            self.index = "t"

    name: str
    role: str
    timed: bool
    pos: ast.Pos
    direction: str | None = None
    delay: int = 0
    output: bool = False
    loss: bool = False
    target: bool = False
    matrix: bool = False
    initial: ast.Equation | None = None
    over: str | None = None
    reads: list[ast.Ref] = field(default_factory=list, repr=False)
    fixed: list[ast.At] = field(default_factory=list, repr=False)
    index: str | None = None

    @property
    def loop(self) -> str | None:
        """The index whose loop computes it: ``index``, or the first of a pair (``e(u, t)``
        is computed at each step of u, for every t at once)."""
        return self.index[0] if isinstance(self.index, tuple) else self.index

    @property
    def kind(self) -> str:
        """The role a drawing styles it by: input, target, state, output, loss, parameter, ..."""
        if self.loss:
            return "loss"
        if self.target:
            return "target"
        if self.output:
            return "output"
        return self.role


def operand_positions(expr) -> tuple[list[ast.Ref], list[ast.Ref]]:
    """The bare names used as matrices in ``expr`` and those used as the vector a matrix multiplies.

    A matrix is the left side of a product, also under ^T, unary minus and
    elementwise operators (``(W + V) x``), and both sides of a product that is
    itself a matrix (``(A B) x``).  A vector operand is the right side of a
    product, directly or inside a concatenation.
    """
    matrices, vectors = [], []
    stack = [(expr, None)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, ast.Ref):
            if node.offset is None and where is not None:
                (matrices if where == "matrix" else vectors).append(node)
        elif isinstance(node, ast.Binary) and node.op == "@" and isinstance(node.right, ast.Transpose) \
                and reads_a_step(node.right.operand):
            # u v^T with v a step's vector (a memory's write w(t) e(t)^T): an outer product of
            # two vectors, u a bias perhaps, never a matrix (a matrix times a row is no product)
            stack.append((node.left, None))
            stack.append((node.right.operand, None))
        elif isinstance(node, ast.Binary) and node.op == "@":
            stack.append((node.left, "matrix"))
            stack.append((node.right, "matrix" if where == "matrix" else "vector"))
        elif where == "matrix" and isinstance(node, (ast.Transpose, ast.Neg, ast.Binary)):
            stack.extend((c, "matrix") for c in ast.children(node))
        elif where == "vector" and isinstance(node, ast.Concat):
            stack.extend((c, "vector") for c in node.items)
        else:
            stack.extend((c, None) for c in ast.children(node))
    return matrices, vectors


def reads_a_step(expr, names=()) -> bool:
    """Whether ``expr`` reads a step of a sequence or an input (h(t-1), x(t), h(end)), or
    one of ``names``."""
    return any(isinstance(n, ast.At) or isinstance(n, ast.Ref) and (
        n.offset is not None or n.name in names) for n in ast.walk(expr))


def reduction(eq: ast.Equation) -> str | None:
    """The index ``eq`` sums over, if it is ``name = sum_t(...)``; else None."""
    if eq.kind == "value" and isinstance(eq.rhs, ast.Call):
        return FUNCTIONS[eq.rhs.func].over
    return None


def _refs(expr) -> list[ast.Ref]:
    return [n for n in ast.walk(expr) if isinstance(n, ast.Ref)]


def fixed_reads(expr) -> list[ast.At]:
    """The reads of a sequence at a fixed step (``h(end)``, ``h(1)``) in ``expr``."""
    return [n for n in ast.walk(expr) if isinstance(n, ast.At)]


def _show(name: str, offset: int | None, index: str = "t") -> str:
    return f"{name}({time_text(offset, index)})" if offset is not None else name


def analyse(program: ast.Program, source: Source) -> dict[str, Symbol]:
    """Roles, directions and delays of every symbol; raises on the first error found."""
    err = source.error
    defs: dict[str, ast.Equation] = {}
    inits: dict[str, ast.Equation] = {}
    for eq in program.equations:
        table = inits if eq.kind == "init" else defs
        if eq.name in table:
            first = table[eq.name].pos
            raise err(f"'{eq.name}' is defined twice (first at line {first[0]})", *eq.pos)
        table[eq.name] = eq

    _check_indices(program, defs, err)
    _check_trees(program, defs, err)
    symbols: dict[str, Symbol] = {}
    for eq in program.equations:
        if eq.kind != "init":
            timed = eq.kind == "seq"
            index = (eq.index, eq.inner) if eq.inner else eq.index if timed else None
            symbols[eq.name] = Symbol(eq.name, "sequence" if timed else "value", timed, eq.pos,
                                      index=index, over=reduction(eq))
    # A reduction over the steps is the whole right side of an equation with no time index,
    # and it reads a step (the sum of a time-free value would be T times it: write that).
    for eq in program.equations:
        if reduction(eq) and not any(r.offset is not None for r in _refs(eq.rhs)):
            raise err(f"{eq.rhs.func}(...) sums over the steps, but {expr_text(eq.rhs.args[0])} "
                      "reads none: read a sequence or an input at t", *eq.rhs.pos)
        for node in ast.walk(eq.rhs):
            if isinstance(node, ast.Call) and FUNCTIONS[node.func].over \
                    and not (node is eq.rhs and reduction(eq)) \
                    and not (_own(eq) and FUNCTIONS[node.func].over != _own(eq)):
                raise err(f"{node.func}(...) sums over every step: it is the whole right side of "
                          f"an equation with no time index, as in L = {node.func}(L(t))", *node.pos)

    # softmax and the losses work across a vector's lanes: a number has none to work across.
    for eq in program.equations:
        for node in ast.walk(eq.rhs):
            if isinstance(node, ast.Call) and node.func in LANE_MIXING:
                for arg in node.args:
                    if not any(isinstance(n, (ast.Ref, ast.At)) for n in ast.walk(arg)):
                        raise err(f"{node.func} takes a vector, not the number {expr_text(arg)}",
                                  *arg.pos)

    # Reads: every Ref, with who reads it.
    reads: list[tuple[ast.Equation, ast.Ref]] = [
        (eq, r) for eq in program.equations for r in _refs(eq.rhs)]
    positions = [operand_positions(eq.rhs) for eq in program.equations]
    matrix_uses = [r for m, _ in positions for r in m]
    matrices = {r.name for r in matrix_uses}
    vectors = {r.name for _, v in positions for r in v}
    # The target of a loss is data, never a learned parameter: cross_entropy(o, y) makes y
    # an input even when nothing multiplies it (issue: a time-free target became a parameter).
    targets = {n.name for eq in program.equations for call in ast.walk(eq.rhs)
               if isinstance(call, ast.Call) and FUNCTIONS[call.func].loss
               for n in ast.walk(call.args[-1]) if isinstance(n, ast.Ref)}

    declared = _declared_roles(program, defs, {r.name for _, r in reads} | {
        r.name for eq in program.equations for r in fixed_reads(eq.rhs)}, err)
    for eq, r in reads:
        sym = symbols.get(r.name)
        if sym is None:                                   # first read of an undefined name
            if declared.get(r.name) == "parameter":
                if r.offset is not None and r.name in {d.name for d in program.sizes
                                                       if isinstance(d.size, tuple)}:
                    raise err(f"'{r.name}' is declared a matrix, and read as "
                              f"{_show(r.name, r.offset, r.index)}, as an input; an input is a "
                              f"vector (or a number at each step): a matrix is a defined "
                              f"variable, as a memory M(t) = ..., or a parameter", *r.pos)
                if r.offset is not None:
                    raise err(f"'{r.name}' is declared a parameter, but read as "
                              f"{_show(r.name, r.offset)}: a parameter has no time index", *r.pos)
                role, timed = "parameter", False
            elif r.offset is not None:
                role, timed = "input", True
            elif r.name in vectors and r.name not in matrices or r.name in targets \
                    or declared.get(r.name) == "input":
                role, timed = "input", False
            else:
                role, timed = "parameter", False
            sym = symbols[r.name] = Symbol(r.name, role, timed, r.pos, matrix=r.name in matrices,
                                           index=r.index if timed else None)
        sym.reads.append(r)
        pair = sym.index if isinstance(sym.index, tuple) else None
        if r.inner is not None and pair is None:
            what = "is not defined" if sym.role == "input" else \
                f"is defined as {defs[r.name].lhs_text}" if r.name in defs else f"is a {sym.role}"
            raise err(f"'{r.name}' {what}: only a value defined over two indices, as "
                      f"{r.name}({r.index}, {r.inner}) = ..., is read at two", *r.pos)
        if pair is not None and (r.index, r.inner) != pair:
            raise err(f"'{r.name}' is a value over {pair[0]} and {pair[1]} (defined as "
                      f"{defs[r.name].lhs_text}): read it as {r.name}({pair[0]}, {pair[1]})"
                      + (f", inside sum_{pair[1]}(...) or softmax_{pair[1]}(...)"
                         if eq.index == pair[0] and eq.inner is None else ""), *r.pos)
        if sym.role in ("sequence", "state") and r.offset is None:
            i = sym.index
            raise err(f"'{r.name}' is a sequence (defined as {r.name}({i})): read it as "
                      f"{r.name}({i}) or {r.name}({i}-1)" + (
                          f", or {r.name}(end), its last step" if eq.kind != "seq" else ""), *r.pos)
        if sym.timed and r.offset is not None and r.index != sym.loop:
            first = sym.reads[0] if sym.role == "input" else defs[r.name]
            was = _show(r.name, 0, sym.index) if sym.role != "input" else \
                _show(first.name, first.offset, first.index)
            how = "defined as" if sym.role != "input" else f"read (line {first.pos[0]}) as"
            raise err(f"'{r.name}' has the steps of {sym.index} ({how} {was}), not of {r.index}: "
                      f"read {r.name}(end) for its last step", *r.pos)
        if sym.role == "value" and r.offset is not None:
            raise err(f"'{r.name}' has no time index (defined as {r.name} = ...): read it as "
                      f"{r.name}", *r.pos)
        if sym.role in ("input", "parameter") and (r.offset is None) == sym.timed:
            first = sym.reads[0]
            raise err(f"'{r.name}' is read both as {_show(r.name, first.offset, first.index)} "
                      f"(line {first.pos[0]}) and as {_show(r.name, r.offset, r.index)}", *r.pos)
        if eq.kind in ("value", "init") and r.offset is not None and not reduction(eq):
            what = f"{eq.name}(0)" if eq.kind == "init" else f"'{eq.name}'"
            raise err(f"{what} has no time index, so it cannot read "
                      f"{_show(r.name, r.offset, r.index)}; it may read {r.name}(end), the last step",
                      *r.pos)

    # Reads at a fixed step: of a sequence (defined as name(t), or an input read at steps)
    for eq, r in [(eq, r) for eq in program.equations for r in fixed_reads(eq.rhs)]:
        sym = symbols.get(r.name)
        if sym is None:
            if declared.get(r.name) == "parameter":
                raise err(f"'{r.name}' is declared a parameter, but read as {r.name}({r.step}): "
                          "a parameter has no steps", *r.pos)
            sym = symbols[r.name] = Symbol(r.name, "input", True, r.pos)
        if not sym.timed:
            what = {"value": f"has no time index (defined as {r.name} = ...)",
                    "parameter": "is a parameter", "input": "is read as a time-free input"}
            raise err(f"'{r.name}' {what.get(sym.role, 'has no steps')}: it has no step "
                      f"{r.step} to read", *r.pos)
        if sym.over:
            raise err(f"'{r.name}' is a sum over every step of {sym.over}: no equation can read it",
                      *r.pos)
        sym.fixed.append(r)

    for name, sym in symbols.items():
        if sym.role == "parameter" and name in matrices and name in vectors:
            r = next(r for r in matrix_uses if r.name == name)
            raise err(f"'{name}' is used both as a matrix and as the vector a matrix multiplies", *r.pos)

    # Dependency graph of defined variables: delay-0 edges must be acyclic.
    g = nx.MultiDiGraph()
    g.add_nodes_from(defs)
    for eq, r in reads:
        if r.name in defs and eq.kind != "init":
            # a sum over the steps is read whole, after its last step: no same-step edge
            # (what it feeds reading it is _check_fixed_reads's to refuse)
            # so is a sequence of another index read at every step at once (e(u, t) reads h(t))
            whole = reduction(defs[r.name]) is not None or \
                eq.kind == "seq" and r.offset is not None and r.index != eq.index
            g.add_edge(r.name, eq.name, delay=None if whole else -(r.offset or 0), ref=r)
    _check_algebraic_loops(g, defs, err)
    _check_fixed_reads(program, g, defs, err)

    reads_of: dict[str, list[tuple[ast.Equation, ast.Ref]]] = {n: [] for n in symbols}
    for eq, r in reads:
        reads_of[r.name].append((eq, r))

    # A recurrence runs one way: the delayed reads inside a strongly connected
    # component must all reach into the past, or all into the future.
    scc_of = {n: i for i, comp in enumerate(nx.strongly_connected_components(g)) for n in comp}
    loop_reads: dict[int, list[ast.Ref]] = {}
    for eq, r in reads:
        if r.offset and r.name in defs and scc_of.get(eq.name) == scc_of[r.name]:
            loop_reads.setdefault(scc_of[r.name], []).append(r)
    for rs in loop_reads.values():
        past = [r for r in rs if r.offset < 0]
        future = [r for r in rs if r.offset > 0]
        if past and future:
            p, f = past[0], future[0]
            later = max(p, f, key=lambda r: r.pos)
            if p.name == f.name:
                what = f"'{p.name}' reads itself"
            else:
                names = sorted({r.name for r in rs}, key=lambda n: defs[n].pos)
                what = " and ".join(f"'{n}'" for n in names) + " form a loop that reads"
            raise err(f"{what} both from the past ({_show(p.name, p.offset)}) and from the future "
                      f"({_show(f.name, f.offset)}); split it into a forward and a backward state",
                      *later.pos)

    # States: read at another step; they run the way their loop reads.
    for name, sym in symbols.items():
        offsets = [r.offset for r in sym.reads if r.offset]
        if sym.role != "sequence" or not offsets:
            continue
        sym.role = "state"
        sym.delay = max(abs(k) for k in offsets)
        inside = loop_reads.get(scc_of[name], [])
        signs = {r.offset > 0 for r in inside} or {k > 0 for k in offsets}
        # A sequence read at other steps only from outside its loop (o(t) = V h(t-1) + V h(t+1)
        # with h not recurrent) is computed in time order either way: call it forward.
        sym.direction = "backward" if signs == {True} else "forward"

    for name, eq in inits.items():
        sym = symbols.get(name)
        if sym is None or sym.role != "state":
            what = "is not defined as a sequence" if sym is None or not sym.timed else \
                "is never read at an earlier step"
            raise err(f"{name}(0) gives an initial value, but '{name}' {what}", *eq.pos)
        if sym.direction == "backward":
            raise err(f"'{name}' runs backward (reads {name}(t+k)): it starts after the last step, "
                      f"so {name}(0) is never read", *eq.pos)
        sym.initial = eq

    _mark_outputs(program, symbols, defs, reads)
    return symbols


def _check_trees(program, defs, err) -> None:
    """A tree's index (``tree n``): its sequences read their own nodes' children,
    h(left(n)) and h(right(n)), and the same node; an input over it sits at the leaves and is
    read at the node, x(n); what is not over it reads its root, h(root).  Children are read
    along a tree only, and the root of a sequence over one only."""
    trees = {d.name for d in program.indices if d.tree}
    over = {eq.name: eq.index for eq in program.equations if eq.kind == "seq"}
    for eq in program.equations:
        for n in ast.walk(eq.rhs):
            if isinstance(n, ast.Ref) and n.child is not None:
                text = f"{n.name}({n.child}({n.index}))"
                if n.index not in trees:
                    raise err(f"{text} reads a child of a node, but '{n.index}' is not a tree's "
                              f"index: declare it on a line of its own, tree {n.index}", *n.pos)
                if eq.kind != "seq" or eq.index != n.index:
                    raise err(f"{text} is a child of the node an equation over {n.index} "
                              f"computes, as h({n.index}) = tanh(W h(left({n.index})) + ...); "
                              f"{eq.lhs_text} is not over {n.index}: read {n.name}(root)", *n.pos)
                if n.name not in defs:
                    raise err(f"'{n.name}' is an input: it sits at the leaves of the tree and is "
                              f"read at the node, {n.name}({n.index}); only what an equation "
                              f"defines has children to read", *n.pos)
            elif isinstance(n, ast.Ref) and n.index in trees and n.offset not in (None, 0):
                raise err(f"'{n.index}' counts the nodes of a tree, which come one level after "
                          f"another, not one after another: read {n.name}({n.index}), or a child, "
                          f"{n.name}(left({n.index})) or {n.name}(right({n.index}))", *n.pos)
            elif isinstance(n, ast.At) and n.root and over.get(n.name) not in trees:
                raise err(f"{n.name}(root) is the root of a sequence over a tree's nodes; "
                          f"'{n.name}' is not one" + (f": its last step is {n.name}(end)"
                                                       if n.name in over else ""), *n.pos)
            elif isinstance(n, ast.At) and over.get(n.name) in trees and n.step != "end":
                raise err(f"{n.name} is over the nodes of a tree: read its root, {n.name}(root), "
                          f"not a node by number", *n.pos)
            elif isinstance(n, ast.At) and n.name not in defs and (at := next(
                    (r.index for e in program.equations for r in ast.walk(e.rhs)
                     if isinstance(r, ast.Ref) and r.name == n.name and r.index in trees), None)):
                raise err(f"'{n.name}' is an input at the leaves of a tree: read it at the node, "
                          f"{n.name}({at}), in an equation over the tree", *n.pos)
            elif isinstance(n, ast.Call) and (FUNCTIONS[n.func].over in trees or
                                              FUNCTIONS[n.func].across in trees):
                raise err(f"{n.func}(...) over the nodes of a tree is not supported yet: read its "
                          f"root, h(root), or sum over t", *n.pos)
        if eq.kind == "seq" and eq.inner is not None and {eq.index, eq.inner} & trees:
            raise err(f"{eq.lhs_text}: a value over a tree's nodes and another index (attention "
                      f"over a tree's nodes) is not supported yet", *eq.pos)


def _check_indices(program, defs, err) -> None:
    """``index u`` lines, and every step read or defined along an index: the index declared,
    a sequence's equation reading steps of its own index only (another index's sequence at a
    fixed step: ``h(end)``), a sum over an index reading steps of it."""
    indices = {"t": None}
    for d in program.indices:
        if d.name in indices:
            raise err(f"'{d.name}' is declared an index twice" if indices[d.name] else
                      f"'{d.name}' is always an index", *d.pos)
        if d.name in defs:
            raise err(f"'{d.name}' is declared an index, but line {defs[d.name].pos[0]} defines it",
                      *d.pos)
        indices[d.name] = d
    for eq in program.equations:
        if eq.kind == "seq" and eq.index not in indices:
            raise err(f"'{eq.index}' is not an index: declare it on a line of its own, "
                      f"index {eq.index}", *eq.pos)
        own = eq.index if eq.kind == "seq" else reduction(eq)
        if eq.inner is not None and (eq.inner not in indices or eq.inner == eq.index):
            raise err(f"'{eq.inner}' is not an index: declare it on a line of its own, index "
                      f"{eq.inner}" if eq.inner not in indices else
                      f"{eq.lhs_text} names {eq.index} twice: a value over two indices has two "
                      "different ones, as e(u, t)", *eq.pos)
        if eq.inner is not None and not _varies(eq.rhs, eq.inner, own):
            raise err(f"{eq.lhs_text} has a value for every step of {eq.inner}, but reads no "
                      f"sequence of {eq.inner}: read one whole, as in {eq.name}({own}, "
                      f"{eq.inner}) = v^T tanh(W s({own}-1) + U h({eq.inner}))", *eq.pos)
        whole: set = set()              # reads of every step of another index at once
        for n, scope in scoped(eq):
            if isinstance(n, ast.Call) and FUNCTIONS[n.func].across:
                i = FUNCTIONS[n.func].across
                if i not in scope:
                    raise err(f"{n.func}(...) normalises across every step of {i}: it is read in "
                              f"a value over two indices, as in a({_other(i)}, {i}) = "
                              f"{n.func}(e({_other(i)}, {i}))",
                              *n.pos)
                if not _varies(n.args[0], i, own):
                    raise err(f"{n.func}(...) normalises across every step of {i}, but "
                              f"{expr_text(n.args[0])} is the same at each: read a value over "
                              f"two indices or a sequence of {i}, as in {n.func}(e({own}, {i}))",
                              *n.pos)
            if isinstance(n, ast.Call) and FUNCTIONS[n.func].over and own \
                    and not (n is eq.rhs and reduction(eq)):
                i = FUNCTIONS[n.func].over
                if i == own:
                    continue            # refused in analyse, with the rule
                if not _varies(n.args[0], i, own):
                    raise err(f"{n.func}(...) sums over every step of {i}, but "
                              f"{expr_text(n.args[0])} reads none: read a sequence of {i}, as "
                              f"in {n.func}(a({own}, {i}) * h({i}))", *n.pos)
            if isinstance(n, ast.Ref) and n.inner is not None:
                if n.index != own or n.offset != 0 or n.inner not in scope:
                    text = f"{n.name}({time_text(n.offset, n.index)}, {n.inner})"
                    where = f"{eq.lhs_text} runs over {own}" if own else \
                        f"{eq.lhs_text} has no time index"
                    if own and n.index == own and n.offset == 0:
                        raise err(f"{where}: {text} has a value for every step of {n.inner}; "
                                  f"read it inside sum_{n.inner}(...) or mean_{n.inner}(...), or "
                                  f"in a value over {own} and {n.inner}", *n.pos)
                    if own and n.index == own:
                        raise err(f"{where}: it reads a value over two indices at the same pair "
                                  f"only, as {n.name}({own}, {n.inner}); not {text}", *n.pos)
                    raise err(f"{where}: it cannot read {text}", *n.pos)
                continue
            if isinstance(n, ast.Ref) and n.offset is not None and n.index != own \
                    and n.index in scope:
                if n.offset != 0:
                    raise err(f"{eq.lhs_text} reads every step of {n.index} at once, as "
                              f"{n.name}({n.index}); not {n.name}({time_text(n.offset, n.index)})",
                              *n.pos)
                whole.add(id(n))
        for n in ast.walk(eq.rhs):
            if isinstance(n, ast.Step):
                what = "the number of steps" if n.name == "end" else "the step number"
                if own is None:
                    lhs = f"{eq.name}(0)" if eq.kind == "init" else f"'{eq.name}'"
                    raise err(f"'{n.name}' is {what}: {lhs} has no time index, so it has none",
                              *n.pos)
                if n.name not in ("end", own):
                    raise err(f"'{n.name}' is the step number of {n.name}; {eq.lhs_text} runs "
                              f"over {own}", *n.pos)
            if isinstance(n, ast.Call) and FUNCTIONS[n.func].over not in (None, *indices):
                over = FUNCTIONS[n.func].over
                raise err(f"{n.func}(...) sums over '{over}', which is not an index: declare it on "
                          f"a line of its own, index {over}", *n.pos)
            if not isinstance(n, ast.Ref):
                continue
            if n.name in indices and n.offset is not None:
                raise err(f"'{n.name}' is declared an index (line {indices[n.name].pos[0]}), not a "
                          f"variable: it cannot be read as {n.name}({time_text(n.offset, n.index)})"
                          if indices[n.name] else "'t' is the time index, not a variable", *n.pos)
            if n.offset is None and n.name in indices and n.name != "t":
                raise err(f"'{n.name}' is an index: it appears only inside name(...), as in "
                          f"s({n.name}-1)", *n.pos)
            if n.offset is None or n.index in indices:
                if n.offset is not None and own is not None and n.index != own \
                        and id(n) not in whole:
                    lhs = eq.lhs_text
                    text = f"{n.name}({time_text(n.offset, n.index)})"
                    if eq.kind == "seq":
                        raise err(f"{lhs} runs over {own}: it cannot read {text}, a step of "
                                  f"{n.index}; read {n.name}(end), the last step, or a value "
                                  "computed from it", *n.pos)
                    raise err(f"{lhs} sums over {own}: it cannot read {text}, a step of "
                              f"{n.index}", *n.pos)
                continue
            raise err(f"{n.name}({time_text(n.offset, n.index)}): '{n.index}' is not an index "
                      f"(declare it on a line of its own: index {n.index}) and '{n.name}' is not "
                      "a function", *n.pos)


def scoped(eq: ast.Equation):
    """Every node of ``eq``'s right side with the indices whose every step it sees at once:
    the second of a value over two (``e(u, t) = ...`` sees every t), and those of an
    enclosing ``sum_t(...)`` or ``mean_t(...)`` in an equation over another index
    (``c(u) = sum_t(a(u, t) * h(t))``)."""
    start = frozenset([eq.inner] if eq.inner else [])
    own = _own(eq)
    stack = [(eq.rhs, start)]
    while stack:
        node, scope = stack.pop()
        yield node, scope
        if isinstance(node, ast.Call) and FUNCTIONS[node.func].over and own \
                and FUNCTIONS[node.func].over != own:
            scope = scope | {FUNCTIONS[node.func].over}
        stack.extend((c, scope) for c in reversed(ast.children(node)))


def _other(i: str) -> str:
    """An index to show beside ``i`` in an example: u beside t, t beside any other."""
    return "u" if i == "t" else "t"


def _own(eq: ast.Equation) -> str | None:
    """The index whose loop computes ``eq``: a sequence's, or the one a total sums over."""
    return eq.index if eq.kind == "seq" else reduction(eq)


def _varies(node, i: str, own: str | None) -> bool:
    """Whether ``node`` reads something that changes along the steps of ``i`` (a sequence of
    i read whole, a value over two indices whose second is i), not counting what a sum or
    mean over i inside it has already summed (sum_t(sum_t(h(t))) is a sum of a number)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Ref) and n.offset is not None and \
                (n.index == i and n.index != own or n.inner == i):
            return True
        if isinstance(n, ast.Call) and FUNCTIONS[n.func].over == i:
            continue
        stack.extend(ast.children(n))
    return False


def _declared_roles(program, defs, read, err) -> dict[str, str]:
    """``input y`` / ``parameter a`` lines: name -> role, each checked."""
    out: dict[str, str] = {}
    for d in program.roles:
        if d.name in defs:
            raise err(f"'{d.name}' is defined (line {defs[d.name].pos[0]}): only a name no "
                      f"equation defines is an input or a parameter", *d.pos)
        if d.name not in read:
            raise err(f"'{d.name}' is declared {'an' if d.role == 'input' else 'a'} {d.role}, "
                      "but no equation reads it", *d.pos)
        if out.get(d.name, d.role) != d.role:
            raise err(f"'{d.name}' is declared both an input and a parameter", *d.pos)
        out[d.name] = d.role
    # a name declared a matrix (P: 8x16) that no equation defines is a parameter: an input is a
    # vector (check/sizes.py says so where one is declared a matrix); P in A P is no input
    for d in program.sizes:
        if isinstance(d.size, tuple) and d.name not in defs and d.name not in out:
            out[d.name] = "parameter"
    return out


def _check_fixed_reads(program, g: nx.MultiDiGraph, defs: dict, err) -> None:
    """``h(end)`` (or ``h(1)``) is known once every step of h has run: nothing h is computed
    from, at any step, may read it (``C = h(end)`` read by h itself is a loop through time
    that never closes).  ``g``: who reads whom, initial values included as their state."""
    whole = nx.DiGraph()
    whole.add_nodes_from(defs)
    whole.add_edges_from((u, v) for u, v in g.edges())
    for eq in program.equations:
        refs = [r.name for r in ast.walk(eq.rhs) if isinstance(r, (ast.Ref, ast.At))]
        whole.add_edges_from((n, eq.name) for n in refs if n in defs)
    for eq in program.equations:
        for r in ast.walk(eq.rhs):          # a sum over the steps, known after the last one
            if isinstance(r, ast.Ref) and r.name in defs and reduction(defs[r.name]) \
                    and nx.has_path(whole, eq.name, r.name):
                lhs = f"{eq.name}(0)" if eq.kind == "init" else eq.lhs_text
                raise err(f"{lhs} reads {r.name}, a {defs[r.name].rhs.func.split('_')[0]} over every "
                          f"step of {reduction(defs[r.name])}, but {r.name} is computed from "
                          f"{'itself' if r.name == eq.name else 'what ' + lhs + ' feeds'}: it is "
                          "known only after the last step", *r.pos)
        for r in fixed_reads(eq.rhs):
            if r.name in defs and nx.has_path(whole, eq.name, r.name):
                lhs = f"{eq.name}(0)" if eq.kind == "init" else eq.lhs_text
                via = "itself" if r.name == eq.name else f"what {lhs} feeds"
                raise err(f"{lhs} reads {r.name}({r.step}), but {r.name} is computed from {via}: "
                          f"{r.name}({r.step}) is known only after every step of {r.name} has run",
                          *r.pos)


def _check_algebraic_loops(g: nx.MultiDiGraph, defs: dict, err) -> None:
    same_step = nx.DiGraph()
    same_step.add_nodes_from(defs)
    same_step.add_edges_from((u, v) for u, v, d in g.edges(data="delay") if d == 0)
    order = {n: i for i, n in enumerate(defs)}
    cyclic = [c for c in nx.strongly_connected_components(same_step)
              if len(c) > 1 or same_step.has_edge(*[next(iter(c))] * 2)]
    if not cyclic:
        return
    # Report the loop through the variable defined first: deterministic, and where a reader looks.
    start = min((n for c in cyclic for n in c), key=order.__getitem__)
    component = same_step.subgraph(next(c for c in cyclic if start in c))
    cycle = _shortest_cycle(component, start)
    timed = defs[start].kind == "seq"
    # each as defined, with its own index: h(t), s(u), e(u, t)
    shown = " -> ".join(defs[n].lhs_text if timed else n for n in cycle)
    i = defs[start].index if timed else "t"
    raise err(f"algebraic loop: {shown} (each needs the other at the same step; "
              f"read one of them at {i}-1)", *defs[start].pos)


def _shortest_cycle(graph: nx.DiGraph, start: str) -> list[str]:
    """The shortest cycle through ``start``, as ``[start, ..., start]``."""
    if graph.has_edge(start, start):
        return [start, start]
    best = None
    for succ in sorted(graph.successors(start)):
        path = nx.shortest_path(graph, succ, start)
        if best is None or len(path) < len(best):
            best = path
    return [start, *best]


def _mark_outputs(program, symbols, defs, reads) -> None:
    for eq in program.equations:
        if eq.kind != "init" and isinstance(eq.rhs, ast.Call) and FUNCTIONS[eq.rhs.func].loss:
            symbols[eq.name].loss = True
    for eq in program.equations:          # the total of losses is a loss (the book's L)
        if reduction(eq) and all(symbols[r.name].loss for r in _refs(eq.rhs) if r.name in symbols):
            symbols[eq.name].loss = True
    same_step_readers: dict[str, set[str]] = {n: set() for n in symbols}
    fixed = [(eq, r) for eq in program.equations for r in fixed_reads(eq.rhs)]
    for eq, r in reads + fixed:
        if not getattr(r, "offset", None) and eq.name != r.name:
            same_step_readers[r.name].add(eq.name)
    for name in defs:
        sym = symbols[name]
        if not sym.loss and all(symbols[n].loss for n in same_step_readers[name] if n in symbols):
            sym.output = True
    uses_of: dict[str, list] = {}
    for eq, r in reads + fixed:
        uses_of.setdefault(r.name, []).append((eq, r))
    for name, sym in symbols.items():
        if sym.role != "input":
            continue
        uses = uses_of.get(name, [])
        sym.target = bool(uses) and all(
            isinstance(eq.rhs, ast.Call) and FUNCTIONS[eq.rhs.func].loss
            and any(n is r for n in ast.walk(eq.rhs.args[-1])) for eq, r in uses)


def step_order(model) -> list[ast.Equation]:
    """The model's equations but initial values, in an order one step can run them in:
    what another reads at the same step first, file order otherwise."""
    eqs = [e for e in model.equations if e.kind != "init"]
    index = {e.name: i for i, e in enumerate(eqs)}
    g = nx.DiGraph()
    g.add_nodes_from(index)
    for e in eqs:
        for n in ast.walk(e.rhs):
            if isinstance(n, ast.Ref) and n.name in index and not n.offset:
                g.add_edge(n.name, e.name)
    order = nx.lexicographical_topological_sort(g, key=index.__getitem__)
    return [eqs[index[n]] for n in order]


def parameter_order(model) -> list[str]:
    """The parameters in the order they are first read: equations in :func:`step_order`,
    then initial values, each left to right.  The order of PARAMETERS in generated code
    and of Compiled.param_shapes (and so of init_params' draws)."""
    order: dict[str, None] = {}
    for eq in step_order(model) + [e for e in model.equations if e.kind == "init"]:
        for ref in _refs(eq.rhs):
            if model.symbols[ref.name].role == "parameter":
                order.setdefault(ref.name)
    return list(order)
