"""Boolean functions learned by reverse derivative ascent (Wilson and Zanasi, maths §4.5).

Three circuits over Z2 (+ is XOR, * is AND), each trained from its truth table:

* the xor of 6 inputs, with a Z2-linear layer (``pl.z2.dense``);
* the 2-bit adder ``(a1 a0) + (b1 b0) -> (s2 s1 s0)``, with a lookup table of output bits;
* the xor of 6 inputs again, with a circuit of two Z2 dense layers (6 -> 6 -> 1): ``R``
  sends each error back through both.

Each step flips the parameter bits ``R`` of the prediction's error selects:
``p <- p + R[f]((p, x), f(p, x) + y)``.

    python examples/z2_functions.py
"""

from __future__ import annotations

import itertools

import numpy as np

import paralens as pl

z2 = pl.backends.get("z2")


def truth_table(n: int):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)


def adder():
    x = truth_table(4)

    def value(bits):
        return sum(int(b) << (len(bits) - 1 - k) for k, b in enumerate(bits))
    y = np.array([[((value(r[:2]) + value(r[2:])) >> (2 - k)) & 1 for k in range(3)] for r in x], dtype=bool)
    return x, y


def train(model, x, y, epochs: int, seed: int = 0):
    """Reverse derivative ascent, one example per step, ``epochs`` passes; the accuracy on the table."""
    learner = pl.z2.rda_learner(model)
    state = learner.init(seed=seed, backend="z2")
    step = learner.compile("z2")
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(x)):
            state, _ = step(state, x[i:i + 1], y[i:i + 1])
    return float(np.mean(np.all(z2.compile(model)(state["params"], x) == y, axis=1)))


def main(progress: bool = True):
    """Returns the accuracies on the truth tables ``(xor of inputs, adder, xor by two layers)``."""
    x = truth_table(6)
    y = (x.sum(axis=1) % 2 == 1)[:, None]
    parity = train(pl.z2.dense(6, 1, bias=False), x, y, epochs=20)
    xa, ya = adder()
    table = train(pl.z2.truth_table(4, 3), xa, ya, epochs=1)
    layered = train(pl.z2.dense(6, 6) >> pl.z2.dense(6, 1), x, y, epochs=30)
    if progress:
        print(f"xor of 6 inputs (a Z2 dense layer): accuracy {parity:.3f}")
        print(f"2-bit adder (a truth table, one pass): accuracy {table:.3f}")
        print(f"xor of 6 inputs (two Z2 dense layers): accuracy {layered:.3f}")
    return parity, table, layered


if __name__ == "__main__":
    main()
