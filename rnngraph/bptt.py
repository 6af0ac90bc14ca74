"""The reverse pass of the plain generator (:class:`rnngraph.codegen.Generator`).

The same blocks as forward, in reverse order (a loop runs the other way), each
block's ops in reverse, every VJP contribution added into the gradient of the
value it reads: ``+=`` into a gradient array (time-indexed values) or an
accumulator (parameters, time-free values), ``=`` then ``d = d + ...`` for a
temporary, so no temporary is ever modified in place.  A contribution with
fewer leading axes than the cotangent (a bias) is summed over the extra ones.
"""
from __future__ import annotations

import re

from .ir import Eqn, Param, Read, Var
from .ops import lookup, sum_leading
from .pysource import _unpack
from .schedule import Block

_SIMPLE = re.compile(r"[A-Za-z_]\w*(\[[^\[\]]*\])?")


class Reverse:
    """Mixed into the generators: the ``backward`` function."""

    def grad(self, name: str, b: Block) -> str | None:
        home = self.ghome.get(name)
        if home == "array":
            return self.at(self.d(name), 0, b)
        if home == "acc":
            return self.d(name)
        return self.local.get(name)

    def add_grad(self, a, expr: str, b: Block, lines: list[str]) -> None:
        """Add the contribution ``expr`` into the gradient of the value atom ``a`` reads."""
        target = None
        if isinstance(a, Param) or isinstance(a, Read) and a.offset is None:
            target = self.d(a.name)
        elif isinstance(a, Read) or self.ghome[a.name] == "array":
            target = self.at(self.d(a.name), a.offset if isinstance(a, Read) else 0, b)
        elif self.ghome[a.name] == "acc":
            target = self.d(a.name)
        if target is not None:
            negated = expr.startswith("-") and _SIMPLE.fullmatch(expr[1:])
            lines.append(f"{target} -= {expr[1:]}" if negated else f"{target} += {expr}")
        elif a.name not in self.local:
            if _SIMPLE.fullmatch(expr):
                self.local[a.name] = expr
            else:
                lines.append(f"{self.d(a.name)} = {expr}")
                self.local[a.name] = self.d(a.name)
        else:
            lines.append(f"{self.d(a.name)} = {self.local[a.name]} + {expr}")
            self.local[a.name] = self.d(a.name)

    def backward_eqn(self, e: Eqn, b: Block) -> list[str]:
        g = self.grad(e.out, b)
        if g is None or e.out in self.view_of:    # a view's gradient is a view already
            return []
        glead = b.lead if self.home[e.out] == "seq" else self.rank[e.out]
        row = lookup(e.op)
        args = tuple(self.value(a, b) for a in e.args)
        ranks = tuple(self.atom_rank(a, b) for a in e.args)
        sizes = tuple(self.atom_size(a) for a in e.args)
        out = self.value(Var(e.out), b)
        lines: list[str] = []
        for i, a in enumerate(e.args):
            expr = row.vjp_source(i, args, ranks, out, g, glead, sizes)
            if expr is None:
                continue
            if isinstance(ranks[i], int) and isinstance(glead, int) and glead > ranks[i]:
                expr = sum_leading(expr, glead - ranks[i])
            self.add_grad(a, expr, b, lines)
        return lines

    def backward(self) -> list[str]:
        T, P = self.T, self.P
        out = [f"def backward(params, tape, cotangents, {T}, {self.B}):",
               '    """Cotangents of the outputs -> gradients of the parameters, the inputs and the',
               '    initial values: the reverse of forward, block by block, step by step."""']
        out += _unpack([self.py[p] for p in self.params], "(params[name] for name in PARAMETERS)")
        out += _unpack(self.tape_names(), "(tape[name] for name in TAPE)")
        out += self.slice_lines()
        out.append("")
        out.append("    # Gradients start at zero, and at the cotangents for the outputs")
        out += _unpack([self.d(p) for p in self.params],
                       "(np.zeros_like(params[name]) for name in PARAMETERS)")
        out += self.gradient_arrays()
        for n in [n for n in self.inputs if not self.sym[n].timed]:
            out.append(f"    {self.d(n)} = np.zeros_like({self.py[n]})")
        for b in reversed(self.blocks[1:]):
            out.append("")
            out += self.backward_block(b)
        grads = [f'"{p}": {self.d(p)}' for p in self.params]
        grads += [f'"{n}": {self.d(n)}[{P}:{T} + {P}]' if self.sym[n].timed else f'"{n}": {self.d(n)}'
                  for n in self.inputs]
        for n in self.states:
            total = self.initial_grad(n)
            if n in self.defined_init:
                out.append(f"    {self.d(n + '(0)')} += "
                           + sum_leading(total, 1 - self.rank[n + "(0)"]))
            else:
                grads.append(f'"{n}(0)": {total}')
        if self.blocks[0].eqns:
            out.append("")
            out.append("    # The prologue, in reverse")
            out += self._backward_block(self.blocks[0], "    ")
        out.append("")
        out += self._dict("grads", grads)
        out.append("    return grads")
        return out

    def initial_grad(self, n: str) -> str:
        """The gradient of the initial value of state n: what reads before step 1 got."""
        return f"{self.d(n)}[0]" if self.P == 1 else f"{self.d(n)}[:{self.P}].sum(0)"

    def gradient_arrays(self) -> list[str]:
        """Gradients of what others read start at zero, and at the cotangents for the outputs."""
        T, P, out = self.T, self.P, []
        arrays = [n for n in self.ghome if self.ghome[n] in ("array", "acc")]
        for n in sorted(arrays, key=lambda n: n in self.view_of):
            if n in self.view_of:
                parent, lo, hi = self.view_of[n]
                out.append(f"    {self.d(n)} = {self.d(parent)}[..., {lo}:{hi}]")
            else:
                out.append(f"    {self.d(n)} = " + (self.zeros_like(self.py[n])
                                                    if self.home[n] == "seq" else self._zeros(n)))
            if n in self.step_vars:
                out.append(f'    {self.d(n)}[{P}:{T} + {P}] = cotangents.get("{n}", 0)')
            elif self.sym.get(n) is not None and self.sym[n].role == "value":
                out.append(f'    {self.d(n)} += cotangents.get("{n}", 0)')
        return out

    def backward_block(self, b: Block) -> list[str]:
        out = [self.block_title(b, backward=True)]
        ind = "    "
        if b.kind != "all":
            out.append(f"    for t in {self._range(b.kind, reverse=True)}:")
            ind = "        "
        return out + self._backward_block(b, ind)

    def _backward_block(self, b: Block, ind: str) -> list[str]:
        self.local: dict[str, str] = {}
        lines: list[str] = []
        last = [None]
        for e in reversed(b.eqns):
            body = self.backward_eqn(e, b)
            if body:
                lines += [ind + c for c in self.comment(e, b, last)]
                lines += [ind + x for x in body]
        return lines or [ind + "pass"]

