"""Model -> the forward :class:`~rnngraph.compile.program.Program`.

Each equation becomes flat equations over homes and temporaries, its last one
writing the variable's home.  The blocks: the prologue (time-free values, then
defined initial values), then one loop over t per strongly connected component
of the sequences' reads (NetworkX), in topological order (file order among
equals), backward in time for a state that reads ``t+k``.

One rewrite is always made, because it keeps losses finite:
``cross_entropy(softmax(z), k)`` becomes ``softmax_cross_entropy(z, k)``, and
``binary_cross_entropy(sigmoid(z), d)`` ``sigmoid_binary_cross_entropy(z, d)``.
"""
from __future__ import annotations

import networkx as nx

from ..lang import ast
from ..errors import RnnGraphError
from ..check.analysis import reduction, step_order
from ..lang.functions import FUNCTIONS
from ..lang.printing import is_number
from .optable import lookup
from .program import NUMBER, Block, Const, Eqn, Home, Program, Tmp, Type

#: cosine(a, b) = a.b / (|a| |b| + COSINE_EPS): finite where a row of a memory is zero
#: (as at the start), where a.b / (|a| |b|) is 0 / 0; PyTorch's cosine_similarity takes the
#: same 1e-8, as a floor on |a| |b| instead
COSINE_EPS = 1e-8

_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div"}

#: The homes of the step values, by prefix (then the index): ``%step_t`` the number of each
#: step (t), ``%end_t`` the number of steps (end); the generated code fills them, and no
#: gradient flows into them.
STEP_HOMES = ("%step_", "%end_")


class _Lowering:
    def __init__(self, model):
        self.model = model
        self.sym = model.symbols
        self.types: dict = {}
        self.count = 0
        self.stepped: set = set()
        self.trees = frozenset(d.name for d in model.program.indices if d.tree)
        for name, s in self.sym.items():
            if s.role == "parameter":
                self.types[("home", name)] = Type(0, tuple(model.param_shapes[name]))
            elif isinstance(s.index, tuple):        # e(u, t): at one u, every t at once
                self.types[("home", name)] = Type(2, model.shape(name), s.index[1])
            elif s.timed and s.loop in self.trees:   # h(n) over a tree: a level's nodes at once
                self.types[("home", name)] = Type(2, model.shape(name), s.loop)
            elif s.timed or s.role == "input":
                self.types[("home", name)] = Type(1, model.shape(name))

    along = "t"                      # the index of the equation being lowered

    def step(self, name: str, index: str | None = None) -> Home:
        """The home of a step value: ``%step_t`` (each step's number, an array over the steps
        the generated code fills) or ``%end_t`` (the number of steps, of ``index`` if given);
        no gradient."""
        if name == "end":
            home = Home(f"{STEP_HOMES[1]}{index or self.along}")
            self.types[("home", home.name)] = Type(0, (1,))
        else:
            home = Home(f"{STEP_HOMES[0]}{self.along}", 0)
            self.types[("home", home.name)] = Type(1, (1,))
            self.stepped.add(home.name)
        return home

    def type(self, atom) -> Type:
        if isinstance(atom, Const):
            return NUMBER
        t = self.types[("home" if isinstance(atom, Home) else "tmp", atom.name)]
        if isinstance(atom, Home) and atom.step == "all":
            return Type(t.lead + 1, t.shape, self.sym[atom.name].loop)
        if isinstance(atom, Home) and atom.step is not None and t.over in self.trees:
            return Type(t.lead - 1, t.shape)           # h(root), h(0): one node's
        return t

    def leaf(self, node):
        if isinstance(node, ast.Num):
            return Const(node.value)
        if isinstance(node, ast.Step):
            return self.step(node.name)
        if isinstance(node, ast.At):
            return Home(node.name, step=node.step)
        s = self.sym[node.name]
        if s.timed and s.loop != self.along:      # h(t) read inside a loop over u: every t
            return Home(node.name, step="all")
        if s.timed:
            return Home(node.name, node.offset, child=node.child)
        return Home(node.name)

    def expr(self, node, out: list, origin: str):
        """The atom holding ``node``'s value, appending the equations that compute it."""
        if isinstance(node, (ast.Num, ast.Ref, ast.At, ast.Step)):
            return self.leaf(node)
        op, args = self.operation(node, out, origin)
        return self.temporary(out, op, args, origin)

    def temporary(self, out: list, op: str, args, origin: str, attrs: tuple = ()) -> Tmp:
        """A fresh temporary computed by ``op(args)``, its equation appended to ``out``."""
        tmp = Tmp(f"%{self.count + 1}")
        self.count += 1
        self.emit(out, tmp, op, args, origin, attrs)
        return tmp

    def emit(self, out: list, target, op: str, args, origin: str, attrs: tuple = ()) -> None:
        t = lookup(op).type(tuple(self.type(a) for a in args), attrs)
        if isinstance(target, Tmp):
            self.types[("tmp", target.name)] = t
        out.append(Eqn(target, op, tuple(args), attrs, origin=origin))

    def operation(self, node, out, origin):
        if isinstance(node, ast.Binary) and node.op == "@" and ast.diagonal(node.left) is not None:
            # diag(v) x is v * x: one weight per unit, no n x n matrix made (check/sizes.py
            # refuses diag(v) anywhere else)
            v = self.expr(ast.diagonal(node.left), out, origin)
            return "mul", (v, self.expr(node.right, out, origin))
        if isinstance(node, ast.Binary):
            if node.op == "@" and isinstance(node.left, ast.Transpose):
                u = self.expr(node.left.operand, out, origin)
                if len(self.type(u).shape) == 1:          # u^T v: a dot product
                    return "dot", (u, self.expr(node.right, out, origin))
                if self.type(u).lead:                     # M(t-1)^T w(t): a memory's read
                    b = self.expr(node.right, out, origin)
                    if len(self.type(b).shape) == 1:
                        return "bmatTvec", (u, b)
                    a = self.temporary(out, "transpose", (u,), origin)
                else:
                    a = self.temporary(out, "transpose", (u,), origin)
                    b = self.expr(node.right, out, origin)
            elif node.op == "@" and isinstance(node.right, ast.Transpose):
                a = self.expr(node.left, out, origin)
                v = self.expr(node.right.operand, out, origin)
                if len(self.type(v).shape) == 1:
                    return "bouter", (a, v)                # u v^T: an outer product
                b = self.temporary(out, "transpose", (v,), origin)
            else:
                a, b = self.expr(node.left, out, origin), self.expr(node.right, out, origin)
            if node.op != "@":
                ta, tb = self.type(a), self.type(b)
                if len(ta.shape) == 2 and tb.shape == (1,):    # g(t) * M(t-1): a number (per
                    b = self.temporary(out, "unsqueeze", (b,), origin)   # example) scales
                elif len(tb.shape) == 2 and ta.shape == (1,):  # each entry of a matrix
                    a = self.temporary(out, "unsqueeze", (a,), origin)
                return _BINARY[node.op], (a, b)
            ta, tb = self.type(a), self.type(b)
            if ta.shape == () or tb.shape == () or is_number(node.left) or is_number(node.right):
                return "mul", (a, b)     # a number, or of step values: t y(t), (end - t) h(t-1)
            if len(ta.shape) == 2 and len(tb.shape) == 2:
                return "matmat", (a, b)
            if len(ta.shape) == 2 and ta.lead:
                return "bmatvec", (a, b)                   # each example's matrix M(t-1) k(t)
            if len(ta.shape) == 2:
                return "matvec", (a, b)
            raise RnnGraphError(f"cannot multiply a vector by a matrix from the right "
                                f"(in {origin})", self.model.source.location(*node.pos))
        if isinstance(node, ast.Neg):
            return "neg", (self.expr(node.operand, out, origin),)
        if isinstance(node, ast.Transpose):
            return "transpose", (self.expr(node.operand, out, origin),)
        if isinstance(node, ast.Call):
            f = FUNCTIONS[node.func]
            if f.across:                          # softmax_t over every t, at one u
                return "softmax_steps", (self.expr(node.args[0], out, origin),)
            if f.over:                            # sum_t inside a loop over u: the t axis
                x = self.expr(node.args[0], out, origin)
                t = self.type(x)
                total = self.temporary(out, "sum_to", (x,), origin, (t.lead - 1, t.shape))
                if node.func.startswith("mean_"):
                    return "div", (total, self.step("end", f.over))
                return "copy", (total,)
            args = tuple(self.expr(a, out, origin) for a in node.args)
            if node.func == "outer":
                return "bouter", args
            if node.func == "cosine":
                return self.cosine(args, out, origin)
            return node.func, args
        if isinstance(node, ast.Concat):
            return "concat", tuple(self.expr(i, out, origin) for i in node.items)
        return "copy", (self.expr(node, out, origin),)

    def cosine(self, args, out, origin):
        """cosine(M, k), one for each row of M, or cosine(u, v) of two vectors, from products
        and norms (their VJPs are the op table's)."""
        a, b = args
        matrix = len(self.type(a).shape) == 2
        num = self.temporary(out, "bmatvec" if matrix else "dot", (a, b), origin)
        na = self.temporary(out, "norm", (a,), origin)
        nb = self.temporary(out, "norm", (b,), origin)
        den = self.temporary(out, "mul", (na, nb), origin)
        den = self.temporary(out, "add", (den, Const(COSINE_EPS)), origin)
        return "div", (num, den)

    def total(self, eq: ast.Equation, out: list) -> None:
        """``J = sum_t(f)``: f at each step, added into J (a loop of its own, after the others);
        ``mean_t(f)``: f divided by the number of steps, added."""
        origin = eq.lhs_text
        self.along = self.sym[eq.name].over
        self.types[("home", eq.name)] = Type(1, self.model.shape(eq.name))
        atom = self.expr(eq.rhs.args[0], out, origin)
        if eq.rhs.func.startswith("mean_"):
            atom = self.temporary(out, "div", (atom, self.step("end")), origin)
        out.append(Eqn(Home(eq.name), "copy", (atom,), accumulate=True, origin=origin))

    def equation(self, eq: ast.Equation, out: list) -> None:
        origin = eq.lhs_text
        self.along = eq.index
        if eq.kind == "init":
            target = Home(eq.name, step=0)
        elif eq.kind == "seq":
            target = Home(eq.name, 0)
        else:
            target = Home(eq.name)
        op, args = self.operation(eq.rhs, out, origin)
        shape = self.model.shape(eq.name)
        if len(shape) == 2 and lookup(op).type(tuple(self.type(a) for a in args), ()).shape == (1,):
            # M(t) = t, a size-1 value: in every entry of the matrix
            op, args = "unsqueeze", (self.temporary(out, op, args, origin),)
        if eq.kind == "value":
            t = lookup(op).type(tuple(self.type(a) for a in args), ())
            n = self.model.shape(eq.name)
            if t.shape in ((), (1,), (1, 1)) and n != (1,):   # a number, or a size-1 value (a
                t = Type(t.lead, n)        # dot product, S = u^T v), in every lane of its size
            self.types[("home", eq.name)] = t
        self.emit(out, target, op, args, origin)


def loops(model) -> list[tuple[str, ...]]:
    """The sequences' loops: strongly connected components of their reads, in an order
    they can run in (file order among equals)."""
    seqs = [e.name for e in model.equations if e.kind == "seq"]
    order = {n: i for i, n in enumerate(seqs)}
    g = nx.DiGraph()
    g.add_nodes_from(seqs)
    for e in model.equations:
        if e.kind == "seq":
            for n in ast.walk(e.rhs):
                if isinstance(n, ast.Ref) and n.name in order:
                    g.add_edge(n.name, e.name)
    c = nx.condensation(g)
    first = {k: min(order[n] for n in c.nodes[k]["members"]) for k in c}
    return [tuple(sorted(c.nodes[k]["members"], key=order.__getitem__))
            for k in nx.lexicographical_topological_sort(c, key=first.__getitem__)]


def lower(model) -> Program:
    """The forward program of ``model`` (sizes known)."""
    low = _Lowering(model)
    blocks = []
    for kind, eqs, names in schedule(model):
        body: list = []
        if kind == "once":
            for eq in eqs:
                low.equation(eq, body)
            blocks.append(Block("once", body))
        elif kind == "total":
            low.total(eqs[0], body)
            blocks.append(Block("loop", body, names, index=model.symbols[names[0]].over))
        else:
            for eq in eqs:
                low.equation(eq, body)
            backward = any(model.symbols[n].direction == "backward" for n in names)
            blocks.append(Block("loop", body, names, -1 if backward else 1,
                                model.symbols[names[0]].loop))
    if not blocks or blocks[0].kind != "once":
        blocks.insert(0, Block("once", []))
    for k in reversed(range(1, len(blocks))):  # a time-free block before a loop that reads
        if blocks[k - 1].kind != "once" and any(   # a sequence whole or at a fixed step: where
                isinstance(a, Home) and a.step is not None  # the work on it goes, the same at
                for e in blocks[k].eqns for a in e.args):   # every step (hoist_invariants)
            blocks.insert(k, Block("once", []))
    timed = {n for n, s in model.symbols.items() if s.timed} | low.stepped
    indices = {n: s.loop for n, s in model.symbols.items() if s.timed and s.loop != "t"}
    indices.update((n, n[len(STEP_HOMES[0]):]) for n in low.stepped if n != STEP_HOMES[0] + "t")
    prog = Program(blocks, low.types, timed, indices=indices, trees=low.trees)
    fuse_losses(prog)
    prog.check()
    return prog


def schedule(model) -> list[tuple[str, list, tuple]]:
    """The blocks of the forward program in the order they run: ``("once", equations, ())``
    for time-free values and initial values, ``("loop", equations, names)`` for a loop over
    t, ``("total", [equation], (name,))`` for a sum over the steps.

    The units (a time-free value, an initial value, a loop, a total) run in an order that
    their reads allow, the value before what reads it, a sequence's loop before what reads
    its last step (``C = h(end)``), an initial value before its state's loop; among
    units free to run, the time-free values first, then the initial values, the loops and
    the totals, each in file order, so a model that reads no fixed step runs as one prologue
    and then its loops.  Consecutive time-free units make one block."""
    ordered = step_order(model)
    position = {id(e): i for i, e in enumerate(ordered)}
    units: dict = {}                    # unit -> (rank, equations, names)
    owner: dict[str, object] = {}       # a defined name -> the unit that computes it
    for eq in ordered:
        if eq.kind == "value" and not reduction(eq):
            units[("value", eq.name)] = ((0, position[id(eq)]), [eq], ())
            owner[eq.name] = ("value", eq.name)
    for k, eq in enumerate(e for e in model.equations if e.kind == "init"):
        units[("init", eq.name)] = ((1, k), [eq], ())
    for k, names in enumerate(loops(model)):
        eqs = [eq for eq in ordered if eq.kind == "seq" and eq.name in names]
        units[("loop", names)] = ((2, k), eqs, names)
        owner.update((n, ("loop", names)) for n in names)
    for eq in ordered:
        if reduction(eq):
            units[("total", eq.name)] = ((3, position[id(eq)]), [eq], (eq.name,))
            owner[eq.name] = ("total", eq.name)
    g = nx.DiGraph()
    g.add_nodes_from(units)
    for unit, (_, eqs, _) in units.items():
        for eq in eqs:
            for n in ast.walk(eq.rhs):
                if isinstance(n, (ast.Ref, ast.At)) and owner.get(n.name, unit) != unit:
                    g.add_edge(owner[n.name], unit)
            if eq.kind == "init":
                g.add_edge(unit, owner[eq.name])
    out: list = []
    for unit in nx.lexicographical_topological_sort(g, key=lambda u: units[u][0]):
        _, eqs, names = units[unit]
        kind = unit[0]
        if kind in ("value", "init"):
            if out and out[-1][0] == "once":
                out[-1][1].extend(eqs)
            else:
                out.append(("once", list(eqs), ()))
        else:
            out.append((kind, eqs, names))
    return out


#: loss -> (the function of the logits it is fused with, the fused loss).
FUSED_LOSSES = {"cross_entropy": ("softmax", "softmax_cross_entropy"),
                "binary_cross_entropy": ("sigmoid", "sigmoid_binary_cross_entropy")}


def fuse_losses(prog: Program) -> None:
    """``cross_entropy(p, k)`` of a ``p = softmax(z)`` -> ``softmax_cross_entropy(z, k)``,
    and ``binary_cross_entropy(p, d)`` of a ``p = sigmoid(z)`` ->
    ``sigmoid_binary_cross_entropy(z, d)``: finite where p underflows or rounds to 1.
    Where p is a value of its own (an output, read by the loss in another block), z is
    kept in a home of its own for the loss to read."""
    squash = {f for f, _ in FUSED_LOSSES.values()}
    writers = {e.out.name: (b, e) for b in prog.blocks for e in b.eqns
               if isinstance(e.out, Home) and e.op in squash and not e.accumulate}
    for b in prog.blocks:
        made = {e.out: e for e in b.eqns}
        for i, e in enumerate(b.eqns):
            if e.op not in FUSED_LOSSES:
                continue
            of, fused = FUSED_LOSSES[e.op]
            p = e.args[0]
            src = made.get(p)
            if src is not None and src.op == of and not src.accumulate:
                z = src.args[0]
            elif isinstance(p, Home) and p.name in writers and p.step is None \
                    and writers[p.name][1].op == of:
                wb, w = writers[p.name]
                z = w.args[0]
                if isinstance(z, Tmp):        # a temporary of its block: kept in a home
                    home = Home(f"%{p.name}_logits", w.out.offset)
                    prog.types[("home", home.name)] = prog.types[("tmp", z.name)]
                    if w.out.offset is not None:
                        prog.timed.add(home.name)
                    at = wb.eqns.index(w)
                    wb.eqns[at:at + 1] = [Eqn(home, "copy", (z,), origin=w.origin),
                                          Eqn(w.out, of, (home,), origin=w.origin)]
                    writers[p.name] = (wb, wb.eqns[at + 1])
                    z = home
                if isinstance(z, Home) and p.offset is not None and z.offset is not None:
                    z = Home(z.name, p.offset + z.offset, z.step, z.grad)
            else:
                continue
            b.eqns[i] = Eqn(e.out, fused, (z, e.args[1]), origin=e.origin)
