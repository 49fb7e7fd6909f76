"""The category Learn of "Backprop as Functor", its functor ``L``, and learners as Moore machines.

A morphism of Learn (maths §5.1) is a *learner* ``(P, I, U, r): A -> B``: a
parameter ``P``, an implementation ``I: P x A -> B``, an update
``U: P x A x B -> P`` and a request ``r: P x A x B -> A``. Here each of ``I``,
``U`` and ``r`` is a term over the same parameter wires, so a learner can be
drawn, compiled by any backend and evaluated symbolically. Learners compose
in sequence (``>>``: the downstream request becomes the upstream target) and
in parallel (``@``) by the paper's formulas.

``L(f, eps, error)`` sends a parametrised term to its gradient-descent learner
(maths §5.2); it factors through lenses (maths §5.3): it is
``from_lens(pl.lens(f), eps, error)``. For a step size ``eps`` and an error
function whose derivative is invertible, ``L`` is a functor:
``L(f >> g) == L(f) >> L(g)``.

A learner is also a Moore machine (maths §6.2, "Learners' Languages"): its
state is the parameter, its readout the pair (implement, request) at that
state, and each example ``(a, b)`` moves the state to ``U(p, a, b)``.

>>> import numpy as np, paralens as pl
>>> from paralens import learn
>>> f, g = pl.nn.dense(2, 3, dtype="float64"), pl.nn.dense(3, 1, dtype="float64")
>>> lf, lg = learn.L(f, 0.1), learn.L(g, 0.1)
>>> (lf >> lg).param_names == learn.L(f >> g, 0.1).param_names
True
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from . import backends
from . import prims as P
from . import wires as W
from .optics import Lens, lens
from .terms import Builder, DictSig, Term, as_term, plain_sig
from .types import CompositionError, Ty, as_ty, real
from .wires import Wire, tracing

__all__ = ["Learner", "Error", "quadratic", "cosh", "L", "from_lens", "identity", "Machine"]


# --------------------------------------------------------------------------- error functions


@dataclass(frozen=True)
class Error:
    """An error function ``e(x, y)`` (prediction, target), elementwise, whose derivative in ``x``
    is invertible in ``y``: ``inverse(z, w)`` is the ``y`` with ``de/dx(z, y) = w`` (maths §5.2).

    Attributes:
        name: the error's name, shown in the names of the terms it makes (``E_quadratic``).
        value: ``e(x, y)``: a function of two wires of the same type (prediction, target) that
            returns the elementwise error wire.
        inverse: a function of two wires ``(z, w)`` that returns the wire of the ``y`` with
            ``de/dx(z, y) = w``; it gives a learner's request.
    """

    name: str
    value: Callable[[Wire, Wire], Wire]
    inverse: Callable[[Wire, Wire], Wire]


#: ``e(x, y) = (x - y)^2 / 2``: ``de/dx(z, y) = z - y``, inverted by ``w -> z - w``.
quadratic = Error("quadratic", lambda x, y: 0.5 * (x - y) * (x - y), lambda z, w: z - w)


def _cosh(x: Wire) -> Wire:
    return 0.5 * (W.exp(x) + W.exp(-x))


def _asinh(w: Wire) -> Wire:
    return W.log(w + W.sqrt(w * w + 1.0))


#: ``e(x, y) = cosh(x - y)``: ``de/dx(z, y) = sinh(z - y)``, inverted by ``w -> z - asinh(w)``.
cosh = Error("cosh", lambda x, y: _cosh(x - y), lambda z, w: z - _asinh(w))


# --------------------------------------------------------------------------- learners


@dataclass(frozen=True, eq=False)
class Learner:
    """A morphism ``(P, I, U, r): A -> B`` of Learn, each part a term over the parameters ``P``.

    ``implement: (P; a) -> b``; ``update: (P; a, b) -> P`` (a dict by parameter
    name); ``request: (P; a, b) -> a``. (Not :class:`paralens.Learner`, the
    compiled training step: that one is assembled from lenses with an optimizer.)

    Attributes:
        implement: the term ``I: (P; a) -> b``.
        update: the term ``U: (P; a, b) -> P``, the new value of each parameter by name.
        request: the term ``r: (P; a, b) -> a``, the input the learner asks for.
        name: the learner's name, shown in reprs, diagrams and composites (``f >> g``).

    Raises:
        ValueError: if ``implement``, ``update`` and ``request`` do not have the same parameter names.
    """

    implement: Term
    update: Term
    request: Term
    name: str = "learner"

    def __post_init__(self):
        names = self.implement.param_names
        if self.update.param_names != names or self.request.param_names != names:
            raise ValueError(f"{self.name}: implement, update and request must share their parameters")

    @property
    def dom(self) -> Ty:
        return self.implement.dom

    @property
    def cod(self) -> Ty:
        return self.implement.cod

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.implement.param_names

    def __repr__(self) -> str:
        return f"learn.Learner({self.name}: {self.dom} -> {self.cod}, params={list(self.param_names)})"

    def _repr_svg_(self) -> str:  # Jupyter shows it as its diagram
        return self.as_term()._repr_svg_()

    def as_term(self) -> Term:
        """``(P; a, b) -> (I(p, a), U(p, a, b), r(p, a, b))`` as one term (to draw or compile).

        Returns:
            The term over the learner's parameters with the inputs ``a`` and ``b`` and the
            outputs ``I``, ``U`` (a dict by parameter name) and ``r``; its boxes are grouped as
            ``implement``, ``update`` and ``request``.
        """
        b = Builder()
        pw = [b.redeclare(s) for s in self.implement.params]
        a, t = _inputs(b, self.dom), _inputs(b, self.cod)
        out = _apply(b, self.implement, pw, a, group="implement")
        out += _apply(b, self.update, pw, a + t, group="update")
        out += _apply(b, self.request, pw, a + t, group="request")
        a_sig, b_sig = plain_sig(len(self.dom)), plain_sig(len(self.cod))
        return b.build(a + t, out, in_sig=(a_sig, b_sig), out_sig=(b_sig, DictSig(self.param_names), a_sig),
                       name=self.name, arg_names=(("a", "b"), ("I", "U{}", "r")))

    def machine(self) -> Machine:
        """This learner read as a Moore machine (maths §6.2).

        Returns:
            The :class:`Machine` of this learner.
        """
        return Machine(self)

    # --- the category Learn
    def __rshift__(self, other: Learner) -> Learner:
        """Sequential composition (maths §5.1): with ``b = I(p, a)``,
        ``(p, q, a) -> J(q, b)``, ``(U(p, a, s(q, b, c)), V(q, b, c))``, ``r(p, a, s(q, b, c))``."""
        if not isinstance(other, Learner):
            return NotImplemented
        if self.cod != other.dom:
            raise CompositionError(f"cannot compose learners {self.name} >> {other.name}: {self.cod} "
                                   f"is not {other.dom}")
        both = self.implement >> other.implement  # P then Q, numbered as composition numbers them
        specs, names, n = both.params, both.param_names, len(self.implement.params)

        def build(outputs: str) -> Term:
            bld = Builder()
            pw = [bld.redeclare(s) for s in specs]
            p, q = pw[:n], pw[n:]
            a = _inputs(bld, self.dom)
            mid = _apply(bld, self.implement, p, a)
            if outputs == "implement":
                return bld.build(a, _apply(bld, other.implement, q, mid), name=name)
            c = _inputs(bld, other.cod)
            wanted = _apply(bld, other.request, q, mid + c)  # s(q, b, c): what the downstream asks for
            if outputs == "request":
                return bld.build(a + c, _apply(bld, self.request, p, a + wanted), in_sig=sig, name=name)
            new = _apply(bld, self.update, p, a + wanted) + _apply(bld, other.update, q, mid + c)
            return bld.build(a + c, new, in_sig=sig, out_sig=DictSig(names), name=name)

        name = f"{self.name} >> {other.name}"
        sig = _sig(self.dom, other.cod)
        return Learner(build("implement"), build("update"), build("request"), name)

    def __matmul__(self, other: Learner) -> Learner:
        """Parallel composition (maths §5.1): each part on its own wires, parameters ``P x Q``."""
        if not isinstance(other, Learner):
            return NotImplemented
        both = self.implement @ other.implement
        specs, names, n = both.params, both.param_names, len(self.implement.params)
        k, m = len(self.dom), len(self.cod)

        def build(part: str) -> Term:
            bld = Builder()
            pw = [bld.redeclare(s) for s in specs]
            p, q = pw[:n], pw[n:]
            a = _inputs(bld, self.dom @ other.dom)
            if part == "implement":
                out = _apply(bld, self.implement, p, a[:k]) + _apply(bld, other.implement, q, a[k:])
                return bld.build(a, out, name=name)
            t = _inputs(bld, self.cod @ other.cod)
            mine, theirs = a[:k] + t[:m], a[k:] + t[m:]
            out = _apply(bld, getattr(self, part), p, mine) + _apply(bld, getattr(other, part), q, theirs)
            return bld.build(a + t, out, in_sig=_sig(self.dom @ other.dom, self.cod @ other.cod),
                             out_sig=DictSig(names) if part == "update" else None, name=name)

        name = f"{self.name} @ {other.name}"
        return Learner(build("implement"), build("update"), build("request"), name)


def _inputs(b: Builder, ty) -> list[int]:
    return [b.input(t) for t in as_ty(ty)]


def _apply(b: Builder, term: Term, params, inputs, group: str | None = None) -> list[int]:
    return b.inline(term, list(inputs), params=dict(zip(term.param_wires, params)), group=group)


def _sig(a_ty, b_ty) -> tuple:
    """The calling convention of update and request: ``(params, a, b)``."""
    return plain_sig(len(a_ty)), plain_sig(len(b_ty))


def identity(ty) -> Learner:
    """The identity learner on ``ty``: no parameters, ``I(a) = a``, ``r(a, b) = b`` (maths §5.1).

    Args:
        ty: the type ``A`` of the learner ``A -> A``: an :class:`~paralens.ArrayType`, a
            :class:`~paralens.Ty` or a list of array types.

    Returns:
        The :class:`Learner` named ``id``, whose update returns an empty dict.
    """
    ty = as_ty(ty)
    b = Builder()
    a = _inputs(b, ty)
    implement = b.build(a, a, name="id")
    b = Builder()
    a, t = _inputs(b, ty), _inputs(b, ty)
    sig = _sig(ty, ty)
    return Learner(implement, b.build(a + t, [], in_sig=sig, out_sig=DictSig(()), name="id"),
                   b.build(a + t, t, in_sig=sig, name="id"), "id")


# --------------------------------------------------------------------------- the functor L


def _error_term(ty: Ty, error: Error) -> Term:
    """``E(y; b) = sum over the batch and the outputs of e(y, b)``: its reverse derivative in ``y``
    is the displacement ``de/dx(y, b)`` seeded with 1."""
    b = Builder()
    ys, ts = _inputs(b, ty), _inputs(b, ty)
    with tracing(b):
        total = None
        for y, t in zip(ys, ts):
            e = error.value(Wire(b, y), Wire(b, t))
            s = W.batch_sum(W.sum(e) if e.ndim else e)
            total = s if total is None else total + s
    return b.build(ys + ts, [total.id], name=f"E_{error.name}")


def from_lens(lens_: Lens, eps: float, error: Error = quadratic) -> Learner:
    """The learner of a parametric lens (maths §5.3): post-compose the displacement
    ``de/dx(I(p, a), b)``, run the lens backward, then update ``p - eps dp`` and request
    ``inverse(a, da)``. ``eps`` is the step size of the update only; the request uses step 1.

    Args:
        lens_: a parametric :class:`~paralens.Lens` (``pl.lens(f)``); its parameters are the
            learner's.
        eps: the step size of the update, a number ``> 0``.
        error: the :class:`Error` function ``e`` that turns an output and its target into the
            displacement; :data:`quadratic` by default.

    Returns:
        The :class:`Learner` ``L(name)`` with the lens's domain, codomain and parameters.

    Raises:
        ValueError: if ``eps`` is not a finite number ``> 0``.
        TypeError: if ``eps`` is not a number (a string, a bool).
    """
    eps = real(eps, "the step size eps", 0, open_low=True)  # a finite number > 0 (no string, no inf)
    specs = lens_.params
    err = _error_term(lens_.cod, error)
    from .derivative import R
    disp = R(err)  # (y, b, 1) -> (dy, db): dy is the displacement

    def build(part: str) -> Term:
        b = Builder()
        pw = [b.redeclare(s) for s in specs]
        a = _inputs(b, lens_.dom)
        y, res = lens_.forward(b, a, pw)
        if part == "implement":
            return b.build(a, y, name=lens_.name)
        t = _inputs(b, lens_.cod)
        one = P.emit_const(b, 1.0, (), b.type_of(y[0]).dtype)
        dy = b.inline(disp, y + t + [one])[: len(y)]
        dp, da = lens_.backward(b, res, dy)
        with tracing(b):
            if part == "update":
                out = [(Wire(b, p) - eps * Wire(b, d)).id for p, d in zip(pw, dp)]
            else:
                out = [error.inverse(Wire(b, x), Wire(b, d)).id for x, d in zip(a, da)]
        return b.build(a + t, out, in_sig=_sig(lens_.dom, lens_.cod),
                       out_sig=DictSig(lens_.param_names) if part == "update" else None, name=lens_.name)

    return Learner(build("implement"), build("update"), build("request"), f"L({lens_.name})")


def L(f, eps: float, error: Error = quadratic) -> Learner:  # noqa: N802 - the paper's name
    """The functor ``L_{eps, e}: Para -> Learn`` of "Backprop as Functor" (maths §5.2):
    ``U(p, a, b) = p - eps grad_p E``, ``r(p, a, b) = inverse(a, grad_a E)`` with
    ``E(p, a, b) = sum_j e(I_j(p, a), b_j)`` (summed over the batch too).

    Args:
        f: a parametrised term (a :class:`~paralens.Term`, such as ``pl.nn.dense(2, 3)``); a
            polymorphic layer needs a type first.
        eps: the step size of the update, a number ``> 0``.
        error: the :class:`Error` function ``e``; :data:`quadratic` by default.

    Returns:
        The :class:`Learner` ``L(f)``, with ``f``'s domain, codomain and parameters; it is
        ``from_lens(pl.lens(f), eps, error)``.
    """
    return from_lens(lens(as_term(f)), eps, error)


# --------------------------------------------------------------------------- Moore machines


@dataclass(frozen=True)
class Machine:
    """A learner as a Moore machine (maths §6.2): the state is the parameter ``p``; the
    readout at ``p`` is the pair (implement, request); an input ``(a, b)`` moves the state to
    ``U(p, a, b)``. Machines compose by wiring, as their learners do: ``m1 >> m2`` feeds the
    downstream machine's request to the upstream one as its target, at every tick.

    Attributes:
        learner: the :class:`Learner` whose parts the machine runs.
    """

    learner: Learner

    def __rshift__(self, other: Machine) -> Machine:
        return Machine(self.learner >> other.learner)

    def __matmul__(self, other: Machine) -> Machine:
        return Machine(self.learner @ other.learner)

    def readout(self, state: dict, backend: str = "numpy"):
        """The functions the machine shows at ``state``: ``(a -> b, (a, b) -> a)``.

        Args:
            state: the parameter values by name (as ``backends.get(backend).init`` returns them).
            backend: the backend that compiles the learner's parts, by name or as a backend object.

        Returns:
            A pair of functions: ``implement(a)``, the output for an input ``a``, and
            ``request(a, b)``, the input the learner asks for given ``a`` and a target ``b``
            (arrays of the backend, with a batch axis).
        """
        be = backends.get(backend)
        implement, request = be.compile(self.learner.implement), be.compile(self.learner.request)
        return (lambda a: implement(state, a)), (lambda a, b: request(state, a, b))

    def run(self, state: dict, inputs, targets, backend: str = "numpy"):
        """Feed the stream ``(inputs[k], targets[k])``, one example (or batch) per tick;
        returns ``(final state, [state after each tick])``.

        Args:
            state: the parameter values by name to start from (it is not changed).
            inputs: the inputs ``a``, one array (a batch) per tick.
            targets: the targets ``b``, one per tick: as many as the inputs.
            backend: the backend that compiles the update, by name or as a backend object.

        Returns:
            ``(state, history)``: the parameter values by name after the last tick (``state``
            itself when the stream is empty) and the list of them after each tick.

        Raises:
            ValueError: ``inputs`` and ``targets`` are not as many (a stream of lists or arrays, whose
                lengths are known; a generator is read as it comes and must end with the other).
        """
        be = backends.get(backend)
        update = be.compile(self.learner.update)
        sizes = [len(v) if hasattr(v, "__len__") else None for v in (inputs, targets)]
        if None not in sizes and sizes[0] != sizes[1]:
            raise ValueError(f"Machine.run: {sizes[0]} inputs but {sizes[1]} targets; the stream is one (input, "
                             "target) pair per tick")
        history = []
        ends = object()
        for a, b in itertools.zip_longest(inputs, targets, fillvalue=ends):
            if a is ends or b is ends:
                raise ValueError(f"Machine.run: the {'inputs' if a is ends else 'targets'} ended after "
                                 f"{len(history)} ticks, before the {'targets' if a is ends else 'inputs'}")
            state = update(state, a, b)
            history.append(state)
        return state, history
