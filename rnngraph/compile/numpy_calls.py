"""Each op of the optimized path as NumPy calls that write a given array in place.

``np.add(a, b, out=dst)`` for the table's ufuncs, ``dst += b`` where dst is an
operand, the sigmoid as its four calls, products as ``np.dot(..., out=)`` over every
step's rows; numbers are the module's scalars of the dtype (``ONE``, ``MINUS_ONE``).
"""
from __future__ import annotations

from ..lang.printing import number_text
from .optable import ATOM, Text, lookup

#: Ops printed as one call with out=, besides the table's ufuncs.
OUT_OPS = {"sigmoid", "relu", "copy", "neg", "matvec", "vecmat"}


def const_name(v: float) -> str:
    """``ONE``, ``MINUS_ONE``, ``TWO``, ``C_0_25``: the name of a number's scalar."""
    known = {1.0: "ONE", -1.0: "MINUS_ONE", 2.0: "TWO", 0.5: "HALF", 0.0: "ZERO"}
    if v in known:
        return known[v]
    return ("C_MINUS_" if v < 0 else "C_") + number_text(abs(v)).replace(".", "_").replace("-", "_") \
        .replace("+", "")


def call(e, args, types, dst: str, t, consts: dict) -> str:
    """``e`` as NumPy calls writing ``dst`` (of type ``t``), lines apart; ``consts`` the
    names of the numbers' scalars."""
    a = [x.text for x in args]
    row = lookup(e.op)
    if e.op in ("add", "sub", "mul", "div") and a[0] == dst:
        return f"{dst} {'+-*/'[('add', 'sub', 'mul', 'div').index(e.op)]}= {a[1]}"
    if e.op in ("add", "mul") and a[1] == dst:
        return f"{dst} {'+*'[('add', 'mul').index(e.op)]}= {a[0]}"
    if row.ufunc is not None:
        return f"np.{row.ufunc}({', '.join(a)}, out={dst})"
    if e.op == "sigmoid":               # 1 / (1 + exp(-z)), four calls (see ops.sigmoid)
        one = consts[1.0]
        return "\n".join([negative(a[0], dst, t, consts), f"np.exp({dst}, out={dst})",
                          f"{dst} += {one}", f"np.divide({one}, {dst}, out={dst})"])
    if e.op == "neg":
        return negative(a[0], dst, t, consts)
    if e.op == "relu":
        return f"np.maximum({a[0]}, 0, out={dst})"
    if e.op == "copy":
        return f"np.copyto({dst}, {a[0]})"
    if e.op == "matvec":
        A, v = args
        return f"np.dot({rows(v, types[1])}, {A.at(ATOM)}.T, out={rows(Text(dst, ATOM), t)})"
    # vecmat: g @ A
    g, A = args
    return f"np.dot({rows(g, types[0])}, {A.text}, out={rows(Text(dst, ATOM), t)})"


def negative(a: str, dst: str, t, consts: dict) -> str:
    """-a into dst: np.negative, 1.6x as fast as a product by -1, except for values of
    width 1, where NumPy 2.4's float32 np.negative reads the wrong lanes of a strided
    column (see ops.sigmoid)."""
    if t.shape and t.shape[-1] == 1 or not t.shape:
        return f"np.multiply({a}, {consts[-1.0]}, out={dst})"
    return f"np.negative({a}, out={dst})"


def rows(x: Text, t) -> str:
    """``x`` as a matrix of rows for np.dot: every step's batch as rows of one product."""
    if t.lead >= 2:
        return f"{x.at(ATOM)}.reshape(-1, {t.shape[-1]})"
    return x.text
