"""The abstract syntax of the equation language: frozen dataclasses.

Every node carries ``pos = (line, column)`` of its first character; positions
take no part in equality, so the same equations written twice (or printed by
``to_text`` and parsed again) compare equal.  Surface variants are normalised
here: ``σ`` is ``sigmoid``, ``⊙`` is ``*``, ``·`` and juxtaposition are ``@``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace, field
from typing import Iterator, Union

Pos = tuple[int, int]
NOPOS: Pos = (0, 0)


def _pos() -> Pos:
    return field(default=NOPOS, compare=False, repr=False)


@dataclass(frozen=True)
class Num:
    """A number literal."""

    value: float
    pos: Pos = _pos()


@dataclass(frozen=True)
class Ref:
    """A read of a symbol: ``name(t+offset)``, or ``name`` when offset is None; ``index``
    the index the offset counts along (``s(u-1)`` after ``index u``), ``t`` unless declared;
    ``inner`` the second index of a value over two (attention's ``e(u, t)``: one score for
    every encoder step t at each decoder step u), read at that same pair only."""

    name: str
    offset: int | None = None
    pos: Pos = _pos()
    index: str = "t"
    inner: str | None = None        # a value over two indices, e(u, t): the second, t
    # over a tree's nodes (tree n): "left" or "right" for h(left(n)), h(right(n)), a read
    # one level down (offset -1, as h(t-1) is one step back)
    child: str | None = None


@dataclass(frozen=True)
class Initial:
    """``name(0)``: only valid as a left side (an initial value)."""

    name: str
    pos: Pos = _pos()


@dataclass(frozen=True)
class At:
    """A read of a sequence at a fixed step: ``name(end)`` (``step`` "end", the last step)
    or ``name(k)`` for a whole number k >= 1.  Kept apart from :class:`Ref`, whose
    ``offset`` None means a time-free read: a walk that knows only Ref must not take a
    read of the last step for one."""

    name: str
    step: int | str
    pos: Pos = _pos()
    root: bool = False              # written h(root): a tree's last node, step "end"


@dataclass(frozen=True)
class Step:
    """The step number as a value: ``t`` (or a declared index's name, ``u``) in an equation
    over that index, or ``end``, the number of steps (the book's tau: ``end - t``, the
    steps left, section 10.2.4).  A number of size 1 with no gradient."""

    name: str
    pos: Pos = _pos()


@dataclass(frozen=True)
class Call:
    """A function call, ``func`` being the canonical name from the function table."""

    func: str
    args: tuple[Expr, ...]
    pos: Pos = _pos()


@dataclass(frozen=True)
class Binary:
    """``left op right`` with op one of ``+ - * / @`` (``@`` is the matrix product)."""

    op: str
    left: Expr
    right: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class Neg:
    operand: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class Transpose:
    operand: Expr
    pos: Pos = _pos()


@dataclass(frozen=True)
class Concat:
    """``[a; b]`` (or ``[a, b]``): the vectors stacked."""

    items: tuple[Expr, ...]
    pos: Pos = _pos()


Expr = Union[Num, Ref, At, Step, Initial, Call, Binary, Neg, Transpose, Concat]


@dataclass(frozen=True)
class Equation:
    """``name(t) = rhs`` (kind "seq"), ``name = rhs`` ("value") or ``name(0) = rhs`` ("init")."""

    name: str
    kind: str
    rhs: Expr
    pos: Pos = _pos()
    index: str = "t"                # of a sequence: the index it runs over
    inner: str | None = None        # of a value over two indices, e(u, t): the second

    @property
    def lhs_text(self) -> str:
        if self.inner is not None:
            return f"{self.name}({self.index}, {self.inner})"
        return {"seq": f"{self.name}({self.index})", "value": self.name,
                "init": f"{self.name}(0)"}[self.kind]


@dataclass(frozen=True)
class SizeDecl:
    """``x: 10``, or ``M: 8x16`` for a matrix-valued variable (size (rows, columns))."""

    name: str
    size: int | tuple
    pos: Pos = _pos()


@dataclass(frozen=True)
class RoleDecl:
    """``input y`` or ``parameter alpha``: a role declared where use alone does not say."""

    name: str
    role: str
    pos: Pos = _pos()


@dataclass(frozen=True)
class FreeDecl:
    """``free y -> o``: running free, the network reads its output ``by`` where training reads
    the target ``name`` at an earlier step (teacher forcing, the book's figure 10.6)."""

    name: str
    by: str
    pos: Pos = _pos()


@dataclass(frozen=True)
class IndexDecl:
    """``index u``: u counts the steps of sequences of their own length (a decoder's);
    ``tree n``: n counts the nodes of a tree, leaves first, the root last."""

    name: str
    pos: Pos = _pos()
    tree: bool = False


@dataclass(frozen=True)
class Program:
    equations: tuple[Equation, ...]
    sizes: tuple[SizeDecl, ...] = ()
    roles: tuple[RoleDecl, ...] = ()
    frees: tuple[FreeDecl, ...] = ()
    indices: tuple[IndexDecl, ...] = ()


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``node``."""
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, (Neg, Transpose)):
        return (node.operand,)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Concat):
        return node.items
    return ()


def rebuild(node: Expr, kids) -> Expr:
    """``node`` with its direct sub-expressions replaced by ``kids``, in :func:`children`'s order."""
    if isinstance(node, Binary):
        return replace(node, left=kids[0], right=kids[1])
    if isinstance(node, (Neg, Transpose)):
        return replace(node, operand=kids[0])
    if isinstance(node, Call):
        return replace(node, args=tuple(kids))
    if isinstance(node, Concat):
        return replace(node, items=tuple(kids))
    return node


def walk(node: Expr) -> Iterator[Expr]:
    """Every node of ``node``, parents before children, left to right; no recursion."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def depth(node: Expr) -> int:
    """The nesting depth of ``node`` (a leaf has depth 1); no recursion."""
    best = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in children(n))
    return best


def diagonal(node) -> Expr | None:
    """v if ``node`` is ``diag(v)`` or its transpose (the same matrix); else None."""
    if isinstance(node, Transpose):
        node = node.operand
    if isinstance(node, Call) and node.func == "diag":
        return node.args[0]
    return None
