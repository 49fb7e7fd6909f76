"""Optimizers as reparametrisation lenses of the parameter wire (MATH.md 4.4, 7).

An optimizer is a lens ``(S x P, S x P') -> (P, P')``: *get* hands the model
the parameter ``p``; *put* takes the state, the parameters and their
cotangents and returns the new state and parameters. As in optax, a big
optimizer is a :func:`chain` of small transforms, each itself a lens on the
update wire, each testable alone:

    adam(lr) = chain(scale_by_adam(), scale_by_learning_rate(lr))
    put((s, p), g) = (s', p + u)   where (u, s') = chain.update(g, s, p)

A transform's ``update`` emits primitive boxes into the training step's
builder: the optimizer is part of the one update term, not a Python loop.
Hyperparameters (learning rate, betas, eps, ...) are input wires of that term,
so changing them between calls does not recompile.

>>> import paralens as pl
>>> opt = pl.optim.adam(1e-3)
>>> sorted(opt.hyper)
['b1', 'b2', 'eps', 'eps_root', 'learning_rate']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import prims as P
from .terms import Builder
from .types import ArrayType

__all__ = ["Transform", "chain", "scale_by_learning_rate", "trace", "scale_by_adam", "sgd", "adam",
           "StateSpec"]

SCALAR = ArrayType((), "float32", batched=False)
COUNT = ArrayType((), "int32", batched=False)


@dataclass(frozen=True)
class StateSpec:
    """One state leaf: its type and initial value (a number, or ``"params"`` for a copy of them)."""

    type: ArrayType
    init: float | str = 0.0


@dataclass(frozen=True)
class Transform:
    """A gradient transformation as a lens on the update wire.

    ``hyper``: runtime hyperparameters and their defaults. ``state(ptypes)``:
    the state leaves, keyed by flat names. ``update(b, h, s, params, updates)``
    emits the transformation and returns ``(new_state, new_updates)``; all
    arguments are dicts of wires (``params`` and ``updates`` keyed by parameter
    name, ``h`` and ``s`` by this transform's own keys).
    """

    hyper: dict = field(default_factory=dict)
    state_fn: Callable[[dict], dict] = field(default=lambda ptypes: {})
    update_fn: Callable | None = None
    name: str = "transform"

    def state(self, ptypes: dict[str, ArrayType]) -> dict[str, StateSpec]:
        return self.state_fn(ptypes)

    def update(self, b: Builder, h: dict, s: dict, params: dict, updates: dict):
        return self.update_fn(b, h, s, params, updates)

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.hyper.items())})"


def chain(*transforms: Transform) -> Transform:
    """Run transforms in order; each gets the previous one's updates and the same params.

    State keys are prefixed by position (``"0/mu/dense.W"``); hyperparameter
    names stay as they are unless two transforms share one, then they are
    prefixed too (``"0/eps"``).
    """
    counts: dict[str, int] = {}
    for t in transforms:
        for k in t.hyper:
            counts[k] = counts.get(k, 0) + 1
    hnames = [{k: (k if counts[k] == 1 else f"{i}/{k}") for k in t.hyper} for i, t in enumerate(transforms)]
    hyper = {hnames[i][k]: v for i, t in enumerate(transforms) for k, v in t.hyper.items()}

    def state_fn(ptypes):
        return {f"{i}/{k}": v for i, t in enumerate(transforms) for k, v in t.state(ptypes).items()}

    def update_fn(b, h, s, params, updates):
        new_s = {}
        for i, t in enumerate(transforms):
            keys = t.state({n: b.type_of(w) for n, w in params.items()})
            si, ui = t.update(b, {k: h[hnames[i][k]] for k in t.hyper},
                              {k: s[f"{i}/{k}"] for k in keys}, params, updates)
            new_s.update({f"{i}/{k}": w for k, w in si.items()})
            updates = ui
        return new_s, updates

    return Transform(hyper, state_fn, update_fn, " >> ".join(t.name for t in transforms))


def _leafwise(fn):
    """An update applied to every parameter independently."""
    def update_fn(b, h, s, params, updates):
        return s, {n: fn(b, h, g) for n, g in updates.items()}
    return update_fn


def _per_param(keys, ptypes, init=0.0):
    return {f"{k}/{n}": StateSpec(t, init) for k in keys for n, t in ptypes.items()}


def scale_by_learning_rate(learning_rate: float = 1e-3) -> Transform:
    """``u = -learning_rate * g`` (the sign and step live here, as in optax)."""
    return Transform({"learning_rate": float(learning_rate)},
                     update_fn=_leafwise(lambda b, h, g: P.neg(b, P.mul(b, h["learning_rate"], g))),
                     name="scale_by_learning_rate")


def trace(decay: float = 0.9, nesterov: bool = False) -> Transform:
    """Momentum: ``m = g + decay * m``; ``u = m`` (or ``g + decay * m`` with Nesterov)."""
    def update_fn(b, h, s, params, updates):
        new_s, out = {}, {}
        for n, g in updates.items():
            m = P.add(b, g, P.mul(b, h["decay"], s[f"trace/{n}"]))
            new_s[f"trace/{n}"] = m
            out[n] = P.add(b, g, P.mul(b, h["decay"], m)) if nesterov else m
        return new_s, out
    return Transform({"decay": float(decay)}, lambda ptypes: _per_param(["trace"], ptypes), update_fn,
                     "trace")


def _increment(b: Builder, count: int) -> int:
    return P.add(b, count, P.emit_const(b, 1, (), "int32"))


def _bias_correction(b: Builder, m: int, decay: int, t: int) -> int:
    """``m / (1 - decay**t)`` with ``t`` the incremented count as a float."""
    return P.div(b, m, P.shift(b, P.neg(b, b.emit1(P.POWER, decay, t)), 1.0))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0) -> Transform:
    """Adam's preconditioner (Kingma & Ba, Algorithm 1, as ``optax.scale_by_adam``)."""
    def state_fn(ptypes):
        return {"count": StateSpec(COUNT, 0), **_per_param(["mu", "nu"], ptypes)}

    def update_fn(b, h, s, params, updates):
        count = _increment(b, s["count"])
        t = b.emit1(P.CAST, count, dtype="float32")
        new_s, out = {"count": count}, {}
        for n, g in updates.items():
            one_minus_b1 = P.shift(b, P.neg(b, h["b1"]), 1.0)
            one_minus_b2 = P.shift(b, P.neg(b, h["b2"]), 1.0)
            mu = P.add(b, P.mul(b, one_minus_b1, g), P.mul(b, h["b1"], s[f"mu/{n}"]))
            nu = P.add(b, P.mul(b, one_minus_b2, P.mul(b, g, g)), P.mul(b, h["b2"], s[f"nu/{n}"]))
            mu_hat = _bias_correction(b, mu, h["b1"], t)
            nu_hat = _bias_correction(b, nu, h["b2"], t)
            denom = P.add(b, b.emit1(P.SQRT, P.add(b, nu_hat, h["eps_root"])), h["eps"])
            new_s[f"mu/{n}"], new_s[f"nu/{n}"] = mu, nu
            out[n] = P.div(b, mu_hat, denom)
        return new_s, out
    return Transform({"b1": float(b1), "b2": float(b2), "eps": float(eps), "eps_root": float(eps_root)},
                     state_fn, update_fn, "scale_by_adam")


def sgd(learning_rate: float = 1e-2, momentum: float | None = None, nesterov: bool = False) -> Transform:
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as ``optax.sgd``."""
    steps = ([trace(momentum, nesterov)] if momentum is not None else []) + [scale_by_learning_rate(learning_rate)]
    return chain(*steps)


def adam(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0) -> Transform:
    """Adam, as ``optax.adam``: ``chain(scale_by_adam(...), scale_by_learning_rate(lr))``."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))
