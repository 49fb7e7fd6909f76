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
    def term(v1, v2, v0):
        # term 'dense(3, 2) >> relu'
        v3 = f0(v0, v1)  # einsum batched_out=None spec='i,io->o' [dense]
        v4 = f1(v3, v2)  # add [dense]
        v5 = f2(v4)  # relu [relu]
        return [v5]

No string of the user's (a term's, a layer's or a parameter's name) is ever
part of the code: every identifier is generated (``term``, ``v3``, ``f0``),
dictionary keys are ``repr()`` literals of exact ``str`` objects, and names
appear only in comments, with every character that could end a line (or not
be displayed) escaped. A name holding a newline and code stays a comment.

A rule takes part in two ways. Its plain form ``rule(in_types, out_types,
*arrays, **params)`` is what the interpreter calls. A rule made with
:func:`staged` also has a ``stage(in_types, out_types, **params)`` that returns
the box's callable of arrays alone (answering a one-output box's array bare,
several outputs as a list), and its plain form is defined as that callable
applied: so the generated code and the interpreter compute the same numbers by
construction. Any other rule is bound with its parameters as it is. One box is
written differently: a ``broadcast`` read only by elementwise boxes that would
broadcast its input themselves is a view of it (:func:`_views`), the same numbers
without the copy.

:func:`fast_entry` and :func:`fast_step` write the function a user calls the same
way: the checks of the common call, then the body inline.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from paralens.terms import DictSig, Term
from paralens.types import printable

__all__ = ["staged", "straight_line", "fast_entry", "fast_step", "comment"]


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


def _callable(rule: Callable, ins: tuple, outs: tuple, params: dict) -> Callable:
    """The box's function of arrays (a table's own entry where no parameters are bound)."""
    stage = getattr(rule, "stage", None)
    if stage is not None:
        return stage(ins, outs, **params)
    fn = functools.partial(rule, ins, outs, **params)
    return _single(fn) if len(outs) == 1 else fn


def comment(text: str, limit: int = 80) -> str:
    """``text`` as the inside of a one-line comment (:func:`paralens.diagram.printable`): every
    character that could end the line escaped, long text cut short.

    >>> comment("layer\\n    import os")
    'layer\\\\n    import os'
    """
    return printable(text, limit)


def _describe(e) -> str:
    params = " ".join(f"{k}={v!r}" for k, v in e.attrs if not isinstance(v, Term) and not callable(v))
    text = comment(f"{e.prim.name} {params}".strip(), 60)
    group = "/".join(e.group) if e.group else (e.layer[0] if e.layer else "")
    return text + (f" [{comment(group, 40)}]" if group else "")


def _literal(key: str) -> str:
    """A dictionary key as a Python literal: ``repr`` of an exact ``str`` is a literal that reads
    back as the same string and cannot break out of itself."""
    if type(key) is not str:
        raise TypeError(f"names are strings, got {type(key).__name__}")
    return repr(key)


#: a generated identifier: a fixed stem of ours and a number (``_S``, ``f3``)
_IDENTIFIER = re.compile(r"_?[A-Za-z]+[0-9]*")


class _Writer:
    """The lines and namespace of one generated function. Objects are bound under generated
    names: a stem of this module's (``f``, ``_S``) and a number; the same object is bound once."""

    def __init__(self):
        self.namespace: dict[str, Any] = {}
        self.lines: list[str] = []
        self._bound: dict[int, str] = {}

    def bind(self, obj, stem: str = "f") -> str:
        """The name ``obj`` is bound to in the namespace (``stem`` numbered, ``f0`` ...)."""
        name = self._bound.get(id(obj))
        if name is None or self.namespace.get(name) is not obj:
            # stems are this module's, never a user's, and none is ``v`` (the wires' locals)
            assert _IDENTIFIER.fullmatch(stem) and stem != "v", stem
            name = f"{stem}{len(self.namespace)}"
            self.namespace[name] = obj
            self._bound[id(obj)] = name
        return name

    def define(self, name: str, args: str, what: str) -> tuple[Callable, str]:
        """The function ``def name(args):`` with the lines as its body, and its text. ``name`` is
        generated; ``what`` (a term's name) appears only in a comment."""
        assert _IDENTIFIER.fullmatch(name), name
        source = f"def {name}({args}):\n    # {comment(what)}\n" + "\n".join(self.lines) + "\n"
        exec(compile(source, "<paralens generated>", "exec"), self.namespace)  # noqa: S102
        return self.namespace[name], source


def _views(term: Term) -> dict[int, tuple]:
    """The ``broadcast`` boxes the straight-line code writes as views (box index -> the view's
    index): those whose result feeds only elementwise boxes whose other operands already span
    the result's shape. Their broadcasting then gives the same numbers from the input with a
    size-1 axis for each new one, and the copy is skipped. Each such view is the input indexed
    with ``None`` at the new axes (a broadcast's ``dims`` are in order)."""
    wires = term.wires
    readers: dict[int, list] = {}
    for e in term.eqns:
        for n in e.ins:
            readers.setdefault(n, []).append(e)
    spread: dict[int, tuple] = {}  # a view's wire -> its shape, right-aligned as its readers see it

    def spanned(r) -> bool:
        out = wires[r.outs[0]]
        shapes = [spread.get(n, wires[n].shape) for n in r.ins]
        return all(max(s[i - out.ndim + len(s)] if i - out.ndim + len(s) >= 0 else 1 for s in shapes) == size
                   for i, size in enumerate(out.shape))

    views = {}
    for k, e in enumerate(term.eqns):
        if e.prim.name != "broadcast" or e.outs[0] in term.outputs:
            continue
        o, t, p = e.outs[0], wires[e.ins[0]], e.kwargs
        axes = range(len(p["shape"]))
        spread[o] = tuple(t.shape[p["dims"].index(i)] if i in p["dims"] else 1 for i in axes)
        if all(r.prim.elementwise and spanned(r) for r in readers.get(o, ())):
            views[k] = (slice(None),) * t.batched + tuple(slice(None) if i in p["dims"] else None for i in axes)
        else:
            del spread[o]
    return views


def _body(w: _Writer, backend, term: Term) -> None:
    """The lines computing ``term``'s boxes, wire ``n`` in the local ``v<n>``; a box without a
    rule in ``backend.rules`` is refused now, not when it runs."""
    wires = term.wires
    wrap = None if backend.wrap is None else w.bind(backend.wrap, "wrap")
    views = _views(term) if wrap is None else {}
    for k, e in enumerate(term.eqns):
        name = e.prim.name
        if k in views:
            w.lines.append(f"    v{e.outs[0]} = v{e.ins[0]}[{w.bind(views[k], 'i')}]  # {_describe(e)}, as a view")
            continue
        rule = backend.rule(name)
        ins, outs = tuple(wires[n] for n in e.ins), tuple(wires[n] for n in e.outs)
        fn = _callable(rule, ins, outs, e.kwargs)
        if getattr(fn, "constant", False) and wrap is None and not set(e.outs) & set(term.outputs):
            # no inputs and a fixed value: computed once (an output is computed per call, never shared)
            call = w.bind(fn(), "c")
        else:
            call = f"{w.bind(fn)}({', '.join(f'v{n}' for n in e.ins)})"
            if wrap is not None:
                call = f"{wrap}({call})" if len(e.outs) == 1 else f"[{wrap}(o) for o in {call}]"
        w.lines.append(f"    {', '.join(f'v{n}' for n in e.outs)} = {call}  # {_describe(e)}")


def straight_line(backend, term: Term) -> Callable[..., list]:
    """``fn(*flat_values) -> flat_outputs`` computing ``term`` as ``backend.run`` does, written
    out as one Python function (``fn.source``). The backend's ``rule``, ``name`` and ``wrap``
    are read once, here."""
    w = _Writer()
    _body(w, backend, term)
    w.lines.append(f"    return [{', '.join(f'v{n}' for n in term.outputs)}]")
    fn, fn.source = w.define("term", ", ".join(f"v{n}" for n in term.param_wires + term.inputs), f"term {term.name!r}")
    return fn


# ------------------------------------------------------------------ fast entries
# An entry is the compiled function the user calls: for the common call it checks what the
# general path would, reads the leaves straight into the body's locals, runs the body inline
# and builds the outputs; anything else (another structure, class, shape) it hands to the
# general path, which answers it or raises its error. Every local of an entry starts with
# ``_`` and no box is named so, so the two never meet.


class _Entry(_Writer):
    """An entry being written: ``fallback`` is the call of the general path, as text."""

    def __init__(self, backend, term: Term, general: Callable, fallback: str, whats):
        super().__init__()
        self.backend, self.term, self.fallback, self.whats = backend, term, fallback, whats
        self.namespace["_general"] = general  # a fixed name: tests reach the general path through it
        self.leaves: list[str] = []

    def miss(self, cond: str) -> None:
        self.lines.append(f"    if {cond}: return {self.fallback}")

    def walk(self, expr: str, sig) -> None:
        """Lines that hand anything but ``sig``'s structure (exact dicts, tuples or lists) to the
        general path; the leaves' expressions are collected in calling-convention order."""
        if sig is None:
            self.leaves.append(expr)
            return
        var = f"_d{len(self.lines)}"
        self.lines.append(f"    {var} = {expr}")
        if isinstance(sig, DictSig):
            self.miss(f"{var}.__class__ is not dict or {var}.keys() != {self.bind(set(sig.keys), '_K')}")
            for k, s in sig.items():
                self.walk(f"{var}[{_literal(k)}]", s)
        else:
            self.miss(f"{var}.__class__ not in (tuple, list) or len({var}) != {len(sig)}")
            for i, s in enumerate(sig):
                self.walk(f"{var}[{i}]", s)

    def read(self) -> None:
        """Each leaf into its wire's local: a ``native`` array of the wire's dtype as it is, so is
        a ``native_scalar`` of it on a 0-d wire (anything else is cast and converted, as the general
        path does); of the wire's shape, else the general path."""
        term, be = self.term, self.backend
        types_ = [s.type for s in term.params] + list(term.dom)
        native, cast, convert = self.bind(be.native, "_native"), self.bind(be.cast, "_cast"), \
            self.bind(be.convert, "_convert")
        for n, expr, t, what in zip(term.param_wires + term.inputs, self.leaves, types_, self.whats):
            v, shape = f"v{n}", self.bind(tuple(t.shape), "_S")
            self.lines.append(f"    {v} = {expr}")
            other = f"{v}.__class__ is not {native} or {v}.dtype is not {self.bind(np.dtype(t.dtype), '_D')}"
            if be.native_scalar is not None and not t.batched and not t.shape:
                other = f"{v}.__class__ is not {self.bind(be.native_scalar(t.dtype), '_C')} and ({other})"
            self.lines.append(f"    if {other}: {v} = {convert}({cast}({v}, {self.bind(t, '_T')}, {_literal(what)}))")
            if t.batched:
                self.miss(f"len({v}.shape) != {t.ndim + 1} or {v}.shape[1:] != {shape}")
            else:
                self.miss(f"{v}.shape != {shape}")

    def build(self, sig, outs: Iterator[int], finish: Callable | None) -> str:
        """The expression of the outputs in ``sig``'s structure."""
        if sig is None:
            v = f"v{next(outs)}"
            return v if finish is None else f"{self.bind(finish, '_finish')}({v})"
        if isinstance(sig, DictSig):
            return "{" + ", ".join(f"{_literal(k)}: {self.build(s, outs, finish)}" for k, s in sig.items()) + "}"
        return "(" + "".join(f"{self.build(s, outs, finish)}, " for s in sig) + ")"

    def entry(self, name: str, args: str) -> Callable:
        """The entry ``def name(args):``, its text kept as ``entry_source``."""
        fn, fn.entry_source = self.define(name, args, f"entry of {self.term.name!r}")
        return fn


def fast_entry(backend, term: Term, general: Callable, *, whats, finish: Callable | None) -> Callable:
    """``entry(params, *args)``: ``general(params, *args)``, the compiled term's calling convention,
    with the common call taken inline. That is ``params`` a dict and arguments that fit the
    signature, with leaves of ``backend.native``'s class and the wires' shapes; ``finish``
    (``None``: none) is applied to each output. ``whats`` name the leaves in cast errors. The
    entry's text is ``entry.entry_source``."""
    sig = tuple(term.in_sig)
    w = _Entry(backend, term, general, "_general(_params, *_args)", whats)
    w.miss(f"len(_args) != {len(sig)}")
    w.walk("_params", DictSig(tuple(term.param_names)))
    for i, s in enumerate(sig):
        w.walk(f"_args[{i}]", s)
    w.read()
    _body(w, backend, term)
    w.lines.append(f"    return {w.build(term.out_sig, iter(term.outputs), finish)}")
    return w.entry("_entry", "_params, *_args")


def fast_step(backend, term: Term, general: Callable, *, whats, finish: Callable | None,
              labels: Callable | None = None, classes: int | None = None) -> Callable:
    """``step(state, x, y) -> (state, loss)`` for a step term ``(state, x, y) -> (new, loss)`` taking
    no parameters, one array ``x`` and one ``y``: ``general(state, x, y)``, with the common call
    taken inline. That is ``state`` a dict holding the term's keys (the others pass through),
    arrays ``x`` and ``y`` with one batch size, and leaves as :func:`fast_entry` takes them.

    ``labels(x, y)`` checks class labels, ``classes`` of them (``None``: no check); a few
    integer labels are seen to be in range inline, any others go to ``labels``, which raises
    what the general path would. That path checks the batch, then the labels, then casts the
    leaves, and so does this one."""
    state_sig, x_sig, y_sig = term.in_sig
    w = _Entry(backend, term, general, "_general(_state, _x, _y)", whats)
    native = w.bind(backend.native, "_native")
    w.miss(f"_state.__class__ is not dict or not {w.bind(set(state_sig.keys), '_K')} <= _state.keys()")
    for k, s in state_sig.items():
        w.walk(f"_state[{_literal(k)}]", s)
    w.walk("_x", x_sig)
    w.walk("_y", y_sig)
    w.miss(f"_x.__class__ is not {native} or _y.__class__ is not {native} or _x.shape[:1] != _y.shape[:1]")
    if labels is not None:
        # Python's min and max of a short list cost less than NumPy's reductions
        w.lines.append(f"    if _y.ndim != 1 or not 0 < len(_y) <= 64 or _y.dtype.kind not in 'iu' "
                       f"or min(_f := _y.tolist()) < 0 or max(_f) >= {classes}: {w.bind(labels, '_labels')}(_x, _y)")
    w.read()
    _body(w, backend, term)
    new_sig, loss_sig = term.out_sig
    outs = iter(term.outputs)
    new = "".join(f"{_literal(k)}: {w.build(s, outs, finish)}, " for k, s in new_sig.items())
    w.lines.append(f"    return {{**_state, {new}}}, {w.build(loss_sig, outs, finish)}")
    return w.entry("_step", "_state, _x, _y")
