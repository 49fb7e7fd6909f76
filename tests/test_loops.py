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


def _boxes(term, name):
    """Boxes called ``name`` in ``term``, inside scan bodies too."""
    n = 0
    for e in term.eqns:
        n += e.prim.name == name
        body = e.kwargs.get("body")
        if body is not None:
            n += _boxes(body, name)
    return n


@pytest.mark.parametrize("k", [1, 64])
def test_R_of_a_scan_runs_the_body_forward_once_per_step(k):
    """One forward scan (the body's lens forward, stacking its residuals) and one reverse scan
    (the lens's reverse part): the body's tanh appears once in R's term and once in the
    compiled program, whatever the length."""
    f = pl.loop(body, k)
    assert _boxes(f, "tanh") == 1
    r = pl.R(f)
    assert _boxes(r, "scan") == 2 and _boxes(r, "tanh") == 1
    p = {"body.w": np.eye(3)}
    x, v = np.ones((2, 3)), np.ones((2, 3))
    hlo = jax.jit(pjax.compile(r)).lower(p, (x, v), (x, v)).as_text()
    assert hlo.count("stablehlo.tanh") == 1


def test_R_of_a_scan_skips_the_cotangents_of_constant_shared_inputs():
    """A shared input that depends on no parameter or input (a constant) gets no summed
    cotangent: the reverse scan carries only the shared inputs that need one."""
    C = pl.ArrayType((3,), "float64", batched=False)

    @pl.para(dom=[A, C])
    def step(x, c, w: pl.Param((3, 3), dtype="float64")):
        return pl.tanh(x @ w + c)

    looped = pl.loop(step, 8, n_carry=1)

    @pl.para(dom=[A])
    def constant_shift(x):
        return looped(x, pl.constant(np.full(3, 0.1), (3,), "float64", like=x))

    def carried_backwards(term):
        return [e for e in pl.R(term).eqns if e.prim.name == "scan"][-1].kwargs["n_carry"]

    assert carried_backwards(looped) == 3              # dx, the sum of dc, the sum of dw
    assert carried_backwards(constant_shift) == 2      # dx and the sum of dw: c is a constant
    p = {"step.w": 0.3 * np.eye(3)}
    x, dy = np.ones((2, 3)), np.ones((2, 3))
    dp, dx = pnp.compile(pl.R(constant_shift))(p, x, dy)
    g = jax.grad(lambda w, x: hand_shift(w, x).sum(), argnums=(0, 1))(p["step.w"], x)
    np.testing.assert_allclose(dp["step.w"], g[0], rtol=1e-10)
    np.testing.assert_allclose(dx, g[1], rtol=1e-10)


def hand_shift(w, x):
    for _ in range(8):
        x = jnp.tanh(x @ w + 0.1)
    return x


def test_the_rnn_benchmark_runs_and_matches_hand_written_jax():
    """benchmarks/bench_rnn.py checks its first step's loss against lax.scan + jax.grad itself."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "bench_rnn.py"
    spec = importlib.util.spec_from_file_location("bench_rnn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.bench(steps=8, batch=3, rounds=1, calls=1)
    assert r["step_ratio_median"] > 0
