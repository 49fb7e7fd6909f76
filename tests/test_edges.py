"""Numerics at the edges: the NumPy and JAX backends agree with ``jax.nn`` at extreme inputs
(+-20, +-50, +-100, +-1e4), values and reverse derivatives, in float32 and float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

EXTREMES = [-1e4, -100.0, -50.0, -20.0, 20.0, 50.0, 100.0, 1e4]
BACKENDS = {"numpy": pnp, "jax": pjax}
DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-13}


def rows(v):
    """One row of logits per extreme: the extreme, half of it, zero and its opposite."""
    return [v, v / 2, 0.0, -v]


CASES = {  # name: (traced function, reference, input rows)
    "sigmoid": (pl.sigmoid, jax.nn.sigmoid, [EXTREMES]),
    "softplus": (pl.softplus, jax.nn.softplus, [EXTREMES]),
    "tanh": (pl.tanh, jnp.tanh, [EXTREMES]),
    "exp": (pl.exp, jnp.exp, [[-1e4, -100.0, -50.0, -20.0, 20.0, 50.0]]),  # e**100 is past float32
    "logsumexp": (lambda x: pl.logsumexp(x), lambda x: jax.nn.logsumexp(x, axis=-1), [rows(v) for v in EXTREMES]),
    "softmax": (lambda x: pl.softmax(x), lambda x: jax.nn.softmax(x, axis=-1), [rows(v) for v in EXTREMES]),
}


def value_and_dx(fn, x, dy, backend):
    """``fn(x)`` and its reverse derivative at ``dy``, traced and compiled by ``backend``."""
    term = pl.para(fn, [pl.Array(x.shape[1:], dtype=x.dtype.name)], name="f")
    be = BACKENDS[backend]
    _, dx = be.compile(pl.R(term))({}, x, dy)
    return np.asarray(be.compile(term)({}, x)), np.asarray(dx)


def assert_matches(fn, ref, x, backend, y_atol=None, dx_atol=None):
    """Values and reverse derivatives finite wherever the reference's are, and close to them
    (relative error, and an absolute one below the smallest normal float unless given)."""
    dt = x.dtype
    tiny = np.finfo(dt).tiny  # subnormals (NumPy keeps them, XLA flushes them) count as 0
    y_ref, vjp_ref = jax.vjp(ref, jnp.asarray(x))
    dy = np.asarray(np.random.default_rng(0).uniform(0.5, 1.5, y_ref.shape), dt)
    dx_ref = np.asarray(vjp_ref(jnp.asarray(dy))[0])
    y, dx = value_and_dx(fn, x, dy, backend)
    assert y.dtype == dt and dx.dtype == dt
    for got, want in ((y, np.asarray(y_ref)), (dx, dx_ref)):
        assert np.array_equal(np.isfinite(got), np.isfinite(want)), (x, got, want)
    np.testing.assert_allclose(y, y_ref, rtol=RTOL[dt.name], atol=y_atol or tiny)
    np.testing.assert_allclose(dx, dx_ref, rtol=RTOL[dt.name], atol=dx_atol or tiny)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_primitives_match_jax_nn_at_extreme_inputs(name, dtype, backend):
    fn, ref, x = CASES[name]
    # softmax's cotangent y * (dy - dy . y) cancels where y is 1: its error is absolute, eps * |dy|
    dx_atol = 4 * np.finfo(dtype).eps if name == "softmax" else None
    assert_matches(fn, ref, np.asarray(x, dtype), backend, dx_atol=dx_atol)


def log_sigmoid(x):
    return pl.log(pl.sigmoid(x))


#: Where sigmoid(x) is a normal float (x > -87 in float32, x > -708 in float64), log(sigmoid(x)) and its
#: reverse derivative are as accurate as sigmoid(x) on both backends: relatively for x < 0, to eps
#: absolutely for x > 0 (log(1 - e**-x) and 1 - sigmoid(x) round to 0 there).
LOG_SIGMOID_RANGE = {"float32": [-50.0, -20.0, 20.0, 50.0, 100.0, 1e4],
                     "float64": [-100.0, -50.0, -20.0, 20.0, 50.0, 100.0, 1e4]}


@pytest.mark.finding(41)
@pytest.mark.parametrize("backend", BACKENDS)
def test_log_sigmoid_at_minus_20_in_float32_is_minus_20_with_gradient_1(backend):
    x = np.array([[-20.0]], np.float32)
    y, dx = value_and_dx(log_sigmoid, x, np.ones_like(x), backend)
    np.testing.assert_allclose(y, jax.nn.log_sigmoid(x), rtol=1e-6)
    np.testing.assert_allclose(dx, jax.grad(lambda v: jax.nn.log_sigmoid(v).sum())(x), rtol=1e-6)


@pytest.mark.finding(41)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_sigmoid_matches_jax_nn_log_sigmoid_where_sigmoid_is_a_normal_float(dtype, backend):
    eps = np.finfo(dtype).eps
    assert_matches(log_sigmoid, jax.nn.log_sigmoid, np.asarray([LOG_SIGMOID_RANGE[dtype]], dtype), backend,
                   y_atol=eps, dx_atol=eps)


@pytest.mark.finding(41)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_log_sigmoid_is_as_accurate_as_jax_nn_log_sigmoid_at_every_extreme(dtype, backend):
    assert_matches(log_sigmoid, jax.nn.log_sigmoid, np.asarray([EXTREMES], dtype), backend)


LOSSES = {  # name: (loss, labels of 8 examples of 4 classes, optax per-example loss(logits, labels))
    "softmax_cross_entropy": (pl.losses.softmax_cross_entropy(), np.eye(4)[[0, 1, 2, 3, 3, 2, 1, 0]],
                              optax.softmax_cross_entropy),
    "integer_labels": (pl.losses.softmax_cross_entropy_with_integer_labels(),
                       np.array([0, 1, 2, 3, 3, 2, 1, 0], np.int32), optax.softmax_cross_entropy_with_integer_labels),
    "sigmoid_binary_cross_entropy": (pl.losses.sigmoid_binary_cross_entropy(),
                                     np.array([[1, 0, 1, 0], [0, 1, 0, 1]] * 4),
                                     lambda p, y: optax.sigmoid_binary_cross_entropy(p, y).sum(-1)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_losses_are_finite_and_match_optax_at_extreme_logits(name, dtype, backend):
    loss, labels, ref = LOSSES[name]
    logits = np.asarray([rows(v) for v in EXTREMES], dtype)
    labels = labels.astype(dtype) if labels.dtype.kind != "i" else labels
    term = loss.at(pl.Array(4, dtype=dtype))
    be = BACKENDS[backend]
    value = np.asarray(be.compile(term)(labels, logits))
    _, dlogits = be.compile(pl.R(term))(labels, logits, np.asarray(1.0, dtype))
    want, grad = jax.value_and_grad(lambda p: jnp.mean(ref(p, labels)))(jnp.asarray(logits))
    assert np.isfinite(value) and np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(value, want, rtol=RTOL[dtype])
    np.testing.assert_allclose(dlogits, grad, rtol=RTOL[dtype], atol=4 * np.finfo(dtype).eps)
