"""The JAX backend: the same rules over ``jax.numpy``, traceable by ``jax.jit``,
``jax.grad``, ``jax.vmap`` and ``jax.export``.

>>> import jax, numpy as np, paralens as pl
>>> from paralens.backends import jax as pjax
>>> fn = jax.jit(pjax.compile(pl.nn.dense(2, 1)))
>>> fn({"dense.W": np.ones((2, 1), np.float32), "dense.b": np.zeros(1, np.float32)},
...    np.ones((3, 2), np.float32)).shape
(3, 1)
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np

from paralens.terms import Term
from paralens.types import ArrayType

from . import numpy as _np_backend
from ._interpret import Interpreter, make_rules

__all__ = ["compile", "init", "full", "compile_learner"]


def _mask(cond, like):
    return cond.astype(jnp.result_type(like, jnp.float32))


ops = types.SimpleNamespace(
    exp=jnp.exp, log=jnp.log, sqrt=jnp.sqrt, tanh=jnp.tanh, sigmoid=jax.nn.sigmoid,
    softplus=jax.nn.softplus,
    relu=jax.nn.relu,
    step=lambda x: _mask(x > 0, x),
    stop_gradient=jax.lax.stop_gradient,
    power=jnp.power,
    cast=lambda x, dtype: jnp.asarray(x).astype(dtype),
    pow=lambda x, p: jnp.power(x, p),
    const=lambda c: c,
    greater=lambda x, y: _mask(jnp.greater(x, y), jnp.result_type(x, y)),
    equal=lambda x, y: _mask(jnp.equal(x, y), jnp.result_type(x, y)),
    where=lambda c, x, y: jnp.where(c != 0, x, y),
    full=lambda shape, value, dtype: jnp.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: jnp.asarray(np.asarray(value, dtype=dtype).reshape(shape)),
    einsum=lambda spec, a, b: jnp.einsum(spec, a, b),
    pad=jnp.pad,
    add_at=lambda acc, idx, v: acc.at[idx].add(v),
    max=lambda x, axes: jnp.max(x, axis=axes),
    softmax=lambda x, axis: jax.nn.softmax(x, axis=axis),
    logsumexp=lambda x, axis: jax.nn.logsumexp(x, axis=axis),
)

_interp = Interpreter("jax", jnp, make_rules(jnp, ops), convert=jnp.asarray)


def compile(term: Term):  # noqa: A001 - the public contract
    """A JAX function for ``term`` (same calling convention as the NumPy backend).

    It is not jitted, so it composes with any JAX transformation; wrap it in
    ``jax.jit`` to compile.
    """
    return _interp.compile(term)


def init(term: Term, seed: int = 0) -> dict:
    """The NumPy backend's initial values, as JAX arrays."""
    return {k: jnp.asarray(v) for k, v in _np_backend.init(term, seed).items()}


def full(t: ArrayType, value):
    return jnp.full(t.shape, value, dtype=t.dtype)


def compile_learner(learner, *, donate: bool = True):
    """``step(state, x, y) -> (state, loss)`` as one ``jax.jit`` program, state buffers donated."""
    fn = compile(learner.step_term)

    def step(state, x, y):
        params, opt, loss = fn(state["params"], state["opt"], state["hyper"], x, y)
        return {"params": params, "opt": opt, "hyper": state["hyper"]}, loss
    return jax.jit(step, donate_argnums=(0,) if donate else ())
