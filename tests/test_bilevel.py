"""Bilevel hypergradients against closed forms (maths §8.5) and hand-written JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl

rng = np.random.default_rng(0)
N, M, D, LAM = 30, 20, 5, 0.7
X = rng.standard_normal((N, D))
W_TRUE = rng.standard_normal(D)
Y = (X @ W_TRUE + 0.5 * rng.standard_normal(N))[:, None]
XV = rng.standard_normal((M, D))
YV = (XV @ W_TRUE + 0.5 * rng.standard_normal(M))[:, None]


@pl.para(dom=[pl.Array(D, dtype="float64")])
def linear(x, w: pl.Param((D, 1), dtype="float64") = pl.init.zeros()):
    return x @ w


def ridge(method, lr=0.1, batch_size=None):
    return pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(lr), hyper={"l2": pl.Hyper(LAM)},
                      method=method, validation_loss=pl.losses.mse(), batch_size=batch_size,
                      outer_optimizer=pl.optim.adam(0.1))


def closed_form():
    """d V / d theta at the inner optimum, theta = log(l2) (maths §8.5, with mean losses)."""
    h = X.T @ X / N + LAM * np.eye(D)
    w_star = np.linalg.solve(h, X.T @ Y / N)
    g_v = XV.T @ (XV @ w_star - YV) / M
    return LAM * -(g_v.T @ np.linalg.solve(h, w_star)).item(), w_star


@pytest.mark.parametrize("solver, steps, rtol", [("exact", 1, 1e-8), ("cg", 50, 1e-8), ("neumann", 3000, 1e-4)])
def test_implicit_hypergradient_matches_the_closed_form(solver, steps, rtol):
    expected, w_star = closed_form()
    runner = ridge(pl.bilevel.implicit(inner_steps=1, solver=solver, solver_steps=steps)).compile(jit=False)
    state = runner.init(0, N)
    state["params"] = {"linear.w": jnp.asarray(w_star)}
    dtheta, _, _, _ = runner.hypergradient(state, (X, Y), (XV, YV))
    np.testing.assert_allclose(float(dtheta["l2"]), expected, rtol=rtol)


def hand_unrolled(theta, k, w0=None, batches=None, lr=0.1):
    lam = jnp.exp(theta)
    w = jnp.zeros((D, 1)) if w0 is None else w0
    for i in range(k):
        x, y = (X, Y) if batches is None else (batches[0][:, i], batches[1][:, i])
        g = x.T @ (x @ w - y) / len(x) + lam * w
        w = w - lr * g
    return jnp.mean(0.5 * jnp.sum((XV @ w - YV) ** 2, axis=1))


@pytest.mark.parametrize("k", [1, 50])
def test_unrolled_equals_jax_grad_of_the_hand_written_loop_and_truncated_k_equals_k(k):
    ref = float(jax.grad(hand_unrolled)(jnp.log(LAM), k))
    for method in (pl.bilevel.unrolled(k), pl.bilevel.truncated(k, k)):
        runner = ridge(method).compile(jit=False)
        dtheta, metrics, params, _ = runner.hypergradient(runner.init(0, N), (X, Y), (XV, YV))
        np.testing.assert_allclose(float(dtheta["l2"]), ref, rtol=1e-8)
    np.testing.assert_allclose(metrics["validation_loss"], hand_unrolled(jnp.log(LAM), k), rtol=1e-10)


def test_truncated_backpropagates_through_the_last_steps_only():
    k_total, k_back = 40, 5
    w_front = jnp.zeros((D, 1))
    lam = LAM
    for _ in range(k_total - k_back):  # the front runs, but is not differentiated
        w_front = w_front - 0.1 * (X.T @ (X @ w_front - Y) / N + lam * w_front)
    ref = float(jax.grad(lambda t: hand_unrolled(t, k_back, w0=w_front))(jnp.log(LAM)))
    runner = ridge(pl.bilevel.truncated(k_total, k_back)).compile(jit=False)
    dtheta, _, _, _ = runner.hypergradient(runner.init(0, N), (X, Y), (XV, YV))
    np.testing.assert_allclose(float(dtheta["l2"]), ref, rtol=1e-8)


def test_minibatch_unrolled_equals_hand_written_loop_on_the_same_batches():
    runner = ridge(pl.bilevel.unrolled(6), batch_size=8).compile(jit=False)
    batches = runner.minibatches((X, Y), np.random.default_rng(3))
    assert batches[0].shape == (8, 6, D)  # (batch, steps, features)
    ref = float(jax.grad(lambda t: hand_unrolled(t, 6, batches=batches))(jnp.log(LAM)))
    dtheta, _, _, _ = runner.hypergradient(runner.init(0, N), batches, (XV, YV))
    np.testing.assert_allclose(float(dtheta["l2"]), ref, rtol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["implicit", "unrolled", "hoag"])
def test_hyper_ridge_example_finds_the_best_penalty_on_a_grid(method):
    import examples_loader
    learned, ours, best, best_l2 = examples_loader.load("hyper_ridge").main(method, progress=False)
    assert ours <= 1.01 * best, (learned, best_l2)


def test_cg_hypergradient_agrees_with_an_exact_solve_on_hyper_cleaning():
    import examples_loader
    cleaning = examples_loader.load("hyper_cleaning")
    train, val, _, _ = cleaning.load(0)
    train = (train[0].astype(np.float64), train[1])
    val = (val[0].astype(np.float64), val[1])

    def problem(solver, steps):
        return pl.Bilevel(pl.nn.dense(64, 10, dtype="float64"),
                          pl.losses.softmax_cross_entropy_with_integer_labels(reduction="none"),
                          pl.optim.sgd(1.0), l2=1e-3,
                          hyper={"weights": pl.Hyper(0.5, positive="sigmoid", per_example=True)},
                          method=pl.bilevel.implicit(300, solver, steps),
                          validation_loss=pl.losses.softmax_cross_entropy_with_integer_labels())
    cg = problem("cg", 100).compile()
    exact = problem("exact", 1).compile()
    state = cg.init(0, len(train[0]))
    state["theta"]["weights"] = jnp.asarray(np.random.default_rng(1).standard_normal(600))
    g1, _, _, _ = jax.jit(cg.hypergradient)(state, train, val)
    g2, _, _, _ = jax.jit(exact.hypergradient)(state, train, val)
    a, b = np.asarray(g1["weights"]), np.asarray(g2["weights"])
    cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert cosine >= 0.9999, cosine


def test_errors():
    with pytest.raises(KeyError, match="unknown hyperparameters"):
        pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1), hyper={"momentum": pl.Hyper(0.9)})
    with pytest.raises(ValueError, match="unrolled"):
        pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1),
                   hyper={"learning_rate": pl.Hyper(0.1)}, method=pl.bilevel.implicit())
    with pytest.raises(ValueError, match="backprop"):
        pl.bilevel.truncated(10, 20)
    with pytest.raises(TypeError, match="reduction='none'"):
        p = pl.Bilevel(linear, pl.losses.mse(), pl.optim.sgd(0.1), hyper={"l2": pl.Hyper(0.1)})
        _ = p.objective


def test_truncated_memory_does_not_grow_with_the_number_of_inner_steps():
    def temp_bytes(method):
        runner = ridge(method).compile(jit=False)
        state = runner.init(0, N)
        compiled = jax.jit(runner.hypergradient).lower(state, (X, Y), (XV, YV)).compile()
        return compiled.memory_analysis().temp_size_in_bytes
    assert temp_bytes(pl.bilevel.truncated(100, 5)) == temp_bytes(pl.bilevel.truncated(1000, 5))
    assert temp_bytes(pl.bilevel.unrolled(1000)) > 5 * temp_bytes(pl.bilevel.unrolled(100)) / 2


# ---------------------------------------------------------------- any number is a hyperparameter

XO = rng.standard_normal((N, D))
YO = XO @ W_TRUE[:, None] + 0.1 * rng.standard_normal((N, 1))
YO[::5] += 8.0  # outliers: Huber's delta matters


def robust(method=None, lr=0.05):
    return pl.Bilevel(pl.nn.dense(D, 1, dtype="float64"), pl.losses.huber(pl.hyperparameter(1.0), reduction="none"),
                      pl.optim.adam(lr, eps=0.1), hyper={"huber.delta": pl.Hyper(), "eps": pl.Hyper()},
                      method=method or pl.bilevel.unrolled(15), validation_loss=pl.losses.mse(),
                      outer_optimizer=pl.optim.adam(0.05))


def hand_robust(theta, params, k, lr=0.05, b1=0.9, b2=0.999):
    """The same inner loop in plain JAX: Adam on the Huber loss, then the validation loss."""
    import optax
    delta, eps = jnp.exp(theta[0]), jnp.exp(theta[1])
    p = dict(params)
    m = {n: jnp.zeros_like(v) for n, v in p.items()}
    v = {n: jnp.zeros_like(v) for n, v in p.items()}

    def loss(p):
        pred = XO @ p["dense.W"] + p["dense.b"]
        return jnp.mean(optax.huber_loss(pred, YO, delta=delta).sum(-1))
    for t in range(1, k + 1):
        g = jax.grad(loss)(p)
        for n in p:
            m[n] = (1 - b1) * g[n] + b1 * m[n]
            v[n] = (1 - b2) * g[n] ** 2 + b2 * v[n]
            p[n] = p[n] - lr * (m[n] / (1 - b1 ** t)) / (jnp.sqrt(v[n] / (1 - b2 ** t)) + eps)
    pred = XV @ p["dense.W"] + p["dense.b"]
    return jnp.mean(0.5 * jnp.sum((pred - YV) ** 2, axis=1))


def test_huber_delta_and_adam_eps_are_learned_through_unrolled_steps():
    problem = robust()
    assert set(problem.available_hypers) >= {"huber.delta", "eps", "learning_rate", "b1"}
    runner = problem.compile(jit=False)
    state = runner.init(0, N)
    dtheta, _, _, _ = runner.hypergradient(state, (XO, YO), (XV, YV))
    theta = jnp.array([np.log(1.0), np.log(0.1)])
    ref = jax.grad(hand_robust)(theta, state["params"], 15)
    np.testing.assert_allclose([float(dtheta["huber.delta"]), float(dtheta["eps"])], ref, rtol=1e-6)
    # and learning them lowers the validation loss
    state, history = problem.compile().fit((XO, YO), (XV, YV), outer_steps=15, progress=False)
    assert history["validation_loss"][-1] < 0.9 * history["validation_loss"][0]
    assert history["huber.delta"][-1] != history["huber.delta"][0] and history["eps"][-1] != history["eps"][0]


@pl.para
def features(x: pl.Array(D, dtype="float64"), a=pl.hyperparameter(1.0)):
    return pl.tanh(a * x)


def layered(method):
    return pl.Bilevel(features >> linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1), l2=LAM,
                      hyper={"features.a": pl.Hyper(0.8)}, method=method, validation_loss=pl.losses.mse())


def closed_form_in_a(theta):
    """V(w*(a)) of ridge regression on the features tanh(a x), written in JAX (maths §8.5)."""
    a = jnp.exp(theta)
    phi, phi_v = jnp.tanh(a * X), jnp.tanh(a * XV)
    w = jnp.linalg.solve(phi.T @ phi / N + LAM * jnp.eye(D), phi.T @ Y / N)
    return jnp.mean(0.5 * jnp.sum((phi_v @ w - YV) ** 2, axis=1))


def test_a_layers_numeric_argument_is_learned_through_the_implicit_method():
    problem = layered(pl.bilevel.implicit(inner_steps=1, solver="exact"))
    assert problem.hyper_names == ("features.a",) and problem.model_hypers == ("features.a",)
    runner = problem.compile(jit=False)
    state = runner.init(0, N)
    theta = np.log(0.8)
    phi = np.tanh(0.8 * X)
    state["params"] = {"linear.w": jnp.asarray(np.linalg.solve(phi.T @ phi / N + LAM * np.eye(D), phi.T @ Y / N))}
    dtheta, _, _, _ = runner.hypergradient(state, (X, Y), (XV, YV))
    np.testing.assert_allclose(float(dtheta["features.a"]), float(jax.grad(closed_form_in_a)(theta)), rtol=1e-6)


def hand_layered(theta, k):
    a = jnp.exp(theta)
    phi, phi_v = jnp.tanh(a * X), jnp.tanh(a * XV)
    w = jnp.zeros((D, 1))
    for _ in range(k):
        w = w - 0.1 * (phi.T @ (phi @ w - Y) / N + LAM * w)
    return jnp.mean(0.5 * jnp.sum((phi_v @ w - YV) ** 2, axis=1))


@pytest.mark.parametrize("method", [pl.bilevel.unrolled(30), pl.bilevel.truncated(30, 30)],
                         ids=["unrolled", "truncated"])
def test_a_layers_numeric_argument_through_unrolled_steps(method):
    runner = layered(method).compile(jit=False)
    dtheta, _, _, _ = runner.hypergradient(runner.init(0, N), (X, Y), (XV, YV))
    np.testing.assert_allclose(float(dtheta["features.a"]), float(jax.grad(hand_layered)(np.log(0.8), 30)), rtol=1e-8)


def test_unknown_hyperparameters_list_the_wires_there_are():
    with pytest.raises(KeyError, match=r"huber\.delta.*learning_rate"):
        pl.Bilevel(linear, pl.losses.huber(pl.hyperparameter(1.0), reduction="none"), pl.optim.sgd(0.1),
                   hyper={"delta": pl.Hyper(1.0)})
