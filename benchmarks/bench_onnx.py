"""The exported ONNX training step in onnxruntime (CPU) against the JAX step, for the digits MLP and
the digits CNN: time per step and the size of each exported artifact. Reported, no bound.

Each model's learner is compiled twice, ``learner.compile("onnx")`` (the ONNX model in an
onnxruntime session, state in and out as NumPy arrays) and ``learner.compile("jax")`` (one
``jax.jit`` program, state donated); both start from the same state and must agree on the first
loss. They are timed interleaved (ONNX, JAX, ONNX, ...), ``calls`` steps a round, and the median
of the per-round ratios ONNX / JAX is reported. Sizes: the ``.onnx`` model against the
``jax.export`` artifact (``learner.export(None, format=...)``). onnxruntime runs with its
default intra-op threads (one per core) and with one: a step of small tensors spends its time
handing each of its ~200 nodes to the thread pool.

    python benchmarks/bench_onnx.py                      # MLP and CNN, batch 32, onnxruntime's
                                                         # default threads and one thread
    python benchmarks/bench_onnx.py --batch 128 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

import paralens as pl


def models() -> dict:
    """The digits MLP and CNN of ``examples/``: {key: (title, model, one example's input shape)}."""
    features = (pl.nn.conv2d(1, 16, 3, padding="same").at(pl.Array[8, 8, 1]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(16, 32, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    return {"mlp": ("MLP [64, 128, 128, 10]", pl.nn.mlp([64, 128, 128, 10], activation=pl.nn.relu), (64,)),
            "cnn": ("CNN 8x8 (16, 32 channels)", features >> pl.nn.dense(features.cod[0].size, 10), (8, 8, 1))}


def timed(step, state, x, y, calls: int):
    state, loss = step(state, x, y)  # warm
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(calls):
        state, loss = step(state, x, y)
    jax.block_until_ready((state, loss))
    return (time.perf_counter() - t0) / calls, state


def bench(model, shape, batch: int = 32, rounds: int = 11, calls: int = 20, seed: int = 0,
          threads: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    learner = pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(1e-3))
    o_step, j_step = learner.compile("onnx", threads=threads), learner.compile("jax")
    o_state, j_state = learner.init(seed), learner.init(seed, backend="jax")
    o_state, o_loss = o_step(o_state, x, y)
    j_state, j_loss = j_step(j_state, jax.device_put(x), jax.device_put(y))
    if not np.allclose(o_loss, float(j_loss), rtol=1e-5):  # the same step, or the figures mean nothing
        raise AssertionError(f"first losses differ: onnx {float(o_loss)} vs jax {float(j_loss)}")
    xj, yj = jax.device_put(x), jax.device_put(y)
    ratios, o_times, j_times = [], [], []
    for _ in range(rounds):
        to, o_state = timed(o_step, o_state, x, y, calls)
        tj, j_state = timed(j_step, j_state, xj, yj, calls)
        ratios.append(to / tj)
        o_times.append(to)
        j_times.append(tj)
    onnx_bytes = len(learner.export(None, format="onnx"))
    jax_bytes = len(learner.export(None, format="jax"))
    return {"batch": batch, "rounds": rounds, "calls": calls, "step_ratio": statistics.median(ratios),
            "step_ratios": ratios, "onnx_step_ms": 1e3 * statistics.median(o_times),
            "jax_step_ms": 1e3 * statistics.median(j_times), "onnx_bytes": onnx_bytes, "jax_bytes": jax_bytes,
            "size_ratio": onnx_bytes / jax_bytes, "onnx_nodes": len(o_step.model.graph.node),
            "params_bytes": sum(np.asarray(v).nbytes for v in o_state["params"].values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1],
                    help="onnxruntime intra-op threads, each a run (0: its default, one per core)")
    ap.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__} (CPU) vs jax {jax.__version__} on {jax.devices()[0]}")
    results = {}
    chosen = [models()[k] for k in a.models]
    for (name, model, shape), threads in ((m, t) for m in chosen for t in a.threads):
        r = bench(model, shape, a.batch, a.rounds, a.calls, threads=threads or None)
        results[f"{name}, {threads or 'default'} threads"] = r
        print(f"{name} batch {r['batch']} Adam, onnxruntime {threads or 'default'} threads: "
              f"step {r['step_ratio']:.2f}x of JAX ({r['onnx_step_ms']:.3f} ms vs "
              f"{r['jax_step_ms']:.3f} ms, median of {r['rounds']} interleaved rounds); size {r['size_ratio']:.2f}x "
              f"({r['onnx_bytes'] / 1024:.1f} KiB .onnx, {r['onnx_nodes']} nodes, vs {r['jax_bytes'] / 1024:.1f} KiB "
              f"jax.export; parameters {r['params_bytes'] / 1024:.1f} KiB)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
