"""Speed rewrites of the blocks (``optimize=True``): fewer, wider operations per step.

Three passes over the blocks of :mod:`rnngraph.schedule`, all found from the
IR (which value multiplies which), never from names:

1. :func:`reassociate`.  A sum inside a loop, ``W_ii x(t) + b_ii + W_hi h(t-1) +
   b_hi``, is reordered so that its time-free terms come first, then the terms
   that do not depend on the loop's recurrence, then the rest:
   ``((b_ii + b_hi) + W_ii x(t)) + W_hi h(t-1)``.  The first part then moves to
   the prologue, the second out of the loop.  (Floating-point addition is not
   associative: results agree with the plain path to rounding.)
   :func:`interpolations` rewrites ``(1 - z) * a + z * b`` as ``a + z (b - a)``.
2. :func:`split_loops`.  What a loop computes without reading its own states
   (the input projections) runs for every step at once, in a block before the
   loop: one GEMM over all steps instead of one per step.
3. :func:`widen`.  Products that multiply the same vector by different
   matrices (``W_ii x``, ``W_if x``, ``W_ig x``, ``W_io x``) become one product
   with the matrices stacked (``stack``, in the prologue); then, as in SLP
   vectorisation, the same operation applied lane by lane to the parts of a
   wide value (adding the biases, the sigmoids of three gates) becomes one
   operation on the lanes together.  Each original value becomes a ``slice``
   (a view) of a wide one, so the code around stays as it was.  The lanes are
   ordered by the operation they end in (the sigmoid gates next to each
   other, then the tanh gate) so that one call serves all the gates that share
   a function.

The new ops are ``stack`` (matrices stacked by rows), ``concat`` of biases, and
``slice v lo hi`` (lanes lo:hi of the last axis): rows of :mod:`rnngraph.ops`.

Examples
--------
>>> from rnngraph import load
>>> from rnngraph.schedule import plan
>>> blocks = plan(load("examples/torch_rnn.rnn"))
>>> [(b.kind, [e.op for e in b.eqns]) for b in blocks]
[('once', ['add']), ('all', ['matmul', 'add']), ('forward', ['matmul', 'add', 'tanh'])]
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import networkx as nx

from .ir import Const, Eqn, Param, Read, Var

#: Elementwise ops that can act on several lanes at once.
LANEWISE = {"add", "sub", "mul", "div", "neg", "copy", "tanh", "sigmoid", "relu", "exp", "log"}
_SUMS = {"add", "sub"}


def _uses(blocks) -> dict[str, list[Eqn]]:
    uses = defaultdict(list)
    for b in blocks:
        for e in b.eqns:
            for a in e.args:
                if isinstance(a, Var):
                    uses[a.name].append(e)
    return uses


def recurrent(block) -> set[str]:
    """The values of a loop block that depend on its own states (all, for other blocks)."""
    if block.kind not in ("forward", "backward"):
        return {e.out for e in block.eqns}
    rec: set[str] = set()
    for e in block.eqns:
        if e.defines is not None or any(
                isinstance(a, Read) and a.name in block.names or
                isinstance(a, Var) and a.name in rec for a in e.args):
            rec.add(e.out)
    return rec


# ============================================================================
# 1. Sums: time-free terms first, then what does not depend on the loop
# ============================================================================

def reassociate(blocks) -> None:
    prologue = {e.out for e in blocks[0].eqns}
    uses = _uses(blocks)
    for b in blocks[1:]:
        if b.kind == "all":
            continue
        rec = recurrent(b)
        made = {e.out: e for e in b.eqns}

        def interior(a):
            if not isinstance(a, Var) or a.name not in made:
                return False
            e = made[a.name]
            return e.op in _SUMS and e.defines is None and len(uses[a.name]) == 1 \
                and uses[a.name][0].op in _SUMS and uses[a.name][0].out in made

        def leaves(a, sign, out, nodes, root=False):
            if root or interior(a):
                e = made[a.name]
                nodes.append(e.out)
                leaves(e.args[0], sign, out, nodes)
                leaves(e.args[1], sign if e.op == "add" else -sign, out, nodes)
            else:
                out.append((sign, a))

        def level(a):
            if isinstance(a, (Param, Const)) or isinstance(a, Read) and a.offset is None \
                    or isinstance(a, Var) and a.name in prologue:
                return 0
            return 2 if isinstance(a, Read) and a.name in b.names or \
                isinstance(a, Var) and a.name in rec else 1

        roots = [e for e in b.eqns if e.op in _SUMS and not interior(Var(e.out))]
        replace: dict[str, list[Eqn]] = {}
        dropped: set[str] = set()
        for root in roots:
            terms, nodes = [], []
            leaves(Var(root.out), 1, terms, nodes, root=True)
            order = sorted(range(len(terms)), key=lambda i: (level(terms[i][1]), i))
            if order == list(range(len(terms))) or len(terms) < 3:
                continue
            terms = [terms[i] for i in order]
            first = next((i for i, (s, _) in enumerate(terms) if s > 0), None)
            if first is None:
                continue                                   # all negative: leave it
            terms.insert(0, terms.pop(first))
            names = nodes[1:] + [root.out]                 # reuse the tree's own names
            chain, acc = [], terms[0][1]
            for (sign, a), name in zip(terms[1:], names):
                last = name == root.out
                chain.append(Eqn(name, "add" if sign > 0 else "sub", (acc, a),
                                 root.defines if last else None, root.pos, root.origin))
                acc = Var(name)
            replace[root.out] = chain
            dropped.update(nodes[1:])
        _splice(b, replace, dropped)


def _splice(block, replace: dict, dropped: set) -> None:
    """Put each ``replace[out]`` list where the equation binding ``out`` was; drop ``dropped``."""
    if not replace:
        return
    eqns = []
    for e in block.eqns:
        if e.out in replace:
            eqns += replace[e.out]
        elif e.out not in dropped:
            eqns.append(e)
    block.eqns = eqns


def interpolations(blocks) -> None:
    """``(1 - z) * a + z * b`` -> ``a + z * (b - a)``: one op fewer each way (GRU's update).

    Only where the three temporaries are used nowhere else; z, a, b any values."""
    uses = _uses(blocks)
    for blk in blocks[1:]:
        made = {e.out: e for e in blk.eqns}

        def temp(a, op):
            e = made.get(a.name) if isinstance(a, Var) else None
            ok = e is not None and e.op == op and e.defines is None and len(uses[a.name]) == 1
            return e if ok else None

        new, dropped = {}, set()
        for e in blk.eqns:
            if e.op != "add" or e.out in dropped:
                continue
            for first, second in (e.args, e.args[::-1]):
                m1, m2 = temp(first, "mul"), temp(second, "mul")
                if m1 is None or m2 is None:
                    continue
                for s_arg, a in (m1.args, m1.args[::-1]):
                    s = temp(s_arg, "sub")
                    if s is None or s.args[0] != Const(1.0):
                        continue
                    z = s.args[1]
                    b = m2.args[1] if m2.args[0] == z else m2.args[0] if m2.args[1] == z else None
                    if b is None or z == a:
                        continue
                    d, p = m1.out, m2.out                  # reuse the temporaries' names
                    new[e.out] = [Eqn(d, "sub", (b, a), None, e.pos, e.origin),
                                  Eqn(p, "mul", (z, Var(d)), None, e.pos, e.origin),
                                  Eqn(e.out, "add", (a, Var(p)), e.defines, e.pos, e.origin)]
                    dropped |= {s.out, m1.out, m2.out}
                    break
                if e.out in new:
                    break
        _splice(blk, new, dropped)


# ============================================================================
# 2. Out of the loop: what does not read the loop's states
# ============================================================================

def split_loops(blocks):
    """A loop block's ops that do not depend on its recurrence -> an every-step block before it."""
    from .schedule import Block
    out = []
    for b in blocks:
        if b.kind in ("forward", "backward"):
            rec = recurrent(b)
            free = [e for e in b.eqns if e.out not in rec]
            if free:
                out.append(Block("all", [], free))
                b.eqns = [e for e in b.eqns if e.out in rec]
        out.append(b)
    return out


# ============================================================================
# 3. Wide products and wide lanewise ops
# ============================================================================

class _Widener:
    def __init__(self, blocks, model):
        self.blocks = blocks
        self.model = model
        self.taken = {e.out for b in blocks for e in b.eqns} | set(model.symbols)
        self.vector_sizes = {}
        for e in blocks[0].eqns:                    # time-free vectors: biases and their sums
            sizes = [self.bias_size(a) for a in e.args if not isinstance(a, Const)]
            if e.op in LANEWISE and sizes and all(sizes) and len(set(sizes)) == 1:
                self.vector_sizes[e.out] = sizes[0]
        self.slices: dict[str, tuple[str, int, int]] = {}  # lane value -> (wide value, lo, hi)
        self.prologue_new: list[Eqn] = []

    def name(self, stem: str) -> str:
        for k in itertools.count(1):
            n = f"%{stem}{k}"
            if n not in self.taken:
                self.taken.add(n)
                return n

    def is_matrix(self, a) -> bool:
        return isinstance(a, Param) and self.model.symbols[a.name].matrix

    def bias_size(self, a):
        """The size of a time-free vector (a bias, a sum of biases); None for anything else."""
        if isinstance(a, Param) and not self.model.symbols[a.name].matrix:
            return self.model.param_shapes[a.name][0]
        if isinstance(a, Var):
            return self.vector_sizes.get(a.name)
        return None

    def sink_key(self, e: Eqn, uses, position):
        """Where a lane's value ends: its chain of single users, up to a model variable."""
        while e.defines is None and len(uses[e.out]) == 1 and uses[e.out][0].op in LANEWISE:
            e = uses[e.out][0]
        return e.op, position[e.out]

    def run(self) -> None:
        uses = _uses(self.blocks)
        position = {e.out: i for i, e in enumerate(e for b in self.blocks for e in b.eqns)}
        ops_order: dict[str, int] = {}
        for b in self.blocks[1:]:
            groups = defaultdict(list)
            for e in b.eqns:
                if e.op == "matmul" and self.is_matrix(e.args[0]) and not isinstance(e.args[1], Const):
                    groups[e.args[1]].append(e)
            packs = []
            for members in groups.values():
                if len(members) < 2:
                    continue
                keys = {m.out: self.sink_key(m, uses, position) for m in members}
                for op, _ in keys.values():
                    ops_order.setdefault(op, len(ops_order))
                members.sort(key=lambda m: (ops_order[keys[m.out][0]], keys[m.out][1]))
                packs.append(self.stack_products(b, members))
            work = list(packs)
            while work:
                work += self.extend(b, work.pop(0))
            self.resort(b)
        self.blocks[0].eqns += self.prologue_new

    def stack_products(self, b, members):
        rows = [self.model.param_shapes[m.args[0].name][0] for m in members]
        stacked = self.name("W")
        self.prologue_new.append(Eqn(stacked, "stack", tuple(m.args[0] for m in members)))
        wide = self.name("p")
        return self.rewrite(b, members, Eqn(wide, "matmul", (Var(stacked), members[0].args[1])), rows)

    def rewrite(self, b, members, wide_eqn, sizes):
        """Put ``wide_eqn`` before the first member; each member becomes a slice of it."""
        lanes, lo = [], 0
        index = {e.out: i for i, e in enumerate(b.eqns)}
        new = list(b.eqns)
        for m, n in zip(members, sizes):
            new[index[m.out]] = Eqn(m.out, "slice", (Var(wide_eqn.out), Const(lo), Const(lo + n)),
                                    m.defines, m.pos, m.origin)
            self.slices[m.out] = (wide_eqn.out, lo, lo + n)
            lanes.append((m.out, lo, lo + n))
            lo += n
        first = min(index[m.out] for m in members)
        b.eqns = new[:first] + [wide_eqn] + new[first:]
        return wide_eqn.out, lanes

    def extend(self, b, pack):
        """Lanewise users of a pack's lanes that can act on the lanes together."""
        wide, lanes = pack
        made = {e.out: e for e in b.eqns}
        users = defaultdict(dict)        # (op, position) -> lane index -> user
        for j, (lane, _, _) in enumerate(lanes):
            for e in b.eqns:
                if e.op in LANEWISE and e.out not in self.slices:
                    for p, a in enumerate(e.args):
                        if a == Var(lane):
                            users[e.op, p].setdefault(j, e)
        found = []
        for (op, p), by_lane in users.items():
            run: list[int] = []
            for j in range(len(lanes) + 1):
                if j in by_lane and (not run or self.packable(b, [by_lane[k] for k in run + [j]],
                                                               p, lanes, run + [j])):
                    run.append(j)
                    continue
                if len(run) >= 2:
                    found.append(self.widen_run(b, [by_lane[k] for k in run], p, wide, lanes, run))
                run = [j] if j in by_lane else []
        del made
        return [f for f in found if f is not None]

    def other_args(self, members, p, lanes, run):
        """The wide form of each argument other than the lane one; None if there is none."""
        out = []
        for q in range(len(members[0].args)):
            if q == p:
                out.append(None)
                continue
            atoms = [m.args[q] for m in members]
            if all(isinstance(a, Const) for a in atoms) and len({a.value for a in atoms}) == 1:
                out.append(("same", atoms[0]))
                continue
            sizes = [lanes[j][2] - lanes[j][1] for j in run]
            if all(self.bias_size(a) == n for a, n in zip(atoms, sizes)):
                out.append(("concat", atoms))
                continue
            spots = [self.slices.get(a.name) if isinstance(a, Var) else None for a in atoms]
            if all(spots) and len({s[0] for s in spots}) == 1:
                base = spots[0][1] - lanes[run[0]][1]
                if all(s[1] - lanes[j][1] == base and s[2] - lanes[j][2] == base
                       for s, j in zip(spots, run)):
                    out.append(("slice", (spots[0][0], spots[0][1], spots[-1][2])))
                    continue
            return None
        return out

    def packable(self, b, members, p, lanes, run):
        if len({len(m.args) for m in members}) != 1:
            return False
        return self.other_args(members, p, lanes, run) is not None

    def widen_run(self, b, members, p, wide, lanes, run):
        lo, hi = lanes[run[0]][1], lanes[run[-1]][2]
        args = []
        for q, spec in enumerate(self.other_args(members, p, lanes, run)):
            if spec is None:
                args.append(self.lanes_of(b, wide, lo, hi))
            elif spec[0] == "same":
                args.append(spec[1])
            elif spec[0] == "concat":
                name = self.name("b")
                self.prologue_new.append(Eqn(name, "concat", tuple(spec[1])))
                args.append(Var(name))
            else:
                args.append(self.lanes_of(b, *spec[1]))
        out = self.name("p")
        sizes = [lanes[j][2] - lanes[j][1] for j in run]
        return self.rewrite(b, members, Eqn(out, members[0].op, tuple(args)), sizes)

    def lanes_of(self, b, wide, lo, hi):
        """The atom for lanes lo:hi of ``wide``: itself if that is all of it, else a slice."""
        size = max(h for w, _, h in self.slices.values() if w == wide)
        if lo == 0 and hi == size:
            return Var(wide)
        name = self.name("s")
        eqn = Eqn(name, "slice", (Var(wide), Const(lo), Const(hi)))
        index = next((i + 1 for i, e in enumerate(b.eqns) if e.out == wide), 0)
        b.eqns.insert(index, eqn)
        return Var(name)

    def resort(self, b) -> None:
        """Dependencies first, the order otherwise kept (wide ops were placed early)."""
        index = {e.out: i for i, e in enumerate(b.eqns)}
        g = nx.DiGraph()
        g.add_nodes_from(index)
        for e in b.eqns:
            for a in e.args:
                if isinstance(a, Var) and a.name in index:
                    g.add_edge(a.name, e.out)
        made = {e.out: e for e in b.eqns}
        b.eqns = [made[n] for n in nx.lexicographical_topological_sort(g, key=index.get)]


def widen(blocks, model) -> None:
    _Widener(blocks, model).run()
