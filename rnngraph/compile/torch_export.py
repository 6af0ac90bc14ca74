"""The forward program printed as PyTorch: a module whose gradients are autograd's.

``rnngraph export FILE --to torch`` and :meth:`rnngraph.Model.to_torch` (issue 21): the
plain path's forward program (the equations as written, one loop per recurrence), each op in
torch, each sequence a Python list of the steps' tensors (a tensor written step by step in
place would break autograd: a step reads the one before, which the next write changes).
PyTorch's autograd gives the backward pass, so a model written as equations trains with
torch's optimizers, on any device and dtype.  Verified against the NumPy compile: outputs and
every gradient of every example that exports (tests/test_export.py).

Attention: a value over two indices, e(u, t), holds at each u a (T, B, n) tensor of every
step t; a read of a whole sequence over t is the stack of its steps.  Over a tree's nodes
(tree n), a level's nodes are gathered from the list and their values scattered back; the
tree's structure comes from rnngraph (rnngraph/graphs/trees.py), which the module imports
for a model over a tree.
"""
from __future__ import annotations

import re
from dataclasses import replace

from ..errors import RnnGraphError
from .lower import STEP_HOMES, lower
from .numpy_plain import FIXED, Printer
from .optable import ADD, ATOM, MUL, Text, _sum_to_py, lookup
from .program import Home

_HELPERS = '''

def softmax(z, dim=-1):
    return torch.softmax(z, dim)


def log_softmax(z):
    return torch.log_softmax(z, -1)


def cross_entropy(p, target):
    return -(target * torch.log(torch.where(target == 0, 1, p))).sum(-1, keepdim=True)


def softmax_cross_entropy(z, target):
    return -(target * torch.log_softmax(z, -1)).sum(-1, keepdim=True)


def binary_cross_entropy(p, d):
    yes = torch.where(d == 0, 0, d * torch.log(torch.where(d == 0, 1, p)))
    no = torch.where(d == 1, 0, (1 - d) * torch.log(torch.where(d == 1, 0.5, 1 - p)))
    return -(yes + no).sum(-1, keepdim=True)


def steps_of(value, dims, count):
    """An every-step value's steps: (count, ...) as it is, or one value the same at every
    step (a product with a time-free total) repeated."""
    if value.dim() <= dims:
        value = value.expand(count, *value.shape)
    return list(value.unbind(0))


def sigmoid_binary_cross_entropy(z, d):
    return (torch.nn.functional.softplus(z) - d * z).sum(-1, keepdim=True)


def gather(steps, index):
    """The values of the nodes ``index`` (a tree's level, their children), stacked."""
    return torch.stack([steps[k] for k in index.tolist()])


def scatter(steps, index, values):
    """Each node of ``index`` its value, into the list of the nodes' values."""
    for k, value in zip(index.tolist(), values.unbind(0)):
        steps[k] = value
'''


#: Both exports' arguments: the steps of each index, the batch, a tree's structure.
ARGUMENTS = '''

def arguments(inputs, initial, steps, tree):
    """forward's arguments: the inputs (with a tree's structure), the initial values, the
    number of steps of the first index, the batch, the steps of the others."""
    lengths = dict(steps) if isinstance(steps, dict) else {}
    if isinstance(steps, int):
        lengths = {i: steps for i in INDICES}
    batch = None
    for name, index in INPUTS.items():
        if name not in inputs:
            raise ValueError(f"no input {name!r}: the model reads {', '.join(INPUTS)}")
        value = inputs[name]
        if value.ndim != (3 if index is not None else 2) or "float" not in str(value.dtype):
            raise ValueError(f"input {name!r}: {'(T, B, n)' if index is not None else '(B, n)'} numbers, "
                             f"one-hot for a target (not class indices), with a batch axis; "
                             f"not shape {tuple(value.shape)}")
        if index is not None and lengths.setdefault(index, value.shape[0]) != value.shape[0]:
            raise ValueError(f"input {name!r} has {value.shape[0]} steps, but {index} has "
                             f"{lengths[index]}")
        batch = value.shape[-2]
    unknown = set(initial or {}) - set(INITIAL)
    if unknown:
        raise ValueError(f"no initial value {sorted(unknown)[0]!r}: the model's are "
                         f"{', '.join(INITIAL) or 'none'}")
    for value in (initial or {}).values():
        batch = value.shape[0] if batch is None else batch
    if TREES:                       # the tree's structure, from rnngraph (rnngraph/graphs/trees.py)
        from rnngraph.graphs.trees import Tree, structure, trees_of
        given = trees_of(tree, list(TREES))
        inputs = dict(inputs)
        for i in TREES:
            shape = Tree.of(given[i], lengths.get(i)) if given.get(i) is not None \\
                else Tree.balanced(lengths[i])
            inputs[f"tree {i}"] = structure(shape, *TREE_SLOTS)
            lengths[i] = shape.nodes
    missing = [i for i in LOOPED if i not in lengths]
    if missing:
        raise ValueError(f"no input gives the number of steps of {', '.join(missing)}: "
                         "pass steps=")
    return (inputs, initial or {}, *(lengths.get(i, 0) for i in INDICES[:1]), batch or 1,
            *(lengths.get(i, 0) for i in INDICES[1:]))
'''


_MODULE = ARGUMENTS + '''

class Model(torch.nn.Module):
    """The equations as a torch.nn.Module: every parameter an nn.Parameter, drawn as
    rnngraph's init_params draws them (uniform in +-1/sqrt(rows), PyTorch's recurrent
    layers' rule).  forward(inputs, initial=None, steps=None, tree=None) takes (T, B, n)
    tensors, {"h(0)": (B, n)} initial values (and over a tree's nodes the tree, as rnngraph's
    forward takes it), and returns every sequence (T, B, n) and value (B, n)."""

    def __init__(self, dtype=torch.float32, device=None):
        super().__init__()
        self.params = torch.nn.ParameterDict()
        for name, shape in SHAPES.items():
            bound = 1 / shape[0] ** 0.5
            self.params[name] = torch.nn.Parameter(
                torch.empty(shape, dtype=dtype, device=device).uniform_(-bound, bound))

    def forward(self, inputs, initial=None, steps=None, tree=None):
        return forward(dict(self.params), *arguments(inputs, initial, steps, tree))
'''


#: NumPy's name in the op table's source (not a name that ends in np, W_inp.T)
_NP = re.compile(r"(?<![\w.])np\.")


def _call(fn):
    return lambda a, t, at: Text(f"{fn}({', '.join(x.text for x in a)})", ATOM)


def _sum_to(a, types, attrs):
    return _sum_to_py(a, types, attrs, keep="keepdim")


def _concat(a, types, attrs):
    lead = max(t.lead for t in types)
    ref = next(x for x, t in zip(a, types) if t.lead == lead)
    items = [x.text if t.lead == lead else
             f"{x.at(ATOM)}.expand(*{ref.at(ATOM)}.shape[:-1], {t.shape[-1]})"
             for x, t in zip(a, types)]
    return Text(f"torch.cat(({', '.join(items)}{',' if len(items) == 1 else ''}), -1)", ATOM)


#: op -> its torch source, where the op table's NumPy is not torch's.
TORCH = {
    "tanh": _call("torch.tanh"), "sigmoid": _call("torch.sigmoid"), "relu": _call("torch.relu"),
    "exp": _call("torch.exp"), "log": _call("torch.log"), "sqrt": _call("torch.sqrt"),
    "softplus": _call("torch.nn.functional.softplus"),
    "dot": lambda a, t, at: Text(f"({a[0].at(MUL)} * {a[1].at(MUL + 1)}).sum(-1, keepdim=True)",
                                 ATOM),
    "sum_to": _sum_to, "concat": _concat,
    # W_ii, W_if, W_io, W_ig stacked by rows (rnngraph/compile/pack.py)
    "stack": lambda a, t, at: Text(f"torch.cat(({', '.join(x.text for x in a)}), 0)", ATOM),
    # a vector's norm, or each row's of a memory; torch's is 0 (not NaN) at 0, as the op
    # table's norm_grad
    "norm": lambda a, t, at: Text(f"torch.linalg.vector_norm({a[0].text}, dim=-1"
                                  f"{', keepdim=True' if len(t[0].shape) == 1 else ''})", ATOM),
    "transpose": lambda a, t, at: Text(f"{a[0].at(ATOM)}.transpose(-1, -2)" if t[0].lead
                                       else f"{a[0].at(ATOM)}.T", ATOM),
}


class TorchPrinter(Printer):
    """Prints the forward program of ``model`` as a PyTorch module."""

    PATH = "Exported to PyTorch: the forward pass as written; autograd gives the backward."

    def __init__(self, model, fwd, dtype: str, params: list[str]):
        super().__init__(model, fwd, fwd, dtype, params)

    def op_text(self, op, args, types, attrs):
        if op in TORCH:
            return TORCH[op](args, types, attrs)
        text = lookup(op).py(args, types, attrs)
        if _NP.search(text.text) or "keepdims=" in text.text:
            raise RnnGraphError(f"{self.model.filename}: export to {self.NAME} has no form of the "
                                f"op '{op}' yet")
        return text

    def statement(self, indent, e, target, text):
        if target.startswith("gather("):          # a tree's level: each node its value
            return f"{indent}scatter({target[7:-1]}, {text.text})"
        if target.startswith("torch.stack("):     # every step at once: back into the list
            steps = target[12:-1]
            t = self.fwd.type(e.out)
            dims = len(self.lead_dims(t)) + len(t.shape)
            return f"{indent}{steps} = steps_of({text.text}, {dims}, len({steps}))"
        if target.endswith("[...]"):              # a time-free value, in each lane of its size
            name = e.out.name
            if len(self.model.shape(name)) == 2 and not self.fwd.type(e.out).lead:
                # a matrix the same for every example (M = outer(a, b) of parameters): as it
                # is, so that a product with it is one matrix's, not a batch's
                return f"{indent}{target[:-5]} = {self.broadcast(f'({text.text})', self.dims(name))}"
            return f"{indent}{target[:-5]} = {self.broadcast(f'({text.text})', f'{self.B}, {self.dims(name)}')}"
        if e.accumulate:                          # a sum over the steps: out of place
            return f"{indent}{target} = {target} + {text.at(ADD + 1)}"
        return super().statement(indent, e, target, text)

    def dims(self, name: str) -> str:
        """One step's shape of ``name``, as arguments: ``32``, or ``8, 16`` for a memory."""
        return ", ".join(map(str, self.model.shape(name)))

    def home(self, h: Home) -> str:
        if h.step == "all":                 # attention: every step of a sequence at once
            T = self.lengths[self.along_of(h.name)]
            return f"torch.stack({self.py[h.name]}[{self.P}:{T} + {self.P}])"
        if self.along in self.trees and h.offset is not None and h.step is None:
            _, left, right, _ = self.trees[self.along]      # a level's nodes, or their children
            at = self.level if h.child is None else f"{left if h.child == 'left' else right}[{self.level}]"
            return f"gather({self.py[h.name]}, {at})"
        name, lanes = self.holder(h.name)
        text = super().home(replace(h, name=name))
        if self.kind == "all" and h.offset is not None and h.step is None:
            text = f"torch.stack({text})"   # every step at once: the list's steps stacked
        return text if lanes is None else f"{text}[..., {lanes[0]}:{lanes[1]}]"

    def holder(self, n: str) -> tuple[str, tuple | None]:
        """Where the value of ``n`` is: its own list, or for lanes of another's (i of the
        stacked gates ifog, rnngraph/compile/pack.py) the list of a value written whose lanes
        hold them, and which lanes there."""
        if n not in self.fwd.views or n in self.written:
            return n, None
        base, lo, hi = self.fwd.views[n]
        for w in self.written:
            v = self.fwd.views.get(w)
            if v and v[0] == base and v[1] <= lo and hi <= v[2]:
                return w, (lo - v[1], hi - v[1])
        return base, (lo, hi)

    @property
    def written(self) -> set:
        return {e.out.name for b in self.fwd.blocks for e in b.eqns if isinstance(e.out, Home)}

    def module(self) -> str:
        m = self.model
        sizes = ", ".join(f"{n} {'x'.join(map(str, m.shape(n)))}" for n in m.sizes
                          if self.sym[n].role != "parameter")
        from .source import docstring_text, tuple_text, wrap
        from .. import __version__
        head = [f'"""{docstring_text(m.filename)}: the forward pass in {self.NAME}, exported by '
                f'rnngraph {__version__}.', "", self.PATH, f"Sizes: {sizes}.",
                "Vectors are rows: W x is x @ W.T, W being (size of result, size of x) as in PyTorch.",
                '"""', *self.IMPORTS]
        head += self.HELPERS.split("\n")
        head += [""] + wrap(f"PARAMETERS = {tuple_text(self.params)}")
        shapes = ", ".join(f'"{p}": {tuple(m.param_shapes[p])!r}' for p in self.params)
        head += wrap(f"SHAPES = {{{shapes}}}")
        head += wrap(f"INPUTS = {{{', '.join(repr(n) + ': ' + repr(self.at(n).along if self.sym[n].timed else None) for n in self.inputs)}}}")
        looped = tuple(dict.fromkeys(self.along_of(n) for n in self.seqs))
        head += [f"INDICES = {tuple(self.lengths)!r}", f"LOOPED = {looped!r}"]
        initial = tuple(k for k in self.slots if k not in self.model.defined_slots)
        head += wrap(f"INITIAL = {initial!r}")
        if self.trees:
            head += [f"TREES = {tuple(self.trees)!r}", f"TREE_SLOTS = ({self.P}, {self.F})"]
        else:
            head += ["TREES = ()"]
        return "\n".join(head + self.forward_torch()) + "\n" + self.TAIL

    # -- how this library holds a sequence: a list of the steps' tensors ----------------
    NAME = "PyTorch"
    IMPORTS = ("import torch",)
    RESERVED = FIXED | {"torch", "zeros", "like", "list", "next", "iter", "len", "dict", "float",
                        "gather", "scatter", "steps_of", "arguments", "softmax", "log_softmax",
                        "Model", "INDICES", "LOOPED", "TREES", "TREE_SLOTS", "SHAPES", "INPUTS"}
    HELPERS = _HELPERS
    TAIL = _MODULE

    def zeros_line(self) -> str:
        return "    zeros = lambda *shape: like.new_zeros(shape)  # noqa: E731"

    def input_sequence(self, n: str) -> str:
        """A timed input padded with P zero steps before and F after; over a tree's nodes,
        at its leaves."""
        B, P, F = self.B, self.P, self.F
        if self.along in self.trees:
            return (f"[zeros({B}, {self.dims(n)})] * ({self.T} + {P + F})\n"
                    f'    scatter({self.py[n]}, {self.trees[self.along][3]}, inputs["{n}"])')
        pad = f"[zeros({B}, {self.dims(n)})]"
        return f'{pad} * {P} + list(inputs["{n}"].unbind(0))' + (f" + {pad} * {F}" if F else "")

    def step_shape(self, dims: str, name: str | None = None) -> str:
        """One step's shape: the batch's and ``dims``; for e(u, t) at one u, every step t of
        the batch."""
        if name is None:
            return f"{self.B}, {dims}"
        t = self.fwd.type(Home(name))
        return ", ".join([*self.lead_dims(t), *map(str, t.shape)])

    def sequence_zeros(self, rows: str, dims: str, name: str | None = None) -> str:
        return f"[zeros({self.step_shape(dims, name)})] * ({rows})"

    def step_numbers(self) -> str:
        return (f"[torch.full(({self.B}, 1), float(k), dtype=like.dtype, device=like.device) "
                f"for k in range({1 - self.P}, {self.T} + {self.F + 1})]")

    def number_of_steps(self) -> str:
        return f"torch.full((1,), float({self.T}), dtype=like.dtype, device=like.device)"

    def set_slot(self, name: str, slot, value: str) -> str:
        return f"{name}[{slot}] = {value}"

    def stacked(self, name: str, steps: str) -> str:
        return f"torch.stack({name}[{steps}])"

    def forward_torch(self) -> list[str]:
        from .source import Namer, dict_lines, unpack_lines
        self.along = "t"
        T, B = self.T, self.B
        self.namer = Namer(self.taken)
        more = self.more_lengths()
        lines = ["", "", f"def forward(params, inputs, initial, {T}, {B}{more}):",
                 f'    """Run the equations; {self.HELD}"""']
        lines += unpack_lines([self.py[p] for p in self.params], "(params[name] for name in PARAMETERS)")
        lines += ["    like = next(iter(params.values()))", self.zeros_line()]
        for i, names in self.trees.items():     # a tree's structure (rnngraph/graphs/trees.py)
            lines.append(f'    {", ".join(names)} = inputs["tree {i}"]')
        for n in self.inputs:
            if self.at(n).sym[n].timed:
                lines.append(f"    {self.py[n]} = {self.input_sequence(n)}")
            else:
                lines.append(f'    {self.py[n]} = inputs["{n}"]')
        for n in self.seqs:
            if self.holder(n)[0] != n:      # lanes of another's value: read from its list
                continue
            lines.append(f"    {self.py[n]} = {self.sequence_zeros(f'{self.at(n).T} + {self.P + self.F}', self.dims(n), n)}")
        for n, prog in self.made.items():           # a loss's logits kept (lower.fuse_losses)
            if prog is self.fwd and n in self.fwd.timed and n not in self.stepped:
                t = self.fwd.types[("home", n)]
                rows = f"{self.at(n).T} + {self.P + self.F}"
                lines.append(f"    {self.py[n]} = {self.sequence_zeros(rows, str(t.shape[-1]))}")
        for n in self.stepped:
            self.along = n.split("_", 1)[1]
            made = self.number_of_steps() if n.startswith(STEP_HOMES[1]) else self.step_numbers()
            lines.append(f"    {self.py[n]} = {made}")
        self.along = "t"
        for key, (step, n) in self.slots.items():
            if key not in self.model.defined_slots:
                lines.append(f'    if "{key}" in initial:')
                lines.append(f'        {self.set_slot(self.py[n], self.slot(step), f"initial[{key!r}]")}')
        for n in self.values:
            if self.sym[n].over:
                lines.append(f"    {self.py[n]} = zeros({B}, {self.dims(n)})")

        def title(b):
            if b.kind == "once":
                return "Time-free values and initial values"
            if b.kind == "all":
                return "Every step at once"
            return f"{self.shown(b.names)}: a loop " + ("forward" if b.direction > 0 else "backward")
        lines += self.slice_lines(self.fwd) + self.blocks(self.fwd, title)
        outs = []
        for n in self.seqs:
            held, lanes = self.holder(n)
            lanes = f"[..., {lanes[0]}:{lanes[1]}]" if lanes else ""
            outs.append(f'"{n}": {self.stacked(self.py[held], self.at(n).steps())}{lanes}')
        outs += [f'"{n}": {self.py[n]}' if len(self.model.shape(n)) == 2 and
                 not self.fwd.type(Home(n)).lead else      # a matrix the same for all, as NumPy's
                 f'"{n}": {self.broadcast(self.py[n], f"{B}, {self.dims(n)}")}' for n in self.values]
        lines += [""] + dict_lines("outputs", outs)
        return lines + ["    return outputs"]

    HELD = "every sequence a list of its steps' tensors."

    def broadcast(self, text: str, shape: str) -> str:
        return f"{text}.expand({shape})"


def torch_source(model, dtype: str = "float64") -> str:
    """The PyTorch module's source for ``model`` (sizes known)."""
    from ..check.analysis import parameter_order
    model = model.require_sizes()
    return TorchPrinter(model, exported_program(model), dtype, parameter_order(model)).module()


def exported_program(model):
    """The forward program an export prints: the compiler's passes that change what is
    computed, not how it is stored: gates stacked (one product with h(t-1) a step, one
    sigmoid for three gates), the products with the inputs over every step at once before
    the loop, as torch.nn.LSTM computes them."""
    from .pack import pack
    from .passes import fold_constants, hoist_invariants, split_loops
    return split_loops(hoist_invariants(pack(fold_constants(lower(model)))))


def run_source(source: str, label: str) -> dict:
    """The namespace of the exported ``source``, its lines shown in tracebacks as ``label``."""
    import linecache
    filename = f"<rnngraph {label}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def to_torch(model, dtype: str = "float32", device=None):
    """``model`` as a ``torch.nn.Module`` (the class ``Model`` of :func:`torch_source`)."""
    try:
        import torch
    except ImportError:
        raise RnnGraphError("export to PyTorch needs torch: pip install torch") from None
    source = torch_source(model)
    module = run_source(source, f"torch {model.filename}")["Model"](
        dtype=getattr(torch, dtype), device=device)
    module.source = source
    return module
