"""The bilevel examples meet their stated figures over three seeds (slow, end to end)."""

import pytest

import examples_loader

SEEDS = [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["implicit", "unrolled"])
@pytest.mark.parametrize("seed", SEEDS)
def test_hyper_cleaning(method, seed):
    acc, unweighted, auc = examples_loader.load("hyper_cleaning").main(method, seed=seed, progress=False)
    assert acc >= 0.88
    assert acc >= unweighted + 0.20
    assert auc >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_hyper_lr(seed):
    ex = examples_loader.load("hyper_lr")
    learned, val_loss, acc, base_val, base_acc = ex.main(0.01, seed=seed, progress=False)
    assert 0.03 <= learned <= 1.0
    assert val_loss <= 0.8 * base_val
    assert acc >= base_acc
    assert ex.main(0.001, seed=seed, progress=False)[0] > 0.001   # too small: it rises
    assert ex.main(1.0, seed=seed, progress=False)[0] < 1.0       # too large: it falls
