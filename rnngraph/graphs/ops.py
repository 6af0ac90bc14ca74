"""One step of a model as a graph of primitive operations, for ``draw --detail ops``.

Each equation's expression becomes its operations (the matrix product of a weight
and a vector, +, *, tanh, a concatenation, ...) as the file writes them: no
rewrite, no loss fused with its softmax, which is what a diagram should show.
The compiler's IR (rnngraph/compile/program.py) is the other view of the same
equations, made for computing.
"""
from __future__ import annotations

import networkx as nx

from ..lang import ast
from ..lang.printing import number_text, time_text
from ..check.analysis import reduction, step_order

BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}


def _operation(node) -> tuple[str, tuple]:
    """The op and the argument nodes of ``node``'s outermost operation."""
    if isinstance(node, ast.Binary):
        return BINARY_OPS[node.op], (node.left, node.right)
    if isinstance(node, ast.Neg):
        return "neg", (node.operand,)
    if isinstance(node, ast.Transpose):
        return "transpose", (node.operand,)
    if isinstance(node, ast.Call):
        return node.func, tuple(node.args)
    if isinstance(node, ast.Concat):
        return "concat", tuple(node.items)
    return "copy", (node,)                 # an equation whose right side is a name or number


class _Graph:
    def __init__(self, model):
        self.model = model
        self.g = nx.DiGraph()
        self.ops = self.consts = 0
        self.defined: dict[str, str] = {}     # a variable -> the node of its value

    def source(self, node, block: str) -> str:
        """The node that gives ``node``'s value: its operation's, or a leaf's."""
        if isinstance(node, ast.Num):
            self.consts += 1
            src = f"const{self.consts}"
            self.g.add_node(src, kind="const", value=node.value, label=number_text(node.value))
            return src
        if isinstance(node, ast.Step):                      # t, end: a number at each step
            self.consts += 1
            src = f"const{self.consts}"
            self.g.add_node(src, kind="const", value=None, label="τ" if node.name == "end" else node.name)
            return src
        if isinstance(node, ast.At):                        # h(end): a read, as h(t-1) is
            src = f"{node.name}({node.step})"
            self.g.add_node(src, kind="read", name=node.name, label=src, step=node.step)
            return src
        if isinstance(node, ast.Ref):
            role = self.model.symbols[node.name].role
            if role != "parameter" and role != "input" and not node.offset \
                    and node.name in self.defined:
                return self.defined[node.name]              # defined this step (or time-free)
            # else a read: an input, a parameter, another step, or a sum over the steps
            # that an initial value reads before the steps (drawn as a read of it)
            src = node.name if node.offset is None else f"{node.name}({time_text(node.offset)})"
            self.g.add_node(src, kind="param" if role == "parameter" else "read",
                            name=node.name, label=src)
            return src
        return self.operation(node, block, None)

    def operation(self, node, block: str, defines: str | None) -> str:
        op, args = _operation(node)
        # the operations an argument needs first; then this one; then its leaves, in order
        # (the order of the nodes is the order of the SVG's elements: kept stable)
        inner = {k: self.operation(a, block, None) for k, a in enumerate(args)
                 if not isinstance(a, (ast.Num, ast.Ref, ast.At, ast.Step))}
        self.ops += 1
        op_id = f"op{self.ops}"
        self.g.add_node(op_id, kind="op", op=op, defines=defines, block=block, label=op)
        for k, a in enumerate(args):
            src = inner[k] if k in inner else self.source(a, block)
            self.g.add_edge(src, op_id, arg=k)
        return op_id

    def equation(self, eq, block: str) -> None:
        target = f"{eq.name}(0)" if eq.kind == "init" else eq.name
        op_id = self.operation(eq.rhs, block, eq.name)
        var = target if block == "once" else f"{target}(t)"
        self.g.add_node(var, kind="var", name=eq.name, label=var)
        self.g.add_edge(op_id, var, arg=0)
        self.defined[target] = var


def op_graph(model) -> nx.DiGraph:
    """One node per primitive operation, plus a node per value that enters or leaves.

    Node ids are sequential: ``op1``, ``op2``, ... for operations (attributes
    ``kind="op"``, ``op``, ``defines``, ``block``: "once" for time-free values and
    initial values, "step" for the rest), in the order a step computes them;
    ``h1(t)`` / ``h1`` for the variables the model defines (``kind="var"``),
    ``x(t)``, ``h1(t-1)`` for reads (``kind="read"``), ``U`` for parameters
    (``kind="param"``) and ``const1``, ... for numbers (``kind="const"``).
    Edges carry ``arg``, the argument position they feed.

    Examples
    --------
    >>> from rnngraph import parse
    >>> g = parse("h(t) = tanh(W h(t-1) + U x(t))").op_graph()
    >>> [g.nodes[n]["op"] for n in g if g.nodes[n]["kind"] == "op"]
    ['matmul', 'matmul', 'add', 'tanh']
    """
    graph = _Graph(model)
    ordered = step_order(model)
    once = [e for e in ordered if e.kind != "seq" and not reduction(e)] + \
        [e for e in model.equations if e.kind == "init"]
    for eq in once:
        graph.equation(eq, "once")
    for eq in ordered:                    # a sum over the steps adds up what each step gives
        if eq.kind == "seq" or reduction(eq):
            graph.equation(eq, "step")
    return graph.g
