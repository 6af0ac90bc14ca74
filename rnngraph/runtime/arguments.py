"""The contract with the user: every argument of forward, vjp and a pullback checked.

Shapes (``(T, B, n)`` or, without a batch axis, ``(T, n)``), dtypes, initial values,
class-index targets, NaN and Inf: an :class:`RnnGraphError` naming the argument
and what was expected whenever something does not fit, before any arithmetic
runs; and each argument in the form the generated code takes (the model's dtype,
a batch axis).  :class:`rnngraph.runtime.compiled.Compiled` holds one.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

import numpy as np

from ..errors import RnnGraphError
from ..compile.source import tuple_text


def shape_text(shape) -> str:
    return tuple_text(shape, "")


def _all_finite(a: np.ndarray) -> bool:
    """Whether every number of a float array is finite.  The sum of squares is finite if
    they are (NaN and inf carry through a BLAS dot): 1.0 us for a (128, 128) float32
    matrix against 2.1 for ``np.isfinite(a).all()``, 0.5 against 1.0 for a bias.  Only if
    it is not does the exact test run: squares of finite numbers may overflow (the
    caller silences that warning with np.errstate)."""
    f = a.ravel()
    s = np.dot(f, f)
    return math.isfinite(s) or bool(np.isfinite(a).all())


#: Input layouts (names, shapes, dtypes) a compiled model remembers as checked, and
#: batch sizes it keeps zeros for (initial values not given).
_LAYOUTS = 32


def _remember(cache: dict, key, value):
    """cache[key] = value, the cache emptied first when it holds _LAYOUTS entries; value."""
    if len(cache) >= _LAYOUTS:
        cache.clear()
    cache[key] = value
    return value


def _layout_key(inputs, steps) -> tuple | None:
    """What decides the checks of inputs but their values: each name, shape and dtype
    (and ``steps``), if ``inputs`` is a dict of NumPy arrays; else None."""
    if type(inputs) is not dict:
        return None
    key = [tuple(sorted(steps.items(), key=str)) if isinstance(steps, dict) else steps]
    for name, a in inputs.items():
        if type(a) is not np.ndarray:
            return None
        key.append((name, a.shape, a.dtype))
    try:
        hash(key[0])
    except TypeError:                     # steps of a kind _steps refuses: no cache
        return None
    return tuple(key)


def _unknown(kind: str, name, known) -> RnnGraphError:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none"
    kinds = "indices" if kind == "index" else f"{kind}s"
    return RnnGraphError(f"unknown {kind} '{name}'{hint} (the {kinds} are: {listing})")


def _rows(a: np.ndarray) -> np.ndarray:
    """``a``, or a C-ordered copy if its last axis is not contiguous (a strided or transposed
    view): backend="numba"'s kernels read a parameter's or a cotangent's rows through their
    pointers, and run NumPy's loop instead for any other layout."""
    if a.ndim and a.shape[-1] > 1 and a.strides[-1] != a.itemsize:
        return np.ascontiguousarray(a)
    return a


class Arguments:
    """The checks of one compiled model's arguments; ``expected`` the shape of each input,
    as its messages say it (Compiled.inputs)."""

    def __init__(self, model, dtype, check_finite: bool, inputs, param_shapes: dict,
                 sequences: list):
        self.model, self.dtype, self.check_finite = model, dtype, check_finite
        self.param_shapes, self._sequences = param_shapes, sequences
        self._timed = model.timed
        # the indices in the order the generated code takes their lengths (T, then T_u, ...)
        self.indices = ["t"] + [d.name for d in model.program.indices]
        self._used = {s.index for s in model.symbols.values() if s.timed}
        self._sizes = {n: model.sizes[n] for n in inputs}
        self.initial_values = [k for k in model.initial_slots if k not in model.defined_slots]
        self._states = {k: n for k, (_, n) in model.initial_slots.items()}
        self._defined_init = model.defined_slots
        self.expected = {n: self._expected_text(n) for n in inputs}
        self._layouts: dict[tuple, tuple] = {}       # see inputs
        self._zeros: dict[tuple, tuple] = {}         # see initial

    def _expected_text(self, name: str) -> str:
        n = self._sizes[name]
        if self.model.symbols[name].timed:
            i = self.model.symbols[name].index
            T = "T" if i == "t" else f"T_{i}"
            text = f"({T}, B, {n}) or ({T}, {n})"
            if self.model.symbols[name].target:
                text += f", or class indices ({T}, B) or ({T},)"
            return text
        return f"(B, {n}) or ({n},)"

    def params(self, params) -> dict[str, np.ndarray]:
        if not isinstance(params, Mapping):
            raise RnnGraphError(f"params must be a dict {{name: array}}, not {type(params).__name__}")
        for name in params:
            if name not in self.param_shapes:
                raise _unknown("parameter", name, list(self.param_shapes))
        out = {}
        for name, shape in self.param_shapes.items():
            if name not in params:
                raise RnnGraphError(f"missing parameter '{name}': expected an array of shape "
                                    f"{shape_text(shape)}")
            a = params[name]
            if type(a) is not np.ndarray or a.dtype != self.dtype:       # else as it is
                a = self._array(a, f"parameter '{name}'")
            if a.shape != shape:
                raise RnnGraphError(f"parameter '{name}' has shape {shape_text(a.shape)}; "
                                    f"expected {shape_text(shape)}")
            out[name] = self._finite(_rows(a.astype(self.dtype, copy=False)), f"parameter '{name}'")
        return out

    def _array(self, value, what: str) -> np.ndarray:
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise RnnGraphError(f"{what} is not an array of numbers: {err}") from None
        if a.dtype.kind not in "biuf":
            raise RnnGraphError(f"{what} is not an array of numbers (its dtype is {a.dtype})")
        return a

    def _finite(self, a: np.ndarray, what: str) -> np.ndarray:
        if self.check_finite and a.dtype.kind == "f" and not _all_finite(a):
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise RnnGraphError(f"{what} contains NaN or Inf (first at index {where}); "
                                "compile with check_finite=False to let it through")
        return a

    def inputs(self, inputs, steps):
        """Check and normalise the inputs: arrays (T, B, n) and (B, n) of the dtype; T, B.

        A call whose inputs have the names, shapes and dtypes of an earlier call's (a
        training loop, a benchmark) skips what those decide (the names, the layout, the
        shapes) and checks only the values: with the loop's arrays just out of the cache,
        the full checks took 30-55 us of an Elman RNN's 2.4 ms at batch 1, hidden 128."""
        key = _layout_key(inputs, steps)
        known = self._layouts.get(key) if key is not None else None
        if known is not None:
            lengths, B, batched = known
            return {n: self._input(n, a, batched) for n, a in inputs.items()}, lengths, B, batched, set()
        out, lengths, B, batched, class_targets = self._checked_inputs(inputs, steps)
        if key is not None and not class_targets:   # class indices: their values decide too
            _remember(self._layouts, key, (lengths, B, batched))
        return out, lengths, B, batched, class_targets

    def _steps(self, steps):
        """``steps`` checked: None, a whole number >= 0, or {index: whole number >= 0}; a
        dict for a model of one index is its number for t."""
        def whole(n, what):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise RnnGraphError(f"{what} must be a whole number of steps, 0 or more, not {n!r}")
            return int(n)
        if steps is None:
            return None
        if isinstance(steps, Mapping):
            for i in steps:
                if i not in self.indices:
                    raise _unknown("index", i, self.indices)
            steps = {i: whole(n, f"steps[{i!r}]") for i, n in steps.items()}
            return steps if len(self.indices) > 1 else steps.get("t")
        return whole(steps, "steps")

    def _checked_inputs(self, inputs, steps):
        """_inputs for inputs not seen before: every check."""
        steps = self._steps(steps)
        if not isinstance(inputs, Mapping):
            raise RnnGraphError(f"inputs must be a dict {{name: array}}, not {type(inputs).__name__}")
        for name in inputs:
            if name not in self.expected:
                raise _unknown("input", name, list(self.expected))
        for name in self.expected:
            if name not in inputs:
                raise RnnGraphError(f"missing input '{name}': expected an array {self.expected[name]}")
        arrays = {n: self._array(inputs[n], f"input '{n}'") for n in self.expected}
        if len(self.indices) > 1:
            _, B, batched, source = self._layout(arrays, steps if isinstance(steps, int) else 0)
            lengths, sources = self._lengths(arrays, steps, batched)
        else:
            T, B, batched, source = self._layout(arrays, steps)
            if steps is not None and T != steps:
                raise RnnGraphError(f"steps={steps}, but input '{source}' has {T} steps")
            lengths, sources = {"t": T}, {"t": source}
        sym = self.model.symbols
        for last in sorted((r for s in sym.values() for r in s.fixed),
                           key=lambda r: 1 if r.step == "end" else r.step):
            need = 1 if last.step == "end" else last.step
            i = sym[last.name].index
            if lengths[i] is not None and lengths[i] < need:
                T = lengths[i]
                given = self._given(T, B, batched) + (f", from input '{sources[i]}'" if sources[i]
                                                      else "")
                along = "" if i == "t" else f" over {i}"
                raise RnnGraphError(f"the model reads {last.name}({last.step}), but the sequence{along} "
                                    f"has {T} step{'s' if T != 1 else ''} ({given})")
        out, class_targets = {}, set()
        for n, a in arrays.items():
            size = self._sizes[n]
            T = lengths.get(sym[n].index)
            given = f"{self._given(T, B, batched)}, from input '{sources.get(sym[n].index)}'" \
                if sources.get(sym[n].index) else self._given(T, B, batched)
            lead = ((T, B) if batched else (T,)) if sym[n].timed else ((B,) if batched else ())
            if sym[n].target and a.dtype.kind == "b" and a.ndim == len(lead):
                raise RnnGraphError(f"input '{n}' holds booleans of shape {shape_text(a.shape)}: class "
                                    f"indices are integers {shape_text(lead)}, and a target of "
                                    f"booleans is one per class {shape_text(lead + (size,))}")
            if sym[n].target and a.dtype.kind in "iu" and a.ndim == len(lead):
                if a.shape != lead:
                    raise RnnGraphError(f"input '{n}' has shape {shape_text(a.shape)}; expected class "
                                        f"indices {shape_text(lead)} or vectors {shape_text(lead + (size,))} "
                                        f"({given})")
                if a.size and (a.min() < 0 or a.max() >= size):
                    bad = int(a.min() if a.min() < 0 else a.max())
                    raise RnnGraphError(f"input '{n}' holds class {bad}; "
                                        f"the classes are 0 to {size - 1}")
                a = np.eye(size, dtype=self.dtype)[a]
                class_targets.add(n)
            elif a.shape != lead + (size,):
                raise RnnGraphError(f"input '{n}' has shape {shape_text(a.shape)}; expected "
                                    f"{shape_text(lead + (size,))} ({given})")
            out[n] = self._input(n, a, batched)
        return out, lengths, B, batched, class_targets

    def _lengths(self, arrays, steps, batched) -> tuple[dict, dict]:
        """The number of steps of each index, from its inputs or ``steps`` (a number for every
        index with no input, or a dict {index: number}); and the input that says so."""
        sym = self.model.symbols
        lengths, sources = {}, {}
        for i in self.indices:
            given = steps.get(i) if isinstance(steps, dict) else steps
            found = [n for n in arrays if sym[n].timed and sym[n].index == i]
            if found:
                n = found[0]
                lengths[i], sources[i] = arrays[n].shape[0], n
                if isinstance(steps, dict) and given is not None and given != lengths[i]:
                    raise RnnGraphError(f"steps={given} for {i}, but input '{n}' has {lengths[i]} steps")
            elif i in self._used:
                if given is None:
                    raise RnnGraphError(f"no input is read at the steps of {i}: give their number, "
                                        f"steps={{'{i}': n}}")
                lengths[i], sources[i] = given, None
            else:
                lengths[i], sources[i] = 0, None
        return lengths, sources

    def _input(self, name: str, a: np.ndarray, batched: bool) -> np.ndarray:
        """An input of the right shape in the model's dtype, checked for NaN, with a batch
        axis of 1 if it came without one."""
        a = self._finite(a.astype(self.dtype, copy=False), f"input '{name}'")
        return a if batched else a[:, None] if self.model.symbols[name].timed else a[None]

    def _shape_error(self, name, a) -> RnnGraphError:
        return RnnGraphError(f"input '{name}' has shape {shape_text(a.shape)}; expected {self.expected[name]}")

    def _layout(self, arrays, steps):
        """T, B, whether there is a batch axis, and the input that says so.

        The first input whose shape is unambiguous decides: a sequence (T, B, n)
        or (T, n), else a time-free input (B, n) or (n,); integer targets, which
        may be class indices (T, B) or (T,), only when nothing else does.
        """
        sym = self.model.symbols
        decided = [n for n in arrays if not (sym[n].target and arrays[n].dtype.kind in "iu")]
        for n in sorted(decided, key=lambda n: not sym[n].timed):
            a, timed = arrays[n], sym[n].timed
            if a.ndim not in ((2, 3) if timed else (1, 2)) or a.shape[-1] != self._sizes[n]:
                raise self._shape_error(n, a)
            batched = a.ndim == (3 if timed else 2)
            T = a.shape[0] if timed else steps
            if T is None and self._timed:
                continue                          # a time-free input: a sequence may still say T
            return T, (a.shape[-2] if batched else 1), batched, n
        targets = [n for n in arrays if n not in decided]
        if targets:
            n, a = targets[0], arrays[targets[0]]
            if a.ndim not in (1, 2):
                raise self._shape_error(n, a)
            return a.shape[0], (a.shape[1] if a.ndim > 1 else 1), a.ndim > 1, targets[0]
        if self._timed and steps is None:
            raise RnnGraphError("this model reads no input sequence: give the number of steps, "
                                "forward(params, inputs, steps=T)")
        free = [n for n in arrays if not sym[n].timed]
        if free:
            a = arrays[free[0]]
            return steps, (a.shape[0] if a.ndim == 2 else 1), a.ndim == 2, free[0]
        return steps, 1, False, None

    @staticmethod
    def _given(T, B, batched) -> str:
        return (f"T = {T}, B = {B}" if batched else f"T = {T}, no batch axis") if T is not None else \
            (f"B = {B}" if batched else "no batch axis")

    def batch_of_initial(self, initial) -> tuple[int, bool]:
        """B and whether there is a batch axis, from the initial values of a model that reads
        no input: the first given as (B, n)."""
        if isinstance(initial, Mapping):
            for key, value in initial.items():
                shape = np.shape(value)
                name = self.state_of(str(key))
                if name is not None and len(shape) == len(self.model.shape(name)) + 1:
                    return shape[0], True
        return 1, False

    def state_of(self, key: str) -> str | None:
        """The state an initial value's key (``h(0)``, or ``h``) is of; None if none."""
        return self._states.get(self._initial_key(key))

    def _initial_key(self, key) -> str:
        """An initial value's key as the model names it: ``h(0)`` for ``h``."""
        key = str(key)
        return key if key in self._states or "(" in key else f"{key}(0)"

    def initial(self, initial, B, batched):
        if not initial and type(initial) in (dict, type(None)):
            zeros = self._zeros.get((B, batched))    # read-only: the same arrays every call
            if zeros is None:
                zeros = _remember(self._zeros, (B, batched), self._checked_initial({}, B, batched))
                for a in zeros[0].values():
                    a.flags.writeable = False
            return zeros
        return self._checked_initial(initial, B, batched)

    def _checked_initial(self, initial, B, batched):
        initial = {} if initial is None else initial
        if not isinstance(initial, Mapping):
            raise RnnGraphError("initial must be a dict {'h(0)': array}, "
                                f"not {type(initial).__name__}")
        out, shapes = {}, {}
        for key, value in initial.items():
            name = self._initial_key(key)
            sym = self.model.symbols.get(name.split("(")[0])
            if name in self._defined_init:
                raise RnnGraphError(f"{name} is defined in the model; "
                                    "it cannot also be given in initial")
            if sym is not None and sym.direction == "backward":
                raise RnnGraphError(f"'{sym.name}' runs backward in time: it starts from zero after the "
                                    "last step and takes no initial value")
            if name not in self.initial_values:
                raise _unknown("initial value", key, self.initial_values)
            n = self.model.shape(self._states[name])
            a = self._array(value, f"initial value '{name}'")
            ok = [n] + ([(B, *n)] if batched else [])
            if a.shape not in ok:
                raise RnnGraphError(f"initial value '{name}' has shape {shape_text(a.shape)}; expected "
                                    + " or ".join(shape_text(s) for s in ok))
            out[name] = self._finite(a.astype(self.dtype, copy=False), f"initial value '{name}'")
            shapes[name] = a.shape
        for name in self.initial_values:
            if name not in out:
                n = self.model.shape(self._states[name])
                out[name] = np.zeros((B, *n), self.dtype)
                shapes[name] = (B, *n) if batched else n
        return out, shapes

    def batch_axis(self, name: str) -> int:
        """The batch's axis in the array of output ``name``: 0 for a time-free value, 1 after
        the steps of a sequence, 2 after those of a value over two indices (e(u, t))."""
        index = self.model.symbols[name].index
        return 2 if isinstance(index, tuple) else 1 if name in self._sequences else 0

    def cotangents(self, cotangents, outs, squeezed):
        if not isinstance(cotangents, Mapping):
            raise RnnGraphError("cotangents must be a dict {name: array}, "
                                f"not {type(cotangents).__name__}")
        cot = {}
        for name, value in cotangents.items():
            if name not in outs:
                raise _unknown("output", name, list(outs))
            a = self._array(value, f"the cotangent for '{name}'")
            if a.shape != outs[name].shape:
                raise RnnGraphError(f"the cotangent for '{name}' has shape {shape_text(a.shape)}; expected "
                                    f"{shape_text(outs[name].shape)}, the shape of outputs['{name}']")
            a = self._finite(_rows(a.astype(self.dtype, copy=False)), f"the cotangent for '{name}'")
            if name in squeezed:
                a = np.expand_dims(a, self.batch_axis(name))
            cot[name] = a
        return cot
