"""The optimizers of optax's alias tests beyond the first seven (adabelief to yogi): each inside
a ``pl.Learner`` equals optax for 100 steps in float64 on the NumPy and JAX backends, and its
hypergradient through unrolled steps equals ``jax.grad`` of the same loop written with optax."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl

pytestmark = [pytest.mark.filterwarnings("ignore:`optimistic_adam` is deprecated:DeprecationWarning"),
              pytest.mark.slow]  # about 75 s: CI runs them
O = pl.optim
D, N = 4, 24
rng = np.random.default_rng(0)
X = rng.standard_normal((N, D))
Y = (X @ rng.standard_normal((D, 1)) + 0.1 * rng.standard_normal((N, 1)))
XV = rng.standard_normal((N // 2, D))
YV = XV @ rng.standard_normal((D, 1))

# name: the keyword arguments, the same for paralens and optax (the first is learned in the bilevel check)
FAMILY = {
    "sign_sgd": dict(learning_rate=0.01),
    "signum": dict(learning_rate=0.01),
    "adamax": dict(learning_rate=0.05),
    "adamaxw": dict(learning_rate=0.05, weight_decay=0.1),
    "nadam": dict(learning_rate=0.05),
    "nadamw": dict(learning_rate=0.05),
    "lion": dict(learning_rate=0.01),
    "yogi": dict(learning_rate=0.05),
    "adabelief": dict(learning_rate=0.05, eps=1e-8),
    "radam": dict(learning_rate=0.05),
    "rprop": dict(eta_plus=1.2, learning_rate=0.01),  # its learning rate is the initial step size
    "optimistic_gradient_descent": dict(learning_rate=0.05, alpha=0.7, beta=0.1),
    "optimistic_adam_v2": dict(learning_rate=0.02),
    "optimistic_adam": dict(learning_rate=0.02, optimism=0.01),  # its learning rate is the hyperparameter alpha
    "adan": dict(learning_rate=0.05, weight_decay=0.01),
    "adadelta": dict(learning_rate=0.5),
    "lars": dict(learning_rate=0.5, weight_decay=0.01, trust_coefficient=0.1),
    "lamb": dict(learning_rate=0.02, weight_decay=0.01),
    "novograd": dict(learning_rate=0.05, weight_decay=0.01),
    "fromage": dict(learning_rate=0.02),
    "sm3": dict(learning_rate=0.3),
    "adafactor": dict(learning_rate=0.05, momentum=0.5, weight_decay_rate=0.01),
    "polyak_sgd": dict(scaling=0.5, max_learning_rate=0.8, f_min=-0.1),  # it reads the loss: value=
}


def pair(name):
    """paralens's optimizer, optax's factory, the arguments, and the learned hyperparameter's name."""
    kwargs = FAMILY[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # optimistic_adam's, here and in optax
        ours = getattr(O, name)(**kwargs)
    return ours, getattr(optax, name), kwargs, next(iter(kwargs))


#: paralens's name for the hyperparameter optax calls by the first argument, where they differ
OURS = {"optimistic_adam": "alpha", "polyak_sgd": "learning_rate"}


def reference_step(tx):
    """The hand-written step: gradients by ``jax.value_and_grad``, the update by optax, the loss
    passed as ``value`` (optax's extra argument; only ``polyak_sgd`` reads it)."""
    fwd = pl.backends.get("jax").compile(MODEL)

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(lambda p: mse(fwd(p, x), y))(p)
        u, s = tx.update(g, s, p, value=loss)
        return optax.apply_updates(p, u), s, loss
    return step


def mse(pred, y):
    return jnp.mean(0.5 * jnp.sum((pred - y) ** 2, axis=-1))


MODEL = pl.nn.dense(D, 1, dtype="float64")


@pytest.mark.parametrize("name", list(FAMILY))
def test_inside_a_learner_100_steps_equal_optax_float64_on_numpy_and_jax(name):
    ours, theirs, kwargs, _ = pair(name)
    learner = pl.Learner(MODEL, loss=pl.losses.mse(), optimizer=ours)
    ref = reference_step(theirs(**kwargs))
    start = learner.init(seed=0)["params"]
    params = {k: jnp.asarray(v) for k, v in start.items()}
    ostate = theirs(**kwargs).init(params)
    batches = [(X[i % 3 * 8:(i % 3 + 1) * 8], Y[i % 3 * 8:(i % 3 + 1) * 8]) for i in range(100)]
    for x, y in batches:
        params, ostate, _ = ref(params, ostate, x, y)
    for backend in ("numpy", "jax"):
        state, step = learner.init(seed=0, backend=backend), learner.compile(backend)
        for x, y in batches:
            state, _ = step(state, x, y)
        for k in params:
            assert np.asarray(state["params"][k]).dtype == np.float64
            np.testing.assert_allclose(state["params"][k], params[k], rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name} {backend} {k}")
        assert not np.allclose(state["params"]["dense.W"], start["dense.W"])  # it moved


def hand_unrolled(theirs, kwargs, hyper, theta, p0, k):
    """The inner loop written with optax (the hyperparameter injected, ``exp(theta)``), then the
    validation loss: what ``jax.grad`` differentiates."""
    static = ("min_dim_size_to_factor", "dtype_momentum") if theirs is optax.adafactor else ()  # not numbers
    tx = optax.inject_hyperparams(theirs, static_args=static)(**{**kwargs, hyper: jnp.exp(theta)})
    p, s = dict(p0), tx.init(dict(p0))
    loss = lambda p, x, y: mse(x @ p["dense.W"] + p["dense.b"], y)  # noqa: E731
    for _ in range(k):
        value, g = jax.value_and_grad(loss)(p, X, Y)
        u, s = tx.update(g, s, p, value=value)
        p = optax.apply_updates(p, u)
    return loss(p, XV, YV)


@pytest.mark.parametrize("name", list(FAMILY))
def test_hypergradient_equals_jax_grad_of_the_optax_loop(name):
    ours, theirs, kwargs, hyper = pair(name)
    value = ours.hyper[OURS.get(name, hyper)]
    k = 5
    problem = pl.Bilevel(MODEL, pl.losses.mse(reduction="none"), ours, hyper={OURS.get(name, hyper): pl.Hyper(value)},
                         method=pl.bilevel.unrolled(k), validation_loss=pl.losses.mse())
    runner = problem.compile(jit=False)
    state = runner.init(0, N)
    dtheta, metrics, _, _ = runner.hypergradient(state, (X, Y), (XV, YV))
    p0 = {n: jnp.asarray(v) for n, v in state["params"].items()}
    theta = jnp.log(value)
    loop = lambda t: hand_unrolled(theirs, kwargs, hyper, t, p0, k)  # noqa: E731
    if name == "radam":  # optax's own gradient is NaN in the first steps: its rectifier's square root of a negative
        # number, computed where it is not taken, poisons jax.grad; ours takes it of a safe value
        assert np.isnan(jax.grad(loop)(theta))
        h = 1e-6
        ref = (loop(theta + h) - loop(theta - h)) / (2 * h)
    else:
        ref = jax.grad(loop)(theta)
    np.testing.assert_allclose(metrics["validation_loss"], loop(theta),
                               rtol=1e-9)  # Adafactor's float32 decay: NumPy's and XLA's last place
    assert float(ref) != 0.0
    np.testing.assert_allclose(float(dtheta[OURS.get(name, hyper)]), float(ref), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["sm3", "polyak_sgd", "optimistic_adam", "noisy_sgd"])  # others: test_optim's PAIRS
def test_drawn_and_written_as_formulas(name, tmp_path):
    opt = pl.optim.noisy_sgd(0.1, key=0) if name == "noisy_sgd" else pair(name)[0]
    svg = pl.draw(opt, str(tmp_path / "opt.svg"))
    assert (tmp_path / "opt.svg").stat().st_size > 1000 and svg
    text = pl.formulas(opt)
    assert "w" in str(text)
