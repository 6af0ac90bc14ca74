"""The elementwise kernels of ``backend="numba"``'s loops: explicit loops over ``out``.

A loop function for a batch of a few rows, or a part of a larger one
(rnngraph/compile/numba_loops.py) calls ``multiply(a, b, out)`` where the NumPy loop
calls ``np.multiply(a, b, out=out)``.  NumPy's ufuncs work in Numba's nopython mode too, but each call site makes Numba build a broadcasting
kernel of its own: eight of them took 7.2-8.5 s to compile here, against 2.1 s
for the same eight statements as calls of kernels like these (1.4 s once the
kernels are in Numba's cache, which they share across every model).

``out`` is 2-D (rows of a batch) or 1-D; an operand is a number, a 0-d array, or an
array that broadcasts to ``out`` along its trailing axes (a bias row, a batch of 1).
Anything else fails to compile, and the loop runs in NumPy (rnngraph/runtime/jit.py).
exp, tanh and sigmoid go a row at a time through vexp, vtanh and vsigmoid, Cephes'
approximations in the values' own precision, which LLVM vectorises over a contiguous
row (below); log is libm's.  Below them, what the fused kernels of
rnngraph/compile/fuse.py are made of: row views from pointers, the checks that going row
by row keeps the ops' order.  Imported only for ``backend="numba"``: it imports numba.
"""
import math
import os
import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_OPTS = dict(cache=True, error_model="numpy")
#: The row kernels' polynomials as fused multiply-adds (LLVM contracts a * b + c; nothing
#: else of fastmath): exp of a float32 row 0.64 against 0.89 ns a value, as accurate.
_FMA = dict(_OPTS, fastmath={"contract"})


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


# -- the constants of vexp and vtanh's float64 forms (below): Cephes' exp (a rational
# approximation on [-ln 2 / 2, ln 2 / 2] times 2^n, 2^n built in the exponent bits in two
# factors, so that subnormal results come out right) and tanh (Cephes' rational
# approximation below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above).  Numba's math.exp and
# math.tanh call libm one number at a time (7-16 ns each here).
_LOG2E = 1.4426950408889634073599
_C1, _C2 = 6.93145751953125e-1, 1.42860682030941723212e-6      # ln 2 in two parts
_P0, _P1, _P2 = 1.26177193074810590878e-4, 3.02994407707441961300e-2, 9.99999999999999999910e-1
_Q0, _Q1, _Q2, _Q3 = (3.00198505138664455042e-6, 2.52448340349684104192e-3,
                      2.27265548208155028766e-1, 2.00000000000000000009e0)
_MAXLOG, _MINLOG = 709.782712893384, -745.1332191019411
_TP0, _TP1, _TP2 = -9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3
_TQ0, _TQ1, _TQ2 = 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3


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
    """exp, a row at a time by vexp (below; LLVM vectorises it over a contiguous row):
    NumPy's to 2 ulp in float32, 4 in float64."""
    _by_rows(0, a, out)


@numba.njit(**_OPTS)
def tanh(a, out):
    """tanh, a row at a time by vtanh (as exp: at batch 1, 384 values of a gate took 0.64 us
    against 1.3 value by value through a float64 buffer)."""
    _by_rows(1, a, out)


@numba.njit(**_OPTS)
def log(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, math.log(_at(a, i, j)))


@numba.njit(**_OPTS)
def sqrt(a, out):
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            _put(out, i, j, math.sqrt(_at(a, i, j)))


@numba.njit(**_OPTS)
def sigmoid(a, out):
    """1 / (1 + exp(-a)), a row at a time by vsigmoid (as exp)."""
    _by_rows(2, a, out)


@numba.njit(**_OPTS)
def _by_rows(which, a, out):
    """out = exp (``which`` 0), tanh (1) or sigmoid (2) of a, a row at a time: each row of a
    read where it lies (or filled in ``src``), computed into ``x`` by the row kernel and
    stored.  One body for the three (a kernel handed in as an argument is not cached by
    Numba: "dynamic globals"); the choice is a branch a row."""
    rows, cols = _size(out)
    src, x = np.empty(cols, out.dtype), np.empty(cols, out.dtype)
    bits = scratch(x)
    step, direct = row_step(a, rows, cols), rows_contiguous(out)
    for i in range(rows):
        row = _source(a, i, step, src)
        if which == 0:
            vexp(row, x, bits)
        elif which == 1:
            vtanh(row, x, bits)
        else:
            vsigmoid(row, x, bits)
        _sink(out, i, x, direct)


def _source(a, i, step, src):
    """Row i of ``a`` where it broadcasts to rows of src's length, as a contiguous array:
    the row itself (``step``: row_step's, 0 or 1), else ``src`` filled with it."""


@overload(_source, jit_options=_OPTS)
def _source_impl(a, i, step, src):
    if isinstance(a, types.Array) and a.ndim in (1, 2) and a.dtype == src.dtype:
        def view(a, i, step, src):
            return _view(a, i * step, src.shape[0]) if step >= 0 else _filled(a, i, src)
        return view
    return lambda a, i, step, src: _filled(a, i, src)


@numba.njit(inline="always", **_OPTS)
def _filled(a, i, src):
    """src = a's values at row i of the output it broadcasts to."""
    for j in range(src.shape[0]):
        src[j] = _at(a, i, j)
    return src


@numba.njit(inline="always", **_OPTS)
def _sink(out, i, x, direct):
    """out's row i = x: through its row itself where ``direct`` (rows_contiguous), else by
    value."""
    if direct:
        put_row(out, i, x)
    else:
        for j in range(x.shape[0]):
            _put(out, i, j, x[j])


@numba.njit(**_OPTS)
def softplus(a, out):
    """log(1 + exp(a)) as max(a, 0) + log1p(exp(-|a|)): no overflow, exact for small a."""
    rows, cols = _size(out)
    for i in range(rows):
        for j in range(cols):
            x = _at(a, i, j)
            _put(out, i, j, max(x, 0.0) + math.log1p(math.exp(-abs(x))))


@numba.njit(**_OPTS)
def sum_rows(a, out):
    """out (1-D) = the sum of a's rows: through rows typed C when each row's values are
    contiguous (a batch's rows at a step; LLVM vectorises those loops: a bias's gradient
    summed in a compiled loop, compile/numba_layout.bias_sums_in_loops), else value by
    value."""
    cols = out.shape[0]
    for j in range(cols):
        out[j] = 0
    if cols > 1 and (a.strides[1] != a.itemsize or out.strides[0] != out.itemsize):
        for i in range(a.shape[0]):
            for j in range(cols):
                out[j] += a[i, j]
        return
    dst = _view(out, 0, cols)
    for i in range(a.shape[0]):
        row = _view(a, i, cols)
        for j in range(cols):
            dst[j] += row[j]


def dot(a, b, out):
    """``out[...] = a @ b``: np.dot into out when out is C-contiguous (Numba's np.dot
    fails to compile with any other out), else a product copied into out's lanes.  Called
    from Python (the loop for a larger batch, compile/numba_loops.py), NumPy's:
    its BLAS, not the second thread pool Numba's np.dot would use.

    Two or three rows go row by row, each a matrix-vector product: OpenBLAS's GEMM packs
    W every call, which for so few rows costs more than reading W once a row.  Measured
    (float32, W 512 x 128, each way): 2 rows 22.8 against 10.3 us, 3 rows 30.5 against
    16.1; 4 rows 19.2 against 19.7 and 8 rows 17.5 against 39.9, where GEMM stays.  (The
    loops run batches of 2 compiled whole: here 3 rows come where a loop's weights are
    large, NumbaPrinter.small_batch: an LSTM of hidden 512 at batch 3 took 69-71 ms against
    125.)  From _TUNED rows on, the product takes the form that :func:`_form` found faster
    for its shapes: ``a @ b`` or ``(b^T @ a^T)^T``."""
    if out.flags.c_contiguous:
        if 1 < a.shape[0] < 4 and a.ndim == 2 == out.ndim:
            for i in range(a.shape[0]):
                np.dot(a[i], b, out=out[i])
        elif a.shape[0] >= _TUNED and a.ndim == 2 == out.ndim == b.ndim and _form(a, b, out):
            _by_transposes(a, b, out)
        else:
            np.dot(a, b, out=out)
    else:
        out[...] = np.dot(a, b)


#: The fewest rows whose product :func:`dot` makes in the faster of its two forms
_TUNED = 8
#: (the operands' shapes and strides, dtypes) -> whether the form (b^T a^T)^T is faster
_FORMS: dict = {}
#: RNNGRAPH_PRODUCTS=plain: every product a @ b, never timed (with RNNGRAPH_THREADS=1, the
#: same bits from run to run whatever the machine's load: see _form)
_PLAIN = os.environ.get("RNNGRAPH_PRODUCTS", "") == "plain"


def _form(a, b, out) -> bool:
    """Whether ``a @ b`` is faster as ``(b^T @ a^T)^T`` (True): OpenBLAS multiplies a few
    rows by a wide matrix ((32, 256) by (256, 1024), an LSTM's step) in one of the two
    forms much faster than in the other, and which one depends on the machine: on a Zen 4,
    float32, 2 threads, 98 us (and 10 to transpose the (1024, 32) result) against 152.
    Timed once for each kind of operands, at their first product (a few runs of each form
    into buffers of its own, the faster by its best run, about 2 ms), then kept for the
    process.  With NumPy's OpenBLAS on the shapes measured (8 to 64 rows, 128 to 1024
    columns, a Zen 4) both forms gave the same bits; another BLAS, or OpenBLAS's kernels
    for other shapes, may round them differently, and a choice made under load may differ
    from one process to the next: RNNGRAPH_PRODUCTS=plain keeps every product ``a @ b``."""
    if _PLAIN:
        return False
    key = (a.shape, a.strides, b.shape, b.strides, a.dtype.char, b.dtype.char, out.dtype.char)
    if key not in _FORMS:
        import time
        into = np.empty_like(out)
        best = [math.inf, math.inf]
        for _ in range(4):
            for way in (0, 1):
                start = time.perf_counter()
                if way:
                    _by_transposes(a, b, into)
                else:
                    np.dot(a, b, out=into)
                best[way] = min(best[way], time.perf_counter() - start)
        _FORMS[key] = best[1] < best[0]
    return _FORMS[key]


def _by_transposes(a, b, out):
    """out[...] = a @ b made as b^T @ a^T (into a buffer made each call) and transposed."""
    t = np.empty(out.shape[::-1], out.dtype)
    np.dot(b.T, a.T, out=t)
    transpose(t, out)


@numba.njit(**_OPTS)
def transpose(a, out):
    """out = a.T for C-ordered 2-D arrays, in blocks of 16 x 16, each written a row of out
    at a time (a block's lines stay in the cache while it is copied; rows of out a power
    of two of bytes apart share cache sets, which blocks of 8 x 8 thrashed): (1024, 32)
    float32 in 9.9 us, against 22.8 in blocks of 8 x 8, 22 for np.copyto(out, a.T) and 98
    going down out's columns; (768, 32) 7.0, (256, 32) 2.5."""
    m, n = a.shape
    if out.shape != (n, m):
        raise ValueError("transpose: out is not shaped as a.T")
    mb, nb = m - m % 16, n - n % 16
    for i0 in range(0, mb, 16):
        for j0 in range(0, nb, 16):
            for jj in range(16):
                for ii in range(16):
                    out[j0 + jj, i0 + ii] = a[i0 + ii, j0 + jj]
        for j in range(nb, n):
            for ii in range(16):
                out[j, i0 + ii] = a[i0 + ii, j]
    for i in range(mb, m):
        for j in range(n):
            out[j, i] = a[i, j]


_READY: dict = {}        # (kernel, the arguments' kinds) compiled: checked in a microsecond


def _kind(a):
    if isinstance(a, np.ndarray):
        return (a.dtype.char, a.ndim, a.flags.c_contiguous, a.flags.f_contiguous)
    return type(a)


def ready(kernel, *args):
    """Compile ``kernel`` for the types of ``args`` now, before a loop's first step writes
    anything (it raises if Numba cannot); once for each kind of arguments (dtype, number of
    axes, layout): Numba's typeof and compile cost 130-280 us a kernel, every call.
    Numba's advice while it compiles (performance, deprecations) is not the user's, and
    must not stop a run that turns warnings into errors."""
    key = (id(kernel), tuple(_kind(a) for a in args))
    if key in _READY:
        return
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kernel.compile(tuple(numba.typeof(a) for a in args))
    _READY[key] = kernel                    # (held: its id is not reused while here)


_WARNED: set = set()


def cannot(what: str, error: Exception) -> None:
    """Say, once a loop, that a loop for a larger batch runs in NumPy: a kernel it calls
    could not be compiled (as rnngraph/runtime/jit.py says of a loop compiled whole, at the
    user's line, naming the code Numba could not compile)."""
    import warnings
    from .jit import _culprit, _outside
    culprit = _culprit(str(error))
    if (what, culprit) in _WARNED:
        return
    _WARNED.add((what, culprit))
    warnings.warn(f"Numba cannot compile a kernel of the loop of {what} ({culprit}); "
                  "that loop runs in NumPy", RuntimeWarning, stacklevel=_outside())


#: The most rows a compiled loop's product takes row by row (see dot, _times_rows, _rows_times:
#: two rows of the batch a pass over W), more by gemm (h W^T by a C-ordered W^T made once a
#: call: transposed_if).  Measured (LSTM, config B's sizes, numba, 4 alternating processes,
#: 8 against 2): batch 3 5.2-5.7 ms against 3.8-4.8 (a loop compiled whole), batch 6 7.6-9.3
#: against 6.5-7.8 (two parts of 3 rows), batch 16 18-31 against 16-25; batches 1 and 2 go
#: by rows either way.
_BY_ROWS = 2


@numba.njit(**_OPTS)
def _dot_into(a, b, out):
    np.dot(a, b, out)


@numba.njit(**_OPTS)
def _dot_copied(a, b, out):
    out[...] = np.dot(a, b)


@overload(dot, jit_options=_OPTS)
def _dot_impl(a, b, out):
    # out of layout C, or A (a step of a sequence cut into rows: a part of a batch,
    # jit._JitLoop.split): the row kernels and gemm write any rows; NumPy's dot only C
    if isinstance(out, types.Array) and out.layout in ("C", "A") and out.ndim == 2:
        whole = _dot_into if out.layout == "C" else _dot_copied
        if isinstance(a, types.Array) and a.ndim == 2 and isinstance(b, types.Array) and \
                b.ndim == 2 and b.layout == "F" and a.dtype == b.dtype == out.dtype:
            def rows_of(a, b, out):           # a @ W.T, W C-ordered: rows times W's rows
                if a.shape[0] == out.shape[0] <= _BY_ROWS and a.shape[1] == b.shape[0] and \
                        b.shape[1] == out.shape[1]:
                    _times_rows(a, b.T, out)
                else:
                    whole(a, b, out)
            return rows_of

        if isinstance(a, types.Array) and a.ndim == 2 and isinstance(b, types.Array) and \
                b.ndim == 2 and a.dtype == b.dtype == out.dtype and \
                out.dtype in (types.float32, types.float64):
            def into(a, b, out):              # g @ W: a few rows by W's rows, more by gemm
                if a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
                    whole(a, b, out)          # (and its error)
                elif a.shape[0] > _BY_ROWS and (b.shape[1] <= 1 or b.strides[1] == b.itemsize) \
                        and (out.shape[1] <= 1 or out.strides[1] == out.itemsize):
                    gemm(a, b, out)
                elif 1 < a.shape[0] <= _BY_ROWS:
                    _rows_times(a, b, out)
                else:
                    whole(a, b, out)
            return into

        def as_is(a, b, out):                 # (an overload returns a function, not a
            whole(a, b, out)                  # dispatcher: Numba refuses one)
        return as_is

    def copied(a, b, out):                    # any other out: NumPy's dot, then a copy
        _dot_copied(a, b, out)
    return copied


#: A block of gemm's result: rows of 1 to 6 by this many vectors of 64 bytes (16 float32, 8
#: float64 each): with 6 rows, 24 of the 32 vector registers of AVX-512 hold the sums
_VECTORS = 4
_VECTOR_BYTES = 64


def _gemm_block(rows: int):
    """An intrinsic ``block(a, b, out, i0, j0)``: out[i0:i0 + rows, j0:j0 + c] = a[i0:i0 +
    rows] @ b[:, j0:j0 + c], c = _VECTORS vectors of 64 bytes, the sums in ``rows x
    _VECTORS`` vector registers (allocas, which LLVM promotes) for the whole of the
    product's length k: at each k, _VECTORS loads of b's row and one broadcast of a's value a
    row, each multiplied into its row's sums (llvm.fma).  No bounds checks: ``gemm``
    calls it only where the block lies inside a, b and out, b's and out's rows contiguous."""
    @intrinsic
    def block(typingctx, a, b, out, i0, j0):
        dt = b.dtype

        def codegen(context, builder, sig, args):
            cgutils = numba.core.cgutils
            A = context.make_array(sig.args[0])(context, builder, args[0])
            B = context.make_array(sig.args[1])(context, builder, args[1])
            O = context.make_array(sig.args[2])(context, builder, args[2])
            fty = context.get_data_type(dt)
            size = context.get_abi_sizeof(fty)
            lanes = _VECTOR_BYTES // size
            vty = ir.VectorType(fty, lanes)
            intp = context.get_value_type(types.intp)
            byte = ir.IntType(8).as_pointer()
            k_len = cgutils.unpack_tuple(builder, A.shape)[1]
            a_rows, a_cols = cgutils.unpack_tuple(builder, A.strides)
            b_rows = cgutils.unpack_tuple(builder, B.strides)[0]
            o_rows = cgutils.unpack_tuple(builder, O.strides)[0]
            zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * lanes)
            sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(_VECTORS)]
                    for _ in range(rows)]
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{lanes}f{8 * size}")
            spread = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            at_j0 = builder.mul(args[4], ir.Constant(intp, size))
            a0 = builder.gep(builder.bitcast(A.data, byte), [builder.mul(args[3], a_rows)])
            b0 = builder.gep(builder.bitcast(B.data, byte), [at_j0])

            def vector(row, v):
                at = builder.gep(row, [ir.Constant(intp, v * _VECTOR_BYTES)])
                return builder.bitcast(at, vty.as_pointer())

            with cgutils.for_range(builder, k_len) as loop:
                k = loop.index
                b_k = builder.gep(b0, [builder.mul(k, b_rows)])
                bs = [builder.load(vector(b_k, v), align=size) for v in range(_VECTORS)]
                a_k = builder.gep(a0, [builder.mul(k, a_cols)])
                for r in range(rows):
                    at = builder.gep(a_k, [builder.mul(ir.Constant(intp, r), a_rows)])
                    x = builder.load(builder.bitcast(at, fty.as_pointer()))
                    x = builder.insert_element(ir.Constant(vty, ir.Undefined), x,
                                               ir.Constant(ir.IntType(32), 0))
                    x = builder.shuffle_vector(x, ir.Constant(vty, ir.Undefined), spread)
                    for v in range(_VECTORS):
                        builder.store(builder.call(fma, [x, bs[v], builder.load(sums[r][v])]),
                                      sums[r][v])
            o0 = builder.gep(builder.bitcast(O.data, byte),
                             [builder.add(builder.mul(args[3], o_rows), at_j0)])
            for r in range(rows):
                row = builder.gep(o0, [builder.mul(ir.Constant(intp, r), o_rows)])
                for v in range(_VECTORS):
                    builder.store(builder.load(sums[r][v]), vector(row, v), align=size)
            return context.get_dummy_value()
        return types.none(a, b, out, types.intp, types.intp), codegen
    return block


_BLOCK1, _BLOCK2, _BLOCK3, _BLOCK4, _BLOCK5, _BLOCK6 = (_gemm_block(r) for r in range(1, 7))


@numba.njit(**dict(_OPTS, fastmath={"contract", "reassoc"}))
def gemm(a, b, out):
    """out = a @ b, b's and out's rows contiguous (a's values any strides apart): a matrix
    product on one thread, in blocks of 6 rows by 64 bytes x _VECTORS of columns, each
    block's sums in registers over the whole length of the product (_gemm_block).  The
    product of a loop compiled whole for a larger batch (dot), where NumPy's BLAS packs b
    at every call and Numba's np.dot would start a second pool of threads.  Measured
    (float32, a Zen 4, one thread): (16, 256) by (256, 1024) 74 us, 114 GFLOP/s, against
    179 for OpenBLAS on one thread and 112 on two; (16, 1024) by (1024, 256) 72 against
    116 and 78; two threads each a half of (32, 256) by (256, 1024) 80-90 against
    OpenBLAS's best form on two threads, 108.  The last columns, fewer than a block, go
    row by row (LLVM vectorises the loop over them)."""
    m, n = out.shape
    if a.shape != (m, b.shape[0]) or b.shape[1] != n or (n > 1 and (
            (b.shape[0] and b.strides[1] != b.itemsize) or (m and out.strides[1] != out.itemsize))):
        raise ValueError("gemm: out is not a @ b, or b's or out's rows are not contiguous")
    width = _VECTORS * _VECTOR_BYTES // b.itemsize
    full = n - n % width
    for j0 in range(0, full, width):
        i0 = 0
        while i0 + 6 <= m:
            _BLOCK6(a, b, out, i0, j0)
            i0 += 6
        left = m - i0
        if left == 5:
            _BLOCK5(a, b, out, i0, j0)
        elif left == 4:
            _BLOCK4(a, b, out, i0, j0)
        elif left == 3:
            _BLOCK3(a, b, out, i0, j0)
        elif left == 2:
            _BLOCK2(a, b, out, i0, j0)
        elif left == 1:
            _BLOCK1(a, b, out, i0, j0)
    if full < n:
        zero = like(out, 0.0)
        for i in range(m):
            o = out[i, full:]
            for j in range(n - full):
                o[j] = zero
            for k in range(a.shape[1]):
                x = a[i, k]
                w = b[k, full:]
                for j in range(n - full):
                    o[j] += x * w[j]


@numba.njit(**_OPTS)
def transposed_if(w, wide):
    """A C-ordered copy of w.T if ``wide`` (a loop's batch takes gemm: dot_t), else w
    itself: made once a call of a loop compiled whole, before its first step."""
    if not wide:
        return w
    t = np.empty((w.shape[1], w.shape[0]), w.dtype)
    transpose(np.ascontiguousarray(w), t)
    return t


@numba.njit(**_OPTS)
def dot_t(a, w, wt, out):
    """out = a @ w.T in a loop compiled whole: for a few rows by w's rows (dot), for more
    by gemm of wt, w.T made C-ordered before the loop (transposed_if: the same test; were
    wt w itself, by w's rows too)."""
    if a.shape[0] > _BY_ROWS and wt.ctypes.data != w.ctypes.data:
        gemm(a, wt, out)
    else:
        dot(a, w.T, out)


# ============================================================================
# A step's products in halves, on two cores (a batch of one or two rows)
# ============================================================================
#
# At a batch of one or two rows, a loop compiled whole reads a step's weights from its
# core's L2 cache at its read rate (71-95 GB/s here, whatever the kernel's form), and the
# machine's other core waits.  A product whose weights are large (NumbaPrinter.halves)
# goes in two halves: the loop's thread computes the first half of its rows of W (h W^T)
# or of W^T (g W), a helper thread (the loop's ``half_`` function: the same steps, the
# other half of each such product) the second, each from its own L2 (jit._JitLoop._in_halves).
# The two meet through ``halves``, an int64 array: the loop publishes the product it has
# reached (GO: its count in the call, from 1), the helper the product it has finished
# (DONE); the second half of each product is taken once, by one of them (CLAIM, compare and
# swap).  Neither waits for ever: a helper not there in time (not yet woken or compiled, or
# its core busy with another program) leaves its half to the loop, which then sets STOP and
# goes on alone, as does a loop told (STOP, products._leave) that the helper ended; STOP
# ends the helper's waits too (the loop declined, raised or went on alone).  Each slot is on
# a cache line of its own.  A ``halves`` of another length than HALVES (empty, or the
# flags of products run beside the loop: products.Behind): no helper, the products as before.

#: halves[GO], [DONE], [STOP], [CLAIM], [HERE] (the helper started: products.handoff), [OUT]
#: (it ended: products.Job; 8 int64 apart: 64 bytes), and its length
GO, DONE, STOP, CLAIM, HERE, OUT, HALVES = 0, 8, 16, 24, 32, 40, 48
#: The waits of either thread for the other, in PAUSEs (about 20-40 ns each on x86): at the
#: call's first product (a pool thread wakes in about 50 us here; one that compiles first
#: takes seconds), and at each later one (the other half takes 1-2 us)
_FIRST_WAIT, _WAIT = 1 << 18, 1 << 12


@intrinsic
def _publish(typingctx, halves, slot, value):
    """halves[slot] = value, a store that releases: what this thread wrote before it is
    seen by a thread that sees the value (_peek)."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(a.data, [args[1]])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, ptr, "release", 8)
        return context.get_dummy_value()
    return types.none(halves, slot, value), codegen


@intrinsic
def _peek(typingctx, halves, slot):
    """halves[slot], a load that acquires (see _publish); never hoisted out of a wait."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(a.data, [args[1]]), "acquire", 8)
    return types.int64(halves, slot), codegen


@intrinsic
def _claim(typingctx, halves, slot, turn):
    """halves[slot] from turn - 1 to turn in one step (compare and swap): whether this
    thread made it so, and no other."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        new = context.cast(builder, args[2], sig.args[2], types.int64)
        old = builder.sub(new, ir.Constant(ir.IntType(64), 1))
        done = builder.cmpxchg(builder.gep(a.data, [args[1]]), old, new, "acq_rel", "acquire")
        return builder.extract_value(done, 1)
    return types.boolean(halves, slot, turn), codegen


@intrinsic
def _pause(typingctx):
    """x86's PAUSE in a wait (less power; the core's other thread runs), elsewhere nothing."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = numba.core.cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@numba.njit(inline="always", **_OPTS)
def _cut(rows):
    """The first row of the helper's half of a matrix of ``rows`` rows: a multiple of 4
    (the kernels' rows a pass) from 8 rows on."""
    return rows // 8 * 4 if rows >= 8 else rows // 2


def dot_t_halves(a, w, wt, out, halves, turn):
    """out = a @ w.T as dot_t, or with a helper (``halves`` HALVES long) w's first half of
    rows here and the rest on the helper (other_half): ``turn`` counts the call's products
    in halves, from 1.  (Rows of a batch only: other operands as dot_t.)"""


@overload(dot_t_halves, jit_options=_OPTS)
def _dot_t_halves_impl(a, w, wt, out, halves, turn):
    if _rows(a, out):
        def in_halves(a, w, wt, out, halves, turn):
            if halves.shape[0] != HALVES:
                dot_t(a, w, wt, out)
            else:
                _halves(a, w, out, halves, turn)
        return in_halves
    return lambda a, w, wt, out, halves, turn: dot_t(a, w, wt, out)


def dot_halves(a, w, wt, out, halves, turn):
    """out = a @ w as dot (g W: a backward product), or with a helper a @ wt.T by halves of
    wt's rows, wt a C-ordered w.T (transposed_if: made where a helper runs), so that each
    half reads its rows of the weights whole (halves of w's rows would leave two partial
    sums; halves of its columns read it strided, 4.5x the time here)."""


@overload(dot_halves, jit_options=_OPTS)
def _dot_halves_impl(a, w, wt, out, halves, turn):
    if _rows(a, out):
        def in_halves(a, w, wt, out, halves, turn):
            if halves.shape[0] != HALVES:
                dot(a, w, out)
            else:
                _halves(a, wt, out, halves, turn)
        return in_halves
    return lambda a, w, wt, out, halves, turn: dot(a, w, out)


def _rows(a, out) -> bool:
    """Whether a product's operand and out are rows of a batch (2-D arrays), which the
    halves take."""
    return isinstance(a, types.Array) and a.ndim == 2 and isinstance(out, types.Array) and \
        out.ndim == 2


@numba.njit(**_OPTS)
def _halves(a, w, out, halves, turn):
    """out = a @ w.T: w's rows up to _cut here, the rest on the helper, or here too if it
    does not take them in time (then alone from here on: STOP)."""
    if _peek(halves, STOP):
        _times_rows(a, w, out)
        return
    cut = _cut(w.shape[0])
    _publish(halves, GO, turn)
    _times_rows(a, w[:cut], out[:, :cut])
    wait = _FIRST_WAIT if turn == 1 else _WAIT
    while _peek(halves, DONE) < turn:
        wait -= 1
        if (wait < 0 or _peek(halves, STOP)) and _claim(halves, CLAIM, turn):
            _publish(halves, STOP, 1)         # the helper did not take it: here, and alone on
            _times_rows(a, w[cut:], out[:, cut:])
            return
        _pause()                              # (else the helper has it: its DONE comes)


@numba.njit(**_OPTS)
def other_half(a, w, out, halves, turn):
    """The helper's half of the product ``turn`` (dot_t_halves, dot_halves: w is the
    matrix whose rows they halve): once the loop has reached it, rows _cut on of out = a @
    w.T; False, with nothing done, if told to stop, if the loop took it (and goes on
    alone), or if the loop does not reach it in time."""
    if turn == 1:
        _publish(halves, HERE, 1)
    wait = _FIRST_WAIT if turn == 1 else _WAIT
    while _peek(halves, GO) < turn:
        wait -= 1
        if wait < 0 or _peek(halves, STOP):
            return False
        _pause()
    if _peek(halves, STOP) or not _claim(halves, CLAIM, turn):
        return False
    cut = _cut(w.shape[0])
    _times_rows(a, w[cut:], out[:, cut:])
    _publish(halves, DONE, turn)
    return True


@numba.njit(**dict(_OPTS, fastmath={"contract", "reassoc"}))
def _times_rows(a, w, out):
    """out[b, i] = a[b] . w[i] for each row i of the C-ordered w: rows of a batch times W^T
    (W x(t), the forward products of a compiled loop), four of W's rows a pass, so that a
    row of a is read once for four and each row of W streams from the cache once for two
    rows of a.  Reassociated: LLVM keeps each sum in vector lanes (8 float32 at a time)
    and adds the lanes at the end, as BLAS does.

    Against Numba's np.dot of a by a C-ordered copy of W^T (BLAS), float32, one row, best
    of runs that moved 10-30% between processes: 256 x 128 1.31-1.79 against 1.70-1.80 us,
    128 x 128 0.65-0.69 against 0.83-0.95, 512 x 128 2.65-3.88 against 2.88-3.76; a whole
    call at batch 1 0.96-0.99x the time; and W^T is not copied each call.  Two rows of a
    a pass over W against one: 2 rows of 512 x 128 5.1 against 7.3 us, 4 rows 10.1 against
    14.2, 8 rows of 1024 x 256 92 against 147 (W read from the cache half as often)."""
    zero = like(w, 0.0)
    k, n = a.shape[1], out.shape[1]
    b = 0
    # rows whose values are contiguous (a part's rows of a step, jit._JitLoop.split, typed A)
    # read as rows typed C (_view), over which LLVM vectorises: the LSTM's forward product
    # in parts at batch 6 (3 rows a part) took 8.7 ms a call by rows typed A, against 3.3
    # for the whole batch on one thread
    if rows_contiguous(a) and rows_contiguous(out):
        while b + 2 <= a.shape[0]:
            _two_rows(_view(a, b, k), _view(a, b + 1, k), w, _view(out, b, n),
                      _view(out, b + 1, n), zero)
            b += 2
        if b < a.shape[0]:
            _one_row(_view(a, b, k), w, _view(out, b, n), zero)
        return
    while b + 2 <= a.shape[0]:
        _two_rows(a[b], a[b + 1], w, out[b], out[b + 1], zero)
        b += 2
    if b < a.shape[0]:
        _one_row(a[b], w, out[b], zero)


@numba.njit(inline="always", **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _one_row(x, w, o, zero):
    rows, n = w.shape
    i = 0
    while i + 4 <= rows:
        s0, s1, s2, s3 = zero, zero, zero, zero
        for k in range(n):
            v = x[k]
            s0 += w[i, k] * v
            s1 += w[i + 1, k] * v
            s2 += w[i + 2, k] * v
            s3 += w[i + 3, k] * v
        o[i], o[i + 1], o[i + 2], o[i + 3] = s0, s1, s2, s3
        i += 4
    while i < rows:
        s = zero
        for k in range(n):
            s += w[i, k] * x[k]
        o[i] = s
        i += 1


@numba.njit(inline="always", **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _two_rows(x, y, w, o, q, zero):
    rows, n = w.shape
    i = 0
    while i + 4 <= rows:
        s0, s1, s2, s3 = zero, zero, zero, zero
        t0, t1, t2, t3 = zero, zero, zero, zero
        for k in range(n):
            v, u = x[k], y[k]
            w0, w1, w2, w3 = w[i, k], w[i + 1, k], w[i + 2, k], w[i + 3, k]
            s0 += w0 * v
            s1 += w1 * v
            s2 += w2 * v
            s3 += w3 * v
            t0 += w0 * u
            t1 += w1 * u
            t2 += w2 * u
            t3 += w3 * u
        o[i], o[i + 1], o[i + 2], o[i + 3] = s0, s1, s2, s3
        q[i], q[i + 1], q[i + 2], q[i + 3] = t0, t1, t2, t3
        i += 4
    while i < rows:
        s, t = zero, zero
        for k in range(n):
            s += w[i, k] * x[k]
            t += w[i, k] * y[k]
        o[i], q[i] = s, t
        i += 1


@numba.njit(**dict(_OPTS, fastmath={"contract", "reassoc"}))
def _rows_times(a, w, out):
    """out[b] = a[b] @ w for each row b of a (g W: the backward's products of a compiled
    loop for a batch of a few), two rows of a a pass over w, four of w's rows at a time, so
    that each row of w streams from the cache once for two rows (BLAS's GEMM packs w every
    call: 22 against 4.5 us for 2 rows of 512 x 128 where one row takes a matrix-vector
    product; see dot); an odd last row alone (_one_row_by, not SciPy's BLAS, whose gemv
    starts OpenBLAS's threads beside a loop's parts).  Against that product a row,
    float32: 2 rows of 512 x 128 5.3 against 7.1 us, 4 rows 10.6 against 15.6, 8 rows of
    1024 x 256 95 against 152."""
    zero = like(w, 0.0)
    k, n = a.shape[1], out.shape[1]
    b = 0
    # (_times_rows's driver with the other kernels: a kernel handed in as an argument is not
    # cached by Numba, "dynamic globals", see _by_rows)
    if rows_contiguous(a) and rows_contiguous(out):
        while b + 2 <= a.shape[0]:
            _two_rows_by(_view(a, b, k), _view(a, b + 1, k), w, _view(out, b, n),
                         _view(out, b + 1, n), zero)
            b += 2
        if b < a.shape[0]:
            _one_row_by(_view(a, b, k), w, _view(out, b, n), zero)
        return
    while b + 2 <= a.shape[0]:
        _two_rows_by(a[b], a[b + 1], w, out[b], out[b + 1], zero)
        b += 2
    if b < a.shape[0]:
        _one_row_by(a[b], w, out[b], zero)


@numba.njit(inline="always", **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _one_row_by(d, w, o, zero):
    m, n = w.shape
    for k in range(n):
        o[k] = zero
    i = 0
    while i + 4 <= m:
        c0, c1, c2, c3 = d[i], d[i + 1], d[i + 2], d[i + 3]
        for k in range(n):
            o[k] += c0 * w[i, k] + c1 * w[i + 1, k] + c2 * w[i + 2, k] + c3 * w[i + 3, k]
        i += 4
    while i < m:
        c = d[i]
        for k in range(n):
            o[k] += c * w[i, k]
        i += 1


@numba.njit(inline="always", **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _two_rows_by(d, e, w, o, q, zero):
    m, n = w.shape
    for k in range(n):
        o[k] = zero
        q[k] = zero
    i = 0
    while i + 4 <= m:
        c0, c1, c2, c3 = d[i], d[i + 1], d[i + 2], d[i + 3]
        e0, e1, e2, e3 = e[i], e[i + 1], e[i + 2], e[i + 3]
        for k in range(n):
            w0, w1, w2, w3 = w[i, k], w[i + 1, k], w[i + 2, k], w[i + 3, k]
            o[k] += c0 * w0 + c1 * w1 + c2 * w2 + c3 * w3
            q[k] += e0 * w0 + e1 * w1 + e2 * w2 + e3 * w3
        i += 4
    while i < m:
        c, f = d[i], e[i]
        for k in range(n):
            o[k] += c * w[i, k]
            q[k] += f * w[i, k]
        i += 1


@numba.njit(**_OPTS)
def rowsum(a):
    """The sum of each row of a (B, n), kept as a column (B, 1)."""
    out = np.zeros((a.shape[0], 1), a.dtype)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, 0] += a[i, j]
    return out


@numba.njit(**_OPTS)
def positive(a):
    """1 where a > 0, else 0, as a's dtype (relu's derivative)."""
    return (a > 0).astype(a.dtype)


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
    """out = softmax of each row of a, as rnngraph.runtime.ops.softmax: exp(a - max) / sum."""
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


# -- for the fused kernels of rnngraph/compile/fuse.py ---------------------------------
def aligned(out, b):
    """Whether a fused kernel (compile/fuse.py), which goes row by row, every op of its run
    at a row before the next row, and stores each op's row as it computes it, keeps the
    ops' order with ``out`` among the arrays it writes and ``b`` another of its operands:
    they share no memory (a number shares none), or ``out`` has one row, or they share it
    only within each row (lanes of one buffer, the same rows: a gate's columns beside or
    over another's, a stacked gate and its parts)."""


@overload(aligned, jit_options=_OPTS)
def _aligned_impl(out, b):
    if not (isinstance(out, types.Array) and isinstance(b, types.Array)):
        return lambda out, b: True

    def impl(out, b):
        if out.size == 0 or b.size == 0 or out.ndim < 2 or out.shape[0] == 1:
            return True
        a_lo, a_hi = _span(out)
        b_lo, b_hi = _span(b)
        if a_hi <= b_lo or b_hi <= a_lo:
            return True
        if b.ndim != 2 or b.shape[0] != out.shape[0] or b.strides[0] != out.strides[0]:
            return False
        period = out.strides[0]
        wide_a, wide_b = out.shape[1] * out.itemsize, b.shape[1] * b.itemsize
        if period <= 0 or out.strides[1] != out.itemsize or b.strides[1] != b.itemsize or \
                wide_a > period or wide_b > period:
            return False
        # row i of out and row k of b meet only where i = k: b's rows start less than a
        # row's bytes after out's, and end before the next row of out starts
        d = b_lo - a_lo
        return wide_a - period <= d <= period - wide_b
    return impl


@numba.njit(**_OPTS)
def _span(a):
    """The first byte of ``a`` and one past its last."""
    lo = a.ctypes.data
    hi = lo
    for k in range(a.ndim):
        step = (a.shape[k] - 1) * a.strides[k]
        if step < 0:
            lo += step
        else:
            hi += step
    return lo, hi + a.itemsize


# -- exp, tanh and sigmoid over a contiguous row buffer, vectorised (the fused kernels') --
# exp computed value by value with its power of two made by bit casts did not vectorise
# (3.4-4.6 ns a value on an AVX2 machine).  Here the power of two is built in a buffer of
# integers of the value's width (2^k's exponent bits) read as floats, in a second loop, and
# each loop is straight-line arithmetic over contiguous buffers, which LLVM vectorises (8
# float32 or 4 float64 lanes on AVX2): tanh of 32 x 256 float32 values in 12 us against
# NumPy's 22 there.  float32 values are computed in float32 (Cephes' expf and tanhf, within
# 2 ulp of the float64 value), float64 values in float64 (Cephes' exp and tanh).
_F = np.float32
_EXPF = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
         _F(1.6666665459e-1), _F(5.0000001201e-1))
_TANHF = (_F(-5.70498872745e-3), _F(2.06390887954e-2), _F(-5.37397155531e-2),
          _F(1.33314422036e-1), _F(-3.33332819422e-1))


def scratch(x):
    """Integers of ``x``'s width, two rows of them: the powers of two of vexp (rows, not one
    row twice as long: an index j + n kept LLVM from vectorising, 41 against 7 us)."""


@overload(scratch, jit_options=_OPTS)
def _scratch_impl(x):
    if x.dtype == types.float32:
        return lambda x: np.empty((2, x.shape[0]), np.int32)
    return lambda x: np.empty((2, x.shape[0]), np.int64)


def _reduced(c):
    """exp(c) = m 2^k for c within exp's range: (m, k), k an integer of c's width (Cephes'
    reduction and polynomial: expf's in float32, exp's in float64)."""


@overload(_reduced, jit_options=_FMA)
def _reduced_impl(c):
    if c == types.float32:
        def expf(c):
            p0, p1, p2, p3, p4, p5 = _EXPF
            k = np.floor(c * _F(1.4426950408889634) + _F(0.5))
            r = c - k * _F(0.693359375) - k * _F(-2.12194440e-4)
            p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
            return p * r * r + r + _F(1.0), np.int32(k)
        return expf

    def exp64(c):
        k = np.floor(c * _LOG2E + 0.5)
        r = c - k * _C1 - k * _C2
        rr = r * r
        p = r * ((_P0 * rr + _P1) * rr + _P2)
        q = ((_Q0 * rr + _Q1) * rr + _Q2) * rr + _Q3
        return 1.0 + 2.0 * (p / (q - p)), np.int64(k)
    return exp64


def _two_to(x, k):
    """The bits of 2^k as a float of x's dtype (k within its exponents' range; k's type is
    no guide: Numba makes int32 arithmetic int64)."""


@overload(_two_to, jit_options=_OPTS)
def _two_to_impl(x, k):
    if x.dtype == types.float32:
        return lambda x, k: (k + np.int32(127)) << np.int32(23)
    return lambda x, k: (k + np.int64(1023)) << np.int64(52)


def vexp(x, out, bits):
    """out[:] = exp(x) over contiguous buffers; ``bits``: scratch(x).  ``out`` must not be
    ``x``: LLVM's check that two buffers do not overlap then sends the loop to its scalar
    version (35 against 6 us for 8192 values).  2^k is two factors (each exponent in range,
    so that results near overflow and subnormal ones come out right); inf above the largest
    argument, 0 below the smallest, NaN for NaN."""
    raise TypeError("jitops.vexp runs in Numba's compiled code only")


@overload(vexp, jit_options=_FMA)
def _vexp_impl(x, out, bits):
    if x.dtype == types.float32:
        def expf(x, out, bits):
            low, high = bits[0], bits[1]
            s1, s2 = low.view(np.float32), high.view(np.float32)
            for j in range(x.shape[0]):
                m, k = _reduced(min(max(x[j], _F(-104.0)), _F(88.75)))
                out[j] = m
                half = k >> np.int32(1)
                low[j] = _two_to(x, half)
                high[j] = _two_to(x, k - half)
            for j in range(x.shape[0]):
                v = out[j] * s1[j] * s2[j]
                a = x[j]
                v = np.float32(np.inf) if a > _F(88.72283) else v
                v = _F(0.0) if a < _F(-103.97208) else v
                out[j] = a if a != a else v
        return expf

    def exp64(x, out, bits):
        low, high = bits[0], bits[1]
        s1, s2 = low.view(np.float64), high.view(np.float64)
        for j in range(x.shape[0]):
            m, k = _reduced(min(max(x[j], -746.0), 710.0))
            out[j] = m
            half = k >> np.int64(1)
            low[j] = _two_to(x, half)
            high[j] = _two_to(x, k - half)
        for j in range(x.shape[0]):
            v = out[j] * s1[j] * s2[j]
            a = x[j]
            v = np.inf if a > _MAXLOG else v
            v = 0.0 if a < _MINLOG else v
            out[j] = a if a != a else v
    return exp64


def vtanh(x, out, bits):
    """out[:] = tanh(x) over contiguous buffers apart; ``bits``: scratch(x).  exp(2|x|)'s
    two loops with tanh's own arithmetic inside them (not vexp on a buffer of 2|x| and a
    third loop: 0.47 against 0.66 ns a float32 value, 768 of them); 2|x| is held at 44,
    where tanh is 1 in either precision, so that one factor 2^k is in range."""
    raise TypeError("jitops.vtanh runs in Numba's compiled code only")


@overload(vtanh, jit_options=_FMA)
def _vtanh_impl(x, out, bits):
    if x.dtype == types.float32:
        def tanhf(x, out, bits):
            t0, t1, t2, t3, t4 = _TANHF
            low = bits[0]
            s = low.view(np.float32)
            for j in range(x.shape[0]):
                m, k = _reduced(min(_F(2.0) * abs(x[j]), _F(44.0)))
                out[j] = m
                low[j] = _two_to(x, k)
            for j in range(x.shape[0]):
                a = x[j]
                z = a * a
                small = a + a * z * ((((t0 * z + t1) * z + t2) * z + t3) * z + t4)
                small = a if z == _F(0.0) else small         # tanh(-0) = -0
                big = _F(1.0) - _F(2.0) / (out[j] * s[j] + _F(1.0))
                big = -big if a < 0 else big
                v = small if abs(a) < _F(0.625) else big
                out[j] = a if a != a else v
        return tanhf

    def tanh64(x, out, bits):
        low = bits[0]
        s = low.view(np.float64)
        for j in range(x.shape[0]):
            m, k = _reduced(min(2.0 * abs(x[j]), 44.0))
            out[j] = m
            low[j] = _two_to(x, k)
        for j in range(x.shape[0]):
            a = x[j]
            z = a * a
            small = a + a * (z * ((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2))
            small = a if z == 0.0 else small            # tanh(-0) = -0
            big = 1.0 - 2.0 / (out[j] * s[j] + 1.0)
            big = -big if a < 0 else big
            v = small if abs(a) < 0.625 else big
            out[j] = a if a != a else v
    return tanh64


def vsigmoid(x, out, bits):
    """out[:] = 1 / (1 + exp(-x)) over contiguous buffers apart; ``bits``: scratch(x).
    exp(-x)'s two loops with the negation and the quotient inside them (0.38 against 0.75
    ns a float32 value, 768 of them).  -x is held within [-87, 88.37] (float32; [-708,
    709.43] float64), where one factor 2^k is in range (k at most 127, 1023): below, 1 / (1
    + exp(-x)) is 1 in either precision; above, the value is subnormal, held at its value at
    the bound (4.2e-39 in float32 for x in (-88.72, -88.37), where it falls to 2.9e-39:
    within the smallest normal number), and 0 where exp(-x) overflows, as NumPy's.  In
    float32 the quotient is corrected for the rounding of 1 + e (a two-sum: within 2 ulp,
    as the float64 quotient that cost 0.53 ns a value)."""
    raise TypeError("jitops.vsigmoid runs in Numba's compiled code only")


@overload(vsigmoid, jit_options=_FMA)
def _vsigmoid_impl(x, out, bits):
    if x.dtype == types.float32:
        def sigmoidf(x, out, bits):
            low = bits[0]
            s = low.view(np.float32)
            for j in range(x.shape[0]):
                m, k = _reduced(min(max(-x[j], _F(-87.0)), _F(88.37)))
                out[j] = m
                low[j] = _two_to(x, k)
            for j in range(x.shape[0]):
                e = out[j] * s[j]
                d = _F(1.0) + e
                err = min(e, _F(1.0)) - (d - max(e, _F(1.0)))     # 1 + e = d + err exactly
                q = _F(1.0) / d
                v = q - q * q * err
                a = x[j]
                v = _F(0.0) if a < _F(-88.72283) else v
                out[j] = a if a != a else v
        return sigmoidf

    def sigmoid64(x, out, bits):
        low = bits[0]
        s = low.view(np.float64)
        for j in range(x.shape[0]):
            m, k = _reduced(min(max(-x[j], -708.0), 709.43))
            out[j] = m
            low[j] = _two_to(x, k)
        for j in range(x.shape[0]):
            v = 1.0 / (1.0 + out[j] * s[j])
            a = x[j]
            v = 0.0 if a < -_MAXLOG else v
            out[j] = a if a != a else v
    return sigmoid64


def like(x, value):
    """``value`` as a number of ``x``'s dtype (a fused kernel's constants: float32 arithmetic
    stays float32)."""


@overload(like, jit_options=_OPTS)
def _like_impl(x, value):
    if x.dtype == types.float32:
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@intrinsic
def _row_pointer(typingctx, a, i):
    """A pointer to the first value of row i of the 2-D array ``a`` (of ``a`` if 1-D)."""
    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        if signature.args[0].ndim == 1:
            return ary.data
        stride = numba.core.cgutils.unpack_tuple(builder, ary.strides)[0]
        at = builder.gep(builder.bitcast(ary.data, ir.IntType(8).as_pointer()),
                         [builder.mul(args[1], stride)])
        return builder.bitcast(at, ary.data.type)
    return types.CPointer(a.dtype)(a, types.intp), codegen


@numba.njit(inline="always", **_OPTS)
def _view(a, i, cols):
    """Row i of ``a`` (``a`` if 1-D), whose values are contiguous, as a 1-D array typed C:
    made from its pointer, without the reference count of a view of ``a`` (whose atomic
    updates cost more than the copy they save: 2.9 against 1.4 us for a multiply of two
    32 x 256 lanes, NumPy's 5.1)."""
    return numba.carray(_row_pointer(a, i), cols)


def row_step(a, rows, cols):
    """How a fused kernel (compile/fuse.py) of ``rows`` rows of ``cols`` values reads the
    operand ``a`` through ``_view(a, i * step, cols)``: 1, its row i (an array of those
    rows); 0, its one row at every row (a bias, a batch of one); -1, neither (its values
    not contiguous within a row, or of another shape): the kernel declines."""


@overload(row_step, jit_options=_OPTS)
def _row_step_impl(a, rows, cols):
    if isinstance(a, types.Array) and a.ndim == 2:
        def matrix(a, rows, cols):
            if a.shape[1] != cols or (cols > 1 and a.strides[1] != a.itemsize):
                return -1
            return 0 if a.shape[0] == 1 else 1 if a.shape[0] == rows else -1
        return matrix
    if isinstance(a, types.Array) and a.ndim == 1:
        return lambda a, rows, cols: 0 if a.shape[0] == cols and (
            cols <= 1 or a.strides[0] == a.itemsize) else -1
    if isinstance(a, (types.NoneType, types.Omitted)) or a is types.none:
        return lambda a, rows, cols: 0       # a cotangent not given: not read
    return lambda a, rows, cols: -1


def rows_contiguous(out):
    """Whether the values of each row of ``out`` (2-D, or 1-D: one row) are contiguous and
    its rows apart from each other, so that a fused kernel writes its results there through
    ``put_row``, a row at a time."""


@overload(rows_contiguous, jit_options=_OPTS)
def _rows_contiguous_impl(out):
    if isinstance(out, types.Array) and out.ndim == 1 and out.mutable:
        return lambda out: out.shape[0] <= 1 or out.strides[0] == out.itemsize
    if isinstance(out, types.Array) and out.ndim == 2 and out.mutable:
        return lambda out: (out.shape[1] <= 1 or out.strides[1] == out.itemsize) and (
            out.shape[0] <= 1 or out.strides[0] >= out.shape[1] * out.itemsize)
    return lambda out: False


@numba.njit(**_OPTS)
def put_row(out, i, values):
    """out's row i (``out`` if 1-D) = values, a contiguous 1-D array; ``out``'s rows are
    contiguous (``rows_contiguous``).  A loop over arrays typed C, which LLVM vectorises
    (``store``'s, through layout A, went value by value)."""
    dst = _view(out, i, values.shape[0])
    for j in range(values.shape[0]):
        dst[j] = values[j]
