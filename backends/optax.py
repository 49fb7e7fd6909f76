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

from paralens.optim import Leaf, StateSpec, Transform, hyper_type, init_state
from paralens.prims import FOREIGN, Foreign
from paralens.terms import leaves
from paralens.types import ArrayType
from paralens.wires import Wire

from . import jax as pjax

__all__ = ["to_optax", "from_optax"]


def _named(tree) -> tuple[dict, object]:
    """Leaves of a pytree keyed by readable paths (``"['w']"``), and its structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}, treedef


def _param_types(named: dict) -> dict[str, ArrayType]:
    return {n: ArrayType(tuple(jnp.shape(v)), str(jnp.result_type(v)), False) for n, v in named.items()}


def to_optax(opt: Transform) -> optax.GradientTransformation:
    """``opt`` as an optax transformation; its state is ``{"opt": ..., "hyper": {...}}``, its update
    ``opt.update_term`` compiled by the JAX backend."""
    compiled: dict = {}

    def program(ptypes: dict[str, ArrayType]):
        key = tuple(sorted(ptypes.items(), key=lambda kv: kv[0]))
        if key not in compiled:
            term = opt.update_term(ptypes)
            compiled[key] = (pjax.compile(term), term)
        return compiled[key]

    def init_fn(params):
        named, _ = _named(params)
        ptypes = _param_types(named)
        state = init_state(opt.state(ptypes), named, pjax.backend.array)
        hyper = {k: jnp.asarray(v, hyper_type(ptypes.values()).dtype) for k, v in opt.hyper.items()}
        return {"opt": state, "hyper": hyper}

    def update_fn(updates, state, params=None):
        named_g, treedef = _named(updates)
        ptypes = _param_types(named_g)
        fn, term = program(ptypes)
        if params is None:
            if _reads_params(term, len(leaves(state["opt"])), len(ptypes)):
                raise ValueError(f"{opt.name} needs params: call update(updates, state, params)")
            named_p = named_g
        else:
            named_p, _ = _named(params)
        new_state, new_updates = fn({}, state["opt"], named_p, named_g, state["hyper"])
        return jax.tree_util.tree_unflatten(treedef, [new_updates[n] for n in named_g]), \
            {"opt": new_state, "hyper": state["hyper"]}

    return optax.GradientTransformation(init_fn, update_fn)


def _reads_params(term, n_state: int, n_params: int) -> bool:
    """Whether the new state or the updates depend on the parameters."""
    param_inputs = set(term.inputs[n_state: n_state + n_params])
    return any(w in param_inputs for e in term.eqns for w in e.ins) or \
        any(w in param_inputs for w in term.outputs)


def from_optax(tx: optax.GradientTransformation) -> Transform:
    """Wrap an optax transformation as a paralens optimizer.

    Its state is optax's state leaves, as a tuple in optax's order; its update
    runs as one opaque box computed by optax, which ``R`` cannot differentiate
    and the NumPy and SymPy backends cannot run. Hyperparameters are whatever
    optax keeps in its state (use ``optax.inject_hyperparams`` to change them
    at run time).
    """
    init_cache: dict = {}

    def structure(ptypes):
        shapes = {n: jax.ShapeDtypeStruct(t.shape, t.dtype) for n, t in ptypes.items()}
        return jax.tree_util.tree_flatten(jax.eval_shape(tx.init, shapes))

    def state_fn(ptypes):
        opt_leaves, _ = structure(ptypes)

        def init_leaf(i):
            def init(params):
                key = id(params)
                if key not in init_cache:
                    init_cache.clear()
                    init_cache[key] = jax.tree_util.tree_leaves(tx.init(dict(params)))
                return init_cache[key][i]
            return init
        return tuple(StateSpec(ArrayType(tuple(l.shape), str(l.dtype), False), init_leaf(i))
                     for i, l in enumerate(opt_leaves))

    def update_fn(h, s, params, updates):
        names = list(params)
        ptypes = {n: p.type for n, p in params.items()}
        opt_leaves, treedef = structure(ptypes)
        n_state = len(opt_leaves)

        def call(*arrays):
            st = jax.tree_util.tree_unflatten(treedef, list(arrays[:n_state]))
            ps = dict(zip(names, arrays[n_state: n_state + len(names)]))
            gs = dict(zip(names, arrays[n_state + len(names):]))
            u, st2 = tx.update(gs, st, ps)
            return jax.tree_util.tree_leaves(st2) + [u[n] for n in names]

        b = next(iter(params.values())).builder
        ins = [w.id for w in s] + [params[n].id for n in names] + [updates[n].id for n in names]
        types_out = tuple(ArrayType(tuple(l.shape), str(l.dtype), False) for l in opt_leaves) + \
            tuple(updates[n].type for n in names)
        outs = b.emit(FOREIGN, ins, fn=Foreign(call, "optax"), types_out=types_out)
        new_s = tuple(Wire(b, outs[i]) for i in range(n_state))
        return new_s, {n: Wire(b, outs[n_state + k]) for k, n in enumerate(names)}

    return Leaf("from_optax", state=state_fn, update=update_fn)
