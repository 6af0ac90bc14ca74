"""The compiler: model -> IR -> passes -> printed NumPy.

    lower.py      Model -> forward Program (rnngraph/compile/program.py), one row per
                  op in optable.py
    autodiff.py   forward Program -> backward Program (reverse mode on the IR)
    numpy_plain.py  both programs -> a Python module (the plain printer)

:class:`Plain` is what :class:`rnngraph.compiled.Compiled` asks a generator for.
"""
from __future__ import annotations

from .autodiff import backward, taped
from .cse import cse
from .layout import concat_views
from .lower import lower
from .numpy_fast import FastPrinter
from .numpy_plain import Printer
from .memory import preactivations_in_place, sink_carried_writes, transposed_in_loops
from .pack import pack
from .passes import (drop_dead, fold_constants, hoist_invariants, propagate_copies, reassociate,
                     split_loops, stack_products)


class Plain:
    """The plain path: the forward program and its reverse, printed one statement an op."""

    PRINTER = Printer

    def __init__(self, model, dtype: str):
        self.forward, self.backward = self.programs(model)
        self.params = list(model.ir().params)
        printer = self.PRINTER(model, self.forward, self.backward, dtype, self.params)
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
    stacked, in the forward program and in its reverse; each op printed in place."""

    PRINTER = FastPrinter

    def programs(self, model):
        forward = split_loops(hoist_invariants(pack(fold_constants(reassociate(cse(
            fold_constants(lower(model))))))))
        forward, back = taped(hoist_invariants(stack_products(forward)))
        back = concat_views(sink_carried_writes(propagate_copies(split_loops(hoist_invariants(
            drop_dead(back))))))
        return transposed_in_loops(preactivations_in_place(forward, back)), back
