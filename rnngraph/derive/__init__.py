"""Backpropagation through time, derived on paper: the chain rule printed for a solution sheet.

Two forms, both of the file's own equations and names:

- ``paths``: dE/du as a sum over the paths from u to the loss through the unrolled steps, one
  product of partial derivatives a path (the exercise sheets' ∂E(2)/∂y(2) ∂y(2)/∂h(2) ...
  ∂h(1)/∂u), grouped by the step of the loss.  A factor ∂a(s)/∂b(r) is the partial derivative
  of a's equation at step s with respect to its read of b(r), every other read held fixed.
- ``matrix``: the whole model's gradients as the Deep Learning book writes them (section 10.2.2):
  for each variable ∇_h(t) L as the sum of what reaches it from each equation that reads it
  (a recurrence backwards in time), and for each parameter ∇_W L = Σ_t (...) h(t-1)^T.

Every derivation can be evaluated (:meth:`Derivation.evaluate`): each printed term is also a
function (rnngraph/derive/calculus.py), run on a seeded run of the model (values.py); its sum
is compared with the compiled model's gradient (:meth:`Derivation.check`).  A factor of a path
is evaluated as the vector-Jacobian product its equation gives, along the path from the loss.

Covered: every construct of the language.  States forward and backward in time, delays,
output feedback, sums over the steps, reads of the last step, time-free values; several
indices (an encoder over t, a decoder over u, attention's values over (u, t) with softmax_t,
whose argument is read at every t' of t); trees (h(left(n)), h(root): what reaches a node
comes from its parent p); matrix-valued states (a memory M(t), its outer products, rows,
columns, cosine and norms).  A step of a value over two indices is a pair, e(2, 3).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..errors import RnnGraphError
from ..lang import ast
from ..lang.names import latex_name
from .calculus import (EPS, HADAMARD, PRODUCT, Rules, Term, Unsupported, _br, given, gradient, one,
                       renamed, shifted, total)
from .values import Steps, Values

#: More terms than this is no longer a derivation anyone reads: the matrix form is shorter.
MAX_TERMS = 256


@dataclass(frozen=True)
class Node:
    """A value in the unrolled graph: ``name`` at ``step`` (None: time-free, or a parameter;
    a pair (u, t) for a value over two indices)."""

    name: str
    step: int | tuple | None = None

    def _at(self) -> str:
        return ", ".join(map(str, self.step)) if isinstance(self.step, tuple) else str(self.step)

    def text(self) -> str:
        return self.name if self.step is None else f"{self.name}({self._at()})"

    def latex(self) -> str:
        return latex_name(self.name, None if self.step is None else f"({self._at()})")


def _partial(a: Node, b: Node, latex: bool) -> str:
    if latex:
        return rf"\frac{{\partial {a.latex()}}}{{\partial {b.latex()}}}"
    return f"∂{a.text()}/∂{b.text()}"


class _Graph:
    """The unrolled equations of ``model`` over ``steps`` steps (one number, or one per
    index): what each value reads, and at which steps its terms are evaluated."""

    def __init__(self, model, steps):
        self.where = Steps(model, steps)
        for eq in model.equations:
            for r in ast.walk(eq.rhs):
                if isinstance(r, ast.At) and r.step != "end" and int(r.step) > self.where.last(r.name):
                    line, col = r.pos
                    raise RnnGraphError(f"{r.name}({r.step}) is read: unroll at least {r.step} "
                                        "steps", model.source.location(line, col))
        self.model, self.steps = model, self.where.lengths["t"]
        self.rules = Rules(model, model.source)
        _sums_covered(model, self.rules)
        self.eqs = {(eq.name, eq.kind): eq for eq in model.equations}
        self.params = set(model.param_shapes)
        self._reads_of: dict[Node, list[Node]] = {}
        self._order: list[Node] | None = None

    def equation(self, node: Node):
        """The equation that computes ``node``, or None for a leaf (an input, a parameter,
        an initial value given or zero)."""
        if node.step is None:
            return self.eqs.get((node.name, "value"))
        n = self.where.of(node.name)
        if isinstance(node.step, tuple):
            inside = all(1 <= k <= m for k, m in zip(node.step, n))
        else:
            inside = n is not None and 1 <= node.step <= n
        if inside:
            return self.eqs.get((node.name, "seq"))
        return self.eqs.get((node.name, "init")) if node.step == 0 else None

    def env(self, node: Node) -> dict:
        """The steps of the indices where ``node``'s equation is evaluated."""
        eq = self.equation(node)
        if node.step is None or eq is None or eq.kind == "init":
            return {}
        end = {"end": self.where.lengths[eq.index]}
        if isinstance(node.step, tuple):
            return {eq.index: node.step[0], eq.inner: node.step[1], **end}
        return {eq.index: node.step, **end}

    def out_node(self, eq, k: int = 0):
        return {"seq": ast.Ref(eq.name, -k, index=eq.index, inner=eq.inner),
                "value": ast.Ref(eq.name, None), "init": ast.At(eq.name, 0)}[eq.kind]

    def pulled(self, node: Node, g: Term):
        """What ``node``'s equation passes back from its gradient g: (read node, the steps
        its term is evaluated at, the term)."""
        eq = self.equation(node)
        env = self.env(node)
        out = []
        for p in self.rules.pull(eq.rhs, g, self.out_node(eq), eq.index):
            for read, at in self._reads(p, env):
                out.append((read, at, p.term))
        return out

    def _reads(self, p, env: dict):
        """Where ``p``'s read lands from ``env``: inside sum_t at every step of t, across a
        softmax_t at every step t' of t; a parameter or a time-free value once a step."""
        envs = [env]
        if p.over:
            # inside sum_t, end is the last step of t
            n = self.where.lengths[p.over]
            envs = [{"end": n, **env, p.over: r} for r in range(1, n + 1)]
        if p.across:                        # softmax_t's argument, written at t'
            j = p.across + "'"
            envs = [{**e, j: r} for e in envs for r in range(1, self.where.lengths[j] + 1)]
        return [(Node(p.leaf.name, self.where.where(p.leaf, e)), e) for e in envs]

    def reads(self, node: Node) -> list[Node]:
        if node not in self._reads_of:
            self._reads_of[node] = list(dict.fromkeys(r for r, _, _ in self.pulled(node, one())))
        return self._reads_of[node]

    def computed(self) -> list[Node]:
        """Every value an equation computes over the steps."""
        out = []
        for (name, kind) in self.eqs:
            n = self.where.of(name)
            if kind == "seq" and isinstance(n, tuple):
                out += [Node(name, (u, t)) for u in range(1, n[0] + 1) for t in range(1, n[1] + 1)]
                continue
            steps = {"seq": range(1, (n or 0) + 1), "value": [None], "init": [0]}[kind]
            out += [Node(name, s) for s in steps]
        return out

    def order(self) -> list[Node]:
        """Every value, computed or read, each after what it reads (a topological order of the
        unrolled graph, which NetworkX finds without recursion)."""
        if self._order is None:
            dag = nx.DiGraph()
            for n in self.computed():
                dag.add_node(n)
                dag.add_edges_from((r, n) for r in self.reads(n))
            self._order = list(nx.topological_sort(dag))
        return self._order

    def vjp(self, a: Node, b: Node, cot, values: Values):
        """The partial derivative ∂a/∂b applied to the cotangent of a (a row vector times it)."""
        result = 0
        for read, at, term in self.pulled(a, given(cot)):
            if read == b:
                result = result + values.at_steps(term.fn, at, replace=True)
        return result


def _steps_text(steps) -> str:
    return ",".join(f"{i}={n}" for i, n in steps.items()) if isinstance(steps, dict) else str(steps)


def _sums_covered(model, rules: Rules) -> None:
    """Refuse, located, the sums the derivations do not cover yet: a sum inside another, and
    a sum over the index of its own equation (a(u, t) = exp(e(u, t)) / sum_t(exp(e(u, t))),
    whose t is another than the equation's; softmax_t says the same and is covered)."""
    for eq in model.equations:
        own = {eq.index, eq.inner} if eq.kind == "seq" else set()
        for node in ast.walk(eq.rhs):
            if not (isinstance(node, ast.Call) and Rules.model_function(node.func).over):
                continue
            over = Rules.model_function(node.func).over
            if over in own:
                raise rules.unsupported(node, f"{node.func}() inside an equation over {over} "
                                        f"(write softmax_{over}(...) for weights normalised "
                                        f"over {over})")
            if any(isinstance(n, ast.Call) and n is not node and Rules.model_function(n.func).over
                   for n in ast.walk(node)):
                raise rules.unsupported(node, "a sum over the steps inside another")


_NODE = re.compile(r"\s*([^\s()]+)\s*(?:\(\s*(end|τ|root|-?\d+)\s*(?:,\s*(end|τ|-?\d+)\s*)?\))?\s*")


def _node(model, text: str, where: Steps, what: str) -> Node | list[Node]:
    """``W``, ``x(2)``, ``h(0)``, ``h(-1)`` (an initial value), ``L`` (every step of a
    sequence), ``h(end)``, ``h(root)``, ``e(2, 3)`` (a value over two indices)."""
    m = _NODE.fullmatch(text)
    if not m or m.group(1) not in model.symbols:
        known = ", ".join(sorted(model.symbols))
        raise RnnGraphError(f"{what} {text!r}: not a name of the model (it has {known})")
    name, step, inner = m.groups()
    sym = model.symbols[name]
    n = where.of(name)
    pair = isinstance(n, tuple)
    if step is None:
        if pair:
            return [Node(name, (u, t)) for u in range(1, n[0] + 1) for t in range(1, n[1] + 1)]
        if sym.timed:
            return [Node(name, s) for s in range(1, n + 1)]
        return Node(name)
    if not sym.timed:
        raise RnnGraphError(f"{what} {text!r}: {name} has no steps")
    if pair != (inner is not None):
        shape = f"{name}({', '.join(sym.index)})" if pair else f"{name}({sym.index})"
        raise RnnGraphError(f"{what} {text!r}: {name} is {shape}: give "
                            f"{'two steps, as ' + name + '(1, 2)' if pair else 'one step'}")
    last = lambda k, m: m if k in ("end", "τ", "root") else int(k)      # noqa: E731
    if pair:
        node = Node(name, (last(step, n[0]), last(inner, n[1])))
        if not all(1 <= k <= m for k, m in zip(node.step, n)):
            raise RnnGraphError(f"{what} {text!r}: the steps are outside 1..{n[0]}, 1..{n[1]}")
        return node
    k = last(step, n)
    # a forward state's initial values are steps 0, -1, ... as far back as it is read
    first = min([1] + [int(key[len(name) + 1:-1]) for key in model.initial_slots
                       if key.startswith(name + "(")]) if sym.direction == "forward" else 1
    if not first <= k <= n:
        initial = f" ({first}..0: its initial values)" if first < 1 else ""
        raise RnnGraphError(f"{what} {text!r}: the step is outside {first}..{n}{initial}")
    return Node(name, k)


def _losses(model, loss: str | None, where: Steps) -> list[Node]:
    if loss is not None:
        found = _node(model, loss, where, "--loss")
        found = found if isinstance(found, list) else [found]
        name = found[0].name
        if not any(eq.name == name and eq.kind != "init" for eq in model.equations):
            raise RnnGraphError(f"--loss {loss!r}: {name} is {'a parameter' if name in model.param_shapes else 'an input'}"
                                "; name a variable an equation computes")
        if any(isinstance(n.step, int) and n.step < 1 for n in found):
            raise RnnGraphError(f"--loss {loss!r}: a loss is at a step 1..{where.last(name)}")
        return found
    read = {r.name for eq in model.equations for r in ast.walk(eq.rhs)
            if isinstance(r, (ast.Ref, ast.At))}
    roots = [n for n, s in model.symbols.items() if s.loss and n not in read]
    if not roots:
        raise RnnGraphError("the model has no loss: name what to differentiate with --loss "
                            "(a variable, or one step of it: --loss y(2))")
    out = []
    for n in roots:
        found = _node(model, n, where, "--loss")
        out += found if isinstance(found, list) else [found]
    return out


def _loss_name(losses: list[Node]) -> str:
    names = list(dict.fromkeys(n.name for n in losses))
    if len(losses) == 1:
        return losses[0].text()
    return names[0] if len(names) == 1 else "(" + " + ".join(names) + ")"


def _loss_latex(losses: list[Node]) -> str:
    names = list(dict.fromkeys(n.name for n in losses))
    if len(losses) == 1:
        return losses[0].latex()
    return latex_name(names[0]) if len(names) == 1 else \
        r"\left(" + " + ".join(map(latex_name, names)) + r"\right)"


class Derivation:
    """A printed derivation that can also be evaluated; see the module's docstring."""

    form = ""

    def text(self) -> str:
        raise NotImplementedError

    def latex(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text()

    def _seeds(self, values: Values, losses: list[Node]) -> dict[Node, np.ndarray]:
        """The gradient of L at each loss node: 1 for a loss, a fixed random vector for a
        vector-valued one (L = Σ r · y)."""
        rng = np.random.default_rng(1)
        out = {}
        for n in losses:
            shape = tuple(self.model.shape(n.name))
            out[n] = np.ones((values.batch, 1)) if shape == (1,) else rng.normal(0, 1, (values.batch, *shape))
        return out

    def _compiled(self, values: Values, seeds) -> dict:
        """The compiled model's gradients of L = Σ seed · loss node."""
        cot = {}
        for n, s in seeds.items():
            if n.step is None:
                cot[n.name] = s
            else:
                arr = cot.setdefault(n.name, np.zeros(values.outputs[n.name].shape))
                arr[tuple(k - 1 for k in n.step) if isinstance(n.step, tuple) else n.step - 1] = s
        return values.pullback(cot)

    def _reference(self, values, grads, node: Node):
        """The compiled gradient with respect to ``node``; None for a value inside the run."""
        if node.name in values.params:
            return grads[node.name]
        if node.name in values.inputs:
            g = grads[node.name]
            return g if node.step is None else g[node.step - 1]
        key = f"{node.name}({node.step})"
        return grads.get(key)


class Paths(Derivation):
    """dE/du as a sum over paths through the unrolled graph, grouped by loss term."""

    form = "paths"

    def __init__(self, model, wrt: str, loss: str | None = None, steps: int = 2):
        self.model, self.steps = model, steps
        self.graph = g = _Graph(model, steps)
        self.losses = _losses(model, loss, g.where)
        target = _node(model, wrt, g.where, "--wrt")
        if isinstance(target, list):
            raise RnnGraphError(f"--wrt {wrt!r}: {wrt} is a sequence: give a step, as --wrt {wrt}(1)")
        self.wrt = target
        counts: dict[Node, int] = {}        # the paths from each value down to wrt, counted
        for n in g.order():                 # before they are listed (what it reads first)
            counts[n] = 1 if n == target else \
                sum(counts.get(r, 0) for r in g.reads(n)) if g.equation(n) is not None else 0
        count = lambda n: counts.get(n, 1 if n == target else 0)     # noqa: E731
        n_terms = sum(count(n) for n in self.losses)
        if n_terms > MAX_TERMS:
            raise RnnGraphError(f"{n_terms} paths from {target.text()} to the loss over {_steps_text(steps)} "
                                f"steps: too many to print (at most {MAX_TERMS}); unroll fewer "
                                "steps, or print the matrix form (--matrix)")
        self.groups: dict[Node, list[list[Node]]] = {}
        for n in self.losses:
            paths: list[list[Node]] = []
            stack = [[n]]
            while stack:
                path = stack.pop()
                last = path[-1]
                if last == target:
                    paths.append(path)
                    continue
                if g.equation(last) is not None:
                    stack += [path + [r] for r in reversed(g.reads(last)) if count(r)]
            self.groups[n] = paths

    def _lines(self, latex: bool) -> list[tuple[str, str]]:
        e = self.wrt
        whole = _loss_latex(self.losses) if latex else _loss_name(self.losses)
        d = (lambda a: rf"\frac{{\partial {a}}}{{\partial {e.latex()}}}") if latex \
            else (lambda a: f"∂{a}/∂{e.text()}")
        rows = []
        if len(self.groups) > 1:
            parts = [d(n.latex() if latex else n.text()) for n in self.groups]
            rows.append((d(whole), " + ".join(parts)))
        for n, paths in self.groups.items():
            head = d(n.latex() if latex else n.text())
            terms = [(r" \, " if latex else " ").join(_partial(a, b, latex) for a, b in zip(p, p[1:]))
                     or "1" for p in paths] or ["0"]
            rows.append((head, terms[0]))
            rows += [("", "+ " + t) for t in terms[1:]]
        return rows

    def text(self) -> str:
        rows = self._lines(False)
        width = max(len(h) for h, _ in rows)
        return "".join(f"{line}\n" for line in _tree_lines(self.graph.where)) + \
            "\n".join(f"{h:>{width}} = {t}" if h else f"{'':>{width}} {t}"
                      for h, t in rows) + "\n"

    def latex(self) -> str:
        rows = [f"{h} &= {t}" if h else rf"&\quad {t}" for h, t in self._lines(True)]
        return "".join(f"% {line}\n" for line in _tree_lines(self.graph.where)) + \
            "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n"

    @property
    def terms(self) -> int:
        return sum(len(p) for p in self.groups.values())

    def evaluate(self, values: Values) -> np.ndarray:
        """The printed sum on ``values``: each path's factors applied in turn to the loss's
        gradient (a row vector times ∂L(2)/∂y(2) times ∂y(2)/∂h(2) ...)."""
        seeds = self._seeds(values, self.losses)
        result = 0
        for n, paths in self.groups.items():
            for path in paths:
                cot = seeds[n]
                for a, b in zip(path, path[1:]):
                    cot = self.graph.vjp(a, b, cot, values)
                result = result + cot
        return _shaped(result, values, self.wrt)

    def check(self, seed: int = 0, batch: int = 2) -> float:
        """The largest relative difference between the printed sum, evaluated, and the compiled
        model's gradient; for a value inside the run (h(1)), which the compiled model gives no
        gradient for, central differences of the equations run again from it (float64)."""
        values = Values(self.model, self.steps, batch, seed)
        mine = self.evaluate(values)
        seeds = self._seeds(values, self.losses)
        grads = self._compiled(values, seeds)
        ref = self._reference(values, grads, self.wrt)
        self.against = "the compiled gradient"
        if ref is None:
            ref = values.differences(self.graph.order(), self.graph.equation, self.graph.env,
                                     self.wrt, seeds)
            self.against = f"central differences of the equations run again from {self.wrt.text()}"
            return _difference(mine, ref)
        # a gradient that is zero (a bias inside softmax_t) is rounding alone: compared with
        # the model's other gradients, as Matrix.check does
        scale = 1e-4 * max((float(np.max(np.abs(g), initial=0)) for g in grads.values()), default=0)
        return _difference(mine, ref, scale)


def _shaped(g, values: Values, node: Node):
    """A parameter vector's gradient summed over the examples, as the compiled gives it."""
    if node.name in values.params:
        shape = values.params[node.name].shape
        g = np.asarray(g, dtype=float)
        while g.ndim > len(shape):
            g = g.sum(0)
        return np.broadcast_to(g, shape)
    return np.broadcast_to(g, (values.batch, *values.model.shape(node.name)))


def _difference(a, b, scale: float = 0.0) -> float:
    """max |a - b| relative to max |b| (or to ``scale``, where b is far smaller: a gradient
    that is zero is compared with the others' size, not with its own rounding); NaN or Inf in
    either is infinitely far."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    # (and 1e-8 at least: where every gradient is zero, Σ_t a(u, t) = 1 for any weights,
    # the printed terms are rounding of the O(1) values they multiply)
    return float(np.max(np.abs(a - b), initial=0) / max(np.max(np.abs(b), initial=0), scale, 1e-8))


def _count(where: Steps, name: str) -> int:
    n = where.of(name)
    return n[0] * n[1] if isinstance(n, tuple) else n


class Matrix(Derivation):
    """Every gradient of the model, as vectors and matrices (the book's 10.2.2).

    What reaches a value from an equation that reads it is that equation's term moved to
    the value's steps: a read along an index k steps back comes from the equation k steps
    on (h(t-1) in h(t)'s equation: from step t+1); the indices of the equation the value
    does not have are summed (z(u, t) reads h(t): Σ_u); a read of one step (h(end),
    h(root)) is that step's alone ([t = τ]); a tree node's children's reads come from its
    parent p ([n = left(p)]); softmax_t's argument takes its Jacobian across the steps."""

    form = "matrix"

    def __init__(self, model, loss: str | None = None, steps=3, wrt: str | None = None):
        self.model, self.steps = model, steps
        self.graph = g = _Graph(model, steps)
        self.where = g.where
        # a step summed over beside t (Σ_s): a name the model does not use
        self.fresh = next(n for n in ("s", "r", "q", "s_1", "s_2") if n not in model.symbols
                          and n not in g.where.lengths)
        self.losses = _losses(model, loss, g.where)
        for n in self.losses:
            if model.symbols[n.name].timed and \
                    sum(x.name == n.name for x in self.losses) < _count(g.where, n.name):
                raise RnnGraphError(f"--loss {loss!r}: the matrix form is for a loss at every step "
                                    f"(--loss {n.name}) or a time-free one; for one step, "
                                    "print the paths")
        self.roots = {n.name for n in self.losses}
        # a loss at every step (or time-free) that nothing reads: its gradient is 1, printed so
        read = {r.name for eq in model.equations for r in ast.walk(eq.rhs)
                if isinstance(r, (ast.Ref, ast.At))}
        self.whole = {n for n in self.roots if n not in read}
        rules = g.rules
        # what reaches each name from each equation that reads it, per name
        self.into: dict[str, list[Term]] = {}
        self.param_terms: dict[str, list[Term]] = {}
        for eq in model.equations:
            self._placed: set = set()   # a read twice in one equation (z(t) in a GRU's h) once
            self._end = _end_of(eq, g.where, model)
            for p in rules.pull(eq.rhs, self._own(eq), g.out_node(eq), eq.index):
                self._place(eq, p)
        self.only = None
        if wrt is not None:
            if wrt not in g.params:
                raise RnnGraphError(f"--wrt {wrt!r}: with --matrix, name a parameter (every "
                                    "variable's gradient is printed)")
            self.only = wrt

    def _own(self, eq, index: str | None = None, k: int = 0) -> Term:
        """∇ of what ``eq`` computes; moved k steps back along ``index`` (at t - k)."""
        shape = self.model.shape(eq.name)
        size = tuple(shape) if len(shape) == 2 else shape[0]
        if eq.name in self.whole and size == 1:
            return one()
        if eq.kind == "seq":
            return gradient(eq.name, -k if index == eq.index else 0, eq.index, size, inner=eq.inner)
        return gradient(eq.name, None if eq.kind == "value" else 0, size=size, fixed=eq.kind == "init")

    @staticmethod
    def _indices(eq, p) -> list[str]:
        """The indices ``p``'s term varies over: its equation's, and a sum's inside it."""
        out = [] if eq.kind != "seq" else [eq.index] + ([eq.inner] if eq.inner else [])
        return out + ([p.over] if p.over and p.over not in out else [])

    def _has(self, name: str) -> list[str]:
        """The indices of ``name``'s steps."""
        i = self.model.symbols[name].index
        return [] if i is None else list(i) if isinstance(i, tuple) else [i]

    def _place(self, eq, p) -> None:
        leaf, g = p.leaf, self.graph
        name = leaf.name
        E = self._indices(eq, p) + ([p.across + "'"] if p.across else [])
        if name in g.params:
            self._into(name, _summed(p.term, E, self.where), self.param_terms)
            return
        if p.across:
            j = p.across + "'"
            if eq.rhs.args[0] == ast.Ref(name, 0, index=eq.index, inner=eq.inner) \
                    if isinstance(eq.rhs, ast.Call) and eq.kind == "seq" and \
                    Rules.model_function(eq.rhs.func).across else False:
                self._into(name, self._across(eq, p))       # a(u, t) = softmax_t(e(u, t))
                return
            if isinstance(leaf, ast.Ref) and j in (leaf.index, leaf.inner):
                self._into(name, self._across_read(eq, p, E))
                return
        if isinstance(leaf, ast.At):        # h(end): that step's share, from every step of E
            i = self._has(name)[0]
            term = _summed(p.term, E, self.where, rename={i: self.fresh} if i in E else None)
            self._into(name, _at_step(term, leaf, i, self.where))
            return
        if leaf.offset is None:
            self._into(name, _summed(p.term, E, self.where))
            return
        N = self._has(name)
        if leaf.child is not None:          # h(left(n)): from the parent's equation
            key = (name, leaf.child, p.over, p.across)
            if key in self._placed:         # both reads are in _from_parent's one term
                return
            self._placed.add(key)
            self._into(name, _summed(self._from_parent(eq, p), [j for j in E if j not in N],
                                          self.where))
            return
        i, k = leaf.index, leaf.offset
        key = (name, k, i, leaf.inner, p.over, p.across)
        if key in self._placed:         # the other read is found on pulling again, below
            return
        self._placed.add(key)
        if k and i == eq.inner:
            raise g.rules.unsupported(leaf, "a read moved along a value's second index")
        # read at t + k by the equation (or the summand) at t: what reaches h(t) comes from
        # step t - k, the equation moved by -k steps
        rhs = shifted(eq.rhs, -k, i)
        out = g.out_node(eq, k if i == eq.index else 0)
        for q in g.rules.pull(rhs, self._own(eq, i, k), out, eq.index):
            r = q.leaf
            if isinstance(r, ast.Ref) and r.name == name and r.offset == 0 and r.index == i \
                    and r.inner == leaf.inner and r.child is None and q.over == p.over \
                    and q.across == p.across:
                term = _within(q.term, i, k, self.where)
                self._into(name, _summed(term, [j for j in E if j not in N], self.where))

    def _into(self, name: str, term: Term, table: dict | None = None) -> None:
        """``term`` reaches ``name`` (a parameter's, into ``table``): evaluated where ``end``
        is the last step of its equation's index, as the compiled model reads it."""
        end, fn = self._end, term.fn
        if end is not None:
            term = Term(term.text, term.latex, term.prec, lambda v: v.at_steps(fn, {"end": end}),
                        term.size, term.one, term.sigma)
        (self.into if table is None else table).setdefault(name, []).append(term)

    def _from_parent(self, eq, p) -> Term:
        """What reaches tree node h(n) through its parent p's read h(left(p))."""
        n, side = p.leaf.index, p.leaf.child
        pv = self.where.parents[n]
        rhs = renamed(eq.rhs, n, pv)
        own = gradient(eq.name, 0, pv, self.model.shape(eq.name)[0])
        terms = [q.term for q in self.graph.rules.pull(rhs, own, ast.Ref(eq.name, 0, index=pv))
                 if isinstance(q.leaf, ast.Ref) and q.leaf.name == p.leaf.name and
                 q.leaf.child == side and q.over == p.over]
        term = total(terms)
        fn, where = term.fn, self.where

        def evaluate(v):
            return sum((v.at_steps(fn, {pv: up}) for up in where.parents_of(n, v.at[n], side)), 0.0)
        return Term(f"Σ_{{{pv}: {side}({pv}) = {n}}} {_br(term, HADAMARD)}",
                    rf"\sum_{{{pv}:\, \operatorname{{{side}}}({pv}) = {n}}} {_br(term, HADAMARD, True)}",
                    1, evaluate, term.size, sigma=True)

    def _across_read(self, eq, p, E: list[str]) -> Term:
        """What reaches e(u, t) read as e(u, t') inside softmax_t's argument, from the
        equation at every step s of t: its term with t written s and t' written t."""
        i, leaf = p.across, p.leaf
        j = i + "'"
        if leaf.offset and leaf.index == j:
            raise self.graph.rules.unsupported(leaf, "a read moved along t inside softmax_t()")
        fn, where = p.term.fn, self.where
        t_ = re.compile(rf"(?<![A-Za-z0-9_\\]){re.escape(i)}(?![A-Za-z0-9_'])")
        t_mark = re.compile(rf"(?<![A-Za-z0-9_\\]){re.escape(i)}'")

        var = self.fresh

        def moved(text):
            return t_mark.sub(i, t_.sub(var, text))

        def evaluate(v):
            return sum((v.at_steps(fn, {i: r, j: v.at[i]}) for r in range(1, where.lengths[i] + 1)),
                       0.0)
        body = p.term
        term = Term(f"Σ_{var} {moved(_br(body, HADAMARD))}",
                    rf"\sum_{{{var}}} {moved(_br(body, HADAMARD, True))}", 1, evaluate,
                    body.size, sigma=True)
        N = self._has(leaf.name)
        return _summed(term, [x for x in E if x not in (i, j) and x not in N], self.where)

    def _across(self, eq, p) -> Term:
        """a(u, t) = softmax_t(e(u, t)): ∇_e(u, t) L = a(u, t) (∇_a(u, t) L - Σ_t' a(u, t')
        ∇_a(u, t') L), the softmax's Jacobian across the steps of t."""
        i = p.across
        a = self.graph.rules.value(self.graph.out_node(eq))
        ga = self._own(eq)
        j = i + "'"
        other = lambda s: s.replace(f", {i})", f", {j})").replace(f",{i})", f",{j})")  # noqa: E731
        n = self.where

        def evaluate(v):
            weighted = sum((v.at_steps(lambda w: a.fn(w) * ga.fn(w), {i: r})
                            for r in range(1, n.lengths[i] + 1)), 0.0)
            return a.fn(v) * (ga.fn(v) - weighted)
        if a.size == 1:
            text = f"{a.text} ({ga.text} - Σ_{j} {other(a.text)} {other(ga.text)})"
            latex = (rf"{a.latex} \left({ga.latex} - \sum_{{{j}}} {other(a.latex)}\, "
                     rf"{other(ga.latex)}\right)")
        else:                               # a weight per unit: entry by entry
            text = f"{a.text} ⊙ ({ga.text} - Σ_{j} {other(a.text)} ⊙ {other(ga.text)})"
            latex = (rf"{a.latex} \odot \left({ga.latex} - \sum_{{{j}}} {other(a.latex)} \odot "
                     rf"{other(ga.latex)}\right)")
        return Term(text, latex, PRODUCT, evaluate, a.size)

    def _names(self) -> list[str]:
        """The variables whose gradient is printed: from the loss back, the inputs left out."""
        order = [eq.name for eq in self.model.equations]
        return [n for n in reversed(list(dict.fromkeys(order)))]

    def _lhs(self, n: str) -> Term:
        N = self._has(n)
        if len(N) == 2:
            return gradient(n, 0, N[0], inner=N[1])
        return gradient(n, 0 if N else None, N[0] if N else "t")

    def _rows(self, latex: bool) -> list[tuple[str, str]]:
        rows = []
        for n in self._names():
            lhs = self._lhs(n)
            lhs = lhs.latex if latex else lhs.text
            terms = self.into.get(n, [])
            if n in self.roots:             # the loss's own: 1, or ∂L/∂y(t) for a vector
                at = self._lhs(n).text[2:-2]
                lat = self._lhs(n).latex[len(r"\nabla_{"):-len("} L")]
                own = "1" if self.model.shape(n)[0] == 1 else \
                    (rf"\frac{{\partial L}}{{\partial {lat}}}" if latex else f"∂L/∂{at}")
                terms = [Term(own, own, 3, None)] + terms
            rhs = total(terms)
            rows.append((lhs, rhs.latex if latex else rhs.text))
        for w, terms in self.param_terms.items():
            if self.only not in (None, w):
                continue
            lhs = rf"\nabla_{{{latex_name(w)}}} L" if latex else f"∇_{w} L"
            rhs = total(terms)
            rows.append((lhs, rhs.latex if latex else rhs.text))
        return rows

    def _header(self, latex: bool) -> str:
        parts = []
        for n in dict.fromkeys(x.name for x in self.losses):
            N = self._has(n)
            at = self._lhs(n)
            if latex:
                parts.append("".join(rf"\sum_{{{i}}} " for i in N) +
                             (at.latex[len(r"\nabla_{"):-len("} L")] if N else latex_name(n)))
            else:
                parts.append("".join(f"Σ_{i} " for i in N) + (at.text[2:-2] if N else n))
        return " + ".join(parts)

    def _outside(self) -> str:
        used = [i for i in self._all_indices() if any(
            i in self._has(n) for n in self.model.symbols if self.model.symbols[n].timed)]
        if len(used) > 1 or any(i in self.where.trees for i in used):
            steps = ", ".join(f"{i} = 1..{self.where.lengths[i]}" for i in used)
            return f"a term of an equation at a step outside {steps} is zero" + \
                "".join(f"; {line}" for line in _tree_lines(self.where)) + self._epsilon()
        return "a term of an equation at a step outside 1..τ is zero" + self._epsilon()

    def _epsilon(self) -> str:
        uses = any(isinstance(n, ast.Call) and n.func == "cosine"
                   for eq in self.model.equations for n in ast.walk(eq.rhs))
        return f"; ε = {EPS:g} (cosine's, as compiled)" if uses else ""

    def _all_indices(self) -> list[str]:
        return ["t"] + [d.name for d in self.model.program.indices]

    def text(self) -> str:
        rows = self._rows(False)
        width = max(len(h) for h, _ in rows)
        head = f"L = {self._header(False)}; {self._outside()}\n"
        return head + "\n".join(f"{h:>{width}} = {t}" for h, t in rows) + "\n"

    def latex(self) -> str:
        rows = [f"L &= {self._header(True)}"] + [f"{h} &= {t}" for h, t in self._rows(True)]
        return "".join(f"% {line}\n" for line in _tree_lines(self.where)) + \
            "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n"

    def _env(self, name: str, step) -> dict:
        N = self._has(name)
        if step is None or step == 0 and not N:
            return {}
        end = {"end": self.where.lengths[N[0]]}
        return {**dict(zip(N, step)), **end} if isinstance(step, tuple) else {N[0]: step, **end}

    def gradients(self, values: Values) -> dict:
        """Every printed gradient evaluated on ``values``: {Node: array} for each variable at
        each step (and its initial value), each parameter."""
        seeds = self._seeds(values, self.losses)
        memo: dict[tuple, np.ndarray] = {}
        model, where = self.model, self.where

        def inside(name, step) -> bool:
            n = where.of(name)
            if step is None:
                return True
            if isinstance(step, tuple):
                return all(1 <= k <= m for k, m in zip(step, n))
            return -n <= step <= n + 1

        def grad(name, step):
            key = (name, step)
            if key in memo:
                return memo[key]
            size = model.shape(name)
            def reaching(v):
                s = seeds.get(Node(name, step)) if name in self.roots else None
                out = np.zeros((values.batch, *size)) if s is None else s
                for term in self.into.get(name, []):
                    out = out + term.fn(v)
                return out
            if not inside(name, step):
                out = np.zeros((values.batch, *size))
            else:
                out = values.at_steps(reaching, self._env(name, step), replace=True)
            memo[key] = out
            return out

        values.gradient = grad
        for node in reversed(self.graph.order()):    # what reads a value before the value
            if node.name not in values.params:
                grad(node.name, node.step)
        out = {}
        for n, sym in model.symbols.items():
            if sym.role == "parameter":
                continue
            steps = where.of(n)
            if isinstance(steps, tuple):
                for u in range(1, steps[0] + 1):
                    for t in range(1, steps[1] + 1):
                        out[Node(n, (u, t))] = grad(n, (u, t))
            elif sym.timed:
                for s in range(self._first(values, n), steps + 1):
                    out[Node(n, s)] = grad(n, s)
            else:
                out[Node(n)] = grad(n, None)
        for w, terms in self.param_terms.items():
            total_ = values.at_steps(lambda v: sum(t.fn(v) for t in terms), {}, replace=True)
            out[Node(w)] = _shaped(total_, values, Node(w))
        return out

    @staticmethod
    def _first(values: Values, name: str) -> int:
        """The earliest step of ``name`` given as an initial value (h(-1) for h(t-2)), or 0."""
        steps = [int(k[len(name) + 1:-1]) for k in values.initial if k.startswith(name + "(")]
        return min([0] + steps)

    def check(self, seed: int = 0, batch: int = 2) -> float:
        """The largest relative difference, over the parameters, the inputs and the initial
        values, between the printed gradients, evaluated, and the compiled model's (relative
        to the largest of them where one is zero)."""
        values = Values(self.model, self.steps, batch, seed)
        mine = self.gradients(values)
        grads = self._compiled(values, self._seeds(values, self.losses))
        pairs = []
        for node, g in mine.items():
            initial = isinstance(node.step, int) and node.step <= 0
            if initial and f"{node.name}({node.step})" not in grads:
                continue
            ref = self._reference(values, grads, node) if (
                node.name in values.params or node.name in values.inputs or initial) else None
            if ref is not None:
                pairs.append((g, ref))
        # a gradient that is zero is rounding alone, about 1e-16 of the terms that cancel in
        # it, which are of the others' size: compared with 1e-4 of the largest, its rounding
        # stays far under the 1e-10 a check is held to, and a real error far above it
        scale = 1e-4 * max((float(np.max(np.abs(r), initial=0)) for _, r in pairs), default=0)
        self.against = "the compiled gradient"
        return max((_difference(g, r, scale) for g, r in pairs), default=0.0)


def _end_of(eq, where: Steps, model):
    """What ``end`` is in ``eq``: the last step of its index, or of the index a time-free
    value sums over (J = sum_t(...)); None where it has none."""
    if eq.kind == "seq":
        return where.lengths[eq.index]
    over = model.symbols[eq.name].over
    return where.lengths[over] if over else None


def _tree_lines(where: Steps) -> list[str]:
    """What a tree's node numbers are: its leaves, and each inner node's children."""
    out = []
    for i, tree in where.trees.items():
        if i in where.parents.values():
            continue
        inner = ", ".join(f"{k}: ({a + 1}, {b + 1})" for k, (a, b) in enumerate(tree.children, 1)
                          if max(a, b) >= 0)
        out.append(f"the tree over {i}: leaves 1..{tree.leaves}, then each node's children "
                   f"(left, right) {inner}; {tree.nodes} the root")
    return out


def _within(term: Term, index: str, k: int, where: Steps) -> Term:
    """``term``, from the equation k steps on along ``index``, which exists only for steps
    1..τ of it."""
    fn = term.fn
    return Term(term.text, term.latex, term.prec,
                lambda v: fn(v) if 1 <= v.at[index] - k <= where.lengths[index] else 0.0,
                term.size, term.one)


def _at_step(term: Term, leaf, index: str, where: Steps) -> Term:
    """``term`` where a read is of one step (h(end), h(root)): at that step only, [t = τ]
    (...)."""
    fn = term.fn
    step = leaf.step
    if getattr(leaf, "root", False):
        text, latex = "root", r"\operatorname{root}"
    else:
        text, latex = ("τ", r"\tau") if step == "end" else (str(step), str(step))
        if step == "end" and index != "t":
            text, latex = f"τ_{index}", rf"\tau_{{{index}}}"
    last = where.lengths[index] if step == "end" else int(step)
    return Term(f"[{index} = {text}] {_br(term, HADAMARD)}",
                rf"[{index} = {latex}]\, {_br(term, HADAMARD, True)}", 2,
                lambda v: fn(v) if v.at[index] == last else 0.0, term.size)


def _summed(term: Term, indices: list[str], where: Steps, rename: dict | None = None) -> Term:
    """Σ_t term over each of ``indices``: a parameter's (or a time-free value's) share from
    an equation over t; an index in ``rename`` written so (Σ_s, inside [t = τ], where t
    is taken)."""
    for i in reversed(indices):
        term = _over(term, i, (rename or {}).get(i, i), where)
    return term


def _over(term: Term, index: str, var: str, where: Steps) -> Term:
    fn = term.fn
    if var != index:
        pattern = re.compile(rf"(?<![A-Za-z0-9_\\]){re.escape(index)}(?![A-Za-z0-9_])")
        term = Term(pattern.sub(var, term.text), pattern.sub(var, term.latex), term.prec, fn,
                    term.size)

    def evaluate(v):                    # end: its equation's, else the summed index's last
        n = where.lengths[index]
        return sum((v.at_steps(fn, {index: s, "end": v.at.get("end", n)}) for s in range(1, n + 1)), 0)

    text = term.text if term.prec > 1 or term.sigma else f"({term.text})"
    latex = term.latex if term.prec > 1 or term.sigma else rf"\left({term.latex}\right)"
    return Term(f"Σ_{var} {text}", rf"\sum_{{{var}}} {latex}", 1, evaluate, term.size, sigma=True)


def derive(model, wrt: str | None = None, loss: str | None = None, steps: int = 2,
           form: str = "paths") -> Derivation:
    """The chain rule for ``model``, printed and evaluable.

    Parameters
    ----------
    model : Model
    wrt : str
        What to differentiate with respect to: a parameter ``W``, an input or a state at a
        step ``x(1)``, ``h(0)``.  For ``form="matrix"``, optional: only that parameter's line.
    loss : str, optional
        The loss: a variable (every step of a sequence, summed) or one step, ``E(2)``; by
        default the model's losses.
    steps : int
        τ, the steps unrolled.
    form : {"paths", "matrix"}

    Examples
    --------
    >>> import rnngraph
    >>> m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\\ny(t) = softmax(V h(t))\\n"
    ...                    "L(t) = cross_entropy(y(t), d(t))", sizes={"x": 2, "h": 3, "y": 2})
    >>> print(derive(m, wrt="W", loss="L(2)"), end="")
    ∂L(2)/∂W = ∂L(2)/∂y(2) ∂y(2)/∂h(2) ∂h(2)/∂W
             + ∂L(2)/∂y(2) ∂y(2)/∂h(2) ∂h(2)/∂h(1) ∂h(1)/∂W
    >>> derive(m, wrt="W", loss="L(2)").check() < 1e-12
    True
    """
    if form == "paths":
        if wrt is None:
            raise RnnGraphError("say what to differentiate with respect to: --wrt W (a "
                                "parameter) or --wrt x(1) (a value at a step)")
        return Paths(model, wrt, loss, steps)
    if form == "matrix":
        return Matrix(model, loss, steps, wrt)
    raise ValueError(f"form {form!r}: 'paths' or 'matrix'")


__all__ = ["Derivation", "Matrix", "Node", "Paths", "derive"]
