"""The checked model: equations, symbols with roles, sizes, and its views."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from . import analysis, ast, limits as limiting, sizes as sizing
from .errors import RnnGraphError, Source
from .limits import Limits
from .parser import parse_program
from .printing import program_latex, program_text


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
    limits : rnngraph.limits.Limits
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
        """The folded graph: see :func:`rnngraph.graph.folded`."""
        from .graph import folded
        return folded(self)

    def unroll(self, steps: int):
        """The graph unrolled over ``steps`` steps: see :func:`rnngraph.graph.unrolled`."""
        from .graph import unrolled
        if isinstance(steps, int) and not isinstance(steps, bool):
            limiting.check_unroll(self, steps)
        return unrolled(self, steps)

    def ir(self):
        """The op-level program of one step: see :mod:`rnngraph.ir`.  Computed once."""
        if self._ir is None:
            from .ir import lower
            self._ir = lower(self)
        return self._ir

    def op_graph(self):
        """One node per primitive operation: see :func:`rnngraph.ir.op_graph`."""
        from .ir import op_graph
        return op_graph(self.ir())

    def draw(self, unroll: int | None = None, format: str = "svg", **style) -> bytes:
        """The diagram, folded or unrolled: see :func:`rnngraph.draw`."""
        from .render import draw
        return draw(self, unroll, format, **style)

    def _repr_svg_(self) -> str:
        """Jupyter shows a model as its folded diagram."""
        return self.draw().decode("utf-8")

    def compile(self, sizes: dict[str, int] | None = None, dtype: str = "float64",
                check_finite: bool = True, optimize: bool = True, backend: str = "numpy"):
        """NumPy forward and backward (BPTT) passes: see :class:`rnngraph.compiled.Compiled`.

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
        from .compiled import Compiled
        model = self.with_sizes(sizes) if sizes else self
        return Compiled(model.require_sizes(), dtype=dtype, check_finite=check_finite,
                        optimize=optimize, backend=backend)

    def to_text(self) -> str:
        """The canonical text; ``parse(m.to_text()) == m``."""
        given = self._given
        decls = tuple(d for d in self.program.sizes if d.name not in given)
        decls += tuple(ast.SizeDecl(n, v) for n, v in given.items())
        return program_text(ast.Program(self.program.equations, decls, self.program.roles))

    def to_latex(self) -> str:
        r"""The equations as a LaTeX ``aligned`` block, for slides."""
        return program_latex(self.program)

    def summary(self) -> str:
        """What ``rnngraph check`` prints."""
        from .summary import summary
        return summary(self)


def parse(text: str, filename: str = "<string>", sizes: dict[str, int] | None = None,
          limits: Limits | None = None) -> Model:
    """Parse and check equation text.

    Parameters
    ----------
    text : str
        The equations, one per line.
    filename : str
        Shown in error messages.
    sizes : dict, optional
        Sizes to give or override, ``{"x": 10, "h": 32}``.
    limits : rnngraph.limits.Limits, optional
        Other limits than the defaults (:mod:`rnngraph.limits`), ``Limits(max_delay=5000)``.

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
    return Model(parse_program(text, filename), Source(text, filename), sizes, limits)


def load(path: str | Path, sizes: dict[str, int] | None = None, limits: Limits | None = None) -> Model:
    """Read and check an equation file (UTF-8).

    Only the first ``limits.max_source_bytes`` bytes (and one more) are read: a
    longer file is refused (:mod:`rnngraph.limits`).

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".rnn", delete=False) as f:
    ...     _ = f.write(b"h(t) = tanh(W h(t-1) + U x(t))\\n")
    >>> load(f.name).role("state")
    ['h']
    >>> os.unlink(f.name)
    """
    path = Path(path)
    limits = limits or Limits()
    try:
        with path.open("rb") as f:
            data = f.read(limits.max_source_bytes + 1)
            info = os.fstat(f.fileno())
    except OSError as err:
        raise RnnGraphError(f"cannot read {path}: {err.strerror or err}") from None
    whole = max(info.st_size, len(data)) if stat.S_ISREG(info.st_mode) else None     # None: a pipe
    limiting.check_source(data, str(path), limits, whole)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[:err.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        message = (f"the file is not UTF-8: byte 0x{data[err.start]:02x} cannot be decoded; "
                   "save it as UTF-8")
        where = Source(data.decode("utf-8", "replace"), str(path)).location(line, column)
        raise RnnGraphError(message, where) from None
    return parse(text, str(path), sizes, limits)
