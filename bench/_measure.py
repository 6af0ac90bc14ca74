"""One measurement in its own process: prints one JSON line.

    python bench/_measure.py KIND MODEL CONFIG [--steps T] [--batch B] [--memory] [--check]

KIND is rnngraph, prepared (rnngraph given net.prepare(params), made before the
timing as hand.py stacks its matrices in its constructor), plain (rnngraph with
optimize=False), numba (rnngraph with backend="numba", the dict; its warm-up
call compiles the loops or loads them from the cache), hand, torch, torchcell,
jax or autograd; MODEL is RNN, LSTM, GRU (examples/torch_*.rnn) or PEEPHOLE, GRUCHO
(bench/cells.py: hand-written in torch and JAX only); CONFIG is A or B (see CONFIGS),
``--batch`` another batch size at its sizes (bench/batches.py).
The run is forward + backward with dL/dh = 1, float32.  Times: a warm-up, then
repeated runs for about a second; the line carries their median in ms.
``--memory``: the peak of NumPy's allocations during the first run (tracemalloc),
for rnngraph and hand.  ``--check``: no timing; run in float64 and print the
largest relative error of h and of every gradient against torch.nn.* (or,
without torch, against rnngraph).
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

THREADS = "2"          # the machine's cores; the same for every library (see run.py)
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RNNGRAPH_THREADS"):
    os.environ.setdefault(var, THREADS)

import numpy as np  # noqa: E402

CONFIGS = {"A": dict(B=32, m=128, n=256, T=100), "B": dict(B=1, m=64, n=128, T=200)}
EXAMPLES = HERE.parent / "examples"


def example(model):
    """The file writing MODEL: examples/torch_*.rnn, or a cell of bench/cells.py."""
    import cells
    return EXAMPLES / f"{cells.EXAMPLES.get(model, 'torch_' + model.lower())}.rnn"


def data(model, cfg, T, dtype):
    import rnngraph
    rnn = rnngraph.load(example(model))
    net = rnn.compile(sizes={"x": cfg["m"], "h": cfg["n"]}, dtype="float64")
    p = net.init_params(seed=0)
    x = np.random.default_rng(1).normal(size=(T, cfg["B"], cfg["m"])).astype(dtype)
    dH = np.ones((T, cfg["B"], cfg["n"]), dtype)
    return {k: v.astype(dtype) for k, v in p.items()}, x, dH


def make(kind, model, cfg, p, x, dH, dtype):
    """(run, result): run once; result() gives (h, grads) for the check."""
    if kind in ("rnngraph", "prepared", "plain", "numba"):
        import rnngraph
        rnn = rnngraph.load(example(model))
        net = rnn.compile(sizes={"x": cfg["m"], "h": cfg["n"]}, dtype=dtype,
                          optimize=kind != "plain",
                          backend="numba" if kind == "numba" else "numpy")
        params = net.prepare(p) if kind == "prepared" else p     # as hand.py's constructor

        def run():
            outs, pullback = net.vjp(params, {"x": x})
            return outs["h"], pullback({"h": dH})
        return run, run
    if kind == "hand":
        import hand
        net = hand.MODELS[model](p, dtype)
        return (lambda: net.run(x, dH)), (lambda: net.run(x, dH))
    import cells
    import others
    if kind == "torch" or kind == "torchcell":
        import torch
        torch.set_num_threads(int(THREADS))
    if model in cells.EXAMPLES:
        if kind not in cells.MAKERS:
            raise SystemExit(f"{kind}: no {model} (a cell no library ships)")
        return cells.MAKERS[kind](model, p, dtype, x, dH)
    return others.MAKERS[kind](model, p, dtype, x, dH)


def timing(run, budget=1.0):
    for _ in range(2):
        run()
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget and len(times) < 200):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, len(times)


def memory(run):
    """Peak bytes NumPy allocates in the first run of a fresh process.  The first: from the
    second on, rnngraph's workspace (and the hand code's kept buffers) reuse arrays, which
    tracemalloc would not count, though they are as much memory as ever."""
    import tracemalloc
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def check(kind, model, cfg, T):
    p, x, dH = data(model, cfg, T, "float64")
    h, grads = make(kind, model, cfg, p, x, dH, "float64")[1]()
    import cells
    try:
        import torch  # noqa: F401  (the reference, when installed: torch.nn.*, or for a
        # cell no library ships the torch loop written by hand in bench/cells.py)
        ref = "torchcell" if model in cells.EXAMPLES else "torch"
    except ImportError:
        ref = "rnngraph"
    h_ref, g_ref = make(ref, model, cfg, p, x, dH, "float64")[1]()
    errors = {} if h is None else {"h": relative_error(h, h_ref)}
    for name in g_ref:
        if name in grads:
            errors[name] = relative_error(grads[name], g_ref[name])
    missing = sorted(set(g_ref) - set(grads))
    return {"reference": ref, "max_error": max(errors.values()), "missing": missing,
            "worst": max(errors, key=errors.get)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind")
    ap.add_argument("model")
    ap.add_argument("config")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--budget", type=float, default=1.0)
    a = ap.parse_args()
    cfg = dict(CONFIGS[a.config], **({"B": a.batch} if a.batch else {}))
    T = a.steps or cfg["T"]
    if a.check:
        print(json.dumps(check(a.kind, a.model, cfg, min(T, 20))))
        return
    p, x, dH = data(a.model, cfg, T, "float32")
    run = make(a.kind, a.model, cfg, p, x, dH, "float32")[0]
    out = {}
    if a.memory:
        out["peak_bytes"] = memory(run)
    else:
        out["ms"], out["runs"] = timing(run, a.budget)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
