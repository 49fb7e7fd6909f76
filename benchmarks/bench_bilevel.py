"""Bilevel benchmarks, each side by side in one process.

1. Compile time of the unrolled hypergradient: K = 10 vs K = 1000 inner steps (the
   loop is one scan box, so it should be flat in K).
2. Memory of the truncated method (back-propagating through the last 10 steps) as
   K grows: XLA's temporary buffer size for K = 100 and K = 1000.
3. The implicit hypergradient on the hyper-cleaning problem (100 inner steps, 50
   CG iterations) against the same computation written by hand in JAX
   (jax.jvp of jax.grad for Hessian-vector products, jax.scipy.sparse.linalg.cg),
   timed interleaved; the median ratio is reported.

    python benchmarks/bench_bilevel.py [--check] [--json out.json]
"""

import argparse
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import paralens as pl

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import hyper_cleaning  # noqa: E402


def problem(method):
    return pl.Bilevel(pl.nn.dense(64, 10), pl.losses.softmax_cross_entropy_with_integer_labels(reduction="none"),
                      pl.optim.sgd(1.0), l2=1e-3,
                      hyper={"weights": pl.Hyper(0.5, positive="sigmoid", per_example=True)}, method=method,
                      validation_loss=pl.losses.softmax_cross_entropy_with_integer_labels())


def compile_seconds(method, train, val) -> float:
    runner = problem(method).compile(jit=False)
    state = runner.init(0, len(train[0]))
    t0 = time.perf_counter()
    jax.jit(runner.hypergradient).lower(state, train, val).compile()
    return time.perf_counter() - t0


def temp_bytes(method, train, val) -> int:
    runner = problem(method).compile(jit=False)
    state = runner.init(0, len(train[0]))
    return jax.jit(runner.hypergradient).lower(state, train, val).compile().memory_analysis().temp_size_in_bytes


def hand_written(train, val, inner_steps=100, cg_steps=50, l2=1e-3, lr=1.0):
    """The implicit hypergradient for the same problem, written directly with JAX."""
    (x, y), (xv, yv) = train, val

    def forward(w, x):
        return x @ w["W"] + w["b"]

    def ce(logits, labels):
        return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]

    def inner(w, theta):
        weights = jax.nn.sigmoid(theta)
        reg = 0.5 * l2 * (jnp.sum(w["W"] ** 2) + jnp.sum(w["b"] ** 2))
        return jnp.mean(weights * ce(forward(w, x), y)) + reg

    def outer(w):
        return jnp.mean(ce(forward(w, xv), yv))

    @jax.jit
    def hypergradient(w, theta):
        w = jax.lax.fori_loop(0, inner_steps, lambda _, w: jax.tree.map(lambda p, g: p - lr * g, w,
                                                                         jax.grad(inner)(w, theta)), w)
        gv = jax.grad(outer)(w)

        def hvp(v):
            return jax.jvp(lambda w: jax.grad(inner)(w, theta), (w,), (v,))[1]
        q, _ = jax.scipy.sparse.linalg.cg(hvp, gv, maxiter=cg_steps, tol=0.0)
        _, vjp = jax.vjp(lambda t: jax.grad(inner)(w, t), theta)
        return jax.tree.map(lambda t: -t, vjp(q)[0]), w
    return hypergradient


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--check", action="store_true", help="exit 1 unless every bound holds")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    train, val, _, _ = hyper_cleaning.load(0)
    train, val = tuple(map(jnp.asarray, train)), tuple(map(jnp.asarray, val))
    out = {"device": str(jax.devices()[0])}

    c10, c1000 = [], []
    for _ in range(3):
        c10.append(compile_seconds(pl.bilevel.unrolled(10), train, val))
        c1000.append(compile_seconds(pl.bilevel.unrolled(1000), train, val))
    out["unrolled_compile_s_K10"] = statistics.median(c10)
    out["unrolled_compile_s_K1000"] = statistics.median(c1000)
    out["unrolled_compile_ratio"] = out["unrolled_compile_s_K1000"] / out["unrolled_compile_s_K10"]

    out["truncated_temp_bytes_K100"] = temp_bytes(pl.bilevel.truncated(100, 10), train, val)
    out["truncated_temp_bytes_K1000"] = temp_bytes(pl.bilevel.truncated(1000, 10), train, val)
    out["unrolled_temp_bytes_K100"] = temp_bytes(pl.bilevel.unrolled(100), train, val)
    out["unrolled_temp_bytes_K1000"] = temp_bytes(pl.bilevel.unrolled(1000), train, val)
    out["truncated_memory_ratio"] = out["truncated_temp_bytes_K1000"] / out["truncated_temp_bytes_K100"]

    runner = problem(pl.bilevel.implicit(100, "cg", 50)).compile(jit=False)
    state = runner.init(0, len(train[0]))
    ours = jax.jit(runner.hypergradient)
    ref = hand_written(train, val)
    w0 = {"W": state["params"]["dense.W"], "b": state["params"]["dense.b"]}
    theta = state["theta"]["weights"]
    g_ours, _, _, _ = ours(state, train, val)
    g_ref, _ = ref(w0, theta)
    out["implicit_cosine_vs_hand_written"] = float(
        jnp.vdot(g_ours["weights"], g_ref) / jnp.linalg.norm(g_ours["weights"]) / jnp.linalg.norm(g_ref))
    ratios = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(ours(state, train, val))
        t1 = time.perf_counter()
        jax.block_until_ready(ref(w0, theta))
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    out["implicit_time_ratio"] = statistics.median(ratios)

    print(json.dumps(out, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(out, indent=2))
    ok = out["unrolled_compile_ratio"] <= 2.0 and out["truncated_memory_ratio"] <= 1.1 and \
        out["implicit_time_ratio"] <= 1.2 and out["implicit_cosine_vs_hand_written"] >= 0.9999
    if a.check and not ok:
        raise SystemExit("a bilevel benchmark bound does not hold")
    return out


if __name__ == "__main__":
    main()
