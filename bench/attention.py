"""Attention: examples/attention.rnn (Bahdanau et al. 2015) compiled by rnngraph against the
best NumPy we could write by hand for the same equations, forward and backward (dL(u) = 1
for every decoder step), both float32, in one process: calls alternate, and the figure is
the median over rounds of the ratio within a round (time / rnngraph's: below 1 the hand code
is faster).  Both are first checked against each other in float64.

    python bench/attention.py [--rounds 7] [--calls 20] [--numba]

The hand code computes what rnngraph hands back: the loss at every decoder step, every
parameter's gradient and those of x, y and h(0); the encoder's keys U_a h(t) once (not at
each decoder step), the scores for every encoder step of a decoder step as one product,
the weights' gradients of the attention summed over the decoder steps before one GEMM.
Sizes: batch 32, x 64, h = s = 128, z (the alignment model) 128, o 64; T = 50 encoder
steps, T_u = 20 decoder steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import rnngraph
from rnngraph.runtime.compiled import Compiled

ROOT = Path(__file__).resolve().parent.parent
SIZES = dict(x=64, h=128, s=128, z=128, o=64)
B, T, TU = 32, 50, 20


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def hand(p, x, y, h0):
    """Forward and backward of examples/attention.rnn by hand: (losses, grads)."""
    W, U, b, W_s, b_s = p["W"], p["U"], p["b"], p["W_s"], p["b_s"]
    W_a, U_a, v = p["W_a"], p["U_a"], p["v"]
    A, Bm, C, d, V, k = p["A"], p["B"], p["C"], p["d"], p["V"], p["k"]
    dt = x.dtype
    T_, n = x.shape[0], x.shape[1]
    TU_ = y.shape[0]
    H, S, Z = W.shape[0], A.shape[0], W_a.shape[0]
    # encoder
    h = np.empty((T_ + 1, n, H), dt)
    h[0] = h0
    np.dot(x.reshape(-1, x.shape[-1]), U.T, out=h[1:].reshape(-1, H))
    h[1:] += b
    WT = np.ascontiguousarray(W.T)
    for t in range(1, T_ + 1):
        h[t] += h[t - 1] @ WT
        np.tanh(h[t], out=h[t])
    hs = h[1:]
    keys = (hs.reshape(-1, H) @ U_a.T).reshape(T_, n, Z)      # once, for every decoder step
    s = np.empty((TU_ + 1, n, S), dt)
    s[0] = np.tanh(h[T_] @ W_s.T + b_s)
    yp = np.zeros((TU_ + 1, n, y.shape[-1]), dt)
    yp[1:] = y
    z = np.empty((TU_, T_, n, Z), dt)
    a = np.empty((TU_, T_, n, 1), dt)
    c = np.empty((TU_, n, H), dt)
    W_aT, AT, BT, CT = (np.ascontiguousarray(m.T) for m in (W_a, A, Bm, C))
    YB = (yp[:-1].reshape(-1, yp.shape[-1]) @ BT).reshape(TU_, n, S) + d
    for u in range(1, TU_ + 1):
        np.add(keys, s[u - 1] @ W_aT, out=z[u - 1])
        np.tanh(z[u - 1], out=z[u - 1])
        e = z[u - 1] @ v                                      # (T, n, 1)
        a[u - 1] = _softmax(e, 0)
        np.einsum("tbi,tbh->bh", a[u - 1], hs, out=c[u - 1])
        s[u] = np.tanh(s[u - 1] @ AT + YB[u - 1] + c[u - 1] @ CT)
    zo = (s[1:].reshape(-1, S) @ V.T).reshape(TU_, n, -1) + k
    logp = zo - zo.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    L = -(y * logp).sum(-1, keepdims=True)
    # backward, dL(u) = 1
    g = {}
    dzo = np.exp(logp) * y.sum(-1, keepdims=True) - y
    dy = -logp
    g["V"] = dzo.reshape(-1, dzo.shape[-1]).T @ s[1:].reshape(-1, S)
    g["k"] = dzo.sum((0, 1))
    ds = np.zeros((TU_ + 1, n, S), dt)
    ds[1:] = dzo @ V
    dpre = np.empty((TU_, n, S), dt)
    dkeys = np.zeros((T_, n, Z), dt)
    dhs = np.zeros((T_, n, H), dt)
    dW_a = np.zeros_like(W_a)
    dv = np.zeros_like(v)
    dC = np.zeros_like(C)
    for u in range(TU_, 0, -1):
        dp = dpre[u - 1]
        np.multiply(ds[u], 1 - s[u] * s[u], out=dp)
        ds[u - 1] += dp @ A
        dc = dp @ C
        dC += dp.T @ c[u - 1]
        au = a[u - 1]
        da = np.einsum("bh,tbh->tb", dc, hs)[..., None]
        dhs += au * dc
        de = au * (da - (da * au).sum(0, keepdims=True))
        zu = z[u - 1]
        dz = de @ v.T
        dv += zu.reshape(-1, Z).T @ de.reshape(-1, 1)
        dz *= 1 - zu * zu
        dkeys += dz
        dq = dz.sum(0)
        dW_a += dq.T @ s[u - 1]
        ds[u - 1] += dq @ W_a
    flat = dpre.reshape(-1, S)
    g["A"] = flat.T @ s[:-1].reshape(-1, S)
    g["B"] = flat.T @ yp[:-1].reshape(-1, yp.shape[-1])
    g["d"] = flat.sum(0)
    g["C"], g["W_a"], g["v"] = dC, dW_a, dv
    dy[:-1] += dpre[1:] @ Bm                 # y(u-1) at u = 2..T_u (y(0) is zeros)
    g["U_a"] = dkeys.reshape(-1, Z).T @ hs.reshape(-1, H)
    dhs += (dkeys.reshape(-1, Z) @ U_a).reshape(T_, n, H)
    dp0 = ds[0] * (1 - s[0] * s[0])
    g["W_s"] = dp0.T @ h[T_]
    g["b_s"] = dp0.sum(0)
    dh = np.zeros((T_ + 1, n, H), dt)
    dh[1:] = dhs
    dh[T_] += dp0 @ W_s
    dpe = np.empty((T_, n, H), dt)
    for t in range(T_, 0, -1):
        np.multiply(dh[t], 1 - h[t] * h[t], out=dpe[t - 1])
        dh[t - 1] += dpe[t - 1] @ W
    fe = dpe.reshape(-1, H)
    g["W"] = fe.T @ h[:-1].reshape(-1, H)
    g["U"] = fe.T @ x.reshape(-1, x.shape[-1])
    g["b"] = fe.sum(0)
    g["x"] = (fe @ U).reshape(x.shape)
    g["y"] = dy
    g["h(0)"] = dh[0]
    return L, g


def problem(net, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {n: p.astype(dtype) for n, p in net.init_params(seed=seed).items()}
    x = rng.normal(size=(T, B, SIZES["x"])).astype(dtype)
    y = np.eye(SIZES["o"], dtype=dtype)[rng.integers(0, SIZES["o"], size=(TU, B))]
    h0 = (0.1 * rng.normal(size=(B, SIZES["h"]))).astype(dtype)
    return params, x, y, h0


def run_rnngraph(net, params, x, y, h0):
    outs, pullback = net.vjp(params, {"x": x, "y": y}, {"h(0)": h0})
    return outs["L"], pullback({"L": np.ones_like(outs["L"])})


def check(backend: str) -> float:
    """The largest relative difference between the two in float64, over L and every gradient."""
    model = rnngraph.load(ROOT / "examples" / "attention.rnn", sizes=SIZES)
    net = Compiled(model, "float64", backend=backend)
    params, x, y, h0 = problem(net, np.float64)
    L1, g1 = run_rnngraph(net, params, x, y, h0)
    L2, g2 = hand(params, x, y, h0)
    worst = np.abs(L1 - L2).max() / np.abs(L2).max()
    for key, want in g2.items():
        have = g1[key]
        worst = max(worst, np.abs(have - want).max() / max(np.abs(want).max(), 1e-30))
    return float(worst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="calls of each, alternating, a round")
    ap.add_argument("--numba", action="store_true", help='also backend="numba"')
    args = ap.parse_args()
    backends = ["numpy"] + (["numba"] if args.numba else [])
    for backend in backends:
        print(f"agreement, float64 ({backend}): {check(backend):.1e} (largest relative difference)")
    model = rnngraph.load(ROOT / "examples" / "attention.rnn", sizes=SIZES)
    nets = {bk: Compiled(model, "float32", backend=bk) for bk in backends}
    params, x, y, h0 = problem(nets["numpy"], np.float32)
    pre = {bk: net.prepare(params) for bk, net in nets.items()}
    runs = {f"rnngraph ({bk})": (lambda bk=bk: run_rnngraph(nets[bk], pre[bk], x, y, h0))
            for bk in backends}
    runs["hand NumPy"] = lambda: hand(params, x, y, h0)
    for fn in runs.values():
        fn()                                             # warm: buffers, Numba's compiling
    times = {k: [] for k in runs}
    ratios = {k: [] for k in runs}
    for _ in range(args.rounds):
        this = {k: [] for k in runs}
        for _ in range(args.calls):
            for k, fn in runs.items():
                start = time.perf_counter()
                fn()
                this[k].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in this.items()}
        for k in runs:
            times[k].append(med[k])
            ratios[k].append(med[k] / med["rnngraph (numpy)"])
    print(f"batch {B}, T = {T}, T_u = {TU}, sizes {SIZES}, float32; {args.rounds} rounds of "
          f"{args.calls} alternating calls")
    for k in runs:
        print(f"  {k:18} {1e3 * statistics.median(times[k]):8.2f} ms  "
              f"[{1e3 * min(times[k]):.2f}-{1e3 * max(times[k]):.2f}]  "
              f"({statistics.median(ratios[k]):.2f}x rnngraph's)")


if __name__ == "__main__":
    sys.exit(main())
