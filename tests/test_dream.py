"""Deep dreaming (maths §4.6): the learner with input and parameter swapped, against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl

F = "float64"


def model():
    return pl.nn.dense(4, 6, dtype=F) >> pl.nn.tanh() >> pl.nn.dense(6, 3, dtype=F)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_dreaming_is_gradient_descent_on_the_input(backend):
    m = model()
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape) for k, v in m.init(0).items()}
    frozen = {k: v.copy() for k, v in params.items()}
    x0, target = rng.standard_normal((2, 4)), np.array([2, 0], np.int32)
    x, losses = pl.dream.dream(m, params, x0, target, optimizer=pl.optim.sgd(0.3), steps=5, backend=backend)
    fwd = pl.backends.get("jax").compile(m)

    def loss(x):
        return optax.softmax_cross_entropy_with_integer_labels(fwd(params, x), target).mean()
    ref = jnp.asarray(x0)
    for _ in range(5):
        ref = ref - 0.3 * jax.grad(loss)(ref)
    np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-10)
    assert float(losses[-1]) < float(losses[0])
    assert all(np.array_equal(params[k], frozen[k]) for k in params)


def test_per_example_optimizer_state_for_a_dreamed_batch():
    m = model()
    x0 = np.random.default_rng(1).standard_normal((3, 4))
    learner = pl.Learner(pl.dream.input_as_param(m), pl.losses.softmax_cross_entropy_with_integer_labels(),
                         pl.optim.adam(0.1))
    state = learner.init(params={"input": x0})
    assert state["opt"][0]["mu"]["input"].shape == (3, 4)  # Adam's moments, one per example
    with pytest.raises(ValueError, match="give the initial values"):
        learner.init()
    with pytest.raises(TypeError, match="one input wire"):
        pl.dream.input_as_param(pl.add(pl.Array[2]))


@pytest.mark.parametrize("make", [lambda: pl.optim.novograd(0.05), lambda: pl.optim.sm3(0.1),
                                  lambda: pl.optim.lamb(0.05), lambda: pl.optim.adafactor(0.05)],
                         ids=["novograd", "sm3", "lamb", "adafactor"])
def test_dreaming_with_state_shaped_unlike_the_input(make):
    """Per-layer scalars (NovoGrad), per-axis covers (SM3) and factored moments are kept per
    example when the parameter is an input being dreamed; both backends agree."""
    m = model()
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(v.shape) for k, v in m.init(0).items()}
    x0, target = rng.standard_normal((3, 4)), np.array([2, 0, 1], np.int32)
    runs = [pl.dream.dream(m, params, x0, target, optimizer=make(), steps=6, backend=b) for b in ("numpy", "jax")]
    (x_np, l_np), (x_jax, l_jax) = runs
    assert l_np[-1] < l_np[0]
    np.testing.assert_allclose(x_np, x_jax, rtol=1e-9, atol=1e-12)
