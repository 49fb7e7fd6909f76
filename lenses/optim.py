"""Optimizers as reparametrisation lenses of the parameter wire, made of terms (maths §4.4, §7).

An optimizer is a lens ``(S x P, S x P') -> (P, P')``: *get* hands the model
the parameter ``p``; *put* takes the state, the parameters and their
cotangents and returns the new state and parameters. Its *put* is a term
``(state, params, grads, hyper) -> (state', params')`` made of primitive boxes,
so it can be drawn, evaluated symbolically and differentiated by ``R`` like any
other term. As in optax, a big optimizer is a chain of small transforms, each
itself a term on the update wire and testable alone, and ``>>`` chains them:

    adam(lr) = scale_by_adam() >> scale_by_learning_rate(lr)
    put((s, p), g) = (s', p + u)   where (s', u) = update_term(s, p, g, hyper)

The state is a pytree with named fields, as optax's: ``scale_by_adam`` keeps
``{"count", "mu", "nu"}`` (``mu`` and ``nu`` dicts by parameter name), a chain
keeps a tuple of its parts' states. Hyperparameters (learning rate, betas,
eps, weight decay, ...) are input wires of the term: changing them between
calls does not recompile, and a bilevel problem can learn them. Names,
argument order, defaults and numerics follow optax v0.2.8 (maths §7).

>>> import paralens as pl
>>> opt = pl.optim.adam(1e-3)
>>> sorted(opt.hyper)
['b1', 'b2', 'eps', 'eps_root', 'learning_rate']
>>> state = opt.state({"w": pl.Param[3]})
>>> sorted(state[0]), state[1]
(['count', 'mu', 'nu'], {})
>>> opt.term().n_boxes > 0          # its put, as a term (here for one scalar parameter "w")
True
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import prims as P
from . import wires as W
from .backends import get as _backend
from .optics import Lens
from .prims import promote
from .terms import Builder, Term, leaves, sig_of, tree_map
from .types import ArrayType, real
from .wires import Wire, tracing

__all__ = [
    "Transform", "Leaf", "Chain", "State", "StateSpec", "StateFieldError", "Hyper", "Range", "NONNEGATIVE", "DECAY",
    "counter", "scalar", "per_param", "chain", "identity", "scale_by_learning_rate", "trace", "scale_by_rss",
    "scale_by_rms", "scale_by_stddev", "scale_by_adam", "scale_by_amsgrad", "scale_by_adopt", "scale_by_dog",
    "add_decayed_weights", "clip_by_global_norm", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
    "adamw", "amsgrad", "adopt", "dog", "constant_schedule", "exponential_decay", "cosine_decay_schedule",
    "linear_schedule", "polynomial_schedule", "warmup_cosine_decay_schedule", "join_schedules",
    "to_optax", "from_optax", "hyper_type", "init_state",
    "scale", "scale_by_sign", "ema", "scale_by_adamax", "scale_by_lion", "scale_by_yogi", "scale_by_belief",
    "scale_by_radam", "scale_by_rprop", "scale_by_optimistic_gradient", "scale_by_adan", "scale_by_adadelta",
    "scale_by_trust_ratio", "scale_by_novograd", "sign_sgd", "signum", "adamax", "adamaxw", "nadam", "nadamw", "lion",
    "yogi", "adabelief", "radam", "rprop", "optimistic_gradient_descent", "optimistic_adam", "optimistic_adam_v2",
    "adan", "adadelta",
    "lars", "lamb", "novograd", "fromage", "scale_by_polyak", "polyak_sgd",
    "per_axis", "scale_by_sm3", "sm3", "scale_by_factored_rms", "clip_by_block_rms", "scale_by_param_block_rms",
    "adafactor", "add_noise", "noisy_sgd",
]

Schedule = Callable[[Wire], Wire]

#: The parameter an optimizer is shown with when no model gives it any (diagrams, formulas).
DEFAULT_PARAMS = {"w": ArrayType((), "float32", batched=False)}


# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class StateSpec:
    """One state leaf: its type and initial value.

    ``init`` is a number, or a function of the parameter dict (DoG's copy of
    the initial parameters, its initial distance).

    Attributes:
        type: the leaf's :class:`~paralens.ArrayType` (shape, dtype, whether batched).
        init: its initial value: a number (default ``0.0``) that every element starts at, or a
            function ``init(params)`` of the dict of initial parameter values returning it.
    """

    type: ArrayType
    init: Any = 0.0

    def value(self, params: Mapping):
        """The initial value, given the initial parameters.

        Args:
            params: the initial parameter values by name; passed to ``init`` when it is a function.

        Returns:
            ``init(params)`` if ``init`` is callable, else ``init`` itself.
        """
        return self.init(params) if callable(self.init) else self.init


@dataclass(frozen=True)
class Range:
    """Where a hyperparameter's value makes sense: a finite number in ``[low, high]``, an end
    excluded where ``open_low`` or ``open_high``.

    Attributes:
        low: the lower end (default ``-inf``: no lower bound).
        high: the upper end (default ``inf``: no upper bound).
        open_low: whether ``low`` itself is excluded (default ``False``).
        open_high: whether ``high`` itself is excluded (default ``False``; ``DECAY`` is ``[0, 1)``).
    """

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def check(self, value, what: str) -> float:
        """``value`` as a float in the range; else an error naming ``what`` and the range.

        Args:
            value: the number to check: a Python or NumPy number, or a 0-d array.
            what: how the error message names the value (``"scale_by_adam: b1"``).

        Returns:
            ``value`` as a Python float; a traced JAX scalar (a hyperparameter that
            ``optax.inject_hyperparams`` passes inside ``jax.jit``) as it is, since its value is not
            known yet.

        Raises:
            TypeError: ``value`` is not a number (a ``bool`` or a ``str`` included).
            ValueError: ``value`` is not finite, or lies outside the range.
        """
        if traced_scalar(value, what):
            return value
        return real(value, what, self.low, self.high, open_low=self.open_low, open_high=self.open_high)


def traced_scalar(value, what: str) -> bool:
    """Whether ``value`` is a traced JAX scalar (a ``TypeError`` for a traced array of another shape)."""
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(value, jax.core.Tracer):
        return False
    if value.shape != ():
        raise TypeError(f"{what} must be a scalar, got a traced array of shape {value.shape}")
    return True


def _initial(value, what: str, low: float = -math.inf):
    """An initial state value: a finite number at least ``low``, or a traced JAX scalar."""
    return value if traced_scalar(value, what) else real(value, what, low)


#: rates, norms, epsilons and weight decays: non-negative
NONNEGATIVE = Range(0.0)
#: decay rates of moving averages (betas, momentum): in [0, 1)
DECAY = Range(0.0, 1.0, open_high=True)


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter's declaration: its ``name``, its default ``value`` and its ``range``.
    Its value is an input wire of the optimizer's term, changed without recompiling.

    Attributes:
        name: its name in the transform's ``hyper`` (``"b1"``); a :class:`Chain` prefixes it with
            the part's position (``"0/eps"``) when two of its parts declare the same name.
        value: its default value, checked against ``range`` when the :class:`Leaf` is made.
        range: the values it may take (default ``Range()``: any finite number); the optimizers use
            ``NONNEGATIVE`` (rates, norms, epsilons, weight decays) and ``DECAY`` (``[0, 1)``: betas, momentum).
    """

    name: str
    value: float
    range: Range = Range()


def counter() -> Callable:
    """A state field: the int32 step count, from 0 (optax's ``count``); the built-in optimizers
    increment it as optax's ``safe_increment``, stopping at int32's largest value.

    Returns:
        A field for :class:`State`: a function of the parameters' types giving one unbatched int32
        scalar :class:`StateSpec` that starts at 0.
    """
    return scalar("int32", 0)


def scalar(dtype: str | Callable = "float32", init=0.0) -> Callable:
    """A state field: one scalar, of ``dtype`` (or of ``dtype(ptypes)``), starting at ``init``
    (a number, or a function of the initial parameters).

    Args:
        dtype: the scalar's dtype name (default ``"float32"``), or a function of the dict of the
            parameters' types returning one (DoG keeps its sums in the narrowest float dtype of the parameters).
        init: its initial value (default ``0.0``): a number, or a function of the dict of initial
            parameter values returning it.

    Returns:
        A field for :class:`State`: a function of the parameters' types giving one unbatched scalar
        :class:`StateSpec`.
    """
    return lambda ptypes: StateSpec(ArrayType((), dtype(ptypes) if callable(dtype) else dtype, batched=False), init)


def per_param(init=0.0, dtype: str | None = None, shape: tuple | None = None) -> Callable:
    """A state field: one array per parameter, of the parameter's shape and dtype (or ``dtype``),
    starting at ``init`` (a number), or at the parameter itself with ``init="params"``.

    Args:
        init: the value every element starts at (default ``0.0``), or ``"params"`` to start at a
            copy of each parameter's initial value.
        dtype: the arrays' dtype name; ``None`` (default) keeps each parameter's dtype.
        shape: the arrays' shape; ``None`` (default) keeps each parameter's shape (``()``: one
            scalar per parameter, as NovoGrad's per-layer second moment).

    Returns:
        A field for :class:`State`: a function of the parameters' types giving the dict
        ``{name: StateSpec}``, one leaf per parameter. The leaf of a batched parameter (an input
        being dreamed) is batched too, one value per example.
    """
    def field(ptypes):
        out = {}
        for n, t in ptypes.items():
            leaf = ArrayType(t.shape if shape is None else tuple(shape), dtype or t.dtype, t.batched)
            if init == "params":
                out[n] = StateSpec(leaf, lambda params, n=n: params[n])
            elif t.batched:  # an input being dreamed: per-example state, as long as its batch
                out[n] = StateSpec(leaf, _per_example(n, shape, init))
            else:
                out[n] = StateSpec(leaf, init)
        return out
    return field


def per_axis(init=0.0, dtype: str | None = None) -> Callable:
    """A state field: for each parameter, a tuple of vectors, one per axis, each as long as that
    axis (SM3's covers; one scalar for a scalar parameter).

    Args:
        init: the value every element starts at (default ``0.0``).
        dtype: the vectors' dtype name; ``None`` (default) keeps each parameter's dtype.

    Returns:
        A field for :class:`State`: a function of the parameters' types giving the dict
        ``{name: (StateSpec, ...)}``.
    """
    def spec(n, t, shape):
        return StateSpec(ArrayType(shape, dtype or t.dtype, t.batched), _per_example(n, shape, init) if t.batched
                         else init)

    def field(ptypes):
        return {n: tuple(spec(n, t, (d,)) for d in t.shape) or (spec(n, t, ()),) for n, t in ptypes.items()}
    return field


def _per_example(n: str, shape: tuple | None, init) -> Callable:
    """The initial value of a batched state leaf (an input being dreamed): ``init`` per example,
    of ``shape`` per example (``None``: the parameter's own), as long as the parameter's batch."""
    def value(params):
        x = params[n]
        if shape is None:
            return x * 0 + init
        import numpy as np  # here, not at the top: building terms imports no array library
        first = x.reshape(x.shape[0], -1)[:, :1] * 0 + init  # one value per example, (batch, 1)
        return first.reshape((-1,) + (1,) * len(shape)) + np.zeros(shape, first.dtype)
    return value


class State:
    """A transform's state, declared field by field beside its update, as optax's
    ``ScaleByAdamState(count, mu, nu)`` sits beside ``scale_by_adam``::

        State(count=counter(), mu=per_param(dtype=mu_dtype), nu=per_param())

    Each field is a function of the parameters' types giving its :class:`StateSpec` leaves
    (:func:`counter`, :func:`scalar`, :func:`per_param`). The state is the dict of the fields.

    Args:
        **fields: the state's fields by name, each a function of the dict of the parameters' types
            giving that field's tree of :class:`StateSpec` leaves.

    Raises:
        TypeError: a field is not callable.
    """

    def __init__(self, **fields: Callable):
        for k, f in fields.items():
            if not callable(f):
                raise TypeError(f"State: field {k!r} must be a field (pl.optim.counter(), per_param(), ...), got {f!r}")
        self.fields = fields

    def __call__(self, ptypes: Mapping[str, ArrayType]) -> dict:
        return {k: f(dict(ptypes)) for k, f in self.fields.items()}

    def __repr__(self) -> str:
        return f"State({', '.join(self.fields)})"


class StateFieldError(TypeError):
    """A transform's update returns a state that its declaration does not describe."""


def _same_structure(got, declared, name: str, path: str = "state"):
    """``got`` (the update's new state) has the fields ``declared`` has, no more and no fewer."""
    if isinstance(declared, dict):
        if not isinstance(got, dict):
            raise StateFieldError(f"{name}: its update returns {type(got).__name__} for {path}, a dict of fields "
                                  f"{sorted(declared)}")
        extra, missing = sorted(set(got) - set(declared)), sorted(set(declared) - set(got))
        if extra:
            raise StateFieldError(f"{name}: its update returns the state field {path}[{extra[0]!r}], which its "
                                  f"state does not declare (declared: {sorted(declared)}); declare it in State(...)")
        if missing:
            raise StateFieldError(f"{name}: its update does not return the declared state field "
                                  f"{path}[{missing[0]!r}] (it returns {sorted(got)})")
        for k in declared:
            _same_structure(got[k], declared[k], name, f"{path}[{k!r}]")
    elif isinstance(declared, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(declared):
            raise StateFieldError(f"{name}: its update returns {path} with another structure than declared "
                                  f"({len(declared)} leaves)")
        for i, (g, d) in enumerate(zip(got, declared)):
            _same_structure(g, d, name, f"{path}[{i}]")
    elif not isinstance(got, Wire):
        raise StateFieldError(f"{name}: its update returns {type(got).__name__} for the state leaf {path}, not a wire")


def hyper_type(param_types) -> ArrayType:
    """Hyperparameters are unbatched real scalars of the widest parameter dtype (float32 at least;
    the real part's dtype for complex parameters).

    Args:
        param_types: the parameters' :class:`~paralens.ArrayType` values (any iterable).

    Returns:
        An unbatched scalar :class:`~paralens.ArrayType` of the dtype that float32 and the
        parameters' dtypes promote to.
    """
    dtype = promote([ArrayType((), "float32"), *param_types])
    return ArrayType((), P.REAL_OF.get(dtype, dtype), batched=False)


def init_state(specs, params: Mapping, array: Callable):
    """The initial state: ``array(value, type)`` for each :class:`StateSpec` of the tree ``specs``.

    Args:
        specs: a tree (dicts and tuples) of :class:`StateSpec`, as :meth:`Transform.state` gives it.
        params: the initial parameter values by name, passed to the leaves whose ``init`` is a function.
        array: a backend's array maker, ``array(value, type)``, returning an array of the
            :class:`~paralens.ArrayType` ``type``.

    Returns:
        The tree ``specs`` with each :class:`StateSpec` replaced by its initial array.
    """
    return tree_map(lambda s: array(s.value(params), s.type), specs)


def _types(specs):
    return tree_map(lambda s: s.type, specs)


# --------------------------------------------------------------------------- transforms as terms


def _show(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else repr(v)


class Transform:
    """A gradient transformation as a lens on the update wire; ``>>`` chains transforms.

    A transform is :class:`Leaf` (its state, hyperparameters and update declared together) or
    :class:`Chain` (transforms run in order). Either way it has a ``name``, ``hyper`` (each
    hyperparameter's default), ``ranges`` (where each may lie), :meth:`state` and the terms
    :meth:`update_term`, :meth:`term` and :meth:`lens`.
    """

    name: str
    hyper: Mapping[str, float]
    ranges: Mapping[str, Range]
    #: the inputs of ``hyper`` given afresh at each update rather than kept as hyperparameters
    #: (optax's extra arguments: ``"value"``, the loss, for :func:`polyak_sgd`); a learner wires
    #: its loss into ``"value"``, ``to_optax`` takes them from ``update``'s keyword arguments
    extra: frozenset = frozenset()

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={_show(v)}' for k, v in self.hyper.items())})"

    def __rshift__(self, other: Transform) -> Transform:
        """``t1 >> t2``: ``chain(t1, t2)``, the composite of their update terms."""
        if not isinstance(other, Transform):
            return NotImplemented
        return chain(self, other)

    def state(self, ptypes: Mapping[str, ArrayType]):
        """The state's leaves for parameters of types ``ptypes``: a tree of :class:`StateSpec`.

        Args:
            ptypes: the parameters' types by name.

        Returns:
            The tree of :class:`StateSpec` (a dict of fields for a :class:`Leaf`, a tuple of the
            parts' states for a :class:`Chain`).

        Raises:
            NotImplementedError: always, on the base class; :class:`Leaf` and :class:`Chain` implement it.
        """
        raise NotImplementedError

    def _emit(self, b: Builder, s_in, p_in, u_in, h_in):
        """Emit the update into ``b``; returns the wires of ``(state', updates')``."""
        raise NotImplementedError

    def check_hyper(self, name: str, value) -> float:
        """``value`` for hyperparameter ``name``, checked against its declared range.

        Args:
            name: the hyperparameter's name, a key of ``hyper`` (prefixed, as ``"0/eps"``, where a
                chain prefixes it).
            value: the proposed value.

        Returns:
            ``value`` as a float.

        Raises:
            KeyError: the transform has no hyperparameter ``name``.
            TypeError: ``value`` is not a number.
            ValueError: ``value`` is not finite, or lies outside the hyperparameter's range.
        """
        if name not in self.ranges:
            raise KeyError(f"{self.name} has no hyperparameter {name!r}; it has {sorted(self.hyper)}")
        return self.ranges[name].check(value, f"{self.name}: {name}")

    def update_term(self, ptypes: Mapping[str, ArrayType] | None = None) -> Term:
        """``(state, params, updates, hyper) -> (state', updates')`` as a term; a chain's is the
        composite of its parts' (each gets the previous one's updates and the same params).

        Args:
            ptypes: the parameters' types by name; ``None`` (default) for one float32 scalar
                parameter ``"w"``.

        Returns:
            The update :class:`~paralens.Term`, named ``"update(<name>)"``.

        Raises:
            StateFieldError: a :class:`Leaf`'s update, traced for these parameters, returns a state
                other than the one it declares.
            TypeError: a :class:`Leaf`'s update returns no update for some parameter.
            KeyError: a weight-decay ``mask`` does not say whether to decay some parameter.
        """
        b, ins = self._inputs(dict(ptypes or DEFAULT_PARAMS))
        new_s, u = self._emit(b, *ins)
        return b.build(leaves(ins), leaves((new_s, u)), in_sig=sig_of(ins), out_sig=sig_of((new_s, u)),
                       name=f"update({self.name})",
                       arg_names=(("state", "", "g{}", ""), ("state'", "u{}")))

    def _inputs(self, ptypes: dict):
        """A builder with the update's inputs ``(state, params, updates, hyper)``."""
        b = Builder()
        ins = (b.inputs(_types(self.state(ptypes))), b.inputs(ptypes), b.inputs(ptypes),
               b.inputs({k: hyper_type(ptypes.values()) for k in self.hyper}))
        return b, ins

    def _emit_put(self, b: Builder, s, p, g, h, ptypes):
        """Emit the put: the update, then ``params + updates`` in each parameter's dtype."""
        new_s, u = self._emit(b, s, p, g, h)
        return new_s, {n: _as_dtype(b, P.add(b, w, u[n]), ptypes[n]) for n, w in p.items()}

    def term(self, ptypes: Mapping[str, ArrayType] | None = None) -> Term:
        """The optimizer lens's *put*: ``(state, params, grads, hyper) -> (state', params')``,
        with ``params' = params + updates`` cast back to each parameter's dtype (as
        ``optax.apply_updates``). Without ``ptypes``, for one scalar parameter ``"w"``.

        Args:
            ptypes: the parameters' types by name; ``None`` (default) for one float32 scalar
                parameter ``"w"``.

        Returns:
            The put as a :class:`~paralens.Term` named after the transform.

        Raises:
            StateFieldError: a :class:`Leaf`'s update, traced for these parameters, returns a state
                other than the one it declares.
            TypeError: a :class:`Leaf`'s update returns no update for some parameter.
            KeyError: a weight-decay ``mask`` does not say whether to decay some parameter.
        """
        ptypes = dict(ptypes or DEFAULT_PARAMS)
        b, ins = self._inputs(ptypes)
        new_s, new_p = self._emit_put(b, *ins, ptypes)
        return b.build(leaves(ins), leaves((new_s, new_p)), in_sig=sig_of(ins), out_sig=sig_of((new_s, new_p)),
                       name=self.name, arg_names=(("state", "", "d{}", ""), ("state'", "{}'")))

    def _repr_svg_(self) -> str:  # Jupyter shows it as its diagram
        return self.as_term()._repr_svg_()

    def as_term(self) -> Term:
        """:meth:`term` for one scalar parameter (what diagrams and formulas show).

        Returns:
            ``self.term()``: the put :class:`~paralens.Term` for one float32 scalar parameter ``"w"``.
        """
        return self.term()

    def lens(self, ptypes: Mapping[str, ArrayType] | None = None) -> Lens:
        """The optimizer as a lens ``(S x P x H) -> P``: *get* passes the parameters to the
        model and keeps ``(s, p, h)`` as residuals; *put* turns the parameters' cotangents
        into ``(s', p', h)``.

        Args:
            ptypes: the parameters' types by name; ``None`` (default) for one float32 scalar
                parameter ``"w"``.

        Returns:
            The :class:`~paralens.Lens` named after the transform, its put the same computation as :meth:`term`.

        Raises:
            StateFieldError: a :class:`Leaf`'s update, traced for these parameters, returns a state
                other than the one it declares.
            TypeError: a :class:`Leaf`'s update returns no update for some parameter.
            KeyError: a weight-decay ``mask`` does not say whether to decay some parameter.
        """
        ptypes = dict(ptypes or DEFAULT_PARAMS)
        rb, (s, p, g, h) = self._inputs(ptypes)
        new_s, new_p = self._emit_put(rb, s, p, g, h, ptypes)  # the put, emitted where it runs
        rev = rb.build(leaves((s, p, h)) + list(g.values()), leaves((new_s, new_p)) + list(h.values()),
                       name=f"put({self.name})")
        b = Builder()
        s, p, h = (b.inputs(tree_map(rb.type_of, t)) for t in (s, p, h))
        res = leaves((s, p, h))
        fwd = b.build(res, list(p.values()) + res, name=f"get({self.name})")
        return Lens(fwd, rev, len(res), self.name)


class Leaf(Transform):
    """A transform declared in one place: its hyperparameters, its state and its update.

    Args:
        name: what it is called (``"scale_by_adam"``).
        hyper: its hyperparameters, each a :class:`Hyper` (name, default, range); every
            default is checked against its range here.
        state: its state: a :class:`State` of named fields, or a function of the parameters'
            types giving a tree of :class:`StateSpec` (``from_optax``'s leaves).
        update: ``update(h, s, params, updates) -> (new_state, new_updates)``, written with
            wires: ``h`` the hyperparameters by name, ``s`` the state, ``params`` and
            ``updates`` dicts by parameter name.
        extra: names of inputs given at each update, read as ``h[name]`` beside the
            hyperparameters (optax's extra arguments: ``"value"``, the loss, for :func:`scale_by_polyak`).

    Raises:
        StateFieldError: (a ``TypeError``) the update returns a state field its state does not
            declare, or misses a declared one; checked when the transform is made, by
            tracing the update for one scalar parameter (and again for each model).
        TypeError: ``update`` is not a function, ``state`` is not callable, or a default is not a
            number; also, when a term is built, the update returns no update for some parameter.
        ValueError: a hyperparameter's default is outside its range or not finite, or two
            hyperparameters have the same name.

    >>> import paralens as pl
    >>> from paralens.optim import Leaf, Hyper, State, counter, DECAY
    >>> def update(h, s, params, updates):
    ...     return {"count": s["count"] + pl.constant(1, (), "int32", like=s["count"]), "extra": s["count"]}, updates
    >>> Leaf("counting", [Hyper("decay", 0.9, DECAY)], State(count=counter()), update)
    Traceback (most recent call last):
    ...
    paralens.optim.StateFieldError: counting: its update returns the state field state['extra'], which its ...
    """

    def __init__(self, name: str, hyper=(), state: State | Callable = State(), update: Callable | None = None,
                 extra=()):
        if update is None or not callable(update):
            raise TypeError(f"{name}: update must be a function update(h, s, params, updates), got {update!r}")
        if not callable(state):
            raise TypeError(f"{name}: state must be a State(...) of fields, got {state!r}")
        hyper = list(hyper) + [Hyper(k, 0.0) for k in extra]
        names = [h.name for h in hyper]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: a hyperparameter is declared twice: {names}")
        self.name = name
        self.hyper = {h.name: h.range.check(h.value, f"{name}: {h.name}") for h in hyper}
        self.ranges = {h.name: h.range for h in hyper}
        self.extra = frozenset(extra)
        self._state = state
        self._update = update
        self._probe()

    def state(self, ptypes: Mapping[str, ArrayType]):
        """The state's leaves for parameters of types ``ptypes``: a tree of :class:`StateSpec`.

        Args:
            ptypes: the parameters' types by name.

        Returns:
            What the declared state gives for them: for a :class:`State`, the dict of its fields,
            each a :class:`StateSpec` or a dict of them by parameter name.
        """
        return self._state(dict(ptypes))

    def _probe(self):
        """Trace the update once, for one scalar parameter, to refuse an undeclared or missing
        state field now. An update that cannot be traced without the real parameters (a
        weight-decay mask naming them) is checked when it meets them."""
        b, ins = self._inputs(dict(DEFAULT_PARAMS))
        try:
            self._emit(b, *ins)
        except StateFieldError:
            raise
        except (KeyError, ValueError, TypeError):
            pass

    def _emit(self, b: Builder, s_in, p_in, u_in, h_in):
        def wire(w):
            return Wire(b, w)
        with tracing(b):
            s2, u2 = self._update(tree_map(wire, h_in), tree_map(wire, s_in), tree_map(wire, p_in),
                                  tree_map(wire, u_in))
        _same_structure(s2, s_in, self.name)
        missing = sorted(set(u_in) - set(u2))
        if missing:
            raise TypeError(f"{self.name}: its update returns no update for the parameter {missing[0]!r}")
        return _cast_tree(b, s2, tree_map(b.type_of, s_in)), {n: u2[n].id for n in u_in}


class Chain(Transform):
    """Transforms run in order, as ``optax.chain``: each gets the previous one's updates and the
    same params; the state is the tuple of the parts' states. Hyperparameter names stay as
    they are unless two parts share one; then both are prefixed by their position (``"0/eps"``).
    Build it with :func:`chain` or ``>>``.

    Args:
        parts: the transforms, first applied first.

    Raises:
        ValueError: ``parts`` is empty (``chain()`` gives :func:`identity` instead).
        TypeError: a part is not a :class:`Transform`.
    """

    def __init__(self, parts: tuple[Transform, ...]):
        if not parts:
            raise ValueError("a chain needs at least one transform (chain() is identity())")
        for t in parts:
            if not isinstance(t, Transform):
                raise TypeError(f"chain takes pl.optim transforms, got {type(t).__name__}")
        counts: dict[str, int] = {}
        for t in parts:
            for k in t.hyper:
                counts[k] = counts.get(k, 0) + 1
        self.parts = tuple(parts)
        self.part_hyper = tuple({k: (k if counts[k] == 1 else f"{i}/{k}") for k in t.hyper}
                                for i, t in enumerate(parts))
        self.hyper = {self.part_hyper[i][k]: v for i, t in enumerate(parts) for k, v in t.hyper.items()}
        self.ranges = {self.part_hyper[i][k]: r for i, t in enumerate(parts) for k, r in t.ranges.items()}
        self.extra = frozenset(self.part_hyper[i][k] for i, t in enumerate(parts) for k in t.extra)
        self.name = " >> ".join(t.name for t in parts)

    def state(self, ptypes: Mapping[str, ArrayType]):
        """The tuple of the parts' states.

        Args:
            ptypes: the parameters' types by name (every part gets the same).

        Returns:
            A tuple with each part's tree of :class:`StateSpec`, in the parts' order.
        """
        return tuple(t.state(ptypes) for t in self.parts)

    def _emit(self, b: Builder, s_in, p_in, u_in, h_in):
        u, new_s, outer = u_in, [], b.group
        for i, part in enumerate(self.parts):
            b.group = outer + (part.name,)
            s_i, u = part._emit(b, s_in[i], p_in, u, {k: h_in[c] for k, c in self.part_hyper[i].items()})
            new_s.append(s_i)
        b.group = outer
        return tuple(new_s), u


def _as_dtype(b: Builder, w: int, t: ArrayType) -> int:
    """``w`` in ``t``'s dtype (a cast box only when the dtypes differ)."""
    return w if b.type_of(w).dtype == t.dtype else b.emit1(P.CAST, w, dtype=t.dtype)


def _cast_tree(b: Builder, wires, types):
    if isinstance(types, dict):
        return {k: _cast_tree(b, wires[k], t) for k, t in types.items()}
    if isinstance(types, tuple):
        return tuple(_cast_tree(b, w, t) for w, t in zip(wires, types))
    return _as_dtype(b, wires.id, types)


# --------------------------------------------------------------------------- helpers


def _widest(ws: Mapping[str, Wire]) -> str:
    """The widest dtype of the wires (float32 with none)."""
    return promote([w.type for w in ws.values()]) if ws else "float32"


def _lowest(ptypes: Mapping[str, ArrayType]) -> str:
    order = ("float16", "bfloat16", "float32", "float64")
    floats = [t.dtype for t in ptypes.values() if t.dtype in order]
    return min(floats, key=order.index) if floats else "float32"


def _increment(n: Wire) -> Wire:
    return Wire(n.builder, P.increment(n.builder, n.id))  # saturating, as optax's safe_increment


def _as_float(n: Wire, like: Mapping[str, Wire]) -> Wire:
    return W.cast(n, _widest(like))


def _correction(decay: Wire, t: Wire) -> Wire:
    """Bias correction's denominator ``1 - decay ** t`` with ``t`` the incremented count (optax
    ``tree.bias_correction`` divides each moment by it): one scalar a step, built once."""
    return 1.0 - W.power(decay, t)


def _sq_norm(ws: Mapping[str, Wire]) -> Wire:
    total = None
    for w in ws.values():
        s = W.sum(_abs_sq(w)) if w.ndim else _abs_sq(w)
        total = s if total is None else total + s
    return total


def _abs_sq(x: Wire) -> Wire:
    """``|x|**2``: ``x * x``, or ``real(conj(x) * x)`` for a complex ``x`` (optax's ``abs_sq``)."""
    return W.real(W.conj(x) * x) if x.type.dtype in P.COMPLEX else x * x


def _complements(h: dict) -> tuple[Wire, Wire]:
    """``1 - b1`` and ``1 - b2``: emitted once at the top of an update, not once a parameter."""
    return 1.0 - h["b1"], 1.0 - h["b2"]


def _moments(h: dict, one_minus: tuple[Wire, Wire], g: Wire, mu_old: Wire, nu_old: Wire) -> tuple[Wire, Wire]:
    """Adam's moment EMAs, as optax: ``(1 - b1) g + b1 mu`` and ``(1 - b2) g**2 + b2 nu``
    (``one_minus``: the :func:`_complements`)."""
    mu, nu = one_minus[0] * g + h["b1"] * mu_old, one_minus[1] * _abs_sq(g) + h["b2"] * nu_old
    # in the state's dtype before the update reads them (as optax): the update then reads the
    # new state itself, so a narrow state (bfloat16) is not kept alive beside a wide copy
    return _in_dtype(mu, mu_old.type.dtype), _in_dtype(nu, nu_old.type.dtype)


def _in_dtype(x: Wire, dtype: str) -> Wire:
    return x if x.type.dtype == dtype else W.cast(x, dtype)


def _dtype_option(dtype: str | None, what: str) -> str | None:
    """``dtype`` if it is ``None`` or a floating-point or complex dtype name; else a ``ValueError``
    listing them."""
    if dtype is not None and dtype not in P.FLOATS + P.COMPLEX:
        raise ValueError(f"{what}={dtype!r} is not a floating-point dtype; expected None or one of "
                         f"{P.FLOATS + P.COMPLEX}")
    return dtype


# --------------------------------------------------------------------------- combinators


def identity() -> Transform:
    """The transform that changes nothing (``optax.identity``): no state, no hyperparameters.

    Returns:
        A :class:`Leaf` named ``"identity"`` whose update returns the updates as they are.
    """
    return Leaf("identity", update=lambda h, s, p, u: (s, u))


def chain(*transforms: Transform) -> Transform:
    """Run transforms in order, as ``optax.chain`` (see :class:`Chain`); ``chain()`` of nothing
    is :func:`identity`.

    Args:
        *transforms: the transforms, first applied first.

    Returns:
        A :class:`Chain`, or :func:`identity` for none.

    Raises:
        TypeError: an argument is not a transform.

    >>> import paralens as pl
    >>> sorted(pl.optim.chain(pl.optim.scale_by_adam(), pl.optim.scale_by_learning_rate(0.1)).hyper)
    ['b1', 'b2', 'eps', 'eps_root', 'learning_rate']
    >>> pl.optim.chain().name
    'identity'
    """
    return Chain(tuple(transforms)) if transforms else identity()


# --------------------------------------------------------------------------- transforms


def scale_by_learning_rate(learning_rate: float | Schedule = 1e-3, flip_sign: bool = True) -> Transform:
    """``u = -learning_rate * g``: the sign and the step live here, as in optax.

    ``learning_rate`` is a number (a runtime hyperparameter) or a schedule, a
    function of the step count ``lr(count)`` evaluated at the count *before*
    this step (the first step uses ``lr(0)``). The count arrives as a float of
    the parameters' dtype; the schedules below follow optax's own dtypes (its
    polynomial and exponential schedules compute in float32).

    Args:
        learning_rate: the step size (default ``1e-3``), at least 0, or a schedule. A number is the
            hyperparameter ``"learning_rate"``, an input wire that :meth:`~paralens.Learner.set_hyper`
            changes without recompiling; a schedule becomes part of the term and adds no hyperparameter.
        flip_sign: ``True`` (default): ``u = -learning_rate * g``; ``False``: ``u = learning_rate * g``.

    Returns:
        A :class:`Leaf`: ``"scale_by_learning_rate"``, stateless, for a number; ``"scale_by_schedule"``,
        with the state ``{"count"}``, for a schedule.

    Raises:
        TypeError: ``learning_rate`` is neither a number nor callable.
        ValueError: ``learning_rate`` is a negative or non-finite number.
    """
    if callable(learning_rate):
        def scheduled(h, s, params, updates):
            lr = W.cast(learning_rate(_as_float(s["count"], updates)), _widest(updates))
            step = -lr if flip_sign else lr
            return {"count": _increment(s["count"])}, {n: step * g for n, g in updates.items()}
        return Leaf("scale_by_schedule", state=State(count=counter()), update=scheduled)

    def update(h, s, params, updates):
        step = -h["learning_rate"] if flip_sign else h["learning_rate"]  # negated once, as optax's -lr * g
        return {}, {n: step * g for n, g in updates.items()}
    return Leaf("scale_by_learning_rate", [Hyper("learning_rate", learning_rate, NONNEGATIVE)], update=update)


def trace(decay: float = 0.9, nesterov: bool = False, accumulator_dtype: str | None = None) -> Transform:
    """Momentum: ``m = g + decay * m``; ``u = m`` (or ``g + decay * m`` with Nesterov).

    The decay is the runtime hyperparameter ``momentum``; the state is ``{"trace": ...}``.

    Args:
        decay: the momentum coefficient, in ``[0, 1)`` (default 0.9): the hyperparameter ``"momentum"``.
        nesterov: use Nesterov momentum, ``u = g + decay * m``, instead of ``u = m`` (default ``False``).
        accumulator_dtype: the dtype of the ``trace`` arrays; ``None`` (default) keeps each
            parameter's dtype.

    Returns:
        A :class:`Leaf` named ``"trace"``.

    Raises:
        TypeError: ``decay`` is not a number.
        ValueError: ``decay`` is outside ``[0, 1)`` or not finite, or ``accumulator_dtype`` is not
            ``None`` nor a floating-point dtype name (``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``).
    """
    def update(h, s, params, updates):
        m = {n: g + h["momentum"] * s["trace"][n] for n, g in updates.items()}
        out = {n: g + h["momentum"] * m[n] for n, g in updates.items()} if nesterov else m
        return {"trace": m}, out
    accumulator_dtype = _dtype_option(accumulator_dtype, "trace: accumulator_dtype")
    return Leaf("trace", [Hyper("momentum", decay, DECAY)], State(trace=per_param(dtype=accumulator_dtype)), update)


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> Transform:
    """AdaGrad's preconditioner: ``G += g**2``; ``u = g / sqrt(G + eps)`` where ``G > 0``.

    Where ``G`` is 0 the update is 0.

    Args:
        initial_accumulator_value: the value ``G`` starts at, at least 0 (default 0.1, as optax);
            fixed when the transform is made, not a hyperparameter.
        eps: added to ``G`` inside the square root, at least 0 (default ``1e-7``): the
            hyperparameter ``"eps"``.

    Returns:
        A :class:`Leaf` named ``"scale_by_rss"``, with the state ``{"sum_of_squares"}``.

    Raises:
        TypeError: an argument is not a number.
        ValueError: an argument is negative or not finite.
    """
    def update(h, s, params, updates):
        acc, out = {}, {}
        for n, g in updates.items():
            acc[n] = _abs_sq(g) + s["sum_of_squares"][n]
            inv = W.where(W.greater(acc[n], 0.0), 1.0 / W.sqrt(acc[n] + h["eps"]), W.zeros_like(acc[n]))
            out[n] = inv * g
        return {"sum_of_squares": acc}, out
    initial = _initial(initial_accumulator_value, "scale_by_rss: initial_accumulator_value", 0)
    return Leaf("scale_by_rss", [Hyper("eps", eps, NONNEGATIVE)], State(sum_of_squares=per_param(initial)), update)


def _rms_like(centered: bool):
    name = "scale_by_stddev" if centered else "scale_by_rms"

    def make(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False) -> Transform:
        initial_scale = _initial(initial_scale, f"{name}: initial_scale", 0)

        fields = {"count": counter()} if bias_correction else {}
        if centered:
            fields["mu"] = per_param()
        fields["nu"] = per_param(initial_scale)

        def update(h, s, params, updates):
            d = h["decay"]
            new_s, mus, nus, out = {}, {}, {}, {}
            if bias_correction:
                new_s["count"] = _increment(s["count"])
                c = _correction(d, _as_float(new_s["count"], updates))
            for n, g in updates.items():
                nus[n] = nu = (1.0 - d) * _abs_sq(g) + d * s["nu"][n]
                nu_hat = nu / c if bias_correction else nu
                if centered:
                    mus[n] = mu = (1.0 - d) * g + d * s["mu"][n]
                    mu_hat = mu / c if bias_correction else mu
                    nu_hat = nu_hat - _abs_sq(mu_hat)
                scaling = 1.0 / W.sqrt(nu_hat + h["eps"]) if eps_in_sqrt else 1.0 / (W.sqrt(nu_hat) + h["eps"])
                out[n] = scaling * g
            if centered:
                new_s["mu"] = mus
            new_s["nu"] = nus
            return new_s, out
        return Leaf(name, [Hyper("decay", decay, DECAY), Hyper("eps", eps, NONNEGATIVE)], State(**fields), update)
    return make


scale_by_rms = _rms_like(False)
scale_by_rms.__doc__ = """RMSProp's preconditioner, as ``optax.scale_by_rms``.

``nu = decay * nu + (1 - decay) * g**2``; ``u = g / sqrt(nu + eps)``.

Args:
    decay: the decay rate of the moving averages, in ``[0, 1)`` (default 0.9): the hyperparameter
        ``"decay"``.
    eps: at least 0 (default ``1e-8``): the hyperparameter ``"eps"``, added to the second moment inside
        the square root, or to its square root (see ``eps_in_sqrt``).
    initial_scale: the value the second moment ``nu`` starts at, at least 0 (default 0); fixed when the
        transform is made, not a hyperparameter.
    eps_in_sqrt: ``True`` (default): ``u = g / sqrt(nu + eps)``; ``False``: ``u = g / (sqrt(nu) + eps)``.
    bias_correction: divide the moving averages by ``1 - decay**t`` at step ``t``, as Adam does
        (default ``False``); adds ``"count"`` to the state.

Returns:
    A :class:`Leaf` named ``"scale_by_rms"``, with the state ``{"nu"}`` (``{"count", "nu"}`` with
    ``bias_correction``).

Raises:
    TypeError: ``decay``, ``eps`` or ``initial_scale`` is not a number.
    ValueError: ``decay`` is outside ``[0, 1)``, ``eps`` or ``initial_scale`` is negative, or one
        of them is not finite.
"""
scale_by_stddev = _rms_like(True)
scale_by_stddev.__doc__ = """Centred RMSProp's preconditioner, as ``optax.scale_by_stddev``.

As :func:`scale_by_rms`, with ``nu - mu**2`` (an estimate of the gradients' variance) in place of ``nu``,
where ``mu = decay * mu + (1 - decay) * g`` is the moving average of the gradients.

Args:
    decay: the decay rate of the moving averages, in ``[0, 1)`` (default 0.9): the hyperparameter
        ``"decay"``.
    eps: at least 0 (default ``1e-8``): the hyperparameter ``"eps"``, added to the second moment inside
        the square root, or to its square root (see ``eps_in_sqrt``).
    initial_scale: the value the second moment ``nu`` starts at, at least 0 (default 0); fixed when the
        transform is made, not a hyperparameter.
    eps_in_sqrt: ``True`` (default): ``u = g / sqrt(nu + eps)``; ``False``: ``u = g / (sqrt(nu) + eps)``.
    bias_correction: divide the moving averages by ``1 - decay**t`` at step ``t``, as Adam does
        (default ``False``); adds ``"count"`` to the state.

Returns:
    A :class:`Leaf` named ``"scale_by_stddev"``, with the state ``{"mu", "nu"}`` (``{"count", "mu", "nu"}``
    with ``bias_correction``).

Raises:
    TypeError: ``decay``, ``eps`` or ``initial_scale`` is not a number.
    ValueError: ``decay`` is outside ``[0, 1)``, ``eps`` or ``initial_scale`` is negative, or one
        of them is not finite.
"""


def _adam_hyper(b1, b2, eps, eps_root) -> list[Hyper]:
    return [Hyper("b1", b1, DECAY), Hyper("b2", b2, DECAY), Hyper("eps", eps, NONNEGATIVE),
            Hyper("eps_root", eps_root, NONNEGATIVE)]


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  mu_dtype: str | None = None, *, nesterov: bool = False) -> Transform:
    """Adam's preconditioner (Kingma & Ba, Algorithm 1), as ``optax.scale_by_adam``;
    state ``{"count", "mu", "nu"}`` as optax's ``ScaleByAdamState``.

    At step ``t`` (from 1): ``u = mu_hat / (sqrt(nu_hat + eps_root) + eps)`` with the bias-corrected
    moments ``mu_hat = mu / (1 - b1**t)`` and ``nu_hat = nu / (1 - b2**t)``.

    Args:
        b1: the decay rate of the first moment ``mu`` (moving average of the gradients), in ``[0, 1)``
            (default 0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment ``nu`` (moving average of the squared gradients), in
            ``[0, 1)`` (default 0.999): the hyperparameter ``"b2"``.
        eps: added to the square root in the denominator, at least 0 (default ``1e-8``): the
            hyperparameter ``"eps"``.
        eps_root: added to the second moment inside the square root, at least 0 (default 0): the
            hyperparameter ``"eps_root"``; a positive value keeps the derivative of the update finite
            where a bilevel problem differentiates through the optimizer.
        mu_dtype: the dtype of ``mu``; ``None`` (default) keeps each parameter's dtype.
        nesterov: use Nesterov momentum (NAdam): ``mu_hat = b1 * mu / (1 - b1**(t+1)) + (1 - b1) * g / (1 - b1**t)``
            (default ``False``).

    Returns:
        A :class:`Leaf` named ``"scale_by_adam"``, with the hyperparameters ``b1``, ``b2``, ``eps``
        and ``eps_root``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``eps`` or ``eps_root`` is negative, a
            hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a floating-point dtype name.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        c1_next = _correction(h["b1"], t + 1.0) if nesterov else None
        one_minus = _complements(h)
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            mus[n], nus[n] = mu, nu = _moments(h, one_minus, g, s["mu"][n], s["nu"][n])
            if nesterov:
                mu_hat = h["b1"] * (mu / c1_next) + one_minus[0] * (g / c1)
            else:
                mu_hat = mu / c1
            nu_hat = nu / c2
            out[n] = mu_hat / (W.sqrt(nu_hat + h["eps_root"]) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_adam: mu_dtype")
    return Leaf("scale_by_adam", _adam_hyper(b1, b2, eps, eps_root),
                State(count=counter(), mu=per_param(dtype=mu_dtype), nu=per_param()), update)


def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                     mu_dtype: str | None = None, bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> Transform:
    """AMSGrad: Adam with the running maximum of the (bias-corrected) second moment.

    ``u = mu_hat / (sqrt(nu_max + eps_root) + eps)`` where ``nu_max`` is the largest second moment seen
    so far, as ``optax.scale_by_amsgrad``.

    Args:
        b1: the decay rate of the first moment ``mu`` (moving average of the gradients), in ``[0, 1)``
            (default 0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment ``nu`` (moving average of the squared gradients), in
            ``[0, 1)`` (default 0.999): the hyperparameter ``"b2"``.
        eps: added to the square root in the denominator, at least 0 (default ``1e-8``): the
            hyperparameter ``"eps"``.
        eps_root: added to the second moment inside the square root, at least 0 (default 0): the
            hyperparameter ``"eps_root"``; a positive value keeps the derivative of the update finite
            where a bilevel problem differentiates through the optimizer.
        mu_dtype: the dtype of ``mu``; ``None`` (default) keeps each parameter's dtype.
        bias_correction_mu: divide ``mu`` by ``1 - b1**t`` (default ``True``; ``False`` as in the
            AMSGrad paper).
        bias_correction_nu: divide ``nu`` by ``1 - b2**t`` before taking the running maximum (default
            ``True``; ``False`` as in the AMSGrad paper).

    Returns:
        A :class:`Leaf` named ``"scale_by_amsgrad"``, with the state ``{"count", "mu", "nu", "nu_max"}``
        and the hyperparameters ``b1``, ``b2``, ``eps`` and ``eps_root``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``eps`` or ``eps_root`` is negative, a
            hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a floating-point dtype name.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        one_minus = _complements(h)
        mus, nus, maxs, out = {}, {}, {}, {}
        for n, g in updates.items():
            mus[n], nus[n] = mu, nu = _moments(h, one_minus, g, s["mu"][n], s["nu"][n])
            mu_hat = mu / c1 if bias_correction_mu else mu
            nu_eff = nu / c2 if bias_correction_nu else nu
            maxs[n] = W.maximum(s["nu_max"][n], nu_eff)
            out[n] = mu_hat / (W.sqrt(maxs[n] + h["eps_root"]) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus, "nu_max": maxs}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_amsgrad: mu_dtype")
    return Leaf("scale_by_amsgrad", _adam_hyper(b1, b2, eps, eps_root),
                State(count=counter(), mu=per_param(dtype=mu_dtype), nu=per_param(), nu_max=per_param()), update)


def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, mu_dtype: str | None = None, *,
                   nesterov: bool = False, use_clipping: bool = True,
                   clip_value_fn: Callable[[Wire], Wire] = lambda x: x ** 0.25) -> Transform:
    """ADOPT (arXiv 2411.02853), as ``optax.contrib.scale_by_adopt``: the gradient is
    normalised by the *previous* second moment; the first step only records it.

    ``z = g / max(sqrt(nu), eps)`` with the second moment ``nu`` of the steps before, clipped to
    ``[-clip_value_fn(count), clip_value_fn(count)]``; ``mu = b1 * mu + (1 - b1) * z``; ``u = mu``.
    The first step's update is zero.

    Args:
        b1: the decay rate of ``mu``, the moving average of the normalised gradients ``z``, in
            ``[0, 1)`` (default 0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of ``nu``, the moving average of the squared gradients, in ``[0, 1)``
            (default 0.9999): the hyperparameter ``"b2"``.
        eps: the least value of ``sqrt(nu)`` in the normalisation, at least 0 (default ``1e-6``): the
            hyperparameter ``"eps"``.
        mu_dtype: the dtype of ``mu``; ``None`` (default) keeps each parameter's dtype.
        nesterov: use Nesterov momentum, ``u = b1 * mu + (1 - b1) * z`` (default ``False``).
        use_clipping: clip ``z`` (default ``True``, as optax).
        clip_value_fn: the clipping bound as a function of the number of steps already taken (a
            float wire), written with wire arithmetic so that it becomes part of the term; default
            ``count ** 0.25``.

    Returns:
        A :class:`Leaf` named ``"scale_by_adopt"``, with the state ``{"count", "mu", "nu"}`` and the
        hyperparameters ``b1``, ``b2`` and ``eps``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``eps`` is negative, a hyperparameter is
            not finite, or ``mu_dtype`` is not ``None`` nor a floating-point dtype name.
    """
    def update(h, s, params, updates):
        c = _as_float(s["count"], updates)
        started = W.greater(c, 0.0)
        b2_ = W.where(started, h["b2"], W.zeros_like(h["b2"]))
        b1_ = W.where(started, h["b1"], W.zeros_like(h["b1"]) + 1.0)
        clip_value = clip_value_fn(c) if use_clipping else None
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            nu_old = s["nu"][n]
            nus[n] = (1.0 - b2_) * (g * g) + b2_ * nu_old
            z = g / W.maximum(W.sqrt(nu_old), h["eps"])
            if use_clipping:
                z = W.clip(z, -clip_value, clip_value)
            mus[n] = mu = (1.0 - b1_) * z + b1_ * s["mu"][n]
            out[n] = (1.0 - b1_) * z + b1_ * mu if nesterov else mu
        return {"count": _increment(s["count"]), "mu": mus, "nu": nus}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_adopt: mu_dtype")
    return Leaf("scale_by_adopt", [Hyper("b1", b1, DECAY), Hyper("b2", b2, DECAY), Hyper("eps", eps, NONNEGATIVE)],
                State(count=counter(), mu=per_param(dtype=mu_dtype), nu=per_param()), update)


def scale_by_dog(init_step: tuple[str, float] = ("heuristic", 1e-6), eps: float = 1e-8) -> Transform:
    """Distance over Gradients (arXiv 2302.12022), as ``optax.contrib.scale_by_dog``:
    step size ``max_dist / sqrt(sum of squared gradient norms + eps)``.

    ``max_dist`` is the largest distance of the parameters from their initial values so far (at
    least the initial estimate set by ``init_step``); the update is that step size times the gradient.

    Args:
        init_step: ``(kind, value)``, how the first step is sized (default ``("heuristic", 1e-6)``).
            ``"distance"``: the initial distance estimate is ``value`` (> 0); ``"heuristic"``: it is
            ``value * (1 + ||p0||)`` (``value`` > 0), ``||p0||`` the global norm of the initial
            parameters; ``"learning_rate"``: the first step uses the step size ``value`` (at least 0),
            and the distance estimate starts at 0.
        eps: added to the sum of squared gradient norms under the square root, at least 0 (default
            ``1e-8``): the hyperparameter ``"eps"``.

    Returns:
        A :class:`Leaf` named ``"scale_by_dog"``, with the state
        ``{"is_init_step", "init_params", "max_dist", "sum_sq_norm_grads"}``; ``init_params`` starts as a
        copy of the initial parameters.

    Raises:
        TypeError: ``init_step`` is not a pair, or its value or ``eps`` is not a number.
        ValueError: the kind of ``init_step`` is none of ``"distance"``, ``"heuristic"`` and
            ``"learning_rate"``; its value is out of the range above or not finite; or ``eps`` is
            negative or not finite.
    """
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise TypeError(f"scale_by_dog: init_step must be a pair (kind, value), got {init_step!r}")
    kind, value = init_step
    if kind not in ("distance", "heuristic", "learning_rate"):
        raise ValueError(f"invalid init_step type {kind!r}: use 'distance', 'heuristic' or 'learning_rate'")
    # a zero initial distance would leave DoG's step size at zero for good; a learning rate may be zero
    value = real(value, f"scale_by_dog: init_step value ({kind})", 0, open_low=kind != "learning_rate")

    def r_epsilon(params):
        if kind == "distance":
            return value
        if kind == "learning_rate":
            return 0.0
        return value * (1.0 + math.sqrt(sum(float((p * p).sum()) for p in params.values())))

    def update(h, s, params, updates):
        diff = {n: s["init_params"][n] - p for n, p in params.items()}
        max_dist = W.maximum(s["max_dist"], W.sqrt(_sq_norm(diff)))
        sum_sq = s["sum_sq_norm_grads"] + _sq_norm(updates)
        lr = max_dist / W.sqrt(sum_sq + h["eps"])
        if kind == "learning_rate":
            lr = W.where(s["is_init_step"], W.zeros_like(lr) + value, lr)
        new_s = {"is_init_step": W.zeros_like(s["is_init_step"]), "init_params": dict(s["init_params"]),
                 "max_dist": max_dist, "sum_sq_norm_grads": sum_sq}
        return new_s, {n: lr * g for n, g in updates.items()}
    return Leaf("scale_by_dog", [Hyper("eps", eps, NONNEGATIVE)],
                State(is_init_step=scalar("bool", 1), init_params=per_param("params"),
                      max_dist=scalar(_lowest, r_epsilon), sum_sq_norm_grads=scalar(_lowest, 0.0)), update)


def add_decayed_weights(weight_decay: float = 0.0, mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """Decoupled weight decay: ``u = g + weight_decay * p`` on the parameters ``mask`` selects.

    ``mask`` is a dict ``{name: bool}`` or a function of the dict
    ``{name: ArrayType}`` returning one (e.g. ``lambda t: {n: a.ndim > 1 for n, a in t.items()}``).

    Args:
        weight_decay: the decay coefficient, at least 0 (default 0): the hyperparameter ``"weight_decay"``.
        mask: which parameters decay; ``None`` (default) for all. It must name every parameter: one
            it does not name raises ``KeyError`` when the term is built for those parameters.

    Returns:
        A :class:`Leaf` named ``"add_decayed_weights"``, without state.

    Raises:
        TypeError: ``weight_decay`` is not a number.
        ValueError: ``weight_decay`` is negative or not finite.
    """
    def update(h, s, params, updates):
        selected = _decay_mask(mask, {n: p.type for n, p in params.items()})
        return s, {n: (g + h["weight_decay"] * params[n]) if selected[n] else g for n, g in updates.items()}
    return Leaf("add_decayed_weights", [Hyper("weight_decay", weight_decay, NONNEGATIVE)], update=update)


def _decay_mask(mask, ptypes) -> dict[str, bool]:
    if mask is None or isinstance(mask, bool):
        return dict.fromkeys(ptypes, mask is None or mask)
    m = mask(ptypes) if callable(mask) else mask
    missing = set(ptypes) - set(m)
    if missing:
        raise KeyError(f"the mask does not say whether to decay {sorted(missing)}")
    return {n: bool(m[n]) for n in ptypes}


def clip_by_global_norm(max_norm: float) -> Transform:
    """Scale all updates by ``max_norm / ||g||`` when the global norm ``||g||`` reaches ``max_norm``.

    ``||g||`` is the square root of the sum of the squared updates of all parameters.

    Args:
        max_norm: the largest global norm left as it is, at least 0: the hyperparameter ``"max_norm"``.

    Returns:
        A :class:`Leaf` named ``"clip_by_global_norm"``, without state.

    Raises:
        TypeError: ``max_norm`` is not a number.
        ValueError: ``max_norm`` is negative or not finite.
    """
    def update(h, s, params, updates):
        norm = W.sqrt(_sq_norm(updates))
        below = W.greater(h["max_norm"] + W.zeros_like(norm), norm)
        return s, {n: W.where(below, g, (g / norm) * h["max_norm"]) for n, g in updates.items()}
    return Leaf("clip_by_global_norm", [Hyper("max_norm", max_norm, NONNEGATIVE)], update=update)


# --------------------------------------------------------------------------- optimizers (optax aliases)


def sgd(learning_rate: float | Schedule = 1e-2, momentum: float | None = None, nesterov: bool = False,
        accumulator_dtype: str | None = None) -> Transform:
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as ``optax.sgd``.

    Args:
        learning_rate: the step size (default ``1e-2``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        momentum: the momentum coefficient, in ``[0, 1)``: the hyperparameter ``"momentum"``; ``None``
            (default) for plain gradient descent, without state.
        nesterov: with momentum, use Nesterov momentum (default ``False``).
        accumulator_dtype: with momentum, the dtype of the momentum trace; ``None`` (default) keeps
            each parameter's dtype.

    Returns:
        A :class:`Chain`: :func:`trace` (when ``momentum`` is given), then :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``learning_rate`` is negative, ``momentum`` is outside ``[0, 1)``, a hyperparameter is
            not finite, or, with momentum, ``accumulator_dtype`` is not ``None`` nor a floating-point dtype name.
    """
    steps = [trace(momentum, nesterov, accumulator_dtype)] if momentum is not None else []
    return chain(*steps, scale_by_learning_rate(learning_rate))


def momentum(learning_rate: float | Schedule = 1e-2, momentum: float = 0.9) -> Transform:  # noqa: F811
    """Heavy-ball momentum: ``sgd(learning_rate, momentum)``.

    Args:
        learning_rate: the step size (default ``1e-2``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        momentum: the momentum coefficient, in ``[0, 1)`` (default 0.9): the hyperparameter ``"momentum"``.

    Returns:
        ``sgd(learning_rate, momentum)``: a :class:`Chain` of :func:`trace` and
        :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``learning_rate`` is negative, ``momentum`` is outside ``[0, 1)``, or a
            hyperparameter is not finite.
    """
    return sgd(learning_rate, momentum)


def nesterov(learning_rate: float | Schedule = 1e-2, momentum: float = 0.9) -> Transform:
    """Nesterov momentum: ``sgd(learning_rate, momentum, nesterov=True)``.

    Args:
        learning_rate: the step size (default ``1e-2``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        momentum: the momentum coefficient, in ``[0, 1)`` (default 0.9): the hyperparameter ``"momentum"``.

    Returns:
        ``sgd(learning_rate, momentum, nesterov=True)``: a :class:`Chain` of :func:`trace` and
        :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``learning_rate`` is negative, ``momentum`` is outside ``[0, 1)``, or a
            hyperparameter is not finite.
    """
    return sgd(learning_rate, momentum, nesterov=True)


def adagrad(learning_rate: float | Schedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> Transform:
    """AdaGrad, as ``optax.adagrad`` (``eps`` inside the square root, accumulator from 0.1).

    Args:
        learning_rate: the step size, at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        initial_accumulator_value: the value the sum of squared gradients starts at, at least 0
            (default 0.1); fixed when the optimizer is made, not a hyperparameter.
        eps: added to the sum of squared gradients inside the square root, at least 0 (default
            ``1e-7``): the hyperparameter ``"eps"``.

    Returns:
        A :class:`Chain`: :func:`scale_by_rss`, then :func:`scale_by_learning_rate`.

    Raises:
        TypeError: an argument other than a schedule is not a number.
        ValueError: a number argument is negative or not finite.
    """
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


def rmsprop(learning_rate: float | Schedule, decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
            eps_in_sqrt: bool = True, centered: bool = False, momentum: float | None = None,
            nesterov: bool = False, bias_correction: bool = False) -> Transform:
    """RMSProp (plain or centred), as ``optax.rmsprop``; momentum traces the scaled steps.

    Args:
        learning_rate: the step size, at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        decay: the decay rate of the moving average of the squared gradients, in ``[0, 1)`` (default
            0.9): the hyperparameter ``"decay"``.
        eps: at least 0 (default ``1e-8``): the hyperparameter ``"eps"``, added to the second moment
            inside the square root, or to its square root (see ``eps_in_sqrt``).
        initial_scale: the value the second moment starts at, at least 0 (default 0); fixed when
            the optimizer is made, not a hyperparameter.
        eps_in_sqrt: ``True`` (default): divide by ``sqrt(nu + eps)``; ``False``: by ``sqrt(nu) + eps``.
        centered: subtract the squared moving average of the gradients from the second moment
            (:func:`scale_by_stddev` instead of :func:`scale_by_rms`; default ``False``).
        momentum: the coefficient of a momentum trace of the scaled steps, in ``[0, 1)``: the
            hyperparameter ``"momentum"``; ``None`` (default) for none.
        nesterov: with momentum, use Nesterov momentum (default ``False``).
        bias_correction: divide the moving averages by ``1 - decay**t`` at step ``t`` (default ``False``).

    Returns:
        A :class:`Chain`: :func:`scale_by_rms` (:func:`scale_by_stddev` when ``centered``), then
        :func:`scale_by_learning_rate`, then :func:`trace` when ``momentum`` is given.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``decay`` or ``momentum`` is outside ``[0, 1)``, ``learning_rate``, ``eps`` or
            ``initial_scale`` is negative, or one of them is not finite.
    """
    pre = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    post = [trace(momentum, nesterov)] if momentum is not None else []
    return chain(pre, scale_by_learning_rate(learning_rate), *post)


def adam(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, mu_dtype: str | None = None, *, nesterov: bool = False) -> Transform:
    """Adam, as ``optax.adam``: ``scale_by_adam(...) >> scale_by_learning_rate(lr)``.

    Args:
        learning_rate: the step size (default ``1e-3``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        b1: the decay rate of the first moment (moving average of the gradients), in ``[0, 1)`` (default
            0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment (moving average of the squared gradients), in
            ``[0, 1)`` (default 0.999): the hyperparameter ``"b2"``.
        eps: added to the square root in the denominator, at least 0 (default ``1e-8``): the
            hyperparameter ``"eps"``.
        eps_root: added to the second moment inside the square root, at least 0 (default 0): the
            hyperparameter ``"eps_root"``; a positive value keeps the derivative of the update finite
            where a bilevel problem differentiates through the optimizer.
        mu_dtype: the dtype of the first moment; ``None`` (default) keeps each parameter's dtype.
        nesterov: use Nesterov momentum (NAdam; default ``False``).

    Returns:
        A :class:`Chain`: :func:`scale_by_adam`, then :func:`scale_by_learning_rate`; its hyperparameters
        are ``b1``, ``b2``, ``eps``, ``eps_root`` and ``learning_rate`` (no ``learning_rate`` for a schedule).

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``learning_rate``, ``eps`` or ``eps_root`` is
            negative, a hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a
            floating-point dtype name.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, mu_dtype: str | None = None, weight_decay: float = 1e-4,
          mask: Mapping[str, bool] | Callable | None = None, *, nesterov: bool = False) -> Transform:
    """AdamW (decoupled weight decay, multiplied by the learning rate), as ``optax.adamw``.

    Args:
        learning_rate: the step size (default ``1e-3``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        b1: the decay rate of the first moment (moving average of the gradients), in ``[0, 1)`` (default
            0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment (moving average of the squared gradients), in
            ``[0, 1)`` (default 0.999): the hyperparameter ``"b2"``.
        eps: added to the square root in the denominator, at least 0 (default ``1e-8``): the
            hyperparameter ``"eps"``.
        eps_root: added to the second moment inside the square root, at least 0 (default 0): the
            hyperparameter ``"eps_root"``; a positive value keeps the derivative of the update finite
            where a bilevel problem differentiates through the optimizer.
        mu_dtype: the dtype of the first moment; ``None`` (default) keeps each parameter's dtype.
        weight_decay: the decay coefficient, at least 0 (default ``1e-4``): the hyperparameter
            ``"weight_decay"``; ``weight_decay * p`` is added to Adam's update, then both are scaled
            by the learning rate.
        mask: which parameters decay: ``None`` (default) for all, a dict ``{name: bool}``, or a
            function of the dict ``{name: ArrayType}`` returning one (see :func:`add_decayed_weights`).
        nesterov: use Nesterov momentum (NAdam; default ``False``).

    Returns:
        A :class:`Chain`: :func:`scale_by_adam`, :func:`add_decayed_weights`, then
        :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``learning_rate``, ``eps``, ``eps_root`` or
            ``weight_decay`` is negative, a hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a
            floating-point dtype name.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


def amsgrad(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_root: float = 0.0, mu_dtype: str | None = None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> Transform:
    """AMSGrad, as ``optax.amsgrad``.

    Args:
        learning_rate: the step size (default ``1e-3``), at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        b1: the decay rate of the first moment (moving average of the gradients), in ``[0, 1)`` (default
            0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment (moving average of the squared gradients), in
            ``[0, 1)`` (default 0.999): the hyperparameter ``"b2"``.
        eps: added to the square root in the denominator, at least 0 (default ``1e-8``): the
            hyperparameter ``"eps"``.
        eps_root: added to the second moment inside the square root, at least 0 (default 0): the
            hyperparameter ``"eps_root"``; a positive value keeps the derivative of the update finite
            where a bilevel problem differentiates through the optimizer.
        mu_dtype: the dtype of the first moment; ``None`` (default) keeps each parameter's dtype.
        bias_correction_mu: divide the first moment by ``1 - b1**t`` (default ``True``; ``False`` as in
            the AMSGrad paper).
        bias_correction_nu: divide the second moment by ``1 - b2**t`` before taking its running
            maximum (default ``True``; ``False`` as in the AMSGrad paper).

    Returns:
        A :class:`Chain`: :func:`scale_by_amsgrad`, then :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``learning_rate``, ``eps`` or ``eps_root`` is
            negative, a hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a
            floating-point dtype name.
    """
    return chain(scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu),
                 scale_by_learning_rate(learning_rate))


def adopt(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6,
          mu_dtype: str | None = None, *, nesterov: bool = False, use_clipping: bool = True,
          clip_value_fn: Callable[[Wire], Wire] = lambda x: x ** 0.25) -> Transform:
    """ADOPT, as ``optax.contrib.adopt`` (its first update is zero).

    Args:
        learning_rate: the step size, at least 0: a number, the hyperparameter
            ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without recompiling, or
            a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        b1: the decay rate of the moving average of the normalised gradients, in ``[0, 1)`` (default
            0.9): the hyperparameter ``"b1"``.
        b2: the decay rate of the second moment, in ``[0, 1)`` (default 0.9999): the hyperparameter ``"b2"``.
        eps: the least value of the square root of the second moment in the normalisation, at
            least 0 (default ``1e-6``): the hyperparameter ``"eps"``.
        mu_dtype: the dtype of the first moment; ``None`` (default) keeps each parameter's dtype.
        nesterov: use Nesterov momentum (default ``False``).
        use_clipping: clip the normalised gradients (default ``True``).
        clip_value_fn: the clipping bound as a function of the number of steps already taken (a
            float wire); default ``count ** 0.25`` (see :func:`scale_by_adopt`).

    Returns:
        A :class:`Chain`: :func:`scale_by_adopt`, then :func:`scale_by_learning_rate`.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``b1`` or ``b2`` is outside ``[0, 1)``, ``learning_rate`` or ``eps`` is negative, a
            hyperparameter is not finite, or ``mu_dtype`` is not ``None`` nor a floating-point dtype name.
    """
    return chain(scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping,
                                clip_value_fn=clip_value_fn), scale_by_learning_rate(learning_rate))


def dog(learning_rate: float | Schedule = 1.0, init_step: tuple[str, float] = ("heuristic", 1e-6),
        eps: float = 1e-8, weight_decay: float | None = None,
        mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """DoG, as ``optax.contrib.dog`` (v0.2.6+ ``init_step`` semantics).

    Initialise it with the real initial parameters: it measures distances from them.

    Args:
        learning_rate: a factor on DoG's step size (default 1.0), at least 0: a number, the
            hyperparameter ``"learning_rate"`` that :meth:`~paralens.Learner.set_hyper` changes without
            recompiling, or a schedule, a function of the step count (see :func:`scale_by_learning_rate`).
        init_step: ``(kind, value)``, how the first step is sized (default ``("heuristic", 1e-6)``);
            see :func:`scale_by_dog`.
        eps: added to the sum of squared gradient norms under the square root, at least 0 (default
            ``1e-8``): the hyperparameter ``"eps"``.
        weight_decay: ``None`` (default) for no weight decay; else the coefficient, at least 0, of
            ``weight_decay * p`` added to the gradients before DoG scales them: the hyperparameter
            ``"weight_decay"``.
        mask: with ``weight_decay``, which parameters decay (see :func:`add_decayed_weights`);
            ``None`` (default) for all.

    Returns:
        A :class:`Chain`: :func:`add_decayed_weights` (when ``weight_decay`` is given), :func:`scale_by_dog`,
        then :func:`scale_by_learning_rate`.

    Raises:
        TypeError: ``init_step`` is not a pair, or a hyperparameter or its value is not a number.
        ValueError: the kind of ``init_step`` is unknown or its value out of range (see
            :func:`scale_by_dog`), ``learning_rate``, ``eps`` or ``weight_decay`` is negative, or a
            number is not finite.
    """
    first = [add_decayed_weights(weight_decay, mask)] if weight_decay is not None else []
    return chain(*first, scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------- more of optax's optimizers
# Each transform follows the optax function of the same name (v0.2.8): its state fields, the
# order of its operations and its defaults; each alias chains them as optax's alias does.


def _norm(w: Wire) -> Wire:
    """The Euclidean norm of all of ``w``'s elements (``jnp.linalg.norm``)."""
    return W.sqrt(W.sum(_abs_sq(w)) if w.ndim else _abs_sq(w))


def _safe_norm(w: Wire, min_norm: Wire) -> Wire:
    """``||w||``, or ``min_norm`` where ``||w|| <= min_norm`` (``optax.safe_norm``): the square
    root never sees 0 unless ``min_norm`` does, so its derivative stays finite."""
    sq = W.sum(_abs_sq(w)) if w.ndim else _abs_sq(w)
    small = W.greater(min_norm * min_norm, sq) + W.equal(min_norm * min_norm, sq)
    return W.where(small, min_norm, W.sqrt(W.where(small, 1.0, sq)))


def scale(step_size: float) -> Transform:
    """``u = step_size * g`` (``optax.scale``).

    Args:
        step_size: the factor: the hyperparameter ``"step_size"``, any finite number.

    Returns:
        A stateless :class:`Leaf` named ``"scale"``.

    Raises:
        TypeError: ``step_size`` is not a number.
        ValueError: ``step_size`` is not finite.
    """
    return Leaf("scale", [Hyper("step_size", step_size)],
                update=lambda h, s, p, u: (s, {n: h["step_size"] * g for n, g in u.items()}))


def scale_by_sign() -> Transform:
    """``u = sign(g)`` (``optax.scale_by_sign``).

    Returns:
        A stateless :class:`Leaf` named ``"scale_by_sign"``, without hyperparameters.
    """
    return Leaf("scale_by_sign", update=lambda h, s, p, u: (s, {n: W.sign(g) for n, g in u.items()}))


def ema(decay: float, debias: bool = True, accumulator_dtype: str | None = None) -> Transform:
    """Exponential moving average of the updates (``optax.ema``): ``m = (1 - decay) g + decay m``;
    ``u = m``, or ``m / (1 - decay**t)`` with ``debias``.

    Args:
        decay: in ``[0, 1)``: the hyperparameter ``"decay"``.
        debias: divide by ``1 - decay**t`` at step ``t`` (default ``True``).
        accumulator_dtype: the dtype of ``ema``; ``None`` (default) keeps each parameter's.

    Returns:
        A :class:`Leaf` named ``"ema"``, with the state ``{"count", "ema"}``.

    Raises:
        TypeError: ``decay`` is not a number.
        ValueError: ``decay`` is outside ``[0, 1)``, or ``accumulator_dtype`` is not a floating-point dtype.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        d = h["decay"]
        # the decay in the accumulator's dtype, as optax's Python-float decay times a float32 state
        new = {n: (1.0 - d) * g + _in_dtype(d, s["ema"][n].type.dtype) * s["ema"][n] for n, g in updates.items()}
        kept = {n: _in_dtype(m, s["ema"][n].type.dtype) for n, m in new.items()}  # as optax: the update
        if debias:                                                                 # is the uncast average
            c = _correction(d, _as_float(count, updates))
            return {"count": count, "ema": kept}, {n: m / c for n, m in new.items()}
        return {"count": count, "ema": kept}, new
    accumulator_dtype = _dtype_option(accumulator_dtype, "ema: accumulator_dtype")
    return Leaf("ema", [Hyper("decay", decay, DECAY)], State(count=counter(), ema=per_param(dtype=accumulator_dtype)),
                update)


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """AdaMax (Kingma & Ba, §7.1), as ``optax.scale_by_adamax``: ``nu = max(|g| + eps, b2 nu)``
    (the infinity norm's moment); ``u = mu_hat / nu``.

    Args:
        b1: the first moment's decay, in ``[0, 1)`` (default 0.9).
        b2: the infinity moment's decay, in ``[0, 1)`` (default 0.999).
        eps: added to ``|g|``, at least 0 (default ``1e-8``).

    Returns:
        A :class:`Leaf` named ``"scale_by_adamax"``, with the state ``{"count", "mu", "nu"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, ``eps`` is negative, or one is not finite.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        c1 = _correction(h["b1"], _as_float(count, updates))
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            mus[n] = (1.0 - h["b1"]) * g + h["b1"] * s["mu"][n]
            nus[n] = W.maximum(W.abs(g) + h["eps"], h["b2"] * s["nu"][n])
            out[n] = (mus[n] / c1) / nus[n]
        return {"count": count, "mu": mus, "nu": nus}, out
    return Leaf("scale_by_adamax", [Hyper("b1", b1, DECAY), Hyper("b2", b2, DECAY), Hyper("eps", eps, NONNEGATIVE)],
                State(count=counter(), mu=per_param(), nu=per_param()), update)


def scale_by_lion(b1: float = 0.9, b2: float = 0.99, mu_dtype: str | None = None) -> Transform:
    """Lion (Chen et al. 2023), as ``optax.scale_by_lion``: ``u = sign((1 - b1) g + b1 mu)``,
    then ``mu = (1 - b2) g + b2 mu``.

    Args:
        b1: the interpolation of the update, in ``[0, 1)`` (default 0.9).
        b2: the moment's decay, in ``[0, 1)`` (default 0.99).
        mu_dtype: the dtype of ``mu``; ``None`` (default) keeps each parameter's.

    Returns:
        A :class:`Leaf` named ``"scale_by_lion"``, with the state ``{"count", "mu"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)`` or not finite, or ``mu_dtype`` is not a floating-point dtype.
    """
    def update(h, s, params, updates):
        out, mus = {}, {}
        for n, g in updates.items():
            out[n] = W.sign((1.0 - h["b1"]) * g + h["b1"] * s["mu"][n])
            mus[n] = _in_dtype((1.0 - h["b2"]) * g + h["b2"] * s["mu"][n], s["mu"][n].type.dtype)
        return {"count": _increment(s["count"]), "mu": mus}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_lion: mu_dtype")
    return Leaf("scale_by_lion", [Hyper("b1", b1, DECAY), Hyper("b2", b2, DECAY)],
                State(count=counter(), mu=per_param(dtype=mu_dtype)), update)


def scale_by_yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, eps_root: float = 0.0,
                  initial_accumulator_value: float = 1e-6) -> Transform:
    """Yogi (Zaheer et al. 2018), as ``optax.scale_by_yogi``: Adam with the additive second moment
    ``nu = nu - (1 - b2) sign(nu - g**2) g**2``.

    Args:
        b1: the first moment's decay, in ``[0, 1)`` (default 0.9).
        b2: the second moment's decay, in ``[0, 1)`` (default 0.999).
        eps: added to the square root, at least 0 (default ``1e-3``).
        eps_root: added inside the square root, at least 0 (default 0).
        initial_accumulator_value: where both moments start (default ``1e-6``); not a hyperparameter.

    Returns:
        A :class:`Leaf` named ``"scale_by_yogi"``, with the state ``{"count", "mu", "nu"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, an epsilon is negative, or one is not finite.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            mus[n] = (1.0 - h["b1"]) * g + h["b1"] * s["mu"][n]
            g2, v = _abs_sq(g), s["nu"][n]
            nus[n] = v - (1.0 - h["b2"]) * W.sign(v - g2) * g2
            out[n] = (mus[n] / c1) / (W.sqrt(nus[n] / c2 + h["eps_root"]) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus}, out
    initial = _initial(initial_accumulator_value, "scale_by_yogi: initial_accumulator_value")
    return Leaf("scale_by_yogi", _adam_hyper(b1, b2, eps, eps_root),
                State(count=counter(), mu=per_param(initial), nu=per_param(initial)), update)


def _nesterov_mu_hat(h, mu: Wire, g: Wire, count: Wire, like) -> Wire:
    """optax's Nesterov estimate ``b1 mu / (1 - b1**(t+1)) + (1 - b1) g / (1 - b1**t)``."""
    t = _as_float(count, like)
    return h["b1"] * (mu / _correction(h["b1"], t + 1.0)) + (1.0 - h["b1"]) * (g / _correction(h["b1"], t))


def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *,
                    nesterov: bool = False) -> Transform:
    """AdaBelief (Zhuang et al. 2020), as ``optax.scale_by_belief``: the second moment of the
    prediction error ``g - mu`` (plus ``eps_root``) in place of Adam's ``g**2``.

    Args:
        b1: the first moment's decay, in ``[0, 1)`` (default 0.9).
        b2: the second moment's decay, in ``[0, 1)`` (default 0.999).
        eps: added to the square root, at least 0 (default ``1e-16``).
        eps_root: added to the second moment each step, at least 0 (default ``1e-16``).
        nesterov: Nesterov's estimate of the first moment (default ``False``).

    Returns:
        A :class:`Leaf` named ``"scale_by_belief"``, with the state ``{"count", "mu", "nu"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, an epsilon is negative, or one is not finite.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            mus[n] = mu = (1.0 - h["b1"]) * g + h["b1"] * s["mu"][n]
            e = g - mu
            nus[n] = ((1.0 - h["b2"]) * _abs_sq(e) + h["b2"] * s["nu"][n]) + h["eps_root"]
            mu_hat = _nesterov_mu_hat(h, mu, g, count, updates) if nesterov else mu / c1
            out[n] = mu_hat / (W.sqrt(nus[n] / c2) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus}, out
    return Leaf("scale_by_belief", _adam_hyper(b1, b2, eps, eps_root),
                State(count=counter(), mu=per_param(), nu=per_param()), update)


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                   threshold: float = 5.0, *, nesterov: bool = False) -> Transform:
    """Rectified Adam (Liu et al. 2020), as ``optax.scale_by_radam``: Adam's step times the
    rectification ``r`` once the variance estimate is tractable (``rho >= threshold``), the
    bias-corrected momentum before.

    Args:
        b1: the first moment's decay, in ``[0, 1)`` (default 0.9).
        b2: the second moment's decay, in ``[0, 1)`` (default 0.999).
        eps: added to the square root, at least 0 (default ``1e-8``).
        eps_root: added inside the square root, at least 0 (default 0).
        threshold: the length ``rho`` of the approximated moving average from which the
            rectified step is taken, at least 0 (default 5): the hyperparameter ``"threshold"``.
        nesterov: Nesterov's estimate of the first moment (default ``False``).

    Returns:
        A :class:`Leaf` named ``"scale_by_radam"``, with the state ``{"count", "mu", "nu"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, an epsilon or the threshold is negative, or one is
            not finite.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        ro_inf = 2.0 / (1.0 - h["b2"]) - 1.0
        b2t = W.power(h["b2"], t)
        ro = ro_inf - 2.0 * t * b2t / (1.0 - b2t)
        rectified = W.greater(ro, h["threshold"]) + W.equal(ro, h["threshold"])
        ro_safe = W.where(rectified, ro, ro_inf)  # r's square root and quotient stay finite where not taken
        r = W.sqrt((ro_safe - 4.0) * (ro_safe - 2.0) * ro_inf / ((ro_inf - 4.0) * (ro_inf - 2.0) * ro_safe))
        one_minus = _complements(h)
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            mus[n], nus[n] = mu, nu = _moments(h, one_minus, g, s["mu"][n], s["nu"][n])
            mu_hat = _nesterov_mu_hat(h, mu, g, count, updates) if nesterov else mu / c1
            out[n] = W.where(rectified, r * mu_hat / (W.sqrt(nu / c2 + h["eps_root"]) + h["eps"]), mu_hat)
        return {"count": count, "mu": mus, "nu": nus}, out
    return Leaf("scale_by_radam", [*_adam_hyper(b1, b2, eps, eps_root), Hyper("threshold", threshold, NONNEGATIVE)],
                State(count=counter(), mu=per_param(), nu=per_param()), update)


def scale_by_rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2, min_step_size: float = 1e-6,
                   max_step_size: float = 50.0) -> Transform:
    """Rprop (Riedmiller & Braun 1993), as ``optax.scale_by_rprop``: a step size per element,
    grown by ``eta_plus`` while the gradient keeps its sign and shrunk by ``eta_minus`` when it flips.

    Args:
        learning_rate: where every step size starts, at least 0 (not a hyperparameter: it is the
            state's initial value).
        eta_minus: the factor on a sign flip, at least 0 (default 0.5).
        eta_plus: the factor otherwise, at least 0 (default 1.2).
        min_step_size: the smallest step size, at least 0 (default ``1e-6``).
        max_step_size: the largest step size, at least 0 (default 50).

    Returns:
        A :class:`Leaf` named ``"scale_by_rprop"``, with the state ``{"step_sizes", "prev_updates"}``.

    Raises:
        TypeError: an argument is not a number.
        ValueError: an argument is negative or not finite.
    """
    def update(h, s, params, updates):
        steps, prevs, out = {}, {}, {}
        for n, g in updates.items():
            old = s["prev_updates"][n]
            sg = g * old
            grown = W.clip(s["step_sizes"][n] * W.where(W.greater(sg, 0.0), h["eta_plus"], h["eta_minus"]),
                           h["min_step_size"], h["max_step_size"])
            steps[n] = W.where(W.equal(sg, 0.0), s["step_sizes"][n], grown)
            flipped = W.greater(0.0, sg)
            prevs[n] = W.where(flipped, 0.0, steps[n] * W.sign(g))
            out[n] = W.where(flipped, 0.0, old)  # as optax: the previous step, not this one
        return {"step_sizes": steps, "prev_updates": prevs}, out
    initial = _initial(learning_rate, "scale_by_rprop: learning_rate", 0)
    return Leaf("scale_by_rprop", [Hyper("eta_minus", eta_minus, NONNEGATIVE), Hyper("eta_plus", eta_plus, NONNEGATIVE),
                                   Hyper("min_step_size", min_step_size, NONNEGATIVE),
                                   Hyper("max_step_size", max_step_size, NONNEGATIVE)],
                State(step_sizes=per_param(initial), prev_updates=per_param()), update)


def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> Transform:
    """Optimistic gradient (Daskalakis et al. 2018), as ``optax.scale_by_optimistic_gradient``:
    ``u = (alpha + beta) g - beta g_prev``, with ``g_prev = g`` at the first step.

    Args:
        alpha: the weight of the current gradient (default 1): the hyperparameter ``"alpha"``.
        beta: the weight of the correction (default 1): the hyperparameter ``"beta"``.

    Returns:
        A :class:`Leaf` named ``"scale_by_optimistic_gradient"``, with the state
        ``{"is_initial_step", "previous_gradient"}`` (the first a float flag, 1.0 until the first step).

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a hyperparameter is not finite.
    """
    def update(h, s, params, updates):
        first = s["is_initial_step"]
        out = {n: (h["alpha"] + h["beta"]) * g - h["beta"] * W.where(first, g, s["previous_gradient"][n])
               for n, g in updates.items()}
        return {"is_initial_step": first * 0.0, "previous_gradient": dict(updates)}, out
    return Leaf("scale_by_optimistic_gradient", [Hyper("alpha", alpha), Hyper("beta", beta)],
                State(is_initial_step=scalar(lambda t: _lowest(t), 1.0), previous_gradient=per_param()), update)


def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> Transform:
    """Adan (Xie et al. 2022, Algorithm 1), as ``optax.scale_by_adan``: moments of the gradient,
    of its difference from the previous one, and of their combination's square.

    Args:
        b1: the gradient's moment decay, in ``[0, 1)`` (default 0.98).
        b2: the difference's moment decay, in ``[0, 1)`` (default 0.92).
        b3: the squared moment's decay, in ``[0, 1)`` (default 0.99).
        eps: added to the square root, at least 0 (default ``1e-8``).
        eps_root: added inside the square root, at least 0 (default 0).

    Returns:
        A :class:`Leaf` named ``"scale_by_adan"``, with the state ``{"m", "v", "n", "g", "t"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, an epsilon is negative, or one is not finite.
    """
    def update(h, s, params, updates):
        t = _increment(s["t"])
        tf = _as_float(t, updates)
        c1, c2, c3 = (_correction(h[k], tf) for k in ("b1", "b2", "b3"))
        started = W.greater(s["t"], W.constant(0, (), "int32", like=s["t"]))
        new = {"m": {}, "v": {}, "n": {}, "g": dict(updates), "t": t}
        out = {}
        for k, g in updates.items():
            diff = W.where(started, g - s["g"][k], 0.0)
            new["m"][k] = m = (1.0 - h["b1"]) * g + h["b1"] * s["m"][k]
            new["v"][k] = v = (1.0 - h["b2"]) * diff + h["b2"] * s["v"][k]
            sq = g + (1.0 - h["b2"]) * diff
            new["n"][k] = nn = (1.0 - h["b3"]) * (sq * sq) + h["b3"] * s["n"][k]
            out[k] = (m / c1 + (1.0 - h["b2"]) * (v / c2)) / (W.sqrt(nn / c3 + h["eps_root"]) + h["eps"])
        return new, out
    return Leaf("scale_by_adan", [Hyper("b1", b1, DECAY), Hyper("b2", b2, DECAY), Hyper("b3", b3, DECAY),
                                  Hyper("eps", eps, NONNEGATIVE), Hyper("eps_root", eps_root, NONNEGATIVE)],
                State(m=per_param(), v=per_param(), n=per_param(), g=per_param(), t=counter()), update)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Transform:
    """AdaDelta (Zeiler 2012), as ``optax.scale_by_adadelta``:
    ``u = sqrt(E[dx**2] + eps) / sqrt(E[g**2] + eps) * g``.

    Args:
        rho: the moving averages' decay, in ``[0, 1)`` (default 0.9).
        eps: at least 0 (default ``1e-6``).

    Returns:
        A :class:`Leaf` named ``"scale_by_adadelta"``, with the state ``{"e_g", "e_x"}``.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: ``rho`` is outside ``[0, 1)``, ``eps`` is negative, or one is not finite.
    """
    def update(h, s, params, updates):
        rho = h["rho"]
        e_g, e_x, out = {}, {}, {}
        for n, g in updates.items():
            e_g[n] = (1.0 - rho) * (g * g) + rho * s["e_g"][n]
            out[n] = u = (W.sqrt(s["e_x"][n] + h["eps"]) / W.sqrt(e_g[n] + h["eps"])) * g
            e_x[n] = (1.0 - rho) * (u * u) + rho * s["e_x"][n]
        return {"e_g": e_g, "e_x": e_x}, out
    return Leaf("scale_by_adadelta", [Hyper("rho", rho, DECAY), Hyper("eps", eps, NONNEGATIVE)],
                State(e_g=per_param(), e_x=per_param()), update)


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0,
                         mask: Mapping[str, bool] | Callable | bool | None = None) -> Transform:
    """The layer-wise trust ratio of LARS and LAMB, as ``optax.scale_by_trust_ratio``: each
    parameter's update times ``trust_coefficient ||p|| / (||u|| + eps)`` (1 where either norm is 0).

    Args:
        min_norm: norms below it count as it, at least 0 (default 0).
        trust_coefficient: at least 0 (default 1).
        eps: added to the update's norm, at least 0 (default 0).
        mask: which parameters are scaled (as ``optax.masked``; see :func:`add_decayed_weights`);
            ``None`` (default) or ``True`` for all.

    Returns:
        A stateless :class:`Leaf` named ``"scale_by_trust_ratio"``; it reads the parameters.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a hyperparameter is negative or not finite.
    """
    def update(h, s, params, updates):
        selected = _decay_mask(mask, {n: p.type for n, p in params.items()})
        out = {}
        for n, g in updates.items():
            if not selected[n]:
                out[n] = g
                continue
            pn, un = _safe_norm(params[n], h["min_norm"]), _safe_norm(g, h["min_norm"])
            ratio = h["trust_coefficient"] * pn / (un + h["eps"])
            zero = W.equal(pn, 0.0) + W.equal(un, 0.0)
            out[n] = g * W.where(zero, 1.0, ratio)
        return s, out
    return Leaf("scale_by_trust_ratio", [Hyper("min_norm", min_norm, NONNEGATIVE),
                                         Hyper("trust_coefficient", trust_coefficient, NONNEGATIVE),
                                         Hyper("eps", eps, NONNEGATIVE)], update=update)


def scale_by_novograd(b1: float = 0.9, b2: float = 0.25, eps: float = 1e-8, eps_root: float = 0.0,
                      weight_decay: float = 0.0, mu_dtype: str | None = None) -> Transform:
    """NovoGrad (Ginsburg et al. 2019), as ``optax.scale_by_novograd``: a second moment per layer
    (the squared norm of its gradient), ``mu = b1 mu + g / (sqrt(nu + eps_root) + eps) + wd p``.

    Args:
        b1: the first moment's decay, in ``[0, 1)`` (default 0.9).
        b2: the per-layer second moment's decay, in ``[0, 1)`` (default 0.25).
        eps: added to the square root, at least 0 (default ``1e-8``).
        eps_root: added inside the square root, at least 0 (default 0).
        weight_decay: at least 0 (default 0).
        mu_dtype: the dtype of ``mu``; ``None`` (default) keeps each parameter's.

    Returns:
        A :class:`Leaf` named ``"scale_by_novograd"``, with the state ``{"count", "mu", "nu"}``
        (``nu`` one scalar per parameter); it reads the parameters.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a decay is outside ``[0, 1)``, another hyperparameter is negative, or one is not
            finite, or ``mu_dtype`` is not a floating-point dtype.
    """
    def update(h, s, params, updates):
        count = _increment(s["count"])
        first = W.equal(count, W.constant(1, (), "int32", like=count))
        mus, nus = {}, {}
        for n, g in updates.items():
            sq = _norm(g)
            sq = sq * sq
            nus[n] = nu = W.where(first, sq, (1.0 - h["b2"]) * sq + h["b2"] * s["nu"][n])
            add = g / (W.sqrt(nu + h["eps_root"]) + h["eps"]) + h["weight_decay"] * params[n]
            mus[n] = _in_dtype(W.where(first, add, h["b1"] * s["mu"][n] + add), s["mu"][n].type.dtype)
        return {"count": count, "mu": mus, "nu": nus}, dict(mus)
    mu_dtype = _dtype_option(mu_dtype, "scale_by_novograd: mu_dtype")
    return Leaf("scale_by_novograd", [*_adam_hyper(b1, b2, eps, eps_root),
                                      Hyper("weight_decay", weight_decay, NONNEGATIVE)],
                State(count=counter(), mu=per_param(dtype=mu_dtype), nu=per_param(shape=())), update)


def scale_by_polyak(f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0,
                    variant: str = "sps") -> Transform:
    """The Polyak step size (Loizou et al. 2021), as ``optax.scale_by_polyak``:
    ``u = min((value - f_min) / (||g||**2 + eps), max_learning_rate) g`` (0 where
    ``||g||**2 + eps`` is below float64's epsilon), ``value`` the loss at this step.

    ``value`` is an extra input (``h["value"]``), not a hyperparameter: a
    :class:`~paralens.Learner` wires its loss into it, ``to_optax``'s ``update`` takes it as
    ``update(g, state, params, value=loss)``, as optax's does.

    Args:
        f_min: a lower bound on the loss (default 0): the hyperparameter ``"f_min"``.
        max_learning_rate: the largest step, at least 0 (default 1).
        eps: added to the squared norm, at least 0 (default 0).
        variant: ``"sps"`` (default) or ``"sps+"`` (the gap ``value - f_min`` at least 0).

    Returns:
        A stateless :class:`Leaf` named ``"scale_by_polyak"`` with the extra input ``"value"``.

    Raises:
        ValueError: ``variant`` is neither ``"sps"`` nor ``"sps+"``, or a hyperparameter is out of range.
        TypeError: a hyperparameter is not a number.
    """
    if variant not in ("sps", "sps+"):
        raise ValueError(f"Invalid argument value for Polyak SGD: variant={variant!r}; expected 'sps' or 'sps+'")

    def update(h, s, params, updates):
        sq = _sq_norm(updates)
        gap = W.cast(h["value"] - h["f_min"], sq.type.dtype)
        if variant == "sps+":
            gap = W.relu(gap)
        den = sq + h["eps"]
        tiny = 1.0 - W.greater(den, sys.float_info.epsilon)
        step = W.where(tiny, 0.0, W.minimum(gap / W.where(tiny, 1.0, den), h["max_learning_rate"]))
        return s, {n: step * g for n, g in updates.items()}
    return Leaf("scale_by_polyak", [Hyper("f_min", f_min), Hyper("max_learning_rate", max_learning_rate, NONNEGATIVE),
                                    Hyper("eps", eps, NONNEGATIVE)], update=update, extra=("value",))


def polyak_sgd(max_learning_rate: float = 1.0, scaling: float | Schedule = 1.0, f_min: float = 0.0, eps: float = 0.0,
               variant: str = "sps") -> Transform:
    """SGD with the Polyak step size, as ``optax.polyak_sgd``: :func:`sgd` with learning rate
    ``scaling``, then :func:`scale_by_polyak`.

    Args:
        max_learning_rate: see :func:`scale_by_polyak` (default 1).
        scaling: a factor on the step, a number or a schedule (default 1): the hyperparameter
            ``"learning_rate"``.
        f_min: see :func:`scale_by_polyak`.
        eps: see :func:`scale_by_polyak`.
        variant: see :func:`scale_by_polyak`.

    Returns:
        A :class:`Chain` with the extra input ``"value"`` (the loss).
    """
    return chain(sgd(scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> Transform:
    """SM3 (Anil et al. 2019), as ``optax.scale_by_sm3``: the second moment kept as one cover
    vector per axis; an element's accumulator is the minimum of its covers plus ``g**2``.

    Args:
        b1: the momentum of the scaled update, in ``[0, 1)`` (default 0.9): the hyperparameter ``"b1"``.
        b2: the covers' decay, in ``(0, 1]`` (default 1: they only grow); fixed when the transform
            is made, as optax treats 1 apart.
        eps: added before the inverse square root, at least 0 (default ``1e-8``).

    Returns:
        A :class:`Leaf` named ``"scale_by_sm3"``, with the state ``{"mu", "nu"}``: ``mu`` a tuple of
        vectors per parameter (one per axis), ``nu`` like the parameters.

    Raises:
        TypeError: a hyperparameter is not a number.
        ValueError: a hyperparameter is out of range.

    A scalar parameter has one scalar cover (optax's SM3 needs an axis).
    """
    b2 = real(b2, "scale_by_sm3: b2", 0.0, 1.0, open_low=True)
    coeffs = (1.0 - b2 if b2 != 1.0 else 1.0, b2)

    def update(h, s, params, updates):
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            covers = [W.reshape(v, tuple(g.shape[i] if j == i else 1 for j in range(g.ndim)))
                      for i, v in enumerate(s["mu"][n])] if g.ndim else list(s["mu"][n])
            low = covers[0]
            for c in covers[1:]:
                low = W.minimum(low, c)
            accum = coeffs[0] * (g * g) + coeffs[1] * low
            positive = W.greater(accum, 0.0)
            up = g * W.where(positive, 1.0 / W.sqrt(W.where(positive, accum, 1.0) + h["eps"]), 0.0)
            nus[n] = (1.0 - h["b1"]) * up + h["b1"] * s["nu"][n]
            mus[n] = tuple(accum if g.ndim < 2 else W.max(accum, axis=tuple(j for j in range(g.ndim) if j != i))
                           for i in range(max(g.ndim, 1)))
            out[n] = nus[n]
        return {"mu": mus, "nu": nus}, out
    return Leaf("scale_by_sm3", [Hyper("b1", b1, DECAY), Hyper("eps", eps, NONNEGATIVE)],
                State(mu=per_axis(), nu=per_param()), update)


def sm3(learning_rate: float, momentum: float = 0.9) -> Transform:
    """SM3, as ``optax.sm3``: :func:`scale_by_sm3` then the learning rate.

    Args:
        learning_rate: at least 0: the hyperparameter ``"learning_rate"``.
        momentum: see :func:`scale_by_sm3`'s ``b1`` (default 0.9).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))


def _factored_dims(shape: tuple, factored: bool, min_dim_size_to_factor: int):
    """The two largest axes ``(d1, d0)`` to factor the second moment over, or ``None`` (as optax)."""
    if not factored or len(shape) < 2:
        return None
    order = sorted(range(len(shape)), key=lambda i: shape[i])  # argsort, stable
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return order[-2], order[-1]


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8, step_offset: float = 0,
                          min_dim_size_to_factor: int = 128, epsilon: float = 1e-30) -> Transform:
    """Adafactor's preconditioner (Shazeer & Stern 2018), as ``optax.scale_by_factored_rms``: the
    second moment of a matrix kept as its row and column means (``v_row``, ``v_col``), of a
    smaller parameter in full (``v``), decayed by ``1 - (t - step_offset)**-decay_rate``
    (computed in float32, as optax).

    Args:
        factored: factor the moments of parameters with two axes of at least
            ``min_dim_size_to_factor`` (default ``True``).
        decay_rate: the decay schedule's exponent (default 0.8): the hyperparameter ``"decay_rate"``.
        step_offset: subtracted from the step count (default 0): the hyperparameter ``"step_offset"``.
        min_dim_size_to_factor: the size both factored axes must reach (default 128).
        epsilon: added to ``g**2`` (default ``1e-30``): the hyperparameter ``"epsilon"``.

    Returns:
        A :class:`Leaf` named ``"scale_by_factored_rms"``, with the state ``{"count", "v_row",
        "v_col", "v"}`` (each unused one a vector of one zero, as optax keeps them).

    Raises:
        TypeError: a hyperparameter is not a number, or ``min_dim_size_to_factor`` is not an int.
        ValueError: a hyperparameter is out of range.
    """
    if not isinstance(min_dim_size_to_factor, int) or isinstance(min_dim_size_to_factor, bool):
        raise TypeError(f"scale_by_factored_rms: min_dim_size_to_factor must be an int, got {min_dim_size_to_factor!r}")

    def dims(t):
        return _factored_dims(t.shape, factored, min_dim_size_to_factor)

    def without(t, axis):
        return ArrayType(tuple(d for i, d in enumerate(t.shape) if i != axis), t.dtype, t.batched)

    one = lambda t: ArrayType((1,), t.dtype, t.batched)  # noqa: E731

    def field(kind):
        def make(ptypes):
            out = {}
            for n, t in ptypes.items():
                fd = dims(t)
                if kind == "v":
                    leaf = one(t) if fd else ArrayType(t.shape, t.dtype, t.batched)
                else:
                    leaf = without(t, fd[1] if kind == "v_row" else fd[0]) if fd else one(t)
                out[n] = StateSpec(leaf, _per_example(n, leaf.shape, 0.0) if t.batched else 0.0)
            return out
        return make

    def update(h, s, params, updates):
        count = s["count"]
        t = W.cast(count, "float32") - W.cast(h["step_offset"], "float32") + 1.0
        decay32 = 1.0 - W.power(t, -W.cast(h["decay_rate"], "float32"))
        new = {"count": _increment(count), "v_row": {}, "v_col": {}, "v": {}}
        out = {}
        for n, g in updates.items():
            dtype = g.type.dtype
            work = promote([ArrayType((), "float32"), g.type])
            d = W.cast(decay32, work)
            eps = W.cast(h["epsilon"], work)
            gw = _in_dtype(g, work)
            sq = _abs_sq(gw) + eps
            fd = dims(params[n].type)
            if fd:
                d1, d0 = fd
                row = _in_dtype(d * _in_dtype(s["v_row"][n], work) + (1.0 - d) * W.mean(sq, axis=d0), dtype)
                col = _in_dtype(d * _in_dtype(s["v_col"][n], work) + (1.0 - d) * W.mean(sq, axis=d1), dtype)
                reduced_d1 = d1 - 1 if d1 > d0 else d1
                row_col_mean = W.mean(row, axis=reduced_d1, keepdims=True)
                row_factor = (row / row_col_mean) ** -0.5
                col_factor = col ** -0.5
                shape = g.shape
                out[n] = g * W.reshape(row_factor, tuple(1 if i == d0 else k for i, k in enumerate(shape))) \
                    * W.reshape(col_factor, tuple(1 if i == d1 else k for i, k in enumerate(shape)))
                new["v_row"][n], new["v_col"][n] = row, col
                new["v"][n] = W.zeros_like(s["v"][n])
            else:
                v = _in_dtype(d * _in_dtype(s["v"][n], work) + (1.0 - d) * sq, dtype)
                out[n] = g * v ** -0.5
                new["v"][n] = v
                new["v_row"][n] = W.zeros_like(s["v_row"][n])
                new["v_col"][n] = W.zeros_like(s["v_col"][n])
        return new, out
    return Leaf("scale_by_factored_rms", [Hyper("decay_rate", decay_rate, NONNEGATIVE),
                                          Hyper("step_offset", step_offset), Hyper("epsilon", epsilon, NONNEGATIVE)],
                State(count=counter(), v_row=field("v_row"), v_col=field("v_col"), v=field("v")), update)


def clip_by_block_rms(threshold: float) -> Transform:
    """Each parameter's update divided by ``max(1, rms(u) / threshold)``, as ``optax.clip_by_block_rms``.

    Args:
        threshold: the largest root mean square left as it is, at least 0: the hyperparameter ``"threshold"``.

    Returns:
        A stateless :class:`Leaf` named ``"clip_by_block_rms"``.
    """
    def update(h, s, params, updates):
        return s, {n: g / W.maximum(1.0, W.sqrt(W.mean(_abs_sq(g)) if g.ndim else _abs_sq(g)) / h["threshold"])
                   for n, g in updates.items()}
    return Leaf("clip_by_block_rms", [Hyper("threshold", threshold, NONNEGATIVE)], update=update)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> Transform:
    """Each parameter's update times the root mean square of the parameter (at least
    ``min_scale``), as ``optax.scale_by_param_block_rms``.

    Args:
        min_scale: the smallest factor, at least 0 (default ``1e-3``): the hyperparameter ``"min_scale"``.

    Returns:
        A stateless :class:`Leaf` named ``"scale_by_param_block_rms"``; it reads the parameters.
    """
    def update(h, s, params, updates):
        out = {}
        for n, g in updates.items():
            p = params[n]
            ms = W.mean(_abs_sq(p)) if p.ndim else _abs_sq(p)
            small = 1.0 - W.greater(ms, h["min_scale"] * h["min_scale"])
            out[n] = g * W.where(small, h["min_scale"], W.sqrt(W.where(small, 1.0, ms)))
        return s, out
    return Leaf("scale_by_param_block_rms", [Hyper("min_scale", min_scale, NONNEGATIVE)], update=update)


def adafactor(learning_rate: float | Schedule | None = None, min_dim_size_to_factor: int = 128, decay_rate: float = 0.8,
              decay_offset: float = 0, multiply_by_parameter_scale: bool = True, clipping_threshold: float | None = 1.0,
              momentum: float | None = None, dtype_momentum: str = "float32", weight_decay_rate: float | None = None,
              eps: float = 1e-30, factored: bool = True,
              weight_decay_mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """Adafactor, as ``optax.adafactor``: :func:`scale_by_factored_rms`, then (each where asked)
    :func:`clip_by_block_rms`, the learning rate, :func:`scale_by_param_block_rms`, momentum
    (:func:`ema` without debiasing), weight decay, and the sign flip.

    Args:
        learning_rate: a number or a schedule; ``None`` (default) for none (the relative step
            ``multiply_by_parameter_scale`` gives is the step).
        min_dim_size_to_factor: see :func:`scale_by_factored_rms` (default 128).
        decay_rate: see :func:`scale_by_factored_rms` (default 0.8).
        decay_offset: see :func:`scale_by_factored_rms`'s ``step_offset`` (default 0).
        multiply_by_parameter_scale: scale by the parameters' root mean square (default ``True``).
        clipping_threshold: see :func:`clip_by_block_rms` (default 1); ``None`` for no clipping.
        momentum: the momentum's decay; ``None`` (default) for none.
        dtype_momentum: the momentum's dtype (default ``"float32"``).
        weight_decay_rate: ``None`` (default) for no weight decay, else its coefficient.
        eps: see :func:`scale_by_factored_rms`'s ``epsilon`` (default ``1e-30``).
        factored: see :func:`scale_by_factored_rms` (default ``True``).
        weight_decay_mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    parts = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        parts.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms())
    if momentum is not None:
        parts.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        parts.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    parts.append(scale(-1.0))
    return chain(*parts)


def _seed_key(key):
    """The uint32 pair ``jax.random.PRNGKey(key)`` holds for a seed in [0, 2**32) (its threefry
    layout ``[0, key]``), made without JAX; a traced seed (inside ``inject_hyperparams``) with it."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(key, jax.core.Tracer):
        return lambda params: jax.numpy.stack([jax.numpy.uint32(0), key.astype("uint32")])
    if isinstance(key, bool) or not isinstance(key, numbers.Integral) or not 0 <= int(key) < 2 ** 32:
        raise TypeError(f"add_noise: key must be an int seed in [0, 2**32), got {key!r}")
    return [0, int(key)]


def add_noise(eta: float = 0.01, gamma: float = 0.55, key: int | None = None, *, seed: int | None = None) -> Transform:
    """Gaussian noise annealed with the step (Neelakantan et al. 2015), as ``optax.add_noise``:
    ``u = g + sqrt(eta / t**gamma) n`` with ``n`` standard normal, drawn from a key kept in the state.

    The numbers come from the backend's own generator (on JAX a split of the key per parameter):
    the same distribution as optax's, not optax's samples.

    Args:
        eta: the initial variance, at least 0 (default 0.01): the hyperparameter ``"eta"``.
        gamma: the decay exponent, at least 0 (default 0.55): the hyperparameter ``"gamma"``.
        key: an int seed in ``[0, 2**32)``; ``None`` (default) warns and uses 0, as optax.
        seed: deprecated, as in optax: the same as ``key``.

    Returns:
        A :class:`Leaf` named ``"add_noise"``, with the state ``{"count", "rng_key"}`` (the key a
        ``uint32`` pair, as ``jax.random.PRNGKey`` makes).

    Raises:
        TypeError: ``key`` is not an int seed, or a hyperparameter is not a number.
        ValueError: both ``key`` and ``seed`` are given, or a hyperparameter is out of range.
    """
    if seed is not None:
        warnings.warn('"seed" is deprecated, use "key".', DeprecationWarning, stacklevel=2)
        if key is not None:
            raise ValueError("Only one of seed or key can be specified.")
        key = seed
    if key is None:
        warnings.warn("Specifying a key will be required in optax 0.2.7.", stacklevel=2)
        key = 0
    initial = _seed_key(key)

    def update(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        std = W.sqrt(h["eta"] / W.power(t, h["gamma"]))
        k, out = s["rng_key"], {}
        for n, g in updates.items():
            k, noise = W.normal(k, g.shape, g.type.dtype)
            out[n] = g + _in_dtype(std, g.type.dtype) * noise
        return {"count": count, "rng_key": k}, out
    return Leaf("add_noise", [Hyper("eta", eta, NONNEGATIVE), Hyper("gamma", gamma, NONNEGATIVE)],
                State(count=counter(), rng_key=lambda ptypes: StateSpec(P.KEY, initial)), update)


def noisy_sgd(learning_rate: float | Schedule, eta: float = 0.01, gamma: float = 0.55, key: int | None = None, *,
              seed: int | None = None) -> Transform:
    """Noisy SGD, as ``optax.noisy_sgd``: :func:`add_noise` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        eta: see :func:`add_noise`.
        gamma: see :func:`add_noise`.
        key: see :func:`add_noise`.
        seed: see :func:`add_noise`.

    Returns:
        A :class:`Chain`.
    """
    return chain(add_noise(eta, gamma, key, seed=seed), scale_by_learning_rate(learning_rate))


def _fromage_step(learning_rate: float) -> Transform:
    """Fromage's step after the trust ratio: ``u = -lr m g + (m - 1) p`` with
    ``m = 1 / sqrt(1 + lr**2)``, as optax's ``scale_by_learning_rate(lr * m)`` then
    ``add_decayed_weights(m - 1)``, the learning rate one hyperparameter."""
    def update(h, s, params, updates):
        lr = h["learning_rate"]
        m = 1.0 / W.sqrt(1.0 + lr * lr)
        step = -(lr * m)
        return s, {n: step * g + (m - 1.0) * params[n] for n, g in updates.items()}
    return Leaf("fromage_step", [Hyper("learning_rate", learning_rate, NONNEGATIVE)], update=update)


def _lr(learning_rate) -> list[Transform]:
    """``scale_by_learning_rate(learning_rate)``, or nothing for ``None`` (optax's ``identity``)."""
    return [] if learning_rate is None else [scale_by_learning_rate(learning_rate)]


def sign_sgd(learning_rate: float | Schedule) -> Transform:
    """signSGD (Bernstein et al. 2018), as ``optax.sign_sgd``: :func:`scale_by_sign` then the learning rate.

    Args:
        learning_rate: a number or a schedule (see :func:`scale_by_learning_rate`).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(learning_rate: float | Schedule, beta: float = 0.9, accumulator_dtype: str | None = None) -> Transform:
    """Signum (Bernstein et al. 2018), as ``optax.signum``: the sign of the momentum
    (:func:`ema` without debiasing, its decay ``beta``), then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        beta: the momentum's decay, in ``[0, 1)`` (default 0.9): the hyperparameter ``"decay"``.
        accumulator_dtype: the momentum's dtype; ``None`` (default) keeps each parameter's.

    Returns:
        A :class:`Chain`.
    """
    return chain(ema(beta, debias=False, accumulator_dtype=accumulator_dtype), scale_by_sign(),
                 scale_by_learning_rate(learning_rate))


def adamax(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """AdaMax, as ``optax.adamax``: :func:`scale_by_adamax` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adamax`.
        b2: see :func:`scale_by_adamax`.
        eps: see :func:`scale_by_adamax`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamaxw(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            weight_decay: float = 1e-4, mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """AdaMax with decoupled weight decay, as ``optax.adamaxw``.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adamax`.
        b2: see :func:`scale_by_adamax`.
        eps: see :func:`scale_by_adamax`.
        weight_decay: at least 0 (default ``1e-4``).
        mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def nadam(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, mu_dtype: str | None = None, *, nesterov: bool = True) -> Transform:
    """NAdam (Dozat 2016), as ``optax.nadam``: :func:`adam` with Nesterov momentum.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adam`.
        b2: see :func:`scale_by_adam`.
        eps: see :func:`scale_by_adam`.
        eps_root: see :func:`scale_by_adam`.
        mu_dtype: see :func:`scale_by_adam`.
        nesterov: default ``True``.

    Returns:
        A :class:`Chain`.
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def nadamw(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           eps_root: float = 0.0, mu_dtype: str | None = None, weight_decay: float = 1e-4,
           mask: Mapping[str, bool] | Callable | None = None, *, nesterov: bool = True) -> Transform:
    """NAdamW, as ``optax.nadamw``: :func:`adamw` with Nesterov momentum.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adam`.
        b2: see :func:`scale_by_adam`.
        eps: see :func:`scale_by_adam`.
        eps_root: see :func:`scale_by_adam`.
        mu_dtype: see :func:`scale_by_adam`.
        weight_decay: at least 0 (default ``1e-4``).
        mask: which parameters decay (see :func:`add_decayed_weights`).
        nesterov: default ``True``.

    Returns:
        A :class:`Chain`.
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov)


def lion(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.99, mu_dtype: str | None = None,
         weight_decay: float = 1e-3, mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """Lion, as ``optax.lion``: :func:`scale_by_lion`, decoupled weight decay, the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_lion`.
        b2: see :func:`scale_by_lion`.
        mu_dtype: see :func:`scale_by_lion`.
        weight_decay: at least 0 (default ``1e-3``).
        mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def yogi(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> Transform:
    """Yogi, as ``optax.yogi``: :func:`scale_by_yogi` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_yogi`.
        b2: see :func:`scale_by_yogi`.
        eps: see :func:`scale_by_yogi`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adabelief(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
              eps_root: float = 1e-16, *, nesterov: bool = False) -> Transform:
    """AdaBelief, as ``optax.adabelief``: :func:`scale_by_belief` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_belief`.
        b2: see :func:`scale_by_belief`.
        eps: see :func:`scale_by_belief`.
        eps_root: see :func:`scale_by_belief`.
        nesterov: see :func:`scale_by_belief`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))


def radam(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, threshold: float = 5.0, *, nesterov: bool = False) -> Transform:
    """RAdam, as ``optax.radam``: :func:`scale_by_radam` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_radam`.
        b2: see :func:`scale_by_radam`.
        eps: see :func:`scale_by_radam`.
        eps_root: see :func:`scale_by_radam`.
        threshold: see :func:`scale_by_radam`.
        nesterov: see :func:`scale_by_radam`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2, min_step_size: float = 1e-6,
          max_step_size: float = 50.0) -> Transform:
    """Rprop, as ``optax.rprop``: :func:`scale_by_rprop` then :func:`scale` by -1.

    Args:
        learning_rate: see :func:`scale_by_rprop`.
        eta_minus: see :func:`scale_by_rprop`.
        eta_plus: see :func:`scale_by_rprop`.
        min_step_size: see :func:`scale_by_rprop`.
        max_step_size: see :func:`scale_by_rprop`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))


def optimistic_gradient_descent(learning_rate: float | Schedule, alpha: float = 1.0, beta: float = 1.0) -> Transform:
    """Optimistic gradient descent, as ``optax.optimistic_gradient_descent``.

    Args:
        learning_rate: a number or a schedule.
        alpha: see :func:`scale_by_optimistic_gradient`.
        beta: see :func:`scale_by_optimistic_gradient`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


def optimistic_adam_v2(learning_rate: float | Schedule, *, alpha: float = 1.0, beta: float = 1.0, b1: float = 0.9,
                       b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: str | None = None,
                       nesterov: bool = True) -> Transform:
    """Optimistic Adam, as ``optax.optimistic_adam_v2``: :func:`scale_by_adam`, then the optimistic
    correction, then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        alpha: see :func:`scale_by_optimistic_gradient`.
        beta: see :func:`scale_by_optimistic_gradient`.
        b1: see :func:`scale_by_adam`.
        b2: see :func:`scale_by_adam`.
        eps: see :func:`scale_by_adam`.
        eps_root: see :func:`scale_by_adam`.
        mu_dtype: see :func:`scale_by_adam`.
        nesterov: default ``True``.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


def optimistic_adam(learning_rate: float, optimism: float | None = None, b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8, eps_root: float = 0.0, mu_dtype: str | None = None, *,
                    nesterov: bool = True) -> Transform:
    """Optimistic Adam, first version, as the deprecated ``optax.optimistic_adam``: the learning
    rate is the optimistic gradient's ``alpha`` (and its ``beta`` unless ``optimism`` is given),
    then a step of 1. Use :func:`optimistic_adam_v2`.

    Args:
        learning_rate: a number (no schedule): the hyperparameter ``"alpha"``.
        optimism: the hyperparameter ``"beta"``; ``None`` (default) for ``learning_rate``.
        b1: see :func:`scale_by_adam`.
        b2: see :func:`scale_by_adam`.
        eps: see :func:`scale_by_adam`.
        eps_root: see :func:`scale_by_adam`.
        mu_dtype: see :func:`scale_by_adam`.
        nesterov: default ``True``.

    Returns:
        A :class:`Chain`.

    Raises:
        ValueError: ``learning_rate`` is a schedule.
    """
    warnings.warn("`optimistic_adam` is deprecated, please use `optimistic_adam_v2` instead.", DeprecationWarning,
                  stacklevel=2)
    if callable(learning_rate):
        raise ValueError("This version of `optimistic_adam` does not support learning rate schedules but "
                         "`optimistic_adam_v2` does.")
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 scale_by_optimistic_gradient(learning_rate, learning_rate if optimism is None else optimism),
                 scale_by_learning_rate(1.0))


def adan(learning_rate: float | Schedule, b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
         eps_root: float = 1e-8, weight_decay: float = 0.0,
         mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """Adan, as ``optax.adan``: :func:`scale_by_adan`, decoupled weight decay, the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adan`.
        b2: see :func:`scale_by_adan`.
        b3: see :func:`scale_by_adan`.
        eps: see :func:`scale_by_adan`.
        eps_root: see :func:`scale_by_adan` (default ``1e-8`` here, as optax's alias).
        weight_decay: at least 0 (default 0).
        mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_adan(b1, b2, b3, eps, eps_root), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def adadelta(learning_rate: float | Schedule | None = None, rho: float = 0.9, eps: float = 1e-6,
             weight_decay: float = 0.0, weight_decay_mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """AdaDelta, as ``optax.adadelta``: weight decay, :func:`scale_by_adadelta`, the learning rate.

    Args:
        learning_rate: a number or a schedule; ``None`` (default) for none at all, as optax (the
            update is then AdaDelta's step itself, with no sign flip).
        rho: see :func:`scale_by_adadelta`.
        eps: see :func:`scale_by_adadelta`.
        weight_decay: at least 0 (default 0).
        weight_decay_mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    return chain(add_decayed_weights(weight_decay, weight_decay_mask), scale_by_adadelta(rho, eps),
                 *_lr(learning_rate))


def lars(learning_rate: float | Schedule, weight_decay: float = 0.0,
         weight_decay_mask: Mapping[str, bool] | Callable | bool = True, trust_coefficient: float = 0.001,
         eps: float = 0.0, trust_ratio_mask: Mapping[str, bool] | Callable | bool = True, momentum: float = 0.9,
         nesterov: bool = False) -> Transform:
    """LARS (You et al. 2017), as ``optax.lars``: weight decay, the trust ratio, the learning rate,
    then momentum.

    Args:
        learning_rate: a number or a schedule.
        weight_decay: at least 0 (default 0).
        weight_decay_mask: which parameters decay (default ``True``: all).
        trust_coefficient: see :func:`scale_by_trust_ratio` (default ``0.001``).
        eps: see :func:`scale_by_trust_ratio`.
        trust_ratio_mask: which parameters the trust ratio scales (default ``True``: all).
        momentum: see :func:`trace` (default 0.9).
        nesterov: see :func:`trace`.

    Returns:
        A :class:`Chain`.
    """
    return chain(add_decayed_weights(weight_decay, weight_decay_mask),
                 scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps, mask=trust_ratio_mask),
                 scale_by_learning_rate(learning_rate), trace(momentum, nesterov))


def lamb(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         eps_root: float = 0.0, weight_decay: float = 0.0,
         mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """LAMB (You et al. 2020), as ``optax.lamb``: Adam's step, weight decay, the trust ratio, the
    learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_adam`.
        b2: see :func:`scale_by_adam`.
        eps: see :func:`scale_by_adam` (default ``1e-6``).
        eps_root: see :func:`scale_by_adam`.
        weight_decay: at least 0 (default 0).
        mask: which parameters decay (see :func:`add_decayed_weights`).

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
                 scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))


def novograd(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.25, eps: float = 1e-6,
             eps_root: float = 0.0, weight_decay: float = 0.0) -> Transform:
    """NovoGrad, as ``optax.novograd``: :func:`scale_by_novograd` then the learning rate.

    Args:
        learning_rate: a number or a schedule.
        b1: see :func:`scale_by_novograd`.
        b2: see :func:`scale_by_novograd`.
        eps: see :func:`scale_by_novograd` (default ``1e-6`` here, as optax's alias).
        eps_root: see :func:`scale_by_novograd`.
        weight_decay: see :func:`scale_by_novograd`.

    Returns:
        A :class:`Chain`.
    """
    return chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(learning_rate))


def fromage(learning_rate: float, min_norm: float = 1e-6) -> Transform:
    """Fromage (Bernstein et al. 2020), as ``optax.fromage``: the trust ratio, then
    ``u = -lr m u + (m - 1) p`` with ``m = 1 / sqrt(1 + lr**2)``, computed from the one
    hyperparameter ``"learning_rate"`` (so a bilevel problem can learn it).

    Args:
        learning_rate: a number, at least 0 (a schedule is not supported yet).
        min_norm: see :func:`scale_by_trust_ratio` (default ``1e-6``).

    Returns:
        A :class:`Chain`.

    Raises:
        TypeError: ``learning_rate`` is a schedule, or not a number.
    """
    if callable(learning_rate):
        raise TypeError("fromage: a learning-rate schedule is not supported yet; pass a number")
    return chain(scale_by_trust_ratio(min_norm), _fromage_step(learning_rate))


# --------------------------------------------------------------------------- schedules
# A schedule is a function of the (float) step count wire, written with wire
# arithmetic, so it becomes part of the training step term.


def constant_schedule(value: float) -> Schedule:
    """``lr(count) = value``.

    Args:
        value: the constant value, a finite number.

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is not finite.
    """
    value = real(value, "constant_schedule: value")
    return lambda count: W.zeros_like(count) + value


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float, transition_begin: int = 0,
                      staircase: bool = False, end_value: float | None = None) -> Schedule:
    """``init_value * decay_rate ** ((count - transition_begin) / transition_steps)``, as optax.

    Before ``transition_begin`` the value is ``init_value``. The count is cast to float32, as optax does.

    Args:
        init_value: the value until ``transition_begin``.
        transition_steps: the number of steps over which the value is multiplied by ``decay_rate``
            once; 0 or less gives :func:`constant_schedule` of ``init_value``.
        decay_rate: the factor per ``transition_steps`` steps, at least 0 (above 1 the value
            grows); 0 gives :func:`constant_schedule` of ``init_value`` with a warning, as optax.
        transition_begin: the number of steps the value holds at ``init_value`` (default 0; a
            negative number counts as 0).
        staircase: decay in jumps, once every ``transition_steps`` steps, instead of continuously
            (default ``False``).
        end_value: ``None`` (default) for no bound; else a lower bound of the value when
            ``decay_rate < 1``, an upper bound when it is above.

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        TypeError: a value argument is not a number.
        ValueError: ``decay_rate`` is negative, or ``init_value``, ``decay_rate`` or ``end_value`` is
            not finite.
    """
    init_value = real(init_value, "exponential_decay: init_value")
    # a negative rate to a fractional power is not a number
    decay_rate = real(decay_rate, "exponential_decay: decay_rate", 0)
    if end_value is not None:
        end_value = real(end_value, "exponential_decay: end_value")
    if transition_steps <= 0:
        return constant_schedule(init_value)
    if decay_rate == 0:  # optax warns and holds init_value, where the formula would fall to 0
        warnings.warn("exponential_decay: decay_rate=0 gives a constant schedule at init_value, as in optax",
                      stacklevel=2)
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        count = W.cast(count, "float32")  # optax divides int32 counts: float32
        shifted = count - float(transition_begin)
        p = shifted / float(transition_steps)
        if staircase:
            p = W.floor(p)
        init = W.zeros_like(count) + float(init_value)
        value = W.where(W.greater(shifted, 0.0), float(init_value) * W.power(float(decay_rate), p), init)
        if end_value is not None:
            end = W.zeros_like(count) + float(end_value)
            value = W.maximum(value, end) if decay_rate < 1.0 else W.minimum(value, end)
        return value
    return schedule


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``, as optax.

    ``init_value * ((1 - alpha) * (0.5 * (1 + cos(pi * min(count, decay_steps) / decay_steps))) ** exponent + alpha)``:
    after ``decay_steps`` steps the value stays at ``alpha * init_value``.

    Args:
        init_value: the value at step 0.
        decay_steps: the number of steps the decay takes, positive.
        alpha: the final value as a fraction of ``init_value`` (default 0).
        exponent: the power the cosine factor is raised to (default 1).

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        TypeError: a value argument is not a number.
        ValueError: ``decay_steps`` is not positive, or ``init_value``, ``alpha`` or ``exponent`` is
            not finite.
    """
    if decay_steps <= 0:
        raise ValueError(f"cosine_decay_schedule: decay_steps must be positive, got {decay_steps}")
    init_value = real(init_value, "cosine_decay_schedule: init_value")
    alpha, exponent = real(alpha, "cosine_decay_schedule: alpha"), real(exponent, "cosine_decay_schedule: exponent")

    def schedule(count):
        c = W.minimum(count, W.zeros_like(count) + float(decay_steps))
        cosine = 0.5 * (1.0 + W.cos(math.pi * c / float(decay_steps)))
        return float(init_value) * ((1.0 - alpha) * cosine ** float(exponent) + alpha)
    return schedule


def polynomial_schedule(init_value: float, end_value: float, power: float, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
    """Polynomial interpolation from ``init_value`` to ``end_value``, as optax.

    ``(init_value - end_value) * (1 - c / transition_steps) ** power + end_value`` where
    ``c = clip(count - transition_begin, 0, transition_steps)``, the count cast to float32 as optax does.

    Args:
        init_value: the value until ``transition_begin``.
        end_value: the value from ``transition_begin + transition_steps`` on.
        power: the exponent of the interpolation (1 for a linear one).
        transition_steps: the number of steps the interpolation takes; 0 or less gives
            :func:`constant_schedule` of ``init_value``.
        transition_begin: the number of steps the value holds at ``init_value`` (default 0; a
            negative number counts as 0).

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        TypeError: a value argument is not a number.
        ValueError: ``init_value``, ``end_value`` or ``power`` is not finite.
    """
    init_value, power = real(init_value, "polynomial_schedule: init_value"), real(power, "polynomial_schedule: power")
    end_value = real(end_value, "polynomial_schedule: end_value")
    if transition_steps <= 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        count = W.cast(count, "float32")  # optax divides int32 counts: float32
        c = W.clip(count - float(transition_begin), W.zeros_like(count), W.zeros_like(count) + float(transition_steps))
        frac = 1.0 - c / float(transition_steps)
        return (float(init_value) - float(end_value)) * frac ** float(power) + float(end_value)
    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0) -> Schedule:
    """Linear interpolation (a warm-up when ``end_value > init_value``), as optax.

    Args:
        init_value: the value until ``transition_begin``.
        end_value: the value from ``transition_begin + transition_steps`` on.
        transition_steps: the number of steps the interpolation takes; 0 or less gives
            :func:`constant_schedule` of ``init_value``.
        transition_begin: the number of steps the value holds at ``init_value`` (default 0; a
            negative number counts as 0).

    Returns:
        ``polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)``: a schedule,
        a function of the step-count wire (see :func:`polynomial_schedule`).

    Raises:
        TypeError: a value argument is not a number.
        ValueError: ``init_value`` or ``end_value`` is not finite.
    """
    return polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)


def join_schedules(schedules, boundaries) -> Schedule:
    """``schedules[i]`` from ``boundaries[i-1]`` on, each restarted at its boundary, as optax
    (the joined values take the first schedule's dtype, as optax's weak types do).

    Args:
        schedules: the schedules, in the order they take over.
        boundaries: the step counts at which each next schedule takes over, one fewer than
            ``schedules``; from ``boundaries[i]`` on, ``schedules[i + 1]`` gets ``count - boundaries[i]``.

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        ValueError: ``schedules`` is empty, or ``boundaries`` does not have one fewer item.
    """
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules or len(boundaries) != len(schedules) - 1:
        raise ValueError(f"join_schedules: {len(schedules)} schedules need {max(len(schedules) - 1, 0)} boundaries "
                         f"(one between each two), got boundaries={boundaries!r}")

    def schedule(count):
        out = schedules[0](count)
        for boundary, s in zip(boundaries, schedules[1:]):
            before = W.greater(W.zeros_like(count) + float(boundary), count)
            out = W.where(before, out, W.cast(s(count - float(boundary)), out.type.dtype))
        return out
    return schedule


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int, decay_steps: int,
                                 end_value: float = 0.0, exponent: float = 1.0) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``, as optax.

    It joins (:func:`join_schedules`) :func:`linear_schedule` from ``init_value`` to ``peak_value`` over
    ``warmup_steps`` and :func:`cosine_decay_schedule` from ``peak_value`` over the remaining
    ``decay_steps - warmup_steps`` steps.

    Args:
        init_value: the value at step 0, where the warm-up starts.
        peak_value: the value at the end of the warm-up, where the decay starts.
        warmup_steps: the number of warm-up steps.
        decay_steps: the total number of steps, the warm-up included; more than ``warmup_steps``.
        end_value: the value after ``decay_steps`` steps (default 0).
        exponent: the power the cosine factor is raised to (default 1).

    Returns:
        A schedule: a function of the step-count wire returning the value as a wire, written with
        wire arithmetic; passed as a ``learning_rate`` it becomes part of the term (its numbers are
        fixed there, not hyperparameters).

    Raises:
        TypeError: a value argument is not a number.
        ValueError: ``decay_steps`` is not more than ``warmup_steps``, or a value argument is not finite.
    """
    if decay_steps <= warmup_steps:
        raise ValueError(f"warmup_cosine_decay_schedule: decay_steps={decay_steps!r} counts the warm-up; expected "
                         f"more than warmup_steps={warmup_steps!r}")
    peak_value = real(peak_value, "warmup_cosine_decay_schedule: peak_value")
    end_value = real(end_value, "warmup_cosine_decay_schedule: end_value")
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps),
                           cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)],
                          [warmup_steps])


# --------------------------------------------------------------------------- optax interop


def to_optax(opt: Transform):
    """An ``optax.GradientTransformation`` that computes what ``opt`` does (its update term,
    compiled by the JAX backend).

    Its state is ``{"opt": ..., "hyper": ...}``; set ``state["hyper"][name]`` to
    change a hyperparameter. Needs optax (``pip install optax``).

    Args:
        opt: the paralens optimizer to run under optax.

    Returns:
        An ``optax.GradientTransformation``: ``init(params)`` gives ``{"opt": ..., "hyper": ...}``, with
        each hyperparameter at its default; ``update(updates, state, params=None)`` runs ``opt``'s update
        term, compiled once per set of parameter shapes and dtypes, and raises ``ValueError`` without
        ``params`` when the optimizer reads them (weight decay, DoG).

    Raises:
        ImportError: JAX or optax is not installed.
    """
    return _backend("jax").to_optax(opt)


def from_optax(tx) -> Transform:
    """Wrap any ``optax.GradientTransformation`` as a paralens optimizer.

    Its update is one *opaque* box computed by optax on JAX arrays: paralens
    cannot see inside it, so it cannot be drawn in detail, evaluated by the
    SymPy or NumPy backends, or differentiated by ``R`` (a bilevel problem
    cannot learn through it). Its state is optax's state leaves, as a tuple in
    optax's order. Needs optax and the JAX backend.

    Args:
        tx: the optax transformation. Its hyperparameters are fixed inside it; to change them at
            run time, build it with ``optax.inject_hyperparams``, which keeps them in its state.

    Returns:
        A :class:`Leaf` named ``"from_optax"``, without hyperparameters of its own.

    Raises:
        ImportError: JAX or optax is not installed.
    """
    return _backend("jax").from_optax(tx)
