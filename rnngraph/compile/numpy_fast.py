"""The optimized NumPy printer: each equation one NumPy call that writes in place.

The same programs as the plain printer, after the passes; here a temporary gets a
buffer, made once before its loop (an array over the steps in an every-step
block), and each op writes into its buffer or straight into the home it defines
(``np.tanh(a, out=h[t])``, ``np.dot(h[t - 1], W.T, out=buf)``, ``h[t] += buf``):
no array is allocated inside a loop.  An op the table gives no in-place form
(a concatenation, a loss) is written as an expression into its place.
"""
from __future__ import annotations

from ..pysource import Namer, _tuple, _unpack, _wrap
from .numpy_plain import Printer, _statement
from .optable import ATOM, Text, lookup
from .program import Block, Const, Home, Program, Tmp

#: Ops printed as one call with out=, besides the table's ufuncs.
_OUT = {"sigmoid", "relu", "copy", "matvec", "vecmat"}


class FastPrinter(Printer):
    PATH = "The optimized path: loops run their recurrence only, each op in place."

    def __init__(self, model, fwd, back, dtype: str, params: list[str]):
        super().__init__(model, fwd, back, dtype, params)
        # What the prologue computes from the parameters alone (stacked matrices, summed
        # biases) goes to prepare(), which Compiled.prepare calls once for many calls.
        once, *rest = fwd.blocks
        names = set(params)
        fixed: dict[int, bool] = {}
        made: dict[str, int] = {}
        for i, e in enumerate(once.eqns):
            fixed[i] = (isinstance(e.out, Tmp) or e.out.name in self.made) and all(
                isinstance(a, Const) or isinstance(a, Home) and a.name in names
                and a.offset is None and a.step is None
                or isinstance(a, Tmp) and fixed.get(made.get(a.name, -1), False)
                for a in e.args)
            if isinstance(e.out, Tmp):
                made[e.out.name] = i
            elif fixed[i]:
                names.add(e.out.name)
        changed = True                      # a temporary the rest reads stays with the rest
        while changed:
            changed = False
            for i, e in enumerate(once.eqns):
                if not fixed[i]:
                    for a in e.args:
                        if isinstance(a, Tmp) and fixed.get(made[a.name]):
                            fixed[made[a.name]] = False
                            changed = True
        self.ready = [e for i, e in enumerate(once.eqns) if fixed[i]]
        self.ready_homes = [e.out.name for e in self.ready if isinstance(e.out, Home)]
        self.fwd = Program([Block("once", [e for i, e in enumerate(once.eqns) if not fixed[i]]),
                            *rest], fwd.types, fwd.timed, fwd.made, fwd.views)
        self.made = {n: self.fwd if p is fwd else p for n, p in self.made.items()}

    def prepare(self) -> list[str]:
        lines = ["", "", "def prepare(params):",
                 '    """What forward computes from the parameters alone, in the order it unpacks',
                 '    them: made each call, or once by Compiled.prepare for calls with the same',
                 '    parameters."""']
        if not self.ready_homes:
            return lines + ["    return ()"]
        self.namer = Namer(self.taken)
        self.kind = "once"
        prelude, body = self.block(self.fwd, Block("once", self.ready), "    ")
        used = {a.name for e in self.ready for a in e.args if isinstance(a, Home)}
        lines += _unpack([self.py[p] for p in self.params if p in used],
                         "(params[name] for name in PREPARE)", sequence=True) \
            if used else []
        returned = ", ".join(self.py[n] for n in self.ready_homes)
        comma = "," if len(self.ready_homes) == 1 else ""
        return lines + prelude + body + [f"    return ({returned}{comma})"]

    def forward(self, unpack, tape) -> list[str]:
        lines = super().forward(unpack, tape)
        if not self.ready_homes:
            return lines
        at = lines.index(unpack[-1]) + 1
        names = [self.py[n] for n in self.ready_homes]
        lines[at:at] = ["", "    # Values of the parameters alone (see prepare)"] + _unpack(
            names, "prepare(params) if prepared is None else prepared", sequence=True)
        return lines

    def module(self) -> str:
        text = super().module()
        if not self.ready_homes:
            return text
        used = [p for p in self.params
                if any(isinstance(a, Home) and a.name == p for e in self.ready for a in e.args)]
        line = "\n".join(_wrap(f"PREPARE = {_tuple(used)}"))
        return text.replace("\nTAPE = ", f"\n{line}\nTAPE = ", 1)

    # Arrays proportional to T come from a workspace that hands back an earlier call's
    # once nothing else holds it (rnngraph/workspace.py): fresh pages cost 15-20% of a run.
    def imports(self) -> list[str]:
        return ["from rnngraph.workspace import Workspace", "",
                "WORK = Workspace()   # arrays over the steps, reused once free"]

    def zeros(self, shape: str, role: str) -> str:
        return f'WORK.zeros({shape}, DTYPE, "{role}")'

    def empty(self, shape: str, role: str) -> str:
        return f'WORK.empty({shape}, DTYPE, "{role}")'

    def zeros_like(self, n: str) -> str:
        if n in self.made or n in self.sym and self.sym[n].timed:
            return self.zeros(f"{self.py[n]}.shape", self.d[n])
        return super().zeros_like(n)

    def dims(self, t) -> list[str]:
        """The leading axes of a buffer of type ``t`` in the current block."""
        lead = [self.T, self.B] if self.kind == "all" and t.lead == 2 else [self.B] * t.lead
        return lead + [str(x) for x in t.shape]

    def blocks(self, prog, title) -> list[str]:
        lines = []
        for b in prog.blocks:
            self.kind = b.kind
            inner = "    " if b.kind != "loop" else "        "
            sigmoid = any(e.op == "sigmoid" for e in b.eqns)
            if sigmoid:
                inner += "    "
            self.at_step = self.step_views(b) if b.kind == "loop" else {}
            prelude, body = self.block(prog, b, inner)
            if not body:
                continue
            lines += ["", f"    # {title(b)}"] + prelude
            head = "    "
            if sigmoid:                    # exp(-z) = inf: sigmoid(z) = 0, as it should
                lines.append('    with np.errstate(over="ignore"):')
                head += "    "
            if b.kind == "loop":
                lines += self.loop_head(b, head)
            lines += body
        self.at_step = {}
        return lines

    # A loop walks the steps of its arrays with zip, as views made in C, instead of
    # indexing each array at each step in Python (h[t - 1], h[t]): at batch 1, where a
    # step is a few microseconds, the indexing was a fifth of the loop's time.
    at_step: dict = {}

    def step_views(self, block) -> dict:
        """{(name, grad, offset): the name of its view at the loop's step} of ``block``."""
        views = {}
        for e in block.eqns:
            for a in (e.out, *e.args):
                if isinstance(a, Home) and a.offset is not None and a.step is None:
                    key = (a.name, a.grad, a.offset)
                    if key not in views:
                        k = a.offset
                        when = "t" if k == 0 else f"t{'m' if k < 0 else 'p'}{abs(k)}"
                        base = self.d[a.name] if a.grad else self.py[a.name]
                        views[key] = self.namer(f"{base}_{when}")
        return views

    def home(self, h: Home) -> str:
        view = self.at_step.get((h.name, h.grad, h.offset)) if h.step is None else None
        return view or super().home(h)

    def loop_head(self, block, indent: str) -> list[str]:
        """``for (h_tm1, h_t) in zip(h[0:T], h[1:T + 1]):``, reversed for a loop backward."""
        T, P = self.T, self.P
        arrays, names = [], []
        for (name, grad, k), view in self.at_step.items():
            base = self.d[name] if grad else self.py[name]
            lo = P + k
            hi = f"{T} + {lo}" if lo > 0 else T if lo == 0 else f"{T} - {-lo}"
            arrays.append(f"{base}[{lo}:{hi}]" + ("[::-1]" if block.direction < 0 else ""))
            names.append(view)
        return _wrap(f"{indent}steps = zip({', '.join(arrays)})") + \
            _wrap(f"{indent}for ({', '.join(names)}{',' if len(names) == 1 else ''}) in steps:")

    def block(self, prog, block, indent: str):
        """(buffers made before the block, its statements)."""
        texts: dict[str, Text] = {}
        buffers: set[str] = set()           # temporaries with a buffer made before the block
        prelude, lines, origin = [], [], None
        for e in block.eqns:
            row = lookup(e.op)
            args = [self.atom(a, texts) for a in e.args]
            types = tuple(prog.type(a, block) for a in e.args)
            in_place = row.ufunc is not None or e.op in _OUT
            if isinstance(e.out, Tmp):
                t = prog.type(e.out, block)
                name = self.namer(self.wish(prog, e, texts))
                texts[e.out.name] = Text(name, ATOM)
                if e.op == "slice" and isinstance(e.args[0], Tmp) and e.args[0].name in buffers:
                    # lanes of a buffer: the same view at every step, made once
                    prelude.append(f"    {name} = {row.py(tuple(args), types, e.attrs).text}")
                    buffers.add(e.out.name)
                    continue
                if in_place:
                    buffers.add(e.out.name)
                    dims = self.dims(t)
                    shape = f"({', '.join(dims)},)".replace(",)", ")") if dims else "()"
                    make = self.empty(shape, name) if self.kind == "all" else \
                        f"np.empty({shape}, DTYPE)"
                    prelude.append(f"    {name} = {make}")
                    stmt = self.call(e, args, types, name, t)
                else:
                    stmt = f"{name} = {row.py(tuple(args), types, e.attrs).text}"
            elif e.accumulate:
                stmt = f"{self.home(e.out)} += {args[0].text}"
            else:
                dst = self.home(e.out)
                whole = e.out.offset is None and e.out.step is None
                t, have = prog.type(e.out, block), row.type(types, e.attrs)
                if whole and e.out.name not in self.sym:          # a value the passes made
                    stmt = f"{dst} = {row.py(tuple(args), types, e.attrs).text}"
                elif in_place and (row.ufunc is not None or e.op in ("sigmoid", "relu", "copy")
                                   or have == t):
                    stmt = self.call(e, args, types, dst, t)
                else:
                    stmt = f"{dst}[...] = {row.py(tuple(args), types, e.attrs).text}"
            if e.origin != origin and e.origin is not None:
                lines.append(f"{indent}# {self.equation_text(e.origin)}")
                origin = e.origin
            lines += _statement(f"{indent}{stmt}")
        return prelude, lines

    def call(self, e, args, types, dst: str, t) -> str:
        """``e`` as one NumPy call writing ``dst`` (of type ``t``)."""
        a = [x.text for x in args]
        row = lookup(e.op)
        if e.op in ("add", "sub", "mul", "div") and a[0] == dst:
            return f"{dst} {'+-*/'[('add', 'sub', 'mul', 'div').index(e.op)]}= {a[1]}"
        if e.op in ("add", "mul") and a[1] == dst:
            return f"{dst} {'+*'[('add', 'mul').index(e.op)]}= {a[0]}"
        if row.ufunc is not None:
            return f"np.{row.ufunc}({', '.join(a)}, out={dst})"
        if e.op == "sigmoid":
            return f"sigmoid({a[0]}, out={dst})"
        if e.op == "relu":
            return f"np.maximum({a[0]}, 0, out={dst})"
        if e.op == "copy":
            return f"np.copyto({dst}, {a[0]})"
        if e.op == "matvec":
            A, v = args
            rows = self.rows(v, types[1])
            return f"np.dot({rows}, {A.at(ATOM)}.T, out={self.rows(Text(dst, ATOM), t)})"
        # vecmat: g @ A
        g, A = args
        return f"np.dot({self.rows(g, types[0])}, {A.text}, out={self.rows(Text(dst, ATOM), t)})"

    def rows(self, x: Text, t) -> str:
        """``x`` as a matrix of rows for np.dot: every step's batch as rows of one product."""
        if t.lead >= 2:
            return f"{x.at(ATOM)}.reshape(-1, {t.shape[-1]})"
        return x.text
