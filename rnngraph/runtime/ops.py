"""What the generated code calls besides NumPy: stable functions and one BLAS sum.

The compiler (rnngraph/compile/) prints calls of these into the modules it
generates (``from rnngraph.runtime.ops import sigmoid, softmax, ...``); its op table is
rnngraph/compile/optable.py.  Each function takes and returns arrays of any
leading axes, over the last one.
"""
from __future__ import annotations

import numpy as np


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


def transposed(a):
    """``a.T`` as a C-ordered copy (which BLAS multiplies faster than the view ``a.T``),
    copied in blocks of rows of ``a`` of about 32 KiB: ``np.ascontiguousarray(a.T)`` walks
    ``a`` down its columns, a cache line per number once ``a`` outgrows the cache; in
    blocks, each block's lines are read while cached.  Measured (float32, 2 cores):
    (384, 128) 41.7 against 65.0 us, (1024, 256) 191 against 374 us.

    Examples
    --------
    >>> a = np.arange(6.0).reshape(3, 2)
    >>> t = transposed(a)
    >>> bool((t == a.T).all()), t.flags.c_contiguous
    (True, True)
    """
    out = np.empty(a.shape[::-1], a.dtype)
    rows = max(1, 32768 // max(1, a.shape[1] * a.itemsize))
    if rows >= a.shape[0]:
        np.copyto(out, a.T)
        return out
    for i in range(0, a.shape[0], rows):
        np.copyto(out[:, i:i + rows], a[i:i + rows].T)
    return out


def softmax(z, axis=-1):
    """Softmax over the last axis (or ``axis``: attention's weights over the steps, -3 of
    (T, B, n)), shifted by the maximum so no exp overflows.

    Examples
    --------
    >>> softmax(np.array([1000.0, 1000.0, -1000.0]))
    array([0.5, 0.5, 0. ])
    """
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


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


def binary_cross_entropy(p, target):
    """``-sum_k [d_k log p_k + (1 - d_k) log(1 - p_k)]`` over the last axis, kept as a size-1
    axis; 0 log 0 = 0, so a target of exactly 0 or 1 never reads the log of the other side.

    Examples
    --------
    >>> binary_cross_entropy(np.array([0.5, 0.9, 1.0]), np.array([1.0, 0.0, 1.0]))
    array([2.99573227])
    """
    yes = np.where(target == 0, 0, target * np.log(np.where(target == 0, 1, p)))
    no = np.where(target == 1, 0, (1 - target) * np.log(np.where(target == 1, 0.5, 1 - p)))
    return -(yes + no).sum(-1, keepdims=True)


def sigmoid_binary_cross_entropy(z, target):
    """``binary_cross_entropy(sigmoid(z), target)`` from the logits z, ``softplus(z) - d z``:
    right where sigmoid(z) rounds to 0 or 1.

    Examples
    --------
    >>> sigmoid_binary_cross_entropy(np.array([800.0, -800.0]), np.array([0.0, 1.0]))
    array([1600.])
    """
    return (np.logaddexp(0, z) - target * z).sum(-1, keepdims=True)


def softmax_cross_entropy(z, target):
    """``cross_entropy(softmax(z), target)`` computed from the logits z: right even
    where softmax(z) underflows to 0.

    Examples
    --------
    >>> softmax_cross_entropy(np.array([1000.0, -1000.0]), np.array([0.0, 1.0]))
    array([2000.])
    """
    return -(target * log_softmax(z)).sum(-1, keepdims=True)


def add_at(a, index, g):
    """``a[index] += g`` where ``index`` may repeat: the children of a tree's level (the
    leaves' all the slot before the first node, their h(0)).  np.add.at is slow (13 ms for
    128 x 32 x 128 floats, against 0.6 ms for a sum): a level whose children are all one
    slot is one sum, one whose children are distinct one indexed add, and only a mix of the
    two (unary nodes beside binary ones) np.add.at."""
    first = index[0]
    if (index == first).all():
        a[first] += g.sum(0)
    elif np.unique(index).size == index.size:
        a[index] += g
    else:
        np.add.at(a, index, g)
