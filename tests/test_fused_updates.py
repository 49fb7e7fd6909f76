"""The optimizer fused into the backward pass (``Learner(fuse_optimizer=True)``, lenses/learner.py):
each parameter updated as soon as its cotangent is complete; the same numbers, less memory."""

import jax
import numpy as np
import pytest

import paralens as pl

SIZES = [16, 64, 64, 5]


def learner(optimizer, fuse, **kw):
    return pl.Learner(pl.nn.mlp(SIZES, activation=pl.nn.relu),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=optimizer,
                      fuse_optimizer=fuse, **kw)


def data(n=33, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIZES[0])).astype(np.float32), rng.integers(0, SIZES[-1], n).astype(np.int32)


OPTIMIZERS = {
    "sgd": lambda: pl.optim.sgd(0.1),
    "nesterov": lambda: pl.optim.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: pl.optim.adam(1e-2),
    "adamw": lambda: pl.optim.adamw(1e-2, weight_decay=1e-2),
}


@pytest.mark.parametrize("backend,name", [("numpy", n) for n in sorted(OPTIMIZERS)]
                         + [("jax", "adamw"), ("jax", "nesterov")])
def test_fused_steps_equal_unfused_steps(backend, name):
    """Bit for bit on NumPy; on JAX to float32 rounding (XLA fuses the moved boxes differently)."""
    x, y = data()
    got = []
    for fuse in (False, True):
        L = learner(OPTIMIZERS[name](), fuse)
        state = L.init(0, backend=backend)
        step = L.compile(backend)
        losses = []
        for i in range(3):  # batch 1, odd and whole
            s = slice(0, [1, 7, 33][i])
            state, loss = step(state, x[s], y[s])
            losses.append(float(loss))
        got.append((state, losses))
    (a, la), (b, lb) = got
    exact = backend == "numpy"
    np.testing.assert_allclose(la, lb, rtol=0 if exact else 1e-6)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=0 if exact else 1e-5, atol=0 if exact else 1e-7)


def test_fused_scanned_fit_equals_unfused_fit():
    x, y = data(40)
    states = [learner(pl.optim.adam(1e-2), fuse).fit(x, y, epochs=2, batch_size=8, backend="jax", progress=False)[0]
              for fuse in (False, True)]
    for u, v in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)


def test_each_update_runs_before_the_backward_pass_goes_on():
    """In the step term, the last layer's update comes before the first layer's backward
    boxes, and a barrier follows each parameter's update."""
    L = learner(pl.optim.adam(1e-2), True)
    eqns = L.step_term.eqns
    names = [e.prim.name for e in eqns]
    assert names.count("optimization_barrier") == len(L.param_types)
    first_update = min(i for i, e in enumerate(eqns) if e.group[:1] == ("optimizer",) and e.backward
                       and e.prim.name == "sqrt")
    last_backward = max(i for i, e in enumerate(eqns) if e.group[:1] == ("model",) and e.backward)
    assert first_update < last_backward
    unfused = learner(pl.optim.adam(1e-2), False).step_term.eqns
    assert min(i for i, e in enumerate(unfused) if e.prim.name == "sqrt") > max(
        i for i, e in enumerate(unfused) if e.group[:1] == ("model",) and e.backward)


def test_fusing_lowers_xla_temporary_memory():
    """XLA keeps every weight gradient of the unfused step alive until the update at the end
    (the hand-written jax.grad + optax step does the same); fused, one at a time."""
    x, y = data(64)
    temp = {}
    for fuse in (False, True):
        L = learner(pl.optim.adam(1e-2), fuse)
        compiled = L.compile("jax").lower(L.init(0, backend="jax"), x, y).compile()
        temp[fuse] = compiled.memory_analysis().temp_size_in_bytes
    assert temp[True] < temp[False]


def test_optimizers_that_read_every_gradient_cannot_be_fused():
    L = learner(pl.optim.chain(pl.optim.clip_by_global_norm(1.0), pl.optim.sgd(0.1)), True)
    with pytest.raises(ValueError, match="global-norm"):
        _ = L.step_term


def test_fuse_optimizer_arguments_are_checked():
    with pytest.raises(TypeError, match="fuse_optimizer must be True or False"):
        learner(pl.optim.sgd(0.1), "yes")
    with pytest.raises(ValueError, match="needs gradient='reverse'"):
        learner(pl.optim.sgd(0.1), True, gradient="forward")
