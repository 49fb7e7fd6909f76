"""The main job and the digits examples, end to end."""

import json
import time

import numpy as np
import pytest

from paralens.backends import cli
from test_examples import load


@pytest.mark.slow
def test_paralens_train_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    assert cli.main(["train", "--quiet"]) == 0
    seconds = time.perf_counter() - t0
    out = tmp_path / "paralens-out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.96
    assert seconds < 120
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "model.svg").read_bytes()
    params = np.load(out / "params.npz", allow_pickle=False)
    assert set(params.files) == {"dense0.W", "dense0.b", "dense1.W", "dense1.b", "dense2.W", "dense2.b"}
    assert (out / "step.jaxexport").stat().st_size > 1000
    assert "test accuracy" in capsys.readouterr().out


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--epochs", "--learning-rate", "--out"):
        assert option in text


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_digits_cnn(seed):
    *_, acc = load("digits_cnn").main(seed=seed, progress=False)
    assert acc >= 0.97


@pytest.mark.slow
def test_digits_mlp():
    *_, acc = load("digits_mlp").main(progress=False)
    assert acc >= 0.96
