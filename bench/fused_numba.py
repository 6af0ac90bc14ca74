"""Experiment: what one compiled kernel per time loop would give at batch 1 (config B).

Not part of rnngraph, nor of run.py's table.  It answers one question from issue 5:
can a cell written as equations get ahead of JAX at B, where rnngraph's NumPy code,
like the hand NumPy of hand.py, makes some 23 NumPy calls a step at 0.4-1 us each?
Here the torch.nn.LSTM of hand.py is written by hand as two Numba kernels, the
forward loop and the backward loop, every step's gemv and element-wise work in one
compiled function; the GEMMs outside the loops stay NumPy's.

Numba's own exp and tanh are scalar libm calls (no SVML on this machine), about
8 ns a value, which cost the forward loop half its time; ``_exp`` below is a
polynomial the compiler vectorises (Cephes' expf: max relative error 7.7e-8 on
[-30, 30] against float64), and sigmoid and tanh are made from it.

    python bench/fused_numba.py [A|B]      (needs numba: pip install numba)

Measured on 2026-11-23 (2 cores, a slow day: the hand NumPy's LSTM B took 8.4-10.0 ms,
the issue's figure is 6.3), 100 alternating calls in one process, medians, 7 runs: at B
these kernels took 3.7-5.5 ms, 1.6-2.5x the hand NumPy's speed (JAX's, in the issue's
table: 1.8x).  The two loops alone: forward 1.6 ms, backward 1.3-1.5 ms.  With Numba's
own exp in place of ``_exp``: 4.1-4.7 ms.  At A: 0.56x the hand NumPy's speed (its gemv
loops are no match for BLAS at batch 32).  First call 1.7-2.9 s (compiling), 0.5-0.9 s
with Numba's cache in a new process.  Agreement with hand.py: h 1.9e-7, dW_hi 3.6e-7.
"""
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _measure  # noqa: E402
import hand  # noqa: E402

F = np.float32


@njit(cache=True, error_model="numpy")
def _exp(a, k_bits, k_floats, lo, hi):
    """a[lo:hi] = exp(a[lo:hi]) in float32: 2^k p(r), r = x - k ln 2 (ln 2 in two parts).
    k_bits: int32 scratch, k_floats the same memory as float32 (2^k by its exponent)."""
    for j in range(lo, hi):
        x = min(max(a[j], F(-87.0)), F(88.0))
        k = np.floor(x * F(1.4426950408889634) + F(0.5))
        r = x - k * F(0.693359375) - k * F(-2.12194440e-4)
        p = F(1.9875691500e-4)
        p = p * r + F(1.3981999507e-3)
        p = p * r + F(8.3334519073e-3)
        p = p * r + F(4.1665795894e-2)
        p = p * r + F(1.6666665459e-1)
        p = p * r + F(5.0000001201e-1)
        a[j] = p * r * r + r + F(1)
        k_bits[j - lo] = (np.int32(k) + np.int32(127)) << np.int32(23)
    for j in range(lo, hi):
        a[j] *= k_floats[j - lo]


@njit(cache=True, error_model="numpy")
def lstm_forward(A, WhT, H, C, TC, k_bits, k_floats, e):
    """A (T, B, 4n): the input projections plus biases, gates i, f, o, g; overwritten by
    the gates.  H, C (T + 1, B, n) with the initial states in slot 0; TC = tanh(c)."""
    T, B, n4 = A.shape
    n = n4 // 4
    for t in range(T):
        for b in range(B):
            a, h = A[t, b], H[t, b]
            for k in range(n):                       # a += h W_h^T, as axpys (vectorised)
                hk, w = h[k], WhT[k]
                for j in range(n4):
                    a[j] += hk * w[j]
            for j in range(3 * n):                   # sigmoid z = 1 / (1 + exp(-z))
                a[j] = -a[j]
            for j in range(3 * n, n4):               # tanh z = 2 / (1 + exp(-2z)) - 1
                a[j] = -2 * a[j]
            _exp(a, k_bits, k_floats, 0, n4)
            for j in range(3 * n):
                a[j] = 1 / (1 + a[j])
            for j in range(3 * n, n4):
                a[j] = 2 / (1 + a[j]) - 1
            for j in range(n):
                c = a[n + j] * C[t, b, j] + a[j] * a[3 * n + j]
                C[t + 1, b, j] = c
                e[j] = -2 * c
            _exp(e, k_bits, k_floats, 0, n)
            for j in range(n):
                tc = 2 / (1 + e[j]) - 1
                TC[t, b, j] = tc
                H[t + 1, b, j] = a[2 * n + j] * tc


@njit(cache=True, error_model="numpy")
def lstm_backward(A, Wh, C, TC, dH, dZ, dh, dc):
    """dZ (T, B, 4n): the gradient of the pre-activations; dh, dc carried, zero at start."""
    T, B, n4 = A.shape
    n = n4 // 4
    for t in range(T - 1, -1, -1):
        for b in range(B):
            a, dz, dhb, dcb = A[t, b], dZ[t, b], dh[b], dc[b]
            for j in range(n):
                d = dhb[j] + dH[t, b, j]
                tc, o = TC[t, b, j], a[2 * n + j]
                i, f, g = a[j], a[n + j], a[3 * n + j]
                dz[2 * n + j] = d * tc * o * (1 - o)
                cc = dcb[j] + d * o * (1 - tc * tc)
                dz[j] = cc * g * i * (1 - i)
                dz[n + j] = cc * C[t, b, j] * f * (1 - f)
                dz[3 * n + j] = cc * i * (1 - g * g)
                dcb[j] = cc * f
            for k in range(n):
                dhb[k] = 0
            for j in range(n4):                      # dh = dz W_h, as axpys
                z, w = dz[j], Wh[j]
                for k in range(n):
                    dhb[k] += z * w[k]


class LSTM:
    """hand.LSTM's layout (gates i, f, o, g stacked), its loops as the kernels above."""

    def __init__(self, p, dtype):
        ref = hand.LSTM(p, dtype)
        self.Wx, self.Wh, self.WhT, self.b = ref.Wx, np.ascontiguousarray(ref.Wh), ref.WhT, ref.b
        n4 = self.Wh.shape[0]
        self.k_bits = np.empty(n4, np.int32)
        self.k_floats = self.k_bits.view(np.float32)
        self.e = np.empty(n4 // 4, np.float32)

    def run(self, x, dH):
        T, B, m = x.shape
        n4, n = self.Wh.shape
        A = np.matmul(x.reshape(T * B, m), self.Wx.T).reshape(T, B, n4)
        A += self.b
        H, C = np.zeros((T + 1, B, n), F), np.zeros((T + 1, B, n), F)
        TC = np.empty((T, B, n), F)
        lstm_forward(A, self.WhT, H, C, TC, self.k_bits, self.k_floats, self.e)
        dZ, dh, dc = np.empty_like(A), np.zeros((B, n), F), np.zeros((B, n), F)
        lstm_backward(A, self.Wh, C, TC, dH, dZ, dh, dc)
        G = dZ.reshape(T * B, n4)
        return H[1:], {"W_h": G.T @ H[:T].reshape(T * B, n), "W_i": G.T @ x.reshape(T * B, m),
                       "b": G.sum(0), "x": (G @ self.Wx).reshape(T, B, m)}


def main():
    cfg = _measure.CONFIGS[sys.argv[1] if len(sys.argv) > 1 else "B"]
    p, x, dH = _measure.data("LSTM", cfg, cfg["T"], F)
    ref, fused = hand.LSTM(p, F), LSTM(p, F)
    start = time.perf_counter()
    h, grads = fused.run(x, dH)
    print(f"first call {time.perf_counter() - start:.2f} s (compiling, or loading Numba's cache)")
    h_ref, g_ref = ref.run(x, dH)
    n = cfg["n"]
    print("max |difference| from hand.py: h %.1e, dW_hi %.1e, dx %.1e" % (
        abs(h - h_ref).max(), abs(grads["W_h"][:n] - g_ref["W_hi"]).max(),
        abs(grads["x"] - g_ref["x"]).max()))
    times = {"hand NumPy": [], "Numba kernels": []}
    runs = {"hand NumPy": lambda: ref.run(x, dH), "Numba kernels": lambda: fused.run(x, dH)}
    for _ in range(100 if cfg["B"] == 1 else 10):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for name, t in med.items():
        print(f"{name:14s} {t * 1e3:8.3f} ms  {med['hand NumPy'] / t:5.2f}x the hand NumPy's speed")


if __name__ == "__main__":
    main()
