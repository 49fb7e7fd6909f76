"""Batching is semantic: parameter cotangents are contractions over the batch."""

import numpy as np

import paralens as pl
from paralens.backends import numpy as pnp


def test_dense_weight_cotangent_is_one_contraction_over_the_batch():
    f = pl.nn.mlp([5, 7, 3], activation=pl.nn.relu)
    r = pl.R(f)
    wshapes = {t.shape for t in f.param_types.values() if len(t.shape) == 2}
    # no batched wire ever has a weight's shape: no per-example weight gradients
    assert not any(t.batched and t.shape in wshapes for t in r.wires)
    contractions = [e for e in r.eqns if e.prim.name == "einsum" and e.kwargs["batched_out"] is False]
    assert len(contractions) == 2  # one per weight matrix
    assert not any(e.prim.name == "batch_sum" and r.wires[e.ins[0]].shape in wshapes for e in r.eqns)


def test_batch_contraction_equals_sum_of_per_example_gradients():
    f = pl.nn.dense(3, 2, dtype="float64") >> pl.nn.tanh()
    rng = np.random.default_rng(0)
    p = {"dense.W": rng.standard_normal((3, 2)), "dense.b": rng.standard_normal(2)}
    x, dy = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    rf = pnp.compile(pl.R(f))
    dp, dx = rf(p, x, dy)
    per = [rf(p, x[i:i + 1], dy[i:i + 1]) for i in range(6)]
    for k in p:
        np.testing.assert_allclose(dp[k], sum(d[0][k] for d in per), rtol=1e-12)
    np.testing.assert_allclose(dx, np.concatenate([d[1] for d in per]), rtol=1e-12)


def test_batch_mean_and_unbatched_outputs():
    @pl.para
    def mean_sq(x: pl.Array(3, dtype="float64")):
        return pl.batch_mean(pl.sum(x * x))
    assert not mean_sq.cod[0].batched
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(pnp.compile(mean_sq)({}, x), (x * x).sum(1).mean())
    _, dx = pnp.compile(pl.R(mean_sq))({}, x, np.float64(1.0))
    np.testing.assert_allclose(dx, x)  # d/dx of mean_b sum x^2 = 2x / 2


def test_cotangents_keep_their_wires_dtype_when_operands_promote():
    @pl.para
    def mixed(x: pl.Array(3, dtype="float32"), w: pl.Param((3,), dtype="float64")):
        return x * w
    r = pl.R(mixed)
    assert [t.dtype for t in r.cod] == ["float64", "float32"]  # dw, dx
    dp, dx = pnp.compile(r)({"mixed.w": np.ones(3)}, np.ones((2, 3), np.float32), np.ones((2, 3)))
    assert dx.dtype == np.float32 and dp["mixed.w"].dtype == np.float64
