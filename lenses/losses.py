"""Loss maps as lenses parametrised by the label (maths §4.1-4.2).

A loss takes the prediction on its input wire and the label on its parameter
wire, and returns one unbatched scalar: the mean over the batch of the
per-example loss (``reduction="sum"``: the sum; ``"none"``: the per-example
losses, a batched scalar). Its reverse derivative gives the cotangents of both, so
``compile(pl.R(loss))(labels, predictions, dloss) -> (dlabels, dpredictions)``.
The label is the loss's parameter, so a bare array may be passed for it. A
numeric argument (Huber's ``delta``) may be declared a
:func:`~paralens.hyperparameter`: it is then a second parameter wire.

>>> import paralens as pl
>>> pl.losses.huber(delta=pl.hyperparameter(1.0)).at(pl.Array[2]).param_names
('huber', 'huber.delta')
"""

from __future__ import annotations

from . import wires as W
from .parameters import Hyperparameter, number
from .terms import Builder, Poly, Term
from .types import ArrayType, Ty, real

__all__ = ["mse", "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
           "sigmoid_binary_cross_entropy", "huber"]


_REDUCE = {"mean": lambda w: W.batch_mean(w), "sum": lambda w: W.batch_sum(w), "none": lambda w: w}


def _loss(name: str, per_example, label_type=lambda t: t, reduction: str = "mean", **numbers) -> Poly:
    if not isinstance(reduction, str) or reduction not in _REDUCE:
        raise ValueError(f"{name}: unknown reduction={reduction!r}; expected one of {', '.join(map(repr, _REDUCE))}")

    def make(ty: Ty) -> Term:
        if len(ty) != 1:
            raise TypeError(f"{name} takes one prediction wire, got {ty}")
        (t,) = ty
        b = Builder()
        slot = b.new_layer(name)
        b.layer = (name, slot)
        # the label is a batched parameter: one label per example
        label = W.Wire(b, b.param(name, slot, "", label_type(t)))
        args = {k: number(b, v, name, slot, k, t.dtype) for k, v in numbers.items()}
        x = b.input(t)
        with W.tracing(b):
            out = _REDUCE[reduction](per_example(W.Wire(b, x), label, **args))
        return b.build([x], [out.id], name=f"{name}({t})")
    return Poly(make, name)


def mse(*, reduction: str = "mean") -> Poly:
    """Quadratic loss ``1/2 * sum_i (prediction_i - label_i)**2`` per example, mean over the batch.

    This is the quadratic error of "Backprop as Functor" and "Categorical
    Foundations": its cotangent with respect to the prediction is
    ``prediction - label`` (divided by the batch size).

    Args:
        reduction: how the per-example losses are combined: ``"mean"`` (the default) over the
            batch, ``"sum"``, or ``"none"`` (the per-example losses, a batched scalar).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`), typed by what it is composed with: at a
        prediction type ``t`` it is ``t -> Param[()]`` (batched for ``"none"``), named
        ``mse(t)``, with one parameter ``mse``: the label, of the prediction's type.

    Raises:
        ValueError: if ``reduction`` is not ``"mean"``, ``"sum"`` or ``"none"``.
    """
    return _loss("mse", lambda p, label: 0.5 * W.sum((p - label) ** 2.0), reduction=reduction)


def _ce(logits, onehot):
    return W.logsumexp(logits) * W.sum(onehot) - W.sum(onehot * logits)


def softmax_cross_entropy(*, reduction: str = "mean") -> Poly:
    """``-sum_i label_i * log_softmax(logits)_i`` per example (labels: probabilities, e.g.
    one-hot), mean over the batch; computed as ``logsumexp(logits) * sum(label) - label . logits``,
    finite for logits of any magnitude (``optax.softmax_cross_entropy``).

    Args:
        reduction: how the per-example losses are combined: ``"mean"`` (the default) over the
            batch, ``"sum"``, or ``"none"`` (the per-example losses, a batched scalar).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a logits type ``t`` (classes on the last
        axis) it maps the logits to the loss, with one parameter ``softmax_cross_entropy``: the
        labels, of the logits' type.

    Raises:
        ValueError: if ``reduction`` is not ``"mean"``, ``"sum"`` or ``"none"``.
    """
    return _loss("softmax_cross_entropy", _ce, reduction=reduction)


def softmax_cross_entropy_with_integer_labels(*, reduction: str = "mean") -> Poly:
    """Softmax cross-entropy with an int32 class index per example (the label has no
    cotangent), mean over the batch (``optax.softmax_cross_entropy_with_integer_labels``).

    Args:
        reduction: how the per-example losses are combined: ``"mean"`` (the default) over the
            batch, ``"sum"``, or ``"none"`` (the per-example losses, a batched scalar).

    Labels must lie in ``[0, classes)``: a learner's step checks NumPy labels on the host, and
    the compiled JAX step gives a NaN loss for labels on a device that do not (see
    :meth:`~paralens.Learner.compile`).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a logits type of shape ``(classes,)``
        it maps the logits to the loss, with one parameter ``softmax_cross_entropy``: a batched
        ``int32`` scalar, the class index in ``[0, classes)`` of each example. Typing it at
        logits of another rank raises ``TypeError``.

    Raises:
        ValueError: if ``reduction`` is not ``"mean"``, ``"sum"`` or ``"none"``.
    """
    def per_example(logits, label):
        n, dtype = logits.shape[-1], logits.type.dtype
        onehot = W.equal(W.broadcast_to(W.cast(label, dtype), (n,), ()), W.constant(list(range(n)), (n,), dtype))
        return W.logsumexp(logits) - W.sum(onehot * logits)

    def label_type(t):
        if t.ndim != 1:
            raise TypeError(f"integer-label cross-entropy takes logits of shape (classes,), got {t}")
        return ArrayType((), "int32", batched=True)
    return _loss("softmax_cross_entropy", per_example, label_type, reduction)


def sigmoid_binary_cross_entropy(*, reduction: str = "mean") -> Poly:
    """``-label * log(sigmoid(logit)) - (1 - label) * log(1 - sigmoid(logit))``, summed over a
    example's outputs, mean over the batch; written with softplus so any logit is finite
    (``optax.sigmoid_binary_cross_entropy``, elementwise there).

    Args:
        reduction: how the per-example losses are combined: ``"mean"`` (the default) over the
            batch, ``"sum"``, or ``"none"`` (the per-example losses, a batched scalar).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a logits type ``t`` it maps the logits
        to the loss, with one parameter ``sigmoid_binary_cross_entropy``: the labels (each in
        ``[0, 1]``), of the logits' type.

    Raises:
        ValueError: if ``reduction`` is not ``"mean"``, ``"sum"`` or ``"none"``.
    """
    def per_example(logits, label):
        return W.sum(label * W.softplus(-logits) + (1.0 - label) * W.softplus(logits))
    return _loss("sigmoid_binary_cross_entropy", per_example, reduction=reduction)


def huber(delta=1.0, *, reduction: str = "mean") -> Poly:
    """Huber loss: quadratic for errors up to ``delta``, linear beyond, summed over an
    example's outputs, mean over the batch (``optax.huber_loss``, elementwise there).
    ``delta`` is a positive number or a :func:`~paralens.hyperparameter`.

    Args:
        delta: where the loss turns from quadratic to linear: a finite number ``> 0``, or a
            :func:`~paralens.hyperparameter` (then a second parameter wire, ``huber.delta``).
        reduction: how the per-example losses are combined: ``"mean"`` (the default) over the
            batch, ``"sum"``, or ``"none"`` (the per-example losses, a batched scalar).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a prediction type ``t`` it maps the
        prediction to the loss, with the parameter ``huber`` (the label, of the prediction's
        type) and, for a hyperparameter ``delta``, ``huber.delta``.

    Raises:
        TypeError: if ``delta`` is neither a number nor a hyperparameter.
        ValueError: if ``delta`` is not finite or not ``> 0``, or ``reduction`` is not
            ``"mean"``, ``"sum"`` or ``"none"``.
    """
    if not isinstance(delta, Hyperparameter):
        delta = real(delta, "huber: delta", 0, open_low=True)
    def per_example(pred, label, delta):
        err = pred - label
        abs_err = W.where(W.greater(err, 0.0), err, -err)
        quadratic = W.minimum(abs_err, W.zeros_like(abs_err) + delta)
        return W.sum(0.5 * quadratic * quadratic + delta * (abs_err - quadratic))
    return _loss("huber", per_example, reduction=reduction, delta=delta)
