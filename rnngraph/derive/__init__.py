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

Covered: models over one index t (states forward and backward in time, delays, output
feedback, sums over the steps, reads of the last step, time-free values); not yet several
indices (attention), trees, matrix-valued states.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import networkx as nx
import numpy as np

from ..errors import RnnGraphError
from ..lang import ast
from ..lang.names import latex_name
from .calculus import Pulled, Rules, Term, Unsupported, given, gradient, one, shifted, total
from .values import Values

#: More terms than this is no longer a derivation anyone reads: the matrix form is shorter.
MAX_TERMS = 256


@dataclass(frozen=True)
class Node:
    """A value in the unrolled graph: ``name`` at ``step`` (None: time-free, or a parameter)."""

    name: str
    step: int | None = None

    def text(self) -> str:
        return self.name if self.step is None else f"{self.name}({self.step})"

    def latex(self) -> str:
        return latex_name(self.name, None if self.step is None else f"({self.step})")


def _partial(a: Node, b: Node, latex: bool) -> str:
    if latex:
        return rf"\frac{{\partial {a.latex()}}}{{\partial {b.latex()}}}"
    return f"∂{a.text()}/∂{b.text()}"


class _Graph:
    """The unrolled equations of ``model`` over ``steps`` steps: what each value reads."""

    def __init__(self, model, steps: int):
        _supported(model)
        for eq in model.equations:
            for r in ast.walk(eq.rhs):
                if isinstance(r, ast.At) and r.step != "end" and int(r.step) > steps:
                    line, col = r.pos
                    raise RnnGraphError(f"{r.name}({r.step}) is read: unroll at least {r.step} "
                                        "steps", model.source.location(line, col))
        self.model, self.steps = model, steps
        self.rules = Rules(model, model.source)
        self.eqs = {(eq.name, eq.kind): eq for eq in model.equations}
        self.params = set(model.param_shapes)
        self._reads_of: dict[Node, list[Node]] = {}
        self._order: list[Node] | None = None

    def equation(self, node: Node):
        """The equation that computes ``node``, or None for a leaf (an input, a parameter,
        an initial value given or zero)."""
        if node.step is None:
            return self.eqs.get((node.name, "value"))
        if 1 <= node.step <= self.steps:
            return self.eqs.get((node.name, "seq"))
        return self.eqs.get((node.name, "init")) if node.step == 0 else None

    def out_node(self, eq, k: int = 0):
        return {"seq": ast.Ref(eq.name, -k), "value": ast.Ref(eq.name, None),
                "init": ast.At(eq.name, 0)}[eq.kind]

    def pulled(self, node: Node, g: Term):
        """What ``node``'s equation passes back from its gradient g: (read node, the step its
        term is evaluated at, the term)."""
        eq = self.equation(node)
        out = []
        for p in self.rules.pull(eq.rhs, g, self.out_node(eq)):
            for read, at in self._reads(p, node):
                out.append((read, at, p.term))
        return out

    def _reads(self, p, node: Node):
        leaf, s = p.leaf, node.step
        if p.over and (leaf.name in self.params or not isinstance(leaf, ast.Ref)
                       or leaf.offset is None):
            # inside sum_t, a parameter, a time-free value or h(end): read at every step
            one = self._reads(Pulled(leaf, p.term), node)[0][0]
            return [(one, r) for r in range(1, self.steps + 1)]
        if leaf.name in self.params:
            return [(Node(leaf.name), s)]
        if isinstance(leaf, ast.At):
            return [(Node(leaf.name, self.steps if leaf.step == "end" else int(leaf.step)), s)]
        if leaf.offset is None:
            return [(Node(leaf.name), s)]
        if p.over:                          # inside sum_t: the read at every step
            return [(Node(leaf.name, r + leaf.offset), r) for r in range(1, self.steps + 1)]
        return [(Node(leaf.name, s + leaf.offset), s)]

    def reads(self, node: Node) -> list[Node]:
        if node not in self._reads_of:
            self._reads_of[node] = list(dict.fromkeys(r for r, _, _ in self.pulled(node, one())))
        return self._reads_of[node]

    def computed(self) -> list[Node]:
        """Every value an equation computes over the steps."""
        out = []
        for (name, kind) in self.eqs:
            steps = {"seq": range(1, self.steps + 1), "value": [None], "init": [0]}[kind]
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
                values.step = at
                result = result + term.fn(values)
        return result


def _supported(model) -> None:
    src = model.source
    for d in model.program.indices:
        line, col = d.pos
        raise Unsupported("derivations cover models over one index t; not yet "
                          f"{'a tree' if d.tree else 'several indices'} ({d.name})",
                          src.location(line, col))
    for n, s in model.symbols.items():
        if s.role != "parameter" and len(model.shape(n)) == 2:
            line, col = s.pos
            raise Unsupported(f"derivations do not cover matrix-valued variables ({n}) yet",
                              src.location(line, col))


_NODE = re.compile(r"\s*([^\s()]+)\s*(?:\(\s*(end|τ|-?\d+)\s*\))?\s*")


def _node(model, text: str, steps: int, what: str) -> Node | list[Node]:
    """``W``, ``x(2)``, ``h(0)``, ``h(-1)`` (an initial value), ``L`` (every step of a
    sequence), ``h(end)``."""
    m = _NODE.fullmatch(text)
    if not m or m.group(1) not in model.symbols:
        known = ", ".join(sorted(model.symbols))
        raise RnnGraphError(f"{what} {text!r}: not a name of the model (it has {known})")
    name, step = m.group(1), m.group(2)
    sym = model.symbols[name]
    if step is None:
        if sym.timed:
            return [Node(name, s) for s in range(1, steps + 1)]
        return Node(name)
    if not sym.timed:
        raise RnnGraphError(f"{what} {text!r}: {name} has no steps")
    k = steps if step in ("end", "τ") else int(step)
    # a forward state's initial values are steps 0, -1, ... as far back as it is read
    first = min([1] + [int(key[len(name) + 1:-1]) for key in model.initial_slots
                       if key.startswith(name + "(")]) if sym.direction == "forward" else 1
    if not first <= k <= steps:
        initial = f" ({first}..0: its initial values)" if first < 1 else ""
        raise RnnGraphError(f"{what} {text!r}: the step is outside {first}..{steps}{initial}")
    return Node(name, k)


def _losses(model, loss: str | None, steps: int) -> list[Node]:
    if loss is not None:
        found = _node(model, loss, steps, "--loss")
        found = found if isinstance(found, list) else [found]
        name = found[0].name
        if not any(eq.name == name and eq.kind != "init" for eq in model.equations):
            raise RnnGraphError(f"--loss {loss!r}: {name} is {'a parameter' if name in model.param_shapes else 'an input'}"
                                "; name a variable an equation computes")
        if any(n.step is not None and n.step < 1 for n in found):
            raise RnnGraphError(f"--loss {loss!r}: a loss is at a step 1..{steps}")
        return found
    read = {r.name for eq in model.equations for r in ast.walk(eq.rhs)
            if isinstance(r, (ast.Ref, ast.At))}
    roots = [n for n, s in model.symbols.items() if s.loss and n not in read]
    if not roots:
        raise RnnGraphError("the model has no loss: name what to differentiate with --loss "
                            "(a variable, or one step of it: --loss y(2))")
    out = []
    for n in roots:
        found = _node(model, n, steps, "--loss")
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
            size = self.model.shape(n.name)[0]
            out[n] = np.ones((values.batch, 1)) if size == 1 else rng.normal(0, 1, (values.batch, size))
        return out

    def _compiled(self, values: Values, seeds) -> dict:
        """The compiled model's gradients of L = Σ seed · loss node."""
        cot = {}
        for n, s in seeds.items():
            if n.step is None:
                cot[n.name] = s
            else:
                arr = cot.setdefault(n.name, np.zeros(values.outputs[n.name].shape))
                arr[n.step - 1] = s
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
        self.losses = _losses(model, loss, steps)
        target = _node(model, wrt, steps, "--wrt")
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
            raise RnnGraphError(f"{n_terms} paths from {target.text()} to the loss over {steps} "
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
        return "\n".join(f"{h:>{width}} = {t}" if h else f"{'':>{width}} {t}"
                         for h, t in rows) + "\n"

    def latex(self) -> str:
        rows = [f"{h} &= {t}" if h else rf"&\quad {t}" for h, t in self._lines(True)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n"

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
        ref = self._reference(values, self._compiled(values, seeds), self.wrt)
        self.against = "the compiled gradient"
        if ref is None:
            ref = values.differences(self.graph.order(), self.graph.equation, self.wrt, seeds)
            self.against = f"central differences of the equations run again from {self.wrt.text()}"
        return _difference(mine, ref)


def _shaped(g, values: Values, node: Node):
    """A parameter vector's gradient summed over the examples, as the compiled gives it."""
    if node.name in values.params:
        shape = values.params[node.name].shape
        g = np.asarray(g, dtype=float)
        while g.ndim > len(shape):
            g = g.sum(0)
        return np.broadcast_to(g, shape)
    return np.broadcast_to(g, (values.batch, values.model.shape(node.name)[0]))


def _difference(a, b, scale: float = 0.0) -> float:
    """max |a - b| relative to max |b| (or to ``scale``, where b is far smaller: a gradient
    that is zero is compared with the others' size, not with its own rounding); NaN or Inf in
    either is infinitely far."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return float(np.max(np.abs(a - b), initial=0) / max(np.max(np.abs(b), initial=0), scale, 1e-300))


class Matrix(Derivation):
    """Every gradient of the model, as vectors and matrices (the book's 10.2.2)."""

    form = "matrix"

    def __init__(self, model, loss: str | None = None, steps: int = 3, wrt: str | None = None):
        self.model, self.steps = model, steps
        self.graph = g = _Graph(model, steps)
        self.losses = _losses(model, loss, steps)
        for n in self.losses:
            if model.symbols[n.name].timed and sum(x.name == n.name for x in self.losses) < steps:
                raise RnnGraphError(f"--loss {loss!r}: the matrix form is for a loss at every step "
                                    f"(--loss {n.name}) or a time-free one; for one step, "
                                    "print the paths")
        self.roots = {n.name for n in self.losses}
        # a loss at every step (or time-free) that nothing reads: its gradient is 1, printed so
        read = {r.name for eq in model.equations for r in ast.walk(eq.rhs)
                if isinstance(r, (ast.Ref, ast.At))}
        self.whole = {n for n in self.roots if n not in read and (
            not self.model.symbols[n].timed or sum(x.name == n for x in self.losses) == steps)}
        rules = g.rules
        # what reaches each name from each equation that reads it, per name
        self.into: dict[str, list[Term]] = {}
        self.param_terms: dict[str, list[Term]] = {}
        for eq in model.equations:
            placed = set()              # a read twice in one equation (z(t) in a GRU's h) once
            for p in rules.pull(eq.rhs, self._own(eq, 0), g.out_node(eq)):
                key = (p.leaf.name, getattr(p.leaf, "offset", None), p.over)
                if (eq.kind == "seq" or p.over) and isinstance(p.leaf, ast.Ref) \
                        and p.leaf.offset is not None:
                    if key in placed:
                        continue
                    placed.add(key)
                self._place(eq, p)
        self.only = None
        if wrt is not None:
            if wrt not in g.params:
                raise RnnGraphError(f"--wrt {wrt!r}: with --matrix, name a parameter (every "
                                    "variable's gradient is printed)")
            self.only = wrt

    def _own(self, eq, k: int) -> Term:
        """∇ of what ``eq`` computes, at t - k for an equation over t."""
        size = self.model.shape(eq.name)[0]
        if eq.name in self.whole and size == 1:
            return one()
        if eq.kind == "seq":
            return gradient(eq.name, -k, size=size)
        return gradient(eq.name, None if eq.kind == "value" else 0, size=size, fixed=eq.kind == "init")

    def _place(self, eq, p) -> None:
        leaf, g = p.leaf, self.graph
        name = leaf.name
        if name in g.params:
            term = p.term
            if eq.kind == "seq" or p.over:
                term = _over_steps(term)
            self.param_terms.setdefault(name, []).append(term)
            return
        if (eq.kind == "seq" or p.over) and isinstance(leaf, ast.Ref) and leaf.offset is not None:
            # read at t + k by the equation (or the summand of sum_t) at t: what reaches h(t)
            # comes from step t - k, the equation moved by -k steps
            k = leaf.offset
            for q in g.rules.pull(shifted(eq.rhs, -k), self._own(eq, k), g.out_node(eq, k)):
                if isinstance(q.leaf, ast.Ref) and q.leaf.name == name and q.leaf.offset == 0 \
                        and q.over == p.over:
                    self.into.setdefault(name, []).append(_within(q.term, k, self.steps))
            return
        if isinstance(leaf, ast.At):        # h(end): the step's share, from every step of a sequence
            term = _over_steps(p.term, "s") if eq.kind == "seq" or p.over else p.term
            self.into.setdefault(name, []).append(_at_step(term, leaf.step))
            return
        if leaf.offset is None:
            self.into.setdefault(name, []).append(_over_steps(p.term) if eq.kind == "seq" or p.over
                                                  else p.term)
            return
        raise g.rules.unsupported(leaf, "this read")

    def _names(self) -> list[str]:
        """The variables whose gradient is printed: from the loss back, the inputs left out."""
        order = [eq.name for eq in self.model.equations]
        return [n for n in reversed(list(dict.fromkeys(order)))]

    def _rows(self, latex: bool) -> list[tuple[str, str]]:
        rows = []
        for n in self._names():
            sym = self.model.symbols[n]
            lhs = gradient(n, 0 if sym.timed else None)
            lhs = lhs.latex if latex else lhs.text
            terms = self.into.get(n, [])
            if n in self.roots:             # the loss's own: 1, or ∂L/∂y(t) for a vector
                own = "1" if self.model.shape(n)[0] == 1 else \
                    (rf"\frac{{\partial L}}{{\partial {latex_name(n, '(t)')}}}" if latex else f"∂L/∂{n}(t)")
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
            timed = self.model.symbols[n].timed
            if latex:
                parts.append(rf"\sum_{{t}} {latex_name(n, '(t)')}" if timed else latex_name(n))
            else:
                parts.append(f"Σ_t {n}(t)" if timed else n)
        return " + ".join(parts)

    def text(self) -> str:
        rows = self._rows(False)
        width = max(len(h) for h, _ in rows)
        head = f"L = {self._header(False)}; a term of an equation at a step outside 1..τ is zero\n"
        return head + "\n".join(f"{h:>{width}} = {t}" for h, t in rows) + "\n"

    def latex(self) -> str:
        rows = [f"L &= {self._header(True)}"] + [f"{h} &= {t}" for h, t in self._rows(True)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n"

    def gradients(self, values: Values) -> dict:
        """Every printed gradient evaluated on ``values``: {Node: array} for each variable at
        each step (and its initial value), each parameter."""
        seeds = self._seeds(values, self.losses)
        memo: dict[tuple, np.ndarray] = {}
        model, T = self.model, self.steps

        def grad(name, step):
            key = (name, step)
            if key in memo:
                return memo[key]
            size = model.shape(name)[0]
            if step is not None and not (-T <= step <= T + 1):
                out = np.zeros((values.batch, size))
            else:
                saved = values.step
                values.step = step
                try:
                    s = seeds.get(Node(name, step)) if name in self.roots else None
                    out = np.zeros((values.batch, size)) if s is None else s
                    for term in self.into.get(name, []):
                        out = out + term.fn(values)
                finally:
                    values.step = saved
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
            if sym.timed:
                for s in range(self._first(values, n), T + 1):
                    out[Node(n, s)] = grad(n, s)
            else:
                out[Node(n)] = grad(n, None)
        for w, terms in self.param_terms.items():
            values.step = None
            out[Node(w)] = _shaped(sum(t.fn(values) for t in terms), values, Node(w))
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
            initial = node.step is not None and node.step <= 0
            if initial and f"{node.name}({node.step})" not in grads:
                continue
            ref = self._reference(values, grads, node) if (
                node.name in values.params or node.name in values.inputs or initial) else None
            if ref is not None:
                pairs.append((g, ref))
        scale = 1e-6 * max((float(np.max(np.abs(r), initial=0)) for _, r in pairs), default=0)
        self.against = "the compiled gradient"
        return max((_difference(g, r, scale) for g, r in pairs), default=0.0)


def _within(term: Term, k: int, steps: int) -> Term:
    """``term``, from the equation at step t - k, which exists only for t - k in 1..τ."""
    fn = term.fn
    return Term(term.text, term.latex, term.prec,
                lambda v: fn(v) if 1 <= v.step - k <= steps else 0.0, term.size, term.one)


def _at_step(term: Term, step) -> Term:
    """``term`` where a read is of one step (h(end)): at that step only, [t = τ] (...)."""
    fn = term.fn
    text, latex = ("τ", r"\tau") if step == "end" else (str(step), str(step))
    body = term.text if term.prec > 1 else f"({term.text})"
    lbody = term.latex if term.prec > 1 else rf"\left({term.latex}\right)"
    return Term(f"[t = {text}] {body}", rf"[t = {latex}]\, {lbody}", 2,
                lambda v: fn(v) if v.step == (v.steps if step == "end" else int(step)) else 0.0,
                term.size)


_T = re.compile(r"(?<![A-Za-z0-9_\\])t(?![A-Za-z0-9_])")


def _over_steps(term: Term, var: str = "t") -> Term:
    """Σ_t term: a parameter's (or a time-free value's) share from an equation over t; with
    ``var`` s, written Σ_s over s (inside [t = τ], where t is taken)."""
    fn = term.fn
    if var != "t":
        term = Term(_T.sub(var, term.text), _T.sub(var, term.latex), term.prec, fn, term.size)

    def evaluate(v):
        saved, out = v.step, 0
        try:
            for s in range(1, v.steps + 1):
                v.step = s
                out = out + fn(v)
        finally:
            v.step = saved
        return out

    text = term.text if term.prec > 1 else f"({term.text})"
    latex = term.latex if term.prec > 1 else rf"\left({term.latex}\right)"
    return Term(f"Σ_{var} {text}", rf"\sum_{{{var}}} {latex}", 1, evaluate, term.size)


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
