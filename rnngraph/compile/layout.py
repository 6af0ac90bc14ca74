"""Layout passes on the final programs: where values live, not what they are.

- ``concat_views``: a concatenation of values that nothing else writes, each computed
  into its lanes of the result instead (a GRU's backward step concatenates the
  cotangents of its gates' sums, r and z then n, to multiply them by the stacked
  matrix at once: they are now written there); over every step, the pieces' array
  itself where they are its lanes side by side already.
- ``sink_carried_writes``: a gradient for the next step written after this step's last
  read, so that one buffer holds both (memory.local_gradients).
- ``carried_products_first``: the product's write of such a gradient first, so that it
  writes the buffer itself.
- ``preactivations_in_place``: a loop's sum computed in its activations' array.
- ``transposed_in_loops``: W^T made once, C-ordered, for a loop's products.
- ``sums_of_products``: sum_to(a * b) over every leading axis (the steps, the batch) in
  one pass.

The numba backend's own layout passes are in numba_layout.py.
"""
from __future__ import annotations

from dataclasses import replace

from .optable import lookup
from .passes import copy_program
from .program import Block, Eqn, Home, Program, Tmp, Type, count_uses


def concat_views(prog: Program) -> Program:
    """``X(t) = concat A(t) B(t)`` with A, B arrays the passes made, each written once,
    at step t, by one equation of the same block, and read anywhere: A and B become
    views of X (lanes 0:a and a:a+b) and the concatenation goes."""
    out = copy_program(prog)
    writes: dict = {}
    for k, b in enumerate(out.blocks):
        for i, e in enumerate(b.eqns):
            if isinstance(e.out, Home):
                writes.setdefault(e.out.key, []).append((k, i))
    bases = {v[0] for v in out.views.values()}
    for k, b in enumerate(out.blocks):
        drop = []
        for i, e in enumerate(b.eqns):
            X = e.out
            if e.op != "concat" or e.accumulate or not isinstance(X, Home) \
                    or X.offset != 0 or X.grad or not X.name.startswith("%") \
                    or X.name in out.views or X.name in bases or len(writes[X.key]) != 1:
                continue
            if not all(isinstance(a, Home) and a.offset == 0 and not a.grad
                       and a.name.startswith("%") and a.name not in out.views
                       and a.name not in bases and writes.get(a.key) and len(writes[a.key]) == 1
                       and writes[a.key][0][0] == k and writes[a.key][0][1] < i
                       and out.type(a).lead == out.type(X).lead for a in e.args) \
                    or len(set(e.args)) != len(e.args):
                continue
            lo = 0
            for a in e.args:
                n = out.type(a).shape[-1]
                out.views[a.name] = (X.name, lo, lo + n)
                lo += n
            bases.add(X.name)
            drop.append(i)
        b.eqns = [e for i, e in enumerate(b.eqns) if i not in drop]
    _concat_arrays(out, writes, bases)
    out.check()
    return out


def _concat_arrays(out: Program, writes: dict, bases: set) -> None:
    """A concatenation over every step (a temporary of an every-step block) of made
    arrays of which some are lanes of another array already: it becomes an array of
    its own, the free pieces its lanes (written where they are computed), the others
    copied into theirs.  A GRU's input weights' gradient reads [d(r, z), dn] while the
    recurrent one reads [d(r, z), r dn]: one (T, B, 3n) array and a copy of 2n lanes,
    where np.concatenate made a (T, B, 3n) temporary beside dn's (T, B, n) array.  When
    no piece is lanes yet (Cho's GRU: [d(u, r), dh~], each written by the loop), all are
    lanes of the new array and nothing is copied (36 us a call at hidden 128, T 200).
    When every piece is lanes of one array already, in order and side by side (a
    peephole LSTM's gates, written for the recurrent weights' product), the
    concatenation reads those lanes (_lanes_in_order)."""
    for k, b in enumerate(out.blocks):
        if b.kind != "all":
            continue
        for i, e in enumerate(list(b.eqns)):
            if e.op != "concat" or not isinstance(e.out, Tmp) or len(set(e.args)) != len(e.args):
                continue
            made = [a for a in e.args if isinstance(a, Home) and a.offset == 0 and not a.grad
                    and a.name.startswith("%") and a.name not in bases
                    and a.name in out.timed and len(writes.get(a.key, ())) == 1
                    and out.types[("home", a.name)].lead == 1]
            if len(made) != len(e.args):
                continue
            whole = _lanes_in_order(out, made)
            if whole is not None:           # the pieces are lanes of one array, side by side
                b.eqns.remove(e)
                b.eqns[:] = [replace(x, args=tuple(whole if a == e.out else a for a in x.args))
                             for x in b.eqns]
                out.types.pop(("tmp", e.out.name), None)
                continue
            if all(a.name in out.views for a in made):
                continue
            base = f"%c{e.out.name[1:]}"
            total = sum(out.types[("home", a.name)].shape[-1] for a in made)
            out.types[("home", base)] = Type(1, (total,))
            out.timed.add(base)
            copies, lo = [], 0
            for a in made:
                n = out.types[("home", a.name)].shape[-1]
                if a.name in out.views:
                    lanes = f"{base}_{lo}"
                    out.types[("home", lanes)] = Type(1, (n,))
                    out.timed.add(lanes)
                    out.views[lanes] = (base, lo, lo + n)
                    copies.append(Eqn(Home(lanes, 0), "copy", (a,), origin=e.origin))
                else:
                    out.views[a.name] = (base, lo, lo + n)
                lo += n
            bases.add(base)
            whole = Home(base, 0)
            at = b.eqns.index(e)
            b.eqns[at:at + 1] = copies
            b.eqns[:] = [replace(x, args=tuple(whole if a == e.out else a for a in x.args))
                         for x in b.eqns]
            out.types.pop(("tmp", e.out.name), None)


def _lanes_in_order(out: Program, pieces) -> Home | None:
    """The lanes of one array that ``pieces`` are, in their order and side by side (as a
    peephole LSTM's backward writes its four gates' cotangents into one array for the
    recurrent weights' product, and the input weights' product concatenated them again:
    2.6 ms of 67 a call at batch 32, hidden 256, T 100), as a Home; else None."""
    lanes = [out.views.get(a.name) for a in pieces]
    if any(v is None for v in lanes) or len({v[0] for v in lanes}) != 1 \
            or any(v[2] != w[1] for v, w in zip(lanes, lanes[1:])):
        return None
    base, lo, hi = lanes[0][0], lanes[0][1], lanes[-1][2]
    if base in out.views:
        return None
    if (lo, hi) == (0, out.types[("home", base)].shape[-1]):
        return Home(base, 0)
    name = f"{base}_{lo}_{hi}"
    out.types[("home", name)] = Type(1, (hi - lo,))
    out.timed.add(name)
    out.views[name] = (base, lo, hi)
    return Home(name, 0)


def sums_of_products(prog: Program) -> Program:
    """In a block over every step, ``sum_to(a * b)`` down to no leading axis, a and b of the
    product's type (nothing broadcast) and the product read nowhere else, as one op
    (sum_products: np.einsum), which reads a and b once and writes no (T, B, n) product: a
    peephole weight's gradient, the sum of dz(t) * s(t-1).  A peephole LSTM at batch 32,
    hidden 256, T 100, float32, three of them: in a call (line_profiler), 0.63-0.65 ms
    each against 0.93-1.03 for np.multiply into a buffer, then ops.sum_rows; with the
    operands in the cache, 0.17 against 0.62.  einsum adds the rows one after another, the
    gemv of sum_rows kept partial sums: a largest relative error of 2.6e-6 against 8.7e-7
    over those 3200 rows in float32, as the biases' sums in a loop (numba_layout)."""
    out = copy_program(prog)
    for b in out.blocks:
        if b.kind != "all":
            continue
        uses = count_uses(b.eqns)
        made = {e.out.name: e for e in b.eqns if isinstance(e.out, Tmp)}
        drop = set()
        for i, e in enumerate(b.eqns):
            x = e.args[0] if e.args else None
            m = made.get(x.name) if isinstance(x, Tmp) else None
            if e.op != "sum_to" or m is None or m.op != "mul" or uses[x.name] != 1:
                continue
            t = out.type(x, b)
            if e.attrs != (0, t.shape) or not 1 <= len(t.shape) <= 2 or not 1 <= t.lead <= 4 \
                    or any(out.type(a, b) != t for a in m.args):
                continue
            b.eqns[i] = replace(e, op="sum_products", args=m.args, attrs=())
            drop.add(id(m))
        b.eqns = [e for e in b.eqns if id(e) not in drop]
    out.check()
    return out


def sink_carried_writes(prog: Program) -> Program:
    """In each loop, a write of a gradient for the next step (``dh(t-1) += g`` in a loop
    backward in time) moved after the last read of the same gradient at this step, so
    that one buffer can hold both (see above).  Nothing in the loop reads the next
    step's gradient, so the move changes no value.  (Equations are compared by identity:
    two writes may be equal, ``dh(t-1) += dh(t)`` twice for ``h(t-1) + h(t-1)``.)"""
    out = copy_program(prog)
    for b in out.blocks:
        if b.kind != "loop":
            continue
        d = b.direction
        for e in [e for e in b.eqns if isinstance(e.out, Home) and e.out.grad and e.accumulate
                  and e.out.offset == d]:
            key = out.base(e.out.key)
            if any(isinstance(a, Home) and out.base(a.key) == key and a.offset == d
                   for x in b.eqns for a in x.args):
                continue
            last = max((i for i, x in enumerate(b.eqns) for a in x.args if isinstance(a, Home)
                        and out.base(a.key) == key and a.offset == 0), default=-1)
            at = next(i for i, x in enumerate(b.eqns) if x is e)
            if last < at:
                continue
            # the op that makes g moves too (it then writes the buffer itself, see step_plan):
            # later, every value it reads is as complete (a gradient read is complete)
            moving = [at]
            g = e.args[0]
            if isinstance(g, Tmp) and sum(g in x.args for x in b.eqns) == 1:
                moving.insert(0, next(i for i, x in enumerate(b.eqns) if x.out == g))
            kept = [x for i, x in enumerate(b.eqns) if i not in moving]
            place = last + 1 - len(moving)          # after the last read, once they are out
            b.eqns = kept[:place] + [b.eqns[i] for i in moving] + kept[place:]
    out.check()
    return out


def carried_products_first(prog: Program) -> Program:
    """In each loop, the writes of a gradient for the next step (``dh(t-1) += g``) that
    are not a product moved after the last write of it: the product (``dh(t-1) +=
    dz W``, computed last) then writes the buffer first, itself (``np.dot(..., out=dh)``,
    see memory.step_plan), and the others add to it, where the buffer would otherwise be
    assigned a copy and the product added from a buffer of its own.  Nothing in the loop
    reads the next step's gradient, and a temporary lives to its block's end, so the
    move changes no value.  A GRU's h(t) = n + z (h(t-1) - n): one call a step fewer."""
    out = copy_program(prog)
    for b in out.blocks:
        if b.kind != "loop":
            continue
        d = b.direction
        made = {e.out.name: e for e in b.eqns if isinstance(e.out, Tmp)}
        writes: dict = {}
        for e in b.eqns:
            if isinstance(e.out, Home) and e.out.grad and e.accumulate and e.out.offset == d:
                writes.setdefault(out.base(e.out.key), []).append(e)
        for key, group in writes.items():
            if any(isinstance(a, Home) and out.base(a.key) == key and a.offset == d
                   for x in b.eqns for a in x.args):
                continue                        # read in the loop: the order matters
            product = [e for e in group if isinstance(e.args[0], Tmp)
                       and made.get(e.args[0].name) is not None
                       and made[e.args[0].name].op in ("vecmat", "matvec")
                       and e.out.name not in out.views]
            if len(group) < 2 or not product or group[0] in product:
                continue
            last = max(i for i, x in enumerate(b.eqns) if any(x is e for e in group))
            moving = [e for e in group if not any(e is p for p in product)]
            kept = [x for x in b.eqns[:last + 1] if not any(x is m for m in moving)]
            b.eqns = kept + moving + b.eqns[last + 1:]
    out.check()
    return out


def preactivations_in_place(fwd: Program, back: Program) -> Program:
    """The sum an activation reads, kept in the array of the activation's own value.

    A loop's ``%z = add A(t) %w`` (A: what the block before the loop computed for every
    step at once, read nowhere else) followed by activations of %z's lanes into the
    lanes of one array H (``ifog``: i, f, o, g; or ``h`` itself): A is computed into H,
    the loop adds %w into H(t) and applies each activation in place, as the hand-written
    LSTM does.  One array over the steps fewer, and no copy of the sum.  The backward
    program (``back``) must not read A: it reads the activations' values, which H holds
    after the loop."""
    out = copy_program(fwd)
    reads: dict = {}                           # home -> how many equations of either read it
    writes: dict = {}                          # home -> [(block, eqn)] of the forward's
    for p in (out, back):
        for k, b in enumerate(p.blocks):
            for i, e in enumerate(b.eqns):
                for a in e.args:
                    if isinstance(a, Home):
                        reads[a.key] = reads.get(a.key, 0) + 1
                if isinstance(e.out, Home) and p is out:
                    writes.setdefault(e.out.key, []).append((k, i))
    for k, b in enumerate(out.blocks):
        if b.kind != "loop":
            continue
        for i, e in enumerate(b.eqns):
            plan = _in_place_sum(out, b, i, e, reads, writes)
            if plan is None:
                continue
            A, H, w, acts = plan
            (wk, wi), = writes[A.key]
            src = out.blocks[wk].eqns[wi]
            out.blocks[wk].eqns[wi] = Eqn(Home(H, src.out.offset), src.op, src.args, src.attrs,
                                          origin=src.origin)
            here = Home(H, 0)
            b.eqns[i] = Eqn(here, "copy", (w,), accumulate=True, origin=e.origin)
            for j in acts:
                x = b.eqns[j]
                b.eqns[j] = Eqn(x.out, x.op, tuple(here if a == e.out else a for a in x.args),
                                x.attrs, origin=x.origin)
            out.timed.discard(A.name)
    out.check()
    return out


def _in_place_sum(prog: Program, b: Block, i: int, e: Eqn, reads: dict, writes: dict):
    """(A, H, %w, indices of the equations that read %z) if ``e`` is such a sum."""
    if e.op != "add" or not isinstance(e.out, Tmp) or e.accumulate:
        return None
    for A, w in (e.args, e.args[::-1]):
        if isinstance(A, Home) and A.name.startswith("%") and A.offset == 0 and not A.grad \
                and A.name not in prog.views and isinstance(w, (Tmp, Home)) \
                and reads.get(A.key) == 1 and len(writes.get(A.key, ())) == 1 \
                and prog.blocks[writes[A.key][0][0]].kind == "all" \
                and prog.type(A) == prog.type(e.out):
            break
    else:
        return None
    users = [j for j, x in enumerate(b.eqns) if e.out in x.args]
    lanes, target, acts = [], None, []
    for j in users:
        x = b.eqns[j]
        if x.op == "slice":                   # lanes of the sum, read by one activation
            inner = [m for m, y in enumerate(b.eqns) if x.out in y.args]
            if len(inner) != 1:
                return None
            x2 = b.eqns[inner[0]]
            lo, hi = x.attrs
        else:
            x2, lo, hi = x, 0, prog.type(e.out).shape[-1]
        h = x2.out
        if not (isinstance(h, Home) and h.offset == 0 and not h.grad and len(x2.args) == 1
                and lookup(x2.op).lanewise and x2.op not in ("copy",)):
            return None
        base, vlo, vhi = prog.views.get(h.name, (h.name, 0, prog.type(h).shape[-1]))
        if (vlo, vhi) != (lo, hi) or target not in (None, base):
            return None
        target = base
        lanes.append((lo, hi))
        acts.append(j)
    width = prog.type(e.out).shape[-1]
    covered = sorted(lanes)
    if target is None or prog.type(Home(target)) != prog.type(e.out) or covered[0][0] != 0 \
            or covered[-1][1] != width or any(a[1] != c[0] for a, c in zip(covered, covered[1:])):
        return None
    if any(isinstance(a, Home) and prog.base(a.key) == (target, False) and a.offset == 0
           for x in b.eqns[:i] for a in x.args):
        return None                           # H read before the sum is made
    return A, target, w, acts


def transposed_in_loops(fwd: Program) -> Program:
    """Each product ``W h(t-1)`` in a loop by a matrix the same at every step made
    ``h(t-1) @ W^T`` with W^T copied once, C-ordered, in the prologue (where prepare()
    makes it once for many calls): the product a step makes, in the form BLAS does
    fastest (see the row "transposed" in optable.py)."""
    out = copy_program(fwd)
    once = out.blocks[0]
    made: dict = {}
    for b in out.blocks:
        if b.kind != "loop":
            continue
        for i, e in enumerate(b.eqns):
            A = e.args[0] if e.op == "matvec" else None
            if not (isinstance(A, Home) and A.offset is None and A.step is None and not A.grad):
                continue
            if A.name not in made:
                t = out.type(A)
                made[A.name] = Home(f"%{A.name}^T")
                out.types[("home", made[A.name].name)] = Type(0, t.shape[::-1])
                once.eqns.append(Eqn(made[A.name], "transposed", (A,), origin=e.origin))
            b.eqns[i] = Eqn(e.out, "vecmat", (e.args[1], made[A.name]), origin=e.origin)
    out.check()
    return out


def sums_side_by_side(fwd: Program) -> Program:
    """A product for every step whose lanes, each plus a bias, are the sums of different
    arrays (a GRU's input projection: W x(t) for r, z and n, added into rz and n) computed
    into one array of which those are lanes: the product is written there, the biases
    added as one (no array for the product).  The forward program's layout only: the
    backward reads these values from the tape, wherever they live."""
    out = copy_program(fwd)
    bases = {v[0] for v in out.views.values()}
    for b in out.blocks:
        if b.kind != "all":
            continue
        users: dict = {}
        for i, e in enumerate(b.eqns):
            for a in e.args:
                if isinstance(a, Tmp):
                    users.setdefault(a.name, []).append(i)
        for e in b.eqns:
            parts = _sliced_sums(out, b, e, users)
            if parts:
                _side_by_side(out, b, e, parts, bases)
                return sums_side_by_side(out)          # indices changed: look again
    out.check()
    return out


def _sliced_sums(out: Program, b, e, users: dict):
    """[(slice, sum, H, bias, lo, hi)] if ``e`` is such a product, else None."""
    W = e.out
    if not isinstance(W, Tmp) or e.op not in ("matvec", "vecmat"):
        return None
    slices = [b.eqns[j] for j in users.get(W.name, [])]
    if len(slices) < 2 or any(s.op != "slice" for s in slices):
        return None
    parts, at = [], 0
    for s in sorted(slices, key=lambda s: s.attrs[0]):
        lo, hi = s.attrs
        use = users.get(s.out.name, [])
        x = b.eqns[use[0]] if len(use) == 1 else None
        if lo != at or x is None or x.op != "add" or x.accumulate:
            return None
        bias = x.args[1] if x.args[0] == s.out else x.args[0]
        H = x.out
        if not (isinstance(H, Home) and H.offset == 0 and not H.grad and H.name not in out.views
                and isinstance(bias, Home) and bias.offset is None and bias.step is None
                and not bias.grad and out.type(bias) == Type(0, (hi - lo,))
                and out.type(H) == Type(1, (hi - lo,))):
            return None
        parts.append((s, x, H, bias, lo, hi))
        at = hi
    if at != out.type(W, b).shape[-1] or len({p[2].name for p in parts}) != len(parts):
        return None
    return parts


def _side_by_side(out: Program, b, e, parts, bases) -> None:
    base = Home("%" + "_".join(p[2].name.strip("%'") for p in parts), 0)
    width = parts[-1][5]
    out.types[("home", base.name)] = Type(1, (width,))
    out.timed.add(base.name)
    for s, x, H, bias, lo, hi in parts:
        if H.name in bases:                       # its views become lanes of the new array
            for v, (vb, vlo, vhi) in list(out.views.items()):
                if vb == H.name:
                    out.views[v] = (base.name, lo + vlo, lo + vhi)
        out.views[H.name] = (base.name, lo, hi)
    out.made += 1
    biases = Home(f"%b{out.made}'")
    out.types[("home", biases.name)] = Type(0, (width,))
    out.blocks[0].eqns.append(Eqn(biases, "concat", tuple(p[3] for p in parts), origin=e.origin))
    gone = {id(p[0]) for p in parts} | {id(p[1]) for p in parts}
    at = next(i for i, x in enumerate(b.eqns) if x is parts[0][1])
    new = Eqn(base, "add", (biases, e.out), origin=e.origin)
    b.eqns = [x for x in b.eqns[:at] if id(x) not in gone] + [new] + \
        [x for x in b.eqns[at:] if id(x) not in gone]
