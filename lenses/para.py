"""Para: reparametrisation, weight tying, initialisers and hyperparameters of parameter wires.

A term's parameters are wires too (MATH.md 3). Reparametrising replaces a
parameter wire by the output of another term (``r: Q -> P`` gives ``f^r``);
tying feeds one wire to several parameter slots, so by ``R`` of copy the tied
parameter receives the *sum* of their cotangents (MATH.md 3.3). Tying is the
only way two layers share a weight: every composition makes fresh instances.

A hyperparameter is a parameter wire that training leaves alone: any numeric
argument of a layer, a loss or an optimizer declared with
:func:`hyperparameter` becomes one, so it can be changed without rebuilding
anything and learned by a bilevel problem.

>>> import paralens as pl
>>> f = pl.nn.dense(3, 3) >> pl.nn.dense(3, 3)
>>> pl.tie(f, ["dense0.W", "dense1.W"]).param_names
('dense0.W', 'dense0.b', 'dense1.b')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from . import prims as P
from .terms import Builder, Term
from .types import ArrayType
from .wires import Wire

__all__ = ["reparam", "tie", "bind", "hyperparameter", "Hyperparameter", "zeros", "ones", "constant", "bits", "normal",
           "uniform", "glorot_uniform", "glorot_normal", "he_normal", "he_uniform"]


def _index(term: Term, name: str) -> int:
    try:
        return term.param_names.index(name)
    except ValueError:
        raise KeyError(f"{term.name} has no parameter {name!r}; it has {list(term.param_names)}") from None


def reparam(term: Term, name: str, r: Term) -> Term:
    """Replace parameter ``name`` of ``term`` by the output of ``r`` (a term with no data
    inputs whose codomain is the parameter's type); ``r``'s parameters take its place.

    >>> import paralens as pl
    >>> @pl.para
    ... def positive(log_s: pl.Param[()]):
    ...     return pl.exp(log_s)
    >>> @pl.para
    ... def scaled(x: pl.Array[2], s: pl.Param[()]):
    ...     return x * s
    >>> pl.reparam(scaled, "scaled.s", positive).param_names
    ('positive.log_s',)
    """
    i = _index(term, name)
    if len(r.dom) or len(r.cod) != 1 or r.cod[0] != term.params[i].type:
        raise TypeError(f"reparam: {r.name} must map () to {term.params[i].type} "
                        f"(the type of {name}), it maps {r.dom} to {r.cod}")
    b = Builder()
    keep = {}
    for k, (spec, w) in enumerate(zip(term.params, term.param_wires)):
        if k != i:
            keep[w] = b.redeclare(spec)
    (new,) = b.inline(r, [])
    keep[term.param_wires[i]] = new
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=keep), in_sig=term.in_sig, out_sig=term.out_sig, arg_names=term.arg_names,
                   name=term.name)


def tie(term: Term, names: Sequence[str]) -> Term:
    """Share one parameter among the slots ``names`` (all of one type); the first name survives."""
    idx = [_index(term, n) for n in names]
    types = {term.params[i].type for i in idx}
    if len(types) != 1:
        raise TypeError(f"tie: parameters {list(names)} have different types {sorted(map(repr, types))}")
    b = Builder()
    env = {}
    shared = None
    for k, (spec, w) in enumerate(zip(term.params, term.param_wires)):
        if k in idx[1:]:
            continue
        env[w] = b.redeclare(spec)
        if k == idx[0]:
            shared = env[w]
    for k in idx[1:]:
        env[term.param_wires[k]] = shared
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig, arg_names=term.arg_names,
                   name=term.name)


def bind(term: Term, params: dict) -> Term:
    """Fix the named parameters to constant values (arrays or nested lists).

    The result is the same map with those parameter wires replaced by
    constants; its reverse derivative no longer returns their cotangents.
    """
    idx = {_index(term, n) for n in params}
    b = Builder()
    env = {}
    names = term.param_names
    for k, (spec, w) in enumerate(zip(term.params, term.param_wires)):
        if k in idx:
            value = params[names[k]]
            shape = tuple(getattr(value, "shape", spec.type.shape))
            if shape != spec.type.shape:
                raise ValueError(f"bind: {names[k]} needs shape {spec.type.shape}, got {shape}")
            env[w] = P.emit_const(b, value, spec.type.shape, spec.type.dtype)
        else:
            env[w] = b.redeclare(spec)
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig, arg_names=term.arg_names,
                   name=term.name)


# Initialiser descriptors: plain tuples, so terms stay hashable and library-free.
def zeros() -> tuple: return ("zeros",)
def ones() -> tuple: return ("ones",)
def constant(value: float) -> tuple: return ("const", real(value, "constant: value"))
def glorot_uniform() -> tuple: return ("glorot_uniform",)
def glorot_normal() -> tuple: return ("glorot_normal",)
def he_normal() -> tuple: return ("he_normal",)
def he_uniform() -> tuple: return ("he_uniform",)


def bits(p: float = 0.5) -> tuple:
    """Random bits, each set with probability ``p`` in [0, 1]."""
    return ("bits", real(p, "bits: p", 0, 1))


def normal(stddev: float = 1e-2) -> tuple:
    """Normal numbers of mean 0 and standard deviation ``stddev >= 0``."""
    return ("normal", real(stddev, "normal: stddev", 0))


def uniform(low: float = -1e-2, high: float = 1e-2) -> tuple:
    """Uniform numbers in ``[low, high)``, ``low <= high``."""
    low, high = real(low, "uniform: low"), real(high, "uniform: high")
    if low > high:
        raise ValueError(f"uniform: low={low!r} is above high={high!r}; expected low <= high")
    return ("uniform", low, high)


_CONSTRUCTORS = (zeros, ones, constant, bits, normal, uniform, glorot_uniform, glorot_normal, he_normal, he_uniform)
#: Each descriptor's kind and its number of arguments, as the constructors above build them.
_INITIALIZERS = {"zeros": 0, "ones": 0, "const": 1, "bits": 1, "normal": 1, "uniform": 2, "glorot_uniform": 0,
                 "glorot_normal": 0, "he_normal": 0, "he_uniform": 0}


def initializer(init, what: str) -> tuple:
    """``init`` if it is an initialiser descriptor (``pl.init.he_normal()``); else an error
    naming ``what`` (the argument), the value and the known initialisers.

    >>> initializer(he_normal(), "init")
    ('he_normal',)
    """
    if isinstance(init, tuple) and init and _INITIALIZERS.get(init[0]) == len(init) - 1:
        return init
    names = [f.__name__ for f in _CONSTRUCTORS]
    name = getattr(init, "__name__", init) if init in _CONSTRUCTORS or init in names else None
    hint = f" (call it: pl.init.{name}())" if name else ""
    raise ValueError(f"{what}={init!r} is not an initialiser{hint}; expected one of "
                     f"{', '.join(f'pl.init.{n}()' for n in names)}")


def real(value, what: str, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False,
         open_high: bool = False) -> float:
    """``value`` as a float if it is a finite number between ``low`` and ``high`` (excluded where
    ``open_low``/``open_high``); else an error naming ``what`` (the argument), the value and
    what was expected.

    >>> real(0.9, "b1", 0, 1, open_high=True)
    0.9
    >>> real(1.0, "b1", 0, 1, open_high=True)
    Traceback (most recent call last):
    ...
    ValueError: b1=1.0 is out of range: expected a number in [0, 1)
    """
    if isinstance(value, (bool, str)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    try:  # a Python or NumPy number, or a 0-d array of any library
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what}={value!r} is not finite; expected a finite number")
    if x < low or x > high or (open_low and x == low) or (open_high and x == high):
        if high == math.inf:
            expected = f"a number {'>' if open_low else '>='} {low:g}"
        else:
            expected = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{what}={value!r} is out of range: expected {expected}")
    return x


@dataclass(frozen=True)
class Hyperparameter:
    """A number declared as a hyperparameter wire; build it with :func:`hyperparameter`."""

    value: float
    dtype: str | None = None

    def wire(self, b: Builder, layer: str, slot: int, local: str, dtype: str) -> Wire:
        """Declare the hyperparameter wire ``layer.local`` (a scalar, ``dtype`` unless given) in ``b``."""
        t = ArrayType((), self.dtype or dtype, batched=False)
        return Wire(b, b.param(layer, slot, local, t, constant(self.value), hyper=True))


def hyperparameter(value: float, dtype: str | None = None) -> Hyperparameter:
    """Declare a numeric argument a hyperparameter: a scalar wire with ``value`` as its default.

    Pass it where a layer, a loss or an optimizer takes a number, or as the
    default of an argument of a ``@pl.para`` function. The wire is a parameter
    of the term that training does not update; a learner keeps it in
    ``state["hyper"]`` and a bilevel problem can learn it.

    >>> import paralens as pl
    >>> pl.losses.huber(delta=pl.hyperparameter(0.5)).at(pl.Array[3]).hyper_names
    ('huber.delta',)
    """
    return Hyperparameter(real(value, "hyperparameter: value"), dtype)


def number(b: Builder, value, layer: str, slot: int, local: str, dtype: str):
    """A numeric argument inside a layer: the number itself, or its wire if it was declared a
    :func:`hyperparameter`."""
    if isinstance(value, Hyperparameter):
        return value.wire(b, layer, slot, local, dtype)
    return real(value, f"{layer}: {local}")
