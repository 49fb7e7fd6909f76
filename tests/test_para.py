"""Para: parameter names and order, reparametrisation, weight tying, initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paralens as pl
from paralens.backends import numpy as pnp


def test_parameter_names_follow_forward_order_and_are_stable():
    f = pl.nn.dense(4, 5) >> pl.nn.relu() >> pl.nn.dense(5, 3)
    assert f.param_names == ("dense0.W", "dense0.b", "dense1.W", "dense1.b")
    assert pl.nn.mlp([4, 5, 3]).param_names == f.param_names
    assert (pl.nn.dense(4, 4) @ pl.nn.dense(2, 2)).param_types["dense1.W"].shape == (2, 2)


def test_init_is_deterministic_per_name_and_uses_glorot_and_he_scales():
    f = pl.nn.mlp([200, 300, 10])
    p0, p1, q = f.init(0), f.init(0), f.init(1)
    assert all(np.array_equal(p0[k], p1[k]) for k in p0)
    assert not np.array_equal(p0["dense0.W"], q["dense0.W"])
    assert p0["dense0.W"].dtype == np.float32 and np.all(p0["dense0.b"] == 0)
    lim = np.sqrt(6 / (200 + 300))
    w = p0["dense0.W"]
    assert np.abs(w).max() <= lim and np.abs(w).max() > 0.95 * lim
    np.testing.assert_allclose(w.var(), lim ** 2 / 3, rtol=0.05)  # uniform(-l, l) variance
    # adding a layer does not change the others' draws
    g = pl.nn.mlp([200, 300, 10, 10])
    assert np.array_equal(g.init(0)["dense0.W"], p0["dense0.W"])
    conv = pl.nn.conv2d(3, 16, 3).at(pl.Array[8, 8, 3])
    k = conv.init(0)["conv.w"]
    np.testing.assert_allclose(k.std(), np.sqrt(2 / 27), rtol=0.1)  # He normal, fan_in 3*3*3


def test_tied_weights_receive_the_sum_of_their_cotangents():
    f = pl.nn.dense(3, 3, dtype="float64") >> pl.nn.tanh() >> pl.nn.dense(3, 3, dtype="float64")
    tied = pl.tie(f, ["dense0.W", "dense1.W"])
    assert tied.param_names == ("dense0.W", "dense0.b", "dense1.b")
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 3))
    p = {"dense0.W": W, "dense0.b": rng.standard_normal(3), "dense1.W": W, "dense1.b": rng.standard_normal(3)}
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    dp_untied, _ = pnp.compile(pl.R(f))(p, x, dy)
    dp_tied, _ = pnp.compile(pl.R(tied))({k: p[k] for k in tied.param_names}, x, dy)
    np.testing.assert_allclose(dp_tied["dense0.W"], dp_untied["dense0.W"] + dp_untied["dense1.W"], rtol=1e-12)
    with pytest.raises(TypeError, match="different types"):
        pl.tie(pl.nn.dense(3, 2) >> pl.nn.dense(2, 2), ["dense0.W", "dense1.W"])


def test_reparametrisation_chains_the_derivative():
    @pl.para
    def scaled(x: pl.Array(2, dtype="float64"), s: pl.Param((), dtype="float64")):
        return x * s

    @pl.para
    def positive(log_s: pl.Param((), dtype="float64")):
        return pl.exp(log_s)
    g = pl.reparam(scaled, "scaled.s", positive)
    assert g.param_names == ("positive.log_s",)
    x, dy = np.array([[1.0, 2.0], [3.0, -1.0]]), np.ones((2, 2))
    log_s = np.float64(0.3)
    y = pnp.compile(g)({"positive.log_s": log_s}, x)
    np.testing.assert_allclose(y, x * np.exp(0.3))
    dp, _ = pnp.compile(pl.R(g))({"positive.log_s": log_s}, x, dy)
    np.testing.assert_allclose(dp["positive.log_s"], np.exp(0.3) * x.sum())
    with pytest.raises(TypeError, match="must map"):
        pl.reparam(scaled, "scaled.s", pl.const([1.0, 2.0], (2,)))


def test_bind_fixes_parameters():
    f = pl.nn.dense(2, 2, dtype="float64")
    p = {"dense.W": np.eye(2), "dense.b": np.array([1.0, 0.0])}
    g = pl.bind(f, {"dense.W": p["dense.W"]})
    assert g.param_names == ("dense.b",)
    x = np.array([[2.0, 3.0]])
    np.testing.assert_allclose(pnp.compile(g)({"dense.b": p["dense.b"]}, x), [[3.0, 3.0]])


# ---------------------------------------------------------------- names never collide silently

def test_the_collision_repro_has_three_weights_with_jax_gradients():
    @pl.para
    def block(x: pl.Array(2, dtype="float64"), w: pl.Param((2, 2), dtype="float64")):
        return pl.tanh(x @ w)

    @pl.para
    def block1(x: pl.Array(2, dtype="float64"), w: pl.Param((2, 2), dtype="float64")):
        return x @ w

    m = block >> block >> block1
    assert len(set(m.param_names)) == 3 and len(m.init()) == 3
    rng = np.random.default_rng(0)
    p = {n: rng.standard_normal((2, 2)) for n in m.param_names}
    x, dy = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    w1, w2, w3 = (p[n] for n in m.param_names)

    def by_hand(w1, w2, w3):  # the same function, written in JAX
        return jnp.vdot(jnp.tanh(jnp.tanh(x @ w1) @ w2) @ w3, dy)
    expected = jax.grad(by_hand, argnums=(0, 1, 2))(w1, w2, w3)
    dp, _ = pnp.compile(pl.R(m))(p, x, dy)
    for name, g in zip(m.param_names, expected):
        np.testing.assert_allclose(dp[name], g, rtol=1e-12)


def test_a_layer_named_like_a_numbered_dense_gets_its_own_weights():
    @pl.para(name="dense0")
    def mine(x: pl.Array[3], W: pl.Param[3, 3]):
        return x @ W
    for m in (mine >> pl.nn.dense(3, 3) >> pl.nn.dense(3, 3), pl.nn.dense(3, 3) >> pl.nn.dense(3, 3) >> mine):
        assert len(set(m.param_names)) == len(m.params) == 5
        assert len(m.init()) == 5


NAMES = ["block", "block1", "block11", "dense", "dense0", "dense1", "a", "a_1", "a1"]


@st.composite
def named_layers(draw):
    """A chain of randomly named layers (names that collide once numbered), some of them tied."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=7))
    layers = []
    for name in names:
        layers.append(_layer(name) if draw(st.booleans()) else pl.nn.dense(3, 3))
    chain = layers[0]
    for layer in layers[1:]:
        chain = chain >> layer if draw(st.booleans()) else (chain @ layer) >> pl.add(pl.Array[3])
    instances = len(layers)
    ws = [n for n in chain.param_names if n.endswith((".w", ".W"))]
    tied = draw(st.lists(st.sampled_from(ws), unique=True, max_size=3)) if len(ws) > 1 else []
    if len(tied) > 1:
        chain = pl.tie(chain, tied)
    return chain, instances, max(len(tied) - 1, 0)


def _layer(name):
    def fn(x: pl.Array[3], w: pl.Param[3, 3]):
        return pl.tanh(x @ w)
    return pl.para(fn, name=name)


@given(named_layers())
def test_every_layer_instance_gets_its_own_arrays_unless_tied(case):
    chain, instances, merged = case
    names = chain.param_names
    assert len(set(names)) == len(names)
    weights = [n for n in chain.init() if n.endswith((".w", ".W"))]
    assert len(weights) == instances - merged
