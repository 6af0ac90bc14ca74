"""A recursive network over a tree (examples/tree.rnn) run level by level: the balanced
tree over tau leaves against the chain over the same leaves (the left-branching tree, a
recurrent network's order), forward and backward, float32, in one process: calls alternate,
and the figure is the median over rounds of the ratio within a round (chain / balanced).
Both trees have 2 tau - 1 nodes and the same products' work; the balanced tree runs them in
ceil(log2 tau) + 1 levels, the chain in tau.  Also the plain path against the optimized one.

    python bench/tree.py [--leaves 128] [--rounds 7] [--calls 10]

Sizes: batch 32, x 64, h 128, y 8.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import rnngraph
from rnngraph.graphs.trees import Tree

ROOT = Path(__file__).resolve().parent.parent
B = 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leaves", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10)
    args = ap.parse_args()
    model = rnngraph.load(ROOT / "examples" / "tree.rnn", sizes={"x": 64, "h": 128, "y": 8})
    nets = {"optimized": model.compile(dtype="float32"),
            "plain": model.compile(dtype="float32", optimize=False)}
    rng = np.random.default_rng(0)
    params = nets["optimized"].prepare(nets["optimized"].init_params(seed=0))
    plain_params = nets["plain"].init_params(seed=0)
    inputs = {"x": rng.normal(size=(args.leaves, B, 64)).astype("float32"),
              "y": np.eye(8, dtype="float32")[rng.integers(0, 8, B)]}
    trees = {"balanced": Tree.balanced(args.leaves), "chain": Tree.chain(args.leaves)}

    def call(net, p, tree):
        outs, pullback = net.vjp(p, inputs, tree=tree)
        pullback({"L": np.ones_like(outs["L"])})

    runs = {("optimized", "balanced"): lambda: call(nets["optimized"], params, trees["balanced"]),
            ("optimized", "chain"): lambda: call(nets["optimized"], params, trees["chain"]),
            ("plain", "balanced"): lambda: call(nets["plain"], plain_params, trees["balanced"])}
    for run in runs.values():
        run()                                           # warm: caches, the work pool
    times = {k: [] for k in runs}
    for _ in range(args.rounds):
        for _ in range(args.calls):
            for k, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t0)
    per = {k: statistics.median(v) for k, v in times.items()}
    n = args.calls
    ratios = [statistics.median(times["optimized", "chain"][r * n:(r + 1) * n]) /
              statistics.median(times["optimized", "balanced"][r * n:(r + 1) * n])
              for r in range(args.rounds)]
    plain = [statistics.median(times["plain", "balanced"][r * n:(r + 1) * n]) /
             statistics.median(times["optimized", "balanced"][r * n:(r + 1) * n])
             for r in range(args.rounds)]
    print(f"tree.rnn, {args.leaves} leaves ({2 * args.leaves - 1} nodes), batch {B}, h 128, "
          f"float32, forward + backward")
    print(f"  balanced tree, {len(trees['balanced'].levels)} levels: "
          f"{per['optimized', 'balanced'] * 1e3:.2f} ms a call")
    print(f"  chain, {len(trees['chain'].levels)} levels: "
          f"{per['optimized', 'chain'] * 1e3:.2f} ms a call "
          f"({statistics.median(ratios):.2f}x the balanced tree's)")
    print(f"  plain path, balanced: {per['plain', 'balanced'] * 1e3:.2f} ms "
          f"({statistics.median(plain):.2f}x the optimized path's)")


if __name__ == "__main__":
    main()
