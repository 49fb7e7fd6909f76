"""End-to-end: the examples train to the accuracies of the paper's own implementation."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name):  # noqa: D103 - kept for test_examples
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iris_linear_sigmoid_model(seed):
    assert load("iris").main(hidden=None, seed=seed, verbose=False) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iris_hidden_layer(seed):
    assert load("iris").main(hidden=20, seed=seed, verbose=False) >= 0.96
