"""Forward gradients (maths §9): unbiased estimates of R's gradient from one D along a random tangent."""

import jax
import numpy as np
import pytest

import paralens as pl
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

F = "float64"


def objective():
    return (pl.nn.dense(3, 4, dtype=F) >> pl.nn.tanh() >> pl.nn.dense(4, 2, dtype=F)
            >> pl.losses.mse().at(pl.Array(2, dtype=F)))


def test_the_mean_of_2000_estimates_is_within_4_standard_errors_of_R():
    f = objective()
    rng = np.random.default_rng(0)
    p = {n: 0.7 * rng.standard_normal(t.shape) for n, t in f.param_types.items()}
    x = rng.standard_normal((6, 3))
    p["mse"] = rng.standard_normal((6, 2))  # the label
    fg = pjax.compile(pl.forward_gradient(f))
    estimates, _ = jax.jit(jax.vmap(lambda k: fg(p, x, k)))(jax.random.split(jax.random.PRNGKey(0), 2000))
    exact, _ = pnp.compile(pl.R(f))(p, x, 1.0)
    assert set(estimates) == {"dense0.W", "dense0.b", "dense1.W", "dense1.b"}  # not the label
    for k, g in estimates.items():
        mean, se = np.mean(g, axis=0), np.std(g, axis=0) / np.sqrt(2000)
        assert np.all(np.abs(mean - exact[k]) <= 4 * se), k
        assert np.all(se > 0)


def test_estimates_are_d_times_v_and_the_key_moves_on():
    f = objective()
    rng = np.random.default_rng(1)
    p = {n: rng.standard_normal(t.shape) for n, t in f.param_types.items()}
    x = rng.standard_normal((4, 3))
    p["mse"] = rng.standard_normal((4, 2))
    key = np.array([0, 7], np.uint32)
    g, key2 = pnp.compile(pl.forward_gradient(f, wrt=["dense0.b"]))(p, x, key)
    assert set(g) == {"dense0.b"} and not np.array_equal(key, key2)
    g2, _ = pnp.compile(pl.forward_gradient(f, wrt=["dense0.b"]))(p, x, key)
    np.testing.assert_array_equal(g["dense0.b"], g2["dense0.b"])  # deterministic given its key
    # the estimate is d * v, with v the backend's draw and d = D(f) along v
    v = np.random.default_rng(key.astype(np.uint64)).standard_normal(4)  # what the NumPy backend draws
    d = pnp.compile(pl.D(f))(p, x, {n: (v if n == "dense0.b" else 0 * a) for n, a in p.items()}, 0 * x)
    np.testing.assert_allclose(g["dense0.b"], d * v, rtol=1e-12)
    with pytest.raises(KeyError, match="no parameters"):
        pl.forward_gradient(f, wrt=["nope"])
    with pytest.raises(TypeError, match="scalar objective"):
        pl.forward_gradient(pl.nn.dense(2, 2))


def test_a_forward_gradient_learner_carries_its_key_and_runs_on_every_backend():
    learner = pl.Learner(pl.nn.dense(3, 2), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1), gradient="forward")
    assert {e.group[0] for e in learner.step_term.eqns} >= {"model", "loss", "forward gradient", "optimizer"}
    x, y = np.ones((5, 3), np.float32), np.zeros((5, 2), np.float32)
    s_np, s_jax = learner.init(0), learner.init(0, backend="jax")
    s_np, l_np = learner.compile("numpy")(s_np, x, y)
    s_jax, l_jax = learner.compile("jax")(s_jax, x, y)
    np.testing.assert_allclose(l_np, l_jax, rtol=1e-6)  # the same loss; the draws differ by backend
    assert s_np["key"].dtype == np.uint32 and s_jax["key"].shape == (2,)
    with pytest.raises(ValueError, match="forward"):
        pl.Learner(pl.nn.dense(3, 2), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1), gradient="sideways")
