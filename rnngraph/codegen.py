"""The blocks of :mod:`rnngraph.schedule` -> Python source: a NumPy forward pass
and its reverse (BPTT).  Straight-line code: nothing walks a graph while the
network runs.

Homes.  Every time-indexed value lives in an array (P + T + F, B, n): P slots
before step 1 hold the initial value (a forward state) or zeros (an input), F
slots after step T hold zeros, so ``h(t-1)`` at t = 1 needs no test.  Step t is
index ``t + P - 1``; with P = 1, ``h[t]`` is h(t) as in the book.  Temporaries
that the backward pass reads are kept (in arrays inside loops); others stay
local.  A vector is a row: ``W x`` is ``x @ W.T``, W (size of result, size of x).

Forward.  Each op prints its template from :mod:`rnngraph.ops`; loop blocks
index with ``t``, every-step blocks with slices (``h[now]``, ``x[tm1]``).

Backward: :mod:`rnngraph.bptt`, the same blocks in reverse.

This is the plain path (``optimize=False``), kept for debugging: readable, one
expression per op.  ``optimize=True`` prints loops of in-place NumPy instead
(:mod:`rnngraph.fastgen`), after the rewrites of :mod:`rnngraph.fuse`.

Examples
--------
>>> from rnngraph import parse
>>> src = generate(parse("h(t) = tanh(W h(t-1) + U x(t) + b)\\nx: 3, h: 4"), optimize=False)
>>> print(src[src.index("    for t"):src.index("    outputs")].rstrip())
    for t in range(1, T + 1):
        # h(t) = tanh(W h(t-1) + U x(t) + b)
        _1 = h[t - 1] @ W.T
        _2 = x[t] @ U.T
        _3 = _1 + _2
        _4 = _3 + b
        h[t] = np.tanh(_4)
"""
from __future__ import annotations

import keyword
from functools import cached_property

from . import __version__
from .bptt import Reverse
from .ir import Const, Eqn, Param, Read, Var
from .ops import RUNTIME, lookup
from .printing import expr_text, number_text
from .pysource import docstring_text, Namer, _index, _slice, _slice_name, _tuple, _unpack, _wrap, identifier
from .schedule import Block, plan

#: Names the generated code uses as they are; a model name equal to one is renamed.
_FIXED = {"np", "params", "inputs", "initial", "tape", "cotangents", "outputs", "name",
          "forward", "backward", "prepare", "prepared", "range", "DTYPE", "PARAMETERS", "TAPE",
          "t", "steps", "zip", "slice", *RUNTIME}


class Generator(Reverse):
    """The plain generator: every op prints its template; every block a loop or every step."""

    fast = False
    fixed: frozenset = frozenset()             # more names of the module's own, by subclasses

    def __init__(self, model, dtype: str, optimize: bool):
        self.model = model
        self.dtype = dtype
        self.sym = model.symbols
        self.blocks = plan(model, optimize)
        self.params = list(model.ir().params)
        self.step_vars = [n for b in self.blocks[1:] for n in b.names]
        self.inputs = [n for n, s in self.sym.items() if s.role == "input"]
        self.timed = model.timed
        reads = [a for b in self.blocks for e in b.eqns for a in e.args if isinstance(a, Read)]
        offsets = [a.offset for a in reads if a.offset is not None]
        self.P = max([1] + [-k for k in offsets])
        self.F = max([0] + offsets)
        self.states = [n for n in self.step_vars if self.sym[n].direction == "forward"]
        self.defined_init = {e.defines for e in self.blocks[0].eqns if e.out == f"{e.defines}(0)"}
        self.block_of = {e.out: b for b in self.blocks for e in b.eqns}
        self.origin: dict[str, str] = {}      # temporary -> the equation it comes from
        prog, pending = model.ir(), []
        for e in prog.once + prog.step:
            pending.append(e.out)
            if e.defines is not None:
                key = e.out if e.out.endswith("(0)") else e.defines
                self.origin.update(dict.fromkeys(pending, key))
                pending = []
        self.eqn_of = {e.out: e for b in self.blocks for e in b.eqns}
        self._serves()
        self._name_everything()
        self.rank: dict[str, object] = {}   # "const", "matrix" or the number of leading axes
        self.size: dict[str, object] = {}   # n, or (rows, cols) for a matrix
        self.local: dict[str, str] = {}     # while printing a backward block: temp -> its gradient
        self.home: dict[str, str] = {n: "seq" for n in self.step_vars}
        self.home.update({n: "seq" for n in self.inputs if self.sym[n].timed})
        self._infer()                       # ranks as computed, to see what the backward reads
        self._choose_homes()
        self._infer()                       # again, now that some temporaries live in arrays

    def _serves(self):
        """The equations each value serves: its own, or (a value the compiler made by
        fusing several, e.g. one product for four gates) those of the values it feeds."""
        users: dict[str, list[str]] = {}
        for b in self.blocks:
            for e in b.eqns:
                for a in e.args:
                    if isinstance(a, Var):
                        users.setdefault(a.name, []).append(e.out)
        self.serves: dict[str, list[str]] = {}
        for e in reversed([e for b in self.blocks for e in b.eqns]):
            if e.out in self.origin:
                self.serves[e.out] = [self.origin[e.out]]
            else:
                found = [o for u in users.get(e.out, ()) for o in self.serves.get(u, ())]
                self.serves[e.out] = sorted(set(found), key=self.equation_order)

    def equation_order(self, key: str) -> int:
        init = key.endswith("(0)")
        return next(i for i, q in enumerate(self.model.equations)
                    if q.name == key.removesuffix("(0)") and (q.kind == "init") == init)

    # -- names ---------------------------------------------------------------
    def _name_everything(self):
        namer = self.namer = Namer(_FIXED | self.fixed | set(keyword.kwlist))
        self.py = {n: namer(identifier(n)) for n in self.sym}
        self.T, self.B = namer("T", "n_steps"), namer("B", "n_batch")
        whole = [b for b in self.blocks if b.kind == "all" or self.fast and b.kind != "once"]
        offsets = sorted({0} | {a.offset for b in whole for e in b.eqns
                                for a in e.args if isinstance(a, Read) and a.offset is not None})
        every_step = bool(whole)
        self.slices = {k: namer(_slice_name(k)) for k in offsets} if every_step else {}
        for b in self.blocks:
            for e in b.eqns:
                if e.out not in self.py:
                    self.py[e.out] = namer(f"{identifier(e.defines)}_0" if e.out.endswith("(0)")
                                           else identifier(e.out))
        for n in list(self.py):                     # gradients: dW, dh, d_3
            self.py["d " + n] = namer("d" + self.py[n])

    def d(self, name: str) -> str:
        return self.py["d " + name]

    # -- ranks, sizes, homes --------------------------------------------------
    def atom_rank(self, a, block: Block):
        if isinstance(a, Const):
            return "const"
        if isinstance(a, Param):
            return "matrix" if self.sym[a.name].matrix else 0
        if isinstance(a, Read):
            return 1 if a.offset is None else block.lead
        return block.lead if self.home.get(a.name) == "seq" else self.rank[a.name]

    def atom_size(self, a):
        if isinstance(a, Const):
            return None
        if isinstance(a, Param):
            shape = self.model.param_shapes[a.name]
            return shape if len(shape) == 2 else shape[0]
        if a.name in self.model.sizes and a.name in self.sym:
            return self.model.sizes[a.name]
        return self.size[a.name]

    def _infer(self):
        for b in self.blocks:
            for e in b.eqns:
                row = lookup(e.op)
                self.rank[e.out] = row.rank(tuple(self.atom_rank(a, b) for a in e.args))
                self.size[e.out] = int(e.args[2].value - e.args[1].value) if e.op == "slice" \
                    else row.size(tuple(self.atom_size(a) for a in e.args))

    def _vjp_reads(self, e: Eqn, b: Block) -> set[str]:
        """The names of the values the VJPs of ``e`` read."""
        marks = tuple(f"\0{i}\0" for i in range(len(e.args)))
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        sizes = tuple(self.atom_size(a) for a in e.args)
        text = "".join(lookup(e.op).vjp_source(i, marks, ranks, "\0out\0", "g", 1, sizes) or ""
                       for i in range(len(e.args)))
        found = {e.out} if "\0out\0" in text else set()
        return found | {a.name for a, m in zip(e.args, marks) if m in text and isinstance(a, Var)}

    def _choose_homes(self):
        needed = {n for b in self.blocks for e in b.eqns for n in self._vjp_reads(e, b)}
        elsewhere = {a.name for b in self.blocks for e in b.eqns for a in e.args
                     if isinstance(a, Var) and self.block_of.get(a.name, b) is not b}
        self.needed, self.elsewhere = needed, elsewhere
        for b in self.blocks:
            for e in b.eqns:
                if e.out in self.home:
                    continue
                if b.kind == "once":
                    self.home[e.out] = "saved" if e.out in needed or e.defines else "local"
                elif e.out in elsewhere or e.out in needed and b.kind != "all":
                    self.home[e.out] = "seq"
                else:
                    self.home[e.out] = "saved" if e.out in needed else "local"
        # A slice of a value that runs every step is a view of its array.
        self.view_of: dict[str, tuple[str, int, int]] = {}
        for b in self.blocks[1:]:
            for e in b.eqns:
                if e.op == "slice":
                    self.view_of[e.out] = (e.args[0].name, int(e.args[1].value), int(e.args[2].value))
                    self.home[e.out] = "seq"
        for e in reversed([e for b in self.blocks[1:] for e in b.eqns]):
            if e.out in self.view_of:
                self.home[self.view_of[e.out][0]] = "seq"
        # Gradients: arrays for time-indexed values others read; accumulators for what
        # the loops read from the prologue; plain locals inside one block.
        self.ghome = {}
        for n, h in self.home.items():
            if h == "seq":
                sliced = n in self.view_of or n in {p for p, _, _ in self.view_of.values()}
                self.ghome[n] = "array" if n in self.sym or n in elsewhere or sliced else "local"
            elif self.block_of.get(n) is self.blocks[0]:
                self.ghome[n] = "acc" if n in elsewhere or self.eqn_of[n].defines else "local"
            else:
                self.ghome[n] = "local"

    # -- reading values ------------------------------------------------------
    def at(self, name: str, k: int, block: Block) -> str:
        if block.kind == "all":
            return f"{name}[{self.slices[k]}]"
        return f"{name}[{_index(self.P - 1 + k)}]"

    def value(self, a, block: Block) -> str:
        if isinstance(a, Const):
            return number_text(a.value)
        if isinstance(a, Param) or isinstance(a, Read) and a.offset is None:
            return self.py[a.name]
        k = a.offset if isinstance(a, Read) else 0
        return self.at(self.py[a.name], k, block) if self.home.get(a.name) == "seq" else self.py[a.name]

    # -- the forward pass ----------------------------------------------------
    def comment(self, e: Eqn, b: Block, last: list) -> list[str]:
        """``# h(t) = ...`` before the first op of each equation (of each it serves)."""
        owners = tuple(self.serves.get(e.out, ()))
        if not owners or owners == last[0]:
            return []
        printed = last[1] if len(last) > 1 else last.append(set()) or last[1]
        last[0] = owners
        lines = []
        for owner in owners:
            if len(owners) > 1 and owner in printed:
                continue
            printed.add(owner)
            eq = self.model.equations[self.equation_order(owner)]
            same = b.kind == "once" and eq.kind == "seq"
            note = ", the part that is the same at every step" if same else ""
            lines.append(f"# {eq.lhs_text} = {expr_text(eq.rhs)}{note}")
        if not lines:
            lines.append("# " + ", ".join(self.model.equations[self.equation_order(o)].lhs_text
                                          for o in owners) + ": together")
        return lines

    def _zeros(self, name: str) -> str:
        """Source for zeros shaped like the time-free value ``name``."""
        rank, size = self.rank[name], self.size[name]
        shape = {"matrix": size, 0: (size,), 1: (self.B, size)}[rank]
        return f"np.zeros({_tuple(shape, '')}, DTYPE)"

    def forward_eqn(self, e: Eqn, b: Block) -> str | None:
        if e.out in self.view_of:
            return None                           # a view, made with the arrays
        args = tuple(self.value(a, b) for a in e.args)
        src = lookup(e.op).forward_source(args, tuple(self.atom_rank(a, b) for a in e.args))
        target = self.at(self.py[e.out], 0, b) if self.home[e.out] == "seq" else self.py[e.out]
        return f"{target} = {src}"

    @cached_property
    def prepared(self) -> list[Eqn]:
        """The prologue's equations whose arguments are parameters, numbers and values of
        such equations: what ``prepare(params)`` computes (a stacked matrix, a sum of
        biases), so that :meth:`rnngraph.compiled.Compiled.prepare` can keep it across
        calls.  Not a value of the model's own (the caller gets it as an output) nor an
        initial value (it is written into its sequence).  Asked once the homes are
        chosen, while printing."""
        done: list[Eqn] = []
        names: set[str] = set()
        for e in self.blocks[0].eqns:
            if e.out in self.sym or e.out.endswith("(0)") or self.home.get(e.out) == "seq" \
                    or e.out in self.view_of:
                continue
            if all(isinstance(a, (Param, Const)) or isinstance(a, Var) and a.name in names
                   for a in e.args):
                done.append(e)
                names.add(e.out)
        return done

    def prepare_tail(self) -> tuple[list[str], list[str]]:
        """More of ``prepare``: its lines after the equations and the names they bind
        (the optimized path's transposed matrices)."""
        return [], []

    def prepared_names(self) -> list[str]:
        """What ``prepare`` returns and ``forward`` unpacks, in that order."""
        return [self.py[e.out] for e in self.prepared] + self.prepare_tail()[1]

    def prepare(self) -> list[str]:
        """``prepare(params)``: the values that depend on the parameters alone, as a tuple."""
        out = ["def prepare(params):",
               '    """The values forward computes from the parameters alone, in the order it unpacks',
               '    them: made each call, or once by Compiled.prepare for calls with the same parameters."""']
        tail = self.prepare_tail()[0]
        if not self.prepared and not tail:
            return out + ["    return ()"]
        out += _unpack([self.py[p] for p in self.params], "(params[name] for name in PARAMETERS)")
        prologue, last = self.blocks[0], [None]
        for e in self.prepared:
            out += ["    " + c for c in self.comment(e, prologue, last)]
            out.append("    " + self.forward_eqn(e, prologue))
        out += tail
        out += _wrap(f"    return {_tuple(self.prepared_names(), '')}")
        return out

    def forward(self) -> list[str]:
        T, B, P, F = self.T, self.B, self.P, self.F
        dt = "DTYPE"
        steps = f"over steps 1..{T} " if self.timed else ""
        out = [f"def forward(params, inputs, initial, {T}, {B}, prepared=None):",
               f'    """Run the equations {steps}for a batch of {B}; return (outputs, tape).',
               '    prepared: what prepare(params) returns, if the caller kept it."""']
        out += _unpack([self.py[p] for p in self.params], "(params[name] for name in PARAMETERS)")
        out += [f'    {self.py[n]} = inputs["{n}"]' for n in self.inputs if not self.sym[n].timed]
        prologue = self.blocks[0]
        before = self.prepared_names()
        if before:
            out.append("")
            out.append("    # Values of the parameters alone (see prepare)")
            out += _unpack(before, "prepare(params) if prepared is None else prepared",
                           sequence=True)
        done = {e.out for e in self.prepared}
        rest = [e for e in prologue.eqns if e.out not in done]
        if rest:
            out.append("")
            out.append("    # Time-free values, initial values and the loop-invariant part of every step"
                       if self.timed else "    # The equations (no time index)")
            last = [None]
            for e in rest:
                out += ["    " + c for c in self.comment(e, prologue, last)]
                out.append("    " + self.forward_eqn(e, prologue))
        if self.timed:
            out.append("")
            length = f"{T} + {P + F}" if P + F else T
            after = f"\n    # The last {F} hold zeros, for reads after step {T}." if F else ""
            out.append(f"    # Sequences are arrays ({length}, {B}, n): step t is index "
                       + ("t, index 0 the step before the first." if P == 1 else
                          f"t + {P - 1}; the {P} slots\n"
                          "    # before step 1 hold what reads before it see.")
                       + after)
            for n in [n for n in self.inputs if self.sym[n].timed]:
                out.append(f"    {self.py[n]} = {self.alloc}(({length}, {B}, {self.model.sizes[n]}), {dt})")
                out += self.pad_lines(n, zero_start=True)
                out.append(f"    {self.py[n]}[{P}:{T} + {P}] = inputs[\"{n}\"]")
            order = {e.out: i for i, e in enumerate(e for b in self.blocks for e in b.eqns)}
            seqs = [n for n in self.home if self.home[n] == "seq" and n not in self.inputs]
            late = [n for n in seqs if n in self.view_of or self.bound(n)]
            for n in sorted(seqs, key=lambda n: (n in late, order[n] if n in late else 0)):
                if self.bound(n):
                    out.append(f"    {self.py[n]} = {self.bound(n)}")
                elif n in self.view_of:
                    parent, lo, hi = self.view_of[n]
                    out.append(f"    {self.py[n]} = {self.py[parent]}[..., {lo}:{hi}]")
                else:
                    size = self.atom_size(Var(n))
                    out.append(f"    {self.py[n]} = {self.alloc}(({length}, {B}, {size}), {dt})")
                    out += self.pad_lines(n, zero_start=n not in self.states)
            for n in self.states:
                init = self.py[f"{n}(0)"] if n in self.defined_init else f'initial["{n}(0)"]'
                out.append(f"    {self.py[n]}[:{P}] = {init}")
            out += self.slice_lines()
        for b in self.blocks[1:]:
            out.append("")
            out += self.forward_block(b)
        out.append("")
        outs = [f'"{n}": {self.py[n]}[{P}:{T} + {P}]' for n in self.step_vars]
        outs += [f'"{n}": {self.py[n]}' for n in self.sym if self.sym[n].role == "value"]
        out += self._dict("outputs", outs)
        out += self._dict("tape", [f'"{n}": {n}' for n in self.tape_names()])
        out.append("    return outputs, tape")
        return out

    #: How sequence arrays are allocated: zeros, so that slots no step writes read as zero.
    alloc = "np.zeros"

    def bound(self, n: str) -> str | None:
        """The name of the array value n lives in, if not its own (none here)."""
        return None

    def pad_lines(self, n: str, zero_start: bool) -> list[str]:
        """Zeros in the slots before step 1 and after step T, if allocation left them empty."""
        if self.alloc == "np.zeros":
            return []
        name, T, P, F = self.py[n], self.T, self.P, self.F
        return ([f"    {name}[:{P}] = 0"] if zero_start else []) + \
            ([f"    {name}[{T} + {P}:] = 0"] if F else [])

    def block_title(self, b: Block, backward: bool = False) -> str:
        names = ", ".join(f"{n}(t)" for n in b.names)
        if not names:
            return ("    # The part of the loop below that does not depend on its recurrence, "
                    "every step at once" + (": its gradients" if backward else ""))
        if b.kind == "all":
            return f"    # {names}" + (", every step at once" if backward else
                                        ": no recurrence, so every step at once")
        return f"    # {names}: " + ("back through time" if backward else f"a loop {b.kind} in time")

    def forward_block(self, b: Block) -> list[str]:
        out = [self.block_title(b)]
        ind = "    "
        if b.kind != "all":
            out.append(f"    for t in {self._range(b.kind)}:")
            ind = "        "
        last = [None]
        for e in b.eqns:
            line = self.forward_eqn(e, b)
            if line:
                out += [ind + c for c in self.comment(e, b, last)]
                out.append(ind + line)
        return out

    def slice_lines(self) -> list[str]:
        """The slices the every-step blocks index with: ``h[now]`` is h(t) for every t."""
        if not self.slices:
            return []
        what = ", ".join(f"t{k:+d}".replace("+0", "") for k in self.slices)
        return [f"    # Slices of every step's {what}, for the blocks that run every step at once"] + \
            _unpack(list(self.slices.values()),
                    ", ".join(_slice(self.P + k, self.T) for k in self.slices))

    def tape_names(self) -> list[str]:
        """The Python names of what forward keeps for backward."""
        return [self.py[n] for n in self.py if not n.startswith("d ")
                and (self.home.get(n) in ("seq", "saved") or n in self.inputs)]

    def _range(self, kind: str, reverse: bool = False) -> str:
        forward = (kind == "forward") != reverse
        return f"range(1, {self.T} + 1)" if forward else f"range({self.T}, 0, -1)"

    @staticmethod
    def _dict(name: str, items: list[str]) -> list[str]:
        if not items:
            return [f"    {name} = {{}}"]
        lines, line = [], f"    {name} = {{"
        for i, item in enumerate(items):
            piece = item + (", " if i < len(items) - 1 else "}")
            if len(line) + len(piece) > 99:
                lines.append(line.rstrip())
                line = " " * (len(name) + 8)
            line += piece
        return lines + [line]

    # -- the module ----------------------------------------------------------
    def import_lines(self) -> list[str]:
        """What the module imports from rnngraph."""
        return [f"from rnngraph.ops import {', '.join(RUNTIME)}"]

    def zeros_like(self, array: str) -> str:
        """Source for zeros shaped like the sequence array ``array``."""
        return f"np.zeros_like({array})"

    def constant_lines(self) -> list[str]:
        """Module-level constants the functions use (none here)."""
        return []

    def module(self) -> str:
        m = self.model
        body = self.prepare() + ["", ""] + self.forward() + ["", ""] + self.backward()
        sizes = ", ".join(f"{n} {m.sizes[n]}" for n in self.sym
                          if n in m.sizes and self.sym[n].role != "parameter")
        head = [f'"""{docstring_text(m.filename)}: forward and backward passes, generated by rnngraph {__version__}.',
                "",
                "Sizes: " + sizes + f"; dtype {self.dtype}.",
                "Vectors are rows: W x is x @ W.T, W being (size of result, size of x) as in PyTorch.",
                '"""',
                "import numpy as np",
                "",
                *self.import_lines(),
                "",
                f"DTYPE = np.{self.dtype}",
                *self.constant_lines(),
                *_wrap(f"PARAMETERS = {_tuple(self.params)}"),
                *_wrap(f"TAPE = {_tuple(self.tape_names())}"),
                "", ""]
        return "\n".join(head + body) + "\n"


def generate(model, dtype: str = "float64", optimize: bool = True) -> str:
    """The Python source of ``forward`` and ``backward`` for ``model`` (sizes all known).

    See the module docstring for the plan, and :class:`rnngraph.compiled.Compiled`
    for the functions' contract.
    """
    return generator(model, dtype, optimize).module()


def generator(model, dtype: str = "float64", optimize: bool = True,
              jit: bool = False) -> Generator:
    """The optimized generator (:mod:`rnngraph.fastgen`), or with ``optimize=False`` the plain
    one.  ``jit``: the optimized generator's time loops as functions of their own, for Numba."""
    if not optimize:
        return Generator(model, dtype, optimize)
    from .fastgen import FastGenerator
    gen = FastGenerator(model, dtype, optimize)
    gen.jit = jit
    return gen

