"""The op table: every primitive of the IR, its NumPy forward next to its VJP.

One row per op name of :mod:`rnngraph.ir` (plus two fused forms the compiler
introduces).  A row holds source *templates*, not functions: the compiler
pastes them into the straight-line code it generates, so the generated file
reads like hand-written NumPy.  In a template

``{0}``, ``{1}``, ...  are the arguments' values (names or array slices),
``{out}``              is the result's value,
``{g}``                is the result's cotangent (the gradient flowing back).

A row's ``vjp`` gives, for argument ``i``, the cotangent it contributes to that
argument (None: none flows there).  Contributions come out shaped like ``{g}``;
the compiler sums them over the leading axes an argument lacks (a bias ``(n,)``
added to a batch ``(B, n)`` gets ``g.sum(0)``), so the templates stay free of
broadcasting rules.

Values and their *ranks*: a matrix is ``(rows, cols)`` as PyTorch's weights,
so ``W x`` is ``x @ W.T``; a vector has some leading axes, ``(n,)`` for a bias
(rank 0), ``(B, n)`` inside a time loop (rank 1), ``(T, B, n)`` when a block
runs every step at once (rank 2); a number literal has rank ``"const"``.

To add a function: a row in :mod:`rnngraph.functions` and a row here.

Examples
--------
>>> row = OPS["tanh"]
>>> row.forward_source(("a",), (1,))
'np.tanh(a)'
>>> row.vjp_source(0, ("a",), (1,), out="h", g="dh", glead=1)
'dh * (1 - h ** 2)'
>>> OPS["matmul"].forward_source(("W", "x"), ("matrix", 1))
'x @ W.T'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import RnnGraphError

# ============================================================================
# Numerically stable functions the generated code calls
# ============================================================================

def sigmoid(z, out=None):
    """The logistic function, without overflow: exp of a non-positive number only.
    With ``out``, 1 / (1 + exp(-z)) written there in four in-place calls (the caller
    ignores the overflow of exp(-z) to inf, whose sigmoid is 0 as it should be).

    Examples
    --------
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    >>> out = np.empty(3)
    >>> with np.errstate(over="ignore"):
    ...     _ = sigmoid(np.array([-1000.0, 0.0, 1000.0]), out=out)
    >>> out
    array([0. , 0.5, 1. ])
    """
    if out is not None:
        # -z as z * -1: NumPy 2.4's float32 np.negative gives wrong lanes when input and
        # output are both strided columns of width 1 (a gate of size 1 packed with others)
        np.multiply(z, -1, out=out)
        np.exp(out, out=out)
        out += 1
        return np.divide(1, out, out=out)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e)


#: Vectors of ones for sum_rows, per dtype, grown to the longest asked for.
_ONES: dict = {}


def sum_rows(a, axes, out):
    """``np.sum(a, axes, out=out)`` over a's leading axes (a gradient of a bias summed
    over the steps and the batch), as one BLAS gemv with a vector of ones when the
    leading axes fold into one without a copy and out is a C-contiguous vector.

    np.sum over a leading axis adds row after row, one rounding error per row; the gemv
    keeps several partial sums.  Measured (float32, 2 cores): (3200, 1024) 401 against
    150 us, largest relative error 1.6e-6 against 4.9e-7; (200, 512) 24 against 10 us.

    Examples
    --------
    >>> g = np.arange(12.0).reshape(2, 3, 2)
    >>> out = np.empty(2)
    >>> sum_rows(g, (0, 1), out) is None and out.tolist() == g.sum((0, 1)).tolist()
    True
    """
    lead = 1 if isinstance(axes, int) else len(axes)
    rows = a.size // out.size if out.size else 0
    if axes not in (0, tuple(range(lead))) or a.shape[lead:] != out.shape or out.ndim != 1 \
            or not (a.flags.c_contiguous and out.flags.c_contiguous) or not rows \
            or a.dtype != out.dtype:
        np.sum(a, axes, out=out)          # (and its error for an out that does not fit)
        return
    ones = _ONES.get(a.dtype)
    if ones is None or len(ones) < rows:
        ones = _ONES[a.dtype] = np.ones(max(rows, 2 * len(ones) if ones is not None else 0),
                                        a.dtype)
    np.dot(ones[:rows], a.reshape(rows, out.size), out=out)


def transpose_into(dst, src):
    """``dst[...] = src.T`` for a matrix, in blocks of rows of src of about 32 KiB.

    np.copyto(dst, src.T) walks src down its columns, a cache line per number once
    src outgrows the cache; in blocks, each block's lines are read while cached.
    Measured (float32, 2 cores): (512, 128) 20.6 against 43.7 us, (1024, 256) 88
    against 259 us; below 32 KiB, one copy.

    Examples
    --------
    >>> src = np.arange(6.0).reshape(3, 2)
    >>> dst = np.empty((2, 3))
    >>> transpose_into(dst, src) is None and bool((dst == src.T).all())
    True
    """
    rows = max(1, 32768 // (src.shape[1] * src.itemsize))
    if rows >= src.shape[0]:
        np.copyto(dst, src.T)
        return
    for i in range(0, src.shape[0], rows):
        np.copyto(dst[:, i:i + rows], src[i:i + rows].T)


def softmax(z):
    """Softmax over the last axis, shifted by the maximum so no exp overflows.

    Examples
    --------
    >>> softmax(np.array([1000.0, 1000.0, -1000.0]))
    array([0.5, 0.5, 0. ])
    """
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(z):
    """``log(softmax(z))`` without forming softmax(z): finite wherever z is.

    Examples
    --------
    >>> log_softmax(np.array([1000.0, -1000.0]))
    array([    0., -2000.])
    """
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def cross_entropy(p, target):
    """``-sum_k target_k log p_k`` over the last axis, kept as a size-1 axis; 0 log 0 = 0.

    Examples
    --------
    >>> cross_entropy(np.array([0.25, 0.75, 0.0]), np.array([0.0, 1.0, 0.0]))
    array([0.28768207])
    """
    return -(target * np.log(np.where(target == 0, 1, p))).sum(-1, keepdims=True)


def softmax_cross_entropy(z, target):
    """``cross_entropy(softmax(z), target)`` computed from the logits z: right even
    where softmax(z) underflows to 0.

    Examples
    --------
    >>> softmax_cross_entropy(np.array([1000.0, -1000.0]), np.array([0.0, 1.0]))
    array([2000.])
    """
    return -(target * log_softmax(z)).sum(-1, keepdims=True)


# ============================================================================
# The table's machinery
# ============================================================================

@dataclass(frozen=True)
class Op:
    """One row: the op's forward template and, per argument, its VJP template.

    ``forward`` and ``vjp`` entries are template strings, or functions of the
    argument ranks (and sizes, and the cotangent's rank) returning one: the
    matrix product's source depends on whether it multiplies a batch, a single
    vector or a matrix.  ``rank`` and
    ``size`` compute the result's rank and size from the arguments'.
    """

    name: str
    forward: object
    vjp: object | None     # one template per argument, or a function (ranks, sizes, i, glead)
    rank: Callable
    size: Callable

    def forward_source(self, args, ranks) -> str:
        template = self.forward(ranks) if callable(self.forward) else self.forward
        return template.format(*args)

    def vjp_source(self, i, args, ranks, out, g, glead, sizes=()) -> str | None:
        """The cotangent argument ``i`` receives, as source; None if none flows there.

        ``glead`` is the rank of the cotangent ``g``; ``sizes`` the arguments' sizes.
        """
        if self.vjp is None:
            raise RnnGraphError(f"the compiler has no vector-Jacobian product for '{self.name}': "
                                "add one to the op table in rnngraph/ops.py")
        if ranks[i] == "const":
            return None
        template = self.vjp(ranks, sizes, i, glead) if callable(self.vjp) else self.vjp[i]
        return None if template is None else template.format(*args, out=out, g=g)


def lookup(name: str) -> Op:
    """The row of ``name``; an RnnGraphError naming the op if there is none.

    Examples
    --------
    >>> lookup("tanhh")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rnngraph.errors.RnnGraphError: error: the compiler has no NumPy code for 'tanhh': add it ...
    """
    try:
        return OPS[name]
    except KeyError:
        raise RnnGraphError(f"the compiler has no NumPy code for '{name}': "
                            "add it to the op table in rnngraph/ops.py") from None


def sum_leading(expr: str, axes: int) -> str:
    """Source summing ``expr`` over its first ``axes`` axes.

    >>> sum_leading("g", 0), sum_leading("g", 1), sum_leading("g", 2)
    ('g', 'g.sum(0)', 'g.sum((0, 1))')
    """
    if axes <= 0:
        return expr
    return f"{expr}.sum(0)" if axes == 1 else f"{expr}.sum({tuple(range(axes))})"


def outer_sum(a: str, alead: int, b: str, blead: int) -> str:
    """Source for sum over rows of ``a_row b_row^T``: the cotangent of a matrix.

    The operand with more leading axes is first summed down to the other's
    (the other was broadcast along them); then one GEMM contracts the rest.
    """
    if alead > blead:
        a, alead = sum_leading(a, alead - blead), blead
    elif blead > alead:
        b, blead = sum_leading(b, blead - alead), alead
    if alead == 0:
        return f"np.outer({a}, {b})"
    if alead == 1:
        return f"{a}.T @ {b}"
    # (T, B, n) arrays: one GEMM over their T*B rows (views, where tensordot would copy)
    return f"{_rows(a)}.T @ {_rows(b)}"


def _rows(a: str) -> str:
    return f"{a}.reshape(-1, {a}.shape[-1])"


# -- rank and size rules -------------------------------------------------------

def _rank_elementwise(ranks):
    if "matrix" in ranks:
        return "matrix"
    leads = [r for r in ranks if r != "const"]
    return max(leads) if leads else "const"


def _size_elementwise(sizes):
    return next((s for s in sizes if s is not None), None)


def _rank_matmul(ranks):
    m, v = ranks
    if m == "const":
        return v
    return "matrix" if v in ("const", "matrix") else v


def _size_matmul(sizes):
    m, v = sizes
    if m is None:
        return v
    if v is None:
        return m
    return (m[0], v[1]) if isinstance(v, tuple) else m[0]


def _size_matmul_t(sizes):
    return sizes[0][1]


def _size_transpose(sizes):
    return sizes[0][::-1]


def _size_concat(sizes):
    return sum(sizes)


def _size_one(sizes):
    return 1


def _row(name, forward, vjp, rank=_rank_elementwise, size=_size_elementwise):
    OPS[name] = Op(name, forward, vjp, rank, size)


OPS: dict[str, Op] = {}

# ============================================================================
# Elementwise
# ============================================================================
#     name       forward                       VJP for each argument
_row("add",      "{0} + {1}",                  ("{g}", "{g}"))
_row("sub",      "{0} - {1}",                  ("{g}", "-{g}"))
_row("mul",      "{0} * {1}",                  ("{g} * {1}", "{0} * {g}"))
_row("div",      "{0} / {1}",                  ("{g} / {1}", "-{g} * {out} / {1}"))
_row("neg",      "-{0}",                       ("-{g}",))
_row("copy",     "{0}",                        ("{g}",))
_row("tanh",     "np.tanh({0})",               ("{g} * (1 - {out} ** 2)",))
_row("sigmoid",  "sigmoid({0})",               ("{g} * {out} * (1 - {out})",))
_row("relu",     "np.maximum({0}, 0)",         ("{g} * ({out} > 0)",))
_row("exp",      "np.exp({0})",                ("{g} * {out}",))
_row("log",      "np.log({0})",                ("{g} / {0}",))
_row("softplus", "np.logaddexp(0, {0})",       ("{g} * sigmoid({0})",))
_row("sqrt",     "np.sqrt({0})",               ("{g} / (2 * {out})",))
_row("softmax",  "softmax({0})",               ("{out} * ({g} - ({g} * {out}).sum(-1, keepdims=True))",))


# ============================================================================
# Linear algebra
# ============================================================================

def _matmul_forward(ranks):
    m, v = ranks
    if "const" in ranks:
        return "{0} * {1}"                      # a number times a vector or matrix
    return "{0} @ {1}" if v == "matrix" else "{1} @ {0}.T"


def _matmul_vjp(ranks, sizes, i, glead):
    m, v = ranks
    if m == "const":
        return "{0} * {g}"
    if v == "const":
        return "{g} * {1}"
    if v == "matrix":
        return ("{g} @ {1}.T", "{0}.T @ {g}")[i]
    if i == 1:
        return "{g} @ {0}"
    return outer_sum("{g}", glead, "{1}", v)


def _matmul_t_vjp(ranks, sizes, i, glead):
    # out = A^T v, i.e. v @ A: the compiler folds `transpose` into the product it feeds.
    if i == 1:
        return "{g} @ {0}.T"
    return outer_sum("{1}", ranks[1], "{g}", glead)


def _concat_forward(ranks):
    lead = max(ranks)
    comma = "," if len(ranks) == 1 else ""
    parts = ", ".join(f"{{{i}}}" for i in range(len(ranks)))
    if min(ranks) == lead:
        return f"np.concatenate(({parts}{comma}), -1)"
    # A bias among batched vectors: broadcast it first (concatenate does not).
    ref = f"{{{ranks.index(lead)}}}"
    items = [f"{{{i}}}" if r == lead else
             f"np.broadcast_to({{{i}}}, {ref}.shape[:-1] + {{{i}}}.shape[-1:])"
             for i, r in enumerate(ranks)]
    return f"np.concatenate(({', '.join(items)}{comma}), -1)"


def _concat_vjp(ranks, sizes, i, glead):
    lo = sum(sizes[:i])                       # item i's part of the cotangent
    return f"{{g}}[..., {lo}:{lo + sizes[i]}]"


def _stack_forward(ranks):
    return "np.concatenate((" + ", ".join(f"{{{i}}}" for i in range(len(ranks))) + "))"


def _stack_vjp(ranks, sizes, i, glead):
    lo = sum(s[0] for s in sizes[:i])         # matrix i's rows of the cotangent
    return f"{{g}}[{lo}:{lo + sizes[i][0]}]"


def _size_stack(sizes):
    return (sum(s[0] for s in sizes), sizes[0][1])


#     name        forward             VJP for each argument
_row("matmul",    _matmul_forward,    _matmul_vjp,     rank=_rank_matmul, size=_size_matmul)
_row("matmul_t",  "{1} @ {0}",        _matmul_t_vjp,   rank=lambda r: r[1], size=_size_matmul_t)
_row("transpose", "{0}.T",            ("{g}.T",),      rank=lambda r: "matrix", size=_size_transpose)
_row("concat",    _concat_forward,    _concat_vjp,     size=_size_concat)
# Introduced by the compiler (rnngraph.fuse): matrices stacked by rows, so that one
# product serves several; and lanes lo:hi of a wide value, a view.  A slice's
# cotangent lands in lanes lo:hi of its argument's (the generators see to that).
_row("stack",     _stack_forward,     _stack_vjp,      rank=lambda r: "matrix", size=_size_stack)
_row("slice",     "{0}[..., {1}:{2}]", ("{g}", None, None), rank=lambda r: r[0])


# ============================================================================
# Losses (a size-1 result per step)
# ============================================================================
_row("cross_entropy",
     "cross_entropy({0}, {1})",
     ("-{g} * {1} / {0}", "-{g} * np.log({0})"),
     size=_size_one)
# cross_entropy(softmax(z), target), fused by the compiler: stable, and its
# gradient y - target never divides by a probability that underflowed.
_row("softmax_cross_entropy",
     "softmax_cross_entropy({0}, {1})",
     ("{g} * (softmax({0}) * {1}.sum(-1, keepdims=True) - {1})", "-{g} * log_softmax({0})"),
     size=_size_one)

#: What the generated code imports from this module.
RUNTIME = ("sigmoid", "softmax", "log_softmax", "cross_entropy", "softmax_cross_entropy")
