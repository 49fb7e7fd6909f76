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
from .optim import Optimizer
from .terms import Builder, DictSig, Poly, Term
from .types import ArrayType

__all__ = ["Learner"]


class Learner:
    """Model + loss lens + learning-rate lens + optimizer lens, as one update term.

    The training state is a dict ``{"params": ..., "opt": ..., "hyper": ...}``
    of dicts of arrays: ``hyper`` holds runtime hyperparameters such as
    ``learning_rate``; set a new value there to change it between steps.
    """

    def __init__(self, model: Term, loss: Term | Poly, optimizer: Optimizer):
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
    def state_keys(self) -> tuple[str, ...]:
        """Flat names of the optimizer state leaves: ``"<param>/<key>"``."""
        return tuple(f"{n}/{k}" for n, t in self.model.param_types.items() for k in self.optimizer.state(t))

    @cached_property
    def step_term(self) -> Term:
        """``(params, opt, hyper, x, y) -> (params', opt', loss)`` as one term."""
        m, opt = self.model, self.optimizer
        vr = value_and_R(self.objective)
        b = Builder()
        pw = [b.param(s.layer, s.slot, s.local, s.type, s.init) for s in m.params]
        names = m.param_names
        state = {}
        for n, t in zip(names, m.param_types.values()):
            state[n] = {k: b.input(st) for k, (st, _) in opt.state(t).items()}
        hyper = {k: b.input(ArrayType((), "float32", batched=False)) for k in opt.hyper}
        xs = [b.input(t) for t in m.dom]
        ys = [b.input(t) for t in self.label_types]
        seed = P.emit_const(b, 1.0, (), self.loss.cod[0].dtype)  # the learning-rate lens
        binding = dict(zip(vr.param_wires, pw + ys))
        outs = b.inline(vr, xs + [seed], params=binding)
        loss, grads = outs[0], outs[1: 1 + len(pw)]
        new_p, new_s = [], []
        for n, p, g in zip(names, pw, grads):
            s2, p2 = opt.put(b, hyper, state[n], p, g)
            new_p.append(p2)
            new_s.extend(s2[k] for k in state[n])
        flat_state = [w for n in names for w in state[n].values()]
        x_sig = m.in_sig[0]
        y_sig = None if len(ys) == 1 else (None,) * len(ys)
        return b.build(flat_state + list(hyper.values()) + xs + ys, new_p + new_s + [loss],
                       in_sig=(DictSig(self.state_keys), DictSig(tuple(hyper)), x_sig, y_sig),
                       out_sig=(DictSig(names), DictSig(self.state_keys), None),
                       name=f"step({m.name})")

    def init(self, seed: int = 0, backend: str = "numpy") -> dict:
        """The initial training state ``{"params", "opt", "hyper"}``."""
        be = importlib.import_module(f"paralens.backends.{backend}")
        params = be.init(self.model, seed)
        opt = {}
        for n, t in self.model.param_types.items():
            for k, (st, v) in self.optimizer.state(t).items():
                opt[f"{n}/{k}"] = be.full(st, v)
        hyper = {k: be.full(ArrayType((), "float32", False), v) for k, v in self.optimizer.hyper.items()}
        return {"params": params, "opt": opt, "hyper": hyper}

    def compile(self, backend: str = "jax", **options):
        """A training step ``step(state, x, y) -> (state, loss)`` on ``backend``."""
        return importlib.import_module(f"paralens.backends.{backend}").compile_learner(self, **options)

    def predict(self, state: dict, x, backend: str = "numpy"):
        """The model's output on ``x`` with the state's parameters."""
        return importlib.import_module(f"paralens.backends.{backend}").compile(self.model)(state["params"], x)
