"""The compiler's IR: blocks of flat equations over named homes and temporaries.

A :class:`Program` is what every pass takes and returns and what every emitter
prints.  It is a list of :class:`Block`: the prologue (``once``: time-free values
and initial values) and loops over t, forward or backward in time.  A block is a
flat list of :class:`Eqn`, ``out = op(args)`` or ``out += op(args)``, over atoms:

``Tmp(name)``                a temporary, bound once inside its block
``Home(name, offset)``       a model value that lives in an array: ``offset`` k is
                             step t+k of a sequence (in a loop), None a time-free
                             value, input or parameter; ``step`` s instead of
                             offset is the absolute step s (``h(0)``, ``h(-1)``),
                             "end" the last, "all" every step 1..T at once (an
                             encoder's states read by attention at each step of u);
                             ``grad`` makes it the home of that value's gradient
``Const(value)``             a number

Temporaries never leave their block: blocks talk through homes only.  Every
value has a :class:`Type`: its leading (batch) axes and its trailing shape.

``repr(program)`` prints it; :meth:`Program.check` asserts bound-before-use and
single assignment of temporaries, naming the failing equation with its
neighbours.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.compile.lower import lower
>>> print(lower(parse("h(t) = tanh(W h(t-1) + U x(t) + b)\\nx: 3, h: 4")))
once:
loop forward h:
  %1 = matvec W h(t-1)
  %2 = matvec U x(t)
  %3 = add %1 %2
  %4 = add %3 b
  h(t) = tanh %4
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..lang.printing import number_text, time_text


@dataclass(frozen=True)
class Type:
    """``lead`` leading axes (0: none, 1: the batch) before ``shape``: () a number,
    (n,) a vector, (rows, cols) a matrix."""

    lead: int
    shape: tuple
    # the index whose every step the first leading axis holds, before the batch: a sequence
    # of t read whole inside a loop over u (attention reads every encoder state h(t) at each
    # decoder step), a value over two indices e(u, t) at one u; None for the batch alone
    over: str | None = None

    def __repr__(self):
        over = "" if self.over is None else f", over={self.over!r}"
        return f"Type(lead={self.lead}, shape={self.shape}{over})"

    def __str__(self):
        lead = "B, " * self.lead if self.over is None else f"T_{self.over}, " + "B, " * (self.lead - 1)
        return (lead + ", ".join(map(str, self.shape))).rstrip(", ").join("()")


NUMBER = Type(0, ())


@dataclass(frozen=True)
class Tmp:
    name: str

    def __str__(self):
        return self.name


@dataclass(frozen=True)
class Home:
    name: str
    offset: int | None = None
    step: int | str | None = None       # a fixed step; "end" the last; "all" every step at once
    grad: bool = False
    child: str | None = None            # over a tree: "left" or "right", the nodes' children

    def __str__(self):
        base = f"d{self.name}" if self.grad else self.name
        if self.step is not None:
            return f"{base}({self.step})"
        if self.child is not None:
            return f"{base}({self.child})"
        return base if self.offset is None else f"{base}({time_text(self.offset)})"

    @property
    def key(self) -> tuple[str, bool]:
        """The array this reads or writes: its name, and whether it is a gradient's."""
        return (self.name, self.grad)

    def gradient(self) -> "Home":
        return replace(self, grad=True)


@dataclass(frozen=True)
class Const:
    value: float

    def __str__(self):
        return number_text(self.value)


Atom = Tmp | Home | Const


@dataclass(frozen=True)
class Eqn:
    """``out = op(*args)`` (``accumulate``: ``out += ...``); ``attrs`` are the op's
    parameters (a slice's bounds, a sum's target type); ``origin`` the left side of
    the model equation it comes from, for comments and names."""

    out: Tmp | Home
    op: str
    args: tuple
    attrs: tuple = ()
    accumulate: bool = False
    origin: str | None = field(default=None, compare=False)

    def __str__(self):
        attrs = "".join(f" [{a}]" for a in self.attrs)
        eq = "+=" if self.accumulate else "="
        if self.op == "copy":
            return f"{self.out} {eq} {self.args[0]}"
        return f"{self.out} {eq} {self.op} {' '.join(map(str, self.args))}{attrs}".rstrip()


@dataclass
class Block:
    """The prologue (``kind="once"``), a loop over t (``"loop"``, ``direction`` +1
    forward in time, -1 backward) or every step at once (``"all"``: a timed home is
    read and written for steps 1..T together, a temporary has a leading time axis);
    ``names`` the model variables it computes."""

    kind: str
    eqns: list
    names: tuple = ()
    direction: int = 1
    index: str = "t"        # a loop's or an every-step block's: the index whose steps it walks

    def header(self) -> str:
        along = "" if self.index == "t" else f" [{self.index}]"
        if self.kind == "once":
            return "once:"
        if self.kind == "all":
            return f"every step{along} {' '.join(self.names)}:".replace(" :", ":")
        way = "forward" if self.direction > 0 else "backward"
        return f"loop {way}{along} {' '.join(self.names)}:".replace(" :", ":")


@dataclass
class Program:
    """Blocks in the order they run, and the type of every home and temporary."""

    blocks: list
    types: dict = field(default_factory=dict)
    timed: set = field(default_factory=set)     # the homes indexed by t
    made: int = 0                               # temporaries the builders made, for names
    views: dict = field(default_factory=dict)   # home -> (base home, first lane, end lane)
    indices: dict = field(default_factory=dict)  # a model's timed home -> its index, if not t
    # the indices over a tree's nodes (tree n): a loop over one walks its levels, leaves first,
    # and a home of one has the level's nodes as its first leading axis (Type.over)
    trees: frozenset = frozenset()

    def index_of(self, name: str) -> str:
        """The index whose steps the timed home ``name`` has: the model's for its variables,
        else that of the block that writes it (a home a pass made), or of its view's base."""
        if name in self.indices:
            return self.indices[name]
        if not self.indices:
            return "t"
        name = self.views.get(name, (name,))[0]
        for b in self.blocks:
            if b.kind != "once" and any(isinstance(e.out, Home) and
                                        self.views.get(e.out.name, (e.out.name,))[0] == name
                                        for e in b.eqns):
                return b.index
        lanes = [v for v, w in self.views.items() if w[0] == name and v in self.indices]
        return self.indices[lanes[0]] if lanes else "t"

    def __repr__(self) -> str:
        lines = []
        for b in self.blocks:
            lines.append(b.header())
            lines += [f"  {e}" for e in b.eqns]
        return "\n".join(lines)

    __str__ = __repr__

    def base(self, key: tuple[str, bool]) -> tuple[str, bool]:
        """The array a home's key reads or writes: a view's base (its lanes alias the base's)."""
        name, grad = key
        return (self.views[name][0], grad) if name in self.views else key

    def within(self, name: str) -> list[str]:
        """The views whose lanes lie within ``name``'s (a base's: all of its views)."""
        b, lo, hi = self.views.get(name, (name, 0, None))
        return [v for v, (vb, vlo, vhi) in self.views.items()
                if vb == b and lo <= vlo and (hi is None or vhi <= hi)]

    def units(self, name: str) -> list[str]:
        """The lanes of ``name`` that no other view splits (an LSTM's i, f, o, g of the
        views ifo, g of ifog), in order; [name] if it has no views."""
        inside = self.within(name)
        fine = [v for v in inside if not any(
            w != v and self.views[v][1] <= self.views[w][1] and self.views[w][2] <= self.views[v][2]
            for w in inside)]
        return sorted(fine, key=lambda v: self.views[v][1]) or [name]

    def type(self, atom, block: Block | None = None) -> Type:
        """``atom``'s type; a timed home read in an every-step block has the time axis too."""
        if isinstance(atom, Const):
            return NUMBER
        if isinstance(atom, Home):
            t = self.types[("home", atom.name)]
            if atom.step == "all":          # every step of another index's sequence at once
                return Type(t.lead + 1, t.shape, self.index_of(atom.name))
            if atom.step is not None and t.over is not None and t.over in self.trees:
                return Type(t.lead - 1, t.shape)        # h(root): one node's
            if block is not None and block.kind == "all" and atom.name in self.timed \
                    and atom.step is None:
                return Type(t.lead + 1, t.shape)
            return t
        return self.types[("tmp", atom.name)]

    def check(self) -> None:
        """Assert that each temporary is bound before use, once, inside its block."""
        for b in self.blocks:
            bound: set[str] = set()
            for i, e in enumerate(b.eqns):
                for a in e.args:
                    if isinstance(a, Tmp) and a.name not in bound:
                        raise AssertionError(f"{a} used before it is bound{_context(b.eqns, i)}")
                if isinstance(e.out, Tmp):
                    if e.out.name in bound or e.accumulate:
                        raise AssertionError(f"{e.out} bound twice{_context(b.eqns, i)}")
                    bound.add(e.out.name)


def _context(eqns, i) -> str:
    rows = [f"{'>' if j == i else ' '} {eqns[j]}" for j in range(max(i - 2, 0), min(i + 3, len(eqns)))]
    return ":\n" + "\n".join(rows)


def count_uses(eqns) -> dict[str, int]:
    """{temporary: how many arguments of ``eqns`` read it}."""
    count: dict[str, int] = {}
    for e in eqns:
        for a in e.args:
            if isinstance(a, Tmp):
                count[a.name] = count.get(a.name, 0) + 1
    return count
