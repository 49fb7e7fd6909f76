"""Optimizers as reparametrisation lenses of the parameter wire (MATH.md 4.4).

An optimizer is a lens ``(S x P, S x P') -> (P, P')``: its *get* gives the
model the parameter ``p``; its *put* takes the state, the parameter and the
parameter's cotangent ``g`` and returns the new state and parameter. Here
*put* is written as a term: :meth:`Optimizer.put` emits primitive boxes into
the builder of a training step, once per parameter.

Hyperparameters (the learning rate, ...) are input wires of the step, not
constants: changing them between calls does not recompile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import prims as P
from .terms import Builder
from .types import ArrayType

__all__ = ["Optimizer", "sgd"]


@dataclass(frozen=True)
class Optimizer:
    """Base class: ``hyper`` holds the default values of the runtime hyperparameters."""

    hyper: dict = field(default_factory=dict)

    def state(self, p: ArrayType) -> dict[str, tuple[ArrayType, float]]:
        """Per-parameter state: ``{key: (type, initial value)}``."""
        return {}

    def put(self, b: Builder, hyper: dict[str, int], state: dict[str, int], p: int, g: int):
        """Emit the update; return ``(new_state, new_p)`` wires."""
        raise NotImplementedError


@dataclass(frozen=True)
class _SGD(Optimizer):
    def put(self, b, hyper, state, p, g):
        return {}, P.sub(b, p, P.mul(b, hyper["learning_rate"], g))


def sgd(learning_rate: float = 1e-2) -> Optimizer:
    """Plain gradient descent ``p <- p - learning_rate * g`` (``optax.sgd`` without momentum)."""
    return _SGD({"learning_rate": float(learning_rate)})
