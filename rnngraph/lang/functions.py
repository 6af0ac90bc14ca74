"""The function table: every function the language knows, in one place.

To add a function, add a row here (its surface names, arity, how its result's
size relates to its arguments', how it prints in LaTeX) and a row with its
forward and vector-Jacobian product in the compiler's op table.
"""
from __future__ import annotations

import re

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    """A function of the equation language.

    ``size`` says how the result's size follows from the arguments': ``"same"``
    (elementwise, or size-preserving like softmax: all arguments and the result
    share one size), ``"scalar"`` (the arguments share one size, the result
    has size 1: a loss), ``"diag"`` (the square matrix with the vector on its diagonal),
    ``"outer"`` (u v^T, rows of u's size and columns of v's), ``"rows"`` (one number a row of
    a matrix, one for a vector: cosine, norm).  ``over`` names the index a reduction sums over
    (``sum_t``: every step of t, into a value with no time index).
    """

    name: str
    arity: int
    latex: str
    aliases: tuple[str, ...] = ()
    size: str = "same"
    loss: bool = False
    over: str | None = None
    across: str | None = None       # softmax_t: normalised across the steps of t (attention)


class _Table(dict):
    """The function table; a sum over another index (``sum_u``, after ``index u``), a mean
    (``mean_t``, ``mean_u``) and a softmax across the steps of an index (``softmax_t``) are
    made on first use (whether u is an index is the analysis's
    to check)."""

    def __missing__(self, name: str) -> Function:
        found = _REDUCTION.fullmatch(name)
        if not found:
            raise KeyError(name)
        kind, i = found.group(1), found.group(2)
        if kind == "softmax":
            # attention's weights a(u, t) = softmax_t(e(u, t)): over the steps t, at each u
            f = self[name] = Function(name, 1, rf"\operatorname{{softmax}}_{{{i}}}", across=i)
            return f
        # mean_t: the sum over the steps divided by their number, the book's tau
        latex = rf"\sum_{{{i}}}" if kind == "sum" else rf"\frac{{1}}{{\tau}} \sum_{{{i}}}"
        f = self[name] = Function(name, 1, latex, over=i)
        return f


_REDUCTION = re.compile(r"(sum|mean|softmax)_([A-Za-z\u0391-\u03A9\u03B1-\u03C9][A-Za-z0-9\u0391-\u03A9\u03B1-\u03C9]*)")

FUNCTIONS: dict[str, Function] = _Table({f.name: f for f in [
    Function("tanh", 1, r"\tanh"),
    Function("sigmoid", 1, r"\sigma", aliases=("σ", "sigma")),
    Function("relu", 1, r"\operatorname{ReLU}"),
    Function("softmax", 1, r"\operatorname{softmax}"),
    Function("exp", 1, r"\exp"),
    Function("log", 1, r"\log"),
    Function("softplus", 1, r"\operatorname{softplus}"),
    Function("sqrt", 1, r"\sqrt{}"),            # {}: the argument goes inside the braces
    Function("cross_entropy", 2, r"\operatorname{CE}", size="scalar", loss=True),
    # -sum_k [d_k log p_k + (1 - d_k) log(1 - p_k)]: a yes/no target per unit (the Deep Learning
    # book's Bernoulli output, 6.2.2.2; its halting unit, 10.2.4)
    Function("binary_cross_entropy", 2, r"\operatorname{BCE}", size="scalar", loss=True),
    # the sum over every step, as the book's total loss L = sum_t L(t) (10.2.2): the whole right
    # side of an equation with no time index, which no other equation reads
    Function("sum_t", 1, r"\sum_{t}", over="t"),
    # the diagonal matrix of a vector: diag(v) h is v * h, one weight per unit (IndRNN's
    # recurrent weight, an LSTM's peepholes), written as the papers write it
    Function("diag", 1, r"\operatorname{diag}", size="diag"),
    # Differentiable memory (the Neural Turing machine, Graves et al. 2014): a matrix-valued
    # state M (declared M: 8x16) is written with outer products and read by its rows.
    # outer(u, v) is u v^T (also written so); cosine(M, k) the cosine similarity of each row
    # of M with k (of two vectors: one number); norm(v) the Euclidean norm (of a matrix: of
    # each row).
    Function("outer", 2, r"\operatorname{outer}", size="outer"),
    Function("cosine", 2, r"\operatorname{cosine}", size="rows"),
    Function("norm", 1, r"\operatorname{norm}", size="rows"),
]})

#: Every surface name (canonical names and aliases) -> its function.
BY_NAME: dict[str, Function] = {
    alias: f for f in FUNCTIONS.values() for alias in (f.name, *f.aliases)
}


def lookup(name: str) -> Function | None:
    """The function called ``name``, or None.

    Examples
    --------
    >>> lookup("σ").name
    'sigmoid'
    >>> lookup("h1") is None
    True
    """
    if name in BY_NAME:
        return BY_NAME[name]
    return FUNCTIONS[name] if _REDUCTION.fullmatch(name) else None
