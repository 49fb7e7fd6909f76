"""Residual policies on a residual MLP (64 blocks of width 512, batch 256 by default): the step
with every residual stored against the step that recomputes each block's insides, in one
process, interleaved, median ratios.

Reported: the activations the forward pass keeps for the backward (the model lens's batched
residuals), XLA's compiled memory analysis of each step (temporary bytes), and the step-time
ratio. At this size the weights' cotangents (64 MiB, all live before the update) dominate
XLA's temporary memory, so halving the activations (32 MiB) does not show there until the
optimizer is fused into the backward pass.

    python benchmarks/bench_residuals.py           # print
    python benchmarks/bench_residuals.py --check   # exit 1 unless residuals <= 0.5x at <= 1.5x time
"""

import argparse
import statistics
import sys
import time

import jax
import numpy as np

import paralens as pl


def residual_mlp(depth: int, width: int):
    @pl.para(dom=[pl.Array[width]], name="block")
    def block(x, w1: pl.Param((width, width)), w2: pl.Param((width, width))):
        return x + pl.tanh(x @ w1) @ w2
    t = block
    for _ in range(depth - 1):
        t = t >> block
    return t


def bench(depth=64, width=512, batch=256, rounds=5, calls=3, seed=0) -> dict:
    model = residual_mlp(depth, width)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    y = rng.standard_normal((batch, width)).astype(np.float32)
    out = {}
    steps, states = {}, {}
    for policy in ("store", "recompute"):
        learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=pl.optim.sgd(1e-3), residuals=policy)
        state = learner.init(seed, backend="jax")
        state["params"] = {k: v * 0.1 for k, v in state["params"].items()}
        step = learner.compile("jax")
        mem = step.lower(state, x, y).compile().memory_analysis()
        kept = sum(int(np.prod(r.shape)) * 4 * batch for r in pl.lens(model, policy).residuals if r.batched)
        out[policy] = {"residual_bytes": kept, "temp_bytes": mem.temp_size_in_bytes,
                       "peak_bytes": getattr(mem, "peak_memory_in_bytes", 0)}
        steps[policy], states[policy] = step, step(state, x, y)[0]
    ratios = []
    for _ in range(rounds):
        t = {}
        for policy in ("store", "recompute"):
            s = states[policy]
            t0 = time.perf_counter()
            for _ in range(calls):
                s, loss = steps[policy](s, x, y)
            jax.block_until_ready(loss)
            t[policy] = (time.perf_counter() - t0) / calls
            states[policy] = s
        ratios.append(t["recompute"] / t["store"])
    out["time_ratio_median"] = statistics.median(ratios)
    out["residual_ratio"] = out["recompute"]["residual_bytes"] / out["store"]["residual_bytes"]
    out["temp_ratio"] = out["recompute"]["temp_bytes"] / max(out["store"]["temp_bytes"], 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args(argv)
    r = bench(a.depth, a.width, a.batch)
    mib = 2 ** 20
    print(f"residual MLP {a.depth} x {a.width}, batch {a.batch}, on {jax.devices()[0]}: "
          f"stored activations {r['store']['residual_bytes'] / mib:.0f} -> {r['recompute']['residual_bytes'] / mib:.0f} MiB "
          f"({r['residual_ratio']:.2f}x); XLA temp {r['store']['temp_bytes'] / mib:.1f} -> "
          f"{r['recompute']['temp_bytes'] / mib:.1f} MiB ({r['temp_ratio']:.2f}x); "
          f"step time {r['time_ratio_median']:.2f}x")
    if a.check and (r["residual_ratio"] > 0.5 or r["time_ratio_median"] > 1.5):
        print("FAILED: recompute should keep <= 0.5x the activations at <= 1.5x the time", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
