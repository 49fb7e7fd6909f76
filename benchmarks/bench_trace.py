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
    python benchmarks/bench_trace.py --check          # exit 1 unless both like-for-like ratios <= 1.1
    python benchmarks/bench_trace.py --breakdown      # also trace+lower and XLA compile apart
    python benchmarks/bench_trace.py --kernels        # also the LLVM modules XLA:CPU builds for each

Four sides, two pairs of the same program:
- paralens's learner with its default run-time hyperparameters (inputs, in the learner's state, so
  that ``set_hyper`` does not recompile) against the hand-written step with
  ``optax.inject_hyperparams(optax.adam)``, whose hyperparameters are inputs too;
- paralens's learner with ``static_hyper=True`` against the hand-written step with
  ``optax.adam(1e-3)``: both compile the hyperparameters in as constants.
``--check`` bounds these two ratios. The default learner against ``optax.adam(1e-3)`` (programs
that differ by five scalar inputs, which XLA:CPU compiles as one or two more kernels) is reported
beside them.
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

# compile times and object files are measured here: never read a compile from a persistent cache
jax.config.update("jax_enable_compilation_cache", False)

WIDTH, BATCH = 64, 32


def paralens_step(depth: int, static: bool = False):
    @pl.para(dom=[pl.Array[WIDTH]], name="block")
    def block(x, w: pl.Param((WIDTH, WIDTH))):
        return x + pl.tanh(x @ w)
    model = block
    for _ in range(depth - 1):
        model = model >> block
    learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-3), static_hyper=static)
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


_X = np.zeros((BATCH, WIDTH), np.float32)
_Y = np.zeros((BATCH, WIDTH), np.float32)


def lower_ours(depth: int, state, static: bool = False):
    """paralens's step at ``depth``, built from nothing and lowered to StableHLO (JAX backend)."""
    return paralens_step(depth, static).compile("jax").lower(state, _X, _Y)


def lower_theirs(depth: int, state, injected: bool = False):
    """The hand-written step at ``depth``, traced and lowered (its state donated, as paralens's)."""
    fn, _ = hand_step(depth, injected)
    return jax.jit(fn, donate_argnums=(0,)).lower(state, _X, _Y)


#: the ratios reported, ``(name, paralens side, hand-written side, checked)``
PAIRS = (("paralens / injected", "ours", "injected", True),
         ("paralens static_hyper / hand-written", "static", "theirs", True),
         ("paralens / hand-written", "ours", "theirs", False))


def _sides(depth: int) -> dict:
    """``{side: (lower, state)}``: each side's lowering and the state it lowers for (made here,
    outside any clock)."""
    return {"ours": (lower_ours, paralens_step(depth).init(0, backend="jax")),
            "static": (functools.partial(lower_ours, static=True), paralens_step(depth, True).init(0, backend="jax")),
            "theirs": (lower_theirs, hand_state(depth, hand_step(depth)[1])),
            "injected": (functools.partial(lower_theirs, injected=True), hand_state(depth, hand_step(depth, True)[1]))}


def bench(depths=(16, 64, 256), rounds=5, clock=time.process_time, parts: dict | None = None) -> dict:
    """``{depth: {pair name: ratio}}`` for the :data:`PAIRS`, each side's fastest of ``rounds`` rounds
    (of ``rounds * 64 // depth`` below depth 64, where a round is short and one disturbed round in
    few decides the minimum), the four sides interleaved. A round times two parts, tracing and
    lowering to StableHLO (Python: paralens's is building the step term and emitting it), then XLA
    compiling the module; given a dict ``parts``, each side's fastest time of each part goes in it,
    ``{depth: {side: (lower, xla)}}``."""
    def timed(lower, depth, state):  # (trace and lower, XLA compile)
        t0 = clock()
        lowered = lower(depth, state)
        t1 = clock()
        lowered.compile()
        return t1 - t0, clock() - t1
    out = {}
    for depth in depths:
        side = {name: functools.partial(timed, lower, depth, state)  # states made untimed
                for name, (lower, state) in _sides(depth).items()}
        for run in side.values():  # warm: imports, first-call caches of each
            run()
        times = {name: [] for name in side}
        for k in range(rounds * max(1, 64 // depth)):  # as many seconds at a small depth as at 64
            for name in (reversed(side) if k % 2 else side):  # who goes first alternates
                times[name].append(side[name]())
        best = {name: min(sum(t) for t in ts) for name, ts in times.items()}
        out[depth] = {pair: best[a] / best[b] for pair, a, b, _ in PAIRS}
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
    """``{depth: {side: object files}}`` for the four sides of :func:`bench` (see
    :func:`object_files`)."""
    return {depth: {name: object_files(lower(depth, state)) for name, (lower, state) in _sides(depth).items()}
            for depth in depths}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--wall", action="store_true", help="time wall-clock, not process CPU time")
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
    r = bench(rounds=a.rounds, clock=time.perf_counter if a.wall else time.process_time, parts=parts)
    for depth, sides in (parts or {}).items():
        print(f"depth {depth}: " + "; ".join(
            f"{name} trace+lower {lo * 1e3:.1f} ms, XLA {xla * 1e3:.1f} ms" for name, (lo, xla) in sides.items())
            + "; " + "; ".join(f"{pair}: trace+lower {sides[x][0] / sides[y][0]:.2f}x, "
                               f"XLA {sides[x][1] / sides[y][1]:.2f}x" for pair, x, y, checked in PAIRS if checked))
    for pair, _, _, checked in PAIRS:
        print(f"residual MLP trace+compile, {pair}{'' if checked else ' (reported, not checked)'}: "
              + ", ".join(f"depth {d}: {v[pair]:.2f}x" for d, v in r.items()))
    worst = max(v[pair] for v in r.values() for pair, _, _, checked in PAIRS if checked)
    if a.check and worst > 1.1:
        print(f"FAILED: a checked ratio of {worst:.3f} > 1.1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
