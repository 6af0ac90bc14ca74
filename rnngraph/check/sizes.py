"""Size inference by unification.

Every vector has a size and every matrix a number of rows and columns; each is
a variable, and the equations say which must be equal (``U x(t)`` in the
equation of ``h``: U has |h| rows and |x| columns; the terms of a sum share a
size; elementwise operations unify).  A vector known to have size 1 when its
equation is read (declared or given; a loss does not) broadcasts, as in NumPy:
``α * h(t)`` with ``α: 1`` scales every lane of h.  A concatenation's size is the sum of its
parts, a linear constraint solved by propagation once unification is done.
Declared and given sizes fix values; a conflict is reported where it arises.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..lang import ast
from ..errors import RnnGraphError, Source
from ..lang.functions import FUNCTIONS
from ..lang.printing import expr_text

SCALAR = ("scalar",)
ONE = ("one",)


@dataclass
class Sizes:
    """The solved sizes: ``vectors`` maps every vector symbol to its size where known;
    ``shapes`` maps every parameter to its shape, ``(rows, cols)`` or ``(n,)``, where known;
    ``unknown`` holds one located diagnostic per size nobody determined."""

    vectors: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unknown: list[RnnGraphError] = field(default_factory=list)


class _Unifier:
    def __init__(self, source: Source):
        self.parent: dict = {}
        self.value: dict = {}          # root -> int
        self.origin: dict = {}         # root -> where its value came from, for messages
        self.source = source
        self.errors: list[RnnGraphError] = []

    def find(self, k):
        self.parent.setdefault(k, k)
        root = k
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[k] != root:
            self.parent[k], k = root, self.parent[k]
        return root

    def get(self, k) -> int | None:
        return self.value.get(self.find(k))

    def conflict(self, node, a, b) -> None:
        where = f"in {expr_text(node)}: " if node is not None and not isinstance(node, ast.Equation) else ""
        pos = node.pos if node is not None else (1, 1)
        self.errors.append(self.source.error(
            f"size conflict {where}{self.describe(a)}, but {self.describe(b)}", *pos))

    def describe(self, k) -> str:
        origin = self.origin.get(self.find(k))
        return _label(k, self.get(k)) + (f" ({origin})" if origin else "")

    def unify(self, a, b, node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        va, vb = self.value.get(ra), self.value.get(rb)
        if va is not None and vb is not None and va != vb:
            self.conflict(node, a, b)
            return
        self.parent[rb] = ra
        if va is None and vb is not None:
            self.value[ra] = vb
            if rb in self.origin:
                self.origin[ra] = self.origin[rb]

    def set(self, k, v: int, node, why: str, origin: str | None = None) -> None:
        old = self.get(k)
        if old is not None and old != v:
            pos = node.pos if node is not None else (1, 1)
            self.errors.append(self.source.error(
                f"size conflict: {why} {v}, but {self.describe(k)}", *pos))
            return
        self.value[self.find(k)] = v
        if origin:
            self.origin[self.find(k)] = origin


def _label(key, value) -> str:
    kind, *rest = key
    v = "?" if value is None else value
    if kind == "sym":
        return f"'{rest[0]}' has size {v}"
    if kind == "rows":
        return f"'{rest[0]}' has {v} rows"
    if kind == "cols":
        return f"'{rest[0]}' has {v} columns"
    if kind == "dot":
        return f"{rest[1]} (a dot product) has size {v}"
    if kind == "tmp":
        return f"{rest[1]} has size {v}"
    return f"a loss has size {v}"


def is_dot(node, shape) -> bool:
    """Whether the product ``node`` is ``u^T v`` of two vectors: ``shape`` gives a node's
    shape (("vec", ...) or ("mat", ...))."""
    return isinstance(node, ast.Binary) and node.op == "@" and isinstance(node.left, ast.Transpose) \
        and shape(node.left.operand)[0] == "vec"


class _Inference:
    def __init__(self, symbols, source: Source):
        self.symbols = symbols
        self.u = _Unifier(source)
        self.sums: list[tuple[tuple, list[tuple], ast.Concat]] = []
        self.source = source
        self.u.set(ONE, 1, None, "")

    def fail(self, message: str, node) -> None:
        raise self.source.error(message, *node.pos)

    def shape(self, node):
        if isinstance(node, ast.Num):
            return SCALAR
        if isinstance(node, ast.Ref):
            sym = self.symbols[node.name]
            if sym.role == "parameter" and sym.matrix:
                return ("mat", ("rows", node.name), ("cols", node.name))
            return ("vec", ("sym", node.name))
        if isinstance(node, ast.At):
            return ("vec", ("sym", node.name))
        if isinstance(node, ast.Step):                 # a number at each step: as a number
            return SCALAR
        if isinstance(node, ast.Neg):
            return self.shape(node.operand)
        if isinstance(node, ast.Transpose):
            s = self.shape(node.operand)
            if s[0] != "mat":
                self.fail(f"only a matrix can be transposed, or a vector in a dot product u^T v; "
                          f"{expr_text(node.operand)} is not a matrix", node)
            return ("mat", s[2], s[1])
        if isinstance(node, ast.Binary):
            return self.binary(node)
        if isinstance(node, ast.Concat):
            keys = []
            for item in node.items:
                s = self.shape(item)
                if s[0] != "vec":
                    self.fail(f"only vectors can be concatenated; {expr_text(item)} is not one", item)
                keys.append(s[1])
            total = ("tmp", id(node), expr_text(node))
            self.sums.append((total, keys, node))
            return ("vec", total)
        if isinstance(node, ast.Call):
            func = FUNCTIONS[node.func]
            shapes = [self.shape(a) for a in node.args]
            vecs = [s for s in shapes if s[0] == "vec"]
            for a, s in zip(node.args, shapes):
                if s[0] == "mat":
                    self.fail(f"{node.func} takes vectors; {expr_text(a)} is a matrix", a)
            for s in vecs[1:]:
                self.u.unify(vecs[0][1], s[1], node)
            if func.size == "scalar":
                return ("vec", ONE)
            if func.size == "diag":
                if not vecs:
                    self.fail(f"diag takes a vector, not the number {expr_text(node.args[0])}",
                              node.args[0])
                return ("mat", vecs[0][1], vecs[0][1])
            return vecs[0] if vecs else SCALAR
        raise TypeError(node)

    def binary(self, node: ast.Binary):
        if node.op == "@" and is_dot(node, self.shape):
            # u^T v of two vectors (Luong's score s^T h): their dot product, a number at
            # each step that broadcasts over a vector as a size-1 value does
            u, v = self.shape(node.left.operand), self.shape(node.right)
            if v[0] != "vec":
                self.fail(f"a transposed vector multiplies a vector (u^T v, a dot product); "
                          f"{expr_text(node.right)} is a matrix", node.right)
            self.u.unify(u[1], v[1], node)
            key = ("dot", id(node), expr_text(node))
            self.u.set(key, 1, node, "a dot product has size")
            return ("vec", key)
        left, right = self.shape(node.left), self.shape(node.right)
        if node.op == "@":
            if left == SCALAR:
                return right
            if left[0] != "mat":
                self.fail(f"the left side of a matrix product must be a matrix; "
                          f"{expr_text(node.left)} is a vector", node.left)
            if right == SCALAR:
                return left
            if right[0] == "vec":
                self.u.unify(left[2], right[1], node)
                return ("vec", left[1])
            self.u.unify(left[2], right[1], node)
            return ("mat", left[1], right[2])
        if left == SCALAR:
            return right
        if right == SCALAR:
            return left
        if left[0] != right[0]:
            kind = {"mat": "a matrix", "vec": "a vector"}
            self.fail(f"'{node.op}' needs two vectors or two matrices: {expr_text(node.left)} is "
                      f"{kind[left[0]]} and {expr_text(node.right)} is {kind[right[0]]}", node)
        if left[0] == "vec":                   # a vector of size 1 broadcasts, as in NumPy
            if self.is_one(left[1]) and not self.is_one(right[1]):
                return right
            if self.is_one(right[1]) and not self.is_one(left[1]):
                return left
        for a, b in zip(left[1:], right[1:]):
            self.u.unify(a, b, node)
        return left

    def is_one(self, key) -> bool:
        """Whether ``key`` is a vector known, by now, to have size 1 (declared or given, or a
        dot product) that is not a loss: adding a loss to a vector is a mistake to report,
        not a broadcast."""
        return key[0] in ("sym", "dot") and self.u.get(key) == 1 \
            and self.u.find(key) != self.u.find(ONE)

    def diagonals(self, eq: ast.Equation) -> None:
        """diag(v) only as what multiplies a vector (diag(v) h, its transpose the same matrix):
        the compiler makes v * h and no n x n matrix, so diag(v) W, diag(v) + W, -diag(v) and
        the like are refused here, where the check can say so, not when compiling."""
        parent: dict = {}
        for node in ast.walk(eq.rhs):
            for c in ast.children(node):
                parent[id(c)] = node
        for node in ast.walk(eq.rhs):
            if not (isinstance(node, ast.Call) and node.func == "diag"):
                continue
            where, up = node, parent.get(id(node))
            if isinstance(up, ast.Transpose):
                where, up = up, parent.get(id(up))
            if not (isinstance(up, ast.Binary) and up.op == "@" and up.left is where
                    and self.shape(up.right)[0] == "vec"):
                self.fail(f"diag({expr_text(node.args[0])}) multiplies a vector, as in "
                          f"diag(v) h(t-1) (v * h(t-1), one weight per unit); write a product "
                          "with a matrix as the matrix of its own", node)

    def equation(self, eq: ast.Equation) -> None:
        self.diagonals(eq)
        s = self.shape(eq.rhs)
        if s[0] == "mat":
            self.fail(f"the right side of {eq.lhs_text} is a matrix; multiply it by a vector", eq.rhs)
        if s[0] == "vec":
            if self.is_one(s[1]) and self.u.get(("sym", eq.name)) not in (None, 1):
                return                              # h = α with α of size 1: every lane α
            self.u.unify(("sym", eq.name), s[1], eq.rhs)

    def propagate_sums(self) -> None:
        changed = True
        while changed:
            changed = False
            for total, items, node in self.sums:
                tv = self.u.get(total)
                vals = [self.u.get(k) for k in items]
                missing = [k for k, v in zip(items, vals) if v is None]
                if not missing:
                    s = sum(vals)
                    if tv is None:
                        self.u.set(total, s, node, "")
                        changed = True
                    elif tv != s:
                        parts = " + ".join(str(v) for v in vals)
                        self.u.errors.append(self.source.error(
                            f"size conflict in {expr_text(node)}: its parts add up to {parts} = {s}, "
                            f"but it must have size {tv}", *node.pos))
                        self.u.value[self.u.find(total)] = s
                elif tv is not None and len(missing) == 1:
                    rest = tv - sum(v for v in vals if v is not None)
                    if rest < 1:
                        self.u.errors.append(self.source.error(
                            f"size conflict in {expr_text(node)}: it must have size {tv}, "
                            f"but its known parts already add up to {tv - rest}", *node.pos))
                        self.u.value[self.u.find(missing[0])] = 0
                    else:
                        self.u.set(missing[0], rest, node, "")
                    changed = True


def solve(program: ast.Program, symbols, source: Source,
          given: dict[str, int] | None = None) -> Sizes:
    """Infer every size; raise an RnnGraphError listing every conflict.

    ``given`` overrides the sizes declared in the file.
    """
    inf = _Inference(symbols, source)
    given = dict(given or {})
    for name in given:
        if name not in symbols:
            raise RnnGraphError(f"a size is given for '{name}', which the model does not have"
                                f"{_hint(name, symbols)}")
    declared = [(d.name, d.size, d) for d in program.sizes if d.name not in given]
    fixed = declared + [(n, v, None) for n, v in given.items()]
    for name, size, decl in fixed:
        sym = symbols.get(name)
        if sym is None:
            raise source.error(f"size declared for '{name}', which no equation uses"
                               f"{_hint(name, symbols)}", *decl.pos)
        if sym.role == "parameter" and sym.matrix:
            msg = f"'{name}' is a matrix: declare the sizes of the vectors it maps between"
            if decl is None:
                raise RnnGraphError(msg)
            raise source.error(msg, *decl.pos)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise RnnGraphError(f"the size of '{name}' must be a positive integer, not {size!r}")
        inf.u.set(("sym", name), size, decl or _first_use(sym),
                  f"'{name}' is declared with size" if decl else f"'{name}' is given size",
                  f"from '{name}: {size}', line {decl.pos[0]}" if decl else f"given {name}={size}")
    # Equations after the fixed sizes, so a conflict shows at the equation that causes it.
    for eq in program.equations:
        inf.equation(eq)
    inf.propagate_sums()
    if inf.u.errors:
        first, *rest = inf.u.errors
        raise RnnGraphError(first.message, first.location, rest)

    out = Sizes()
    for name, sym in symbols.items():          # known sizes and shapes, in order of appearance
        keys = _keys(name, sym)
        vals = [inf.u.get(k) for k in keys]
        if None not in vals:
            if len(keys) == 1:
                out.vectors[name] = vals[0]
            if sym.role == "parameter":
                out.shapes[name] = tuple(vals)
    reported = set()
    # Vectors first, so an unknown size is named by a vector where one shares it.
    for name, sym in sorted(symbols.items(), key=lambda kv: kv[1].matrix):
        keys = _keys(name, sym)
        vals = [inf.u.get(k) for k in keys]
        for k, v in zip(keys, vals):
            root = inf.u.find(k)
            if v is None and root not in reported:
                reported.add(root)
                what = {"sym": f"size of '{name}'", "rows": f"number of rows of '{name}'",
                        "cols": f"number of columns of '{name}'"}[k[0]]
                hint = f"declare it ({name}: 32) or pass it in sizes" if k[0] == "sym" else \
                    "give the size of a vector it multiplies or produces"
                # A defined symbol is reported at its equation, any other at its first read.
                out.unknown.append(source.error(f"{what} is unknown; {hint}", *sym.pos))
    return out


def _first_use(sym):
    """The first place in the file that mentions ``sym``: its definition or its first read."""
    return min([sym, *sym.reads], key=lambda n: n.pos)


def _keys(name, sym) -> list[tuple]:
    """The size variables of a symbol: rows and columns of a matrix, else its length."""
    return [("rows", name), ("cols", name)] if sym.role == "parameter" and sym.matrix else [("sym", name)]


def _hint(name, symbols) -> str:
    close = difflib.get_close_matches(name, sorted(symbols), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
