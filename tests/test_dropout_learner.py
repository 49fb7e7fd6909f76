"""Dropout in a Learner: the model's key threaded through the training state, and evaluation in
inference mode (``pl.nn.inference_mode``, ``Learner.inference_model``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl

RATE = 0.4
drop = pl.nn.dropout(RATE)


@pl.para(dom=[pl.Array[6], pl.prims.KEY], name="model")
def model(x, key, w1: pl.Param[6, 8], w2: pl.Param[8, 3]):
    h, key = drop(pl.relu(x @ w1), key)
    h, key = drop(h, key)
    return h @ w2, key


@pl.para(dom=[pl.Array[6]], name="model")
def plain(x, w1: pl.Param[6, 8], w2: pl.Param[8, 3]):
    return pl.relu(x @ w1) @ w2


def learner(**kw):
    return pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.sgd(0.1), **kw)


def data(n=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


def hand_step(params, key, x, y):
    """The same step in plain JAX: each dropout splits the key and masks with uniform > rate."""
    def loss(p, key):
        h = jax.nn.relu(x @ p["model.w1"])
        for _ in range(2):
            key, draw = jax.random.split(key)
            h = h * (jax.random.uniform(draw, h.shape, h.dtype) > RATE) / (1 - RATE)
        logits = h @ p["model.w2"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1)), key
    (value, key), g = jax.value_and_grad(loss, has_aux=True)(params, key)
    return {k: params[k] - 0.1 * g[k] for k in params}, key, value


@pytest.mark.parametrize("batch", [1, 7])
def test_a_step_with_dropout_equals_hand_written_jax(batch):
    L = learner()
    state = L.init(3, backend="jax")
    x, y = data(batch)
    want, key, value = hand_step({k: jnp.array(v) for k, v in state["params"].items()},
                                 jnp.array(state["key"]), x, y)
    new, loss = L.compile("jax")(state, x, y)  # donates the state
    np.testing.assert_allclose(float(loss), float(value), rtol=1e-6)
    assert np.array_equal(np.asarray(new["key"]), np.asarray(key))
    for k in want:
        np.testing.assert_allclose(np.asarray(new["params"][k]), np.asarray(want[k]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_training_with_dropout_is_a_function_of_the_seed(backend):
    x, y = data(24)
    L = learner()
    runs = [L.fit(x, y, epochs=2, batch_size=5, seed=s, backend=backend, progress=False) for s in (0, 0, 1)]
    (a, la), (b, lb), (c, lc) = runs
    assert np.array_equal(la, lb) and not np.array_equal(la, lc)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(u), np.asarray(v))
    assert not np.array_equal(np.asarray(a["key"]), np.asarray(L.init(0, backend=backend)["key"]))
    # continuing a fit draws the masks the uninterrupted fit draws
    half, _ = L.fit(x, y, epochs=1, batch_size=5, seed=0, backend=backend, progress=False)
    whole, _ = L.fit(x, y, epochs=1, batch_size=5, seed=0, state=half, backend=backend, progress=False)
    for u, v in zip(jax.tree.leaves(whole), jax.tree.leaves(a)):
        assert np.array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_predict_and_accuracy_run_without_dropout(backend):
    L = learner()
    state = L.init(0, backend="numpy")
    x, y = data(9)
    want = np.maximum(x @ state["params"]["model.w1"], 0) @ state["params"]["model.w2"]
    np.testing.assert_allclose(np.asarray(L.predict(state, x, backend=backend)), want, rtol=1e-5, atol=1e-6)
    assert L.accuracy(state, x, y, backend=backend) == np.mean(want.argmax(1) == y)


def test_inference_mode_equals_the_model_without_dropout():
    evaluated = pl.nn.inference_mode(model)
    assert evaluated.dom == plain.dom and evaluated.cod == plain.cod
    assert evaluated.param_names == plain.param_names
    assert not any(e.prim.name == "uniform" for e in evaluated.eqns)
    p = pl.backends.get("numpy").init(plain, 0)
    x, _ = data(4)
    be = pl.backends.get("jax")
    np.testing.assert_array_equal(np.asarray(be.compile(evaluated)(p, x)), np.asarray(be.compile(plain)(p, x)))


def test_inference_mode_refuses_what_it_cannot_evaluate():
    with pytest.raises(TypeError, match="keyed model"):
        pl.nn.inference_mode(plain)
    with pytest.raises(TypeError, match="got Poly"):
        pl.nn.inference_mode(pl.nn.dropout(0.3))

    @pl.para(dom=[pl.Array[3], pl.prims.KEY])
    def noisy(x, key):
        key, u = pl.uniform(key, x)
        return x + u, key
    with pytest.raises(ValueError, match="reads the random key"):
        pl.nn.inference_mode(noisy)


def test_a_keyed_model_needs_the_reverse_gradient():
    with pytest.raises(ValueError, match="keyed model"):
        learner(gradient="forward")


def _with_roles(own_name: str, dropout_name: str):
    """A keyed model with the user's own layer called ``own_name`` (``2 * tanh``) and a dropout
    layer called ``dropout_name``."""
    own = pl.para(lambda x: 2.0 * pl.tanh(x), dom=[pl.Array[8]], name=own_name)
    noise = pl.nn.dropout(0.5, name=dropout_name)

    @pl.para(dom=[pl.Array[6], pl.prims.KEY], name="model")
    def keyed(x, key, w1: pl.Param[6, 8], w2: pl.Param[8, 3]):
        h, key = noise(own(x @ w1), key)
        return h @ w2, key
    return keyed


@pytest.mark.parametrize("own_name", ["dropout", "loss", "optimizer", "model"])
def test_a_layer_named_like_a_role_is_an_ordinary_layer_and_a_renamed_dropout_is_still_off(own_name):
    keyed = _with_roles(own_name, "regulariser")
    L = pl.Learner(keyed, loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.sgd(0.1))
    state = L.init(0)
    x, y = data(9)
    p = state["params"]
    want = np.tanh(x @ p["model.w1"]) * 2.0 @ p["model.w2"]  # the own layer kept, the dropout the identity
    np.testing.assert_allclose(L.predict(state, x), want, rtol=1e-5)
    np.testing.assert_allclose(L.predict(state, x, backend="jax"), want, rtol=1e-5)
    assert L.accuracy(state, x, y) == np.mean(np.argmax(want, -1) == y)
    evaluated = pl.nn.inference_mode(keyed)
    assert [e.prim.name for e in evaluated.eqns].count("tanh") == 1
    assert not any(e.prim.name == "uniform" for e in evaluated.eqns)
    # while training, the renamed dropout drops: some hidden units are zero for some key
    assert any(e.prim.name == "uniform" and e.layer[0] == "regulariser" for e in keyed.eqns)
