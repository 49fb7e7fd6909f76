"""paralens vs hand-written JAX + optax: the same MLP trained with Adam, timed side by side.

Both steps are built in this process and timed interleaved (paralens, hand-written,
paralens, ...); the figure reported is the median of the per-round ratios
paralens / hand-written, so machine noise that hits a round hits both.

    python benchmarks/bench_mlp.py                 # 784-512-512-10, batch 256
    python benchmarks/bench_mlp.py --wide          # also 4096-wide layers (matmul-bound)
    python benchmarks/bench_mlp.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import paralens as pl


def hand_written(sizes, lr):
    """The reference: a plain-JAX MLP, jax.value_and_grad, optax.adam, one jit, state donated."""
    tx = optax.adam(lr)

    def forward(params, x):
        n = len(sizes) - 1
        for i in range(n):
            x = x @ params[f"dense{i}.W"] + params[f"dense{i}.b"]
            if i < n - 1:
                x = jax.nn.relu(x)
        return x

    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()

    def step(state, x, y):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def many(state, xs, ys):
        return jax.lax.scan(lambda s, xy: step(s, *xy), state, (xs, ys))
    return tx, step, many


def paralens_learner(sizes, lr, **options):
    return pl.Learner(pl.nn.mlp(sizes, activation=pl.nn.relu),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr),
                      **options)


def entry_ops(compiled) -> int:
    """Instructions in the compiled program's entry computation (about its kernel launches)."""
    text = compiled.as_text()
    entry = text[text.index("ENTRY"):]
    body = entry[entry.index("{") + 1: entry.index("\n}")]
    return sum(1 for line in body.splitlines() if " = " in line and "parameter(" not in line
               and "get-tuple-element" not in line and " tuple(" not in line)


def timed(fn, state, args, n):
    state, loss = fn(state, *args)  # warm (compiled already)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(n):
        state, loss = fn(state, *args)
    jax.block_until_ready((state, loss))
    return (time.perf_counter() - t0) / n, state


def bench(sizes, batch=256, k=10, rounds=15, calls=10, lr=1e-3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int32)
    xs = rng.standard_normal((k, batch, sizes[0])).astype(np.float32)
    ys = rng.integers(0, sizes[-1], (k, batch)).astype(np.int32)

    learner = paralens_learner(sizes, lr)
    p_step, p_many = learner.compile("jax"), learner.compile("jax", scan=True)
    p_state = learner.init(seed, backend="jax")
    tx, r_step_fn, r_many_fn = hand_written(sizes, lr)
    r_step = jax.jit(r_step_fn, donate_argnums=(0,))
    r_many = jax.jit(r_many_fn, donate_argnums=(0,))
    r_params = {k_: jnp.array(v) for k_, v in learner.init(seed)["params"].items()}
    r_state = (r_params, tx.init(r_params))

    p_ops = entry_ops(p_step.lower(p_state, x, y).compile())
    r_ops = entry_ops(r_step.lower(r_state, x, y).compile())
    ratios = {"step": [], "scan": []}
    times = {"paralens_step": [], "jax_step": [], "paralens_scan": [], "jax_scan": []}
    for _ in range(rounds):
        tp, p_state = timed(p_step, p_state, (x, y), calls)
        tr, r_state = timed(r_step, r_state, (x, y), calls)
        ratios["step"].append(tp / tr)
        times["paralens_step"].append(tp)
        times["jax_step"].append(tr)
        tp, p_state = timed(p_many, p_state, (xs, ys), max(1, calls // k))
        tr, r_state = timed(r_many, r_state, (xs, ys), max(1, calls // k))
        ratios["scan"].append(tp / tr)
        times["paralens_scan"].append(tp / k)
        times["jax_scan"].append(tr / k)

    # trace + compile: fresh functions each round so nothing is cached
    compile_ratios, build_ratios = [], []
    for _ in range(max(3, rounds // 3)):
        t0 = time.perf_counter()
        fresh = paralens_learner(sizes, lr)
        t_build = time.perf_counter() - t0
        step = fresh.compile("jax")
        t0 = time.perf_counter()
        step.lower(p_state, x, y).compile()
        tp = time.perf_counter() - t0
        _, fn, _ = hand_written(sizes, lr)
        t0 = time.perf_counter()
        jax.jit(fn, donate_argnums=(0,)).lower(r_state, x, y).compile()
        tr = time.perf_counter() - t0
        compile_ratios.append(tp / tr)
        build_ratios.append((t_build + tp) / tr)

    return {
        "sizes": sizes, "batch": batch, "k": k, "rounds": rounds, "device": str(jax.devices()[0]),
        "step_ratio_median": statistics.median(ratios["step"]),
        "scan_ratio_median": statistics.median(ratios["scan"]),
        "compile_ratio_median": statistics.median(compile_ratios),
        "build_and_compile_ratio_median": statistics.median(build_ratios),
        "paralens_step_ms": 1e3 * statistics.median(times["paralens_step"]),
        "jax_step_ms": 1e3 * statistics.median(times["jax_step"]),
        "paralens_scan_step_ms": 1e3 * statistics.median(times["paralens_scan"]),
        "jax_scan_step_ms": 1e3 * statistics.median(times["jax_scan"]),
        "paralens_entry_ops": p_ops, "jax_entry_ops": r_ops,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wide", action="store_true", help="also run 4096-wide layers")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless step and scan ratios <= 1.05 and trace+compile <= 1.5")
    a = ap.parse_args(argv)
    results = [bench([784, 512, 512, 10], rounds=a.rounds)]
    if a.wide:
        results.append(bench([4096, 4096, 4096, 10], rounds=max(5, a.rounds // 3), calls=3, k=3))
    for r in results:
        print(f"MLP {r['sizes']} batch {r['batch']} on {r['device']}: "
              f"step {r['step_ratio_median']:.3f}x ({r['paralens_step_ms']:.2f} ms vs {r['jax_step_ms']:.2f} ms), "
              f"scan {r['scan_ratio_median']:.3f}x, trace+compile {r['compile_ratio_median']:.3f}x "
              f"(with term building {r['build_and_compile_ratio_median']:.3f}x); "
              f"compiled ops {r['paralens_entry_ops']} vs {r['jax_entry_ops']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    failed = [r["sizes"] for r in results if r["step_ratio_median"] > 1.05 or r["scan_ratio_median"] > 1.05
              or r["compile_ratio_median"] > 1.5]
    if a.check and failed:
        raise SystemExit(f"slower than hand-written JAX beyond the bounds for {failed}")
    return results


if __name__ == "__main__":
    main()
