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
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of one run in ``directory`` (created if needed), the last ``keep`` kept."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        import orbax.checkpoint as ocp

        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"keep must be a positive int (how many checkpoints to keep), got {keep!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint_dir {self.directory} is a file, not a folder")
        self._ocp = ocp
        # Synchronous saves: a run's next chunk donates the buffers a background save would read.
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                                 enable_async_checkpointing=False))

    def steps(self) -> list[int]:
        """The steps that have a committed checkpoint, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state, losses, record: dict) -> None:
        """Save the state after ``step`` steps, the losses of those steps, and ``record``."""
        args = self._ocp.args
        losses = np.asarray(losses)
        tree = {"state": _storable(state), "losses": losses}
        record = {**record, "step": int(step), "losses_dtype": losses.dtype.name}  # float64 runs stay float64
        self._manager.save(int(step), args=args.Composite(tree=args.StandardSave(tree), record=args.JsonSave(record)),
                           force=True)
        self._manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """``(state, losses, record)`` of checkpoint ``step`` (the latest by default); the state
        takes the structure, dtypes and array type (NumPy or JAX) of ``like``."""
        step = self.latest() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        args = self._ocp.args
        record = self._manager.restore(step, args=args.Composite(record=args.JsonRestore()))["record"]
        template = {"state": _storable(like), "losses": np.zeros(record["step"], record.get("losses_dtype", "float32"))}
        try:
            out = self._manager.restore(step, args=args.Composite(tree=args.StandardRestore(template)))["tree"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"the checkpoint at step {step} in {self.directory} does not hold this learner's "
                             f"state (another model or optimizer?): {e}") from e
        _same_layout(out["state"], template["state"], f"the checkpoint at step {step} in {self.directory}")
        return _unstorable(out["state"], like), np.asarray(out["losses"]), record

    def close(self):
        self._manager.close()


def _same_layout(got, want, where: str, path: str = "state"):
    """orbax restores what was stored, whatever the template's shapes: compare them."""
    if isinstance(want, dict):
        if set(got) != set(want):
            raise ValueError(f"{where} does not hold this learner's state: {path} has {sorted(got)}, "
                             f"expected {sorted(want)}")
        for k in want:
            _same_layout(got[k], want[k], where, f"{path}[{k!r}]")
    elif isinstance(want, (tuple, list)):
        for i, (g, w) in enumerate(zip(got, want)):
            _same_layout(g, w, where, f"{path}[{i}]")
    elif (np.shape(got), np.asarray(got).dtype) != (np.shape(want), np.dtype(want.dtype)):
        raise ValueError(f"{where} does not hold this learner's state (another model or optimizer?): {path} "
                         f"is {np.asarray(got).dtype}{list(np.shape(got))} there, "
                         f"{np.dtype(want.dtype)}{list(np.shape(want))} here")


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
