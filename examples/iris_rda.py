"""Iris as a boolean function, learned by reverse derivative ascent: the truth-table model of the
"Reverse Derivative Ascent" paper (Wilson and Zanasi).

Each feature is thresholded at the midpoint of its range (over the classes in the task), so an
example is 4 bits. The model is a lookup table of output bits indexed by those 4 bits. It is
trained in one pass over the first 25 examples of each class and tested on the other 25:

* setosa against versicolor (one output bit);
* all three classes, one-hot (three bits) or binary-coded (two bits).

    python examples/iris_rda.py
"""

from __future__ import annotations

import numpy as np

import paralens as pl

z2 = pl.backends.get("z2")


def task(classes, code: str = "binary"):
    """Bits, targets and the train/test split for ``classes``."""
    from sklearn.datasets import load_iris

    data = load_iris()
    x, y = data.data, data.target
    keep = np.isin(y, classes)
    bits = x > (x[keep].min(axis=0) + x[keep].max(axis=0)) / 2
    rank = {c: i for i, c in enumerate(classes)}
    width = len(classes) if code == "one-hot" else max(1, int(np.ceil(np.log2(len(classes)))))

    def encode(c):
        i = rank[c]
        return np.eye(width, dtype=bool)[i] if code == "one-hot" else \
            np.array([(i >> (width - 1 - k)) & 1 for k in range(width)], dtype=bool)
    first = [np.flatnonzero(y == c)[:25] for c in classes]
    train = np.array([idx[k] for k in range(25) for idx in first])  # the classes in turn
    test = np.concatenate([np.flatnonzero(y == c)[25:] for c in classes])
    targets = np.array([encode(c) if c in rank else np.zeros(width, bool) for c in y])
    return bits, targets, y, train, test, width


def decode(out, classes, code):
    if code == "one-hot":
        return np.array([classes[int(np.argmax(o))] if o.any() else -1 for o in out])
    values = out.astype(int) @ (2 ** np.arange(out.shape[1])[::-1])
    return np.array([classes[v] if v < len(classes) else -1 for v in values])


def run(classes, code: str = "binary") -> float:
    bits, targets, labels, train, test, width = task(classes, code)
    model = pl.z2.truth_table(4, width)
    learner = pl.z2.rda_learner(model)
    state = learner.init(backend="z2")
    step = learner.compile("z2")
    for i in train:  # one pass, one example per step
        state, _ = step(state, bits[i:i + 1], targets[i:i + 1])
    predicted = decode(z2.compile(model)(state["params"], bits[test]), classes, code)
    return float(np.mean(predicted == labels[test]))


def main(progress: bool = True) -> dict:
    results = {"two-class": run([0, 1]), "three-class one-hot": run([0, 1, 2], "one-hot"),
               "three-class binary": run([0, 1, 2], "binary")}
    if progress:
        for name, accuracy in results.items():
            print(f"{name}: test accuracy {accuracy:.3f}")
    return results


if __name__ == "__main__":
    main()
