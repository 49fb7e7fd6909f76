"""The JAX backend: the same rules over ``jax.numpy``, traceable by ``jax.jit``,
``jax.grad``, ``jax.vmap`` and ``jax.export``.

>>> import jax, numpy as np, paralens as pl
>>> from paralens.backends import jax as pjax
>>> fn = jax.jit(pjax.compile(pl.nn.dense(2, 1)))
>>> fn({"dense.W": np.ones((2, 1), np.float32), "dense.b": np.zeros(1, np.float32)},
...    np.ones((3, 2), np.float32)).shape
(3, 1)
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np

from paralens.terms import Term
from paralens.types import ArrayType

from . import numpy as _np_backend
from ._interpret import Interpreter, make_rules

__all__ = ["compile", "init", "full", "compile_learner"]


def _mask(cond, like):
    return cond.astype(jnp.result_type(like, jnp.float32))


ops = types.SimpleNamespace(
    exp=jnp.exp, log=jnp.log, sqrt=jnp.sqrt, tanh=jnp.tanh, sigmoid=jax.nn.sigmoid,
    softplus=jax.nn.softplus,
    relu=jax.nn.relu,
    step=lambda x: _mask(x > 0, x),
    stop_gradient=jax.lax.stop_gradient,
    cos=jnp.cos, sin=jnp.sin, floor=jnp.floor,
    power=jnp.power,
    cast=lambda x, dtype: jnp.asarray(x).astype(dtype),
    pow=lambda x, p: jnp.power(x, p),
    const=lambda c: c,
    greater=lambda x, y: _mask(jnp.greater(x, y), jnp.result_type(x, y)),
    equal=lambda x, y: _mask(jnp.equal(x, y), jnp.result_type(x, y)),
    where=lambda c, x, y: jnp.where(c != 0, x, y),
    full=lambda shape, value, dtype: jnp.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: jnp.asarray(np.asarray(value, dtype=dtype).reshape(shape)),
    einsum=lambda spec, a, b: jnp.einsum(spec, a, b),
    pad=jnp.pad,
    add_at=lambda acc, idx, v: acc.at[idx].add(v),
    max=lambda x, axes: jnp.max(x, axis=axes),
    softmax=lambda x, axis: jax.nn.softmax(x, axis=axis),
    logsumexp=lambda x, axis: jax.nn.logsumexp(x, axis=axis),
)

def _lax_loop(step, carries, xs, length, reverse):
    def body(c, x):
        c2, y = step(list(c), list(x))
        return tuple(c2), tuple(y)
    final, ys = jax.lax.scan(body, tuple(carries), tuple(xs), length=length, reverse=reverse)
    return list(final), list(ys)


_interp = Interpreter("jax", jnp, make_rules(jnp, ops), convert=jnp.asarray, loop=_lax_loop)


def compile(term: Term):  # noqa: A001 - the public contract
    """A JAX function for ``term`` (same calling convention as the NumPy backend).

    It is not jitted, so it composes with any JAX transformation; wrap it in
    ``jax.jit`` to compile.
    """
    return _interp.compile(term)


def init(term: Term, seed: int = 0) -> dict:
    """The NumPy backend's initial values, as JAX arrays."""
    return {k: jnp.asarray(v) for k, v in _np_backend.init(term, seed).items()}


def full(t: ArrayType, value):
    return jnp.full(t.shape, value, dtype=t.dtype)


def state_shapes(learner) -> dict:
    """``jax.ShapeDtypeStruct`` leaves of ``learner.init(...)``'s state, without computing it."""
    def sds(t: ArrayType):
        return jax.ShapeDtypeStruct(t.shape, t.dtype)
    return {"params": {n: sds(t) for n, t in learner.model.param_types.items()},
            "opt": {k: sds(spec.type) for k, spec in learner.state_specs.items()},
            "hyper": {k: jax.ShapeDtypeStruct((), "float32") for k in learner.optimizer.hyper}}


class CompiledStep:
    """A training step compiled as one ``jax.jit`` program.

    ``step(state, x, y) -> (state, loss)``; with ``scan=True``,
    ``step(state, xs, ys) -> (state, losses)`` runs one step per leading slice
    of ``xs``/``ys`` inside a single ``lax.scan``. The state is donated: its
    buffers are reused for the new state, so do not keep using the old one.
    """

    def __init__(self, learner, *, donate: bool = True, scan: bool = False, mesh=None,
                 batch_axis: str | None = None):
        self.learner = learner
        self.scan = scan
        fn = compile(learner.step_term)

        def step(state, x, y):
            params, opt, loss = fn(state["params"], state["opt"], state["hyper"], x, y)
            return {"params": params, "opt": opt, "hyper": state["hyper"]}, loss

        def many(state, xs, ys):
            return jax.lax.scan(lambda s, xy: step(s, *xy), state, (xs, ys))

        self._fn = many if scan else step

        # The jitted program takes the hyperparameters apart from the donated state and
        # does not return them: they are read, never rewritten, so they need no output
        # buffers and no donation.
        def paralens_step(params, opt, hyper, x, y):
            new, loss = self._fn({"params": params, "opt": opt, "hyper": hyper}, x, y)
            return (new["params"], new["opt"]), loss

        kw = {}
        if mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec as Spec
            axis = batch_axis or mesh.axis_names[0]
            replicated = NamedSharding(mesh, Spec())
            data = NamedSharding(mesh, Spec(None, axis) if scan else Spec(axis))
            kw = dict(in_shardings=(replicated, replicated, replicated, data, data),
                      out_shardings=(replicated, replicated))
        self.mesh = mesh
        self._jit = jax.jit(paralens_step, donate_argnums=(0, 1) if donate else (), **kw)

    def __call__(self, state, x, y):
        (params, opt), loss = self._jit(state["params"], state["opt"], state["hyper"], x, y)
        return {"params": params, "opt": opt, "hyper": state["hyper"]}, loss

    def lower(self, state, x, y):
        """``jax.jit(...).lower``: inspect the program (``.as_text()``, ``.compile()``)."""
        return self._jit.lower(state["params"], state["opt"], state["hyper"], x, y)

    def export(self, path: str | None = None, *, batch: str = "b") -> bytes:
        """Serialize the step with ``jax.export``, batch dimension symbolic; write it to ``path``.

        The artifact needs only JAX to run::

            exp = jax.export.deserialize(open(path, "rb").read())
            new_state, loss = exp.call(state, x, y)
        """
        from jax import export as jex

        learner = self.learner
        (b,) = jex.symbolic_shape(batch)
        lead = (b,) if not self.scan else (jex.symbolic_shape("k")[0], b)

        def data(types):
            sds = [jax.ShapeDtypeStruct(lead + t.shape, t.dtype) for t in types]
            return sds[0] if len(sds) == 1 else tuple(sds)
        exported = jex.export(jax.jit(self._fn))(state_shapes(learner), data(learner.model.dom),
                                                 data(learner.label_types))
        blob = exported.serialize()
        if path is not None:
            with open(path, "wb") as f:
                f.write(blob)
        return blob


def compile_learner(learner, *, donate: bool = True, scan: bool = False, mesh=None,
                    batch_axis: str | None = None) -> CompiledStep:
    """The training step as one ``jax.jit`` program (see :class:`CompiledStep`).

    ``mesh``: a ``jax.sharding.Mesh``; the batch is sharded over ``batch_axis``
    (its first axis by default), parameters and optimizer state are
    replicated, and XLA inserts the all-reduce of the parameter cotangents.
    """
    return CompiledStep(learner, donate=donate, scan=scan, mesh=mesh, batch_axis=batch_axis)
