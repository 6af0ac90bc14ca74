"""Errors about the user's text, located by file, line and column.

Every error that rnngraph raises about its input is an :class:`RnnGraphError`,
which is also a :class:`ValueError`.  Its ``str()`` is what the command line
prints: ``FILE:LINE:COL: error: MESSAGE``, the source line, and a caret under
the column (a long line is cut around it).  One error may carry several
diagnostics (every unknown size, say).
"""
from __future__ import annotations

from dataclasses import dataclass

#: Characters of a source line an error shows; a longer line is shown around the column.
SHOWN = 120


@dataclass(frozen=True)
class Location:
    """A place in a source file; ``line`` and ``column`` count from 1."""

    filename: str
    line: int
    column: int
    source_line: str = ""

    def render(self, message: str) -> str:
        """The message, the source line and a caret; a line longer than :data:`SHOWN`
        characters is shown around the column, cut short with ``...``."""
        head = f"{self.filename}:{self.line}:{self.column}: error: {message}"
        text = self.source_line.expandtabs(1)
        at = max(self.column, 1) - 1
        if len(text) > SHOWN:
            start = min(max(at - SHOWN // 2, 0), len(text) - SHOWN)
            left, right = ("..." if start else ""), ("..." if start + SHOWN < len(text) else "")
            text, at = left + text[start:start + SHOWN] + right, at - start + len(left)
        return f"{head}\n    {text}\n    {' ' * at}^"


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
            return f"error: {self.message}"
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
