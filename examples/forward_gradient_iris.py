"""Training without backpropagation: forward gradients (Baydin et al., maths §9) on the bundled Iris.

Each step draws a random tangent ``v`` for the parameters, takes one forward derivative
``d = D(loss)(params; v)`` and feeds ``d * v`` (an unbiased estimate of the gradient) to the
optimizer. Here ``D`` is ``R`` applied twice: no forward-mode rule is written for any primitive.

    python examples/forward_gradient_iris.py [--epochs 200] [--seed 0]
"""

from __future__ import annotations

import argparse

import paralens as pl
from paralens.backends import datasets


def main(epochs: int = 200, seed: int = 0, progress: bool = True):
    """Returns ``(training accuracy with forward gradients, with reverse-mode gradients)``."""
    x, onehot, labels = datasets.iris()
    out = []
    for gradient in ("forward", "reverse"):
        learner = pl.Learner(pl.nn.mlp([4, 20, 3], activation=pl.nn.tanh), loss=pl.losses.softmax_cross_entropy(),
                             optimizer=pl.optim.adam(0.01), gradient=gradient)
        state, losses = learner.fit(x, onehot, epochs=epochs, batch_size=16, seed=seed, progress=False)
        out.append(learner.accuracy(state, x, labels, backend="jax"))
        if progress:
            print(f"{gradient:7s} gradients: training accuracy {out[-1]:.3f}, loss {losses[:9].mean():.3f} -> "
                  f"{losses[-9:].mean():.3f}")
    return tuple(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, a.seed)
