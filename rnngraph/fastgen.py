"""The optimized generator: time loops as straight-line in-place NumPy (``optimize=True``).

:class:`rnngraph.codegen.Generator` prints each op as an expression, which
allocates its result: clear, and what ``optimize=False`` keeps.  Inside a time
loop, where a batch of one makes each NumPy call cost more than its
arithmetic, :class:`FastGenerator` prints instead:

Homes.  Every value of a loop has a home allocated before the loop: a slot
of an array ``(P + T + F, B, n)`` if the backward pass or another block reads
it, else a buffer ``(B, n)`` reused at every step; a ``slice`` is a view of
its argument's home.  Arrays proportional to T, and those of :data:`POOLED`
bytes or more whose size is known here, come from the module's
:class:`rnngraph.workspace.Workspace`, which reuses them from call to call once
nothing else holds them, each for its own role (the variable it is bound to).
Values share homes: an op's output may take the array of an argument that
dies there (the LSTM's recurrent product is added into the
input projection's array, the gates written over their pre-activations, as
by hand), and a temporary used once by a lanewise op of its shape is computed
straight into that op's home.

Forward.  Every op writes into its home with ``out=`` (``a *= b`` where it
can); products use ``np.dot`` against a contiguous transposed copy of the
matrix, made by ``prepare`` with the stacked matrices (each call, or once for
many by ``Compiled.prepare``); an every-step block multiplies all T*B rows
in one GEMM.  A loop is ``for h_tm1, h_t, ... in zip(h[0:T], h[1:T + 1], ...)``:
the slots come as views made at C speed, the body indexes nothing.  Numbers
are 0-d arrays of the dtype (a Python number costs a conversion per call).  The
logistic function is ``1 / (1 + exp(-z))`` in place: exp(-z) may overflow to
inf (z < -88 in float32), which gives exactly 0, so the loop runs under
``np.errstate(over="ignore")``.

Backward: see :mod:`rnngraph.fastback`.

``backend="numba"`` (``jit``): each loop is also a function of its own that Numba
compiles (:meth:`FastGenerator.jit_loop`), called for a batch of one; the ``for``
above runs for larger batches and for a loop Numba cannot compile (rnngraph/jit.py).
"""
from __future__ import annotations

import re
from functools import cached_property

import numpy as np

from .codegen import Generator
from .fastback import PER_STEP, Backward
from .ir import Const, Param, Read, Var
from .ops import lookup
from .printing import number_text
from .jitgen import JitLoops
from .pysource import _augmented, _call_lines, _tuple
from .schedule import Block

UFUNC = {"add": "np.add", "sub": "np.subtract", "mul": "np.multiply", "div": "np.divide",
         "neg": "np.negative", "tanh": "np.tanh", "exp": "np.exp", "log": "np.log"}
_INPLACE = set(UFUNC) | {"sigmoid", "relu"}
_AUGMENTED = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_SLOT = re.compile(r"\b([A-Za-z_]\w*)\[(t(?: [-+] \d+)?)\]")
_POOLED_LINE = re.compile(r"^( *)(\w+) = (.*?)WORK\.(empty|zeros)\((.*), DTYPE\)", re.M)
_RANK = {"array": 4, "state": 3, "step": 2, "buf": 1}
#: Bytes from which an array of a size known at compile time (a stacked matrix, its
#: transpose, a matrix's gradient) comes from the workspace.  glibc's malloc serves
#: 128 KiB and more with fresh pages of the operating system (its threshold moves),
#: and a call of the LSTM at batch 1, hidden 128 spent 0.5 ms of 1 in their page
#: faults at T = 1; the workspace costs 1.5 us an array, so small ones stay np.empty.
POOLED = 64 * 1024


class FastGenerator(JitLoops, Backward, Generator):
    fast = True
    fixed = frozenset({"WORK", "Workspace", "PER_STEP", "sum_rows", "transpose_into", "jitops"})
    alloc = "WORK.empty"                       # every slot a step reads is written (or padded)

    # -- homes -----------------------------------------------------------------
    def _choose_homes(self):
        super()._choose_homes()
        self._infer()                          # ranks now that values read elsewhere are arrays
        self.loops = [b for b in self.blocks[1:] if b.kind != "all"]
        self.loop_of = {e.out: b for b in self.loops for e in b.eqns}
        self.uses: dict[str, list] = {}
        for b in self.blocks:
            for e in b.eqns:
                for a in e.args:
                    if isinstance(a, Var):
                        self.uses.setdefault(a.name, []).append(e)
        views = [e for b in self.blocks[1:] for e in b.eqns if e.out in self.view_of]
        self._gradient_homes(views)
        for n in self.loop_of:
            if n not in self.view_of and n not in self.step_vars:
                keep = n in self.elsewhere or n in self.needed or self.ghome[n] == "array"
                self.home[n] = "seq" if keep else "buf"
        for e in reversed(views):
            if e.out in self.loop_of and self.home[e.out] == "seq" and (
                    e.out in self.step_vars or e.out in self.elsewhere or e.out in self.needed):
                self.home[self.view_of[e.out][0]] = "seq"
        for e in views:
            if e.out in self.loop_of:
                self.home[e.out] = self.home[self.view_of[e.out][0]]
        self._coalesce()
        self.sole = self._sole_loops()

    def _gradient_homes(self, views) -> None:
        """Where each loop value's gradient lives (see :mod:`rnngraph.fastback`):

        ``array``  read by another block: starts at zero (and the cotangent), takes +=;
        ``state``  read at another step: starts at zero, written by the first
                   contribution from the step that reads it first, the cotangent
                   added once it is complete;
        ``step``   a slot per step, written by the first contribution (the parameters'
                   share after the loop reads it; outputs: the cotangent joins last);
        ``buf``    one buffer, written by the first contribution.
        A view's gradient is a view of its parent's; an alias's is its target's: the kind
        of the storage is the strongest any of them needs."""
        need = {}
        self.first_read: dict[str, int] = {}
        elsewhere = set(self.elsewhere) | {
            a.name for b in self.blocks for e in b.eqns for a in e.args
            if isinstance(a, Read) and a.name in self.block_of and self.block_of[a.name] is not b}
        for b in self.loops:
            reads = {}
            for e in b.eqns:
                for a in e.args:
                    if isinstance(a, Read) and a.offset and a.name in b.names:
                        reads.setdefault(a.name, []).append(a.offset)
            for n, offsets in reads.items():        # the step that reads n(t) first, backwards
                self.first_read[n] = min(offsets) if b.kind == "forward" else max(offsets)
            for e in b.eqns:
                if e.out in elsewhere:
                    need[e.out] = "array"
                elif e.out in reads:
                    need[e.out] = "state"
                elif any(self._deferred(a) for a in e.args):
                    need[e.out] = "step"
                else:
                    need[e.out] = "buf"
        self.galias = self._gradient_aliases()
        for a in self.galias:
            need.setdefault(a, "step")             # a value of an every-step block: per step

        def owner(n):
            while n in self.galias or n in self.view_of:
                n = self.galias[n] if n in self.galias else self.view_of[n][0]
            return n
        kind: dict[str, str] = {}
        for n, k in need.items():
            o = owner(n)
            k = k if o in self.loop_of else "array"  # every-step blocks keep their arrays
            if _RANK[k] > _RANK.get(kind.get(o), 0):
                kind[o] = k
        self.gneed = {n: kind[owner(n)] for n in need}
        for n, k in self.gneed.items():
            self.ghome[n] = "alias" if n in self.galias else "array" if k == "array" else "loop"

    def _sole_loops(self) -> dict:
        """Gradient arrays that one loop alone fills, slot t from step t: ``{root: loop}``.

        The gradient of an every-step block's array (the GRU's input projection _p2,
        whose lanes the loop reads as r's, z's and n's pre-activations at step t) starts
        at zero and takes ``+=`` (``array``), since another block may add to it too.  When
        nothing but one loop reads it or any view of it, and only at the step itself,
        and no output's cotangent seeds it, the loop's first contribution to a lane
        writes it and the lanes no step writes are zeroed once before the loop: the
        zero fill of the whole (T + 1, B, n) array and a ``+=`` a step are saved (the GRU's
        forward + backward: 1% at batch 1, 2.4% at batch 32)."""
        def owner(n):
            while n in self.galias or n in self.view_of:
                n = self.galias[n] if n in self.galias else self.view_of[n][0]
            return n
        readers: dict[str, dict] = {}            # {owner: {id(block): block or None}}
        for b in self.blocks:
            for e in b.eqns:
                if e.out in self.view_of:
                    continue
                for a in e.args:
                    if isinstance(a, (Var, Read)):
                        reader = b if isinstance(a, Var) else None     # None: at another step
                        readers.setdefault(owner(a.name), {})[id(reader)] = reader
        seeded = {owner(n) for n in list(self.step_vars) + [n for n in self.sym
                  if self.sym[n].role == "value"] if n in self.block_of or n in self.view_of}
        sole = {}
        for n, home in self.ghome.items():
            if home != "array" or n in self.view_of or self.home.get(n) != "seq" \
                    or n in seeded or self.block_of.get(n) is None \
                    or self.block_of[n].kind != "all":
                continue
            blocks = list(readers.get(n, {}).values())
            if len(blocks) == 1 and any(blocks[0] is loop for loop in self.loops):
                sole[n] = blocks[0]
        return sole

    def gradient_arrays(self) -> list[str]:
        """As Reverse's, but an array a loop alone fills (:meth:`_sole_loops`) starts
        uninitialised, zero only in the slots before and after the loop's steps."""
        lines = super().gradient_arrays()
        for n in self.sole:
            d = self.d(n)
            at = lines.index(f"    {d} = {self.zeros_like(self.py[n])}")
            pad = [f"    {d}[:{self.P}] = 0"] + ([f"    {d}[{self.T} + {self.P}:] = 0"]
                                                 if self.F else [])
            lines[at:at + 1] = [f"    {d} = WORK.empty({self.py[n]}.shape, DTYPE)"] + pad
        return lines

    def _gradient_aliases(self) -> dict[str, str]:
        """Values whose gradient is exactly another's: ``z = a + b`` with a used nowhere
        else and shaped as z has dz for gradient, the same array."""
        alias = {}

        def per_step(n):                       # (B, n) in a loop, (T, B, n) every step at once
            return self.rank.get(n) == self.block_of[n].lead
        for b in self.loops:
            for e in b.eqns:
                if e.op not in ("add", "copy", "sub") or e.out in self.view_of:
                    continue
                positions = (0,) if e.op == "sub" else range(len(e.args))
                views = [a for a in e.args[:len(positions)] if isinstance(a, Var)
                         and a.name in self.view_of and len(self.uses.get(a.name, ())) == 1]
                if views and e.out not in alias and e.out not in self.sym \
                        and not any(v[0] == e.out for v in self.view_of.values()) \
                        and self.size.get(e.out) == self.size.get(views[0].name):
                    # z = view + ...: z's gradient lives in the view's lanes (prefer a
                    # view of a loop value's gradient to one of an every-step block's)
                    best = min(views, key=lambda a: self.view_of[a.name][0] not in self.loop_of)
                    alias[e.out] = best.name
                for i in positions:
                    a = e.args[i]
                    if not isinstance(a, Var) or a.name in self.sym or a.name in self.view_of \
                            or self.block_of.get(a.name) in (None, self.blocks[0]) \
                            or len(self.uses.get(a.name, ())) != 1 or e.args.count(a) != 1 \
                            or self.size.get(a.name) != self.size.get(e.out) \
                            or not per_step(a.name) or not per_step(e.out) \
                            or any(v[0] == a.name for v in self.view_of.values()):
                        continue
                    alias[a.name] = e.out
        return alias

    def _deferred(self, a) -> bool:
        """Whether a contribution to the gradient of ``a`` waits until after the loop."""
        if isinstance(a, Const):
            return False
        if isinstance(a, Param) or isinstance(a, Read) and a.offset is None:
            return True
        return isinstance(a, Var) and self.block_of.get(a.name) is self.blocks[0]

    def _coalesce(self) -> None:
        """Values that share storage (``into[x] = y``: x lives where y does).

        A value's output may take the storage of an argument that dies there (used
        nowhere else, not read by the backward pass, not an output) and is kept per
        step: ``u = a + b`` computed into ``a``'s array, as a hand-written loop adds the
        recurrent product into the input projection; ``y = sigmoid(z)`` into ``z``'s
        lanes.  Otherwise a temporary used once, by a lanewise op of its shape, is
        computed straight into that op's home.  One argument per op at most."""
        self.into: dict[str, str] = {}
        taken = set()
        for b in self.blocks[1:]:
            for u in b.eqns:
                if u.op in _INPLACE and u.out not in self.view_of and u.out not in self.inputs:
                    v = next((a.name for a in u.args if self._donor(a, u)), None)
                    if v is not None:
                        self.into[u.out] = v
                        taken.add(u.out)
                        self._per_time(u.out)
        for b in self.blocks[1:]:
            for e in reversed(b.eqns):
                n = e.out
                if self.home.get(n) not in ("buf", "local") or n in self.view_of \
                        or n in self.into or len(self.uses.get(n, ())) != 1 \
                        or any(v[0] == n for v in self.view_of.values()):
                    continue
                u = self.uses[n][0]
                home = self.home.get(u.out)
                if u.op not in _INPLACE or u.out in taken or self.block_of.get(u.out) is not b \
                        or u.out in self.view_of or u.args.count(Var(n)) != 1 \
                        or self.size.get(n) != self.size.get(u.out) \
                        or self.rank.get(n) != self.rank.get(u.out) \
                        or not (home == "seq" or home == "buf" or u.out in self.into):
                    continue
                self.into[n] = u.out
                taken.add(u.out)
        # name the shared storage after the output it holds, if one does
        for n in list(self.into):
            root = self.storage(n)
            if n in self.sym and root not in self.view_of and self.root_of(n) == root:
                members = [m for m in self.into if self.storage(m) == root] + [root]
                for m in members:
                    self.into.pop(m, None)
                for m in members:
                    if m != n:
                        self.into[m] = n

    def root_of(self, n: str) -> str:
        while n in self.into:
            n = self.into[n]
        return n

    def storage(self, n: str) -> str:
        """The value whose allocation holds n (through shares, not through views)."""
        return self.root_of(n)

    def _donor(self, a, u) -> bool:
        """Whether u's output can be stored where argument ``a`` is, a dying array."""
        if not isinstance(a, Var) or a.name in self.sym or a.name in self.needed \
                or a.name in self.into.values() \
                or len(self.uses.get(a.name, ())) != 1 or u.args.count(a) != 1:
            return False
        n = a.name
        if self.home.get(n) != "seq" or self.size.get(n) != self.size.get(u.out) \
                or self.rank.get(n) != self.block_of[n].lead \
                or self.rank.get(u.out) != self.block_of[u.out].lead:
            return False
        if n in self.view_of:                   # a view: its parent used through views alone
            parent = self.view_of[n][0]
            if any(e.op != "slice" for e in self.uses.get(parent, ())):
                return False
        return self.home.get(u.out) in ("seq", "buf") or u.out in self.sym

    def _per_time(self, n: str) -> None:
        """n now lives in an array: so do its views."""
        self.home[n] = "seq"
        for v, (parent, _, _) in self.view_of.items():
            if parent == n and self.home.get(v) != "seq":
                self._per_time(v)

    def bound(self, n: str) -> str | None:
        """The name whose array n is (allocated elsewhere), or None."""
        return self.py[self.root_of(n)] if n in self.into else None

    def value(self, a, block: Block) -> str:
        while isinstance(a, Var) and a.name in self.into:
            a = Var(self.into[a.name])
        if isinstance(a, Const) and block.kind in ("forward", "backward"):
            return self.const(a.value)
        return super().value(a, block)

    def const(self, value: float) -> str:
        """A number as a 0-d array of the dtype: a Python number costs a conversion per call."""
        if not hasattr(self, "consts"):
            self.consts: dict[float, str] = {}
        if value not in self.consts:
            wish = {0: "ZERO", 1: "ONE", 2: "TWO", 0.5: "HALF"}.get(value, "K")
            self.consts[value] = self.namer(wish)
        return self.consts[value]

    def import_lines(self) -> list[str]:
        jit = ["from rnngraph import jitops"] if self.jit else []
        return super().import_lines() + ["from rnngraph.ops import sum_rows, transpose_into",
                                         "from rnngraph.workspace import Workspace"] + jit

    def zeros_like(self, array: str) -> str:
        return f"WORK.zeros({array}.shape, DTYPE)"

    def module(self) -> str:
        """The module, each array of the workspace tagged with the variable it is bound
        to, its role (``x = WORK.empty((T + 1, B, 64), DTYPE, "x")``): the workspace keeps
        arrays per role (rnngraph/workspace.py).  With ``jit``, the loops' functions
        follow, and ``LOOPS``, their names, for Compiled to hand them to Numba."""
        text = _POOLED_LINE.sub(r'\1\2 = \3WORK.\4(\5, DTYPE, "\2")', super().module())
        if not self.jit:
            return text
        names = [f[0].split("(")[0][4:] for f in self.jit_functions]
        return text + self.loops_module(head=False) + f"\n\nLOOPS = {_tuple(names)}\n"

    def empty_source(self, shape: tuple) -> str:
        """An uninitialised array of a size known here: from the workspace from
        :data:`POOLED` bytes on, where the allocator would hand out fresh pages of the
        operating system each call."""
        nbytes = np.dtype(self.dtype).itemsize * int(np.prod(shape))
        return f"{'WORK' if nbytes >= POOLED else 'np'}.empty({_tuple(shape, '')}, DTYPE)"

    def forward_eqn(self, e, b: Block) -> str | None:
        """A stacked matrix (made each call unless the caller prepared the parameters)
        goes into an array of the workspace when it is big."""
        line = super().forward_eqn(e, b)
        empty = self.empty_source(self.size[e.out]) if e.op == "stack" else ""
        return f"{line[:-1]}, out={empty})" if empty.startswith("WORK") else line

    def constant_lines(self) -> list[str]:
        per_step = [f"PER_STEP = {PER_STEP}   # see rnngraph/fastback.py"] \
            if getattr(self, "per_step_used", False) else []
        return ["WORK = Workspace()   # arrays proportional to T or big, reused once free "
                "(rnngraph/workspace.py)"] + per_step + [
            f"{name} = np.array({number_text(v)}, DTYPE)   # numbers in loops: 0-d arrays"
            for v, name in getattr(self, "consts", {}).items()]

    # -- the forward pass --------------------------------------------------------
    def forward_block(self, b: Block) -> list[str]:
        out = [self.block_title(b)]
        B = self.B
        if b.kind == "all":
            last = [None]
            for e in b.eqns:
                lines = self.whole_forward(e, b)
                if lines:
                    out += ["    " + c for c in self.comment(e, b, last)]
                    out += ["    " + x for x in lines]
            return out
        for e in b.eqns:
            n = e.out
            if self.home.get(n) != "buf" or n in self.into:
                continue
            if n in self.view_of:
                parent, lo, hi = self.view_of[n]
                out.append(f"    {self.py[n]} = {self.value(Var(parent), b)}[..., {lo}:{hi}]")
            else:
                out.append(f"    {self.py[n]} = np.empty(({B}, {self.size[n]}), DTYPE)")
        kept = self._kept_transposes
        for m in self._loop_matrices(b):    # h @ W.T: 4.1 against 5.4 us with W.T contiguous
            if m not in kept:
                out += self._transpose_lines(m)
        ind = "        "
        if any(e.op == "sigmoid" for e in b.eqns):
            out.append('    with np.errstate(over="ignore"):      # exp(-z) = inf: sigmoid(z) = 0')
            ind = "            "
        last = [None]
        body = []
        for e in b.eqns:
            lines = self.step_forward(e, b)
            if lines:
                body += [ind + c for c in self.comment(e, b, last)]
                body += [ind + x for x in lines]
        return out + self.loop(body, ind[:-4], forward=b.kind == "forward", names=b.names)

    def slot_name(self, name: str, index: str) -> str:
        """``h_tm1`` for ``h[t - 1]``: the same in every loop (it means the same)."""
        key = "slot " + name + index
        if key not in self.py:
            suffix = index.replace(" ", "").replace("-", "m").replace("+", "p")
            if name.startswith("cot_"):              # cotangents are (T, B, n): t at t - 1
                suffix = "t"
            self.py[key] = self.namer(f"{name}_{suffix}")
        return self.py[key]

    def loop(self, body: list[str], ind: str, forward: bool, skip=(), names=()) -> list[str]:
        """The loop over the steps (of the values ``names``): a ``for`` here
        (:meth:`zip_loop`), or with ``jit`` a call of a function of its own that Numba
        compiles (:meth:`jit_loop`)."""
        if self.jit:
            call = self.jit_loop(body, ind, forward, names)
            if call is not None:
                return call + self.zip_loop(["    " + x for x in body], ind + "    ", forward,
                                            skip)
        return self.zip_loop(body, ind, forward, skip)

    def zip_loop(self, body: list[str], ind: str, forward: bool, skip=()) -> list[str]:
        """``for`` over the steps, the slots of every array the body reads or writes coming
        in with them: ``for h_tm1, h_t in zip(h[0:T], h[1:T + 1])``, then ``h_t`` in the
        body.  An index costs a new view each time (and ufuncs check each new view for
        overlap with the others); zip makes the views at C speed."""
        slots: dict[str, str] = {}
        for line in body:
            if not line.lstrip().startswith("#"):
                for m in _SLOT.finditer(line):
                    name, index = m.groups()
                    if name not in skip and m.group(0) not in slots:
                        slots[m.group(0)] = self.slot_name(name, index)

        def swap(m):
            return slots.get(m.group(0), m.group(0))
        body = [line if line.lstrip().startswith("#") else _augmented(_SLOT.sub(swap, line))
                for line in body]
        T = self.T
        steps = []
        for slot in slots:
            name, index = _SLOT.fullmatch(slot).groups()
            j = 0 if index == "t" else int(index[1:].replace(" ", ""))
            seq = f"{name}[{_plus(1 + j)}:{T}{_plus(1 + j, True)}]"
            steps.append(seq if forward else seq + "[::-1]")
        count = f"range(1, {T} + 1)" if forward else f"range({T}, 0, -1)"
        names = list(slots.values())
        if any(re.search(r"\bt\b", line) for line in body if not line.lstrip().startswith("#")) \
                or not names:
            names, steps = ["t"] + names, [count] + steps
        if len(names) == 1:
            return [f"{ind}for {names[0]} in {steps[0]}:"] + body
        return _call_lines(f"{ind}steps = zip(", steps, ")") + \
            _call_lines(f"{ind}for (", names, ") in steps:") + body

    def _transpose_lines(self, m: str) -> list[str]:
        shape = self.size[m] if m in self.size else self.model.param_shapes[m]
        return [f"    {self.mt(m)} = {self.empty_source(tuple(shape)[::-1])}",
                f"    transpose_into({self.mt(m)}, {self.py[m]})"]

    @cached_property
    def _kept_transposes(self) -> list[str]:
        """The loop matrices made of parameters alone: prepare transposes them."""
        made = {e.out for e in self.prepared}
        found = []
        for b in self.blocks[1:]:
            if b.kind != "all":
                found += [m for m in self._loop_matrices(b) if m not in found
                          and (m in self.model.param_shapes or m in made)]
        return found

    def prepare_tail(self) -> tuple[list[str], list[str]]:
        kept = self._kept_transposes
        return [x for m in kept for x in self._transpose_lines(m)], [self.mt(m) for m in kept]

    def _loop_matrices(self, b: Block) -> list[str]:
        found = []
        for e in b.eqns:
            if e.op == "matmul" and self.atom_rank(e.args[0], b) == "matrix" \
                    and self.atom_rank(e.args[1], b) == 1 and e.args[0].name not in found:
                found.append(e.args[0].name)
        return found

    def mt(self, name: str) -> str:
        key = "T " + name
        if key not in self.py:
            self.py[key] = self.namer(self.py[name] + "_T")
        return self.py[key]

    def step_forward(self, e, b: Block) -> list[str]:
        """One op inside a loop, writing into its home."""
        if e.out in self.view_of:
            return []
        args = [self.value(a, b) for a in e.args]
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        out = self.value(Var(e.out), b)
        if e.op == "matmul" and ranks == ("matrix", 1):
            return [f"np.dot({args[1]}, {self.mt(e.args[0].name)}, out={out})"]
        if e.op == "matmul_t" and ranks[1] == 1:
            return [f"np.dot({args[1]}, {args[0]}, out={out})"]
        if e.op == "concat" and len(set(ranks)) == 1:
            return [f"np.concatenate(({', '.join(args)}), -1, out={out})"]
        return self.ufunc(e, args, ranks, out) or \
            [f"{out}[...] = {lookup(e.op).forward_source(tuple(args), ranks)}"]

    def ufunc(self, e, args, ranks, out) -> list[str] | None:
        if e.op in _AUGMENTED and len(args) == 2:
            if out == args[0]:
                return [f"{out} {_AUGMENTED[e.op]}= {args[1]}"]
            if out == args[1] and e.op in ("add", "mul"):
                return [f"{out} {_AUGMENTED[e.op]}= {args[0]}"]
        if e.op in UFUNC:
            return [f"{UFUNC[e.op]}({', '.join(args)}, out={out})"]
        if e.op == "matmul" and "const" in ranks:
            return [f"np.multiply({args[0]}, {args[1]}, out={out})"]
        if e.op == "copy":
            return [f"np.copyto({out}, {args[0]})"]
        if e.op == "relu":
            return [f"np.maximum({args[0]}, 0, out={out})"]
        if e.op == "sigmoid" and self.block_of[e.out].kind != "all":
            # 1 / s as np.divide of a 0-d one, not np.reciprocal: the same bits (IEEE
            # division), but NumPy vectorises divide and not reciprocal for float32:
            # 3.8 against 7.2 us on (32, 768), the same at (1, 384)
            one = self.const(1)
            return [f"np.negative({args[0]}, out={out})", f"np.exp({out}, out={out})",
                    f"{out} += {one}", f"np.divide({one}, {out}, out={out})"]
        return None

    def whole_forward(self, e, b: Block) -> list[str]:
        """One op of an every-step block: into its array if it has one, one GEMM for products."""
        if e.out in self.view_of:
            return []
        args = [self.value(a, b) for a in e.args]
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        home = self.home[e.out] == "seq" or e.out in self.into
        out = self.value(Var(e.out), b)
        if e.op == "matmul" and ranks == ("matrix", 2):
            m, k = self.atom_size(e.args[1]), self.size[e.out]
            rows = f"{args[1]}.reshape(-1, {m})"
            if home:
                return [f"np.dot({rows}, {args[0]}.T, out={out}.reshape(-1, {k}))"]
            return [f"{out} = np.dot({rows}, {args[0]}.T).reshape({self.T}, {self.B}, {k})"]
        if home and 2 in ranks and self.ufunc(e, args, ranks, out):
            return self.ufunc(e, args, ranks, out)
        if e.out in self.into:
            return [f"{out}[...] = {lookup(e.op).forward_source(tuple(args), ranks)}"]
        return [self.forward_eqn(e, b)]


def _plus(k: int, after: bool = False) -> str:
    """``k`` as a slice bound: 3; or after another term, `` + 3``."""
    if not after:
        return str(k)
    return "" if k == 0 else f" + {k}" if k > 0 else f" - {-k}"
