"""The exported PyTorch LSTM (examples/torch_lstm.rnn through Model.to_torch) against
torch.nn.LSTM with the same weights, forward and backward (the sum of h), float32 on the
CPU, in one process: calls alternate, and the figure is the median over rounds of the
ratio within a round (time / the exported module's).  Also the exported module under
torch.compile (inductor; its first call, which compiles, reported apart) and, when JAX is
installed, the JAX export (Model.to_jax) under jax.jit(jax.grad(...)).  All first checked
equal.

    python bench/export.py [--rounds 7] [--calls 5] [--no-compile]

Config A of bench/run.py: batch 32, input 128, hidden 256, T = 100; 2 threads for every
library (torch.set_num_threads, XLA's Eigen pool).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
import torch  # noqa: E402

import rnngraph  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
B, X, H, T = 32, 128, 256, 100


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    ref = torch.nn.LSTM(X, H)
    net_model = rnngraph.load(ROOT / "examples" / "torch_lstm.rnn").with_sizes({"x": X, "h": H})
    net = net_model.to_torch()
    stems = {"weight_ih_l0": "W_i", "weight_hh_l0": "W_h", "bias_ih_l0": "b_i", "bias_hh_l0": "b_h"}
    with torch.no_grad():
        for attr, stem in stems.items():
            for gate, chunk in zip("ifgo", getattr(ref, attr).chunk(4)):
                net.params[stem + gate].copy_(chunk)
    x = torch.randn(T, B, X)
    with torch.no_grad():
        print(f"agreement, float32: {float((ref(x)[0] - net({'x': x})['h']).abs().max()):.1e}")

    def exported():
        net.zero_grad()
        net({"x": x})["h"].sum().backward()

    def nn_lstm():
        ref.zero_grad()
        ref(x)[0].sum().backward()
    runs = {"exported": exported, "torch.nn.LSTM": nn_lstm}
    if not args.no_compile:
        fast = torch.compile(net)

        def compiled():
            net.zero_grad()
            fast({"x": x})["h"].sum().backward()
        start = time.perf_counter()
        compiled()
        print(f"torch.compile's first call (compiles): {time.perf_counter() - start:.1f} s")
        with torch.no_grad():
            print(f"agreement of the compiled module: {float((ref(x)[0] - fast({'x': x})['h']).abs().max()):.1e}")
        runs["exported, torch.compile"] = compiled
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("JAX: not installed")
    else:
        init, apply = net_model.to_jax()
        jparams = {k: jnp.asarray(v.detach().numpy()) for k, v in net.params.items()}
        jx = jnp.asarray(x.numpy())
        grad = jax.jit(jax.grad(lambda p, x: apply(p, {"x": x})["h"].sum(), argnums=(0, 1)))
        start = time.perf_counter()
        jax.block_until_ready(grad(jparams, jx))
        print(f"JAX jit's first call (compiles): {time.perf_counter() - start:.1f} s")
        print(f"agreement of the JAX export: {float(abs(apply(jparams, {'x': jx})['h'] - ref(x)[0].detach().numpy()).max()):.1e}")

        def jax_export():
            jax.block_until_ready(grad(jparams, jx))
        runs["exported to JAX, jit(grad)"] = jax_export
    for fn in runs.values():
        fn()
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
            ratios[k].append(med[k] / med["exported"])
    print(f"batch {B}, input {X}, hidden {H}, T = {T}, float32, 2 threads; {args.rounds} rounds "
          f"of {args.calls} alternating calls, forward and backward")
    for k in runs:
        print(f"  {k:28} {1e3 * statistics.median(times[k]):8.1f} ms  "
              f"[{1e3 * min(times[k]):.1f}-{1e3 * max(times[k]):.1f}]  "
              f"({statistics.median(ratios[k]):.2f}x the exported module's)")


if __name__ == "__main__":
    main()
