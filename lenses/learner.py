"""A supervised learner assembled from lenses (MATH.md 4.1).

``model ; loss ; learning-rate`` is a parametric lens whose parameters are the
model's parameters and the label. Its backward pass, seeded with the
learning-rate lens (a costate returning ``1``: the step size lives in the
optimizer, MATH.md section 0), gives the parameter cotangents; the optimizer
lens reparametrises the parameter wire and turns them into the new state and
parameters. The whole training step is one term, built here and never written
by hand, and any backend runs it.

>>> import numpy as np, paralens as pl
>>> learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
>>> state = learner.init(seed=0)
>>> step = learner.compile("numpy")
>>> x, y = np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)
>>> state, loss0 = step(state, x, y)
>>> state, loss1 = step(state, x, y)
>>> bool(loss1 < loss0)
True
"""

from __future__ import annotations

import importlib
from functools import cached_property

from . import prims as P
from .derivative import value_and_R
from .optim import StateSpec, Transform
from .prims import promote
from .terms import Builder, DictSig, Poly, Term
from .trace import Wire
from .types import ArrayType


def hyper_type(param_types) -> ArrayType:
    return ArrayType((), promote([ArrayType((), "float32"), *param_types]), batched=False)


def apply_transform(b: Builder, opt: Transform, specs: dict, state: dict, hyper: dict, params: dict, grads: dict):
    """Emit the optimizer lens's *put*: ``(state, params, grads) -> (params + u, state', u)``.

    New parameters keep their dtypes (optax's ``apply_updates``). Arguments and
    results are wire ids, except the updates ``u`` (wires).
    """
    updates, new_state = emit_update(b, opt, specs, state, hyper, params, grads)
    new_params = {n: cast_to(b, Wire(b, p) + updates[n], b.type_of(p)) for n, p in params.items()}
    return new_params, new_state, updates


def emit_update(b: Builder, opt: Transform, specs: dict, state: dict, hyper: dict, params: dict, grads: dict):
    """Emit ``opt``'s update: ``(updates, new_state)``, the new state in its declared dtypes."""
    W = lambda d: {k: Wire(b, w) for k, w in d.items()}  # noqa: E731
    new_state, updates = opt.update(W(hyper), W(state), W(params), W(grads))
    return updates, {k: cast_to(b, new_state[k], specs[k].type) for k in state}


def cast_to(b: Builder, w: Wire, t: ArrayType) -> int:
    """``w`` as a wire id of ``t``'s dtype (a cast box only when the dtypes differ)."""
    return w.id if w.type.dtype == t.dtype else b.emit1(P.CAST, w.id, dtype=t.dtype)


def update_term(opt: Transform, ptypes: dict[str, ArrayType]) -> Term:
    """The optimizer lens's *put* alone, as a term:
    ``(params={}, state, hyper, params, grads) -> (new_params, new_state, updates)``."""
    specs = opt.state(ptypes)
    b = Builder()
    state = {k: b.input(spec.type) for k, spec in specs.items()}
    hyper = {k: b.input(hyper_type(ptypes.values())) for k in opt.hyper}
    params = {n: b.input(t) for n, t in ptypes.items()}
    grads = {n: b.input(t) for n, t in ptypes.items()}
    new_params, new_state, updates = apply_transform(b, opt, specs, state, hyper, params, grads)
    names, keys = tuple(ptypes), tuple(specs)
    return b.build(list(state.values()) + list(hyper.values()) + list(params.values()) + list(grads.values()),
                   [new_params[n] for n in names] + [new_state[k] for k in keys] + [updates[n].id for n in names],
                   in_sig=(DictSig(keys), DictSig(tuple(hyper)), DictSig(names), DictSig(names)),
                   out_sig=(DictSig(names), DictSig(keys), DictSig(names)), name=f"update({opt.name})")


def initial_state(be, spec: StateSpec, key: str, params: dict):
    """A state leaf's initial value on backend ``be``."""
    if isinstance(spec.init, str) and spec.init == "params":  # a copy of the parameter it is named after
        return be.full(spec.type, 0) + params[key.rsplit("/", 1)[-1]]
    value = spec.init(params) if callable(spec.init) else spec.init
    return be.full(spec.type, value)

__all__ = ["Learner"]


class Learner:
    """Model + loss lens + learning-rate lens + optimizer lens, as one update term.

    The training state is a dict ``{"params": ..., "opt": ..., "hyper": ...}``
    of dicts of arrays: ``hyper`` holds runtime hyperparameters such as
    ``learning_rate``; set a new value there to change it between steps.
    """

    def __init__(self, model: Term, loss: Term | Poly, optimizer: Transform):
        self.model = model
        self.loss = loss.at(model.cod) if isinstance(loss, Poly) else loss
        if self.loss.dom != model.cod:
            raise TypeError(f"the loss {self.loss.name} takes {self.loss.dom}, "
                            f"but the model {model.name} returns {model.cod}")
        if len(self.loss.cod) != 1 or self.loss.cod[0].shape != () or self.loss.cod[0].batched:
            raise TypeError(f"a loss must return one unbatched scalar, {self.loss.name} returns {self.loss.cod}")
        self.optimizer = optimizer

    @cached_property
    def objective(self) -> Term:
        """``model >> loss``: parameters are the model's, then the label."""
        return self.model >> self.loss

    @cached_property
    def label_types(self) -> tuple[ArrayType, ...]:
        return tuple(s.type for s in self.objective.params[len(self.model.params):])

    @cached_property
    def state_specs(self) -> dict:
        """The optimizer's state leaves: ``{key: StateSpec}``."""
        return self.optimizer.state(self.model.param_types)

    @cached_property
    def hyper_type(self) -> ArrayType:
        """Hyperparameters are scalars of the widest parameter dtype (float32 at least)."""
        return hyper_type(self.model.param_types.values())

    @cached_property
    def step_term(self) -> Term:
        """``(params, opt, hyper, x, y) -> (params', opt', loss)`` as one term."""
        m, opt = self.model, self.optimizer
        vr = value_and_R(self.objective)
        b = Builder()
        names = m.param_names
        pw = [b.param(s.layer, s.slot, s.local, s.type, s.init) for s in m.params]
        state = {k: b.input(spec.type) for k, spec in self.state_specs.items()}
        hyper = {k: b.input(self.hyper_type) for k in opt.hyper}
        xs = [b.input(t) for t in m.dom]
        ys = [b.input(t) for t in self.label_types]
        seed = P.emit_const(b, 1.0, (), self.loss.cod[0].dtype)  # the learning-rate lens
        outs = b.inline(vr, xs + [seed], params=dict(zip(vr.param_wires, pw + ys)))
        loss, grads = outs[0], outs[1: 1 + len(pw)]
        new_p, new_state, _ = apply_transform(b, opt, self.state_specs, state, hyper, dict(zip(names, pw)),
                                           dict(zip(names, grads)))
        keys = tuple(state)
        y_sig = None if len(ys) == 1 else (None,) * len(ys)
        return b.build(list(state.values()) + list(hyper.values()) + xs + ys,
                       [new_p[n] for n in names] + [new_state[k] for k in keys] + [loss],
                       in_sig=(DictSig(keys), DictSig(tuple(hyper)), m.in_sig[0], y_sig),
                       out_sig=(DictSig(names), DictSig(keys), None),
                       name=f"step({m.name})")

    def init(self, seed: int = 0, backend: str = "numpy") -> dict:
        """The initial training state ``{"params", "opt", "hyper"}``."""
        be = _backend(backend)
        params = be.init(self.model, seed)
        opt = {k: initial_state(be, spec, k, params) for k, spec in self.state_specs.items()}
        hyper = {k: be.full(self.hyper_type, v) for k, v in self.optimizer.hyper.items()}
        return {"params": params, "opt": opt, "hyper": hyper}

    def compile(self, backend: str = "jax", **options):
        """A training step ``step(state, x, y) -> (state, loss)`` on ``backend``.

        JAX options: ``scan=True`` (``step(state, xs, ys) -> (state, losses)`` over
        stacked batches, one ``lax.scan``), ``mesh=`` (data-parallel over a
        ``jax.sharding.Mesh``), ``donate=False``.
        """
        return _backend(backend).compile_learner(self, **options)

    def set_hyper(self, state: dict, **values) -> dict:
        """A state with new hyperparameter values, typed as the step expects (no recompile)."""
        return _backend("training").set_hyper(state, **values)

    def predict(self, state: dict, x, backend: str = "numpy"):
        """The model's output on ``x`` with the state's parameters."""
        return _backend(backend).compile(self.model)(state["params"], x)

    def accuracy(self, state: dict, x, labels, backend: str = "numpy") -> float:
        """Fraction of examples whose arg-max output equals ``labels`` (class indices or one-hot)."""
        return _backend("training").accuracy(self.predict(state, x, backend), labels)

    def fit(self, x, y, *, epochs: int = 10, batch_size: int = 32, seed: int = 0, state: dict | None = None,
            backend: str = "jax", progress: bool = True):
        """Shuffle, batch and train; returns ``(state, losses)`` with one loss per step.

        Each epoch runs as one compiled ``lax.scan`` over its batches (on JAX);
        the last incomplete batch of an epoch is dropped. A progress bar shows
        the epoch's mean loss unless ``progress=False``.
        """
        return _backend("training").fit(self, x, y, epochs=epochs, batch_size=batch_size, seed=seed,
                                        state=state, backend=backend, progress=progress)


def _backend(name: str):
    """Semantics live in ``paralens.backends``; look them up by name when asked."""
    return importlib.import_module(f"paralens.backends.{name}")
