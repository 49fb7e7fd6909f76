"""NumPy-style broadcasting of elementwise boxes (axes of size 1 stretch) and keepdims, against JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

F64 = "float64"


def check(term, ref, *inputs, dy=None):
    """Forward and R of ``term`` (no parameters) equal ``ref`` per example (``jax.vmap``: shapes
    broadcast per example, the batch axis apart) and ``jax.vjp`` of it, on both backends."""
    y_ref, vjp = jax.vjp(jax.vmap(ref), *inputs)
    dy = np.random.default_rng(1).standard_normal(np.shape(y_ref)) if dy is None else dy
    dx_ref = vjp(dy)
    x = tuple(inputs) if len(inputs) > 1 else inputs[0]
    for be in (pnp, pjax):
        np.testing.assert_allclose(be.compile(term)({}, x), y_ref, rtol=1e-12, atol=1e-12)
        _, dx = be.compile(pl.R(term))({}, x, dy)
        for got, want in zip(dx if len(inputs) > 1 else (dx,), dx_ref):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_layer_norm_written_with_keepdims_as_in_numpy():
    @pl.para(dom=[pl.Array(5, 4, dtype=F64)])
    def norm(x):
        c = x - pl.mean(x, axis=-1, keepdims=True)
        return c / pl.sqrt(pl.mean(c * c, axis=-1, keepdims=True) + 1e-5)

    def ref(x):
        c = x - x.mean(-1, keepdims=True)
        return c / jnp.sqrt((c * c).mean(-1, keepdims=True) + 1e-5)
    check(norm, ref, np.random.default_rng(0).standard_normal((3, 5, 4)))


@pytest.mark.parametrize("a,b", [((4, 1), (1, 3)), ((2, 1, 3), (4, 1)), ((1,), (3, 2)), ((3, 1), (3, 5))])
def test_size_one_axes_stretch_and_their_cotangents_are_summed(a, b):
    A, B = pl.Array(*a, dtype=F64), pl.Array(*b, dtype=F64)

    @pl.para(dom=[A, B])
    def f(x, y):
        return x * y + x

    rng = np.random.default_rng(0)
    check(f, lambda x, y: x * y + x, rng.standard_normal((2,) + a), rng.standard_normal((2,) + b))


def test_keepdims_of_sum_max_and_logsumexp():
    @pl.para(dom=[pl.Array(3, 4, dtype=F64)])
    def f(x):
        return (x - pl.max(x, axis=0, keepdims=True)) * pl.sum(x, axis=1, keepdims=True) \
            + pl.logsumexp(x, axis=1, keepdims=True)

    def ref(x):
        return (x - x.max(0, keepdims=True)) * x.sum(1, keepdims=True) \
            + jax.scipy.special.logsumexp(x, axis=1, keepdims=True)
    check(f, ref, np.random.default_rng(2).standard_normal((2, 3, 4)))


def test_shapes_that_do_not_broadcast_are_refused_naming_them():
    with pytest.raises(TypeError, match="do not broadcast"):
        @pl.para(dom=[pl.Array[4, 2], pl.Array[4, 3]])
        def f(x, y):
            return x + y
