"""Layout passes of backend="numba": work moved into the loops Numba compiles.

In a loop Numba compiles whole (compile/numba_loops.py) a run of elementwise ops costs no
call a step, and a step's rows are in cache while the loop makes them; a pass over every
step's values (T, B, n) before or after the loop reads them back from further out.  So:

- ``biases_in_loops``: a bias added to a product of every step (U x(t) + b, to which the
  loop adds W h(t-1)) added in the loop instead, at each step.
- ``bias_sums_in_loops``: a bias's gradient summed over the steps in the backward loop that
  makes them, a step's rows as they are made.

Both are layout only: the same values in the same homes after the loop.  The NumPy
backend keeps both outside its loops, where each op in a loop is a call a step.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile import Numba
>>> numba = Numba(parse("h(t) = tanh(W h(t-1) + U x(t) + b)\\nx: 3, h: 4"), "float64")
>>> print(numba.forward)
once:
every step:
  h(t) = matvec U x(t)
loop forward h:
  %1 = matvec W h(t-1)
  h(t) += b
  h(t) += %1
  h(t) = tanh h(t)
>>> print(numba.printers[0].back)
once:
every step:
  %g1 = mul h(t) h(t)
  %g2'(t) = sub 1 %g1
loop backward h:
  %g3'(t) = mul dh(t) %g2'(t)
  %g5 = vecmat %g3'(t) W
  dh(t-1) += %g5
  %g6 = sum_to %g3'(t) [0] [(4,)]
  db += %g6
every step:
  %g4 = outer %g3'(t) h(t-1)
  dW += %g4
every step:
  %g7 = outer %g3'(t) x(t)
  %g8 = vecmat %g3'(t) U
  dU += %g7
  dx(t) += %g8
once:
"""
from __future__ import annotations

from .passes import copy_program, matrices_per_example, whole_sequences
from .program import Block, Eqn, Home, Program, Tmp


def _aliases(prog: Program, name: str) -> set:
    """The homes whose lanes overlap ``name``'s: its base, the base's views."""
    base = prog.views.get(name, (name,))[0]
    return {base, *prog.within(base)}


def _compiled(prog: Program, b: Block) -> bool:
    """Whether ``b`` is a loop that the numba backend prints as a function Numba compiles
    (numba_loops.NumbaPrinter.loop_block): not one NumPy runs alone (whole sequences, a
    matrix per example), where each op moved into it would cost a call a step.  A loop
    with an op Numba lacks also runs in NumPy: known only when it is printed."""
    return b.kind == "loop" and not whole_sequences(prog, b) and \
        not matrices_per_example(prog, b)


def _touches(e: Eqn, names: set) -> list:
    """The homes of ``names`` that ``e`` reads or writes."""
    return [a for a in (e.out, *e.args) if isinstance(a, Home) and a.name in names]


def biases_in_loops(fwd: Program) -> Program:
    """A bias added to a product of every step just before the loop that reads it (an
    input projection U x(t) + b, to which the loop adds W h(t-1)) added in that loop
    instead, at each step, just before the loop's first equation on that step's sum (in
    the examples, the run of elementwise ops that adds W h(t-1)), where the step's row
    is in cache: NumPy's pass over every step's values (T, B, n) cost 51 of Cho's GRU's
    2100 us at batch 1, hidden 128, just after the product; in the loop 10-30 us.  Above
    the batches a loop runs compiled whole, its fused kernels add it (the LSTM at batch
    32, hidden 256: 0.997-1.000x the time with both passes)."""
    out = copy_program(fwd)
    for k, b in enumerate(out.blocks[:-1]):
        loop = out.blocks[k + 1]
        if b.kind != "all" or not _compiled(out, loop) or loop.index != b.index:
            continue
        for i in reversed(range(len(b.eqns))):
            plan = _bias_to_move(out, b, i, loop)
            if plan is None:
                continue
            j, bias, first = plan
            e, src = b.eqns[i], b.eqns[j]
            b.eqns[j] = Eqn(e.out, src.op, src.args, src.attrs, origin=src.origin)
            del b.eqns[i]
            loop.eqns.insert(first, Eqn(e.out, "copy", (bias,), accumulate=True, origin=e.origin))
    out.check()
    return out


def _bias_to_move(prog: Program, b: Block, i: int, loop: Block):
    """(index of the product, the bias, index of the loop's first equation on H(t)) if
    ``b``'s equation ``i`` is ``H(t) = add bias %p``: %p a product of ``b`` read only there,
    the bias time-free and of H's shape, H not touched after ``i`` in ``b``, and in ``loop``
    written only at step t and read only at t or at a step the loop has made."""
    e = b.eqns[i]
    H = e.out
    if e.op != "add" or e.accumulate or not isinstance(H, Home) or H.offset != 0 \
            or H.step is not None or H.grad or H.name in prog.views:
        return None
    homes = [a for a in e.args if isinstance(a, Home)]
    tmps = [a for a in e.args if isinstance(a, Tmp)]
    if len(homes) != 1 or len(tmps) != 1:
        return None
    bias, p = homes[0], tmps[0]
    if bias.offset is not None or bias.step is not None or bias.grad or bias.name in prog.timed \
            or prog.type(bias).shape != prog.type(H).shape:
        return None                         # (a bias of size 1 added to every lane: not a row)
    maker = [j for j, x in enumerate(b.eqns[:i]) if x.out == p]
    if len(maker) != 1 or b.eqns[maker[0]].op not in ("matvec", "vecmat") or any(
            p in x.args for x in b.eqns if x is not e):
        return None
    names = _aliases(prog, H.name)
    if any(_touches(x, names) for x in b.eqns[i + 1:]):
        return None
    first = None
    for r, x in enumerate(loop.eqns):
        seen = _touches(x, names)
        # H(t) itself, or a step the loop has made (H(t-1) going forward): its bias added
        if any(a.step is not None or a.grad or a.offset is None or a.offset * loop.direction > 0
               or (a.offset != 0 and a is x.out) for a in seen):
            return None
        now = [a for a in seen if a.offset == 0]
        if now and first is None:
            if x.out in now and not x.accumulate and not any(a in x.args for a in now):
                return None                 # overwritten before any read: nothing to add to
            first = r
    return None if first is None else (maker[0], bias, first)


def bias_sums_in_loops(back: Program) -> Program:
    """A gradient summed over every step after the loop that computed its steps (a bias's:
    ``%g = sum_to X(t); db += %g``, X written by the loop at step t) summed in that loop,
    a step's rows as they are made: after it, NumPy's sum over (T, B, n) read those rows
    back out of the cache, 43-48 us each of Cho's GRU's 2100 at batch 1, hidden 128; in
    the loop both took 25 us.  For the loops Numba compiles, like biases_in_loops.  The
    sum adds one step after another (one rounding a step, as np.sum over the steps; the
    gemv it replaces kept partial sums): float32 sums of random rows, median relative
    error 2.0e-7 against 9.5e-8 over 200 steps, 1.5e-6 against 5.9e-7 over 10^4."""
    out = copy_program(back)
    for k, b in enumerate(out.blocks):
        if b.kind != "all":
            continue
        before = [m for m in range(k) if out.blocks[m].kind == "loop"]
        if not before or any(x.kind != "all" for x in out.blocks[before[-1] + 1:k]):
            continue
        m = before[-1]
        loop = out.blocks[m]
        if loop.index != b.index or not _compiled(out, loop):
            continue
        moved = [i for i in range(len(b.eqns) - 1) if _sum_to_move(out, k, m, i)]
        loop.eqns += [x for i in moved for x in b.eqns[i:i + 2]]
        b.eqns = [x for j, x in enumerate(b.eqns) if not any(i <= j <= i + 1 for i in moved)]
    out.blocks = [b for b in out.blocks if b.eqns or b.kind == "once"]
    out.check()
    return out


def _sum_to_move(prog: Program, k: int, m: int, i: int) -> bool:
    """Whether equations ``i``, ``i + 1`` of block ``k`` are ``%g = sum_to X(t); G += %g``, X a
    home the loop ``m`` writes at step t alone and nothing between writes, G time-free,
    and none of those blocks reads G or writes it but by +=."""
    b = prog.blocks[k]
    s, a = b.eqns[i], b.eqns[i + 1]
    X = s.args[0] if s.args else None
    if s.op != "sum_to" or not isinstance(s.out, Tmp) or not isinstance(X, Home) \
            or X.offset != 0 or X.step is not None or s.attrs[0] != 0 \
            or tuple(s.attrs[1]) != prog.types[("home", X.name)].shape:
        return False
    G = a.out
    if a.op != "copy" or not a.accumulate or a.args != (s.out,) or not isinstance(G, Home) \
            or G.offset is not None or G.step is not None \
            or any(s.out in x.args for x in b.eqns[i + 2:]):
        return False
    names = _aliases(prog, X.name)
    loop = prog.blocks[m]
    writes = [x.out for x in loop.eqns if isinstance(x.out, Home) and x.out.name in names]
    if not writes or any(w.offset != 0 or w.step is not None for w in writes):
        return False
    between = [x for blk in prog.blocks[m + 1:k] for x in blk.eqns] + b.eqns[:i]
    if any(isinstance(x.out, Home) and x.out.name in names for x in between):
        return False
    gs = _aliases(prog, G.name)             # G's lanes: none read, none written but by +=
    for x in loop.eqns + between:
        if any(isinstance(a, Home) and a.name in gs and a.grad == G.grad for a in x.args):
            return False
        if isinstance(x.out, Home) and x.out.name in gs and x.out.grad == G.grad \
                and not x.accumulate:
            return False
    return True
