"""The SymPy backend: symbolic arrays, for deriving and teaching formulas.

Arrays are NumPy object arrays of SymPy expressions while a term runs; inputs
may be SymPy arrays, matrices, expressions or numbers, and every array output
is a ``sympy.Array`` (a scalar output is an expression).

>>> import sympy as sp, paralens as pl
>>> from paralens.backends import sympy as psym
>>> x, w = sp.symbols("x w")
>>> @pl.para
... def f(x: pl.Array[()], w: pl.Param[()]):
...     return pl.tanh(w * x)
>>> dparams, dx = psym.compile(pl.R(f))({"f.w": w}, sp.Array([x]), sp.Array([1]))
>>> sp.simplify(dparams["f.w"] - x * (1 - sp.tanh(w * x) ** 2))
0
"""

from __future__ import annotations

import functools
import types

import numpy as np
import sympy as sp

from paralens.terms import Term

from ._interpret import Interpreter, make_rules, python_loop

__all__ = ["compile"]


def _vec(f, n=1):
    uf = np.frompyfunc(f, n, 1)
    return lambda *xs: np.asarray(uf(*xs), dtype=object)


def _num(c):
    return sp.nsimplify(c) if float(c) == float(c) else sp.Float(c)


def _full(shape, value, dtype):
    return np.full(shape, sp.sympify(value), dtype=object)


def _constant(value, shape, dtype):
    return np.asarray([_num(v) for v in value], dtype=object).reshape(shape)


def _max(x, axes):
    for a in sorted(axes, reverse=True):
        x = np.apply_along_axis(lambda v: sp.Max(*v), a, x)
    return np.asarray(x, dtype=object)


def _exp_sum(x, axis):
    return np.sum(_vec(sp.exp)(x), axis=axis, keepdims=True)


def _add_at(acc, idx, v):
    acc[idx] = acc[idx] + v
    return acc


ops = types.SimpleNamespace(
    exp=_vec(sp.exp), log=_vec(sp.log), sqrt=_vec(sp.sqrt), tanh=_vec(sp.tanh),
    sigmoid=_vec(lambda x: 1 / (1 + sp.exp(-x))),
    softplus=_vec(lambda x: sp.log(1 + sp.exp(x))),
    relu=_vec(lambda x: sp.Max(x, 0)),
    step=_vec(lambda x: sp.Piecewise((1, x > 0), (0, True))),
    stop_gradient=lambda x: x,
    cos=_vec(sp.cos), sin=_vec(sp.sin), floor=_vec(sp.floor),
    power=_vec(lambda x, e: x ** e, 2),
    cast=lambda x, dtype: x,
    pow=lambda x, p: _vec(lambda v: v ** _num(p))(x),
    const=_num,
    greater=_vec(lambda x, y: sp.Piecewise((1, x > y), (0, True)), 2),
    equal=_vec(lambda x, y: sp.Piecewise((1, sp.Eq(x, y)), (0, True)), 2),
    where=_vec(lambda c, x, y: sp.Piecewise((x, sp.Ne(c, 0)), (y, True)), 3),
    full=_full,
    constant=_constant,
    einsum=lambda spec, a, b: np.asarray(np.einsum(spec, a, b), dtype=object),
    pad=lambda x, widths: np.pad(x, widths, constant_values=sp.Integer(0)),
    add_at=_add_at,
    max=_max,
    softmax=lambda x, axis: _vec(sp.exp)(x) / _exp_sum(x, axis),
    logsumexp=lambda x, axis: np.squeeze(_vec(sp.log)(_exp_sum(x, axis)), axis),
)


def _convert(v):
    if isinstance(v, (sp.NDimArray, sp.MatrixBase)):
        v = v.tolist()
    arr = np.asarray(v, dtype=object)
    return _vec(sp.sympify)(arr) if arr.size else arr


def _finish(v):
    v = np.asarray(v, dtype=object)
    return v.item() if v.ndim == 0 else sp.Array(v.tolist(), v.shape)


_interp = Interpreter("sympy", np, make_rules(np, ops), convert=_convert, finish=_finish,
                      loop=functools.partial(python_loop, dtype=object))


def compile(term: Term):  # noqa: A001 - the public contract
    """A function on SymPy values for ``term`` (same calling convention as the NumPy backend)."""
    return _interp.compile(term)


