"""Deep dreaming (maths §4.6): the same learner, with the roles of input and parameter swapped.

A trained model ``(P, f): A -> B`` is read as parametrised by its *input*:
``(A, (a, p) -> f(p, a)): P -> B``. Feeding the trained ``p`` on the former
input wire and reparametrising the ``A`` wire by an optimizer lens gives a
learner whose steps change the input toward a target and leave the
parameters as they are (they are data now).

>>> import numpy as np, paralens as pl
>>> swapped = pl.dream.input_as_param(pl.nn.dense(2, 3))
>>> swapped.param_names, swapped.dom
(('input',), Ty(Array[2, 3, batched=False], Array[3, batched=False]))
"""

from __future__ import annotations

import numbers

from . import backends
from .learner import Learner
from .losses import softmax_cross_entropy_with_integer_labels
from .optim import Transform, adam
from .terms import Builder, Poly, Term

__all__ = ["input_as_param", "dream"]


def input_as_param(model: Term) -> Term:
    """``model`` with its roles swapped: its input is the parameter ``input`` (per example, so
    batched), its parameters are data inputs in their order (maths §4.6).

    Args:
        model: a term with one input wire.

    Returns:
        A term named ``dream(<model's name>)`` with one parameter, ``input``, of the model's input
            type; its inputs are the model's parameters (hyperparameters included), in the model's
            order, and its outputs the model's.

    Raises:
        TypeError: ``model`` has no input wire or more than one.
    """
    if len(model.dom) != 1:
        raise TypeError(f"dreaming needs a model with one input wire, {model.name} takes {model.dom}")
    b = Builder()
    x = b.param("input", 0, "", model.dom[0])
    ps = [b.input(s.type) for s in model.params]
    out = b.inline(model, [x], params=dict(zip(model.param_wires, ps)))
    return b.build(ps, out, name=f"dream({model.name})")


def dream(model: Term, params: dict, x, target, *, optimizer: Transform | None = None,
          loss: Term | Poly | None = None, steps: int = 100, backend: str = "jax"):
    """Optimise the input ``x`` so that ``model`` (with ``params`` fixed) gives ``target``.

    ``target`` is what the loss compares the output with (class indices for the
    default, softmax cross-entropy with integer labels); ``optimizer`` is any
    of :mod:`paralens.optim` (Adam with step 0.05 by default). ``params`` are read,
    never written.

    Args:
        model: a term with one input wire.
        params: the model's parameters, by name.
        x: the inputs to start from, a batch of examples.
        target: one target per example of ``x`` (a class index each, for the default loss).
        optimizer: the optimizer of the input (``adam(0.05)`` by default).
        loss: the loss comparing the output with the target (softmax cross-entropy with integer
            labels by default).
        steps: how many steps to take (0: none).
        backend: the backend that runs the steps.

    Returns:
        ``(dreamed x, losses)``: the optimised inputs and the loss of each step.

    Raises:
        ValueError: ``steps`` is negative, ``x`` and ``target`` are not as many, or a class target
            is outside the model's classes.
        TypeError: ``steps`` is not an int, or ``model`` has more than one input wire.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"dream: steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"dream: steps must be >= 0, got {steps}")
    if _examples(x) != _examples(target):
        raise ValueError(f"dream: x holds {_examples(x)} examples but target {_examples(target)}; give one target "
                         "per example")
    learner = Learner(input_as_param(model), loss or softmax_cross_entropy_with_integer_labels(),
                      optimizer or adam(0.05))
    be = backends.get(backend)
    state = learner.init(backend=backend, params={"input": x})
    fixed = tuple(params[n] for n in model.param_names)
    step = be.compile_step(learner.step_term, classes=learner.classes,
                           **({"donate": False} if backend == "jax" else {}))
    losses = []
    for _ in range(steps):
        state, value = step(state, fixed if len(fixed) != 1 else fixed[0], target)
        losses.append(value)
    return state["params"]["input"], losses


def _examples(v) -> int | None:
    """The number of examples in ``v`` (its leading size), without an array library."""
    shape = getattr(v, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    return len(v) if isinstance(v, (list, tuple)) else None
