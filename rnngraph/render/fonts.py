"""Which font Graphviz really draws with, and a word when it is not the one asked for.

Graphviz hands a ``fontname`` to Pango, which reads ``Latin Modern Roman`` as
the family ``Latin Modern`` in the style ``Roman`` and silently falls back to
DejaVu Sans.  :func:`family` writes a family for Pango with a trailing comma
(``Latin Modern Roman,``: a family list, no style), which Graphviz passes on
as written.  :func:`check` draws one letter in the font and in a font that
cannot exist, and compares the families the two PDFs embed: the same family
means the requested font was not found (unless it is the fallback itself); no
family at all means this machine has no usable font, and every label would be
an empty box.

Examples
--------
>>> family("Latin Modern Roman")
'Latin Modern Roman,'
"""
from __future__ import annotations

import re
import warnings
from functools import lru_cache

import pygraphviz as pgv

from ..errors import RnnGraphError
from .quiet import graphviz_stderr

_MISSING = "rnngraph no such font"


class FontWarning(UserWarning):
    """The font asked for is not installed; the drawing uses another."""


def family(font: str) -> str:
    """``font`` as Graphviz should pass it to Pango: one family, no style words."""
    return font.rstrip(", ") + ","


@lru_cache(maxsize=32)
def _embedded(font: str) -> str | None:
    """The family of the font Graphviz embeds for ``font`` in a PDF, or None when it embeds none."""
    A = pgv.AGraph()
    A.add_node("a", label="<<I>h</I>x>", fontname=family(font))
    with graphviz_stderr():
        pdf = A.draw(format="pdf", prog="dot")
    found = re.search(rb"/FontFamily \(([^)]*)\)", pdf)
    return found.group(1).decode("latin-1") if found else None


def _same(a: str, b: str) -> bool:
    return re.sub(r"\W", "", a).lower() == re.sub(r"\W", "", b).lower()


@lru_cache(maxsize=32)
def check(font: str) -> str:
    """The family drawn for ``font``; a :class:`FontWarning` when that is another font,
    an error when no font can be drawn at all."""
    got, fallback = _embedded(font), _embedded(_MISSING)
    if fallback is None and got is None:
        raise RnnGraphError("no usable font: Graphviz found no font on this machine, so every "
                            "label would be an empty box; install one (e.g. the fonts-dejavu "
                            "package) or point FONTCONFIG_FILE at a fontconfig setup that has some")
    if got is not None and (_same(got, font) or got != fallback):
        return font
    warnings.warn(f"font '{font}' is not installed here (fontconfig cannot find it): "
                  f"the drawing uses '{got}' instead", FontWarning, stacklevel=3)
    return got or font
