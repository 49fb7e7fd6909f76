"""A supervised learner assembled from lenses (maths §4.1).

Four lenses make a learner, as "Categorical Foundations of Gradient-Based
Learning" draws it: the **model** lens (parametrised by the weights), the
**loss** lens (parametrised by the label), the **learning-rate** lens (a
costate whose backward pass starts the cotangent at ``1``: the step size
lives in the optimizer, as in optax, maths §4.3) and the **optimizer** lens,
which reparametrises the model's parameter wire: its *get* hands the model
the parameters, its *put* turns their cotangents into the new state and
parameters. One training step runs the forward parts in order and the
backward parts in reverse; :attr:`Learner.step_term` is that one term, and
every backend compiles it alone.

>>> import numpy as np, paralens as pl
>>> learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
>>> state = learner.init(seed=0)
>>> step = learner.compile("numpy")
>>> x, y = np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)
>>> state, loss0 = step(state, x, y)
>>> state, loss1 = step(state, x, y)
>>> bool(loss1 < loss0)
True
>>> sorted({e.group[0] for e in learner.step_term.eqns})
['learning rate', 'loss', 'model', 'optimizer']
"""

from __future__ import annotations

import os
from functools import cached_property

from . import backends
from . import prims as P
from .derivative import forward_gradient
from .nn import inference_mode
from .optics import Lens, costate, lens
from .optim import Transform, hyper_type, init_state
from .passes import fuse_updates, residual_policy
from .pipeline import stages
from .precision import astype
from .prims import KEY
from .terms import Builder, Poly, Term, id, leaves, plain_sig, sig_of, tree_map
from .types import ArrayType, Ty, real

__all__ = ["Learner"]

#: the type of ``state["step"]``, the steps a state has taken
STEP = ArrayType((), "int32", batched=False)


class Learner:
    """Model + loss lens + learning-rate lens + optimizer lens, as one update term.

    The training state is a plain pytree ``{"params": ..., "opt": ..., "hyper": ..., "step": ...}``:
    ``params`` the model's trainable parameters by name, ``opt`` the optimizer's
    state (named fields), ``hyper`` every hyperparameter wire (the optimizer's,
    such as ``learning_rate``, but for those compiled in with ``static_hyper``,
    and those declared with :func:`~paralens.hyperparameter` in the model or the
    loss; set a new value there with :meth:`set_hyper` to change it between steps
    without recompiling), ``step`` the steps taken (an int32 the step term counts, which
    tells :meth:`fit` where in its data order a state stands; it stays at int32's
    largest value rather than wrapping, as optax's counts).

    ``learning_rate`` is the learning-rate lens, a costate on the loss's output:
    by default the constant 1 (the step size lives in the optimizer, as in
    optax); reverse derivative ascent feeds the error itself back
    (:func:`paralens.z2.rda_learner`).

    ``compute_dtype="bfloat16"`` is mixed precision: the parameters and the
    optimizer state stay in the model's dtype (float32), the model runs in
    ``compute_dtype`` (:func:`~paralens.astype`), its output is cast back for the
    loss, and its cotangents back for the optimizer.

    ``residuals`` chooses what the model's backward pass reads stored and what it
    recomputes, layer by layer (:func:`~paralens.R`): ``"store"`` (the default),
    ``"recompute"``, ``"segments"`` (:class:`~paralens.Segments`), ``"matmuls"``,
    ``{layer name: policy}`` or a function of the box.
    The gradients are the same; recomputing trades time for memory.

    ``fuse_optimizer=True`` updates each parameter as soon as its cotangent is
    complete, inside the backward pass, instead of all of them after it: the
    optimizer's boxes for a parameter (elementwise: every optimizer but global-norm
    clipping) move next to the box that completes its cotangent, and an optimization
    barrier holds the backward pass until they have run, so only one gradient is
    alive at a time (:func:`~paralens.passes.fuse_updates`). The numbers are the same: bit for bit on
    NumPy; on JAX up to rounding, where XLA fuses the moved boxes differently (about
    1e-7 relative in float32, more in bfloat16).

    A keyed model ``(x..., key) -> (y..., key')`` (one with :func:`~paralens.nn.dropout`
    layers) draws from ``state["key"]``: each step feeds the state's key to the model
    and keeps the key it returns, so a step is a deterministic function of its state.
    :meth:`predict` and :meth:`accuracy` run :attr:`inference_model` (dropout off).

    ``gradient="forward"`` replaces the backward pass by a forward-gradient
    estimate (:func:`~paralens.forward_gradient`, maths §9): one forward
    derivative along a random tangent. The state then carries the random
    ``key`` too.

    Args:
        model: the model, a term such as ``pl.nn.mlp([...])``; a keyed model
            ``(x..., key) -> (y..., key')`` draws from ``state["key"]``.
        loss: the loss: a term taking the model's outputs (its key aside), or a
            :mod:`paralens.losses` loss, which is instantiated at the model's output types. Its
            parameters other than hyperparameters are the labels ``y``.
        optimizer: a :mod:`paralens.optim` optimizer (optax transformations go through
            :func:`paralens.optim.from_optax`).
        gradient: ``"reverse"`` (the default: the exact gradient, by the reverse derivative) or
            ``"forward"`` (a forward-gradient estimate).
        learning_rate: the learning-rate lens, a costate on the loss's output (``Lens`` from the
            loss's output types to no wires); ``None`` (the default): the constant 1, which needs a
            loss returning one unbatched scalar.
        compute_dtype: the floating-point dtype the model runs in (``"bfloat16"``, ``"float16"``,
            ...); ``None`` (the default): the model's own dtype.
        residuals: what the model's backward pass stores and what it recomputes: ``None`` or
            ``"store"`` (the default: everything stored), ``"recompute"``, ``"segments"``,
            ``"matmuls"``, a :class:`~paralens.Segments`, ``{layer name: policy}`` or a function
            ``store(eqn) -> bool``.
        fuse_optimizer: ``True`` to update each parameter inside the backward pass, as soon as its
            cotangent is complete; ``False`` (the default) updates them all after it.
        static_hyper: the optimizer's hyperparameters compiled into the step as constants, as
            ``optax.adam(1e-3)`` compiles them, rather than read from ``state["hyper"]`` (as
            ``optax.inject_hyperparams``): ``False`` (the default: none), ``True`` (all) or their
            names. A static one leaves ``state["hyper"]``, and :meth:`set_hyper` refuses it; XLA
            then folds it into the update's kernels, which compile in less time (the residual MLP
            of ``benchmarks/bench_trace.py`` builds 17 LLVM modules at depth 4 where it builds 18
            with run-time hyperparameters). The model's and the loss's hyperparameters stay run-time.

    Raises:
        TypeError: ``model`` is not a term, ``optimizer`` not a paralens optimizer, ``loss`` not a
            term or a loss, or not taking the model's outputs; without ``learning_rate``, a loss
            that does not return one unbatched scalar; a ``learning_rate`` that is not a costate
            on the loss's output; ``residuals`` of another kind; ``fuse_optimizer`` not a bool;
            ``compute_dtype`` with a model of more than one float dtype; ``static_hyper`` neither a
            bool nor names.
        ValueError: ``gradient`` neither ``"reverse"`` nor ``"forward"``; ``gradient="forward"``
            with a keyed model, with ``compute_dtype`` or with ``fuse_optimizer=True``;
            ``compute_dtype`` not a floating-point dtype; an unknown ``residuals`` policy name, or
            ``"segments"`` given for one layer; a hyperparameter name that the optimizer, the
            model and the loss declare more than once; ``static_hyper`` naming something that is
            not one of the optimizer's hyperparameters.

    >>> import paralens as pl
    >>> fixed = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2),
    ...                    static_hyper=True)
    >>> sorted(fixed.init(0)["hyper"]), sorted(fixed.static_hyper)
    ([], ['b1', 'b2', 'eps', 'eps_root', 'learning_rate'])
    """

    def __init__(self, model: Term, loss: Term | Poly, optimizer: Transform, *, gradient: str = "reverse",
                 learning_rate: Lens | None = None, compute_dtype: str | None = None, residuals=None,
                 fuse_optimizer: bool = False, static_hyper=False):
        if not isinstance(model, Term):
            raise TypeError(f"the model must be a term (e.g. pl.nn.mlp([...])), got {type(model).__name__}")
        if not isinstance(optimizer, Transform):
            hint = " (wrap optax transformations with pl.optim.from_optax)" if hasattr(optimizer, "update") else ""
            raise TypeError(f"the optimizer must be a pl.optim optimizer{hint}, got {type(optimizer).__name__}")
        self.model = model
        self.keyed = len(model.dom) >= 2 and model.dom[-1] == KEY and len(model.cod) >= 2 and model.cod[-1] == KEY
        self.data_dom = model.dom[:-1] if self.keyed else model.dom
        self.data_cod = model.cod[:-1] if self.keyed else model.cod
        self.loss = loss.at(self.data_cod) if isinstance(loss, Poly) else loss
        if not isinstance(self.loss, Term):
            raise TypeError(f"the loss must be a term or a pl.losses loss, got {type(loss).__name__}")
        if self.loss.dom != self.data_cod:
            raise TypeError(f"the loss {self.loss.name} takes {self.loss.dom}, "
                            f"but the model {model.name} returns {self.data_cod}")
        self._default_rate = learning_rate is None
        if learning_rate is None:
            if len(self.loss.cod) != 1 or self.loss.cod[0].shape != () or self.loss.cod[0].batched:
                raise TypeError(f"a loss must return one unbatched scalar, {self.loss.name} returns {self.loss.cod}")
            learning_rate = costate(self.loss.cod)
        elif learning_rate.dom != self.loss.cod or learning_rate.cod != Ty():
            raise TypeError(f"the learning-rate lens must be a costate on the loss's {self.loss.cod}, "
                            f"{learning_rate.name} maps {learning_rate.dom} to {learning_rate.cod}")
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        if gradient not in ("reverse", "forward"):
            raise ValueError(f"gradient must be 'reverse' (R, exact) or 'forward' (a forward-gradient estimate), "
                             f"got {gradient!r}")
        if gradient == "forward" and self.keyed:
            raise ValueError("gradient='forward' draws its tangents from the state's key; a keyed model "
                             "(dropout) needs gradient='reverse'")
        self.gradient = gradient
        if compute_dtype is not None:
            if gradient != "reverse":
                raise ValueError("compute_dtype (mixed precision) needs gradient='reverse'")
            self.compute_model = astype(model, compute_dtype, source=_float_dtype(model))
        else:
            self.compute_model = model
        self.compute_dtype = compute_dtype
        residual_policy(residuals)  # checked now, used when the step is assembled
        self.residuals = residuals
        if not isinstance(fuse_optimizer, bool):
            raise TypeError(f"fuse_optimizer must be True or False, got {fuse_optimizer!r}")
        if fuse_optimizer and gradient != "reverse":
            raise ValueError("fuse_optimizer needs gradient='reverse' (a backward pass to fuse into)")
        self.fuse_optimizer = fuse_optimizer
        names = list(self.optimizer.hyper) + list(model.hyper_names) + list(self.loss.hyper_names)
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"hyperparameter names {clash} occur twice among the optimizer's, the model's "
                             "and the loss's; rename a layer")
        self.static_hyper = _static_hyper(static_hyper, self.optimizer)

    # ---------------------------------------------------------------- names and types
    @cached_property
    def objective(self) -> Term:
        """``model >> loss``: parameters are the model's, then the loss's (the label first); a keyed
        model's key goes on beside the loss."""
        return self.model >> (self.loss @ id(Ty(KEY)) if self.keyed else self.loss)

    @cached_property
    def inference_model(self) -> Term:
        """The model as :meth:`predict` and :meth:`accuracy` run it: the model itself, or for a
        keyed model its :func:`~paralens.nn.inference_mode` (dropout off, no key)."""
        return inference_mode(self.model) if self.keyed else self.model

    @cached_property
    def param_types(self) -> dict[str, ArrayType]:
        """The model's trainable parameters (its hyperparameters excluded)."""
        return {n: p.type for n, p in zip(self.model.param_names, self.model.params) if not p.hyper}

    @cached_property
    def label_types(self) -> tuple[ArrayType, ...]:
        """The types of the labels ``y``: the loss's parameters that are not hyperparameters."""
        return tuple(p.type for p in self.loss.params if not p.hyper)

    @cached_property
    def hyper_defaults(self) -> dict[str, float]:
        """Every hyperparameter of the step and its default value (a static one's, the value
        compiled in; see ``static_hyper``)."""
        out = {k: v for k, v in self.optimizer.hyper.items() if k not in self.optimizer.extra}
        for term in (self.model, self.loss):
            out.update({n: p.init[1] for n, p in zip(term.param_names, term.params) if p.hyper})
        return out

    @cached_property
    def state_types(self) -> dict:
        """The types of the training state, as a tree (what the step term takes)."""
        declared = {n: p.type for t in (self.model, self.loss) for n, p in zip(t.param_names, t.params) if p.hyper}
        opt_hyper = hyper_type(self.param_types.values())
        out = {"params": dict(self.param_types),
               "opt": tree_map(lambda s: s.type, self.optimizer.state(self.param_types)),
               "hyper": {k: declared.get(k, opt_hyper) for k in self.hyper_defaults if k not in self.static_hyper}}
        if self.gradient == "forward" or self.keyed:
            out["key"] = KEY
        if self.counts_steps:
            out["step"] = STEP
        return out

    @cached_property
    def state_axes(self) -> dict:
        """The logical axis names of each leaf of the training state, shaped as :attr:`state_types`
        (what :class:`paralens.backends.sharding.Sharding` lays out): a parameter's are its
        layer's (:attr:`paralens.Term.param_axes`); an optimizer state leaf keyed by a parameter's
        name and of its shape (Adam's ``mu``, ``nu``) has the parameter's; any other leaf ``None``.

        >>> import paralens as pl
        >>> lr = pl.Learner(pl.nn.dense(4, 3), loss=pl.losses.mean_squared_error(),
        ...                 optimizer=pl.optim.adam(1e-3))
        >>> lr.state_axes["opt"][0]["mu"]["dense.W"], lr.state_axes["opt"][0]["count"]
        (('embed', 'mlp'), None)
        """
        names, types = dict(zip(self.model.param_names, self.model.params)), self.param_types

        def walk(tree, key=None):
            if isinstance(tree, dict):
                return {k: walk(v, k) for k, v in tree.items()}
            if isinstance(tree, tuple):
                return tuple(walk(v, key) for v in tree)
            spec = names.get(key)
            return spec.axes if spec is not None and key in types and tree.shape == types[key].shape else None
        return walk(self.state_types)

    @cached_property
    def _static_values(self) -> dict[str, float]:
        return {k: self.hyper_defaults[k] for k in self.static_hyper}

    @cached_property
    def counts_steps(self) -> bool:
        """Whether the step term counts its steps in ``state["step"]``: every learner but a
        circuit's, whose parameters are all bits (the Z2 backend holds bits only; ``fit``
        keeps the count for it)."""
        return not all(t.dtype == "bool" for t in self.param_types.values())

    # ---------------------------------------------------------------- the assembly
    @cached_property
    def step_term(self) -> Term:
        """One training step ``(state, x, y) -> ({"params", "opt"}, loss)``: the four lenses, run
        forward and then backward, as one term."""
        model, loss, rate = lens(self.compute_model, self.residuals), lens(self.loss), self.learning_rate
        opt = self.optimizer.lens(self.param_types)
        b = Builder()
        state = b.inputs(self.state_types)
        xs, ys = [b.input(t) for t in self.data_dom], [b.input(t) for t in self.label_types]
        p, h = state["params"], state["hyper"]
        opt_in = _opt_inputs(b, state, self.optimizer, self._static_values)
        seen, opt_res = opt.forward(b, opt_in, [], group="optimizer")  # get
        seen = dict(zip(p, seen))
        low = self.compute_model  # mixed precision: into the compute dtype, and back for the loss
        keys = [state["key"]] if self.keyed else []  # a keyed model draws from the state's key
        inputs = _cast_wires(b, xs + keys, low.dom)
        yhat, m_res = model.forward(b, inputs, _cast_wires(b, _bind(self.model, seen, h), [q.type for q in low.params]),
                                    group="model")
        if self.keyed:
            yhat, keys = yhat[:-1], yhat[-1:]
        yhat = _cast_wires(b, yhat, self.data_cod)
        (l,), l_res = loss.forward(b, yhat, _bind(self.loss, iter(ys), h), group="loss")
        opt_res = _with_extra(b, opt_res, self.optimizer, l)
        if self.gradient == "forward":
            trained, key = self._forward_gradient(b, xs, _bind(self.model, seen, h) + _bind(self.loss, iter(ys), h),
                                                  state["key"])
        else:
            dl = rate.backward(b, rate.forward(b, [l], [], group="learning rate")[1], [], group="learning rate")[1]
            dyhat = loss.backward(b, l_res, dl, group="loss")[1]                              # backward pass
            dkeys = [P.zeros_like(b, k) for k in keys]  # a key carries no cotangent
            dp = model.backward(b, m_res, _cast_wires(b, dyhat, low.cod[:len(dyhat)]) + dkeys, group="model")[0]
            dp = _cast_wires(b, dp, [q.type for q in self.model.params])
            trained = [d for d, s in zip(dp, self.model.params) if not s.hyper]
        put = len(b.eqns)
        new = opt.backward(b, opt_res, trained, group="optimizer")[1]                       # put
        if self.fuse_optimizer:
            new = fuse_updates(b, put, trained, new)
        new = iter(new)
        new_opt = tree_map(lambda _: next(new), state["opt"])
        new_state = {"params": tree_map(lambda _: next(new), p), "opt": new_opt}
        if self.gradient == "forward":
            new_state["key"] = key
        if self.keyed:
            new_state["key"] = keys[0]
        if self.counts_steps:
            b.group = ("optimizer",)  # the step count, as optax counts in its optimizers' states
            new_state["step"] = P.increment(b, state["step"])
            b.group = ()
        in_sig = (sig_of(state), self.inference_model.in_sig[0], plain_sig(len(ys)))
        out_sig = (sig_of(new_state), None)
        return b.build(leaves(state) + xs + ys, leaves(new_state) + [l],
                       in_sig=in_sig, out_sig=out_sig, name=f"step({self.model.name})",
                       arg_names=(("", "x", "y"), ("", "loss")))

    @cached_property
    def update_term(self) -> Term:
        """The optimizer's half of a step: ``(state, grads) -> new state`` (its ``params``, ``opt``
        and ``step``, as :attr:`step_term` returns them), the gradients given. What a step whose
        gradients come from elsewhere applies (a pipelined step sums them over microbatches).

        Returns:
            The term; ``grads`` is a dict by trainable parameter name.

        Raises:
            ValueError: the optimizer reads the loss (``polyak_sgd``'s ``value``).
        """
        if self.optimizer.extra:
            raise ValueError(f"{self.optimizer.name} reads the loss's value; its update needs the whole step")
        opt = self.optimizer.lens(self.param_types)
        b = Builder()
        state = b.inputs(self.state_types)
        grads = b.inputs(dict(self.param_types))
        _, opt_res = opt.forward(b, _opt_inputs(b, state, self.optimizer, self._static_values), [], group="optimizer")
        new = iter(opt.backward(b, opt_res, list(grads.values()), group="optimizer")[1])
        new_opt = tree_map(lambda _: next(new), state["opt"])  # the optimizer lens puts its state first
        new_state = {"params": tree_map(lambda _: next(new), state["params"]), "opt": new_opt}
        if self.counts_steps:
            b.group = ("optimizer",)
            new_state["step"] = P.increment(b, state["step"])
            b.group = ()
        return b.build(leaves(state) + leaves(grads), leaves(new_state), in_sig=(sig_of(state), sig_of(grads)),
                       out_sig=sig_of(new_state), name=f"update({self.optimizer.name})")

    def pipeline(self, n: int) -> dict:
        """The learner cut into ``n`` pipeline stages (what the JAX backend runs with a GPipe
        schedule, see :class:`paralens.backends.sharding.Sharding`): the model's ``>>`` factors
        in ``n`` consecutive stages (:func:`paralens.stages`), the loss after the last one.

        Args:
            n: the number of stages, a positive int.

        Returns:
            ``{"stages": terms, "sources": ..., "update": update_term}``: each stage's term (the
                last one ending in the loss), and for each stage the source of each of its
                parameters in order: ``("params", name)``, ``("hyper", name)`` or ``("y", i)`` (the
                ``i``-th label).

        Raises:
            ValueError: a keyed model (dropout), ``gradient="forward"``, ``compute_dtype``, a
                learning-rate lens, an optimizer reading the loss, or a model of fewer than ``n``
                ``>>`` factors: none of these is pipelined.
        """
        if self.keyed or self.gradient != "reverse" or self.compute_dtype is not None or not self._default_rate:
            raise ValueError("a pipelined learner takes the exact gradient of a model without a random key, in its "
                             "own dtype, with the default learning-rate lens")
        parts = list(stages(self.model, n))
        parts[-1] = parts[-1] >> self.loss
        names = iter(zip(self.model.param_names, self.model.params))
        labels = iter(range(len(self.label_types)))
        sources = []
        for k, part in enumerate(parts):
            own = len(part.params) - (len(self.loss.params) if k == n - 1 else 0)
            src = []
            for i, spec in enumerate(part.params):
                if i < own:
                    name, want = next(names)
                    assert spec.type == want.type, (name, spec, want)  # stages keep the model's parameter order
                    src.append(("hyper" if spec.hyper else "params", name))
                else:
                    lname = self.loss.param_names[i - own]
                    src.append(("hyper", lname) if spec.hyper else ("y", next(labels)))
            sources.append(tuple(src))
        return {"stages": tuple(parts), "sources": tuple(sources), "update": self.update_term}

    def _forward_gradient(self, b: Builder, xs, params, key) -> tuple[list[int], int]:
        """Emit the forward-gradient estimate of the model's trainable parameters' gradient."""
        n = len(self.model.params)
        wrt = [name for name, s in zip(self.objective.param_names[:n], self.model.params) if not s.hyper]
        fg = forward_gradient(self.objective, wrt)
        outs = b.inline(fg, list(xs) + [key], params=dict(zip(fg.param_wires, params)), group="forward gradient")
        return outs[:-1], outs[-1]

    def _repr_svg_(self) -> str:  # Jupyter shows it as its diagram
        return self.as_term()._repr_svg_()

    def as_term(self) -> Term:
        """The learner as a term: its :attr:`step_term` (what :func:`~paralens.as_term`, the
        backends and the diagrams read).

        Returns:
            :attr:`step_term`, ``(state, x, y) -> (new state, loss)``.
        """
        return self.step_term

    # ---------------------------------------------------------------- running it
    def init(self, seed: int = 0, backend: str = "numpy", params: dict | None = None, *, sharding=None) -> dict:
        """The initial training state ``{"params", "opt", "hyper", "step"}``, typed as the step
        term reads it; the parameters are drawn, or start from ``params`` where it gives them.

        Args:
            seed: the seed of the parameters' draws (each parameter's draw depends on the seed and
                its name only) and, for ``gradient="forward"`` or a keyed model, of ``state["key"]``
                (laid out as ``jax.random.PRNGKey(seed)``).
            backend: the backend whose arrays the state holds (``"numpy"``, ``"jax"``, ...).
            params: initial values by parameter name, used instead of the drawn ones; it must give
                every parameter that is data rather than drawn (a batched one, such as the input
                :func:`paralens.dream.dream` optimises).
            sharding: a :class:`paralens.backends.sharding.Sharding` (JAX): the state is drawn on
                the host and each device given only its shards, by the rules and FSDP axis of
                ``sharding`` and :attr:`state_axes`; no parameter is put whole on one device.

        Returns:
            The state: ``params`` (the model's trainable parameters by name), ``opt`` (the
                optimizer's initial state), ``hyper`` (every hyperparameter at its default, see
                :attr:`hyper_defaults`), ``step`` (0, an int32, unless :attr:`counts_steps` is false)
                and, for ``gradient="forward"`` or a keyed model, ``key``.

        Raises:
            ValueError: a parameter that is not drawn is missing from ``params``; ``backend`` is
                unknown, or not JAX with ``sharding``.
            KeyError: ``params`` names something that is not a trainable parameter of the model.
        """
        if sharding is not None:
            if backend not in ("jax", "numpy") and backend != backends.get("jax"):  # "numpy": init's default
                raise ValueError(f"sharding= lays the state out on JAX devices; backend={backend!r} holds no "
                                 "JAX arrays")
            host = self.init(seed, "numpy", params)
            return sharding.place(host, sharding.state(self.state_types, self.state_axes))
        be = backends.get(backend)
        types = self.step_term.input_types()[0]
        values = be.init(self.model, seed)
        values.update({k: be.array(v, types["params"][k]) for k, v in (params or {}).items()})
        missing = sorted(set(types["params"]) - set(values))
        if missing:
            raise ValueError(f"give the initial values of {missing}: they are data, not drawn")
        params = {n: values[n] for n in types["params"]}
        opt = init_state(self.optimizer.state(self.param_types), params, be.array)
        hyper = {k: be.array(self.hyper_defaults[k], t) for k, t in types["hyper"].items()}
        state = {"params": params, "opt": opt, "hyper": hyper}
        if self.gradient == "forward" or self.keyed:
            state["key"] = be.array([0, seed], KEY)  # the layout of jax.random.PRNGKey(seed)
        if self.counts_steps:
            state["step"] = be.array(0, STEP)
        return state

    def compile(self, backend: str = "jax", **options):
        """A training step ``step(state, x, y) -> (state, loss)`` on ``backend``.

        JAX options: ``scan=True`` (``step(state, xs, ys) -> (state, losses)`` over
        stacked batches, one ``lax.scan``), ``mesh=`` (data-parallel over a
        ``jax.sharding.Mesh``), ``sharding=`` (a :class:`~paralens.backends.sharding.Sharding`:
        FSDP, tensor parallelism; the state as ``init(..., sharding=)`` lays it out),
        ``donate=False``.

        Before each call, on the host: ``x`` and ``y`` must have the same number of
        examples, integer class labels given as NumPy arrays must be in range,
        and data of another dtype is cast to the model's (the state keeps its
        dtypes). Labels already on a device are not read back: the JAX program
        checks them itself, and returns a NaN loss for a batch with a label out
        of range (one comparison over the labels; the rest of the program is the
        same as without the checks).

        Args:
            backend: the backend's name: ``"jax"`` (the default), ``"numpy"``, ``"sympy"`` (the
                step as formulas) or ``"z2"`` (circuits), or a backend object.
            **options: the backend's options for training steps. JAX: ``scan``, ``mesh``,
                ``batch_axis`` (the mesh axis the batch is sharded over; default its first) and
                ``donate`` (default ``True``), see :class:`~paralens.backends.jax.CompiledStep`.
                NumPy, SymPy and Z2: ``scan``; Z2 also ``engine="jax"``. The class count for the
                label check is passed by the learner, not here.

        Returns:
            The step ``step(state, x, y) -> (state, loss)``: a
                :class:`~paralens.backends.jax.CompiledStep` on JAX, a function on the other backends.

        Raises:
            ValueError: ``backend`` is unknown.
            ImportError: the backend's library is not installed.
            NotImplementedError: the backend cannot compile training steps (``"matplotlib"``).
            TypeError: an option the backend does not take (``sharding`` on any but JAX); on JAX,
                64-bit wires while ``jax_enable_x64`` is off.
        """
        if options.get("sharding") is not None:
            if backends.get(backend) is not backends.get("jax"):
                raise TypeError(f"sharding= is an option of the JAX backend, not of {backend!r}")
            options = {**self._layout(options["sharding"]), **options}
        return backends.get(backend).compile_step(self.step_term, classes=self.classes, **options)

    def export(self, path: str | os.PathLike | None, format: str = "jax", **options) -> bytes | bytearray:
        """The training step, serialized to run without paralens; written to ``path`` atomically with
        its checksum beside it (``path + ".sha256"``).

        ``format="jax"`` (the default) is ``jax.export``'s StableHLO, which needs JAX to run
        (``self.compile("jax").export(path)``; :func:`paralens.backends.artifacts.load_export`
        loads it); ``format="onnx"`` is an ONNX model, which onnxruntime runs from C, C++, C#,
        Java, JavaScript (Node and browsers) and Python (:func:`paralens.backends.onnx.load` loads it).

        >>> import paralens as pl
        >>> learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
        >>> blob = learner.export(None, format="onnx")  # the bytes only
        >>> blob[:2]
        b'\\x08\\n'

        Args:
            path: the file to write; ``None``: write nothing, return the bytes.
            format: ``"jax"`` or ``"onnx"``.
            **options: the exporter's options: JAX's ``batch`` and ``batch_size``
                (:meth:`paralens.backends.jax.CompiledStep.export`); ONNX's ``state`` (write the
                initial state beside the model, see :meth:`paralens.backends.onnx.OnnxStep.export`).

        Returns:
            The serialized step.

        Raises:
            ValueError: ``format`` is neither ``"jax"`` nor ``"onnx"``.
            NotImplementedError: the ONNX export of a step with a primitive ONNX cannot express (a random
                key: dropout, forward gradients), named in the message.
        """
        if format not in ("jax", "onnx"):
            raise ValueError(f"format must be 'jax' or 'onnx', got {format!r}")
        step = self.compile(format, donate=False) if format == "jax" else self.compile(format)
        return step.export(path, **options)

    def _layout(self, sharding) -> dict:
        """The options a sharded step takes from the learner: its state's axes and, where the
        sharding has a pipeline axis, its stages."""
        out = {"sharding": sharding, "state_axes": self.state_axes}
        if getattr(sharding, "pipeline", None) is not None:
            out["pipeline"] = self.pipeline(sharding.stages)
        return out

    @cached_property
    def classes(self) -> int | None:
        """The number of classes when the labels are integer class indices into the model's last
        output axis (``softmax_cross_entropy_with_integer_labels``); otherwise ``None``."""
        lt, cod = self.label_types, self.data_cod
        if len(lt) == 1 and lt[0].shape == () and lt[0].dtype.startswith(("int", "uint")) \
                and len(cod) == 1 and cod[0].ndim >= 1:
            return cod[0].shape[-1]
        return None

    def set_hyper(self, state: dict, **values) -> dict:
        """A state with new hyperparameter values, typed as the step expects (no recompile).
        Names with dots (``"huber.delta"``) go in as ``**{"huber.delta": 0.5}``.

        Args:
            state: the training state.
            **values: new values by hyperparameter name; each is checked as the optimizer checks
                it when built (``learning_rate`` non-negative, ``b1`` in [0, 1), ...), and a model's
                or loss's hyperparameter must be a finite number.

        Returns:
            The state with those values in ``state["hyper"]`` (the other entries shared).

        Raises:
            KeyError: a name is not a hyperparameter of this learner, or is one of its
                ``static_hyper``.
            ValueError: a value is out of its range or not finite.
            TypeError: a value is not a number.
        """
        types = self.state_types["hyper"]
        static = sorted(set(values) & self.static_hyper)
        if static:
            raise KeyError(f"{static} are compiled into the step (static_hyper); build a learner with new "
                           f"values to change them")
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise KeyError(f"unknown hyperparameters {unknown}; this learner has {sorted(types)}")
        checked = {k: self.optimizer.check_hyper(k, v) if k in self.optimizer.hyper else real(v, f"hyperparameter {k}")
                   for k, v in values.items()}
        be = backends.of(next(iter(state["hyper"].values()))) if state["hyper"] else backends.get("numpy")
        return {**state, "hyper": {**state["hyper"], **{k: be.array(v, types[k]) for k, v in checked.items()}}}

    def model_params(self, state: dict) -> dict:
        """The model's parameter dict: the trained parameters and the model's hyperparameters.

        Args:
            state: a training state of this learner.

        Returns:
            ``state["params"]`` with the model's hyperparameters from ``state["hyper"]`` added
                (the loss's and the optimizer's left out): the ``params`` a compiled model takes.
        """
        return {**state["params"], **{k: state["hyper"][k] for k in self.model.hyper_names}}

    def predict(self, state: dict, x, backend: str = "numpy"):
        """The model's output on ``x`` with the state's parameters (``x`` cast to the model's dtype).

        A keyed model runs as :attr:`inference_model` (dropout off, no key).

        Args:
            state: a training state of this learner.
            x: the inputs, batched.
            backend: the backend that runs the model (``"numpy"`` by default).

        Returns:
            The model's output for each example of ``x``, as ``backend``'s arrays.

        Raises:
            ValueError: ``backend`` is unknown.
            TypeError: ``x`` cannot be cast to the model's dtype (complex or not numbers).
        """
        return backends.get(backend).compile(self.inference_model)(self.model_params(state), x)

    def accuracy(self, state: dict, x, labels, backend: str = "numpy") -> float:
        """Fraction of examples whose arg-max output equals ``labels`` (class indices or one-hot).

        Args:
            state: a training state of this learner.
            x: the inputs, batched.
            labels: one label per example of ``x``: class indices of the output's leading shape
                (integers, or floats holding integers), or one-hot rows of the output's shape.
            backend: the backend that runs the model (``"numpy"`` by default).

        Returns:
            The accuracy, a float in [0, 1].

        Raises:
            ValueError: ``backend`` is unknown; labels of neither shape, fractional, out of range
                or not as many as the inputs.
            TypeError: the labels are not numbers.
        """
        be = backends.get(backend)
        return be.accuracy(be.compile(self.inference_model)(self.model_params(state), x), labels, x=x)

    def fit(self, x, y, *, epochs: int = 10, batch_size: int = 32, seed: int = 0, state: dict | None = None,
            backend: str = "jax", progress: bool = True, checkpoint_dir=None, every: int | None = None,
            keep: int = 3, resume: bool = False, on_nonfinite: str = "stop", sharding=None):
        """Shuffle, batch and train ``epochs`` epochs; returns ``(state, losses)``, one loss per step.

        Epoch ``e`` visits the examples in the order
        ``numpy.random.default_rng([seed, e]).permutation(len(x))``, in batches
        of ``batch_size`` (the last incomplete batch is dropped); each run of
        steps is one compiled ``lax.scan`` on JAX. The state counts the steps it
        has taken in ``state["step"]``: ``fit(..., state=state)`` continues the
        same data order, so two fits of 5 epochs equal one of 10.

        Checked first: ``x`` and ``y`` have the same number of examples, no
        NaN or inf in them, integer class labels in range, ``batch_size`` an int
        in ``1..len(x)``; data of another dtype is cast to the model's.

        ``checkpoint_dir``: save the whole run there (orbax-checkpoint) every
        ``every`` steps (default: each epoch) and at the end, keeping the last
        ``keep``. A folder with checkpoints is refused unless ``resume=True``,
        which continues the run from its latest checkpoint and ends bit for bit
        where the uninterrupted run would.

        Ctrl-C stops at the end of the running chunk of steps, saves a
        checkpoint (with ``checkpoint_dir``) and raises
        :class:`~paralens.backends.fitting.TrainingInterrupted`, which
        carries the state and losses so far.

        ``on_nonfinite``: when a loss is NaN or infinite, ``"stop"`` (warn with
        :class:`~paralens.backends.fitting.NonFiniteLossWarning` and return the
        state before the chunk where it happened, and its losses), ``"raise"``
        (``FloatingPointError``) or ``"continue"`` (warn and go on). The last
        good checkpoint is kept.

        Args:
            x: the inputs, one per example (an array, or what NumPy makes one of).
            y: the labels, one per example.
            epochs: how many epochs to train from ``state``, an int >= 0, each of
                ``len(x) // batch_size`` steps (with ``resume=True``, counted from the start of the
                checkpointed run).
            batch_size: examples per step, an int in ``1..len(x)``.
            seed: the seed of the data order, and of the initial state when ``state`` is not
                given; an int >= 0.
            state: the state to start from; ``None`` (the default): ``init(seed, backend=backend)``.
            backend: the backend that runs the steps (``"jax"`` by default; ``"numpy"`` works too,
                ``"sympy"`` is refused).
            progress: show a progress bar (tqdm), one tick per epoch.
            checkpoint_dir: the folder to checkpoint the run in; ``None`` (the default): no checkpoints.
            every: checkpoint every so many steps, a positive int (default: at each epoch's end).
            keep: how many of the latest checkpoints to keep, a positive int.
            resume: continue the run checkpointed in ``checkpoint_dir``; the data, batch size, seed,
                backend and hyperparameters must be the checkpointed run's.
            on_nonfinite: ``"stop"`` (the default), ``"raise"`` or ``"continue"``.
            sharding: a :class:`paralens.backends.sharding.Sharding` to train on (JAX): the state
                laid out by it (``init(..., sharding=)`` where ``state`` is not given) and each batch
                split over its batch axes. Checkpoints are saved sharded, each process its shards,
                and resume onto the layout of this ``sharding`` (another mesh shape too).

        Returns:
            ``(state, losses)``: the last state, as ``backend``'s arrays, and a NumPy array of one
                loss per step taken (with ``resume=True``, the checkpoint's losses first; with
                ``on_nonfinite="stop"``, up to the chunk that went non-finite).

        Raises:
            ValueError: ``x`` and ``y`` not as many, NaN or inf in them, class labels out of
                range, ``batch_size``, ``epochs``, ``seed``, ``every`` or ``keep`` out of range, an
                unknown ``on_nonfinite`` or backend; resuming a checkpoint of another run (other
                data, batch size, seed, backend or hyperparameters) or one past ``epochs``.
            TypeError: data that cannot be cast to the model's dtypes, or a count that is not an int.
            FileExistsError: ``checkpoint_dir`` holds checkpoints and ``resume`` is false.
            paralens.backends.checkpoint.CheckpointLockedError: another live process is writing
                ``checkpoint_dir``.
            FloatingPointError: a loss is NaN or infinite and ``on_nonfinite="raise"``.
            paralens.backends.fitting.TrainingInterrupted: Ctrl-C or SIGTERM (the run is
                checkpointed first, with ``checkpoint_dir``).
            NotImplementedError: ``backend="sympy"``, which writes formulas and does not train.
        """
        state = self.init(seed, backend=backend, sharding=sharding) if state is None else state
        layout = {} if sharding is None else {"step_options": self._layout(sharding)}
        return backends.get(backend).fit(self.step_term, state, x, y, epochs=epochs, batch_size=batch_size,
                                         seed=seed, progress=progress, desc=f"training {self.model.name[:40]}",
                                         checkpoint_dir=checkpoint_dir, every=every, keep=keep, resume=resume,
                                         on_nonfinite=on_nonfinite, classes=self.classes,
                                         static_hyper=self._static_values, **layout)


def _float_dtype(term: Term) -> str:
    floats = {t.dtype for t in list(term.dom) + [p.type for p in term.params] if t.dtype in P.FLOATS}
    if len(floats) != 1:
        raise TypeError(f"compute_dtype needs a model of one float dtype, {term.name} has {sorted(floats)}")
    return floats.pop()


def _cast_wires(b: Builder, wires: list[int], types) -> list[int]:
    """Each float wire cast to its type's dtype, where it differs (mixed precision)."""
    out = []
    for w, t in zip(wires, types):
        have = b.type_of(w).dtype
        out.append(w if have == t.dtype or have not in P.FLOATS else b.emit1(P.CAST, w, dtype=t.dtype))
    return out


def _opt_inputs(b: Builder, state: dict, optimizer: Transform, static: dict[str, float]) -> list[int]:
    """The optimizer lens's inputs ``(s, p, h)`` off the state, in its order; a static
    hyperparameter is a constant of its value; an extra input (the loss ``value``) is a placeholder
    here, replaced by :func:`_with_extra` once the loss is known."""
    t = hyper_type(b.type_of(w) for w in state["params"].values())
    h = {k: P.emit_const(b, static.get(k, 0.0), (), t.dtype) if k in optimizer.extra or k in static
         else state["hyper"][k] for k in optimizer.hyper}
    return leaves((state["opt"], state["params"], h))


def _static_hyper(names, optimizer: Transform) -> frozenset[str]:
    """``Learner``'s ``static_hyper``, checked: the names of the optimizer's hyperparameters it
    compiles in."""
    own = [k for k in optimizer.hyper if k not in optimizer.extra]
    if isinstance(names, bool):
        return frozenset(own if names else ())
    try:
        given = None if isinstance(names, str) else list(names)
    except TypeError:
        given = None
    if given is None or not all(isinstance(n, str) for n in given):
        raise TypeError(f"static_hyper must be True, False or a list of hyperparameter names, got {names!r}")
    other = sorted(set(given) - set(own))
    if other:
        raise ValueError(f"static_hyper names {other}, which are not the optimizer's hyperparameters "
                         f"({sorted(own)}); a model's or a loss's hyperparameter stays run-time")
    return frozenset(given)


def _with_extra(b: Builder, residuals: list[int], optimizer: Transform, loss: int) -> list[int]:
    """The optimizer's residuals with its extra input ``value`` (optax's extra argument of
    ``polyak_sgd``) the step's loss; any other extra input is refused, named."""
    if not optimizer.extra:
        return residuals
    unknown = sorted(optimizer.extra - {"value"})
    if unknown:
        raise ValueError(f"{optimizer.name} reads the extra input {unknown[0]!r}; a learner gives its optimizer only "
                         "'value', the loss")
    out = list(residuals)
    at = len(out) - len(optimizer.hyper) + list(optimizer.hyper).index("value")
    t = b.type_of(out[at])
    out[at] = loss if b.type_of(loss).dtype == t.dtype else b.emit1(P.CAST, loss, dtype=t.dtype)
    return out


def _bind(term: Term, given, hyper: dict) -> list[int]:
    """Wires for ``term``'s parameters in order: hyperparameters from ``hyper``, the others from
    ``given`` (a dict by name, or an iterator in order)."""
    out = []
    for name, spec in zip(term.param_names, term.params):
        if spec.hyper:
            out.append(hyper[name])
        else:
            out.append(given[name] if isinstance(given, dict) else next(given))
    return out
