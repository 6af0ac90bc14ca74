"""The optimized generator: time loops as straight-line in-place NumPy (``optimize=True``).

:class:`rnngraph.codegen.Generator` prints each op as an expression, which
allocates its result; that is clear, and fine for work done once or for every
step at once.  Inside a time loop, where a batch of one makes each NumPy call
cost more than its arithmetic, :class:`FastGenerator` prints instead:

Forward.  Every value has a home allocated before the loop: a slot of an
array ``(P + T + F, B, n)`` if the backward pass or another block reads it,
else a buffer ``(B, n)`` reused at every step; a ``slice`` is a view.  Every op
writes into its home with ``out=`` (``np.dot(h[t - 1], W_T, out=_p3)``, with
the matrix transposed once, contiguous, before the loop).  The logistic
function is ``1 / (1 + exp(-z))`` in place: exp may overflow to inf for z <
-88 (float32), which gives exactly 0, so the loop runs under
``np.errstate(over="ignore")``.

Backward.  The gradient of a value read at another step or in another block
lives in an array that starts at zero (and at the cotangent, for an output) and
takes ``+=``.  The gradient of a value used only within its step lives in a
buffer: the first contribution writes it (``np.multiply(g, w, out=d)``), later
ones add to it; lanes (the views of a wide value) are tracked one by one, and
a value nothing flowed into is skipped.  The derivatives of tanh and sigmoid
are computed for every step at once before the loop.  Contributions to the
parameters are left out of the loop: the gradients they need are kept per
step, and after the loop one GEMM over all steps (``np.tensordot``) or one sum
gives each parameter's gradient.
"""
from __future__ import annotations

from .codegen import Generator
from .ir import Const, Param, Read, Var
from .ops import lookup, sum_leading
from .schedule import Block

_UFUNC = {"add": "np.add", "sub": "np.subtract", "mul": "np.multiply", "div": "np.divide",
          "neg": "np.negative", "tanh": "np.tanh", "exp": "np.exp", "log": "np.log"}
#: d out / d z as a function of out, for the functions whose VJP needs nothing else.
_FACTOR = {"tanh": "1 - {out} ** 2", "sigmoid": "{out} * (1 - {out})", "relu": "{out} > 0"}
_RANK = {"array": 3, "step": 2, "buf": 1}


class FastGenerator(Generator):
    fast = True

    # -- homes -----------------------------------------------------------------
    def _choose_homes(self):
        super()._choose_homes()
        loops = [b for b in self.blocks[1:] if b.kind != "all"]
        self.loop_of = {e.out: b for b in loops for e in b.eqns}
        views = [e for b in loops for e in b.eqns if e.out in self.view_of]
        # Gradients of loop values: arrays (read at another step or in another block),
        # per-step slots (the parameters' gradients need them after the loop), buffers.
        need = {}
        for b in loops:
            states = {a.name for e in b.eqns for a in e.args
                      if isinstance(a, Read) and a.offset and a.name in b.names}
            for e in b.eqns:
                if e.out in self.sym or e.out in self.elsewhere or e.out in states:
                    need[e.out] = "array"
                elif any(self._deferred(a) for a in e.args):
                    need[e.out] = "step"
                else:
                    need[e.out] = "buf"
        for e in reversed(views):                  # a view's gradient is a view of its parent's
            parent = self.view_of[e.out][0]
            if parent in need and _RANK[need[e.out]] > _RANK[need[parent]]:
                need[parent] = need[e.out]
        for e in views:
            need[e.out] = need.get(self.view_of[e.out][0], "array")
        self.gneed = need
        for n, kind in need.items():
            self.ghome[n] = "array" if kind == "array" else "loop"
        # Values: an array if anything reads them later, else a buffer; views follow parents.
        for n in self.loop_of:
            if n not in self.view_of and n not in self.step_vars:
                keep = n in self.elsewhere or n in self.needed or need[n] == "array"
                self.home[n] = "seq" if keep else "buf"
        for e in reversed(views):
            if self.home[e.out] == "seq" and (e.out in self.step_vars or e.out in self.elsewhere
                                              or e.out in self.needed):
                self.home[self.view_of[e.out][0]] = "seq"
        for e in views:
            self.home[e.out] = self.home[self.view_of[e.out][0]]

    def _deferred(self, a) -> bool:
        """Whether a contribution to the gradient of ``a`` waits until after the loop."""
        if isinstance(a, Const):
            return False
        if isinstance(a, Param) or isinstance(a, Read) and a.offset is None:
            return True
        return isinstance(a, Var) and self.block_of.get(a.name) is self.blocks[0]

    # -- the forward pass --------------------------------------------------------
    def forward_block(self, b: Block) -> list[str]:
        if b.kind == "all":
            return super().forward_block(b)
        out = [self.block_title(b)]
        B = self.B
        for e in b.eqns:
            n = e.out
            if self.home.get(n) != "buf":
                continue
            if n in self.view_of:
                parent, lo, hi = self.view_of[n]
                out.append(f"    {self.py[n]} = {self.py[parent]}[..., {lo}:{hi}]")
            else:
                out.append(f"    {self.py[n]} = np.empty(({B}, {self.size[n]}), DTYPE)")
        for m in self._loop_matrices(b):
            out.append(f"    {self.mt(m)} = np.ascontiguousarray({self.py[m]}.T)")
        ind = "        "
        if any(e.op == "sigmoid" for e in b.eqns):
            out.append('    with np.errstate(over="ignore"):      # exp(-z) = inf gives sigmoid(z) = 0')
            ind = "            "
            out.append(f"        for t in {self._range(b.kind)}:")
        else:
            out.append(f"    for t in {self._range(b.kind)}:")
        last = [None]
        for e in b.eqns:
            lines = self.fast_forward(e, b)
            if lines:
                out += [ind + c for c in self.comment(e, b, last)]
                out += [ind + x for x in lines]
        return out

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

    def target(self, name: str, b: Block) -> str:
        return self.at(self.py[name], 0, b) if self.home[name] == "seq" else self.py[name]

    def fast_forward(self, e, b: Block) -> list[str]:
        if e.out in self.view_of:
            return []
        args = [self.value(a, b) for a in e.args]
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        out = self.target(e.out, b)
        if e.op in _UFUNC:
            return [f"{_UFUNC[e.op]}({', '.join(args)}, out={out})"]
        if e.op == "copy":
            return [f"np.copyto({out}, {args[0]})"]
        if e.op == "relu":
            return [f"np.maximum({args[0]}, 0, out={out})"]
        if e.op == "sigmoid":
            return [f"np.negative({args[0]}, out={out})", f"np.exp({out}, out={out})",
                    f"{out} += 1", f"np.reciprocal({out}, out={out})"]
        if e.op == "matmul" and ranks == ("matrix", 1):
            return [f"np.dot({args[1]}, {self.mt(e.args[0].name)}, out={out})"]
        if e.op == "matmul" and "const" in ranks:
            return [f"np.multiply({args[0]}, {args[1]}, out={out})"]
        if e.op == "matmul_t" and ranks[1] == 1:
            return [f"np.dot({args[1]}, {args[0]}, out={out})"]
        if e.op == "concat" and len(set(ranks)) == 1:
            return [f"np.concatenate(({', '.join(args)}), -1, out={out})"]
        src = lookup(e.op).forward_source(tuple(args), ranks)
        return [f"{out}[...] = {src}" if self.home[e.out] == "buf" else f"{out} = {src}"]

    # -- the backward pass -------------------------------------------------------
    def grad(self, name: str, b: Block) -> str | None:
        if self.ghome.get(name) == "loop":
            return self.gstore(name, b)
        return super().grad(name, b)

    def gstore(self, name: str, b: Block, k: int = 0) -> str:
        """The gradient storage of a loop value, at step t + k."""
        kind = self.gneed[name]
        if kind == "buf":
            return self.d(name)
        return self.at(self.d(name), k, b)

    def backward_block(self, b: Block) -> list[str]:
        if b.kind == "all":
            return super().backward_block(b)
        out = [self.block_title(b, backward=True)]
        T, B, P, F = self.T, self.B, self.P, self.F
        length = f"{T} + {P + F}" if P + F else T
        for e in b.eqns:
            n = e.out
            kind = self.gneed.get(n)
            if kind in ("step", "buf"):
                if n in self.view_of:
                    parent, lo, hi = self.view_of[n]
                    out.append(f"    {self.d(n)} = {self.d(parent)}[..., {lo}:{hi}]")
                else:
                    shape = f"({B}, {self.size[n]})" if kind == "buf" else \
                        f"({length}, {B}, {self.size[n]})"
                    out.append(f"    {self.d(n)} = np.empty({shape}, DTYPE)")
        self.factors = {}
        for e in b.eqns:
            if e.op in _FACTOR and self.home[e.out] == "seq":
                name = self.namer("D" + self.py[e.out])
                self.factors[e.out] = name
                out.append(f"    {name} = " + _FACTOR[e.op].format(out=self.py[e.out]))
        self.tmps: dict[int, str] = {}
        body: list[str] = []
        self.init: dict[str, list[tuple[int, int]]] = {}
        self.deferred: list[tuple] = []
        last = [None]
        for e in reversed(b.eqns):
            lines = self.fast_backward(e, b)
            if lines:
                body += ["        " + c for c in self.comment(e, b, last)]
                body += ["        " + x for x in lines]
        for size, name in self.tmps.items():
            out.append(f"    {name} = np.empty(({B}, {size}), DTYPE)")
        out.append(f"    for t in {self._range(b.kind, reverse=True)}:")
        out += body or ["        pass"]
        if self.deferred:
            out.append("    # The parameters' share, for every step at once")
            whole = Block("all", b.names)
            lines: list[str] = []
            for e, i in reversed(self.deferred):
                self._deferred_grad(e, i, whole, lines)
            out += ["    " + x for x in lines]
        return out

    def _deferred_grad(self, e, i, whole: Block, lines: list[str]) -> None:
        row = lookup(e.op)
        args = tuple(self.value(a, whole) for a in e.args)
        ranks = tuple(self.atom_rank(a, whole) for a in e.args)
        sizes = tuple(self.atom_size(a) for a in e.args)
        g = self.at(self.d(e.out), 0, whole)
        expr = row.vjp_source(i, args, ranks, self.value(Var(e.out), whole), g, 2, sizes)
        if expr is None:
            return
        if isinstance(ranks[i], int) and ranks[i] < 2:
            expr = sum_leading(expr, 2 - ranks[i])
        self.add_grad(e.args[i], expr, whole, lines)

    def tmp(self, size: int) -> str:
        if size not in self.tmps:
            self.tmps[size] = self.namer(f"tmp{size}")
        return self.tmps[size]

    # initialised lanes of step/buffer gradients, tracked while printing one step
    def _lanes(self, name: str):
        root, lo = name, 0
        while root in self.view_of:
            root, start, _ = self.view_of[root]
            lo += start
        return root, lo, lo + self.size[name]

    def _missing(self, name: str) -> list[tuple[int, int]]:
        root, lo, hi = self._lanes(name)
        missing, cur = [], lo
        for a, z in sorted(self.init.get(root, [])):
            if z <= cur or a >= hi:
                continue
            if a > cur:
                missing.append((cur, a))
            cur = max(cur, z)
        if cur < hi:
            missing.append((cur, hi))
        return missing

    def _mark(self, name: str) -> None:
        root, lo, hi = self._lanes(name)
        self.init.setdefault(root, []).append((lo, hi))

    def _fill(self, name: str, b: Block) -> list[str]:
        """Zeros in the lanes of ``name``'s gradient nothing flowed into."""
        root, lo, hi = self._lanes(name)
        lines = []
        for a, z in self._missing(name):
            store = self.gstore(root, b)
            lines.append(f"{store}[..., {a}:{z}] = 0")
            self.init.setdefault(root, []).append((a, z))
        return lines

    def fast_backward(self, e, b: Block) -> list[str]:
        lines: list[str] = []
        if self.ghome.get(e.out) == "loop":
            if self._missing(e.out) == [self._lanes(e.out)[1:]]:
                return []                            # no gradient reaches it
            lines += self._fill(e.out, b)
        if e.out in self.view_of:
            return lines
        g = self.grad(e.out, b)
        if g is None:
            return lines
        for i, a in enumerate(e.args):
            if isinstance(a, Const) or self.atom_rank(a, b) == "const":
                continue
            if self._deferred(a):
                self.deferred.append((e, i))
                continue
            recipe = self.recipe(e, i, b, g)
            if recipe is not None:
                lines += self.contribute(a, recipe, b)
        return lines

    def recipe(self, e, i, b: Block, g: str):
        """How argument i's share is computed: (kind, ...)."""
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
        if op in _FACTOR and e.out in self.factors:
            return ("ufunc", "np.multiply", g, self.at(self.factors[e.out], 0, b))
        if op == "matmul" and ranks == ("matrix", 1) and i == 1:
            return ("dot", g, args[0])
        if op == "matmul_t" and i == 1:
            return ("dot", g, args[0] + ".T")
        expr = lookup(op).vjp_source(i, tuple(args), ranks, self.value(Var(e.out), b), g, 1,
                                     tuple(self.atom_size(a) for a in e.args))
        return None if expr is None else ("expr", expr)

    def contribute(self, a, recipe, b: Block) -> list[str]:
        kind = recipe[0]
        if isinstance(a, Read) or self.ghome[a.name] == "array":
            k = a.offset if isinstance(a, Read) else 0
            target = self.at(self.d(a.name), k, b)
            size = self.atom_size(a)
            return self._accumulate(target, recipe, size)
        target = self.gstore(a.name, b)
        missing = self._missing(a.name)
        lanes = self._lanes(a.name)[1:]
        if missing == [lanes]:                        # the first contribution: write it
            self._mark(a.name)
            contiguous = a.name not in self.view_of       # np.dot writes only C-contiguous out
            if kind == "ref":
                return [f"np.copyto({target}, {recipe[1]})"]
            if kind == "neg":
                return [f"np.negative({recipe[1]}, out={target})"]
            if kind == "ufunc":
                return [f"{recipe[1]}({recipe[2]}, {recipe[3]}, out={target})"]
            if kind == "dot":
                fn = "np.dot" if contiguous else "np.matmul"
                return [f"{fn}({recipe[1]}, {recipe[2]}, out={target})"]
            return [f"{target}[...] = {recipe[1]}"]
        lines = self._fill(a.name, b)
        return lines + self._accumulate(target, recipe, self.size[a.name])

    def _accumulate(self, target: str, recipe, size) -> list[str]:
        kind = recipe[0]
        if kind == "ref":
            return [f"{target} += {recipe[1]}"]
        if kind == "neg":
            return [f"{target} -= {recipe[1]}"]
        if kind == "expr":
            return [f"{target} += {recipe[1]}"]
        tmp = self.tmp(size)
        if kind == "ufunc":
            return [f"{recipe[1]}({recipe[2]}, {recipe[3]}, out={tmp})", f"{target} += {tmp}"]
        return [f"np.dot({recipe[1]}, {recipe[2]}, out={tmp})", f"{target} += {tmp}"]
