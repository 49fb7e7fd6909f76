"""Interoperability with optax, both ways.

* :func:`to_optax`: a paralens optimizer as an ``optax.GradientTransformation``
  (its update is the optimizer's term, compiled by the JAX backend);
* :func:`from_optax`: any optax transformation as a paralens optimizer (one
  opaque box in the step term).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from paralens.learner import hyper_type, initial_state, update_term
from paralens.optim import StateSpec, Transform
from paralens.prims import FOREIGN, Foreign
from paralens.terms import _live_eqns
from paralens.trace import Wire
from paralens.types import ArrayType

from . import jax as pjax

__all__ = ["to_optax", "from_optax"]


def _named(tree) -> tuple[dict, object]:
    """Leaves of a pytree keyed by readable paths (``"['w']"``), and its structure."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}, treedef


def _types(named: dict) -> dict[str, ArrayType]:
    return {n: ArrayType(tuple(jnp.shape(v)), str(jnp.result_type(v)), False) for n, v in named.items()}


def to_optax(opt: Transform) -> optax.GradientTransformation:
    """``opt`` as an optax transformation; its state is ``{"opt": {...}, "hyper": {...}}``."""
    compiled: dict = {}

    def program(ptypes: dict[str, ArrayType]):
        key = tuple(sorted(ptypes.items(), key=lambda kv: kv[0]))
        if key not in compiled:
            term = update_term(opt, ptypes)
            compiled[key] = (pjax.compile(term), term)
        return compiled[key]

    def init_fn(params):
        named, _ = _named(params)
        ptypes = _types(named)
        specs = opt.state(ptypes)
        state = {k: initial_state(pjax, s, k, named) for k, s in specs.items()}
        hyper = {k: jnp.asarray(v, hyper_type(ptypes.values()).dtype) for k, v in opt.hyper.items()}
        return {"opt": state, "hyper": hyper}

    def update_fn(updates, state, params=None):
        named_g, treedef = _named(updates)
        ptypes = _types(named_g)
        fn, term = program(ptypes)
        if params is None:
            if _reads_params(term, len(state["opt"]) + len(state["hyper"]), len(ptypes)):
                raise ValueError(f"{opt.name} needs params: call update(updates, state, params)")
            named_p = named_g
        else:
            named_p, _ = _named(params)
        _, new_state, new_updates = fn({}, state["opt"], state["hyper"], named_p, named_g)
        return jax.tree_util.tree_unflatten(treedef, [new_updates[n] for n in named_g]), \
            {"opt": new_state, "hyper": state["hyper"]}

    return optax.GradientTransformation(init_fn, update_fn)


def _reads_params(term, n_before: int, n_params: int) -> bool:
    """Whether the updates or the state depend on the parameters (not just pass them through)."""
    param_inputs = set(term.inputs[n_before: n_before + n_params])
    outputs = term.outputs[n_params:]  # the new state and the updates, not the new parameters
    live = _live_eqns(term.eqns, outputs)
    return any(w in param_inputs for e in live for w in e.ins) or any(w in param_inputs for w in outputs)


def from_optax(tx: optax.GradientTransformation) -> Transform:
    """Wrap an optax transformation as a paralens optimizer.

    Its state leaves become state wires (keyed ``"leaf0"``, ``"leaf1"``, ...);
    its update runs as one opaque box computed by optax. Hyperparameters are
    whatever optax keeps in its state (use ``optax.inject_hyperparams`` to
    change them at run time).
    """
    init_cache: dict = {}

    def structure(ptypes):
        shapes = {n: jax.ShapeDtypeStruct(t.shape, t.dtype) for n, t in ptypes.items()}
        return jax.tree_util.tree_flatten(jax.eval_shape(tx.init, shapes))

    def state_fn(ptypes):
        leaves, _ = structure(ptypes)

        def init_leaf(i):
            def init(params):
                key = id(params)
                if key not in init_cache:
                    init_cache.clear()
                    init_cache[key] = jax.tree_util.tree_leaves(tx.init(dict(params)))
                return init_cache[key][i]
            return init
        return {f"leaf{i}": StateSpec(ArrayType(tuple(l.shape), str(l.dtype), False), init_leaf(i))
                for i, l in enumerate(leaves)}

    def update_fn(h, s, params, updates):
        names = list(params)
        ptypes = {n: p.type for n, p in params.items()}
        leaves, treedef = structure(ptypes)
        n_state = len(leaves)

        def call(*arrays):
            st = jax.tree_util.tree_unflatten(treedef, list(arrays[:n_state]))
            ps = dict(zip(names, arrays[n_state: n_state + len(names)]))
            gs = dict(zip(names, arrays[n_state + len(names):]))
            u, st2 = tx.update(gs, st, ps)
            return jax.tree_util.tree_leaves(st2) + [u[n] for n in names]

        b = next(iter(params.values())).builder
        ins = [s[f"leaf{i}"].id for i in range(n_state)] + [params[n].id for n in names] + \
              [updates[n].id for n in names]
        types_out = tuple(ArrayType(tuple(l.shape), str(l.dtype), False) for l in leaves) + \
            tuple(updates[n].type for n in names)
        outs = b.emit(FOREIGN, ins, fn=Foreign(call, "optax"), types_out=types_out)
        new_s = {f"leaf{i}": Wire(b, outs[i]) for i in range(n_state)}
        return new_s, {n: Wire(b, outs[n_state + k]) for k, n in enumerate(names)}

    return Transform({}, state_fn, update_fn, "from_optax")
