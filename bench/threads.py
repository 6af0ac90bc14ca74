"""Experiment: does a step's elementwise kernel pay on two threads? (issue 22: "parallelise the
elementwise kernels over the batch only when it pays; measure 1 and 2 threads").

Not part of rnngraph, nor of run.py's table.  An LSTM step at config A (batch 32, hidden 256,
float32) as the numba backend runs it: NumPy's GEMM of h(t-1) by the stacked recurrent
weights, then one kernel over the rows (the gates' sigmoid and tanh by jitops' vectorised row
kernels, the cell, tanh of the cell, h), as compile/fuse.py writes it.  The kernel runs on
one thread (the backend's) or on two, the rows split in halves by ``numba.prange``; each
Numba threading layer in a process of its own (``NUMBA_THREADING_LAYER``; tbb is not
installed here), since NumPy's OpenBLAS keeps threads of its own waiting after each GEMM.

    python bench/threads.py          (needs numba: pip install 'rnngraph[numba]')

Measured on 2026-12-06 (2 cores, AVX2), a step (GEMM + kernel), best of 7 runs of 100 steps,
two runs of this script: GEMM alone 130-235 us; with the kernel on one thread 174-209 us; on
two threads 7.9-8.2 ms with the omp layer's defaults (its threads spin, and so do
OpenBLAS's), 216-224 us with omp and OMP_WAIT_POLICY=passive, 266-304 us with workqueue.  The
kernel alone: 43-49 us on one thread, 47-143 on two.  On 2026-12-07 (2 cores, a Zen 4): one
thread 165-166 us, two 8.4 ms (omp's defaults), 179 (passive), 238 (workqueue); the kernel
alone 18-22 us on one thread, 29-63 on two.  So the kernels stay on one thread: two threads
do not pay at this size beside NumPy's BLAS, and cost 40x where two pools spin.
"""
import os
import subprocess
import sys
import time

LAYERS = [("omp", {}), ("omp", {"OMP_WAIT_POLICY": "passive"}), ("workqueue", {})]


def child():
    import numba
    import numpy as np
    from numba import prange

    from rnngraph.runtime import jitops

    def body(P, G, H, lo, hi):
        n = H.shape[1]
        x = np.empty(3 * n, P.dtype)
        bits = jitops.scratch(x)
        y = np.empty(n, P.dtype)
        for i in range(lo, hi):
            r = jitops._view(P, i, 4 * n)
            jitops.vsigmoid(r[:3 * n], x, bits)
            jitops.vtanh(r[3 * n:], y, bits)
            for j in range(n):
                G[i, j] = x[j] * y[j] + x[n + j] * G[i, j]
            jitops.vtanh(G[i], y, bits)
            for j in range(n):
                H[i, j] = x[2 * n + j] * y[j]

    rows = numba.njit(body)

    @numba.njit
    def one(P, G, H):
        rows(P, G, H, 0, P.shape[0])

    @numba.njit(parallel=True)
    def two(P, G, H):
        for half in prange(2):
            rows(P, G, H, half * P.shape[0] // 2, (half + 1) * P.shape[0] // 2)

    rng = np.random.default_rng(0)
    B, n = 32, 256
    W = (rng.standard_normal((n, 4 * n)) * 0.05).astype(np.float32)
    H = rng.standard_normal((B, n)).astype(np.float32)
    P = np.empty((B, 4 * n), np.float32)
    G = np.zeros((B, n), np.float32)
    for f in (one, two):
        f(P, G, H)

    def steps(kernel=None, count=100):
        start = time.perf_counter()
        for _ in range(count):
            np.dot(H, W, out=P)
            if kernel is not None:
                kernel(P, G, H)
        return (time.perf_counter() - start) / count * 1e6

    best: dict = {}
    for _ in range(7):
        for name, run in (("GEMM alone", lambda: steps()), ("one thread", lambda: steps(one)),
                          ("two threads", lambda: steps(two))):
            best[name] = min(best.get(name, 1e9), run())
    alone = {}
    for name, f in (("one thread", one), ("two threads", two)):
        start = time.perf_counter()
        for _ in range(1000):
            f(P, G, H)
        alone[name] = (time.perf_counter() - start) / 1000 * 1e6
    print(f"layer {numba.threading_layer()}: a step " +
          ", ".join(f"{k} {v:.0f} us" for k, v in best.items()) +
          "; the kernel alone " + ", ".join(f"{k} {v:.0f} us" for k, v in alone.items()))


def main():
    for layer, extra in LAYERS:
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2", **extra)
        print(" ".join(f"{k}={v}" for k, v in extra.items()) or "(defaults)", end=": ", flush=True)
        subprocess.run([sys.executable, __file__, "--child"], env=env, check=True)


if __name__ == "__main__":
    child() if "--child" in sys.argv else main()
