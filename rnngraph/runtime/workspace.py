"""Arrays kept from one call of a compiled model to the next.

A forward + backward pass of an LSTM at batch 32, hidden 256, T 100 allocates
about 60 MB of arrays proportional to T.  Allocations that large come from
fresh pages of the operating system, and touching each page for the first time
costs more than the arithmetic done on it: 15-20% of the whole run, measured
(bench/run.py).  So the generated code takes its arrays proportional to T from
a :class:`Workspace`, which hands back an array of an earlier call once nothing
outside the workspace holds it any more.

"Holds" is read off the reference count of the array: the workspace's own list
is one reference; every other one (an output the caller kept, a view of it, a
pullback's tape, a ``torch.from_numpy`` of it) makes it busy, since every NumPy
view keeps a reference to the array that owns the memory.  An array the caller
still holds is therefore never handed out again, and a caller who keeps every
output of every call merely gets fresh arrays each time, as without a workspace.

The count an array free of outside references has is measured at import, in
the same kind of loop :meth:`Workspace.empty` reads it in, so that it holds
whatever the interpreter's own counting (which changed in CPython 3.12 and 3.14).

Arrays are pooled per role: the generated code names the variable an array is
bound to (``WORK.empty((T + 1, B, n), DTYPE, "h")``), and arrays of one role are
handed out only for that role.  Pooled per shape alone, the five (T + 1, B, n)
arrays of an LSTM's call would share two places, and three of them would be
fresh memory every call.

Bounded: two arrays of each role, dtype and shape but for the first axis (a
training loop holds the last call's outputs while making the next call; a
length T that changes from call to call replaces a free array of a length not
asked for) and at most :data:`LIMIT` bytes in all; least recently used keys
go first.  Thread-safe: a lock covers the choice.

Examples
--------
>>> import numpy as np
>>> work = Workspace()
>>> a = work.empty((3, 2), np.float32)
>>> work.empty((3, 2), np.float32) is a           # a is still held here
False
>>> del a
>>> b = work.empty((3, 2), np.float32)             # the first array, handed back
>>> b.shape, len(work)
((3, 2), 2)
>>> work.empty((3, 2), np.float32, "h") is b        # another role: another array
False
"""
from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import numpy as np

#: Bytes a workspace keeps at most (arrays beyond it are allocated as usual).
LIMIT = 1 << 30
#: Arrays kept per role, dtype and shape but for the first axis.
PER_SHAPE = 2


_getrefcount = sys.getrefcount


def _free_count() -> int:
    count = 0
    for a in [np.empty(0)]:                   # as Workspace.empty counts: a loop variable
        count = _getrefcount(a)
    return count


#: The reference count an array held by nothing but a workspace's list has, as
#: :meth:`Workspace.empty` reads it (its list, the loop variable, the call's argument).
_FREE = _free_count()


class Workspace:
    """A pool of arrays; :meth:`empty` and :meth:`zeros` as NumPy's, for arrays reused."""

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._arrays: OrderedDict[tuple, list] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(map(len, self._arrays.values()))

    def empty(self, shape, dtype, role: str = "") -> np.ndarray:
        """An array of ``shape`` and ``dtype`` that nothing else holds, from those kept
        for ``role``; its values are arbitrary.  A kept array up to twice as long on the
        first axis serves too, as its leading part (a view, C-contiguous like a fresh
        array): sequences of varying length T reuse each other's arrays, and a caller
        who keeps a short call's output pins at most twice its memory."""
        shape = tuple(shape)
        # Keyed by the dtype as given, not np.dtype(dtype) (0.6 us a call): the generated
        # code passes its one DTYPE, and another spelling of it merely gets its own arrays.
        key = (role, shape[1:], dtype)
        with self._lock:
            arrays = self._arrays.get(key)
            stale = None
            if arrays is not None:
                self._arrays.move_to_end(key)
                lead, best = shape[0] if shape else 0, None
                for a in arrays:
                    if _getrefcount(a) > _FREE:
                        continue                       # held outside: busy
                    n = a.shape[0] if shape else 0
                    if n == lead:
                        return a
                    if lead < n <= 2 * lead:
                        if best is None or n < best.shape[0]:
                            best = a
                    else:
                        stale = a
                if best is not None:
                    return best[:lead]
            a = np.empty(shape, dtype)
            if stale is not None and len(arrays) >= PER_SHAPE:
                arrays[:] = [b for b in arrays if b is not stale]   # a length nobody asks for now
                self._bytes -= stale.nbytes
            if (arrays is None or len(arrays) < PER_SHAPE) and self._make_room(a.nbytes):
                self._arrays.setdefault(key, []).append(a)
                self._bytes += a.nbytes
            return a

    def clear(self) -> None:
        """Drop every kept array (arrays handed out stay valid: their holders keep them)."""
        with self._lock:
            self._arrays.clear()
            self._bytes = 0

    def zeros(self, shape, dtype, role: str = "") -> np.ndarray:
        """As :meth:`empty`, filled with zeros."""
        a = self.empty(shape, dtype, role)
        a.fill(0)
        return a

    def _make_room(self, nbytes: int) -> bool:
        """Drop free arrays of the least recently used keys until nbytes fit."""
        for key in list(self._arrays):
            if self._bytes + nbytes <= self.limit:
                break
            arrays, kept = self._arrays[key], []
            for a in arrays:
                if _getrefcount(a) > _FREE:
                    kept.append(a)                      # busy: stays
                else:
                    self._bytes -= a.nbytes
            arrays[:] = kept
            if not arrays:
                del self._arrays[key]
        return self._bytes + nbytes <= self.limit
