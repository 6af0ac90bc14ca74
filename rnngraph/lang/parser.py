"""Text -> AST: the Lark grammar in grammars/rnn.lark and an inline Transformer.

The parser is LALR with the Transformer applied while parsing, so no parse
tree is built and nothing recurses: deep brackets and megabyte files are safe.
Errors about the text become :class:`RnnGraphError` with a location; lark's
own exceptions never reach the user.

Later stages walk expressions recursively (the printers, size inference, the
compiler's lowering), two or three Python frames a level.  So no expression
deeper than :data:`MAX_DEPTH` leaves this module, and nothing here recurses
over one before its depth is checked (:func:`ast.depth` is iterative).
"""
from __future__ import annotations

import difflib
from dataclasses import replace
import math
import re
import sys
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast
from ..errors import RnnGraphError, Source
from .functions import BY_NAME, lookup
from .printing import expr_text

#: Deepest expression accepted, on either side of '='.  Later stages walk expressions
#: recursively; no hand-written equation comes near this (a 100-term sum does).
#: Fixed, not a :class:`rnngraph.check.limits.Limits` field: raising it would let the
#: recursive walks reach Python's recursion limit.
MAX_DEPTH = 100
_SHOWN = 40                    # characters of an expression quoted in a message

_OPENERS = {"LPAR", "CALL", "LBRACK"}
_CLOSERS = {"RPAR", "RBRACK"}


def grammar_path() -> Path:
    """Where rnn.lark is: inside the installed package, or in the checkout's grammars/."""
    package = Path(__file__).resolve().parent.parent        # rnngraph/
    for candidate in (package / "grammars" / "rnn.lark", package.parent / "grammars" / "rnn.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("rnngraph's grammar rnn.lark is missing from this installation")


def _size_number(text: str, token) -> int:
    if text.isdigit() and len(text.lstrip("0")) > 16:   # (int() refuses 4300 digits)
        raise _Located(f"a size is a whole number of at most 16 digits, not {text[:20]}...",
                       _pos(token))
    if not text.isdigit() or int(text) < 1:
        raise _Located(f"a size is a positive whole number, not {text}", _pos(token))
    return int(text)


class _Located(Exception):
    """Raised inside the Transformer; parse() turns it into an RnnGraphError."""

    def __init__(self, message: str, pos: ast.Pos):
        super().__init__(message)
        self.message, self.pos = message, pos


class _Continuation:
    """Postlexer: drop newlines while a bracket is open, so an equation continues."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in _OPENERS:
                depth += 1
            elif tok.type in _CLOSERS:
                depth = max(depth - 1, 0)
            elif tok.type == "_NL" and depth:
                continue
            yield tok


def _pos(tok: Token) -> ast.Pos:
    return (tok.line, tok.column)


def _time_offset(arg, index: str = "t") -> int | None:
    """The k of ``t + k`` (``t`` alone is 0), of ``index + k`` for another index; None if
    ``arg`` is not of that form."""
    if isinstance(arg, ast.Ref) and arg.name == index and arg.offset is None:
        return 0
    if (isinstance(arg, ast.Binary) and arg.op in "+-"
            and isinstance(arg.left, ast.Ref) and arg.left.name == index and arg.left.offset is None
            and isinstance(arg.right, ast.Num) and float(arg.right.value).is_integer()):
        k = int(arg.right.value)
        return k if arg.op == "+" else -k
    return None


def _other_index(arg) -> str | None:
    """``u`` if ``arg`` is ``u``, ``u + k`` or ``u - k`` for a name u (not t, not end): a
    step of another index, which the file must declare (``index u``; checked later)."""
    if isinstance(arg, ast.Binary):
        arg = arg.left
    if isinstance(arg, ast.Ref) and arg.offset is None and arg.name not in ("t", "end"):
        return arg.name
    return None


def _looks_like_time(arg) -> bool:
    """Whether ``arg`` is made only of bare names, numbers and + - * /: a (bad) time index."""
    for node in ast.walk(arg):
        if isinstance(node, ast.Ref) and node.offset is None:
            continue
        if isinstance(node, (ast.Num, ast.Neg)) or (isinstance(node, ast.Binary) and node.op != "@"):
            continue
        return False
    return True


def _mentions_t(arg) -> bool:
    return any(isinstance(n, ast.Ref) and n.name == "t" for n in ast.walk(arg))


def _typo(name: str) -> bool:
    """Whether ``name(u)`` is more likely a misspelt function than a sequence read at another
    index: a closer match than the suggestion's (out(u) is a read, though outer is near)."""
    return bool(difflib.get_close_matches(name, sorted(BY_NAME), n=1, cutoff=0.8))


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(BY_NAME), n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


@v_args(inline=True)
class _ToAst(Transformer):
    """Builds AST nodes bottom-up while LALR parses.  Stateless."""

    # -- atoms --------------------------------------------------------------
    def number(self, tok):
        value = float(tok)
        if not math.isfinite(value):
            raise _Located(f"the number {tok} is too large: numbers are 64-bit floats, "
                           f"at most {sys.float_info.max!r}", _pos(tok))
        return ast.Num(value, _pos(tok))

    def name(self, tok):
        name = str(tok)
        if lookup(name):
            raise _Located(f"'{name}' is a function, not a variable: call it as {name}(...)", _pos(tok))
        return ast.Ref(name, None, _pos(tok))

    def group(self, _lpar, inner, _rpar):
        return inner

    def concat(self, lbrack, *items):
        exprs = tuple(i for i in items if not isinstance(i, Token))
        return ast.Concat(exprs, _pos(lbrack))

    def call(self, tok, *rest):
        name, pos = str(tok)[:-1], _pos(tok)
        args = [a for a in rest if not isinstance(a, Token)]
        func = lookup(name)
        if name == "t":
            raise _Located("'t' is the time index, not a function or a variable", pos)
        if func is not None:
            if len(args) != func.arity:
                plural = "s" if func.arity != 1 else ""
                raise _Located(f"{name} takes {func.arity} argument{plural}, not {len(args)}", pos)
            return ast.Call(func.name, tuple(args), pos)
        # Not a function: a time index, name(t+k) or name(0); two indices, name(u, t): a value
        # with one entry for every pair of steps (attention's scores, Bahdanau et al. 2015)
        if len(args) == 2 and not _typo(name):
            outer, inner = args
            index = "t" if _time_offset(outer) is not None else _other_index(outer)
            offset = _time_offset(outer, index) if index else None
            if offset is not None and isinstance(inner, ast.Ref) and inner.offset is None \
                    and inner.name not in ("end", index):
                return ast.Ref(name, offset, pos, index, inner.name)
            _check_depth(outer)                # before anything prints them
            _check_depth(inner)
            raise _Located(f"a value over two indices is written {name}(u, t): a step of one "
                           "index (u, u-1), then the other index's name; not "
                           f"{name}({_quote(outer)}, {_quote(inner)})", pos)
        plain_index = len(args) == 1 and isinstance(args[0], ast.Ref) and args[0].offset is None \
            and args[0].name != "end"
        if (name == "parent" or name in ("left", "right") and not plain_index) and not _typo(name):
            raise _Located(f"a node's child is read one level down, as h(left(n)) or "
                           f"h(right(n)); not {name}({', '.join(_quote(a) for a in args)})"
                           + (" (a node's parent is not read: a tree is computed from its "
                              "leaves up)" if name == "parent" else ""), pos)
        if len(args) == 1:
            arg = args[0]
            if isinstance(arg, ast.Ref) and arg.name in ("left", "right") and arg.offset == 0 \
                    and arg.inner is None and not _typo(name):
                # h(left(n)): a node's child, one level down (the analysis checks n is a tree)
                return ast.Ref(name, -1, pos, arg.index, child=arg.name)
            if isinstance(arg, ast.Ref) and arg.name == "root" and arg.offset is None \
                    and not _typo(name):
                return ast.At(name, "end", pos, root=True)       # a tree's last node
            offset = _time_offset(arg)
            if offset is not None:
                return ast.Ref(name, offset, pos)
            other = _other_index(arg)
            if other is not None and not _typo(name):
                offset = _time_offset(arg, other)
                if offset is not None:          # s(u-1): the analysis checks u is an index
                    return ast.Ref(name, offset, pos, other)
            if isinstance(arg, ast.Num) and arg.value == 0:
                return ast.Initial(name, pos)
            if isinstance(arg, ast.Ref) and arg.name == "end" and arg.offset is None:
                return ast.At(name, "end", pos)
            if isinstance(arg, ast.Num) and float(arg.value).is_integer() and arg.value >= 1:
                if arg.value > 2 ** 31:
                    raise _Located(f"step {arg.value:g} is beyond any sequence", arg.pos)
                return ast.At(name, int(arg.value), pos)
            _check_depth(arg)                  # before anything prints it
            if _looks_like_time(arg) and (_mentions_t(arg) or not _suggest(name)):
                if isinstance(arg, ast.Num):
                    raise _Located(f"time index {arg.value:g}: write {name}(t), {name}(t-1), ...; "
                                   f"a fixed step is a whole number from 1 ({name}(1)) or "
                                   f"{name}(end), the last step", arg.pos)
                if any(isinstance(n, ast.Ref) and n.name == "end" for n in ast.walk(arg)):
                    raise _Located(f"the last step is {name}(end); a step counted from it "
                                   f"({name}({_quote(arg)})) is not supported", arg.pos)
                raise _Located(f"a time index is t plus or minus an integer, as in {name}(t-1); "
                               f"not {name}({_quote(arg)})", arg.pos)
        raise _Located(f"unknown function '{name}'{_suggest(name)}", pos)

    # -- operators ----------------------------------------------------------
    def add(self, a, _op, b):
        return ast.Binary("+", a, b, a.pos)

    def sub(self, a, _op, b):
        return ast.Binary("-", a, b, a.pos)

    def mul(self, a, _op, b):
        return ast.Binary("*", a, b, a.pos)

    def div(self, a, _op, b):
        return ast.Binary("/", a, b, a.pos)

    def neg(self, op, a):
        return ast.Neg(a, _pos(op))

    def juxtapose(self, a, b):
        # A number in front scales: `2 x(t)` is 2 * x(t).
        if isinstance(a, ast.Num):
            return ast.Binary("*", a, b, a.pos)
        return ast.Binary("@", a, b, a.pos)

    def matmul(self, a, _op, b):
        return self.juxtapose(a, b)

    def transpose(self, a, _op):
        return ast.Transpose(a, a.pos)

    # -- statements ---------------------------------------------------------
    def equation(self, lhs, eq, rhs):
        _check_depth(lhs)
        _check_depth(rhs)
        name, kind = _left_side(lhs)
        _check_right_side(rhs, eq)
        index = lhs.index if kind == "seq" else "t"
        inner = lhs.inner if kind == "seq" else None
        return ast.Equation(name, kind, rhs, lhs.pos, index, inner)

    def size_item(self, name, _colon, number):
        if lookup(str(name)):
            raise _Located(f"'{name}' is a function, not a variable", _pos(name))
        if number.type == "DIMS":              # M: 8x16, a matrix-valued variable
            rows, cols = re.split(r"[ \t]*[x\u00D7][ \t]*", str(number))
            size = (_size_number(rows, number), _size_number(cols, number))
        else:
            size = _size_number(str(number), number)
        return ast.SizeDecl(str(name), size, _pos(name))

    def sizes(self, *items):
        return [i for i in items if isinstance(i, ast.SizeDecl)]

    def roles(self, role, *names):
        out = []
        for tok in names:
            if tok.type != "NAME":
                continue
            if lookup(str(tok)):
                raise _Located(f"'{tok}' is a function, not a variable", _pos(tok))
            out.append(ast.RoleDecl(str(tok), str(role), _pos(tok)))
        return out

    def free(self, _kw, name, _arrow, by):
        for tok in (name, by):
            if lookup(str(tok)):
                raise _Located(f"'{tok}' is a function, not a variable", _pos(tok))
        return [ast.FreeDecl(str(name), str(by), _pos(name))]

    def indices(self, kw, *names):
        out = []
        for tok in names:
            if tok.type != "NAME":
                continue
            if lookup(str(tok)) or str(tok) in ("t", "end"):
                what = "a function" if lookup(str(tok)) else "always an index" if str(tok) == "t" \
                    else "the last step"
                raise _Located(f"'{tok}' is {what}: an index is a new name, as in index u", _pos(tok))
            out.append(ast.IndexDecl(str(tok), _pos(tok), tree=kw.type == "TREE"))
        return out

    def start(self, *stmts):
        equations, sizes, roles, frees, indices = [], [], [], [], []
        for s in stmts:
            if isinstance(s, ast.Equation):
                equations.append(s)
            elif s and isinstance(s[0], ast.IndexDecl):
                indices.extend(s)
            elif s and isinstance(s[0], ast.RoleDecl):
                roles.extend(s)
            elif s and isinstance(s[0], ast.FreeDecl):
                frees.extend(s)
            else:
                sizes.extend(s)
        return ast.Program(tuple(equations), tuple(sizes), tuple(roles), tuple(frees), tuple(indices))


def _left_side(lhs) -> tuple[str, str]:
    if isinstance(lhs, ast.Ref):
        if lhs.name == "t":
            raise _Located("'t' is the time index and cannot be defined", lhs.pos)
        if lhs.name == "end":
            raise _Located("'end' is the last step and cannot be defined", lhs.pos)
        if lhs.offset is None:
            return lhs.name, "value"
        if lhs.offset == 0:
            return lhs.name, "seq"
    if isinstance(lhs, ast.Initial):
        return lhs.name, "init"
    if isinstance(lhs, ast.At):
        raise _Located(f"{lhs.name}({lhs.step}) is a fixed step, read from a sequence defined as "
                       f"{lhs.name}(t); only an initial value {lhs.name}(0) is defined at a step",
                       lhs.pos)
    if isinstance(lhs, ast.Call):
        raise _Located(f"'{lhs.func}' is a function and cannot be defined", lhs.pos)
    raise _Located(f"a left side is name(t), name or name(0), not {_quote(lhs)}", lhs.pos)


def _check_depth(expr) -> None:
    if ast.depth(expr) > MAX_DEPTH:
        raise _Located(f"expression nested more than {MAX_DEPTH} deep; "
                       "split it with an intermediate variable", expr.pos)


def _quote(expr) -> str:
    """The canonical text of ``expr`` (checked no deeper than MAX_DEPTH), cut short for a message."""
    text = expr_text(expr)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3].rstrip() + "..."


def _check_right_side(rhs, eq: Token) -> None:
    for node in ast.walk(rhs):
        if isinstance(node, ast.Initial):
            raise _Located(f"{node.name}(0) can only be defined (as a left side), not read; "
                           f"read {node.name}(t-1) in the recurrence instead", node.pos)
        pass


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="basic",
                postlex=_Continuation(), transformer=_ToAst(), maybe_placeholders=False)


_DESCRIBE = {
    "NAME": "a name", "CALL": "a name followed by '('", "NUMBER": "a number",
    "DIMS": "rows x columns",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "AT": "'@'", "EQ": "'='",
    "COLON": "':'", "COMMA": "','", "SEMI": "';'", "LPAR": "'('", "RPAR": "')'",
    "LBRACK": "'['", "RBRACK": "']'", "TRANSPOSE": "a transpose '^T'",
    "_NL": "end of line", "$END": "end of file",
}
_OPERAND_START = {"NAME", "CALL", "NUMBER", "LPAR", "LBRACK", "MINUS"}


def _describe_expected(expected: set[str]) -> str:
    parts = []
    if _OPERAND_START <= expected:
        parts.append("an expression")
        expected = expected - _OPERAND_START
    parts += sorted(_DESCRIBE.get(e, e) for e in expected)
    return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1] if parts else "nothing"


def _unclosed(text: str, line: int, column: int, at_end: bool) -> tuple[str, int, int] | None:
    """The innermost bracket still open before (line, column), if it opened on an earlier
    line or the parser ran into the end of the file."""
    stack: list[tuple[str, int, int]] = []
    for ln, row in enumerate(text.split("\n")[:line], start=1):
        limit = column - 1 if ln == line else len(row)
        for col, ch in enumerate(row[:limit], start=1):
            if ch == "#":
                break
            if ch in "([":
                stack.append((ch, ln, col))
            elif ch in ")]" and stack:
                stack.pop()
    if stack and (stack[-1][1] < line or at_end):
        return stack[-1]
    return None


def _syntax_error(err: UnexpectedInput, source: Source) -> RnnGraphError:
    text = source.text
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        if ch == "^":
            msg = "'^' only writes a transpose, as in W^T"
        elif ch.isalpha():
            msg = (f"unexpected character {ch!r}: names use ASCII or Greek letters, digits "
                   "and underscores")
        else:
            msg = f"unexpected character {ch!r}"
        return source.error(msg, err.line, err.column)
    if isinstance(err, UnexpectedToken):
        tok = err.token
        line, column = (tok.line, tok.column) if tok.type != "$END" else _end(text)
        opened = _unclosed(text, line, column, tok.type == "$END")
        if opened:
            ch, oline, ocol = opened
            closer = ")" if ch == "(" else "]"
            return source.error(f"'{ch}' is never closed: a '{closer}' is missing", oline, ocol)
        expected = set(err.expected)
        what = _DESCRIBE.get(tok.type, repr(str(tok)))
        if tok.type == "_NL" and "EQ" in expected:
            return source.error("expected '=': each line is an equation, LHS = RHS", line, column)
        if tok.type == "EQ":
            return source.error("unexpected '=': an equation has exactly one '='", line, column)
        if tok.type in _CLOSERS:
            return source.error(f"unmatched {what}", line, column)
        return source.error(f"unexpected {what}; expected {_describe_expected(expected)}", line, column)
    if isinstance(err, UnexpectedEOF):
        line, column = _end(text)
        return source.error("unexpected end of file", line, column)
    return source.error(str(err).splitlines()[0], getattr(err, "line", 1), getattr(err, "column", 1))


def _end(text: str) -> tuple[int, int]:
    lines = text.rstrip("\n").split("\n")
    return len(lines), len(lines[-1]) + 1


def parse_program(text: str, filename: str = "<string>") -> ast.Program:
    """Parse equation text into an :class:`ast.Program`.

    Examples
    --------
    >>> prog = parse_program("h(t) = tanh(W h(t-1) + U x(t))")
    >>> prog.equations[0].rhs.func
    'tanh'
    """
    source = Source(text, filename)
    try:
        program = _lark().parse(text + "\n")
    except _Located as err:
        raise source.error(err.message, *err.pos) from None
    except UnexpectedInput as err:
        raise _syntax_error(err, source) from None
    if not program.equations:
        raise source.error("no equations: write one per line, as in h(t) = tanh(W h(t-1) + U x(t))", 1, 1)
    return _steps_as_values(program)


def _steps_as_values(program: ast.Program) -> ast.Program:
    """Bare ``t``, ``end`` and a declared index's name (``u``) read as values: ast.Step."""
    steps = {"t", "end"} | {d.name for d in program.indices}

    def swap(node):
        if isinstance(node, ast.Ref) and node.offset is None and node.name in steps:
            return ast.Step(node.name, node.pos)
        if not ast.children(node):
            return node
        return ast.rebuild(node, [swap(c) for c in ast.children(node)])
    if not any(isinstance(n, ast.Ref) and n.offset is None and n.name in steps
               for eq in program.equations for n in ast.walk(eq.rhs)):
        return program
    return replace(program, equations=tuple(replace(eq, rhs=swap(eq.rhs))
                                            for eq in program.equations))
