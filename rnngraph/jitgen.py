"""The loops of ``backend="numba"``: each time loop as a function Numba compiles.

Mixed into :class:`rnngraph.fastgen.FastGenerator` (``jit = True`` when Compiled
asks for Numba): the NumPy loop's body, written for ``zip``'s views, becomes the
body of a function of its own (:meth:`JitLoops.jit_loop`) that indexes the steps
and takes every array and number as an argument, its ufuncs calls of
:mod:`rnngraph.jitops`'s kernels (:func:`_nopython`).  The generated code calls it
for a batch of one and runs the NumPy loop when it returns False; the functions
also form a module of their own (:meth:`JitLoops.loops_module`), which
:mod:`rnngraph.jit` hands to Numba.
"""
from __future__ import annotations

import ast
import re
from functools import cached_property

from .pysource import _augmented, _call_lines


class JitLoops:
    """Mixed into FastGenerator: its ``loop`` asks :meth:`jit_loop` first when ``jit``."""

    jit = False

    def jit_loop(self, body: list[str], ind: str, forward: bool, values=()) -> list[str] | None:
        """The loop as a function ``def _loop(T, h, _W_T, ...)`` of every array and number
        it uses, the body as it is but for what Numba's nopython mode lacks
        (:func:`_nopython`), indexing the steps (``h[t - 1]``: a view costs nothing in
        compiled code); returns the lines calling it, or None for a body that rebinds a
        name (the caller would not see it) or has a line :func:`_nopython` does not know.

        Compiled hands the function to Numba; the call returns False when Numba cannot
        compile it, and the ``for`` of the NumPy loop runs instead, as it does for a batch
        of more than one.  At batch 1 the NumPy loop is made of calls that each cost more
        than their arithmetic; compiled, whole calls took 0.40-0.47x the time (RNN, GRU,
        LSTM at hidden 128, forward + backward, bench/results.txt run 7).  From batch 2
        on, compiled loops lost (1.25-1.8x the time at hidden 128, measured with libm's
        exp and tanh; the RNN, whose step is mostly its product, 1.67-1.81x): Numba's
        np.dot goes through SciPy's OpenBLAS, a second thread pool beside NumPy's, and
        the kernels of rnngraph/jitops.py run one number at a time on strided rows."""
        base = len(ind) + 4
        code = []
        for line in body:
            if not line.lstrip().startswith("#"):
                line = _nopython(_augmented(line))
                if line is None:
                    return None
            code.append("        " + line[base:])
        text = "\n".join(code)
        names: list[str] = [self.T]
        tree = ast.parse("if 1:\n" + text)
        inplace = {id(node.target) for node in ast.walk(tree) if isinstance(node, ast.AugAssign)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in self._globals:
                if not isinstance(node.ctx, ast.Load) and id(node) not in inplace:
                    return None          # rebinds a name (``dh += g`` is in place: an array)
                if node.id not in names:
                    names.append(node.id)
        cots = {v: k for k, v in getattr(self, "cots", {}).items()}
        args = [f'cotangents.get("{cots[n]}")' if n in cots else n for n in names]
        name = self.namer("_loop")
        steps = f"range(1, {self.T} + 1)" if forward else f"range({self.T}, 0, -1)"
        what = f"the loop {'forward' if forward else 'backward'} in time"
        if values:
            what += " of " + ", ".join(f"{v}(t)" for v in values)
        self.jit_functions.append(_call_lines(f"def {name}(", names, "):") + [
            f'    """{what[0].upper()}{what[1:]}.',
            '    Run by Numba (backend="numba"); every array and number comes as an argument."""',
            f"    for t in {steps}:"] + code)
        return _call_lines(f"{ind}if {self.B} != 1 or not {name}(", args, "):")

    @cached_property
    def _globals(self) -> set[str]:
        """Names a loop function finds in the module: not its arguments."""
        imported = {n.strip() for line in self.import_lines()
                    for n in line.split(" import ")[1].split(",")}
        return imported | {"np", "t", "range", "jitops"}

    @cached_property
    def jit_functions(self) -> list[list[str]]:
        """The loops' functions, each a list of lines, in the order they were made."""
        return []

    def loops_module(self, head: bool = True) -> str:
        """The loops' functions (after :meth:`module`), as a module of their own for Numba:
        they take every array and number as an argument, so the same text serves every
        size and dtype, and Numba's cache of its machine code with them."""
        lines = ["import numpy as np", "", "from rnngraph import jitops"] if head else []
        return "\n".join(lines + [x for f in self.jit_functions for x in ["", ""] + f]) + "\n"


#: The kernels of rnngraph/jitops.py, by the ufunc each stands for.
KERNELS = {"np.add": "add", "np.subtract": "subtract", "np.multiply": "multiply",
           "np.divide": "divide", "np.negative": "negative", "np.exp": "exp",
           "np.tanh": "tanh", "np.log": "log", "np.maximum": "maximum"}
_AUGMENTED_KERNEL = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
_OPERAND = r"\w+(?:\[[\w +\-]*\])?"                  # h, h[t - 1], ONE
_UFUNC = re.compile(rf"^(\s*)(np\.\w+)\(((?:{_OPERAND}, )*{_OPERAND}), out=({_OPERAND})\)$")
_INPLACE_OP = re.compile(rf"^(\s*)({_OPERAND}) ([-+*/])= ({_OPERAND})$")
_OUT = re.compile(r"^(\s*)(np\.dot\(.*), out=([\w\[\] +\-]+)\)$")
_COPYTO = re.compile(rf"^(\s*)np\.copyto\(({_OPERAND}), ({_OPERAND})\)$")
_MATMUL = re.compile(r"^(\s*)np\.matmul\((.+), out=([\w\[\] +\-]+)\)$")
_COT_GIVEN = re.compile(r"^(\s*)if (cot_\w+)\[t - 1\] is not None:$")
_SOFTMAX = re.compile(rf"^(\s*)({_OPERAND})\[\.\.\.\] = softmax\(({_OPERAND})\)$")
_SOFTMAX_VJP = re.compile(rf"^(\s*)({_OPERAND})(\[\.\.\.\] = | \+= )({_OPERAND}) \* \(({_OPERAND}) - "
                          rf"\(\5 \* \4\)\.sum\(-1, keepdims=True\)\)$")   # rnngraph/ops.py


def _nopython(line: str) -> str | None:
    """A line of a loop body for Numba's nopython mode: a ufunc of :data:`KERNELS` into
    ``out``, and ``a += b`` (etc.), as a call of rnngraph/jitops.py's kernel
    (``jitops.multiply(a, b, out)``: NumPy's ufuncs compile 3-4x slower in Numba);
    ``np.copyto(a, b)`` -> ``jitops.copy(b, a)``; ``np.matmul(a, b, out=c)`` ->
    ``c[...] = np.dot(a, b)``; np.dot's ``out=c`` as its last positional argument; and
    ``if cot_h[t - 1] is not None:`` -> ``if cot_h is not None:`` (a cotangent not given
    is None, not a list of None: Numba compiles the branch away); softmax and its VJP as
    rnngraph/ops.py prints them -> ``jitops.softmax``, ``jitops.softmax_grad``.  None for
    another line with ``out=``; other lines as they are."""
    if (m := _UFUNC.match(line)) and m.group(2) in KERNELS:
        return f"{m.group(1)}jitops.{KERNELS[m.group(2)]}({m.group(3)}, {m.group(4)})"
    if m := _INPLACE_OP.match(line):
        ind, a, op, b = m.groups()
        return f"{ind}jitops.{_AUGMENTED_KERNEL[op]}({a}, {b}, {a})"
    if m := _COPYTO.match(line):
        return f"{m.group(1)}jitops.copy({m.group(3)}, {m.group(2)})"
    if m := _MATMUL.match(line):
        return f"{m.group(1)}{m.group(3)}[...] = np.dot({m.group(2)})"
    if m := _OUT.match(line):
        return f"{m.group(1)}{m.group(2)}, {m.group(3)})"
    if m := _SOFTMAX.match(line):
        return f"{m.group(1)}jitops.softmax({m.group(3)}, {m.group(2)})"
    if m := _SOFTMAX_VJP.match(line):
        ind, out, how, y, g = m.groups()
        return f"{ind}jitops.softmax_grad({y}, {g}, {out}, {'+' in how})"
    if m := _COT_GIVEN.match(line):
        return f"{m.group(1)}if {m.group(2)} is not None:"
    return None if "out=" in line else line
