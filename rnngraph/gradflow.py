"""Vanishing and exploding gradients: how ||dL(τ)/dh(t)|| falls or grows with τ - t.

The Deep Learning book's section 10.7: a gradient carried back through k steps is multiplied
by k Jacobians, and so shrinks or grows about as the k-th power of the recurrent weights'
spectral radius.  :func:`gradient_flow` measures it on a compiled model: the norm of the
derivative of the loss at the last step τ with respect to a state at each earlier step t,
at initialisation and with the recurrent matrices scaled to spectral radii below, at and
above 1.  :func:`plot` draws it (matplotlib, the extra ``rnngraph[plot]``), a panel a model,
so that an LSTM can stand beside an Elman RNN.

How dL(τ)/dh(t) is computed: the compiled pullback gives gradients for the parameters, the
inputs and the initial values, not for a state inside the sequence.  Running the model again
from step t, with the states at t (and before, for a state read further back) as its initial
values and the inputs t+1..τ, computes the same steps; the gradient of its last loss with
respect to the initial value h(0) is dL(τ)/dh(t), exactly.
"""
from __future__ import annotations

import numbers

import networkx as nx
import numpy as np

from .lang import ast

from .errors import RnnGraphError

#: The spectral radii the recurrent matrices are scaled to, besides the model as initialised.
RADII = (0.5, 1.0, 1.5)


def recurrent_matrices(model) -> list[str]:
    """The recurrent weights: square parameter matrices through which a state reads a state of
    its own loop at an earlier (or later) step (W in h(t) = tanh(W h(t-1) + U x(t)), an
    LSTM's four), and weights per unit there (IndRNN's u in u * h(t-1), diag(u) h(t-1))."""
    g = model.graph()
    loops = nx.DiGraph((u, v) for u, v, d in g.edges(data=True) if d.get("delay") is not None)
    scc = {n: k for k, c in enumerate(nx.strongly_connected_components(loops)) for n in c}
    out = []
    for u, v, d in g.edges(data=True):
        w = d.get("weight") or ""
        w = w[5:-1] if w.startswith("diag(") else w[:-1] if w.endswith("⊙") else w
        shape = model.param_shapes.get(w)
        if d.get("delay") and shape and scc.get(u) == scc.get(v) and w not in out \
                and (len(shape) == 1 or shape[0] == shape[1]):
            out.append(w)
    return out


def _scaled(params: dict, names: list[str], radius: float) -> dict:
    out = dict(params)
    for n in names:
        p = params[n]
        rho = float(np.max(np.abs(p if p.ndim == 1 else np.linalg.eigvals(p))))
        out[n] = p * (radius / rho) if rho > 0 else p
    return out


def _exact(model, state: str) -> str | None:
    """None if the runs from each step give dL(τ)/d state(t) exactly; else another state the
    followed one feeds at the same step (an LSTM's c feeds h(t)), which a run from step t
    would hold fixed as an initial value."""
    same = nx.DiGraph((u, v) for u, v, d in model.graph().edges(data=True) if d.get("delay") == 0)
    if state not in same:
        return None
    for other in sorted(nx.descendants(same, state)):
        if model.symbols[other].role == "state" and model.symbols[other].loop == "t" \
                and other != state:
            return other
    return None


def _reads_steps(model, name: str) -> bool:
    """Whether the time-free value ``name`` is computed from a sequence (a sum over the
    steps, a fixed step)."""
    eq = next(q for q in model.equations if q.name == name and q.kind == "value")
    return any(isinstance(r, ast.At) or isinstance(r, ast.Ref) and r.offset is not None
               for r in ast.walk(eq.rhs))


def _refusal(model) -> str | None:
    """Why the runs from each step would not compute the model's own steps, if they would not:
    an input read at an earlier step (the run from t would read zeros for x(t)), the step
    number t itself, a fixed step or a value computed from the steps read by the loop."""
    for eq in model.equations:
        if eq.kind != "seq" or eq.index != "t":
            continue
        for n in ast.walk(eq.rhs):
            if isinstance(n, ast.Ref) and n.offset is not None and n.offset < 0 \
                    and model.symbols[n.name].role == "input":
                return f"{eq.lhs_text} reads {n.name}(t{n.offset}), an input at an earlier step"
            if isinstance(n, ast.At):
                return f"{eq.lhs_text} reads {n.name}({n.step}), a fixed step"
            if isinstance(n, ast.Ref) and n.offset is None and \
                    model.symbols[n.name].role == "value" and _reads_steps(model, n.name):
                return f"{eq.lhs_text} reads {n.name}, a value computed from the steps"
        steps = [n for n in ast.walk(eq.rhs) if isinstance(n, ast.Step) and n.name == "t"]
        left = [n for n in ast.walk(eq.rhs) if isinstance(n, ast.Binary) and n.op == "-"
                and isinstance(n.left, ast.Step) and n.left.name == "end"
                and isinstance(n.right, ast.Step) and n.right.name == "t"]
        if len(steps) > len(left):
            return f"{eq.lhs_text} reads the step number t itself (end - t, the steps left, is fine)"
    return None


def _defaults(model, loss, state):
    sym = model.symbols
    forward = [n for n, s in sym.items() if s.role == "state" and s.direction == "forward"
               and s.loop == "t"]
    if state is None:
        exact = [n for n in forward if _exact(model, n) is None]
        if not forward:
            raise RnnGraphError(f"{model.filename}: no state runs forward in time: there is no "
                                "gradient to carry back through the steps")
        if not exact:
            raise RnnGraphError(f"{model.filename}: every state feeds another at its step; "
                                "name one with --state")
        state = next((n for n in exact if n == "h"), exact[-1])
    if state not in forward:
        raise RnnGraphError(f"{model.filename}: '{state}' is not a state running forward in time "
                            f"(those that do: {', '.join(forward) or 'none'})")
    other = _exact(model, state)
    if other is not None:
        raise RnnGraphError(f"{model.filename}: {state}(t) feeds {other}(t) at the same step, "
                            f"which a run from step t would hold fixed: the flow of {state} is "
                            f"not measured this way yet; follow {other}")
    if loss is not None and (loss not in sym or not sym[loss].timed or sym[loss].loop != "t"
                             or sym[loss].role == "input"):
        raise RnnGraphError(f"{model.filename}: '{loss}' is not a sequence the model computes over "
                            "t; name a loss (or another sequence) with --loss")
    if loss is None:
        losses = [n for n, s in sym.items() if s.timed and s.loop == "t" and s.loss]
        timed = [n for n, s in sym.items() if s.timed and s.loop == "t" and s.role != "input"]
        loss = losses[0] if losses else timed[-1]
    return loss, state


def gradient_flow(model, steps: int = 50, radii=RADII, seed: int = 0, batch: int = 8,
                  loss: str | None = None, state: str | None = None) -> dict:
    """``{label: norms}``: ``norms[k - 1]`` is the mean over a batch of random inputs of
    ||dL(τ)/d state(τ - k)|| for k = 1..steps (τ = steps), ``label`` "at initialisation" or
    "ρ = 0.5", ... (the recurrent matrices scaled to that spectral radius).  ``loss``: a
    sequence (default: the first loss, else the last sequence, whose sum at τ is taken);
    ``state``: a forward state (default h, else the last one).

    Examples
    --------
    >>> from rnngraph import parse
    >>> m = parse("h(t) = tanh(W h(t-1) + U x(t))\\no(t) = V h(t)\\nx: 3, h: 8, o: 2")
    >>> flow = gradient_flow(m, steps=20, radii=(0.5,))
    >>> small = flow["ρ = 0.5"]
    >>> bool(small[-1] < 1e-4 * small[0])      # twenty steps at 0.5 or less: gone
    True
    """
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive whole number, not {steps!r}")
    steps = int(steps)
    model = model.require_sizes()
    loss, state = _defaults(model, loss, state)
    why = _refusal(model)
    if why:
        raise RnnGraphError(f"{model.filename}: {why}: the runs from each step that measure the "
                            "flow would not compute the model's own steps")
    fixed = [n for n, s in model.symbols.items() if s.initial is not None and s.role == "state"
             and s.loop == "t"]
    if fixed:                   # the runs from step t give the states at t as initial values
        raise RnnGraphError(f"{model.filename}: {fixed[0]}(0) = ... fixes the initial value the "
                            "gradient flow sets to the state at each step: leave it out (zero) "
                            "to measure the flow")
    net = model.compile(dtype="float64")
    rng = np.random.default_rng(seed)
    sym = model.symbols
    inputs = {}
    for n in net.inputs:
        s = sym[n]
        if s.timed and s.loop != "t":
            raise RnnGraphError(f"{model.filename}: gradient flow follows one index, t; "
                                f"'{n}' has the steps of {s.loop}")
        shape = ((steps,) if s.timed else ()) + (batch, model.sizes[n])
        inputs[n] = np.eye(model.sizes[n])[rng.integers(0, model.sizes[n], shape[:-1])] \
            if s.target else rng.normal(size=shape)
    base = net.init_params(seed=seed)
    matrices = recurrent_matrices(model)
    configs = {"at initialisation": base}
    if matrices:                   # (nothing recurrent to scale: the model as it is, alone)
        configs.update((f"ρ = {r:g}", _scaled(base, matrices, r)) for r in radii)
    # no loss: the last sequence at τ in one random direction (its sum: a softmax's is 1)
    direction = None if sym[loss].loss else rng.normal(size=(batch, model.sizes[loss]))
    return {label: np.array([float(np.linalg.norm(g, axis=-1).mean())
                             for g in back_through_steps(net, params, inputs, loss, state,
                                                         steps, direction)])
            for label, params in configs.items()}


def back_through_steps(net, params, inputs, loss: str, state: str, steps: int,
                       direction=None) -> list:
    """[dL(τ)/d state(τ - k) for k = 1..τ]: each (B, n), the loss's last step summed over
    its lanes (or along ``direction``, (B, n)), τ = ``steps``.  Each from a run of the model
    from step τ - k, the states at that step (and before) its initial values."""
    sym = net.model.symbols
    outs = net.forward(params, inputs, steps=steps)
    grads = []
    for k in range(1, steps + 1):
        t = steps - k                              # follow state(t), t = τ-1 .. 0
        initial = {}
        for key in net.initial_values:             # h(0), h(-1), c(0): the states at t, t-1
            name, at = key[:key.index("(")], int(key[key.index("(") + 1:-1])
            step = t + at                          # (a state's step 0 is its initial value)
            initial[key] = outs[name][step - 1] if step >= 1 else np.zeros_like(outs[name][0])
        rest = {n: (a[t:] if sym[n].timed else a) for n, a in inputs.items()}
        run, pullback = net.vjp(params, rest, initial, steps=k)
        cot = {loss: np.zeros_like(run[loss])}
        cot[loss][-1] = 1.0 if direction is None else direction
        grads.append(pullback(cot)[f"{state}(0)"])
    return grads


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen), or a message if it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RnnGraphError("the gradient-flow plot needs matplotlib: pip install "
                            "'rnngraph[plot]' (or matplotlib)") from None
    return plt


def plot(flows: dict, path, title: str | None = None, state: str = "h") -> None:
    """Draw ``{model name: gradient_flow(...)}`` as panels side by side, log scale, into ``path``
    (its extension picks the format: png, pdf, svg), written whole or not at all."""
    plt = pyplot()
    from pathlib import Path

    from .render.output import write_atomic
    import io

    fig, axes = plt.subplots(1, len(flows), figsize=(4.2 * len(flows), 3.4), squeeze=False,
                             sharey=True)
    for ax, (name, flow) in zip(axes[0], flows.items()):
        for label, norms in flow.items():
            k = np.arange(1, len(norms) + 1)
            ax.semilogy(k, np.maximum(norms, 1e-300), label=label,
                        linestyle="--" if label == "at initialisation" else "-")
        ax.set_title(name)
        ax.set_xlabel("τ − t (steps back)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"‖∂L(τ)/∂{state}(t)‖")
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = Path(path).suffix.lower().lstrip(".") or "png"
    # a fixed date and no software tag: the same bytes for the same figure
    fig.savefig(buf, format=fmt, dpi=150, metadata={"Software": None} if fmt == "png" else None)
    plt.close(fig)
    write_atomic(buf.getvalue(), path)
