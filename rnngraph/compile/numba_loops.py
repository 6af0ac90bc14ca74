"""The printer of ``backend="numba"``: the optimized module, its loops also compiled.

Each time loop is printed three times from the same IR block:

- the optimized printer's NumPy loop, which runs when Numba cannot compile a kernel;
- for a batch of one to a few rows (at most SMALL: :meth:`NumbaPrinter.small_batch`), a
  function Numba compiles whole: it indexes the steps, takes every array and number it
  reads as an argument, and writes each op with the kernel the op table names
  (``jitops.tanh(a, out)``, rnngraph/runtime/jitops.py) where NumPy writes ``np.tanh(a,
  out=out)``, the products too, by W's rows for one or two rows, by jitops.gemm for more
  (at batch 1 each NumPy call costs more than its arithmetic: 0.41-0.57x NumPy's time,
  RNN, GRU, LSTM at hidden 128; at 2-8 rows NumPy's GEMM packs W every call: 22 us for 2
  rows of 512 x 128, one row 4.5).  Where
  rnngraph/runtime/jit.py's may_split, the same function runs a batch of any size in
  parts on threads, a part's rows each
  (rnngraph/runtime/jit.py, _JitLoop.split; :meth:`NumbaPrinter.kinds` says what each
  argument is to a part), its products for more than jitops._BY_ROWS rows jitops.gemm
  (h W^T by a C-ordered W^T made before the loop: jitops.dot_t); for a batch of one or two
  rows, with a second thread, its products by weights of HALF_BYTES or more in two halves
  (of W's rows for h W^T, of W^T's for g W), the second on a helper thread, the loop's
  ``half_`` function (:meth:`NumbaPrinter.halves`; jitops.dot_t_halves): one core reads
  a step's weights from its L2 cache at its read rate, and two read them at twice it;
- for a larger batch on one thread, a Python loop over the steps whose products are
  NumPy's (its BLAS: Numba's np.dot goes through SciPy's OpenBLAS, a second thread pool,
  1.4x the time of a 32 x 256 by 256 x 1024 product here) and whose elementwise ops
  between two products are one kernel (rnngraph/compile/fuse.py), forward and backward,
  the user's cotangents added in it where given: a step is a GEMM and one pass over
  memory, as in torch.nn.LSTM, and a step's temporaries stay in the kernel's row buffers.

After a backward loop printed so, the products over every step's rows that follow it (its
weights' gradients, its inputs') go into a function of the steps whose rows they take,
which rnngraph/runtime/products.py's Behind runs beside the loop, over the steps it has
finished, where the loop runs alone on its core (:meth:`NumbaPrinter.behind`).

Each elementwise op goes to the Fuser as the printer writes it (:meth:`NumbaPrinter.op`),
which prints the loop's body for both functions: in the function compiled whole each run of
ops written out, a row at a time, its operands checked and its row buffers made once before
the loop over the steps (a kernel called a step, its checks and buffers, cost more than a row
of 128's arithmetic: the LSTM at batch 1 took 0.55x NumPy's time with kernels, 0.54x op by
op; written out, 0.88x the op-by-op time), fused kernels for a larger batch.

A loop with an op that has no kernel and no nopython form in the op table (a loss, a
concatenation) is printed in NumPy only.
"""
from __future__ import annotations

import ast
import math
import re

import numpy as np

from .fuse import Fuser
from .numpy_calls import rows
from .source import Namer, call_lines, wrap
from .numpy_fast import FastPrinter
from .optable import ATOM, Text, lookup
from .program import Home
from .passes import matrices_per_example, whole_sequences


#: The largest batch the loop functions Numba compiles whole run (see the module's docstring
#: and small_batch); a larger one runs the Python loop over the steps with NumPy's products.
SMALL = 8
#: The bytes of weights a step's products may read, in passes over them (two rows of the
#: batch a pass), for a loop compiled whole (small_batch)
PASSES_BYTES = 2 << 20
#: The fewest bytes of weights whose products a loop compiled whole splits in halves on
#: two cores at a batch of one or two rows (rnngraph/runtime/jitops.py, dot_t_halves):
#: below it the helper's waits and the vectors moved between the cores cost what the half
#: saves.  Measured (float32, hidden 128, T 200, the loop alone, alternating runs, tenth
#: percentile): the LSTM's 512 x 128 (256 KiB) forward 768 against 677 us, backward 744
#: against 587; Cho's GRU's 256 x 128 and 128 x 128 forward 580 against 567.
HALF_BYTES = 256 << 10


class NotInNumba(Exception):
    """A statement Numba's nopython mode cannot run: its loop stays in NumPy."""


#: Names a loop function finds in its module (rnngraph/runtime/jit.py's module of loops), and
#: the builtins the runs of ops written out in it call (compile/fuse.py's SCALAR).
_GLOBALS = {"np", "jitops", "range", "max", "abs"}


class NumbaPrinter(FastPrinter):
    #: and the names of its loop functions' module (``_GLOBALS``): a model's ``max`` is renamed
    RESERVED = FastPrinter.RESERVED | _GLOBALS | {"products"}
    PATH = ("The optimized path: loops run their recurrence only, each op in place; "
            "each loop also as a function Numba compiles, run for a batch of a few rows, "
            "or of more rows in parts on threads.")

    def __init__(self, model, fwd, back, dtype: str, params: list[str], functions=None):
        super().__init__(model, fwd, back, dtype, params)
        self.jit = False                    # printing a Numba function's body
        self.step = "step"                  # its step index
        self.fuse = Fuser(self.consts.values())      # a step's elementwise ops, and their runs
        self.functions: list[list[str]] = []     # each a function's lines
        self.names: list[str] = []               # and its name
        self.step_loops: list[str] = []          # the loops for a larger batch
        self.split: dict[str, str] = {}          # each loop function's arguments' kinds
        self.helpers: dict[str, str] = {}        # a loop function -> its half_ function
        self.big: set[str] = set()               # weights whose products go in halves
        self.called = None          # (run, loop function) of the loop block printed last
        # The functions are names of the module, named before any function is printed
        # so that no name of a function's own shadows them; apart from another printer's
        # functions of the same module (``functions``)
        names = Namer(self.taken | set(functions or ()))
        self.loop_names, self.helper_names = {}, {}
        for prog, way in ((self.fwd, "loop"), (self.back, "back")):
            for b in prog.blocks:
                if b.kind == "loop":
                    wish = "_".join(self.py[n] for n in b.names if n in self.py)[:40]
                    self.loop_names[id(b)] = names(f"{way}_{wish or 'values'}")
                    self.helper_names[id(b)] = names(f"half_{self.loop_names[id(b)]}")
        self.taken |= set(self.loop_names.values()) | set(self.helper_names.values())

    # -- a loop twice ---------------------------------------------------------------
    def loop_block(self, prog, block, head: str):
        """The NumPy loop, behind ``if not (loop_h if B <= 8 else steps_loop_h)(...):``
        when the block prints as a Numba function (see the module's docstring)."""
        if whole_sequences(prog, block) or matrices_per_example(prog, block):
            # attention's values over every t at one u: (T, B, n) arrays, or a memory's
            # (B, N, W), which the kernels of rnngraph/runtime/jitops.py (rows x lanes) do not
            # take; this loop is NumPy's
            return super().loop_block(prog, block, head)
        saved = (set(self.namer.taken), set(self.bound_to))
        self.jit = True
        self.step = self.namer("step")
        self.fuse.scratch = set()           # the loop's temporaries' buffers (see temporary)
        try:
            prelude, body = self.block(prog, block, " " * 8)
            self.prelude = prelude
            self.fuse.owned = {self.buf[g.name] for g in self.local.values() if g.block is block
                               and not any(w[0] == g.name for w in self.gviews.values())}
            function = self.function(block, self.fuse.plain(body, self.namer), self.fuse(body)) \
                if body else None
        except NotInNumba:
            function = None
        finally:
            self.jit = False
            self.namer.taken, self.bound_to = saved
        if function is None:
            return super().loop_block(prog, block, head)
        again, loop = super().loop_block(prog, block, head + "    ")
        if again != prelude:                # the same statements, the same buffers
            return super().loop_block(prog, block, head)
        name, lines, args, steps = function
        self.functions += [lines, steps[1]]
        self.names.append(name)
        self.step_loops.append(steps[0])
        small = self.small_batch(prog, block)
        # compiled whole for a few rows, or where the batch runs in parts on threads
        # (rnngraph/runtime/jit.py, _JitLoop.parts); else the steps' loop in Python
        run = self.namer("run")
        pick = wrap(f"{head}{run} = {name} if {self.B} <= {small} or {name}.parts({self.B}) > 1 "
                    f"else {steps[0]}")
        call = call_lines(f"{head}if not {run}(", args, "):")
        self.called = (run, name, args, head)
        return prelude, pick + call + loop

    def blocks(self, prog, title) -> list[str]:
        """The blocks' lines, the products over every step's rows after a backward loop
        compiled whole run behind it where they may (:meth:`behind`)."""
        lines, blocks, i = [], prog.blocks, 0
        while i < len(blocks):
            b = blocks[i]
            self.called = None
            text = self.block_lines(prog, b, title)
            i += 1
            called, j = self.called, i
            while j < len(blocks) and blocks[j].kind == "all" and blocks[j].index == b.index:
                j += 1
            lag = None if called is None or b.direction > 0 else lag_behind(prog, b, blocks[i:j])
            if lag is None:
                lines += text
                continue
            tail = [x for t in blocks[i:j] for x in self.block_lines(prog, t, title)]
            lines += self.behind(prog, blocks[i:j], text, tail, called, lag) or text + tail
            i = j
        self.at_step, self.cur = {}, None
        return lines

    def behind(self, prog, tail_blocks, loop: list[str], tail: list[str], called, lag: int):
        """The loop's lines ``loop`` and the products after it ``tail`` (their lines: each a
        sum over the steps, ``X = products.matmul(...)`` or ``np.einsum(...)``, or ``+=``, or
        rows of the steps, ``products.dot(...)`` or ``np.copyto(...)``) as a function of the
        steps ``lo + 1..hi`` whose rows they take, which rnngraph/runtime/products.py's
        Behind runs on the pool's thread for the steps the loop has finished while it runs
        the others, and on this thread for the rest: at a batch of one or two rows the loop
        has the core to itself, and the products over its rows, which a thread's loop would
        run after it, run mostly beside it.  The function returns the sums' parts, which
        Behind adds and the lines after the loop assign.  None where a line of ``tail`` is of
        another form (then it runs after the loop, as before).

        Cho's GRU at config B (batch 1, hidden 128, T 200): its backward loop 560-670 us,
        the four products after it 385 us on one core."""
        code = "\n".join(x[4:] if x.startswith("    ") else x for x in tail)
        try:
            statements = ast.parse(code).body
        except SyntaxError:
            return None
        rows = code.split("\n")
        sums, targets = [], set()
        for st in statements:
            value = st.value if isinstance(st, (ast.Assign, ast.AugAssign, ast.Expr)) else None
            call = ast.unparse(value.func) if isinstance(value, ast.Call) else ""
            loads = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} if value else set()
            if loads & targets:
                return None                 # a product of a sum made before it
            if isinstance(st, ast.Expr) and call in ("products.dot", "np.copyto"):
                continue                    # rows of the steps: each written by one take
            if call not in ("products.matmul", "np.einsum") or (
                    not (isinstance(st, ast.Assign) and len(st.targets) == 1) and
                    not (isinstance(st, ast.AugAssign) and isinstance(st.op, ast.Add))):
                return None
            target = st.targets[0] if isinstance(st, ast.Assign) else st.target
            if not isinstance(target, ast.Name):
                return None
            part = self.namer(f"part_{target.id}")
            first = rows[st.lineno - 1]
            rows[st.lineno - 1] = re.sub(r"^(\s*)\w+ \+?= ", rf"\g<1>{part} = ", first)
            sums.append((target.id, "+=" if isinstance(st, ast.AugAssign) else "=", part))
            targets.add(target.id)
        body, end = [], 0                   # (its comments, each statement within 99 columns)
        for st in statements:
            body += ["        " + x for x in rows[end:st.lineno - 1]
                     if x.startswith("#") and not x.startswith("# Every step")]
            text = " ".join(x.strip() for x in rows[st.lineno - 1:st.end_lineno])
            body += wrap("        " + text)
            end = st.end_lineno
        run, name, args, head = called
        fn, lo, hi = self.namer(f"tail_{name}"), self.namer("lo"), self.namer("hi")
        behind = self.namer("behind")
        frames = self.frames(tail_blocks, lo, hi)
        frames = [] if frames is None else [f"        {frames}"]
        parts = [p for _, _, p in sums]
        lines = ["", f"    # Every step at once after the loop {name}, over its steps "
                 f"{lo} + 1..{hi}:", "    # run by products.Behind beside the loop, over the "
                 "steps it has finished", f"    def {fn}({lo}, {hi}, products):"] + frames + \
            body + [f"        return ({', '.join(parts)}{',' if len(parts) == 1 else ''})"]
        lines += wrap(f"    {behind} = products.Behind({fn}, {self.T}, {lag})")
        call = call_lines(f"{head}if not {run}(", args, "):")
        at = next(k for k in range(len(loop)) if loop[k:k + len(call)] == call)
        loop = loop[:at] + call_lines(f"{head}if not {behind}.loop(", [run, *args], "):") + \
            loop[at + len(call):]
        lines += loop + ["", f"    # The sums of those products over the steps"]
        names = [t if how == "=" else p for t, how, p in sums]
        lines += wrap(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {behind}.sums()"
                      if names else f"    {behind}.sums()")
        lines += [f"    {t} += {p}" for t, how, p in sums if how == "+="]
        return lines

    def small_batch(self, prog, block) -> int:
        """The largest batch the loop ``block`` runs compiled whole (at least 2, at most
        SMALL): its products went by rows, two rows of the batch a pass over the weights
        (jitops._times_rows, _rows_times; now only for up to jitops._BY_ROWS rows, gemm for
        more, not measured again for this choice), where NumPy's GEMM reads them once but
        packs them every call and the Python loop costs a few microseconds a step; so as many rows
        as keep the passes' bytes within PASSES_BYTES.  Measured (LSTM, float32, T 200,
        forward and backward, the Python loop's time / the compiled loop's, two or four
        runs): hidden 128 (a step's weights 256 KiB) batch 2 3.5-3.9x, 4 1.9-2.0x, 6
        1.7-1.8x, 8 1.03-1.19x, 12 1.0-1.05x, 16 0.81-0.91x; hidden 256 (1 MiB) batch 2
        2.4-2.8x, 4 1.4-1.7x, 8 0.7-0.9x."""
        weights = sum(math.prod(prog.type(e.args[0 if e.op == "matvec" else 1], block).shape)
                      for e in block.eqns if e.op in ("matvec", "vecmat"))
        if not weights:
            return SMALL
        weights *= np.dtype(self.dtype).itemsize
        return max(2, min(SMALL, 2 * (PASSES_BYTES // weights)))

    def function(self, block, plain, fused: list[str]):
        """The loop ``block`` as a function ``def loop_h(T, h_tm1_all, ..., W, ONE):``
        (``plain``: the lines its runs of ops need before the loop, which check the arrays
        at the first step, and its statements; Fuser.plain): (its name, its lines, the
        call's arguments)."""
        before, body = plain
        forward = block.direction > 0
        step = self.step
        views, params, args, stepped = [], [self.T], [self.T], []
        for key, (view, walk) in self.at_step.items():
            array = walk.removesuffix("[::-1]")
            if key[0] == "seed" and not self.local_of(key[1]).seeded:
                params.append(array)        # the user's cotangents: an array or None
                args.append(f'cotangents.get("{key[1]}")')
                continue
            steps = self.namer(f"{view}_all")
            stepped.append(steps)
            views.append(f"        {view} = {steps}[{step}]")
            params.append(steps)
            args.append(array)
        # A product by W^T for a larger batch: gemm of a C-ordered W^T made once before the
        # loop (jitops.dot_t, transposed_if); for a few rows by W's rows, as before
        wide: dict[str, str] = {}

        def by_gemm(m):
            if m.group(2) not in wide:
                wide[m.group(2)] = self.namer(f"{m.group(2)}_T")
            return f"jitops.dot_t({m.group(1)}, {m.group(2)}, {wide[m.group(2)]}, "
        sequences = [p for p in params[1:] if p in stepped]
        if sequences:
            body = [re.sub(r"jitops\.dot\(([^,()]+), (\w+)\.T, ", by_gemm, x) for x in body]
        halves, turn = self.namer("halves"), self.namer("turn")
        body, helper, transposes = self.halves(before, body, views, halves, turn)
        code = views + body
        # the runs' checks and buffers, once: at the first step (no step, nothing to do)
        start = self.first_step(views, forward) + ["    " + x for x in before] if before else []
        start += [f"    {t} = jitops.transposed_if({w}, {sequences[0]}.shape[1] > jitops._BY_ROWS)"
                  for w, t in wide.items()]
        start += [f"    {t} = jitops.transposed_if({w}, {halves}.shape[0] == jitops.HALVES)"
                  for w, t in transposes.items()]
        if helper:
            start.append(f"    {turn} = 0")
        # the steps done, for the products that run behind the loop (products.Behind, its
        # ``halves`` longer than a loop's helper's): a store, at each step's start and the end
        done = step if forward else f"{self.T} - 1 - {step}"
        steps = [f"    if {halves}.shape[0] > jitops.HALVES:",
                 f"        jitops._publish({halves}, jitops.HALVES, {{}})"]
        loop = start + [f"    for {step} in {self.step_range(forward)}:"] + \
            ["    " + x.format(done) for x in steps] + code + [x.format(self.T) for x in steps]
        tree = ast.parse("if 1:\n" + "\n".join(loop))
        # What the body reads and does not bind (bind() refuses to rebind a caller's name)
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Store)} | _GLOBALS | {step} | set(params) | \
            set(self.fuse.kernels) | {halves}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in bound:
                bound.add(node.id)
                params.append(node.id)
                args.append(node.id)
        what = self.shown(block.names) or "the values of every step"
        way = "forward" if forward else "backward"
        name = self.loop_names[id(block)]
        self.split[name] = self.kinds(block, params, set(stepped))
        lines = call_lines(f"def {name}(", params + [halves], "):") + [
            f'    """The loop {way} in time of {what}.',
            '',
            '    Compiled by Numba, run for a batch of a few rows; every array and number comes as',
            '    an argument (``halves``: rnngraph/runtime/jitops.py, dot_t_halves)."""'] + \
            loop + ["    return True"]
        if helper:
            title = self.helpers[name] = self.helper_names[id(block)]
            lines += ["", ""] + call_lines(f"def {title}(", params + [halves], "):") + [
                f'    """The other half of each large product of {name}, step by step: the',
                '    helper of a batch of one or two rows (jitops.other_half)."""'] + \
                [f"    {t} = jitops.transposed_if({w}, True)" for w, t in transposes.items()] + \
                [f"    {turn} = 0", f"    for {step} in {self.step_range(forward)}:"] + \
                views + helper + ["    return True"]
        return name, lines, args, self.steps_function(name, params, views, fused, forward, what)

    def halves(self, before: list[str], body: list[str], views: list[str], halves: str,
               turn: str):
        """The loop's statements with each product by large weights (``self.big``, as
        ``call`` found them in the IR) in halves (jitops.dot_t_halves, dot_halves), the
        helper's statements (other_half) and the transposes the backward products take
        ({weights: name}).  A product goes in halves where the helper, which runs the
        loop's steps and views of a step but none of its other statements, can follow it:
        it runs every step (a statement of the step, not under an ``if``, in a loop that
        leaves no step early), its operand and out are names the loop does not bind (its
        arguments, a step's views) and its weights one of the loop's arguments, the same
        at every step (transposed once a call); the helper counts the products in the
        same order."""
        stepped = {v.split("=")[0].strip() for v in views}
        inner = {n.id for text in ("\n".join(before), "if 1:\n" + "\n".join(body))
                 for n in ast.walk(ast.parse(text))
                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if any(re.match(r"\s*(continue|break|return)\b", line) for line in body):
            return body, [], {}
        out, helper, transposes = [], [], {}
        for line in body:
            m = re.fullmatch(r"        jitops\.dot(_t)?\((\w+), (\w+), (?:(\w+), )?(\w+)\)", line)
            if not m or m.group(3) not in self.big or {m.group(2), m.group(5)} & inner or \
                    m.group(3) in inner | stepped or (m.group(1) is None) != (m.group(4) is None):
                out.append(line)
                continue
            t, a, w, wt, o = m.groups()
            if t is None:                   # g W: by the rows of W^T, made once a call
                if w not in transposes:
                    transposes[w] = self.namer(f"{w}_H")
                wt, rows = transposes[w], transposes[w]
            else:
                rows = w
            kernel = "dot_t_halves" if t else "dot_halves"
            out += [f"        {turn} += 1",
                    f"        jitops.{kernel}({a}, {w}, {wt}, {o}, {halves}, {turn})"]
            helper += [f"        {turn} += 1",
                       f"        if not jitops.other_half({a}, {rows}, {o}, {halves}, {turn}):",
                       "            return False"]
        return out, helper, transposes

    def kinds(self, block, params, stepped) -> str:
        """What each argument of a loop function is to a run over a part of the batch's rows
        (rnngraph/runtime/jit.py, _JitLoop.split), a letter each: ``T`` the steps; ``s`` a
        sequence or the user's cotangents, (T, B, n) or None, its rows on axis 1; ``r`` a
        buffer of the batch's rows, (B, n) or a view of one (the prelude makes it); ``a`` a
        parameter's gradient the loop adds to (a part adds into zeros of its own, added to
        it after); ``p`` a buffer with no batch axis the loop writes before it reads (a
        bias's sum of a step); ``c`` read alone (a parameter, a value made from them, a
        constant); ``?`` none of those: that loop runs whole."""
        made = {}
        for line in self.prelude + self.local_buffers(block):
            m = re.match(r"\s*(\w+) = (.*)$", line)
            if m:
                made[m.group(1)] = m.group(2)
        B = re.escape(self.B)

        def batch(name, seen=()):
            text = made.get(name, "")
            view = re.match(r"(\w+)\[\.\.\., \d+:\d+\]$", text)
            if view and view.group(1) not in seen:
                return batch(view.group(1), (*seen, name))
            return "r" if re.search(rf"\(\({B},", text) else \
                "p" if re.match(r"np\.(empty|zeros)\(\(\d+,\)", text) else None
        alone, sums, rows = set(self.consts.values()), set(), set()
        for prog in (self.fwd, self.back):
            for (kind, n), t in prog.types.items():
                if kind == "home" and t.lead == 0 and n not in prog.timed:
                    if n in self.py:
                        alone.add(self.py[n])
                    if n in self.d:
                        sums.add(self.d[n])
                elif kind == "home" and t.lead == 1 and t.over is None and n not in prog.timed \
                        and n in self.py:
                    rows.add(self.py[n])       # a value of each example (an encoder's summary)
        # a time-free value the loop writes: summed into (a gradient), else not split
        written: dict[str, bool] = {}
        for e in block.eqns:
            if isinstance(e.out, Home) and e.out.offset is None and e.out.step is None:
                name = (self.d if e.out.grad else self.py).get(e.out.name)
                written[name] = written.get(name, True) and e.accumulate
        sequences = {v.removesuffix("[::-1]") for _, v in self.at_step.values()}
        kinds = ["T"]
        for p in params[1:]:
            kind = "s" if p in stepped or p in sequences else batch(p) if p in made else \
                "r" if p in rows else ("a" if written[p] and p in sums else None) \
                if p in written else "c" if p in alone else None
            kinds.append(kind or "?")
        return "".join(kinds)

    def steps_function(self, name, params, views, body, forward, what):
        """The same loop for a larger batch, in Python: each step's products in
        NumPy's BLAS (jitops.dot called from Python is np.dot), the runs of elementwise ops
        between them in the fused kernels (compile/fuse.py), each a call of a compiled
        function.  Numba compiles its kernels before the first step writes anything (False:
        one cannot be compiled, and the NumPy loop runs instead)."""
        step = self.step
        known = set(params) | {v.split("=")[0].strip() for v in views}
        ready = []
        for node in ast.walk(ast.parse("if 1:\n" + "\n".join(body))):
            if not isinstance(node, ast.Call):
                continue
            f = ast.unparse(node.func)
            kernel = f in self.fuse.kernels or (f.startswith("jitops.") and f != "jitops.dot")
            names = {n.id for a in node.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if kernel and names <= known:
                line = f"        jitops.ready({f}, {', '.join(ast.unparse(a) for a in node.args)})"
                if line not in ready:
                    ready.append(line)
        title = f"steps_{name}"
        lines = call_lines(f"def {title}(", params, "):") + [
            f'    """{what}, for a larger batch: the products in NumPy, each run of',
            '    elementwise ops in one compiled kernel."""'] + \
            self.first_step(views, forward) + ["    try:"] + (ready or ["        pass"]) + [
            "    except Exception as error:          # Numba cannot compile a kernel: NumPy's loop",
            f"        jitops.cannot({what!r}, error)",
            "        return False",
            f"    for {step} in {self.step_range(forward)}:"] + views + body + ["    return True"]
        return title, lines

    def step_range(self, forward: bool) -> str:
        """The steps a loop function goes over, in its direction."""
        return f"range({self.T})" if forward else f"range({self.T} - 1, -1, -1)"

    def first_step(self, views: list[str], forward: bool) -> list[str]:
        """A loop function's lines before its loop that make the first step's views (what a
        kernel is compiled for, a run's arrays checked on), returning at once without steps."""
        first = "0" if forward else f"{self.T} - 1"
        return [f"    if {self.T} == 0:", "        return True", f"    {self.step} = {first}"] + \
            [v[4:] for v in views]

    # -- statements in a Numba function ------------------------------------------------
    @staticmethod
    def in_place(op: str) -> bool:
        return FastPrinter.in_place(op) or lookup(op).kernel is not None

    def temporary(self, name: str) -> None:
        if self.jit:
            self.fuse.scratch.add(name)

    def viewed(self, name: str) -> None:
        if self.jit:                        # its lanes under other names: not the Fuser's alone
            self.fuse.scratch.discard(name)

    def op(self, kernel: str, args, dst: str, t=None, types=()) -> str:
        """The elementwise op ``kernel`` writing ``dst`` (of type ``t``, else the current op's
        out; its operands' ``types`` where known), handed to the Fuser (compile/fuse.py),
        which prints it: its token."""
        if t is None:
            prog, block, e = self.at_eqn
            t = prog.type(e.out, block)
        widths = [a.shape[0] if len(a.shape) == 1 else 1 if not a.shape else None
                  for a in types]
        return self.fuse.op(kernel, args, dst, _width(t), widths=widths)

    def imports(self) -> list[str]:
        return ["from rnngraph.runtime import products"] + super().imports()

    def call(self, e, args, types, dst: str, t) -> str:
        row = lookup(e.op)
        if not self.jit and e.op in ("matvec", "vecmat") and t.lead >= 2 and \
                self.kind == "all":
            # a product over every step's rows (a block before or after a loop; not a step's
            # in a loop, whose calls it would slow): in chunks on two cores from 8 to 64
            # MFLOP, by gemm below (rnngraph/runtime/products.py), else NumPy's np.dot
            w, v = (0, 1) if e.op == "matvec" else (1, 0)
            b = f"{args[w].at(ATOM)}.T" if e.op == "matvec" else args[w].text
            return f"products.dot({rows(args[v], types[v])}, {b}, {rows(Text(dst, ATOM), t)})"
        if not self.jit:
            if FastPrinter.in_place(e.op):
                return super().call(e, args, types, dst, t)
            return f"{dst}[...] = {row.py(tuple(args), types, e.attrs).text}"
        a = [x.text for x in args]
        if e.op in ("matvec", "vecmat"):
            w = 0 if e.op == "matvec" else 1
            if math.prod(types[w].shape) * np.dtype(self.dtype).itemsize >= HALF_BYTES:
                self.big.add(args[w].at(ATOM))
            if e.op == "matvec":
                return f"jitops.dot({a[1]}, {args[0].at(ATOM)}.T, {dst})"
            return f"jitops.dot({a[0]}, {a[1]}, {dst})"
        if e.op == "relu":
            return self.op("maximum", [a[0], "0.0"], dst, t, types)
        if e.op == "neg":
            return self.op("negative", a, dst, t, types)
        if e.op == "copy":
            return self.op("copy", a, dst, t, types)
        if row.kernel is None:
            raise NotInNumba(e.op)
        if row.kernel in ("sum_rows", "rowsum", "softmax", "softmax_grad"):
            return f"jitops.{row.kernel}({', '.join(a)}, {dst})"
        return self.op(row.kernel, a, dst, t, types)

    def expr(self, row, args, types, attrs) -> str:
        if not self.jit and row.name == "outer" and types[0].lead == types[1].lead >= 2 and \
                self.kind == "all":
            # a parameter's gradient over every step's rows, g^T v (as call's products)
            g, v = (rows(x, t) for x, t in zip(args, types))
            return f"products.matmul({g}.T, {v})"
        if not self.jit:
            return super().expr(row, args, types, attrs)
        text = row.nopython(tuple(args), types, attrs) if row.nopython else None
        if text is None:
            raise NotInNumba(row.name)
        return text.text

    def bind(self, name: str, text: str) -> str:
        if self.jit:
            raise NotInNumba(name)
        return super().bind(name, text)

    def add_into(self, dst: str, src: str) -> str:
        if not self.jit:
            return super().add_into(dst, src)
        return self.op("add", [dst, src], dst)

    def subtract_from(self, dst: str, x: Text) -> str:
        if not self.jit:
            return super().subtract_from(dst, x)
        return self.op("subtract", [dst, x.text], dst)

    def difference(self, dst: str, a: str, b: str) -> str:
        if not self.jit:
            return super().difference(dst, a, b)
        return self.op("subtract", [a, b], dst)

    def copy_into(self, dst: str, src: str) -> str:
        if not self.jit:
            return super().copy_into(dst, src)
        return self.op("copy", [src], dst)

    def sum_rows(self, src: str, axes: str, dst: str) -> str:
        if not self.jit:
            return super().sum_rows(src, axes, dst)
        if axes != "0":
            raise NotInNumba("sum_rows")
        return f"jitops.sum_rows({src}, {dst})"

    def settle(self, unit: str, how: str) -> list[str]:
        seed = self.at_step.get(("seed", unit))
        if not self.jit or seed is None or self.local_of(unit).seeded or how == "zero":
            return super().settle(unit, how)
        buf = self.buf[unit]                # the user's cotangents: an array (T, B, n) or None
        cot = seed[1].removesuffix("[::-1]")
        given = f"{cot}[{self.step}]"
        if how == "first":                  # an op of the Fuser's never fused (width None)
            return [f"if {cot} is None:", f"    {buf}[...] = 0", "else:",
                    "    " + self.fuse.op("copy", [given], buf, None)]
        # the user's cotangent at the step, added where given: fused with the ops beside it
        t = self.back.types.get(("home", unit))
        return [self.fuse.op("add", [buf, given], buf, _width(t), guard=cot)]


def lag_behind(prog, loop, tail) -> int | None:
    """How many steps the products over every step's rows in the blocks ``tail``, after the
    backward ``loop``, lag behind it: the rows of step s are final once the loop has run its
    steps from T down to s - lag; None where they cannot run beside it (a block of other
    ops, a value the loop writes for every step at once or at a fixed step, one both
    write, or one the tail writes and the loop reads).  A value the loop writes at t + j
    and the tail reads at t + k: the rows of step s read what the loop's step s + k - j
    wrote, the last of them at the largest j."""
    writes: dict = {}                       # the arrays the loop writes: their offsets
    touched = []                            # and the lanes it reads or writes
    for e in loop.eqns:
        if isinstance(e.out, Home):
            offset = e.out.offset if e.out.step is None and e.out.child is None else "fixed"
            writes.setdefault(prog.base(e.out.key), []).append(offset)
        touched += [_lanes(prog, a) for a in (e.out, *e.args) if isinstance(a, Home)]
    lag, products, tail_writes = 0, 0, []
    for b in tail:
        for e in b.eqns:
            if e.op not in ("matvec", "vecmat", "outer", "sum_products", "copy"):
                return None
            products += e.op != "copy"
            for h, out in [(e.out, True)] + [(a, False) for a in e.args]:
                if not isinstance(h, Home):
                    continue
                key = prog.base(h.key)
                if h.step is not None or h.child is not None or out and any(
                        _overlap(_lanes(prog, h), lanes) for lanes in touched):
                    return None
                if key in writes:
                    if h.offset is None or any(not isinstance(j, int) for j in writes[key]):
                        return None
                    lag = max(lag, max(writes[key]) - h.offset)
                # a take's rows read only what that take wrote: a value the tail writes is
                # read or written there at the same step alone (else takes would race on its
                # rows), and a sum over the steps never read (a take has a part of it)
                if any(_overlap(_lanes(prog, h), w) and (h.offset != k or k is None and not out)
                       for w, k in tail_writes):
                    return None
            if isinstance(e.out, Home):
                tail_writes.append((_lanes(prog, e.out), e.out.offset))
    return lag if products else None


def _lanes(prog, h: Home) -> tuple:
    """The array a home reads or writes, its first lane and its end (None: all)."""
    base, lo, hi = prog.views.get(h.name, (h.name, 0, None))
    return base, h.grad, lo, hi


def _overlap(a: tuple, b: tuple) -> bool:
    """Whether the lanes of two homes (_lanes) share an element."""
    return a[:2] == b[:2] and (a[3] is None or b[2] < a[3]) and (b[3] is None or a[2] < b[3])


def _width(t):
    """The values a batch row of a value of type ``t`` holds, for the Fuser: None unless it is
    a vector over the batch (a matrix per example, a value over the steps: not fused)."""
    return t.shape[0] if t is not None and len(t.shape) == 1 and t.lead <= 1 else None
