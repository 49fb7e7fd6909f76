"""An MLP on scikit-learn's bundled 8x8 digits, compiled with JAX.

    python examples/digits_mlp.py [--epochs 30] [--hidden 128 128]
"""

from __future__ import annotations

import argparse

import paralens as pl
from paralens.backends import datasets
from paralens.backends.training import train_classifier


def build(hidden=(128, 128)):
    return pl.nn.mlp([64, *hidden, 10], activation=pl.nn.relu)


def main(epochs: int = 30, hidden=(128, 128), learning_rate: float = 1e-3, batch_size: int = 32, seed: int = 0,
         progress: bool = True):
    """Train; return ``(learner, state, losses, test_accuracy)``."""
    learner, state, losses, acc = train_classifier(build(hidden), datasets.digits(images=False), epochs=epochs,
                                                   batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                                   progress=progress)
    if progress:
        print(f"{learner.model.name}: test accuracy {acc:.4f}")
    return learner, state, losses, acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, tuple(a.hidden), a.learning_rate, seed=a.seed)
