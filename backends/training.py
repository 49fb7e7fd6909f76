"""Host-side training helpers shared by all backends: fitting loops, metrics, hyperparameters."""

from __future__ import annotations

import numpy as np

__all__ = ["fit", "accuracy", "set_hyper", "train_classifier"]


def set_hyper(state: dict, **values) -> dict:
    """``state`` with new hyperparameter values, of the dtype and array type the step was
    compiled for (so the compiled step is reused, not re-traced)."""
    unknown = set(values) - set(state["hyper"])
    if unknown:
        raise KeyError(f"unknown hyperparameters {sorted(unknown)}; this optimizer has {sorted(state['hyper'])}")
    hyper = dict(state["hyper"])
    for k, v in values.items():
        old = hyper[k]
        if type(old).__module__.startswith("jax"):
            import jax.numpy as jnp
            hyper[k] = jnp.asarray(v, dtype=old.dtype)
        else:
            hyper[k] = np.asarray(v, dtype=old.dtype)
    return {**state, "hyper": hyper}


def accuracy(predictions, labels) -> float:
    """Fraction of examples whose arg-max prediction equals ``labels`` (class indices or one-hot)."""
    pred = np.argmax(np.asarray(predictions), axis=-1)
    labels = np.asarray(labels)
    if labels.ndim == pred.ndim + 1:
        labels = np.argmax(labels, axis=-1)
    return float(np.mean(pred == labels))


def fit(learner, x, y, *, epochs: int, batch_size: int, seed: int, state, backend: str, progress: bool):
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    if not 0 < batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (the number of examples), got {batch_size}")
    state = learner.init(seed, backend=backend) if state is None else state
    many = learner.compile(backend, scan=True)
    rng = np.random.default_rng(seed)
    k = n // batch_size
    history = []
    epochs_iter = range(epochs)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = epochs_iter = tqdm(epochs_iter, desc=f"training {learner.model.name[:40]}", unit="epoch")
    for _ in epochs_iter:
        order = rng.permutation(n)[: k * batch_size]
        xs = x[order].reshape((k, batch_size) + x.shape[1:])
        ys = y[order].reshape((k, batch_size) + y.shape[1:])
        state, losses = many(state, xs, ys)
        losses = np.asarray(losses)
        history.append(losses)
        if bar is not None:
            bar.set_postfix(loss=f"{losses.mean():.4f}")
    return state, (np.concatenate(history) if history else np.zeros(0, np.float32))


def train_classifier(model, data, *, epochs: int, batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
                     progress: bool = True):
    """Train ``model`` (logits out) with softmax cross-entropy and Adam on
    ``data = (x_train, y_train, x_test, y_test)`` (integer labels), compiled with JAX.

    Returns ``(learner, state, losses, test_accuracy)``.
    """
    import paralens as pl

    x_tr, y_tr, x_te, y_te = data
    learner = pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(learning_rate))
    state, losses = learner.fit(x_tr, y_tr, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
    return learner, state, losses, learner.accuracy(state, x_te, y_te, backend="jax")
