"""Compiling a term to straight-line Python: the source of one function, one line per box.

The interpreter (:meth:`ArrayBackend.run`) looks up each box's rule, builds its
keyword arguments and lines up batched operands on every call. All of that is
fixed once the term is: so :func:`straight_line` does it once, and writes a
Python function whose locals are the wires and whose body calls, box by box,
a callable with the box's parameters already bound. The function keeps its
``source`` for reading::

    >>> import paralens as pl
    >>> from paralens.backends import numpy as pnp
    >>> fn = straight_line(pnp.backend, pl.nn.dense(3, 2) >> pl.nn.relu())
    >>> print(fn.source)                         # doctest: +NORMALIZE_WHITESPACE
    def dense_3_2_relu(v1, v2, v0):
        v3 = einsum0(v0, v1)  # einsum batched_out=None spec='i,io->o' [dense]
        v4 = add(v3, v2)  # add [dense]
        v5 = relu(v4)  # relu [relu]
        return [v5]

A rule takes part in two ways. Its plain form ``rule(in_types, out_types,
*arrays, **params)`` is what the interpreter calls. A rule made with
:func:`staged` also has a ``stage(in_types, out_types, **params)`` that returns
the box's callable of arrays alone (answering a one-output box's array bare,
several outputs as a list), and its plain form is defined as that callable
applied: so the generated code and the interpreter compute the same numbers by
construction. Any other rule is bound with its parameters as it is.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import numpy as np

from paralens.terms import DictSig, Term

__all__ = ["staged", "straight_line", "fast_entry", "MISS"]


def staged(stage: Callable) -> Callable:
    """The rule ``rule(ins, outs, *arrays, **params) = stage(ins, outs, **params)(*arrays)``,
    with ``rule.stage = stage``; the interpreter's stages are cached by box."""
    cached = functools.lru_cache(maxsize=4096)(stage)

    def rule(ins, outs, *vals, **params):
        return cached(tuple(ins), tuple(outs), **params)(*vals)
    rule.stage = stage
    rule.__name__ = getattr(stage, "__name__", "rule")
    return rule


def _single(fn: Callable) -> Callable:
    """A one-output box whose rule may answer ``[out]``: the array itself."""
    def call(*vals):
        out = fn(*vals)
        return out[0] if isinstance(out, list) else out
    return call


def _callable(rule: Callable, ins: tuple, outs: tuple, params: dict) -> tuple[Callable, bool]:
    """The box's function of arrays, and whether it is the table's own entry (no parameters bound)."""
    stage = getattr(rule, "stage", None)
    if stage is not None:
        fn = stage(ins, outs, **params)
        return fn, fn is getattr(rule, "fn", None)
    fn = functools.partial(rule, ins, outs, **params)
    return (_single(fn) if len(outs) == 1 else fn), False


def _describe(e, limit: int = 60) -> str:
    params = " ".join(f"{k}={v!r}" for k, v in e.params if not isinstance(v, Term) and not callable(v))
    text = f"{e.prim.name} {params}".strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    group = "/".join(e.group) if e.group else (e.layer[0] if e.layer else "")
    return text + (f" [{group}]" if group else "")


def _identifier(name: str) -> str:
    ident = re.sub(r"\W+", "_", name).strip("_") or "term"
    return ident if not ident[0].isdigit() else "t_" + ident


def straight_line(backend, term: Term) -> Callable[..., list]:
    """``fn(*flat_values) -> flat_outputs`` computing ``term`` as ``backend.run`` does, written
    out as one Python function (``fn.source``). The backend's ``rules``, ``name`` and ``wrap``
    are read once, here; a box without a rule is refused now, not when it runs."""
    namespace: dict[str, Any] = {}
    lines = []
    wires = term.wires

    def bind(obj, name: str) -> str:
        while namespace.get(name, obj) is not obj:
            name = f"{name}_{len(namespace)}"
        namespace[name] = obj
        return name

    wrap = None if backend.wrap is None else bind(backend.wrap, "wrap")
    for k, e in enumerate(term.eqns):
        name = e.prim.name
        try:
            rule = backend.rules[name]
        except KeyError:
            raise NotImplementedError(f"the {backend.name} backend has no rule for {name}") from None
        ins, outs = tuple(wires[w] for w in e.ins), tuple(wires[w] for w in e.outs)
        fn, plain = _callable(rule, ins, outs, dict(e.params))
        if getattr(fn, "constant", False) and wrap is None and not set(e.outs) & set(term.outputs):
            # no inputs and a fixed value: computed once (an output is computed per call, never shared)
            call = bind(fn(), f"{name}{k}")
        else:
            call = f"{bind(fn, name if plain else f'{name}{k}')}({', '.join(f'v{w}' for w in e.ins)})"
            if wrap is not None:
                call = f"{wrap}({call})" if len(e.outs) == 1 else f"[{wrap}(o) for o in {call}]"
        targets = ", ".join(f"v{w}" for w in e.outs)
        lines.append(f"    {targets} = {call}  # {_describe(e)}")
    outs = ", ".join(f"v{w}" for w in term.outputs)
    args = ", ".join(f"v{w}" for w in term.param_wires + term.inputs)
    fname = _identifier(term.name)
    while fname in namespace:  # a term named after one of its boxes (``tanh``) must not shadow it
        fname += "_term"
    source = f"def {fname}({args}):\n" + "\n".join(lines + [f"    return [{outs}]"]) + "\n"
    exec(compile(source, f"<paralens {backend.name}: {term.name}>", "exec"), namespace)  # noqa: S102
    fn = namespace[fname]
    fn.source = source
    return fn



#: what a fast entry answers when the arguments need the general path (which also raises the errors)
MISS = object()


def fast_entry(term: Term, names, types_, body: Callable, *, native: type, cast: Callable, convert: Callable,
               finish: Callable | None, whats) -> Callable:
    """``entry(params, args)``: ``body``'s outputs in ``term``'s calling convention, or :data:`MISS`.

    It takes the common case only: ``params`` a dict, arguments that fit the signature, leaves
    ``native`` arrays (others are cast and converted, as the general path does) of the types'
    shapes. Anything else is a :data:`MISS`, and the caller's general path handles it, with
    its error messages. The function is generated like :func:`straight_line`'s."""
    namespace: dict[str, Any] = {"MISS": MISS, "native": native, "cast": cast, "convert": convert, "body": body,
                                 "finish": finish}
    lines, leaves = [], []

    def const(value, prefix: str) -> str:
        name = f"{prefix}{len(namespace)}"
        namespace[name] = value
        return name

    def walk(expr: str, sig):
        if sig is None:
            leaves.append(expr)
        elif isinstance(sig, DictSig):
            var = f"d{len(lines)}"
            lines.append(f"    {var} = {expr}")
            lines.append(f"    if {var}.__class__ is not dict or {var}.keys() != {const(set(sig.keys), 'K')}: return MISS")
            for k, s in sig.items():
                walk(f"{var}[{k!r}]", s)
        else:
            var = f"d{len(lines)}"
            lines.append(f"    {var} = {expr}")
            lines.append(f"    if {var}.__class__ not in (tuple, list) or len({var}) != {len(sig)}: return MISS")
            for i, s in enumerate(sig):
                walk(f"{var}[{i}]", s)

    walk("params", DictSig(tuple(names)))
    walk("args", tuple(term.in_sig))
    for k, (expr, t, what) in enumerate(zip(leaves, types_, whats)):
        dtype, shape = const(np.dtype(t.dtype), "D"), const(tuple(t.shape), "S")
        lines.append(f"    l{k} = {expr}")
        lines.append(f"    if l{k}.__class__ is not native or l{k}.dtype is not {dtype}: "
                     f"l{k} = convert(cast(l{k}, {const(t, 'T')}, {what!r}))")
        if t.batched:
            lines.append(f"    s = l{k}.shape")
            lines.append(f"    if len(s) != {t.ndim + 1} or s[1:] != {shape}: return MISS")
        else:
            lines.append(f"    if l{k}.shape != {shape}: return MISS")
    lines.append(f"    o = body({', '.join(f'l{k}' for k in range(len(leaves)))})")
    outs = iter(range(len(term.outputs)))

    def build(sig) -> str:
        if sig is None:
            i = next(outs)
            return f"finish(o[{i}])" if finish is not None else f"o[{i}]"
        if isinstance(sig, DictSig):
            return "{" + ", ".join(f"{k!r}: {build(s)}" for k, s in sig.items()) + "}"
        return "(" + "".join(f"{build(s)}, " for s in sig) + ")"
    lines.append(f"    return {build(term.out_sig)}")
    source = "def entry(params, args):\n" + "\n".join(lines) + "\n"
    exec(compile(source, f"<paralens entry: {term.name}>", "exec"), namespace)  # noqa: S102
    entry = namespace["entry"]
    entry.source = source
    return entry
