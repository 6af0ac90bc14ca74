"""Memory planning on the backward program: gradients that live in one loop.

The reverse of a loop accumulates the gradient of each value it reads into that
value's gradient home, an array over the steps (``dh(t-1) += ...``).  Most of
these arrays are read only by the same loop, at the step they are complete: the
gradients of an LSTM's gates at step t, of its cell and hidden state at t and
t-1.  Such a gradient needs no array over the steps, only a buffer of one step:

- *carried* (``dh``, ``dc``): written for step t-1 after its last read at step t,
  so one buffer holds dh(t) while step t reads it and dh(t-1) from the first write
  for t-1 on (that write assigns, the later ones add).  After the loop it holds
  dh(0), the gradient of the initial value.
- *of the step* (``di``, ``dg``): written and read at step t only; the first
  write assigns.

The user's cotangent for the value at step t (if given), or what blocks before
the loop added to its array, is added before the step's first read.  ``local_gradients`` finds these homes; the optimized printer
(:mod:`rnngraph.compile.numpy_fast`) gives them their buffers.  A gradient that
any other block reads or writes, or that is read at other offsets, keeps its
array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .program import Block, Home, Program, Tmp, count_uses


@dataclass
class Local:
    """The gradient of ``name`` (a base: its views' lanes are lanes of its buffer), held
    in one step's buffer by the loop ``block``; ``carried``: written for the next step
    too; ``after``: the absolute step whose gradient the buffer holds after the loop
    (read as ``dh(0)`` by the blocks after it), or None; ``seeded``: blocks before the
    loop add to its array over the steps (an output layer's share of dh(t), computed
    for every step at once), which the loop adds at each step as it does a cotangent."""

    name: str
    block: Block
    carried: bool
    after: int | None
    seeded: bool = False


def local_gradients(prog: Program, initial: dict, keep: set) -> dict[str, Local]:
    """{base name: Local} of the backward program ``prog``.  ``initial``: the model's
    initial slots, ``"h(0)": (0, "h")``, whose gradients are handed back; ``keep``: the
    names whose gradients are handed back for every step (the inputs')."""
    access: dict[str, list] = {}              # base -> [(block index, eqn index, home, write)]
    for k, b in enumerate(prog.blocks):
        for i, e in enumerate(b.eqns):
            for a, write in [(e.out, True)] + [(x, False) for x in e.args]:
                if isinstance(a, Home) and a.grad:
                    access.setdefault(prog.base(a.key)[0], []).append((k, i, a, write))
    slots: dict[str, set] = {}
    for step, n in initial.values():
        slots.setdefault(n, set()).add(step)
    bases = {v[0] for v in prog.views.values()}
    found = {}
    for name, uses in access.items():
        if name in keep or any(n in keep for n, v in prog.views.items() if v[0] == name):
            continue
        loops = {k for k, _, _, _ in uses if prog.blocks[k].kind == "loop"}
        if len(loops) != 1:
            continue
        k = loops.pop()
        b = prog.blocks[k]
        if b.index in prog.trees:
            continue               # a tree's nodes: a level's children are not the next step's
        d = b.direction
        inside = [(i, a, w) for kk, i, a, w in uses if kk == k]
        outside = [(kk, a, w) for kk, _, a, w in uses if kk != k]
        seeded = any(kk < k for kk, _, _ in outside)
        if any((kk < k) != (w and a.offset is not None) for kk, a, w in outside):
            continue               # read by an earlier block, or written or read a step later
        offsets = {a.offset for _, a, _ in inside}
        if None in offsets or not offsets <= {0, d} or any(
                a.offset == d and not w for _, a, w in inside):
            continue
        carried = d in offsets
        if carried and name in bases:
            continue                          # lanes carried separately: not planned
        reads = [i for i, a, w in inside if not w]
        writes0 = [i for i, a, w in inside if w and a.offset == 0]
        nexts = [i for i, a, w in inside if w and a.offset == d]
        if reads and (writes0 and max(writes0) > min(reads) or nexts and min(nexts) < max(reads)) \
                or writes0 and nexts and max(writes0) > min(nexts):
            continue
        # after a loop backward in time a carried buffer holds the step before step 1
        after = {0} if carried and d < 0 else set()
        if slots.get(name, set()) - after or {a.step for kk, a, _ in outside if kk > k} - after:
            continue                          # an initial value the buffer does not hold
        found[name] = Local(name, b, carried, 0 if after else None, seeded)
    return found


@dataclass
class StepPlan:
    """How the optimized printer writes one block.

    ``into``: {temporary: where its op writes instead of a buffer of its own}: ``("home",
    Home)`` (a first write of a gradient, made by the op that computes it) or ``("lanes",
    atom, lo, hi)`` (a piece of a concatenation, written into its lanes); ``skip``: the
    equations those make unnecessary; ``assign``: first writes of a step's gradient
    (``=``, not ``+=``); ``settle``: {equation index: [(home name, how)]}, what to add to
    a step's gradient before the equation reads it, ``how`` one of "first" (the buffer
    holds nothing yet: the cotangent or zeros), "add" (add the cotangent) or "zero" (zeros
    in lanes nothing wrote, before a write of the whole); ``minus``: {equation index: y}
    for ``K += -y`` printed ``K -= y``; ``difference``: {equation index: x} of those, for
    ``K = x`` (skipped) then ``K -= y`` printed ``K = x - y`` in one call."""

    into: dict = field(default_factory=dict)
    skip: set = field(default_factory=set)
    assign: set = field(default_factory=set)
    settle: dict = field(default_factory=dict)
    minus: dict = field(default_factory=dict)
    difference: dict = field(default_factory=dict)


def step_plan(prog: Program, block: Block, local: dict, in_place, lanewise,
              first: set = frozenset()) -> StepPlan:
    """The plan of ``block`` (see StepPlan).  ``local``: local_gradients(...); ``first``:
    keys of arrays whose one write (an accumulation) is in this block, which assigns;
    ``in_place(op)``: whether the printer writes ``op`` into a given array, ``lanewise(op)``:
    whether it may write into lanes of one (a strided view) or over its own argument."""
    plan = StepPlan()
    eqns = block.eqns
    made = {e.out.name: i for i, e in enumerate(eqns) if isinstance(e.out, Tmp)}
    uses = count_uses(eqns)
    here = {n: g for n, g in local.items() if g.block is block}

    def base(name):
        return prog.views[name][0] if name in prog.views else name

    units = prog.units                         # lanes of a gradient's buffer that fill separately

    def overlap(a: str, b: str) -> bool:
        """Whether homes ``a`` and ``b`` share lanes (of one array: di and dg of an LSTM's
        difog do not)."""
        (ba, la, ha), (bb, lb, hb) = (prog.views.get(n, (n, 0, math.inf)) for n in (a, b))
        return ba == bb and la < hb and lb < ha

    def touches(h: Home, x) -> bool:
        """Whether the atom ``x`` is ``h``'s kind of home (value or gradient) sharing lanes."""
        return isinstance(x, Home) and x.grad == h.grad and overlap(x.name, h.name)

    def mine(a):
        return isinstance(a, Home) and a.grad and base(a.name) in here

    def producer(a, i, target=None):
        """The index of the equation before ``i`` that makes temporary ``a``, if it may write
        it into ``target`` (a gradient's home; None: lanes of a concatenation) instead."""
        if not isinstance(a, Tmp) or uses.get(a.name) != 1 or a.name in plan.into:
            return None
        j = made.get(a.name)
        if j is None or j > i or not in_place(eqns[j].op):
            return None
        if lanewise(eqns[j].op):
            pass                               # writes lanes, and over its own arguments
        elif target is None or target.name in prog.views or any(
                isinstance(x, Home) and x.grad == target.grad and base(x.name) == base(target.name)
                for x in eqns[j].args):
            return None                        # a product: a whole array, not its argument
        if target is not None and any(touches(target, x)
                                      for e in eqns[j + 1:i] for x in (e.out, *e.args)):
            return None                        # its lanes are read or written in between
        return j

    fresh = {u: not g.carried for g in here.values() for u in units(g.name)}
    settled: set = set()
    ahead: set = set()                         # carried gradients written for the next step
    for i, e in enumerate(eqns):
        todo = []
        for a in e.args:
            if mine(a):
                for u in units(a.name):
                    if u not in settled and u not in [t for t, _ in todo]:
                        todo.append((u, "first" if fresh[u] else "add"))
        for u, _ in todo:
            settled.add(u)
            fresh[u] = False
        if todo:
            plan.settle[i] = todo
        if e.accumulate and mine(e.out):
            g = here[base(e.out.name)]
            if e.out.offset == 0:
                us = units(e.out.name)
                if all(fresh[u] for u in us):
                    plan.assign.add(i)
                elif any(fresh[u] for u in us):
                    plan.settle.setdefault(i, []).extend((u, "zero") for u in us if fresh[u])
                for u in us:
                    fresh[u] = False
            elif g.name not in ahead:
                ahead.add(g.name)
                plan.assign.add(i)
            if i in plan.assign:
                j = producer(e.args[0], i, e.out)
                if j is not None:
                    plan.into[e.args[0].name] = ("home", e.out)
                    plan.skip.add(i)
        elif e.accumulate and isinstance(e.out, Home) and e.out.key in first:
            plan.assign.add(i)                 # the one write of an array: it assigns
            if producer(e.args[0], i, e.out) is not None:
                plan.into[e.args[0].name] = ("home", e.out)
                plan.skip.add(i)
        elif lanewise(e.op) and isinstance(e.out, Home) and not e.accumulate \
                and e.out.offset is not None and not mine(e.out):   # an array: it has storage
            # an operand computed where the result goes, the op then applied there in place
            # (np.dot(x, W.T, out=H); H += b, or h * h then 1 - that, in one array)
            for a in e.args:
                if isinstance(a, Tmp) and prog.type(a, block) == prog.type(e.out, block) \
                        and not any(isinstance(o, Home) and prog.base(o.key) == prog.base(e.out.key)
                                    for o in e.args) \
                        and producer(a, i, e.out) is not None:
                    plan.into[a.name] = ("home", e.out)
                    break
        elif e.op == "concat":
            out_lead = prog.type(e.out, block).lead
            pieces = [producer(a, i) for a in e.args]
            if all(j is not None for j in pieces) and all(
                    prog.type(a, block).lead == out_lead for a in e.args) and not mine(e.out) \
                    and (isinstance(e.out, Tmp) or e.out.offset is not None):
                lo = 0
                for a in e.args:
                    n = prog.type(a, block).shape[-1]
                    plan.into[a.name] = ("lanes", e.out, lo, lo + n)
                    lo += n
                plan.skip.add(i)
    for i, e in enumerate(eqns):              # K += -a as K -= a
        a = e.args[0] if e.args else None
        if e.accumulate and i not in plan.assign and i not in plan.skip and isinstance(a, Tmp) \
                and uses.get(a.name) == 1 and a.name in made and eqns[made[a.name]].op == "neg" \
                and made[a.name] not in plan.skip and a.name not in plan.into \
                and isinstance(eqns[made[a.name]].args[0], Tmp):     # unchanged till here
            plan.minus[i] = eqns[made[a.name]].args[0]
            plan.skip.add(made[a.name])
    # K = x (a first write, a copy) then K -= y as K = x - y, one call, where nothing
    # between reads or writes K's lanes or writes x's
    for k in plan.minus:
        target = eqns[k].out
        for i in range(k - 1, -1, -1):
            e = eqns[i]
            if not (isinstance(e.out, Home) and e.out.key == target.key):
                if any(touches(target, x) for x in (e.out, *e.args)):
                    break
                continue
            x = e.args[0] if e.accumulate and len(e.args) == 1 else None
            mine_settled = {u for u, _ in plan.settle.get(i, ())} & set(units(target.name))
            if i in plan.assign and i not in plan.skip and not mine_settled and (
                    isinstance(x, Home) and not any(touches(x, w.out) for w in eqns[i + 1:k])
                    or isinstance(x, Tmp) and x.name not in plan.into):
                plan.difference[k] = x
                plan.skip.add(i)
            break
    return plan


def written_once(back, gviews: dict, local: dict, values, seqs) -> tuple[set, set]:
    """Gradients of the backward program ``back`` written by one equation: (those bound
    to what that equation writes, time-free: a weight's, a bias's; those over the steps
    written for every step at once, an input's, made empty and assigned).  Not a view
    (``gviews``), a base of views, a step's buffer (``local``), a time-free value's, nor,
    for the second, a sequence's (``seqs``)."""
    writes: dict = {}
    for b in back.blocks:
        for e in b.eqns:
            if isinstance(e.out, Home) and e.out.grad:
                writes.setdefault(e.out.name, []).append((b.kind, e))
    bases = {v[0] for v in gviews.values()}
    single = {n: w[0] for n, w in writes.items() if len(w) == 1 and n not in gviews
              and n not in bases and n not in local and n not in values}
    # (one write in a loop runs at every step: it adds, as a loop that stays whole, over
    # attention's values, writes a weight's gradient)
    bound = {n for n, (kind, e) in single.items() if e.out.offset is None and e.out.step is None
             and kind != "loop"}
    first = {n for n, (kind, e) in single.items() if kind == "all"
             and e.accumulate and e.out.offset == 0 and n not in seqs}
    return bound, first
