"""Lenses as values: the lens laws, functoriality of R into lenses against jax.vjp, optics that
recompute nothing, parametric lenses (a loss's parameter is its label), every backend."""

import jax
import numpy as np
import pytest
import sympy as sp
from hypothesis import given

import paralens as pl
from helpers import A, B, closed, endo_terms, f64, hom_terms, sample
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

TOL = dict(rtol=1e-9, atol=1e-10)


def run(lens, params, x, dy):
    """``(y, dparams, dx)`` of a lens, on the NumPy backend."""
    return pnp.compile(lens)(params, x, dy)


def assert_same(a, b, tol=TOL):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        np.testing.assert_allclose(u, v, **tol)


@given(endo_terms(), endo_terms())
def test_lens_of_a_composite_is_the_composite_of_lenses_and_equals_vjp(f, g):
    rng = np.random.default_rng(0)
    composite, lenses = pl.lens(f >> g), pl.lens(f) >> pl.lens(g)
    assert composite.param_names == lenses.param_names == (f >> g).param_names
    p, x, dy = f64((f >> g).init(1)), sample(A, rng), sample(A, rng)
    y1, dp1, dx1 = run(composite, p, x, dy)
    y2, dp2, dx2 = run(lenses, p, x, dy)
    assert_same((y1, dp1, dx1), (y2, dp2, dx2))
    y, vjp = jax.vjp(pjax.compile(f >> g), p, x)
    dp, dx = vjp(dy)
    assert_same((y2, dp2, dx2), (y, dp, dx), dict(rtol=1e-8, atol=1e-9))


@given(endo_terms(), endo_terms(), endo_terms())
def test_lens_composition_is_associative(f, g, h):
    lf, lg, lh = pl.lens(f), pl.lens(g), pl.lens(h)
    left, right = (lf >> lg) >> lh, lf >> (lg >> lh)
    assert left.param_names == right.param_names
    rng = np.random.default_rng(1)
    p, x, dy = f64(left.fwd.init(2)), sample(A, rng), sample(A, rng)
    assert_same(run(left, p, x, dy), run(right, p, x, dy))


@given(endo_terms())
def test_identity_lenses_are_units(f):
    lf = pl.lens(f)
    rng = np.random.default_rng(2)
    p, x, dy = f64(f.init(3)), sample(A, rng), sample(A, rng)
    for composite in (pl.Lens.id(A) >> lf, lf >> pl.Lens.id(A)):
        assert composite.param_names == lf.param_names
        assert_same(run(composite, p, x, dy), run(lf, p, x, dy))


@given(endo_terms(), endo_terms(), endo_terms(), endo_terms())
def test_interchange_of_sequential_and_parallel_composition(f, g, h, k):
    lf, lg, lh, lk = (pl.lens(closed(t, s)) for s, t in enumerate((f, g, h, k)))
    rng = np.random.default_rng(3)
    x, dy = sample(A @ A, rng), sample(A @ A, rng)
    assert_same(run((lf @ lg) >> (lh @ lk), {}, x, dy), run((lf >> lh) @ (lg >> lk), {}, x, dy))


@given(hom_terms(A, B), hom_terms(B, A))
def test_lens_of_a_parallel_composite_is_the_parallel_composite_of_lenses(f, g):
    rng = np.random.default_rng(4)
    p = f64((f @ g).init(5))
    x, dy = sample(A @ B, rng), sample(B @ A, rng)
    assert (pl.lens(f) @ pl.lens(g)).param_names == (f @ g).param_names
    assert_same(run(pl.lens(f @ g), p, x, dy), run(pl.lens(f) @ pl.lens(g), p, x, dy))


def test_optics_carry_residuals_and_recompute_nothing():
    f = pl.nn.dense(3, 4) >> pl.nn.tanh()
    g = pl.nn.dense(4, 2) >> pl.nn.sigmoid()
    lf, lg = pl.lens(f), pl.lens(g)
    composite = lf >> lg
    assert composite.residuals == lf.residuals + lg.residuals
    fwd = [e.prim.name for e in composite.fwd.eqns]
    rev = [e.prim.name for e in composite.rev.eqns]
    assert fwd == [e.prim.name for e in (f >> g).eqns]  # each forward box once
    assert "tanh" not in rev and "sigmoid" not in rev  # the reverse part reads their outputs


def test_a_loss_is_a_lens_parametrised_by_its_label():
    loss = pl.lens(pl.losses.mse().at(pl.Array(2, dtype="float64")))
    assert loss.param_names == ("mse",) and loss.cod == pl.Ty(pl.Array((), dtype="float64").unbatched)
    rng = np.random.default_rng(5)
    label, pred = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    value, dlabel, dpred = run(loss, label, pred, np.float64(1.0))
    np.testing.assert_allclose(value, np.mean(0.5 * np.sum((pred - label) ** 2, axis=1)))
    np.testing.assert_allclose(dpred, (pred - label) / 4)
    np.testing.assert_allclose(dlabel, (label - pred) / 4)  # the label's cotangent, bare like the label


def test_a_costate_starts_the_backward_pass():
    lr = pl.costate(pl.Array((), dtype="float64").unbatched, 1.0)
    assert lr.cod == pl.Ty() and lr.n_residuals == 0
    model = pl.lens(pl.nn.dense(2, 1, dtype="float64")) >> pl.lens(pl.losses.mse().at(pl.Array(1, dtype="float64")))
    closed_lens = model >> lr
    params = {"dense.W": np.array([[1.0], [2.0]]), "dense.b": np.zeros(1), "mse": np.zeros((3, 1))}
    x = np.ones((3, 2))
    (), dparams, dx = run(closed_lens, params, x, ())
    _, ref, _ = run(model, params, x, np.float64(1.0))
    assert_same(dparams, ref)
    with pytest.raises(TypeError, match="unbatched"):
        pl.costate(pl.Array[2])


def test_every_backend_compiles_a_lens_and_it_can_be_drawn(tmp_path):
    lens = pl.lens(pl.nn.dense(2, 1, dtype="float64")) >> pl.lens(pl.nn.tanh().at(pl.Array(1, dtype="float64")))
    p = {"dense.W": np.array([[0.5], [-1.0]]), "dense.b": np.array([0.1])}
    x, dy = np.array([[1.0, 2.0]]), np.array([[1.0]])
    ref = run(lens, p, x, dy)
    assert_same(jax.jit(pjax.compile(lens))(p, x, dy), ref)
    w = sp.symbols("w0 w1")
    y, dp, dx = pl.backends.get("sympy").compile(lens)(
        {"dense.W": sp.Array([[w[0]], [w[1]]]), "dense.b": sp.Array([0.1])}, x, dy)
    got = float(y[0, 0].subs({w[0]: 0.5, w[1]: -1.0}))
    np.testing.assert_allclose(got, ref[0][0, 0], rtol=1e-12)
    path = pl.draw(lens, str(tmp_path / "lens.svg"))
    assert (tmp_path / "lens.svg").read_bytes().startswith(b"<?xml") and path.endswith(".svg")


def test_lens_errors_name_both_sides():
    with pytest.raises(pl.CompositionError, match=r"dense\(2, 3\).*Array\[3\].*Array\[4\]"):
        pl.lens(pl.nn.dense(2, 3)) >> pl.lens(pl.nn.dense(4, 1))
    with pytest.raises(pl.CompositionError, match="pl.lens"):
        pl.R(pl.nn.dense(2, 3)) >> pl.R(pl.nn.dense(3, 1))
    with pytest.raises(TypeError):
        pl.lens(pl.nn.dense(2, 3)) >> pl.nn.dense(3, 1)
