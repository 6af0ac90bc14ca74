"""Errors about the user's text, located by file, line and column.

Every error that rnngraph raises about its input is an :class:`RnnGraphError`,
which is also a :class:`ValueError`.  Its ``str()`` is what the command line
prints: ``FILE:LINE:COL: error: MESSAGE``, the source line, and a caret under
the column (a long line is cut around it).  One error may carry several
diagnostics (every unknown size, say).

What is printed is :func:`printable`: control characters of the input (ESC,
NUL) and undecodable bytes of a file name are written as escapes, so an error
message can neither drive the terminal nor fail to encode, and the caret still
stands under the column it points at.
"""
from __future__ import annotations

import stat
import unicodedata
from dataclasses import dataclass



def _escape(ch: str) -> str | None:
    """How ``ch`` is shown when printed as is would be unsafe; None when it is safe."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:           # a byte that did not decode (os.fsdecode)
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None


def printable(text: str, keep: str = "\n") -> str:
    r"""``text`` safe to print on any terminal, in any encoding of it.

    Control and format characters (ESC, NUL, bidirectional overrides), line
    separators and lone surrogates (the undecodable bytes of a file name) are
    written as backslash escapes; the characters in ``keep`` are left as they are.

    Examples
    --------
    >>> printable("h(t) \x1b[31m")
    'h(t) \\x1b[31m'
    >>> printable("caf\udce9.rnn")
    'caf\\xe9.rnn'
    """
    return "".join(ch if ch in keep else (_escape(ch) or ch) for ch in text)


def _width(ch: str) -> int:
    """The cells ``ch`` takes on a terminal once printed by :func:`printable`."""
    shown = _escape(ch)
    if shown is not None:
        return len(shown)
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file"))


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (``os.stat(...).st_mode``) is, for a message: "a FIFO", ...

    Examples
    --------
    >>> import os
    >>> file_kind(os.stat("/").st_mode)
    'a folder'
    """
    return next((kind for test, kind in _KINDS if test(mode)), "a special file")


#: A source line longer than twice this is shown as the part around the column.
CONTEXT = 60


@dataclass(frozen=True)
class Location:
    """A place in a source file; ``line`` and ``column`` count from 1."""

    filename: str
    line: int
    column: int
    source_line: str = ""

    def render(self, message: str) -> str:
        """The message, the source line and a caret; a long line is shown around the
        column, cut short with ``...``."""
        head = f"{printable(self.filename, keep='')}:{self.line}:{self.column}: error: {printable(message)}"
        line = self.source_line.replace("\t", " ")
        at = max(self.column, 1) - 1
        start = max(0, min(at - CONTEXT, len(line) - 2 * CONTEXT))
        if start > 0:                      # a long line: the part around the column
            line, at = "..." + line[start + 3:], at - start
        if len(line) > 2 * CONTEXT:
            line = line[:2 * CONTEXT - 3] + "..."
        caret = " " * sum(_width(ch) for ch in line[:at]) + "^"
        return f"{head}\n    {printable(line, keep='')}\n    {caret}"


class RnnGraphError(ValueError):
    """An error in the user's input, with one or more located diagnostics.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    location : Location, optional
        Where it is wrong.
    more : list of RnnGraphError, optional
        Further diagnostics reported together with this one.

    Examples
    --------
    >>> err = RnnGraphError("unknown function 'tanhh'", Location("eqs.txt", 1, 8, "h(t) = tanhh(x(t))"))
    >>> print(err)
    eqs.txt:1:8: error: unknown function 'tanhh'
        h(t) = tanhh(x(t))
               ^
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, message: str, location: Location | None = None,
                 more: list[RnnGraphError] | None = None):
        self.message = message
        self.location = location
        self.diagnostics = [self, *(more or [])]
        super().__init__(message)

    @property
    def filename(self) -> str | None:
        return self.location.filename if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    @property
    def column(self) -> int | None:
        return self.location.column if self.location else None

    def render_one(self) -> str:
        if self.location is None:
            return f"error: {printable(self.message)}"
        return self.location.render(self.message)

    def __str__(self) -> str:
        return "\n".join(d.render_one() for d in self.diagnostics)


class Source:
    """The text of one input file, to turn (line, column) into a :class:`Location`."""

    def __init__(self, text: str, filename: str = "<string>"):
        self.text = text
        self.filename = filename
        self.lines = text.split("\n")

    def location(self, line: int, column: int) -> Location:
        source_line = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return Location(self.filename, line, column, source_line)

    def error(self, message: str, line: int, column: int) -> RnnGraphError:
        return RnnGraphError(message, self.location(line, column))
