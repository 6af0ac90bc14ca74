"""A model compiled to NumPy: checked inputs in, outputs and gradients out.

:class:`Compiled` runs the ``forward`` and ``backward`` functions that
:mod:`rnngraph.codegen` generates (``net.source`` shows them).  Its job here is
the contract with the user: shapes (``(T, B, n)`` or, without a batch axis,
``(T, n)``), dtypes, initial values, class-index targets, and an
:class:`RnnGraphError` naming the input and the shape expected whenever
something does not fit, before any arithmetic runs.
"""
from __future__ import annotations

import difflib
import linecache
import math
import warnings
from collections.abc import Mapping

import numpy as np

from .compile import Numba, Optimized, Plain
from . import limits
from .errors import RnnGraphError
from .jit import jit_loops, numba_or_error
from .pysource import tuple_text

DTYPES = ("float32", "float64")
BACKENDS = ("numpy", "numba")


def _shape(shape) -> str:
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
    key = [steps]
    for name, a in inputs.items():
        if type(a) is not np.ndarray:
            return None
        key.append((name, a.shape, a.dtype))
    return tuple(key)


def _unknown(kind: str, name, known) -> RnnGraphError:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none"
    return RnnGraphError(f"unknown {kind} '{name}'{hint} (the {kind}s are: {listing})")


class Prepared:
    """Parameters checked once, copied, and what the forward pass derives from them alone.

    Made by :meth:`Compiled.prepare`, taken by :meth:`Compiled.forward` and
    :meth:`Compiled.vjp` in place of the parameters' dict.  A snapshot: changing the
    arrays it was made from afterwards changes nothing here; prepare again after an
    update.  ``params`` holds the copies (read-only).
    """

    def __init__(self, net: "Compiled", params: dict, values: tuple):
        self._net, self.params, self._values = net, params, values

    def __repr__(self) -> str:
        return f"<rnngraph Prepared: {', '.join(self.params)}>"


class Compiled:
    """Forward and backward (BPTT) passes of a model, as generated NumPy code.

    Build one with :meth:`rnngraph.Model.compile`.

    Attributes
    ----------
    param_shapes : dict of str to tuple
        ``(rows, cols)`` for a matrix, the size of its result by the size of
        its operand as PyTorch's weights; ``(n,)`` for a bias.
    inputs : dict of str to str
        Each input with the shape it takes, e.g. ``{"x": "(T, B, 4) or (T, 4)"}``.
    outputs : list of str
        The names :meth:`forward` returns: every sequence, then every time-free value.
    initial_values : list of str
        The initial values :meth:`forward` takes in ``initial`` (``"h(0)"``, ...);
        zero unless given.  One the model defines (``h(0) = h0``) is not among them.
    source : str
        The generated Python.

    Examples
    --------
    >>> import numpy as np
    >>> from rnngraph import parse
    >>> net = parse("h(t) = tanh(W h(t-1) + U x(t) + b)").compile(sizes={"x": 3, "h": 2})
    >>> net.param_shapes
    {'W': (2, 2), 'U': (2, 3), 'b': (2,)}
    >>> params = net.init_params(seed=0)
    >>> x = np.ones((5, 4, 3))                        # T = 5 steps, a batch of 4
    >>> outs, pullback = net.vjp(params, {"x": x})
    >>> outs["h"].shape
    (5, 4, 2)
    >>> grads = pullback({"h": np.ones((5, 4, 2))})
    >>> sorted(grads), grads["W"].shape, grads["h(0)"].shape
    (['U', 'W', 'b', 'h(0)', 'x'], (2, 2), (4, 2))
    """

    #: From how many values a step (batch x its widest value) the backward pass computes
    #: the activations' derivatives in its loop, step by step, rather than for every step
    #: before it: the earlier generator's threshold, measured then (4096 values, 16 KiB
    #: in float32: a step's derivatives stay in the L1 cache).
    per_step = 4096

    def __init__(self, model, dtype: str = "float64", check_finite: bool = True,
                 optimize: bool = True, backend: str = "numpy"):
        if str(dtype) not in DTYPES:
            raise RnnGraphError(f"dtype must be float32 or float64, not {dtype!r}")
        if backend not in BACKENDS:
            raise RnnGraphError(f"backend must be numpy or numba, not {backend!r}")
        if backend == "numba" and not optimize:
            raise RnnGraphError("backend='numba' compiles the optimized loops: "
                                "optimize=False is the plain NumPy path")
        numba = numba_or_error() if backend == "numba" else None
        model.require_sizes()
        self.model = model
        self.dtype = np.dtype(str(dtype))
        self.check_finite = check_finite
        self.backend = backend
        # The compiler (rnngraph/compile/) prints the module: the plain path, the optimized
        # one, or the optimized one with its loops also as functions for Numba
        gen = (Plain if not optimize else Optimized if numba is None else Numba)(model, str(dtype))
        self.source = gen.module()
        self.param_shapes = {p: tuple(model.param_shapes[p]) for p in gen.params}
        sym = model.symbols
        self._timed = model.timed
        self._sizes = {n: model.sizes[n] for n in gen.inputs}
        self._time_free = [n for n in gen.inputs if not sym[n].timed]
        self._sequences = list(gen.step_vars)
        self._values = [n for n in sym if sym[n].role == "value"]
        self.outputs = self._sequences + self._values
        self.initial_values = [k for k in model.initial_slots if k not in model.defined_slots]
        self._states = {k: n for k, (_, n) in model.initial_slots.items()}
        self._defined_init = model.defined_slots
        # For the memory check of each call: numbers a step holds, steps of padding.
        self._step_numbers = (sum(model.sizes[n] for n, s in sym.items() if s.timed),
                              max([1] + [s.delay for s in sym.values()]))
        self.inputs = {n: self._expected(n) for n in gen.inputs}
        self._layouts: dict[tuple, tuple] = {}       # see _inputs
        self._zeros: dict[tuple, tuple] = {}         # see _initial
        filename = f"<rnngraph {model.filename}>"
        lines = self.source.splitlines(True)
        linecache.cache[filename] = (len(self.source), None, lines, filename)
        namespace: dict = {}
        exec(compile(self.source, filename, "exec"), namespace)
        if numba:
            namespace.update(jit_loops(gen.loops_module(), namespace["LOOPS"], numba,
                                       model.filename))
        self._forward, self._backward = namespace["forward"], namespace["backward"]
        # Optimized: a second backward computes the activations' derivatives in its loops,
        # for batches whose steps have per_step values or more (rnngraph/compile/__init__.py)
        self._backward_large = namespace.get("backward_large")
        self._step_values = getattr(gen, "step_values", None)
        self._prepare = namespace["prepare"]

    def release(self) -> None:
        """Give back the memory the compiled code keeps between calls.

        With ``optimize=True`` the arrays of a call (those proportional to T and the big
        matrices) are kept and handed to later calls once nothing else holds them, up
        to two calls' worth (at most 1 GiB); a long sequence run once keeps its arrays
        until then.  This drops them.  Outputs, gradients and pullbacks you hold stay
        valid; the next call allocates afresh."""
        work = self._forward.__globals__.get("WORK")
        if work is not None:
            work.clear()

    def __repr__(self) -> str:
        return f"<Compiled {self.model.filename}: {self.dtype.name}, outputs {', '.join(self.outputs)}>"

    def _expected(self, name: str) -> str:
        n = self._sizes[name]
        if self.model.symbols[name].timed:
            text = f"(T, B, {n}) or (T, {n})"
            if self.model.symbols[name].target:
                text += f", or class indices (T, B) or (T,)"
            return text
        return f"(B, {n}) or ({n},)"

    # -- parameters ----------------------------------------------------------
    def init_params(self, seed: int | None = 0) -> dict[str, np.ndarray]:
        """Random parameters as PyTorch initialises its recurrent layers.

        Every entry of a matrix of shape (rows, cols) and of a bias of shape
        (rows,) is drawn uniformly from [-1/sqrt(rows), 1/sqrt(rows)]: rows is
        the size of the result, the hidden size of ``torch.nn.RNN``, ``LSTM``
        and ``GRU``.  ``seed`` seeds a ``numpy.random.Generator``; the draws go
        in the order of :attr:`param_shapes`.

        Examples
        --------
        >>> from rnngraph import parse
        >>> net = parse("h(t) = tanh(W h(t-1) + U x(t))").compile(sizes={"x": 3, "h": 4})
        >>> p = net.init_params(seed=1)
        >>> p["U"].shape, bool(abs(p["U"]).max() <= 0.5)
        ((4, 3), True)
        """
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.param_shapes.items():
            bound = 1 / np.sqrt(shape[0])
            out[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        return out

    def _params(self, params) -> dict[str, np.ndarray]:
        if not isinstance(params, Mapping):
            raise RnnGraphError(f"params must be a dict {{name: array}}, not {type(params).__name__}")
        for name in params:
            if name not in self.param_shapes:
                raise _unknown("parameter", name, list(self.param_shapes))
        out = {}
        for name, shape in self.param_shapes.items():
            if name not in params:
                raise RnnGraphError(f"missing parameter '{name}': expected an array of shape "
                                    f"{_shape(shape)}")
            a = params[name]
            if type(a) is not np.ndarray or a.dtype != self.dtype:       # else as it is
                a = self._array(a, f"parameter '{name}'")
            if a.shape != shape:
                raise RnnGraphError(f"parameter '{name}' has shape {_shape(a.shape)}; "
                                    f"expected {_shape(shape)}")
            out[name] = self._finite(a.astype(self.dtype, copy=False), f"parameter '{name}'")
        return out

    def prepare(self, params) -> Prepared:
        """Check the parameters once and compute what the forward pass makes of them alone.

        For many calls with the same parameters (evaluating a trained model, a benchmark):
        :meth:`forward` and :meth:`vjp` take the result in place of ``params`` and skip
        the checks, stacking the gates' matrices and transposing them, which each call
        with a dict does (4% to 7% of a call of an LSTM or a GRU at batch 1, hidden 128).
        The parameters are copied: a later change to them does not reach the result.

        Examples
        --------
        >>> import numpy as np
        >>> from rnngraph import parse
        >>> net = parse("h(t) = tanh(W h(t-1) + U x(t) + b)").compile(sizes={"x": 3, "h": 2})
        >>> params = net.init_params(seed=0)
        >>> ready = net.prepare(params)
        >>> x = np.ones((5, 3))
        >>> bool((net.forward(ready, {"x": x})["h"] == net.forward(params, {"x": x})["h"]).all())
        True
        """
        if isinstance(params, Prepared):
            self._checked(params)
            return params
        with np.errstate(over="ignore"):          # _all_finite's sum of squares may overflow
            p = {name: a.copy() for name, a in self._params(params).items()}
        for a in p.values():
            a.flags.writeable = False
        return Prepared(self, p, self._prepare(p))

    def _checked(self, prepared: Prepared):
        """(params, prepared values) of parameters prepared by this model."""
        if prepared._net is not self:
            raise RnnGraphError("these parameters were prepared by another compiled model; "
                                "call prepare on this one")
        return prepared.params, prepared._values

    # -- inputs --------------------------------------------------------------
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

    def _inputs(self, inputs, steps):
        """Check and normalise the inputs: arrays (T, B, n) and (B, n) of the dtype; T, B.

        A call whose inputs have the names, shapes and dtypes of an earlier call's (a
        training loop, a benchmark) skips what those decide (the names, the layout, the
        shapes) and checks only the values: with the loop's arrays just out of the cache,
        the full checks took 30-55 us of an Elman RNN's 2.4 ms at batch 1, hidden 128."""
        key = _layout_key(inputs, steps)
        known = self._layouts.get(key) if key is not None else None
        if known is not None:
            T, B, batched = known
            return {n: self._input(n, a, batched) for n, a in inputs.items()}, T, B, batched, set()
        out, T, B, batched, class_targets = self._checked_inputs(inputs, steps)
        if key is not None and not class_targets:   # class indices: their values decide too
            _remember(self._layouts, key, (T, B, batched))
        return out, T, B, batched, class_targets

    def _checked_inputs(self, inputs, steps):
        """_inputs for inputs not seen before: every check."""
        if not isinstance(inputs, Mapping):
            raise RnnGraphError(f"inputs must be a dict {{name: array}}, not {type(inputs).__name__}")
        for name in inputs:
            if name not in self.inputs:
                raise _unknown("input", name, list(self.inputs))
        for name in self.inputs:
            if name not in inputs:
                raise RnnGraphError(f"missing input '{name}': expected an array {self.inputs[name]}")
        arrays = {n: self._array(inputs[n], f"input '{n}'") for n in self.inputs}
        T, B, batched, source = self._layout(arrays, steps)
        if steps is not None and T != steps:
            raise RnnGraphError(f"steps={steps}, but input '{source}' has {T} steps")
        given = f"{self._given(T, B, batched)}, from input '{source}'" if source else \
            self._given(T, B, batched)
        sym = self.model.symbols
        out, class_targets = {}, set()
        for n, a in arrays.items():
            size = self._sizes[n]
            lead = ((T, B) if batched else (T,)) if sym[n].timed else ((B,) if batched else ())
            if sym[n].target and a.dtype.kind == "b" and a.ndim == len(lead):
                raise RnnGraphError(f"input '{n}' holds booleans of shape {_shape(a.shape)}: class "
                                    f"indices are integers {_shape(lead)}, and a target of "
                                    f"booleans is one per class {_shape(lead + (size,))}")
            if sym[n].target and a.dtype.kind in "iu" and a.ndim == len(lead):
                if a.shape != lead:
                    raise RnnGraphError(f"input '{n}' has shape {_shape(a.shape)}; expected class "
                                        f"indices {_shape(lead)} or vectors {_shape(lead + (size,))} "
                                        f"({given})")
                if a.size and (a.min() < 0 or a.max() >= size):
                    bad = int(a.min() if a.min() < 0 else a.max())
                    raise RnnGraphError(f"input '{n}' holds class {bad}; "
                                        f"the classes are 0 to {size - 1}")
                a = np.eye(size, dtype=self.dtype)[a]
                class_targets.add(n)
            elif a.shape != lead + (size,):
                raise RnnGraphError(f"input '{n}' has shape {_shape(a.shape)}; expected "
                                    f"{_shape(lead + (size,))} ({given})")
            out[n] = self._input(n, a, batched)
        return out, T, B, batched, class_targets

    def _input(self, name: str, a: np.ndarray, batched: bool) -> np.ndarray:
        """An input of the right shape in the model's dtype, checked for NaN, with a batch
        axis of 1 if it came without one."""
        a = self._finite(a.astype(self.dtype, copy=False), f"input '{name}'")
        return a if batched else a[:, None] if self.model.symbols[name].timed else a[None]

    def _shape_error(self, name, a) -> RnnGraphError:
        return RnnGraphError(f"input '{name}' has shape {_shape(a.shape)}; expected {self.inputs[name]}")

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

    def _check_memory(self, T, B) -> None:
        """Refuse a call that would not fit in the memory limit, before it allocates: every
        sequence over T steps plus the padding of the longest delay, a batch of B, about four
        times over (the values, their gradients, what the backward pass keeps, buffers)."""
        per_step, pad = self._step_numbers
        nbytes = 4 * ((T or 0) + pad) * B * per_step * self.dtype.itemsize
        if nbytes > self.model.limits.max_memory_bytes:      # (the message only then: a hot path)
            limits.check_memory(self.model, nbytes, f"T = {T}, B = {B}, {per_step:,} numbers a "
                                                    f"step, {self.dtype.name}")

    def _batch_of_initial(self, initial) -> tuple[int, bool]:
        """B and whether there is a batch axis, from the initial values of a model that reads
        no input: the first given as (B, n)."""
        if isinstance(initial, Mapping):
            for value in initial.values():
                shape = np.shape(value)
                if len(shape) == 2:
                    return shape[0], True
        return 1, False

    def _initial(self, initial, B, batched):
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
            name = str(key) if str(key) in self._states or "(" in str(key) else f"{key}(0)"
            sym = self.model.symbols.get(name.split("(")[0])
            if name in self._defined_init:
                raise RnnGraphError(f"{name} is defined in the model; "
                                    "it cannot also be given in initial")
            if sym is not None and sym.direction == "backward":
                raise RnnGraphError(f"'{sym.name}' runs backward in time: it starts from zero after the "
                                    "last step and takes no initial value")
            if name not in self.initial_values:
                raise _unknown("initial value", key, self.initial_values)
            n = self.model.sizes[self._states[name]]
            a = self._array(value, f"initial value '{name}'")
            ok = [(n,)] + ([(B, n)] if batched else [])
            if a.shape not in ok:
                raise RnnGraphError(f"initial value '{name}' has shape {_shape(a.shape)}; expected "
                                    + " or ".join(_shape(s) for s in ok))
            out[name] = self._finite(a.astype(self.dtype, copy=False), f"initial value '{name}'")
            shapes[name] = a.shape
        for name in self.initial_values:
            if name not in out:
                out[name] = np.zeros((B, self.model.sizes[self._states[name]]), self.dtype)
                shapes[name] = (B, out[name].shape[-1]) if batched else (out[name].shape[-1],)
        return out, shapes

    # -- running -------------------------------------------------------------
    def forward(self, params, inputs, initial=None, *, steps: int | None = None) -> dict:
        """Run the model over its input sequences.

        Parameters
        ----------
        params : dict of str to array, or Prepared
            Every parameter, shaped as :attr:`param_shapes`; or what :meth:`prepare`
            made of them, for calls with the same parameters.
        inputs : dict of str to array
            Every input: a sequence ``(T, B, n)``, or ``(T, n)`` without a batch
            axis; a time-free input ``(B, n)`` or ``(n,)``; a loss target also as
            integer class indices ``(T, B)`` or ``(T,)``.
        initial : dict, optional
            Initial values of forward states, ``{"h(0)": (B, n) or (n,)}``; zero
            where not given.
        steps : int, optional
            T, for a model that reads no input sequence.

        Returns
        -------
        dict of str to array
            Every sequence ``(T, B, n)`` (``(T, n)`` if the inputs had no batch
            axis), a loss as ``(T, B, 1)``, and every time-free value.  They are
            read-only views of the arrays :meth:`vjp` keeps for the backward pass.
        """
        return self._run(params, inputs, initial, steps)[0]


    def vjp(self, params, inputs, initial=None, *, steps: int | None = None):
        """Run forward and return ``(outputs, pullback)``.

        ``pullback(cotangents)`` takes ``{name: array shaped like outputs[name]}``
        for any subset of the outputs (the others count as zero) and returns the
        gradients of ``sum(cotangent * output)``: for every parameter, every input
        (shaped as given; class-index targets have none) and every initial value
        in :attr:`initial_values` (shaped as given, else ``(B, n)`` or ``(n,)``).
        """
        outs, run = self._run(params, inputs, initial, steps)

        def pullback(cotangents) -> dict[str, np.ndarray]:
            cot = self._cotangents(cotangents, outs, run["squeezed"])
            back = self._backward
            if self._backward_large is not None and run["B"] * self._step_values >= self.per_step:
                back = self._backward_large
            grads = back(run["params"], run["tape"], cot, run["T"], run["B"])
            for n in run["classes"]:
                del grads[n]
            if not run["batched"]:
                for n in self.inputs:
                    if n in grads:
                        grads[n] = grads[n][:, 0] if self.model.symbols[n].timed else grads[n][0]
            for name, shape in run["initial"].items():
                grads[name] = grads[name].reshape(shape) if len(shape) == 2 or not run["batched"] \
                    else grads[name].sum(0)
            return grads

        return outs, pullback

    def _run(self, params, inputs, initial, steps):
        with np.errstate(over="ignore"):          # _all_finite's sum of squares may overflow
            p, pre = self._checked(params) if isinstance(params, Prepared) else \
                (self._params(params), None)
            x, T, B, batched, classes = self._inputs(inputs, steps)
            if not self.inputs and initial:         # no input says whether there is a batch axis
                B, batched = self._batch_of_initial(initial)
            init, init_shapes = self._initial(initial, B, batched)
        self._check_memory(T, B)
        raw, tape = self._forward(p, x, init, T, B, pre)
        outs, squeezed = {}, set()
        for n, v in raw.items():
            if not batched and v.ndim >= 2:
                v = v[:, 0] if n in self._sequences else v[0]
                squeezed.add(n)
            v = v.view()
            v.flags.writeable = False
            outs[n] = v
        return outs, dict(params=p, tape=tape, T=T, B=B, batched=batched, classes=classes,
                          initial=init_shapes, squeezed=squeezed)

    def _cotangents(self, cotangents, outs, squeezed):
        if not isinstance(cotangents, Mapping):
            raise RnnGraphError("cotangents must be a dict {name: array}, "
                                f"not {type(cotangents).__name__}")
        cot = {}
        for name, value in cotangents.items():
            if name not in outs:
                raise _unknown("output", name, list(outs))
            a = self._array(value, f"the cotangent for '{name}'")
            if a.shape != outs[name].shape:
                raise RnnGraphError(f"the cotangent for '{name}' has shape {_shape(a.shape)}; expected "
                                    f"{_shape(outs[name].shape)}, the shape of outputs['{name}']")
            a = self._finite(a.astype(self.dtype, copy=False), f"the cotangent for '{name}'")
            if name in squeezed:
                a = a[:, None] if name in self._sequences else a[None]
            cot[name] = a
        return cot
