"""A step's elementwise ops in one pass over memory (``backend="numba"``, issue 22).

A loop function of rnngraph/compile/numba_loops.py writes each op of a step as a kernel
call, ``jitops.sigmoid(ifo_t, ifo_t)``, ``jitops.multiply(f_t, c_tm1, c_t)``: a pass over
the arrays each, the intermediate values stored as float32 and read back.  :func:`fuse`
replaces each run of such calls whose results have the same width by one call of a
kernel of its own, which goes over the rows once: it loads a row of each operand into a
contiguous float64 buffer, computes every op of the run at every column (straight-line
arithmetic, with rnngraph/runtime/jitops.py's exp and tanh, which LLVM vectorises on
contiguous buffers), the values between the ops held in registers, and stores each
result's row.  As torch.nn.LSTM does with a step's gate arithmetic.

What is fused is read from the statements themselves (Python's ast): a call
``jitops.K(operands..., out)`` with K one of :data:`SCALAR` and ``out`` of a width the
printer recorded.  Sequential semantics hold element by element: an op reads what an
earlier op of the run wrote at the same row and column, from its register.  Where two
operands of a kernel share memory (a view of another's lanes), which elementwise order
would not keep, the kernel checks before its loop and then runs the calls one by one, as
written (:func:`rnngraph.runtime.jitops.apart`); so it does where the results' shapes
differ.  Intermediate values keep float64 within a run (NumPy's float32 path rounds each).
"""
from __future__ import annotations

import ast
import hashlib
import textwrap

#: A kernel of rnngraph/runtime/jitops.py: (its operands, its value at one element, in float64).
SCALAR = {
    "add": (2, "{0} + {1}"), "subtract": (2, "{0} - {1}"), "multiply": (2, "{0} * {1}"),
    "divide": (2, "{0} / {1}"), "negative": (1, "-{0}"), "copy": (1, "{0}"),
    "exp": (1, "jitops._exp({0})"), "tanh": (1, "jitops._tanh({0})"),
    "sigmoid": (1, "1.0 / (1.0 + jitops._exp(-{0}))"), "maximum": (2, "max({0}, {1})"),
    "log": (1, "np.log({0})"), "sqrt": (1, "np.sqrt({0})"),
    "softplus": (1, "max({0}, 0.0) + np.log1p(np.exp(-abs({0})))"),
}


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
            and f.value.id == "jitops" and f.attr in SCALAR) or call.keywords:
        return None
    if len(call.args) != SCALAR[f.attr][0] + 1:
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
        """``lines`` (statements at one indentation, comments among them) with each run of
        two or more fusable calls of one width replaced by a call of a kernel."""
        if not lines:
            return lines
        self.widths = {ast.unparse(ast.parse(k, mode="eval").body): w for k, w in self.given.items()}
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
            if len(calls) >= 2:
                out.extend(self.kernel([c[0] for c in calls]))
                out.extend(line for r in run if r[0] is None for line in r[1])
            else:
                out.extend(line for r in run for line in r[1])
            run.clear()

        for stmt, stmt_lines in items:
            if stmt is None:
                if run:
                    run.append((None, stmt_lines))
                else:
                    out.extend(stmt_lines)
                continue
            info = _fusable(stmt, self.widths)
            if info is not None and (not run or _width(run) == info[3]):
                run.append((info, stmt_lines))
                continue
            flush()
            if info is not None:
                run.append((info, stmt_lines))
            else:
                out.extend(stmt_lines)
        flush()
        return [indent + line if line.strip() else line for line in out]

    def kernel(self, calls) -> list[str]:
        """The call of a kernel for ``calls`` [(kernel, operands, out, width)], made once."""
        params: list[str] = []              # the arrays and numbers it takes, by their text

        def param(text: str) -> str:
            if text not in params:
                params.append(text)
            return f"p{params.index(text)}"

        for k, operands, out, _ in calls:
            for a in operands:
                if not _number(a):
                    param(ast.unparse(a))
            param(out)
        written = list(dict.fromkeys(out for _, _, out, _ in calls))
        loaded: list[str] = []              # read before the run writes them
        done: set[str] = set()
        for k, operands, out, _ in calls:
            for a in operands:
                t = ast.unparse(a)
                if not _number(a) and t not in done and t not in loaded:
                    loaded.append(t)
            done.add(out)
        body, value = [], {}                # the register holding each text's latest value
        for n, (k, operands, out, _) in enumerate(calls):
            args = []
            for a in operands:
                t = ast.unparse(a)
                args.append(f"({t})" if _number(a) else value.get(t, f"r{params.index(t)}[j]"))
            body.append(f"x{n} = {SCALAR[k][1].format(*args)}")
            value[out] = f"x{n}"
        p = {t: f"p{params.index(t)}" for t in params}
        first = p[written[0]]
        lines = [f"rows, cols = jitops._size({first})"]
        same = [f"jitops._size({p[w]}) != (rows, cols)" for w in written[1:]]
        pairs = list(dict.fromkeys(tuple(sorted((w, o))) for w in written for o in params if o != w))
        apart = [f"jitops.apart({p[a]}, {p[b]})" for a, b in pairs]
        guard = " or ".join(same + [f"not {a}" for a in apart])
        if guard:
            parts = same + [f"not {a}" for a in apart]
            lines += ["if (" + parts[0]] + [f"        or {x}" for x in parts[1:-1]] + \
                ([f"        or {parts[-1]}):"] if len(parts) > 1 else []) if len(parts) > 1 \
                else [f"if {guard}:"]
            lines += [f"    jitops.{k}({', '.join([ast.unparse(a) if _number(a) else p[ast.unparse(a)] for a in operands] + [p[out]])})"
                      for k, operands, out, _ in calls]
            lines += ["    return"]
        for t in loaded:
            lines.append(f"r{params.index(t)} = np.empty(cols)")
        for t in written:
            lines.append(f"w{params.index(t)} = np.empty(cols)")
        lines += ["for i in range(rows):"]
        lines += [f"    for j in range(cols):"] + \
            [f"        r{params.index(t)}[j] = jitops._at({p[t]}, i, j)" for t in loaded] \
            if loaded else []
        lines += ["    for j in range(cols):"] + [f"        {b}" for b in body] + \
            [f"        w{params.index(t)}[j] = {value[t]}" for t in written]
        lines += ["    for j in range(cols):"] + \
            [f"        jitops._put({p[t]}, i, j, w{params.index(t)}[j])" for t in written]
        what = ", ".join(f"{k}" for k, _, _, _ in calls)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]
        name = f"fused_{digest}"
        if name not in self.kernels:
            self.kernels[name] = [f"def {name}({', '.join(f'p{i}' for i in range(len(params)))}):",
                                  f'    """{what}: one pass over the rows (compile/fuse.py)."""'] + \
                [f"    {line}" for line in lines]
        return [f"{name}({', '.join(params)})"]


def _width(run) -> int:
    return next(r[0][3] for r in run if r[0] is not None)
