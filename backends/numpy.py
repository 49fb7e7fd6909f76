"""The NumPy backend: the eager reference semantics of every primitive.

>>> import numpy as np, paralens as pl
>>> from paralens.backends import numpy as pnp
>>> f = pl.nn.dense(2, 1) >> pl.nn.relu()
>>> fn = pnp.compile(f)
>>> fn({"dense.W": np.array([[1.0], [-1.0]]), "dense.b": np.zeros(1)}, np.array([[3.0, 1.0]])).tolist()
[[2.0]]
"""

from __future__ import annotations

import numpy as np

from ._interpret import ArrayBackend, ArrayLib

__all__ = ["backend", "compile", "init", "RULES"]


def _sigmoid(x):
    """``1 / (1 + e**-x)`` from ``e**-|x|`` in (0, 1]: no overflow, and no cancellation for x < 0
    (``(1 + tanh(x / 2)) / 2`` is 0 in float32 from x = -17, where ``log(sigmoid(x))`` is still -17)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def _mask(cond, *like):
    return cond.astype(np.result_type(*like, np.float32))


def _softmax(ins, outs, x, *, axis):
    axis += ins[0].batched
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _logsumexp(ins, outs, x, *, axis):
    axis += ins[0].batched
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis)


def _normal(ins, outs, key, *, shape, dtype):
    """The draw is NumPy's ``default_rng(key).standard_normal(shape)``; the next key comes after it."""
    rng = np.random.default_rng(np.asarray(key, np.uint64))
    sample = rng.standard_normal(shape).astype(dtype)
    return [rng.integers(0, 2 ** 32, 2, dtype=np.uint32), sample]


def _add_at(acc, idx, v):
    acc[idx] += v
    return acc


#: One entry per primitive the shared rules do not cover: elementwise ones are functions of arrays.
RULES = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0, x), "relu": lambda x: np.maximum(x, 0), "step": lambda x: _mask(x > 0, x),
    "cos": np.cos, "sin": np.sin, "floor": np.floor, "stop_gradient": lambda x: x,
    "scale": lambda x, *, c: x * c, "shift": lambda x, *, c: x + c, "pow": lambda x, *, p: np.power(x, p),
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "power": np.power,
    "greater": lambda x, y: _mask(np.greater(x, y), x, y), "equal": lambda x, y: _mask(np.equal(x, y), x, y),
    "where": lambda c, x, y: np.where(c != 0, x, y), "cast": lambda x, *, dtype: np.asarray(x).astype(dtype),
    "reduce_max": lambda ins, outs, x, *, axes: np.max(x, axis=tuple(a + ins[0].batched for a in axes)) if axes else x,
    "softmax": _softmax,
    "logsumexp": _logsumexp,
    "normal": _normal,
}

LIB = ArrayLib(
    xp=np,
    asarray=lambda v, dtype: np.array(v, dtype=dtype),  # a copy: a state leaf never aliases a parameter
    full=lambda shape, value, dtype: np.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: np.asarray(value, dtype=dtype).reshape(shape),
    einsum=lambda spec, a, b: np.einsum(spec, a, b, optimize=True),
    pad=np.pad,
    add_at=_add_at,
)


class NumpyBackend(ArrayBackend):
    """Eager NumPy: the reference every other backend is tested against."""

    def owns(self, value) -> bool:
        return isinstance(value, (np.ndarray, np.generic))


backend = NumpyBackend("numpy", LIB, RULES, convert=np.asarray)


def compile(term):  # noqa: A001 - the public contract
    """An eager NumPy function for ``term``: ``fn(params, *args)``.

    For a Para term: ``fn(params, x) -> y``; for ``pl.R(f)``:
    ``fn(params, x, dy) -> (dparams, dx)``; for ``pl.D(f)``:
    ``fn(params, x, dparams, dx) -> dy``.
    """
    return backend.compile(term)


def init(term, seed: int = 0) -> dict:
    """Initial parameters ``{name: array}`` (see :meth:`ArrayBackend.init`)."""
    return backend.init(term, seed)
