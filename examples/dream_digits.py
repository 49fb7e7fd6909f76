"""Deep dreaming on scikit-learn's bundled digits: turn a test image of one class into one the
model reads as another, by learning the input with the model's parameters fixed (maths §4.6).

It trains a small MLP, takes the first test image of class ``--source``, optimises it with Adam
toward ``--target``, and writes ``dream.png``: the image before and after, with the model's
probabilities.

    python examples/dream_digits.py [--source 3] [--target 8] [--steps 100] [--out dream.png]
"""

from __future__ import annotations

import argparse

import numpy as np

import paralens as pl
from paralens.backends import datasets
from paralens.backends.training import train_classifier


def probabilities(model, params, x):
    logits = np.asarray(pl.backends.get("numpy").compile(model)(params, np.asarray(x)), np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def main(source: int = 3, target: int = 8, steps: int = 100, epochs: int = 15, seed: int = 0,
         out: str | None = "dream.png", progress: bool = True):
    """Returns ``(p(target) before, p(target) after, parameters unchanged, dreamed image)``."""
    data = datasets.digits()
    model = pl.nn.mlp([64, 64, 10])
    _, state, _, acc = train_classifier(model, data, epochs=epochs, learning_rate=1e-2, seed=seed,
                                        progress=progress)
    params = {k: np.asarray(v) for k, v in state["params"].items()}
    frozen = {k: v.copy() for k, v in params.items()}
    x_test, y_test = data[2], data[3]
    x0 = x_test[np.flatnonzero(y_test == source)[:1]]
    x, losses = pl.dream.dream(model, params, x0, np.array([target], np.int32), optimizer=pl.optim.adam(0.05),
                               steps=steps)
    x = np.asarray(x)
    before, after = probabilities(model, params, x0)[0], probabilities(model, params, x)[0]
    unchanged = all(np.array_equal(params[k], frozen[k]) for k in params)
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
        for ax, img, p, title in ((axes[0], x0, before, "before"), (axes[1], x, after, "after")):
            ax.imshow(img.reshape(8, 8), cmap="gray_r")
            ax.set_title(f"{title}: p({source})={p[source]:.2f}, p({target})={p[target]:.2f}", fontsize=9)
            ax.axis("off")
        fig.suptitle(f"dreaming a {source} into a {target} (model test accuracy {acc:.3f})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)
    if progress:
        print(f"p({target}): {before[target]:.3f} -> {after[target]:.3f} in {steps} steps "
              f"(loss {float(losses[0]):.3f} -> {float(losses[-1]):.4f}); parameters unchanged: {unchanged}")
    return float(before[target]), float(after[target]), unchanged, x


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=int, default=3)
    ap.add_argument("--target", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="dream.png")
    a = ap.parse_args()
    main(a.source, a.target, a.steps, seed=a.seed, out=a.out)
