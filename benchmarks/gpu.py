"""paralens vs hand-written JAX + optax on an accelerator: step time, FLOP/s and memory.

Training steps (Adam, state donated), each built twice in this process, from paralens and
by hand in plain JAX + optax (benchmarks/references.py), with the same initial parameters:

- MLP 784-512-512-10, batch 256 (launch-bound: the overhead paralens adds shows here);
- CNN, two 3x3 convolutions with max pooling on 32x32x3 and 64x64x3 images, batch 256
  (``lax.conv_general_dilated`` on both sides: cuDNN's convolutions on a GPU);
- ``pl.nn.transformer_block`` (pre-LayerNorm, multi-head attention, a GELU MLP), bfloat16;
- examples/char_lm.py's character LM at its full size (64 characters, d 64, 4 heads, 2 blocks,
  batch 32);
- a wide MLP (8192-wide layers), bfloat16, batch 4096 (matmul-bound).

It prints, for each, the median over interleaved rounds of the step-time ratio
paralens / hand-written (the first step's losses must agree, or it stops: the two
sides are the same model); for the wide MLP and the transformer block, the FLOP/s
achieved (FLOPs from ``compiled.cost_analysis()``) as a fraction of the device's
dense bfloat16 peak (MFU) and, for the wide MLP, of this machine's own measured
matmul FLOP/s for the same shapes and dtype (what a CPU, with no table of peaks, is
held to); and the ratios of the compiled programs' memory
(``compiled.memory_analysis()``, see bench_memory.py).

    python benchmarks/gpu.py                  # on the accelerator, a few minutes
    python benchmarks/gpu.py --cpu-smoke      # tiny sizes on the CPU: checks the script runs
    python benchmarks/gpu.py --cpu-smoke --check   # exit 1 unless every temp ratio <= 1.0
    python benchmarks/gpu.py --cpu            # sizes for a CPU: the FLOP/s fraction there
    python benchmarks/gpu.py --json out.json
"""

import argparse
import importlib.util
import json
import pathlib
import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from bench_memory import memory_stats, ratios
from bench_mlp import timed
from references import (
    adam_step,
    char_lm_forward,
    cnn_forward,
    cnn_learner,
    cross_entropy,
    half_squared_error,
    mlp_forward,
    mlp_learner,
    next_char_cross_entropy,
    transformer_forward,
)

import paralens as pl

# compile times are measured here: never read a compile from a persistent cache
jax.config.update("jax_enable_compilation_cache", False)

#: dense bfloat16 tensor-core peak, FLOP/s, by a substring of ``device.device_kind``
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}


def peak_flops(device) -> float | None:
    """The device's dense bfloat16 peak, or None for a CPU or a device not in the table."""
    if device.platform == "cpu":
        return None
    return next((v for k, v in PEAK_BF16.items() if k in device.device_kind), None)


def matmul_flops(shapes, dtype, calls: int = 5, rounds: int = 5) -> float:
    """This machine's measured dense matmul FLOP/s for the shapes ``(m, k, n)`` in ``dtype``: the
    best over the shapes of ``2 m k n`` over the median time of a jitted ``a @ b``."""
    best = 0.0
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a = jax.device_put(rng.standard_normal((m, k)).astype(dtype))
        b = jax.device_put(rng.standard_normal((k, n)).astype(dtype))
        mm = jax.jit(lambda a, b: a @ b)
        jax.block_until_ready(mm(a, b))
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(calls):
                out = mm(a, b)
            jax.block_until_ready(out)
            times.append((time.perf_counter() - t0) / calls)
        best = max(best, 2.0 * m * k * n / statistics.median(times))
    return best


def _char_lm():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "char_lm.py"
    spec = importlib.util.spec_from_file_location("char_lm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Case:
    """One model built both ways: paralens's learner, the hand-written (optax tx, step), and a batch."""
    name: str
    learner: pl.Learner
    hand: tuple
    x: np.ndarray
    y: np.ndarray
    flops: bool = False  # report achieved FLOP/s against the peak
    matmuls: list | None = None  # (m, k, n) of its matmuls: measure the machine's own FLOP/s on them


def cases(size: str, lr: float = 1e-3) -> list[Case]:
    """The cases at ``size``: ``"smoke"`` (tiny, CPU), ``"cpu"`` (a CPU's minutes) or ``"gpu"``."""
    rng = np.random.default_rng(0)

    def classes(batch, k, shape=()):
        return rng.integers(0, k, (batch, *shape)).astype(np.int32)

    def data(shape, dtype="float32"):
        return rng.standard_normal(shape).astype(dtype)

    smoke = size == "smoke"
    mlp, batch = ([16, 32, 32, 10], 8) if smoke else ([784, 512, 512, 10], 256)
    wide, wide_batch = {"smoke": ([64, 128, 128, 32], 16), "cpu": ([1024, 2048, 2048, 256], 512),
                        "gpu": ([4096, 8192, 8192, 1024], 4096)}[size]
    images, chans, cnn_batch = {"smoke": ((8,), (4, 8), 4), "cpu": ((32,), (16, 32), 32),
                                "gpu": ((32, 64), (64, 128), 256)}[size]
    t, d, heads, tb = (8, 16, 2, 4) if smoke else (512, 1024, 16, 32) if size == "gpu" else (64, 128, 4, 8)
    lm_len, lm_d, lm_batch = (16, 16, 4) if smoke else (64, 64, 32)

    bf16 = "bfloat16"
    wide_learner = pl.Learner(pl.nn.mlp(wide, activation=pl.nn.relu, dtype=bf16),
                              loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))
    block = pl.Learner(pl.nn.transformer_block(d, heads).at(pl.ArrayType((t, d), bf16)), loss=pl.losses.mse(),
                       optimizer=pl.optim.adam(lr))
    lm = _char_lm()
    vocab = len(lm.VOCAB)
    char_lm = pl.Learner(lm.build(lm_len, lm_d, 4, 2), loss=lm.next_char_loss(lm_len), optimizer=pl.optim.adam(3e-3))
    out = [Case(f"MLP {'-'.join(map(str, mlp))} batch {batch}", mlp_learner(mlp, lr),
                adam_step(mlp_forward, cross_entropy, lr), data((batch, mlp[0])), classes(batch, mlp[-1]))]
    for px in images:
        out.append(Case(f"CNN {px}x{px}x3 conv{chans[0]}-conv{chans[1]} batch {cnn_batch}",
                        cnn_learner(px, chans, 10, lr, in_channels=3), adam_step(cnn_forward, cross_entropy, lr),
                        data((cnn_batch, px, px, 3)), classes(cnn_batch, 10)))
    return out + [
        Case(f"transformer block T={t} D={d} heads={heads} batch {tb} bf16", block,
             adam_step(transformer_forward(heads), half_squared_error, lr),
             data((tb, t, d), bf16), data((tb, t, d), bf16), flops=True),
        Case(f"char LM length {lm_len} d {lm_d} 4 heads 2 blocks batch {lm_batch}", char_lm,
             adam_step(char_lm_forward(4, 2), next_char_cross_entropy, 3e-3), classes(lm_batch, vocab, (lm_len,)),
             classes(lm_batch, vocab, (lm_len,))),
        Case(f"wide MLP {'-'.join(map(str, wide))} batch {wide_batch} bf16", wide_learner,
             adam_step(mlp_forward, cross_entropy, lr), data((wide_batch, wide[0]), bf16),
             classes(wide_batch, wide[-1]), flops=True,
             matmuls=[(wide_batch, a, b) for a, b in zip(wide[:-1], wide[1:])]),
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
            "fused_memory": f_mem, "fused_memory_ratio": ratios(f_mem, r_mem),
            "matmul_flop_per_s": matmul_flops(case.matmuls, case.x.dtype) if case.matmuls else None}


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
        if r["matmul_flop_per_s"]:
            mm = r["matmul_flop_per_s"]
            lines.append(f"    against this machine's measured matmul FLOP/s for the same shapes "
                         f"({mm / 1e12:.3f} TFLOP/s): paralens {r['paralens_flop_per_s'] / mm:.1%}, "
                         f"jax {r['jax_flop_per_s'] / mm:.1%}")
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
    ap.add_argument("--cpu", action="store_true", help="sizes for a CPU (minutes), on the CPU")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every case's temp memory is <= 1.0x")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args(argv)
    size = "smoke" if a.cpu_smoke else "cpu" if a.cpu else "gpu"
    if size != "gpu":
        jax.config.update("jax_platforms", "cpu")
    rounds = a.rounds or (3 if a.cpu_smoke else 10)
    calls = 2 if a.cpu_smoke else 10
    device = jax.devices()[0]
    peak = peak_flops(device)
    results = [bench(c, rounds, calls) for c in cases(size)]
    print(report(results, device, peak))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": device.device_kind, "peak_bf16": peak, "results": results}, f, indent=2)
    over = [f"{r['name']}: temp {r['memory_ratio']['temp']:.3f}x" for r in results if r["memory_ratio"]["temp"] > 1.0]
    if a.check and over:
        raise SystemExit("temporaries above hand-written: " + "; ".join(over))
    return results


if __name__ == "__main__":
    main()
