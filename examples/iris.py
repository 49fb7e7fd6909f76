"""Iris with plain gradient descent, assembled as in "Categorical Foundations".

model (dense layers, sigmoid) ; MSE loss lens (parametrised by the label) ;
learning-rate lens (seeds the cotangent 1) ; gradient-descent reparametrisation
of the parameter wire: one update term, run eagerly by the NumPy backend.

    python examples/iris.py               # 4 -> 3 sigmoid model
    python examples/iris.py --hidden 20   # 4 -> 20 -> 3
"""

from __future__ import annotations

import argparse

import numpy as np

import paralens as pl
from paralens.backends import datasets


def build(hidden: int | None):
    sizes = [4, 3] if not hidden else [4, hidden, 3]
    return pl.nn.mlp(sizes, activation=pl.nn.sigmoid, final_activation=pl.nn.sigmoid)


def main(hidden: int | None = None, epochs: int = 2000, learning_rate: float = 2.0, seed: int = 0,
         verbose: bool = True) -> float:
    """Train full-batch and return the training accuracy."""
    x, y, labels = datasets.iris()
    model = build(hidden)
    learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=pl.optim.sgd(learning_rate))
    state = learner.init(seed=seed)
    step = learner.compile("numpy")
    for epoch in range(epochs):
        state, loss = step(state, x, y)
        if verbose and (epoch % (epochs // 10) == 0 or epoch == epochs - 1):
            print(f"epoch {epoch:5d}  loss {float(loss):.4f}")
    pred = np.argmax(learner.predict(state, x), axis=1)
    accuracy = float(np.mean(pred == labels))
    if verbose:
        print(f"{model.name}: training accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=None, help="hidden width (default: no hidden layer)")
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--learning-rate", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.hidden, a.epochs, a.learning_rate, a.seed)
