"""The runtime of ``backend="numba"``: the loops' module, Numba's cache, the fallback.

:mod:`rnngraph.fastgen` (``jit=True``) writes each time loop as a function of its
own (``jit_loop``) and their module (``loops_module``); here that module becomes a
file of the cache folder, named by the hash of its text, so that Numba's cache of
its machine code serves every later process, size and dtype; each loop becomes a
:class:`_JitLoop`, which the generated code calls for a batch of a few rows, or of more
rows run in parts on threads (where :func:`may_split`), or of one or two rows with a
helper thread computing half of each large product (_JitLoop._in_halves).  Numba is
imported by :func:`numba_or_error` only: the NumPy backend needs none of this.
"""
from __future__ import annotations

import hashlib
import linecache
import os
import re
import sys
import tempfile
import threading
import types
import warnings
from concurrent.futures import wait

import numpy as np

from ..errors import RnnGraphError


def numba_or_error():
    """Numba, for ``backend="numba"``; its np.dot calls BLAS through SciPy."""
    try:
        import numba
        import scipy  # noqa: F401
    except ImportError:
        raise RnnGraphError("backend='numba' needs numba and scipy: "
                            "pip install 'rnngraph[numba]'") from None
    return numba


def cache_dir() -> str:
    """Where ``backend="numba"`` keeps the generated modules and Numba keeps its
    machine code for them: $RNNGRAPH_CACHE_DIR, else rnngraph in $XDG_CACHE_HOME or
    ~/.cache."""
    return os.environ.get("RNNGRAPH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache")),
        "rnngraph")


def _loops_module(source: str) -> types.ModuleType:
    """The loops' functions as a module: from a file of the cache folder if it can be
    written, registered in sys.modules (Numba's cache finds a function's globals by
    its module's name), named by the hash of its text."""
    name = f"rnngraph_loops_{hashlib.sha256(source.encode()).hexdigest()[:32]}"
    path = _source_file(source, name)
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = path
    filename = path or f"<{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def _source_file(source: str, name: str) -> str | None:
    """The loops' module as the file ``name``.py (written once, atomically), so
    that Numba's cache (beside it, in __pycache__) finds its machine code again in the
    next process: Numba caches only functions whose source file exists, and keys the
    cache on the file's time stamp, which a file written once keeps.  None if the
    folder cannot be written (then Numba compiles in every process)."""
    root = cache_dir()
    path = os.path.join(root, f"{name}.py")
    if os.path.exists(path):
        return path
    try:
        os.makedirs(root, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def threads() -> int:
    """The threads a loop compiled whole runs on, each over a part of the batch's rows
    (:class:`_JitLoop`): $RNNGRAPH_THREADS, else the processors this process may use."""
    text = os.environ.get("RNNGRAPH_THREADS", "").strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # (not on Linux)
        return os.cpu_count() or 1


#: The threads of the parts after the first (the caller's thread runs that one), which also
#: run the loops' helpers and the products' chunks (rnngraph/runtime/products.py)
_POOL: list = []
_POOL_LOCK = threading.Lock()
_PREFIX = "rnngraph-loop"


def _openblas() -> list:
    """blas_thread_shutdown_ of each OpenBLAS loaded now (NumPy's; SciPy's, which loads
    with the first loop Numba compiles), through ctypes with the GIL held (PyDLL); none
    where /proc/self/maps does not say (not Linux), or where one lacks it (never split).

    The maps are read again only where a module was imported since (a library comes with
    an import: SciPy's OpenBLAS with numba's first compile), or in a forked process: a read
    took 1.2 ms here (923 mappings once Numba and LLVM are loaded), and a loop run in
    parts asked three times a call (the call site, split, quiet_blas), 7 ms of the LSTM's
    48 at batch 32."""
    key = (len(sys.modules), os.getpid())
    if _FOUND and _FOUND[0] == key:
        return _FOUND[1]
    import ctypes
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f
                     if "openblas" in line.lower() and ".so" in line}
    except OSError:
        paths = set()
    found = []
    for path in sorted(paths):
        if path not in _BLAS:
            try:
                _BLAS[path] = ctypes.PyDLL(path).blas_thread_shutdown_
            except (OSError, AttributeError):
                _BLAS[path] = None
        if _BLAS[path] is None:
            found = []
            break
        found.append(_BLAS[path])
    _FOUND[:] = [key, found]
    return found


_BLAS: dict = {}          # a library's path -> its blas_thread_shutdown_ (None: it has none)
_FOUND: list = []         # [(modules imported, pid) when the maps were read, _openblas()]


def may_split() -> bool:
    """Whether a loop may run in parts: only where OpenBLAS's threads can be put to sleep
    first (:func:`quiet_blas`), and no thread but the caller's, the parts' and threads that
    never call BLAS runs Python (:func:`_calls_no_blas`), so that no other thread can be
    in a BLAS call then.  Else (another BLAS, another system, a program with threads of its
    own) the loops run on one thread, as before."""
    return bool(_openblas()) and all(_calls_no_blas(t) for t in threading.enumerate())


#: Threads that never call BLAS, by their class or, for a plain Thread, their target (module
#: and qualified name): a Jupyter kernel's (ipykernel 7: its I/O thread and the two that read
#: the pipes of stdout and stderr, heartbeat, control, shell channel, parent poller;
#: IPython's history saving) and tqdm's monitor.  A notebook has them all the time: the
#: numba LSTM at batch 32 (hidden 256, T 100) in a kernel took 47.8-55.8 ms a call in parts
#: against 61.3-66.6 on one thread, when they counted as threads that might.  Named one by
#: one, not by package: ipykernel's subshells (SubshellThread) and IPython's background
#: jobs run a user's code, which may.
_NO_BLAS = frozenset({
    "ipykernel.iostream.IOPubThread._thread_main", "ipykernel.iostream.OutStream._watch_pipe_fd",
    "ipykernel.heartbeat.Heartbeat", "ipykernel.control.ControlThread",
    "ipykernel.shellchannel.ShellChannelThread", "ipykernel.parentpoller.ParentPollerUnix",
    "ipykernel.parentpoller.ParentPollerWindows", "IPython.core.history.HistorySavingThread",
    "tqdm._monitor.TMonitor"})


def _calls_no_blas(t: threading.Thread) -> bool:
    """Whether the thread ``t`` is the caller's, a part's, or one of _NO_BLAS."""
    if t is threading.current_thread() or t.name.startswith(_PREFIX):
        return True
    what = type(t) if type(t) is not threading.Thread else getattr(t, "_target", None)
    return f"{getattr(what, '__module__', '')}.{getattr(what, '__qualname__', '')}" in _NO_BLAS


def quiet_blas() -> None:
    """OpenBLAS's threads, which after a product wait for the next one spinning for about
    0.1 s (its THREAD_TIMEOUT, 2^28 cycles), put to sleep (blas_thread_shutdown_, which
    OpenBLAS calls itself before a fork; its next product starts them again, 10-60 us).
    Spinning beside a loop's parts, one took a core's time from them: the LSTM at batch 32's
    loops 20.5 and 22 ms against 10.1 and 10.8 with it asleep, and 17.7 and 19 for the
    steps' loops in Python with NumPy's products."""
    for shutdown in _openblas():
        shutdown()


def _pool(workers: int):
    """The pool of at least ``workers`` threads, made again in a forked process (whose pool
    would hold its parent's threads, which it does not have)."""
    with _POOL_LOCK:
        if not _POOL or _POOL[0][0] < workers or _POOL[0][2] != os.getpid():
            from concurrent.futures import ThreadPoolExecutor
            _POOL[:] = [(workers, ThreadPoolExecutor(workers, _PREFIX), os.getpid())]
        return _POOL[0][1]


#: An empty ``halves`` (rnngraph/runtime/jitops.py, dot_t_halves): a loop with no helper
_NO_HALVES = np.zeros(0, np.int64)
#: The most rows of a batch whose loop runs its large products in halves on two cores
#: (_JitLoop._in_halves; a loop whose arguments' kinds are not all known, none): from 4
#: rows a batch runs in parts of its rows where it may, and 3 rows on one thread (gemm)
HALVES_ROWS = 2


class _JitLoop:
    """A time loop of the generated module (``LOOPS``) run by Numba, compiled on its first
    call.  A call returns True when the loop ran; False when Numba cannot compile it (an
    op its nopython mode lacks), said once in a warning, or when the loop's checks of its
    arrays decline before its first step: then the generated code runs the same loop in
    NumPy, slower, never wrong.

    A batch of 4 rows or more runs in parts, at least 2 rows each, on :func:`threads`
    threads at once (Numba releases the GIL in the loop), where :func:`may_split`: the
    rows of a batch never meet in a recurrence, so each part is the whole loop over its
    rows, every step, with no wait between the threads until the end; a parameter's
    gradient the loop adds to is added into zeros of each part's own, and the parts' sums
    into it at the end (in another order than one thread's: the same to rounding).
    ``kinds`` (the module's ``SPLIT``, compile/numba_loops.kinds) says what each argument
    is; a loop with an argument of no known kind runs whole.  Measured (LSTM, batch 32,
    hidden 256, float32, a 2-core Zen 4): each step's product a gemm of 16 rows
    (jitops.gemm) on each thread, 80-90 us against 108 for OpenBLAS's faster form on two
    threads, and the step's elementwise ops written out beside it; the loops 10.1 and 10.8
    ms against 17.7 and 19 for the steps' loops in Python, a call 46-48 against 62-64."""

    def __init__(self, fn, numba, cache: bool, model: str, kinds: str | None = None,
                 helper=None):
        self.model, self.doc = model, fn.__doc__
        self.run = numba.njit(fn, cache=cache, error_model="numpy", nogil=True)
        # the other halves of its large products at a batch of one or two rows (_in_halves)
        self.helper = None if helper is None else \
            numba.njit(helper, cache=cache, error_model="numpy", nogil=True)
        self.advice = numba.core.errors.NumbaPerformanceWarning
        # what a loop that cannot be compiled raises (or any error raised while Numba
        # compiles); anything else (a MemoryError, gemm's ValueError) may come after some
        # steps wrote: never NumPy's loop
        self.cannot = numba.core.errors.NumbaError
        self.kinds = kinds if kinds and "?" not in kinds else None
        self.ran_parts = 0                      # the parts of the last run in parts
        self.ran_halves = False                 # whether the helper took a half in the last run
        self._helper = None                     # the last run's helper (products.Job)
        self.helper_ran = False                 # whether a helper ended without an error
        self.runs = self.helped = 0             # runs whole, and those the helper took part in

    def parts(self, B: int) -> int:
        """How many parts a call with a batch of B rows runs in: at least 2 rows a part."""
        n = min(threads(), B // 2) if self.kinds and self.run is not None else 1
        return n if n > 1 and may_split() else 1

    def batch(self, args) -> int:
        """The batch's rows of a call with ``args``: a sequence's axis 1 (0 if none says)."""
        return next((a.shape[1] for k, a in zip(self.kinds or "", args)
                     if k == "s" and a is not None), 0)

    def alone(self, args) -> bool:
        """Whether a call with ``args`` runs on this thread alone with the second core idle:
        not in parts, nor in halves (products.Behind)."""
        if self.run is None or not self.kinds:
            return False
        B = self.batch(args)
        return 0 < B and self.parts(B) == 1 and threads() > 1 and may_split() and \
            not (self.helper is not None and B <= HALVES_ROWS)

    def __call__(self, *args, flags=_NO_HALVES) -> bool:
        """The loop over ``args``; ``flags``, a loop run alone (:meth:`alone`): its ``halves``,
        where it publishes the steps it has done (products.Behind; longer than a helper's
        halves: its products go as with none, jitops.dot_t_halves)."""
        if self.run is None:
            return False
        # (the overloads' dict: len(signatures) builds a list of types, 5-10 us a call)
        compiled = len(self.run.overloads)
        try:
            with warnings.catch_warnings():   # Numba's advice on layouts is not the user's
                warnings.simplefilter("ignore", self.advice)
                ran = self.split(args, flags)
            # False: the loop's checks of its arrays declined before any step ran (a shape
            # or a layout its runs of ops do not take), and the caller runs NumPy's loop
            return bool(ran)
        except Exception as e:
            if len(self.run.overloads) > compiled or not _compiling(e, self.cannot):
                raise                         # compiled, then failed while running: not ours
            self.run = None                   # failed to compile, before any step ran
            what = self.doc.splitlines()[0].rstrip(".")
            warnings.warn(f"{self.model}: Numba cannot compile {what[0].lower()}{what[1:]} "
                          f"({_culprit(str(e))}); that loop runs in NumPy",
                          RuntimeWarning, stacklevel=_outside())
            return False

    def split(self, args, flags=_NO_HALVES) -> bool:
        """The loop over ``args``, in parts of the batch's rows where it has 4 or more (but
        with ``flags``: see __call__)."""
        B = self.batch(args)
        parts = self.parts(B)
        self.ran_halves = False
        if parts < 2 or not all(a is None or a.ndim >= 2 and a.shape[1] == B if k == "s" else
                                a.shape[0] == B if k == "r" else True
                                for k, a in zip(self.kinds, args)):
            self.ran_parts = 1
            self.runs += 1
            if flags is not _NO_HALVES:
                return self.run(*args, flags)
            if self.helper is not None and 0 < B <= HALVES_ROWS and threads() > 1 and \
                    may_split():
                return self._in_halves(args)
            return self.run(*args, _NO_HALVES)
        calls, sums = [], []
        for p in range(parts):
            lo, hi = B * p // parts, B * (p + 1) // parts
            call = []
            for k, a in zip(self.kinds, args):
                if k == "s":
                    call.append(None if a is None else a[:, lo:hi])
                elif k == "r":
                    call.append(a[lo:hi])
                elif k == "a":                  # a gradient added to: zeros of the part's own
                    call.append(np.zeros(a.shape, a.dtype))
                    sums.append((a, call[-1]))
                elif k == "p":                  # written before it is read: the part's own
                    call.append(np.empty(a.shape, a.dtype))
                else:
                    call.append(a)
            calls.append(call)
        quiet_blas()
        from . import products
        products.no_linger()
        others: list = []
        try:
            pool = _pool(parts - 1)
            for call in calls[1:]:
                others.append(pool.submit(self.run, *call, _NO_HALVES))
        except RuntimeError:                    # (the pool shut down: the interpreter's exit)
            wait(others)
            if others:                          # some parts ran: the rows cannot be rerun
                raise
            self.ran_parts = 1
            return self.run(*args, _NO_HALVES)
        try:
            ran = [self.run(*calls[0], _NO_HALVES)]
        finally:                                # every part finished before anything else
            wait(others)
        ran += [f.result() for f in others]
        if not any(ran):
            return False                        # each declined before its first step
        if not all(ran):
            raise RuntimeError(f"{self.model}: the parts of a loop's batch ran {ran}")
        for a, part in sums:
            a += part
        self.ran_parts = parts
        return True

    def _in_halves(self, args) -> bool:
        """The loop over ``args`` on this thread, with its helper on the pool's: each large
        product of a step in two halves of its weights, one on each core
        (rnngraph/runtime/jitops.py, dot_t_halves).  OpenBLAS's threads put to sleep first,
        as for parts (quiet_blas): one spinning on the helper's core would halve it.  A
        helper late (compiling at its first call, or its core busy) leaves its halves to
        the loop, which goes on alone; one that cannot be compiled is said once in a
        warning, and the loop runs on one thread from then on.  The backward's products
        come out in another order than on one thread: the same to rounding.  The helper
        runs on the thread of rnngraph/runtime/products.py's jobs, which lingers after
        each for the next: the products before the loop and after it, and the next loop."""
        from . import jitops, products
        self._helper_ended(0)
        if self.helper is None or self._helper is not None:
            # (none, or the last call's has not ended: compiling for a new signature, or its
            # core taken by another program; no second one queued behind it)
            return self.run(*args, _NO_HALVES)
        quiet_blas()
        try:                                    # (on a thread that then waits for our next job)
            helper, ticket = products.submit(self.helper, np.zeros(jitops.HALVES, np.int64),
                                             *args)
        except RuntimeError:                    # (the pool shut down: the interpreter's exit)
            return self.run(*args, _NO_HALVES)
        halves = helper.flags
        products.handoff(products._JOBS, ticket, halves, products._WAIT)
        compiled = len(self.run.overloads)
        try:
            ran = self.run(*args, halves)
        finally:                                # the helper stops, if still waiting
            halves[jitops.STOP] = 1
        # no wait for its end but a short one (once the loop returns it writes nothing: its
        # halves all claimed), but where it compiles in this call (or fails to): its first,
        # or where the loop did; else a later call says its error
        self._helper = helper
        new = not self.helper_ran or len(self.run.overloads) > compiled
        self._helper_ended(1 << 62 if new else products._WAIT)
        self.ran_halves = bool(ran and halves[jitops.DONE] > 0)
        self.helped += self.ran_halves
        return ran

    def _helper_ended(self, pauses: int) -> None:
        """The helper of the last call, if it ended (within ``pauses`` PAUSEs): its error
        raised, or said in a warning if it could not be compiled (then no more helpers)."""
        job = self._helper
        if job is None or not job.ended(pauses):
            return
        self._helper, error = None, job.error
        self.helper_ran = error is None
        if error is not None:
            if not _compiling(error, self.cannot):
                raise error
            self.helper = None
            what = self.doc.splitlines()[0].rstrip(".")
            warnings.warn(f"{self.model}: Numba cannot compile the helper of {what[0].lower()}"
                          f"{what[1:]} ({_culprit(str(error))}); that loop runs on one thread",
                          RuntimeWarning, stacklevel=_outside())


def _compiling(error: Exception, numba_error) -> bool:
    """Whether ``error`` came from compiling a loop (a Numba error, or any error raised on
    the way through Numba's dispatcher compiling: a name its typing cannot find raises
    AttributeError), not from a compiled loop that ran."""
    if isinstance(error, numba_error):
        return True
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_compile_for_args":
            return True
        tb = tb.tb_next
    return False


def _outside() -> int:
    """The stacklevel, for its caller's warning, of the first frame outside rnngraph and
    the code it generates: the user's line that called forward, vjp or a pullback."""
    here = os.path.dirname(os.path.dirname(__file__))       # the package: rnngraph/
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith((here, "<rnngraph")) or
                                 "rnngraph_loops_" in frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _culprit(message: str) -> str:
    """What a Numba error is about: the line of code above its caret, else its line
    naming a Python error (``NameError: name 'softmax' is not defined``), else its first."""
    lines = [line.strip() for line in message.splitlines()]
    for above, line in zip(lines, lines[1:]):
        if line == "^" and above:
            return above
    return next((line for line in lines if re.match(r"\w+Error: ", line)),
                next((line for line in lines if line), ""))


def jit_loops(source: str, names, numba, model: str, kernels=(), steps=(), split=None,
              helpers=None) -> dict:
    """{name: _JitLoop} for the loops ``names`` of the loops' module ``source``.

    Numba's cache of a function is keyed on its own file only, not on the functions it
    calls: a loop cached with rnngraph/runtime/jitops.py's kernels of an older rnngraph would
    keep their machine code.  So the module's text (whose hash names its file) starts
    with the hash of jitops.py's."""
    module = _loops_module(f"# kernels: rnngraph/runtime/jitops.py {_kernels_hash()}\n" + source)
    cache = module.__file__ is not None
    for k in kernels:                   # the fused kernels (compile/fuse.py), which the loops call
        fn = getattr(module, k)
        if not hasattr(fn, "py_func"):
            setattr(module, k, numba.njit(fn, cache=cache, error_model="numpy"))
    helpers = helpers or {}
    loops = {name: _JitLoop(getattr(module, name), numba, cache, model, (split or {}).get(name),
                            getattr(module, helpers[name]) if name in helpers else None)
             for name in names}
    # the loops for a larger batch: Python, calling the module's compiled kernels
    return {**loops, **{name: getattr(module, name) for name in steps}}


_KERNELS_HASH: list[str] = []


def _kernels_hash() -> str:
    """The hash of rnngraph/runtime/jitops.py's text, read once."""
    if not _KERNELS_HASH:
        with open(os.path.join(os.path.dirname(__file__), "jitops.py"), "rb") as f:
            _KERNELS_HASH.append(hashlib.sha256(f.read()).hexdigest()[:16])
    return _KERNELS_HASH[0]
