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
import numbers
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
    def __init__(self, symbols, source: Source, matrices: set[str] = frozenset()):
        self.symbols = symbols
        self.matrices = matrices        # the matrix-valued variables (declared M: 8x16)
        self.u = _Unifier(source)
        self.sums: list[tuple[tuple, list[tuple], ast.Concat]] = []
        self.source = source
        self.u.set(ONE, 1, None, "")

    def fail(self, message: str, node) -> None:
        raise self.source.error(message, *node.pos)

    def shape(self, node):
        if isinstance(node, ast.Num):
            return SCALAR
        if isinstance(node, (ast.Ref, ast.At)):
            if _is_matrix(node.name, self.symbols[node.name], self.matrices):
                return ("mat", ("rows", node.name), ("cols", node.name))
            return ("vec", ("sym", node.name))
        if isinstance(node, ast.Step):                 # a number at each step: as a number
            return SCALAR
        if isinstance(node, ast.Neg):
            return self.shape(node.operand)
        if isinstance(node, ast.Transpose):
            s = self.shape(node.operand)
            if s[0] != "mat":
                self.fail(f"only a matrix can be transposed, or a vector in a dot product u^T v "
                          f"or an outer product u v^T; {expr_text(node.operand)} is not a matrix",
                          node)
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
            return self.call(node, FUNCTIONS[node.func])
        raise TypeError(node)

    def call(self, node: ast.Call, func):
        shapes = [self.shape(a) for a in node.args]
        if func.size == "outer":                       # outer(u, v) = u v^T
            for a, sh in zip(node.args, shapes):
                if sh[0] != "vec":
                    self.fail(f"outer takes two vectors; {expr_text(a)} is "
                              f"{'a matrix' if sh[0] == 'mat' else 'a number'}", a)
            return ("mat", shapes[0][1], shapes[1][1])
        if func.size == "rows":                        # cosine(M, k), norm(M): one a row
            return self.per_row(node, shapes)
        mats = [(a, sh) for a, sh in zip(node.args, shapes) if sh[0] == "mat"]
        if mats and _entrywise(func) and len(node.args) == 1:
            return mats[0][1]                          # tanh(M), sqrt(M): entry by entry
        for a, sh in mats:
            self.fail(f"{node.func} takes vectors; {expr_text(a)} is a matrix", a)
        vecs = [sh for sh in shapes if sh[0] == "vec"]
        for sh in vecs[1:]:
            self.u.unify(vecs[0][1], sh[1], node)
        if func.size == "scalar":
            return ("vec", ONE)
        if func.size == "diag":
            if not vecs:
                self.fail(f"diag takes a vector, not the number {expr_text(node.args[0])}",
                          node.args[0])
            return ("mat", vecs[0][1], vecs[0][1])
        return vecs[0] if vecs else SCALAR

    def per_row(self, node: ast.Call, shapes):
        """cosine(M, k): one number for each row of M (k as long as a row); cosine(u, v) of two
        vectors, and norm(v): one number; norm(M): one for each row."""
        for a, sh in zip(node.args, shapes):
            if sh == SCALAR:
                self.fail(f"{node.func} takes a vector or a matrix, not the number "
                          f"{expr_text(a)}", a)
        if len(shapes) == 2:
            if shapes[1][0] == "mat":
                self.fail(f"the second argument of cosine is a vector (the key each row is "
                          f"compared with); {expr_text(node.args[1])} is a matrix", node.args[1])
            across = shapes[0][2] if shapes[0][0] == "mat" else shapes[0][1]
            self.u.unify(across, shapes[1][1], node)
        if shapes[0][0] == "mat":
            return ("vec", shapes[0][1])
        key = ("dot", id(node), expr_text(node))
        self.u.set(key, 1, node, f"{node.func} of a vector has size")
        return ("vec", key)

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
        if node.op == "@" and isinstance(node.right, ast.Transpose) \
                and self.shape(node.right.operand)[0] == "vec":
            # u v^T: the outer product of two vectors (a memory's write, w(t) e(t)^T)
            u = self.shape(node.left)
            if u[0] != "vec":
                self.fail(f"a transposed vector v^T is multiplied from the left by a vector "
                          f"(u v^T, an outer product); {expr_text(node.left)} is "
                          f"{'a matrix' if u[0] == 'mat' else 'a number'}", node.left)
            return ("mat", u[1], self.shape(node.right.operand)[1])
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
        if left[0] != right[0]:                # a size-1 value scales a matrix, as a number
            vec = left if left[0] == "vec" else right
            if self.is_one(vec[1]):
                return right if vec is left else left
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
        if eq.name in self.matrices:               # M(t) = ...: a matrix, or a number everywhere
            if s[0] == "vec" and self.is_one(s[1]):
                return                             # a size-1 value: in every entry
            if s[0] == "vec":
                self.fail(f"{eq.lhs_text} is a matrix (declared {eq.name}: rows x columns), but "
                          f"its right side is a vector", eq.rhs)
            if s[0] == "mat":
                self.u.unify(("rows", eq.name), s[1], eq.rhs)
                self.u.unify(("cols", eq.name), s[2], eq.rhs)
            return
        if s[0] == "mat":
            self.fail(f"the right side of {eq.lhs_text} is a matrix; multiply it by a vector, or "
                      f"declare {eq.name} a matrix ({eq.name}: rows x columns, as M: 8x16)", eq.rhs)
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
    given = {k: tuple(int(x) if isinstance(x, numbers.Integral) and not isinstance(x, bool)
                      else x for x in v) if isinstance(v, (list, tuple)) else
             int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
             for k, v in (given or {}).items()}      # [4, 5], NumPy's integers: as numbers
    for d in program.sizes:                  # a given size keeps the declared kind
        if d.name in given and isinstance(given[d.name], tuple) != isinstance(d.size, tuple):
            if isinstance(d.size, tuple):
                raise RnnGraphError(f"'{d.name}' is a matrix ({d.name}: {d.size[0]}x{d.size[1]}, "
                                    f"line {d.pos[0]}): give its rows and columns, as "
                                    f"{d.name}={d.size[0]}x{d.size[1]}")
            raise RnnGraphError(f"'{d.name}' is a vector ({d.name}: {d.size}, line {d.pos[0]}): "
                                f"give one size, as {d.name}={d.size}")
    matrices = {d.name for d in program.sizes if d.name not in given and isinstance(d.size, tuple)}
    matrices |= {n for n, v in given.items() if isinstance(v, tuple)}
    declared = {d.name for d in program.sizes} | set(given)
    matrices |= _matrix_parameters(program, symbols, matrices, declared)
    for d in program.sizes:
        sym = symbols.get(d.name)
        if d.name in matrices and sym is not None and sym.role == "input":
            raise source.error(f"'{d.name}' is an input, and an input is a vector (or a number at "
                               f"each step); a matrix ({d.name}: rows x columns) is a defined "
                               f"variable, as a memory M(t) = ..., or a parameter", *d.pos)
    inf = _Inference(symbols, source, matrices)
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
        if isinstance(size, tuple):               # M: 8x16
            if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                         for n in size):
                raise RnnGraphError(f"the size of '{name}' must be a positive integer or (rows, "
                                    f"columns), not {size!r}")
            for key, n, what in ((("rows", name), size[0], "rows"), (("cols", name), size[1], "columns")):
                inf.u.set(key, n, decl or _first_use(sym),
                          f"'{name}' is declared with {what}" if decl else f"'{name}' is given {what}",
                          f"from '{name}: {size[0]}x{size[1]}', line {decl.pos[0]}" if decl
                          else f"given {name}={size[0]}x{size[1]}")
            continue
        if sym.role == "parameter" and sym.matrix or name in matrices:
            msg = f"'{name}' is a matrix: declare the sizes of the vectors it maps between" \
                if name not in matrices else f"'{name}' is a matrix: give its rows and columns"
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
        keys = _keys(name, sym, matrices)
        vals = [inf.u.get(k) for k in keys]
        if None not in vals:
            if len(keys) == 1:
                out.vectors[name] = vals[0]
            elif name in matrices:              # a matrix-valued variable: (rows, columns)
                out.vectors[name] = tuple(vals)
            if sym.role == "parameter":
                out.shapes[name] = tuple(vals)
    reported = set()
    # Vectors first, so an unknown size is named by a vector where one shares it.
    for name, sym in sorted(symbols.items(), key=lambda kv: _is_matrix(kv[0], kv[1], matrices)):
        keys = _keys(name, sym, matrices)
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


def _matrix_parameters(program, symbols, matrices, declared) -> set[str]:
    """The parameters that a matrix-valued variable's equation uses entry by entry, with no
    size of their own declared: matrices of its shape, as a bias takes its vector's size
    (``M(0) = M_0``, ``M(t) = M(t-1) * P + ...``); in an elementwise sum, difference, product
    or quotient, a negation or a function applied entry by entry, from the right side down."""
    found: set[str] = set()
    for eq in program.equations:
        if eq.name not in matrices:
            continue
        stack = [eq.rhs]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Ref) and node.offset is None and node.name not in declared \
                    and symbols[node.name].role == "parameter" and not symbols[node.name].matrix:
                found.add(node.name)
            elif isinstance(node, ast.Binary) and node.op != "@" or isinstance(node, ast.Neg) \
                    or isinstance(node, ast.Call) and _entrywise(FUNCTIONS[node.func]):
                stack.extend(ast.children(node))
    return found


def _entrywise(func) -> bool:
    """Whether ``func`` works entry by entry (tanh, sqrt: also on a matrix's entries)."""
    return func.size == "same" and func.name not in ("softmax", "log_softmax") \
        and not func.across and not func.over


def _first_use(sym):
    """The first place in the file that mentions ``sym``: its definition or its first read."""
    return min([sym, *sym.reads], key=lambda n: n.pos)


def _is_matrix(name, sym, matrices) -> bool:
    """Whether ``name`` is a matrix: a parameter used as one, or a matrix-valued variable."""
    return sym.role == "parameter" and sym.matrix or name in matrices


def _keys(name, sym, matrices=frozenset()) -> list[tuple]:
    """The size variables of a symbol: rows and columns of a matrix, else its length."""
    return [("rows", name), ("cols", name)] if _is_matrix(name, sym, matrices) else [("sym", name)]


def _hint(name, symbols) -> str:
    close = difflib.get_close_matches(name, sorted(symbols), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
