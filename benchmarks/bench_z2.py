"""Boolean circuits: the JAX-compiled Z2 engine against the NumPy Z2 backend, on the same circuit.

A random circuit of 64 input bits and 1024 gates (AND, XOR, NOT of earlier wires, mostly
recent ones so that every gate stays live) is evaluated on a batch of 65,536 input patterns.
Both engines are timed interleaved, and the median ratio is reported (JAX / NumPy: below 1 is
faster). A brute-force check on a few rows confirms both compute the circuit.

    python benchmarks/bench_z2.py [--gates 1024] [--batch 65536] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np

import paralens as pl

BIT = pl.Array((), dtype="bool")


def circuit(n_in: int, n_gates: int, n_out: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gates = [(rng.choice(["and", "xor", "xor", "not"]), int(rng.integers(1, 48)), int(rng.integers(1, 48)))
             for _ in range(n_gates)]

    def body(*xs):
        wires = list(xs)
        for op, i, j in gates:
            a, b = wires[-min(i, len(wires))], wires[-min(j, len(wires))]
            wires.append(a * b if op == "and" else a + b if op == "xor" else a + 1)
        return tuple(wires[-n_out:])
    return pl.para(body, dom=[BIT] * n_in, name=f"circuit({n_in} in, {n_gates} gates)"), gates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--gates", type=int, default=1024)
    ap.add_argument("--outputs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    term, gates = circuit(a.inputs, a.gates, a.outputs)
    z2 = pl.backends.get("z2")
    numpy_fn, jax_fn = z2.compile(term), z2.compile(term, engine="jax")
    rows = np.random.default_rng(1).random((a.batch, a.inputs)) < 0.5
    xs = tuple(rows[:, k] for k in range(a.inputs))
    x_dev = tuple(jax.device_put(x) for x in xs)
    ref = numpy_fn({}, xs)
    out = jax.block_until_ready(jax_fn({}, x_dev))
    assert all(np.array_equal(np.asarray(u), v) for u, v in zip(out, ref))
    for r in range(3):  # and both are the circuit: evaluate its gates on Python ints
        wires = [int(v) for v in rows[r]]
        for op, i, j in gates:
            x, y = wires[-min(i, len(wires))], wires[-min(j, len(wires))]
            wires.append(x & y if op == "and" else x ^ y if op == "xor" else x ^ 1)
        assert [int(v[r]) for v in ref] == wires[-a.outputs:]
    times = {"numpy": [], "jax": []}
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        numpy_fn({}, xs)
        times["numpy"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        jax.block_until_ready(jax_fn({}, x_dev))
        times["jax"].append(time.perf_counter() - t0)
    ratios = [j / n for j, n in zip(times["jax"], times["numpy"])]
    result = {"inputs": a.inputs, "gates": a.gates, "live_boxes": term.n_boxes, "batch": a.batch,
              "numpy_ms": 1e3 * statistics.median(times["numpy"]), "jax_ms": 1e3 * statistics.median(times["jax"]),
              "ratio_median": statistics.median(ratios), "device": str(jax.devices()[0])}
    print(f"Z2 circuit, {a.inputs} inputs, {a.gates} gates ({term.n_boxes} boxes live), batch {a.batch}: "
          f"NumPy {result['numpy_ms']:.1f} ms, JAX {result['jax_ms']:.1f} ms; "
          f"median ratio JAX / NumPy {result['ratio_median']:.3f} on {result['device']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
