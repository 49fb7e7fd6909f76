"""An RNN through a scan (length 64): a paralens training step against hand-written
``lax.scan`` + ``jax.grad`` + optax, in one process, interleaved, median ratios.

The paralens model is one ``scan`` box whose body is the RNN cell
``h' = tanh(h W + x_t U + b)``; ``R`` of it is one forward scan (the cell's
lens forward part, stacking its residuals) and one reverse scan (the lens's
reverse part), so the cell's forward runs once per step.

    python benchmarks/bench_rnn.py            # print the ratios
    python benchmarks/bench_rnn.py --check    # exit 1 unless the step ratio <= 1.1
"""

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import paralens as pl


def paralens_rnn(steps: int, d_in: int, hidden: int, classes: int):
    H = pl.ArrayType((hidden,), "float32", batched=True)
    Wt = pl.ArrayType((hidden, hidden), "float32", batched=False)
    Ut = pl.ArrayType((d_in, hidden), "float32", batched=False)
    bt = pl.ArrayType((hidden,), "float32", batched=False)
    Xt = pl.ArrayType((d_in,), "float32", batched=True)

    @pl.para(dom=[H, Wt, Ut, bt, Xt])
    def cell(h, w, u, b, x):
        h2 = pl.tanh(h @ w + x @ u + b)
        return h2, h2

    rnn = pl.scan_term(cell, steps, n_carry=1, n_const=3)

    @pl.para(dom=[pl.Array[steps, d_in]])
    def model(x, w: pl.Param[hidden, hidden], u: pl.Param[d_in, hidden], b: pl.Param[hidden],
              v: pl.Param[hidden, classes]):
        h0 = pl.zeros_like(x.sum(axis=0) @ u)  # (hidden,) zeros per example
        h, _ = rnn(h0, w, u, b, x)
        return h @ v

    return model


def hand_written(lr):
    tx = optax.adam(lr)

    def forward(p, x):
        def cell(h, xt):
            h = jnp.tanh(h @ p["model.w"] + xt @ p["model.u"] + p["model.b"])
            return h, h
        h0 = jnp.zeros((x.shape[0], p["model.w"].shape[0]), x.dtype)
        h, _ = jax.lax.scan(cell, h0, jnp.swapaxes(x, 0, 1))
        return h @ p["model.v"]

    def loss(p, x, y):
        logits = forward(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(state, x, y):
        p, s = state
        l, g = jax.value_and_grad(loss)(p, x, y)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), l
    return tx, step


def timed(fn, state, args, n):
    state, loss = fn(state, *args)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(n):
        state, loss = fn(state, *args)
    jax.block_until_ready(loss)
    return (time.perf_counter() - t0) / n, state


def bench(steps=64, d_in=16, hidden=64, classes=10, batch=64, rounds=15, calls=10, lr=1e-3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, d_in)).astype(np.float32)
    y = rng.integers(0, classes, batch).astype(np.int32)
    learner = pl.Learner(paralens_rnn(steps, d_in, hidden, classes),
                         loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))
    p_step = learner.compile("jax")
    p_state = learner.init(seed, backend="jax")
    tx, r_fn = hand_written(lr)
    r_step = jax.jit(r_fn, donate_argnums=(0,))
    r_params = {k: jnp.array(v) for k, v in learner.init(seed)["params"].items()}
    r_state = (r_params, tx.init(r_params))
    # the same numbers first: one step each from the same parameters
    check_state = learner.init(seed, backend="jax")
    _, p_loss = learner.compile("jax", donate=False)(check_state, x, y)
    _, r_loss = jax.jit(r_fn)((r_params, tx.init(r_params)), x, y)
    np.testing.assert_allclose(p_loss, r_loss, rtol=1e-5)
    ratios, times = [], {"paralens": [], "jax": []}
    for _ in range(rounds):
        tp, p_state = timed(p_step, p_state, (x, y), calls)
        tr, r_state = timed(r_step, r_state, (x, y), calls)
        ratios.append(tp / tr)
        times["paralens"].append(tp)
        times["jax"].append(tr)
    return {"steps": steps, "step_ratio_median": statistics.median(ratios),
            "paralens_ms": 1e3 * statistics.median(times["paralens"]),
            "jax_ms": 1e3 * statistics.median(times["jax"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 unless the step ratio <= 1.1")
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args(argv)
    r = bench(rounds=a.rounds)
    print(f"RNN scan length {r['steps']} on {jax.devices()[0]}: step {r['step_ratio_median']:.3f}x "
          f"({r['paralens_ms']:.2f} ms vs {r['jax_ms']:.2f} ms)")
    if a.check and r["step_ratio_median"] > 1.1:
        print("FAILED: step ratio above 1.1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
