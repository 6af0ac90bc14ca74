"""The products over every step's rows of ``backend="numba"`` on two cores, and the pool
thread that waits a moment for the next job.

At a batch of one or two rows, a call's time outside its loops is mostly the products
over every step's rows before and after them: the LSTM at config B (batch 1, input 64,
hidden 128, 200 steps, float32) spent 480 of its 2200 us in four of them, the input's
product before the forward loop, and dW_h, dW_x and dx after the backward loop (13-26
MFLOP each).  NumPy's BLAS runs them on two threads, but its threads were put to sleep
for the loops (jit.quiet_blas: they would take the helper's core) and took 45-50 us to
start again; and the loops' helper thread (jit._JitLoop._in_halves) took 25-70 us to
wake from the pool's queue at each loop, while the loop waited for it.

Here such a product (:func:`dot`, :func:`matmul`) goes in chunks of rows, each by gemm of
jitops (113-115 GFLOP/s on one core of a Zen 4 at these shapes, against 87-100 for
OpenBLAS on one thread), which the caller's thread and the pool's take in turn (compare
and swap), so that a helper late to wake costs the caller nothing: it takes the chunks
that are left.  And the pool's thread, after each job of ours (:func:`submit`), waits a
moment, spinning, for the next (_leave), so that the products and the loops of one call
find it awake: 10 us from a job's submit to its start, against 23-27 from the queue.

Two threads that both want the GIL cost as much: the one that waits sleeps, and wakes in
25-50 us here.  So the caller publishes a job's ticket, and waits for the job's start and
end, in compiled code (without the GIL), and the job's thread says it ended only once its
Python is done: from a job's submit to its start took 36 us, not 11, when the job's end
was a Future's set_result, which the caller's next submit then waited on.

After a backward loop that runs alone on its core (a batch of a few rows, no helper for
halves), the products over every step's rows that follow it run beside it (:class:`Behind`):
the pool's thread takes the rows of the steps the loop has finished, while it runs.

Measured (in one process, alternating 5 calls of each way for 16-20 s, medians, float32,
config B, against NumPy's products and the helper woken at each loop): products in chunks
from 8 MFLOP, gemm on one thread below: the LSTM 0.860x and 0.879x the time, Cho's GRU
0.914x and 1.001x, torch.nn.GRU's equations 0.961x, the Elman RNN 0.988x and 1.041x; from
3 MFLOP, the RNN 1.111x (the chunks' cost outweighs a product of 3 MFLOP); NumPy's below
8 MFLOP, Cho's GRU 0.983x.  Any other product (larger, one thread, where jit.may_split says
no) is NumPy's np.dot, as before.
"""
from __future__ import annotations

import itertools
import sys
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import jit
from .jitops import (_OPTS, HALVES, HERE, OUT, STOP, _claim, _pause, _peek, _publish, gemm,
                     transpose)

#: box[NEXT] the next chunk to take, box[DONE] and box[DONE + 16] the chunks the caller and
#: the helper finished (each on a cache line of its own; a box is as long as a loop's
#: ``halves``, whose STOP and OUT the helper's end sets in either: _leave)
NEXT, DONE = 0, 8
#: A chunk's work, in multiply-adds x 2: about 13 us on one core at 115 GFLOP/s
CHUNK_FLOPS = 1_500_000
#: The products in chunks on two cores: from 8 MFLOP to 64 MFLOP, with b at most 512 KiB
#: (gemm reads b once for every 6 rows of a: from the core's L2 cache); smaller ones by gemm
#: on the caller's thread (BLAS's two threads would share a core with a lingering thread,
#: after waking), larger ones NumPy's, whose wake is then a small part of the product
MIN_FLOPS, MAX_FLOPS, MAX_B_BYTES = 8_000_000, 64_000_000, 512 * 1024
#: How a product below MIN_FLOPS goes (_how): 1, gemm on this thread
SOLO = 1
#: The PAUSEs (26 ns each here) the pool's thread waits, spinning, for our next job after
#: one of ours (2^15: about 0.85 ms, longer than the loop of a model without halves, which
#: the products after it then find awake; in one process, alternating, against 2^14: Cho's
#: GRU 0.96x against 0.98x the old way's time, the LSTM 0.84x against 0.86x, at config B),
#: and those the caller waits for the helper to start (handoff) or to end (Job.ended)
#: before it goes on without it
LINGER, _WAIT = 1 << 15, 1 << 10

#: _JOBS[0]: the ticket of the job submitted last (submit), which a lingering thread
#: watches: it returns once a later one is out, to take the job just queued
_JOBS = np.zeros(8, np.int64)
_TICKETS = itertools.count(1)


class Job:
    """A function of ours run on the pool's thread (:func:`submit`): its result or error,
    and ``flags``, the loop's ``halves`` or the product's box, whose STOP and OUT its end
    sets from code run without the GIL (_leave)."""

    __slots__ = ("flags", "result", "error")

    def __init__(self, flags: np.ndarray):
        self.flags, self.result, self.error = flags, None, None

    def ended(self, pauses: int = _WAIT) -> bool:
        """Whether the job ended (or ends within ``pauses`` PAUSEs: spinning, the GIL let go)."""
        return _until(self.flags, OUT, pauses)


def no_linger() -> None:
    """A lingering thread ends its wait now: the pool's next job is not ours (a loop's parts,
    jit._JitLoop.split), and would wait for it.  (The thread takes the GIL back meanwhile.)"""
    _JOBS[0] = next(_TICKETS)


def submit(fn, flags: np.ndarray, *args) -> tuple[Job, int]:
    """fn(*args, flags) on the pool's thread: the Job, and its ticket.  The thread then waits
    a moment, spinning (_leave), for our next job, whose caller publishes its ticket in
    _JOBS[0] from code run without the GIL (:func:`handoff`, _chunks): a thread that
    lingers takes it at once, where one asleep in the pool's queue wakes in 25-60 us here.

    Neither thread waits for the GIL while the other holds it (it would sleep, and take as
    long to wake): the caller publishes the ticket and waits for the job's start (HERE) and
    end (OUT) in compiled code, and the job's thread sets OUT only once its Python is done."""
    job, ticket = Job(flags), next(_TICKETS)

    def work():
        try:
            job.result = fn(*args, flags)
        except BaseException as e:               # (the caller raises it: Job.error)
            job.error = e
        _leave(flags, _JOBS, ticket, LINGER)

    jit._pool(1).submit(work)
    return job, ticket


@numba.njit(nogil=True, **_OPTS)
def _leave(flags, jobs, ticket, pauses):
    """The end of a job: STOP and OUT set in its ``flags``, then a spin while jobs[0] is no
    later than ``ticket`` (no job submitted since; tickets only grow, and a job may end
    before its caller published its own) and ``pauses`` last."""
    _publish(flags, STOP, 1)
    _publish(flags, OUT, 1)
    while _peek(jobs, 0) <= ticket and pauses > 0:
        pauses -= 1
        _pause()


@numba.njit(nogil=True, **_OPTS)
def _until(flags, slot, pauses):
    """Whether flags[slot] is set within ``pauses`` PAUSEs."""
    while _peek(flags, slot) == 0:
        pauses -= 1
        if pauses < 0:
            return False
        _pause()
    return True


@numba.njit(nogil=True, **_OPTS)
def handoff(jobs, ticket, halves, pauses):
    """A loop's helper just submitted (jit._JitLoop._in_halves): its ticket published, and
    a wait of at most ``pauses`` PAUSEs for it to start (halves[HERE]), so that the loop
    takes the GIL back only once the helper no longer needs it."""
    _publish(jobs, 0, ticket)
    _until(halves, HERE, pauses)


@numba.njit(nogil=True, **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _chunks(a, b, out, rows, who, jobs, ticket, box):
    """out = a @ b for the chunks of ``rows`` rows not yet taken, taken one at a time
    (compare and swap of box[NEXT]); ``who`` 0 the caller, which publishes the helper's
    ``ticket`` first (submit), 1 the helper.  The caller then waits for every chunk, and
    for the helper's end (a short wait: its chunks are done); False if a chunk the helper
    took is not done within a long one (the helper descheduled)."""
    if who == 0:
        _publish(jobs, 0, ticket)
    else:
        _publish(box, HERE, 1)
    m = out.shape[0]
    n = (m + rows - 1) // rows
    done = 0
    while True:
        c = _peek(box, NEXT)
        if c >= n:
            break
        if _claim(box, NEXT, c + 1):
            lo = c * rows
            hi = min(m, lo + rows)
            gemm(a[lo:hi], b, out[lo:hi])
            done += 1
            _publish(box, DONE + 16 * who, done)
    if who == 1:
        return True
    pauses = 1 << 16
    while _peek(box, DONE) + _peek(box, DONE + 16) < n:
        pauses -= 1
        if pauses < 0:
            return False
        _pause()
    # a helper that took chunks ends in a moment: the GIL is then ours alone
    pauses = 1 << 10
    while _peek(box, HERE) and not _peek(box, OUT) and pauses > 0:
        pauses -= 1
        _pause()
    return True


def _how(a, b, out, here: bool = False) -> int:
    """How out = a @ b goes: 0 NumPy's np.dot, 1 gemm on this thread, 2 in chunks on two
    cores (see MIN_FLOPS); ``here``: gemm on this thread where it takes the operands."""
    if not (a.ndim == b.ndim == out.ndim == 2 and a.dtype == b.dtype == out.dtype and
            a.dtype in (np.float32, np.float64) and out.shape == (a.shape[0], b.shape[1]) and
            a.shape[1] == b.shape[0] and (out.shape[1] <= 1 or out.strides[1] == out.itemsize)):
        return 0
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    if here:
        return 1 if flops else 0
    if not 0 < flops <= MAX_FLOPS or b.nbytes > MAX_B_BYTES or jit.threads() < 2 or \
            not jit.may_split():
        return 0
    return 2 if flops >= MIN_FLOPS else SOLO


@numba.njit(nogil=True, **dict(_OPTS, fastmath={"contract", "reassoc"}))
def _gemm(a, b, out):
    """gemm, the GIL let go: a thread's product beside another's loop (Behind) leaves it the
    GIL, which it takes back at the loop's end without a wait."""
    gemm(a, b, out)


def dot(a: np.ndarray, b: np.ndarray, out: np.ndarray, here: bool = False) -> np.ndarray:
    """out[...] = a @ b, a and out every step's rows (of a product over all steps): in
    chunks on two cores, or on this thread, where :func:`_how` says, else NumPy's np.dot;
    ``here``, on this thread alone (Behind's products on the pool's thread)."""
    how = _how(a, b, out, here)
    if how == 0:
        return np.dot(a, b, out=out)
    if b.shape[1] > 1 and b.strides[1] != b.itemsize:
        b = np.ascontiguousarray(b) if here else _rows_of(b)
    if how == 1:
        try:
            _gemm(a, b, out)
        except numba.core.errors.NumbaError:    # (operands gemm cannot take)
            np.dot(a, b, out=out)
        return out
    rows = max(6, round(CHUNK_FLOPS / (2 * a.shape[1] * b.shape[1]) / 6) * 6)
    jit.quiet_blas()
    try:
        helper, ticket = submit(_chunks, np.zeros(HALVES, np.int64), a, b, out, rows, 1, _JOBS,
                                0)
    except RuntimeError:                    # (the pool shut down: the interpreter's exit)
        return np.dot(a, b, out=out)
    try:
        if _chunks(a, b, out, rows, 0, _JOBS, ticket, helper.flags):
            return out
    except numba.core.errors.NumbaError:    # (operands gemm cannot take: nor can the helper)
        helper.flags[NEXT] = 1 << 62
        helper.ended(1 << 62)
        return np.dot(a, b, out=out)
    helper.ended(1 << 62)                   # (its chunks are done when it ends)
    return out


def _rows_of(b: np.ndarray) -> np.ndarray:
    """b (W.T, of a forward's product) with its rows contiguous, which gemm reads: copied
    into an array kept for the next call (10 us for W 512 x 64 float32 here; a new one took
    30, its pages fresh each call).  The only caller is the one thread may_split allows."""
    key = (b.shape, b.dtype.str)
    if key not in _COPIES:
        if len(_COPIES) >= 16:
            _COPIES.clear()
        _COPIES[key] = np.empty(b.shape, b.dtype)
    copy = _COPIES[key]
    if b.T.flags.c_contiguous:
        transpose(b.T, copy)
    else:
        np.copyto(copy, b)
    return copy


_COPIES: dict = {}


def matmul(a: np.ndarray, b: np.ndarray, here: bool = False) -> np.ndarray:
    """a @ b as a new array (a parameter's gradient over every step's rows: g^T v)."""
    return dot(a, b, np.empty((a.shape[0], b.shape[1]), np.result_type(a, b)), here)


class _Here:
    """:func:`dot` and :func:`matmul` on the calling thread alone: Behind's on the pool's
    thread, whose chunks would wait for that thread itself."""

    @staticmethod
    def dot(a, b, out):
        return dot(a, b, out, True)

    @staticmethod
    def matmul(a, b):
        return matmul(a, b, True)


#: The fewest steps a loop must have for the products after it to run behind it (Behind),
#: and the fewest steps' rows the pool's thread takes at a time (each take costs 15-20 us
#: of Python, four products' calls)
BEHIND_STEPS, LEAST = 16, 8
#: The PAUSEs the caller waits for the pool's thread to start before the loop (tests: a
#: thread there at the loop's first step); none, for the thread takes nothing before
#: LEAST steps are done
HANDOFF = 0
#: behind[STEPS]: the steps the loop has done (published at each step's start and at its
#: end: NumbaPrinter.function), behind[BOUND]: the step after which the pool's thread has
#: taken every step's rows (-1 once the caller took the rest); a Behind's flags are a
#: loop's ``halves`` and two slots more
STEPS, BOUND = HALVES, HALVES + 8


class Behind:
    """A backward loop of a batch of a few rows, compiled whole on one thread, and the
    products over every step's rows after it (its weights' gradients, the inputs'), which
    run beside it: while the loop runs, the pool's thread takes the rows of the steps it
    has finished, as many as are final each time (at least LEAST steps), and computes the
    products over them (its ``tail``); once the loop has ended, this thread takes the rows
    left while the pool's finishes its last take.  The products of a sum over the steps
    (g^T v) come in parts, added.  At a batch of one or two rows the loop runs a step in
    2-3 us, and the products over a step's rows take 2-3 us on one core: they keep up.

    The generated code's ``tail(lo, hi, products)`` computes the products over the steps
    lo + 1..hi and returns the sums' parts (rnngraph/compile/numba_loops.py,
    NumbaPrinter.behind); ``lag``: the rows of step s are final once the loop has run its
    steps T..s - lag (lag_behind there).  Anywhere else (a larger batch, in parts, one
    thread, a loop whose products run in halves, a loop in NumPy) the loop
    runs and the products after it, as before.

    Measured (Cho's GRU, config B: batch 1, hidden 128, T 200, float32, its backward loop
    560-670 us and the four products after it 385 us on one core): see bench/results.txt."""

    __slots__ = ("tail", "T", "lag", "done", "parts")

    def __init__(self, tail, T: int, lag: int):
        self.tail, self.T, self.lag = tail, T, lag
        self.done = T           # the products are done for the steps after this one
        self.parts: tuple = ()  # and their sums' parts

    def loop(self, run, *args) -> bool:
        """``run(*args)``, a loop, with the products behind it where it may."""
        T, lag = self.T, self.lag
        if T - lag < BEHIND_STEPS or not isinstance(run, jit._JitLoop) or not run.alone(args):
            return run(*args)
        flags = np.zeros(BOUND + 8, np.int64)
        flags[BOUND] = T
        jit.quiet_blas()                    # (no BLAS thread spinning on the helper's core)
        job, rest, bound = None, (), -1
        try:
            try:
                job, ticket = submit(_behind, flags, self.tail, T, lag, LEAST)
            except RuntimeError:            # (the pool shut down: the interpreter's exit)
                return run(*args)
            handoff(_JOBS, ticket, flags, HANDOFF)     # (a lingering thread takes it now)
            ran = run(*args, flags=flags)
            bound = _close(flags)           # the rows it has not taken: ours, beside its last
            if ran and bound > 0:
                rest = self.tail(0, bound, _Here)
        finally:                            # its rows written before anything reads them
            if job is not None and bound < 0:
                bound = _close(flags)
            if job is not None and bound < T:   # (else it took none, and takes none now)
                job.ended(1 << 62)
        if job.error is not None and (bound < T or job.ended(0)):
            raise job.error                 # (one that failed before its first take too)
        parts = job.result[0] if bound < T else ()
        if not ran:                         # declined before its first step: NumPy's loop
            return False
        self.parts, self.done = _added(parts, rest), 0
        return True

    def sums(self) -> tuple:
        """The sums' parts over the steps not yet done (all of them, but after a loop run
        with the products behind it), added to those done."""
        if self.done == 0:
            return self.parts
        return self.tail(0, self.done, _SELF)


def _behind(tail, T: int, lag: int, least: int, flags) -> tuple:
    """Behind's job on the pool's thread: the products over the rows of the steps the loop
    has finished, taken as they are final, until the caller takes the rest: the sums'
    parts, and the step below which it took none."""
    flags[HERE] = 1
    hi, parts = T, ()
    while hi > 0:
        lo = _final(flags, T, lag, hi, least)
        if lo < 0:
            break
        parts = _added(parts, tail(lo, hi, _Here))
        hi = lo
    return parts, hi


def _added(parts: tuple, more: tuple) -> tuple:
    """The sums' parts of two takes added, into the first's arrays (its own: a product's
    new array); either may be () (no take)."""
    for part, m in zip(parts, more):
        part += m
    return parts or more


@intrinsic
def _swap(typingctx, flags, slot, old, new):
    """flags[slot] from ``old`` to ``new`` in one step (compare and swap): whether it was
    ``old``."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        was = context.cast(builder, args[2], sig.args[2], types.int64)
        now = context.cast(builder, args[3], sig.args[3], types.int64)
        done = builder.cmpxchg(builder.gep(a.data, [args[1]]), was, now, "acq_rel", "acquire")
        return builder.extract_value(done, 1)
    return types.boolean(flags, slot, old, new), codegen


@numba.njit(nogil=True, **_OPTS)
def _final(flags, T, lag, hi, least):
    """The step lo < hi whose later steps' rows (up to hi) are final (the loop has run its
    steps T..s - lag for each s of them), taken (BOUND from hi to lo) once at least
    ``least`` are, or all of them (the loop ended); -1 once the caller took the rest, or
    after about a minute with nothing to take (the caller then takes it: no wait for
    ever, whatever happened to the caller)."""
    for _ in range(1 << 26):                # (32 PAUSEs each: 0.8 us here)
        done = _peek(flags, STEPS)
        lo = 0 if done >= T else max(T - done + lag, 0)
        if hi - lo >= least or (done >= T and hi > lo):
            return lo if _swap(flags, BOUND, hi, lo) else -1
        if _peek(flags, BOUND) != hi:
            return -1
        for _ in range(32):
            _pause()
    return -1


@numba.njit(nogil=True, **_OPTS)
def _close(flags):
    """The caller's take once the loop has ended: the step below which the pool's thread
    took no rows (BOUND set to -1: it takes no more)."""
    while True:
        bound = _peek(flags, BOUND)
        if _swap(flags, BOUND, bound, -1):
            return bound


_SELF = sys.modules[__name__]

