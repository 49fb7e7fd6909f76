"""The NumPy backend: the eager reference semantics of every primitive.

>>> import numpy as np, paralens as pl
>>> from paralens.backends import numpy as pnp
>>> f = pl.nn.dense(2, 1) >> pl.nn.relu()
>>> fn = pnp.compile(f)
>>> fn({"dense.W": np.array([[1.0], [-1.0]]), "dense.b": np.zeros(1)}, np.array([[3.0, 1.0]])).tolist()
[[2.0]]
"""

from __future__ import annotations

import types
import zlib

import numpy as np

from paralens.terms import Term
from paralens.types import ArrayType

from ._interpret import Interpreter, fans, make_rules

__all__ = ["compile", "init", "full", "compile_learner"]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis)


def _add_at(acc, idx, v):
    acc[idx] += v
    return acc


def _mask(cond, like):
    return cond.astype(np.result_type(like, np.float32))


ops = types.SimpleNamespace(
    exp=np.exp, log=np.log, sqrt=np.sqrt, tanh=np.tanh, sigmoid=_sigmoid,
    softplus=lambda x: np.logaddexp(0, x),
    relu=lambda x: np.maximum(x, 0),
    step=lambda x: _mask(x > 0, x),
    stop_gradient=lambda x: x,
    cos=np.cos, sin=np.sin, floor=np.floor,
    power=np.power,
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
    pow=lambda x, p: np.power(x, p),
    const=lambda c: c,
    greater=lambda x, y: _mask(np.greater(x, y), np.result_type(x, y)),
    equal=lambda x, y: _mask(np.equal(x, y), np.result_type(x, y)),
    where=lambda c, x, y: np.where(c != 0, x, y),
    full=lambda shape, value, dtype: np.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: np.asarray(value, dtype=dtype).reshape(shape),
    einsum=lambda spec, a, b: np.einsum(spec, a, b, optimize=True),
    pad=np.pad,
    add_at=_add_at,
    max=lambda x, axes: np.max(x, axis=axes),
    softmax=_softmax,
    logsumexp=_logsumexp,
)

_interp = Interpreter("numpy", np, make_rules(np, ops), convert=np.asarray)


def compile(term: Term):  # noqa: A001 - the public contract
    """An eager NumPy function for ``term``: ``fn(params, *args)``.

    For a Para term: ``fn(params, x) -> y``; for ``pl.R(f)``:
    ``fn(params, x, dy) -> (dparams, dx)``; for ``pl.D(f)``:
    ``fn(params, x, dparams, dx) -> dy``.
    """
    return _interp.compile(term)


def _sample(spec_init: tuple, t: ArrayType, rng: np.random.Generator) -> np.ndarray:
    kind, *args = spec_init
    fan_in, fan_out = fans(t.shape)
    if kind == "zeros":
        out = np.zeros(t.shape)
    elif kind == "ones":
        out = np.ones(t.shape)
    elif kind == "normal":
        out = rng.normal(0.0, args[0], t.shape)
    elif kind == "uniform":
        out = rng.uniform(args[0], args[1], t.shape)
    elif kind == "glorot_uniform":
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        out = rng.uniform(-lim, lim, t.shape)
    elif kind == "glorot_normal":
        out = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), t.shape)
    elif kind == "he_normal":
        out = rng.normal(0.0, np.sqrt(2.0 / fan_in), t.shape)
    elif kind == "he_uniform":
        lim = np.sqrt(6.0 / fan_in)
        out = rng.uniform(-lim, lim, t.shape)
    else:
        raise ValueError(f"unknown initialiser {spec_init!r}")
    return np.asarray(out, dtype=t.dtype)


def init(term: Term, seed: int = 0) -> dict:
    """Initial parameters ``{name: array}``; each draw depends on ``seed`` and the name only.

    Batched parameter wires (a loss's label) are data, not drawn.
    """
    out = {}
    for name, spec in zip(term.param_names, term.params):
        if spec.type.batched:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        out[name] = _sample(spec.init, spec.type, rng)
    return out


def full(t: ArrayType, value) -> np.ndarray:
    return np.full(t.shape, value, dtype=t.dtype)


def compile_learner(learner, *, scan: bool = False):
    """``step(state, x, y) -> (state, loss)``, eager; with ``scan=True`` it takes
    stacks of batches ``(xs, ys)`` and returns the per-step losses."""
    fn = compile(learner.step_term)

    def step(state, x, y):
        params, opt, loss = fn(state["params"], state["opt"], state["hyper"], x, y)
        return {"params": params, "opt": opt, "hyper": state["hyper"]}, loss

    def many(state, xs, ys):
        losses = []
        for x, y in zip(xs, ys):
            state, loss = step(state, x, y)
            losses.append(loss)
        return state, np.asarray(losses)
    return many if scan else step
