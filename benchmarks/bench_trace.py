"""Trace + compile time of a training step on residual MLPs of growing depth: paralens (building
the learner's step term, emitting the JAX program, XLA compiling it) against hand-written
JAX + optax (tracing and compiling), fresh functions each round, interleaved (the side that
goes first alternates); the ratio of each side's fastest round. Each side's state (initial
parameters and optimizer state) is made before its clock starts: drawing parameters is not
tracing or compiling, and the two sides draw differently (random against zeros).

Each side is timed in this process's CPU time (``time.process_time``, every thread of the
process), not wall time: another job on the machine takes wall time from both sides
unevenly, round by round, but not CPU time. What load still adds (a busy core's caches,
its clock) only lengthens a round, so each side's fastest round is its least disturbed one
(as ``timeit`` advises). ``--wall`` times wall-clock instead.

    python benchmarks/bench_trace.py                  # depths 16, 64, 256
    python benchmarks/bench_trace.py --check          # exit 1 unless every ratio <= 1.1
    python benchmarks/bench_trace.py --injected       # also against optax.inject_hyperparams(adam)
    python benchmarks/bench_trace.py --breakdown      # also trace+lower and XLA compile apart
    python benchmarks/bench_trace.py --kernels        # also the LLVM modules XLA:CPU builds for each

paralens's hyperparameters are run-time inputs (in the learner's state), where ``optax.adam(1e-3)``
makes them constants of the program; ``--injected`` also times the hand-written step with
``optax.inject_hyperparams``, the same program as paralens's (reported, not checked).
"""

import argparse
import functools
import glob
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import paralens as pl

WIDTH, BATCH = 64, 32


def paralens_step(depth: int):
    @pl.para(dom=[pl.Array[WIDTH]], name="block")
    def block(x, w: pl.Param((WIDTH, WIDTH))):
        return x + pl.tanh(x @ w)
    model = block
    for _ in range(depth - 1):
        model = model >> block
    learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-3))
    return learner


def hand_step(depth: int, injected: bool = False):
    """The hand-written step and its optimizer; :func:`hand_state` makes its state. ``injected``:
    Adam's hyperparameters are inputs of the step (``optax.inject_hyperparams``), as paralens's are
    (in its state, so that changing one does not recompile); otherwise constants of the program."""
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3) if injected else optax.adam(1e-3)

    def loss(ws, x, y):
        for w in ws:
            x = x + jnp.tanh(x @ w)
        return jnp.mean(jnp.sum((x - y) ** 2, axis=-1)) / 2

    def step(state, x, y):
        ws, s = state
        l, g = jax.value_and_grad(loss)(ws, x, y)
        u, s = tx.update(g, s, ws)
        return (optax.apply_updates(ws, u), s), l
    return step, tx


def hand_state(depth: int, tx):
    ws = [jnp.zeros((WIDTH, WIDTH), jnp.float32) for _ in range(depth)]
    return ws, tx.init(ws)


def bench(depths=(16, 64, 256), rounds=5, clock=time.process_time, injected: bool = False,
          parts: dict | None = None) -> dict:
    """``{depth: paralens / hand-written}``, each side's fastest of ``rounds`` rounds (of
    ``rounds * 64 // depth`` below depth 64, where a round is short and one disturbed round in few
    decides the minimum); with ``injected``,
    ``{depth: (paralens / hand-written, paralens / hand-written with injected hyperparameters)}``,
    the three sides interleaved. A round times two parts, tracing and lowering to StableHLO (Python:
    paralens's is building the step term and emitting it), then XLA compiling the module; given a
    dict ``parts``, each side's fastest time of each part goes in it, ``{depth: {side: (lower, xla)}}``."""
    x = np.zeros((BATCH, WIDTH), np.float32)
    y = np.zeros((BATCH, WIDTH), np.float32)

    def ours(depth, state):  # (trace and lower, XLA compile)
        t0 = clock()
        learner = paralens_step(depth)
        lowered = learner.compile("jax").lower(state, x, y)
        t1 = clock()
        lowered.compile()
        return t1 - t0, clock() - t1

    def theirs(depth, state, injected=False):
        t0 = clock()
        fn, _ = hand_step(depth, injected)
        lowered = jax.jit(fn, donate_argnums=(0,)).lower(state, x, y)
        t1 = clock()
        lowered.compile()
        return t1 - t0, clock() - t1
    out = {}
    for depth in depths:
        side = {"ours": functools.partial(ours, depth, paralens_step(depth).init(0, backend="jax")),  # states untimed
                "theirs": functools.partial(theirs, depth, hand_state(depth, hand_step(depth)[1]))}
        if injected:
            side["injected"] = functools.partial(theirs, depth, hand_state(depth, hand_step(depth, True)[1]), True)
        for run in side.values():  # warm: imports, first-call caches of each
            run()
        times = {name: [] for name in side}
        for k in range(rounds * max(1, 64 // depth)):  # as many seconds at a small depth as at 64
            for name in (reversed(side) if k % 2 else side):
                times[name].append(side[name]())
        best = {name: min(sum(t) for t in ts) for name, ts in times.items()}
        ratio = best["ours"] / best["theirs"]
        out[depth] = (ratio, best["ours"] / best["injected"]) if injected else ratio
        if parts is not None:  # each part's fastest round, for --breakdown
            parts[depth] = {name: tuple(min(t[i] for t in ts) for i in (0, 1)) for name, ts in times.items()}
    return out


def object_files(lowered) -> int:
    """How many object files XLA:CPU builds for a lowered program: one per distinct kernel (fusions
    of identical body and buffer aliasing share one) and per small computation it compiles apart.
    Each is an LLVM module compiled on its own, the largest fixed part of a small program's compile
    time; unlike a time, the count does not vary from run to run. Read from XLA's dump (the
    ``xla_dump_to`` option of this one compile)."""
    with tempfile.TemporaryDirectory() as folder:
        lowered.compile(compiler_options={"xla_dump_to": folder})
        return len(glob.glob(os.path.join(folder, "*.o")))


def kernels(depths=(16, 64, 256)) -> dict:
    """``{depth: {side: object files}}`` for paralens's step, the hand-written one and the
    hand-written one with injected hyperparameters (see :func:`object_files`)."""
    x = np.zeros((BATCH, WIDTH), np.float32)
    y = np.zeros((BATCH, WIDTH), np.float32)
    out = {}
    for depth in depths:
        learner = paralens_step(depth)
        sides = {"ours": learner.compile("jax").lower(learner.init(0, backend="jax"), x, y)}
        for name, injected in (("theirs", False), ("injected", True)):
            fn, tx = hand_step(depth, injected)
            sides[name] = jax.jit(fn, donate_argnums=(0,)).lower(hand_state(depth, tx), x, y)
        out[depth] = {name: object_files(lowered) for name, lowered in sides.items()}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--wall", action="store_true", help="time wall-clock, not process CPU time")
    ap.add_argument("--injected", action="store_true",
                    help="also against hand-written JAX with optax.inject_hyperparams (reported, not checked)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print each side's fastest trace+lower and XLA compile times")
    ap.add_argument("--kernels", action="store_true",
                    help="also print how many object files (LLVM modules) XLA:CPU builds for each side")
    a = ap.parse_args(argv)
    if a.kernels:
        for depth, sides in kernels().items():
            print(f"depth {depth}: object files XLA builds: "
                  + ", ".join(f"{name} {n}" for name, n in sides.items()))
    parts = {} if a.breakdown else None
    r = bench(rounds=a.rounds, clock=time.perf_counter if a.wall else time.process_time, injected=a.injected,
              parts=parts)
    for depth, sides in (parts or {}).items():
        mine = sides["ours"]
        print(f"depth {depth}: " + "; ".join(
            f"{name} trace+lower {lo * 1e3:.1f} ms, XLA {xla * 1e3:.1f} ms" for name, (lo, xla) in sides.items())
            + f"; paralens / hand-written: trace+lower {mine[0] / sides['theirs'][0]:.2f}x,"
              f" XLA {mine[1] / sides['theirs'][1]:.2f}x")
    if a.injected:
        print("residual MLP trace+compile, paralens / hand-written with injected hyperparameters: "
              + ", ".join(f"depth {d}: {v[1]:.2f}x" for d, v in r.items()))
        r = {d: v[0] for d, v in r.items()}
    print("residual MLP trace+compile, paralens / hand-written: "
          + ", ".join(f"depth {d}: {v:.2f}x" for d, v in r.items()))
    if a.check and max(r.values()) > 1.1:
        print("FAILED: a ratio above 1.1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
