"""How a variable's name is typeset: base letter, accent, subscript.

Shared by the LaTeX printer and the diagrams so both read like the textbook:
``h1`` is h with subscript 1, ``W_hh`` is W with subscript hh, ``c_tilde`` is
c with a tilde, ``alpha`` and ``α`` are the Greek letter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ACCENTS = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304", "dot": "\u0307", "vec": "\u20d7"}

GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "tau": "τ", "upsilon": "υ", "phi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ",
    "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_LATEX_GREEK = {v: k for k, v in GREEK.items()}
_LATEX_GREEK.update({"σ": "sigma", "ς": "varsigma", "ϑ": "vartheta", "ϕ": "phi", "ϵ": "epsilon",
                     "ο": "o", "Ο": "O", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I",
                     "Κ": "K", "Μ": "M", "Ν": "N", "Ρ": "P", "Τ": "T", "Υ": "Upsilon", "Χ": "X"})


@dataclass(frozen=True)
class NameParts:
    """A name split for typesetting.

    Examples
    --------
    >>> split_name("h1")
    NameParts(base='h', subscript='1', accent=None)
    >>> split_name("c_tilde")
    NameParts(base='c', subscript=None, accent='tilde')
    >>> split_name("W_hh").subscript
    'hh'
    >>> split_name("alpha").base
    'α'
    """

    base: str
    subscript: str | None = None
    accent: str | None = None


def split_name(name: str) -> NameParts:
    parts = name.split("_")
    if not parts[0]:                       # a leading underscore: typeset as written
        return NameParts(name)
    accent = None
    if len(parts) > 1 and parts[-1] in ACCENTS:
        accent = parts.pop()
    base, sub = parts[0], "_".join(parts[1:]) or None
    if sub is None:
        m = re.fullmatch(r"(.*?[^\d])(\d+)", base)
        if m:
            base, sub = m.group(1), m.group(2)
    return NameParts(GREEK.get(base, base), sub, accent)


def _latex_word(text: str) -> str:
    out = []
    for ch in text:
        out.append("\\" + _LATEX_GREEK[ch] + " " if ch in _LATEX_GREEK else ch)
    word = "".join(out).strip()
    if len(text) > 1 and not all(ch in _LATEX_GREEK for ch in text):
        # a word is a name, not a product of letters: upright, as ISO 80000-2 and the
        # textbooks set "softmax" or "target" (the diagrams do the same)
        return r"\mathrm{" + word.replace("_", r"\_") + "}"
    return word


def latex_name(name: str, superscript: str | None = None) -> str:
    """``name`` in LaTeX, with an optional superscript such as ``(t-1)``.

    Examples
    --------
    >>> latex_name("h1", "(t)")
    'h_{1}^{(t)}'
    >>> latex_name("c_tilde", "(t)")
    '\\\\tilde{c}^{(t)}'
    >>> latex_name("target")
    '\\\\mathrm{target}'
    """
    p = split_name(name)
    out = _latex_word(p.base)
    if p.accent:
        out = "\\" + p.accent + "{" + out + "}"
    if p.subscript:
        out += "_{" + _latex_word(p.subscript) + "}"
    if superscript:
        out += "^{" + superscript + "}"
    return out
