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
(boolean circuits: ``+`` is XOR, ``*`` is AND), ``onnx`` (terms as ONNX models, run by
onnxruntime in Python, C++, C#, Java, Node and browsers) and ``matplotlib`` (diagrams:
terms as pictures, and nothing else); :func:`register` adds one.

>>> from paralens import backends
>>> backends.available()
('jax', 'matplotlib', 'numpy', 'onnx', 'sympy', 'z2')
>>> backends.get("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["Backend", "get", "available", "register", "of"]

_BUILTIN = {"numpy": "paralens.backends.numpy", "jax": "paralens.backends.jax", "sympy": "paralens.backends.sympy",
            "matplotlib": "paralens.backends.matplotlib", "z2": "paralens.backends.z2",
            "onnx": "paralens.backends.onnx"}
_FACTORIES: dict[str, Callable[[], Backend]] = {}
_LOADED: dict[str, Backend] = {}


class Backend:
    """The protocol every backend follows. Subclasses override what they can do;
    the rest raises an error naming the backend and what it cannot do.

    Attributes:
        name: the name :func:`get` knows the backend by; error messages name it too.
    """

    name: str = "backend"

    def _lacks(self, what: str):
        able = [n for n in available() if n != self.name]
        raise NotImplementedError(f"the {self.name} backend cannot {what}; try another backend ({', '.join(able)})")

    def compile(self, term, **options) -> Callable:
        """``fn(params, *args)`` computing ``term`` (or a lens, optimizer or learner: their term).

        Args:
            term: the term to compile, or a lens, optimizer or learner (its term is taken).
            **options: backend-specific options (``engine="jax"`` for ``z2``); a backend that takes
                none refuses any with ``TypeError``.

        Returns:
            ``fn(params, *args)`` following the term's calling convention: ``params`` is a dict
            of parameter arrays by name (or the one parameter's array bare), ``args`` the term's inputs.

        Raises:
            NotImplementedError: the backend cannot compile terms (this default).
        """
        self._lacks("compile terms")

    def init(self, term, seed: int = 0) -> dict:
        """Initial values ``{name: array}`` of ``term``'s parameters (labels excluded).

        Args:
            term: the term, or a lens, optimizer or learner, whose parameters to initialise.
            seed: the random seed the initial values are drawn from (a backend that draws nothing, like
                ``sympy``, ignores it).

        Returns:
            A dict from each parameter's full name to its initial value, an array of this backend.

        Raises:
            NotImplementedError: the backend cannot initialise parameters (this default).
        """
        self._lacks("initialise parameters")

    def compile_step(self, step, **options) -> Callable:
        """``step(state, x, y) -> (state, loss)`` from a learner's step term.

        Args:
            step: a learner's step term (``learner.step_term``); it alone says the types of the
                training state.
            **options: backend-specific options, such as ``scan=True`` (``step`` then takes stacks
                of batches) or ``classes`` (labels are class indices, checked to be in range).

        Returns:
            The training step ``step(state, x, y) -> (state, loss)``.

        Raises:
            NotImplementedError: the backend cannot compile training steps (this default).
        """
        self._lacks("compile training steps")

    def array(self, value, type) -> Any:
        """An array of ``type`` (an :class:`~paralens.ArrayType`) filled from ``value``.

        Args:
            value: the data: an array of ``type``'s shape, or a value broadcast to it.
            type: the :class:`~paralens.ArrayType` (shape and dtype) of the array to make.

        Returns:
            An array of this backend holding ``value``.

        Raises:
            NotImplementedError: the backend cannot make arrays (this default).
        """
        self._lacks("make arrays")

    def owns(self, value) -> bool:
        """Whether ``value`` is one of this backend's arrays (:func:`of` asks each backend).

        Args:
            value: any object.

        Returns:
            ``True`` if ``value`` is an array of this backend; this default owns nothing (``False``).
        """
        return False

    # optional capabilities, beyond the protocol
    def compile_bilevel(self, problem, **options):
        """The outer step of a :class:`~paralens.Bilevel` problem.

        Args:
            problem: the :class:`~paralens.Bilevel` problem to compile.
            **options: backend-specific options (JAX: ``jit=False`` runs it without ``jax.jit``).

        Raises:
            NotImplementedError: the backend cannot compile bilevel problems (this default; JAX can).
        """
        self._lacks("compile bilevel problems")

    def to_optax(self, opt):
        """A paralens optimizer as an ``optax.GradientTransformation``.

        Args:
            opt: the paralens optimizer (a :class:`~paralens.optim.Transform`, such as
                ``paralens.optim.adam(1e-3)``).

        Raises:
            NotImplementedError: the backend cannot convert optimizers to optax (this default; JAX can).
        """
        self._lacks("convert optimizers to optax")

    def from_optax(self, tx):
        """An ``optax.GradientTransformation`` as a paralens optimizer.

        Args:
            tx: the ``optax.GradientTransformation`` to wrap.

        Raises:
            NotImplementedError: the backend cannot convert optimizers from optax (this default; JAX can).
        """
        self._lacks("convert optimizers from optax")

    def __repr__(self) -> str:
        return f"<paralens backend {self.name}>"


def available() -> tuple[str, ...]:
    """The names :func:`get` accepts.

    Returns:
        The names of the built-in backends and of those added with :func:`register`, sorted
        (whether or not the library a backend needs is installed).
    """
    return tuple(sorted(set(_BUILTIN) | set(_FACTORIES)))


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Add a backend: ``factory()`` is called once, on the first ``get(name)``.

    Args:
        name: the name :func:`get` will know the backend by.
        factory: a function of no arguments returning the :class:`Backend`; its result is kept
            and returned by every later ``get(name)``.

    Raises:
        ValueError: a backend named ``name`` exists already (built in or registered).
    """
    if name in available():
        raise ValueError(f"a backend named {name!r} exists already")
    _FACTORIES[name] = factory


def get(name: str | Backend) -> Backend:
    """The backend called ``name`` (a backend object passes through).

    A backend is loaded (its module imported, or its factory called) on the first ``get`` of
    its name, and the same object is returned from then on.

    Args:
        name: one of :func:`available`, or a :class:`Backend`, returned as it is.

    Returns:
        The :class:`Backend` called ``name``.

    Raises:
        ImportError: ``name`` is a built-in backend whose library (JAX, SymPy, ...) is not installed.
        ValueError: no backend is called ``name``; the message lists those available.
    """
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
    """The backend whose array ``value`` is (those in use are asked first).

    The backends already loaded are asked first (:meth:`Backend.owns`), then every available
    one, loading it; those whose library is not installed are skipped.

    Args:
        value: an array, such as a ``numpy.ndarray`` or a JAX array.

    Returns:
        The first :class:`Backend` that owns ``value``.

    Raises:
        TypeError: no backend owns ``value``.
    """
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
