"""Bilevel learning: hyperparameters as one more Para level (MATH.md 8).

The inner learner trains the model's parameters ``w`` on the training
objective ``J(w; lambda)``. A hyperparameter ``lambda`` is a wire of that
objective (an L2 strength, one weight per training example) or of the inner
optimizer lens (its learning rate). The outer learner trains ``theta``, with
``lambda = positive(theta)``, on the validation objective ``V(w)`` evaluated
after inner training. Its hypergradient is a reverse derivative, built here
as terms:

* *unrolled*: ``F(theta) = V(loop^K(step)(w0; lambda(theta)))``; ``R(F)`` runs the
  reverse loop (the loop is one ``scan`` box, so the term does not grow with K);
* *truncated*: the first ``K - k`` steps behind ``stop_gradient``;
* *implicit*: ``-(d2 J / dw dlambda)^T H^{-1} grad_w V`` at the inner solution,
  with Hessian-vector products and the mixed term both read off ``R(R(J))``.

>>> import paralens as pl
>>> problem = pl.Bilevel(pl.nn.dense(3, 1), pl.losses.mse(), pl.optim.sgd(0.1),
...                      hyper={"l2": pl.Hyper(0.1)}, method=pl.bilevel.unrolled(20))
>>> problem.hyper_names
('l2',)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import prims as P
from . import trace as T
from .derivative import R, value_and_R
from .learner import apply_transform, cast_to
from .loops import loop, scan_term
from .optim import Transform, adam
from .terms import Builder, Poly, Term
from .trace import Wire
from .types import ArrayType

__all__ = ["Hyper", "Bilevel", "unrolled", "truncated", "implicit", "hoag", "Method"]

OBJECTIVE_HYPERS = ("l2", "weights")


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter to learn: its initial ``value`` and how it is kept in range.

    ``positive``: ``"log"`` (``lambda = exp(theta)``, the default), ``"softplus"``,
    ``"sigmoid"`` (``lambda`` in (0, 1)) or ``None`` (``lambda = theta``).
    ``per_example``: one value per training example (``value`` is then a
    sequence, or a number repeated).
    """

    value: Any
    positive: str | None = "log"
    per_example: bool = False

    def __post_init__(self):
        if self.positive not in ("log", "softplus", "sigmoid", None):
            raise ValueError(f"positive must be 'log', 'softplus', 'sigmoid' or None, got {self.positive!r}")


@dataclass(frozen=True)
class Method:
    """How the hypergradient is computed; build with :func:`unrolled`, :func:`truncated`,
    :func:`implicit` or :func:`hoag`."""

    kind: str
    steps: int = 100           # inner steps per outer step (unrolled, truncated, implicit's inner solve)
    truncate: int | None = None
    solver: str = "cg"          # implicit: "cg", "neumann" or "exact"
    solver_steps: int = 100
    alpha: float | None = None  # Neumann step; None: 1 / (largest Hessian eigenvalue, by power iteration)
    tol0: float = 0.1           # HOAG: tolerance of outer step k is tol0 * tol_decay ** k
    tol_decay: float = 0.9
    max_inner: int = 1000


def unrolled(steps: int = 100) -> Method:
    """Differentiate through ``steps`` inner optimizer steps (exact for the unrolled map)."""
    return Method("unrolled", steps)


def truncated(steps: int = 100, backprop: int = 10) -> Method:
    """Run ``steps`` inner steps but back-propagate through the last ``backprop`` only (Shaban et al.)."""
    if not 1 <= backprop <= steps:
        raise ValueError(f"backprop must be in 1..steps, got {backprop} of {steps}")
    return Method("truncated", steps, truncate=backprop)


def implicit(inner_steps: int = 100, solver: str = "cg", solver_steps: int = 100, alpha: float | None = None) -> Method:
    """Implicit function theorem at the inner solution (Lorraine et al.): ``inner_steps`` warm-started
    inner steps, then ``H q = grad_w V`` by conjugate gradient, a Neumann series, or exactly."""
    if solver not in ("cg", "neumann", "exact"):
        raise ValueError(f"solver must be 'cg', 'neumann' or 'exact', got {solver!r}")
    return Method("implicit", inner_steps, solver=solver, solver_steps=solver_steps, alpha=alpha)


def hoag(tol0: float = 0.1, tol_decay: float = 0.9, max_inner: int = 1000, solver_steps: int = 100) -> Method:
    """HOAG (Pedregosa): inner solves and CG solves to a tolerance ``tol0 * tol_decay**k``
    that shrinks with the outer step ``k`` (summable, so the outer iterates converge)."""
    return Method("hoag", max_inner, solver="cg", solver_steps=solver_steps, tol0=tol0, tol_decay=tol_decay,
                  max_inner=max_inner)


def _positive(theta: Wire, how: str | None) -> Wire:
    if how == "log":
        return T.exp(theta)
    if how == "softplus":
        return T.softplus(theta)
    if how == "sigmoid":
        return T.sigmoid(theta)
    return theta


class Bilevel:
    """A bilevel problem: inner learner (model, loss, optimizer), hyperparameters, method.

    ``hyper`` maps names to :class:`Hyper`: ``"l2"`` (strength of
    ``l2/2 * sum ||w||^2`` added to the training objective), ``"weights"`` (one
    weight per training example, multiplying its loss) or any hyperparameter
    of the inner optimizer (``"learning_rate"``). ``l2`` fixes the penalty
    when it is not learned. With ``batch_size``, each inner step of the
    unrolled and truncated methods sees its own minibatch (drawn by ``fit``);
    otherwise every inner step uses the whole training set. The validation objective is ``validation_loss``
    (default: the training loss, unweighted). ``outer_optimizer`` trains
    ``theta``.
    """

    def __init__(self, model: Term, loss: Poly | Term, optimizer: Transform, *, hyper: dict[str, Hyper],
                 method: Method | None = None, outer_optimizer: Transform | None = None, l2: float = 0.0,
                 validation_loss: Poly | Term | None = None, batch_size: int | None = None):
        self.model = model
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.method = method or implicit()
        self.outer_optimizer = outer_optimizer or adam(1e-2)
        self.hyper = dict(hyper)
        self.l2 = float(l2)
        unknown = [k for k in self.hyper if k not in OBJECTIVE_HYPERS and k not in optimizer.hyper]
        if unknown:
            raise KeyError(f"unknown hyperparameters {unknown}: use 'l2', 'weights' or one of the optimizer's "
                           f"{sorted(optimizer.hyper)}")
        if "weights" in self.hyper and not self.hyper["weights"].per_example:
            raise ValueError("the 'weights' hyperparameter needs per_example=True")
        if batch_size is not None and self.method.kind not in ("unrolled", "truncated"):
            raise ValueError("minibatch inner steps (batch_size=...) need method=unrolled(...) or truncated(...)")
        if batch_size is not None and "weights" in self.hyper:
            raise ValueError("per-example weights need full-batch inner steps (batch_size=None)")
        if self.method.kind in ("implicit", "hoag") and any(k in optimizer.hyper for k in self.hyper):
            raise ValueError("implicit hypergradients see only the inner solution: optimizer hyperparameters "
                             "such as the learning rate need method=unrolled(...) or truncated(...)")
        at = model.cod
        self.loss_each = (loss.at(at) if isinstance(loss, Poly) else loss)
        val = validation_loss if validation_loss is not None else loss
        self.validation_loss = val.at(at) if isinstance(val, Poly) else val
        self._check_losses()

    def _check_losses(self):
        for name, l in (("loss", self.loss_each), ("validation_loss", self.validation_loss)):
            if l.dom != self.model.cod:
                raise TypeError(f"the {name} {l.name} takes {l.dom}, but the model returns {self.model.cod}")

    # ---------------------------------------------------------------- names and types
    @property
    def hyper_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.hyper))

    @cached_property
    def label_types(self) -> tuple[ArrayType, ...]:
        return tuple(s.type for s in self.loss_each.params)

    @cached_property
    def hyper_dtype(self) -> str:
        return P.promote([ArrayType((), "float32"), *self.model.param_types.values()])

    def theta_type(self, name: str) -> ArrayType:
        """The type of ``theta[name]`` as a wire: per-example ones are batched scalars."""
        return ArrayType((), self.hyper_dtype, batched=self.hyper[name].per_example)

    @cached_property
    def state_specs(self) -> dict:
        return self.optimizer.state(self.model.param_types)

    # ---------------------------------------------------------------- terms
    def _objective(self, b: Builder, params: dict, xs, ys, lam: dict) -> int:
        """Emit the training objective ``J``; returns its (unbatched scalar) wire."""
        (pred,) = b.inline(self.model, xs, params=dict(zip(self.model.param_wires, params.values())))
        per = self._per_example(b, pred, ys)
        w = Wire(b, per)
        if "weights" in lam:
            w = lam["weights"] * w
        obj = T.batch_mean(w)
        l2 = lam.get("l2")
        if l2 is not None or self.l2:
            total = None
            for p in params.values():
                pw = Wire(b, p)
                sq = T.sum(pw * pw) if pw.ndim else pw * pw
                total = sq if total is None else total + sq
            obj = obj + (0.5 * l2 * total if l2 is not None else (0.5 * self.l2) * total)
        return obj.id

    def _per_example(self, b: Builder, pred: int, ys) -> int:
        loss = self.loss_each
        (out,) = b.inline(loss, [pred], params=dict(zip(loss.param_wires, ys)))
        t = b.type_of(out)
        if t.batched:
            return out
        raise TypeError(f"bilevel needs per-example losses: build the loss with reduction='none' "
                        f"(got {loss.name} returning {t})")

    @cached_property
    def objective(self) -> Term:
        """``J``: params = the model's; inputs ``(x, y, *objective hypers)``; output the training objective."""
        b = Builder()
        pw = [b.param(s.layer, s.slot, s.local, s.type, s.init) for s in self.model.params]
        params = dict(zip(self.model.param_names, pw))
        xs = [b.input(t) for t in self.model.dom]
        ys = [b.input(t) for t in self.label_types]
        names = [k for k in self.hyper_names if k in OBJECTIVE_HYPERS]
        lam = {k: Wire(b, b.input(self.theta_type(k))) for k in names}
        out = self._objective(b, params, xs, ys, lam)
        return b.build(xs + ys + [w.id for w in lam.values()], [out], name=f"J({self.model.name})")

    @cached_property
    def validation(self) -> Term:
        """``V``: params = the model's; inputs ``(x_val, y_val)``; output the validation objective."""
        b = Builder()
        pw = [b.param(s.layer, s.slot, s.local, s.type, s.init) for s in self.model.params]
        xs = [b.input(t) for t in self.model.dom]
        ys = [b.input(s.type) for s in self.validation_loss.params]
        (pred,) = b.inline(self.model, xs, params=dict(zip(self.model.param_wires, pw)))
        (out,) = b.inline(self.validation_loss, [pred], params=dict(zip(self.validation_loss.param_wires, ys)))
        if b.type_of(out).batched:
            out = T.batch_mean(Wire(b, out)).id
        return b.build(xs + ys, [out], name=f"V({self.model.name})")

    def compile(self, backend: str = "jax", **options):
        """The outer training step, compiled with JAX (see ``paralens.backends.bilevel``)."""
        if backend != "jax":
            raise ValueError(f"bilevel problems run on the jax backend, not {backend!r}")
        return importlib.import_module("paralens.backends.bilevel").CompiledBilevel(self, **options)

    def _lambda(self, b: Builder, theta: dict) -> dict:
        return {k: _positive(Wire(b, w), self.hyper[k].positive) for k, w in theta.items()}

    def _step_body(self, truncated_consts: bool = False) -> Term:
        """One inner optimizer step as a loop body:
        ``(params..., state..., theta..., x..., y...) -> (params'..., state'...)``."""
        m, opt = self.model, self.optimizer
        b = Builder()
        params = {n: b.input(t) for n, t in m.param_types.items()}
        state = {k: b.input(s.type) for k, s in self.state_specs.items()}
        theta = theta_in = {k: b.input(self.theta_type(k)) for k in self.hyper_names}
        xs = [b.input(t) for t in m.dom]
        ys = [b.input(t) for t in self.label_types]
        if truncated_consts:
            theta = {k: T.stop_gradient(Wire(b, w)).id for k, w in theta.items()}
        lam = self._lambda(b, theta)
        obj_lam = {k: v for k, v in lam.items() if k in OBJECTIVE_HYPERS}
        vr = value_and_R(self.objective)
        seed = P.emit_const(b, 1.0, (), self.hyper_dtype)
        outs = b.inline(vr, xs + ys + [w.id for w in obj_lam.values()] + [seed],
                        params=dict(zip(vr.param_wires, params.values())))
        grads = dict(zip(params, outs[1: 1 + len(params)]))
        hyper = {}
        for k, v in opt.hyper.items():
            hyper[k] = cast_to(b, lam[k], ArrayType((), self.hyper_dtype, False)) if k in lam else \
                P.emit_const(b, v, (), self.hyper_dtype)
        new_p, new_state, _ = apply_transform(b, opt, self.state_specs, state, hyper, params, grads)
        new_params = list(new_p.values())
        ins = list(params.values()) + list(state.values()) + list(theta_in.values()) + xs + ys
        return b.build(ins, new_params + [new_state[k] for k in self.state_specs], name="inner_step")

    @cached_property
    def inner_step(self) -> Term:
        return self._step_body()

    def inner_loop(self, steps: int, body: Term | None = None) -> Term:
        """``steps`` inner steps: ``(params, state, theta, x, y) -> (params', state')``; with
        minibatches, ``x`` and ``y`` hold one batch per step on a leading axis."""
        body = body or self.inner_step
        nc = len(self.model.params) + len(self.state_specs)
        if self.batch_size is None:
            return loop(body, steps, n_carry=nc)
        return scan_term(body, steps, n_carry=nc, n_const=len(self.hyper_names))

    @cached_property
    def unrolled_objective(self) -> Term:
        """``F(theta, w0, s0, x, y, x_val, y_val) -> (V(w_K), w_K, s_K)`` for the unrolled and truncated methods."""
        meth = self.method
        np_ = len(self.model.params)
        b = Builder()
        theta = [b.input(self.theta_type(k)) for k in self.hyper_names]
        carry_in = [b.input(t) for t in self.model.param_types.values()] + \
            [b.input(s.type) for s in self.state_specs.values()]
        carry = carry_in
        k_back = meth.steps if meth.kind == "unrolled" else meth.truncate
        k_front = meth.steps - k_back
        data_t = list(self.model.dom) + list(self.label_types)
        if self.batch_size is None:
            data = front_data = [b.input(t) for t in data_t]
        else:  # one minibatch per step, stacked; the truncated front has its own stack
            front_data = [b.input(t.with_shape((k_front,) + t.shape)) for t in data_t] if k_front else []
            data = [b.input(t.with_shape((k_back,) + t.shape)) for t in data_t]
        xv = [b.input(t) for t in self.model.dom]
        yv = [b.input(s.type) for s in self.validation_loss.params]
        if k_front:
            front = self.inner_loop(k_front, self._step_body(truncated_consts=True))
            carry = b.inline(front, carry + theta + front_data)
            carry = [T.stop_gradient(Wire(b, w)).id for w in carry]
        carry = b.inline(self.inner_loop(k_back), carry + theta + data)
        v = self.validation
        (val,) = b.inline(v, xv + yv, params=dict(zip(v.param_wires, carry[:np_])))
        extra = front_data if self.batch_size is not None else []
        return b.build(theta + carry_in + extra + data + xv + yv, [val] + carry, name="F")

    @cached_property
    def lambda_term(self) -> Term:
        """``theta -> lambda`` (the positivity parametrisation), one wire per hyperparameter."""
        b = Builder()
        theta = {k: b.input(self.theta_type(k)) for k in self.hyper_names}
        lam = self._lambda(b, theta)
        return b.build(list(theta.values()), [w.id for w in lam.values()], name="lambda(theta)")

    @cached_property
    def hvp_term(self) -> Term:
        """From ``R(R(J))``: ``(params; x, y, lambda_obj..., v...) -> (H v..., mixed...)`` where
        ``H = d2 J / dw2`` and ``mixed[k] = (d2 J / dw dlambda_k)^T v``."""
        j = self.objective
        rrj = R(R(j))
        b = Builder()
        pw = [b.param(s.layer, s.slot, s.local, s.type, s.init) for s in j.params]
        ins = [b.input(t) for t in j.dom]
        vs = [b.input(s.type) for s in j.params]
        one = P.emit_const(b, 1.0, (), self.hyper_dtype)
        zeros = [P.zeros_like(b, w) for w in ins]
        outs = b.inline(rrj, ins + [one] + vs + zeros, params=dict(zip(rrj.param_wires, pw)))
        n = len(pw)
        n_data = len(self.model.dom) + len(self.label_types)
        hv, mixed = outs[:n], outs[n + n_data: n + len(ins)]
        return b.build(ins + vs, hv + mixed, name="hvp(J)")
