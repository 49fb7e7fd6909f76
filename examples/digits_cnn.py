"""A small CNN on scikit-learn's bundled 8x8 digits, built from the convolution and
pooling primitives, compiled with JAX.

    python examples/digits_cnn.py [--epochs 20]
"""

from __future__ import annotations

import argparse

import paralens as pl
from paralens.backends import datasets


def build():
    features = (pl.nn.conv2d(1, 16, 3, padding="same").at(pl.Array[8, 8, 1]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(16, 32, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    return features >> pl.nn.dense(features.cod[0].size, 10)


def main(epochs: int = 20, learning_rate: float = 2e-3, batch_size: int = 32, seed: int = 0,
         progress: bool = True):
    """Train; return ``(learner, state, losses, test_accuracy)``."""
    x_tr, y_tr, x_te, y_te = datasets.digits(images=True)
    learner = pl.Learner(build(), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(learning_rate))
    state, losses = learner.fit(x_tr, y_tr, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
    acc = learner.accuracy(state, x_te, y_te, backend="jax")
    if progress:
        print(f"CNN: test accuracy {acc:.4f}")
    return learner, state, losses, acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--learning-rate", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, a.learning_rate, seed=a.seed)
