"""A small CNN on scikit-learn's bundled 8x8 digits, built from the convolution and
pooling primitives, compiled with JAX.

    python examples/digits_cnn.py [--epochs 20]
"""

from __future__ import annotations

import argparse

import paralens as pl
from paralens.backends import datasets
from paralens.backends.training import train_classifier


def build():
    features = (pl.nn.conv2d(1, 16, 3, padding="same").at(pl.Array[8, 8, 1]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(16, 32, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    return features >> pl.nn.dense(features.cod[0].size, 10)


def main(epochs: int = 20, learning_rate: float = 2e-3, batch_size: int = 32, seed: int = 0,
         progress: bool = True):
    """Train; return ``(learner, state, losses, test_accuracy)``."""
    learner, state, losses, acc = train_classifier(build(), datasets.digits(images=True), epochs=epochs,
                                                   batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                                   progress=progress)
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
