"""Small datasets shipped inside installed packages (nothing is downloaded)."""

from __future__ import annotations

import numpy as np

__all__ = ["digits", "iris"]


def digits(*, images: bool = False, test_size: float = 0.25, seed: int = 0):
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], with a fixed stratified split.

    Returns ``(x_train, y_train, x_test, y_test)``; ``x`` is ``(n, 64)`` float32, or
    ``(n, 8, 8, 1)`` with ``images=True``; ``y`` holds int32 class indices.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    if images:
        x = x.reshape(-1, 8, 8, 1)
    y = d.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te


def iris():
    """scikit-learn's bundled Iris: standardised float32 features, one-hot float32 labels, class indices."""
    from sklearn.datasets import load_iris

    d = load_iris()
    x = d.data.astype(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x, np.eye(3, dtype=np.float32)[d.target], d.target
