"""Kill ``paralens train`` at random moments (SIGKILL and SIGINT, by its own pid), including while
it writes its files: every file in its output folder loads or is absent, and ``--resume`` ends
with the uninterrupted run's parameters, bit for bit, and its accuracy."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest

from paralens.backends import cli
from paralens.backends.artifacts import _TEMPORARY, load_export
from paralens.backends.checkpoint import Checkpoints

OPTIONS = ["train", "--quiet", "--hidden", "16", "--epochs", "3", "--learning-rate", "0.01", "--checkpoint-every", "10"]
KILLS = 20


def _launch(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "paralens.backends.cli", *OPTIONS, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ,
                                                                                "JAX_PLATFORMS": "cpu"})


def _run(out, *extra):
    p = _launch(out, *extra)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr.decode()[-3000:]
    return json.loads((out / "summary.json").read_text())


def _params(out):
    with np.load(out / "params.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _learner():
    import paralens as pl
    net, _ = cli._build("mlp", (16,))
    return pl.Learner(net, loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))


def check_every_file_loads(out):
    """Each file present is whole: it loads as what it claims to be. Returns the names seen."""
    names = set(os.listdir(out))
    for name in names:
        path = out / name
        if _TEMPORARY.fullmatch(name):
            continue  # a killed writer's temporary file: never read, removed by the next run
        if name == "params.npz":
            assert sorted(_params(out)) == ["dense0.W", "dense0.b", "dense1.W", "dense1.b"]
        elif name == "summary.json":
            summary = json.loads(path.read_text())
            for f, digest in summary["sha256"].items():  # it describes exactly the files beside it
                assert hashlib.sha256((out / f).read_bytes()).hexdigest() == digest, f
        elif name == "step.jaxexport":
            jax.export.deserialize(bytearray(path.read_bytes()))
            if (out / "step.jaxexport.sha256").exists():
                load_export(path)
        elif name == "step.jaxexport.sha256":
            assert len(path.read_text().split()) == 2
        elif name == "loss.png":
            assert path.read_bytes().startswith(b"\x89PNG") and path.read_bytes().endswith(b"IEND\xaeB`\x82")
        elif name == "model.svg":
            ET.fromstring(path.read_bytes())
        elif name == "checkpoints":
            assert not [c for c in os.listdir(path) if c.startswith("step_") and not os.listdir(path / c)]
        else:
            pytest.fail(f"unexpected file {name}")
    if (out / "checkpoints").exists():
        ckpt = Checkpoints(out / "checkpoints")
        if ckpt.latest() is not None:  # the latest committed checkpoint restores whole
            state, losses, record = ckpt.restore(_learner().init(backend="jax"))
            assert record["step"] == ckpt.latest() == len(losses)
            assert set(state) == {"params", "opt", "hyper", "step"} and int(state["step"]) == record["step"]
        ckpt.close()
    return names


def _kill_repeatedly(out, kills: int, seconds: float, seed: int):
    """Start ``paralens train --resume`` ``kills`` times and kill it at a random moment of a run's
    length, alternating SIGKILL and SIGINT; check the folder after each."""
    rng = np.random.default_rng(seed)
    seen, exits = set(), []
    for i in range(kills):
        p = _launch(out, "--resume")
        time.sleep(rng.uniform(0.5, seconds * 1.1))
        sig = (signal.SIGKILL, signal.SIGINT)[i % 2]
        p.send_signal(sig)
        _, stderr = p.communicate(timeout=120)
        exits.append(p.returncode)
        if sig == signal.SIGINT and p.returncode == 130:
            assert b"--resume" in stderr and b"Traceback" not in stderr, stderr.decode()[-2000:]
        seen |= check_every_file_loads(out)
    return seen, exits


@pytest.mark.slow
@pytest.mark.finding(1)
@pytest.mark.finding(2)
@pytest.mark.finding(4)
def test_killed_twenty_times_then_resumed_equals_the_uninterrupted_run(tmp_path):
    """Two output folders, killed 10 times each (in parallel, one per core), then resumed."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    whole = _run(tmp_path / "whole")
    seconds = time.perf_counter() - t0
    folders = [tmp_path / "killed0", tmp_path / "killed1"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: _kill_repeatedly(folders[i], KILLS // 2, seconds, i), range(2)))
    seen = set().union(*(r[0] for r in results))
    exits = [e for r in results for e in r[1]]
    for out in folders:
        resumed = _run(out, "--resume")
        assert not [n for n in os.listdir(out) if _TEMPORARY.fullmatch(n)]
        assert resumed["test_accuracy"] == whole["test_accuracy"] >= 0.9
        assert resumed["steps"] == whole["steps"]
        for k, v in _params(tmp_path / "whole").items():
            assert np.array_equal(_params(out)[k], v), k
    # the kills landed in different phases: while training (SIGINT answered by a checkpoint), after files
    assert len(exits) == KILLS and -signal.SIGKILL in exits and 130 in exits
    assert {"params.npz", "summary.json", "checkpoints"} <= seen
