"""Layout passes on the final programs: where values live, not what they are.

``concat_views``: a concatenation of values that nothing else writes, each computed
into its lanes of the result instead (a GRU's backward step concatenates the
cotangents of its gates' sums, r and z then n, to multiply them by the stacked
matrix at once: they are now written there).
"""
from __future__ import annotations

from .passes import _copy
from .program import Home, Program


def concat_views(prog: Program) -> Program:
    """``X(t) = concat A(t) B(t)`` with A, B arrays the passes made, each written once,
    at step t, by one equation of the same block, and read anywhere: A and B become
    views of X (lanes 0:a and a:a+b) and the concatenation goes."""
    out = _copy(prog)
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
    out.check()
    return out
