"""paralens vs hand-written JAX + optax: a training step's memory, as XLA's compiled program reports it.

The same MLP trained with Adam (state donated on both sides), each step lowered and
compiled in this process; ``compiled.memory_analysis()`` gives the bytes of the
arguments, the outputs, the outputs that alias (reuse) donated arguments, the
temporaries the program allocates, XLA's own peak (its buffer assignment's, where the
backend gives one; on the CPU it can be below the sum of the parts) and ``total``,
arguments + outputs - aliased outputs + temporaries, which every backend gives. Memory is a property of the
compiled program, not of a run, so there is no noise and no repetition.

The step is measured twice: as the learner assembles it by default (the backward pass,
then the optimizer), and with ``fuse_optimizer=True`` (each parameter updated as soon as
its cotangent is complete, behind an optimization barrier), which XLA does not find on
its own for either side.

    python benchmarks/bench_memory.py                 # 784-512-512-10, batch 256
    python benchmarks/bench_memory.py --check         # exit 1 unless paralens's temporaries <= 1.0x,
                                                      # and lower still with the optimizer fused
    python benchmarks/bench_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from bench_mlp import hand_written, paralens_learner

#: CompiledMemoryStats fields every backend reports, with their short names
FIELDS = {"temp": "temp_size_in_bytes", "argument": "argument_size_in_bytes", "output": "output_size_in_bytes",
          "alias": "alias_size_in_bytes"}
KINDS = (*FIELDS, "peak", "total")


def memory_stats(compiled) -> dict:
    """Bytes by kind for a compiled program (``peak`` is None where XLA gives none)."""
    m = compiled.memory_analysis()
    stats = {short: getattr(m, name) for short, name in FIELDS.items()}
    stats["peak"] = getattr(m, "peak_memory_in_bytes", 0) or None
    stats["total"] = stats["argument"] + stats["output"] - stats["alias"] + stats["temp"]
    return stats


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, with 0 / 0 = 1 (both programs need none); None where either is unknown."""
    if a is None or b is None:
        return None
    return a / b if b else (1.0 if a == 0 else float("inf"))


def ratios(ours: dict, theirs: dict) -> dict:
    return {k: ratio(ours[k], theirs[k]) for k in KINDS}


def bench(sizes, batch=256, lr=1e-3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch).astype(np.int32)

    learner = paralens_learner(sizes, lr)
    fused = paralens_learner(sizes, lr, fuse_optimizer=True)
    p_state = learner.init(seed, backend="jax")
    tx, r_step, _ = hand_written(sizes, lr)
    r_params = {k: jnp.array(v) for k, v in learner.init(seed)["params"].items()}
    r_state = (r_params, tx.init(r_params))

    ours = memory_stats(learner.compile("jax").lower(p_state, x, y).compile())
    ours_fused = memory_stats(fused.compile("jax").lower(p_state, x, y).compile())
    theirs = memory_stats(jax.jit(r_step, donate_argnums=(0,)).lower(r_state, x, y).compile())
    return {"sizes": sizes, "batch": batch, "device": str(jax.devices()[0]),
            "paralens": ours, "fused": ours_fused, "jax": theirs,
            "ratio": ratios(ours, theirs), "fused_ratio": ratios(ours_fused, theirs)}


def report(r: dict) -> str:
    """Lines: one per kind of memory, paralens vs hand-written and their ratio."""
    lines = []
    for name, key, rkey in (("paralens", "paralens", "ratio"), ("paralens, optimizer fused", "fused", "fused_ratio")):
        lines.append(f"MLP {r['sizes']} batch {r['batch']} Adam on {r['device']}: step memory, {name} vs JAX + optax")
        for k in KINDS:
            if r[rkey][k] is None:
                lines.append(f"  {k:9s} not reported by this backend")
            else:
                lines.append(f"  {k:9s} {r[key][k] / 2**20:9.3f} MiB vs {r['jax'][k] / 2**20:9.3f} MiB"
                             f"  {r[rkey][k]:.3f}x")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless paralens's step temporaries are <= 1.0x hand-written")
    a = ap.parse_args(argv)
    r = bench([784, 512, 512, 10], batch=a.batch)
    print(report(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    if a.check and r["ratio"]["temp"] > 1.0:
        raise SystemExit(f"paralens's step temporaries are {r['ratio']['temp']:.3f}x hand-written JAX (bound 1.0x)")
    if a.check and r["fused_ratio"]["temp"] >= r["ratio"]["temp"]:
        raise SystemExit("fusing the optimizer into the backward pass did not lower the step's temporaries")
    return r


if __name__ == "__main__":
    main()
