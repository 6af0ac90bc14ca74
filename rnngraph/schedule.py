"""The op-level IR -> the blocks to run, in order: rewrites and the time schedule.

1. Rewrites.  ``cross_entropy(softmax(z), k)`` becomes one stable op on the
   logits z (always: it is what keeps the loss finite).  With ``optimize``,
   ``A^T v`` becomes one product (no transposed copy), work that does not
   depend on t (parameters and time-free values alone) moves out of the time
   loops into the prologue, and repeated subexpressions (the ``[h(t-1); x(t)]``
   that every gate of an LSTM reads) are computed once.
2. Blocks.  The defined sequences and the reads between them form a graph
   whose edges carry time offsets; NetworkX gives its strongly connected
   components and their topological order (file order among equals).  A
   component with a delayed edge inside is a loop over t: forward for reads at
   ``t-k``, backward for ``t+k``.  One without can be computed for every t at
   once (with ``optimize=False`` it loops too: the plain path, for debugging).
   The prologue (``once``) comes first: time-free values and initial values.
3. With ``optimize``, :mod:`rnngraph.fuse` then reorders sums, moves what a
   loop computes without reading its own states (the input projections) into
   an every-step block before it, and stacks products that share an operand.

Examples
--------
>>> from rnngraph import load
>>> [(b.kind, b.names) for b in plan(load("examples/bidirectional.rnn"), optimize=False)]
[('once', []), ('forward', ['h']), ('backward', ['g']), ('forward', ['o'])]
>>> [(b.kind, b.names) for b in plan(load("examples/bidirectional.rnn"))]
[('once', []), ('all', []), ('forward', ['h']), ('all', []), ('backward', ['g']), ('all', ['o'])]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import fuse
from .errors import RnnGraphError
from .ir import Const, Eqn, Param, Read, Var

_MATRIX_OPS = {"transpose", "add", "sub", "mul", "div", "neg", "matmul"}


@dataclass
class Block:
    """A run of equations: the prologue (``once``), a loop (``forward``, ``backward``)
    or every step at once (``all``)."""

    kind: str
    names: list[str]
    eqns: list[Eqn] = field(default_factory=list)

    @property
    def lead(self) -> int:
        """Leading axes of a time-indexed value as this block sees it: (B, n) or (T, B, n)."""
        return 2 if self.kind == "all" else 1


def _producers(eqns):
    return {e.out: e for e in eqns}


def _replace_args(e: Eqn, op: str, args) -> Eqn:
    return Eqn(e.out, op, tuple(args), e.defines, e.pos)


def fuse_losses(eqns: list[Eqn]) -> list[Eqn]:
    """``L = cross_entropy(y, k)`` with ``y = softmax(z)`` -> ``L = softmax_cross_entropy(z, k)``."""
    made = _producers(eqns)
    out = []
    for e in eqns:
        y = e.args[0] if e.op == "cross_entropy" else None
        if isinstance(y, Var) and y.name in made and made[y.name].op == "softmax":
            e = _replace_args(e, "softmax_cross_entropy", (made[y.name].args[0], e.args[1]))
        out.append(e)
    return out


def fold_transposes(eqns: list[Eqn]) -> list[Eqn]:
    """``_3 = transpose A; _4 = matmul _3 v`` -> ``_4 = matmul_t A v`` (v @ A, no copy of A^T)."""
    made = _producers(eqns)
    out = []
    for e in eqns:
        m = e.args[0] if e.op == "matmul" else None
        if isinstance(m, Var) and m.name in made and made[m.name].op == "transpose" \
                and made[m.name].defines is None:
            e = _replace_args(e, "matmul_t", (made[m.name].args[0], e.args[1]))
        out.append(e)
    return out


def _rename(e: Eqn, names: dict) -> Eqn:
    args = [Var(names[a.name]) if isinstance(a, Var) and a.name in names else a for a in e.args]
    return _replace_args(e, e.op, args)


def _common_subexpressions(blocks: list[Block]) -> None:
    names = {}
    for b in blocks:
        seen = {}
        kept = []
        for e in b.eqns:
            e = _rename(e, names)
            key = (e.op, e.args)
            if e.defines is None and key in seen:
                names[e.out] = seen[key]
                continue
            seen.setdefault(key, e.out)
            kept.append(e)
        b.eqns = kept
    for b in blocks:
        b.eqns = [_rename(e, names) for e in b.eqns]


def _dead_code(blocks: list[Block]) -> None:
    while True:
        used = {a.name for b in blocks for e in b.eqns for a in e.args if isinstance(a, Var)}
        dead = [e for b in blocks for e in b.eqns if e.defines is None and e.out not in used]
        if not dead:
            return
        for b in blocks:
            b.eqns = [e for e in b.eqns if e.defines is not None or e.out in used]


def owners(step: list[Eqn]) -> dict[str, str]:
    """Every op of the step -> the variable whose equation it belongs to.

    The IR lowers one equation after the other, its temporaries before the op
    that defines the variable.
    """
    owner, pending = {}, []
    for e in step:
        pending.append(e.out)
        if e.defines is not None:
            owner.update(dict.fromkeys(pending, e.defines))
            pending = []
    return owner


def dependencies(step: list[Eqn], owner: dict[str, str], names) -> nx.DiGraph:
    """Who reads whom among the defined sequences; edge attribute ``offsets``: the k of t+k."""
    g = nx.DiGraph()
    g.add_nodes_from(names)
    for e in step:
        for a in e.args:
            if isinstance(a, Read) and a.offset is not None and a.name in names:
                src, k = a.name, a.offset
            elif isinstance(a, Var) and a.name in owner:
                src, k = owner[a.name], 0
            else:
                continue
            dst = owner[e.out]
            if src != dst or k:
                if not g.has_edge(src, dst):
                    g.add_edge(src, dst, offsets=set())
                g.edges[src, dst]["offsets"].add(k)
    return g


def plan(model, optimize: bool = True) -> list[Block]:
    """The blocks to run, in order: the prologue, then one per strongly connected
    component (adjacent every-step components merged into one block)."""
    prog = model.ir()
    once, step = fuse_losses(prog.once), fuse_losses(prog.step)
    if optimize:
        once, step = fold_transposes(once), fold_transposes(step)
    owner = owners(step)
    order = {eq.name: i for i, eq in enumerate(model.equations) if eq.kind == "seq"}
    g = dependencies(step, owner, order)

    blocks = [Block("once", [], list(once))]
    sccs = list(nx.strongly_connected_components(g))
    dag = nx.condensation(g, sccs)
    for c in nx.lexicographical_topological_sort(dag, key=lambda c: min(order[n] for n in sccs[c])):
        members = sccs[c]
        inner = {k for _, _, ks in g.subgraph(members).edges(data="offsets") for k in ks if k}
        if inner and min(inner) < 0 < max(inner):      # the analysis should have said so already
            raise RnnGraphError("these variables read each other both from the past and from the "
                                f"future: {', '.join(sorted(members, key=order.get))}")
        kind = ("backward" if min(inner) > 0 else "forward") if inner else \
            ("all" if optimize else "forward")
        names = sorted(members, key=order.get)
        eqns = [e for e in step if owner[e.out] in members]
        if kind == "all" and blocks[-1].kind == "all":        # one block for a run of them
            blocks[-1].names += names
            blocks[-1].eqns += eqns
        else:
            blocks.append(Block(kind, names, eqns))

    if optimize:
        fuse.interpolations(blocks)
        fuse.reassociate(blocks)
    _hoist(blocks, model, prog.params, optimize)
    if optimize:
        blocks = fuse.split_loops(blocks)
        _common_subexpressions(blocks)
        fuse.widen(blocks, model)
    _dead_code(blocks)
    return blocks


def _hoist(blocks: list[Block], model, params, optimize: bool) -> None:
    """Move loop-invariant ops to the prologue: with ``optimize``, everything made of
    parameters and time-free values alone; always, a matrix (it has no time axis)."""
    invariant = {e.out for e in blocks[0].eqns}
    matrices = {p for p in params if model.symbols[p].matrix}
    for b in blocks[1:]:
        kept = []
        for e in b.eqns:
            values = [a for a in e.args if not isinstance(a, Const)]
            if e.op in _MATRIX_OPS and values and all(a.name in matrices for a in values):
                matrices.add(e.out)
            if e.defines is None and (optimize or e.out in matrices) and all(
                    isinstance(a, (Param, Const)) or isinstance(a, Read) and a.offset is None
                    or isinstance(a, Var) and a.name in invariant for a in e.args):
                blocks[0].eqns.append(e)
                invariant.add(e.out)
            else:
                kept.append(e)
        b.eqns = kept
