"""Common subexpressions: an op of the same arguments computed once per block.

``W_f [h(t-1); x(t)]``, ``W_i [h(t-1); x(t)]``, ... (the LSTM of lstm_concat.rnn) each
concatenate h(t-1) and x(t); after this pass they multiply one concatenation, which
lets pack and stack_products make them one product.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile.lower import lower
>>> print(cse(lower(parse("x: 2, h: 3\\nh(t) = tanh(A [h(t-1); x(t)]) * sigmoid(B [h(t-1); x(t)])"))))
once:
loop forward h:
  %1 = concat h(t-1) x(t)
  %2 = matvec A %1
  %3 = tanh %2
  %5 = matvec B %1
  %6 = sigmoid %5
  h(t) = mul %3 %6
"""
from __future__ import annotations

from dataclasses import replace

from .passes import copy_program
from .program import Program, Tmp


def cse(prog: Program) -> Program:
    """Each temporary whose op, arguments and parameters an earlier one of its block has
    replaced by that one (reads renamed; the later equation dropped)."""
    out = copy_program(prog)
    for block in out.blocks:
        seen: dict = {}
        same: dict[str, Tmp] = {}
        kept = []
        for e in block.eqns:
            e = replace(e, args=tuple(same.get(a.name, a) if isinstance(a, Tmp) else a
                                      for a in e.args))
            if isinstance(e.out, Tmp) and not e.accumulate:
                key = (e.op, e.args, e.attrs)
                if key in seen:
                    same[e.out.name] = seen[key]
                    continue
                seen[key] = e.out
            kept.append(e)
        block.eqns = kept
    out.check()
    return out
