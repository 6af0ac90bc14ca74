"""AST -> text: the canonical equation text and LaTeX.

The canonical text uses ASCII operators and as few parentheses as the
grammar's precedence allows; parsing it gives back an equal AST.
"""
from __future__ import annotations

import re

from . import ast
from .functions import FUNCTIONS
from .names import latex_name

# Precedence levels of the grammar: sum < product < signed < matprod < postfix < atom.
SUM, PRODUCT, SIGNED, MATPROD, POSTFIX, ATOM = range(1, 7)


def precedence(node) -> int:
    """How tightly ``node`` binds when printed: SUM (1) .. ATOM (6)."""
    if isinstance(node, ast.Binary):
        return {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "@": MATPROD}[node.op]
    if isinstance(node, ast.Neg):
        return SIGNED
    if isinstance(node, ast.Transpose):
        return POSTFIX
    return ATOM


def _operand_prec(node) -> tuple[int, int]:
    """The least precedence the (left, right) operands of ``node`` may have unbracketed."""
    if isinstance(node, ast.Binary):
        return {"+": (SUM, PRODUCT), "-": (SUM, PRODUCT), "*": (PRODUCT, SIGNED),
                "/": (PRODUCT, SIGNED), "@": (POSTFIX, MATPROD)}[node.op]
    if isinstance(node, ast.Neg):
        return (SIGNED, SIGNED)
    return (POSTFIX, POSTFIX)


def time_text(offset: int | None, index: str = "t") -> str:
    if offset is None:
        return ""
    return index if offset == 0 else f"{index}{offset:+d}"


def number_text(value: float) -> str:
    """The shortest text that parses back to exactly ``value`` (a finite float).

    Examples
    --------
    >>> [number_text(v) for v in (2.0, 0.1, 1e22, 1e-320)]
    ['2', '0.1', '1e+22', '1e-320']
    """
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def number_latex(value: float) -> str:
    r"""``value`` in LaTeX, with the digits of :func:`number_text`: ``1e+22`` is ``10^{22}``.

    Examples
    --------
    >>> [number_latex(v) for v in (0.5, 1e22, 2.5e-320)]
    ['0.5', '10^{22}', '2.5 \\cdot 10^{-320}']
    """
    text = number_text(value)
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    power = f"10^{{{int(exponent)}}}"
    return power if mantissa == "1" else rf"{mantissa} \cdot {power}"


def is_number(node) -> bool:
    """Whether ``node`` is a number: numbers and step values (``end - t``) alone."""
    return all(isinstance(n, (ast.Num, ast.Step)) or isinstance(n, (ast.Binary, ast.Neg))
               for n in ast.walk(node))


class _Printer:
    """One printer, two dialects: the subclasses say how leaves and operators look."""

    def expr(self, node, least: int = SUM) -> str:
        text = self._node(node)
        return self.paren(text) if precedence(node) < least else text

    def _node(self, node) -> str:
        if isinstance(node, ast.Binary):
            lp, rp = _operand_prec(node)
            scalar = is_number(node.left) or is_number(node.right)
            op = "scale" if node.op == "*" and scalar else node.op
            return self.binary(op, self.expr(node.left, lp), self.expr(node.right, rp))
        if isinstance(node, ast.Neg):
            return "-" + self.expr(node.operand, SIGNED)
        if isinstance(node, ast.Transpose):
            return self.transpose(self.expr(node.operand, POSTFIX))
        if isinstance(node, ast.Num):
            return self.number(node.value)
        if isinstance(node, ast.Ref):
            if node.inner is not None:
                return self.pair(node.name, time_text(node.offset, node.index), node.inner)
            if node.child is not None:                      # h(left(n))
                return self.child(node.name, node.child, node.index)
            return self.ref(node.name, node.offset, node.index)
        if isinstance(node, ast.Initial):
            return self.ref(node.name, "0")
        if isinstance(node, ast.At):
            return self.at(node.name, "root" if node.root else node.step)
        if isinstance(node, ast.Step):
            return self.step(node.name)
        if isinstance(node, ast.Call):
            return self.call(node.func, [self.expr(a) for a in node.args])
        if isinstance(node, ast.Concat):
            return self.concat([self.expr(i) for i in node.items])
        raise TypeError(f"not an expression: {node!r}")


class TextPrinter(_Printer):
    number = staticmethod(number_text)

    def paren(self, text):
        return f"({text})"

    def binary(self, op, left, right):
        if op == "@":
            return f"{left} {right}"
        return f"{left} {'*' if op == 'scale' else op} {right}"

    def transpose(self, text):
        return text + "^T"

    def ref(self, name, offset, index="t"):
        return name if offset is None else \
            f"{name}({offset if offset == '0' else time_text(offset, index)})"

    def at(self, name, step):
        return f"{name}({step})"

    def pair(self, name, outer, inner):
        return f"{name}({outer}, {inner})"

    def child(self, name, which, index):
        return f"{name}({which}({index}))"

    def step(self, name):
        return name

    def call(self, func, args):
        return f"{func}({', '.join(args)})"

    def concat(self, items):
        return "[" + "; ".join(items) + "]"


class LatexPrinter(_Printer):
    number = staticmethod(number_latex)

    def paren(self, text):
        return r"\left(" + text + r"\right)"

    def binary(self, op, left, right):
        # A number times a vector is written 0.5 x; only vector times vector is the Hadamard product.
        return {"@": f"{left} {right}", "scale": f"{left} {right}",
                "*": rf"{left} \odot {right}"}.get(op, f"{left} {op} {right}")

    def transpose(self, text):
        # s^{(u)} transposed: braced, as LaTeX refuses a second superscript (s^{(u)}^{\top})
        return ("{" + text + "}" if "^" in text else text) + r"^{\top}"

    def ref(self, name, offset, index="t"):
        if offset is None:
            return latex_name(name)
        return latex_name(name, f"({offset if offset == '0' else time_text(offset, index)})")

    def pair(self, name, outer, inner):
        return latex_name(name, f"({outer},{inner})")

    def child(self, name, which, index):
        return latex_name(name, rf"(\operatorname{{{which}}}({index}))")

    def at(self, name, step):
        # the book's last step is \tau: h^{(\tau)}; a tree's root, h^{(\operatorname{root})}
        if step == "root":
            return latex_name(name, r"(\operatorname{root})")
        return latex_name(name, "(\\tau)" if step == "end" else f"({step})")

    def step(self, name):
        return "\\tau" if name == "end" else latex_name(name)

    def call(self, func, args):
        latex = FUNCTIONS[func].latex
        if func == "norm":
            return r"\left\lVert " + args[0] + r" \right\rVert"
        if latex.endswith("{}"):
            return latex[:-1] + ", ".join(args) + "}"
        if FUNCTIONS[func].over and re.fullmatch(r"[^ +\-]*", args[0]):   # \sum_{t} L^{(t)}
            return f"{latex} {args[0]}"
        return latex + r"\left(" + ", ".join(args) + r"\right)"

    def concat(self, items):
        return r"\begin{bmatrix}" + r" \\ ".join(items) + r"\end{bmatrix}"


def expr_text(node) -> str:
    """The canonical text of an expression.

    Examples
    --------
    >>> from rnngraph.lang.parser import parse_program
    >>> eq = parse_program("y(t) = σ(W_f [h(t−1), x(t)]) ⊙ (a(t) + b)").equations[0]
    >>> expr_text(eq.rhs)
    'sigmoid(W_f [h(t-1); x(t)]) * (a(t) + b)'
    """
    return TextPrinter().expr(node)


def size_text(size) -> str:
    """A declared size as the file writes it: ``32``, or ``8x16`` for a matrix."""
    return "x".join(map(str, size)) if isinstance(size, tuple) else str(size)


def program_text(program: ast.Program) -> str:
    lines = []
    plain = [d.name for d in program.indices if not d.tree]
    if plain:
        lines.append(f"index {', '.join(plain)}")
    lines += [f"tree {d.name}" for d in program.indices if d.tree]
    if program.sizes:
        lines.append(", ".join(f"{d.name}: {size_text(d.size)}" for d in program.sizes))
    for role in ("input", "parameter"):
        names = [d.name for d in program.roles if d.role == role]
        if names:
            lines.append(f"{role} {', '.join(names)}")
    for eq in program.equations:
        lines.append(f"{eq.lhs_text} = {expr_text(eq.rhs)}")
    lines += [f"free {d.name} -> {d.by}" for d in program.frees]
    return "\n".join(lines) + "\n"


def program_latex(program: ast.Program) -> str:
    p = LatexPrinter()
    rows = []
    for eq in program.equations:
        lhs = p.pair(eq.name, eq.index, eq.inner) if eq.inner is not None else \
            p.ref(eq.name, {"seq": 0, "value": None, "init": "0"}[eq.kind], eq.index)
        rows.append(f"{lhs} &= {p.expr(eq.rhs)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n"
