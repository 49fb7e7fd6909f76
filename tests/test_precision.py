"""Mixed precision: pl.astype and Learner(compute_dtype=...) (lenses/precision.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl
from paralens.backends import datasets


def test_astype_retypes_every_wire_and_keeps_the_names():
    f = pl.nn.mlp([4, 8, 3], activation=pl.nn.tanh)
    low = pl.astype(f, "bfloat16")
    assert {t.dtype for t in low.wires} == {"bfloat16"}
    assert low.param_names == f.param_names and low.n_boxes == f.n_boxes
    assert pl.astype(f, "float32") is f
    with pytest.raises(ValueError, match="'int32' is not a floating-point dtype"):
        pl.astype(f, "int32")


def test_astype_then_R_equals_R_then_astype():
    """Retyping commutes with the reverse derivative (float64, so both are exact)."""
    f = pl.nn.mlp([3, 5, 2], activation=pl.nn.tanh)
    a, b = pl.R(pl.astype(f, "float64")), pl.astype(pl.R(f), "float64")
    be = pl.backends.get("numpy")
    p = be.init(pl.astype(f, "float64"), 0)
    x, dy = np.random.default_rng(0).standard_normal((4, 3)), np.ones((4, 2))
    for u, v in zip(jax.tree.leaves(be.compile(a)(p, x, dy)), jax.tree.leaves(be.compile(b)(p, x, dy))):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


def _learner(compute_dtype=None, lr=1e-3):
    return pl.Learner(pl.nn.mlp([64, 32, 10]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.sgd(lr), compute_dtype=compute_dtype)


def test_bfloat16_compute_keeps_float32_parameters_and_state():
    learner = _learner("bfloat16")
    step = learner.step_term
    model_boxes = [e for e in step.eqns if e.group[:1] == ("model",) and e.prim.name == "einsum"]
    assert model_boxes and all(step.wires[e.outs[0]].dtype == "bfloat16" for e in model_boxes)
    assert {t.dtype for t in step.dom[:4]} == {"float32"}
    x, y = np.ones((5, 64), np.float32), np.arange(5, dtype=np.int32)
    state, loss = learner.compile("jax")(learner.init(backend="jax"), x, y)
    assert {v.dtype for v in jax.tree.leaves(state["params"])} == {np.dtype("float32")}
    assert loss.dtype == np.float32


def test_a_mixed_precision_step_equals_hand_written_jax():
    """The update equals jax.grad of the same mixed-precision computation written in JAX:
    parameters and input cast to bfloat16, logits cast back to float32 for the loss."""
    learner = _learner("bfloat16", lr=1.0)
    state = learner.init(seed=1, backend="jax")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 64)).astype(np.float32), rng.integers(0, 10, 7).astype(np.int32)
    params = {k: jnp.array(v) for k, v in state["params"].items()}

    def loss(p):
        low = {k: v.astype(jnp.bfloat16) for k, v in p.items()}
        h = jax.nn.relu(x.astype(jnp.bfloat16) @ low["dense0.W"] + low["dense0.b"])
        logits = (h @ low["dense1.W"] + low["dense1.b"]).astype(jnp.float32)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    value, grads = jax.value_and_grad(loss)(params)
    new, l = learner.compile("jax")(state, x, y)
    np.testing.assert_allclose(l, value, rtol=1e-2)
    for k in params:
        np.testing.assert_allclose(params[k] - new["params"][k], grads[k], rtol=5e-2, atol=5e-3)


def test_bfloat16_trains_the_digits_mlp_to_float32_accuracy():
    xtr, ytr, xte, yte = datasets.digits()
    accuracy = {}
    for dtype in (None, "bfloat16"):
        learner = pl.Learner(pl.nn.mlp([64, 128, 128, 10]),
                             loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                             optimizer=pl.optim.adam(1e-3), compute_dtype=dtype)
        state, _ = learner.fit(xtr, ytr, epochs=20, batch_size=32, progress=False)
        accuracy[dtype] = learner.accuracy(state, xte, yte, backend="jax")
    assert accuracy[None] >= 0.96 and abs(accuracy["bfloat16"] - accuracy[None]) <= 0.01, accuracy


def test_compute_dtype_is_checked():
    with pytest.raises(ValueError, match="not a floating-point dtype"):
        _learner("int8")
    with pytest.raises(ValueError, match="gradient='reverse'"):
        pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(), gradient="forward",
                   compute_dtype="bfloat16")
