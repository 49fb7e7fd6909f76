"""A GPipe schedule of a learner's stages over a mesh axis, inside the one compiled step.

The model's ``>>`` factors are cut into as many stages as the mesh's pipeline axis has devices
(:meth:`paralens.Learner.pipeline`); device ``s`` of that axis runs stage ``s`` only. The batch is
split into ``m`` microbatches. Forward, microbatch ``j`` leaves stage ``s`` at tick ``j + s``
and is handed to stage ``s + 1`` with ``lax.ppermute``; each stage keeps the inputs it saw.
Backward, the cotangents flow the other way, the last stage seeding them from the loss; each
stage recomputes its forward pass from the input it kept (GPipe's re-materialisation) and runs
its reverse derivative, the term ``value_and_R(stage)`` that paralens derives. The parameter
cotangents are summed over microbatches and stages (``psum``), averaged over the data axis
(``pmean``) where the batch is also split, and the optimizer's update term applies them, all in
one ``jax.jit`` program (``shard_map`` for the schedule).

The loss must be a mean over the batch (every ``pl.losses`` loss is): the step's loss is the
mean of the microbatches' losses, and its gradient the mean of theirs.

Activations cross stages as one ``(microbatch, features)`` buffer, each stage's output flattened
and padded to the widest; stage outputs must be one floating-point array of one dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as Spec

from paralens.derivative import value_and_R
from paralens.types import ArrayType

__all__ = ["pipelined"]


def pipelined(parts: dict, sharding, compile_term):
    """``program(state, x, y) -> (new state parts, loss)`` running ``parts`` (from
    :meth:`paralens.Learner.pipeline`) as a GPipe schedule over ``sharding``'s pipeline axis.

    Args:
        parts: the stages, their parameters' sources and the update term.
        sharding: the :class:`~paralens.backends.sharding.Sharding` (``pipeline``, ``microbatches``,
            its batch axes for data parallelism beside).
        compile_term: the JAX backend's ``compile`` (a term to a function).

    Returns:
        The program, to run inside ``jax.jit``; its ``gradients(state, x, y)`` returns the
        pipelined ``(gradients by parameter name, loss)`` alone.

    Raises:
        TypeError: a stage's output is not one floating-point array, or two stages' outputs
            differ in dtype.
    """
    axis, m = sharding.pipeline, sharding.microbatches
    stages, sources = parts["stages"], parts["sources"]
    n = len(stages)
    data_axes = tuple(a for a in sharding.batch if a != axis)
    outs = [s.cod for s in stages[:-1]]
    for k, cod in enumerate(outs):
        if len(cod) != 1 or not cod[0].dtype.startswith(("float", "bfloat")) or not cod[0].batched:
            raise TypeError(f"pipeline stage {k} ({stages[k].name}) must return one batched floating-point array "
                            f"to hand on, it returns {cod}")
    dtypes = {cod[0].dtype for cod in outs}
    if len(dtypes) > 1:
        raise TypeError(f"pipeline stages hand on arrays of one dtype; they return {sorted(dtypes)}")
    width = max([math.prod(cod[0].shape) for cod in outs] or [1])
    dtype = dtypes.pop() if dtypes else "float32"
    forward = [compile_term(s) for s in stages[:-1]]
    backward = [compile_term(value_and_R(s)) for s in stages]
    names = [s.param_names for s in stages]
    update = compile_term(parts["update"])
    trainable = [name for src in sources for kind, name in src if kind == "params"]

    def pack(y):
        flat = y.reshape(y.shape[0], -1)
        return jnp.pad(flat, ((0, 0), (0, width - flat.shape[1]))).astype(dtype)

    def unpack(buf, t: ArrayType):
        return buf[:, :math.prod(t.shape)].reshape((buf.shape[0],) + t.shape).astype(t.dtype)

    def local(k, params, hyper, ys, j):
        got = {"params": params, "hyper": hyper}
        return {name: (ys[src][j] if kind == "y" else got[kind][src])
                for name, (kind, src) in zip(names[k], sources[k])}

    def first_input(xs, j):
        return tuple(x[j] for x in xs) if len(xs) > 1 else xs[0][j]

    def schedule(params, hyper, xs, ys):
        s = jax.lax.axis_index(axis)
        mb = xs[0].shape[1]
        zeros = jnp.zeros((mb, width), dtype)
        kept = jnp.zeros((m, mb, width), dtype)

        def run_forward(k):
            def go(carry, j):
                x = first_input(xs, j) if k == 0 else unpack(carry, stages[k].dom[0])
                return pack(forward[k](local(k, params, hyper, ys, j), x))
            return go
        branches = [run_forward(k) for k in range(n - 1)] + [lambda carry, j: zeros]
        carry = zeros
        for t in range(m + n - 1):
            j = t - s
            valid = (j >= 0) & (j < m)
            jc = jnp.clip(j, 0, m - 1)
            kept = jnp.where(valid, kept.at[jc].set(carry), kept)
            out = jax.lax.switch(s, branches, carry, jc)
            carry = jax.lax.ppermute(out, axis, [(i, i + 1) for i in range(n - 1)])

        grads0 = {name: jnp.zeros_like(params[name]) for name in trainable}

        def run_backward(k):
            def go(cot, j):
                p = local(k, params, hyper, ys, j)
                if k == 0:
                    x = first_input(xs, j)
                else:
                    x = unpack(kept[j], stages[k].dom[0])
                if k == n - 1:
                    dy = jnp.ones((), stages[k].cod[0].dtype)
                else:
                    dy = unpack(cot, stages[k].cod[0])
                value, dp, dx = backward[k](p, x, dy)
                grads = dict(grads0)
                for name, (kind, src) in zip(names[k], sources[k]):
                    if kind == "params":
                        grads[src] = dp[name].astype(grads0[src].dtype)
                handed = zeros if k == 0 else pack(dx)
                loss = value if k == n - 1 else jnp.zeros((), stages[-1].cod[0].dtype)
                return grads, handed, loss
            return go
        branches = [run_backward(k) for k in range(n)]
        cot = zeros
        acc = grads0
        total = jnp.zeros((), stages[-1].cod[0].dtype)
        for t in range(m + n - 1):
            j = t - (n - 1 - s)
            valid = (j >= 0) & (j < m)
            jc = jnp.clip(j, 0, m - 1)
            grads, handed, loss = jax.lax.switch(s, branches, cot, jc)
            acc = jax.tree.map(lambda a, g, v=valid: a + jnp.where(v, g, jnp.zeros_like(g)), acc, grads)
            total = total + jnp.where(valid, loss, jnp.zeros_like(loss))
            cot = jax.lax.ppermute(handed, axis, [(i, i - 1) for i in range(1, n)])
        acc = jax.tree.map(lambda a: jax.lax.psum(a, axis) / m, acc)
        total = jax.lax.psum(total, axis) / m
        if data_axes:
            acc = jax.tree.map(lambda a: jax.lax.pmean(a, data_axes), acc)
            total = jax.lax.pmean(total, data_axes)
        return acc, total

    batch = (data_axes[0] if len(data_axes) == 1 else data_axes) if data_axes else None
    ways = math.prod(sharding.mesh.shape[a] for a in data_axes)
    split = jax.shard_map(schedule, mesh=sharding.mesh, check_vma=False,
                          in_specs=(Spec(), Spec(), Spec(None, batch), Spec(None, batch)),
                          out_specs=(Spec(), Spec()))

    def gradients(state, x, y):
        xs, ys = (x if isinstance(x, tuple) else (x,)), (y if isinstance(y, tuple) else (y,))
        size = xs[0].shape[0]
        if size % (m * ways):
            raise ValueError(f"a batch of {size} examples cannot be split into {m} microbatches over {ways} data "
                             f"shards; give a multiple of {m * ways}")
        micro = tuple(v.reshape((m, size // m) + v.shape[1:]) for v in xs)
        micro_y = tuple(v.reshape((m, size // m) + v.shape[1:]) for v in ys)
        return split(state["params"], state["hyper"], micro, micro_y)

    def program(state, x, y):
        grads, loss = gradients(state, x, y)
        return update({}, state, grads), loss
    program.gradients = gradients  # (state, x, y) -> (gradients by parameter name, loss)
    return program
