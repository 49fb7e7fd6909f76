"""Loss maps as lenses parametrised by the label (MATH.md 4.1-4.2).

A loss takes the prediction on its input wire and the label on its parameter
wire, and returns one unbatched scalar: the mean over the batch of the
per-example loss. Its reverse derivative gives the cotangents of both, so
``compile(pl.R(loss))(labels, predictions, dloss) -> (dlabels, dpredictions)``.
The label is the loss's only parameter, so a bare array may be passed for it.
"""

from __future__ import annotations

from . import trace as T
from .terms import Builder, Poly, Term
from .types import Ty

__all__ = ["mse"]


def _loss(name: str, per_example) -> Poly:
    def make(ty: Ty) -> Term:
        if len(ty) != 1:
            raise TypeError(f"{name} takes one prediction wire, got {ty}")
        (t,) = ty
        b = Builder()
        label = T.Wire(b, b.param(name, b.new_layer(name), "", t))  # batched: one label per example
        x = b.input(t)
        out = T._run(b, lambda p: T.batch_mean(per_example(p, label)), [T.Wire(b, x)], name)
        return b.build([x], out, name=f"{name}({t})")
    return Poly(make, name)


def mse() -> Poly:
    """Quadratic loss ``1/2 * sum_i (prediction_i - label_i)**2`` per example, mean over the batch.

    This is the quadratic error of "Backprop as Functor" and "Categorical
    Foundations": its cotangent with respect to the prediction is
    ``prediction - label`` (divided by the batch size).
    """
    return _loss("mse", lambda p, label: 0.5 * T.sum((p - label) ** 2.0))
