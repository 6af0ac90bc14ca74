"""Packing: equations of the same form, with different parameters, computed as one.

An LSTM's gates i, f, o are each ``sigmoid(W_a x(t) + b_a + W_b h(t-1) + b_b)`` with
weights of their own, and g is the same under tanh.  ``pack`` computes them together:
the matrices stacked by rows, the bias vectors concatenated (in the prologue, once),
one product per vector over all the gates' rows, one sum, and one call of each
activation over the lanes that share it.  The members become *views*: lanes of one
array over the steps (``Program.views``), so i(t), f(t), o(t) are read and returned as
before, and their gradients are lanes of one gradient array, which the reverse of the
packed activation reads whole.  The members are ordered by activation (sigmoid lanes
together, then tanh), so that each activation is one call over contiguous lanes.

Two equations pack when their expression trees (through temporaries used once) are
the same but for parameters in the same places: a matrix multiplying the same vector,
a vector (of the member's size) in a lanewise op.  Anything else they read must be the
same atom, and a vector so read must stand where it multiplies a matrix (a lanewise op
on a shared vector would need it repeated across the members' lanes): numbers may
stand anywhere.  The root may differ in its activation (a unary lanewise op).

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile.lower import lower
>>> m = parse("h: 2\\n"
...           "i(t) = sigmoid(A h(t-1) + a)\\n"
...           "g(t) = tanh(C h(t-1) + c)\\n"
...           "f(t) = sigmoid(B h(t-1) + b)\\n"
...           "h(t) = i(t) * g(t) + f(t) * h(t-1)")
>>> print(pack(lower(m)))
once:
loop forward i g f h:
  %p1 = stack A B C
  %p2 = concat a b c
  %p3 = matvec %p1 h(t-1)
  %p4 = add %p3 %p2
  %p5 = slice %p4 [0] [4]
  %if(t) = sigmoid %p5
  %p6 = slice %p4 [4] [6]
  g(t) = tanh %p6
  %7 = mul i(t) g(t)
  %8 = mul f(t) h(t-1)
  h(t) = add %7 %8
"""
from __future__ import annotations

from .optable import lookup
from .passes import copy_program
from .program import Block, Const, Eqn, Home, Program, Tmp, Type, count_uses


def _lanewise(op: str) -> bool:
    """Whether a packed tree may hold ``op``: each lane of its result from the same lane
    of each argument (the op table's fact), so that the members' lanes side by side
    compute each member; and differentiable (not a gradient's own op)."""
    row = lookup(op)
    return row.lanewise and row.vjp is not None


def pack(prog: Program) -> Program:
    """Each loop's groups of same-form equations packed (see above)."""
    out = copy_program(prog)
    for block in out.blocks:
        if block.kind != "once":
            while _pack_one(out, block):
                pass
    out.check()
    return out


class _Shape:
    """The trees of one block's equations, with parameters left out."""

    def __init__(self, prog: Program, block: Block):
        self.prog, self.eqns = prog, block.eqns
        self.made = {e.out.name: i for i, e in enumerate(block.eqns) if isinstance(e.out, Tmp)}
        self.uses = count_uses(block.eqns)
        self.written: dict = {}
        for i, e in enumerate(block.eqns):
            if isinstance(e.out, Home):
                self.written.setdefault(prog.base(e.out.key), i)

    def inner(self, a) -> bool:
        return isinstance(a, Tmp) and self.uses.get(a.name) == 1

    def param(self, a) -> bool:
        """A value the same at every step, not written here: a parameter, a time-free value."""
        return isinstance(a, Home) and a.offset is None and a.step is None and not a.grad \
            and a.name not in self.prog.views and self.prog.base(a.key) not in self.written

    def tree(self, a, n: int):
        """(signature, parameters, their places (eqn index, arg position), equation indices,
        shared atoms) of ``a``, the value of a member of size ``n``; None if it cannot pack."""
        if not self.inner(a):
            return None
        i = self.made[a.name]
        e = self.eqns[i]
        if e.op == "matvec":
            A, v = e.args
            if not self.param(A) or self.inner(v) or isinstance(v, Const):
                return None
            return ("matvec", "rows", v), [A], [(i, 0)], [i], [v]
        if not _lanewise(e.op) or e.accumulate or e.attrs:
            return None
        sig, params, places, at, shared = [e.op], [], [], [i], []
        for k, x in enumerate(e.args):
            t = self.prog.type(x)
            if isinstance(x, Const):
                sig.append(x)
            elif self.param(x) and t == Type(0, (n,)):
                sig.append("lanes")
                params.append(x)
                places.append((i, k))
            elif self.inner(x):
                sub = self.tree(x, n)
                if sub is None:
                    return None
                sig.append(sub[0])
                for mine, theirs in zip((params, places, at, shared), sub[1:]):
                    mine += theirs
            elif t.shape == ():
                sig.append(x)
                shared.append(x)
            else:
                return None
        return tuple(sig), params, places, at, shared


def _groups(prog: Program, block: Block, shape: _Shape) -> dict:
    """{signature: [(eqn index, activation, tree)]}: the block's equations that could pack,
    each an activation of a tree with parameters, writing a sequence value at step t."""
    groups: dict = {}
    for i, e in enumerate(block.eqns):
        h = e.out
        if not isinstance(h, Home) or h.offset != 0 or h.grad or e.accumulate \
                or h.name.startswith("%") or h.name in prog.views \
                or not _lanewise(e.op) or len(e.args) != 1:
            continue
        t = prog.type(h)
        if t.lead != 1 or len(t.shape) != 1:
            continue
        tree = shape.tree(e.args[0], t.shape[0])
        if tree is not None and tree[1]:
            groups.setdefault(tree[0], []).append((i, e.op, tree))
    return groups


def _pack_one(prog: Program, block: Block) -> bool:
    """Pack the block's first group that can be; whether one was."""
    shape = _Shape(prog, block)
    for members in _groups(prog, block, shape).values():
        if len(members) < 2:
            continue
        first = min(i for i, _, _ in members)
        if any(_defined(shape, a) >= first for _, _, tree in members for a in tree[4]):
            continue
        _rewrite(prog, block, shape, members, first)
        return True
    return False


def _defined(shape: _Shape, a) -> int:
    """The index of the equation in the block that makes ``a`` at step t (-1: none)."""
    if isinstance(a, Tmp):
        return shape.made.get(a.name, -1)
    if isinstance(a, Home) and a.offset == 0:
        return shape.written.get(shape.prog.base(a.key), -1)
    return -1


def _rewrite(prog: Program, block: Block, shape: _Shape, members, first: int) -> None:
    eqns = block.eqns
    order = list(dict.fromkeys(act for _, act, _ in members))   # activations, first use first
    members = sorted(members, key=lambda m: (order.index(m[1]), m[0]))
    origin = tuple(eqns[i].origin for i, _, _ in sorted(members))     # each in the comment
    new: list[Eqn] = []

    def op(name, args, attrs=()):
        prog.made += 1
        tmp = Tmp(f"%p{prog.made}")
        prog.types[("tmp", tmp.name)] = lookup(name).type(tuple(prog.type(a) for a in args), attrs)
        new.append(Eqn(tmp, name, tuple(args), attrs, origin=origin))
        return tmp

    # the tree of the first member again, each parameter the members' side by side
    _, _, places, inside, _ = members[0][2]
    wide = {}
    for k, place in enumerate(places):
        ps = tuple(tree[1][k] for _, _, tree in members)
        wide[place] = op("stack" if len(prog.type(ps[0]).shape) == 2 else "concat", ps)
    z = _build(eqns, shape.made, set(inside), eqns[members[0][0]].args[0], wide, op)

    # the members are lanes of one array, in that order; one activation over each run of
    # lanes that shares it, written to the run's lanes
    def label(names):
        return "%" + ("".join(names) if all(len(n) == 1 for n in names) else "_".join(names))
    names = [eqns[i].out.name for i, _, _ in members]
    base = Home(label(names), 0)
    sizes = [prog.type(Home(n)).shape[0] for n in names]
    prog.types[("home", base.name)] = Type(1, (sum(sizes),))
    prog.timed.add(base.name)
    lo = 0
    for name, n in zip(names, sizes):
        prog.views[name] = (base.name, lo, lo + n)
        lo += n
    lo = 0
    for act in order:
        run = [(name, n) for name, n, (_, a, _) in zip(names, sizes, members) if a == act]
        width = sum(n for _, n in run)
        if len(run) == len(members):
            arg, out = z, base
        else:
            arg = op("slice", (z,), (lo, lo + width))
            out = Home(run[0][0] if len(run) == 1 else label([n for n, _ in run]), 0)
            if len(run) > 1:
                prog.types[("home", out.name)] = Type(1, (width,))
                prog.timed.add(out.name)
                prog.views[out.name] = (base.name, lo, lo + width)
        new.append(Eqn(out, act, (arg,), origin=origin))
        lo += width
    gone = {j for _, _, tree in members for j in tree[3]} | {i for i, _, _ in members}
    block.eqns = [e for j, e in enumerate(eqns[:first]) if j not in gone] + new + \
        [e for j, e in enumerate(eqns[first:], first) if j not in gone]


def _build(eqns, made, inside, a, wide, op):
    """The tree of ``a`` (the equations ``inside``) again, the argument at each place in
    ``wide`` replaced by it."""
    if not (isinstance(a, Tmp) and made[a.name] in inside):
        return a
    i = made[a.name]
    e = eqns[i]
    args = [wide[(i, k)] if (i, k) in wide else _build(eqns, made, inside, x, wide, op)
            for k, x in enumerate(e.args)]
    return op(e.op, args, e.attrs)
