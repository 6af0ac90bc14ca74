"""Sums reordered so that what does not depend on a loop comes first.

``W x(t) + b + U h(t-1) + c`` as ``(W x(t) + b + c) + U h(t-1)``: split_loops
(passes.py) then moves the first part out of the loop, one product over every step.
"""
from __future__ import annotations

from dataclasses import replace

from .optable import lookup
from .passes import copy_program
from .program import Const, Eqn, Home, Program, Tmp, count_uses


_SUM = ("add", "sub", "neg")


def reassociate(prog: Program) -> Program:
    """In a loop, each sum ordered so that its terms that do not depend on the loop's own
    values come first, added together: ``W x(t) + b + U h(t-1) + c`` as
    ``(W x(t) + b + c) + U h(t-1)``, whose first part ``split_loops`` moves out of the loop.
    (It changes the order of the additions, hence the rounding: the optimized path agrees
    with the plain one to rounding.)"""
    out = copy_program(prog)
    for block in out.blocks:
        if block.kind != "loop":
            continue
        written = {e.out.key for e in block.eqns if isinstance(e.out, Home)}
        made = {e.out.name: e for e in block.eqns if isinstance(e.out, Tmp)}
        uses = count_uses(block.eqns)
        moving: dict[str, bool] = {}          # temporary -> whether it depends on the loop
        for e in block.eqns:
            if isinstance(e.out, Tmp):
                moving[e.out.name] = any(_moves(a, written, moving) for a in e.args)

        def inner(a) -> bool:
            return isinstance(a, Tmp) and uses.get(a.name) == 1 and made[a.name].op in _SUM

        def terms(a, sign, tree):
            if not inner(a):
                return [(sign, a)]
            e = made[a.name]
            tree.add(a.name)
            if e.op == "neg":
                return terms(e.args[0], -sign, tree)
            return terms(e.args[0], sign, tree) + terms(e.args[1], sign if e.op == "add" else -sign,
                                                        tree)
        eqns = block.eqns
        for root in [e for e in eqns if e.op in ("add", "sub") and not (
                isinstance(e.out, Tmp) and uses.get(e.out.name) == 1 and any(
                    u.op in _SUM and e.out in u.args for u in eqns))]:
            tree: set[str] = set()
            parts = terms(root.args[0], 1, tree) + \
                terms(root.args[1], 1 if root.op == "add" else -1, tree)
            # the terms of the parameters alone first (the prologue adds them once), then
            # those of every step, then the loop's own
            still = sorted((t for t in parts if not _moves(t[1], written, moving)),
                           key=lambda t: not _fixed(t[1], made))
            loop = [t for t in parts if _moves(t[1], written, moving)]
            if not still or not loop or parts == still + loop and len(still) == 1:
                continue
            new = []
            first = _chain(out, still, new, root.origin)
            last = _chain(out, loop, new, root.origin, start=first)
            at = eqns.index(root)
            new[-1] = replace(new[-1], out=root.out)
            if last is not new[-1].out and isinstance(last, Tmp):
                out.types.pop(("tmp", last.name), None)
            eqns[at:at + 1] = new
            eqns[:] = [e for e in eqns if not (isinstance(e.out, Tmp) and e.out.name in tree)]
    out.check()
    return out


def _fixed(a, made) -> bool:
    """Whether ``a`` is the same at every step: a number, a parameter, a time-free value."""
    if isinstance(a, Tmp):
        return all(_fixed(x, made) for x in made[a.name].args)
    return isinstance(a, Const) or a.offset is None and a.step is None and not a.grad


def _moves(a, written, moving) -> bool:
    if isinstance(a, Home):
        return a.key in written
    return isinstance(a, Tmp) and moving.get(a.name, False)


def _chain(prog: Program, terms, new: list, origin, start=None):
    """``start`` plus the signed ``terms``, as equations appended to ``new``; the atom."""
    acc = start
    for sign, a in terms:
        if acc is None:
            if sign > 0:
                acc = a
                continue
            op, args = "neg", (a,)
        else:
            op, args = ("add" if sign > 0 else "sub"), (acc, a)
        tmp = _tmp(prog, op, args, "%r")
        new.append(Eqn(tmp, op, args, origin=origin))
        acc = tmp
    return acc


def interpolations(prog: Program) -> Program:
    """``(1 - z) * a + z * b`` as ``a + z * (b - a)`` (either product's operands in either
    order, the sum's in either order): a GRU's ``h(t) = (1 - z(t)) n(t) + z(t) h(t-1)``.
    Three ops where there were four, and a backward pass that keeps ``b - a`` instead of
    ``1 - z``: the earlier generator made this rewrite, and without it the GRU at batch 1
    (where a step costs its calls) took 1.07-1.11x the time.  Rounding changes, as any
    rewrite of the optimized path."""
    out = copy_program(prog)
    for block in out.blocks:
        made = {e.out.name: e for e in block.eqns if isinstance(e.out, Tmp)}
        uses = count_uses(block.eqns)

        def once(a, op):
            """The equation making ``a``, if ``a`` is a temporary used once made by ``op``."""
            e = made.get(a.name) if isinstance(a, Tmp) and uses.get(a.name) == 1 else None
            return e if e is not None and e.op == op else None

        def one_minus(a):
            """z, if ``a`` is ``1 - z`` used once."""
            e = once(a, "sub")
            return e.args[1] if e is not None and e.args[0] == Const(1.0) else None

        for at, e in enumerate(list(block.eqns)):
            if e.op != "add" or e.accumulate:
                continue
            found = None
            for p, q in ((e.args[0], e.args[1]), (e.args[1], e.args[0])):
                mp, mq = once(p, "mul"), once(q, "mul")
                if mp is None or mq is None:
                    continue
                for i in (0, 1):
                    z = one_minus(mp.args[i])
                    if z is not None and z in mq.args and mp.args[1 - i] != z:
                        a, b = mp.args[1 - i], mq.args[1 - mq.args.index(z)]
                        found = (mp, mq, made[mp.args[i].name], z, a, b)
                        break
                if found:
                    break
            if not found:
                continue
            mp, mq, minus, z, a, b = found
            d = _tmp(out, "sub", (b, a))
            m = _tmp(out, "mul", (z, d))
            new = [Eqn(d, "sub", (b, a), origin=e.origin), Eqn(m, "mul", (z, d), origin=e.origin),
                   replace(e, args=(a, m))]
            gone = {mp.out.name, mq.out.name, minus.out.name}
            i = block.eqns.index(e)
            block.eqns[i:i + 1] = new
            block.eqns[:] = [x for x in block.eqns if not (isinstance(x.out, Tmp)
                                                           and x.out.name in gone)]
            for name in gone:
                out.types.pop(("tmp", name), None)
    out.check()
    return out


def _tmp(prog: Program, op: str, args, prefix: str = "%i") -> Tmp:
    """A new temporary for ``op`` of ``args``, typed, named ``<prefix><n>`` (reassociate's
    %r, interpolations' %i)."""
    n = len(prog.types)
    while ("tmp", f"{prefix}{n}") in prog.types:
        n += 1
    tmp = Tmp(f"{prefix}{n}")
    prog.types[("tmp", tmp.name)] = lookup(op).type(tuple(prog.type(x) for x in args), ())
    return tmp
