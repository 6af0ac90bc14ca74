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

import networkx as nx
import numpy as np

from .errors import RnnGraphError

#: The spectral radii the recurrent matrices are scaled to, besides the model as initialised.
RADII = (0.5, 1.0, 1.5)


def recurrent_matrices(model) -> list[str]:
    """The square parameter matrices through which a state reads a state of its own loop at
    an earlier (or later) step: W in h(t) = tanh(W h(t-1) + U x(t)), an LSTM's four."""
    g = model.graph()
    loops = nx.DiGraph((u, v) for u, v, d in g.edges(data=True) if d.get("delay") is not None)
    scc = {n: k for k, c in enumerate(nx.strongly_connected_components(loops)) for n in c}
    out = []
    for u, v, d in g.edges(data=True):
        w = d.get("weight")
        if d.get("delay") and w in model.param_shapes and scc.get(u) == scc.get(v) \
                and len(model.param_shapes[w]) == 2 \
                and model.param_shapes[w][0] == model.param_shapes[w][1] and w not in out:
            out.append(w)
    return out


def _scaled(params: dict, names: list[str], radius: float) -> dict:
    out = dict(params)
    for n in names:
        rho = float(np.max(np.abs(np.linalg.eigvals(params[n]))))
        out[n] = params[n] * (radius / rho) if rho > 0 else params[n]
    return out


def _defaults(model, loss, state):
    sym = model.symbols
    if state is None:
        states = [n for n, s in sym.items() if s.role == "state" and s.direction == "forward"
                  and s.loop == "t"]
        if not states:
            raise RnnGraphError(f"{model.filename}: no state runs forward in time: there is no "
                                "gradient to carry back through the steps")
        state = next((n for n in states if n == "h"), states[-1])
    if loss is None:
        timed = [n for n, s in sym.items() if s.timed and s.loop == "t" and s.role != "input"]
        losses = [n for n in timed if sym[n].loss]
        loss = losses[0] if losses else timed[-1]
    for name, what in ((state, "state"), (loss, "loss")):
        if name not in sym or not sym[name].timed:
            raise RnnGraphError(f"{model.filename}: '{name}' is not a sequence of the model; "
                                f"name the {what} to follow")
    if sym[state].role != "state":
        raise RnnGraphError(f"{model.filename}: '{state}' is not a state (read at another step)")
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
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive whole number, not {steps!r}")
    model = model.require_sizes()
    loss, state = _defaults(model, loss, state)
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
    configs.update((f"ρ = {r:g}", _scaled(base, matrices, r)) for r in radii)
    return {label: np.array([float(np.linalg.norm(g, axis=-1).mean())
                             for g in back_through_steps(net, params, inputs, loss, state)])
            for label, params in configs.items()}


def back_through_steps(net, params, inputs, loss: str, state: str) -> list:
    """[dL(τ)/d state(τ - k) for k = 1..τ]: each (B, n), the loss's last step summed over
    its lanes (a cotangent of ones), τ the inputs' length.  Each from a run of the model
    from step τ - k, the states at that step (and before) its initial values."""
    sym = net.model.symbols
    outs = net.forward(params, inputs)
    steps = next(len(a) for n, a in inputs.items() if sym[n].timed)
    grads = []
    for k in range(1, steps + 1):
        t = steps - k                              # follow state(t), t = τ-1 .. 0
        initial = {}
        for key in net.initial_values:             # h(0), h(-1), c(0): the states at t, t-1
            name, at = key[:key.index("(")], int(key[key.index("(") + 1:-1])
            step = t + at                          # (a state's step 0 is its initial value)
            initial[key] = outs[name][step - 1] if step >= 1 else np.zeros_like(outs[name][0])
        rest = {n: (a[t:] if sym[n].timed else a) for n, a in inputs.items()}
        run, pullback = net.vjp(params, rest, initial)
        cot = {loss: np.zeros_like(run[loss])}
        cot[loss][-1] = 1.0
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


def plot(flows: dict, path, title: str | None = None) -> None:
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
    axes[0][0].set_ylabel("‖∂L(τ)/∂h(t)‖")
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
