"""The HLO audit: the compiled training step of each benchmarked model has no more of the heavy
ops (``convolution``, ``dot``, ``scatter``, ``select-and-scatter``) than the plain-JAX + optax step
of the same model, read from ``compiled.as_text()``. The two sides start from the same parameters
and their first losses agree, so they are the same model."""

import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest

import paralens as pl

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import references as ref  # noqa: E402


def _char_lm():
    spec = importlib.util.spec_from_file_location("char_lm", ROOT / "examples" / "char_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mlp(rng):
    sizes = [64, 32, 32, 10]
    return (ref.mlp_learner(sizes, 1e-3), ref.adam_step(ref.mlp_forward, ref.cross_entropy, 1e-3),
            rng.standard_normal((8, 64)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int32))


def digits_cnn(rng):
    return (ref.cnn_learner(8), ref.adam_step(ref.cnn_forward, ref.cross_entropy, 1e-3),
            rng.standard_normal((9, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 9).astype(np.int32))


def transformer_block(rng):
    learner = pl.Learner(pl.nn.transformer_block(16, 2).at(pl.Array[8, 16]), loss=pl.losses.mse(),
                         optimizer=pl.optim.adam(1e-3))
    return (learner, ref.adam_step(ref.transformer_forward(2), ref.half_squared_error, 1e-3),
            rng.standard_normal((4, 8, 16)).astype(np.float32), rng.standard_normal((4, 8, 16)).astype(np.float32))


def char_lm(rng):
    lm = _char_lm()
    length, vocab = 16, len(lm.VOCAB)
    learner = pl.Learner(lm.build(length, 32, 4, 2), loss=lm.next_char_loss(length), optimizer=pl.optim.adam(3e-3))
    ids = rng.integers(0, vocab, (4, length + 1)).astype(np.int32)
    return (learner, ref.adam_step(ref.char_lm_forward(4, 2), ref.next_char_cross_entropy, 3e-3),
            ids[:, :-1], ids[:, 1:])


@pytest.mark.parametrize("model", [mlp, digits_cnn, transformer_block, char_lm], ids=lambda m: m.__name__)
def test_compiled_step_has_no_more_heavy_ops_than_plain_jax(model):
    learner, (tx, step), x, y = model(np.random.default_rng(0))
    ours = learner.compile("jax")
    state = learner.init(0, backend="jax")
    params = {k: jax.numpy.array(v) for k, v in learner.init(0)["params"].items()}
    theirs = jax.jit(step, donate_argnums=(0,))
    plain = (params, tx.init(params))
    counts = ref.op_counts(ours.lower(state, x, y).compile())
    plain_counts = ref.op_counts(theirs.lower(plain, x, y).compile())
    _, loss = ours(state, x, y)
    _, plain_loss = theirs(plain, x, y)
    np.testing.assert_allclose(float(loss), float(plain_loss), rtol=1e-4)
    assert plain_counts["instructions"] > 0 and plain_counts["dot"] > 0
    for op in ref.AUDITED:
        assert counts[op] <= plain_counts[op], (op, dict(counts), dict(plain_counts))
    if model is digits_cnn:  # convolutions seen as convolutions, as many as the plain step's
        assert counts["convolution"] == plain_counts["convolution"] > 0
