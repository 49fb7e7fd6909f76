"""Interoperability with optax, both ways.

* :func:`to_optax`: a paralens optimizer as an ``optax.GradientTransformation``
  (its update is the optimizer's term, compiled by the JAX backend);
* :func:`from_optax`: any optax transformation as a paralens optimizer (one
  opaque box in the step term).
"""

from __future__ import annotations

import collections
import keyword
import re

import jax
import jax.numpy as jnp
import optax

from paralens.optim import Chain, Leaf, StateSpec, Transform, hyper_type, init_state
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


def _class_name(name: str) -> str:
    """``"scale_by_adam"`` -> ``"ScaleByAdamState"``: optax's names for its state classes. Only
    ASCII letters and digits of a (user's) name are kept: ``namedtuple`` builds source from it."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words if not w[0].isdigit()) + "State"


def _plain_fields(fields: tuple[str, ...]) -> bool:
    """Whether every field name can be a ``namedtuple`` field: an ASCII identifier, not a keyword
    nor private (a user's ``State(**{"a b": ...})`` is kept as a dict instead)."""
    return all(f.isascii() and f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_")
               for f in fields)


_STATE_CLASSES: dict[tuple, type] = {}


def state_class(name: str, fields: tuple[str, ...]) -> type:
    """A ``NamedTuple`` class for a transform's state (one class per name and fields, so the
    states of two calls have the same pytree structure)."""
    key = (name, fields)
    if key not in _STATE_CLASSES:
        _STATE_CLASSES[key] = collections.namedtuple(_class_name(name), fields)
    return _STATE_CLASSES[key]


def _as_optax_state(opt: Transform, specs, ours, treedef, names: list[str]):
    """Our state (dicts of fields, per-parameter dicts keyed by path) shaped as optax's: a
    ``NamedTuple`` per transform whose per-parameter fields are trees shaped like the params,
    a tuple per chain, ``optax.EmptyState()`` where there is no state."""
    if isinstance(opt, Chain):
        return tuple(_as_optax_state(t, sp, s, treedef, names) for t, sp, s in zip(opt.parts, specs, ours))
    if isinstance(specs, dict):
        if not specs:
            return optax.EmptyState()
        fields = {k: jax.tree_util.tree_unflatten(treedef, [_lists(ours[k][n]) for n in names])
                  if isinstance(sp, dict) else ours[k] for k, sp in specs.items()}
        return state_class(opt.name, tuple(specs))(**fields) if _plain_fields(tuple(specs)) else fields
    return ours  # a state given as a function of the parameters: its leaves, as they are


def _from_optax_state(opt: Transform, specs, theirs, treedef, names: list[str]):
    """The inverse of :func:`_as_optax_state`."""
    if isinstance(opt, Chain):
        return tuple(_from_optax_state(t, sp, s, treedef, names) for t, sp, s in zip(opt.parts, specs, theirs))
    if isinstance(specs, dict):
        get = theirs.get if isinstance(theirs, dict) else lambda k: getattr(theirs, k)
        return {k: dict(zip(names, map(_tuples, treedef.flatten_up_to(get(k))))) if isinstance(sp, dict)
                else get(k) for k, sp in specs.items()}
    return tuple(theirs)


def _tuples(x):
    """A per-parameter state value as our terms take it: lists (optax's SM3 covers) as tuples."""
    return tuple(x) if isinstance(x, (list, tuple)) else x


def _lists(x):
    """A per-parameter state value as optax keeps it: tuples as lists."""
    return list(x) if isinstance(x, tuple) else x


def to_optax(opt: Transform) -> optax.GradientTransformationExtraArgs:
    """``opt`` as an optax transformation.

    Its state is shaped as optax's own: for each transform of a chain, a ``NamedTuple``
    (``ScaleByAdamState(count, mu, nu)``) whose per-parameter fields are trees shaped like the
    params, so ``optax.tree.map_params`` and ``optax.tree.get`` work on it; a chain's state is
    the tuple of its parts'. Hyperparameters are the transform's own values, fixed when it is
    built, as in optax: to change them at run time, build it through ``optax.inject_hyperparams``
    (they may be traced values). Updates come back in the gradients' dtypes. The update is
    ``opt.update_term`` compiled by the JAX backend, once per set of parameter shapes and dtypes;
    extra keyword arguments are accepted and ignored, as optax's
    ``GradientTransformationExtraArgs`` does.
    """
    compiled: dict = {}

    def program(ptypes: dict[str, ArrayType]):
        key = tuple(sorted(ptypes.items(), key=lambda kv: kv[0]))
        if key not in compiled:
            term = opt.update_term(ptypes)
            compiled[key] = (pjax.compile(term), term)
        return compiled[key]

    def init_fn(params):
        named, treedef = _named(params)
        ptypes = _param_types(named)
        specs = opt.state(ptypes)
        state = init_state(specs, named, pjax.backend.array)
        return _as_optax_state(opt, specs, state, treedef, list(named))

    def update_fn(updates, state, params=None, **extra_args):
        named_g, treedef = _named(updates)
        names = list(named_g)
        ptypes = _param_types(named_g)
        fn, term = program(ptypes)
        specs = opt.state(ptypes)
        ours = _from_optax_state(opt, specs, state, treedef, names)
        if params is None:
            if _reads_params(term, len(leaves(ours)), len(ptypes)):
                raise ValueError(f"{opt.name} needs params: call update(updates, state, params)")
            named_p = named_g
        else:
            named_p, _ = _named(params)
        dtype = hyper_type(ptypes.values()).dtype
        missing = sorted(opt.extra - set(extra_args))
        if missing:
            raise TypeError(f"{opt.name}: update needs the keyword argument {missing[0]!r} "
                            f"(update(updates, state, params, {missing[0]}=...))")
        hyper = {k: jnp.asarray(extra_args[k] if k in opt.extra else v, dtype) for k, v in opt.hyper.items()}
        new_state, new_updates = fn({}, ours, named_p, named_g, hyper)
        out = [jnp.asarray(new_updates[n]).astype(jnp.result_type(named_g[n])) for n in names]
        return jax.tree_util.tree_unflatten(treedef, out), _as_optax_state(opt, specs, new_state, treedef, names)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


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
