"""Learn and the functor L (maths §5): functoriality with its negative control, the paper's formulas
implemented independently, and learners as Moore machines (maths §6.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paralens as pl
from paralens import learn
from paralens.backends import numpy as pnp

F = "float64"
TOL = dict(rtol=1e-12, atol=1e-12)


def arr(n):
    return pl.Array(n, dtype=F)


@st.composite
def chains(draw, n_in, n_out, max_layers=3):
    """A random chain of dense, tanh and sigmoid layers from ``n_in`` to ``n_out`` wires."""
    widths = [n_in] + draw(st.lists(st.integers(1, 3), min_size=0, max_size=max_layers - 1)) + [n_out]
    t = None
    for n, m in zip(widths, widths[1:]):
        layer = pl.nn.dense(n, m, dtype=F)
        act = draw(st.sampled_from([None, pl.nn.tanh(), pl.nn.sigmoid()]))
        if act is not None:
            layer = layer >> act
        t = layer if t is None else t >> layer
    return t


def evaluate(lr, params, a, b):
    """``(I(p, a), U(p, a, b), r(p, a, b))`` of a learner, on the NumPy backend."""
    return (pnp.compile(lr.implement)(params, a), pnp.compile(lr.update)(params, a, b),
            pnp.compile(lr.request)(params, a, b))


def random_params(term, rng):
    return {n: rng.standard_normal(t.shape) for n, t in term.param_types.items()}


def assert_same(x, y, tol=TOL):
    for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
        np.testing.assert_allclose(u, v, **tol)


@settings(max_examples=15)
@given(chains(3, 2), chains(2, 2), st.sampled_from([0.1, 0.5, 2.0]))
def test_L_is_a_functor(f, g, eps):
    rng = np.random.default_rng(0)
    lhs, rhs = learn.L(f >> g, eps), learn.L(f, eps) >> learn.L(g, eps)
    assert lhs.param_names == rhs.param_names
    p = random_params(f >> g, rng)
    a, c = rng.standard_normal((1, 3)), rng.standard_normal((1, 2))
    assert_same(evaluate(lhs, p, a, c), evaluate(rhs, p, a, c))


def test_the_negative_control_breaks_functoriality():
    """maths §5.4: with eps inside the request, L(f >> g) and L(f) >> L(g) update differently."""
    eps = 0.1
    wrong = learn.Error("eps in the request", learn.quadratic.value, lambda z, w: z - eps * w)
    f = pl.nn.dense(3, 2, dtype=F) >> pl.nn.tanh()
    g = pl.nn.dense(2, 2, dtype=F) >> pl.nn.sigmoid()
    rng = np.random.default_rng(1)
    p = random_params(f >> g, rng)
    a, c = rng.standard_normal((1, 3)), rng.standard_normal((1, 2))
    _, u1, _ = evaluate(learn.L(f >> g, eps, wrong), p, a, c)
    _, u2, _ = evaluate(learn.L(f, eps, wrong) >> learn.L(g, eps, wrong), p, a, c)
    gap = max(np.abs(u1[k] - u2[k]).max() for k in u1)
    assert gap > 1e-3, gap
    _, v1, _ = evaluate(learn.L(f >> g, eps), p, a, c)  # the right request: no gap
    _, v2, _ = evaluate(learn.L(f, eps) >> learn.L(g, eps), p, a, c)
    assert_same(v1, v2)


@pytest.mark.parametrize("error", [learn.quadratic, learn.cosh], ids=["quadratic", "cosh"])
def test_L_of_a_parallel_composite_and_a_non_quadratic_error(error):
    f = pl.nn.dense(2, 2, dtype=F) >> pl.nn.tanh()
    g = pl.nn.dense(3, 1, dtype=F) >> pl.nn.sigmoid()
    rng = np.random.default_rng(2)
    p = random_params(f @ g, rng)
    a = (rng.standard_normal((1, 2)), rng.standard_normal((1, 3)))
    b = (0.3 * rng.standard_normal((1, 2)), 0.3 * rng.standard_normal((1, 1)))
    assert_same(evaluate(learn.L(f @ g, 0.3, error), p, a, b),
                evaluate(learn.L(f, 0.3, error) @ learn.L(g, 0.3, error), p, a, b))
    h = pl.nn.dense(2, 2, dtype=F) >> pl.nn.sigmoid()
    q = random_params(f >> h, rng)
    assert_same(evaluate(learn.L(f >> h, 0.3, error), q, a[0], b[0]),
                evaluate(learn.L(f, 0.3, error) >> learn.L(h, 0.3, error), q, a[0], b[0]))


def test_L_follows_the_papers_formulas():
    """U = p - eps grad_p E and r = a - grad_a E for the quadratic error, by jax.grad."""
    f = pl.nn.dense(3, 2, dtype=F) >> pl.nn.tanh()
    rng = np.random.default_rng(3)
    p = random_params(f, rng)
    a, b = rng.standard_normal((1, 3)), rng.standard_normal((1, 2))
    implement = pl.backends.get("jax").compile(f)

    def E(p, a):
        return 0.5 * jnp.sum((implement(p, a) - b) ** 2)
    gp, ga = jax.grad(E, argnums=(0, 1))(p, a)
    i, u, r = evaluate(learn.L(f, 0.1), p, a, b)
    assert_same(i, implement(p, a))
    assert_same(u, {k: p[k] - 0.1 * gp[k] for k in p})
    assert_same(r, a - ga)


def test_composition_equals_an_independent_implementation_of_the_formulas():
    """(I*J)(p,q,a) = J(q,b); (U*V)(p,q,a,c) = (U(p,a,s(q,b,c)), V(q,b,c)); (r*s)(p,q,a,c) = r(p,a,s(q,b,c))."""
    f, g = pl.nn.dense(3, 2, dtype=F) >> pl.nn.sigmoid(), pl.nn.dense(2, 2, dtype=F) >> pl.nn.tanh()
    lf, lg = learn.L(f, 0.2, learn.cosh), learn.L(g, 0.2, learn.cosh)
    I, U, r = (pnp.compile(t) for t in (lf.implement, lf.update, lf.request))
    J, V, s = (pnp.compile(t) for t in (lg.implement, lg.update, lg.request))
    rng = np.random.default_rng(4)
    comp = lf >> lg
    names = comp.param_names
    p = {n: rng.standard_normal(t.shape) for n, t in zip(names, (s_.type for s_ in comp.implement.params))}
    pf = dict(zip(lf.param_names, (p[n] for n in names[:2])))
    pg = dict(zip(lg.param_names, (p[n] for n in names[2:])))
    for _ in range(3):  # random data
        a, c = rng.standard_normal((1, 3)), 0.5 * rng.standard_normal((1, 2))
        b = I(pf, a)
        wanted = s(pg, b, c)
        expected = (J(pg, b), {**dict(zip(names[:2], U(pf, a, wanted).values())),
                               **dict(zip(names[2:], V(pg, b, c).values()))}, r(pf, a, wanted))
        assert_same(evaluate(comp, p, a, c), expected)


def test_identity_learners_are_units():
    f = pl.nn.dense(2, 2, dtype=F) >> pl.nn.tanh()
    rng = np.random.default_rng(5)
    p = random_params(f, rng)
    a, b = rng.standard_normal((1, 2)), rng.standard_normal((1, 2))
    lf = learn.L(f, 0.3)
    for composite in (learn.identity(arr(2)) >> lf, lf >> learn.identity(arr(2))):
        assert_same(evaluate(composite, p, a, b), evaluate(lf, p, a, b))


def test_a_learner_as_a_moore_machine_steps_like_the_numpy_learner():
    f = pl.nn.dense(3, 4, dtype=F) >> pl.nn.sigmoid() >> pl.nn.dense(4, 2, dtype=F)
    rng = np.random.default_rng(6)
    xs, ys = rng.standard_normal((20, 1, 3)), rng.standard_normal((20, 1, 2))
    machine = learn.L(f, 0.05).machine()
    state = {k: np.asarray(v, np.float64) for k, v in f.init(0).items()}
    _, history = machine.run(state, xs, ys)
    trainer = pl.Learner(f, loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.05))
    ts = trainer.init(0)
    step = trainer.compile("numpy")
    for k in range(20):
        ts, _ = step(ts, xs[k], ys[k])
        assert_same(history[k], ts["params"])
    implement, request = machine.readout(history[-1])
    assert implement(xs[0]).shape == (1, 2) and request(xs[0], ys[0]).shape == (1, 3)
    # machines compose by wiring, as their learners do
    g = pl.nn.dense(2, 2, dtype=F)
    both = machine >> learn.L(g, 0.05).machine()
    assert both.learner.param_names == learn.L(f >> g, 0.05).param_names


def test_learners_are_terms_to_draw_and_compile(tmp_path):
    lf = learn.L(pl.nn.dense(2, 1, dtype=F) >> pl.nn.sigmoid(), 0.1)
    term = lf.as_term()
    assert len(term.cod) == 1 + 2 + 1  # I, U (W and b), r
    pl.draw(lf, str(tmp_path / "learner.svg"))
    y, new_p, req = pl.backends.get("jax").compile(lf)(
        {"dense.W": np.ones((2, 1)), "dense.b": np.zeros(1)}, np.ones((1, 2)), np.zeros((1, 1)))
    assert set(new_p) == {"dense.W", "dense.b"} and req.shape == (1, 2)
    with pytest.raises(ValueError, match=r"eps=0.0 is out of range: expected a number > 0"):
        learn.L(pl.nn.dense(2, 1), 0.0)
