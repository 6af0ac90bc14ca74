r"""Equations written in LaTeX, as exercise sheets and slides print them (issue 20).

``parse_latex(text)`` gives the :class:`~rnngraph.lang.ast.Program` that the same
equations written plainly give, so ``rnngraph check eqs.tex`` (chosen by the extension) and
``parse(text, format="latex")`` check, draw and compile them as any model, and
:meth:`~rnngraph.check.model.Model.to_latex` output parses back to the same model.

What it reads (grammars/latex.lark): math delimiters ``$$ ... $$``, ``\[ ... \]``,
``$ ... $`` and the math environments (``aligned``, ``align``, ``equation``, ``gather``,
starred or not; text around them is skipped), ``&`` and ``\\`` between equations, a trailing
``.`` or ``,``; names in any face (``\boldsymbol{h}``, ``\mathbf{h}``, ``\bm{h}``), Greek
letters, words (``\mathrm{target}``), accents (``\tilde{c}`` is ``c_tilde``), subscripts
(``h_{1}`` is h1, ``W_{hh}`` W_hh) and superscripts: a step ``h^{(t-1)}`` or ``h_{t-1}``, an
initial value ``h^{(0)}``, the last step ``h^{(\tau)}``, a fixed step ``h^{(1)}``, two
indices ``e^{(u,t)}``, a tree's ``h^{(\operatorname{left}(n))}`` and ``h^{(\operatorname{root})}``,
and the book's ``W^{(f)}`` (the name W_f); ``^{\top}``, ``^T`` transposes; ``\odot`` and
``\circ`` the elementwise product, juxtaposition and ``\cdot`` the matrix product;
``\tanh``, ``\sigma``, ``\exp``, ``\log``, ``\sqrt{}``, ``\operatorname{softmax}`` and the
other functions by name (``\mathrm{}``, ``\text{}`` too; ``\operatorname{CE}`` is
cross_entropy, ``\operatorname{BCE}`` binary_cross_entropy, ``\operatorname{ReLU}`` relu),
``\operatorname{softmax}_{t}``, ``\sum_{t}`` and ``\frac{1}{\tau}\sum_{t}`` (sum_t, mean_t),
``\left\lVert x \right\rVert`` (norm), ``\frac{a}{b}``, ``\begin{bmatrix} a \\ b
\end{bmatrix}`` (a concatenation); spacing (``\,``, ``\quad``), ``\left``/``\right``,
``\label``, ``%`` comments.  An index other than t is declared by its use (``s^{(u)} = ...``
declares u; a child's read declares a tree).  Sizes are not written in LaTeX: give them
with ``--sizes`` or ``sizes=``.

Errors point at the LaTeX source: every character keeps its line and column through the
blanking of what is not mathematics.
"""
from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from . import ast
from ..errors import Source
from .functions import lookup as function
from .names import GREEK
from .parser import _Located, _check_depth, _left_side, _steps_as_values, grammar_path

SEP = "\u00b6"                                     # where an equation ends (the pilcrow)

_ENVS = r"(?:equation|align|aligned|alignat|gather|gathered|multline|split|eqnarray|displaymath|math)\*?"
_BLOCK = re.compile(r"\$\$(.*?)\$\$|\\\[(.*?)\\\]|(?<![\\$])\$(?!\$)(.*?)(?<!\\)\$|"
                    rf"\\begin\s*\{{({_ENVS})\}}(.*?)\\end\s*\{{\4\}}", re.S)
_BLANK = re.compile(r"\\begin\s*\{" + _ENVS + r"\}(\s*\[[a-z]*\]|\s*\{\d+\})?|&|"
                    r"\\(label|tag)\s*\{[^{}]*\}|\\(nonumber|notag|displaystyle|textstyle|"
                    r"qquad|quad|medskip|smallskip)(?![A-Za-z])|(?<!\\)\\[,;:! ]|~")
_END_ENV = re.compile(r"\\end\s*\{" + _ENVS + r"\}")

#: function names as LaTeX writes them -> the language's
NAMED = {"tanh": "tanh", "exp": "exp", "log": "log", "sigma": "sigmoid", "sigmoid": "sigmoid",
         "ReLU": "relu", "relu": "relu", "CE": "cross_entropy", "BCE": "binary_cross_entropy",
         "sm": "softmax"}


def _blank(text: str, start: int, end: int, mark: bool = False) -> str:
    """``text`` with [start, end) spaces (newlines kept), the first a separator if ``mark``."""
    piece = re.sub(r"[^\n]", " ", text[start:end])
    if mark and piece:
        piece = SEP + piece[1:] if piece[0] != "\n" else piece + SEP
    return text[:start] + piece + text[end:]


def math_only(text: str) -> str:
    r"""The mathematics of ``text``, every other character a space (newlines kept), and a
    separator (the pilcrow) where one equation ends.

    >>> math_only(r"Let $$h^{(t)} = x^{(t)}.$$ and").replace(" ", "")
    'h^{(t)}=x^{(t)}¶'
    """
    text = re.sub(r"(?<!\\)%[^\n]*", lambda m: " " * len(m.group()), text)     # comments
    blocks = list(_BLOCK.finditer(text))
    if blocks:
        out, at = "", 0
        for m in blocks:
            out += re.sub(r"[^\n]", " ", text[at:m.start()])
            inner = next(i for i in (1, 2, 3, 5) if m.group(i) is not None)
            if "=" not in m.group(inner):        # $x^{(t)}$ in a sentence: no equation
                out += re.sub(r"[^\n]", " ", m.group())
                at = m.end()
                continue
            out += " " * (m.start(inner) - m.start()) + text[m.start(inner):m.end(inner)]
            closing = text[m.end(inner):m.end()]
            out += SEP + " " * (len(closing) - 1)
            at = m.end()
        text = out + re.sub(r"[^\n]", " ", text[at:])
    for m in reversed(list(_END_ENV.finditer(text))):      # a nested environment's end
        text = _blank(text, m.start(), m.end(), mark=True)
    text = _BLANK.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    text = _line_breaks(text)
    # a sentence's full stop or comma after an equation: not part of it
    return re.sub(r"[.,](?=\s*(" + SEP + r"|\\\\|$))", " ", text)


def _line_breaks(text: str) -> str:
    """A line break ends an equation where no bracket is open, the equation has its ``=``,
    and the next line has one of its own: equations one per line, without ``\\``."""
    lines = text.split("\n")
    depth, has_eq = 0, False
    for k, line in enumerate(lines[:-1]):
        for m in re.finditer(r"\\\\|" + SEP + r"|\\left\s*[(\[{.]|\\right\s*[)\]}.]|[({\[]|[)}\]]|=", line):
            tok = m.group()
            if tok in ("\\\\", SEP):
                has_eq = False
            elif tok == "=":
                has_eq = has_eq or depth == 0
            elif tok.startswith("\\left") or tok in "({[":
                depth += 1
            else:
                depth = max(depth - 1, 0)
        following = next((ln for ln in lines[k + 1:] if ln.strip()), "")
        if depth == 0 and has_eq and "=" in following.split(SEP)[0].split("\\\\")[0]:
            lines[k] += SEP
            has_eq = False
    return "\n".join(lines)


# -- names and scripts --------------------------------------------------------------
_FACE = re.compile(r"\\(boldsymbol|mathbf|bm|mathit|vec)\s*\{")
_ACCENT = re.compile(r"\\(hat|tilde|bar)\s*\{")
_GREEK = re.compile(r"\\([A-Za-z]+)")
_SCRIPT = re.compile(r"\s*(_|\^)\s*(\{((?:[^{}]|\{[^{}]*\})*)\}|\(([^()]*)\)|([A-Za-z0-9])|(\\[A-Za-z]+))")
_SIMPLE_TIME = re.compile(r"\s*([A-Za-z])\s*(?:([+-])\s*(\d+))?\s*")


def _braced(text: str, at: int) -> tuple[str, int]:
    """The contents of the braces that open at ``text[at]`` and where they close."""
    depth = 0
    for k in range(at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[at + 1:k], k + 1
    raise ValueError("unbalanced")


def _word(text: str) -> str:
    """A script's or a \\mathrm's text as part of a name: Greek letters as letters."""
    text = re.sub(r"\\(mathrm|text|mathit|mathbf|boldsymbol|bm)\s*\{([^{}]*)\}", r"\2", text)
    text = re.sub(r"\\([A-Za-z]+)\s*", lambda m: GREEK.get(m.group(1), m.group(1)), text)
    return re.sub(r"[\s{}]", "", text).replace(",", "_")


def _base(text: str, pos) -> tuple[str, str | None, str]:
    """(the name's letters, its accent, the rest of the token: its scripts)."""
    text = text.strip()
    m = _FACE.match(text)
    if m:                                         # \boldsymbol{...}: the face is not the name
        inner, end = _braced(text, m.end() - 1)
        name, accent, rest = _base(inner, pos)
        return name, accent, rest + text[end:]
    m = _ACCENT.match(text)
    if m:
        inner, end = _braced(text, m.end() - 1)
        name, _, rest = _base(inner, pos)
        return name, m.group(1), rest + text[end:]
    m = re.match(r"\\mathrm\s*\{([A-Za-z][A-Za-z0-9]*)\}", text)
    if m:
        return m.group(1), None, text[m.end():]
    m = _GREEK.match(text)
    if m:
        if m.group(1) not in GREEK and m.group(1) not in ("varepsilon", "vartheta", "varphi"):
            raise _Located(f"unknown command \\{m.group(1)}", pos)
        letter = GREEK.get(m.group(1)) or GREEK[m.group(1)[3:]]
        return letter, None, text[m.end():]
    return text[0], None, text[1:]


def _time(content: str, pos):
    """What a superscript in parentheses, or a step's subscript, says: ("offset", index, k),
    ("initial",), ("at", step), ("pair", index, k, inner), ("child", side, index),
    ("root",), ("letter", k) (an index or a part of the name: decided by the program)."""
    c = content.strip()
    if c in ("\\tau", "\\mathrm{end}"):
        return ("at", "end")
    m = re.fullmatch(r"\\(operatorname|mathrm|text)\s*\{(left|right)\}\s*\(\s*([A-Za-z])\s*\)", c)
    if m:
        return ("child", m.group(2), m.group(3))
    if re.fullmatch(r"\\(operatorname|mathrm|text)\s*\{root\}", c):
        return ("root",)
    if re.fullmatch(r"\d+", c):
        return ("initial",) if int(c) == 0 else ("at", int(c))
    m = re.fullmatch(r"([A-Za-z])\s*(?:([+-])\s*(\d+))?\s*,\s*([A-Za-z])", c)
    if m:
        k = int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1)
        return ("pair", m.group(1), k, m.group(4))
    m = _SIMPLE_TIME.fullmatch(c)
    if m:
        if m.group(2) is None and m.group(1) != "t":
            return ("letter", m.group(1))
        return ("offset", m.group(1), int(m.group(3) or 0) * (-1 if m.group(2) == "-" else 1))
    return None


def var(text: str, pos):
    """The AST of one VAR token: a name with its scripts."""
    name, accent, rest = _base(text, pos)
    sub, time = "", None
    at = 0
    while at < len(rest.strip()):
        m = _SCRIPT.match(rest, at)
        if m is None:
            break
        at = m.end()
        kind, braced, paren = m.group(1), m.group(3), m.group(4)
        content = braced if braced is not None else paren if paren is not None else \
            m.group(5) or m.group(6)
        if kind == "^":
            inner = re.fullmatch(r"\s*\((.*)\)\s*", content, re.S) if braced is not None else \
                None
            inner = inner.group(1) if inner else paren
            if inner is None:
                raise _Located(f"a superscript is a step in parentheses, as ^{{(t-1)}}, or "
                               f"a transpose, ^{{\\top}}; not ^{{{content}}}", pos)
            t = _time(inner, pos)
            if t is None:
                raise _Located(f"a step is t, t-1, t+1, 0, a whole number or \\tau (as "
                               f"h^{{(t-1)}}); not ({inner.strip()})", pos)
            if time is not None:
                raise _Located(f"{name} has two steps", pos)
            else:
                time = t
        else:
            t = _time(content, pos) if not braced or re.fullmatch(r"[\sA-Za-z0-9+-]*", content) \
                else None
            if t is not None and t[0] == "offset":
                if time is not None:
                    raise _Located(f"{name} has two steps", pos)
                time = t                                # h_t, h_{t-1}: a step
            else:
                word = _word(content)
                sub += word if word.isdigit() and not sub else "_" + word
    full = name + sub + (f"_{accent}" if accent else "")
    if time is None:
        return ast.Ref(full, None, pos)
    kind = time[0]
    if kind == "offset":
        return ast.Ref(full, time[2], pos, time[1])
    if kind == "initial":
        return ast.Initial(full, pos)
    if kind == "at":
        return ast.At(full, time[1], pos)
    if kind == "pair":
        return ast.Ref(full, time[2], pos, time[1], time[3])
    if kind == "child":
        return ast.Ref(full, -1, pos, time[2], child=time[1])
    if kind == "root":
        return ast.At(full, "end", pos, root=True)
    return ast.Ref(f"{full}\x00{time[1]}", None, pos)       # W^{(f)} or s^{(u)}: see _resolve


def _function(text: str, pos) -> str:
    """The language's function for a FUNC token (\\tanh, \\operatorname{softmax}_{t})."""
    m = re.match(r"\\(tanh|exp|log|sigma)$", text.strip())
    if m:
        return NAMED[m.group(1)]
    m = re.match(r"\\(operatorname|mathrm|text|mathop)\s*\{([A-Za-z_]+)\}(?:\s*_\s*\{?([A-Za-z])\}?)?",
                 text.strip())
    word, index = m.group(2), m.group(3)
    name = NAMED.get(word, word)
    if index:
        name = f"{name}_{index}"
    if function(name) is None:
        raise _Located(f"unknown function '{word}'", pos)
    return name


class _MeanPrefix:
    """``\\frac{1}{\\tau}`` before a ``\\sum_{t}``: the mean over the steps."""

    def __init__(self, pos):
        self.pos = pos


def _pos(tok):
    return (tok.line, tok.column)


@v_args(inline=True)
class _ToAst(Transformer):
    def number(self, tok):
        return ast.Num(float(tok), _pos(tok))

    def var(self, tok):
        return var(str(tok), _pos(tok))

    def call(self, func, *args):
        args = [a for a in args if not hasattr(a, "type")]
        name = _function(str(func), _pos(func))
        f = function(name)
        if len(args) != f.arity:
            raise _Located(f"{name} takes {f.arity} argument{'s' if f.arity != 1 else ''}, "
                           f"not {len(args)}", _pos(func))
        return ast.Call(f.name, tuple(args), _pos(func))

    def sqrt(self, tok, _lb, x, _rb):
        return ast.Call("sqrt", (x,), _pos(tok))

    def frac(self, tok, _a, num, _b, _c, den, _d):
        if isinstance(num, ast.Num) and num.value == 1 and isinstance(den, ast.Ref) \
                and den.name in ("end", "τ") and den.offset is None:
            return _MeanPrefix(_pos(tok))
        return ast.Binary("/", num, den, _pos(tok))

    def group(self, *items):
        return next(i for i in items if not hasattr(i, "type"))

    def norm(self, tok, x, _close):
        return ast.Call("norm", (x,), _pos(tok))

    def concat(self, tok, *items):
        return ast.Concat(tuple(i for i in items if not hasattr(i, "type")), _pos(tok))

    def total(self, tok, operand):
        m = re.match(r"\\sum\s*_\s*\{?\s*([A-Za-z])", str(tok))
        if not m:
            raise _Located("a sum says what it sums over, as \\sum_{t} L^{(t)}", _pos(tok))
        return ast.Call(f"sum_{m.group(1)}", (operand,), _pos(tok))

    def juxtapose(self, left, right):
        if isinstance(left, _MeanPrefix):
            if isinstance(right, ast.Call) and right.func.startswith("sum_"):
                return ast.Call("mean_" + right.func[4:], right.args, left.pos)
            raise _Located("\\frac{1}{\\tau} is the mean's: write \\frac{1}{\\tau} \\sum_{t} ...",
                           left.pos)
        if _number(left) or _number(right):        # \tau - t times r: a scaling, r * (...)
            return ast.Binary("*", left, right, left.pos)
        return ast.Binary("@", left, right, left.pos)

    def matmul(self, left, _op, right):
        return ast.Binary("@", left, right, left.pos)

    def mul(self, left, op, right):
        return ast.Binary("*", left, right, _pos(op))

    def div(self, left, op, right):
        return ast.Binary("/", left, right, _pos(op))

    def add(self, left, op, right):
        return ast.Binary("+", left, right, _pos(op))

    def sub(self, left, op, right):
        return ast.Binary("-", left, right, _pos(op))

    def neg(self, op, operand):
        return ast.Neg(operand, _pos(op))

    def transpose(self, operand, op):
        return ast.Transpose(operand, _pos(op))

    def equation(self, lhs, eq, rhs):
        if isinstance(lhs, ast.Ref) and "\x00" in lhs.name:      # s^{(u)} = ...: over u
            name, index = lhs.name.split("\x00")
            lhs = ast.Ref(name, 0, lhs.pos, index)
        _check_depth(lhs)
        _check_depth(rhs)
        name, kind = _left_side(lhs)
        index = lhs.index if kind == "seq" else "t"
        inner = lhs.inner if kind == "seq" else None
        return ast.Equation(name, kind, rhs, lhs.pos, index, inner)

    def start(self, *equations):
        return list(equations)


def _number(node) -> bool:
    """Whether ``node`` is made of numbers and step values alone (t, \tau, end - t): what
    the LaTeX printer writes beside a vector for a scaling (the plain text's ``r * (end - t)``)."""
    return any(isinstance(n, ast.Ref) and n.name in ("t", "end", "τ") and n.offset is None
               for n in ast.walk(node)) and all(
        isinstance(n, (ast.Num, ast.Binary, ast.Neg)) or isinstance(n, ast.Ref) and n.name in
        ("t", "end", "τ") and n.offset is None for n in ast.walk(node))


@lru_cache(maxsize=1)
def _lark() -> Lark:
    path = grammar_path().parent / "latex.lark"          # beside rnn.lark, installed or not
    return Lark(path.read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                transformer=_ToAst(), maybe_placeholders=False)


def _resolve(equations: list) -> tuple[list, tuple]:
    """Name the placeholders ``X^{(k)}``: a step of k where k is an index (the index of an
    equation), else the name X_k (the book's W^{(f)}); declare the indices besides t (a
    tree's where a child or the root is read)."""
    indices = {eq.index for eq in equations} | {eq.inner for eq in equations if eq.inner}
    for eq in equations:
        for n in ast.walk(eq.rhs):
            if isinstance(n, ast.Ref) and n.offset is not None and n.index != "t":
                indices.add(n.index)
            if isinstance(n, ast.Call) and re.fullmatch(r"(sum|mean|softmax)_[A-Za-z]", n.func):
                indices.add(n.func.split("_")[1])
    trees = {n.index for eq in equations for n in ast.walk(eq.rhs)
             if isinstance(n, ast.Ref) and n.child is not None}

    def swap(node):
        if isinstance(node, ast.Ref) and "\x00" in node.name:
            name, k = node.name.split("\x00")
            return ast.Ref(name, 0, node.pos, k) if k in indices else ast.Ref(f"{name}_{k}", None,
                                                                                node.pos)
        if not ast.children(node):
            return node
        return ast.rebuild(node, [swap(c) for c in ast.children(node)])
    out = [replace(eq, rhs=swap(eq.rhs)) for eq in equations]
    decls = tuple(ast.IndexDecl(i, (1, 1), tree=i in trees)
                  for i in sorted(indices - {"t"}))
    return out, decls


def parse_latex(text: str, filename: str = "<string>") -> ast.Program:
    r"""Parse LaTeX equations into an :class:`ast.Program` (see the module).

    >>> prog = parse_latex(r"$$\boldsymbol{h}^{(t)} = \tanh(\boldsymbol{W}\,\boldsymbol{h}^{(t-1)} + b)$$")
    >>> from rnngraph.lang.printing import program_text
    >>> print(program_text(prog), end="")
    h(t) = tanh(W h(t-1) + b)
    """
    source = Source(text, filename)
    math = math_only(text)
    if "=" not in math:
        raise source.error("no equations: write them as LaTeX, as in h^{(t)} = \\tanh(W "
                           "h^{(t-1)} + U x^{(t)})", 1, 1)
    try:
        equations = _lark().parse(math)
    except _Located as err:
        raise source.error(err.message, *err.pos) from None
    except UnexpectedInput as err:
        raise _syntax_error(err, source, math) from None
    if not equations:
        raise source.error("no equations: write them as LaTeX, as in h^{(t)} = \\tanh(W "
                           "h^{(t-1)} + U x^{(t)})", 1, 1)
    equations, indices = _resolve(equations)
    program = ast.Program(tuple(equations), (), (), (), indices)
    return _steps_as_values(_tau_as_end(program))


def _tau_as_end(program: ast.Program) -> ast.Program:
    """A bare \\tau reads the number of steps (the book's tau), as ``end`` does."""
    def swap(node):
        if isinstance(node, ast.Ref) and node.name == "τ" and node.offset is None:
            return ast.Ref("end", None, node.pos)
        if not ast.children(node):
            return node
        return ast.rebuild(node, [swap(c) for c in ast.children(node)])
    return replace(program, equations=tuple(replace(eq, rhs=swap(eq.rhs))
                                            for eq in program.equations))


_DESCRIBE = {"VAR": "a name", "NUMBER": "a number", "FUNC": "a function", "EQ": "'='",
             "PLUS": "'+'", "MINUS": "'-'", "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'",
             "RBRACE": "'}'", "_SEP": "the end of the equation", "$END": "the end"}


def _syntax_error(err: UnexpectedInput, source: Source, math: str):
    if isinstance(err, UnexpectedCharacters):
        ch = math[err.pos_in_stream] if err.pos_in_stream < len(math) else "?"
        what = re.match(r"\\[A-Za-z]+", math[err.pos_in_stream:])
        msg = f"unknown command {what.group()}" if what else f"unexpected character {ch!r}"
        return source.error(msg, err.line, err.column)
    tok = err.token if isinstance(err, UnexpectedToken) else None
    if tok is None or tok.type == "$END":
        lines = source.text.rstrip("\n").split("\n")
        return source.error("the equation is not finished", len(lines), len(lines[-1]) + 1)
    expected = sorted({_DESCRIBE.get(e, e) for e in err.expected if not e.startswith("__")})
    shown = str(tok) if tok.type != "_SEP" else "the end of the equation"
    return source.error(f"unexpected {shown!r}; expected " + ", ".join(expected[:6]),
                        tok.line, tok.column)
