"""Reverse mode as a transformation of the IR: forward program -> backward program.

Each block of the forward program gets a block that runs after it in reverse: the
forward loops last to first, each backward in time, then the prologue.  Inside a
block the equations are taken last to first, and each op's VJP rule from the op
table (:mod:`rnngraph.compile.optable`) builds, as IR, the cotangent of each of
its arguments from the cotangent ``g`` of its result:

- the cotangent of a result written to a home is that home's gradient (``dh(t)``),
  complete by then: everything that reads h(t) ran after it, so its reverse ran
  before;
- each argument's cotangent is first summed down to the argument's type (a bias
  added to a batch gets ``g.sum(0)``; a size-1 value that scaled a vector, the sum
  over its lanes);
- a temporary's cotangents are added up in a temporary; a home's are added to
  its gradient's home (``dh(t-1) += ...``, ``dW += ...``).

The VJP rules read forward values: homes are kept by the forward pass, and the
forward equations that compute the temporaries they read are computed again at
the head of the backward block (:func:`rematerialize`); a later pass may keep them
instead.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile.lower import lower
>>> print(backward(lower(parse("h(t) = tanh(W h(t-1) + b)\\nh: 2"))))
loop backward h:
  %g1 = mul h(t) h(t)
  %g2 = sub 1 %g1
  %g3 = mul dh(t) %g2
  %g4 = sum_to %g3 [0] [(2,)]
  db += %g4
  %g5 = outer %g3 h(t-1)
  %g6 = vecmat %g3 W
  dW += %g5
  dh(t-1) += %g6
once:
"""
from __future__ import annotations

from ..errors import RnnGraphError
from .optable import lookup
from .passes import to_homes
from .lower import STEP_HOMES
from .program import NUMBER, Block, Const, Eqn, Home, Program, Tmp, Type


class Builder:
    """Appends equations to ``eqns``, each a fresh temporary, its type recorded in
    the program's table; numbers become constants."""

    def __init__(self, prog: Program, eqns: list, origin: str | None = None, block=None):
        self.prog, self.eqns, self.origin, self.block = prog, eqns, origin, block

    def type(self, atom) -> Type:
        return self.prog.type(atom, self.block)

    def op(self, name: str, *args, attrs: tuple = ()) -> Tmp:
        args = tuple(Const(float(a)) if isinstance(a, (int, float)) else a for a in args)
        self.prog.made += 1
        out = Tmp(f"%g{self.prog.made}")
        self.prog.types[("tmp", out.name)] = lookup(name).type(tuple(map(self.type, args)), attrs)
        self.eqns.append(Eqn(out, name, args, attrs, origin=self.origin))
        return out

    def add(self, a, b):
        return self.op("add", a, b)

    def sub(self, a, b):
        return self.op("sub", a, b)

    def mul(self, a, b):
        return self.op("mul", a, b)

    def div(self, a, b):
        return self.op("div", a, b)

    def neg(self, a):
        return self.op("neg", a)

    def sum_to(self, x, target: Type):
        """``x`` summed over the leading axes and lanes ``target`` lacks (broadcast's
        adjoint); ``x`` itself if nothing was broadcast."""
        have = self.type(x)
        lead = min(have.lead, target.lead)
        shape = target.shape if target.shape == (1,) and have.shape not in ((1,), ()) \
            or target.shape == (1, 1) and len(have.shape) == 2 else have.shape
        if (lead, shape) == (have.lead, have.shape):
            return x
        return self.op("sum_to", x, attrs=(lead, shape))

    def outer(self, g, v):
        """The sum over rows of ``g_row^T v_row``, both first summed to the same leading axes."""
        tg, tv = self.type(g), self.type(v)
        if tg.lead > tv.lead:
            g = self.sum_to(g, Type(tv.lead, tg.shape))
        elif tv.lead > tg.lead:
            v = self.sum_to(v, Type(tg.lead, tv.shape))
        return self.op("outer", g, v)


def _sliced(block: Block) -> set[str]:
    """Temporaries every use of which is a slice of lanes: their cotangent is gathered."""
    uses: dict[str, list] = {}
    for e in block.eqns:
        for a in e.args:
            if isinstance(a, Tmp):
                uses.setdefault(a.name, []).append(e)
    return {n for n, es in uses.items() if all(e.op == "slice" for e in es)}


def _gathered(prog: Program, b: "Builder", wide, pieces: list):
    """The cotangent of ``wide`` from those of its slices: one concatenation, zeros in
    lanes nothing flowed back to."""
    n = prog.type(wide, b.block).shape[-1]
    parts, at = [], 0
    for lo, hi, g in sorted(pieces, key=lambda p: p[0]):
        if lo > at:
            parts.append(b.op("zeros", g, attrs=(lo - at,)))
        parts.append(g)
        at = hi
    if at < n:
        parts.append(b.op("zeros", parts[0], attrs=(n - at,)))
    return parts[0] if len(parts) == 1 else b.op("concat", *parts)


def reverse_block(prog: Program, block: Block) -> Block:
    """The reverse of one forward block (before rematerialization)."""
    out: list = []
    adjoint: dict[str, object] = {}
    sliced = _sliced(block)
    pieces: dict[str, list] = {}
    for e in reversed(block.eqns):
        if isinstance(e.out, Home):
            g = e.out.gradient()
        elif e.out.name in pieces:            # itself sliced (a slice of a slice)
            g = _gathered(prog, Builder(prog, out, e.origin, block), e.out, pieces.pop(e.out.name))
        else:
            g = adjoint.pop(e.out.name, None)
        if e.op == "slice" and isinstance(e.args[0], Tmp) and e.args[0].name in sliced:
            if g is not None:
                pieces.setdefault(e.args[0].name, []).append((*e.attrs, g))
            continue
        if g is None:
            continue                          # nothing flows back through this value
        row = lookup(e.op)
        if row.vjp is None:
            raise RnnGraphError(f"the compiler has no vector-Jacobian product for '{e.op}': "
                                "add one to its row in rnngraph/compile/optable.py")
        b = Builder(prog, out, e.origin, block)
        for arg, c in zip(e.args, row.vjp(b, e, g)):
            if c is None or isinstance(arg, Const) or prog.type(arg) == NUMBER or \
                    isinstance(arg, Home) and arg.name.startswith(STEP_HOMES):
                continue                      # a number (of numbers alone, or t) has no gradient
            c = b.sum_to(c, prog.type(arg, block))
            if isinstance(arg, Tmp):
                adjoint[arg.name] = b.add(adjoint[arg.name], c) if arg.name in adjoint else c
            else:
                out.append(Eqn(arg.gradient(), "copy", (c,), accumulate=True, origin=e.origin))
    return Block(block.kind, out, block.names, -block.direction, block.index)


def rematerialize(forward: Block, back: Block) -> Block:
    """``back`` headed by the forward equations that compute the temporaries it reads."""
    made = {e.out.name: e for e in forward.eqns if isinstance(e.out, Tmp)}
    need: set[str] = set()
    stack = [a.name for e in back.eqns for a in e.args if isinstance(a, Tmp) and a.name in made]
    while stack:
        n = stack.pop()
        if n not in need:
            need.add(n)
            stack.extend(a.name for a in made[n].args if isinstance(a, Tmp))
    head = [e for e in forward.eqns if isinstance(e.out, Tmp) and e.out.name in need]
    return Block(back.kind, head + back.eqns, back.names, back.direction, back.index)


def backward(prog: Program) -> Program:
    """The backward program of the forward program ``prog`` (types shared with it); the
    temporaries its VJPs read are computed again (:func:`rematerialize`)."""
    blocks = [rematerialize(b, reverse_block(prog, b)) for b in reversed(prog.blocks)]
    back = Program(blocks, prog.types, prog.timed, prog.made, prog.views, prog.indices, prog.trees)
    back.check()
    return back


def taped(prog: Program) -> tuple[Program, Program]:
    """The forward program with the temporaries the backward pass reads kept in homes
    (written where they are computed, an array over the steps in a loop), and the
    backward program that reads them there: memory for time, as a tape does."""
    forward = Program([Block(b.kind, list(b.eqns), b.names, b.direction, b.index) for b in prog.blocks],
                      prog.types, set(prog.timed), prog.made, prog.views, prog.indices, prog.trees)
    backs = [reverse_block(forward, b) for b in reversed(forward.blocks)]
    for fb, bb in zip(reversed(forward.blocks), backs):
        to_homes(forward, [fb, bb], timed=fb.kind != "once", time_axis=fb.kind == "all")
    back = Program(backs, forward.types, forward.timed, forward.made, forward.views,
                   forward.indices, forward.trees)
    forward.check()
    back.check()
    return forward, back
