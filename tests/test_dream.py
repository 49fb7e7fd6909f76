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


def _tv(img):
    return jnp.sum((img[:, 1:, :] - img[:, :-1, :]) ** 2) + jnp.sum((img[:, :, 1:] - img[:, :, :-1]) ** 2)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_priors_add_to_the_loss_and_R_differentiates_them_as_jax_grad_does(backend):
    """Dreaming with an L2 prior (centred, whitened) and a total-variation prior is gradient descent
    on cross-entropy + both priors, written here directly in jax.numpy and differentiated by jax.grad."""
    m = model()
    rng = np.random.default_rng(2)
    params = {k: rng.standard_normal(v.shape) for k, v in m.init(0).items()}
    x0, target = rng.standard_normal((3, 4)), np.array([2, 0, 1], np.int32)
    center, a = rng.standard_normal(4), rng.standard_normal((4, 4))
    priors = [pl.dream.l2(0.7, center=center, whiten=a), pl.dream.total_variation(0.3, (2, 2))]
    x, losses = pl.dream.dream(m, params, x0, target, optimizer=pl.optim.sgd(0.1), prior=priors, steps=4,
                               backend=backend)
    fwd = pl.backends.get("jax").compile(m)

    def objective(x):
        ce = optax.softmax_cross_entropy_with_integer_labels(fwd(params, x), target).mean()
        l2 = 0.5 * 0.7 * jnp.mean(jnp.sum(((x - center) @ a) ** 2, axis=1))
        return ce + l2 + 0.3 * _tv(x.reshape(-1, 2, 2)) / len(x)
    ref, values = jnp.asarray(x0), []
    for _ in range(4):
        values.append(objective(ref))
        ref = ref - 0.1 * jax.grad(objective)(ref)
    np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-10)
    np.testing.assert_allclose(np.array(losses, np.float64), np.array(values), rtol=1e-10)  # the loss has the priors


def test_the_gaussian_prior_is_the_negative_log_density_of_the_fitted_gaussian():
    rng = np.random.default_rng(3)
    images = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 3)) + 2.0
    x = rng.standard_normal((5, 3))
    prior = pl.backends.get("numpy").compile(pl.dream.gaussian_prior(images, 2.0, ridge=0.1).at(pl.Array(3, dtype=F)))
    cov = np.cov(images, rowvar=False) + 0.1 * np.eye(3)
    d = x - images.mean(0)
    expected = 2.0 * np.mean(0.5 * np.einsum("bi,ij,bj->b", d, np.linalg.inv(cov), d))
    np.testing.assert_allclose(float(prior({}, x)), expected, rtol=1e-10)


def test_total_variation_of_an_image_against_its_definition():
    rng = np.random.default_rng(4)
    img = rng.standard_normal((2, 3, 5))
    tv = pl.backends.get("numpy").compile(pl.dream.total_variation(1.5, (3, 5)).at(pl.Array(15, dtype=F)))
    expected = 1.5 * (np.sum(np.diff(img, axis=1) ** 2) + np.sum(np.diff(img, axis=2) ** 2)) / 2
    np.testing.assert_allclose(float(tv({}, img.reshape(2, 15))), expected, rtol=1e-12)


def test_priors_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="weight"):
        pl.dream.l2(-1.0)
    with pytest.raises(ValueError, match="weight"):
        pl.dream.total_variation(float("nan"), (2, 2))
    with pytest.raises(ValueError, match="16 entries"):
        pl.dream.total_variation(1.0, (4, 4)).at(pl.Array[15])
    with pytest.raises(ValueError, match="center has shape"):
        pl.dream.l2(1.0, center=np.zeros(3)).at(pl.Array[4])
    with pytest.raises(ValueError, match="whiten must be 4 x 4"):
        pl.dream.l2(1.0, whiten=np.eye(3)).at(pl.Array[4])
    with pytest.raises(ValueError, match="not finite"):
        pl.dream.l2(1.0, center=[np.inf, 0.0])
    with pytest.raises(ValueError, match="two images"):
        pl.dream.gaussian_prior(np.zeros((1, 4)), 1.0)
    with pytest.raises(TypeError, match="one unbatched scalar"):
        pl.dream.with_prior(model(), pl.nn.dense(4, 2, dtype=F))
