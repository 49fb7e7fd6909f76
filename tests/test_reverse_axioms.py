"""The reverse-derivative axioms RD.1-RD.7 (maths §1.2-1.3) on random terms, float64, 1e-6."""

import numpy as np
from hypothesis import given

import paralens as pl
from helpers import A, B, closed, endo_terms, hom_terms, sample
from paralens.backends import numpy as pnp

TOL = dict(rtol=1e-6, atol=1e-6)


def Rf(f, x, dy):
    return pnp.compile(pl.R(f))({}, x, dy)[1]


@given(endo_terms(), endo_terms())
def test_rd1_additive_in_the_map(f, g):
    f, g = closed(f), closed(g, 1)
    rng = np.random.default_rng(0)
    x, dy = sample(A, rng), sample(A, rng)
    f_plus_g = pl.copy(A) >> (f @ g) >> pl.add(A)
    np.testing.assert_allclose(Rf(f_plus_g, x, dy), Rf(f, x, dy) + Rf(g, x, dy), **TOL)
    assert np.all(Rf(pl.zero(A, B), x, sample(B, rng)) == 0)


@given(hom_terms(A, B))
def test_rd2_linear_in_the_cotangent(f):
    f = closed(f)
    rng = np.random.default_rng(1)
    x, d1, d2 = sample(A, rng), sample(B, rng), sample(B, rng)
    np.testing.assert_allclose(Rf(f, x, d1 + d2), Rf(f, x, d1) + Rf(f, x, d2), **TOL)
    np.testing.assert_allclose(Rf(f, x, 2.5 * d1), 2.5 * Rf(f, x, d1), **TOL)
    assert np.all(Rf(f, x, 0 * d1) == 0)


def test_rd3_structural_maps(rng):
    x, y, d = sample(A, rng), sample(B, rng), sample(A, rng)
    np.testing.assert_allclose(Rf(pl.id(A), x, d), d)
    pi0, pi1 = pl.id(A) @ pl.discard(B), pl.discard(A) @ pl.id(B)
    d0, d1 = Rf(pi0, (x, y), d)
    assert np.array_equal(d0, d) and np.all(d1 == 0) and d1.shape == y.shape
    e = sample(B, rng)
    d0, d1 = Rf(pi1, (x, y), e)
    assert np.all(d0 == 0) and np.array_equal(d1, e)


@given(hom_terms(A, B), hom_terms(A, A))
def test_rd4_pairing(f, g):
    f, g = closed(f), closed(g, 1)
    rng = np.random.default_rng(2)
    x, dy, dz = sample(A, rng), sample(B, rng), sample(A, rng)
    pairing = pl.copy(A) >> (f @ g)
    np.testing.assert_allclose(Rf(pairing, x, (dy, dz)), Rf(f, x, dy) + Rf(g, x, dz), **TOL)


@given(hom_terms(A, B), hom_terms(B, A))
def test_rd5_chain_rule(f, g):
    f, g = closed(f), closed(g, 1)
    rng = np.random.default_rng(3)
    x, dz = sample(A, rng), sample(A, rng)
    fx = pnp.compile(f)({}, x)
    np.testing.assert_allclose(Rf(f >> g, x, dz), Rf(f, x, Rf(g, fx, dz)), **TOL)


@given(hom_terms(A, B))
def test_rd6_reverse_derivative_is_linear_in_its_cotangent(f):
    f = closed(f)
    rng = np.random.default_rng(4)
    x, dz = sample(A, rng), sample(B, rng)
    rrr = pnp.compile(pl.R(pl.R(pl.R(f))))
    zero_a = np.zeros_like(x)
    expected = Rf(f, x, dz)
    for dy in (sample(B, rng), sample(B, rng)):  # must not depend on dy
        # primal ((x, dy), ({}, 0_A)); cotangent of R(R(f))'s output ({}, (0_A, dz))
        _, ((_, _), (_, u_bar)) = rrr({}, ((x, dy), ({}, zero_a)), ({}, (zero_a, dz)))
        np.testing.assert_allclose(u_bar, expected, **TOL)


@given(hom_terms(A, B))
def test_rd7_symmetry_of_second_derivatives(f):
    f = closed(f)
    rng = np.random.default_rng(5)
    x, u, v, w = (sample(A, rng) for _ in range(4))
    ddf = pnp.compile(pl.D(pl.D(f)))
    lhs = ddf({}, (x, {}, u), {}, (v, {}, w))
    rhs = ddf({}, (x, {}, v), {}, (u, {}, w))
    np.testing.assert_allclose(lhs, rhs, **TOL)
