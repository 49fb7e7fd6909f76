"""Residual policies on a residual MLP (64 blocks of width 512, batch 256 by default): the step
that stores every residual against the steps that recompute, in one process, interleaved,
median ratios.

Policies: ``"store"`` (everything the backward pass reads is kept), ``"recompute"`` (each
block keeps its input and its backward re-runs its forward) and ``"segments"`` (only every
ceil(sqrt(64)) = 8th block's input is kept; the backward re-runs 8 blocks at a time).
Both recomputing policies cost one extra forward pass.

Reported for each: the activations the forward pass keeps for the backward (the model
lens's batched residuals), XLA's compiled memory analysis of the step (temporary bytes;
on the CPU the step keeps its optimization barriers, without which XLA merges the
recomputation back into the forward pass, as it does for hand-written jax.checkpoint),
and the step time as a ratio to "store".

    python benchmarks/bench_residuals.py           # print
    python benchmarks/bench_residuals.py --check   # exit 1 unless "segments" keeps <= 0.5x XLA temp at <= 1.5x time
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


POLICIES = ("store", "recompute", "segments")


def bench(depth=64, width=512, batch=256, rounds=5, calls=3, seed=0, optimizer="sgd") -> dict:
    model = residual_mlp(depth, width)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    y = rng.standard_normal((batch, width)).astype(np.float32)
    out = {}
    steps, states = {}, {}
    for policy in POLICIES:
        opt = getattr(pl.optim, optimizer)(1e-3)
        learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=opt, residuals=policy)
        state = learner.init(seed, backend="jax")
        state["params"] = {k: v * 0.1 for k, v in state["params"].items()}
        step = learner.compile("jax")
        mem = step.lower(state, x, y).compile().memory_analysis()
        kept = sum(int(np.prod(r.shape)) * 4 * batch for r in pl.lens(model, policy).residuals if r.batched)
        out[policy] = {"residual_bytes": kept, "temp_bytes": mem.temp_size_in_bytes}
        steps[policy], states[policy] = step, step(state, x, y)[0]
    times = {p: [] for p in POLICIES}
    for _ in range(rounds):
        for policy in POLICIES:
            s = states[policy]
            t0 = time.perf_counter()
            for _ in range(calls):
                s, loss = steps[policy](s, x, y)
            jax.block_until_ready(loss)
            times[policy].append((time.perf_counter() - t0) / calls)
            states[policy] = s
    for policy in POLICIES:
        out[policy]["time_ratio"] = statistics.median(t / s for t, s in zip(times[policy], times["store"]))
        out[policy]["residual_ratio"] = out[policy]["residual_bytes"] / out["store"]["residual_bytes"]
        out[policy]["temp_ratio"] = out[policy]["temp_bytes"] / max(out["store"]["temp_bytes"], 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    a = ap.parse_args(argv)
    r = bench(a.depth, a.width, a.batch, optimizer=a.optimizer)
    mib = 2 ** 20
    print(f"residual MLP {a.depth} x {a.width}, batch {a.batch}, {a.optimizer}, on {jax.devices()[0]}")
    for policy in POLICIES:
        q = r[policy]
        print(f"  {policy:9s}  stored activations {q['residual_bytes'] / mib:5.1f} MiB ({q['residual_ratio']:.2f}x)"
              f"  XLA temp {q['temp_bytes'] / mib:5.1f} MiB ({q['temp_ratio']:.2f}x)  step time {q['time_ratio']:.2f}x")
    if a.check and (r["segments"]["temp_ratio"] > 0.5 or r["segments"]["time_ratio"] > 1.5):
        print("FAILED: recomputing in segments should need <= 0.5x the temporary memory at <= 1.5x the time",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
