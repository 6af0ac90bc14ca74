"""A step's elementwise ops in one pass over memory (``backend="numba"``, issue 22).

A loop function of rnngraph/compile/numba_loops.py writes each op of a step as a kernel
call, ``jitops.sigmoid(ifo_t, ifo_t)``, ``jitops.multiply(f_t, c_tm1, c_t)``: a pass over
the arrays each, the intermediate values stored as float32 and read back.  :class:`Fuser`
replaces each run of such calls whose results have the same width by one call of a kernel
of its own, which goes over the rows once: it loads a row of each operand into a contiguous
buffer of the arrays' dtype, computes every op of the run at every column (straight-line
arithmetic, with rnngraph/runtime/jitops.py's vexp, vtanh and vsigmoid, which LLVM
vectorises on contiguous buffers), each op's values in a row buffer of its own, and stores
each result's row.  As torch.nn.LSTM does with a step's gate arithmetic.  Only runs with an exp, tanh or
sigmoid are fused: a run of arithmetic alone is printed as NumPy's calls (the loop runs in
Python), which are as fast on a gate's lanes as a kernel's loads and stores (an LSTM's
backward at batch 32 lost 7% fused); what pays is the vectorised exp.

What is fused is read from the statements themselves (Python's ast): a call
``jitops.K(operands..., out)`` with K one of :data:`SCALAR` and ``out`` of a width the
printer recorded.  Sequential semantics hold element by element: an op reads what an
earlier op of the run wrote at the same row and column, from its buffer.  Where two
operands of a kernel share memory (views of overlapping lanes), which elementwise order
would not keep, the kernel checks before its loop (:func:`rnngraph.runtime.jitops.apart`)
and declines, returning False, and the loop runs the run's ops as NumPy's calls, which
buffer overlapping operands; so it does where the results' shapes differ.
"""
from __future__ import annotations

import ast
import hashlib
import textwrap

#: A kernel of rnngraph/runtime/jitops.py that a fused loop computes value by value: (its
#: operands, its value at one element).
SCALAR = {
    "add": (2, "{0} + {1}"), "subtract": (2, "{0} - {1}"), "multiply": (2, "{0} * {1}"),
    "divide": (2, "{0} / {1}"), "negative": (1, "-{0}"), "copy": (1, "{0}"),
    "maximum": (2, "max({0}, {1})"), "log": (1, "np.log({0})"), "sqrt": (1, "np.sqrt({0})"),
    "softplus": (1, "max({0}, 0.0) + np.log1p(np.exp(-abs({0})))"),
}

#: The transcendental kernels (one operand), by jitops' vectorised form over a row buffer.
_VECTOR = {"exp": "vexp", "tanh": "vtanh", "sigmoid": "vsigmoid"}


def _number(node) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return True
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _number(node.operand)


def _fusable(stmt, widths: dict):
    """(kernel, operand nodes, out text, width) of ``stmt`` if it is a kernel call to fuse."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    f = call.func
    if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
            and f.value.id == "jitops" and (f.attr in SCALAR or f.attr in _VECTOR)) or call.keywords:
        return None
    if len(call.args) != (1 if f.attr in _VECTOR else SCALAR[f.attr][0]) + 1:
        return None
    out = ast.unparse(call.args[-1])
    width = widths.get(out)
    if width is None or _number(call.args[-1]):
        return None
    return f.attr, call.args[:-1], out, width


class Fuser:
    """Fuses the runs of a loop body's statements; the kernels it made, by name."""

    def __init__(self, widths: dict):
        self.given = widths                 # the printer's, filled as it prints
        self.kernels: dict[str, list[str]] = {}

    def __call__(self, lines: list[str]) -> list[str]:
        """``lines`` (statements at one indentation, comments among them), for a loop run
        from Python: each run of fusable calls of one width with an exp, tanh or sigmoid
        replaced by a call of a kernel, the other kernel calls by NumPy's where it has
        the op."""
        if not lines:
            return lines
        widths = {ast.unparse(ast.parse(k, mode="eval").body): w for k, w in self.given.items()}
        indent = lines[0][:len(lines[0]) - len(lines[0].lstrip())]
        text = textwrap.dedent("\n".join(lines))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return lines
        src = text.split("\n")
        items = []                          # (statement node or None, its lines)
        at = 0
        for stmt in tree.body:
            first = stmt.lineno - 1
            items += [(None, [line]) for line in src[at:first]]       # comments
            items.append((stmt, src[first:stmt.end_lineno]))
            at = stmt.end_lineno
        items += [(None, [line]) for line in src[at:]]
        out: list[str] = []
        run: list = []                      # (fusable info, lines) of the run so far

        def flush():
            calls = [r for r in run if r[0] is not None]
            if any(c[0][0] in _VECTOR for c in calls):
                # the kernel, or where it declines (shared memory), NumPy's calls, which
                # buffer overlapping operands as the ops one after the other do
                out.extend(f"if not {line}:" for line in self.kernel([c[0] for c in calls]))
                out.extend("    " + x for r in run if r[0] is not None for x in _in_numpy(r[1]))
                out.extend(line for r in run if r[0] is None for line in r[1])
            else:                           # arithmetic alone: NumPy's ufuncs are as fast
                for r in run:
                    out.extend(r[1] if r[0] is None else _in_numpy(r[1]))
            run.clear()

        for stmt, stmt_lines in items:
            if stmt is None:
                if run:
                    run.append((None, stmt_lines))
                else:
                    out.extend(stmt_lines)
                continue
            info = _fusable(stmt, widths)
            if info is not None and (not run or _width(run) == info[3]):
                run.append((info, stmt_lines))
                continue
            flush()
            if info is not None:
                run.append((info, stmt_lines))
            else:
                out.extend(_in_numpy(stmt_lines))
        flush()
        return [indent + line if line.strip() else line for line in out]

    def kernel(self, calls) -> list[str]:
        """The call of a kernel for ``calls`` [(kernel, operands, out, width)], made once.

        The kernel goes over the rows; in each, a loop loads every operand the run reads
        before writing into a contiguous buffer of the results' dtype, each op writes a
        buffer of its own (consecutive arithmetic ops in one loop; exp, tanh and sigmoid by
        jitops' vectorised vexp, vtanh, vsigmoid, never in place, which LLVM would not
        vectorise), and a loop stores each result's last value."""
        params: list[str] = []              # the arrays and numbers it takes, by their text

        def param(text: str) -> None:
            if text not in params:
                params.append(text)

        for k, operands, out, _ in calls:
            for a in operands:
                if not _number(a):
                    param(ast.unparse(a))
            param(out)
        p = {t: f"p{params.index(t)}" for t in params}
        written = list(dict.fromkeys(out for _, _, out, _ in calls))
        loaded: list[str] = []              # read before the run writes them
        done: set[str] = set()
        for k, operands, out, _ in calls:
            for a in operands:
                t = ast.unparse(a)
                if not _number(a) and t not in done and t not in loaded:
                    loaded.append(t)
            done.add(out)
        numbers = list(dict.fromkeys(ast.unparse(a) for _, operands, _, _ in calls
                                     for a in operands if _number(a)))
        first = p[written[0]]
        head = [f"rows, cols = jitops._size({first})"]
        same = [f"jitops._size({p[w]}) != (rows, cols)" for w in written[1:]]
        pairs = list(dict.fromkeys(tuple(sorted((w, o))) for w in written for o in params if o != w))
        parts = same + [f"not jitops.apart({p[a]}, {p[b]})" for a, b in pairs]
        if parts:                           # shapes that differ, or shared memory: declined
            head += ["if (" + parts[0]] + [f"        or {x}" for x in parts[1:]]
            head[-1] += "):"
            head += ["    return False"]
        head += [f"like = np.empty(cols, {first}.dtype)"]
        head += [f"c{n} = jitops.like({first}, {t})" for n, t in enumerate(numbers)]
        head += [f"r{params.index(t)} = np.empty_like(like)" for t in loaded]
        head += [f"x{n} = np.empty_like(like)" for n in range(len(calls))]
        if any(k in _VECTOR for k, _, _, _ in calls):
            head += ["e = np.empty_like(like)", "bits = jitops.scratch(like)"]
        value: dict[str, str] = {}          # the buffer holding each text's latest value
        loop = ["for i in range(rows):"]
        loop += [f"    jitops.load({p[t]}, i, r{params.index(t)})" for t in loaded]
        arithmetic: list[str] = []          # the statements of the loop being written

        def close():
            if arithmetic:
                loop.extend(["    for j in range(cols):"] + [f"        {x}" for x in arithmetic])
                arithmetic.clear()

        for n, (k, operands, out, _) in enumerate(calls):
            args = []
            for a in operands:
                t = ast.unparse(a)
                args.append(f"c{numbers.index(t)}" if _number(a) else
                            value.get(t, f"r{params.index(t)}"))
            if k in _VECTOR:
                close()
                loop.append(f"    jitops.{_VECTOR[k]}({args[0]}, x{n}, "
                            f"{'' if k == 'exp' else 'e, '}bits)")
            else:
                row = [x if x.startswith("c") else f"{x}[j]" for x in args]
                arithmetic.append(f"x{n}[j] = {SCALAR[k][1].format(*row)}")
            value[out] = f"x{n}"
        close()
        loop += [f"    jitops.store({p[t]}, i, {value[t]})" for t in written]
        lines = head + loop + ["return True"]
        what = ", ".join(f"{k}" for k, _, _, _ in calls)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]
        name = f"fused_{digest}"
        if name not in self.kernels:
            self.kernels[name] = [f"def {name}({', '.join(f'p{i}' for i in range(len(params)))}):",
                                  f'    """{what}: one pass over the rows (compile/fuse.py)."""'] + \
                [f"    {line}" for line in lines]
        return [f"{name}({', '.join(params)})"]


#: A kernel called from Python that NumPy has as a ufunc of the same name: NumPy's call (no
#: dispatch into Numba, whose kernels go value by value on a gate's lanes).
_UFUNC = {"add", "subtract", "multiply", "divide", "negative", "exp", "tanh", "log", "sqrt",
          "maximum"}


class _ToNumpy(ast.NodeTransformer):
    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "jitops" \
                and not node.keywords and node.args:
            *args, dst = node.args
            if f.attr in _UFUNC:
                return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), f.attr, ast.Load()),
                                args, [ast.keyword("out", dst)])
            if f.attr == "sigmoid" and len(args) == 1:     # 1 / (1 + exp(-a)), into dst
                np_ = lambda name, *xs: ast.Call(ast.Attribute(ast.Name("np", ast.Load()), name,  # noqa: E731
                                                               ast.Load()), list(xs), [])
                call = np_("divide", ast.Constant(1.0),
                           np_("add", ast.Constant(1.0), np_("exp", np_("negative", args[0]))))
                call.keywords = [ast.keyword("out", dst)]
                return call
            if f.attr == "copy" and len(args) == 1:
                return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "copyto", ast.Load()),
                                [dst, args[0]], [])
        return node


def _in_numpy(lines: list[str]) -> list[str]:
    """A statement of a loop's body, run from Python, its kernel calls NumPy's where NumPy
    has the op (``jitops.multiply(a, b, out)``: ``np.multiply(a, b, out=out)``)."""
    text = textwrap.dedent("\n".join(lines))
    if "jitops." not in text:
        return lines
    tree = ast.fix_missing_locations(_ToNumpy().visit(ast.parse(text)))
    return ast.unparse(tree).split("\n")


def _width(run) -> int:
    return next(r[0][3] for r in run if r[0] is not None)
