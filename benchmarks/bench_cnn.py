"""paralens vs plain JAX + optax (and flax.linen + optax where installed) on the CNN at growing
image sizes: step time, trace + compile time, XLA temporaries and the compiled program's ops.

The model is two 3x3 "same" convolutions (16 and 32 channels), ReLU and 2x2 max pooling each,
then a dense readout to 10 classes; Adam; batch 32; images of 8, 16, 32 and 64 pixels a side.
Each side is built in this process from the same initial parameters (the first losses must
agree), timed interleaved (paralens, plain, plain, paralens, ...: who goes first alternates),
each sample at least 50 ms of calls, and the median of the per-round ratios is reported. Trace +
compile builds everything afresh each round (paralens: the learner, its step term and the JAX
program; plain JAX: tracing) and is timed in process CPU time, so another job on the machine
does not move it.

    python benchmarks/bench_cnn.py                 # 8, 16, 32, 64 px
    python benchmarks/bench_cnn.py --check         # exit 1 unless step <= 1.02x, trace + compile
                                                   # <= 1.1x, temporaries <= 1.0x, equal convolutions
    python benchmarks/bench_cnn.py --sizes 8 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_memory import memory_stats
from bench_mlp import timed
from references import AUDITED, adam_step, cnn_forward, cnn_learner, cross_entropy, op_counts

# compile times are measured here: never read a compile from a persistent cache
jax.config.update("jax_enable_compilation_cache", False)

BOUNDS = {"step": 1.02, "compile": 1.1, "temp": 1.0}


def flax_step(lr: float):
    """The same CNN in flax.linen, or ``None`` where flax is not installed."""
    try:
        import flax.linen as nn
    except ImportError:
        return None

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for c in (16, 32):
                x = nn.max_pool(nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x)), (2, 2), (2, 2))
            return nn.Dense(10)(x.reshape(x.shape[0], -1))

    def forward(p, x):
        tree = {"params": {"Conv_0": {"kernel": p["conv0.w"], "bias": p["conv0.b"]},
                           "Conv_1": {"kernel": p["conv1.w"], "bias": p["conv1.b"]},
                           "Dense_0": {"kernel": p["dense.W"], "bias": p["dense.b"]}}}
        return CNN().apply(tree, x)
    return adam_step(forward, cross_entropy, lr)


def bench(size: int, batch: int = 32, rounds: int = 11, calls: int = 10, lr: float = 1e-3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = jax.device_put(rng.standard_normal((batch, size, size, 1)).astype(np.float32))
    y = jax.device_put(rng.integers(0, 10, batch).astype(np.int32))
    learner = cnn_learner(size, lr=lr)
    p_step = learner.compile("jax")
    p_state = learner.init(seed, backend="jax")
    refs = {"jax": adam_step(cnn_forward, cross_entropy, lr)}
    flax = flax_step(lr)
    if flax is not None:
        refs["flax"] = flax
    params = learner.init(seed)["params"]
    steps, states, compiled = {}, {}, {"paralens": p_step.lower(p_state, x, y).compile()}
    for who, (tx, fn) in refs.items():
        steps[who] = jax.jit(fn, donate_argnums=(0,))
        p = {k: jnp.array(v) for k, v in params.items()}
        states[who] = (p, tx.init(p))
        compiled[who] = steps[who].lower(states[who], x, y).compile()

    p_state, p_loss = p_step(p_state, x, y)
    for who in refs:
        states[who], loss = steps[who](states[who], x, y)
        if not np.allclose(float(p_loss), float(loss), rtol=1e-4):  # the same model, or the figures mean nothing
            raise AssertionError(f"{size}px: first losses differ, paralens {float(p_loss)} vs {who} {float(loss)}")

    one, p_state = timed(p_step, p_state, (x, y), 3)
    calls = max(calls, math.ceil(0.05 / one))  # a sample of at least 50 ms: small images step in ~1 ms
    step_ratios = {who: [] for who in refs}
    times = {who: [] for who in ("paralens", *refs)}
    for r in range(rounds):
        for who in refs:
            t = {}
            for side in ((who, "paralens") if r % 2 else ("paralens", who)):  # who goes first alternates
                if side == "paralens":
                    t[side], p_state = timed(p_step, p_state, (x, y), calls)
                else:
                    t[side], states[who] = timed(steps[who], states[who], (x, y), calls)
            step_ratios[who].append(t["paralens"] / t[who])
            times["paralens"].append(t["paralens"])
            times[who].append(t[who])

    compile_ratios = {who: [] for who in refs}
    for _ in range(max(3, rounds // 2)):
        for who in refs:
            t0 = time.process_time()
            fresh = cnn_learner(size, lr=lr)
            fresh.compile("jax").lower(p_state, x, y).compile()
            tp = time.process_time() - t0
            t0 = time.process_time()
            fn = flax_step(lr)[1] if who == "flax" else adam_step(cnn_forward, cross_entropy, lr)[1]
            jax.jit(fn, donate_argnums=(0,)).lower(states[who], x, y).compile()
            tr = time.process_time() - t0
            compile_ratios[who].append(tp / tr)

    memory = {who: memory_stats(c) for who, c in compiled.items()}
    ops = {who: op_counts(c) for who, c in compiled.items()}
    out = {"size": size, "batch": batch, "rounds": rounds, "device": str(jax.devices()[0]), "peers": list(refs),
           "paralens_step_ms": 1e3 * statistics.median(times["paralens"]),
           "paralens_temp_bytes": memory["paralens"]["temp"],
           "paralens_ops": {k: ops["paralens"][k] for k in (*AUDITED, "instructions")}}
    for who in refs:
        out[who] = {"step_ratio": statistics.median(step_ratios[who]),
                    "step_ratios": step_ratios[who],
                    "compile_ratio": statistics.median(compile_ratios[who]),
                    "temp_ratio": memory["paralens"]["temp"] / max(memory[who]["temp"], 1),
                    "step_ms": 1e3 * statistics.median(times[who]), "temp_bytes": memory[who]["temp"],
                    "ops": {k: ops[who][k] for k in (*AUDITED, "instructions")}}
    return out


def failures(r: dict) -> list[str]:
    bad = []
    for who in r["peers"]:
        p = r[who]
        if p["step_ratio"] > BOUNDS["step"]:
            bad.append(f"{r['size']}px step {p['step_ratio']:.3f}x {who}")
        if p["compile_ratio"] > BOUNDS["compile"]:
            bad.append(f"{r['size']}px trace+compile {p['compile_ratio']:.3f}x {who}")
        if p["temp_ratio"] > BOUNDS["temp"]:
            bad.append(f"{r['size']}px temp {p['temp_ratio']:.3f}x {who}")
        if r["paralens_ops"]["convolution"] != p["ops"]["convolution"]:
            bad.append(f"{r['size']}px convolutions {r['paralens_ops']['convolution']} vs {p['ops']['convolution']}")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--check", action="store_true", help="exit 1 unless every bound holds")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    results = []
    for size in a.sizes:
        r = bench(size, a.batch, a.rounds)
        results.append(r)
        for who in r["peers"]:
            p = r[who]
            ops = ", ".join(f"{k} {r['paralens_ops'][k]} vs {p['ops'][k]}" for k in (*AUDITED, "instructions"))
            print(f"CNN {size}x{size} batch {r['batch']} vs {who}: step {p['step_ratio']:.3f}x "
                  f"({r['paralens_step_ms']:.2f} ms vs {p['step_ms']:.2f} ms), trace+compile "
                  f"{p['compile_ratio']:.3f}x, temp {p['temp_ratio']:.3f}x ({r['paralens_temp_bytes'] / 2**20:.2f} "
                  f"vs {p['temp_bytes'] / 2**20:.2f} MiB); ops {ops}", flush=True)
        if "flax" not in r["peers"]:
            print("  (flax.linen is not installed: plain JAX only)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    bad = [b for r in results for b in failures(r)]
    if a.check and bad:
        print("FAILED: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
