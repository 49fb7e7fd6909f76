"""Deep dreaming on scikit-learn's bundled digits: turn a test image of one class into one the
model reads as another, by learning the input with the model's parameters fixed (maths §4.6).

It trains a small MLP, takes the first test image of class ``--source`` and optimises it with
Adam toward ``--target``, the loss plus a prior on the input: a Gaussian fitted to the training
images (``pl.dream.gaussian_prior``, weight ``--prior``). Without the prior (``--prior 0``) the
model reads the result as the target too, but it is a pattern of noise, not a digit; with it the
result is a recognisable, if blurry, digit of the target class: the image that has the largest
correlation with it, of the mean training images of each class (all of them centred on the mean
training image), is the target's. It writes ``dream.png``: the image before and after, with the
model's probabilities.

    python examples/dream_digits.py [--source 3] [--target 8] [--prior 0.03] [--steps 300] [--out dream.png]
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


def class_correlations(x, images, labels):
    """The correlation of image ``x`` with the mean image of each class, all centred on the mean
    image: a nearest-centroid reading of ``x`` that does not use the model."""
    mean = images.mean(0)
    x = np.asarray(x, np.float64).ravel() - mean
    return np.array([np.corrcoef(x, images[labels == c].mean(0) - mean)[0, 1] for c in np.unique(labels)])


def main(source: int = 3, target: int = 8, steps: int = 300, prior: float = 0.03, epochs: int = 15, seed: int = 0,
         out: str | None = "dream.png", progress: bool = True):
    """Returns ``(p(target) before, p(target) after, parameters unchanged, dreamed image, correlations
    of the dreamed image with each class's mean image)``."""
    data = datasets.digits()
    x_train, y_train, x_test, y_test = data
    model = pl.nn.mlp([64, 64, 10])
    _, state, _, acc = train_classifier(model, data, epochs=epochs, learning_rate=1e-2, seed=seed,
                                        progress=progress)
    params = {k: np.asarray(v) for k, v in state["params"].items()}
    frozen = {k: v.copy() for k, v in params.items()}
    x0 = x_test[np.flatnonzero(y_test == source)[:1]]
    x, losses = pl.dream.dream(model, params, x0, np.array([target], np.int32), optimizer=pl.optim.adam(0.05),
                               prior=pl.dream.gaussian_prior(x_train, prior) if prior else None, steps=steps)
    x = np.asarray(x)
    before, after = probabilities(model, params, x0)[0], probabilities(model, params, x)[0]
    unchanged = all(np.array_equal(params[k], frozen[k]) for k in params)
    corr = class_correlations(x, x_train, y_train)
    if out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
        for ax, img, p, title in ((axes[0], x0, before, "before"), (axes[1], x, after, "after")):
            ax.imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"{title}: p({source})={p[source]:.2f}, p({target})={p[target]:.2f}", fontsize=9)
            ax.axis("off")
        fig.suptitle(f"dreaming a {source} into a {target} (model test accuracy {acc:.3f})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out)
        plt.close(fig)
    if progress:
        print(f"p({target}): {before[target]:.3f} -> {after[target]:.3f} in {steps} steps "
              f"(loss {float(losses[0]):.3f} -> {float(losses[-1]):.4f}); parameters unchanged: {unchanged}; "
              f"nearest class mean: {int(corr.argmax())} (correlation {corr.max():.2f}, "
              f"next {np.sort(corr)[-2]:.2f})")
    return float(before[target]), float(after[target]), unchanged, x, corr


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=int, default=3)
    ap.add_argument("--target", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--prior", type=float, default=0.03, help="weight of the Gaussian prior on the input (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="dream.png")
    a = ap.parse_args()
    main(a.source, a.target, a.steps, a.prior, seed=a.seed, out=a.out)
