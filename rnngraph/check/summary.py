"""The text ``rnngraph check`` prints: symbols by role, states, sizes."""
from __future__ import annotations


def summary(model) -> str:
    """A human summary of ``model``.

    Examples
    --------
    >>> from rnngraph import parse
    >>> print(parse("h(t) = tanh(W h(t-1) + U x(t))\\nx: 3, h: 5").summary())
    <string>: 1 equation, 4 symbols
      inputs       x
      states       h (output)
      parameters   W U
    recurrent states:
      h            forward, delay 1, initial value 0
    sizes:
      h = 5, x = 3
      W: 5 x 5, U: 5 x 3
    """
    n_eq = len(model.equations)
    lines = [f"{model.filename}: {n_eq} equation{'s' * (n_eq != 1)}, {len(model.symbols)} symbols"]
    for role, title in (("input", "inputs"), ("sequence", "sequences"), ("state", "states"),
                        ("value", "values"), ("parameter", "parameters")):
        names = model.role(role)
        if names:
            lines.append(f"  {title:<12} " + " ".join(_tagged(model, n) for n in names))
    states = model.role("state")
    if states:
        lines.append("recurrent states:")
        for name in states:
            s = model.symbols[name]
            init = ", value after the last step 0" if s.direction == "backward" else \
                f", initial value {s.initial and _rhs(s.initial) or 0}"
            over = "" if s.index == "t" else f" over {s.index}"
            lines.append(f"  {name:<12} {s.direction}{over}, delay {s.delay}{init}")
    for y, o in model.free.items():
        i = model.symbols[y].index or "t"
        lines.append(f"running free (test): {o}({i}-1) is read where training reads the target {y}({i}-1)")
    lines.append("sizes:")
    known = [f"{n} = {' x '.join(map(str, v)) if isinstance(v, tuple) else v}"
             for n, v in model.sizes.items() if model.symbols[n].role != "parameter"]
    if known:
        lines.append("  " + ", ".join(known))
    shapes = [f"{n}: {' x '.join(map(str, s))}" for n, s in model.param_shapes.items()]
    if shapes:
        lines.append("  " + ", ".join(shapes))
    for err in model.unknown_sizes:
        lines.append(f"  unknown: {err.message.split(';')[0]} (line {err.line})")
    return "\n".join(lines)


def _tagged(model, name) -> str:
    s = model.symbols[name]
    tags = [t for t in ("output", "loss", "target") if getattr(s, t)]
    if s.role == "input" and not s.timed:
        tags.append("time-free")
    return name + (f" ({', '.join(tags)})" if tags else "")


def _rhs(eq) -> str:
    from ..lang.printing import expr_text
    return expr_text(eq.rhs)
