"""rnngraph: recurrent networks written as equations, drawn and compiled.

>>> import rnngraph
>>> m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t) + b)")
>>> m.role("state")
['h']
"""
from .errors import RnnGraphError
from .check.limits import Limits
from .check.model import Model, load, parse
from .render import draw

__all__ = ["Limits", "Model", "RnnGraphError", "draw", "load", "parse"]
__version__ = "0.1.0"
