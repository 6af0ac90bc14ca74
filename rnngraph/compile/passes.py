"""Rewrites of the IR: each pass takes a Program and returns a Program.

``split_loops``: a loop over t runs only its recurrence.  In each loop block the
equations fall in three parts, found from the block's dependences (a temporary
flows to its readers; a home written at step t+j flows to a later reader of the
same step, and, across iterations, to a reader of t+k with (j - k) in the loop's
direction):

- *before*: what does not depend on a value carried from another step (the input
  projections of the forward pass; in the backward pass, the derivatives of the
  activations and what flows back from layers above).  It runs for every step at
  once, before the loop: one matrix product over T·B rows instead of T over B.
- *core*: what depends on a carried value and feeds one: the recurrence.
- *after*: what depends on the recurrence but does not feed it (an output layer;
  in the backward pass, the gradients of the weights and the inputs).  Every step
  at once, after the loop.

What is computed from parameters and time-free values alone moves to the
prologue (``hoist_invariants``).  A temporary that crosses from one part to
another becomes a home of its own, an array over the steps.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile.lower import lower
>>> print(split_loops(lower(parse("h(t) = tanh(W h(t-1) + U x(t) + b)\\nx: 3, h: 4"))))
once:
every step:
  %2'(t) = matvec U x(t)
loop forward h:
  %1 = matvec W h(t-1)
  %3 = add %1 %2'(t)
  %4 = add %3 b
  h(t) = tanh %4
"""
from __future__ import annotations

import math
from dataclasses import replace

import networkx as nx

from .optable import lookup
from .program import Block, Const, Eqn, Home, Program, Tmp, Type


def copy_program(prog: Program) -> Program:
    """A program a pass may change without changing ``prog``: its own lists of blocks,
    equations, types, timed homes and views."""
    return Program([replace(b, eqns=list(b.eqns)) for b in prog.blocks], dict(prog.types),
                   set(prog.timed), prog.made, dict(prog.views), dict(prog.indices), prog.trees)


def _reads(e: Eqn):
    return [a for a in e.args if not isinstance(a, Const)]


def dependences(block: Block, base=lambda key: key) -> tuple[nx.DiGraph, set[int], set[int]]:
    """The block's dependence graph over equation indices, the equations that read a value
    carried from another iteration (seeds), and those that write one (carried writes).
    ``base`` maps a home's key to its array's (Program.base: lanes of one array alias it)."""
    eqns, d = block.eqns, block.direction
    g = nx.DiGraph()
    g.add_nodes_from(range(len(eqns)))
    made: dict[str, int] = {}
    writes: dict[tuple, list[tuple[int, int]]] = {}      # key -> [(offset, eqn)]
    for i, e in enumerate(eqns):
        if isinstance(e.out, Home) and e.out.offset is not None:
            writes.setdefault(base(e.out.key), []).append((e.out.offset, i))
    seeds, carried = set(), set()
    for i, e in enumerate(eqns):
        for a in _reads(e):
            if isinstance(a, Tmp):
                g.add_edge(made[a.name], i)
            elif a.offset is not None:
                for j, w in writes.get(base(a.key), ()):
                    if j == a.offset and w < i:
                        g.add_edge(w, i)
                    elif block.kind == "loop" and (j - a.offset) * d > 0:
                        seeds.add(i)
                        carried.add(w)
        if isinstance(e.out, Tmp):
            made[e.out.name] = i
    return g, seeds, carried


def propagate_copies(prog: Program) -> Program:
    """A gradient home whose only write adds a whole other home to its zeros (``dz(t) +=
    g(t)`` for every step) is that other home: its reads read the other, and neither the
    zeros nor the copy are made.  (The cotangent of an input projection, for one, is the
    cotangent its loop computed.)"""
    eqns = [(k, i, e) for k, b in enumerate(prog.blocks) for i, e in enumerate(b.eqns)]
    writes: dict = {}
    for k, i, e in eqns:
        if isinstance(e.out, Home):
            writes.setdefault(e.out.key, []).append((k, i, e))
    named = _named(prog)
    bases = {v[0] for v in prog.views.values()}       # lanes of one array stay its lanes
    alias: dict = {}
    for key, ws in writes.items():
        if len(ws) != 1:
            continue
        k, i, e = ws[0]
        src = e.args[0] if e.args else None
        if not (e.accumulate and e.op == "copy" and key[1] and key[0] not in named
                and prog.base(key) == key and key[0] not in bases
                and isinstance(src, Home) and src.offset == e.out.offset and src.step is None
                and prog.blocks[k].kind == "all" and prog.type(src) == prog.type(e.out)):
            continue
        if not [w for w in writes.get(src.key, ()) if (w[0], w[1]) > (k, i)]:
            alias[key] = (src, (k, i))
    if not alias:
        return prog
    out = copy_program(prog)

    def read(a):
        if isinstance(a, Home) and a.key in alias:
            src = alias[a.key][0]
            return Home(src.name, a.offset, a.step, src.grad)
        return a
    for k, b in enumerate(out.blocks):
        b.eqns = [replace(e, args=tuple(read(a) for a in e.args)) for i, e in enumerate(b.eqns)
                  if not (isinstance(e.out, Home) and e.out.key in alias
                          and alias[e.out.key][1] == (k, i))]
    return out


def _named(prog: Program) -> set:
    """The homes the model names (the gradients of the others, homes the passes made,
    whose names start with %, are not handed back)."""
    return {n for (kind, n) in prog.types if kind == "home" and not n.startswith("%")}


def drop_dead(prog: Program) -> Program:
    """Without the temporaries nothing reads (a VJP's cotangent for a number, say)."""
    out = copy_program(prog)
    for block in out.blocks:
        live: set[str] = set()
        kept = []
        for e in reversed(block.eqns):
            if isinstance(e.out, Tmp) and e.out.name not in live:
                continue
            live.update(a.name for a in e.args if isinstance(a, Tmp))
            kept.append(e)
        block.eqns = kept[::-1]
    out.blocks = [b for b in out.blocks if b.eqns or b.kind == "once"]
    return out


_FOLD = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
         "div": lambda a, b: a / b, "neg": lambda a: -a, "copy": lambda a: a,
         "tanh": math.tanh, "exp": math.exp, "log": math.log, "sqrt": math.sqrt,
         "relu": lambda a: max(a, 0.0), "sigmoid": lambda a: 1 / (1 + math.exp(-a)),
         "softplus": lambda a: max(a, 0.0) + math.log1p(math.exp(-abs(a)))}


def fold_constants(prog: Program) -> Program:
    """An op of numbers alone (``sqrt(1 + 0.25 * 0.25)``) replaced by the number it makes,
    where that number is finite (else left for NumPy to compute, as written)."""
    out = copy_program(prog)
    for block in out.blocks:
        value: dict[str, Const] = {}
        kept = []
        for e in block.eqns:
            args = tuple(value.get(a.name, a) if isinstance(a, Tmp) else a for a in e.args)
            if isinstance(e.out, Tmp) and e.op in _FOLD and all(isinstance(a, Const) for a in args):
                try:
                    v = float(_FOLD[e.op](*(a.value for a in args)))
                except (ArithmeticError, ValueError):
                    v = math.nan
                if math.isfinite(v):
                    value[e.out.name] = Const(v)
                    continue
            kept.append(replace(e, args=args))
        block.eqns = kept
    out.check()
    return out


def hoist_invariants(prog: Program) -> Program:
    """Temporaries computed from parameters, numbers and time-free values alone, moved
    out of loops and every-step blocks into a time-free block before them: the prologue
    (the first block), or, for what reads a time-free value computed after a loop
    (``C = h(end)``), the block that computes that value."""
    out = copy_program(prog)
    if out.blocks[0].kind != "once":           # a backward program: a prologue of its own
        out.blocks.insert(0, Block("once", []))
    level: dict[str, int] = {}                 # a time-free home -> the block that writes it
    pending: set = set()                       # written by a loop (a sum over the steps): not yet
    written: dict[str, int] = {}               # a timed home -> the last block that writes it
    once = 0                                   # the last time-free block so far
    for k, block in enumerate(out.blocks):     # in a time-free block, so nowhere to hoist to
        if block.kind == "once":
            once = k
            level.update((n, k) for n in pending)
            pending.clear()
            for e in block.eqns:
                if isinstance(e.out, Home) and e.out.offset is None and e.out.step is None \
                        and not e.out.grad:
                    level.setdefault(e.out.name, k)
            continue
        at: dict[str, int] = {}                # a hoisted temporary -> the block it goes to
        kept = []
        # every step of another index's sequence (attention's keys U_a h(t), read at each
        # step of u) is the same at every step of this loop: it goes to the time-free block
        # after the loop that computes the sequence (lower puts one before such a loop)
        # (so is a fixed step, h(end) or x(1): the same for every step; left in an every-step
        # block, its product was typed as one step's and written over the steps' array)
        whole = {a.name for e in block.eqns for a in e.args if isinstance(a, Home)
                 and a.step is not None and not a.grad and written.get(a.name, -1) < once}
        for e in block.eqns:
            if isinstance(e.out, Tmp) and all(
                    isinstance(a, Const) or isinstance(a, Tmp) and a.name in at
                    or isinstance(a, Home) and a.offset is None and a.step is None and not a.grad
                    and a.name not in pending
                    or isinstance(a, Home) and a.step is not None and a.name in whole
                    and not a.grad
                    for a in e.args):
                to = max([0] + [at[a.name] if isinstance(a, Tmp) else once if a.step is not None
                                else level.get(a.name, 0)
                                for a in e.args if not isinstance(a, Const)])
                at[e.out.name] = to
                out.blocks[to].eqns.append(e)
            else:
                kept.append(e)
        block.eqns = kept
        written.update((e.out.name, k) for e in kept if isinstance(e.out, Home)
                       and e.out.offset is not None)
        pending.update(e.out.name for e in kept if isinstance(e.out, Home) and e.out.offset is None
                       and e.out.step is None and not e.out.grad and e.accumulate)
        targets = sorted(set(at.values()))
        to_homes(out, [out.blocks[t] for t in targets] + [block], timed=False)
        for t in targets:                      # what a later block's invariants may read
            for e in out.blocks[t].eqns:
                if isinstance(e.out, Home) and e.out.offset is None and e.out.step is None:
                    level.setdefault(e.out.name, t)
    out.check()
    return out


def to_homes(prog: Program, parts: list, timed: bool, time_axis: bool = False) -> None:
    """Each temporary written in one of ``parts`` and read in another becomes a home:
    the equation that computes it writes the home, every reader reads it.  ``timed``: a
    home of every step (written at t); ``time_axis``: the temporaries' types have the
    time axis of an every-step block, which a home's type (of one step) has not."""
    where = {e.out.name: k for k, b in enumerate(parts) for e in b.eqns if isinstance(e.out, Tmp)}
    crossing = {a.name for k, b in enumerate(parts) for e in b.eqns for a in e.args
                if isinstance(a, Tmp) and where.get(a.name, k) != k}
    if not crossing:
        return
    homes = {n: Home(n + "'", 0 if timed else None) for n in crossing}
    for n, h in homes.items():
        t = prog.types[("tmp", n)]
        prog.types[("home", h.name)] = Type(t.lead - 1, t.shape) if time_axis else t
        if timed:
            prog.timed.add(h.name)
    for b in parts:
        b.eqns = [replace(e, out=homes.get(e.out.name, e.out) if isinstance(e.out, Tmp) else e.out,
                          args=tuple(homes[a.name] if isinstance(a, Tmp) and a.name in homes else a
                                     for a in e.args))
                  for e in b.eqns]


def stack_products(prog: Program) -> Program:
    """Products of fixed matrices with the same vector, in one block, made one product with
    the matrices stacked by rows (an LSTM's four gates read h(t-1) through one matrix of
    4n rows); each member's result is a slice of it.  The stacking itself is invariant,
    so hoist_invariants moves it to the prologue."""
    out = copy_program(prog)
    for block in out.blocks:
        if block.kind == "once":
            continue
        groups: dict = {}
        for e in block.eqns:
            if e.op == "matvec" and isinstance(e.out, Tmp) and isinstance(e.args[0], Home) \
                    and e.args[0].offset is None and not e.args[0].grad:
                groups.setdefault(e.args[1], []).append(e)
        for v, members in groups.items():
            if len(members) < 2:
                continue
            first = block.eqns.index(members[0])
            out.made += 1
            S, wide = Tmp(f"%s{out.made}"), Tmp(f"%w{out.made}")
            mats = tuple(e.args[0] for e in members)
            out.types[("tmp", S.name)] = lookup("stack").type(tuple(out.type(m) for m in mats), ())
            out.types[("tmp", wide.name)] = lookup("matvec").type(
                (out.type(S), out.type(v, block)), ())
            new = [Eqn(S, "stack", mats, origin=members[0].origin),
                   Eqn(wide, "matvec", (S, v), origin=members[0].origin)]
            lo = 0
            for e in members:
                rows = out.type(e.args[0]).shape[0]
                new.append(Eqn(e.out, "slice", (wide,), (lo, lo + rows), origin=e.origin))
                lo += rows
            gone = {id(e) for e in members}
            block.eqns = block.eqns[:first] + new + [e for e in block.eqns[first:]
                                                     if id(e) not in gone]
    out.check()
    return out


def split_loops(prog: Program, lanewise_in_loop: bool = False) -> Program:
    """Every loop block split into every-step blocks around its recurrence (see above).
    ``lanewise_in_loop``: lanewise work before the loop that only the loop reads (the
    derivatives of the activations, in the backward pass) stays in the loop, on a step's
    values while they are in cache: for large steps, where a pass over every step's
    values costs more than a few more calls a step."""
    out = Program([], dict(prog.types), set(prog.timed), prog.made, dict(prog.views),
                  dict(prog.indices), prog.trees)
    for block in prog.blocks:
        if block.kind != "loop" or whole_sequences(prog, block):
            out.blocks.append(block)
            continue
        g, seeds, carried = dependences(block, out.base)
        after_seed = set(seeds).union(*(nx.descendants(g, s) for s in seeds))
        to_carried = set(carried).union(*(nx.ancestors(g, c) for c in carried))
        part = [("core" if i in to_carried else "after") if i in after_seed else "before"
                for i in range(len(block.eqns))]
        if lanewise_in_loop and "core" in part:
            for i in reversed(range(len(block.eqns))):
                e = block.eqns[i]
                readers = [j for j in g.successors(i)]
                if part[i] == "before" and isinstance(e.out, Tmp) and lookup(e.op).lanewise \
                        and readers and all(part[j] == "core" for j in readers):
                    part[i] = "core"
        if "core" not in part:                  # nothing carried: every step at once
            b = Block("all", list(block.eqns), block.names, index=block.index)
            _retype(out, b)
            out.blocks.append(b)
            continue
        parts = {k: Block("all", [e for e, p in zip(block.eqns, part) if p == k], index=block.index) for k in
                 ("before", "after")}
        parts["core"] = Block("loop", [e for e, p in zip(block.eqns, part) if p == "core"],
                              block.names, block.direction, block.index)
        to_homes(out, [parts["before"], parts["core"], parts["after"]], timed=True)
        for k in ("before", "core", "after"):
            b = parts[k]
            if b.eqns:
                if k != "core":
                    b.names = tuple(n for n in block.names if any(
                        isinstance(e.out, Home) and e.out.name == n for e in b.eqns))
                    _retype(out, b)
                out.blocks.append(b)
    out.check()
    return out


def whole_sequences(prog: Program, block: Block) -> bool:
    """Whether ``block`` reads or computes a value over every step of another index at once
    (attention's e(u, t) inside a loop over u): such a loop stays whole, since its every-step
    blocks would put the steps of u and those of t on one leading axis (an every-step block
    over (T_u, T, B, n) is not made yet)."""
    return any(prog.type(a, block).over is not None for e in block.eqns
               for a in (e.out, *e.args) if not isinstance(a, Const))


def matrices_per_example(prog: Program, block: Block) -> bool:
    """Whether ``block`` computes with a matrix for each example (a memory M(t), (B, N, W)),
    which the Numba kernels of rnngraph/runtime/jitops.py (rows x lanes) do not take."""
    return any(prog.type(a, block).lead and len(prog.type(a, block).shape) == 2
               for e in block.eqns for a in (e.out, *e.args) if not isinstance(a, Const))


def _retype(prog: Program, block: Block) -> None:
    """The types of the temporaries of an every-step block, with the time axis; a value
    added to a time-free home (a gradient) summed over the steps first."""
    eqns = []
    old = {e.out.name: prog.types[("tmp", e.out.name)] for e in block.eqns
           if isinstance(e.out, Tmp) and ("tmp", e.out.name) in prog.types}
    for e in block.eqns:
        if isinstance(e.out, Tmp):
            before = [old.get(a.name) or prog.type(a) if isinstance(a, Tmp) else prog.type(a)
                      for a in e.args]                  # in the loop the block was
            args = tuple(prog.type(a, block) for a in e.args)
            if e.op == "sum_to" and args[0].lead == before[0].lead + 1 \
                    and e.attrs[0] == before[0].lead:
                # a size-1 value's cotangent summed over its lanes (a step value t, a size-1
                # sequence added to a vector): over the batch in the loop, so now over the
                # batch of every step, not over the steps (the time axis came first)
                e = replace(e, attrs=(e.attrs[0] + 1, *e.attrs[1:]))
            prog.types[("tmp", e.out.name)] = lookup(e.op).type(args, e.attrs)
        elif e.out.offset is None:         # time-free, or one fixed step (dh(end) += ...)
            have, want = prog.type(e.args[0], block), prog.type(e.out, block)
            if e.op == "copy" and have.lead > want.lead:
                tmp = Tmp(e.args[0].name + "+" if isinstance(e.args[0], Tmp) else
                          f"%sum{len(prog.types)}")
                prog.types[("tmp", tmp.name)] = Type(want.lead, have.shape)
                eqns.append(Eqn(tmp, "sum_to", (e.args[0],), (want.lead, have.shape),
                                origin=e.origin))
                e = replace(e, args=(tmp,))
        eqns.append(e)
    block.eqns = eqns


def parameters_alone(once: Block, params, made) -> dict[int, bool]:
    """{index: whether it computes from the parameters alone} for the equations of the
    prologue ``once``: what ``prepare`` makes once for many calls (stacked matrices, summed
    biases).  ``made``: the homes the passes made, which such an equation may write; a
    temporary another equation reads stays with that equation."""
    names = set(params)
    fixed: dict[int, bool] = {}
    maker: dict[str, int] = {}
    for i, e in enumerate(once.eqns):
        fixed[i] = (isinstance(e.out, Tmp) or e.out.name in made) and all(
            isinstance(a, Const) or isinstance(a, Home) and a.name in names
            and a.offset is None and a.step is None
            or isinstance(a, Tmp) and fixed.get(maker.get(a.name, -1), False)
            for a in e.args)
        if isinstance(e.out, Tmp):
            maker[e.out.name] = i
        elif fixed[i]:
            names.add(e.out.name)
    changed = True
    while changed:
        changed = False
        for i, e in enumerate(once.eqns):
            if not fixed[i]:
                for a in e.args:
                    if isinstance(a, Tmp) and fixed.get(maker[a.name]):
                        fixed[maker[a.name]] = False
                        changed = True
    return fixed


def flatten_stacks(prog: Program) -> Program:
    """``stack(stack(a, b), c)`` in the prologue as ``stack(a, b, c)`` when nothing else
    reads the inner one: a GRU's r and z matrices are stacked by pack.py, then with n's
    by stack_products, and the inner (2n, m) matrix was kept on the tape for nothing
    (0.79 MB of the GRU's peak at batch 32, hidden 256)."""
    out = copy_program(prog)
    once = out.blocks[0] if out.blocks and out.blocks[0].kind == "once" else None
    if once is None:
        return out
    reads: dict = {}
    for b in out.blocks:
        for e in b.eqns:
            for a in e.args:
                if isinstance(a, (Home, Tmp)):
                    reads[a.key if isinstance(a, Home) else a.name] = \
                        reads.get(a.key if isinstance(a, Home) else a.name, 0) + 1
    made = {(e.out.key if isinstance(e.out, Home) else e.out.name): e for e in once.eqns
            if e.op == "stack" and not e.accumulate}
    gone = []
    for e in list(once.eqns):
        if e.op != "stack" or e.accumulate:
            continue
        args = []
        for a in e.args:
            key = a.key if isinstance(a, Home) else a.name if isinstance(a, Tmp) else None
            inner = made.get(key)
            if inner is not None and reads.get(key) == 1 and inner is not e \
                    and not (isinstance(a, Home) and a.name in out.views):
                args.extend(inner.args)
                gone.append(inner)
            else:
                args.append(a)
        if len(args) != len(e.args):
            once.eqns[once.eqns.index(e)] = replace(e, args=tuple(args))
    for inner in gone:
        once.eqns = [x for x in once.eqns if x is not inner]
        kind = "home" if isinstance(inner.out, Home) else "tmp"
        out.types.pop((kind, inner.out.name), None)
    out.check()
    return out
