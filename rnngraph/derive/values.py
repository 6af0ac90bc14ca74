"""Numbers to evaluate a derivation on: one run of the compiled model, and the equations'
right sides evaluated again at any step from its values.

:class:`Values` draws parameters, inputs and initial values (float64, seeded), runs the model
compiled (rnngraph/runtime/compiled.py) forward, and keeps its pullback for the gradients a
derivation is compared with.  A printed term reads from it: ``value(node)`` evaluates a piece
of an equation (``W h(t-1) + U x(t)``) at the current ``step`` from the run's values, which is
written here with NumPy apart from the compiler, its functions the runtime's (a forward
value wrong in either shows as a difference), and ``gradient(name, step)`` asks the derivation being evaluated.
"""
from __future__ import annotations

import numpy as np

from ..lang import ast
from ..runtime import ops


#: The functions' numbers: the runtime's own (softmax shifted by its maximum, the losses'
#: 0 log 0 = 0), not a second copy; what the derivation's rules check is the chain rule.
_FUNCTIONS = {
    "tanh": np.tanh, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "sigmoid": ops.sigmoid, "softmax": ops.softmax,
    "relu": lambda z: np.maximum(z, 0),
    "softplus": lambda z: np.logaddexp(0, z),
    "cross_entropy": ops.cross_entropy, "binary_cross_entropy": ops.binary_cross_entropy,
}


class Values:
    """One seeded run of ``model`` over ``steps`` steps with ``batch`` examples."""

    def __init__(self, model, steps: int, batch: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.model, self.steps, self.batch = model, steps, batch
        self.compiled = net = model.compile(dtype="float64")
        self.params = {n: rng.normal(0, 0.5, s) for n, s in net.param_shapes.items()}
        sym = model.symbols
        self.inputs = {}
        for n in net.inputs:
            shape = ((steps,) if sym[n].timed else ()) + (batch, model.shape(n)[0])
            # a target in (0, 1): a probability for the cross-entropies, a yes/no odds for BCE
            self.inputs[n] = rng.uniform(0.05, 0.95, shape) if sym[n].target else rng.normal(0, 1, shape)
        self.initial = {k: rng.normal(0, 0.5, (batch, model.shape(k.split("(")[0])[0]))
                        for k in net.initial_values}
        timed = any(s.timed for s in sym.values())
        if not net.inputs:                  # no input, no batch axis: one example
            self.batch = batch = 1
            self.initial = {k: v[:1] for k, v in self.initial.items()}
        outputs, pullback = net.vjp(self.params, self.inputs, self.initial,
                                    steps=steps if timed else None)
        # every output with its batch axis, (T, B, n) or (B, n), as the derivation reads them
        self.outputs = {k: v if v.ndim == (3 if sym[k].timed else 2) else v[..., None, :]
                        for k, v in outputs.items()}

        def pull(cotangents):
            return pullback({k: c.reshape(outputs[k].shape) for k, c in cotangents.items()})
        self.pullback = pull
        self.step: int | None = None
        self.gradient = None            # (name, step) -> array: the derivation's, set by it
        self.fixed: dict[tuple, np.ndarray] = {}    # values of a run again (differences)
        self._init = {eq.name: eq.rhs for eq in model.equations if eq.kind == "init"}

    def param(self, name: str):
        return self.params[name]

    def node(self, name: str, step: int | None):
        """The value of ``name`` at ``step`` (None: time-free), zero outside the run."""
        if name in self.params:
            return self.params[name]
        if (name, step) in self.fixed:
            return self.fixed[name, step]
        n = self.model.shape(name)[0]
        if step is None:
            return self.outputs[name] if name in self.outputs else self.inputs[name]
        if 1 <= step <= self.steps:
            return (self.outputs[name] if name in self.outputs else self.inputs[name])[step - 1]
        if step <= 0 and f"{name}({step})" in self.initial:
            return self.initial[f"{name}({step})"]
        if step == 0 and name in self._init:
            return self.evaluate(self._init[name], None)
        return np.zeros((self.batch, n))

    def value(self, node):
        return self.evaluate(node, self.step)

    def evaluate(self, node, step):
        """``node``, a piece of a right side, at ``step``, from the run's values."""
        ev = lambda n: self.evaluate(n, step)       # noqa: E731
        if isinstance(node, ast.Num):
            return np.float64(node.value)
        if isinstance(node, ast.Step):
            return np.float64(self.steps if node.name == "end" else step)
        if isinstance(node, ast.Ref):
            at = None if node.offset is None or node.name in self.params else step + node.offset
            return self.node(node.name, at)
        if isinstance(node, ast.At):
            return self.node(node.name, self.steps if node.step == "end" else int(node.step))
        if isinstance(node, ast.Neg):
            return -ev(node.operand)
        if isinstance(node, ast.Transpose):          # a matrix of parameters, in A v
            return ev(node.operand).T
        if isinstance(node, ast.Concat):
            items = [np.atleast_1d(ev(i)) for i in node.items]
            if all(i.ndim == 1 for i in items):         # of parameters: one vector for all
                return np.concatenate(items)
            return np.concatenate([np.broadcast_to(i, (self.batch, i.shape[-1])) for i in items], -1)
        if isinstance(node, ast.Binary) and node.op != "@":
            a, b = ev(node.left), ev(node.right)
            return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[node.op](a, b)
        if isinstance(node, ast.Binary):
            return self._product(node, step)
        if isinstance(node, ast.Call):
            f = node.func
            if f.startswith(("sum_", "mean_")):
                s = sum(self.evaluate(node.args[0], k) for k in range(1, self.steps + 1))
                return s / self.steps if f.startswith("mean_") else s
            return _FUNCTIONS[f](*[ev(a) for a in node.args])
        raise TypeError(f"not evaluated: {node!r}")

    def _product(self, node, step):
        left, x = node.left, self.evaluate(node.right, step)
        d = ast.diagonal(left)
        if d is not None:
            return self.evaluate(d, step) * x
        if not self._matrix(left):                           # a^T v: a number an example
            a = self.evaluate(left.operand, step)
            return (a * x).sum(-1, keepdims=True)
        a = self.evaluate(left, step)
        if self._matrix(node.right):
            return a @ x                                      # W1 W2: two matrices
        return x @ a.T

    def _matrix(self, node) -> bool:
        """Whether ``node`` is a matrix of parameters (W, W^T, W1 - 2 W2, W1 W2)."""
        refs = [r for r in ast.walk(node) if isinstance(r, (ast.Ref, ast.At))]
        return bool(refs) and all(np.ndim(self.params.get(r.name)) == 2 for r in refs)

    def differences(self, order, equation, node, seeds, eps: float = 1e-6):
        """The gradient of L = Σ seed · loss with respect to ``node`` (a value inside the run,
        which the compiled model gives no gradient for) by central differences: the equations
        evaluated again, in ``order``, from the value moved by ±eps in each entry."""
        base = np.broadcast_to(self.node(node.name, node.step), (self.batch, self.model.shape(node.name)[0]))
        out = np.zeros(base.shape)
        for i in range(base.shape[-1]):
            ends = []
            for sign in (1, -1):
                moved = np.array(base, dtype=float)
                moved[:, i] += sign * eps
                ends.append(self._objective(order, equation, (node.name, node.step), moved, seeds))
            out[:, i] = (ends[0] - ends[1]) / (2 * eps)
        return out

    def _objective(self, order, equation, key, value, seeds):
        """Σ seed · loss for each example, the equations evaluated again with ``key`` fixed."""
        self.fixed = {key: value}
        try:
            for n in order:
                eq = equation(n)
                if eq is None or (n.name, n.step) == key:
                    continue
                v = self.evaluate(eq.rhs, n.step)
                self.fixed[n.name, n.step] = np.broadcast_to(v, (self.batch, self.model.shape(n.name)[0]))
            return sum((s * self.fixed[n.name, n.step]).sum(-1) for n, s in seeds.items())
        finally:
            self.fixed = {}
