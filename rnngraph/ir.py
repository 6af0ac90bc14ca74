"""Model -> op-level IR: flat lists of primitive equations.

A program has two blocks: ``once`` (time-free values and initial values,
computed before the first step) and ``step`` (the body of one time step).
Each equation is ``out = op(args)``: one primitive (matmul, add, mul, tanh,
...) applied to atoms, which are

``Var(name)``          a value bound earlier in the program: a temporary ``%3``,
                       or a variable the model defines (``h1``); a temporary's name
                       starts with ``%``, which no model name can, so the two never meet
``Read(name, offset)`` a value from outside the step: an input at ``t+offset``
                       (offset None: a time-free input), or a state at another step
``Param(name)``        a parameter
``Const(value)``       a number

Equations are in an order the step can run in (same-step dependencies first,
file order otherwise).  ``repr(program)`` pretty-prints it; ``program.check()``
asserts bound-before-use and single assignment.

Examples
--------
>>> from rnngraph import parse
>>> print(parse("h(t) = tanh(W h(t-1) + U x(t) + b)").ir())
{ params W U b ; reads h(t-1) x(t)
  step:
    %1 = matmul W h(t-1)
    %2 = matmul U x(t)
    %3 = add %1 %2
    %4 = add %3 b
    h = tanh %4
}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import ast
from .printing import number_text, time_text

BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}


@dataclass(frozen=True)
class Var:
    name: str

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Read:
    name: str
    offset: int | None

    def __str__(self):
        return self.name if self.offset is None else f"{self.name}({time_text(self.offset)})"


@dataclass(frozen=True)
class Param:
    name: str

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Const:
    value: float

    def __str__(self):
        return number_text(self.value)


Atom = Var | Read | Param | Const


@dataclass(frozen=True)
class Eqn:
    """``out = op(*args)``; ``defines`` is the model variable ``out`` is, if any;
    ``origin`` the left side of the model equation it was lowered from (``h1``, ``h(0)``)."""

    out: str
    op: str
    args: tuple[Atom, ...]
    defines: str | None = None
    pos: ast.Pos = field(default=ast.NOPOS, compare=False)
    origin: str | None = field(default=None, compare=False)

    def __str__(self):
        return f"{self.out} = {self.op} {' '.join(map(str, self.args))}"


@dataclass
class Program:
    once: list[Eqn]
    step: list[Eqn]
    params: list[str]
    reads: list[Read]

    def __repr__(self) -> str:
        head = "{ params " + " ".join(self.params) + " ; reads " + " ".join(map(str, self.reads))
        lines = [head]
        for label, block in (("once", self.once), ("step", self.step)):
            if block:
                lines.append(f"  {label}:")
                lines += [f"    {e}" for e in block]
        return "\n".join(lines + ["}"])

    __str__ = __repr__

    @property
    def eqns(self) -> list[Eqn]:
        return self.once + self.step

    def check(self) -> None:
        """Assert that every Var is bound before use and bound once."""
        bound: set[str] = set()
        eqns = self.eqns
        for i, e in enumerate(eqns):
            for a in e.args:
                if isinstance(a, Var) and a.name not in bound:
                    raise AssertionError(f"{a.name} used before it is bound{_context(eqns, i)}")
            if e.out in bound:
                raise AssertionError(f"{e.out} bound twice{_context(eqns, i)}")
            bound.add(e.out)


def _context(eqns, i) -> str:
    rows = [f"{'>' if j == i else ' '} {eqns[j]}" for j in range(max(i - 2, 0), min(i + 3, len(eqns)))]
    return ":\n" + "\n".join(rows)


class _Lowering:
    def __init__(self, model):
        self.model = model
        self.count = 0
        self.origin: str | None = None        # the equation being lowered
        self.params: dict[str, None] = {}     # ordered sets
        self.reads: dict[Read, None] = {}

    def fresh(self) -> str:
        self.count += 1
        return f"%{self.count}"

    def atom(self, node, out: list[Eqn]):
        if isinstance(node, ast.Num):
            return Const(node.value)
        if isinstance(node, ast.Ref):
            sym = self.model.symbols[node.name]
            if sym.role == "parameter":
                self.params.setdefault(node.name)
                return Param(node.name)
            if sym.role == "input" or node.offset:
                read = Read(node.name, node.offset)
                self.reads.setdefault(read)
                return read
            return Var(node.name)
        op, args = self.operation(node, out)
        name = self.fresh()
        out.append(Eqn(name, op, args, None, node.pos, self.origin))
        return Var(name)

    def operation(self, node, out):
        """The op and argument atoms of ``node``'s outermost operation."""
        if isinstance(node, ast.Binary):
            return BINARY_OPS[node.op], (self.atom(node.left, out), self.atom(node.right, out))
        if isinstance(node, ast.Neg):
            return "neg", (self.atom(node.operand, out),)
        if isinstance(node, ast.Transpose):
            return "transpose", (self.atom(node.operand, out),)
        if isinstance(node, ast.Call):
            return node.func, tuple(self.atom(a, out) for a in node.args)
        if isinstance(node, ast.Concat):
            return "concat", tuple(self.atom(i, out) for i in node.items)
        return "copy", (self.atom(node, out),)

    def equation(self, eq: ast.Equation, out: list[Eqn]) -> None:
        target = f"{eq.name}(0)" if eq.kind == "init" else eq.name
        self.origin = target
        op, args = self.operation(eq.rhs, out)
        out.append(Eqn(target, op, args, eq.name, eq.pos, target))


def schedule(model) -> list[ast.Equation]:
    """The model's equations in an order one step can run in: same-step dependencies first."""
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


def lower(model) -> Program:
    """The op-level program of ``model``."""
    low = _Lowering(model)
    once: list[Eqn] = []
    step: list[Eqn] = []
    for eq in schedule(model):
        low.equation(eq, step if eq.kind == "seq" else once)
    for eq in model.equations:
        if eq.kind == "init":
            low.equation(eq, once)
    prog = Program(once, step, list(low.params), list(low.reads))
    prog.check()
    return prog


def op_graph(program: Program) -> nx.DiGraph:
    """One node per primitive operation, plus a node per value that enters or leaves.

    Node ids are sequential and derived from the program: ``op1``, ``op2``, ...
    for operations (attributes ``kind="op"``, ``op``, ``defines``, ``block``);
    ``h1(t)`` / ``h1`` for the variables the model defines (``kind="var"``),
    ``x(t)``, ``h1(t-1)`` for reads (``kind="read"``), ``U`` for parameters
    (``kind="param"``) and ``const1``, ... for numbers (``kind="const"``).
    Edges carry ``arg``, the argument position they feed.

    Examples
    --------
    >>> from rnngraph import parse
    >>> g = parse("h(t) = tanh(W h(t-1) + U x(t))").op_graph()
    >>> [g.nodes[n]["op"] for n in g if g.nodes[n]["kind"] == "op"]
    ['matmul', 'matmul', 'add', 'tanh']
    """
    g = nx.DiGraph()
    producer: dict[str, str] = {}
    consts = 0
    for block, eqns in (("once", program.once), ("step", program.step)):
        for i, e in enumerate(eqns):
            op_id = f"op{len(producer) + 1}"
            g.add_node(op_id, kind="op", op=e.op, defines=e.defines, block=block, label=e.op)
            for k, a in enumerate(e.args):
                if isinstance(a, Var):
                    src = producer[a.name]
                elif isinstance(a, Const):
                    consts += 1
                    src = f"const{consts}"
                    g.add_node(src, kind="const", value=a.value, label=str(a))
                else:
                    src = str(a)
                    g.add_node(src, kind="param" if isinstance(a, Param) else "read",
                               name=a.name, label=src)
                g.add_edge(src, op_id, arg=k)
            producer[e.out] = op_id
            if e.defines is not None:
                var = e.out if block == "once" else f"{e.out}(t)"
                g.add_node(var, kind="var", name=e.defines, label=var)
                g.add_edge(op_id, var, arg=0)
                producer[e.out] = var
    return g
