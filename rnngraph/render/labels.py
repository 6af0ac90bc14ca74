"""Graphviz HTML-like labels that typeset names as the textbook does.

``h1`` at step t is an italic h with subscript 1 and superscript (t); ``W_hh``
is W with subscript hh; ``c_tilde`` is c with a tilde; Greek names are Greek
letters; function names are upright.  The splitting of a name is
:func:`rnngraph.lang.names.split_name`, shared with the LaTeX printer.

Examples
--------
>>> var_label("h", "(t)", 14)          # h(t); with a subscript too, the two stack
'<<I>h</I><SUP><FONT POINT-SIZE="9.8">(<I>t</I>)</FONT></SUP>>'
>>> print(var_label("h1", "(t)", 14))  # doctest: +ELLIPSIS
<<TABLE ...><TR><TD ROWSPAN="2" VALIGN="MIDDLE"><I>h</I></TD><TD ... VALIGN="BOTTOM" ...><FONT POINT-SIZE="9.8">(<I>t</I>)</FONT></TD></TR><TR><TD ... VALIGN="TOP" ...><FONT POINT-SIZE="9.8">1</FONT></TD></TR></TABLE>>
>>> name_html("c_tilde")
'<I>c&#771;</I>'
>>> time_text(-1), time_text(0), time_text(2, absolute=True)
('t−1', 't', '2')
"""
from __future__ import annotations

import re
from html import escape

from ..lang.names import ACCENTS, split_name

#: op name -> how an op node of the op view is labelled.
OP_SYMBOLS = {"add": "+", "sub": "−", "mul": "⊙", "div": "÷", "neg": "−", "matmul": "×",
              "transpose": "⊤", "concat": "[ ; ]", "copy": "=", "sigmoid": "σ",
              "cross_entropy": "CE", "binary_cross_entropy": "BCE", "sum_t": "Σt"}


def _word(text: str, italic: bool = True) -> str:
    """``text`` escaped, with letters in italic and digits and signs upright."""
    if not italic:
        return escape(text)
    return re.sub(r"([^\W\d_]+)", r"<I>\1</I>", escape(text))


def name_html(name: str) -> str:
    """The name alone, as HTML-like label text (no sub/superscript sizes).

    Examples
    --------
    >>> name_html("alpha"), name_html("W_hh")
    ('<I>α</I>', '<I>W</I><SUB>hh</SUB>')
    """
    return _name(name, None)


def _name(name: str, small: float | None, sup: str | None = None) -> str:
    p = split_name(name)
    base = escape(p.base)
    if p.accent:
        base = base + f"&#{ord(ACCENTS[p.accent])};"
    # a one-letter name is italic, a word upright ("target"), as latex_name sets them
    out = f"<I>{base}</I>" if len(p.base) == 1 or not p.base.isascii() else base
    sub = None
    if p.subscript:
        # One letter is italic (a math variable); a word or digits are upright,
        # as rnngraph.lang.names.latex_name prints them.
        sub = p.subscript
        sub = _word(sub) if len(sub) == 1 else escape(sub)
    if sub and sup:
        return _stacked(out, _small(sub, small), _small(sup, small))
    if sub:
        out += f"<SUB>{_small(sub, small)}</SUB>"
    if sup:
        out += f"<SUP>{_small(sup, small)}</SUP>"
    return out


def _stacked(base: str, sub: str, sup: str) -> str:
    """``base`` with ``sup`` right above ``sub``, as LaTeX sets ``h_1^{(t)}``.

    Graphviz's HTML labels write a superscript after the subscript; a borderless
    table of one base cell and two stacked cells puts them one above the other
    in every format (svg, pdf, png) alike.
    """
    cell = '<TD ALIGN="LEFT" VALIGN="{}" CELLPADDING="0">{}</TD>'
    return ('<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="0">'
            f'<TR><TD ROWSPAN="2" VALIGN="MIDDLE">{base}</TD>{cell.format("BOTTOM", sup)}</TR>'
            f'<TR>{cell.format("TOP", sub)}</TR></TABLE>')


def _small(html: str, size: float | None) -> str:
    return html if size is None else f'<FONT POINT-SIZE="{size:g}">{html}</FONT>'


def time_text(offset: int, absolute: bool = False) -> str:
    """The step shown in a superscript: ``t−1``, ``t``, ``t+2``, or a step number."""
    if absolute:
        return str(offset).replace("-", "−")
    return "t" if offset == 0 else f"t{'+' if offset > 0 else '−'}{abs(offset)}"


def var_label(name: str, time: str | None, size: float, transpose: bool = False) -> str:
    """The label of a variable, ``time`` being the superscript's text such as ``(t)``.

    Parameters
    ----------
    name : str
        The variable or weight name.
    time : str or None
        The superscript, e.g. ``"(t)"``, ``"(3)"``; None for none.
    size : float
        The main font size; sub- and superscripts are 70 % of it.
    transpose : bool
        Add a ⊤ superscript (a weight that enters transposed).
    """
    small = round(size * 0.7, 1)
    sup = []
    if transpose:
        sup.append("⊤")
    if time is not None:
        sup.append(_word(time))
    return f"<{_name(name, small, ''.join(sup) or None)}>"


def weight_label(weight: str | None, transpose: bool, size: float, extra: str | None = None) -> str:
    """An edge label: the matrix a value enters through (``U``, ``W₁ᵀ``), and optional extra text.

    A weight that is an expression rather than a name (``A B``) is written as text.

    Examples
    --------
    >>> weight_label("W_hh", False, 10)
    '<<I>W</I><SUB><FONT POINT-SIZE="7">hh</FONT></SUB>>'
    >>> weight_label(None, False, 10, "t−1")
    '<<FONT POINT-SIZE="7">t−1</FONT>>'
    >>> weight_label(None, False, 10)
    ''
    """
    small = round(size * 0.7, 1)
    parts = []
    block = split_block(weight)
    if block:                                  # a block of a matrix: W_f[h], the part in brackets
        parts.append(var_label(block[0], None, size, transpose)[1:-1]
                     + _small("[" + (_name(block[1], None) if block[1] != "·" else "·") + "]", small))
    elif weight is not None:
        unit = re.fullmatch(r"diag\(([^\W\d]\w*)\)|([^\W\d]\w*)⊙", weight)
        if unit and unit.group(1):               # diag(u): upright diag, the name as a weight's
            parts.append("diag(" + var_label(unit.group(1), None, size)[1:-1] + ")")
        elif unit:                               # u ⊙: a weight per unit, elementwise
            parts.append(var_label(unit.group(2), None, size)[1:-1] + " ⊙")
        elif re.fullmatch(r"[^\W\d]\w*", weight):
            parts.append(var_label(weight, None, size, transpose)[1:-1])
        else:
            parts.append(_word(weight))
    if extra:
        parts.append(_small(_word(extra, italic=False), small))
    return f"<{' '.join(parts)}>" if parts else ""


def sum_label(index: str, size: float, mean: bool = False) -> str:
    """The label of an edge into a sum over an index: Σ with the index below, ``Σ_t``; into a
    mean, ``1/τ Σ_t``.

    Examples
    --------
    >>> sum_label("t", 10)
    '<Σ<SUB><FONT POINT-SIZE="7"><I>t</I></FONT></SUB>>'
    """
    return f"<{'1/τ ' if mean else ''}Σ<SUB>{_small(_word(index), round(size * 0.7, 1))}</SUB>>"


def split_block(weight: str | None) -> tuple[str, str] | None:
    """``W_f[h]`` (the block of W_f that h meets in ``W_f [h; x]``) -> ``("W_f", "h")``; else None.

    Examples
    --------
    >>> split_block("W_f[h]"), split_block("W_f")
    (('W_f', 'h'), None)
    """
    block = re.fullmatch(r"([^\W\d]\w*)\[(.*)\]", weight or "")
    return (block.group(1), block.group(2)) if block else None


def op_label(op: str) -> str:
    """The label of an op node: a symbol for arithmetic, the upright name of a function.

    Examples
    --------
    >>> op_label("mul"), op_label("tanh"), op_label("sigmoid")
    ('<⊙>', '<tanh>', '<σ>')
    """
    return f"<{escape(OP_SYMBOLS.get(op, op))}>"


def text_label(text: str) -> str:
    """Plain text as an HTML-like label."""
    return f"<{escape(text)}>"
