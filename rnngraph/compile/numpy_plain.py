"""The plain NumPy printer: a forward and a backward program -> a Python module.

Every block prints as it is: the prologue straight, a loop as ``for t in ...``,
each equation as one statement.  A temporary used once is written into the
expression that uses it (with the brackets its precedence needs) unless that
would read a home after a write to it, or make a long line; the others get names
from what they compute (``tanh_c``, ``W_h``, ``dW_h``), never counters.

Homes.  Every time-indexed value lives in an array (P + T + F, B, n): P slots
before step 1 hold the initial values h(0), h(-1), ... (zeros for an input), F
slots after step T zeros, so ``h(t-2)`` at t = 1 needs no test.  Step t is index
``t + P - 1``; with P = 1, ``h[t]`` is h(t) as in the book.
"""
from __future__ import annotations

import keyword
import os

from .. import __version__
from ..lang import ast
from ..lang.printing import number_text
from .source import (docstring_text, dict_lines, identifier, Namer, slice_name, statement_lines,
                     step_index, tuple_text, unpack_lines, wrap)
from .optable import ATOM, RUNTIME, UNARY, Text, lookup
from .lower import STEP_HOMES
from .program import Const, Home, Tmp

#: Names the generated code uses as they are; a model name equal to one is renamed.
FIXED = {"np", "params", "inputs", "initial", "tape", "cotangents", "outputs", "grads", "name",
         "forward", "backward", "prepare", "prepared", "range", "DTYPE", "PARAMETERS", "TAPE",
         "t", "slice", "__debug__", "WORK", "Workspace", "sum_rows", *RUNTIME}

_LONG = 64          # an inlined expression longer than this gets a name instead


class Printer:
    """Prints the forward program ``fwd`` and backward program ``back`` of ``model``."""

    PATH = "The plain path: each equation as written, each loop step by step."
    #: Names the printed module uses as they are (an exporter's add its own)
    RESERVED = FIXED

    def __init__(self, model, fwd, back, dtype: str, params: list[str]):
        self.model, self.fwd, self.back, self.dtype = model, fwd, back, dtype
        self.sym = model.symbols
        self.params = params
        self.inputs = [n for n, s in self.sym.items() if s.role == "input"]
        # A home that is lanes of another (rnngraph/compile/pack.py) is written with it
        # Lanes of other arrays: the forward values' layout is the forward program's (the
        # backward reads them from the tape), the gradients' and what the backward program
        # makes the backward program's (they may differ: rnngraph/compile/layout.py)
        self.views = fwd.views
        self.gviews = back.views
        written = [m for b in fwd.blocks for e in b.eqns if isinstance(e.out, Home)
                   for m in fwd.units(e.out.name)]
        self.seqs = [n for n in dict.fromkeys(written) if n in self.sym and self.sym[n].timed]
        self.values = [n for n, s in self.sym.items() if s.role == "value"]
        offsets = [a.offset for p in (fwd, back) for b in p.blocks for e in b.eqns
                   for a in (e.out, *e.args) if isinstance(a, Home) and a.offset is not None]
        self.slots = model.initial_slots
        self.P = max([1] + [-k for k in offsets] + [1 - s for s, _ in self.slots.values()])
        self.F = max([0] + offsets)
        namer = self.namer = Namer(self.RESERVED | set(keyword.kwlist))
        self.py = {n: namer(identifier(n)) for n in self.sym}
        # the length of each index: T for t, T_u for a declared u (index u); self.T is that
        # of the index being printed (``along``: a block's, an array's)
        self.lengths = {"t": namer("T", "n_steps")}
        self.along = "t"
        self.B = namer("B", "n_batch")
        # a loop's variable: t, or the index's name where the model leaves it free
        self.var = {"t": "t"}
        for d in model.program.indices:
            self.lengths[d.name] = namer(f"T_{d.name}", f"n_steps_{d.name}")
            free = identifier(d.name) not in namer.taken and identifier(d.name) not in FIXED \
                and not keyword.iskeyword(d.name)
            self.var[d.name] = namer(identifier(d.name)) if free else "t"
        # a tree's index (tree n): its structure, which the runtime builds (rnngraph/graphs/
        # trees.py) and passes in inputs["tree n"]: the slots of each level's nodes, each
        # slot's children's slots (the slot before the first node, a leaf's), the leaves'
        self.trees = {d.name: tuple(namer(f"{w}_{identifier(d.name)}") for w in
                                    ("levels", "left", "right", "leaves"))
                      for d in model.program.indices if d.tree}
        self.level = namer("at") if self.trees else None
        self.d = {n: namer("d" + self.py[n]) for n in self.sym}
        offsets = {(b.index, a.offset) for p in (fwd, back) for b in p.blocks if b.kind == "all"
                   for e in b.eqns for a in (e.out, *e.args)
                   if isinstance(a, Home) and a.offset is not None}
        self.slices = {(i, k): namer(slice_name(k) if i == "t" else f"{slice_name(k)}_{i}")
                       for i, k in sorted(offsets)}
        self.kind = "once"
        # Homes the passes made (a temporary kept over the steps): named after what they hold
        self.made = {}                      # name -> the program that writes it
        # The step values (t, end: rnngraph/compile/lower.py), which forward fills
        self.stepped = sorted(n for kind, n in fwd.types if kind == "home"
                              and n.startswith(STEP_HOMES))
        for n in self.stepped:
            i = n.split("_", 1)[1]
            self.made[n] = fwd
            stem = "step" if n.startswith(STEP_HOMES[0]) else "n_steps"
            self.py[n] = namer(f"{stem}_{i}" if i != "t" else stem)
            self.d[n] = namer("d" + self.py[n])
        packed = {v[0] for v in fwd.views.values()}      # gates packed: i, f, o, g of ifog
        for base in packed:
            self.made[base] = fwd
            label = base[1:]
            self.py[base] = namer(identifier(label) if label.isidentifier() else f"lanes_{label}")
            self.d[base] = namer("d" + self.py[base])
        for prog in (fwd, back):
            for b in prog.blocks:
                for e in b.eqns:
                    if isinstance(e.out, Home) and e.out.name not in self.sym \
                            and e.out.name not in self.py and not e.out.grad:
                        self.made[e.out.name] = prog
                        label = e.out.name[1:]            # ifo, of packed gates
                        lanes = e.out.name in fwd.views and label.isidentifier()
                        self.py[e.out.name] = namer(identifier(label) if lanes
                                                    else self.wish(prog, e, {}))
                        self.d[e.out.name] = namer("d" + self.py[e.out.name])
        for v in fwd.views:                 # a value made lanes of another, no longer written
            if v not in self.py:
                self.made[v] = fwd
                label = v.strip("%'")
                self.py[v] = namer(identifier(label) if label.isidentifier() else f"z_{label}")
                self.d[v] = namer("d" + self.py[v])
        for base in dict.fromkeys(v[0] for v in back.views.values()):   # concatenations
            if base not in self.made:
                first = min((v for v, w in back.views.items() if w[0] == base),
                            key=lambda v: back.views[v][1])
                self.made[base] = back
                self.py[base] = namer(f"cat_{self.py[first]}")
                self.d[base] = namer("d" + self.py[base])
        for v, (base, lo, hi) in back.views.items():    # lanes read, written by their pieces
            if v not in self.py:
                self.made[v] = back
                self.py[v] = namer(f"{self.py[base]}_{lo}_{hi}")
                self.d[v] = namer("d" + self.py[v])
        self.taken = set(namer.taken)       # each function names its temporaries afresh

    @property
    def T(self) -> str:
        """The length of the index being printed."""
        return self.lengths[self.along]

    def along_of(self, name: str) -> str:
        """The index of a timed home: a model variable's, or that of the block that writes it."""
        s = self.sym.get(name)
        if s is not None:
            return s.loop or "t"
        return (self.back if self.made.get(name) is self.back else self.fwd).index_of(name)

    def at(self, name: str):
        """``self`` printing along the index of ``name`` (a context for one array's lines)."""
        self.along = self.along_of(name)
        return self

    # -- atoms ---------------------------------------------------------------------
    def index(self, k: int) -> str:
        return step_index(k, self.var[self.along])

    def slot(self, step: int | str, name: str | None = None) -> int | str:
        """The index of a fixed step: a number, or for ``"end"`` (the last step of ``name``'s
        index) T + P - 1."""
        if step == "end":
            T = self.lengths[self.along_of(name)] if name else self.T
            return T if self.P == 1 else f"{T} + {self.P - 1}"
        return step + self.P - 1

    def home(self, h: Home) -> str:
        base = self.d[h.name] if h.grad else self.py[h.name]
        if h.step == "all":                 # every step of another index's sequence at once
            T = self.lengths[self.along_of(h.name)]
            return f"{base}[{self.P}:{T} + {self.P}]"
        if h.step is not None:
            return f"{base}[{self.slot(h.step, h.name)}]"
        if h.offset is None:
            return base
        if self.kind == "all":
            return f"{base}[{self.slices[self.along, h.offset]}]"
        if self.along in self.trees:        # the nodes of one level: h[at], h[left_n[at]]
            if h.child is not None:
                _, left, right, _ = self.trees[self.along]
                return f"{base}[{left if h.child == 'left' else right}[{self.level}]]"
            return f"{base}[{self.level}]"
        return f"{base}[{self.index(h.offset)}]"

    def slice_lines(self, prog) -> list[str]:
        """``tm1, now = slice(0, T), slice(1, T + 1)``: the steps t + k of every-step blocks."""
        frames = self.frames([b for b in prog.blocks if b.kind == "all"])
        if frames is None:
            return []
        return ["    # The steps t + k of the blocks that run every step at once", f"    {frames}"]

    def frames(self, blocks, lo: str = "", hi: str = "") -> str | None:
        """``tm1, now = slice(0, T), slice(1, T + 1)``: the steps t + k the every-step
        ``blocks`` read and write, over the steps ``lo`` + 1..``hi`` (names; by default
        1..T of each index); None if they read none."""
        used = sorted({(b.index, a.offset) for b in blocks for e in b.eqns
                       for a in (e.out, *e.args) if isinstance(a, Home) and a.offset is not None})
        if not used:
            return None
        spans = []
        for i, k in used:
            k, end = self.P + k, hi or self.lengths[i]
            first = (f"{lo} + {k}" if lo else str(k)) if k else lo or "0"
            spans.append(f"slice({first}, {end} + {k})" if k else f"slice({first}, {end})")
        return f"{', '.join(self.slices[key] for key in used)} = {', '.join(spans)}"

    def atom(self, a, texts) -> Text:
        if isinstance(a, Const):
            text = number_text(a.value)
            return Text(text, UNARY if text.startswith("-") else ATOM)
        if isinstance(a, Home):
            return Text(self.home(a), ATOM)
        return texts[a.name]

    # -- blocks ---------------------------------------------------------------------
    def block(self, prog, block, indent: str) -> list[str]:
        """The statements of ``block``, temporaries used once written into their use."""
        eqns = block.eqns
        uses: dict[str, list[int]] = {}
        for i, e in enumerate(eqns):
            for a in e.args:
                if isinstance(a, Tmp):
                    uses.setdefault(a.name, []).append(i)
        reads: dict[str, set] = {}          # the homes a temporary's text reads
        texts: dict[str, Text] = {}
        lines, origin = [], None
        for i, e in enumerate(eqns):
            args = [self.atom(a, texts) for a in e.args]
            types = tuple(prog.type(a, block) for a in e.args)
            text = self.op_text(e.op, tuple(args), types, e.attrs)
            read = {a.key for a in e.args if isinstance(a, Home)}
            read |= set().union(*(reads.get(a.name, set()) for a in e.args if isinstance(a, Tmp)))
            if isinstance(e.out, Tmp):
                reads[e.out.name] = read
                used = uses.get(e.out.name, [])
                if len(used) == 1 and len(text.text) <= _LONG and not any(
                        isinstance(eqns[k].out, Home) and eqns[k].out.key in read
                        for k in range(i + 1, used[0])):
                    texts[e.out.name] = text
                    continue
                name = self.namer(self.wish(prog, e, texts))
                texts[e.out.name] = Text(name, ATOM)
                reads[e.out.name] = set()
                target = name
            else:
                target = self.home(e.out)
                if e.out.offset is None and e.out.step is None and not e.accumulate \
                        and e.out.name in self.sym:
                    target += "[...]"
            if e.origin != origin and e.origin is not None:
                lines += self.comment(e.origin, indent)
                origin = e.origin
            lines += statement_lines(self.statement(indent, e, target, text))
        return lines

    def statement(self, indent: str, e, target: str, text: Text) -> str:
        """The statement that writes ``text`` to ``target`` for the equation ``e``; into the
        children of a level's nodes, add_at (the leaves' share the slot before the first)."""
        if isinstance(e.out, Home) and e.out.child is not None and e.accumulate:
            base, at = target.split("[", 1)
            return f"{indent}add_at({base}, {at[:-1]}, {text.text})"
        return f"{indent}{target} {'+=' if e.accumulate else '='} {text.text}"

    def op_text(self, op: str, args, types, attrs) -> Text:
        """The source of ``op`` on the printed ``args``: the op table's NumPy (an exporter
        prints another library's)."""
        return lookup(op).py(args, types, attrs)

    def equation_text(self, origin) -> str:
        """The model equation ``origin`` names (its left side), as a comment's text; a
        tuple (equations computed together, rnngraph/compile/pack.py) gives one per line."""
        from ..lang.printing import expr_text
        if isinstance(origin, tuple):
            return "\n# ".join(self.equation_text(o) for o in origin)
        eq = next(q for q in self.model.equations if q.lhs_text == origin)
        return f"{origin} = {expr_text(eq.rhs)}"

    def comment(self, origin, indent: str) -> list[str]:
        return [f"{indent}# {line}" for line in self.equation_text(origin).split("\n# ")]

    def wish(self, prog, e, texts) -> str:
        """A name for the temporary ``e`` computes, from what it computes."""
        def word(a):
            if isinstance(a, Home):         # (a view not named yet, while homes are: None)
                return ("d" if a.grad else "") + self.py[a.name] if a.name in self.py else None
            text = texts.get(a.name) if isinstance(a, Tmp) else None
            if text is not None and text.prec == ATOM and text.text.isidentifier():
                return text.text
            return None
        words = [word(a) for a in e.args if not isinstance(a, Const)]
        first = e.origin[0] if isinstance(e.origin, tuple) else e.origin
        stem = (first or "v").split("(")[0]
        if e.op == "stack" and all(words):        # W_ii, W_if, W_ig, W_io -> W_i_ifgo
            common = os.path.commonprefix(words)
            rest = [w[len(common):] for w in words]
            if common and all(rest):
                return f"{common.rstrip('_')}_{''.join(rest)}"
        if e.op == "matvec" and all(words):
            return f"{words[0]}_{words[1]}"
        if e.op == "transposed" and all(words):
            return f"{words[0]}_T"
        if e.op == "vecmat" and all(words) and words[1].endswith("_T"):     # h @ W^T: W h
            return f"{words[1][:-2]}_{words[0]}"
        if e.op in ("outer", "vecmat") and all(words):
            return f"{e.op}_{words[0]}"
        if len(words) == 1 and words[0] and e.op not in ("sum_to", "copy"):
            return f"{e.op}_{words[0]}"
        return f"{'dz' if e.out.name.startswith('%g') else 'z'}_{identifier(stem)}"

    def zeros(self, shape: str, role: str) -> str:
        """Source of an array of zeros of ``shape`` (the optimized printer keeps them)."""
        return f"np.zeros({shape}, DTYPE)"

    def empty(self, shape: str, role: str) -> str:
        return f"np.empty({shape}, DTYPE)"

    def sequence(self, name: str, shape: str) -> list[str]:
        """``name = `` an array over the steps of ``shape`` that the forward pass writes at
        every step 1..T: zeros before and after them."""
        return [f"    {name} = {self.zeros(shape, name)}"]

    def grad_array(self, n: str) -> list[str]:
        """``dn = ``: the array the gradient of ``n`` starts from."""
        return [f"    {self.d[n]} = {self.zeros_like(n)}"]

    def zeros_like(self, n: str) -> str:
        """Source of the zeros the gradient of ``n`` starts from."""
        return f"np.zeros_like({self.py[n]}, DTYPE)"

    #: What the module imports from rnngraph/runtime/ops.py.
    RUNTIME = RUNTIME

    def imports(self) -> list[str]:
        return []

    def extra(self, prog, kind: str) -> list[str]:
        """The homes the passes made that ``prog`` writes: timed ones allocated (written
        step by step or for every step), time-free ones assigned where computed."""
        lines = []
        for n, p in self.made.items():
            if p is prog and n in prog.timed and n not in prog.views and n not in self.stepped:
                self.along = prog.index_of(n)
                t = prog.types[("home", n)]
                rows = f"{self.T} + {self.P + self.F}"
                dims = ", ".join([rows] + self.lead_dims(t) + [str(x) for x in t.shape])
                if any(v[0] == n for v in prog.views.values()):
                    lines += self.sequence(self.py[n], f"({dims})")
                    continue
                line = f"    {self.py[n]} = {self.empty(f'({dims})', self.py[n])}"
                lines.append(line + "   # every step written" if len(line) < 78 else line)
        return lines

    def step_lines(self) -> list[str]:
        """The step values: each step's number in an array over the steps (the slots before
        step 1 hold 0, -1, ..., those after T, T + 1, ...), and the number of steps."""
        lines = []
        for n in self.stepped:
            self.along = n.split("_", 1)[1]
            if n.startswith(STEP_HOMES[1]):
                lines.append(f"    {self.py[n]} = np.full((1,), {self.T}, DTYPE)")
                continue
            rows = f"{self.T} + {self.P + self.F}"
            lines += self.sequence(self.py[n], f"({rows}, {self.B}, 1)")
            lines.append(f"    {self.py[n]}[...] = np.arange({1 - self.P}, {self.T} + {self.F + 1}, "
                         "dtype=DTYPE)[:, None, None]")
        self.along = "t"
        return lines

    def view_lines(self, names, views: dict, grad: bool = False) -> list[str]:
        """Each of ``names`` that is lanes of another home in ``views`` bound to them."""
        py = self.d if grad else self.py
        return [f"    {py[n]} = {py[views[n][0]]}[..., {views[n][1]}:{views[n][2]}]"
                for n in names if n in views]

    def full_grad(self, n: str) -> bool:
        """Whether the gradient of ``n`` is an array over the steps (the optimized printer
        keeps some in one step's buffer: rnngraph/compile/memory.py)."""
        return True

    def initial_grad(self, n: str, step: int) -> str:
        """Source of the gradient of ``n``'s initial value at ``step``."""
        return f"{self.d[n]}[{self.slot(step)}]"

    def shown(self, names) -> str:
        """The variables a block computes, for its comment: ``h(t)``, or ``J = sum_t`` for a sum."""
        funcs = {e.name: e.rhs.func for e in self.model.equations if e.kind == "value"
                 and isinstance(e.rhs, ast.Call)}
        return ", ".join(f"{n} = {funcs[n]}" if n in self.sym and self.sym[n].over
                         else f"{n}({self.along})" for n in names)

    def loop(self, block) -> str:
        if block.index in self.trees:       # a tree: level by level, leaves first
            levels = self.trees[block.index][0]
            return f"for {self.level} in {levels if block.direction > 0 else f'reversed({levels})'}:"
        T, P = self.T, self.P
        first, last = (str(P), f"{T} + {P}") if P > 1 else ("1", f"{T} + 1")
        t = self.var[block.index]
        if block.direction > 0:
            return f"for {t} in range({first}, {last}):"
        stop = f"{P - 1}"
        if P > 1:
            return f"for {t} in range({last} - 1, {stop}, -1):"
        return f"for {t} in range({T}, 0, -1):"

    def blocks(self, prog, title) -> list[str]:
        lines = []
        for b in prog.blocks:
            self.kind, self.along = b.kind, b.index
            if b.kind in ("once", "all"):
                body = self.block(prog, b, "    ")
                if body:
                    lines += ["", f"    # {title(b)}"] + body
                continue
            lines += self.loop_lines(prog, b, title(b))
        return lines

    def loop_lines(self, prog, b, title: str) -> list[str]:
        """A loop block: its loop and its statements (an exporter prints a library's loop)."""
        return ["", f"    # {title}", f"    {self.loop(b)}",
                *(self.block(prog, b, "        ") or ["        pass"])]

    # -- the module ------------------------------------------------------------------
    def steps(self, name: str | None = None) -> str:
        """Steps 1..T of the index being printed; for an input over a tree, its leaves."""
        if name is not None and self.along in self.trees and self.sym[name].role == "input":
            return self.trees[self.along][3]
        return f"{self.P}:{self.T} + {self.P}"

    def lead_dims(self, t) -> list[str]:
        """The leading axes of a value of type ``t`` at one step: the batch's, after every
        step of the index ``t.over`` where it has one (e(u, t) at one u)."""
        if t.over is not None and t.over in self.trees:     # one node's (arrays: every node's)
            return [self.B] * (t.lead - 1)
        if t.over is not None:
            return [self.lengths[t.over]] + [self.B] * (t.lead - 1)
        return [self.B] * t.lead

    def shape(self, name: str) -> str:
        t = self.fwd.type(Home(name))
        return tuple_text([*self.lead_dims(t), *t.shape], "")

    def module(self) -> str:
        m, T, B = self.model, self.T, self.B
        sizes = ", ".join(f"{n} {'x'.join(map(str, m.shape(n)))}" for n in m.sizes
                          if self.sym[n].role != "parameter")
        head = [f'"""{docstring_text(m.filename)}: forward and backward passes, generated by rnngraph {__version__}.',
                "", self.PATH,
                f"Sizes: {sizes}; dtype {self.dtype}.",
                "Vectors are rows: W x is x @ W.T, W being (size of result, size of x) as in PyTorch.",
                '"""', "import numpy as np", "",
                *wrap(f"from rnngraph.runtime.ops import "
                      f"({', '.join(n for n in self.RUNTIME if n != 'add_at' or self.trees)})")] + \
            self.imports() + [
                "", f"DTYPE = np.{self.dtype}"]
        head += wrap(f"PARAMETERS = {tuple_text(self.params)}")
        if self.trees:                      # the trees' indices, their arrays' slots (P, F)
            head += [f"TREES = {tuple(self.trees)!r}", f"TREE_SLOTS = ({self.P}, {self.F})"]
        tape = self.tape()
        head += wrap(f"TAPE = {tuple_text(self.py[n] if n in self.made else n for n in tape)}")
        unpack = self.unpack_params()
        return "\n".join(head + self.prepare() + self.forward(unpack, tape)
                         + self.backward(unpack, tape)) + "\n"

    def tape(self) -> list[str]:
        """What forward hands to backward: the model's values, then the homes it made."""
        tape = [n for n in self.sym if self.sym[n].role in ("input", "sequence", "state", "value")]
        return tape + [n for n, p in self.made.items() if p is self.fwd]

    def unpack_params(self) -> list[str]:
        return unpack_lines([self.py[p] for p in self.params],
                            "(params[name] for name in PARAMETERS)")

    #: What ``prepare`` says it makes (Compiled.prepare calls it once for many calls).
    PREPARED = "nothing, on the plain path"

    def prepare(self) -> list[str]:
        return ["", "", "def prepare(params):",
                f'    """What forward computes from the parameters alone: {self.PREPARED}."""',
                "    return ()"]

    def more_lengths(self) -> str:
        """The lengths of the declared indices, after the others in a signature: ``, T_u``."""
        return "".join(f", {self.lengths[i]}" for i in self.lengths if i != "t")

    def forward(self, unpack, tape) -> list[str]:
        self.along = "t"
        T, B, P, F = self.T, self.B, self.P, self.F
        self.namer = Namer(self.taken)
        more = self.more_lengths()
        over = f"steps 1..{T}" if not more else \
            " and ".join(f"steps 1..{self.lengths[i]} of {i}" for i in self.lengths)
        doc = f'    """Run the equations over {over} for a batch of {B}; return (outputs, tape)."""'
        if len(doc) > 99:
            doc = f'    """Run the equations over {over}\n    for a batch of {B}; return (outputs, tape)."""'
        lines = ["", "", f"def forward(params, inputs, initial, {T}, {B}{more}, prepared=None):",
                 *doc.split("\n")] + unpack + self.slice_lines(self.fwd)
        rows = f"{T} + {P + F}"
        if any(self.sym[n].timed for n in self.sym):
            at = "t" if P == 1 else f"t + {P - 1}"
            lines += ["", f"    # Sequences are arrays ({rows}, {B}, n): step t is index {at}, the slots",
                      "    # before step 1 hold initial values (or zeros), those after step T zeros"]
        for i, names in self.trees.items():
            lines.append(f'    {", ".join(names)} = inputs["tree {i}"]')
        for n in self.inputs:
            if self.at(n).sym[n].timed:
                shape = f"({self.T} + {P + F}, {B}, {self.model.sizes[n]})"
                make = self.sequence(self.py[n], shape) if self.along not in self.trees else \
                    [f"    {self.py[n]} = np.zeros({shape}, DTYPE)"]   # (zero at inner nodes)
                lines += make + [f'    {self.py[n]}[{self.steps(n)}] = inputs["{n}"]']
            else:
                lines.append(f'    {self.py[n]} = inputs["{n}"]')
        for n in self.seqs:
            if n not in self.views:
                lead = ", ".join(self.lead_dims(self.fwd.types[("home", n)]))
                shape = f"({self.at(n).T} + {P + F}, {lead}, {', '.join(map(str, self.model.shape(n)))})"
                lines += self.sequence(self.py[n], shape)
        lines += self.step_lines()
        lines += self.extra(self.fwd, "forward") + self.view_lines(self.fwd.views, self.fwd.views)
        for key, (step, n) in self.slots.items():
            if key not in self.model.defined_slots:
                lines.append(f'    {self.py[n]}[{self.slot(step)}] = initial["{key}"]')
        for n in self.values:                      # a sum over the steps starts from zero
            make = "zeros" if self.sym[n].over else "empty"
            lines.append(f"    {self.py[n]} = np.{make}({self.shape(n)}, DTYPE)")

        def title(b):
            if b.kind == "once":
                return "Time-free values and initial values"
            if b.kind == "all":
                return "Every step at once: " + (self.shown(b.names) or
                                                 "what does not depend on the loop after it")
            way = "forward" if b.direction > 0 else "backward"
            return f"{self.shown(b.names)}: a loop {way} " + ("in time" if b.index == "t" else
                                                              f"over {b.index}")
        lines += self.blocks(self.fwd, title)
        outs = [f'"{n}": {self.py[n]}[{self.at(n).steps()}]' for n in self.seqs]
        outs += [f'"{n}": {self.py[n]}' for n in self.values]
        lines += [""] + dict_lines("outputs", outs)
        lines += dict_lines("tape", [f'"{self.py[n] if n in self.made else n}": {self.py[n]}'
                                for n in tape] + [f'"tree {i}": inputs["tree {i}"]'
                                                  for i in self.trees])
        return lines + ["    return outputs, tape"]

    def backward(self, unpack, tape, name: str = "backward") -> list[str]:
        self.along = "t"
        T, B = self.T, self.B
        self.namer = Namer(self.taken)
        lines = ["", "", f"def {name}(params, tape, cotangents, {T}, {B}{self.more_lengths()}):",
                 '    """Cotangents of the outputs -> gradients of the parameters, the inputs and '
                 'the', '    initial values: the blocks of forward in reverse, loops backward in time."""']
        lines += unpack + unpack_lines([self.py[n] for n in tape],
                                       "(tape[name] for name in TAPE)")
        for i, names in self.trees.items():
            lines.append(f'    {", ".join(names)} = tape["tree {i}"]')
        lines += self.slice_lines(self.back)
        lines += ["", "    # Gradients start at zero, and at the cotangents for the outputs"]
        graded = {e.out.name for b in self.back.blocks for e in b.eqns
                  if isinstance(e.out, Home) and e.out.grad}
        bases = {v[0] for v in self.gviews.values()}
        for n in self.params + tape:
            if (n in self.sym or n in graded or n in bases) and n not in self.gviews \
                    and self.full_grad(n):
                lines += self.grad_array(n)
        lines += self.view_lines([n for n in tape if self.full_grad(n)], self.gviews, grad=True)
        lines += self.extra(self.back, "backward")
        lines += self.view_lines([v for v, (b, _, _) in self.gviews.items()
                                  if self.made.get(b) is self.back], self.gviews)
        for n in self.seqs:
            if self.full_grad(n):
                lines.append(f'    {self.d[n]}[{self.at(n).steps()}] = cotangents.get("{n}", 0)')
        for n in self.values:
            lines.append(f'    {self.d[n]} += cotangents.get("{n}", 0)')

        def title(b):
            if b.kind == "once":
                return "The time-free values and initial values, in reverse"
            if b.kind == "all":
                return "Every step at once" + (": " + self.shown(b.names) if b.names else "")
            way = "backward" if b.direction < 0 else "forward"
            return f"{self.shown(b.names)}: back through " + (
                f"time ({way})" if b.index == "t" else f"the steps of {b.index} ({way})")
        lines += self.blocks(self.back, title)
        grads = [f'"{p}": {self.d[p]}' for p in self.params]
        grads += [f'"{n}": {self.d[n]}[{self.at(n).steps(n)}]' if self.sym[n].timed
                  else f'"{n}": {self.d[n]}' for n in self.inputs]
        grads += [f'"{key}": {self.initial_grad(n, step)}' for key, (step, n) in self.slots.items()
                  if key not in self.model.defined_slots]
        lines += [""] + dict_lines("grads", grads)
        return lines + ["    return grads"]
