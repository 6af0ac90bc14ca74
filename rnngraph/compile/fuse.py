"""A step's elementwise ops between its products in one pass over memory (``backend="numba"``,
issue 22).

The loop printer of rnngraph/compile/numba_loops.py hands each elementwise op of a step to
:meth:`Fuser.op` as it prints it (the jitops kernel, its operands, what it writes, the
widths) and writes the token the Fuser gives back in the op's place; it also tells the
Fuser which arrays are the loop's own (``scratch``: temporaries no other name views;
``owned``: gradients' step buffers no other name views).  From those lines the Fuser
prints the loop's body twice:

- :meth:`Fuser.plain`, for a function Numba compiles whole, run at a batch of a few rows:
  each run of ops written out in its place, a row at a time, the checks and the row buffers
  before the loop over the steps (they hold at every step: a step's arrays are views of the same
  arrays); an op that does not fuse as a call of its jitops kernel (``jitops.tanh(a, out)``);
- :meth:`Fuser.__call__`: each run of consecutive ops as one call of a kernel of its own,
  which goes over the rows (the batch) once, every op of the run at each row, as
  torch.nn.LSTM does with a step's gate arithmetic.  Widths may differ within a run (an
  LSTM's gates 4n wide, its cell n): each op has a loop of its own over its row.

In a kernel, an operand's row is read where it lies, through a view made from its pointer
(jitops.row_step and _view: Numba's views of a gate's lanes are typed layout A, whose loops
do not vectorise, and counting references to them cost more than the arithmetic); each op
writes a row buffer of its own (not in place: LLVM's overlap check sends an in-place loop
to its scalar version) and stores it to its array at once, so that a later op reading the
same memory through another view (a gate's lanes of a stacked buffer) reads the new
values.  An array of the loop's own is read from its buffer instead and stored once: a
temporary only if something outside the run reads it (``1 - tanh(c)^2`` on its way into a
gate's gradient is not: the backward's runs wrote four such arrays a step), a gradient's
step buffer at its last write.  exp, tanh and sigmoid are jitops' vectorised vexp, vtanh,
vsigmoid.

The kernel checks before its loop that going row by row keeps the ops' order (the arrays
it writes share memory with no other operand, or only within the same row: lanes of one
buffer; jitops.aligned) and their shapes; where not, it declines (returns False) and the
ops run one by one as NumPy's calls, which buffer overlapping operands.  Written out in a
loop function, the same checks come before the first step; where one fails the loop
function returns False before it writes anything, and NumPy's loop runs.  An op reading a
value the step binds (a nopython expression of the op table: relu's derivative) is its
kernel's call there, since that value does not exist before the loop.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: A kernel of rnngraph/runtime/jitops.py that a fused kernel computes value by value: (its
#: operands, its value at one element).
SCALAR = {
    "add": (2, "{0} + {1}"), "subtract": (2, "{0} - {1}"), "multiply": (2, "{0} * {1}"),
    "divide": (2, "{0} / {1}"), "negative": (1, "-{0}"), "copy": (1, "{0}"),
    "maximum": (2, "max({0}, {1})"), "log": (1, "np.log({0})"), "sqrt": (1, "np.sqrt({0})"),
    "softplus": (1, "max({0}, 0.0) + np.log1p(np.exp(-abs({0})))"),
}

#: The transcendental kernels (one operand), by jitops' vectorised form over a row buffer.
_VECTOR = {"exp": "vexp", "tanh": "vtanh", "sigmoid": "vsigmoid"}

#: A kernel NumPy has as a ufunc of the same name: in a loop run from Python, an op left
#: alone is NumPy's call (no dispatch into Numba for one op).
_UFUNC = {"add", "subtract", "multiply", "divide", "exp", "tanh", "log", "sqrt", "maximum"}

_TOKEN = re.compile(r"^(\s*)@op(\d+)$")
_NAME = re.compile(r"[A-Za-z_]\w*")
_LITERAL = re.compile(r"^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$")
_BINDS = re.compile(r"^\s*([A-Za-z_]\w*)\s*=[^=]")
#: The names of a run's code (:meth:`Fuser._code`): its operands p0, p1, ..., its row buffers,
#: views, constants and scratch, which :meth:`Fuser.inline` renames into the loop function's.
_LOCAL = re.compile(r"\b(p\d+|x\d+|r\d+_\d+|v\d+_\d+|c\d+|f\d+|s\d+|space|bits|rows|i|j)\b")


@dataclass(frozen=True)
class Op:
    """An elementwise op of a step, as the printer hands it over."""
    kernel: str                 # jitops' name for it: multiply, tanh, ...
    args: tuple                 # its operands' texts: arrays, names of numbers, literals
    out: str                    # the array it writes
    width: int | None           # the values a row of ``out`` holds (None: not fused)
    guard: str | None = None    # a name that may be None: then the op is not done (a user's
    #                             cotangent given or not), and its last operand is not read
    widths: tuple = ()          # each operand's width where the printer knows it: 1, a
    #                             number a row (a column, a scalar) spread over the row

    def lines(self, indent: str, compiled: bool) -> list[str]:
        """The op as its jitops kernel's call (``compiled``: in a function Numba compiles),
        else NumPy's, at ``indent``."""
        call = self.jitops() if compiled else self.numpy()
        if self.guard is None:
            return [indent + call]
        return [f"{indent}if {self.guard} is not None:", f"{indent}    {call}"]

    def jitops(self) -> str:
        return f"jitops.{self.kernel}({', '.join(self.args + (self.out,))})"

    def numpy(self) -> str:
        """The op as NumPy's call (a loop run from Python)."""
        a = ", ".join(self.args)
        if self.kernel == "negative":       # not np.negative: see optable's "neg"
            return f"np.multiply({a}, -1.0, out={self.out})"
        if self.kernel in _UFUNC:
            return f"np.{self.kernel}({a}, out={self.out})"
        if self.kernel == "sigmoid":
            return f"np.divide(1.0, np.add(1.0, np.exp(np.negative({a}))), out={self.out})"
        if self.kernel == "copy":
            return f"np.copyto({self.out}, {a})"
        return self.jitops()

    def fusable(self) -> bool:
        if self.width is None:
            return False
        if self.kernel in _VECTOR:
            return len(self.args) == 1
        return self.kernel in SCALAR and len(self.args) == SCALAR[self.kernel][0]


class Fuser:
    """The ops of the loops being printed, and the kernels made of their runs, by name."""

    def __init__(self, numbers=()):
        self.numbers = set(numbers)         # names bound to numbers (the printer's constants)
        self.ops: list[Op] = []
        # the buffers of the loop's temporaries that no other name views: a run's op writing
        # one that nothing outside the run reads keeps it in its row buffer (the printer's)
        self.scratch: set[str] = set()
        # the loop's step buffers of gradients that no other name views (the printer's): a
        # run keeps one in its row buffer between its ops and stores its last value only
        self.owned: set[str] = set()
        self.kernels: dict[str, list[str]] = {}

    def op(self, kernel: str, args, out: str, width: int | None, guard: str | None = None,
           widths=()) -> str:
        """The token that stands for this op in a loop body's lines."""
        self.ops.append(Op(kernel, tuple(args), out, width, guard, tuple(widths)))
        return f"@op{len(self.ops) - 1}"

    def _items(self, lines):
        """[(Op or None, line)] of ``lines``, indentation kept."""
        out = []
        for line in lines:
            m = _TOKEN.match(line)
            out.append((self.ops[int(m.group(2))], line[:len(m.group(1))]) if m else (None, line))
        return out

    def plain(self, lines: list[str], fresh) -> tuple[list[str], list[str]]:
        """``lines`` of a loop function run for a batch of a few rows, with each run of consecutive
        ops written out in its place (:meth:`inline`; one op alone too: a jitops kernel's
        call and its checks cost more than the arithmetic of a row of 128), an op that does
        not fuse as its jitops kernel's call; and the lines the runs need before the loop
        over the steps.  ``fresh(wish)``: a name of the function's own."""
        items = self._items(lines)
        # names a step binds (a value of the op table's nopython forms): not there before
        # the loop, where a run's operands are checked; an op reading one is its kernel's call
        bound = {m.group(1) for op, line in items if op is None
                 for m in [_BINDS.match(line)] if m}
        fused = {}
        for k, (run, ops) in self._runs(items, singles=True).items():
            part: list[int] = []
            for j in run + [None]:
                op = None if j is None else items[j][0]
                if j is not None and (op is None or not bound & set(
                        _NAME.findall(" ".join(op.args + (op.out,))))):
                    part.append(j)
                    continue
                if any(items[i][0] for i in part):
                    fused[part[0]] = (part, [items[i][0] for i in part if items[i][0]])
                part = []
        before: list[str] = []

        def written(run, ops, indent):
            setup, body = self.inline(ops, self._read_outside(items, set(run)), fresh)
            before.extend(setup)
            return [items[j][1] for j in run if items[j][0] is None] + [indent + x for x in body]
        out = self._print(items, fused, True, written)
        return before, out

    @property
    def own(self) -> set:
        """The arrays no other name of the loop views: a run reads them from its buffers."""
        return self.scratch | self.owned

    def _runs(self, items, singles: bool) -> dict:
        """{the index of a run's first item: (the run's item indices, its ops)}: runs of
        consecutive ops (comments among them) at one indentation, each reading the run's
        temporaries at their width; a run of one arithmetic op only if ``singles``."""
        runs: list[list[int]] = []          # each a run's item indices
        at = 0
        while at < len(items):
            op, _ = items[at]
            if op is None or not op.fusable():
                at += 1
                continue
            indent = items[at][1]
            own = self.own
            run, widths = [at], {op.out: op.width} if op.out in own else {}
            at += 1
            while at < len(items):
                nxt, line = items[at]
                if nxt is None and line.lstrip().startswith("#"):
                    at += 1
                    continue
                # a run goes on with an op at its indentation that reads its temporaries at
                # their width
                if nxt is None or not nxt.fusable() or line != indent or \
                        any(widths.get(a, nxt.width) != nxt.width for a in nxt.args):
                    break
                run.append(at)
                if nxt.out in own:
                    widths[nxt.out] = nxt.width
                at += 1
            runs.append(run)
        fused = {}
        for run in runs:
            ops = [items[k][0] for k in run if items[k][0] is not None]
            if singles or len(ops) > 1 or ops[0].kernel in _VECTOR:
                fused[run[0]] = (run, ops)
        return fused

    def __call__(self, lines: list[str]) -> list[str]:
        """``lines``, of a loop run from Python, with each run of consecutive ops (comments
        among them) one fused kernel's call; where the kernel declines, the run's ops one
        by one as NumPy's calls.  A run of one arithmetic op is NumPy's call alone."""
        items = self._items(lines)

        def called(run, ops, indent):
            call = self.kernel(ops, self._read_outside(items, set(run)))
            return [f"{indent}if not {call}:"] + \
                [x for o in ops for x in o.lines(indent + "    ", False)] + \
                [items[j][1] for j in run if items[j][0] is None]          # comments
        return self._print(items, self._runs(items, singles=False), False, called)

    @staticmethod
    def _print(items, fused: dict, compiled: bool, runs) -> list[str]:
        """The lines of ``items``: each run of ``fused`` as ``runs(run, ops, indent)`` prints
        it, every other op as its jitops kernel's call (``compiled``) or NumPy's."""
        out: list[str] = []
        skip: set[int] = set()
        for k, (op, line) in enumerate(items):
            if k in skip:
                continue
            if k not in fused:
                out += [line] if op is None else op.lines(line, compiled)
                continue
            run, ops = fused[k]
            skip.update(run)
            out += runs(run, ops, line)
        return out

    def _read_outside(self, items, run: set) -> set:
        """The names the items outside ``run`` mention (what they read or write)."""
        names: set = set()
        for k, (op, line) in enumerate(items):
            if k in run:
                continue
            text = line if op is None else " ".join(op.args + (op.out,))
            names.update(_NAME.findall(text))
        return names

    def _code(self, ops: list[Op], outside: set):
        """A run's code over rows (see the module's docstring), for :meth:`kernel` and
        :meth:`inline`: (its operands' texts in order, the checks, the setup before the rows,
        the lines of row i); the operands named p0, p1, ... in these lines."""
        params: list[str] = []              # the arrays and named numbers it takes

        def param(text: str) -> None:
            if text not in params and not _LITERAL.match(text):
                params.append(text)

        given = {}                          # a guarded operand: its text, None or it
        for o in ops:
            if o.guard:
                given[o.args[-1]] = f"None if {o.guard} is None else {o.args[-1]}"
            for a in o.args:
                param(given.get(a, a))
            param(o.out)
        p = {t: f"p{params.index(t)}" for t in params}
        p.update({a: p[text] for a, text in given.items()})
        last = {o.out: n for n, o in enumerate(ops)}
        own = self.own
        # a value another name may view is stored as it is made; one of the run's own when
        # it is made last, if it is a gradient's step buffer or read outside the run
        stored = [o.out not in own or last[o.out] == n and (o.out in self.owned or o.out in outside)
                  for n, o in enumerate(ops)]
        kept = list(dict.fromkeys(o.out for o, s in zip(ops, stored) if s))
        first = p[ops[0].out]
        numbers = list(dict.fromkeys(a for o in ops for a in o.args
                                     if _LITERAL.match(a) or a in self.numbers))
        steps: dict = {}                    # (operand, width) -> its row step's name (1 or 0)
        filled: dict = {}                   # (number, width) -> a row of it (an exp's operand)
        loop = []                           # the lines of row i
        value: dict[str, str] = {}          # a buffer holding a value of the run's own
        for n, (o, store) in enumerate(zip(ops, stored)):
            start = len(loop)
            args = []
            for k, a in enumerate(o.args):
                spread = k < len(o.widths) and o.widths[k] == 1 and o.width != 1
                if a in value and not spread:
                    args.append(value[a])
                elif a in numbers and o.kernel not in _VECTOR:
                    args.append(f"c{numbers.index(a)}")
                elif a in numbers:
                    args.append(filled.setdefault((a, o.width), f"f{len(filled)}"))
                elif spread:                # one number a row, over the row
                    name = f"v{n}_{k}"
                    loop.append(f"{name} = jitops._at({value.get(a, p[a])}, i, 0)")
                    args.append(name)
                else:                       # the row itself, where it lies
                    step = steps.setdefault((a, o.width), f"s{len(steps)}")
                    name = f"r{n}_{k}"
                    loop.append(f"{name} = jitops._view({p[a]}, i * {step}, {o.width})")
                    args.append(name)
            # an op done only where its operand is given writes the buffer that holds its
            # value so far (in place: element by element, as an add is), else its own
            into = value.get(o.out, f"x{n}") if o.guard else f"x{n}"
            if o.kernel in _VECTOR:
                loop.append(f"jitops.{_VECTOR[o.kernel]}({args[0]}, {into}, bits)")
            else:
                scalars = [x if x[0] in "cv" else f"{x}[j]" for x in args]
                loop += [f"for j in range({o.width}):",
                         f"    {into}[j] = {SCALAR[o.kernel][1].format(*scalars)}"]
            if o.guard:
                if o.out not in value:      # its value in memory: stored where it is made
                    loop.append(f"jitops.put_row({p[o.out]}, i, {into})")
                loop[start:] = [f"if {p[o.args[-1]]} is not None:"] + \
                    ["    " + x for x in loop[start:]]
                if o.out in value and store:
                    loop.append(f"jitops.put_row({p[o.out]}, i, {into})")
                continue
            if store:
                loop.append(f"jitops.put_row({p[o.out]}, i, {into})")
            if o.out in own:                # no other name views it: its buffer holds it
                value[o.out] = into
        sizes = [(p[w], o.width) for w, o in {o.out: o for o in ops}.items()]
        arrays = [t for t in params if t not in self.numbers]
        # the pairs whose memory may meet (jitops.aligned checks them): an array of the loop's
        # own meets no other name's.  (Each check costs compile time: the LSTM's loops and
        # kernels had 854, 498 without these pairs; its first call with empty caches, batch
        # 1, 16.1 s against 13.3)
        pairs = dict.fromkeys((p[w], p[o]) for w in kept for o in arrays
                              if o != w and not (o in kept and kept.index(o) < kept.index(w))
                              and w not in own and o not in own)
        # the row buffers: parts of one array (an allocation each cost as much as a batch of
        # one's arithmetic); the integers of exp's powers of two (exp, tanh and sigmoid
        # alike) one array, as wide as the widest of those ops
        vectors = [(o.width, n) for n, o in enumerate(ops) if o.kernel in _VECTOR]
        rows_of = [(f"x{n}", o.width) for n, o in enumerate(ops)] + \
            [(f, w) for (_, w), f in filled.items()]
        setup = [f"space = np.empty({sum(w for _, w in rows_of)}, {first}.dtype)"]
        at = 0
        for buf, w in rows_of:
            setup.append(f"{buf} = space[{at}:{at + w}]")
            at += w
        setup = [f"c{n} = jitops.like({first}, {t if _LITERAL.match(t) else p[t]})"
                 for n, t in enumerate(numbers)] + setup
        setup += [f"{f}[:] = c{numbers.index(a)}" for (a, _), f in filled.items()]
        if vectors:
            setup += [f"bits = jitops.scratch(x{max(vectors)[1]})"]
        checks = dict(first=first, sizes=sizes, kept=[p[w] for w in kept], pairs=list(pairs),
                      steps={s: (p[a], w) for (a, w), s in steps.items()},
                      given={p[o.args[-1]]: (o.guard, o.args[-1]) for o in ops if o.guard})
        return params, checks, setup, loop

    def kernel(self, ops: list[Op], outside: set) -> str:
        """The call of a kernel for the run ``ops``, made once (see the module's docstring);
        ``outside``: names the rest of the loop mentions (a temporary among them is stored)."""
        params, c, setup, loop = self._code(ops, outside)
        lines = _prologue(c, {}) + setup + ["for i in range(rows):"] + \
            ["    " + x for x in loop] + ["return True"]
        what = ", ".join(o.kernel for o in ops)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]
        name = f"fused_{digest}"
        if name not in self.kernels:
            self.kernels[name] = [f"def {name}({', '.join(f'p{i}' for i in range(len(params)))}):",
                                  f'    """{what}: one pass over the rows (compile/fuse.py)."""'] + \
                [f"    {line}" for line in lines]
        return f"{name}({', '.join(params)})"

    def inline(self, ops: list[Op], outside: set, fresh) -> tuple[list[str], list[str]]:
        """The run ``ops`` written out in a loop function, a row at a time: (the lines
        before the loop over the steps, which check the step's arrays once and make the row
        buffers once, their values being the same at every step; the lines of a step).  A
        call of a jitops kernel an op, or of a fused kernel a step, with its checks and its
        buffers, costs more than a row of 128's arithmetic: written out, a call of
        backend="numba" at batch 1 (hidden 128, float32, forward and backward) took 0.88x
        the op-by-op time for the LSTM, 0.86x the GRU, 0.89x Cho's GRU, 0.92x the RNN.
        ``fresh(wish)``: a name of the function's own."""
        params, c, setup, loop = self._code(ops, outside)
        names: dict = {}

        given = c["given"]                  # a cotangent's operand: (its guard, its text)

        def local(m):
            word = m.group(0)
            if re.fullmatch(r"p\d+", word):
                return given[word][1] if word in given else params[int(word[1:])]
            if word not in names:
                names[word] = fresh(word)
            return names[word]

        def out(lines):
            done = []
            for x in lines:
                m = re.match(r"^(\s*)if (p\d+) is not None:$", x)
                if m and m.group(2) in given:    # the name the user's None stands in
                    done.append(f"{m.group(1)}if {given[m.group(2)][0]} is not None:")
                else:
                    done.append(_LOCAL.sub(local, x))
            return done

        # the rows, their steps and the checks once, on the first step's arrays
        before = _prologue(c, given)
        return out(before + setup), out(["for i in range(rows):"] + ["    " + x for x in loop])


def _prologue(c, given: dict) -> list[str]:
    """A run's lines before its rows (``c``: Fuser._code's checks): the rows, each operand's
    row step, and the decline on its shapes, its steps and the aliasing across rows
    (jitops.aligned, symmetric: each pair once).  ``given``: the operands a user may give or
    not (a cotangent, written out as ``cot[step]``, which cannot be read where the user's
    None stands): each checked only where given, its step 0 where not (never read).  A
    kernel takes such an operand as an argument that may be None, which row_step and
    aligned take: its ``given`` is empty."""
    mine = {s: aw for s, aw in c["steps"].items() if aw[0] not in given}
    lines = [f"rows = jitops._size({c['first']})[0]"]
    lines += [f"{s} = jitops.row_step({a}, rows, {w})" for s, (a, w) in mine.items()]
    pairs = [(w, o) for w, o in c["pairs"] if o not in given]    # (a given one is never written)
    lines += _decline(_shapes(c, "rows") + [f"not jitops.aligned({w}, {o})" for w, o in pairs] +
                      [f"{s} < 0" for s in mine])
    for s, (a, w) in c["steps"].items():
        if a in given:
            mates = [x for x, o in c["pairs"] if o == a]
            lines += [f"{s} = 0", f"if {given[a][0]} is not None:",
                      f"    {s} = jitops.row_step({a}, rows, {w})"] + \
                ["    " + x for x in _decline([f"{s} < 0"] + [f"not jitops.aligned({m}, {a})"
                                                           for m in mates])]
    return lines


def _shapes(c, rows: str) -> list[str]:
    """The conditions on which a run's code declines for its shapes (``c``: Fuser._code's
    checks; ``rows``: the text of the number of rows): what it writes not ``rows`` by its
    width, or a row of what it stores not contiguous."""
    return [f"jitops._size({w}) != ({rows}, {n})" for w, n in c["sizes"]] + \
        [f"not jitops.rows_contiguous({w})" for w in c["kept"]]


def _decline(conditions: list[str]) -> list[str]:
    """``if (a or b ...): return False``, one condition a line."""
    lines = ["if (" + conditions[0]] + [f"        or {x}" for x in conditions[1:]]
    lines[-1] += "):"
    return lines + ["    return False"]
