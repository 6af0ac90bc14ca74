"""The compiler: model -> IR -> passes -> printed NumPy.

    lower.py      Model -> forward Program (rnngraph/compile/program.py), one row per
                  op in optable.py
    autodiff.py   forward Program -> backward Program (reverse mode on the IR)
    numpy_plain.py  both programs -> a Python module (the plain printer)

:class:`Plain` is what :class:`rnngraph.runtime.compiled.Compiled` asks a generator for.
"""
from __future__ import annotations

import math

from ..check.analysis import parameter_order
from .autodiff import backward, taped
from .cse import cse
from .layout import (carried_products_first, concat_views, preactivations_in_place,
                     sink_carried_writes, sums_of_products, sums_side_by_side,
                     transposed_in_loops)
from .lower import lower
from .numba_layout import bias_sums_in_loops, biases_in_loops
from .numba_loops import NumbaPrinter
from .numpy_fast import FastPrinter
from .numpy_plain import Printer
from .pack import pack
from .passes import (drop_dead, flatten_stacks, fold_constants, hoist_invariants,
                     propagate_copies, split_loops, stack_products)
from .reassociate import interpolations, reassociate
from .source import tuple_text, wrap


class Plain:
    """The plain path: the forward program and its reverse, printed one statement an op."""

    PRINTER = Printer

    def __init__(self, model, dtype: str):
        self.forward, self.backward = self.programs(model)
        self.params = parameter_order(model)
        self.printer = printer = self.PRINTER(model, self.forward, self.backward, dtype,
                                              self.params)
        self.inputs = printer.inputs
        self.step_vars = printer.seqs
        self.source = printer.module()

    def programs(self, model):
        """(forward, backward) programs of ``model``."""
        forward = lower(model)
        return forward, backward(forward)

    def module(self) -> str:
        return self.source


class Optimized(Plain):
    """The optimized path: loops split around their recurrence, invariants hoisted, products
    stacked, in the forward program and in its reverse; each op printed in place.

    The module has two backward functions: ``backward`` computes the activations'
    derivatives for every step at once before its loop, ``backward_large`` in the loop,
    step by step, which Compiled takes when a step (the batch times ``step_values``, a
    step's widest value) has Compiled.per_step values or more: there a pass over every
    step's values costs more than the calls."""

    PRINTER = FastPrinter

    def __init__(self, model, dtype: str):
        super().__init__(model, dtype)
        large = self.reverse(self.taped, lanewise_in_loop=True)
        printer = self.large_printer(model, large, dtype)
        body = printer.backward(printer.unpack_params(), printer.tape(), "backward_large")
        self.printers = (self.printer, printer)
        widths = [math.prod(t.shape) for (kind, n), t in self.forward.types.items()
                  if kind == "home" and n in self.forward.timed and t.shape]
        self.step_values = max(widths, default=1)     # a step's widest value, per batch row
        self.source += "\n".join(body) + "\n"

    def large_printer(self, model, back, dtype):
        """The printer of ``backward_large`` (the backward program ``back``)."""
        return self.PRINTER(model, self.forward, back, dtype, self.params)

    def programs(self, model):
        forward = split_loops(hoist_invariants(pack(fold_constants(reassociate(interpolations(
            cse(fold_constants(lower(model)))))))))
        forward, self.taped = taped(flatten_stacks(hoist_invariants(stack_products(forward))))
        back = self.reverse(self.taped)
        forward = sums_side_by_side(preactivations_in_place(forward, back))
        return self.loop_products(forward), back

    @staticmethod
    def loop_products(forward):
        """The forward program's products in loops as NumPy's loops make them fastest:
        h(t-1) @ W^T with W^T copied once (BLAS's form at a batch of one)."""
        return transposed_in_loops(forward)

    @staticmethod
    def reverse(back, lanewise_in_loop: bool = False):
        """The passes of the backward program."""
        return sums_of_products(concat_views(carried_products_first(sink_carried_writes(
            propagate_copies(split_loops(hoist_invariants(drop_dead(back)), lanewise_in_loop))))))


class Numba(Optimized):
    """The optimized path with each loop also a function Numba compiles, which the
    module calls for a batch of a few rows (rnngraph/compile/numba_loops.py); ``LOOPS`` names
    them, for Compiled to hand them to Numba (rnngraph/runtime/jit.py)."""

    PRINTER = NumbaPrinter

    def __init__(self, model, dtype: str):
        super().__init__(model, dtype)
        names = [n for p in self.printers for n in p.names]
        kernels: dict[str, list[str]] = {}
        for p in self.printers:
            kernels.update(p.fuse.kernels)
        self.functions = "".join("\n\n" + "\n".join(f) + "\n"
                                 for f in [*kernels.values(), *(f for p in self.printers
                                                                for f in p.functions)])
        self.source += self.functions
        self.source += "\n\n" + "\n".join(wrap(f"LOOPS = {tuple_text(names)}")) + "\n"
        self.source += "\n".join(wrap(f"KERNELS = {tuple_text(list(kernels))}")) + "\n"
        steps = [n for p in self.printers for n in p.step_loops]
        self.source += "\n".join(wrap(f"STEPS = {tuple_text(steps)}")) + "\n"
        for title, field in (("SPLIT", "split"), ("HELPERS", "helpers")):   # {loop: ...} each
            items = [(k, v) for p in self.printers for k, v in getattr(p, field).items()]
            self.source += "\n".join([f"{title} = {{"] + [f"    {k!r}: {v!r}," for k, v in items]
                                     + ["}"]) + "\n"

    def programs(self, model):
        """The optimized path's programs, each bias added in the loop that reads its sum
        (numba_layout.biases_in_loops): in a loop Numba compiles an op costs no call a step."""
        forward, back = super().programs(model)
        return biases_in_loops(forward), back

    @staticmethod
    def reverse(back, lanewise_in_loop: bool = False):
        """The optimized path's passes, then each bias's gradient summed in its loop
        (numba_layout.bias_sums_in_loops), as the bias is added there in the forward program."""
        return bias_sums_in_loops(Optimized.reverse(back, lanewise_in_loop))

    @staticmethod
    def loop_products(forward):
        """The products in loops by W itself, not a copy of W^T: for a batch of a few rows the
        loop function's jitops.dot multiplies by W's rows (jitops._times_rows: as fast as BLAS by
        the copy, within the noise of an AVX2 machine; a whole call 0.96-0.99x the time with
        the copy, float32, hidden 128); for a larger batch jitops.dot takes the faster of
        h @ W.T and (W @ h^T)^T, timed at its first call (jitops._form: on a Zen 4, 32 x 256
        by 256 x 1024, 98 + 10 us to transpose against 153-167 for h @ W.T and 120-133 by a
        copy of W^T; on an AVX2 machine h @ W.T was as fast as by the copy, 175 against 176);
        and no call copies W^T (1 MB at hidden 256 for an LSTM), but a loop run in parts with
        more than jitops._BY_ROWS rows a part, once a call before its steps (jitops.gemm by
        a C-ordered W^T: transposed_if)."""
        return forward

    def large_printer(self, model, back, dtype):
        return NumbaPrinter(model, self.forward, back, dtype, self.params,
                            functions=[*self.printer.loop_names.values(),
                                       *self.printer.helper_names.values()])

    def loops_module(self) -> str:
        """The functions as a module of their own, for Numba (see NumbaPrinter)."""
        return "import numpy as np\n\nfrom rnngraph.runtime import jitops\n" + self.functions
