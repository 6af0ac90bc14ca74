"""The chain rule on the equations, printed and evaluable: vector-Jacobian products as terms.

A :class:`Term` is one vector (or, for a parameter, one matrix) of a derivation, held three
ways at once: as plain text, as LaTeX, and as a function that evaluates it on numbers (an
:class:`~rnngraph.derive.values.Values`, at a step).  The terms are built by :func:`pull`,
reverse mode on an equation's right side: given the gradient ``g`` of what the equation
computes, it says what reaches each read and each parameter, in the book's notation
(Goodfellow, Bengio & Courville, Deep Learning, 10.2.2):

    h(t) = tanh(W h(t-1) + U x(t) + b)   with g = ∇_h(t) L
      -> to h(t-1):  W^T diag(1 - h(t)^2) ∇_h(t) L
      -> to W:       (diag(1 - h(t)^2) ∇_h(t) L) h(t-1)^T

Because what is printed is what is evaluated, a derivation checked against the compiled
gradient (rnngraph/derive/__init__.py) checks the printed formulas themselves.  The rules are
written here again from the mathematics, apart from the compiler's op table: a mistake in
either shows as a difference between the two.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..compile.lower import COSINE_EPS as EPS     # cosine(a, b) = a.b / (|a| |b| + EPS), as compiled
from ..errors import RnnGraphError
from ..lang import ast
from ..lang.names import latex_name
from ..lang.printing import (MATPROD, POSTFIX, LatexPrinter, TextPrinter, is_number, precedence,
                             time_text)

# How tightly a printed term binds: a sum, an entrywise product (⊙, a sign), a product by
# juxtaposition (W^T g, diag(d) g), an atom.  W^T (a ⊙ g) keeps its brackets; a ⊙ W^T g needs none.
SUM, HADAMARD, PRODUCT, ATOM = 1, 2, 3, 4

_TEXT, _LATEX = TextPrinter(), LatexPrinter()


class _IndexedLatex(LatexPrinter):
    """LaTeX where ``end`` is the last step of its own index: τ over t, τ_u over u (the file's
    ``end - u`` in an equation over u, ``s(end)`` of a decoder state s(u))."""

    def __init__(self, model):
        self.model, self.index = model, "t"

    def _tau(self, index) -> str:
        return r"\tau" if index in (None, "t") else rf"\tau_{{{index}}}"

    def at(self, name, step):
        if step == "end":
            i = self.model.symbols[name].index if name in self.model.symbols else None
            i = i[0] if isinstance(i, tuple) else i
            return latex_name(name, f"({self._tau(i)})")
        return super().at(name, step)

    def step(self, name):
        return self._tau(self.index) if name == "end" else super().step(name)


@dataclass(frozen=True)
class Term:
    """A vector of a derivation: ``text`` and ``latex`` print it, ``fn(values)`` evaluates it
    ((B, size) per example, or a parameter's shape).  ``size`` is its length (None for a
    parameter's gradient); ``one`` marks the number 1, left out of products."""

    text: str
    latex: str
    prec: int
    fn: Callable
    size: int | tuple | None = 1
    one: bool = False
    sigma: bool = False             # a sum Σ_t (...): another Σ nests in it unbracketed


def wider(a, b):
    """The size of two broadcast together: a matrix's (rows, columns) over a vector's length
    over 1 (None, a parameter's gradient, counts as 1)."""
    a, b = a or 1, b or 1
    if isinstance(a, tuple):
        return a
    if isinstance(b, tuple):
        return b
    return max(a, b)


def wide(size) -> bool:
    """More than one number an example: a vector or a matrix."""
    return size is not None and size != 1


def matrix(size) -> bool:
    return isinstance(size, tuple)


def spread(a, sa, b, sb):
    """a and b, of sizes sa and sb, ready to combine entry by entry: a number an example,
    (B, 1), is spread over a matrix's (B, N, W) as (B, 1, 1) (NumPy would align it with the
    columns instead)."""
    if matrix(sb) and not matrix(sa) and np.ndim(a) == 2:
        a = a[..., None]
    elif matrix(sa) and not matrix(sb) and np.ndim(b) == 2:
        b = b[..., None]
    return a, b


def times(a, sa, b, sb):
    """a * b entry by entry, of sizes sa and sb (see spread)."""
    a, b = spread(a, sa, b, sb)
    return a * b


def entries(x):
    """Every entry of each example added: (B, n) or (B, N, W) -> (B, 1)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1).sum(-1, keepdims=True) if x.ndim > 2 else x.sum(-1, keepdims=True)


def _br(t: Term, least: int, latex: bool = False) -> str:
    s = t.latex if latex else t.text
    if t.prec >= least:
        return s
    return r"\left(" + s + r"\right)" if latex else f"({s})"


def one() -> Term:
    return Term("1", "1", ATOM, lambda v: np.ones((v.batch, 1)), 1, one=True)


def given(array, text: str = "g", latex: str = "g") -> Term:
    """A known cotangent (a path's product so far)."""
    shape = np.shape(array)
    return Term(text, latex, ATOM, lambda v: array, tuple(shape[1:]) if len(shape) == 3 else shape[-1])


def value(node, size: int, latex=_LATEX) -> Term:
    """A forward value, as the file writes it: ``h(t-1)``, ``W h(t-1) + U x(t)``."""
    p = precedence(node)
    prec = ATOM if p >= POSTFIX else SUM if p == 1 else PRODUCT if p == MATPROD else HADAMARD
    return Term(_TEXT.expr(node), latex.expr(node), prec, lambda v: v.value(node), size)


def gradient(name: str, offset: int | None, index: str = "t", size: int | None = None,
             fixed: bool = False, inner: str | None = None) -> Term:
    """∇_h(t+offset) L (``fixed``: ∇_h(offset) L, at that step; ``inner``: ∇_e(u+offset, t) L
    of a value over two indices): the gradient of the loss with respect to a value, which
    the derivation being evaluated gives."""
    if fixed:
        text, latex = f"{name}({offset})", latex_name(name, f"({offset})")
    elif inner is not None:
        text = _TEXT.pair(name, time_text(offset, index), inner)
        latex = _LATEX.pair(name, time_text(offset, index), inner)
    else:
        text, latex = _TEXT.ref(name, offset, index), _LATEX.ref(name, offset, index)

    def fn(v):
        if inner is not None:
            return v.gradient(name, (v.at[index] + offset, v.at[inner]))
        return v.gradient(name, offset if fixed or offset is None else v.at[index] + offset)
    return Term(f"∇_{text} L", rf"\nabla_{{{latex}}} L", PRODUCT, fn, size)


def scaled(a: Term, g: Term) -> Term:
    """``a g`` where one of the two has one number an example (a scale): juxtaposed."""
    mul = lambda v: times(a.fn(v), a.size, g.fn(v), g.size)     # noqa: E731
    if g.one or a.one:                  # 1 g is g (evaluated once an example all the same)
        shown = a if g.one else g
        return Term(shown.text, shown.latex, shown.prec, mul, wider(a.size, g.size))
    return Term(f"{_br(a, PRODUCT)} {_br(g, PRODUCT)}",
                rf"{_br(a, PRODUCT, True)} {_br(g, PRODUCT, True)}", PRODUCT,
                mul, wider(a.size, g.size))


def hadamard(a: Term, g: Term) -> Term:
    """``a ⊙ g`` (entry by entry); juxtaposed when either is one number an example."""
    if g.one or a.one or a.size == 1 or g.size == 1:
        return scaled(a, g)
    return Term(f"{_br(a, HADAMARD)} ⊙ {_br(g, HADAMARD)}",
                rf"{_br(a, HADAMARD, True)} \odot {_br(g, HADAMARD, True)}", HADAMARD,
                lambda v: a.fn(v) * g.fn(v), g.size)


def diag(d: Term, g: Term) -> Term:
    """``diag(d) g``: a function's derivative, entry by entry (the book's diag(1 - h^2));
    of a matrix, d ⊙ G."""
    if matrix(g.size) or matrix(d.size):
        return hadamard(d, g)
    inner = Term(f"diag({d.text})", rf"\operatorname{{diag}}\left({d.latex}\right)", ATOM, d.fn, d.size)
    return hadamard(inner, g) if not wide(g.size) or g.one else Term(
        f"{inner.text} {_br(g, PRODUCT)}", rf"{inner.latex} {_br(g, PRODUCT, True)}", PRODUCT,
        lambda v: d.fn(v) * g.fn(v), g.size)


def divided(g: Term, b: Term) -> Term:
    """``g ⊘ b``, entry by entry."""
    return Term(f"{_br(g, HADAMARD)} / {_br(b, ATOM)}",
                rf"{_br(g, HADAMARD, True)} \oslash {_br(b, ATOM, True)}", HADAMARD,
                lambda v: times(g.fn(v), g.size, 1 / b.fn(v), b.size), wider(g.size, b.size))


def negated(g: Term) -> Term:
    return Term(f"-{_br(g, HADAMARD)}", f"-{_br(g, HADAMARD, True)}", HADAMARD,
                lambda v: -g.fn(v), g.size)


def square(a: Term) -> Term:
    """``a^2`` entry by entry; in LaTeX a name with a superscript is bracketed, (h^{(t)})^2."""
    bare = a.prec >= ATOM and "^" not in a.latex
    return Term(f"{_br(a, ATOM)}^2", (a.latex if bare else rf"\left({a.latex}\right)") + "^{2}",
                ATOM, lambda v: a.fn(v) ** 2, a.size)


def minus(a: Term, b: Term) -> Term:
    """``a - b`` of two printed values (1 - h(t)^2)."""
    return Term(f"{a.text} - {_br(b, HADAMARD)}", rf"{a.latex} - {_br(b, HADAMARD, True)}", SUM,
                lambda v: a.fn(v) - b.fn(v), wider(a.size, b.size))


def number(x: float) -> Term:
    text = str(int(x)) if float(x).is_integer() else repr(float(x))
    return Term(text, text, ATOM, lambda v: x, 1, one=(x == 1))


def by_matrix(name: str, g: Term, transposed: bool, size: int | None = None) -> Term:
    """``W^T g`` (``transposed``) or ``W g``: a gradient through a product with a parameter."""
    t = "^T" if transposed else ""
    lt = r"^{\top}" if transposed else ""
    return Term(f"{name}{t} {_br(g, PRODUCT)}", f"{latex_name(name)}{lt} {_br(g, PRODUCT, True)}",
                PRODUCT, lambda v: g.fn(v) @ (v.param(name) if transposed else v.param(name).T),
                size)


def outer(g: Term, x: Term) -> Term:
    """``g x^T`` summed over the examples: a parameter matrix's share."""
    left, lleft = ("", "") if g.one else (f"{_br(g, ATOM)} ", f"{_br(g, ATOM, True)} ")
    return Term(f"{left}{_br(x, ATOM)}^T",
                lleft + _top(_br(x, ATOM, True)), PRODUCT,
                lambda v: np.einsum("bi,bj->ij", _rows(g.fn(v)), _rows(x.fn(v))), None)


def dot(a: Term, g: Term) -> Term:
    """``a^T g``, one number an example: the gradient reaching a size-1 operand; of two
    matrices tr(A^T G), every entry's product added."""
    fn = lambda v: entries(times(a.fn(v), a.size, g.fn(v), g.size))      # noqa: E731
    if matrix(a.size) or matrix(g.size):
        return Term(f"tr({_br(a, ATOM)}^T {_br(g, PRODUCT)})",
                    rf"\operatorname{{tr}}\left({_top(_br(a, ATOM, True))} {_br(g, PRODUCT, True)}\right)",
                    ATOM, fn, 1)
    return Term(f"{_br(a, ATOM)}^T {_br(g, PRODUCT)}",
                f"{_top(_br(a, ATOM, True))} {_br(g, PRODUCT, True)}", PRODUCT, fn, 1)


def softmax_jacobian(s: Term, g: Term) -> Term:
    """``(diag(s) - s s^T) g``: the softmax's Jacobian (symmetric) times g."""
    st, sl = _br(s, ATOM), _br(s, ATOM, True)
    return Term(f"(diag({s.text}) - {st} {st}^T) {_br(g, PRODUCT)}",
                rf"\left(\operatorname{{diag}}\left({s.latex}\right) - {sl} {_top(sl)}\right) "
                f"{_br(g, PRODUCT, True)}", PRODUCT,
                lambda v: _softmax_vjp(s.fn(v), g.fn(v)), s.size)


def _softmax_vjp(s, g):
    return s * g - s * (s * g).sum(-1, keepdims=True)


def part(g: Term, lo: int, hi: int) -> Term:
    """Rows lo+1 .. hi of g (counted from 1): what reaches one item of ``[a; b]``."""
    return Term(f"{_br(g, ATOM)}[{lo + 1}:{hi}]", rf"{{{_br(g, ATOM, True)}_{{{lo + 1}:{hi}}}}}", ATOM,
                lambda v: g.fn(v)[..., lo:hi], hi - lo)


def summed(g: Term) -> Term:
    """``1^T g``: g's entries added, where a size-1 operand was broadcast over a vector
    (``1^T G 1`` over a matrix)."""
    if matrix(g.size):
        return Term(f"1^T {_br(g, PRODUCT)} 1", rf"\mathbf{{1}}^{{\top}} {_br(g, PRODUCT, True)} \mathbf{{1}}",
                    PRODUCT, lambda v: entries(g.fn(v)), 1)
    return Term(f"1^T {_br(g, PRODUCT)}", rf"\mathbf{{1}}^{{\top}} {_br(g, PRODUCT, True)}",
                PRODUCT, lambda v: entries(g.fn(v)), 1)


def total(terms: list[Term]) -> Term:
    """The sum of the terms (a minus for a negated one)."""
    if not terms:
        return Term("0", "0", ATOM, lambda v: 0.0, None)
    if len(terms) == 1:
        return terms[0]
    text, latex = terms[0].text, terms[0].latex
    for t in terms[1:]:
        neg = t.text.startswith("-")
        text += (" - " + t.text[1:]) if neg else (" + " + t.text)
        latex += (" - " + t.latex[1:]) if neg else (" + " + t.latex)
    fns = [t.fn for t in terms]
    return Term(text, latex, SUM, lambda v: sum(f(v) for f in fns), terms[0].size)


def _mv(a: Term, x: Term, transposed: bool, size) -> Term:
    """``A x`` or ``A^T x`` of a matrix with a value per example (a memory, an outer
    product's gradient) and a vector."""
    t, lt = ("^T", r"^{\top}") if transposed else ("", "")
    spec = "...ij,...i->...j" if transposed else "...ij,...j->...i"
    return Term(f"{_br(a, ATOM)}{t} {_br(x, PRODUCT)}",
                f"{_br(a, ATOM, True)}{lt} {_br(x, PRODUCT, True)}", PRODUCT,
                lambda v: np.einsum(spec, a.fn(v), x.fn(v)), size)


def _outer_of(a: Term, b: Term) -> Term:
    """``a b^T`` of two vectors, one matrix an example."""
    return Term(f"{_br(a, ATOM)} {_br(b, ATOM)}^T", f"{_br(a, ATOM, True)} {_top(_br(b, ATOM, True))}",
                PRODUCT, lambda v: np.einsum("...i,...j->...ij", a.fn(v), b.fn(v)), (a.size, b.size))


def _mm(p, g: Term, left: bool, size) -> Term:
    """``A^T G`` (A M's gradient to M, ``left``) or ``G B^T`` (M B's) for a parameters'
    matrix A or B, written as the file writes it."""
    text, latex = _TEXT.expr(p, POSTFIX), _LATEX.expr(p, POSTFIX)
    if left:
        return Term(f"{text}^T {_br(g, PRODUCT)}", f"{_top(latex)} {_br(g, PRODUCT, True)}", PRODUCT,
                    lambda v: np.matmul(v.evaluate(p, v.at).T, g.fn(v)), size)
    return Term(f"{_br(g, PRODUCT)} {text}^T", f"{_br(g, PRODUCT, True)} {_top(latex)}", PRODUCT,
                lambda v: np.matmul(g.fn(v), v.evaluate(p, v.at).T), size)


def _shares(a: Term, b: Term, spec: str, text: str, latex: str) -> Term:
    """A parameter matrix's share, summed over the examples."""
    return Term(text, latex, PRODUCT, lambda v: np.einsum(spec, a.fn(v), b.fn(v)), None)


def _norms(x):
    """|x| of each row (of a matrix, (B, N, W) -> (B, N)) or of a vector ((B, n) -> (B, 1)),
    at least the smallest normal number, as the compiled norm's gradient divides by."""
    n = np.linalg.norm(x, axis=-1)
    n = n if np.ndim(x) == 3 else n[..., None]
    return np.maximum(n, np.finfo(float).tiny)


def _batched(t: Term, v):
    """``t``'s value with its examples' axis: a parameter's, the same for each example."""
    x = t.fn(v)
    shape = (v.batch, *(t.size if matrix(t.size) else (t.size,)))
    return np.broadcast_to(x, shape) if np.ndim(x) < len(shape) else x


def _rowwise(g, x):
    """g's number for each row of x, times that row: (B, N) with (B, N, W), or (B, 1) with a
    vector's (B, n)."""
    return g[..., None] * x if np.ndim(x) == 3 else g * x


def _top(latex: str) -> str:
    """``latex`` transposed: a name with a superscript takes the ⊤ into it, h^{(t)\top} (a
    second superscript, {h^{(t)}}^{\top}, is an error under amsmath after an accent)."""
    if latex.endswith("}") and "^{" in latex:
        depth, i = 0, len(latex) - 1
        while i >= 0:                   # the brace that opens the last group
            depth += {"}": 1, "{": -1}.get(latex[i], 0)
            if depth == 0:
                break
            i -= 1
        if latex[i - 1:i] == "^":
            return latex[:-1] + r"\top}"
    return "{" + latex + "}^{\\top}"


def _rows(a):
    return a if np.ndim(a) == 2 else np.reshape(a, (1, -1))


# ============================================================================
# Functions: f'(z) entry by entry, from the output y = f(z) where it is simplest
# ============================================================================
def _derivative(func: str, y: Term, z: Term) -> Term:
    if func == "tanh":
        return minus(number(1), square(y))
    if func == "sigmoid":
        return hadamard(y, minus(number(1), y))
    if func == "relu":
        return Term(f"1[{z.text} > 0]", rf"\mathbf{{1}}\left[{z.latex} > 0\right]", ATOM,
                    lambda v: (z.fn(v) > 0).astype(float), z.size)
    if func == "exp":
        return y
    if func == "log":
        return divided(number(1), z)
    if func == "softplus":
        return Term(f"sigmoid({z.text})", rf"\sigma\left({z.latex}\right)", ATOM,
                    lambda v: 1 / (1 + np.exp(-z.fn(v))), z.size)
    if func == "sqrt":
        return divided(number(1), scaled(number(2), y))
    return None


class Unsupported(RnnGraphError):
    """A construct the derivations do not cover yet, located in the file."""


@dataclass
class Pulled:
    """What reaches one read or parameter: ``leaf`` (a Ref or At node of the right side),
    ``term`` its gradient; ``over`` the index of a sum over the steps it is inside (``"t"``
    in sum_t), else None; ``across`` the index a softmax normalises across (softmax_t's
    argument e(u, t) is read at every step t' of t, the term evaluated with env["t'"])."""

    leaf: object
    term: Term
    over: str | None = None
    across: str | None = None


class Rules:
    """Reverse mode on one right side.  ``sizes(node)`` is the length of a value; ``params``
    the parameters' shapes; ``out`` the node that reads the equation's own value (h(t)), so
    that the outermost function's derivative is written with it (1 - h(t)^2)."""

    def __init__(self, model, source):
        self.model, self.source = model, source
        self.params = model.param_shapes
        self._sizes: dict[int, tuple] = {}      # id(node) -> (node, its size), evaluated often
        self.latex = _IndexedLatex(model)

    def size(self, node):
        """The length of a value, or (rows, columns) of a matrix: a memory M(t-1), an outer
        product u v^T, a parameter of that shape used entry by entry."""
        known = self._sizes.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        found = self._size(node)
        self._sizes[id(node)] = (node, found)
        return found

    def _size(self, node):
        m = self.model
        if isinstance(node, (ast.Ref, ast.At)):
            shape = self.params.get(node.name) or m.shape(node.name)
            return tuple(shape) if len(shape) == 2 else shape[0]
        if isinstance(node, (ast.Num, ast.Step)):
            return 1
        if isinstance(node, ast.Neg):
            return self.size(node.operand)
        if isinstance(node, ast.Concat):
            return sum(self.size(i) for i in node.items)
        if isinstance(node, ast.Call):
            if node.func in ("cross_entropy", "binary_cross_entropy"):
                return 1
            if node.func == "outer":
                return (self.size(node.args[0]), self.size(node.args[1]))
            if node.func in ("cosine", "norm"):     # one number a row of a matrix
                first = self.size(node.args[0])
                return first[0] if matrix(first) else 1
            return self.size(node.args[0])
        if isinstance(node, ast.Transpose):
            first = self.size(node.operand)
            return first[::-1] if matrix(first) else first
        if isinstance(node, ast.Binary):
            if node.op == "@":
                return self._product_size(node)
            return wider(self.size(node.left), self.size(node.right))
        raise self.unsupported(node, "this expression")

    def kind(self, node) -> str:
        """Which product ``node`` (a Binary @) is: "diag" diag(v) h, "dot" a^T v, "param" a
        parameters' matrix times a vector, "left" A M and "right" M B (a parameter matrix
        times a memory), "columns" M^T w, "rows" M k, "outer" u v^T, "params" W1 W2."""
        left, right = node.left, node.right
        if ast.diagonal(left) is not None:
            return "diag"
        if self._is_matrix(left):
            if self._is_matrix(right):
                return "params"
            return "left" if matrix(self.size(right)) else "param"
        if isinstance(left, ast.Transpose):
            return "columns" if matrix(self.size(left.operand)) else "dot"
        if isinstance(right, ast.Transpose) and not self._is_matrix(right.operand):
            return "outer"
        if matrix(self.size(left)):
            return "right" if self._is_matrix(right) else "rows"
        raise self.unsupported(node, "this product")

    def _product_size(self, node):
        k = self.kind(node)
        left, right = node.left, node.right
        if k == "diag":
            return self.size(right)
        if k == "dot":
            return 1
        if k == "param":
            return self._shape(left)[0]
        if k == "params":
            return self._shape(node)
        if k == "left":
            return (self._shape(left)[0], self.size(right)[1])
        if k == "right":
            return (self.size(left)[0], self._shape(right)[1])
        if k == "columns":
            return self.size(left.operand)[1]
        if k == "rows":
            return self.size(left)[0]
        return (self.size(left), self.size(right.operand))      # outer

    def _shape(self, a) -> tuple[int, int]:
        """(rows, columns) of a matrix written with parameters: W, W^T, W1 - 2 W2, W1 W2^T;
        anything else in a product's left operand is not covered yet."""
        if isinstance(a, ast.Ref) and len(self.params.get(a.name, ())) == 2:
            return tuple(self.params[a.name])
        if isinstance(a, ast.Transpose):
            r, c = self._shape(a.operand)
            return c, r
        if isinstance(a, ast.Neg):
            return self._shape(a.operand)
        if isinstance(a, ast.Binary) and a.op in "+-":
            return self._shape(a.left)
        if isinstance(a, ast.Binary) and a.op in "*/" and (is_number(a.left) or is_number(a.right)):
            return self._shape(a.right if is_number(a.left) else a.left)
        if isinstance(a, ast.Binary) and a.op == "@":
            return self._shape(a.left)[0], self._shape(a.right)[1]
        raise self.unsupported(a, "this matrix (only parameters' matrices multiply a vector)")

    def unsupported(self, node, what: str) -> Unsupported:
        line, col = getattr(node, "pos", (1, 1))
        return Unsupported(f"derivations do not cover {what} yet", self.source.location(line, col))

    def value(self, node) -> Term:
        return value(node, self.size(node), self.latex)

    def pull(self, rhs, g: Term, out_node, index: str = "t") -> list[Pulled]:
        """What reaches each read of ``rhs`` (an equation over ``index``) from its value's
        gradient ``g``."""
        found: list[Pulled] = []
        self.latex.index = index
        self._pull(rhs, self._reduce(g, rhs), out_node, rhs, found, None)
        return found

    def _reduce(self, g: Term, node) -> Term:
        return summed(g) if self.size(node) == 1 and wide(g.size) else g

    def _pull(self, node, g, out_node, top, found, over):
        if isinstance(node, (ast.Num, ast.Step)):
            return
        if isinstance(node, (ast.Ref, ast.At)):
            found.append(Pulled(node, g, over))
            return
        rec = lambda n, gg: self._pull(n, gg, out_node, top, found, over)   # noqa: E731
        if isinstance(node, ast.Neg):
            rec(node.operand, negated(g))
        elif isinstance(node, ast.Binary) and node.op in "+-":
            rec(node.left, self._reduce(g, node.left))
            rec(node.right, self._reduce(negated(g) if node.op == "-" else g, node.right))
        elif isinstance(node, ast.Binary) and node.op == "*":
            for a, b in ((node.left, node.right), (node.right, node.left)):
                if is_number(a):
                    continue
                if self.size(a) == 1 and wide(g.size):
                    rec(a, dot(self.value(b), g))
                else:
                    rec(a, hadamard(self.value(b), g))
        elif isinstance(node, ast.Binary) and node.op == "/":
            a, b = node.left, node.right
            if not is_number(a):
                rec(a, self._reduce(divided(g, self.value(b)), a))
            if not is_number(b):
                share = hadamard(divided(self.value(a), square(self.value(b))), g)
                rec(b, self._reduce(negated(share), b))
        elif isinstance(node, ast.Binary) and node.op == "@":
            self._product(node, g, rec, found, over)
        elif isinstance(node, ast.Call):
            self._call(node, g, out_node, top, rec, found, over)
        elif isinstance(node, ast.Concat):
            lo = 0
            for item in node.items:
                n = self.size(item)
                rec(item, part(g, lo, lo + n))
                lo += n
        else:
            raise self.unsupported(node, "this expression")

    def _product(self, node, g, rec, found, over):
        left, right = node.left, node.right
        kind = self.kind(node)
        if kind in ("outer", "columns", "rows", "left", "right"):
            return self._memory_product(kind, node, g, rec, found, over)
        x = self.value(right)
        d = ast.diagonal(left)
        if d is not None:                                   # diag(v) h = v ⊙ h
            rec(d, hadamard(x, g))
            rec(right, hadamard(self.value(d), g))
            return
        if kind == "dot":
            inner = left.operand                            # a^T v, one number an example
            rec(inner, scaled(x, g))
            rec(right, scaled(self.value(inner), g))
            return
        if isinstance(left, ast.Ref) and len(self.params.get(left.name, ())) == 2:   # W v
            found.append(Pulled(left, outer(g, x), over))
            rec(right, by_matrix(left.name, g, True, self.params[left.name][1]))
            return
        if isinstance(left, ast.Transpose) and isinstance(left.operand, ast.Ref):   # W^T v
            found.append(Pulled(left.operand, outer(x, g), over))
            rec(right, by_matrix(left.operand.name, g, False, self.params[left.operand.name][0]))
            return
        # A v for a matrix written as an expression, (W1 + 2 W2) h: A^T g to v, and to each
        # parameter in A its share of the matrix g v^T
        self._shape(left)
        rec(right, self._through(left, g))
        self._matrix_pull(left, outer(g, x), found, over)

    def _memory_product(self, kind, node, g, rec, found, over) -> None:
        """Products with a matrix that has a value per example (a memory, Graves et al.'s
        NTM): u v^T, M^T w, M k, A M, M B; their gradients are products again."""
        left, right = node.left, node.right
        if kind == "outer":                                 # u v^T: G v to u, G^T u to v
            u, w = left, right.operand
            rec(u, _mv(g, self.value(w), False, self.size(u)))
            rec(w, _mv(g, self.value(u), True, self.size(w)))
        elif kind == "columns":                             # M^T w: w g^T to M, M g to w
            m = left.operand
            rec(m, _outer_of(self.value(right), g))
            rec(right, _mv(self.value(m), g, False, self.size(right)))
        elif kind == "rows":                                # M k: g k^T to M, M^T g to k
            rec(left, _outer_of(g, self.value(right)))
            rec(right, _mv(self.value(left), g, True, self.size(right)))
        elif kind == "left":                                # A M: A^T G to M, Σ G M^T to A
            x = self.value(right)
            rec(right, _mm(left, g, True, self.size(right)))
            self._matrix_pull(left, _shares(g, x, "bik,bjk->ij", f"{_br(g, ATOM)} {_br(x, ATOM)}^T",
                                            rf"{_br(g, ATOM, True)} {_top(_br(x, ATOM, True))}"),
                              found, over)
        else:                                               # M B: G B^T to M, Σ M^T G to B
            x = self.value(left)
            rec(left, _mm(right, g, False, self.size(left)))
            self._matrix_pull(right, _shares(x, g, "bki,bkj->ij", f"{_br(x, ATOM)}^T {_br(g, ATOM)}",
                                             rf"{_top(_br(x, ATOM, True))} {_br(g, ATOM, True)}"),
                              found, over)

    def _is_matrix(self, node) -> bool:
        return all(len(self.params.get(r.name, ())) == 2 for r in ast.walk(node)
                   if isinstance(r, ast.Ref)) and any(isinstance(r, ast.Ref) for r in ast.walk(node))

    def _through(self, a, g: Term) -> Term:
        """``A^T g`` for a matrix expression A."""
        text, latex = _TEXT.expr(a, POSTFIX), _LATEX.expr(a, POSTFIX)
        return Term(f"{text}^T {_br(g, PRODUCT)}", f"{_top(latex)} {_br(g, PRODUCT, True)}",
                    PRODUCT, lambda v: g.fn(v) @ v.evaluate(a, v.at), self._shape(a)[1])

    def _matrix_pull(self, a, G: Term, found, over) -> None:
        """The matrix gradient G of a matrix expression, spread over its parameters."""
        if isinstance(a, ast.Ref):
            found.append(Pulled(a, G, over))
        elif isinstance(a, ast.Transpose):
            self._matrix_pull(a.operand, Term(f"{_br(G, ATOM)}^T", _top(_br(G, ATOM, True)),
                                              ATOM, lambda v: G.fn(v).T, None), found, over)
        elif isinstance(a, ast.Neg):
            self._matrix_pull(a.operand, negated(G), found, over)
        elif isinstance(a, ast.Binary) and a.op in "+-":
            self._matrix_pull(a.left, G, found, over)
            self._matrix_pull(a.right, negated(G) if a.op == "-" else G, found, over)
        elif isinstance(a, ast.Binary) and a.op == "@":      # A B: G B^T to A, A^T G to B
            lt, ll = _TEXT.expr(a.left, POSTFIX), _LATEX.expr(a.left, POSTFIX)
            rt, rl = _TEXT.expr(a.right, POSTFIX), _LATEX.expr(a.right, POSTFIX)
            self._matrix_pull(a.left, Term(f"{_br(G, ATOM)} {rt}^T", f"{_br(G, ATOM, True)} {_top(rl)}",
                                           PRODUCT, lambda v: G.fn(v) @ v.evaluate(a.right, v.at).T,
                                           None), found, over)
            self._matrix_pull(a.right, Term(f"{lt}^T {_br(G, ATOM)}", f"{_top(ll)} {_br(G, ATOM, True)}",
                                            PRODUCT, lambda v: v.evaluate(a.left, v.at).T @ G.fn(v),
                                            None), found, over)
        elif isinstance(a, ast.Binary) and a.op in "*/" and is_number(a.right if a.op == "/" or
                                                                        is_number(a.right) else a.left):
            number_side, matrix_side = (a.right, a.left) if is_number(a.right) else (a.left, a.right)
            c = self.value(number_side)
            share = divided(G, c) if a.op == "/" else scaled(c, G)
            self._matrix_pull(matrix_side, share, found, over)
        else:
            raise self.unsupported(a, "this matrix")

    def _call(self, node, g, out_node, top, rec, found, over=None):
        f, args = node.func, node.args
        if f == "outer":                                    # outer(u, v) = u v^T
            rec(args[0], _mv(g, self.value(args[1]), False, self.size(args[0])))
            rec(args[1], _mv(g, self.value(args[0]), True, self.size(args[1])))
            return
        if f == "norm":                                     # |x| of each row: x / |x| g
            x = self.value(args[0])
            n = self.value(node)
            text, latex = (f"diag({g.text} / {n.text}) {_br(x, PRODUCT)}",
                           rf"\operatorname{{diag}}\left({g.latex} \oslash {n.latex}\right) "
                           f"{_br(x, PRODUCT, True)}") if matrix(x.size) else \
                (f"({g.text} / {n.text}) {_br(x, PRODUCT)}",
                 rf"\left({g.latex} \oslash {n.latex}\right) {_br(x, PRODUCT, True)}")
            rec(args[0], Term(text, latex, PRODUCT,
                              lambda v: _rowwise(g.fn(v) / _norms(_batched(x, v)), _batched(x, v)),
                              x.size))
            return
        if f == "cosine":
            return self._cosine(node, g, rec)
        z = self.value(args[0]) if args else None
        own = node is top and out_node is not None and self.size(out_node) == self.size(node)
        y = self.value(out_node) if own else self.value(node)
        d = _derivative(f, y, z)
        if d is not None:
            rec(args[0], diag(d, g))
        elif f == "softmax":
            rec(args[0], softmax_jacobian(y, g))
        elif f == "cross_entropy":
            p, target = (self.value(a) for a in args)
            rec(args[0], negated(scaled(divided(target, p), g)))
            rec(args[1], negated(scaled(Term(f"log({p.text})", rf"\log {_br(p, ATOM, True)}", ATOM,
                                             lambda v: np.log(p.fn(v)), p.size), g)))
        elif f == "binary_cross_entropy":
            p, target = (self.value(a) for a in args)
            q = minus(number(1), p)
            rec(args[0], scaled(divided(minus(p, target), hadamard(p, q)), g))
            logs = Term(f"log({q.text}) - log({p.text})",
                        rf"\log\left({q.latex}\right) - \log {_br(p, ATOM, True)}", SUM,
                        lambda v: np.log(q.fn(v)) - np.log(p.fn(v)), p.size)
            rec(args[1], scaled(logs, g))
        elif self.model_function(f).over:
            i = self.model_function(f).over
            n = f.startswith("mean")
            tau = Term("τ" if i == "t" else f"τ_{i}", r"\tau" if i == "t" else rf"\tau_{{{i}}}",
                       ATOM, lambda v: v.lengths[i], 1)
            share = g if not n else divided(g, tau)
            self._pull(args[0], share, None, None, found, i)
        elif self.model_function(f).across:
            self._across(node, g, out_node if own else None, found, over)
        else:
            raise self.unsupported(node, f"{f}()")

    def _across(self, node, g, out_node, found, over) -> None:
        """y(u, t) = softmax_t(z(u, t)): normalised over the steps of t at each u, unit by
        unit.  Its argument is read at every step t' of t; what reaches z(u, t') from y(u, t)
        is y(u, t) ([t = t'] - y(u, t')) g (the softmax's Jacobian across the steps, as
        softmax's is across a vector's entries).  The argument is pulled written at t'
        (its reads along t renamed t'), each read marked ``across``: the derivation reads
        it at every t'."""
        i = self.model_function(node.func).across
        j = i + "'"
        y = self.value(out_node) if out_node is not None else self.value(node)

        def at_other(v):                    # y(u, t'): the weights at the step read
            return v.at_steps(y.fn, {i: v.at[j]})
        mark = re.compile(rf"(?<![A-Za-z0-9_\\]){re.escape(i)}(?![A-Za-z0-9_'])")
        text = f"{_br(y, ATOM)} ([{i} = {j}] - {mark.sub(j, _br(y, ATOM))})"
        latex = rf"{_br(y, ATOM, True)} \left([{i} = {j}] - {mark.sub(j, _br(y, ATOM, True))}\right)"
        term = Term(text, latex, PRODUCT,
                    lambda v: y.fn(v) * ((v.at[i] == v.at[j]) - at_other(v)), y.size)
        inner: list[Pulled] = []
        self._pull(renamed(node.args[0], i, j), hadamard(term, g), None, None, inner, over)
        for p in inner:
            if p.across is not None:
                raise self.unsupported(node, f"{node.func}() inside another")
            p.across = i
        found.extend(inner)

    def _cosine(self, node, g, rec) -> None:
        """c = cosine(a, b) = a.b / d, d = |a| |b| + ε, of each row of a (a memory's, one
        number a row) or of two vectors: to a, diag(g / d) (1 b^T - diag(c |b| / |a|) a);
        to b, a^T (g / d) - (g / d)^T (c |a|) b / |b|."""
        a, b = (self.value(x) for x in node.args)
        c = self.value(node)
        A, Bt = _br(a, ATOM), _br(b, ATOM)
        na, nb = f"norm({a.text})", f"norm({b.text})"
        d = f"({na} {nb} + ε)"
        la, lb = _br(a, ATOM, True), _br(b, ATOM, True)
        lna, lnb = rf"\left\lVert {a.latex}\right\rVert", rf"\left\lVert {b.latex}\right\rVert"
        ld = rf"\left({lna} {lnb} + \varepsilon\right)"

        def parts(v):
            x, y, gv = _batched(a, v), _batched(b, v), g.fn(v)
            mat = matrix(a.size)
            nx, ny = _norms(x), _norms(y)                      # (B, N) / (B, 1), and (B, 1)
            num = np.einsum("bij,bj->bi", x, y) if mat else (x * y).sum(-1, keepdims=True)
            den = nx * ny + EPS
            return x, y, gv, nx, ny, num / den, gv / den
        def to_a(v):
            x, y, gv, nx, ny, cos, s = parts(v)
            first = s[..., None] * y[:, None, :] if np.ndim(x) == 3 else s * y
            return first - _rowwise(s * cos * ny / nx, x)
        def to_b(v):
            x, y, gv, nx, ny, cos, s = parts(v)
            first = np.einsum("bij,bi->bj", x, s) if np.ndim(x) == 3 else s * x
            return first - entries(s * cos * nx) * y / ny
        if not matrix(a.size):              # two vectors: one number an example
            rec(node.args[0], Term(f"({g.text} / {d}) ({Bt} - {c.text} {nb} / {na} {A})",
                                   rf"\left({g.latex} \oslash {ld}\right) \left({lb} - {c.latex} "
                                   rf"{lnb} \oslash {lna}\, {la}\right)", PRODUCT, to_a, a.size))
            rec(node.args[1], Term(f"({g.text} / {d}) ({A} - {c.text} {na} / {nb} {Bt})",
                                   rf"\left({g.latex} \oslash {ld}\right) \left({la} - {c.latex} "
                                   rf"{lna} \oslash {lnb}\, {lb}\right)", PRODUCT, to_b, b.size))
            return
        rec(node.args[0], Term(f"diag({g.text} / {d}) (1 {Bt}^T - diag({c.text} {nb} / {na}) {A})",
                               rf"\operatorname{{diag}}\left({g.latex} \oslash {ld}\right) "
                               rf"\left(\mathbf{{1}} {_top(lb)} - \operatorname{{diag}}\left({c.latex} "
                               rf"{lnb} \oslash {lna}\right) {la}\right)", PRODUCT, to_a, a.size))
        rec(node.args[1], Term(f"{A}^T ({g.text} / {d}) - (({g.text} / {d})^T ({c.text} ⊙ {na})) {Bt} / {nb}",
                               rf"{_top(la)} \left({g.latex} \oslash {ld}\right) - "
                               rf"\left({{\left({g.latex} \oslash {ld}\right)}}^{{\top}} \left({c.latex} "
                               rf"\odot {lna}\right)\right) {lb} \oslash {lnb}", SUM, to_b, b.size))

    @staticmethod
    def model_function(name):
        from ..lang.functions import lookup
        return lookup(name)


def shifted(node, k: int, index: str = "t"):
    """``node`` with every read along ``index`` moved by k steps: h(t-1) -> h(t) for k = 1."""
    if isinstance(node, ast.Ref):
        return replace(node, offset=node.offset + k) if node.offset is not None and k \
            and node.index == index else node
    if isinstance(node, ast.Step) and node.name == index and k:      # the step number, t + k
        return ast.Binary("+" if k > 0 else "-", node, ast.Num(float(abs(k)), node.pos), node.pos)
    kids = ast.children(node)
    return ast.rebuild(node, [shifted(c, k, index) for c in kids]) if kids else node


def renamed(node, index: str, to: str):
    """``node`` with the index ``index`` written ``to``: h(left(n)) -> h(left(p)), the
    equation of a tree's node written at its parent p; e(u, t) -> e(u, t')."""
    if isinstance(node, ast.Ref) and node.offset is not None and index in (node.index, node.inner):
        return replace(node, index=to if node.index == index else node.index,
                       inner=to if node.inner == index else node.inner)
    if isinstance(node, ast.Step) and node.name == index:
        return replace(node, name=to)
    kids = ast.children(node)
    return ast.rebuild(node, [renamed(c, index, to) for c in kids]) if kids else node


__all__ = ["ATOM", "HADAMARD", "PRODUCT", "SUM", "Pulled", "Rules", "Term", "Unsupported", "gradient",
           "given", "one", "renamed", "shifted", "spread", "total"]
