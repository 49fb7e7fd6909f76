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


def test_an_export_whose_library_is_missing_fails_first(tmp_path, monkeypatch, capsys):
    """--export onnx without onnx installed: one line naming it, before training, nothing written."""
    import sys

    from paralens import backends
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx raises ImportError
    monkeypatch.delitem(sys.modules, "paralens.backends.onnx", raising=False)
    monkeypatch.delitem(backends._LOADED, "onnx", raising=False)
    _fails_cleanly(capsys, ["train", "--quiet", "--export", "onnx", "--out", str(tmp_path / "out")],
                   "the onnx backend needs a library that is not installed")
    assert not (tmp_path / "out").exists()


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


# ---------------------------------------------------------------- round two: the CLI owns its files

TINY = ["train", "--quiet", "--hidden", "8", "--epochs", "1"]


@pytest.mark.finding(1, issue=18)
def test_the_users_own_files_are_never_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "params.npz").write_bytes(b"my own parameters")
    (out / "summary.json").write_text('{"mine": true}')
    _fails_cleanly(capsys, [*TINY, "--out", str(out)], "holds files paralens did not write")
    _fails_cleanly(capsys, [*TINY, "--out", str(out), "--resume"], "holds files paralens did not write")
    assert (out / "params.npz").read_bytes() == b"my own parameters"
    assert json.loads((out / "summary.json").read_text()) == {"mine": True}
    assert sorted(os.listdir(out)) == ["params.npz", "summary.json"]
    assert cli.main([*TINY, "--out", str(out), "--force"]) == 0  # asked for: replaced
    assert json.loads((out / "summary.json").read_text())["steps"] > 0


@pytest.mark.finding(2, issue=18)
def test_only_the_runs_own_temporaries_are_cleaned_up(tmp_path):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--out", str(out)]) == 0
    run = json.loads((out / cli.RECORD).read_text())["run"]
    theirs = [".notes.abcdefgh.tmp.txt", ".data.12345678.tmp", ".paralens-0123456789abcdef.x.abcdefgh.tmp"]
    for name in theirs:
        (out / name).write_text("keep me")
    ours = out / f".paralens-{run}.params.zzzzzzzz.tmp.npz"  # what a run killed mid-write leaves
    ours.write_text("half a file")
    assert cli.main([*TINY, "--out", str(out), "--resume"]) == 0
    assert not ours.exists()
    assert all((out / name).read_text() == "keep me" for name in theirs)


@pytest.mark.finding(14, issue=18)
def test_resuming_with_another_learning_rate_exits_2_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--out", str(out), "--learning-rate", "0.01"]) == 0
    _fails_cleanly(capsys, [*TINY, "--out", str(out), "--learning-rate", "0.5", "--resume"],
                   "--learning-rate 0.01 (now 0.5)")


@pytest.mark.finding(22, issue=18)
def test_sigterm_checkpoints_and_exits_143_with_the_resume_command(tmp_path):
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "paralens.backends.cli", "train", "--quiet", "--hidden", "16",
                          "--epochs", "400", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list((out / "checkpoints").glob("step_*")) and time.time() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err.decode()[-2000:]
    assert b"terminated after step" in err and b"--resume" in err and b"Traceback" not in err


@pytest.mark.finding(23, issue=18)
def test_a_tampered_checkpoint_is_one_line_of_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--out", str(out)]) == 0
    for f in (out / "checkpoints").glob("step_*/tree/*"):
        if f.is_file() and f.name != "_METADATA":
            f.write_bytes(b"\0" * 64)
    for f in (out / "checkpoints").glob("step_*/tree/**/d/*"):
        f.write_bytes(b"\0" * 64)
    code = cli.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-3000:]
    assert "checkpoint" in err and "step_" in err
