"""Pointful terms: build a term by running an ordinary Python function on wires.

Inside :func:`para`, arguments are :class:`~paralens.wires.Wire` objects;
arithmetic on them emits primitive boxes (see :mod:`paralens.wires`). Arguments
annotated ``pl.Param[...]`` become parameter wires; an argument whose default
is ``pl.hyperparameter(value)`` becomes a hyperparameter wire.

>>> import paralens as pl
>>> @pl.para
... def residual(x: pl.Array[4], w: pl.Param[4, 4]):
...     return x + pl.relu(x @ w)
>>> residual.dom, residual.cod, residual.param_names
(Ty(Array[4]), Ty(Array[4]), ('residual.w',))
>>> @pl.para
... def soft(x: pl.Array[3], temperature=pl.hyperparameter(2.0)):
...     return pl.softmax(x / temperature)
>>> soft.hyper_names
('soft.temperature',)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from .parameters import Hyperparameter
from .prims import promote
from .terms import Builder, Term
from .types import ArrayType
from .wires import Wire, tracing

__all__ = ["para", "term_of", "term_on"]


def _default_init(t: ArrayType) -> tuple:
    return ("glorot_uniform",) if t.ndim >= 2 else ("zeros",)


def term_of(fn: Callable, dom: Sequence[ArrayType] | None = None, *, name: str | None = None,
            layer: str | None = None, role: str | None = None) -> Term:
    """Trace ``fn`` into a term (what :func:`para` does). Arguments annotated ``pl.Param[...]``
    become parameter wires (their default value, if any, is the initialiser, e.g.
    ``pl.init.he_normal()``); the others are data inputs typed by ``pl.Array[...]``
    annotations or by ``dom``. ``layer`` names the layer its boxes and parameters belong to
    (``name`` by default); ``role`` is given to every box (:data:`~paralens.terms.TRAINING_ONLY`).
    """
    name = name or getattr(fn, "__name__", "fn")
    layer = layer or name
    try:
        sig = inspect.signature(fn, eval_str=True)
    except NameError as e:
        raise TypeError(f"{name}: cannot evaluate its type annotations ({e}); under `from __future__ import "
                        "annotations` they are looked up in the module's globals, not in enclosing functions") from e
    dom = list(dom) if dom is not None else None
    b = Builder()
    slot = b.new_layer(layer)
    args: list = []
    inputs: list[int] = []
    hypers: list[tuple[int, str, Hyperparameter]] = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            continue
        if p.kind is p.VAR_POSITIONAL:  # *xs takes the remaining input types
            while dom:
                inputs.append(b.input(dom.pop(0)))
                args.append(Wire(b, inputs[-1]))
            continue
        ann = p.annotation
        if isinstance(ann, ArrayType) and not ann.batched:
            init = p.default if p.default is not inspect.Parameter.empty else _default_init(ann)
            args.append(Wire(b, b.param(layer, slot, p.name, ann, tuple(init))))
            continue
        if isinstance(p.default, Hyperparameter):  # typed once the data inputs are known
            hypers.append((len(args), p.name, p.default))
            args.append(None)
            continue
        if isinstance(ann, ArrayType):
            t = ann
        elif dom:
            t = dom.pop(0)
        else:
            raise TypeError(f"{name}: give argument {p.name!r} a type, e.g. `{p.name}: pl.Array[4]`, "
                            "or pass dom=[...] to pl.para")
        w = b.input(t)
        inputs.append(w)
        args.append(Wire(b, w))
    if dom:
        raise TypeError(f"{name}: dom lists {len(dom)} more types than the function has data arguments")
    dtype = promote([ArrayType((), "float32"), *(b.type_of(w) for w in inputs)])
    for i, local, h in hypers:
        args[i] = h.wire(b, layer, slot, local, dtype)
    b.layer, b.role = (layer, slot), role
    return b.build(inputs, _run(b, fn, args, name), name=name)


def _run(b: Builder, fn: Callable, args: Sequence[Wire], name: str) -> list[int]:
    with tracing(b):
        out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    ids = []
    for o in outs:
        if not isinstance(o, Wire) or o.builder is not b:
            raise TypeError(f"{name} must return wires of its own trace, got {o!r}")
        ids.append(o.id)
    return ids


def term_on(ty: Sequence[ArrayType], fn: Callable, name: str) -> Term:
    """Trace ``fn(*wires)`` on input wires of types ``ty`` (no parameters declared)."""
    b = Builder()
    b.layer = (name, b.new_layer(name))
    xs = [b.input(t) for t in ty]
    return b.build(xs, _run(b, fn, [Wire(b, x) for x in xs], name), name=name)


def para(fn: Callable | None = None, dom: Sequence[ArrayType] | None = None, *, name: str | None = None):
    """Trace a Python function into a (parametrised) term: a decorator, or a call.

    Arguments annotated ``pl.Param[...]`` become parameter wires (their default value, if any,
    is the initialiser, e.g. ``pl.init.he_normal()``); an argument whose default is
    ``pl.hyperparameter(value)`` becomes a hyperparameter wire; the others are data inputs,
    typed by ``pl.Array[...]`` annotations or, in order, by ``dom``.

    Args:
        fn: the function, of wires; it returns a wire or a tuple of wires. Without it,
            ``para(dom=..., name=...)`` returns the decorator.
        dom: the types of the data inputs not annotated.
        name: the term's and the layer's name (the function's ``__name__`` by default):
            parameters are named ``name.argument``. Any text but ``.``; it is data, never code.

    Returns:
        The :class:`~paralens.Term`, or a decorator making it.

    Raises:
        TypeError: an argument has no type, or ``fn`` returns something other than its wires.

    >>> import paralens as pl
    >>> @pl.para
    ... def affine(x: pl.Array[3], w: pl.Param[3, 2], b: pl.Param[2]):
    ...     return x @ w + b
    >>> affine.param_names
    ('affine.w', 'affine.b')
    >>> pl.para(lambda x: pl.tanh(x), dom=[pl.Array[2]]).cod
    Ty(Array[2])
    """
    if fn is None:
        return lambda f: term_of(f, dom, name=name)
    return term_of(fn, dom, name=name)

