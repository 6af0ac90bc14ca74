"""The elementwise kernels of ``backend="numba"``'s loops: explicit loops over ``out``.

A loop function (rnngraph/fastgen.py, ``jit_loop``) calls ``multiply(a, b, out)``
where the NumPy loop calls ``np.multiply(a, b, out=out)``.  NumPy's ufuncs work in
Numba's nopython mode too, but each call site makes Numba build a broadcasting
kernel of its own: eight of them took 7.2-8.5 s to compile here, against 2.1 s
for the same eight statements as calls of kernels like these (1.4 s once the
kernels are in Numba's cache, which they share across every model).

``out`` is 2-D (rows of a batch) or 1-D; an operand is a number, a 0-d array, or an
array that broadcasts to ``out`` along its trailing axes (a bias row, a batch of 1).
Anything else fails to compile, and the loop runs in NumPy (rnngraph/compiled.py).
The functions are libm's (math.exp, math.tanh), one number at a time.  Imported
only for ``backend="numba"``: it imports numba.
"""
import math

import numba
from numba import types
from numba.extending import overload

_OPTS = dict(cache=True, error_model="numpy")


def _at(a, i, j):
    """``a``'s number at row i, column j of the output it broadcasts to."""


def _size(out):
    """The rows and columns of ``out`` (one row for a 1-D out)."""


def _put(out, i, j, value):
    """``out[i, j] = value`` (``out[j]`` for a 1-D out)."""


@overload(_at, jit_options=_OPTS)
def _at_impl(a, i, j):
    if isinstance(a, types.Number):
        return lambda a, i, j: a
    if not isinstance(a, types.Array):
        return None
    if a.ndim == 0:
        return lambda a, i, j: a[()]
    if a.ndim == 1:
        return lambda a, i, j: a[0 if a.shape[0] == 1 else j]
    if a.ndim == 2:
        return lambda a, i, j: a[0 if a.shape[0] == 1 else i, 0 if a.shape[1] == 1 else j]
    return None


@overload(_size, jit_options=_OPTS)
def _size_impl(out):
    if isinstance(out, types.Array) and out.ndim == 2:
        return lambda out: (out.shape[0], out.shape[1])
    if isinstance(out, types.Array) and out.ndim == 1:
        return lambda out: (1, out.shape[0])
    return None


@overload(_put, jit_options=_OPTS)
def _put_impl(out, i, j, value):
    if isinstance(out, types.Array) and out.ndim == 2:
        def put(out, i, j, value):
            out[i, j] = value
        return put
    if isinstance(out, types.Array) and out.ndim == 1:
        def put1(out, i, j, value):
            out[j] = value
        return put1
    return None


@numba.njit(**_OPTS)
def add(a, b, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, _at(a, i, j) + _at(b, i, j))


@numba.njit(**_OPTS)
def subtract(a, b, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, _at(a, i, j) - _at(b, i, j))


@numba.njit(**_OPTS)
def multiply(a, b, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, _at(a, i, j) * _at(b, i, j))


@numba.njit(**_OPTS)
def divide(a, b, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, _at(a, i, j) / _at(b, i, j))


@numba.njit(**_OPTS)
def negative(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, -_at(a, i, j))


@numba.njit(**_OPTS)
def exp(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, math.exp(_at(a, i, j)))


@numba.njit(**_OPTS)
def tanh(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, math.tanh(_at(a, i, j)))


@numba.njit(**_OPTS)
def log(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, math.log(_at(a, i, j)))


@numba.njit(**_OPTS)
def copy(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, _at(a, i, j))



@numba.njit(**_OPTS)
def maximum(a, b, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, max(_at(a, i, j), _at(b, i, j)))


@numba.njit(**_OPTS)
def softmax(a, out):
    """out = softmax of each row of a, as rnngraph.ops.softmax: exp(a - max) / sum."""
    rows, cols = _size(out)
    for i in range(rows):
        top = _at(a, i, 0)
        for j in range(1, cols):
            top = max(top, _at(a, i, j))
        total = 0.0
        for j in range(cols):
            e = math.exp(_at(a, i, j) - top)
            _put(out, i, j, e)
            total += e
        for j in range(cols):
            _put(out, i, j, _at(out, i, j) / total)


@numba.njit(**_OPTS)
def softmax_grad(y, g, out, add):
    """out = y (g - sum(g y)) for each row (softmax's VJP at its output y), or out += it."""
    rows, cols = _size(out)
    for i in range(rows):
        total = 0.0
        for j in range(cols):
            total += _at(g, i, j) * _at(y, i, j)
        for j in range(cols):
            v = _at(y, i, j) * (_at(g, i, j) - total)
            _put(out, i, j, _at(out, i, j) + v if add else v)
