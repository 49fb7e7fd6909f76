"""End-to-end: the examples train to the accuracies of the paper's own implementation."""

import importlib.util
import pathlib

import numpy as np
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


@pytest.mark.slow
@pytest.mark.parametrize("source, target", [(3, 8), (0, 6)])
def test_dreaming_turns_a_digit_into_another_and_leaves_the_parameters_alone(tmp_path, source, target):
    before, after, unchanged, x, corr = load("dream_digits").main(source, target, out=str(tmp_path / "dream.png"),
                                                                  progress=False)
    assert before < 0.1 and after >= 0.9
    assert unchanged
    # recognisable without the model: of the class means (centred), the target's is the nearest, and by far
    assert corr.argmax() == target and corr[target] >= 0.8 and np.sort(corr)[-2] <= 0.6, corr
    assert (tmp_path / "dream.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_gradients_train_iris(seed):
    forward, reverse = load("forward_gradient_iris").main(seed=seed, progress=False)
    assert forward >= 0.90 and reverse >= 0.90
