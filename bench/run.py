"""How fast is the compiled code?  The table of issue 5, measured side by side.

    python bench/run.py                # everything (about 20 minutes)
    python bench/run.py --rounds 3 --models LSTM --configs A   # a part of it
    python bench/run.py --models PEEPHOLE GRUCHO --kinds rnngraph numba torchcell jax

The last: cells no library ships (bench/cells.py: the book's peephole LSTM, Cho's GRU),
against the same cells written by hand as a torch Python loop and in JAX.

For each model (RNN, LSTM, GRU: examples/torch_*.rnn, PyTorch's equations) and
configuration (A: batch 32, input 128, hidden 256, T 100; B: batch 1, input
64, hidden 128, T 200), forward + backward with dL/dh = 1 in float32, by:
rnngraph (the parameters' dict each call, and "prepared": net.prepare(params)
made once, as the hand code and torch.nn.* keep their weights), the best
hand-written NumPy (bench/hand.py), torch.nn.*, a torch
Python-loop cell (torch.nn.LSTMCell etc.), JAX jit(grad(lax.scan)) and HIPS
autograd (the last two when installed; the table says when they are not).

Protocol: every measurement runs in its own process (bench/_measure.py; two
libraries' thread pools in one process slow each other down), in interleaved
rounds (round 1 runs every column once, then round 2, ...), so that a slow
minute of a shared machine hits every column alike.  Each process warms up,
then times runs for about --budget seconds and reports their median; the table
gives the median over rounds and, in brackets, the lowest and highest.  A second
table gives each ratio to rnngraph within a round, whose median over rounds a
busy machine moves less than it moves the ratio of the medians.
Threads: 2 for every library (OMP/OpenBLAS/MKL, torch.set_num_threads, XLA's
Eigen pool), the number of cores of the machine this was written on.

Before timing, every implementation is checked against torch.nn.* in float64
(largest relative error of h and of every gradient), so the columns compute
the same thing.  Also printed: the measured single-precision GEMM rate and the
fraction of it each column reaches, parse + compile time per model, the wall
time of `rnngraph draw`, peak memory against the hand NumPy, and how time and
memory grow with T.  Nothing is asserted: this prints.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREADS = "2"
ENV = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS,
           MKL_NUM_THREADS=THREADS, RNNGRAPH_THREADS=THREADS,
           XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=" + THREADS)
KINDS = ["rnngraph", "earlier", "prepared", "numba", "earlier-numba", "hand", "torch", "torchcell", "jax", "autograd"]
LABELS = {"rnngraph": "rnngraph", "earlier": "rnngraph --earlier", "prepared": "rnngraph prepared",
          "numba": 'rnngraph backend="numba"', "earlier-numba": 'backend="numba" --earlier',
          "hand": "hand NumPy",
          "torch": "torch.nn.*",
          "torchcell": "torch cell loop", "jax": "JAX jit(grad(scan))", "autograd": "HIPS autograd"}
MODULES = {"numba": "numba", "earlier-numba": "numba", "torch": "torch", "torchcell": "torch", "jax": "jax",
           "autograd": "autograd"}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3, "PEEPHOLE": 4, "GRUCHO": 3}

sys.path.insert(0, str(HERE))
from _measure import CONFIGS  # noqa: E402


#: A checkout of an earlier commit (--earlier): the column "earlier" runs rnngraph from it.
EARLIER: list = []


def measure(*args, timeout=900) -> dict:
    env = ENV
    if args[0] in ("earlier", "earlier-numba"):  # the same measurement, of the earlier checkout
        if not EARLIER:
            return {"error": "no --earlier checkout given"}
        env = dict(ENV, PYTHONPATH=EARLIER[0])
        args = ("rnngraph" if args[0] == "earlier" else "numba", *args[1:])
    cmd = [sys.executable, str(HERE / "_measure.py"), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def available(kind: str) -> bool:
    if kind not in MODULES:
        return True
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec('{MODULES[kind]}') is None)"
    return subprocess.run([sys.executable, "-c", code], env=ENV).returncode == 0


def gemm_rate(runs=5) -> float:
    """Single-precision GEMM GFLOP/s with NumPy: median of fresh processes, 2048^2 by 2048."""
    code = ("import numpy as np, time\n"
            "a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)\n"
            "a @ a\n"
            "ts = []\n"
            "for _ in range(5):\n"
            "    t = time.perf_counter(); a @ a; ts.append(time.perf_counter() - t)\n"
            "print(2 * 2048 ** 3 / min(ts) / 1e9)\n")
    rates = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=ENV).stdout) for _ in range(runs)]
    return statistics.median(rates)


def gemm_flops(model: str, cfg: dict, T: int) -> float:
    """The products' FLOPs of forward + backward: each stacked product runs three times
    (forward, the input's gradient, the weight's gradient)."""
    per_row = 2 * (cfg["m"] + cfg["n"]) * GATES[model] * cfg["n"]
    return 3 * per_row * T * cfg["B"]


def fmt(values) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.1f} [{min(values):.1f}-{max(values):.1f}]" if med >= 10 else \
        f"{med:.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of timed runs per process")
    ap.add_argument("--models", nargs="+", default=["RNN", "LSTM", "GRU"])
    ap.add_argument("--configs", nargs="+", default=["A", "B"])
    ap.add_argument("--kinds", nargs="+", default=KINDS)
    ap.add_argument("--skip-extras", action="store_true",
                    help="only the table: no compile time, draw, memory or T scaling")
    ap.add_argument("--earlier", metavar="DIR",
                    help="a checkout of an earlier commit (git worktree add DIR REV): its "
                         "rnngraph as the column 'earlier', to measure a change side by side")
    args = ap.parse_args()
    if args.earlier:
        EARLIER.append(str(Path(args.earlier).resolve()))
    else:
        args.kinds = [k for k in args.kinds if not k.startswith("earlier")]

    print(f"# Machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.platform()}; Python {platform.python_version()}; "
          f"threads {THREADS} for every library")
    versions = subprocess.run(
        [sys.executable, "-c", "from importlib.metadata import version\n"
         "for m in ('numpy', 'torch', 'jax', 'autograd'):\n"
         "    try:\n"
         "        print(m, version(m))\n"
         "    except Exception:\n"
         "        print(m, 'not installed')"], capture_output=True, text=True, env=ENV).stdout
    print("# " + "; ".join(versions.split("\n")[:-1]))
    kinds = [k for k in args.kinds if available(k)]
    for k in args.kinds:
        if k not in kinds:
            print(f"# {LABELS[k]}: not installed, column skipped (pip install {MODULES[k]})")

    print("\n## Correctness: largest relative error in float64 against torch.nn.* (for PEEPHOLE "
          "and GRUCHO against the torch loop of bench/cells.py)")
    for model in args.models:
        row = []
        for kind in kinds:
            r = measure(kind, model, "A", "--check")
            row.append(f"{kind} {r.get('max_error', r.get('error')):.1e}" if "max_error" in r
                       else f"{kind} {r.get('error')}")
        print(f"{model}: " + ", ".join(row))

    rate = gemm_rate()
    print(f"\n## Single-precision GEMM with NumPy (2048^3, 2 threads): {rate:.0f} GFLOP/s")

    results: dict = {}
    by_round: dict = {}       # {cell: {round: ms}}, for the ratios within a round
    cells = [(m, c, k) for m in args.models for c in args.configs for k in kinds]
    start = time.time()
    for r in range(args.rounds):
        for cell in cells:
            model, config, kind = cell
            out = measure(kind, model, config, "--budget", args.budget)
            if "ms" in out:
                results.setdefault(cell, []).append(out["ms"])
                by_round.setdefault(cell, {})[r] = out["ms"]
        print(f"# round {r + 1}/{args.rounds} done ({time.time() - start:.0f} s)", file=sys.stderr)

    print(f"\n## Forward + backward, float32, ms: median of {args.rounds} processes [min-max]; "
          "x = time / rnngraph's")
    header = "| model | config | " + " | ".join(LABELS[k] for k in kinds) + " |"
    print(header)
    print("|" + "---|" * (len(kinds) + 2))
    for model in args.models:
        for config in args.configs:
            ours = statistics.median(results.get((model, config, "rnngraph"), [float("nan")]))
            cells_text = []
            for kind in kinds:
                v = results.get((model, config, kind), [])
                ratio = f" ({statistics.median(v) / ours:.2f}x)" if v and kind != "rnngraph" else ""
                cells_text.append(fmt(v) + ratio)
            print(f"| {model} | {config} | " + " | ".join(cells_text) + " |")

    print(f"\n## The same ratios within a round: median over the {args.rounds} rounds of time / "
          "rnngraph's time in that round [min-max].  A model's columns run one after the other "
          "in a round, so a slow minute of a shared machine moves both sides of a ratio alike")
    print(header)
    print("|" + "---|" * (len(kinds) + 2))
    for model in args.models:
        for config in args.configs:
            ours = by_round.get((model, config, "rnngraph"), {})
            row = []
            for kind in kinds:
                theirs = by_round.get((model, config, kind), {})
                ratios = [theirs[r] / ours[r] for r in theirs if r in ours]
                row.append("-" if kind == "rnngraph" or not ratios else
                           f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
            print(f"| {model} | {config} | " + " | ".join(row) + " |")

    print(f"\n## Fraction of the measured GEMM rate ({rate:.0f} GFLOP/s) that the products' "
          "FLOPs (3 per stacked product: forward, input and weight gradients) reach")
    print("| model | config | " + " | ".join(LABELS[k] for k in kinds) + " |")
    print("|" + "---|" * (len(kinds) + 2))
    for model in args.models:
        for config in args.configs:
            cfg = CONFIGS[config]
            flops = gemm_flops(model, cfg, cfg["T"])
            row = []
            for kind in kinds:
                v = results.get((model, config, kind))
                row.append(f"{flops / (statistics.median(v) / 1e3) / 1e9 / rate:.0%}" if v else "-")
            print(f"| {model} | {config} | " + " | ".join(row) + " |")

    if args.skip_extras:
        return
    extras(args)


def extras(args):
    print("\n## Parse + compile time per model (target < 50 ms), ms: median of 5 in a process "
          "that has imported rnngraph and compiled once; then the first compile of a fresh "
          "process (imports and the grammar's tables included)")
    code = ("import time, sys, statistics\n"
            "t0 = time.perf_counter()\n"
            "import rnngraph\n"
            "def once(path):\n"
            "    t = time.perf_counter()\n"
            "    rnngraph.load(path).compile(sizes=None if 'torch' not in path else "
            "{'x': 128, 'h': 256}, dtype='float32')\n"
            "    return (time.perf_counter() - t) * 1e3\n"
            "cold = once(sys.argv[1]) + (time.perf_counter() - t0) * 0\n"
            "warm = statistics.median(once(sys.argv[1]) for _ in range(5))\n"
            "print(warm, cold)\n")
    for model in ("torch_rnn", "torch_lstm", "torch_gru", "exercise", "lstm_concat"):
        path = ROOT / "examples" / f"{model}.rnn"
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, env=ENV)
        warm, cold = map(float, done.stdout.split())
        print(f"{model}: {warm:.1f} ms (first in a fresh process: {cold:.0f} ms)")

    if available("numba"):
        first_numba_calls()

    print("\n## Wall time of `rnngraph draw` (the CLI, interpreter start included), "
          "median of 3")
    exe = Path(sys.executable).parent / "rnngraph"
    out = Path(tempfile.mkdtemp()) / "drawing.svg"
    for argv in (["examples/exercise.rnn", "--unroll", "4"], ["examples/torch_lstm.rnn"],
                 ["examples/torch_lstm.rnn", "--unroll", "50"]):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            done = subprocess.run([str(exe), "draw", *argv, "-o", str(out)], cwd=ROOT, env=ENV,
                                  capture_output=True)
            times.append(time.perf_counter() - t)
        status = "" if done.returncode == 0 else f" (failed: {done.stderr.decode()[-200:]})"
        print(f"rnngraph draw {' '.join(argv)}: {statistics.median(times):.2f} s{status}")

    print("\n## Peak memory of forward + backward (NumPy allocations, tracemalloc), MB")
    for model in args.models:
        for config in args.configs:
            ours = measure("rnngraph", model, config, "--memory").get("peak_bytes")
            hand = measure("hand", model, config, "--memory").get("peak_bytes")
            if ours and hand:
                print(f"{model} {config}: rnngraph {ours / 1e6:.1f}, hand {hand / 1e6:.1f} "
                      f"({ours / hand:.2f}x)")

    print("\n## Growth with T: LSTM at config B's sizes (batch 1, input 64, hidden 128); "
          "ms (median of 3 processes) and peak MB")
    print("| T | rnngraph ms | hand ms | rnngraph MB | hand MB | rnngraph ms per step |")
    print("|---|---|---|---|---|---|")
    for T in (100, 1000, 10000):
        row = {}
        for kind in ("rnngraph", "hand"):
            ms = [measure(kind, "LSTM", "B", "--steps", T, "--budget", 0.3).get("ms")
                  for _ in range(3)]
            mem = measure(kind, "LSTM", "B", "--steps", T, "--memory").get("peak_bytes")
            row[kind] = (statistics.median([m for m in ms if m]), mem / 1e6)
        print(f"| {T} | {row['rnngraph'][0]:.1f} | {row['hand'][0]:.1f} | {row['rnngraph'][1]:.1f} "
              f"| {row['hand'][1]:.1f} | {row['rnngraph'][0] / T * 1e3:.1f} us |")


def first_numba_calls():
    """backend="numba" compiles its loops at the first call (for a batch of a few rows) or its
    fused kernels (for a larger batch): how long that call takes in a fresh process with empty
    caches (NUMBA_CACHE_DIR and RNNGRAPH_CACHE_DIR new folders: rnngraph/runtime/jitops.py's
    kernels compile too), then in a second process from those caches, and a later call, for
    configs B and A in float32."""
    print("\n## backend=\"numba\": the first call (forward + backward) of a fresh process, "
          "float32, s: with empty caches; from the caches; a later call")
    code = ("import sys, time, numpy as np, rnngraph\n"
            "m, n, T, B = map(int, sys.argv[2:])\n"
            "net = rnngraph.load(sys.argv[1]).compile(sizes={'x': m, 'h': n}, "
            "dtype='float32', backend='numba')\n"
            "p, x = net.init_params(seed=0), {'x': np.ones((T, B, m), np.float32)}\n"
            "def run():\n"
            "    t = time.perf_counter()\n"
            "    outs, pull = net.vjp(p, x)\n"
            "    pull({'h': np.ones_like(outs['h'])})\n"
            "    return time.perf_counter() - t\n"
            "print(run(), run())\n")
    for config in ("B", "A"):
        cfg = CONFIGS[config]
        for model in ("torch_rnn", "torch_lstm", "torch_gru"):
            caches = tempfile.mkdtemp()
            env = dict(ENV, NUMBA_CACHE_DIR=os.path.join(caches, "numba"),
                       RNNGRAPH_CACHE_DIR=os.path.join(caches, "rnngraph"))
            times = []
            for _ in range(2):
                done = subprocess.run([sys.executable, "-c", code,
                                       str(ROOT / "examples" / f"{model}.rnn"),
                                       *map(str, (cfg["m"], cfg["n"], cfg["T"], cfg["B"]))],
                                      capture_output=True, text=True, env=env, cwd=ROOT)
                times.append(tuple(map(float, done.stdout.split())) if done.returncode == 0
                             else (float("nan"), float("nan")))
            print(f"{model} {config}: {times[0][0]:.1f} s; {times[1][0]:.2f} s; "
                  f"{times[1][1] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
