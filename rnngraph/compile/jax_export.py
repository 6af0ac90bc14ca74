"""The forward program printed as JAX: pure functions ``init`` and ``apply`` for jit, grad, vmap.

``rnngraph export FILE --to jax`` and :meth:`rnngraph.Model.to_jax` (issue 21).  The same
printer as the PyTorch export (rnngraph/compile/torch_export.py: the plain path's forward
program, one statement an op), with JAX's arrays: a sequence is one array over the steps
(P zero slots before step 1 for the initial values, F after T), written step by step with
``h.at[t].set(...)``, and every loop is a ``lax.scan`` over the steps (``reverse=True`` for a
recurrence backward in time) whose carry is the arrays the loop writes.  In a scan XLA updates
those in place; reverse mode keeps what the nonlinear ops need per step, as for any scan.
``jax.grad`` gives the backward pass; the functions are pure, so ``jit`` and ``vmap`` take them.

Over a tree's nodes (tree n) a level is a Python loop's step (the tree is fixed when jit
traces), its nodes gathered and set by index; the structure comes from rnngraph.

Why arrays and scans, not PyTorch's lists: JAX traces a Python loop into one copy of its body
a step (compile time growing with T) where a scan compiles the body once.
"""
from __future__ import annotations

import re

from ..errors import RnnGraphError
from .lower import lower
from .optable import ATOM, Text, lookup
from .program import Home
from .source import identifier
from .torch_export import ARGUMENTS, TorchPrinter, run_source

#: NumPy's name in the op table's source, not already JAX's (the arguments' text is printed)
_NP = re.compile(r"(?<![\w.])np\.")

_HELPERS = '''

def sigmoid(z):
    return jax.nn.sigmoid(z)


def softmax(z, axis=-1):
    return jax.nn.softmax(z, axis)


def log_softmax(z):
    return jax.nn.log_softmax(z, -1)


def cross_entropy(p, target):
    return -(target * jnp.log(jnp.where(target == 0, 1, p))).sum(-1, keepdims=True)


def softmax_cross_entropy(z, target):
    return -(target * jax.nn.log_softmax(z, -1)).sum(-1, keepdims=True)


def binary_cross_entropy(p, d):
    yes = jnp.where(d == 0, 0, d * jnp.log(jnp.where(d == 0, 1, p)))
    no = jnp.where(d == 1, 0, (1 - d) * jnp.log(jnp.where(d == 1, 0.5, 1 - p)))
    return -(yes + no).sum(-1, keepdims=True)


def sigmoid_binary_cross_entropy(z, d):
    return (jax.nn.softplus(z) - d * z).sum(-1, keepdims=True)


def transposed(a):
    return jnp.swapaxes(a, -1, -2)
'''

_FUNCTIONS = ARGUMENTS + '''

def init(key, dtype=jnp.float32):
    """Every parameter, drawn as rnngraph's init_params draws them: uniform in +-1/sqrt(rows)
    (PyTorch's recurrent layers' rule)."""
    params = {}
    for name, key in zip(PARAMETERS, jax.random.split(key, len(PARAMETERS))):
        bound = 1 / SHAPES[name][0] ** 0.5
        params[name] = jax.random.uniform(key, SHAPES[name], dtype, -bound, bound)
    return params


def apply(params, inputs, initial=None, steps=None, tree=None):
    """Run the equations on (T, B, n) inputs (and {"h(0)": (B, n)} initial values); return
    every sequence (T, B, n) and value (B, n).  Pure: jit, grad and vmap take it (T and B
    come from the inputs' shapes, which jit holds fixed).  Over a tree's nodes (tree n):
    ``tree`` as rnngraph's forward takes it (nested tuples of the leaves' positions, a parent
    array), by default the balanced tree over the inputs' steps; it is fixed when traced."""
    return forward(params, *arguments(inputs, initial, steps, tree))
'''


class JaxPrinter(TorchPrinter):
    """Prints the forward program of ``model`` as JAX functions."""

    PATH = "Exported to JAX: the forward pass as written, each loop a lax.scan; jax.grad " \
           "gives the backward."
    NAME = "JAX"
    IMPORTS = ("import jax", "import jax.numpy as jnp", "from jax import lax")
    HELPERS = _HELPERS
    TAIL = _FUNCTIONS
    RESERVED = TorchPrinter.RESERVED | {"jax", "jnp", "lax", "carry", "xs", "init", "apply",
                                        "sigmoid", "transposed"}
    HELD = "every sequence one array over its steps."

    def home(self, h: Home) -> str:
        local = self.locals.get((h.name, h.offset)) if h.step is None else None
        if local is not None:               # in a scan's body: this step's value, by name
            return local
        # attention reads every step of a sequence over another index at once: one array's
        # steps, h[1:T + 1], as NumPy's
        return super(TorchPrinter, self).home(h)

    def op_text(self, op, args, types, attrs):
        if op == "norm":
            keep = ", keepdims=True" if len(types[0].shape) == 1 else ""
            return Text(f"jnp.linalg.norm({args[0].text}, axis=-1{keep})", ATOM)
        text = lookup(op).py(args, types, attrs)
        return Text(_NP.sub("jnp.", text.text), text.prec)

    def zeros_line(self) -> str:
        return "    zeros = lambda *shape: jnp.zeros(shape, like.dtype)  # noqa: E731"

    def input_sequence(self, n: str) -> str:
        B, P, F, d = self.B, self.P, self.F, self.dims(n)
        if self.along in self.trees:        # over a tree's nodes: the inputs at its leaves
            return (f"zeros({self.T} + {P + F}, {B}, {d}).at[{self.trees[self.along][3]}]"
                    f'.set(inputs["{n}"].astype(like.dtype))')
        parts = [f"zeros({P}, {B}, {d})", f'inputs["{n}"].astype(like.dtype)'] + \
            ([f"zeros({F}, {B}, {d})"] if F else [])
        return f"jnp.concatenate([{', '.join(parts)}])"

    def sequence_zeros(self, rows: str, dims: str, name: str | None = None) -> str:
        return f"zeros({rows}, {self.step_shape(dims, name)})"

    def step_numbers(self) -> str:
        return (f"jnp.broadcast_to(jnp.arange({1 - self.P}, {self.T} + {self.F + 1}, dtype=like.dtype)"
                f"[:, None, None], ({self.T} + {self.P + self.F}, {self.B}, 1))")

    def number_of_steps(self) -> str:
        return f"jnp.full((1,), {self.T}, like.dtype)"

    def set_slot(self, name: str, slot, value: str) -> str:
        return f"{name} = {name}.at[{slot}].set({value})"

    def stacked(self, name: str, steps: str) -> str:
        return f"{name}[{steps}]"

    def broadcast(self, text: str, shape: str) -> str:
        return f"jnp.broadcast_to({text}, ({shape}))"

    def statement(self, indent, e, target, text):
        if target.endswith("[...]") or e.accumulate or "[" not in target:
            return super().statement(indent, e, target, text)
        base, at = target.split("[", 1)               # h[0] = ...: h = h.at[0].set(...)
        return f"{indent}{base} = {base}.at[{at[:-1]}].set({text.text})"

    locals: dict = {}

    def scan_lines(self, prog, b, loop: str, title: str) -> list[str]:
        """A loop as a lax.scan whose body sees each step's values as names: what it reads of
        other arrays at t + k comes in as the scan's xs (those arrays' steps, shifted); what it
        writes goes out as ys, and the steps of its own values it reads again (h(t-1), h(t-2))
        are carried, as are sums over the steps.  The arrays are put together after it: in
        reverse mode a step's carry is a few vectors, not the whole arrays."""
        T, P, sign = self.T, self.P, b.direction
        homes = [e.out for e in b.eqns if isinstance(e.out, Home)]
        written = list(dict.fromkeys(h.name for h in homes if h.offset is not None
                                     and h.step is None))
        sums = list(dict.fromkeys(e.out.name for e in b.eqns if isinstance(e.out, Home)
                                  and e.accumulate))
        reads = list(dict.fromkeys((a.name, a.offset) for e in b.eqns for a in e.args
                                   if isinstance(a, Home) and a.step is None
                                   and a.offset is not None))
        depth = {n: max([-sign * k for m, k in reads if m == n] + [0]) for n in written}
        outside = [key for key in reads if key[0] not in written]
        namer, py = self.namer, self.py
        names = {key: namer(f"{py[key[0]]}_{_step_word(key[1])}") for key in outside}
        for n in written:
            for j in range(depth[n] + 1):
                names[n, -sign * j] = namer(f"{py[n]}_{_step_word(-sign * j)}")
        self.locals = dict(names)
        carried = [names[n, -sign * j] for n in written for j in range(1, depth[n] + 1)]
        after = [names[n, -sign * j] for n in written for j in range(depth[n])]
        xs = [names[key] for key in outside]
        body = self.block(prog, b, "        ")
        self.locals = {}
        carried += [py[n] for n in sums]
        after += [py[n] for n in sums]
        ys = [names[n, 0] for n in written]

        def tup(items):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        steps = [namer(f"{py[n]}_steps") for n in written]
        start = [f"{py[n]}[{self.first_slot(j, sign)}]" for n in written
                 for j in range(1, depth[n] + 1)] + [py[n] for n in sums]
        slices = [f"{py[n]}[{P + k}:{T} + {P + k}]" for n, k in outside]
        lines = ["", f"    # {title}", f"    def {loop}(carry, xs):",
                 f"        {tup(carried)}, {tup(xs)} = carry, xs", *body,
                 f"        return {tup(after)}, {tup(ys)}",
                 f"    {tup(carried)}, {tup(steps)} = lax.scan({loop}, {tup(start)}, "
                 f"{tup(slices)}{', reverse=True' if sign < 0 else ''}"
                 f"{'' if slices else f', length={T}'})"]
        lines += [f"    {py[n]} = {py[n]}.at[{P}:{T} + {P}].set({st})" for n, st in zip(written, steps)]
        return lines

    def first_slot(self, j: int, sign: int) -> str:
        """The slot of h's step j before the scan's first (forward: step 1 - j; backward: T + j)."""
        return str(self.P - j) if sign > 0 else f"{self.T} + {self.P - 1 + j}"

    def loop_lines(self, prog, b, title: str) -> list[str]:
        if b.index in self.trees:           # a tree: level by level, a Python loop (the
            return super().loop_lines(prog, b, title)     # tree is fixed when traced)
        loop = self.namer("step_" + "_".join(identifier(n) for n in b.names)
                          if len(b.names) <= 3 else "loop")
        return self.scan_lines(prog, b, loop, title)


def _step_word(k: int | None) -> str:
    """h_t, h_tm1, x_tp1: a step's value in a scan's body, named by its offset."""
    return "t" if not k else f"tm{-k}" if k < 0 else f"tp{k}"


def jax_source(model) -> str:
    """The JAX module's source for ``model`` (sizes known): ``init`` and ``apply``."""
    from ..check.analysis import parameter_order
    model = model.require_sizes()
    # the plain program: XLA fuses a step's work itself (the stacked gates of the PyTorch
    # export measured slower here: 145.6 against 130.6 ms at config A, jit(grad))
    fwd = lower(model)
    return JaxPrinter(model, fwd, "float32", parameter_order(model)).module()


def to_jax(model):
    """``model`` as JAX's pure functions ``(init, apply)``: ``init(key, dtype)`` draws the
    parameters, ``apply(params, inputs, initial=None, steps=None)`` runs the equations."""
    try:
        import jax  # noqa: F401
    except ImportError:
        raise RnnGraphError("export to JAX needs jax: pip install jax") from None
    source = jax_source(model)
    namespace = run_source(source, f"jax {model.filename}")
    init, apply = namespace["init"], namespace["apply"]
    apply.source = source
    return init, apply
