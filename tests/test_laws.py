"""Category laws of terms, by meaning under the NumPy backend (float64, 1e-6)."""

import numpy as np
from hypothesis import given

import paralens as pl
from helpers import A, B, closed, endo_terms, f64, hom_terms, run, sample

TOL = dict(rtol=1e-6, atol=1e-6)


def same(t1, t2, x, params=None):
    y1, y2 = run(t1, x, params), run(t2, x, params)
    if isinstance(y1, tuple):
        for a, b in zip(y1, y2):
            np.testing.assert_allclose(a, b, **TOL)
    else:
        np.testing.assert_allclose(y1, y2, **TOL)


@given(endo_terms(), endo_terms(), endo_terms())
def test_associativity_of_para_terms(f, g, h):
    lhs, rhs = (f >> g) >> h, f >> (g >> h)
    assert lhs.param_names == rhs.param_names  # forward order, independent of bracketing
    params = f64(lhs.init(1))
    same(lhs, rhs, sample(lhs.dom, np.random.default_rng(0)), params)


@given(endo_terms())
def test_units(f):
    params = f64(f.init(2))
    x = sample(f.dom, np.random.default_rng(1))
    same(pl.id(A) >> f, f, x, params)
    same(f >> pl.id(A), f, x, params)


@given(endo_terms(), endo_terms(), endo_terms(), endo_terms())
def test_interchange(f, g, h, k):
    f, g, h, k = (closed(t, s) for s, t in enumerate((f, g, h, k)))
    x = sample(A @ A, np.random.default_rng(2))
    same((f @ g) >> (h @ k), (f >> h) @ (g >> k), x)


@given(hom_terms(A, B), hom_terms(B, A))
def test_naturality_of_swap(f, g):
    f, g = closed(f, 3), closed(g, 4)
    x = sample(A @ B, np.random.default_rng(3))
    same((f @ g) >> pl.swap(B, A), pl.swap(A, B) >> (g @ f), x)


@given(endo_terms())
def test_copy_discard_counit(f):
    f = closed(f)
    x = sample(A, np.random.default_rng(4))
    same(pl.copy(A) >> (f @ pl.discard(A)), f, x)


def test_monoidal_unit_and_swap_involution(rng):
    x = sample(A @ B, rng)
    same(pl.swap(A, B) >> pl.swap(B, A), pl.id(A @ B), x)
    same(pl.id(pl.Ty()) @ pl.id(A @ B), pl.id(A @ B), x)
