"""The checked model: equations, symbols with roles, sizes, and its views."""
from __future__ import annotations

import math
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

from . import analysis, limits as limiting, sizes as sizing
from ..lang import ast
from ..lang.latex import parse_latex
from ..errors import RnnGraphError, Source, file_kind
from .limits import Limits
from ..lang.parser import parse_program
from ..lang.printing import program_latex, program_text


class Model:
    """A parsed and checked set of recurrence equations.

    Build one with :func:`rnngraph.parse` or :func:`rnngraph.load`.

    Attributes
    ----------
    program : ast.Program
        The equations and size declarations as written (normalised).
    symbols : dict of str to analysis.Symbol
        Every name with its role, direction, delay, ...
    sizes : dict of str to int
        The size of every vector whose size is known.
    param_shapes : dict of str to tuple
        The shape of every parameter whose shape is known: ``(rows, cols)`` or ``(n,)``.
    unknown_sizes : list of RnnGraphError
        One located diagnostic for each size still unknown.
    limits : rnngraph.check.limits.Limits
        What the model was checked against, and what drawing and compiling it obey.

    Examples
    --------
    >>> m = parse("h(t) = tanh(W h(t-1) + U x(t) + b)\\nx: 3, h: 4")
    >>> m.symbols["h"].role, m.symbols["h"].direction, m.param_shapes["U"]
    ('state', 'forward', (4, 3))
    """

    def __init__(self, program: ast.Program, source: Source, given: dict[str, int] | None = None,
                 limits: Limits | None = None):
        self.program = program
        self.source = source
        self.filename = source.filename
        self.limits = limits or Limits()
        limiting.check_program(program, source, self.limits)
        self.symbols = analysis.analyse(program, source)
        self._given = dict(given or {})
        solved = sizing.solve(program, self.symbols, source, self._given)
        limiting.check_sizes(program, self.symbols, solved.vectors, solved.shapes, self._given, source,
                             self.limits)
        self.sizes = solved.vectors
        self.param_shapes = solved.shapes
        self.unknown_sizes = solved.unknown
        self._ir = None
        self.free = _check_free(self)
        self._free_model = self._running_free() if self.free else None

    # -- teacher forcing ----------------------------------------------------
    def free_running(self) -> Model:
        """The model as it runs free (at test time): each ``free y -> o`` line makes every read of
        ``y`` at an earlier step a read of ``o`` (the book's figure 10.6, right).  Without such a
        line, the model itself.

        Examples
        --------
        >>> m = parse("h(t) = tanh(W h(t-1) + U x(t) + R y(t-1))\\no(t) = V h(t)\\n"
        ...           "L(t) = cross_entropy(softmax(o(t)), y(t))\\nfree y -> o")
        >>> m.free_running().to_text().splitlines()[0]
        'h(t) = tanh(W h(t-1) + U x(t) + R o(t-1))'
        """
        return self._free_model or self

    def generating(self) -> Model:
        """The free-running model without what needs the targets: its losses, and what reads them.
        What generates a sequence from a start (``forward(..., mode="free", steps=n)`` with no
        target given).

        Examples
        --------
        >>> m = parse("h(t) = tanh(W h(t-1) + R y(t-1))\\no(t) = softmax(V h(t))\\n"
        ...           "L(t) = cross_entropy(o(t), y(t))\\nfree y -> o\\nh: 4, o: 3")
        >>> [e.name for e in m.generating().equations]
        ['h', 'o']
        """
        free = self.free_running()
        gone = {n for n, s in free.symbols.items() if s.target}
        kept, changed = list(free.equations), True
        while changed:                        # what reads a target, and what reads that, in any order
            changed = False
            for eq in list(kept):
                if any(isinstance(r, (ast.Ref, ast.At)) and r.name in gone for r in ast.walk(eq.rhs)):
                    kept.remove(eq)
                    gone.add(eq.name)
                    changed = True
        used = {r.name for eq in kept for r in ast.walk(eq.rhs) if isinstance(r, (ast.Ref, ast.At))} | \
            {eq.name for eq in kept}
        program = ast.Program(tuple(kept), tuple(d for d in self.program.sizes if d.name in used),
                              tuple(d for d in self.program.roles if d.name in used), (),
                              self.program.indices)
        return Model(program, self.source, {k: v for k, v in self._given.items() if k in used},
                     self.limits)

    def _running_free(self) -> Model:
        def swap(node):
            if isinstance(node, ast.Ref) and node.name in self.free and node.offset and node.offset < 0:
                return replace(node, name=self.free[node.name])
            if isinstance(node, (ast.Num, ast.Ref, ast.At, ast.Initial)):
                return node
            return ast.rebuild(node, [swap(c) for c in ast.children(node)])
        equations = tuple(replace(e, rhs=swap(e.rhs)) for e in self.program.equations)
        program = ast.Program(equations, self.program.sizes, self.program.roles, (), self.program.indices)
        try:
            return Model(program, self.source, self._given, self.limits)
        except RnnGraphError as err:
            d = err.diagnostics[0]
            decl = self.program.frees[0]
            raise RnnGraphError(f"running free ({', '.join(f'free {k} -> {v}' for k, v in self.free.items())}), "
                                f"{d.message}", d.location or self.source.location(*decl.pos)) from None

    # -- construction -------------------------------------------------------
    def with_sizes(self, sizes: dict[str, int]) -> Model:
        """The same model with ``sizes`` given (they override sizes declared in the file)."""
        return Model(self.program, self.source, {**self._given, **sizes}, self.limits)

    def require_sizes(self) -> Model:
        """Return self if every size is known; else raise an error listing each unknown one."""
        if self.unknown_sizes:
            first, *rest = self.unknown_sizes
            raise RnnGraphError(first.message, first.location, rest)
        return self

    def __eq__(self, other) -> bool:
        return (isinstance(other, Model) and self.program == other.program
                and self._given == other._given)

    __hash__ = None

    def __repr__(self) -> str:
        return f"<Model {self.filename}: {len(self.program.equations)} equations>"

    # -- queries --------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of one step (one example) of ``name``: ``(n,)`` for a vector, ``(rows,
        columns)`` for a matrix-valued variable (``M: 8x16``) or a matrix parameter."""
        if name in self.param_shapes:
            return tuple(self.param_shapes[name])
        size = self.sizes[name]
        return size if isinstance(size, tuple) else (size,)

    def numbers(self, name: str) -> int:
        """How many numbers one step of ``name`` holds (for one example)."""
        return math.prod(self.shape(name))

    @property
    def equations(self) -> tuple[ast.Equation, ...]:
        return self.program.equations

    def role(self, role: str) -> list[str]:
        """The names with ``role``, in the order they first appear."""
        return [n for n, s in self.symbols.items() if s.role == role]

    @property
    def initial_slots(self) -> dict[str, tuple[int, str]]:
        """Every initial value of a forward state, ``"h(0)"``, ``"h(-1)"``, ... -> (step, name).

        A state read at most k steps back starts from k values, h(0), h(-1), ...,
        h(1-k), each zero unless given (or defined, ``h(0) = h0``).

        Examples
        --------
        >>> parse("h(t) = tanh(W h(t-1) + V h(t-3) + U x(t))").initial_slots
        {'h(0)': (0, 'h'), 'h(-1)': (-1, 'h'), 'h(-2)': (-2, 'h')}
        """
        return {f"{n}({step})": (step, n) for n, s in self.symbols.items()
                if s.role == "state" and s.direction == "forward"
                for step in range(0, -s.delay, -1)}

    @property
    def defined_slots(self) -> set[str]:
        """The initial values the model defines (``h(0) = h0``)."""
        return {f"{e.name}(0)" for e in self.equations if e.kind == "init"}

    @property
    def timed(self) -> bool:
        """Whether the model has a time index at all (the autoencoder does not)."""
        return any(s.timed for s in self.symbols.values())

    # -- views ----------------------------------------------------------------
    def graph(self):
        """The folded graph: see :func:`rnngraph.graphs.unrolled.folded`."""
        from .. import api
        return api.folded(self)

    def unroll(self, steps: int):
        """The graph unrolled over ``steps`` steps: see :func:`rnngraph.graphs.unrolled.unrolled`."""
        from .. import api
        return api.unrolled(self, steps)

    def ir(self):
        """The compiler's forward program (rnngraph/compile/program.py), before its
        passes; it needs every size.  Computed once."""
        if self._ir is None:
            from .. import api
            self._ir = api.ir(self)
        return self._ir

    def op_graph(self):
        """One node per primitive operation: see :func:`rnngraph.graphs.ops.op_graph`."""
        from .. import api
        return api.op_graph(self)

    def draw(self, unroll: int | None = None, format: str = "svg", **options):
        """The diagram, folded or unrolled, as bytes that Jupyter shows: see :func:`rnngraph.draw`."""
        from .. import api
        return api.draw(self, unroll, format, **options)

    def _repr_svg_(self) -> str:
        """Jupyter shows a model as its folded diagram."""
        return self.draw().decode("utf-8")

    def compile(self, sizes: dict[str, int] | None = None, dtype: str = "float64",
                check_finite: bool = True, optimize: bool = True, backend: str = "numpy"):
        """NumPy forward and backward (BPTT) passes: see :class:`rnngraph.runtime.compiled.Compiled`.

        ``sizes`` gives or overrides sizes; an error names each size still
        unknown.  ``check_finite`` rejects NaN and Inf in inputs and parameters;
        ``optimize=False`` keeps the plain path (every block a loop over t, no
        hoisting), for debugging.  ``backend="numba"`` runs the time loops compiled
        by Numba (``pip install 'rnngraph[numba]'``): about twice as fast for a batch
        of one, where each NumPy call costs more than its arithmetic; the first call
        compiles them (seconds), later processes load them from a cache.

        Examples
        --------
        >>> net = parse("h(t) = tanh(W h(t-1) + U x(t) + b)").compile(sizes={"x": 3, "h": 4})
        >>> net.param_shapes
        {'W': (4, 4), 'U': (4, 3), 'b': (4,)}
        """
        from .. import api
        return api.compile(self, sizes, dtype, check_finite, optimize, backend)

    def derive(self, wrt: str | None = None, loss: str | None = None, steps: int = 2,
               form: str = "paths", sizes: dict[str, int] | None = None):
        """The chain rule for a gradient, printed and checkable: see :func:`rnngraph.api.derive`.

        Examples
        --------
        >>> m = parse("h(t) = tanh(W h(t-1) + U x(t))\\ny(t) = softmax(V h(t))\\n"
        ...           "L(t) = cross_entropy(y(t), d(t))", sizes={"x": 2, "h": 3, "y": 2})
        >>> print(m.derive(wrt="W", form="matrix").text().splitlines()[-1])
           ∇_W L = Σ_t (diag(1 - h(t)^2) ∇_h(t) L) h(t-1)^T
        """
        from .. import api
        return api.derive(self.with_sizes(sizes) if sizes else self, wrt, loss, steps, form)

    def to_torch(self, sizes: dict[str, int] | None = None, dtype: str = "float32", device=None):
        """The equations as a ``torch.nn.Module`` (PyTorch's autograd gives the gradients):
        ``forward(inputs, initial=None, steps=None)`` on (T, B, n) tensors returns every
        sequence and value, as :meth:`compile`'s forward does.  Its source is ``.source``;
        ``rnngraph export FILE --to torch`` writes it."""
        from ..compile.torch_export import to_torch
        return to_torch(self.with_sizes(sizes) if sizes else self, dtype, device)

    def to_jax(self, sizes: dict[str, int] | None = None):
        """The equations as JAX's pure functions ``(init, apply)``: ``init(key, dtype)`` draws
        the parameters as :meth:`compile`'s ``init_params`` does, ``apply(params, inputs,
        initial=None, steps=None)`` returns every sequence and value; each loop is a
        ``lax.scan``, so ``jax.jit``, ``jax.grad`` and ``jax.vmap`` take them.  Its source is
        ``apply.source``; ``rnngraph export FILE --to jax`` writes it."""
        from ..compile.jax_export import to_jax
        return to_jax(self.with_sizes(sizes) if sizes else self)

    def to_text(self) -> str:
        """The canonical text; ``parse(m.to_text()) == m``."""
        given = self._given
        decls = tuple(d for d in self.program.sizes if d.name not in given)
        decls += tuple(ast.SizeDecl(n, v) for n, v in given.items())
        return program_text(ast.Program(self.program.equations, decls, self.program.roles,
                                        self.program.frees, self.program.indices))

    def to_latex(self) -> str:
        r"""The equations as a LaTeX ``aligned`` block, for slides."""
        return program_latex(self.program)

    def summary(self) -> str:
        """What ``rnngraph check`` prints."""
        from .summary import summary
        return summary(self)


#: The file extensions read as LaTeX (rnngraph/lang/latex.py); any other, the plain notation.
LATEX_SUFFIXES = (".tex", ".latex", ".ltx")


def parse(text: str, filename: str = "<string>", sizes: dict[str, int] | None = None,
          limits: Limits | None = None, format: str | None = None) -> Model:
    """Parse and check equation text.

    Parameters
    ----------
    text : str
        The equations, one per line; or LaTeX (``format="latex"``).
    filename : str
        Shown in error messages; its extension picks the format when ``format`` is None
        (``.tex``: LaTeX).
    sizes : dict, optional
        Sizes to give or override, ``{"x": 10, "h": 32}``.
    limits : rnngraph.check.limits.Limits, optional
        Other limits than the defaults (:mod:`rnngraph.check.limits`), ``Limits(max_delay=5000)``.
    format : {"plain", "latex"}, optional
        The notation: rnngraph's (``h(t) = tanh(W h(t-1))``) or LaTeX's
        (``h^{(t)} = \\tanh(W h^{(t-1)})``, as exercise sheets print it).

    Examples
    --------
    >>> m = parse("y(t) = tanh(K0 x(t) + K1 x(t-1) + b)")
    >>> m.role("input"), m.role("parameter")
    (['x'], ['K0', 'K1', 'b'])
    """
    limits = limits or Limits()
    data = text.encode("utf-8", "replace")
    limiting.check_source(data, filename, limits, len(data))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    if format is None:
        format = "latex" if str(filename).lower().endswith(LATEX_SUFFIXES) else "plain"
    if format not in ("plain", "latex"):
        raise RnnGraphError(f"format is 'plain' or 'latex', not {format!r}")
    program = parse_latex(text, filename) if format == "latex" else parse_program(text, filename)
    return Model(program, Source(text, filename), sizes, limits)


def _not_a_file(path, mode: int) -> RnnGraphError:
    hint = "" if stat.S_ISDIR(mode) else "; to read a pipe or a device, give - and redirect it to stdin"
    return RnnGraphError(f"cannot read {path}: it is {file_kind(mode)}, not a regular file{hint}")


def read_source(path: str | Path, max_bytes: int) -> tuple[bytes, int | None]:
    """At most ``max_bytes + 1`` bytes of an equation file (one more tells that there were
    too many), and the file's whole size (None for standard input); ``"-"`` reads
    standard input.

    Only a regular file is opened: a FIFO with no writer would wait forever, and
    /dev/zero never ends; a pipe or a device can be given as ``-``.

    Examples
    --------
    >>> read_source("/", 100)
    Traceback (most recent call last):
    ...
    rnngraph.errors.RnnGraphError: error: cannot read /: it is a folder, not a regular file
    """
    if str(path) == "-":
        try:
            if sys.stdin is None:
                raise OSError("it is closed")
            return _read_at_most(sys.stdin.buffer.read, max_bytes), None
        except OSError as err:
            raise RnnGraphError(f"cannot read standard input: {err.strerror or err}") from None
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode)
        # O_NONBLOCK: should a FIFO take the file's place after the stat, the open still returns.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb", buffering=0) as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _not_a_file(path, info.st_mode)
            data = _read_at_most(f.read, max_bytes)
    except OSError as err:
        raise RnnGraphError(f"cannot read {path}: {err.strerror or err}") from None
    return data, max(info.st_size, len(data))


def _read_at_most(read, max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes from ``read``."""
    chunks, left = [], max_bytes + 1
    while left > 0:
        chunk = read(min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def load(path: str | Path, sizes: dict[str, int] | None = None, limits: Limits | None = None) -> Model:
    """Read and check an equation file (UTF-8); ``"-"`` reads standard input.

    Only a regular file or ``-`` is read (see :func:`read_source`), and only its first
    ``limits.max_source_bytes`` bytes (and one more): a longer file is refused
    (:mod:`rnngraph.check.limits`).

    Only the first ``limits.max_source_bytes`` bytes (and one more) are read: a
    longer file is refused (:mod:`rnngraph.check.limits`).

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".rnn", delete=False) as f:
    ...     _ = f.write(b"h(t) = tanh(W h(t-1) + U x(t))\\n")
    >>> load(f.name).role("state")
    ['h']
    >>> os.unlink(f.name)
    """
    limits = limits or Limits()
    name = "<stdin>" if str(path) == "-" else str(path)
    data, whole = read_source(path, limits.max_source_bytes)
    limiting.check_source(data, name, limits, whole)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[:err.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        message = (f"the file is not UTF-8: byte 0x{data[err.start]:02x} cannot be decoded; "
                   "save it as UTF-8")
        where = Source(data.decode("utf-8", "replace"), name).location(line, column)
        raise RnnGraphError(message, where) from None
    return parse(text, name, sizes, limits)


def _check_free(model) -> dict[str, str]:
    """``{y: o}`` of the model's ``free y -> o`` lines, each checked: y an input read at an earlier
    step, o a sequence the model defines, both of one size."""
    out: dict[str, str] = {}
    sym, err = model.symbols, model.source.error
    for d in model.program.frees:
        y, o = sym.get(d.name), sym.get(d.by)
        if d.name in out:
            raise err(f"'free {d.name}' is given twice", *d.pos)
        if y is None or y.role != "input" or not y.timed:
            raise err(f"free {d.name} -> {d.by}: '{d.name}' is not an input read at a time step; "
                      "free-running replaces a target the model reads, as y(t-1)", *d.pos)
        if not any(r.offset and r.offset < 0 for r in y.reads):
            raise err(f"free {d.name} -> {d.by}: the model never reads '{d.name}' at an earlier step "
                      f"({d.name}(t-1)), so running free changes nothing", *d.pos)
        if o is None or o.role not in ("sequence", "state"):
            raise err(f"free {d.name} -> {d.by}: '{d.by}' is not a sequence the model defines", *d.pos)
        ny, no = model.sizes.get(d.name), model.sizes.get(d.by)
        if ny is not None and no is not None and ny != no:
            raise err(f"free {d.name} -> {d.by}: '{d.name}' has size {ny} but '{d.by}' has size {no}; "
                      "the output read in its place must have the target's size", *d.pos)
        out[d.name] = d.by
    return out

