"""A model compiled to NumPy: checked inputs in, outputs and gradients out.

:class:`Compiled` runs the ``forward`` and ``backward`` functions the compiler
prints (rnngraph/compile/; ``net.source`` shows them), with backend="numba" its
loops through Numba (jit.py).  Every argument is checked first, by
:class:`rnngraph.runtime.arguments.Arguments`: an :class:`RnnGraphError` naming
the input and the shape expected whenever something does not fit, before any
arithmetic runs.
"""
from __future__ import annotations

import linecache

import numpy as np

from ..compile import Numba, Optimized, Plain
from ..check import limits
from ..errors import RnnGraphError
from .arguments import Arguments
from .jit import jit_loops, numba_or_error
from ..graphs.trees import Tree, structure, trees_of

DTYPES = ("float32", "float64")
BACKENDS = ("numpy", "numba")


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
        self.backend = backend
        # The compiler (rnngraph/compile/) prints the module: the plain path, the optimized
        # one, or the optimized one with its loops also as functions for Numba
        gen = (Plain if not optimize else Optimized if numba is None else Numba)(model, str(dtype))
        self.source = gen.module()
        self.param_shapes = {p: tuple(model.param_shapes[p]) for p in gen.params}
        sym = model.symbols
        self._sequences = list(gen.step_vars)
        self.outputs = self._sequences + [n for n in sym if sym[n].role == "value"]
        # For the memory check of each call: numbers a step holds, steps of padding.
        self._step_numbers = (sum(model.numbers(n) for n, s in sym.items() if s.timed),
                              max([1] + [s.delay for s in sym.values()]))
        # and for each value over two indices (attention's), its (outer, inner) index and size,
        # with the widest sequence its loop reads whole (the context's product a(u, t) h(t) is
        # kept for every pair of steps too)
        widest = max([model.numbers(n) for n, s in sym.items() if s.timed], default=0)
        self._pairs = [(s.index[0], s.index[1], model.numbers(n) + widest)
                       for n, s in sym.items() if isinstance(s.index, tuple)]
        self._args = Arguments(model, self.dtype, check_finite, gen.inputs, self.param_shapes,
                               self._sequences)
        self.inputs = self._args.expected
        self.initial_values = self._args.initial_values
        filename = f"<rnngraph {model.filename}>"
        lines = self.source.splitlines(True)
        linecache.cache[filename] = (len(self.source), None, lines, filename)
        namespace: dict = {}
        exec(compile(self.source, filename, "exec"), namespace)
        if numba:
            namespace.update(jit_loops(gen.loops_module(), namespace["LOOPS"], numba,
                                       model.filename, namespace.get("KERNELS", ()),
                                       namespace.get("STEPS", ()), namespace.get("SPLIT"),
                                       namespace.get("HELPERS")))
        self._forward, self._backward = namespace["forward"], namespace["backward"]
        # each tree's index: the slots its arrays have before its first node and after its last
        self._trees = {i: namespace["TREE_SLOTS"] for i in namespace.get("TREES", ())}
        # Optimized: a second backward computes the activations' derivatives in its loops,
        # for batches whose steps have per_step values or more (rnngraph/compile/__init__.py)
        self._backward_large = namespace.get("backward_large")
        if numba:
            # a loop of the numba backend writes a step's ops out in one pass (batch 1) or
            # fuses them (larger), so the derivatives cost nothing extra there: in the loop
            # at every batch (batch 1, float32, hidden 128: Cho's GRU, LSTM, GRU, peephole
            # LSTM 0.97x the time with them before the loop); per_step still chooses
            self.per_step = 0
        self._step_values = getattr(gen, "step_values", None)
        self._prepare = namespace["prepare"]
        # mode="free": the model as it runs free (model.free_running()), compiled when first run
        self._options = dict(dtype=str(dtype), check_finite=check_finite, optimize=optimize,
                             backend=backend)
        self._free: dict = {}

    def running(self, mode: str, targets: bool = True) -> "Compiled":
        """The compiled model for ``mode``: ``"train"`` (the equations as written: a target read
        at an earlier step is the target, teacher forcing) or ``"free"`` (each ``free y -> o``
        line's output read in the target's place, as at test time; ``targets=False``: without
        the losses, which need the targets, to generate: :meth:`Model.generating`)."""
        if mode == "train":
            return self
        if mode != "free":
            raise RnnGraphError(f"mode must be 'train' or 'free', not {mode!r}")
        if not self.model.free:
            raise RnnGraphError(f"{self.model.filename} has no 'free y -> o' line: it runs the same "
                                "in training and free-running; leave out mode='free'")
        if targets not in self._free:
            model = self.model.free_running() if targets else self.model.generating()
            self._free[targets] = Compiled(model, **self._options)
            self._free[targets].check_finite = self.check_finite
        return self._free[targets]

    def _free_args(self, mode, params, inputs):
        """The model running in ``mode`` (not "train"), and the call's parameters and inputs for it."""
        self.running(mode)                     # a bad mode, or no free line: refused here
        net = self._free_for(inputs)
        if isinstance(params, Prepared):
            raise RnnGraphError("these parameters were prepared for training: running free, prepare "
                                "them with net.running('free').prepare(params), or pass the dict")
        params = {k: v for k, v in params.items() if k in net.param_shapes} \
            if isinstance(params, dict) else params
        return net, params, net._inputs_of(inputs)

    def _free_for(self, inputs) -> "Compiled":
        """Running free: with the losses if a target is given, else generating without them."""
        full = self.running("free")
        targets = [n for n in full.inputs if full.model.symbols[n].target]
        given = isinstance(inputs, dict) and any(n in inputs for n in targets)
        return full if given or not targets else self.running("free", targets=False)

    @property
    def check_finite(self) -> bool:
        """Whether NaN and Inf in inputs, parameters and cotangents are refused (the
        argument checks keep it: setting it here sets it there)."""
        return self._args.check_finite

    @check_finite.setter
    def check_finite(self, value: bool) -> None:
        self._args.check_finite = value

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
            p = {name: a.copy() for name, a in self._args.params(params).items()}
        for a in p.values():
            a.flags.writeable = False
        return Prepared(self, p, self._prepare(p))

    def _checked(self, prepared: Prepared):
        """(params, prepared values) of parameters prepared by this model."""
        if prepared._net is not self:
            raise RnnGraphError("these parameters were prepared by another compiled model; "
                                "call prepare on this one")
        return prepared.params, prepared._values

    def _check_memory(self, T, B, lengths=None) -> None:
        """Refuse a call that would not fit in the memory limit, before it allocates: every
        sequence over T steps plus the padding of the longest delay, a batch of B, about four
        times over (the values, their gradients, what the backward pass keeps, buffers); and
        a value over two indices over every pair of their steps (T_u x T: attention's)."""
        per_step, pad = self._step_numbers
        nbytes = 4 * ((T or 0) + pad) * B * per_step * self.dtype.itemsize
        pairs = sum(4 * ((lengths[o] or 0) + pad) * (lengths[i] or 0) * B * n
                    for o, i, n in self._pairs) * self.dtype.itemsize if lengths else 0
        if nbytes + pairs > self.model.limits.max_memory_bytes:   # (the message only then)
            what = f", {len(self._pairs)} over two indices" if pairs else ""
            limits.check_memory(self.model, nbytes + pairs, f"T = {T}, B = {B}, {per_step:,} "
                                f"numbers a step{what}, {self.dtype.name}")

    # -- running -------------------------------------------------------------
    def forward(self, params, inputs, initial=None, *, steps: int | dict | None = None,
                mode: str = "train", tree=None) -> dict:
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
        steps : int or dict, optional
            T, for a model that reads no input sequence; with several indices (``index
            u``) the steps of each index no input gives, one number for all or a dict
            ``{"u": 5}`` (an index with inputs takes their length).
        tree : tuple, list or dict, optional
            For a model over a tree's nodes (``tree n``): the tree, as nested tuples of the
            leaves' positions ``((0, 1), 2)`` or a parent array ``[3, 3, 4, 4, -1]``
            (rnngraph.graphs.trees.py); by default the balanced binary tree over the
            input's steps, which are its leaves.  The outputs over the tree have one row
            per node: the leaves in the inputs' order, then the inner nodes level by level,
            the root last.
        mode : {"train", "free"}
            ``"free"`` runs the model as at test time: for each ``free y -> o`` line it
            reads its own output ``o(t-1)`` where training reads the target ``y(t-1)``
            (the inputs it no longer reads are left out, as its initial values are
            those of :meth:`running` ``("free")``).  Given no target, it generates:
            the losses are left out, and ``steps`` says how long where no input does.

        Returns
        -------
        dict of str to array
            Every sequence ``(T, B, n)`` (``(T, n)`` if the inputs had no batch
            axis), a loss as ``(T, B, 1)``, and every time-free value.  They are
            read-only views of the arrays :meth:`vjp` keeps for the backward pass.
        """
        if mode != "train":
            net, params, inputs = self._free_args(mode, params, inputs)
            return net.forward(params, inputs, initial, steps=steps, tree=tree)
        return self._run(params, inputs, initial, steps, tree)[0]

    def _inputs_of(self, inputs) -> dict:
        """``inputs`` less those this model does not read (a target read only as teacher)."""
        return {k: v for k, v in inputs.items() if k in self.inputs} if isinstance(inputs, dict) else inputs


    def vjp(self, params, inputs, initial=None, *, steps: int | dict | None = None,
            mode: str = "train", tree=None):
        """Run forward and return ``(outputs, pullback)``.

        ``pullback(cotangents)`` takes ``{name: array shaped like outputs[name]}``
        for any subset of the outputs (the others count as zero) and returns the
        gradients of ``sum(cotangent * output)``: for every parameter, every input
        (shaped as given; class-index targets have none) and every initial value
        in :attr:`initial_values` (shaped as given, else ``(B, n)`` or ``(n,)``).
        ``mode="free"``: as :meth:`forward`, through the outputs fed back.
        """
        if mode != "train":
            net, params, inputs = self._free_args(mode, params, inputs)
            return net.vjp(params, inputs, initial, steps=steps, tree=tree)
        outs, run = self._run(params, inputs, initial, steps, tree)

        def pullback(cotangents) -> dict[str, np.ndarray]:
            cot = self._args.cotangents(cotangents, outs, run["squeezed"])
            back = self._backward
            if self._backward_large is not None and run["B"] * self._step_values >= self.per_step:
                back = self._backward_large
            grads = back(run["params"], run["tape"], cot, run["T"], run["B"], *run["more"])
            for n in run["classes"]:
                del grads[n]
            if not run["batched"]:
                for n in self.inputs:
                    if n in grads:
                        grads[n] = grads[n][:, 0] if self.model.symbols[n].timed else grads[n][0]
            for name, shape in run["initial"].items():     # as given: (B, n), or (n,) for all
                one = self.model.shape(self._args.state_of(name))
                grads[name] = grads[name].reshape(shape) if len(shape) > len(one) or \
                    not run["batched"] else grads[name].sum(0)
            return grads

        return outs, pullback

    def _run(self, params, inputs, initial, steps, tree=None):
        with np.errstate(over="ignore"):          # _all_finite's sum of squares may overflow
            p, pre = self._checked(params) if isinstance(params, Prepared) else \
                (self._args.params(params), None)
            given = {i: Tree.of(t) for i, t in trees_of(tree, list(self._trees)).items()
                     if t is not None} if self._trees else {}
            if given:                                # a tree given says its leaves' number
                read = {self.model.symbols[n].index for n in self.inputs}
                leaves = {i: t.leaves for i, t in given.items() if i not in read}
                if leaves:
                    steps = {**({i: steps for i in self._args.indices} if isinstance(steps, int)
                                else {}), **leaves, **(steps if isinstance(steps, dict) else {})}
            x, lengths, B, batched, classes = self._args.inputs(inputs, steps)
            if self._trees:                 # a tree's nodes: its leaves are the steps given
                x, lengths = dict(x), dict(lengths)
                for i, (before, after) in self._trees.items():
                    shape = Tree.of(given[i], lengths[i]) if i in given \
                        else Tree.balanced(lengths[i])
                    x[f"tree {i}"] = structure(shape, before, after)
                    lengths[i] = shape.nodes
            T, more = lengths["t"], tuple(lengths[i] for i in self._args.indices[1:])
            if not self.inputs and initial:         # no input says whether there is a batch axis
                B, batched = self._args.batch_of_initial(initial)
            init, init_shapes = self._args.initial(initial, B, batched)
        self._check_memory(T + sum(more) if more else T, B, lengths if self._pairs else None)
        raw, tape = self._forward(p, x, init, T, B, *more, prepared=pre)
        outs, squeezed = {}, set()
        for n, v in raw.items():
            if not batched and v.ndim >= 2:
                v = v.take(0, self._args.batch_axis(n))
                squeezed.add(n)
            v = v.view()
            v.flags.writeable = False
            outs[n] = v
        return outs, dict(params=p, tape=tape, T=T, more=more, B=B, batched=batched, classes=classes,
                          initial=init_shapes, squeezed=squeezed)
