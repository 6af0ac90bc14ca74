"""The backward half of :mod:`rnngraph.fastgen`: BPTT loops as in-place NumPy.

Where a gradient lives (chosen with the homes, see
:meth:`rnngraph.fastgen.FastGenerator._gradient_homes`):

- a value another block reads: an array that starts at zero and at its
  cotangent, and takes ``+=``;
- a state (read at another step): starts at zero, written by the first
  contribution of the step that reads it first (``np.dot(dz, W, out=dh)``);
  read one step away only, it is one buffer carried from step to step, as in
  hand-written BPTT;
- any other value of the loop: a buffer ``(B, n)``, or a slot per step
  (``step``) when the parameters' share after the loop reads it.  The first
  contribution in a step writes it (``np.multiply(g, w, out=d)``), later ones
  add to it; the lanes of a wide value are tracked one by one, lanes nothing
  flowed into are zero-filled, and a value no gradient reached is skipped;
- ``z = a + b`` with ``a`` used nowhere else: ``a`` has ``z``'s gradient, the
  very array (no copy, no op); likewise ``z = view + b`` keeps z's gradient in
  the view's lanes.

An output's cotangent, if given, joins once its gradient is complete; the
cotangents come with the steps (``cotangents.get("h", [None] * T)``).  The
derivatives of tanh and sigmoid (``1 - y ** 2``, ``y (1 - y)``) are computed in
the loop, on the step's values while they are in cache, when a step has
:data:`PER_STEP` values or more; else for every step at once before the loop,
where a batch of one makes two more calls a step cost more than the arithmetic.
Relu's mask is always made before the loop.  Contributions to parameters and other
time-free values are left out of the loop: after it, one GEMM over all T*B
rows gives a matrix's gradient, one sum a bias's; a first contribution is
written, not added into zeros, and a block of a stacked gradient is returned
as a view (:func:`first_writes`).
"""
from __future__ import annotations

import re

from .ir import Const, Read, Var
from .ops import lookup, sum_leading
from .pysource import _tuple, _unpack
from .schedule import Block

#: d y / d z as a function of y, for the functions whose VJP needs nothing else:
#: lines computing it into D, for one step or for every step at once.
FACTOR = {"tanh": ("np.multiply({y}, {y}, out={D})", "np.subtract({one}, {D}, out={D})"),
          "sigmoid": ("np.subtract({one}, {y}, out={D})", "{D} *= {y}")}
#: The same, for every step at once only: relu's is a mask (one byte a number).
FACTOR_ALL = {"relu": ("{D} = {y} > 0",)}
#: The number of values a step's factor has from which it is computed in the
#: loop rather than for every step before it.  Before the loop, the factor of
#: an LSTM at batch 32, hidden 256, T 100 (2.5 million numbers) costs passes
#: through main memory: 4.7 ms of 79.  In the loop, where the step's values are
#: in cache, two more ufunc calls a step cost 0.6 ms; but at batch 1 those calls
#: cost more than the arithmetic (0.8 ms of 5 for the LSTM at hidden 128, T 200),
#: and before the loop the whole factor fits in cache.  The choice is made per
#: call, from B.
PER_STEP = 4096


class Backward:
    """Mixed into :class:`rnngraph.fastgen.FastGenerator`."""

    # -- where gradients are ---------------------------------------------------
    def groot(self, name: str) -> str:
        while name in self.galias:
            name = self.galias[name]
        return name

    def grad(self, name: str, b: Block) -> str | None:
        name = self.groot(name)
        if self.ghome.get(name) == "loop":
            return self.gstore(name, b)
        return super().grad(name, b)

    def gstore(self, name: str, b: Block, k: int = 0) -> str:
        """The gradient storage of a loop value, at step t + k."""
        name = self.groot(name)
        if self.gneed[name] == "buf":
            return self.d(name)
        return self.at(self.d(name), k, b)

    def _lanes(self, name: str) -> tuple[str, int, int]:
        """The value whose storage holds ``name``'s gradient, and the lanes it covers."""
        name = self.groot(name)
        root, lo = name, 0
        while root in self.view_of:
            root, start, _ = self.view_of[root]
            lo += start
            root = self.groot(root)
        return root, lo, lo + self.size[name]

    def _missing(self, name: str) -> list[tuple[int, int]]:
        root, lo, hi = self._lanes(name)
        if self.gneed.get(root) == "state":
            return []                                # zeros to start with
        missing, cur = [], lo
        for a, z in sorted(self.init.get(root, [])):
            if z <= cur or a >= hi:
                continue
            if a > cur:
                missing.append((cur, a))
            cur = max(cur, z)
        return missing + ([(cur, hi)] if cur < hi else [])

    def _fill(self, name: str, b: Block) -> list[str]:
        """Zeros in the lanes of ``name``'s gradient nothing flowed into."""
        root, _, _ = self._lanes(name)
        lines = []
        for a, z in self._missing(name):
            lines.append(f"{self.gstore(root, b)}[..., {a}:{z}] = 0")
            self.init.setdefault(root, []).append((a, z))
        return lines

    # -- a loop, backwards -----------------------------------------------------
    def backward_block(self, b: Block) -> list[str]:
        if b.kind == "all":
            return super().backward_block(b)
        out = [self.block_title(b, backward=True)]
        T, B, P, F = self.T, self.B, self.P, self.F
        length = f"{T} + {P + F}" if P + F else T
        for e in b.eqns:
            n = e.out
            if self.gneed.get(n) not in ("step", "buf", "state") or n in self.galias:
                continue
            if n in self.view_of:
                parent, lo, hi = self.view_of[n]
                out.append(f"    {self.d(n)} = {self.d(self.groot(parent))}[..., {lo}:{hi}]")
            else:
                kind = self.gneed[n]
                shape = f"({B}, {self.size[n]})" if kind == "buf" else \
                    f"({length}, {B}, {self.size[n]})"
                alloc = "np.empty" if kind == "buf" else \
                    "WORK.zeros" if kind == "state" else "WORK.empty"
                out.append(f"    {self.d(n)} = {alloc}({shape}, DTYPE)")
        self.cots = {}
        for n in b.names:
            if self.ghome.get(n) == "loop":                # its cotangent comes with the steps
                self.cots[n] = self.namer(f"cot_{self.py[n]}")
                out.append(f'    {self.cots[n]} = cotangents.get("{n}", [None] * {T})')
        self.factors, self.step_flags = {}, {}
        for e in b.eqns:
            if e.op in FACTOR_ALL and self.home[e.out] == "seq":
                name = self.factors[e.out] = self.namer("D" + self.py[e.out])
                out += ["    " + x.format(D=name, y=self.py[e.out]) for x in FACTOR_ALL[e.op]]
            elif e.op in FACTOR and self.home[e.out] == "seq":
                out += self._factor_lines(e, length)
        self.tmps: dict[int, str] = {}
        self.init: dict[str, list[tuple[int, int]]] = {}
        self.deferred: list[tuple] = []
        self.carried: set[str] = getattr(self, "carried", set())
        self.written: set[str] = set()               # states whose first contribution is out
        body: list[str] = []
        last = [None]
        for e in reversed(b.eqns):
            lines = self.step_backward(e, b)
            if lines:
                body += ["        " + c for c in self.comment(e, b, last)]
                body += ["        " + x for x in lines]
        for size, name in self.tmps.items():
            out.append(f"    {name} = np.empty(({B}, {size}), DTYPE)")
        for n in b.names:
            body = self._carry(n, b, body, out)
        out += self._sole_unwritten(b)
        body = peephole(body, set(self.tmps.values()))
        out += self.loop(body or ["        pass"], "    ", forward=b.kind != "forward",
                         names=b.names)
        if self.deferred:
            out.append("    # The parameters' share, for every step at once")
            whole = Block("all", b.names)
            lines: list[str] = []
            for e, i in reversed(self.deferred):
                self._deferred_grad(e, i, whole, lines)
            out += ["    " + x for x in lines]
        return out

    def _factor_lines(self, e, length: str) -> list[str]:
        """The factor of e (tanh, sigmoid) is an array D: for every step at once, or, if a
        step has PER_STEP values or more, a list of one buffer that the loop fills."""
        y, n, B = self.py[e.out], self.size[e.out], self.B
        D = self.factors[e.out] = self.namer("D" + y)
        flag = self.step_flags[e.out] = self.namer("step" + D)
        self.per_step_used = True
        head = [f"    # d{y}/dz: in the loop if a step has PER_STEP values or more, else before it",
                f"    {flag} = {B} * {n} >= PER_STEP"]
        if self.jit:                             # a batch of one runs the loop Numba compiled,
            return head + [f"    if {flag} and {B} != 1:",     # which takes an array, not a list
                           f"        {D} = [np.empty(({B}, {n}), DTYPE)] * ({length})",
                           "    else:",
                           f"        {D} = WORK.empty(({length}, {B}, {n}), DTYPE)",
                           f"        if not {flag}:"] + self._factor_source(e, D, y, "            ")
        return head + [f"    if {flag}:",
                       f"        {D} = [np.empty(({B}, {n}), DTYPE)] * ({length})",
                       "    else:",
                       f"        {D} = WORK.empty(({length}, {B}, {n}), DTYPE)"] + \
            self._factor_source(e, D, y, "        ")

    def _factor_step(self, e, b: Block) -> list[str]:
        """In the loop: the step's factor, if the loop computes it."""
        if e.out not in self.step_flags:
            return []
        D, y = self.at(self.factors[e.out], 0, b), self.value(Var(e.out), b)
        return [f"if {self.step_flags[e.out]}:"] + self._factor_source(e, D, y, "    ")

    def _factor_source(self, e, D: str, y: str, ind: str) -> list[str]:
        """The lines of FACTOR computing e's factor into D from y."""
        return [ind + x.format(D=D, y=y, one=self.const(1)) for x in FACTOR[e.op]]

    def _carry(self, n: str, b: Block, body: list[str], out: list[str]) -> list[str]:
        """A state read one step away only: one buffer carried from step to step instead of
        an array, if the step writes the gradient of n(t-1) after its last use of n(t)'s."""
        if self.gneed.get(n) != "state" or n in self.view_of or abs(self.first_read[n]) != 1 \
                or any(self._lanes(self.groot(e.out))[0] == n for e, _ in self.deferred) \
                or any(self.groot(a) == n and self.block_of.get(a) is not b for a in self.galias):
            return body           # (another block reads the slots of an alias of dn after the loop)
        now, prev = self.at(self.d(n), 0, b), self.at(self.d(n), self.first_read[n], b)
        slots = re.compile(rf"\b{re.escape(self.d(n))}\[t[^\]]*\]")
        if any(m.group(0) not in (now, prev) for line in body for m in slots.finditer(line)):
            return body                                  # read at other steps too
        lines = [i for i, line in enumerate(body) if not line.lstrip().startswith("#")]
        first = next((i for i in lines if prev in body[i]), None)
        if first is None or any(now in body[i] for i in lines if i > first) \
                or now in body[first] and not body[first].lstrip().startswith(("np.multiply",
                                                                                "np.add")):
            return body
        buf = self.d(n)
        alloc = next(i for i, line in enumerate(out) if line.startswith(f"    {buf} = WORK.zeros("))
        out[alloc] = f"    {buf} = np.zeros(({self.B}, {self.size[n]}), DTYPE)   # carried over steps"
        self.carried.add(n)
        return [slots.sub(buf, line) for line in body]

    def initial_grad(self, n: str) -> str:
        if n in getattr(self, "carried", ()):
            return self.d(n)
        return super().initial_grad(n)

    def step_backward(self, e, b: Block) -> list[str]:
        lines: list[str] = []
        if self.ghome.get(self.groot(e.out)) == "loop":
            root, lo, hi = self._lanes(e.out)
            if self._missing(e.out) == [(lo, hi)] and e.out not in self.cots \
                    and self.gneed.get(root) != "state":
                return []                            # no gradient reaches it
            lines += self._fill(e.out, b)
            if e.out in self.cots:                   # an output: its cotangent, if any
                c = f"{self.cots[e.out]}[t - 1]"      # (T, B, n): step t at t - 1
                lines.append(f"if {c} is not None:")
                lines.append(f"    {self.gstore(e.out, b)} += {c}")
        if e.out in self.view_of:
            return lines
        g = self.grad(e.out, b)
        for i, a in enumerate(e.args):
            if isinstance(a, Const) or self.atom_rank(a, b) == "const":
                continue
            if self._deferred(a):
                self.deferred.append((e, i))
            elif not (isinstance(a, Var) and (self.galias.get(a.name) == e.out
                                              or self.galias.get(e.out) == a.name)):
                recipe = self.recipe(e, i, b, g)
                if recipe is not None:
                    lines += self._factor_step(e, b) + self.contribute(a, recipe, b)
        return lines


    def _deferred_grad(self, e, i, whole: Block, lines: list[str]) -> None:
        row = lookup(e.op)
        args = tuple(self.value(a, whole) for a in e.args)
        ranks = tuple(self.atom_rank(a, whole) for a in e.args)
        sizes = tuple(self.atom_size(a) for a in e.args)
        g = self.at(self.d(self.groot(e.out)), 0, whole)
        expr = row.vjp_source(i, args, ranks, self.value(Var(e.out), whole), g, 2, sizes)
        if expr is None:
            return
        if isinstance(ranks[i], int) and ranks[i] < 2:
            expr = sum_leading(expr, 2 - ranks[i])
        self.add_grad(e.args[i], expr, whole, lines)

    def tmp(self, size: int) -> str:
        if size not in self.tmps:   # (a loop for Numba: a name the same for every size)
            self.tmps[size] = self.namer("tmp" if self.jit else f"tmp{size}")
        return self.tmps[size]

    def recipe(self, e, i, b: Block, g: str):
        """How argument i's share is computed: ("ref", x), ("neg", x), ("ufunc", f, x, y),
        ("dot", g, M) or ("expr", source)."""
        op = e.op
        args = [self.value(a, b) for a in e.args]
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        if op in ("add", "copy") or op == "sub" and i == 0:
            return ("ref", g)
        if op == "neg" or op == "sub":
            return ("neg", g)
        if op == "mul" or op == "matmul" and "const" in ranks:
            return ("ufunc", "np.multiply", g, args[1 - i])
        if op == "div" and i == 0:
            return ("ufunc", "np.divide", g, args[1])
        if op == "log":
            return ("ufunc", "np.divide", g, args[0])
        if op == "exp":
            return ("ufunc", "np.multiply", g, self.value(Var(e.out), b))
        if e.out in self.factors:
            return ("ufunc", "np.multiply", g, self.at(self.factors[e.out], 0, b))
        if op == "matmul" and ranks == ("matrix", 1) and i == 1:
            return ("dot", g, args[0])
        if op == "matmul_t" and i == 1:
            return ("dot", g, args[0] + ".T")
        expr = lookup(op).vjp_source(i, tuple(args), ranks, self.value(Var(e.out), b), g, 1,
                                     tuple(self.atom_size(a) for a in e.args))
        return None if expr is None else ("expr", expr)

    def contribute(self, a, recipe, b: Block) -> list[str]:
        """Lines adding one contribution into the gradient of the value atom ``a`` reads."""
        name = a.name if isinstance(a, Read) else self.groot(a.name)
        root = self._lanes(name)[0] if name in self.gneed else None
        # first writes only into storage this loop owns: another block may have added already
        kind = self.gneed.get(root) if self.loop_of.get(root) is b else "array"
        if kind == "array" and isinstance(a, Var) and self.sole.get(self._lanes(name)[0]) is b:
            return self._sole_contribution(name, recipe, b)
        if isinstance(a, Read) or kind in ("array", "state"):
            k = a.offset if isinstance(a, Read) else 0
            target = self.at(self.d(name), k, b)
            if kind == "state" and k and k == self.first_read.get(name) \
                    and name not in self.written:    # the first contribution to slot t + k
                self.written.add(name)
                return self._write(target, recipe, contiguous=True)
            return self._accumulate(target, recipe, self.atom_size(a))
        target = self.gstore(a.name, b)
        root, lo, hi = self._lanes(a.name)
        if self._missing(a.name) != [(lo, hi)]:      # something is there already: add
            return self._fill(a.name, b) + self._accumulate(target, recipe, self.size[a.name])
        self.init.setdefault(root, []).append((lo, hi))
        return self._write(target, recipe, contiguous=self.groot(a.name) not in self.view_of)

    def _sole_contribution(self, name: str, recipe, b: Block) -> list[str]:
        """A contribution to an array loop b alone fills (FastGenerator._sole_loops): the
        step's first to its lanes writes them; a later one adds, after zeroing the lanes of
        its own that nothing wrote yet."""
        root, lo, hi = self._lanes(name)
        target = self.at(self.d(name), 0, b)
        missing = self._missing(name)
        if missing == [(lo, hi)]:
            self.init.setdefault(root, []).append((lo, hi))
            return self._write(target, recipe, contiguous=False)
        slot = self.at(self.d(root), 0, b)
        self.init.setdefault(root, []).extend(missing)
        return [f"{slot}[..., {x}:{z}] = 0" for x, z in missing] + \
            self._accumulate(target, recipe, self.size[name])

    def _sole_unwritten(self, b: Block) -> list[str]:
        """Before loop b: zeros, for every step at once, in the lanes of the arrays it alone
        fills that no step writes."""
        lines = []
        for root, loop in self.sole.items():
            if loop is b:
                self._lanes(root)
                for x, z in self._missing(root):
                    lines.append(f"    {self.d(root)}[..., {x}:{z}] = 0")
        return lines

    def _write(self, target: str, recipe, contiguous: bool) -> list[str]:
        kind = recipe[0]
        if kind == "ref":
            return [f"np.copyto({target}, {recipe[1]})"]
        if kind == "neg":
            return [f"np.negative({recipe[1]}, out={target})"]
        if kind == "ufunc":
            return [f"{recipe[1]}({recipe[2]}, {recipe[3]}, out={target})"]
        if kind == "dot":                            # np.dot writes only C-contiguous out
            fn = "np.dot" if contiguous else "np.matmul"
            return [f"{fn}({recipe[1]}, {recipe[2]}, out={target})"]
        return [f"{target}[...] = {recipe[1]}"]

    def _accumulate(self, target: str, recipe, size) -> list[str]:
        kind = recipe[0]
        if kind in ("ref", "expr"):
            return [f"{target} += {recipe[1]}"]
        if kind == "neg":
            return [f"{target} -= {recipe[1]}"]
        tmp = self.tmp(size)
        if kind == "ufunc":
            return [f"{recipe[1]}({recipe[2]}, {recipe[3]}, out={tmp})", f"{target} += {tmp}"]
        return [f"np.dot({recipe[1]}, {recipe[2]}, out={tmp})", f"{target} += {tmp}"]

    # -- the whole function: first contributions written, not added ------------
    def backward(self) -> list[str]:
        """Reverse's function, with :func:`first_writes` applied after the loops; the
        parameters whose gradients it writes are no longer zero-filled first."""
        lines = super().backward()
        grads = {self.d(p): tuple(self.model.param_shapes[p]) for p in self.params}
        zeros = _unpack(list(grads), "(np.zeros_like(params[name]) for name in PARAMETERS)")
        at = next(i for i in range(len(lines)) if lines[i:i + len(zeros)] == zeros)
        accs = {self.d(n) for n, home in self.ghome.items() if home == "acc"}
        lines, written = first_writes(lines[:at] + lines[at + len(zeros):], at, grads, accs,
                                      self.empty_source)
        rest = [p for p in self.params if self.d(p) not in written]
        if len(rest) == 1:
            zeros = [f"    {self.d(rest[0])} = np.zeros_like({self.py[rest[0]]})"]
        elif len(rest) < len(self.params):
            zeros = _unpack([self.d(p) for p in rest], "(np.zeros_like(w) for w in ("
                            + ", ".join(self.py[p] for p in rest) + "))")
        return lines[:at] + zeros + lines[at:]

    # -- every-step blocks: one GEMM for a product's input gradient --------------
    def backward_eqn(self, e, b: Block) -> list[str]:
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        if b.kind != "all" or e.op != "matmul" or ranks != ("matrix", 2):
            return super().backward_eqn(e, b)
        g = self.grad(e.out, b)
        if g is None:
            return []
        lines: list[str] = []
        m, k = self.atom_size(e.args[1]), self.size[e.out]
        M = self.value(e.args[0], b)
        self.add_grad(e.args[1], f"np.dot({g}.reshape(-1, {k}), {M})"
                                 f".reshape({self.T}, {self.B}, {m})", b, lines)
        row = lookup(e.op)
        expr = row.vjp_source(0, (M, self.value(e.args[1], b)), ranks, "", g, 2,
                              tuple(self.atom_size(a) for a in e.args))
        self.add_grad(e.args[0], expr, b, lines)
        return lines


# -- first writes: the gradients after the loops -------------------------------------
_ZEROS = re.compile(r"    (\w+) = (?:np|WORK)\.zeros\((\(.*\)|\w+\.shape), DTYPE\)$")
_ADD_PRODUCT = re.compile(r"    (\w+) \+= ([^@]+) @ ([^@]+)$")
_ADD_DOT = re.compile(r"    (\w+)\[(\w+)\] \+= np\.dot\((.+)\)\.reshape\(.+, (\d+)\)$")
_ADD_SLICE = re.compile(r"    (\w+) \+= (\w+)(?:\[(\.\.\., )?(\d+):(\d+)\])?$")
_ADD_SUM = re.compile(r"    (\w+) \+= (.+)\.sum\((0|\((?:\d+, )+\d+\))\)$")


def _word(name: str) -> re.Pattern:
    return re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)")


def _whole(text: str) -> bool:
    """Is ``text`` one operand (``d_p4[now].reshape(-1, 8).T``), brackets balanced and no
    operator outside them, or an argument list (``a, b``) with nothing outside its items?"""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0 or depth == 0 and ch == " " and text[i - 1] != ",":
            return False
    return depth == 0


def first_writes(lines: list[str], start: int, params: dict, accs: set, empty) -> tuple:
    """The first contribution to a gradient that starts at zero, written instead of added:
    a product and a temporary as big as the result, then ``+=``, become one GEMM into
    the gradient, which skips the zero fill and a pass over both (the allocation of
    the temporary, too, which for more than 128 KiB means fresh pages from the
    operating system every call):

    - ``d_W = np.zeros((k, m))`` ... ``d_W += P @ Q`` -> ``d_W = empty`` ... ``np.matmul(P, Q,
      out=d_W)`` (``empty((k, m))`` the source of an uninitialised array);
    - ``dx = WORK.zeros(...)`` ... ``dx[now] += np.dot(P, Q).reshape(T, B, m)`` ->
      ``dx = WORK.empty(...)`` ... ``dx[:now.start] = dx[now.stop:] = 0`` (the other
      slots) and ``np.dot(P, Q, out=dx[now].reshape(-1, m))``;
    - ``d_b = np.zeros((n,))`` ... ``d_b += G.sum((0, 1))`` -> ``d_b = np.empty((n,))``
      ... ``sum_rows(G, (0, 1), d_b)`` (rnngraph.ops: one gemv with ones, or np.sum; a
      shape that does not fit is an error, never a silent broadcast);
    - a parameter's gradient whose only contribution is an accumulator, or a slice of
      one, that nothing changes afterwards (``dW_hi += d_W2[0:128]``, the rows of a
      stacked matrix; ``db_ih += d_4``) is that array or slice, a view, as hand-written
      code returns it; a second parameter with the same one (``b_ih``, ``b_hh``) gets a
      copy, since two gradients must not share memory.

    ``lines`` is the backward function, ``start`` the line after the zero fills of the
    parameters' gradients ``params`` (name -> shape), which start at zero too; ``accs``
    the accumulators a gradient may be a view of.  Only top-level lines (indented once)
    before the returned dict are rewritten, and only the first line that mentions the
    gradient.  Returns the new lines and the parameters' gradients written."""
    end = next(i for i, line in enumerate(lines) if line.startswith("    grads = {"))
    code = [i for i in range(start, len(lines)) if not lines[i].lstrip().startswith("#")]
    inits = {m.group(1): (i, m.group(2)) for i in range(start, end)
             if (m := _ZEROS.match(lines[i]))}
    inits.update({v: (None, shape) for v, shape in params.items()})
    new: dict[int, list[str]] = {}
    written, sliced = set(), set()

    def mentions(name, after):
        return [i for i in code if i > after and _word(name).search(lines[i])]

    firsts = []
    for v, (i, shape) in inits.items():
        seen = mentions(v, start - 1 if i is None else i)
        if seen and seen[0] < end:
            firsts.append((seen[0], v, i, shape, seen[1:]))
    for j, v, i, shape, later in sorted(firsts):
        line = lines[j]
        if not isinstance(shape, tuple) and shape.startswith("("):
            shape = tuple(int(x) for x in re.findall(r"\d+", shape)) \
                if re.fullmatch(r"\((\d+, )*\d+,?\)", shape) else None
        if (m := _ADD_PRODUCT.match(line)) and m.group(1) == v and isinstance(shape, tuple) \
                and len(shape) == 2 and not _word(v).search(line.split("+=", 1)[1]) \
                and _whole(m.group(2)) and _whole(m.group(3)):
            alloc = f"    {v} = {empty(shape)}"
            gemm = f"    np.matmul({m.group(2)}, {m.group(3)}, out={v})"
            if len(gemm) > 99:
                gemm = f"    np.matmul({m.group(2)},\n              {m.group(3)}, out={v})"
            if i is None:
                new[j] = [alloc, gemm]
                written.add(v)
            else:
                new[i], new[j] = [alloc], [gemm]
        elif (m := _ADD_DOT.match(line)) and m.group(1) == v and i is not None \
                and not _word(v).search(m.group(3)) and _whole(m.group(3)):
            new[i] = [_uninitialised(lines[i])]
            new[j] = [f"    {v}[:{m.group(2)}.start] = {v}[{m.group(2)}.stop:] = 0",
                      f"    np.dot({m.group(3)}, out={v}[{m.group(2)}].reshape(-1, {m.group(4)}))"]
        elif (m := _ADD_SUM.match(line)) and m.group(1) == v and i is not None \
                and not _word(v).search(m.group(2)) and _whole(m.group(2)):
            new[i] = [_uninitialised(lines[i])]
            new[j] = [f"    sum_rows({m.group(2)}, {m.group(3)}, {v})"]
        elif (m := _ADD_SLICE.match(line)) and m.group(1) == v and i is None \
                and m.group(2) in accs and all(k >= end for k in later) \
                and (_slice_fits(shape, m.group(3), int(m.group(4)), int(m.group(5)))
                     if m.group(4) else _zero_shape(inits, m.group(2)) == _tuple(shape, '')) \
                and all(_ADD_SLICE.match(lines[k]) and k < end
                        for k in mentions(m.group(2), j)):
            view = line.split("+= ", 1)[1]
            new[j] = [f"    {v} = {view}" + (".copy()" if view in sliced else "")]
            sliced.add(view)
            written.add(v)
    out = []
    for k, line in enumerate(lines):
        out += new.get(k, [line])
    return out, written


def _zero_shape(inits: dict, name: str) -> str | None:
    """The shape, as its zero fill spells it (``(128,)``), of an array that starts at zero."""
    return inits[name][1] if name in inits else None


def _uninitialised(alloc: str) -> str:
    """``d = np.zeros(...)`` (or ``WORK.zeros``) -> ``d = np.empty(...)``."""
    return re.sub(r"(np|WORK)\.zeros\(", r"\1.empty(", alloc, count=1)


def _slice_fits(shape: tuple, last_axis: str | None, lo: int, hi: int) -> bool:
    """Is ``acc[lo:hi]`` (``acc[..., lo:hi]`` if last_axis) as a parameter of ``shape`` is?"""
    if last_axis:
        return len(shape) == 1 and shape[0] == hi - lo
    return len(shape) >= 1 and shape[0] == hi - lo


# -- peephole: copies the contribution order left ------------------------------------
_COPY = re.compile(r"( +)np\.copyto\((\S+), (\S+)\)$")
_DOT = re.compile(r"( +)np\.dot\((.+), out=(\S+)\)$")


def _mentions(line: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w\[])", line) is not None


def _writes(line: str, name: str) -> bool:
    n = re.escape(name)
    return re.search(rf"out={n}\)|^\s*{n} [-+*/]?= |np\.copyto\({n}, ", line) is not None


def peephole(body: list[str], scratch: set[str]) -> list[str]:
    """Two rewrites of a backward loop body, each saving a pass over a step's values:

    ``np.copyto(X, Y)`` ... ``np.dot(P, Q, out=tmp)``, ``X += tmp`` (the first contribution
    to a gradient is a copy, a later one a product) becomes ``np.dot(P, Q, out=X)``,
    ``X += Y``; and ``np.copyto(A, B)`` ... ``A -= C`` becomes ``np.subtract(B, C, out=A)``
    in the place of the second line (``np.add`` for ``+=``).  Only when nothing in between
    reads A or X, or writes Y or B; an ``if`` in between stops the second rewrite.

    ``tmp`` must be one of ``scratch``, the temporaries of ``_accumulate``, each written
    just before its one read: the rewrite leaves it unwritten, which a gradient buffer
    read again later (``np.dot(dv0_t, W0, out=d_2)``, ``dv2 += d_2``, ``dx_t += d_2``)
    cannot be.  Without that check a random model got gradients wrong by up to 1.9.
    """
    body, changed = list(body), True
    while changed:                            # one rewrite may make room for another
        changed = False
        for i, line in enumerate(body):
            m = _COPY.match(line)
            if m and (_dot_first(body, i, *m.groups(), scratch)
                      or _fold_copy(body, i, *m.groups())):
                changed = True
                break
    return body


def _dot_first(body, i, ind, x, y, scratch) -> bool:
    for j in range(i + 1, len(body) - 1):
        d = _DOT.match(body[j])
        if d and d.group(1) == ind and d.group(3) in scratch \
                and body[j + 1] == f"{ind}{x} += {d.group(3)}" and not _mentions(d.group(2), x):
            if any(_mentions(body[k], x) or _writes(body[k], y) for k in range(i + 1, j)) \
                    or _writes(body[j], y):
                return False
            body[j] = f"{ind}np.dot({d.group(2)}, out={x})"
            body[j + 1] = f"{ind}{x} += {y}"
            del body[i]
            return True
        if _mentions(body[j], x):
            return False
    return False


def _fold_copy(body, i, ind, a, b) -> bool:
    for j in range(i + 1, len(body)):
        line = body[j]
        for op, ufunc in (("-=", "np.subtract"), ("+=", "np.add")):
            if line.startswith(f"{ind}{a} {op} ") and line.count(" ") == len(ind) + 2:
                if any(_writes(body[k], b) for k in range(i + 1, j)):
                    return False
                body[j] = f"{ind}{ufunc}({b}, {line.split()[-1]}, out={a})"
                del body[i]
                return True
        if _mentions(line, a) or line.lstrip().startswith("if "):
            return False
    return False
