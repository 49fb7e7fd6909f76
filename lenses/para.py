"""Para: reparametrisation, weight tying and initialisation of parameter wires.

A term's parameters are wires too (MATH.md 3). Reparametrising replaces a
parameter wire by the output of another term (``r: Q -> P`` gives ``f^r``);
tying feeds one wire to several parameter slots, so by ``R`` of copy the tied
parameter receives the *sum* of their cotangents (MATH.md 3.3).

>>> import paralens as pl
>>> f = pl.nn.dense(3, 3) >> pl.nn.dense(3, 3)
>>> pl.tie(f, ["dense0.W", "dense1.W"]).param_names
('dense0.W', 'dense0.b', 'dense1.b')
"""

from __future__ import annotations

import importlib
from typing import Sequence

from . import prims as P
from .terms import Builder, Term

__all__ = ["reparam", "tie", "bind", "init", "zeros", "ones", "normal", "uniform",
           "glorot_uniform", "glorot_normal", "he_normal", "he_uniform"]


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
            keep[w] = b.param(spec.layer, spec.slot, spec.local, spec.type, spec.init)
    (new,) = b.inline(r, [])
    keep[term.param_wires[i]] = new
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=keep), in_sig=term.in_sig, out_sig=term.out_sig,
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
        env[w] = b.param(spec.layer, spec.slot, spec.local, spec.type, spec.init)
        if k == idx[0]:
            shared = env[w]
    for k in idx[1:]:
        env[term.param_wires[k]] = shared
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig,
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
            env[w] = b.param(spec.layer, spec.slot, spec.local, spec.type, spec.init)
    xs = [b.input(t) for t in term.dom]
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig,
                   name=term.name)


def init(term: Term, seed: int = 0, backend: str = "numpy") -> dict:
    """Draw every parameter with its initialiser: ``{name: array}``.

    Initialisers are syntax (a name and numbers); drawing arrays is semantics,
    so this asks the backend ``paralens.backends.<backend>`` to do it. Each
    parameter's draw depends only on ``seed`` and its name, so adding a layer
    does not change the others' initial values.
    """
    return importlib.import_module(f"paralens.backends.{backend}").init(term, seed)


# Initialiser descriptors: plain tuples, so terms stay hashable and library-free.
def zeros() -> tuple: return ("zeros",)
def ones() -> tuple: return ("ones",)
def normal(stddev: float = 1e-2) -> tuple: return ("normal", float(stddev))
def uniform(low: float = -1e-2, high: float = 1e-2) -> tuple: return ("uniform", float(low), float(high))
def glorot_uniform() -> tuple: return ("glorot_uniform",)
def glorot_normal() -> tuple: return ("glorot_normal",)
def he_normal() -> tuple: return ("he_normal",)
def he_uniform() -> tuple: return ("he_uniform",)
