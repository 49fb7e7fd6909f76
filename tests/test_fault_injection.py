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
from paralens.backends.artifacts import is_temporary, load_export
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
        if is_temporary(name):
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
        elif name == cli.RECORD:
            assert json.loads(path.read_text())["files"]
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
        assert not [n for n in os.listdir(out) if is_temporary(n)]
        assert resumed["test_accuracy"] == whole["test_accuracy"] >= 0.9
        assert resumed["steps"] == whole["steps"]
        for k, v in _params(tmp_path / "whole").items():
            assert np.array_equal(_params(out)[k], v), k
    # the kills landed in different phases: while training (SIGINT answered by a checkpoint), after files
    assert len(exits) == KILLS and -signal.SIGKILL in exits and 130 in exits
    assert {"params.npz", "summary.json", "checkpoints"} <= seen


# ---------------------------------------------------------------- round two: a full disk, two writers

TINY = ["train", "--quiet", "--hidden", "8", "--epochs", "1"]


def _files(folder):
    """Every file under ``folder`` with its bytes (the earlier run's, to compare after)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fill(disk, leave: int):
    """Fill the file system of ``disk`` to ``leave`` bytes free."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush, and fail, on close
        try:
            while f.write(b"\0" * 65536):
                pass
        except OSError:
            pass
    st = os.statvfs(disk)
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - max(0, leave - st.f_bavail * st.f_frsize)))
    return filler


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (mounting needs root: skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.finding(3, issue=18)
def test_a_full_disk_leaves_every_earlier_file_and_the_run_resumes(small_disk, tmp_path, capsys):
    out = small_disk / "run"
    assert cli.main([*TINY, "--out", str(out)]) == 0
    before = _files(out)
    filler = _fill(small_disk, 20_000)
    code = cli.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err, err[-2000:]
    after = _files(out)
    for name, data in before.items():  # every earlier file is as it was (summary.json included)
        assert after.get(name) == data, name
    filler.unlink()
    assert cli.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert cli.main([*TINY, "--epochs", "2", "--out", str(whole)]) == 0
    for k, v in _params(whole).items():
        assert np.array_equal(_params(out)[k], v), k


@pytest.mark.finding(3, issue=18)
def test_a_full_disk_during_a_checkpointed_fit_keeps_the_checkpoints_and_resumes(small_disk):
    import paralens as pl

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 16)).astype(np.float32), rng.integers(0, 4, 60).astype(np.int32)

    def learner():
        return pl.Learner(pl.nn.mlp([16, 256, 4]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                          optimizer=pl.optim.adam(1e-2))
    kw = dict(batch_size=10, progress=False)
    ck = small_disk / "ck"
    learner().fit(x, y, epochs=1, checkpoint_dir=ck, **kw)
    before = _files(ck)
    filler = _fill(small_disk, 20_000)
    with pytest.raises(Exception, match="No space left|ENOSPC|RESOURCE_EXHAUSTED|space"):
        learner().fit(x, y, epochs=3, checkpoint_dir=ck, resume=True, **kw)
    after = _files(ck)
    assert all(after.get(name) == data for name, data in before.items() if "step_6" in name)
    filler.unlink()
    resumed, losses = learner().fit(x, y, epochs=3, checkpoint_dir=ck, resume=True, **kw)
    whole, whole_losses = learner().fit(x, y, epochs=3, **kw)
    assert np.array_equal(losses, whole_losses)
    for k in whole["params"]:
        assert np.array_equal(np.asarray(resumed["params"][k]), np.asarray(whole["params"][k])), k


@pytest.mark.finding(7, issue=18)
def test_two_concurrent_fits_on_one_folder_one_runs_the_other_fails_fast(tmp_path):
    script = (
        "import sys, numpy as np, paralens as pl\n"
        "rng = np.random.default_rng(int(sys.argv[2]))\n"
        "x, y = rng.standard_normal((64, 8)).astype(np.float32), rng.integers(0, 3, 64).astype(np.int32)\n"
        "L = pl.Learner(pl.nn.mlp([8, 16, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),\n"
        "               optimizer=pl.optim.adam(1e-2))\n"
        "L.fit(x, y, epochs=40, batch_size=8, checkpoint_dir=sys.argv[1], every=8, keep=3, seed=int(sys.argv[2]),\n"
        "      progress=False)\n"
        "print('done')\n")
    folder = tmp_path / "ck"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(folder), str(seed)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for seed in (1, 2)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    ran = [r for r in results if r[1] == 0]
    refused = [r for r in results if r[1] != 0]
    assert len(ran) == 1 and len(refused) == 1, [(c, e[-500:]) for (_, e), c in results]
    (_, err), _ = refused[0]
    assert b"CheckpointLockedError" in err and b"is being written by another process (pid" in err
    steps = sorted(p.name for p in folder.iterdir() if p.name.startswith("step_"))
    assert len(steps) <= 3
    from paralens.backends.checkpoint import Checkpoints
    seeds = set()
    with Checkpoints(folder) as ck:
        for s in ck.steps():
            seeds.add(ck._manager.restore(s, args=ck._ocp.args.Composite(
                record=ck._ocp.args.JsonRestore()))["record"]["seed"])
    assert len(seeds) == 1  # all of one run
