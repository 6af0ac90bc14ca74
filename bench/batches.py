"""Small batches: backend="numba" against the earlier checkout's and torch.nn.*, batch by batch.

Not part of run.py's table (its configs are batch 32 and batch 1).  Config B's sizes (input
64, hidden 128, T 200, float32, forward + backward) at batches 1-16, each measurement in a
process of its own (bench/_measure.py), the kinds interleaved in rounds; each figure is the
median over the rounds of the time divided by torch.nn.*'s in the same round.  With
``--earlier PATH`` (a checkout of an earlier commit) its backend="numba" runs too.

    python bench/batches.py [--models LSTM GRU] [--batches 1 2 4 8] [--rounds 3] [--earlier PATH]

Up to a few rows (8 for these sizes: NumbaPrinter.small_batch) the numba backend's loops run
compiled whole, their products by W's rows, two rows of the batch a pass over W; above, a
Python loop over the steps with NumPy's GEMM and one fused kernel a step.  Results of runs
are in bench/results.txt.
"""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402  (its measure(): a process a measurement, the earlier checkout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["LSTM", "GRU"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 2, 3, 4, 6, 8, 12, 16])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--earlier", help="a checkout of an earlier commit: its numba backend too")
    a = ap.parse_args()
    kinds = ["numba", "torch"]
    if a.earlier:
        run.EARLIER.append(os.path.abspath(a.earlier))
        kinds.insert(1, "earlier-numba")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=HERE).stdout.strip()
    print(f"## Small batches (config B's sizes, {a.rounds} rounds, at {rev}): time / torch.nn.*'s "
          "in the same round, median [range]; torch.nn.*'s time in ms")
    print("| model | batch | " + " | ".join(kinds[:-1]) + " | torch.nn.* ms |")
    print("|---" * (len(kinds) + 2) + "|")
    for model in a.models:
        for B in a.batches:
            times = {k: [] for k in kinds}
            for _ in range(a.rounds):
                for k in kinds:
                    r = run.measure(k, model, "B", "--batch", B)
                    times[k].append(r.get("ms", float("nan")))
            ratios = {k: [t / b for t, b in zip(times[k], times["torch"])] for k in kinds[:-1]}
            print(f"| {model} | {B} | " + " | ".join(run.fmt(ratios[k]) + "x" for k in kinds[:-1])
                  + f" | {statistics.median(times['torch']):.2f} |", flush=True)


if __name__ == "__main__":
    main()
