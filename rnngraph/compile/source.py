"""Writing Python source: identifiers for model names, and lines that stay under 99 columns.

Used by the printers of rnngraph/compile/ and by Compiled's messages.
"""
from __future__ import annotations

import keyword
import unicodedata

from ..lang.names import GREEK

_GREEK_WORDS = {letter: word for word, letter in GREEK.items()}


# ============================================================================
# Names
# ============================================================================

def identifier(name: str) -> str:
    """A Python identifier for a model name: Greek letters spelled out, keywords and the
    names Python keeps for itself suffixed; an IR temporary's ``%3`` is ``_3``.

    Examples
    --------
    >>> identifier("α"), identifier("lambda"), identifier("W_hh"), identifier("ϕ1")
    ('alpha', 'lambda_', 'W_hh', 'phi1')
    >>> identifier("__debug__"), identifier("%3")
    ('__debug___', '_3')
    """
    out = []
    for ch in name:
        if ch == "%":
            out.append("_")
        elif ch.isascii():
            out.append(ch)
        elif ch in _GREEK_WORDS:
            out.append(_GREEK_WORDS[ch])
        else:
            words = unicodedata.name(ch, "").split()
            word = words[-1].lower() if "GREEK" in words and words[-1] != "SYMBOL" else \
                (words[1].lower() if len(words) > 2 and words[-1] == "SYMBOL" else f"u{ord(ch):04x}")
            out.append(word)
    text = "".join(out)
    reserved = keyword.iskeyword(text) or text in ("None", "True", "False", "__debug__")
    return text + "_" if reserved else text


def docstring_text(text: str) -> str:
    r"""``text`` safe to write inside a triple-quoted docstring: escapes for quotes,
    backslashes, line breaks and anything not printable ASCII, so that no file name can
    end the docstring and run as code.

    Examples
    --------
    >>> print(docstring_text('x' + '"' * 3 + '+f()+' + '"' * 3 + '.rnn'))
    x\"\"\"+f()+\"\"\".rnn
    >>> print(docstring_text("a\\b\nc"))
    a\\b\nc
    """
    return ascii(text)[1:-1].replace('"', '\\"')


class Namer:
    """Unique Python names: the first wish that is free, else the last with a number."""

    def __init__(self, reserved=()):
        self.taken = set(reserved)

    def __call__(self, *wishes: str) -> str:
        wishes = tuple(w + "_" if keyword.iskeyword(w) or w == "__debug__" else w for w in wishes)
        for wish in wishes:
            if wish not in self.taken:
                self.taken.add(wish)
                return wish
        base = wishes[-1] if wishes[-1].endswith("_") else wishes[-1] + "_"
        n = 2
        while f"{base}{n}" in self.taken:
            n += 1
        self.taken.add(f"{base}{n}")
        return f"{base}{n}"


# ============================================================================
# Printing
# ============================================================================

def slice_name(k: int) -> str:
    """The name of the slice of every step's t + k: now, tm1 (t minus 1), tp1, ..."""
    return "now" if k == 0 else f"t{'p' if k > 0 else 'm'}{abs(k)}"


def unpack_lines(targets: list[str], source: str, indent: str = "    ",
                 sequence: bool | None = None) -> list[str]:
    """``a, b, c = source``, wrapped inside brackets to lines of at most 99 characters.
    A single target of a sequence gets its comma (``a, = ...``); ``sequence`` says
    whether source is one, by default whether it is a generator expression."""
    if not targets:
        return []
    if sequence is None:
        sequence = " for " in source
    comma = "," if len(targets) == 1 and sequence else ""
    line = f"{indent}{', '.join(targets)}{comma} = {source}"
    if len(line) <= 99:
        return [line]
    width = max(99 - len(source) - 3, 60)
    lines, line = [], indent + "("
    for i, name in enumerate(targets):
        piece = name + (", " if i < len(targets) - 1 else ")")
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = indent + " "
        line += piece
    return lines + [f"{line} = {source}"]


def wrap(line: str, width: int = 99) -> list[str]:
    """A long ``NAME = (a, b, ...)`` line broken after commas, aligned inside the bracket."""
    if len(line) <= width:
        return [line]
    indent = " " * (line.index("(") + 1)
    lines, cur = [], ""
    for piece in line.split(", "):
        if cur and len(cur) + len(piece) + 2 > width:
            lines.append(cur + ",")
            cur = indent + piece
        else:
            cur = f"{cur}, {piece}" if cur else piece
    return lines + [cur]


def tuple_text(names, quote='"') -> str:
    """A tuple's source: of quoted names, or (quote "") of numbers, ``(3, 4)``, ``(3,)``."""
    names = list(names)
    return "(" + ", ".join(f"{quote}{n}{quote}" for n in names) + ("," if len(names) == 1 else "") + ")"


def call_lines(head: str, items: list[str], tail: str) -> list[str]:
    """``head`` + items joined by commas + ``tail``, broken after commas at 99 columns."""
    lines, line = [], head
    indent = " " * len(head)
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else tail)
        if len(line) + len(piece.rstrip()) > 99 and line.strip() != head.strip():
            lines.append(line.rstrip())
            line = indent
        line += piece
    return lines + [line]


def dict_lines(target: str, items: list[str], indent: str = "    ") -> list[str]:
    """``target = {a, b, ...}`` broken after commas at 99 columns, aligned inside the brace."""
    head = f"{indent}{target} = {{"
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "}")
        if len(line) + len(piece.rstrip()) > 99 and line != head:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece
    return lines + [line if items else head + "}"]


def statement_lines(line: str, width: int = 99) -> list[str]:
    """A statement broken into lines of at most ``width`` inside brackets (the right side
    bracketed if it has to be), after a comma or before an operator."""
    if len(line) <= width:
        return [line]
    indent = len(line) - len(line.lstrip())
    head, op, rhs = line.partition(" = ") if " = " in line else line.partition(" += ")
    if not op:
        return [line]
    line = f"{head}{op}({rhs})"
    lines, hang = [], " " * (indent + 4)
    while len(line) > width:
        depth, best = 0, None
        for i, ch in enumerate(line[:width]):
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth > 0 and i > indent + 8 and (line.startswith(", ", i) or
                                                  line[i:i + 3] in (" + ", " - ", " * ", " @ ", " / ")):
                best = i + 1 if line[i] == "," else i
        if best is None:
            break
        lines.append(line[:best].rstrip())
        line = hang + line[best:].lstrip()
    return lines + [line]


def step_index(k: int, var: str = "t") -> str:
    return var if k == 0 else f"{var} {'+' if k > 0 else '-'} {abs(k)}"
