"""The one place that chains the stages: text -> Model -> graphs, drawings, compiled code.

    lang/ (parse) -> check/ (Model) -> graphs/ (NetworkX views) -> render/ (Graphviz)
                                    -> compile/ (IR, passes, printers) -> runtime/ (Compiled)

``rnngraph.parse`` and ``rnngraph.load`` make the Model (rnngraph/check/model.py);
``Model.graph()``, ``unroll()``, ``ir()``, ``op_graph()``, ``draw()`` and ``compile()``
are conveniences that call these functions.  Each later stage is imported when it
is first asked for, so ``import rnngraph`` stays light, and nothing here imports
the Model: it is the argument.
"""
from __future__ import annotations


def folded(model):
    """The folded graph: see :func:`rnngraph.graphs.unrolled.folded`."""
    from .graphs.unrolled import folded
    return folded(model)


def unrolled(model, steps: int):
    """The graph unrolled over ``steps`` steps, within the model's limits."""
    from .check.limits import check_unroll
    from .graphs.unrolled import unrolled
    if isinstance(steps, int) and not isinstance(steps, bool):
        check_unroll(model, steps)
    return unrolled(model, steps)


def op_graph(model):
    """One node per primitive operation of a step: see :func:`rnngraph.graphs.ops.op_graph`."""
    from .graphs.ops import op_graph
    return op_graph(model)


def ir(model):
    """The compiler's forward program, before its passes (rnngraph/compile/lower.py)."""
    from .compile.lower import lower
    return lower(model.require_sizes())


def draw(model, unroll: int | None = None, format: str = "svg", **options):
    """The diagram, folded or unrolled, as a Picture Jupyter shows: see :func:`rnngraph.render.draw`."""
    from .render import draw
    return draw(model, unroll, format, **options)


def compile(model, sizes: dict[str, int] | None = None, dtype: str = "float64",
            check_finite: bool = True, optimize: bool = True, backend: str = "numpy"):
    """Forward and backward passes: see :class:`rnngraph.runtime.compiled.Compiled`."""
    from .runtime.compiled import Compiled
    model = model.with_sizes(sizes) if sizes else model
    return Compiled(model.require_sizes(), dtype=dtype, check_finite=check_finite,
                    optimize=optimize, backend=backend)


def derive(model, wrt: str | None = None, loss: str | None = None, steps: int | dict = 2,
           form: str = "paths"):
    """Backpropagation through time on paper: the chain rule for dL/d``wrt`` as a sum over
    the paths of the unrolled graph (``form="paths"``) or every gradient as matrices
    (``"matrix"``); ``.text()``, ``.latex()``, ``.check()``: see :mod:`rnngraph.derive`."""
    from .check.limits import check_unroll
    from .derive import derive
    model = model.require_sizes()
    if form == "paths":
        check_unroll(model, steps)
    return derive(model, wrt, loss, steps, form)


__all__ = ["compile", "derive", "draw", "folded", "ir", "op_graph", "unrolled"]
