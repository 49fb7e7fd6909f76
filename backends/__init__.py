"""Backends: functors from terms to computations, behind one door.

A backend says what each primitive means; composition does the rest.
:func:`get` is the only way the syntax (``paralens``) reaches a backend, and
it returns an object with the small protocol of :class:`Backend`:

* ``compile(term)``: a function ``fn(params, *args)`` following the term's
  calling convention;
* ``init(term, seed)``: initial values of the term's parameters ``{name: array}``;
* ``compile_step(step)``: a training step ``step(state, x, y) -> (state, loss)``
  from a learner's step term (``learner.step_term``) alone;
* ``array(value, type)``: an array of an :class:`~paralens.ArrayType`.

A backend that lacks one of these says so when it is asked; so it does for
the optional ``compile_bilevel``, ``to_optax`` and ``from_optax`` (JAX has
them). The built-in backends are ``numpy`` (the eager reference), ``jax``
(compiled, exportable, shardable), ``sympy`` (symbolic formulas), ``z2``
(boolean circuits: ``+`` is XOR, ``*`` is AND) and ``matplotlib`` (diagrams:
terms as pictures, and nothing else); :func:`register` adds one.

>>> from paralens import backends
>>> backends.available()
('jax', 'matplotlib', 'numpy', 'sympy', 'z2')
>>> backends.get("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["Backend", "get", "available", "register", "of"]

_BUILTIN = {"numpy": "paralens.backends.numpy", "jax": "paralens.backends.jax", "sympy": "paralens.backends.sympy",
            "matplotlib": "paralens.backends.matplotlib", "z2": "paralens.backends.z2"}
_FACTORIES: dict[str, Callable[[], Backend]] = {}
_LOADED: dict[str, Backend] = {}


class Backend:
    """The protocol every backend follows. Subclasses override what they can do;
    the rest raises an error naming the backend and what it cannot do."""

    name: str = "backend"

    def _lacks(self, what: str):
        able = [n for n in available() if n != self.name]
        raise NotImplementedError(f"the {self.name} backend cannot {what}; try another backend ({', '.join(able)})")

    def compile(self, term, **options) -> Callable:
        """``fn(params, *args)`` computing ``term`` (or a lens, optimizer or learner: their term)."""
        self._lacks("compile terms")

    def init(self, term, seed: int = 0) -> dict:
        """Initial values ``{name: array}`` of ``term``'s parameters (labels excluded)."""
        self._lacks("initialise parameters")

    def compile_step(self, step, **options) -> Callable:
        """``step(state, x, y) -> (state, loss)`` from a learner's step term."""
        self._lacks("compile training steps")

    def array(self, value, type) -> Any:
        """An array of ``type`` (an :class:`~paralens.ArrayType`) filled from ``value``."""
        self._lacks("make arrays")

    def owns(self, value) -> bool:
        """Whether ``value`` is one of this backend's arrays."""
        return False

    # optional capabilities, beyond the protocol
    def compile_bilevel(self, problem, **options):
        """The outer step of a :class:`~paralens.Bilevel` problem."""
        self._lacks("compile bilevel problems")

    def to_optax(self, opt):
        """A paralens optimizer as an ``optax.GradientTransformation``."""
        self._lacks("convert optimizers to optax")

    def from_optax(self, tx):
        """An ``optax.GradientTransformation`` as a paralens optimizer."""
        self._lacks("convert optimizers from optax")

    def __repr__(self) -> str:
        return f"<paralens backend {self.name}>"


def available() -> tuple[str, ...]:
    """The names :func:`get` accepts."""
    return tuple(sorted(set(_BUILTIN) | set(_FACTORIES)))


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Add a backend: ``factory()`` is called once, on the first ``get(name)``."""
    if name in available():
        raise ValueError(f"a backend named {name!r} exists already")
    _FACTORIES[name] = factory


def get(name: str | Backend) -> Backend:
    """The backend called ``name`` (a backend object passes through)."""
    if isinstance(name, Backend):
        return name
    if name not in _LOADED:
        if name in _FACTORIES:
            _LOADED[name] = _FACTORIES[name]()
        elif name in _BUILTIN:
            try:
                _LOADED[name] = importlib.import_module(_BUILTIN[name]).backend
            except ImportError as e:
                raise ImportError(f"the {name} backend needs a library that is not installed: {e}") from e
        else:
            raise ValueError(f"unknown backend {name!r}; available backends: {', '.join(available())}")
    return _LOADED[name]


def of(value) -> Backend:
    """The backend whose array ``value`` is (those in use are asked first)."""
    for backend in list(_LOADED.values()):
        if backend.owns(value):
            return backend
    for name in available():
        try:
            if get(name).owns(value):
                return get(name)
        except ImportError:
            continue
    raise TypeError(f"no backend owns a {type(value).__name__}; available backends: {', '.join(available())}")
