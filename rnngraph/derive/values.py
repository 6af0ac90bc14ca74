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

from ..graphs.trees import Tree
from ..graphs.unrolled import steps_of
from ..lang import ast
from ..runtime import ops
from .calculus import EPS, Rules, spread, times


#: The functions' numbers: the runtime's own (softmax shifted by its maximum, the losses'
#: 0 log 0 = 0), not a second copy; what the derivation's rules check is the chain rule.
_FUNCTIONS = {
    "tanh": np.tanh, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "sigmoid": ops.sigmoid, "softmax": ops.softmax,
    "relu": lambda z: np.maximum(z, 0),
    "softplus": lambda z: np.logaddexp(0, z),
    "cross_entropy": ops.cross_entropy, "binary_cross_entropy": ops.binary_cross_entropy,
}


class Steps:
    """The steps of each index a derivation unrolls, and the step a read lands on.

    ``steps`` is one number for every index or one per index (``{"t": 4, "u": 3}``, as
    the drawings take it).  A tree's index (``tree n``) has the balanced binary tree over
    that many leaves (rnngraph/graphs/trees.py): its nodes are numbered leaves first, the
    root last, and a leaf's children are the initial value h(0), as the compiled model reads.
    An environment (``env``) gives the step of each index where a term is evaluated:
    ``{"u": 2, "t": 3}`` for the equation of a(u, t) at (2, 3); ``"end"`` the last step of
    the equation's own index; ``"t'"`` the other step a softmax across t reads."""

    def __init__(self, model, steps):
        try:
            per = steps_of(model, steps)
        except ValueError as err:
            from ..errors import RnnGraphError
            raise RnnGraphError(str(err)) from None
        self.model, self.given = model, per
        self.trees = {d.name: Tree.balanced(per[d.name]) for d in model.program.indices if d.tree}
        self.lengths = {i: self.trees[i].nodes if i in self.trees else n for i, n in per.items()}
        # a tree node's parent, as an index of its own (p): the matrix form writes what
        # reaches h(n) from the equation of its parent, h(p) = f(h(left(p)), h(right(p)))
        # softmax_t's argument is read at t' (every step of t): the same steps
        self.lengths.update({i + "'": n for i, n in list(self.lengths.items())})
        self.parents: dict[str, str] = {}
        for n, tree in list(self.trees.items()):
            p = self.parents[n] = next(c for c in ("p", "q", f"p_{n}", f"parent_{n}")
                                       if c not in per and c not in model.symbols)
            self.trees[p], self.lengths[p] = tree, self.lengths[n]

    def parents_of(self, index: str, node: int, side: str) -> list[int]:
        """The nodes whose ``side`` ("left", "right") child is tree node ``node``: its
        parent or none; for 0 (what a leaf reads below it, the initial value) every leaf."""
        k = side == "right"
        return [p for p, kids in enumerate(self.trees[index].children, 1) if kids[k] + 1 == node]

    def of(self, name: str):
        """The steps of ``name``: a number, a pair for a value over two indices, None for a
        time-free one; an input over a tree's nodes sits at its leaves only."""
        sym = self.model.symbols.get(name)
        if sym is None or not sym.timed:
            return None
        if isinstance(sym.index, tuple):
            return tuple(self.lengths[i] for i in sym.index)
        if sym.index in self.trees and sym.role == "input":
            return self.given[sym.index]
        return self.lengths[sym.index]

    def where(self, ref, env: dict):
        """The step ``ref`` reads at ``env``: None (time-free, a parameter), a number, or a
        pair (u, t) of a value over two indices; 0 for a tree leaf's missing child."""
        if isinstance(ref, ast.At):
            return self.last(ref.name) if ref.step == "end" else int(ref.step)
        if ref.offset is None or self.model.symbols[ref.name].role == "parameter":
            return None
        if ref.child is not None:
            kid = self.trees[ref.index].children[env[ref.index] - 1][ref.child == "right"]
            return kid + 1 if kid >= 0 else 0
        if ref.inner is not None:
            return (env[ref.index] + ref.offset, env[ref.inner])
        return env[ref.index] + ref.offset

    def last(self, name: str) -> int:
        n = self.of(name)
        return n[0] if isinstance(n, tuple) else n


class Values:
    """One seeded run of ``model`` over ``steps`` steps (one number, or one per index) with
    ``batch`` examples."""

    def __init__(self, model, steps, batch: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.where = Steps(model, steps)
        self.lengths = self.where.lengths
        self.model, self.steps, self.batch = model, self.lengths["t"], batch
        self.rules = Rules(model, model.source)
        self.compiled = net = model.compile(dtype="float64")
        self.params = {n: rng.normal(0, 0.5, s) for n, s in net.param_shapes.items()}
        sym = model.symbols
        self.inputs = {}
        for n in net.inputs:
            shape = ((self.where.of(n),) if sym[n].timed else ()) + (batch, model.shape(n)[0])
            # a target in (0, 1): a probability for the cross-entropies, a yes/no odds for BCE
            self.inputs[n] = rng.uniform(0.05, 0.95, shape) if sym[n].target else rng.normal(0, 1, shape)
        self.initial = {k: rng.normal(0, 0.5, (batch, *model.shape(k.split("(")[0])))
                        for k in net.initial_values}
        timed = any(s.timed for s in sym.values())
        if not net.inputs:                  # no input, no batch axis: one example
            self.batch = batch = 1
            self.initial = {k: v[:1] for k, v in self.initial.items()}
        several = len(self.where.given) > 1
        outputs, pullback = net.vjp(self.params, self.inputs, self.initial,
                                    steps=dict(self.where.given) if several else
                                    self.steps if timed else None)
        # every output with its batch axis, (T, B, n), (U, T, B, n), (T, B, N, W) or (B, n),
        # as the derivation reads them
        self.outputs = {k: v if v.ndim == ((len(sym[k].index) if isinstance(sym[k].index, tuple)
                                            else 1 if sym[k].timed else 0) + 1 + len(model.shape(k)))
                        else v[..., None, :] for k, v in outputs.items()}

        def pull(cotangents):
            return pullback({k: c.reshape(outputs[k].shape) for k, c in cotangents.items()})
        self.pullback = pull
        self.at: dict = {}              # the steps where terms are evaluated (Steps' env)
        self.gradient = None            # (name, step) -> array: the derivation's, set by it
        self.fixed: dict[tuple, np.ndarray] = {}    # values of a run again (differences)
        self._init = {eq.name: eq.rhs for eq in model.equations if eq.kind == "init"}

    def param(self, name: str):
        return self.params[name]

    def node(self, name: str, step):
        """The value of ``name`` at ``step`` (None: time-free; a pair (u, t) for a value
        over two indices), zero outside the run."""
        if name in self.params:
            return self.params[name]
        if (name, step) in self.fixed:
            return self.fixed[name, step]
        n = self.model.shape(name)
        if step is None:
            return self.outputs[name] if name in self.outputs else self.inputs[name]
        whole = self.outputs[name] if name in self.outputs else self.inputs[name]
        if isinstance(step, tuple):
            (u, t), (nu, nt) = step, self.where.of(name)
            return whole[u - 1, t - 1] if 1 <= u <= nu and 1 <= t <= nt else np.zeros((self.batch, *n))
        if 1 <= step <= self.where.of(name):
            return whole[step - 1]
        if step <= 0 and f"{name}({step})" in self.initial:
            return self.initial[f"{name}({step})"]
        if step == 0 and name in self._init:
            return np.broadcast_to(self.evaluate(self._init[name], {}), (self.batch, *n))
        return np.zeros((self.batch, *n))

    def value(self, node):
        return self.evaluate(node, self.at)

    def at_steps(self, fn, changes: dict, replace: bool = False):
        """``fn(self)`` evaluated at the steps ``changes`` (Steps' env) over the present ones
        (``replace``: instead of them); the present ones are the steps again after."""
        saved = self.at
        self.at = dict(changes) if replace else {**saved, **changes}
        try:
            return fn(self)
        finally:
            self.at = saved

    def evaluate(self, node, env):
        """``node``, a piece of a right side, at ``env`` (the step of each index, Steps'),
        from the run's values."""
        ev = lambda n: self.evaluate(n, env)        # noqa: E731
        if isinstance(node, ast.Num):
            return np.float64(node.value)
        if isinstance(node, ast.Step):
            return np.float64(env["end"] if node.name == "end" else env[node.name])
        if isinstance(node, (ast.Ref, ast.At)):
            return self.node(node.name, self.where.where(node, env))
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
            sa, sb = self.rules.size(node.left), self.rules.size(node.right)
            if node.op in "*/":
                return times(a, sa, b if node.op == "*" else 1 / b, sb)
            return (np.add if node.op == "+" else np.subtract)(*spread(a, sa, b, sb))
        if isinstance(node, ast.Binary):
            return self._product(node, env)
        if isinstance(node, ast.Call):
            f = node.func
            over, across = _over(f)
            if over:
                n = self.lengths[over]
                # end stays the last step of the equation's index (a time-free value's: t's)
                s = sum(self.evaluate(node.args[0], {"end": n, **env, over: k}) for k in range(1, n + 1))
                return s / n if f.startswith("mean_") else s
            if across:                   # softmax_t(e(u, t)): e(u, 1..T) normalised, at t
                z = np.stack([self.evaluate(node.args[0], {**env, across: k})
                              for k in range(1, self.lengths[across] + 1)])
                return ops.softmax(z, axis=0)[env[across] - 1]
            if f == "outer":
                return np.einsum("...i,...j->...ij", *[ev(a) for a in node.args])
            if f in ("norm", "cosine"):
                return _rows(f, [self._batched(a, env) for a in node.args])
            return _FUNCTIONS[f](*[ev(a) for a in node.args])
        raise TypeError(f"not evaluated: {node!r}")

    def _product(self, node, env):
        """A product, by its kind (calculus.Rules.kind): with a parameters' matrix, a dot
        product, a memory's rows or columns, an outer product."""
        kind = self.rules.kind(node)
        left, right = node.left, node.right
        ev = lambda n: self.evaluate(n, env)        # noqa: E731
        if kind == "diag":
            return ev(ast.diagonal(left)) * ev(right)
        if kind == "dot":
            return (ev(left.operand) * ev(right)).sum(-1, keepdims=True)
        if kind == "param":
            return ev(right) @ ev(left).T
        if kind == "params":
            return ev(left) @ ev(right)
        if kind in ("left", "right"):
            return np.matmul(ev(left), ev(right))
        if kind == "columns":
            return np.einsum("...ij,...i->...j", ev(left.operand), ev(right))
        if kind == "rows":
            return np.einsum("...ij,...j->...i", ev(left), ev(right))
        return np.einsum("...i,...j->...ij", ev(left), ev(right.operand))      # outer

    def _batched(self, node, env):
        """``node``'s value with its examples' axis (a parameter's, the same for each)."""
        x, size = self.evaluate(node, env), self.rules.size(node)
        shape = (self.batch, *(size if isinstance(size, tuple) else (size,)))
        return np.broadcast_to(x, shape) if np.ndim(x) < len(shape) else x

    def differences(self, order, equation, env, node, seeds, eps: float = 1e-6):
        """The gradient of L = Σ seed · loss with respect to ``node`` (a value inside the run,
        which the compiled model gives no gradient for) by central differences: the equations
        evaluated again, in ``order``, from the value moved by ±eps in each entry."""
        base = np.broadcast_to(self.node(node.name, node.step), (self.batch, *self.model.shape(node.name)))
        out = np.zeros(base.shape)
        for i in np.ndindex(base.shape[1:]):
            ends = []
            for sign in (1, -1):
                moved = np.array(base, dtype=float)
                moved[(slice(None), *i)] += sign * eps
                ends.append(self._objective(order, equation, env, (node.name, node.step), moved, seeds))
            out[(slice(None), *i)] = (ends[0] - ends[1]) / (2 * eps)
        return out

    def _objective(self, order, equation, env, key, value, seeds):
        """Σ seed · loss for each example, the equations evaluated again with ``key`` fixed."""
        self.fixed = {key: value}
        try:
            for n in order:
                eq = equation(n)
                if eq is None or (n.name, n.step) == key:
                    continue
                v = self.evaluate(eq.rhs, env(n))
                self.fixed[n.name, n.step] = np.broadcast_to(v, (self.batch, *self.model.shape(n.name)))
            return sum((s * self.fixed[n.name, n.step]).sum(-1) for n, s in seeds.items())
        finally:
            self.fixed = {}


def _over(func: str):
    """(the index a sum or mean runs over, the index a softmax normalises across) of ``func``."""
    from ..lang.functions import lookup
    f = lookup(func)
    return f.over, f.across


def _rows(func: str, args):
    """norm(x) and cosine(a, b) of each row of a matrix, (B, N), or of vectors, (B, 1), as the
    compiled model computes them (cosine's ε)."""
    norm = lambda x: np.linalg.norm(x, axis=-1) if np.ndim(x) == 3 else \
        np.linalg.norm(x, axis=-1, keepdims=True)       # noqa: E731
    if func == "norm":
        return norm(args[0])
    a, b = args
    num = np.einsum("bij,bj->bi", a, b) if np.ndim(a) == 3 else (a * b).sum(-1, keepdims=True)
    return num / (norm(a) * norm(b) + EPS)
