"""paralens on NumPy vs a hand-written NumPy step: the Iris 4-20-3 MLP, SGD, batch 1.

The paralens step is ``learner.compile("numpy")``: the learner's step term compiled
once to a straight-line Python function (the NumPy backend's code generation),
called with the state dict, one example and its integer label. The reference is
the same model written by hand: forward, softmax cross-entropy, backward and SGD
update with ``np.dot`` and friends, taking and returning the same state.

Both are built in this process and timed interleaved (paralens, hand-written,
paralens, ...) over the Iris examples in order; the figure reported is the median
of the per-round ratios paralens / hand-written, so machine noise that hits a
round hits both.

    python benchmarks/bench_numpy.py
    python benchmarks/bench_numpy.py --check        # exit 1 unless the ratio <= 1.0
    python benchmarks/bench_numpy.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import paralens as pl
from paralens.backends.datasets import iris


def hand_written(lr):
    """The reference: one SGD step of the 4-20-3 ReLU MLP with softmax cross-entropy on integer
    labels (mean over the batch), written with NumPy; returns the new state and the loss."""
    lr = np.float32(lr)

    def step(state, x, y):
        p = state["params"]
        w0, b0, w1, b1 = p["dense0.W"], p["dense0.b"], p["dense1.W"], p["dense1.b"]
        n = x.shape[0]
        rows = np.arange(n)
        pre = np.dot(x, w0) + b0
        h = np.maximum(pre, 0)
        logits = np.dot(h, w1) + b1
        m = np.max(logits, axis=1, keepdims=True)
        e = np.exp(logits - m)
        s = np.sum(e, axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, y])
        d = e / s
        d[rows, y] -= 1
        d /= n
        dh = np.dot(d, w1.T) * (pre > 0)
        params = {"dense0.W": w0 - lr * np.dot(x.T, dh), "dense0.b": b0 - lr * np.sum(dh, axis=0),
                  "dense1.W": w1 - lr * np.dot(h.T, d), "dense1.b": b1 - lr * np.sum(d, axis=0)}
        return {**state, "params": params, "step": state["step"] + 1}, loss
    return step


def learner(lr):
    return pl.Learner(pl.nn.mlp([4, 20, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.sgd(lr))


def timed(fn, state, xs, ys):
    t0 = time.perf_counter()
    for x, y in zip(xs, ys):
        state, loss = fn(state, x, y)
    return (time.perf_counter() - t0) / len(xs), state


def bench(rounds=15, batch=1, lr=0.01, seed=0) -> dict:
    x, _, labels = iris()
    n = len(x) // batch * batch
    xs = [x[i: i + batch] for i in range(0, n, batch)]
    ys = [labels[i: i + batch].astype(np.int32) for i in range(0, n, batch)]

    ln = learner(lr)
    p_step = ln.compile("numpy")
    r_step = hand_written(lr)
    p_state = ln.init(seed)
    r_state = {**p_state, "params": {k: v.copy() for k, v in p_state["params"].items()}}

    # the same numbers: one epoch each from the same state
    p_check, r_check = p_state, r_state
    for xb, yb in zip(xs, ys):
        p_check, lp = p_step(p_check, xb, yb)
        r_check, lr_ = r_step(r_check, xb, yb)
    drift = max(float(np.max(np.abs(p_check["params"][k] - r_check["params"][k]))) for k in p_check["params"])

    timed(p_step, p_state, xs, ys)  # warm
    timed(r_step, r_state, xs, ys)
    ratios, tp_all, tr_all = [], [], []
    for _ in range(rounds):
        tp, p_state = timed(p_step, p_state, xs, ys)
        tr, r_state = timed(r_step, r_state, xs, ys)
        ratios.append(tp / tr)
        tp_all.append(tp)
        tr_all.append(tr)
    return {"sizes": [4, 20, 3], "batch": batch, "rounds": rounds, "steps_per_round": len(xs),
            "ratio_median": statistics.median(ratios),
            "paralens_step_us": 1e6 * statistics.median(tp_all), "numpy_step_us": 1e6 * statistics.median(tr_all),
            "max_param_difference_after_one_epoch": drift}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the step ratio <= 1.0")
    a = ap.parse_args(argv)
    r = bench(rounds=a.rounds, batch=a.batch)
    print(f"MLP {r['sizes']} batch {r['batch']}, SGD, NumPy: step {r['ratio_median']:.3f}x "
          f"({r['paralens_step_us']:.1f} us vs {r['numpy_step_us']:.1f} us hand-written); "
          f"parameters after one epoch differ by {r['max_param_difference_after_one_epoch']:.1e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    if a.check and r["ratio_median"] > 1.0:
        raise SystemExit(f"the NumPy step is {r['ratio_median']:.3f}x the hand-written one, over the bound 1.0")
    return r


if __name__ == "__main__":
    main()
