"""How a drawing looks: one ``role -> style`` table, three themes, the options.

Every node of every view is styled by looking its ``kind`` up in
:data:`ROLES`; a theme (:data:`THEMES`) gives the colours that the roles
refer to by name.  :class:`Style` carries every option of ``rnngraph draw``.

Examples
--------
>>> s = Style(theme="mono")
>>> s.node("state")["fillcolor"], s.node("input")["style"]
('#e0e0e0', 'filled')
>>> Style(theme="neon")
Traceback (most recent call last):
...
ValueError: unknown theme 'neon'; choose one of default, mono, dark
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace

from .fonts import family
from .metrics import PAD

#: role (the ``kind`` of a graph node) -> how its node looks.  ``fill`` and
#: ``line`` name colours of the theme; ``penwidth`` is in points.
ROLES: dict[str, dict] = {
    "input":     dict(fill="input", line="line", penwidth=1.2),
    # a target is data, as an input is: solid (dashed marks an initial value)
    "target":    dict(fill="target", line="line", penwidth=1.2),
    "sequence":  dict(fill="state", line="line", penwidth=1.2),
    "state":     dict(fill="state", line="line", penwidth=1.2),
    "value":     dict(fill="state", line="line", penwidth=1.2),
    "output":    dict(fill="output", line="line", penwidth=1.2),
    "loss":      dict(fill="loss", line="line", penwidth=1.2),
    "initial":   dict(fill="initial", line="muted", penwidth=1.0, dashed=True),
    "stub":      dict(fill="none", line="none", penwidth=0),
    # The cell view: each step's cell of a gated unit one rounded box (colah's chain).
    "cell":      dict(fill="state", line="line", penwidth=1.2, shape="box", rounded=True),
    # The op view: a layer (matmul, a nonlinearity after one) is a box, a
    # pointwise operation a circle, as in colah's LSTM figures.
    "layer":     dict(fill="layer", line="line", penwidth=1.0, shape="box"),
    "pointwise": dict(fill="pointwise", line="line", penwidth=1.0, shape="circle"),
    "parameter": dict(fill="none", line="none", penwidth=0, text="param"),
}

#: theme -> colour name -> colour.
THEMES: dict[str, dict[str, str]] = {
    "default": dict(background="white", text="black", line="#333333", muted="#888888",
                    edge="#333333", future="#1f5fa8", param="#7a2c00", marker="black",
                    input="#ffe9b3", target="#fff6dd", state="#d9ecff", output="#d8f2d0",
                    loss="#f8d0d0", initial="white", layer="#ffe9b3", pointwise="#f8d0e0",
                    cluster="#f4f4f4"),
    "mono": dict(background="white", text="black", line="black", muted="#555555",
                 edge="black", future="black", param="black", marker="black",
                 input="white", target="white", state="#e0e0e0", output="#bdbdbd",
                 loss="#9e9e9e", initial="white", layer="#e0e0e0", pointwise="white",
                 cluster="#f2f2f2"),
    "dark": dict(background="#1e1e1e", text="#f0f0f0", line="#d0d0d0", muted="#9a9a9a",
                 edge="#d0d0d0", future="#7fb8ff", param="#ffc08a", marker="#f0f0f0",
                 input="#5a4a1e", target="#3d351e", state="#1f3f66", output="#2c5a2c",
                 loss="#6a2a2a", initial="#1e1e1e", layer="#5a4a1e", pointwise="#5a2a40",
                 cluster="#2a2a2a"),
}

#: The smallest and largest font size, in points.
FONTSIZES = (4.0, 96.0)

#: What a font family name may hold: it reaches the SVG as an attribute value, which Graphviz
#: does not escape (``Serif" onload="...`` would add an attribute to every text).
_FONT = re.compile(r"(?=.*\w)[\w .,:=+-]{1,100}")

DELAY_MARKERS = ("square", "label")
TIME_LABELS = ("absolute", "relative")
DETAILS = ("auto", "cells", "vars", "ops")
FITS = ("beamer", "slide")


@dataclass(frozen=True)
class Style:
    """Every option of a drawing; the defaults make a slide-ready picture.

    Parameters
    ----------
    theme : {"default", "mono", "dark"}
        Colours: ``mono`` for print, ``dark`` for dark slides.
    transparent : bool
        No background fill.
    font : str
        Font family of every text.
    fontsize : float
        Size of names in points; sub- and superscripts are 70 % of it.
    delay_marker : {"square", "label"}
        How a folded recurrent edge shows its delay: the Deep Learning book's
        black square (hollow for reads from the future), or ``t-1`` written.
    time_labels : {"absolute", "relative"}
        Unrolled steps as 1..N, or as t-1, t, t+1 around the middle step.
    stubs : bool
        Draw ``...`` at both ends of the unrolled recurrences instead of the
        initial values.
    detail : {"auto", "cells", "vars", "ops"}
        One box per step's cell of a gated unit (colah's chain), one node per
        variable, or one per primitive operation; ``auto``: cells for a gated
        unit unrolled, variables otherwise.
    fit : {None, "beamer", "slide"}
        Lay the drawing out for that target and size it to it (names at the
        body size, smaller only if it cannot fit): :data:`rnngraph.render.metrics.TARGETS`.
        None keeps the natural size (names at ``fontsize``).
    """

    theme: str = "default"
    transparent: bool = False
    font: str = "DejaVu Serif"
    fontsize: float = 16.0
    delay_marker: str = "square"
    time_labels: str = "absolute"
    stubs: bool = False
    detail: str = "auto"
    fit: str | None = None

    def __post_init__(self):
        for name, value, allowed in (("theme", self.theme, tuple(THEMES)),
                                     ("delay_marker", self.delay_marker, DELAY_MARKERS),
                                     ("time_labels", self.time_labels, TIME_LABELS),
                                     ("detail", self.detail, DETAILS),
                                     ("fit", self.fit or FITS[0], FITS)):
            if value not in allowed:
                what = name.replace("_", " ")
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        check_fontsize(self.fontsize)
        check_font(self.font)

    @classmethod
    def of(cls, **options) -> Style:
        """A Style from keyword options, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(options) - known)
        if bad:
            raise TypeError(f"unknown style option {bad[0]!r}; known: {', '.join(sorted(known))}")
        return replace(cls(), **{k: v for k, v in options.items() if v is not None})

    @property
    def colors(self) -> dict[str, str]:
        return THEMES[self.theme]

    @property
    def small(self) -> float:
        """The size of sub- and superscripts and of time labels."""
        return round(self.fontsize * 0.7, 1)

    def color(self, name: str) -> str:
        return "none" if name == "none" else self.colors[name]

    def node(self, kind: str) -> dict[str, str]:
        """Graphviz attributes of a node of role ``kind``."""
        row = ROLES.get(kind, ROLES["sequence"])
        fill = self.color(row["fill"])
        styles = ["filled"] if fill != "none" else []
        if row.get("dashed"):
            styles.append("dashed")
        if row.get("rounded"):
            styles.append("rounded")
        attrs = dict(shape=row.get("shape", "ellipse"), style=",".join(styles) or "solid",
                     fillcolor=fill, color=self.color(row["line"]),
                     penwidth=str(row["penwidth"]), fontcolor=self.color(row.get("text", "text")))
        return attrs

    def graph_attrs(self) -> dict[str, str]:
        return dict(bgcolor="transparent" if self.transparent else self.colors["background"],
                    fontname=family(self.font), fontsize=str(self.fontsize),
                    pad=f"{PAD / 72:.4f}", margin="0")       # margin: PDF's own 36 pt, gone

    def edge_attrs(self) -> dict[str, str]:
        return dict(color=self.colors["edge"], fontcolor=self.colors["param"], fontname=family(self.font),
                    fontsize=str(self.fontsize), penwidth="1.2", arrowsize="0.8")


def check_fontsize(size) -> float:
    """``size`` as a float if it is a number of points in :data:`FONTSIZES`; else ValueError.

    Examples
    --------
    >>> check_fontsize(12)
    12.0
    >>> check_fontsize(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: fontsize must be a number of points from 4 to 96, not nan
    """
    try:
        value = float(size)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(size, bool) or not FONTSIZES[0] <= value <= FONTSIZES[1]:
        raise ValueError(f"fontsize must be a number of points from {FONTSIZES[0]:g} to "
                         f"{FONTSIZES[1]:g}, not {size!r}")
    return value


def check_font(font) -> str:
    """``font`` if it is a font family name: letters, digits, spaces and ``_ - . , : = +``.

    Examples
    --------
    >>> check_font("DejaVu Sans")
    'DejaVu Sans'
    >>> check_font('Serif" onload="alert(1)')
    Traceback (most recent call last):
    ...
    ValueError: font must be a family name of letters, digits, spaces and _ - . , : = + (at most 100), not 'Serif" onload="alert(1)'
    """
    if not isinstance(font, str) or not _FONT.fullmatch(font):
        raise ValueError("font must be a family name of letters, digits, spaces and _ - . , : = + "
                         f"(at most 100), not {font!r}")
    return font
