"""Wall time of `rnngraph draw`: the exercise at --unroll 4 (target < 0.5 s) and an
LSTM at --unroll 50 (target < 5 s).  Medians of a few runs; prints, asserts nothing.

    python bench/draw.py
"""
import statistics
import time
from pathlib import Path

import rnngraph

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def wall(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


for name, steps, runs, target in (("exercise", 4, 7, 0.5), ("torch_lstm", 50, 3, 5.0)):
    model = rnngraph.load(EXAMPLES / f"{name}.rnn")
    t = wall(lambda: rnngraph.draw(model, unroll=steps, format="svg"), runs)
    print(f"{name} --unroll {steps}: {t:.3f} s median of {runs} (target < {target} s)")
