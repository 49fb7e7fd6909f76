"""Atomic files and the checksummed export (backends/artifacts.py)."""

import hashlib
import os

import jax
import numpy as np
import pytest

import paralens as pl
from paralens.backends.artifacts import CorruptArtifactError, atomic_path, load_export, write_bytes


@pytest.mark.finding(1)
@pytest.mark.finding(2)
def test_a_crash_while_writing_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "params.npz"
    with atomic_path(path) as tmp:
        np.savez(tmp, a=np.arange(3), b=np.ones(2))
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")  # what a crash mid-write leaves
        raise RuntimeError("killed")
    with np.load(path) as z:
        assert z.files == ["a", "b"] and np.array_equal(z["a"], np.arange(3))
    assert os.listdir(tmp_path) == ["params.npz"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(0.1))
    path = tmp_path_factory.mktemp("export") / "step.jaxexport"
    learner.compile("jax").export(str(path))
    return learner, path


def test_the_checksum_is_sha256sum_format_and_jax_alone_still_loads(exported):
    learner, path = exported
    blob = path.read_bytes()
    digest, name = (path.parent / "step.jaxexport.sha256").read_text().split()
    assert digest == hashlib.sha256(blob).hexdigest() and name == "step.jaxexport"
    state = learner.init(backend="jax")
    x, y = np.ones((5, 3), np.float32), np.array([0, 1, 0, 1, 1], np.int32)
    plain = jax.export.deserialize(blob).call(state, x, y)
    checked = load_export(path).call(state, x, y)
    np.testing.assert_array_equal(plain[1], checked[1])


@pytest.mark.finding(39)
@pytest.mark.finding(40)
def test_every_single_flipped_byte_is_refused(exported, tmp_path):
    """The sweep flips each byte of the file in turn (all of them): the loader refuses every one,
    with the same clear error, before anything is deserialized."""
    _, path = exported
    blob = path.read_bytes()
    target = tmp_path / "step.jaxexport"
    write_bytes(str(target) + ".sha256", (path.parent / "step.jaxexport.sha256").read_bytes())
    refused = 0
    tampered = bytearray(blob)
    for i in range(len(blob)):
        tampered[i] ^= 0xFF
        with open(target, "wb") as f:
            f.write(tampered)
        tampered[i] ^= 0xFF
        try:
            load_export(target)
        except CorruptArtifactError as e:
            refused += "does not match its checksum" in str(e)
    assert refused == len(blob) > 1000


@pytest.mark.finding(38)
@pytest.mark.parametrize("keep", [0, 1, 100, -1])
def test_a_truncated_export_is_refused(exported, tmp_path, keep):
    _, path = exported
    blob = path.read_bytes()
    target = tmp_path / "step.jaxexport"
    target.write_bytes(blob[:keep] if keep >= 0 else blob[:keep])
    write_bytes(str(target) + ".sha256", (path.parent / "step.jaxexport.sha256").read_bytes())
    with pytest.raises(CorruptArtifactError, match=r"changed or truncated after it was written \(\d+ bytes\)"):
        load_export(target)


def test_a_missing_or_garbled_checksum_is_refused(exported, tmp_path):
    _, path = exported
    target = tmp_path / "step.jaxexport"
    target.write_bytes(path.read_bytes())
    with pytest.raises(CorruptArtifactError, match="checksum file .* is missing"):
        load_export(target)
    (tmp_path / "step.jaxexport.sha256").write_text("nonsense\n")
    with pytest.raises(CorruptArtifactError, match="not a sha256sum line"):
        load_export(target)
