"""Residual policies: what R's backward pass reads stored and what it recomputes (lenses/derivative.py)."""

import jax
import numpy as np
import pytest

import paralens as pl

W = 16


@pl.para
def block(x: pl.Array[W], w1: pl.Param[W, W], w2: pl.Param[W, W]):
    return x + pl.tanh(x @ w1) @ w2


def residual_mlp(depth, width=W):
    t = block if width == W else _block(width)
    first = t
    for _ in range(depth - 1):
        t = t >> first
    return t


def _block(width):
    @pl.para(dom=[pl.Array[width]], name="block")
    def wide(x, w1: pl.Param((width, width)), w2: pl.Param((width, width))):
        return x + pl.tanh(x @ w1) @ w2
    return wide


POLICIES = ["store", "recompute", "matmuls", {"block": "recompute"}, lambda e: e.prim.name != "tanh",
            "segments", pl.Segments(1), pl.Segments(2), pl.Segments(5)]
IDS = ["store", "recompute", "matmuls", "per-layer", "predicate", "segments", "segments-1", "segments-2", "segments-5"]


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_every_policy_gives_the_same_gradients(backend, policy, batch):
    f = pl.nn.dense(3, W) >> residual_mlp(4) >> pl.nn.dense(W, 2)
    be = pl.backends.get(backend)
    p = be.init(f, 0)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((batch, 3)).astype(np.float32), rng.standard_normal((batch, 2)).astype(np.float32)
    want = be.compile(pl.R(f))(p, x, dy)
    got = be.compile(pl.R(f, residuals=policy))(p, x, dy)
    for u, v in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-6)


def test_recompute_all_halves_the_stored_activations_of_a_64_block_residual_mlp():
    """Width 512, batch 256: the lens's batched residuals (what the forward pass keeps for the
    backward) are 64 MiB stored and 32 MiB recomputed: each block keeps its input only."""
    f = residual_mlp(64, 512)

    def stored(policy):
        return sum(int(np.prod(r.shape)) * 4 * 256 for r in pl.lens(f, policy).residuals if r.batched)
    assert stored("recompute") <= 0.5 * stored("store")
    assert stored("store") == 64 * 2**20


def test_recomputation_sits_behind_an_optimization_barrier_in_the_backward_pass():
    f = residual_mlp(3)
    r = pl.R(f, residuals="recompute")
    assert sum(e.prim.name == "optimization_barrier" for e in r.eqns) == 3
    # recomputed in each of the 3 backward blocks; forward only where a later block reads the
    # result (R returns no y, so the last block's forward tanh is dropped)
    assert sum(e.prim.name == "tanh" for e in r.eqns) == 2 + 3
    hlo = jax.jit(pl.backends.get("jax").compile(r)).lower(
        pl.backends.get("jax").init(f, 0), np.ones((2, W), np.float32), np.ones((2, W), np.float32)).as_text()
    assert "optimization_barrier" in hlo
    assert sum(e.prim.name == "tanh" for e in pl.R(f).eqns) == 3


def test_a_learner_with_recomputed_residuals_trains_bit_for_bit_alike():
    f = pl.nn.dense(4, W) >> residual_mlp(3) >> pl.nn.dense(W, 3)
    x = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    y = np.arange(32, dtype=np.int32) % 3
    states = []
    for policy in ("store", "recompute"):
        learner = pl.Learner(f, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                             optimizer=pl.optim.adam(1e-2), residuals=policy)
        states.append(learner.fit(x, y, epochs=2, batch_size=8, backend="numpy", progress=False)[0])
    for u, v in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        assert np.array_equal(np.asarray(u), np.asarray(v))


def test_unknown_policies_are_refused():
    with pytest.raises(ValueError, match="residuals='all'"):
        pl.R(block, residuals="all")
    with pytest.raises(TypeError, match="residuals must be"):
        pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(), residuals=3)


def test_segments_keep_one_input_per_segment():
    """64 blocks in segments of ceil(sqrt(64)) = 8: 8 stored block inputs, one barrier per segment."""
    f = residual_mlp(64)
    batched = [r for r in pl.lens(f, "segments").residuals if r.batched]
    assert len(batched) == 8
    assert len([r for r in pl.lens(f, "recompute").residuals if r.batched]) == 64
    assert len([r for r in pl.lens(f, pl.Segments(16)).residuals if r.batched]) == 4
    assert sum(e.prim.name == "optimization_barrier" for e in pl.R(f, residuals="segments").eqns) == 8
    assert pl.Segments().size(64) == 8 and pl.Segments().size(65) == 9 and pl.Segments().size(1) == 1


def test_recomputing_saves_xla_memory_on_cpu_too():
    """XLA:CPU drops optimization barriers before merging common subexpressions, which undoes
    recomputation (hand-written jax.checkpoint included); the compiled step keeps them."""
    f = residual_mlp(16, 128)
    x = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    temp = {}
    for policy in ("store", "recompute", "segments"):
        L = pl.Learner(f, loss=pl.losses.mse(), optimizer=pl.optim.sgd(1e-3), residuals=policy)
        compiled = L.compile("jax").lower(L.init(0, backend="jax"), x, x).compile()
        temp[policy] = compiled.memory_analysis().temp_size_in_bytes
    assert temp["recompute"] < 0.65 * temp["store"]
    assert temp["segments"] < 0.5 * temp["store"]


def test_segment_policies_are_checked():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="Segments"):
            pl.Segments(bad)
    with pytest.raises(ValueError, match="segments span layers"):
        pl.R(block, residuals={"block": "segments"})
