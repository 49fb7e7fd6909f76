"""Files paralens writes: atomically, and the export with a checksum its loader verifies.

Every artifact is written to a temporary name in the destination's folder,
flushed to disk, and renamed into place (``os.replace``, atomic on POSIX and
Windows): a reader sees the old file or the new one, never half of either,
and a crash while writing leaves the earlier good file where it was.

A temporary file's name says whose it is: ``.paralens-<tag>.<name>.<random>.tmp<ext>``.
:func:`remove_leftovers` removes those of one tag only (the ``paralens`` command
uses its run's id), so a file of the user's is never taken for a leftover.

An exported training step (``step.jaxexport``) gets a checksum file beside it
(``step.jaxexport.sha256``, in ``sha256sum`` format, so ``sha256sum -c``
checks it too). :func:`load_export` verifies it before deserializing; the
artifact itself stays loadable by ``jax.export.deserialize`` alone. The checksum
is integrity, not authentication: it catches a file changed by accident (a
truncated copy, a flipped bit), not one replaced on purpose together with its
checksum file. To trust an artifact that comes from elsewhere, keep its digest
apart from it, where it cannot be replaced with it, or sign it.

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

__all__ = ["atomic_path", "write_bytes", "remove_leftovers", "is_temporary", "write_export", "load_export",
           "read_verified", "CorruptArtifactError", "checksum_path", "export_digest"]

CHECKSUM_SUFFIX = ".sha256"


class CorruptArtifactError(ValueError):
    """An artifact does not match its checksum, or cannot be read as what it claims to be."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, tag: str = "tmp"):
    """A temporary path in ``path``'s folder that becomes ``path`` when the block exits without an
    exception; on an exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to write.
        tag: marks the temporary file's name (``.paralens-<tag>.<name>...``), so that
            :func:`remove_leftovers` of the same tag finds it after a crash. Letters, digits
            and ``_`` only.

    Yields:
        The temporary path to write (same extension as ``path``).

    Raises:
        ValueError: ``tag`` has other characters.
        OSError: the temporary file cannot be made, written or renamed (a full disk, no
            permission); ``path`` is then as it was.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f"{_prefix(tag)}{stem}.", suffix=f".tmp{ext}", dir=folder)
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


def _prefix(tag: str) -> str:
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9_]+", tag):
        raise ValueError(f"a temporary file's tag is letters, digits and _, got {tag!r}")
    return f".paralens-{tag}."


def is_temporary(name: str, tag: str | None = None) -> bool:
    """Whether ``name`` is the name of a temporary file :func:`atomic_path` made (with ``tag``, or
    with any tag).

    Args:
        name: a file name (no folder).
        tag: the tag it must carry; ``None``: any.

    Returns:
        ``True`` for ``.paralens-<tag>.<anything>.<8 random characters>.tmp`` with an optional
        extension.
    """
    head = re.escape(_prefix(tag)) if tag is not None else r"\.paralens-[A-Za-z0-9_]+\."
    return re.fullmatch(head + r".+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?", name) is not None


def remove_leftovers(folder: str | os.PathLike, tag: str) -> list[str]:
    """Remove the temporary files of ``tag`` that a killed writer left in ``folder``.

    Args:
        folder: the folder to clean.
        tag: whose leftovers: only the temporary files :func:`atomic_path` made with this tag
            (``.paralens-<tag>.`` ... ``.tmp``) are removed, never another file.

    Returns:
        The names removed.
    """
    gone = []
    for name in os.listdir(folder):
        if is_temporary(name, tag):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                gone.append(name)
    return gone


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


def write_bytes(path: str | os.PathLike, data: bytes, *, tag: str = "tmp") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Args:
        path: the file to write.
        data: its new contents.
        tag: the tag of the temporary file.
    """
    with atomic_path(path, tag=tag) as tmp, open(tmp, "wb") as f:
        f.write(data)


def checksum_path(path: str | os.PathLike) -> str:
    """The checksum file of an artifact.

    Args:
        path: the artifact.

    Returns:
        ``path + ".sha256"``.
    """
    return os.fspath(path) + CHECKSUM_SUFFIX


def export_digest(path: str | os.PathLike, blob: bytes) -> bytes:
    """The contents of the checksum file of the artifact ``path`` holding ``blob``: one
    ``sha256sum`` line, ``<hex digest>  <file name>``.

    Args:
        path: the artifact's path (its file name goes in the line).
        blob: the artifact's bytes.

    Returns:
        The line, newline included, as bytes.
    """
    return f"{hashlib.sha256(blob).hexdigest()}  {os.path.basename(os.fspath(path))}\n".encode()


def write_export(path: str | os.PathLike, blob: bytes, *, tag: str = "tmp") -> None:
    """Write a serialized ``jax.export`` artifact and its checksum beside it, both atomically.

    The checksum goes second, so a crash in between leaves an artifact whose
    checksum is stale or absent, which :func:`load_export` refuses, never a
    checksum that vouches for a file it does not describe.

    Args:
        path: the artifact's file.
        blob: the serialized export (:meth:`~paralens.backends.jax.CompiledStep.export`).
        tag: the tag of the temporary files.
    """
    path = os.fspath(path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(checksum_path(path))
    write_bytes(path, blob, tag=tag)
    write_bytes(checksum_path(path), export_digest(path, blob), tag=tag)


def read_verified(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, after checking them against ``path + ".sha256"``.

    Args:
        path: the artifact.

    Returns:
        Its bytes, which match the digest of its checksum file.

    Raises:
        CorruptArtifactError: the checksum file is missing, is not a ``sha256sum`` line, or does not
            match the artifact.
        FileNotFoundError: the artifact itself is missing.
    """
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
    """A ``jax.export.Exported`` read from ``path``, after verifying its checksum::

        exp = load_export("paralens-out/step.jaxexport")
        new_state, loss = exp.call(state, x, y)

    Args:
        path: the artifact, with its checksum file beside it.

    Returns:
        The deserialized ``jax.export.Exported``.

    Raises:
        CorruptArtifactError: (a ``ValueError``) naming the file, when the checksum is missing or does
            not match, or when the verified bytes do not deserialize.
    """
    from jax import export as jex

    blob = read_verified(path)
    try:
        return jex.deserialize(bytearray(blob))
    except Exception as e:  # noqa: BLE001 - the flatbuffer reader raises anything on bad bytes
        raise CorruptArtifactError(f"{os.fspath(path)} matches its checksum but is not a jax.export "
                                   f"artifact: {type(e).__name__}: {e}") from e
