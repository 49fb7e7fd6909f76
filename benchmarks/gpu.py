"""paralens vs hand-written JAX + optax on an accelerator: step time, FLOP/s and memory.

Four training steps (Adam, state donated), each built twice in this process, from
paralens and by hand in plain JAX + optax, with the same initial parameters:

- MLP 784-512-512-10, batch 256 (launch-bound: the overhead paralens adds shows here);
- CNN, two 3x3 convolutions with max pooling on 32x32x3 images, batch 256;
- ``pl.nn.transformer_block`` (pre-LayerNorm, multi-head attention, a GELU MLP), bfloat16;
- a wide MLP (8192-wide layers), bfloat16, batch 4096 (matmul-bound).

It prints, for each, the median over interleaved rounds of the step-time ratio
paralens / hand-written (the first step's losses must agree, or it stops: the two
sides are the same model); for the wide MLP and the transformer block, the FLOP/s
achieved (FLOPs from ``compiled.cost_analysis()``) as a fraction of the device's
dense bfloat16 peak; and the ratios of the compiled programs' memory
(``compiled.memory_analysis()``, see bench_memory.py).

    python benchmarks/gpu.py                  # on the accelerator, a few minutes
    python benchmarks/gpu.py --cpu-smoke      # tiny sizes on the CPU: checks the script runs
    python benchmarks/gpu.py --json out.json
"""

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_memory import memory_stats, ratios
from bench_mlp import hand_written, paralens_learner, timed

import paralens as pl

#: dense bfloat16 tensor-core peak, FLOP/s, by a substring of ``device.device_kind``
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}


def peak_flops(device) -> float | None:
    """The device's dense bfloat16 peak, or None for a CPU or a device not in the table."""
    if device.platform == "cpu":
        return None
    return next((v for k, v in PEAK_BF16.items() if k in device.device_kind), None)


def adam_step(forward: Callable, loss: Callable, lr: float):
    """A hand-written step: jax.value_and_grad of ``loss(forward(params, x), y)``, optax.adam."""
    tx = optax.adam(lr)

    def step(state, x, y):
        params, opt_state = state
        value, grads = jax.value_and_grad(lambda p: loss(forward(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value
    return tx, step


def cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()


def half_squared_error(pred, y):
    """paralens's ``mse``: half the squared error summed per example, mean over the batch."""
    d = (pred - y).astype(jnp.float32)
    return 0.5 * jnp.sum(d * d) / d.shape[0]


# ---- the CNN

def cnn_learner(size, channels, classes, lr):
    c1, c2 = channels
    features = (pl.nn.conv2d(3, c1, 3, padding="same").at(pl.Array[size, size, 3]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(c1, c2, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    model = features >> pl.nn.dense(features.cod[0].size, classes)
    return pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))


def cnn_forward(p, x):
    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = pool(jax.nn.relu(conv(x, p["conv0.w"], p["conv0.b"])))
    x = pool(jax.nn.relu(conv(x, p["conv1.w"], p["conv1.b"])))
    return x.reshape(x.shape[0], -1) @ p["dense.W"] + p["dense.b"]


# ---- the transformer block: pl.nn.transformer_block, and the same by hand in plain JAX

def transformer_forward(heads: int) -> Callable:
    """``pl.nn.transformer_block(d, heads)`` by hand, batched: ``forward(params, x)`` on (N, T, D),
    reading its parameters by their paralens names."""
    def layer_norm(x, p, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) * (var + 1e-5) ** -0.5 * p[f"{name}.scale"] + p[f"{name}.bias"]

    def forward(p, x):
        n, t, d = x.shape
        y = layer_norm(x, p, "layer_norm0")

        def project(w, scale=1.0):
            return jnp.reshape((y @ p[f"attention.W{w}"] + p[f"attention.b{w}"]) * scale, (n, t, heads, d // heads))
        q, k, v = project("q", 1 / math.sqrt(d // heads)), project("k"), project("v")
        a = jax.nn.softmax(jnp.einsum("nqhe,nkhe->nhqk", q, k), axis=-1)
        h = x + jnp.einsum("nhqk,nkhe->nqhe", a, v).reshape(n, t, d) @ p["attention.Wo"] + p["attention.bo"]
        z = jax.nn.gelu(layer_norm(h, p, "layer_norm1") @ p["dense0.W"] + p["dense0.b"], approximate=True)
        return h + z @ p["dense1.W"] + p["dense1.b"]
    return forward


@dataclass
class Case:
    """One model built both ways: paralens's learner, the hand-written (optax tx, step), and a batch."""
    name: str
    learner: pl.Learner
    hand: tuple
    x: np.ndarray
    y: np.ndarray
    flops: bool = False  # report achieved FLOP/s against the peak


def cases(smoke: bool, lr: float = 1e-3) -> list[Case]:
    rng = np.random.default_rng(0)

    def classes(batch, k):
        return rng.integers(0, k, batch).astype(np.int32)

    def data(shape, dtype="float32"):
        return rng.standard_normal(shape).astype(dtype)

    mlp, batch = ([16, 32, 32, 10], 8) if smoke else ([784, 512, 512, 10], 256)
    wide, wide_batch = ([64, 128, 128, 32], 16) if smoke else ([4096, 8192, 8192, 1024], 4096)
    size, chans, cnn_batch = (8, (4, 8), 4) if smoke else (32, (64, 128), 256)
    t, d, heads, tb = (8, 16, 2, 4) if smoke else (512, 1024, 16, 32)

    bf16 = "bfloat16"
    wide_learner = pl.Learner(pl.nn.mlp(wide, activation=pl.nn.relu, dtype=bf16),
                              loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))
    block = pl.Learner(pl.nn.transformer_block(d, heads).at(pl.ArrayType((t, d), bf16)), loss=pl.losses.mse(),
                       optimizer=pl.optim.adam(lr))
    return [
        Case(f"MLP {'-'.join(map(str, mlp))} batch {batch}", paralens_learner(mlp, lr), hand_written(mlp, lr)[:2],
             data((batch, mlp[0])), classes(batch, mlp[-1])),
        Case(f"CNN {size}x{size}x3 conv{chans[0]}-conv{chans[1]} batch {cnn_batch}", cnn_learner(size, chans, 10, lr),
             adam_step(cnn_forward, cross_entropy, lr), data((cnn_batch, size, size, 3)), classes(cnn_batch, 10)),
        Case(f"transformer block T={t} D={d} heads={heads} batch {tb} bf16", block,
             adam_step(transformer_forward(heads), half_squared_error, lr),
             data((tb, t, d), bf16), data((tb, t, d), bf16), flops=True),
        Case(f"wide MLP {'-'.join(map(str, wide))} batch {wide_batch} bf16", wide_learner,
             hand_written(wide, lr)[:2], data((wide_batch, wide[0]), bf16), classes(wide_batch, wide[-1]),
             flops=True),
    ]


def flop_count(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # one entry per program in older JAX
        cost = cost[0]
    return float(cost.get("flops", 0.0))


def bench(case: Case, rounds: int, calls: int, seed: int = 0) -> dict:
    x, y = jax.device_put(case.x), jax.device_put(case.y)  # on the device once: time the step, not the copy
    p_step = case.learner.compile("jax")
    p_state = case.learner.init(seed, backend="jax")
    tx, r_fn = case.hand
    r_step = jax.jit(r_fn, donate_argnums=(0,))
    r_params = {k: jnp.array(v) for k, v in case.learner.init(seed)["params"].items()}
    r_state = (r_params, tx.init(r_params))

    t0 = time.perf_counter()
    p_compiled = p_step.lower(p_state, x, y).compile()
    p_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r_compiled = r_step.lower(r_state, x, y).compile()
    r_compile_s = time.perf_counter() - t0

    p_state, p_loss = p_step(p_state, x, y)
    r_state, r_loss = r_step(r_state, x, y)
    tol = 2e-2 if case.x.dtype == jnp.bfloat16 else 1e-4
    if not np.allclose(float(p_loss), float(r_loss), rtol=tol):  # the two sides must be the same model
        raise AssertionError(f"{case.name}: the first losses differ, paralens {float(p_loss)} "
                             f"vs hand-written {float(r_loss)}")

    step_ratios, p_times, r_times = [], [], []
    for _ in range(rounds):
        tp, p_state = timed(p_step, p_state, (x, y), calls)
        tr, r_state = timed(r_step, r_state, (x, y), calls)
        step_ratios.append(tp / tr)
        p_times.append(tp)
        r_times.append(tr)
    p_mem, r_mem = memory_stats(p_compiled), memory_stats(r_compiled)
    lrn = case.learner  # the same learner with its optimizer fused into the backward pass (memory only)
    fused = pl.Learner(lrn.model, loss=lrn.loss, optimizer=lrn.optimizer, compute_dtype=lrn.compute_dtype,
                       residuals=lrn.residuals, fuse_optimizer=True)
    f_mem = memory_stats(fused.compile("jax").lower(fused.init(seed, backend="jax"), x, y).compile())
    tp, tr = statistics.median(p_times), statistics.median(r_times)
    return {"name": case.name, "flops_reported": case.flops, "first_loss": [float(p_loss), float(r_loss)],
            "step_ratio_median": statistics.median(step_ratios), "paralens_step_ms": 1e3 * tp,
            "jax_step_ms": 1e3 * tr, "compile_ratio": p_compile_s / r_compile_s,
            "paralens_flops": flop_count(p_compiled), "jax_flops": flop_count(r_compiled),
            "paralens_flop_per_s": flop_count(p_compiled) / tp, "jax_flop_per_s": flop_count(r_compiled) / tr,
            "paralens_memory": p_mem, "jax_memory": r_mem, "memory_ratio": ratios(p_mem, r_mem),
            "fused_memory": f_mem, "fused_memory_ratio": ratios(f_mem, r_mem)}


def report(results: list[dict], device, peak: float | None) -> str:
    lines = [f"device: {device.device_kind} ({device.platform}); dense bf16 peak "
             + (f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown")]
    lines.append("step time, paralens / hand-written JAX + optax (median of interleaved rounds):")
    for r in results:
        lines.append(f"  {r['name']}: {r['step_ratio_median']:.3f}x "
                     f"({r['paralens_step_ms']:.3f} ms vs {r['jax_step_ms']:.3f} ms; "
                     f"compile {r['compile_ratio']:.2f}x)")
    lines.append("achieved FLOP/s (FLOPs from cost_analysis):")
    for r in (r for r in results if r["flops_reported"]):
        both = []
        for who in ("paralens", "jax"):
            rate = r[f"{who}_flop_per_s"]
            share = f", {rate / peak:.1%} of peak" if peak else ", peak unknown"
            both.append(f"{who} {rate / 1e12:.3f} TFLOP/s{share}")
        lines.append(f"  {r['name']}: " + "; ".join(both)
                     + f" (FLOPs {r['paralens_flops']:.3g} vs {r['jax_flops']:.3g})")
    lines.append("memory, paralens / hand-written (compiled memory_analysis):")
    for r in results:
        m = r["memory_ratio"]
        peak = "n/a" if m["peak"] is None else f"{m['peak']:.3f}x"
        lines.append(f"  {r['name']}: temp {m['temp']:.3f}x, total {m['total']:.3f}x, peak {peak}, "
                     f"argument {m['argument']:.3f}x, output {m['output']:.3f}x "
                     f"(temp {r['paralens_memory']['temp'] / 2**20:.2f} MiB "
                     f"vs {r['jax_memory']['temp'] / 2**20:.2f} MiB; optimizer fused: "
                     f"temp {r['fused_memory_ratio']['temp']:.3f}x, total {r['fused_memory_ratio']['total']:.3f}x)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, a few rounds")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args(argv)
    if a.cpu_smoke:
        jax.config.update("jax_platforms", "cpu")
    rounds = a.rounds or (3 if a.cpu_smoke else 10)
    calls = 2 if a.cpu_smoke else 10
    device = jax.devices()[0]
    peak = peak_flops(device)
    results = [bench(c, rounds, calls) for c in cases(a.cpu_smoke)]
    print(report(results, device, peak))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": device.device_kind, "peak_bf16": peak, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
