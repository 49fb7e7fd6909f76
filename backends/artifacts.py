"""Files paralens writes: atomically, and the export with a checksum its loader verifies.

Every artifact is written to a temporary name in the destination's folder,
flushed to disk, and renamed into place (``os.replace``, atomic on POSIX and
Windows): a reader sees the old file or the new one, never half of either,
and a crash while writing leaves the earlier good file where it was.

An exported training step (``step.jaxexport``) gets a checksum file beside it
(``step.jaxexport.sha256``, in ``sha256sum`` format, so ``sha256sum -c``
checks it too). :func:`load_export` verifies it before deserializing; the
artifact itself stays loadable by ``jax.export.deserialize`` alone.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> with atomic_path(os.path.join(d, "notes.txt")) as tmp:
...     _ = open(tmp, "w").write("all or nothing")
>>> open(os.path.join(d, "notes.txt")).read()
'all or nothing'
>>> sorted(os.listdir(d))  # no temporary file is left behind
['notes.txt']
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile

__all__ = ["atomic_path", "write_bytes", "remove_leftovers", "write_export", "load_export", "read_verified",
           "CorruptArtifactError", "checksum_path"]

CHECKSUM_SUFFIX = ".sha256"


class CorruptArtifactError(ValueError):
    """An artifact does not match its checksum, or cannot be read as what it claims to be."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """A temporary path in ``path``'s folder (same extension) that becomes ``path`` when the
    block exits without an exception; on an exception the temporary file is removed and
    ``path`` is untouched."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given; mkstemp makes it private
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the data must be on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_folder(folder)


def remove_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files a killed writer left in ``folder`` (never read: their names
    start with a dot and end in ``.tmp`` plus an extension); returns their names."""
    gone = []
    for name in os.listdir(folder):
        if _TEMPORARY.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                gone.append(name)
    return gone


#: the names :func:`atomic_path` gives its temporary files
_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: str):
    """Make the rename itself durable (where the platform can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def checksum_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + CHECKSUM_SUFFIX


def write_export(path: str | os.PathLike, blob: bytes) -> None:
    """Write a serialized ``jax.export`` artifact and its checksum beside it, both atomically.

    The checksum goes second, so a crash in between leaves an artifact whose
    checksum is stale or absent, which :func:`load_export` refuses, never a
    checksum that vouches for a file it does not describe.
    """
    path = os.fspath(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(checksum_path(path))
    write_bytes(path, blob)
    digest = hashlib.sha256(blob).hexdigest()
    write_bytes(checksum_path(path), f"{digest}  {os.path.basename(path)}\n".encode())


def read_verified(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, after checking them against ``path + ".sha256"``."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read()
    try:
        with open(checksum_path(path), encoding="ascii") as f:
            line = f.read()
    except FileNotFoundError:
        raise CorruptArtifactError(f"{path}: its checksum file {checksum_path(path)} is missing, so the "
                                   "artifact cannot be trusted (it may be from an interrupted write); "
                                   "export it again, or read it unchecked with jax.export.deserialize") from None
    except UnicodeDecodeError:
        raise CorruptArtifactError(f"{checksum_path(path)} is not a sha256sum line") from None
    parts = line.split()
    if len(parts) != 2 or len(parts[0]) != 64:
        raise CorruptArtifactError(f"{checksum_path(path)} is not a sha256sum line: {line[:80]!r}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != parts[0]:
        raise CorruptArtifactError(f"{path} does not match its checksum (sha256 {digest[:12]}..., expected "
                                   f"{parts[0][:12]}...): the file was changed or truncated after it was "
                                   f"written ({len(blob)} bytes); export it again")
    return blob


def load_export(path: str | os.PathLike):
    """A ``jax.export.Exported`` read from ``path``, after verifying its checksum.

    Raises :class:`CorruptArtifactError` (a ``ValueError``) naming the file when
    the checksum is missing or does not match, or when the verified bytes do
    not deserialize::

        exp = load_export("paralens-out/step.jaxexport")
        new_state, loss = exp.call(state, x, y)
    """
    from jax import export as jex

    blob = read_verified(path)
    try:
        return jex.deserialize(bytearray(blob))
    except Exception as e:  # noqa: BLE001 - the flatbuffer reader raises anything on bad bytes
        raise CorruptArtifactError(f"{os.fspath(path)} matches its checksum but is not a jax.export "
                                   f"artifact: {type(e).__name__}: {e}") from e
