"""The main job and the digits examples, end to end."""

import json
import os
import time

import numpy as np
import pytest
from test_examples import load

from paralens.backends import cli


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


# ---------------------------------------------------------------- bad options fail first, and say why


def _fails_cleanly(capsys, argv, match):
    """The command exits 2 before training, with one line naming the problem, no traceback."""
    t0 = time.perf_counter()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and match in err, err
    assert time.perf_counter() - t0 < 5


@pytest.mark.finding(7)
def test_out_naming_a_file_fails_first(tmp_path, capsys):
    (tmp_path / "taken").write_text("keep me")
    _fails_cleanly(capsys, ["train", "--quiet", "--out", str(tmp_path / "taken")], "is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.finding(8)
def test_out_in_a_read_only_place_fails_first(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permissions: take a folder no one can write to
        out = "/sys/paralens-out"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = str(tmp_path / "ro" / "out")
    _fails_cleanly(capsys, ["train", "--quiet", "--out", out], "cannot be written")


@pytest.mark.finding(9)
def test_empty_out_fails_first(capsys):
    _fails_cleanly(capsys, ["train", "--quiet", "--out", ""], "--out must name a folder")


@pytest.mark.finding(10)
@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--batch-size", "-1"), ("--hidden", "0")])
def test_non_positive_sizes_fail_first(tmp_path, capsys, option, value):
    _fails_cleanly(capsys, ["train", "--quiet", "--out", str(tmp_path), option, value],
                   "expected a positive integer")
    assert os.listdir(tmp_path) == []


@pytest.mark.finding(11)
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "0"])
def test_bad_learning_rates_fail_first(tmp_path, capsys, value):
    _fails_cleanly(capsys, ["train", "--quiet", "--out", str(tmp_path), "--learning-rate", value],
                   "expected a positive finite number")


@pytest.mark.finding(12)
def test_a_folder_holding_another_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--quiet", "--hidden", "8", "--epochs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    _fails_cleanly(capsys, ["train", "--quiet", "--hidden", "8", "--epochs", "1", "--out", str(out)],
                   "pass --resume to continue it")
    assert json.loads((out / "summary.json").read_text()) == summary  # the earlier run's record survives


@pytest.mark.finding(3)
def test_the_summary_describes_exactly_the_files_beside_it(tmp_path):
    import hashlib

    out = tmp_path / "run"
    assert cli.main(["train", "--quiet", "--hidden", "8", "--epochs", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert set(summary["sha256"]) == set(cli.ARTIFACTS) == set(os.listdir(out)) - {"summary.json", "checkpoints",
                                                                                    cli.RECORD}
    for name, digest in summary["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    # --resume of a finished run rewrites the same artifacts: nothing to train
    assert cli.main(["train", "--quiet", "--hidden", "8", "--epochs", "1", "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["sha256"]["params.npz"] == summary["sha256"]["params.npz"]
    assert again["test_accuracy"] == summary["test_accuracy"]
