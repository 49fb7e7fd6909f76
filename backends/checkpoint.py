"""Checkpoints of a training run, with orbax-checkpoint.

orbax is what JAX users expect: each checkpoint is written to a temporary
folder and committed by a rename (a crash leaves the previous checkpoints
intact and no half-written one visible), only the last ``keep`` are kept,
arrays are stored as tensorstore arrays (no pickle), and the same format
scales to sharded, multi-host states.

A checkpoint holds the whole run: the training state (parameters, optimizer
state, hyperparameters, the random key where there is one), the losses so
far, and a JSON record of where the run stands (steps taken, the data order's
seed, batch size, and a fingerprint of the data), so a resumed run continues
with the same batches in the same order and ends bit for bit where the
uninterrupted run would.

A checkpoint of step 30 is the folder ``step_30``: a folder of the user's named ``30``
is never read as one. One process writes a folder at a time: it holds a lock
(``.paralens-lock``, which names it) while it is open; a second process is refused
with the holder's pid, host and start time, and the lock of a process that died is
released with it (an ``flock``), so it never goes stale. The half-written checkpoint
of a writer that died (or ran out of disk) is removed by the next writer.

>>> import tempfile, numpy as np
>>> ckpt = Checkpoints(tempfile.mkdtemp(), keep=2)
>>> state = {"params": {"w": np.ones(3, np.float32)}}
>>> for step in (10, 20, 30):
...     ckpt.save(step, state, np.zeros(step, np.float32), {"seed": 0})
>>> ckpt.steps()
[20, 30]
>>> restored, losses, record = ckpt.restore(state)
>>> record["step"], len(losses), restored["params"]["w"].dtype
(30, 30, dtype('float32'))
>>> ckpt.close()
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import threading
import time

import numpy as np

__all__ = ["Checkpoints", "CheckpointError", "CheckpointLockedError", "STEP_PREFIX", "LOCK"]

#: a checkpoint's folder is ``step_<n>``
STEP_PREFIX = "step"
#: the lock file of the process writing a checkpoint folder
LOCK = ".paralens-lock"


class CheckpointError(ValueError):
    """A checkpoint cannot be read as this learner's run: the message names the checkpoint's
    folder and what is wrong with it."""


class CheckpointLockedError(RuntimeError):
    """Another process is writing the checkpoint folder; the message names it (pid, host, since)."""


class Checkpoints:
    """The checkpoints of one run in ``directory`` (created if needed), the last ``keep`` kept.

    Args:
        directory: the folder of the run's checkpoints.
        keep: how many checkpoints to keep (the latest ones).

    Raises:
        ValueError: ``keep`` is not a positive int, or ``directory`` is a file.
        CheckpointLockedError: another live process holds the folder.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        import orbax.checkpoint as ocp

        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"keep must be a positive int (how many checkpoints to keep), got {keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint_dir {self.directory} is a file, not a folder")
        os.makedirs(self.directory, exist_ok=True)
        self._lock = _Lock(os.path.join(self.directory, LOCK)) if _primary() else None
        self._ocp = ocp
        # Synchronous saves: a run's next chunk donates the buffers a background save would read.
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                                     step_prefix=STEP_PREFIX,
                                                                     cleanup_tmp_directories=True,
                                                                     enable_async_checkpointing=False))
        except BaseException:
            self._release()
            raise

    def steps(self) -> list[int]:
        """The steps that have a committed checkpoint, oldest first.

        Returns:
            The step numbers.
        """
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest(self) -> int | None:
        """The latest step with a committed checkpoint.

        Returns:
            The step, or ``None`` when there is none.
        """
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, losses, record: dict) -> None:
        """Save the state after ``step`` steps, the losses of those steps, and ``record``.

        Args:
            step: the steps the state has taken.
            state: the training state (a pytree of arrays).
            losses: the loss of each step so far.
            record: where the run stands (seed, batch size, data fingerprint, ...), as JSON.

        Raises:
            OSError: the checkpoint cannot be written (``errno.ENOSPC``: the disk is full); the
                earlier checkpoints are untouched, and the half-written one is removed by the
                next writer.
        """
        args = self._ocp.args
        losses = np.asarray(losses)
        tree = {"state": _storable(state), "losses": losses}
        record = {**record, "step": int(step), "losses_dtype": losses.dtype.name}  # float64 runs stay float64
        with _quiet_orbax():
            try:
                self._manager.save(int(step), args=args.Composite(tree=args.StandardSave(tree),
                                                                  record=args.JsonSave(record)), force=True)
                self._manager.wait_until_finished()
            except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise their own kinds
                full = "No space left" in str(e) or "RESOURCE_EXHAUSTED" in str(e)
                raise OSError(errno.ENOSPC if full else errno.EIO,
                              f"cannot save the checkpoint of step {step} in {self.directory} "
                              f"({'No space left on device' if full else _first_line(e)}); the earlier checkpoints "
                              "are as they were") from None

    def record(self, step: int | None = None) -> dict:
        """The record of the run a checkpoint saved (its seed, batch size, data fingerprint, ...),
        without its state: what a resume checks before reading the state.

        Args:
            step: which checkpoint; ``None``: the latest.

        Returns:
            The record, a dict with the checkpoint's ``step``.

        Raises:
            FileNotFoundError: there is no checkpoint.
            CheckpointError: the record cannot be read, or is not a paralens run's.
        """
        step = self.latest() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        where = os.path.join(self.directory, f"{STEP_PREFIX}_{step}")
        args = self._ocp.args
        with _quiet_orbax():
            try:
                record = self._manager.restore(step, args=args.Composite(record=args.JsonRestore()))["record"]
            except Exception as e:  # noqa: BLE001 - orbax raises anything on a damaged file
                raise CheckpointError(f"the checkpoint {where} cannot be read: its record "
                                      f"({os.path.join(where, 'record')}) is damaged or missing "
                                      f"({type(e).__name__}: {_first_line(e)})") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) or record["step"] != step:
                raise CheckpointError(f"the checkpoint {where} holds a record that is not a paralens run's, or "
                                      f"of another step ({str(record)[:120]})")
        return record

    def restore(self, like, step: int | None = None):
        """The checkpoint of ``step`` (the latest by default), shaped as ``like``.

        Args:
            like: a state of this learner: the restored state takes its structure, dtypes and
                array type (NumPy or JAX).
            step: which checkpoint; ``None``: the latest.

        Returns:
            ``(state, losses, record)``.

        Raises:
            FileNotFoundError: there is no checkpoint.
            CheckpointError: the checkpoint cannot be read (a damaged or edited file), or it holds
                another learner's state; the message names its folder and what differs.
        """
        record = self.record(step)
        step = record["step"]
        where = os.path.join(self.directory, f"{STEP_PREFIX}_{step}")
        args = self._ocp.args
        with _quiet_orbax():
            template = {"state": _storable(like),
                        "losses": np.zeros(record["step"], record.get("losses_dtype", "float32"))}
            try:
                out = self._manager.restore(step, args=args.Composite(tree=args.StandardRestore(template)))["tree"]
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"the checkpoint {where} cannot be read as this learner's state "
                                      f"(another model or optimizer, or a damaged file under "
                                      f"{os.path.join(where, 'tree')}): {type(e).__name__}: {_first_line(e)}") \
                    from None
        _same_layout(out["state"], template["state"], f"the checkpoint {where}")
        return _unstorable(out["state"], like), np.asarray(out["losses"]), record

    def close(self):
        """Close the manager and release the folder's lock."""
        try:
            self._manager.close()
        finally:
            self._release()

    def _release(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self):  # a manager dropped without close() lets the folder go with it
        if getattr(self, "_lock", None) is not None:
            self._release()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc):
        self.close()


def _primary() -> bool:
    """Whether this process writes the folder: all but the first of several JAX processes share
    the first's checkpoints (orbax coordinates them)."""
    jax = sys.modules.get("jax")
    try:
        return jax is None or jax.process_index() == 0
    except Exception:  # noqa: BLE001 - JAX without a backend yet
        return True


class _Lock:
    """An exclusive lock on a checkpoint folder, held while a :class:`Checkpoints` is open. Where
    ``fcntl`` exists (POSIX) it is an ``flock``, which the system releases when its process dies;
    elsewhere the lock file's pid is checked. The file names the holder."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise CheckpointLockedError(self._held()) from None
            elif _alive(self._holder()):  # pragma: no cover
                raise CheckpointLockedError(self._held())
            me = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(me).encode(), 0)
            os.fsync(self.fd)
        except BaseException:
            os.close(self.fd)
            raise

    def _holder(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
            if isinstance(holder, dict):
                return holder
        return {}

    def _held(self) -> str:
        h = self._holder()
        return (f"{os.path.dirname(self.path)} is being written by another process (pid {h.get('pid', '?')} on "
                f"{h.get('host', '?')}, since {h.get('since', '?')}): one run writes a checkpoint folder at a "
                "time; wait for it to end, or choose another checkpoint_dir")

    def release(self):
        """Let another process take the folder."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)


def _alive(holder: dict) -> bool:  # pragma: no cover - the fallback where fcntl is missing
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return bool(holder)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_QUIET = {"depth": 0, "levels": None, "lock": threading.Lock()}


@contextlib.contextmanager
def _quiet_orbax():
    """orbax and absl log a traceback of their own for an error they raise: the error we raise in
    its place says what is wrong, once. Nested or in several threads at once, only the outermost
    context sets the levels and puts them back (one that restored another's CRITICAL would leave
    JAX silent for the rest of the process)."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "orbax.checkpoint", "jax")]
    entered = False
    try:  # entered inside the try: a Ctrl-C arriving as it is set up still puts the levels back
        with _QUIET["lock"]:
            if _QUIET["depth"] == 0:
                _QUIET["levels"] = [lg.level for lg in loggers]
            _QUIET["depth"] += 1
            entered = True
            for lg in loggers:
                lg.setLevel(logging.CRITICAL)
        yield
    finally:
        with _QUIET["lock"]:
            if entered:
                _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0 and _QUIET["levels"] is not None:
                for lg, level in zip(loggers, _QUIET["levels"]):
                    lg.setLevel(level)


def _first_line(e: BaseException, n: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:n]


def _same_layout(got, want, where: str, path: str = "state"):
    """orbax restores what was stored, whatever the template's shapes: compare them."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            raise CheckpointError(f"{where} does not hold this learner's state: {path} has "
                                  f"{sorted(got) if isinstance(got, dict) else type(got).__name__}, expected "
                                  f"{sorted(want)}")
        for k in want:
            _same_layout(got[k], want[k], where, f"{path}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        for i, (g, w) in enumerate(zip(got, want)):
            _same_layout(g, w, where, f"{path}[{i}]")
    elif (np.shape(got), _dtype(got)) != (np.shape(want), np.dtype(want.dtype)):
        raise CheckpointError(f"{where} does not hold this learner's state (another model or optimizer?): {path} "
                              f"is {_dtype(got)}{list(np.shape(got))} there, "
                              f"{np.dtype(want.dtype)}{list(np.shape(want))} here")


def _dtype(value) -> np.dtype:
    """An array's dtype, read without fetching it (a sharded array may span other processes)."""
    return np.dtype(value.dtype) if hasattr(value, "dtype") else np.asarray(value).dtype


def _storable(tree):
    """Python scalars (a step count) become 0-d arrays: orbax stores arrays."""
    if isinstance(tree, dict):
        return {k: _storable(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_storable(v) for v in tree)
    if isinstance(tree, (int, float, np.generic)):
        return np.asarray(tree)
    return tree


def _unstorable(tree, like):
    if isinstance(like, dict):
        return {k: _unstorable(tree[k], v) for k, v in like.items()}
    if isinstance(like, (tuple, list)):
        return type(like)(_unstorable(t, v) for t, v in zip(tree, like))
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        return type(like)(np.asarray(tree))
    return tree
