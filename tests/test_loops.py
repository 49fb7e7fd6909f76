"""Loops: one scan box whatever the length; R is the reverse loop; JAX compiles one lax.scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

A = pl.Array(3, dtype="float64")


@pl.para(dom=[A, A])
def body(x, v, w: pl.Param((3, 3), dtype="float64")):
    return pl.tanh(x @ w) + 0.5 * v, v * 0.9


def hand(p, x, v, k):
    for _ in range(k):
        x, v = jnp.tanh(x @ p["body.w"]) + 0.5 * v, v * 0.9
    return x, v


@pytest.mark.parametrize("k", [1, 5])
def test_loop_forward_reverse_and_forward_derivative_match_a_python_loop(k):
    rng = np.random.default_rng(0)
    f = pl.loop(body, k)
    p = {"body.w": 0.5 * rng.standard_normal((3, 3))}
    x, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    dx, dv = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out = pnp.compile(f)(p, (x, v))
    ref = hand(p, x, v, k)
    for a, b in zip(out, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    dp, dxs = pnp.compile(pl.R(f))(p, (x, v), (dx, dv))
    rp, rxs = jax.vjp(lambda p, xv: hand(p, *xv, k), p, (x, v))[1]((dx, dv))
    np.testing.assert_allclose(dp["body.w"], rp["body.w"], rtol=1e-10)
    for a, b in zip(dxs, rxs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    tp = {"body.w": rng.standard_normal((3, 3))}
    jv = pnp.compile(pl.D(f))(p, (x, v), tp, (dx, dv))
    rj = jax.jvp(lambda p, xv: hand(p, *xv, k), (p, (x, v)), (tp, (dx, dv)))[1]
    for a, b in zip(jv, rj):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_loop_is_one_box_and_its_program_does_not_grow_with_length():
    def eqns(k):
        f = pl.loop(body, k)
        p = {"body.w": np.eye(3)}
        x = np.ones((2, 3))
        return len(jax.make_jaxpr(pjax.compile(pl.R(f)))(p, (x, x), (x, x)).jaxpr.eqns)
    assert pl.loop(body, 10).n_boxes == pl.loop(body, 1000).n_boxes == 1
    assert eqns(10) == eqns(1000)


def test_loop_type_errors():
    with pytest.raises(pl.CompositionError, match="must return what it carries"):
        pl.loop(pl.nn.dense(3, 2), 3)
    with pytest.raises(ValueError, match="at least 1"):
        pl.loop(body, 0)
