"""Reparametrisation, weight tying, binding and hyperparameters of parameter wires.

A term's parameters are wires too (maths page §3). Reparametrising replaces a
parameter wire by the output of another term (``r: Q -> P`` gives ``f^r``);
tying feeds one wire to several parameter slots, so by ``R`` of copy the tied
parameter receives the *sum* of their cotangents (§3.3). Tying is the
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from . import prims as P
from .init import constant
from .terms import Builder, Term, check_axes
from .types import ArrayType, real
from .wires import Wire

__all__ = ["reparam", "tie", "bind", "hyperparameter", "Hyperparameter", "number", "with_axes"]


def _index(term: Term, name: str) -> int:
    try:
        return term.param_names.index(name)
    except ValueError:
        raise KeyError(f"{term.name} has no parameter {name!r}; it has {list(term.param_names)}") from None


def reparam(term: Term, name: str, r: Term) -> Term:
    """Replace parameter ``name`` of ``term`` by the output of ``r`` (a term with no data
    inputs whose codomain is the parameter's type); ``r``'s parameters take its place.

    Args:
        term: the term to reparametrise.
        name: the parameter to replace, as in ``term.param_names`` (``"dense.W"``).
        r: the reparametrisation ``() -> P``: no inputs, one output of the parameter's type.

    Returns:
        ``term`` with that parameter wire fed by ``r``: the same inputs, outputs, calling
        convention and name; its parameters are ``term``'s others, then ``r``'s.

    Raises:
        KeyError: ``term`` has no parameter ``name``.
        TypeError: ``r`` has inputs, or does not have exactly one output of the parameter's type.

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
    return b.build(xs, b.inline(term, xs, params=keep), in_sig=term.in_sig, out_sig=term.out_sig,
                   arg_names=term.arg_names, name=term.name)


def tie(term: Term, names: Sequence[str]) -> Term:
    """Share one parameter among the slots ``names`` (all of one type); the first name survives.

    Args:
        term: the term whose parameters to tie.
        names: the parameters to share, as in ``term.param_names``; the first is kept.

    Returns:
        ``term`` with the parameter wires of ``names[1:]`` fed by that of ``names[0]`` (same
        inputs, outputs, calling convention and name); its reverse derivative gives the kept
        parameter the sum of their cotangents.

    Raises:
        KeyError: ``term`` has no parameter of one of ``names``.
        TypeError: the parameters ``names`` are not all of one type.
    """
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
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig,
                   arg_names=term.arg_names, name=term.name)


def bind(term: Term, params: dict) -> Term:
    """Fix the named parameters to constant values (arrays or nested lists).

    The result is the same map with those parameter wires replaced by
    constants; its reverse derivative no longer returns their cotangents.

    Args:
        term: the term whose parameters to fix.
        params: ``{parameter name: value}``; each value has the parameter's shape (a nested list
            or any array with a ``tolist()`` method) and is converted to its dtype.

    Returns:
        ``term`` without those parameters (same inputs, outputs, calling convention and name).

    Raises:
        KeyError: ``term`` has no parameter of one of the names.
        ValueError: a value's shape is not its parameter's.
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
    return b.build(xs, b.inline(term, xs, params=env), in_sig=term.in_sig, out_sig=term.out_sig,
                   arg_names=term.arg_names, name=term.name)


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

    Args:
        value: the default value, a finite number.
        dtype: the wire's dtype (``"float32"``); ``None``: the dtype the layer, loss or
            optimizer gives that argument.

    Returns:
        A ``Hyperparameter`` record to pass in place of the number.

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is not finite.

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


def with_axes(term: Term, axes: Mapping[str, Sequence[str | None] | None]) -> Term:
    """``term`` with logical axis names on some of its parameters (as flax's ``with_partitioning``
    names a kernel's axes): a rule table maps them to the axes of a device mesh when the term is
    trained sharded (:mod:`paralens.backends.sharding`). The built-in layers name theirs already
    (``dense``: ``W`` ``("embed", "mlp")``, ``b`` ``("mlp",)``; see :attr:`paralens.Term.param_axes`); this
    names those of your own layers, or renames them. Nothing else changes: the term computes the same.

    Args:
        term: the term.
        axes: ``{parameter name: one logical name (a str) or None per axis}``; ``None`` removes the names.

    Returns:
        The term with those parameters' axes named.

    Raises:
        KeyError: a name is not a parameter of ``term``.
        TypeError: ``term`` is not a term, ``axes`` not a mapping, or an entry not a tuple of names.
        ValueError: an entry does not name each axis of its parameter.

    >>> import paralens as pl
    >>> @pl.para
    ... def layer(x: pl.Array[4], w: pl.Param[4, 8]):
    ...     return pl.tanh(x @ w)
    >>> pl.with_axes(layer, {"layer.w": ("embed", "mlp")}).param_axes
    {'layer.w': ('embed', 'mlp')}
    """
    if not isinstance(term, Term):
        raise TypeError(f"with_axes takes a term, got {type(term).__name__} (type a pl.nn layer with .at(...) first)")
    if not isinstance(axes, Mapping):
        raise TypeError(f"with_axes takes {{parameter name: axes}}, got {type(axes).__name__}")
    index = {name: _index(term, name) for name in axes}
    specs = list(term.params)
    for name, i in index.items():
        specs[i] = replace(specs[i], axes=check_axes(axes[name], specs[i].type, name))
    d = term._flat()
    out = Term(term.dom, term.cod, diagram=replace(d, params=tuple(specs)), in_sig=term.in_sig,
               out_sig=term.out_sig, name=term.name, arg_names=term.arg_names)
    return out
