"""The NumPy backend: the eager reference semantics of every primitive.

>>> import numpy as np, paralens as pl
>>> from paralens.backends import numpy as pnp
>>> f = pl.nn.dense(2, 1) >> pl.nn.relu()
>>> fn = pnp.compile(f)
>>> fn({"dense.W": np.array([[1.0], [-1.0]]), "dense.b": np.zeros(1)}, np.array([[3.0, 1.0]])).tolist()
[[2.0]]
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable

import numpy as np

from ._codegen import staged
from ._interpret import ArrayBackend, ArrayLib

__all__ = ["backend", "compile", "init", "RULES"]


def _sigmoid(x):
    """``1 / (1 + e**-x)`` from ``e**-|x|`` in (0, 1]: no overflow, and no cancellation for x < 0
    (``(1 + tanh(x / 2)) / 2`` is 0 in float32 from x = -17, where ``log(sigmoid(x))`` is still -17)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def _zero(t):
    """0 as an array of the wire's dtype: the same numbers as a Python 0 in a ufunc, without its
    conversion on every call."""
    return np.zeros((), t.dtype)


def _comparison(compare: Callable, *, with_zero: bool = False) -> Callable:
    """The elementwise rule of a comparison giving a float mask (1.0 where true), of the dtype
    NumPy's promotion gives its operands and float32, fixed from the wires' types;
    ``with_zero``: ``compare(x, 0)``."""
    @staged
    def mask(ins, outs):
        dtype = np.dtype(np.float32)
        for t in ins:  # promote_types is result_type without its parsing
            dtype = np.promote_types(t.dtype, dtype)
        if with_zero:
            zero = _zero(ins[0])
            return lambda x: compare(x, zero).astype(dtype)
        return lambda x, y: compare(x, y).astype(dtype)
    return mask


@staged
def _relu(ins, outs):
    zero = _zero(ins[0])
    return lambda x: np.maximum(x, zero)


@staged
def _softmax(ins, outs, *, axis):
    axis += ins[0].batched

    def softmax(x):  # the ufuncs' reduce: np.max and np.sum add a layer of dispatch
        e = np.exp(x - np.maximum.reduce(x, axis, None, None, True))
        return e / np.add.reduce(e, axis, None, None, True)
    return softmax


@staged
def _logsumexp(ins, outs, *, axis):
    axis += ins[0].batched

    drop = (slice(None),) * axis + (0,)  # m without its kept axis
    big = np.finfo(ins[0].dtype).max
    lo, hi = np.array(-big, ins[0].dtype), np.array(big, ins[0].dtype)

    def logsumexp(x):
        # the max held to finite values (from below by the reduction's initial value): an infinite
        # max gives the same infinite result as the max taken as 0 would, and NaN stays NaN
        m = np.minimum(np.maximum.reduce(x, axis, None, None, True, lo), hi)
        return np.log(np.add.reduce(np.exp(x - m), axis)) + m[drop]
    return logsumexp


@staged
def _astype_rule(ins, outs, *, dtype):
    return operator.methodcaller("astype", np.dtype(dtype))  # x.astype(dtype), called from C


def _normal(ins, outs, key, *, shape, dtype):
    """The draw is NumPy's ``default_rng(key).standard_normal(shape)``; the next key comes after it."""
    rng = np.random.default_rng(np.asarray(key, np.uint64))
    sample = rng.standard_normal(shape).astype(dtype)
    return [rng.integers(0, 2 ** 32, 2, dtype=np.uint32), sample]


def _contraction(spec: str, shape_a: tuple, shape_b: tuple):
    """``np.einsum(spec, a, b)`` planned once for these shapes (``None``: the batch size), as one
    ``np.matmul``: each operand is transposed to (batch, kept, contracted) axes and reshaped
    to three (or two) axes, as ``np.einsum(optimize=True)`` does on every call. Indices summed
    out of one operand alone, or repeated in one, are left to ``np.einsum``."""
    (ta, tb), to = spec.split("->")[0].split(","), spec.split("->")[1]
    if len(set(ta)) < len(ta) or len(set(tb)) < len(tb) or not set(ta) ^ set(tb) <= set(to):
        return functools.partial(np.einsum, spec, optimize=True)
    size = {**dict(zip(ta, shape_a)), **dict(zip(tb, shape_b))}
    bat = [i for i in ta if i in tb and i in to]
    con = [i for i in ta if i in tb and i not in to]
    a_keep, b_keep = [i for i in ta if i not in tb], [i for i in tb if i not in ta]

    def fused(*groups):  # the reshape that fuses each group of indices into one axis
        if all(len(g) == 1 for g in groups):
            return None
        sizes = [math.prod(size[i] for i in g) if all(size[i] is not None for i in g) else -1 for g in groups]
        return tuple(sizes)

    def perm(term, order):
        p = tuple(term.index(i) for i in order)
        return None if p == tuple(range(len(p))) else p

    if not con:  # no contraction: a broadcast product, axes in the output's order
        pa, pb = perm(ta, [i for i in to if i in ta]), perm(tb, [i for i in to if i in tb])
        ia = tuple(slice(None) if i in ta else None for i in to)
        ib = tuple(slice(None) if i in tb else None for i in to)

        def product(a, b):
            a = a if pa is None else a.transpose(pa)
            b = b if pb is None else b.transpose(pb)
            return np.multiply(a[ia], b[ib])
        return product
    groups_a, groups_b, groups_o = ((bat, a_keep, con), (bat, con, b_keep), (bat, a_keep, b_keep)) if bat else \
        ((a_keep, con), (con, b_keep), (a_keep, b_keep))
    pa, pb = perm(ta, bat + a_keep + con), perm(tb, bat + con + b_keep)
    sa, sb = fused(*groups_a), fused(*groups_b)
    produced = bat + a_keep + b_keep
    so = None if all(len(g) == 1 for g in groups_o) else tuple(-1 if size[i] is None else size[i] for i in produced)
    po = perm(produced, list(to))
    if pa is None and pb is None and sa is None and sb is None and so is None and po is None:
        return np.matmul

    def matmul(a, b):
        if pa is not None:
            a = a.transpose(pa)
        if sa is not None:
            a = a.reshape(sa)
        if pb is not None:
            b = b.transpose(pb)
        if sb is not None:
            b = b.reshape(sb)
        ab = np.matmul(a, b)
        if so is not None:
            ab = ab.reshape(so)
        return ab if po is None else ab.transpose(po)
    return matmul


def _broadcast_to(x, shape):
    """``np.broadcast_to``, written out when small: the view costs more to make than the copy."""
    if math.prod(shape) > 4096:
        return np.broadcast_to(x, shape)
    out = np.empty(shape, x.dtype)
    out[...] = x
    return out


def _add_at(acc, idx, v):
    if any(isinstance(i, np.ndarray) for i in (idx if isinstance(idx, tuple) else (idx,))):
        np.add.at(acc, idx, v)  # repeated indices add up (slower than +=, so only for index arrays)
    else:
        acc[idx] += v
    return acc


def _uniform(ins, outs, key, like):
    """The draw is NumPy's ``default_rng(key).random(like.shape)``; the next key comes after it."""
    rng = np.random.default_rng(np.asarray(key, np.uint64))
    sample = rng.random(np.shape(like)).astype(outs[1].dtype)
    return [rng.integers(0, 2 ** 32, 2, dtype=np.uint32), sample]


def _power(x, e):
    """``x ** e``; below float64 it is computed in float64 and rounded once, as XLA's ``pow``
    nearly always rounds (NumPy's float32 ``pow`` is a last-place unit off XLA's on a fifth of
    the inputs; this way, on 10 in 20,000), so the two backends agree on optax's float32 decays."""
    dtype = np.result_type(x, e)
    if dtype.kind != "f" or dtype.itemsize >= 8:
        return np.power(x, e)
    e = np.asarray(e, dtype).astype(np.float64)  # a Python exponent as the array's dtype rounds it
    return np.power(np.asarray(x, np.float64), e).astype(dtype)


#: One entry per primitive the shared rules do not cover: elementwise ones are functions of arrays, or
#: made with ``staged`` where the function depends on the wires' types (a mask's dtype, a typed zero).
RULES = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0, x), "relu": _relu, "step": _comparison(np.greater, with_zero=True),
    "cos": np.cos, "sin": np.sin, "floor": np.floor, "stop_gradient": lambda x: x, "real": np.real,
    "conj": np.conjugate,
    "scale": lambda x, *, c: x * c, "shift": lambda x, *, c: x + c, "pow": lambda x, *, p: _power(x, p),
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "power": _power,
    "greater": _comparison(np.greater), "equal": _comparison(np.equal),
    "where": lambda c, x, y: np.where(c != 0, x, y), "cast": _astype_rule,
    "reduce_max": lambda ins, outs, x, *, axes: np.max(x, axis=tuple(a + ins[0].batched for a in axes)) if axes else x,
    "softmax": _softmax,
    "logsumexp": _logsumexp,
    "normal": _normal,
    "uniform": _uniform,
}

def _library_function(prim):
    """NumPy's ufunc named as the elementwise primitive (``numpy.tan``), if it has one of its arity."""
    fn = getattr(np, prim.name, None)
    return fn if isinstance(fn, np.ufunc) and fn.nin == prim.arity else None


LIB = ArrayLib(
    xp=np,
    asarray=np.array,  # np.array(value, dtype), a copy: a state leaf never aliases a parameter
    full=lambda shape, value, dtype: np.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: np.asarray(value, dtype=dtype).reshape(shape),
    einsum=lambda spec, a, b: np.einsum(spec, a, b, optimize=True),
    contraction=_contraction,
    broadcast_to=_broadcast_to,
    sum=np.add.reduce,  # what x.sum(axis=...) calls, without the method's two layers of Python
    add_at=_add_at,
)


class NumpyBackend(ArrayBackend):
    """Eager NumPy: the reference every other backend is tested against. A compiled term is
    straight-line Python (``compile(term).source``): one call per box, nothing looked up."""

    generates_code = True
    native = np.ndarray
    native_scalar = staticmethod(lambda dtype: np.dtype(dtype).type)  # a 0-d result: np.float32(...)

    def owns(self, value) -> bool:
        return isinstance(value, (np.ndarray, np.generic))


backend = NumpyBackend("numpy", LIB, RULES, convert=np.asarray, library=_library_function)


def compile(term):  # noqa: A001 - the public contract
    """An eager NumPy function for ``term``: ``fn(params, *args)``.

    For a Para term: ``fn(params, x) -> y``; for ``pl.R(f)``:
    ``fn(params, x, dy) -> (dparams, dx)``; for ``pl.D(f)``:
    ``fn(params, x, dparams, dx) -> dy``.

    Args:
        term: the term to compile, or a lens, optimizer or learner (its term is taken).

    Returns:
        ``fn(params, *args)``: ``params`` is a dict of arrays by parameter name (or the one
        parameter's array bare), and the arguments are cast to the term's types and checked
        against its shapes. The function is straight-line Python with one line per box; its
        text is ``fn.source``.

    Raises:
        TypeError: ``term`` is not a term, lens, optimizer or learner (or has no type yet), or it
            does arithmetic on bool wires (Z2 arithmetic: run it with the ``z2`` backend).
    """
    return backend.compile(term)


def init(term, seed: int = 0) -> dict:
    """Initial parameters ``{name: array}`` (see :meth:`~paralens.backends._interpret.ArrayBackend.init`).

    Each value is drawn from the parameter's initialiser with a generator seeded by ``seed`` and
    the parameter's name alone, so adding a layer leaves the others' initial values unchanged.

    Args:
        term: the term, or a lens, optimizer or learner, whose parameters to initialise.
        seed: the random seed.

    Returns:
        A dict from each parameter's full name to a NumPy array of its type; labels (batched
        parameters) are data, and are left out.
    """
    return backend.init(term, seed)
