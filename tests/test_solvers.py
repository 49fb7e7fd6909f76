"""Guarded implicit hypergradients: linear solves that cannot answer say so, hyperparameters start
where their positivity map reaches, and ``fit`` checks its data on the host."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl

rng = np.random.default_rng(0)
N, M, D = 30, 20, 5
X = rng.standard_normal((N, D))
W_TRUE = rng.standard_normal(D)
Y = (X @ W_TRUE + 0.5 * rng.standard_normal(N))[:, None]
XV = rng.standard_normal((M, D))
YV = (XV @ W_TRUE + 0.5 * rng.standard_normal(M))[:, None]
W0 = rng.standard_normal((D, 1))
# eigenvalues of X^T X / N: about 0.33 .. 1.55, so l2 = -1 makes H = X^T X / N + l2 I indefinite
EIGS = np.linalg.eigvalsh(X.T @ X / N)


@pl.para(dom=[pl.Array(D, dtype="float64")])
def linear(x, w: pl.Param((D, 1), dtype="float64") = pl.init.zeros()):
    return x @ w


def ridge(method, hyper):
    return pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1), hyper={"l2": hyper},
                      method=method, validation_loss=pl.losses.mse(), outer_optimizer=pl.optim.adam(0.1))


def hypergradient(runner):
    state = runner.init(0, N)
    state["params"] = {"linear.w": jnp.asarray(W0)}
    return runner.hypergradient(state, (X, Y), (XV, YV))


def fit_quietly(runner, **kw):
    """``fit``'s result and the :class:`SolverWarning` messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pl.bilevel.SolverWarning)
        state, history = runner.fit((X, Y), (XV, YV), progress=False, **kw)
    return state, history, [str(w.message) for w in caught if w.category is pl.bilevel.SolverWarning]


# ---------------------------------------------------------------------------------------- finding 35


@pytest.mark.finding(35)
def test_cg_on_an_indefinite_hessian_reports_non_positive_curvature_where_exact_solves_it():
    assert EIGS.min() - 1.0 < 0 < EIGS.max() - 1.0
    indefinite = pl.Hyper(-1.0, positive=None)
    dtheta, metrics, _, _ = hypergradient(ridge(pl.bilevel.implicit(1, "cg", 50), indefinite).compile(jit=False))
    assert bool(metrics["solver_failed"])
    exact, metrics, _, _ = hypergradient(ridge(pl.bilevel.implicit(1, "exact"), indefinite).compile(jit=False))
    assert not bool(metrics["solver_failed"]) and np.isfinite(float(exact["l2"])) and float(exact["l2"]) != 0.0
    # the same problem made positive definite: CG solves it and agrees with the exact solve
    spd = pl.Hyper(0.7, positive=None)
    cg, metrics, _, _ = hypergradient(ridge(pl.bilevel.implicit(1, "cg", 50), spd).compile(jit=False))
    exact, _, _, _ = hypergradient(ridge(pl.bilevel.implicit(1, "exact"), spd).compile(jit=False))
    assert not bool(metrics["solver_failed"])
    np.testing.assert_allclose(float(cg["l2"]), float(exact["l2"]), rtol=1e-8)


@pytest.mark.finding(35)
def test_fit_warns_once_when_cg_meets_non_positive_curvature_and_leaves_theta_unchanged():
    runner = ridge(pl.bilevel.implicit(1, "cg", 50), pl.Hyper(-1.0, positive=None)).compile()
    outer0 = runner.init(0, N)["outer"]
    state, history, messages = fit_quietly(runner, outer_steps=3)
    assert history["solver_failed"].tolist() == [True, True, True]
    assert len(messages) == 1 and "non-positive curvature" in messages[0] and "solver='exact'" in messages[0]
    assert "3 outer step(s) (first: 0)" in messages[0]
    assert float(runner.hyperparameters(state)["l2"]) == -1.0
    for a, b in zip(pl.terms.leaves(state["outer"]), pl.terms.leaves(outer0)):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(pl.bilevel.SolverWarning):  # the category is a RuntimeWarning of its own
        runner.fit((X, Y), (XV, YV), outer_steps=1, progress=False)
    assert issubclass(pl.bilevel.SolverWarning, RuntimeWarning)


# ---------------------------------------------------------------------------------------- finding 36


@pytest.mark.finding(36)
def test_neumann_outside_its_convergence_region_is_reported_and_the_outer_optimizer_keeps_going():
    lam_max = EIGS.max() + 0.7  # H = X^T X / N + 0.7 I
    alpha = 1.5
    assert alpha * lam_max > 2  # |1 - alpha * lambda_max| > 1: the series diverges
    runner = ridge(pl.bilevel.implicit(1, "neumann", 200, alpha=alpha), pl.Hyper(0.7)).compile()
    _, metrics, _, _ = hypergradient(runner)
    assert bool(metrics["solver_failed"])
    state, history, messages = fit_quietly(runner, outer_steps=4)
    assert history["solver_failed"].all()
    assert len(messages) == 1 and "Neumann series" in messages[0] and "alpha=1.5" in messages[0]
    np.testing.assert_allclose(history["l2"], 0.7, rtol=1e-12)  # theta kept, not moved by a 1e27 gradient
    assert all(np.all(np.isfinite(leaf)) for leaf in pl.terms.leaves(state["outer"]))
    # inside the region the same problem trains, with no warning
    runner = ridge(pl.bilevel.implicit(20, "neumann", 200, alpha=1.0 / lam_max), pl.Hyper(0.7)).compile()
    _, history, messages = fit_quietly(runner, outer_steps=20)
    assert messages == [] and not history["solver_failed"].any()
    assert history["validation_loss"][-1] < history["validation_loss"][0]


@pytest.mark.finding(36)
@pytest.mark.parametrize("alpha", [0.0, -0.5, float("nan"), float("inf")])
def test_neumann_step_must_be_a_positive_finite_number(alpha):
    with pytest.raises(ValueError, match=r"alpha \(the Neumann step\) must be a finite number > 0.*got"):
        pl.bilevel.implicit(solver="neumann", alpha=alpha)


# ---------------------------------------------------------------------------------------- finding 37


@pytest.mark.finding(37)
@pytest.mark.parametrize("value, positive, expected", [
    (-1.0, "log", r"Hyper\(-1.0, positive='log'\): the starting value must be > 0 .*got -1.0"),
    (0.0, "softplus", r"must be > 0 \(lambda = softplus\(theta\)\) for positive='softplus', got 0.0"),
    (1.0, "sigmoid", r"must be in \(0, 1\) .* for positive='sigmoid', got 1.0"),
    ([0.5, -0.1], "sigmoid", r"got -0.1"),
    (float("nan"), None, r"must be finite .*got nan"),
])
def test_a_starting_value_its_positivity_map_cannot_reach_is_refused(value, positive, expected):
    with pytest.raises(ValueError, match=expected):
        pl.Hyper(value, positive=positive, per_example=isinstance(value, list))


@pytest.mark.finding(37)
def test_starting_values_are_checked_as_numbers_and_wire_defaults_too():
    with pytest.raises(TypeError, match="must be a real number .*got 'big'"):
        pl.Hyper("big")
    with pytest.raises(TypeError, match="got 1j"):
        pl.Hyper(1j)
    with pytest.raises(ValueError, match=r"hyper\['huber.delta'\] \(the wire's default\).*in \(0, 1\).*got 1.0"):
        pl.Bilevel(linear, pl.losses.huber(pl.hyperparameter(1.0), reduction="none"), pl.optim.sgd(0.1),
                   hyper={"huber.delta": pl.Hyper(positive="sigmoid")})
    assert pl.Hyper(-1.0, positive=None).value == -1.0  # no map: any finite number
    runner = ridge(pl.bilevel.implicit(1), pl.Hyper(1000.0, positive="softplus")).compile(jit=False)
    np.testing.assert_allclose(float(runner.hyperparameters(runner.init(0, N))["l2"]), 1000.0, rtol=1e-12)


# ---------------------------------------------------------------------------------------- fit's data


@pytest.mark.finding(16)
def test_fit_refuses_x_and_y_of_different_lengths_naming_the_set():
    runner = ridge(pl.bilevel.implicit(1), pl.Hyper(0.7)).compile()
    with pytest.raises(ValueError, match="fit: train has 30 examples in x but 29 labels in y"):
        runner.fit((X, Y[:29]), (XV, YV), outer_steps=1, progress=False)
    with pytest.raises(ValueError, match="fit: val has 19 examples in x but 20 labels in y"):
        runner.fit((X, Y), (XV[:19], YV), outer_steps=1, progress=False)


def test_fit_refuses_complex_non_numeric_and_misshapen_data():
    runner = ridge(pl.bilevel.implicit(1), pl.Hyper(0.7)).compile()
    with pytest.raises(TypeError, match="fit: train x must hold real numbers for a float64 wire, got dtype complex128"):
        runner.fit((X + 1j, Y), (XV, YV), outer_steps=1, progress=False)
    with pytest.raises(TypeError, match="fit: val y must hold real numbers .*got dtype <U"):
        runner.fit((X, Y), (XV, YV.astype(str)), outer_steps=1, progress=False)
    with pytest.raises(ValueError, match=r"fit: train x should have shape \(examples, 5\) .*got \(30, 4\)"):
        runner.fit((X[:, :4], Y), (XV, YV), outer_steps=1, progress=False)
    with pytest.raises(TypeError, match="fit: train must be a pair \\(x, y\\), got tuple of length 3"):
        runner.fit((X, Y, Y), (XV, YV), outer_steps=1, progress=False)
    minibatch = pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1), hyper={"l2": pl.Hyper(0.7)},
                           method=pl.bilevel.unrolled(2), batch_size=N + 1)
    with pytest.raises(ValueError, match="batch_size=31 is more than the 30 training examples"):
        minibatch.compile().fit((X, Y), (XV, YV), outer_steps=1, progress=False)


def test_fit_casts_data_of_another_float_dtype_to_the_problems():
    runner = ridge(pl.bilevel.implicit(5), pl.Hyper(0.7)).compile()
    x32, y32, xv32, yv32 = (a.astype(np.float32) for a in (X, Y, XV, YV))
    _, h32 = runner.fit((x32, y32), (xv32, yv32), outer_steps=3, progress=False)
    _, h64 = runner.fit((x32.astype(np.float64), y32.astype(np.float64)),
                        (xv32.astype(np.float64), yv32.astype(np.float64)), outer_steps=3, progress=False)
    assert h32["validation_loss"].dtype == np.float64
    np.testing.assert_array_equal(h32["validation_loss"], h64["validation_loss"])
