"""Optimizers as reparametrisation lenses of the parameter wire, made of terms (MATH.md 4.4, 7).

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
argument order, defaults and numerics follow optax v0.2.8 (MATH.md section 7).

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
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import prims as P
from . import wires as T
from .backends import get as _backend
from .lens import Lens
from .prims import promote
from .terms import Builder, Term, leaves, sig_of, tree_map
from .types import ArrayType, real
from .wires import Wire, tracing

__all__ = [
    "Transform", "StateSpec", "chain", "identity", "scale_by_learning_rate", "trace", "scale_by_rss",
    "scale_by_rms", "scale_by_stddev", "scale_by_adam", "scale_by_amsgrad", "scale_by_adopt", "scale_by_dog",
    "add_decayed_weights", "clip_by_global_norm", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
    "adamw", "amsgrad", "adopt", "dog", "constant_schedule", "exponential_decay", "cosine_decay_schedule",
    "linear_schedule", "polynomial_schedule", "warmup_cosine_decay_schedule", "join_schedules",
    "to_optax", "from_optax", "hyper_type", "init_state",
]

Schedule = Callable[[Wire], Wire]

#: The parameter an optimizer is shown with when no model gives it any (diagrams, formulas).
DEFAULT_PARAMS = {"w": ArrayType((), "float32", batched=False)}


@dataclass(frozen=True)
class StateSpec:
    """One state leaf: its type and initial value.

    ``init`` is a number, or a function of the parameter dict (DoG's copy of
    the initial parameters, its initial distance).
    """

    type: ArrayType
    init: Any = 0.0

    def value(self, params: Mapping):
        return self.init(params) if callable(self.init) else self.init


def hyper_type(param_types) -> ArrayType:
    """Hyperparameters are unbatched scalars of the widest parameter dtype (float32 at least)."""
    return ArrayType((), promote([ArrayType((), "float32"), *param_types]), batched=False)


def init_state(specs, params: Mapping, array: Callable):
    """The initial state: ``array(value, type)`` for each :class:`StateSpec` of the tree ``specs``."""
    return tree_map(lambda s: array(s.value(params), s.type), specs)


def _types(specs):
    return tree_map(lambda s: s.type, specs)


@dataclass(frozen=True, eq=False)
class Transform:
    """A gradient transformation as a lens on the update wire; ``>>`` chains transforms.

    ``hyper``: runtime hyperparameters and their defaults. ``state_fn(ptypes)``:
    the state's leaves, a tree of :class:`StateSpec` with named fields, for
    parameters of types ``ptypes`` (a dict name -> ``ArrayType``).
    ``update_fn(h, s, params, updates)`` writes the transformation with wires
    and returns ``(new_state, new_updates)``; ``params`` and ``updates`` are
    dicts keyed by parameter name, ``h`` and ``s`` by this transform's own
    names. A chain has ``parts`` instead of an ``update_fn``.
    """

    hyper: Mapping[str, float] = field(default_factory=dict)
    state_fn: Callable[[dict], Any] = field(default=lambda ptypes: {})
    update_fn: Callable | None = None
    name: str = "transform"
    parts: tuple = ()
    part_hyper: tuple = ()  # a chain's part i reads part_hyper[i][its name] off the chain's hyper

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v:g}' for k, v in self.hyper.items())})"

    def __rshift__(self, other: Transform) -> Transform:
        """``t1 >> t2``: ``chain(t1, t2)``, the composite of their update terms."""
        if not isinstance(other, Transform):
            return NotImplemented
        return chain(self, other)

    def state(self, ptypes: Mapping[str, ArrayType]):
        """The state's leaves for parameters of types ``ptypes``: a tree of :class:`StateSpec`."""
        if self.parts:
            return tuple(t.state(ptypes) for t in self.parts)
        return self.state_fn(dict(ptypes))

    def update_term(self, ptypes: Mapping[str, ArrayType] | None = None) -> Term:
        """``(state, params, updates, hyper) -> (state', updates')`` as a term; a chain's is the
        composite of its parts' (each gets the previous one's updates and the same params)."""
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

    def _emit(self, b: Builder, s_in, p_in, u_in, h_in):
        """Emit the update into ``b`` (a chain's parts one after the other, each in its group);
        returns the wires of ``(state', updates')``."""
        if self.parts:
            u, new_s, outer = u_in, [], b.group
            for i, part in enumerate(self.parts):
                b.group = outer + (part.name,)
                s_i, u = part._emit(b, s_in[i], p_in, u, {k: h_in[c] for k, c in self.part_hyper[i].items()})
                new_s.append(s_i)
            b.group = outer
            return tuple(new_s), u
        wire = lambda w: Wire(b, w)  # noqa: E731
        with tracing(b):
            s2, u2 = self.update_fn(tree_map(wire, h_in), tree_map(wire, s_in), tree_map(wire, p_in),
                                    tree_map(wire, u_in))
        return _cast_tree(b, s2, tree_map(b.type_of, s_in)), {n: u2[n].id for n in u_in}

    def _emit_put(self, b: Builder, s, p, g, h, ptypes):
        """Emit the put: the update, then ``params + updates`` in each parameter's dtype."""
        new_s, u = self._emit(b, s, p, g, h)
        return new_s, {n: _cast(b, P.add(b, w, u[n]), ptypes[n]) for n, w in p.items()}

    def term(self, ptypes: Mapping[str, ArrayType] | None = None) -> Term:
        """The optimizer lens's *put*: ``(state, params, grads, hyper) -> (state', params')``,
        with ``params' = params + updates`` cast back to each parameter's dtype (as
        ``optax.apply_updates``). Without ``ptypes``, for one scalar parameter ``"w"``."""
        ptypes = dict(ptypes or DEFAULT_PARAMS)
        b, ins = self._inputs(ptypes)
        new_s, new_p = self._emit_put(b, *ins, ptypes)
        return b.build(leaves(ins), leaves((new_s, new_p)), in_sig=sig_of(ins), out_sig=sig_of((new_s, new_p)),
                       name=self.name, arg_names=(("state", "", "d{}", ""), ("state'", "{}'")))

    def _repr_svg_(self) -> str:  # Jupyter shows it as its diagram
        return self.as_term()._repr_svg_()

    def as_term(self) -> Term:
        return self.term()

    def lens(self, ptypes: Mapping[str, ArrayType] | None = None) -> Lens:
        """The optimizer as a lens ``(S x P x H) -> P``: *get* passes the parameters to the
        model and keeps ``(s, p, h)`` as residuals; *put* turns the parameters' cotangents
        into ``(s', p', h)``."""
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


def _cast(b: Builder, w: int, t: ArrayType) -> int:
    """``w`` in ``t``'s dtype (a cast box only when the dtypes differ)."""
    return w if b.type_of(w).dtype == t.dtype else b.emit1(P.CAST, w, dtype=t.dtype)


def _cast_tree(b: Builder, wires, types):
    if isinstance(types, dict):
        return {k: _cast_tree(b, wires[k], t) for k, t in types.items()}
    if isinstance(types, tuple):
        return tuple(_cast_tree(b, w, t) for w, t in zip(wires, types))
    return _cast(b, wires.id, types)


# --------------------------------------------------------------------------- helpers


def _dtype(ws: Mapping[str, Wire]) -> str:
    return promote([w.type for w in ws.values()]) if ws else "float32"


def _lowest(ptypes: Mapping[str, ArrayType]) -> str:
    order = ("float16", "bfloat16", "float32", "float64")
    floats = [t.dtype for t in ptypes.values() if t.dtype in order]
    return min(floats, key=order.index) if floats else "float32"


def _scalar(dtype: str) -> ArrayType:
    return ArrayType((), dtype, batched=False)


COUNT = _scalar("int32")


def _per_param(ptypes, init=0.0, dtype: str | None = None) -> dict[str, StateSpec]:
    # a batched "parameter" (an input being dreamed) gets per-example state, as long as its batch
    return {n: StateSpec(ArrayType(t.shape, dtype or t.dtype, t.batched),
                         (lambda params, n=n: params[n] * 0 + init) if t.batched else init)
            for n, t in ptypes.items()}


def _increment(count: Wire) -> Wire:
    return count + T.constant(1, (), "int32", like=count)


def _as_float(count: Wire, like: Mapping[str, Wire]) -> Wire:
    return T.cast(count, _dtype(like))


def _correction(decay: Wire, t: Wire) -> Wire:
    """Bias correction's denominator ``1 - decay ** t`` with ``t`` the incremented count (optax
    ``tree.bias_correction`` divides each moment by it): one scalar a step, built once."""
    return 1.0 - T.power(decay, t)


def _sq_norm(ws: Mapping[str, Wire]) -> Wire:
    total = None
    for w in ws.values():
        s = T.sum(w * w) if w.ndim else w * w
        total = s if total is None else total + s
    return total


def _complements(h: dict) -> tuple[Wire, Wire]:
    """``1 - b1`` and ``1 - b2``: emitted once at the top of an update, not once a parameter."""
    return 1.0 - h["b1"], 1.0 - h["b2"]


def _moments(h: dict, one_minus: tuple[Wire, Wire], g: Wire, mu_old: Wire, nu_old: Wire) -> tuple[Wire, Wire]:
    """Adam's moment EMAs, as optax: ``(1 - b1) g + b1 mu`` and ``(1 - b2) g**2 + b2 nu``
    (``one_minus``: the :func:`_complements`)."""
    return one_minus[0] * g + h["b1"] * mu_old, one_minus[1] * (g * g) + h["b2"] * nu_old


def _adam_state(ptypes, mu_dtype, *extra: str) -> dict:
    out = {"count": StateSpec(COUNT, 0), "mu": _per_param(ptypes, dtype=mu_dtype), "nu": _per_param(ptypes)}
    for key in extra:
        out[key] = _per_param(ptypes)
    return out


#: Where each hyperparameter's value makes sense (all finite): rates and norms are
#: non-negative, decay rates of moving averages lie in [0, 1).
_RANGES = {"learning_rate": {"low": 0}, "eps": {"low": 0}, "eps_root": {"low": 0}, "weight_decay": {"low": 0},
           "max_norm": {"low": 0}, "b1": {"low": 0, "high": 1, "open_high": True},
           "b2": {"low": 0, "high": 1, "open_high": True}, "momentum": {"low": 0, "high": 1, "open_high": True},
           "decay": {"low": 0, "high": 1, "open_high": True}}


def _hyper(transform: str, **kw) -> dict:
    """The hyperparameters' defaults as floats, each checked against :data:`_RANGES` (the
    error names ``transform``, the hyperparameter and its value)."""
    return {k: real(v, f"{transform}: {k}", **_RANGES[k]) for k, v in kw.items()}


def _dtype_option(dtype: str | None, what: str) -> str | None:
    """``dtype`` if it is ``None`` or a floating-point dtype name; else a ``ValueError`` listing them."""
    if dtype is not None and dtype not in P.FLOATS:
        raise ValueError(f"{what}={dtype!r} is not a floating-point dtype; expected None or one of {P.FLOATS}")
    return dtype


# --------------------------------------------------------------------------- combinators


def identity() -> Transform:
    """The transform that changes nothing."""
    return Transform(update_fn=lambda h, s, p, u: (s, u), name="identity")


def chain(*transforms: Transform) -> Transform:
    """Run transforms in order; each gets the previous one's updates and the same params.

    The state is the tuple of the parts' states (as ``optax.chain``).
    Hyperparameter names stay as they are unless two parts share one, then
    both are prefixed by their position (``"0/eps"``).
    """
    counts: dict[str, int] = {}
    for t in transforms:
        for k in t.hyper:
            counts[k] = counts.get(k, 0) + 1
    part_hyper = tuple({k: (k if counts[k] == 1 else f"{i}/{k}") for k in t.hyper} for i, t in enumerate(transforms))
    hyper = {part_hyper[i][k]: v for i, t in enumerate(transforms) for k, v in t.hyper.items()}
    return Transform(hyper, name=" >> ".join(t.name for t in transforms), parts=tuple(transforms),
                     part_hyper=tuple({k: c for k, c in m.items()} for m in part_hyper))


# --------------------------------------------------------------------------- transforms


def scale_by_learning_rate(learning_rate: float | Schedule = 1e-3) -> Transform:
    """``u = -learning_rate * g``: the sign and the step live here, as in optax.

    ``learning_rate`` is a number (a runtime hyperparameter) or a schedule, a
    function of the step count ``lr(count)`` evaluated at the count *before*
    this step (the first step uses ``lr(0)``). The count arrives as a float of
    the parameters' dtype; the schedules below follow optax's own dtypes (its
    polynomial and exponential schedules compute in float32).
    """
    if callable(learning_rate):
        def update_fn(h, s, params, updates):
            lr = T.cast(learning_rate(_as_float(s["count"], updates)), _dtype(updates))
            step = -lr
            return {"count": _increment(s["count"])}, {n: step * g for n, g in updates.items()}
        return Transform({}, lambda ptypes: {"count": StateSpec(COUNT, 0)}, update_fn, "scale_by_schedule")
    def update_fn(h, s, params, updates):
        step = -h["learning_rate"]  # negated once, as optax's -learning_rate * g
        return {}, {n: step * g for n, g in updates.items()}
    return Transform(_hyper("scale_by_learning_rate", learning_rate=learning_rate), update_fn=update_fn,
                     name="scale_by_learning_rate")


def trace(decay: float = 0.9, nesterov: bool = False, accumulator_dtype: str | None = None) -> Transform:
    """Momentum: ``m = g + decay * m``; ``u = m`` (or ``g + decay * m`` with Nesterov).

    The decay is the runtime hyperparameter ``momentum``; the state is ``{"trace": ...}``.
    """
    def update_fn(h, s, params, updates):
        m = {n: g + h["momentum"] * s["trace"][n] for n, g in updates.items()}
        out = {n: g + h["momentum"] * m[n] for n, g in updates.items()} if nesterov else m
        return {"trace": m}, out
    accumulator_dtype = _dtype_option(accumulator_dtype, "trace: accumulator_dtype")
    return Transform(_hyper("trace", momentum=decay),
                     lambda ptypes: {"trace": _per_param(ptypes, dtype=accumulator_dtype)}, update_fn, "trace")


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> Transform:
    """AdaGrad's preconditioner: ``G += g**2``; ``u = g / sqrt(G + eps)`` where ``G > 0``."""
    def update_fn(h, s, params, updates):
        acc, out = {}, {}
        for n, g in updates.items():
            acc[n] = g * g + s["sum_of_squares"][n]
            inv = T.where(T.greater(acc[n], 0.0), 1.0 / T.sqrt(acc[n] + h["eps"]), T.zeros_like(acc[n]))
            out[n] = inv * g
        return {"sum_of_squares": acc}, out
    initial = real(initial_accumulator_value, "scale_by_rss: initial_accumulator_value", 0)
    return Transform(_hyper("scale_by_rss", eps=eps), lambda ptypes: {"sum_of_squares": _per_param(ptypes, initial)},
                     update_fn, "scale_by_rss")


def _rms_like(centered: bool):
    name = "scale_by_stddev" if centered else "scale_by_rms"

    def make(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, bias_correction=False) -> Transform:
        initial_scale = real(initial_scale, f"{name}: initial_scale", 0)

        def state_fn(ptypes):
            out = {"count": StateSpec(COUNT, 0)} if bias_correction else {}
            if centered:
                out["mu"] = _per_param(ptypes)
            out["nu"] = _per_param(ptypes, initial_scale)
            return out

        def update_fn(h, s, params, updates):
            d = h["decay"]
            new_s, mus, nus, out = {}, {}, {}, {}
            if bias_correction:
                new_s["count"] = _increment(s["count"])
                c = _correction(d, _as_float(new_s["count"], updates))
            for n, g in updates.items():
                nus[n] = nu = (1.0 - d) * (g * g) + d * s["nu"][n]
                nu_hat = nu / c if bias_correction else nu
                if centered:
                    mus[n] = mu = (1.0 - d) * g + d * s["mu"][n]
                    mu_hat = mu / c if bias_correction else mu
                    nu_hat = nu_hat - mu_hat * mu_hat
                scaling = 1.0 / T.sqrt(nu_hat + h["eps"]) if eps_in_sqrt else 1.0 / (T.sqrt(nu_hat) + h["eps"])
                out[n] = scaling * g
            if centered:
                new_s["mu"] = mus
            new_s["nu"] = nus
            return new_s, out
        return Transform(_hyper(name, decay=decay, eps=eps), state_fn, update_fn, name)
    return make


scale_by_rms = _rms_like(False)
scale_by_rms.__doc__ = "RMSProp's preconditioner, as ``optax.scale_by_rms``."
scale_by_stddev = _rms_like(True)
scale_by_stddev.__doc__ = "Centred RMSProp's preconditioner, as ``optax.scale_by_stddev``."


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  mu_dtype: str | None = None, *, nesterov: bool = False) -> Transform:
    """Adam's preconditioner (Kingma & Ba, Algorithm 1), as ``optax.scale_by_adam``;
    state ``{"count", "mu", "nu"}`` as optax's ``ScaleByAdamState``."""
    def update_fn(h, s, params, updates):
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
            out[n] = mu_hat / (T.sqrt(nu_hat + h["eps_root"]) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_adam: mu_dtype")
    return Transform(_hyper("scale_by_adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                     lambda ptypes: _adam_state(ptypes, mu_dtype),
                     update_fn, "scale_by_adam")


def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                     mu_dtype: str | None = None, bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> Transform:
    """AMSGrad: Adam with the running maximum of the (bias-corrected) second moment."""
    def update_fn(h, s, params, updates):
        count = _increment(s["count"])
        t = _as_float(count, updates)
        c1, c2 = _correction(h["b1"], t), _correction(h["b2"], t)
        one_minus = _complements(h)
        mus, nus, maxs, out = {}, {}, {}, {}
        for n, g in updates.items():
            mus[n], nus[n] = mu, nu = _moments(h, one_minus, g, s["mu"][n], s["nu"][n])
            mu_hat = mu / c1 if bias_correction_mu else mu
            nu_eff = nu / c2 if bias_correction_nu else nu
            maxs[n] = T.maximum(s["nu_max"][n], nu_eff)
            out[n] = mu_hat / (T.sqrt(maxs[n] + h["eps_root"]) + h["eps"])
        return {"count": count, "mu": mus, "nu": nus, "nu_max": maxs}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_amsgrad: mu_dtype")
    return Transform(_hyper("scale_by_amsgrad", b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                     lambda ptypes: _adam_state(ptypes, mu_dtype, "nu_max"), update_fn, "scale_by_amsgrad")


def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, mu_dtype: str | None = None, *,
                   nesterov: bool = False, use_clipping: bool = True,
                   clip_value_fn: Callable[[Wire], Wire] = lambda x: x ** 0.25) -> Transform:
    """ADOPT (arXiv 2411.02853), as ``optax.contrib.scale_by_adopt``: the gradient is
    normalised by the *previous* second moment; the first step only records it."""
    def update_fn(h, s, params, updates):
        c = _as_float(s["count"], updates)
        started = T.greater(c, 0.0)
        b2_ = T.where(started, h["b2"], T.zeros_like(h["b2"]))
        b1_ = T.where(started, h["b1"], T.zeros_like(h["b1"]) + 1.0)
        clip_value = clip_value_fn(c) if use_clipping else None
        mus, nus, out = {}, {}, {}
        for n, g in updates.items():
            nu_old = s["nu"][n]
            nus[n] = (1.0 - b2_) * (g * g) + b2_ * nu_old
            z = g / T.maximum(T.sqrt(nu_old), h["eps"])
            if use_clipping:
                z = T.clip(z, -clip_value, clip_value)
            mus[n] = mu = (1.0 - b1_) * z + b1_ * s["mu"][n]
            out[n] = (1.0 - b1_) * z + b1_ * mu if nesterov else mu
        return {"count": _increment(s["count"]), "mu": mus, "nu": nus}, out
    mu_dtype = _dtype_option(mu_dtype, "scale_by_adopt: mu_dtype")
    return Transform(_hyper("scale_by_adopt", b1=b1, b2=b2, eps=eps), lambda ptypes: _adam_state(ptypes, mu_dtype),
                     update_fn, "scale_by_adopt")


def scale_by_dog(init_step: tuple[str, float] = ("heuristic", 1e-6), eps: float = 1e-8) -> Transform:
    """Distance over Gradients (arXiv 2302.12022), as ``optax.contrib.scale_by_dog``:
    step size ``max_dist / sqrt(sum of squared gradient norms + eps)``."""
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

    def state_fn(ptypes):
        low = _lowest(ptypes)
        return {"is_init_step": StateSpec(_scalar("bool"), 1),
                "init_params": {n: StateSpec(t, lambda params, n=n: params[n]) for n, t in ptypes.items()},
                "max_dist": StateSpec(_scalar(low), r_epsilon), "sum_sq_norm_grads": StateSpec(_scalar(low), 0.0)}

    def update_fn(h, s, params, updates):
        diff = {n: s["init_params"][n] - p for n, p in params.items()}
        max_dist = T.maximum(s["max_dist"], T.sqrt(_sq_norm(diff)))
        sum_sq = s["sum_sq_norm_grads"] + _sq_norm(updates)
        lr = max_dist / T.sqrt(sum_sq + h["eps"])
        if kind == "learning_rate":
            lr = T.where(s["is_init_step"], T.zeros_like(lr) + value, lr)
        new_s = {"is_init_step": T.zeros_like(s["is_init_step"]), "init_params": dict(s["init_params"]),
                 "max_dist": max_dist, "sum_sq_norm_grads": sum_sq}
        return new_s, {n: lr * g for n, g in updates.items()}
    return Transform(_hyper("scale_by_dog", eps=eps), state_fn, update_fn, "scale_by_dog")


def add_decayed_weights(weight_decay: float = 0.0, mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """Decoupled weight decay: ``u = g + weight_decay * p`` on the parameters ``mask`` selects.

    ``mask`` is a dict ``{name: bool}`` or a function of the dict
    ``{name: ArrayType}`` returning one (e.g. ``lambda t: {n: a.ndim > 1 for n, a in t.items()}``).
    """
    def update_fn(h, s, params, updates):
        selected = _mask(mask, {n: p.type for n, p in params.items()})
        return s, {n: (g + h["weight_decay"] * params[n]) if selected[n] else g for n, g in updates.items()}
    return Transform(_hyper("add_decayed_weights", weight_decay=weight_decay), update_fn=update_fn,
                     name="add_decayed_weights")


def _mask(mask, ptypes) -> dict[str, bool]:
    if mask is None:
        return {n: True for n in ptypes}
    m = mask(ptypes) if callable(mask) else mask
    missing = set(ptypes) - set(m)
    if missing:
        raise KeyError(f"the mask does not say whether to decay {sorted(missing)}")
    return {n: bool(m[n]) for n in ptypes}


def clip_by_global_norm(max_norm: float) -> Transform:
    """Scale all updates by ``max_norm / ||g||`` when the global norm ``||g||`` reaches ``max_norm``."""
    def update_fn(h, s, params, updates):
        norm = T.sqrt(_sq_norm(updates))
        below = T.greater(h["max_norm"] + T.zeros_like(norm), norm)
        return s, {n: T.where(below, g, (g / norm) * h["max_norm"]) for n, g in updates.items()}
    return Transform(_hyper("clip_by_global_norm", max_norm=max_norm), update_fn=update_fn, name="clip_by_global_norm")


# --------------------------------------------------------------------------- optimizers (optax aliases)


def sgd(learning_rate: float | Schedule = 1e-2, momentum: float | None = None, nesterov: bool = False,
        accumulator_dtype: str | None = None) -> Transform:
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as ``optax.sgd``."""
    steps = [trace(momentum, nesterov, accumulator_dtype)] if momentum is not None else []
    return chain(*steps, scale_by_learning_rate(learning_rate))


def momentum(learning_rate: float | Schedule = 1e-2, momentum: float = 0.9) -> Transform:  # noqa: F811
    """Heavy-ball momentum: ``sgd(learning_rate, momentum)``."""
    return sgd(learning_rate, momentum)


def nesterov(learning_rate: float | Schedule = 1e-2, momentum: float = 0.9) -> Transform:
    """Nesterov momentum: ``sgd(learning_rate, momentum, nesterov=True)``."""
    return sgd(learning_rate, momentum, nesterov=True)


def adagrad(learning_rate: float | Schedule, initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> Transform:
    """AdaGrad, as ``optax.adagrad`` (``eps`` inside the square root, accumulator from 0.1)."""
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


def rmsprop(learning_rate: float | Schedule, decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
            eps_in_sqrt: bool = True, centered: bool = False, momentum: float | None = None,
            nesterov: bool = False, bias_correction: bool = False) -> Transform:
    """RMSProp (plain or centred), as ``optax.rmsprop``; momentum traces the scaled steps."""
    pre = (scale_by_stddev if centered else scale_by_rms)(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    post = [trace(momentum, nesterov)] if momentum is not None else []
    return chain(pre, scale_by_learning_rate(learning_rate), *post)


def adam(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, mu_dtype: str | None = None, *, nesterov: bool = False) -> Transform:
    """Adam, as ``optax.adam``: ``scale_by_adam(...) >> scale_by_learning_rate(lr)``."""
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, mu_dtype: str | None = None, weight_decay: float = 1e-4,
          mask: Mapping[str, bool] | Callable | None = None, *, nesterov: bool = False) -> Transform:
    """AdamW (decoupled weight decay, multiplied by the learning rate), as ``optax.adamw``."""
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


def amsgrad(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
            eps_root: float = 0.0, mu_dtype: str | None = None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> Transform:
    """AMSGrad, as ``optax.amsgrad``."""
    return chain(scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu),
                 scale_by_learning_rate(learning_rate))


def adopt(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6,
          mu_dtype: str | None = None, *, nesterov: bool = False, use_clipping: bool = True,
          clip_value_fn: Callable[[Wire], Wire] = lambda x: x ** 0.25) -> Transform:
    """ADOPT, as ``optax.contrib.adopt`` (its first update is zero)."""
    return chain(scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping,
                                clip_value_fn=clip_value_fn), scale_by_learning_rate(learning_rate))


def dog(learning_rate: float | Schedule = 1.0, init_step: tuple[str, float] = ("heuristic", 1e-6),
        eps: float = 1e-8, weight_decay: float | None = None,
        mask: Mapping[str, bool] | Callable | None = None) -> Transform:
    """DoG, as ``optax.contrib.dog`` (v0.2.6+ ``init_step`` semantics).

    Initialise it with the real initial parameters: it measures distances from them.
    """
    first = [add_decayed_weights(weight_decay, mask)] if weight_decay is not None else []
    return chain(*first, scale_by_dog(init_step, eps), scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------- schedules
# A schedule is a function of the (float) step count wire, written with wire
# arithmetic, so it becomes part of the training step term.


def constant_schedule(value: float) -> Schedule:
    """``lr(count) = value``."""
    value = real(value, "constant_schedule: value")
    return lambda count: T.zeros_like(count) + value


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float, transition_begin: int = 0,
                      staircase: bool = False, end_value: float | None = None) -> Schedule:
    """``init_value * decay_rate ** ((count - transition_begin) / transition_steps)``, as optax."""
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
        count = T.cast(count, "float32")  # optax divides int32 counts: float32
        shifted = count - float(transition_begin)
        p = shifted / float(transition_steps)
        if staircase:
            p = T.floor(p)
        init = T.zeros_like(count) + float(init_value)
        value = T.where(T.greater(shifted, 0.0), float(init_value) * T.power(float(decay_rate), p), init)
        if end_value is not None:
            end = T.zeros_like(count) + float(end_value)
            value = T.maximum(value, end) if decay_rate < 1.0 else T.minimum(value, end)
        return value
    return schedule


def cosine_decay_schedule(init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``, as optax."""
    if decay_steps <= 0:
        raise ValueError(f"cosine_decay_schedule: decay_steps must be positive, got {decay_steps}")
    init_value = real(init_value, "cosine_decay_schedule: init_value")
    alpha, exponent = real(alpha, "cosine_decay_schedule: alpha"), real(exponent, "cosine_decay_schedule: exponent")

    def schedule(count):
        c = T.minimum(count, T.zeros_like(count) + float(decay_steps))
        cosine = 0.5 * (1.0 + T.cos(math.pi * c / float(decay_steps)))
        return float(init_value) * ((1.0 - alpha) * cosine ** float(exponent) + alpha)
    return schedule


def polynomial_schedule(init_value: float, end_value: float, power: float, transition_steps: int,
                        transition_begin: int = 0) -> Schedule:
    """Polynomial interpolation from ``init_value`` to ``end_value``, as optax."""
    init_value, power = real(init_value, "polynomial_schedule: init_value"), real(power, "polynomial_schedule: power")
    end_value = real(end_value, "polynomial_schedule: end_value")
    if transition_steps <= 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        count = T.cast(count, "float32")  # optax divides int32 counts: float32
        c = T.clip(count - float(transition_begin), T.zeros_like(count), T.zeros_like(count) + float(transition_steps))
        frac = 1.0 - c / float(transition_steps)
        return (float(init_value) - float(end_value)) * frac ** float(power) + float(end_value)
    return schedule


def linear_schedule(init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0) -> Schedule:
    """Linear interpolation (a warm-up when ``end_value > init_value``), as optax."""
    return polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)


def join_schedules(schedules, boundaries) -> Schedule:
    """``schedules[i]`` from ``boundaries[i-1]`` on, each restarted at its boundary, as optax
    (the joined values take the first schedule's dtype, as optax's weak types do)."""
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules or len(boundaries) != len(schedules) - 1:
        raise ValueError(f"join_schedules: {len(schedules)} schedules need {max(len(schedules) - 1, 0)} boundaries "
                         f"(one between each two), got boundaries={boundaries!r}")

    def schedule(count):
        out = schedules[0](count)
        for boundary, s in zip(boundaries, schedules[1:]):
            before = T.greater(T.zeros_like(count) + float(boundary), count)
            out = T.where(before, out, T.cast(s(count - float(boundary)), out.type.dtype))
        return out
    return schedule


def warmup_cosine_decay_schedule(init_value: float, peak_value: float, warmup_steps: int, decay_steps: int,
                                 end_value: float = 0.0, exponent: float = 1.0) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``, as optax."""
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
    """
    return _backend("jax").to_optax(opt)


def from_optax(tx) -> Transform:
    """Wrap any ``optax.GradientTransformation`` as a paralens optimizer.

    Its update is one *opaque* box computed by optax on JAX arrays: paralens
    cannot see inside it, so it cannot be drawn in detail, evaluated by the
    SymPy or NumPy backends, or differentiated by ``R`` (a bilevel problem
    cannot learn through it). Its state is optax's state leaves, as a tuple in
    optax's order. Needs optax and the JAX backend.
    """
    return _backend("jax").from_optax(tx)
