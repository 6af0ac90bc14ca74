"""The optimized NumPy printer: each equation one NumPy call that writes in place.

The same programs as the plain printer, after the passes; here a temporary gets a
buffer, made once before its loop (an array over the steps in an every-step
block), and each op writes into its buffer or straight into the home it defines
(``np.tanh(a, out=h[t])``, ``np.dot(h[t - 1], W.T, out=buf)``, ``h[t] += buf``):
no array is allocated inside a loop.  An op the table gives no in-place form
(a concatenation, a loss) is written as an expression into its place.
"""
from __future__ import annotations

from ..lang.printing import number_text
from .source import statement_lines, Namer, tuple_text, unpack_lines, wrap
from .memory import local_gradients, step_plan, written_once
from .numpy_calls import OUT_OPS, call, const_name
from .numpy_plain import Printer
from .passes import parameters_alone
from .optable import ATOM, MUL, UNARY, Text, lookup
from .program import Block, Const, Eqn, Home, Program, Tmp, count_uses


class FastPrinter(Printer):
    PATH = "The optimized path: loops run their recurrence only, each op in place."

    def __init__(self, model, fwd, back, dtype: str, params: list[str]):
        super().__init__(model, fwd, back, dtype, params)
        # What the prologue computes from the parameters alone (stacked matrices, summed
        # biases) goes to prepare(), which Compiled.prepare calls once for many calls.
        once, *rest = fwd.blocks
        fixed = parameters_alone(once, params, self.made)
        self.ready = [e for i, e in enumerate(once.eqns) if fixed[i]]
        self.ready_homes = [e.out.name for e in self.ready if isinstance(e.out, Home)]
        self.fwd = Program([Block("once", [e for i, e in enumerate(once.eqns) if not fixed[i]]),
                            *rest], fwd.types, fwd.timed, fwd.made, fwd.views, fwd.indices,
                           fwd.trees)
        self.made = {n: self.fwd if p is fwd else p for n, p in self.made.items()}
        # Gradients that live in one loop get one step's buffer (rnngraph/compile/memory.py):
        # named as the array would be, or, where blocks before the loop fill that array,
        # <name>_sum beside it
        self.local = local_gradients(back, model.initial_slots, set(self.inputs))
        self.buf = {}
        namer = Namer(self.taken)
        for g in self.local.values():
            for n in [g.name] + [v for v, w in self.gviews.items() if w[0] == g.name]:
                self.buf[n] = namer(self.d[n] + "_sum") if g.seeded else self.d[n]
        self.taken = set(namer.taken)
        self.cur = None                     # the block being printed
        # Gradients written once.  A time-free one (a weight's, a bias's) is bound to what
        # is written, not made zeros and added to (the second name bound to the same lanes
        # gets a copy: no two gradients handed back share memory).  One over the steps
        # written for every step at once (an input's) is made empty, zeros only where
        # nothing writes, and its write assigns.
        self.bound, self.first_written = written_once(back, self.gviews, self.local, self.values,
                                                      self.seqs)
        self.bound_to: set = set()
        # Numbers as scalars of the dtype, made once: NumPy converts a Python number
        # each call, 150-200 ns, a tenth of a sigmoid's time at batch 1
        values = sorted({a.value for p in (fwd, back) for b in p.blocks for e in b.eqns
                         for a in e.args if isinstance(a, Const)} | {1.0, -1.0})
        namer = Namer(self.taken)
        self.consts = {v: namer(const_name(v)) for v in values}
        self.taken = set(namer.taken)

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
        lines += unpack_lines([self.py[p] for p in self.params if p in used],
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
        lines[at:at] = ["", "    # Values of the parameters alone (see prepare)"] + unpack_lines(
            names, "prepare(params) if prepared is None else prepared", sequence=True)
        return lines

    def atom(self, a, texts) -> Text:
        if isinstance(a, Const):
            return Text(self.consts[a.value], ATOM)
        return super().atom(a, texts)

    def module(self) -> str:
        text = super().module()
        consts = "".join(f"\n{name} = DTYPE({number_text(v)})" for v, name in self.consts.items())
        text = text.replace("\nPARAMETERS = ", f"{consts}\nPARAMETERS = ", 1)
        if not self.ready_homes:
            return text
        used = [p for p in self.params
                if any(isinstance(a, Home) and a.name == p for e in self.ready for a in e.args)]
        line = "\n".join(wrap(f"PREPARE = {tuple_text(used)}"))
        return text.replace("\nTAPE = ", f"\n{line}\nTAPE = ", 1)

    # Arrays proportional to T come from a workspace that hands back an earlier call's
    # once nothing else holds it (rnngraph/runtime/workspace.py): fresh pages cost 15-20% of a run.
    RUNTIME = Printer.RUNTIME + ("sum_rows",)

    def imports(self) -> list[str]:
        return ["from rnngraph.runtime.workspace import Workspace", "",
                "WORK = Workspace()   # arrays over the steps, reused once free"]

    def zeros(self, shape: str, role: str) -> str:
        return f'WORK.zeros({shape}, DTYPE, "{role}")'

    def empty(self, shape: str, role: str) -> str:
        return f'WORK.empty({shape}, DTYPE, "{role}")'

    def sequence(self, name: str, shape: str) -> list[str]:
        # zeros where no step writes: the slots before step 1 and after step T
        lines = [f"    {name} = {self.empty(shape, name)}", f"    {name}[:{self.P}] = 0"]
        return lines + ([f"    {name}[{self.T} + {self.P}:] = 0"] if self.F else [])

    def grad_array(self, n: str) -> list[str]:
        if n in self.first_written:
            return self.at(n).sequence(self.d[n], f"{self.py[n]}.shape")
        return super().grad_array(n)

    def zeros_like(self, n: str) -> str:
        if n in self.made or n in self.sym and self.sym[n].timed:
            return self.zeros(f"{self.py[n]}.shape", self.d[n])
        return super().zeros_like(n)

    def dims(self, t) -> list[str]:
        """The leading axes of a buffer of type ``t`` in the current block."""
        lead = [self.T, self.B] if self.kind == "all" and t.lead == 2 and t.over is None \
            else self.lead_dims(t)
        return lead + [str(x) for x in t.shape]

    def blocks(self, prog, title) -> list[str]:
        lines = []
        for b in prog.blocks:
            lines += self.block_lines(prog, b, title)
        self.at_step, self.cur = {}, None
        return lines

    def block_lines(self, prog, b, title) -> list[str]:
        """The lines of the block ``b`` of ``prog``, its title a comment above them."""
        self.kind, self.along = b.kind, b.index
        if b.kind == "loop" and b.index in self.trees:
            # a tree, level by level: each level's nodes are gathered (h[left_n[at]]), a
            # copy, so nothing is written in place (out=) or walked by a step's view
            self.cur, self.at_step = b, {}
            return ["", f"    # {title(b)}", f"    {Printer.loop(self, b)}"] + \
                (Printer.block(self, prog, b, "        ") or ["        pass"])
        sigmoid = any(e.op == "sigmoid" for e in b.eqns)
        self.cur = b
        self.at_step = self.step_views(b) if b.kind == "loop" else {}
        head = "    " + "    " * sigmoid         # inside the errstate of a sigmoid
        prelude, body = self.block(prog, b, head) if b.kind != "loop" else \
            self.loop_block(prog, b, head)
        prelude = self.local_buffers(b) + prelude
        if not body:
            return []
        lines = ["", f"    # {title(b)}"] + prelude
        if sigmoid:                    # exp(-z) = inf: sigmoid(z) = 0, as it should
            lines.append('    with np.errstate(over="ignore"):')
        lines += body
        for g in self.local.values():       # what blocks before added for the step before
            if g.block is b and g.seeded and g.after is not None:
                lines.append(f"    {self.buf[g.name]} += {self.d[g.name]}[{self.slot(g.after)}]")
        return lines

    # A loop walks the steps of its arrays with zip, as views made in C, instead of
    # indexing each array at each step in Python (h[t - 1], h[t]): at batch 1, where a
    # step is a few microseconds, the indexing was a fifth of the loop's time.
    at_step: dict = {}

    def local_of(self, n: str):
        return self.local.get(self.gviews[n][0] if n in self.gviews else n)

    def is_bound(self, h: Home) -> bool:
        """Whether ``h`` is a time-free gradient bound at its one write (see __init__)."""
        return h.name in self.bound and h.grad and h.offset is None and h.step is None

    def full_grad(self, n: str) -> bool:
        g = self.local_of(n)
        return n not in self.bound and (g is None or g.seeded)

    def initial_grad(self, n: str, step: int) -> str:
        g = self.local_of(n)
        return self.buf[n] if g is not None and g.after == step else super().initial_grad(n, step)

    def step_views(self, block) -> dict:
        """{key: (the name of its view at the loop's step, the array it walks)} of ``block``:
        keys (name, grad, offset) for homes, ("seed", name) for what a step's gradient
        buffer adds (the array blocks before the loop filled, or the user's cotangents)."""
        views = {}
        T, P = self.T, self.P
        rev = "[::-1]" if block.direction < 0 else ""
        for e in block.eqns:
            if e.op == "slice" and isinstance(e.args[0], Home):
                h, (lo, hi) = e.args[0], e.attrs
                key = self.lanes_key(h, lo, hi)
                if key[0] == "lanes" and key not in views:
                    src = self.d[h.name] if h.grad else self.py[h.name]
                    at = P + h.offset
                    end = f"{T} + {at}" if at > 0 else T if at == 0 else f"{T} - {-at}"
                    views[key] = (self.namer(f"{src}_{lo}_{hi}_t"),
                                  f"{src}[{at}:{end}, ..., {lo}:{hi}]{rev}")
                elif key[0] != "lanes":
                    e = Eqn(Home(key[0], key[2], grad=key[1]), "copy", (h,))
            for a in (e.out, *e.args):
                if not (isinstance(a, Home) and a.offset is not None and a.step is None):
                    continue
                g = self.local_of(a.name) if a.grad else None
                if g is not None:
                    for u in self.back.units(a.name):
                        if ("seed", u) in views:
                            continue
                        if g.seeded:
                            views[("seed", u)] = (self.namer(f"{self.d[u]}_t"),
                                                  f"{self.d[u]}[{P}:{T} + {P}]{rev}")
                        elif u in self.seqs:
                            views[("seed", u)] = (self.namer(f"cot_{self.py[u]}_t"),
                                                  f"{self.namer(f'cot_{self.py[u]}')}{rev}")
                    continue
                key = (a.name, a.grad, a.offset)
                if key not in views:
                    k = a.offset
                    when = "t" if k == 0 else f"t{'m' if k < 0 else 'p'}{abs(k)}"
                    base = self.d[a.name] if a.grad else self.py[a.name]
                    lo = P + k
                    hi = f"{T} + {lo}" if lo > 0 else T if lo == 0 else f"{T} - {-lo}"
                    views[key] = (self.namer(f"{base}_{when}"), f"{base}[{lo}:{hi}]{rev}")
        return views

    def lanes(self, h: Home, lo: int, hi: int) -> str:
        """The step view of lanes lo:hi of ``h`` in a loop: the view with those lanes, if
        there is one, else one of its own."""
        return self.at_step[self.lanes_key(h, lo, hi)][0]

    def layout(self, h: Home) -> dict:
        """The views that say where ``h`` lives: the forward program's for its values, the
        backward program's for gradients and what only it makes."""
        if not h.grad and (h.name in self.views or
                           any(v[0] == h.name for v in self.views.values())):
            return self.views
        return self.gviews

    def lanes_key(self, h: Home, lo: int, hi: int):
        views = self.layout(h)
        base, at, _ = views.get(h.name, (h.name, 0, 0))
        for v, (b, vlo, vhi) in views.items():
            if b == base and (vlo, vhi) == (at + lo, at + hi):
                return (v, h.grad, h.offset)
        return ("lanes", h.name, h.grad, h.offset, lo, hi)

    def home(self, h: Home) -> str:
        if h.grad:
            g = self.local_of(h.name)
            if g is not None and (g.block is self.cur or h.step is not None and h.step == g.after):
                return self.buf[h.name]
        view = self.at_step.get((h.name, h.grad, h.offset)) if h.step is None else None
        return view[0] if view else super().home(h)

    def loop_block(self, prog, block, head: str):
        """(buffers made before the loop ``block``, the loop) at indentation ``head``."""
        prelude, body = self.block(prog, block, head + "    ")
        return prelude, self.loop_head(block, head) + body if body else []

    def loop_head(self, block, indent: str) -> list[str]:
        """``for (h_tm1, h_t) in zip(h[0:T], h[1:T + 1]):``, reversed for a loop backward."""
        names = [v for v, _ in self.at_step.values()]
        arrays = [a for _, a in self.at_step.values()]
        return wrap(f"{indent}steps = zip({', '.join(arrays)})") + \
            wrap(f"{indent}for ({', '.join(names)}{',' if len(names) == 1 else ''}) in steps:")

    def local_buffers(self, block) -> list[str]:
        """The step buffers of the gradients that live in ``block``, made before it: zeros
        for a carried one (nothing flows to the last step from after it)."""
        lines = []
        for g in self.local.values():
            if g.block is not block:
                continue
            t = self.back.types[("home", g.name)]
            dims = tuple_text(self.lead_dims(t) + list(t.shape), "")
            make = "zeros" if g.carried else "empty"
            lines.append(f"    {self.buf[g.name]} = np.{make}({dims}, DTYPE)")
            lines += [f"    {self.buf[v]} = {self.buf[g.name]}[..., {lo}:{hi}]"
                      for v, (b, lo, hi) in self.gviews.items() if b == g.name]
        for key, (_, walk) in self.at_step.items():
            if key[0] == "seed" and not self.local_of(key[1]).seeded:   # the user's, or Nones
                lines.append(f'    {walk.removesuffix("[::-1]")} = '
                             f'cotangents.get("{key[1]}", [None] * {self.T})')
        return lines

    def settle(self, unit: str, how: str) -> list[str]:
        """What a step's gradient buffer adds before its first read (see StepPlan)."""
        buf = self.buf[unit]
        seed = self.at_step.get(("seed", unit))
        if how == "zero" or seed is None:
            return [f"{buf}.fill(0)"] if how in ("zero", "first") else []
        src = seed[0]
        if self.local_of(unit).seeded:
            return [self.copy_into(buf, src) if how == "first" else self.add_into(buf, src)]
        if how == "first":
            return [f"{buf}[...] = 0 if {src} is None else {src}"]
        return [f"if {src} is not None:", f"    {buf} += {src}"]

    @staticmethod
    def in_place(op: str) -> bool:
        """Whether ``op`` prints as one call that writes into a given array."""
        return lookup(op).ufunc is not None or op in OUT_OPS

    @staticmethod
    def lanewise(op: str) -> bool:
        """Whether ``op`` may write into lanes of an array, or over its own argument."""
        return lookup(op).ufunc is not None or op in ("sigmoid", "relu", "copy", "neg")

    def block(self, prog, block, indent: str):
        """(buffers made before the block, its statements)."""
        plan = step_plan(prog, block, self.local, self.in_place, self.lanewise,
                         {(n, True) for n in self.first_written} if prog is self.back else set())
        texts: dict[str, Text] = {}
        buffers: set[str] = set()           # temporaries with a buffer made before the block
        prelude, lines, origin = [], [], None

        # A temporary whose one use binds a gradient (``dW = outer_dz``) is made under the
        # gradient's name (``dW = ...``): no alias in what is printed
        uses = count_uses(block.eqns)
        binds = {e.args[0].name: i for i, e in enumerate(block.eqns)
                 if e.accumulate and isinstance(e.out, Home) and self.is_bound(e.out)
                 and isinstance(e.args[0], Tmp) and uses.get(e.args[0].name) == 1
                 and e.args[0].name not in plan.into}
        bound_here: set[int] = set()

        def bound_name(e, view=None, copy=False):
            """The gradient's name, if ``e``'s temporary binds one as it is made; with
            ``copy``, also where it must be a copy (another is bound to the same ``view``):
            then (name, True)."""
            at = binds.get(e.out.name)
            shared = view is not None and view in self.bound_to
            if at is None or shared and not copy:
                return None
            if view is not None:
                self.bound_to.add(view)
            bound_here.add(at)
            name = self.home(block.eqns[at].out)
            return (name, shared) if copy else name

        def buffer(e) -> str:
            """A buffer for the temporary ``e`` makes, made before the block."""
            name = bound_name(e)
            if name is None:
                name = self.namer(self.wish(prog, e, texts))
                self.temporary(name)
            texts[e.out.name] = Text(name, ATOM)
            buffers.add(e.out.name)
            t = prog.type(e.out, block)
            shape = tuple_text(self.dims(t), "")
            make = self.empty(shape, name) if self.kind == "all" and t.lead == 2 else \
                f"np.empty({shape}, DTYPE)"                    # over the steps: reused
            prelude.append(f"    {name} = {make}")
            return name

        def dest(a) -> str:
            """Where the value ``a`` is written."""
            if isinstance(a, Home):
                return self.home(a)
            where = plan.into.get(a.name)
            if where is None:
                return texts[a.name].text
            if where[0] == "home":
                return self.home(where[1])
            _, whole, lo, hi = where
            self.viewed(dest(whole))
            return f"{dest(whole)}[..., {lo}:{hi}]"

        for i in sorted(plan.skip):          # concatenations written by their pieces
            e = block.eqns[i]
            if e.op == "concat" and isinstance(e.out, Tmp):
                buffer(e)
        made = {e.out.name: e for e in block.eqns if isinstance(e.out, Tmp)}
        for i, e in enumerate(block.eqns):
            self.at_eqn = (prog, block, e)  # for a printer that wants the op's types
            if e.origin != origin and e.origin is not None and i not in plan.skip:
                lines += self.comment(e.origin, indent)
                origin = e.origin
            for unit, how in plan.settle.get(i, ()):
                lines += [f"{indent}{x}" for x in self.settle(unit, how)]
            if i in plan.skip:
                continue
            if i in plan.minus:
                x = self.atom(plan.minus[i], texts)
                if i in plan.difference:
                    stmt = self.difference(self.home(e.out),
                                           self.atom(plan.difference[i], texts).text, x.text)
                else:
                    stmt = self.bind(self.home(e.out), f"-{x.at(UNARY)}") \
                        if self.is_bound(e.out) else self.subtract_from(self.home(e.out), x)
                lines += [x for part in stmt.split("\n") for x in statement_lines(f"{indent}{part}")]
                continue
            row = lookup(e.op)
            args = [self.atom(a, texts) for a in e.args]
            types = tuple(prog.type(a, block) for a in e.args)
            in_place = self.in_place(e.op)
            if isinstance(e.out, Tmp):
                t = prog.type(e.out, block)
                if e.out.name in plan.into:
                    dst = dest(e.out)
                    texts[e.out.name] = Text(dst, ATOM)
                    stmt = self.call(e, args, types, dst, t)
                elif e.op == "slice" and isinstance(e.args[0], Home) and self.kind == "loop":
                    texts[e.out.name] = Text(self.lanes(e.args[0], *e.attrs), ATOM)
                    continue
                elif e.op == "slice" and isinstance(e.args[0], Tmp) and e.args[0].name in buffers:
                    # lanes of a buffer: the same view at every step, made once
                    name = bound_name(e, (True, e.args[0], e.attrs)) or \
                        self.namer(self.wish(prog, e, texts))
                    texts[e.out.name] = Text(name, ATOM)
                    self.viewed(args[0].text)
                    prelude.append(f"    {name} = {row.py(tuple(args), types, e.attrs).text}")
                    buffers.add(e.out.name)
                    continue
                elif in_place:
                    stmt = self.call(e, args, types, buffer(e), t)
                elif e.op == "sum_to" and e.attrs == (0, types[0].shape) and types[0].lead \
                        and len(t.shape) == 1:
                    # over the steps and the batch as one gemv with ones (ops.sum_rows)
                    axes = "0" if types[0].lead == 1 else str(tuple(range(types[0].lead)))
                    stmt = self.sum_rows(args[0].text, axes, buffer(e))
                else:
                    view = (True, e.args[0], e.attrs) if e.op in ("slice", "rowslice") else None
                    if view:
                        self.viewed(args[0].text)
                    name, copied = bound_name(e, view, copy=True) or \
                        (self.namer(self.wish(prog, e, texts)), False)
                    texts[e.out.name] = Text(name, ATOM)
                    text = self.expr(row, args, types, e.attrs)
                    stmt = f"{name} = {text}.copy()" if copied and row.py(
                        tuple(args), types, e.attrs).prec == ATOM else \
                        f"{name} = ({text}).copy()" if copied else f"{name} = {text}"
            elif i in bound_here:
                continue                        # made under its name
            elif e.accumulate and self.is_bound(e.out):
                a = e.args[0]
                src = made.get(a.name) if isinstance(a, Tmp) else None
                view = (src.op in ("slice", "rowslice"), src.args[0], src.attrs) \
                    if src is not None else (True, a, ())
                fresh = not view[0] or view not in self.bound_to
                self.bound_to.add(view)
                text = args[0].text if fresh else f"{args[0].at(ATOM)}.copy()"
                stmt = self.bind(self.home(e.out), text)
            elif e.accumulate:
                if i in plan.assign:
                    stmt = self.copy_into(self.home(e.out), args[0].text)
                else:
                    stmt = self.add_into(self.home(e.out), args[0].text)
            else:
                dst = self.home(e.out)
                whole = e.out.offset is None and e.out.step is None
                t, have = prog.type(e.out, block), row.type(types, e.attrs)
                if whole and e.out.name not in self.sym:          # a value the passes made
                    stmt = self.bind(dst, row.py(tuple(args), types, e.attrs).text)
                elif in_place and (self.lanewise(e.op) or have == t):
                    stmt = self.call(e, args, types, dst, t)
                else:
                    stmt = f"{dst}[...] = {self.expr(row, args, types, e.attrs)}"
            lines += [x for part in stmt.split("\n") for x in statement_lines(f"{indent}{part}")]
        return prelude, lines

    def temporary(self, name: str) -> None:
        """``name`` is a buffer of a temporary of the block being printed (made before it)."""

    def viewed(self, name: str) -> None:
        """Lanes of the buffer ``name`` are written or read under another name."""

    # The statements of a block other than an op's call (NumbaPrinter prints its own)
    def call(self, e, args, types, dst: str, t) -> str:
        """``e`` as NumPy calls writing ``dst`` (of type ``t``): see numpy_calls.py."""
        return call(e, args, types, dst, t, self.consts)

    def expr(self, row, args, types, attrs) -> str:
        """The op of ``row`` as an expression (a new array)."""
        return row.py(tuple(args), types, attrs).text

    def bind(self, name: str, text: str) -> str:
        """``name`` bound to the array ``text`` (no copy)."""
        return f"{name} = {text}"

    def add_into(self, dst: str, src: str) -> str:
        return f"{dst} += {src}"

    def subtract_from(self, dst: str, x: Text) -> str:
        return f"{dst} -= {x.at(MUL)}"

    def copy_into(self, dst: str, src: str) -> str:
        return f"np.copyto({dst}, {src})"

    def difference(self, dst: str, a: str, b: str) -> str:
        return f"np.subtract({a}, {b}, out={dst})"

    def sum_rows(self, src: str, axes: str, dst: str) -> str:
        """The sum over ``src``'s leading ``axes`` into ``dst`` (rnngraph/runtime/ops.py)."""
        return f"sum_rows({src}, {axes}, {dst})"
