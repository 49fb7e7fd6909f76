"""The training routine the CLI and the digits examples share."""

from __future__ import annotations

__all__ = ["train_classifier"]


def train_classifier(model, data, *, epochs: int, batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
                     progress: bool = True, **fit_options):
    """Train ``model`` (logits out) with softmax cross-entropy and Adam on
    ``data = (x_train, y_train, x_test, y_test)`` (integer labels), compiled with JAX.
    ``fit_options`` go to :meth:`~paralens.Learner.fit` (``checkpoint_dir``, ``resume``, ...).

    Returns ``(learner, state, losses, test_accuracy)``.
    """
    import paralens as pl

    x_tr, y_tr, x_te, y_te = data
    learner = pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(learning_rate))
    state, losses = learner.fit(x_tr, y_tr, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress,
                                **fit_options)
    return learner, state, losses, learner.accuracy(state, x_te, y_te, backend="jax")
