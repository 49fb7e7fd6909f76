"""The call path: what one call of a compiled paralens step costs beyond the program itself, on a
model so small that the call is all there is (an MLP 16-32-32-10, batch 8, Adam).

paralens's ``learner.compile("jax")`` step is called, on device arrays, interleaved, in loops of
many calls, against:

- **the same program** called bare: the step's own ``jax.jit`` function, given the state's parts
  as it takes them and handing its outputs straight back, no state dict rebuilt, nothing
  checked: the floor of the call path (bounded: ``--check``);
- the same model's hand-written plain JAX + optax step, with the hyperparameters baked in as
  constants, and the same with them passed at run time as paralens's state carries them
  (``hyper``, and the step counter): what runtime hyperparameters cost any JAX program.

Each comparison is its own pair, timed alone: the two sides alternate who goes first, round by
round, and the median of the per-round ratios is reported, with the per-call microseconds. A
third or fourth side in the same rounds biases the ratio: two copies of one program, timed in
rounds with a third side, differ by 2% to 3% by their places in the round, and the ratio of the
checked pair rose from 1.01x-1.02x alone to 1.02x-1.10x among four sides. The same program
against a second copy of itself (an A/A pair) is printed as the noise of the measurement.

    python benchmarks/bench_call.py             # the ratios and the microseconds
    python benchmarks/bench_call.py --check     # exit 1 unless the call is <= 1.05x the same program
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from references import adam_step, cross_entropy, mlp_forward, mlp_learner

BOUND = 1.05


def per_call(fn, state, x, y, calls: int):
    state, loss = fn(state, x, y)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(calls):
        state, loss = fn(state, x, y)
    jax.block_until_ready((state, loss))
    return (time.perf_counter() - t0) / calls, state


def runtime_hyper_step(lr: float):
    """The hand-written step with Adam's hyperparameters and a step counter as run-time arguments."""
    def step(state, hyper, x, y):
        params, opt_state, count = state
        value, grads = jax.value_and_grad(lambda p: cross_entropy(mlp_forward(p, x), y))(params)
        updates, opt_state = optax.adam(*hyper).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, count + 1), value
    return jax.jit(step, donate_argnums=(0,))


#: The pairs timed, each alone: (numerator, denominator).
PAIRS = (("paralens", "same"), ("same", "again"), ("paralens", "hand"), ("runtime", "hand"))


def bare(program):
    """``program`` called on the state's parts (updated, kept) as the step passes them, its outputs
    handed straight back: no state dict rebuilt, nothing checked."""
    def call(parts, x, y):
        new, loss = program(parts[0], parts[1], x, y)
        return (new, parts[1]), loss
    return call


def bench(sizes=(16, 32, 32, 10), batch: int = 8, rounds: int = 21, calls: int = 2000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = jax.device_put(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    y = jax.device_put(rng.integers(0, sizes[-1], batch).astype(np.int32))
    learner = mlp_learner(list(sizes), 1e-3)
    ours = learner.compile("jax")
    program = ours._jit  # the same program, called bare: the parts in, the parts out
    states = {"paralens": learner.init(seed, backend="jax"),
              "same": ours._split(learner.init(seed, backend="jax")),
              "again": ours._split(learner.init(seed, backend="jax"))}
    tx, fn = adam_step(mlp_forward, cross_entropy, 1e-3)
    hand, runtime = jax.jit(fn, donate_argnums=(0,)), runtime_hyper_step(1e-3)

    def fresh():
        return {k: jnp.array(v) for k, v in learner.init(seed)["params"].items()}
    p, q = fresh(), fresh()
    states["hand"] = (p, tx.init(p))
    states["runtime"] = (q, tx.init(q), jnp.zeros((), jnp.int32))
    hyper = tuple(jnp.asarray(v, jnp.float32) for v in (1e-3, 0.9, 0.999, 1e-8, 0.0))
    calls_of = {"paralens": ours, "same": bare(program), "hand": hand,
                "runtime": lambda s, x, y: runtime(s, hyper, x, y),
                "again": bare(jax.jit(program.__wrapped__, donate_argnums=(0,)))}  # a second copy (A/A)
    us = {pair: ([], []) for pair in PAIRS}
    for a, b in PAIRS:  # each pair timed alone, who goes first alternating
        for r in range(rounds):
            for k in ((b, a) if r % 2 else (a, b)):
                t, states[k] = per_call(calls_of[k], states[k], x, y, calls)
                us[a, b][k == b].append(1e6 * t)

    def ratio(a, b):
        return statistics.median([p / q for p, q in zip(*us[a, b])])
    return {"sizes": list(sizes), "batch": batch, "device": str(jax.devices()[0]),
            "ratio": ratio("paralens", "same"), "hand_ratio": ratio("paralens", "hand"),
            "runtime_hyper_ratio": ratio("runtime", "hand"), "noise": ratio("same", "again"),
            # each side's microseconds from the first pair it is in
            **{f"{k}_us": statistics.median(v) for pair in reversed(PAIRS) for k, v in zip(pair, us[pair])}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help=f"exit 1 unless the ratio is <= {BOUND}")
    ap.add_argument("--rounds", type=int, default=21)
    a = ap.parse_args(argv)
    r = bench(rounds=a.rounds)
    print(f"tiny MLP {'-'.join(map(str, r['sizes']))} batch {r['batch']} on {r['device']}: a step call "
          f"{r['ratio']:.3f}x the same program called bare ({r['paralens_us']:.1f} us vs {r['same_us']:.1f} us); "
          f"{r['hand_ratio']:.3f}x hand-written JAX + optax with constant hyperparameters ({r['hand_us']:.1f} us), "
          f"which pays {r['runtime_hyper_ratio']:.3f}x itself for run-time ones ({r['runtime_us']:.1f} us); "
          f"noise: the same program against a second copy of itself {r['noise']:.3f}x")
    if a.check and r["ratio"] > BOUND:
        print(f"FAILED: {r['ratio']:.3f}x > {BOUND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
