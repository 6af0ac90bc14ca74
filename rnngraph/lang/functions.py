"""The function table: every function the language knows, in one place.

To add a function, add a row here (its surface names, arity, how its result's
size relates to its arguments', how it prints in LaTeX) and a row with its
forward and vector-Jacobian product in the compiler's op table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    """A function of the equation language.

    ``size`` says how the result's size follows from the arguments': ``"same"``
    (elementwise, or size-preserving like softmax: all arguments and the result
    share one size) or ``"scalar"`` (the arguments share one size, the result
    has size 1: a loss).  ``over`` names the index a reduction sums over
    (``sum_t``: every step of t, into a value with no time index).
    """

    name: str
    arity: int
    latex: str
    aliases: tuple[str, ...] = ()
    size: str = "same"
    loss: bool = False
    over: str | None = None


FUNCTIONS: dict[str, Function] = {f.name: f for f in [
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
]}

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
    return BY_NAME.get(name)
