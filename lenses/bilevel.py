"""Bilevel learning: hyperparameters as one more Para level (maths §8).

The inner learner trains the model's parameters ``w`` on the training
objective ``J(w; lambda)``; it is a :class:`~paralens.Learner`, assembled from
lenses like any other, and a hyperparameter ``lambda`` is any hyperparameter
wire of its step term: an optimizer's (the learning rate, Adam's ``eps``), a
loss's or a layer's numeric argument declared with
:func:`~paralens.hyperparameter` (Huber's ``delta``), or the objective's own
``l2`` strength and per-example ``weights``. The outer learner trains
``theta``, with ``lambda = positive(theta)``, on the validation objective
``V(w; lambda)`` evaluated after inner training. Its hypergradient is a
reverse derivative, built here as terms:

* *unrolled*: ``F(theta) = V(loop^K(step)(w0; lambda(theta)))``; ``R(F)`` runs the
  reverse loop (the loop is one ``scan`` box, so the term does not grow with K);
* *truncated*: the first ``K - k`` steps behind ``stop_gradient``;
* *implicit*: ``-(d2 J / dw dlambda)^T H^{-1} grad_w V`` at the inner solution,
  with Hessian-vector products and the mixed term both read off ``R(R(J))``.

>>> import paralens as pl
>>> problem = pl.Bilevel(pl.nn.dense(3, 1), pl.losses.huber(pl.hyperparameter(1.0), reduction="none"),
...                      pl.optim.sgd(0.1), hyper={"l2": pl.Hyper(0.1), "huber.delta": pl.Hyper()},
...                      method=pl.bilevel.unrolled(20))
>>> problem.hyper_names
('huber.delta', 'l2')
>>> sorted(problem.available_hypers)
['huber.delta', 'l2', 'learning_rate']
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import backends
from . import prims as P
from . import wires as W
from .derivative import R
from .init import constant
from .learner import Learner
from .loops import loop, scan_term
from .optim import Transform, adam
from .terms import Builder, Poly, Term, flatten, leaves, tree_map
from .types import ArrayType, positive_int, real
from .wires import Wire

__all__ = ["Hyper", "Bilevel", "unrolled", "truncated", "implicit", "hoag", "Method", "SolverWarning"]


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter to learn: its initial ``value`` and how it is kept in range.

    ``value=None`` starts from the wire's declared default. ``positive``:
    ``"log"`` (``lambda = exp(theta)``, the default), ``"softplus"``,
    ``"sigmoid"`` (``lambda`` in (0, 1)) or ``None`` (``lambda = theta``).
    ``per_example``: one value per training example (``value`` is then a
    sequence, or a number repeated).

    Attributes:
        value: the starting value of ``lambda`` (not of ``theta``): a real number, or for
            ``per_example`` a sequence with one per training example (a number is repeated);
            ``None`` (the default) starts from the wire's declared default. It must be one that
            ``positive`` reaches: > 0 for ``"log"`` and ``"softplus"``, in (0, 1) for
            ``"sigmoid"``, finite for ``None``.
        positive: how ``lambda`` is kept in range: ``"log"`` (the default), ``"softplus"``,
            ``"sigmoid"`` or ``None``.
        per_example: one value per training example (default ``False``); the ``"weights"``
            hyperparameter needs it.

    Raises:
        ValueError: ``positive`` is none of those, or ``value`` is not finite or out of the range
            ``positive`` reaches.
        TypeError: ``value`` is not a real number or a sequence of them.
    """

    value: Any = None
    positive: str | None = "log"
    per_example: bool = False

    def __post_init__(self):
        if self.positive not in _RANGES:
            raise ValueError(f"positive must be 'log', 'softplus', 'sigmoid' or None, got {self.positive!r}")
        if self.value is not None:
            _check_start(self.value, self.positive, f"Hyper({self.value!r}, positive={self.positive!r})")


class SolverWarning(RuntimeWarning):
    """An implicit hypergradient's linear solve ``H q = grad_w V`` failed at some outer steps
    (conjugate gradient met non-positive curvature, the Neumann series diverged, the exact
    solve was not finite); ``fit`` warns once, after its last step. Those steps left ``theta``
    and the outer optimizer's state unchanged. Make it an error with
    ``warnings.simplefilter("error", pl.bilevel.SolverWarning)``."""


#: The values each positivity map reaches: ``lambda = map(theta)`` for a finite ``theta``.
_RANGES = {
    "log": ("> 0 (lambda = exp(theta))", lambda v: v > 0),
    "softplus": ("> 0 (lambda = softplus(theta))", lambda v: v > 0),
    "sigmoid": ("in (0, 1) (lambda = sigmoid(theta))", lambda v: 0 < v < 1),
    None: ("finite (lambda = theta)", lambda v: True),
}


def _check_start(value, positive: str | None, what: str):
    """Refuse a starting ``value`` (a number, or one per example) that ``positive`` cannot reach:
    its inverse would give a NaN or infinite ``theta``."""
    flat = value.tolist() if hasattr(value, "tolist") else value
    flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
    expected, reached = _RANGES[positive]
    for v in flat:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{what}: the starting value must be a real number or a sequence of them, "
                            f"got {v!r} ({type(v).__name__})")
        if not (math.isfinite(v) and reached(v)):
            raise ValueError(f"{what}: the starting value must be {expected} for positive={positive!r}, "
                             f"got {v!r}")


@dataclass(frozen=True)
class Method:
    """How the hypergradient is computed; build with :func:`unrolled`, :func:`truncated`,
    :func:`implicit` or :func:`hoag` (which check the values; a ``Method`` made directly is not
    checked).

    Attributes:
        kind: ``"unrolled"``, ``"truncated"``, ``"implicit"`` or ``"hoag"``.
        steps: inner steps per outer step: the length of the unrolled and truncated loops, the
            warm-started inner steps of ``implicit``; for ``"hoag"``, ``max_inner``.
        truncate: ``truncated``: how many of the last inner steps the hypergradient goes back
            through; ``None`` for the other kinds.
        solver: the linear solve ``H q = grad_w V`` of the implicit kinds: ``"cg"`` (the default;
            always for ``"hoag"``), ``"neumann"`` or ``"exact"``.
        solver_steps: the most iterations of that solve (CG iterations or Neumann terms).
        alpha: the Neumann step; ``None``: ``1 / (largest eigenvalue of H)``, by power iteration.
        tol0: ``"hoag"``: the first outer step's tolerance; outer step ``k`` solves the inner
            problem (gradient norm) and the CG solve (residual norm) to ``tol0 * tol_decay**k``.
        tol_decay: ``"hoag"``: the factor the tolerance shrinks by at each outer step.
        max_inner: ``"hoag"``: the most inner steps of one inner solve.
    """

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
    """Differentiate through ``steps`` inner optimizer steps (exact for the unrolled map).

    Args:
        steps: inner steps per outer step, a positive int.

    Returns:
        The method.

    Raises:
        TypeError: ``steps`` is not an int.
        ValueError: ``steps`` is not positive.
    """
    return Method("unrolled", positive_int(steps, "unrolled: steps"))


def truncated(steps: int = 100, backprop: int = 10) -> Method:
    """Run ``steps`` inner steps but back-propagate through the last ``backprop`` only (Shaban et al.).

    Args:
        steps: inner steps per outer step, a positive int.
        backprop: how many of the last steps the hypergradient goes back through, in ``1..steps``.

    Returns:
        The method.

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``steps`` is not positive, or ``backprop`` is not in ``1..steps``.
    """
    steps, backprop = positive_int(steps, "truncated: steps"), positive_int(backprop, "truncated: backprop")
    if not 1 <= backprop <= steps:
        raise ValueError(f"backprop must be in 1..steps, got {backprop} of {steps}")
    return Method("truncated", steps, truncate=backprop)


def implicit(inner_steps: int = 100, solver: str = "cg", solver_steps: int = 100, alpha: float | None = None) -> Method:
    """Implicit function theorem at the inner solution (Lorraine et al.): ``inner_steps`` warm-started
    inner steps, then ``H q = grad_w V`` by conjugate gradient, a Neumann series, or exactly.

    Conjugate gradient needs ``H`` positive definite and the Neumann series
    ``alpha * sum_k (I - alpha H)^k`` needs ``0 < alpha < 2 / (largest eigenvalue of H)``
    (``alpha=None`` takes ``1 / largest eigenvalue``, by power iteration). A step whose solve
    fails (non-positive curvature ``p^T H p <= 0``; Neumann terms growing; a non-finite
    exact solve) reports ``solver_failed`` in its metrics and leaves ``theta`` unchanged,
    and ``fit`` warns (:class:`SolverWarning`).

    Args:
        inner_steps: warm-started inner optimizer steps per outer step, a positive int.
        solver: ``"cg"``, ``"neumann"`` or ``"exact"``.
        solver_steps: iterations of the linear solve (CG iterations or Neumann terms), a positive int
            (zero iterations would give a zero hypergradient, whatever the problem).
        alpha: the Neumann step; ``None``: ``1 / largest eigenvalue``.

    Returns:
        The method.

    Raises:
        TypeError: ``inner_steps`` or ``solver_steps`` is not an int.
        ValueError: an unknown solver, a step count that is not positive, or ``alpha`` not a finite
            number > 0.
    """
    inner_steps = positive_int(inner_steps, "implicit: inner_steps")
    solver_steps = positive_int(solver_steps, "implicit: solver_steps")
    if solver not in ("cg", "neumann", "exact"):
        raise ValueError(f"solver must be 'cg', 'neumann' or 'exact', got {solver!r}")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
                              or not (math.isfinite(alpha) and alpha > 0)):
        raise ValueError(f"alpha (the Neumann step) must be a finite number > 0, or None to take 1 / (largest "
                         f"eigenvalue of the inner Hessian), got {alpha!r}")
    return Method("implicit", inner_steps, solver=solver, solver_steps=solver_steps, alpha=alpha)


def hoag(tol0: float = 0.1, tol_decay: float = 0.9, max_inner: int = 1000, solver_steps: int = 100) -> Method:
    """HOAG (Pedregosa): inner solves and CG solves to a tolerance ``tol0 * tol_decay**k``
    that shrinks with the outer step ``k`` (summable, so the outer iterates converge).

    Args:
        tol0: the first outer step's tolerance, a finite number > 0.
        tol_decay: the factor the tolerance shrinks by at each outer step, in (0, 1): a decay of
            1 or more would let the tolerance stay or grow, and HOAG would not converge.
        max_inner: the most inner steps of one solve, a positive int.
        solver_steps: the most CG iterations of one solve, a positive int.

    Returns:
        The method.

    Raises:
        TypeError: an argument is not a number (or an int, for the step counts).
        ValueError: an argument out of its range.
    """
    tol0 = real(tol0, "hoag: tol0", 0, open_low=True)
    tol_decay = real(tol_decay, "hoag: tol_decay", 0, 1, open_low=True, open_high=True)
    max_inner = positive_int(max_inner, "hoag: max_inner")
    solver_steps = positive_int(solver_steps, "hoag: solver_steps")
    return Method("hoag", max_inner, solver="cg", solver_steps=solver_steps, tol0=tol0, tol_decay=tol_decay,
                  max_inner=max_inner)


def _positive(theta: Wire, how: str | None) -> Wire:
    if how == "log":
        return W.exp(theta)
    if how == "softplus":
        return W.softplus(theta)
    if how == "sigmoid":
        return W.sigmoid(theta)
    return theta


class Bilevel:
    """A bilevel problem: inner learner (model, loss, optimizer), hyperparameters, method.

    ``hyper`` maps names of hyperparameter wires to :class:`Hyper`: any of
    the inner learner's (``problem.available_hypers``): the optimizer's
    (``"learning_rate"``, ``"eps"``, ...), those declared with
    :func:`~paralens.hyperparameter` in the model or the loss
    (``"huber.delta"``), ``"l2"`` (strength of ``l2/2 * sum ||w||^2`` added to
    the training objective; ``l2=`` fixes it when it is not learned) and
    ``"weights"`` (one weight per training example, multiplying its loss). The
    loss must give per-example losses (``reduction="none"``). With
    ``batch_size``, each inner step of the unrolled and truncated methods sees
    its own minibatch (drawn by ``fit``); otherwise every inner step uses the
    whole training set. The validation objective is ``validation_loss``
    (default: the training loss, unweighted). ``outer_optimizer`` trains ``theta``.

    Args:
        model: the model the inner learner trains (a term); its output is what the losses take.
        loss: the training loss, giving per-example losses (``reduction="none"``): a term taking
            the model's outputs, or a :mod:`paralens.losses` loss instantiated at them.
        optimizer: the inner optimizer (a :mod:`paralens.optim` optimizer).
        hyper: the hyperparameters to learn, ``{wire name: Hyper}``; names among
            ``available_hypers``, ``"l2"`` and ``"weights"``.
        method: how the hypergradient is computed (:func:`unrolled`, :func:`truncated`,
            :func:`implicit` or :func:`hoag`); ``None`` (the default): ``implicit()``.
        outer_optimizer: the optimizer of ``theta``; ``None`` (the default): ``adam(1e-2)``.
        l2: the strength of the ``l2`` penalty when it is not learned (default ``0.0``: none);
            when ``"l2"`` is learned, its default value, where ``Hyper(value=None)`` starts.
        validation_loss: the loss of the validation objective ``V`` (a term or a
            :mod:`paralens.losses` loss, taking the model's outputs; per-example losses are
            averaged); its own hyperparameters stay at their declared defaults. ``None`` (the
            default): ``loss``, without the weights and the ``l2`` penalty.
        batch_size: examples in each inner step's minibatch (unrolled and truncated only; at most
            the training examples, checked by ``fit``); ``None`` (the default): every inner step
            sees the whole training set.

    Raises:
        TypeError: a loss that does not take the model's outputs, or a training loss that does not
            give per-example losses; parts the inner :class:`~paralens.Learner` refuses.
        KeyError: a name in ``hyper`` that is no hyperparameter wire of the problem.
        ValueError: a starting value (given, or a wire's default) that the ``Hyper``'s
            ``positive`` cannot reach; ``"weights"`` without ``per_example=True``; ``batch_size``
            with the implicit or HOAG method, or with ``"weights"``; an optimizer hyperparameter
            learned by the implicit or HOAG method, which sees only the inner solution.
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
        at = model.cod
        self.loss_each = loss.at(at) if isinstance(loss, Poly) else loss
        val = validation_loss if validation_loss is not None else loss
        self.validation_loss = val.at(at) if isinstance(val, Poly) else val
        self._check_losses()
        self.inner = Learner(self._exposed_model(), self._objective_loss(), optimizer)
        unknown = sorted(set(self.hyper) - set(self.available_hypers))
        if unknown:
            raise KeyError(f"unknown hyperparameters {unknown}: this problem's hyperparameter wires are "
                           f"{sorted(self.available_hypers)} (declare others with pl.hyperparameter)")
        for k, h in self.hyper.items():
            if h.value is None:  # the wire's default must be reachable too
                _check_start(self.available_hypers[k], h.positive, f"hyper[{k!r}] (the wire's default)")
        if "weights" in self.hyper and not self.hyper["weights"].per_example:
            raise ValueError("the 'weights' hyperparameter needs per_example=True")
        if batch_size is not None and self.method.kind not in ("unrolled", "truncated"):
            raise ValueError("minibatch inner steps (batch_size=...) need method=unrolled(...) or truncated(...)")
        if batch_size is not None and "weights" in self.hyper:
            raise ValueError("per-example weights need full-batch inner steps (batch_size=None)")
        if self.method.kind in ("implicit", "hoag") and any(k in optimizer.hyper for k in self.hyper):
            raise ValueError("implicit hypergradients see only the inner solution: optimizer hyperparameters "
                             "such as the learning rate need method=unrolled(...) or truncated(...)")

    def _check_losses(self):
        for name, l in (("loss", self.loss_each), ("validation_loss", self.validation_loss)):
            if l.dom != self.model.cod:
                raise TypeError(f"the {name} {l.name} takes {l.dom}, but the model returns {self.model.cod}")

    # ---------------------------------------------------------------- the inner learner
    def _exposed_model(self) -> Term:
        """The model, also returning its trainable parameters (for the ``l2`` penalty)."""
        m = self.model
        b = Builder()
        pw = [b.redeclare(s) for s in m.params]
        xs = [b.input(t) for t in m.dom]
        ys = b.inline(m, xs, params=dict(zip(m.param_wires, pw)))
        return b.build(xs, ys + [w for w, s in zip(pw, m.params) if not s.hyper], in_sig=m.in_sig,
                       name=m.name)

    def _objective_loss(self) -> Term:
        """``J``'s loss lens: ``(label, weights, l2, loss hypers; prediction, params) -> mean_i w_i loss_i
        + l2 / 2 * sum ||w||^2``."""
        loss = self.loss_each
        trainable = [s.type for s in self.model.params if not s.hyper]
        b = Builder()
        specs = [b.redeclare(s) for s in loss.params]
        pred = b.input(self.model.cod[0])
        ps = [b.input(t) for t in trainable]
        dtype = self.hyper_dtype
        (per,) = b.inline(loss, [pred], params=dict(zip(loss.param_wires, specs)))
        if not b.type_of(per).batched:
            raise TypeError(f"bilevel needs per-example losses: build the loss with reduction='none' "
                            f"(got {loss.name} returning {b.type_of(per)})")
        with W.tracing(b):
            w = Wire(b, per)
            if "weights" in self.hyper:
                w = Wire(b, b.param("weights", 0, "", ArrayType((), dtype), constant(1.0), hyper=True)) * w
            obj = W.batch_mean(w)
            if "l2" in self.hyper or self.l2:
                l2 = Wire(b, b.param("l2", 0, "", ArrayType((), dtype, False), constant(self.l2), hyper=True)) \
                    if "l2" in self.hyper else self.l2
                total = None
                for p in ps:
                    pw = Wire(b, p)
                    sq = W.sum(pw * pw) if pw.ndim else pw * pw
                    total = sq if total is None else total + sq
                obj = obj + 0.5 * l2 * total
        return b.build([pred] + ps, [obj.id], name=f"J({loss.name})")

    # ---------------------------------------------------------------- names and types
    @property
    def hyper_names(self) -> tuple[str, ...]:
        """The hyperparameters learned, sorted."""
        return tuple(sorted(self.hyper))

    @property
    def available_hypers(self) -> dict[str, float]:
        """Every hyperparameter wire of the inner step and its default value."""
        return self.inner.hyper_defaults

    @cached_property
    def label_types(self) -> tuple[ArrayType, ...]:
        """The types of the training labels ``y`` (the inner learner's)."""
        return self.inner.label_types

    @cached_property
    def hyper_dtype(self) -> str:
        """The float dtype of the ``l2`` and ``weights`` wires: float32 promoted with the model's
        parameters' dtypes."""
        return P.promote([ArrayType((), "float32"), *self.model.param_types.values()])

    def theta_type(self, name: str) -> ArrayType:
        """The type of ``theta[name]`` as a wire: per-example ones are batched scalars.

        Args:
            name: a hyperparameter wire of the inner step (a key of ``available_hypers``).

        Returns:
            The :class:`~paralens.ArrayType` of its wire in the inner learner's
                ``state["hyper"]``: a scalar, batched for ``"weights"`` (one per example).
        """
        return self.inner.state_types["hyper"][name]

    def initial_value(self, name: str):
        """``lambda``'s starting value: the :class:`Hyper`'s, or the wire's default.

        Args:
            name: a learned hyperparameter (a key of ``hyper``).

        Returns:
            ``hyper[name].value`` where it is given (a number, or a sequence for a per-example
                one), else the wire's default from ``available_hypers``.
        """
        v = self.hyper[name].value
        return self.available_hypers[name] if v is None else v

    @cached_property
    def state_specs(self):
        """The inner optimizer's state: a tree of :class:`~paralens.optim.StateSpec`."""
        return self.optimizer.state(self.inner.param_types)

    @cached_property
    def objective_hypers(self) -> tuple[str, ...]:
        """The learned hyperparameters ``J`` depends on (not the optimizer's), in ``hyper_names`` order."""
        return tuple(k for k in self.hyper_names if k not in self.optimizer.hyper)

    @cached_property
    def model_hypers(self) -> tuple[str, ...]:
        """The learned hyperparameters of the model itself (``V`` depends on them too)."""
        return tuple(k for k in self.hyper_names if k in self.model.hyper_names)

    # ---------------------------------------------------------------- terms
    def _hypers(self, b: Builder, lam: dict, names) -> dict[str, int]:
        """Wires for the hyperparameters ``names``: learned ones from ``lam``, the others constants."""
        types = self.inner.state_types["hyper"]
        return {k: lam[k] if k in lam else P.emit_const(b, self.available_hypers[k], (), types[k].dtype)
                for k in names}

    @cached_property
    def objective(self) -> Term:
        """``J``: params = the model's trainable ones; inputs ``(x, y, *objective_hypers)``; output the
        training objective."""
        model, loss = self.inner.model, self.inner.loss
        b = Builder()
        pw = [b.redeclare(s) for s in model.params if not s.hyper]
        xs = [b.input(t) for t in model.dom]
        ys = [b.input(t) for t in self.label_types]
        lam = {k: b.input(self.theta_type(k)) for k in self.objective_hypers}
        hyp = self._hypers(b, lam, list(model.hyper_names) + list(loss.hyper_names))
        out = self._inline_objective(b, pw, xs, ys, hyp)
        return b.build(xs + ys + list(lam.values()), [out], name=f"J({self.model.name})")

    def _inline_objective(self, b: Builder, pw, xs, ys, hyp: dict) -> int:
        model, loss = self.inner.model, self.inner.loss
        it = iter(pw)
        outs = b.inline(model, xs, params={w: hyp[n] if s.hyper else next(it) for n, s, w in
                                           zip(model.param_names, model.params, model.param_wires)})
        it = iter(ys)
        (out,) = b.inline(loss, outs, params={w: hyp[n] if s.hyper else next(it) for n, s, w in
                                              zip(loss.param_names, loss.params, loss.param_wires)})
        return out

    @cached_property
    def validation(self) -> Term:
        """``V``: params = the model's trainable ones; inputs ``(x_val, y_val, *model_hypers)``; output
        the validation objective."""
        m = self.model
        b = Builder()
        pw = [b.redeclare(s) for s in m.params if not s.hyper]
        xs = [b.input(t) for t in m.dom]
        ys = [b.input(s.type) for s in self.validation_loss.params if not s.hyper]
        lam = {k: b.input(self.theta_type(k)) for k in self.model_hypers}
        hyp = self._hypers(b, lam, m.hyper_names)
        it = iter(pw)
        (pred,) = b.inline(m, xs, params={w: hyp[n] if s.hyper else next(it) for n, s, w in
                                          zip(m.param_names, m.params, m.param_wires)})
        vl = self.validation_loss
        vh = {n: P.emit_const(b, s.init[1], (), s.type.dtype) for n, s in zip(vl.param_names, vl.params) if s.hyper}
        it = iter(ys)
        (out,) = b.inline(vl, [pred], params={w: vh[n] if s.hyper else next(it) for n, s, w in
                                              zip(vl.param_names, vl.params, vl.param_wires)})
        if b.type_of(out).batched:
            out = W.batch_mean(Wire(b, out)).id
        return b.build(xs + ys + list(lam.values()), [out], name=f"V({self.model.name})")

    def compile(self, backend: str = "jax", **options):
        """The outer training step, compiled by ``backend`` (bilevel problems run on JAX).

        Args:
            backend: the backend's name (``"jax"``, the default and the only one that can), or a
                backend object.
            **options: JAX: ``jit`` (default ``True``; ``False`` runs the step without ``jax.jit``).

        Returns:
            The compiled problem (``paralens.backends.bilevel.CompiledBilevel``):
                ``step(state, (x, y), (x_val, y_val)) -> (state, metrics)``, one outer step as one
                ``jax.jit`` program, with ``init(seed, n_train)``, ``fit(train, val, ...)`` and
                ``hyperparameters(state)``.

        Raises:
            NotImplementedError: ``backend`` cannot compile bilevel problems (every one but JAX).
            ValueError: ``backend`` is unknown.
            TypeError: an option the backend does not take.
        """
        return backends.get(backend).compile_bilevel(self, **options)

    def _lambda(self, b: Builder, theta: dict) -> dict:
        return {k: _positive(Wire(b, w), self.hyper[k].positive).id for k, w in theta.items()}

    def _step_body(self, truncated_consts: bool = False) -> Term:
        """One inner step (the inner learner's step term) as a loop body:
        ``(params..., state..., theta..., x..., y...) -> (params'..., state'...)``."""
        step = self.inner.step_term
        types = self.inner.state_types
        b = Builder()
        params, opt = b.inputs(types["params"]), b.inputs(types["opt"])
        theta = theta_in = {k: b.input(self.theta_type(k)) for k in self.hyper_names}
        xs = [b.input(t) for t in self.model.dom]
        ys = [b.input(t) for t in self.label_types]
        if truncated_consts:
            theta = {k: W.stop_gradient(Wire(b, w)).id for k, w in theta.items()}
        hyper = self._hypers(b, self._lambda(b, theta), types["hyper"])
        # the inner loop counts its own steps: the learner's step count is fed 0 and dropped
        state = {"params": params, "opt": opt, "hyper": hyper}
        if "step" in types:
            state["step"] = P.emit_const(b, 0, (), types["step"].dtype)
        outs = b.inline(step, flatten(state, step.in_sig[0]) + xs + ys)[:-1]  # the loss is not carried
        ins = list(params.values()) + flatten(opt, step.in_sig[0].values[1]) + list(theta_in.values()) + xs + ys
        new = iter(outs)
        new_p = {n: next(new) for n in params}
        new_opt = tree_map(lambda _: next(new), opt)
        return b.build(ins, list(new_p.values()) + flatten(new_opt, step.in_sig[0].values[1]), name="inner_step")

    @cached_property
    def inner_step(self) -> Term:
        """One inner step (the inner learner's step term) as a loop body:
        ``(params..., state..., theta..., x..., y...) -> (params'..., state'...)``."""
        return self._step_body()

    @cached_property
    def n_carry(self) -> int:
        """Wires carried by the inner loop: the trainable parameters and the optimizer state."""
        return len(self.inner.param_types) + len(leaves(self.inner.state_types["opt"]))

    def inner_loop(self, steps: int, body: Term | None = None) -> Term:
        """``steps`` inner steps: ``(params, state, theta, x, y) -> (params', state')``; with
        minibatches, ``x`` and ``y`` hold one batch per step on a leading axis.

        Args:
            steps: how many inner steps, at least 1 (with minibatches, the size of the stacked axis).
            body: the step to repeat, of :attr:`inner_step`'s signature; ``None`` (the default):
                :attr:`inner_step`.

        Returns:
            A term of one ``scan`` box: ``loop(body, steps)`` carrying the parameters and the
                optimizer state, or with ``batch_size`` a scan over the stacked minibatches with
                ``theta`` shared by every step.

        Raises:
            ValueError: ``steps`` is less than 1 (without ``batch_size``).
        """
        body = body or self.inner_step
        if self.batch_size is None:
            return loop(body, steps, n_carry=self.n_carry)
        return scan_term(body, steps, n_carry=self.n_carry, n_const=len(self.hyper_names))

    @cached_property
    def unrolled_objective(self) -> Term:
        """``F(theta, w0, s0, x, y, x_val, y_val) -> (V(w_K), w_K, s_K)`` for the unrolled and truncated methods."""
        meth = self.method
        np_ = len(self.inner.param_types)
        body = self.inner_step
        b = Builder()
        theta = [b.input(self.theta_type(k)) for k in self.hyper_names]
        carry_in = [b.input(t) for t in body.dom[:self.n_carry]]
        carry = carry_in
        k_back = meth.steps if meth.kind == "unrolled" else meth.truncate
        k_front = meth.steps - k_back
        data_t = list(self.model.dom) + list(self.label_types)
        if self.batch_size is None:
            data = front_data = [b.input(t) for t in data_t]
        else:  # one minibatch per step, stacked; the truncated front has its own stack
            front_data = [b.input(t.with_shape((k_front,) + t.shape)) for t in data_t] if k_front else []
            data = [b.input(t.with_shape((k_back,) + t.shape)) for t in data_t]
        v = self.validation
        xv = [b.input(t) for t in v.dom[:len(self.model.dom)]]
        yv = [b.input(t) for t in v.dom[len(self.model.dom): len(v.dom) - len(self.model_hypers)]]
        if k_front:
            front = self.inner_loop(k_front, self._step_body(truncated_consts=True))
            carry = b.inline(front, carry + theta + front_data)
            carry = [W.stop_gradient(Wire(b, w)).id for w in carry]
        carry = b.inline(self.inner_loop(k_back), carry + theta + data)
        lam = self._lambda(b, dict(zip(self.hyper_names, theta)))
        (val,) = b.inline(v, xv + yv + [lam[k] for k in self.model_hypers],
                          params=dict(zip(v.param_wires, carry[:np_])))
        extra = front_data if self.batch_size is not None else []
        return b.build(theta + carry_in + extra + data + xv + yv, [val] + carry, name="F")

    @cached_property
    def lambda_term(self) -> Term:
        """``theta -> lambda`` (the positivity parametrisation), one wire per hyperparameter."""
        b = Builder()
        theta = {k: b.input(self.theta_type(k)) for k in self.hyper_names}
        lam = self._lambda(b, theta)
        return b.build(list(theta.values()), list(lam.values()), name="lambda(theta)")

    @cached_property
    def hvp_term(self) -> Term:
        """From ``R(R(J))``: ``(params; x, y, lambda_obj..., v...) -> (H v..., mixed...)`` where
        ``H = d2 J / dw2`` and ``mixed[k] = (d2 J / dw dlambda_k)^T v``."""
        j = self.objective
        rrj = R(R(j))
        b = Builder()
        pw = [b.redeclare(s) for s in j.params]
        ins = [b.input(t) for t in j.dom]
        vs = [b.input(s.type) for s in j.params]
        one = P.emit_const(b, 1.0, (), self.hyper_dtype)
        zeros = [P.zeros_like(b, w) for w in ins]
        outs = b.inline(rrj, ins + [one] + vs + zeros, params=dict(zip(rrj.param_wires, pw)))
        n = len(pw)
        n_data = len(self.model.dom) + len(self.label_types)
        hv, mixed = outs[:n], outs[n + n_data: n + len(ins)]
        return b.build(ins + vs, hv + mixed, name="hvp(J)")
