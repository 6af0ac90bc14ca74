"""The runtime of ``backend="numba"``: the loops' module, Numba's cache, the fallback.

:mod:`rnngraph.fastgen` (``jit=True``) writes each time loop as a function of its
own (``jit_loop``) and their module (``loops_module``); here that module becomes a
file of the cache folder, named by the hash of its text, so that Numba's cache of
its machine code serves every later process, size and dtype; each loop becomes a
:class:`_JitLoop`, which the generated code calls for a batch of a few rows.  Numba is
imported by :func:`numba_or_error` only: the NumPy backend needs none of this.
"""
from __future__ import annotations

import hashlib
import linecache
import os
import re
import sys
import tempfile
import types
import warnings

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


class _JitLoop:
    """A time loop of the generated module (``LOOPS``) run by Numba, compiled on its first
    call.  A call returns True when the loop ran; False when Numba cannot compile it (an
    op its nopython mode lacks), said once in a warning, or when the loop's checks of its
    arrays decline before its first step: then the generated code runs the same loop in
    NumPy, slower, never wrong."""

    def __init__(self, fn, numba, cache: bool, model: str):
        self.model, self.doc = model, fn.__doc__
        self.run = numba.njit(fn, cache=cache, error_model="numpy")
        self.advice = numba.core.errors.NumbaPerformanceWarning

    def __call__(self, *args) -> bool:
        if self.run is None:
            return False
        # (the overloads' dict: len(signatures) builds a list of types, 5-10 us a call)
        compiled = len(self.run.overloads)
        try:
            with warnings.catch_warnings():   # Numba's advice on layouts is not the user's
                warnings.simplefilter("ignore", self.advice)
                ran = self.run(*args)
            # False: the loop's checks of its arrays declined before any step ran (a shape
            # or a layout its runs of ops do not take), and the caller runs NumPy's loop
            return bool(ran)
        except Exception as e:
            if len(self.run.overloads) > compiled:
                raise                         # compiled, then failed while running: not ours
            self.run = None                   # failed to compile, before any step ran
            what = self.doc.splitlines()[0].rstrip(".")
            warnings.warn(f"{self.model}: Numba cannot compile {what[0].lower()}{what[1:]} "
                          f"({_culprit(str(e))}); that loop runs in NumPy",
                          RuntimeWarning, stacklevel=_outside())
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


def jit_loops(source: str, names, numba, model: str, kernels=(), steps=()) -> dict:
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
    loops = {name: _JitLoop(getattr(module, name), numba, cache, model) for name in names}
    # the loops for a larger batch: Python, calling the module's compiled kernels
    return {**loops, **{name: getattr(module, name) for name in steps}}


_KERNELS_HASH: list[str] = []


def _kernels_hash() -> str:
    """The hash of rnngraph/runtime/jitops.py's text, read once."""
    if not _KERNELS_HASH:
        with open(os.path.join(os.path.dirname(__file__), "jitops.py"), "rb") as f:
            _KERNELS_HASH.append(hashlib.sha256(f.read()).hexdigest()[:16])
    return _KERNELS_HASH[0]
