"""The NumPy, JAX and SymPy backends agree on random terms and their derivatives."""

import jax
import numpy as np
import sympy as sp
from hypothesis import given, settings

import paralens as pl
from helpers import A, endo_terms, f64, sample
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp
from paralens.backends import sympy as psym


def to_float(v):
    return np.array(np.asarray(v.tolist() if hasattr(v, "tolist") else v, dtype=object), dtype=np.float64)


@given(endo_terms())
def test_numpy_and_jax_agree(f):
    rng = np.random.default_rng(0)
    p, x, dy = f64(f.init(3)), sample(A, rng), sample(A, rng)
    for term, args in ((f, (x,)), (pl.R(f), (x, dy))):
        a = pnp.compile(term)(p, *args)
        b = jax.jit(pjax.compile(term))(p, *args)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


@settings(max_examples=8)
@given(endo_terms(max_leaves=3))
def test_sympy_agrees_after_substitution(f):
    rng = np.random.default_rng(1)
    p, x, dy = f64(f.init(4)), sample(A, rng, batch=2), sample(A, rng, batch=2)
    xs = sp.Array(sp.symbols("x0:6"), (2, 3))
    subs = dict(zip(sp.symbols("x0:6"), x.ravel()))
    y = psym.compile(f)(p, xs)
    assert y.free_symbols  # symbolic in x
    np.testing.assert_allclose(to_float(y.subs(subs)), pnp.compile(f)(p, x), rtol=1e-9, atol=1e-12)
    dp, dx = psym.compile(pl.R(f))(p, xs, dy)
    ndp, ndx = pnp.compile(pl.R(f))(p, x, dy)
    np.testing.assert_allclose(to_float(dx.subs(subs)), ndx, rtol=1e-9, atol=1e-12)
    for k in ndp:
        np.testing.assert_allclose(to_float(sp.Array(dp[k]).subs(subs) if dp[k].shape else dp[k].subs(subs)),
                                   ndp[k], rtol=1e-9, atol=1e-12)


def test_sympy_derives_the_textbook_formula():
    x, w, b = sp.symbols("x w b")

    @pl.para
    def neuron(x: pl.Array[()], w: pl.Param[()], b: pl.Param[()]):
        return pl.sigmoid(w * x + b)
    dparams, dx = psym.compile(pl.R(neuron))({"neuron.w": w, "neuron.b": b}, sp.Array([x]), sp.Array([1]))
    s = 1 / (1 + sp.exp(-(w * x + b)))  # sigma stays named; rewrite(exp) expands it
    assert sp.simplify(dparams["neuron.w"].rewrite(sp.exp) - x * s * (1 - s)) == 0
    assert sp.simplify(dx[0].rewrite(sp.exp) - w * s * (1 - s)) == 0


def test_jax_backend_is_jittable_and_differentiable():
    f = pl.nn.mlp([3, 4, 2], activation=pl.nn.tanh, dtype="float64")
    p = f.init(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    fn = pjax.compile(f)
    np.testing.assert_allclose(jax.jit(fn)(p, x), pnp.compile(f)(p, x), rtol=1e-12)
    g = jax.grad(lambda p: fn(p, x).sum())(p)
    dp, _ = pnp.compile(pl.R(f))(p, x, np.ones((5, 2)))
    for k in p:
        np.testing.assert_allclose(g[k], dp[k], rtol=1e-10)


def test_compile_checks_shapes_and_keys():
    f = pl.nn.dense(3, 2)
    fn = pnp.compile(f)
    p = f.init(0)
    import pytest
    with pytest.raises(ValueError, match=r"should have shape \(batch, 3\)"):
        fn(p, np.zeros((4, 5)))
    with pytest.raises(KeyError, match="missing"):
        fn({"dense.W": p["dense.W"]}, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="has no type yet"):
        pnp.compile(pl.nn.relu())
