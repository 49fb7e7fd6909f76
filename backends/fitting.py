"""The training loop every array backend shares: data order, checkpoints, interruption, health.

A run is a sequence of steps over a fixed data order: epoch ``e`` visits the
examples in the order ``numpy.random.default_rng([seed, e]).permutation(n)``,
in batches of ``batch_size`` (the last incomplete batch is dropped). Where a
run stands is therefore one number, the steps taken, which the returned state
carries as ``state["step"]`` (the step term counts it): a later ``fit`` from
that state continues the same order, and two fits of 5 epochs give the state one fit of 10 gives.

The steps run as the backend's scanned step (one ``lax.scan`` on JAX) over
chunks that end at each epoch's end and, with ``checkpoint_dir``, at every
``every``-th step, where a checkpoint is saved (:mod:`.checkpoint`). Ctrl-C,
and SIGTERM (what SLURM, Kubernetes and systemd send before killing), are
answered at the next chunk's end: the state is saved and
:class:`TrainingInterrupted` raised, carrying it. A non-finite loss stops the
run, raises, or is let through, as ``on_nonfinite`` says.

Resuming continues the run the checkpoint holds, as it was: the data, the batch
size, the seed, the backend and the hyperparameters must be those of the
checkpointed run, and the run must not already be past the steps asked for;
anything else is refused, naming what differs and what to do.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
import zlib

import numpy as np

__all__ = ["fit", "TrainingInterrupted", "NonFiniteLossWarning", "ON_NONFINITE"]

#: what ``fit`` does when a step's loss is NaN or infinite
ON_NONFINITE = ("stop", "raise", "continue")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during ``fit``: raised at the end of the chunk of steps that was running.

    Args:
        message: what happened and how to resume.
        state: the run's state so far (nothing is lost).
        losses: the run's losses so far.
        step: the steps taken.
        checkpoint: the folder holding a checkpoint of them (``None`` without ``checkpoint_dir``).
        signal_name: ``"interrupted"`` (SIGINT, Ctrl-C) or ``"terminated"`` (SIGTERM).
    """

    def __init__(self, message: str, *, state, losses, step: int, checkpoint: str | None,
                 signal_name: str = "interrupted"):
        super().__init__(message)
        self.state, self.losses, self.step, self.checkpoint = state, losses, step, checkpoint
        self.signal_name = signal_name


class NonFiniteLossWarning(RuntimeWarning):
    """A training step's loss was NaN or infinite."""


def fit(backend, step, state, x, y, *, epochs: int, batch_size: int, seed: int, progress: bool,
        desc: str = "training", checkpoint_dir=None, every: int | None = None, keep: int = 3, resume: bool = False,
        on_nonfinite: str = "stop", classes: int | None = None, step_options: dict | None = None,
        static_hyper: dict | None = None):
    """Run ``step`` (a learner's step term) from ``state`` until ``epochs`` epochs are done.

    Args:
        backend: the array backend that runs it.
        step: the learner's step term.
        state: the training state to start from (its ``step`` entry says where in the data order).
        x: the inputs, one per example.
        y: the labels, one per example.
        epochs: epochs in all, counted from the start of the run.
        batch_size: examples per step (the last incomplete batch of an epoch is dropped).
        seed: the data order's seed.
        progress: show a progress bar.
        desc: the progress bar's label.
        checkpoint_dir: where to checkpoint the run (``None``: nowhere).
        every: checkpoint every so many steps (default: each epoch).
        keep: how many checkpoints to keep.
        resume: continue the run checkpointed in ``checkpoint_dir``.
        on_nonfinite: ``"stop"``, ``"raise"`` or ``"continue"`` when a loss is NaN or infinite.
        classes: the labels are class indices, checked to lie in ``0..classes-1``.
        step_options: more options of ``backend.compile_step`` (JAX: ``sharding``, ``state_axes``).
        static_hyper: the hyperparameters the step compiled in, by name (a learner's
            ``static_hyper`` and their values): recorded in each checkpoint; a resume whose values
            differ is refused.

    Returns:
        ``(state, losses)``, one loss per step of this run.

    Raises:
        ValueError: bad data or options; a checkpoint of another run, or beyond ``epochs``,
            or with other hyperparameters, to resume from.
        FileExistsError: ``checkpoint_dir`` holds checkpoints and ``resume`` is false.
        FloatingPointError: a loss is not finite and ``on_nonfinite="raise"``.
        TrainingInterrupted: Ctrl-C or SIGTERM (the run is checkpointed first).
    """
    from .validate import positive_int, training_data

    x, y, batch_size = training_data(step, x, y, batch_size, classes)
    epochs = positive_int(epochs, "epochs", zero=True)
    seed = positive_int(seed, "seed", zero=True)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
    n = len(x)
    k = n // batch_size
    if every is not None:
        every = positive_int(every, "every")
    elif checkpoint_dir is not None:
        every = k
    counted = "step" in step.in_sig[0].keys  # else (a circuit's step) the count is kept here
    start = positive_int(int(state.get("step", 0)), 'state["step"]', zero=True)
    if not counted:
        state = {**state, "step": np.asarray(start, np.int32)}
    record = {"seed": seed, "batch_size": batch_size, "examples": n, "data_crc": _fingerprint(x, y),
              "backend": backend.name, "static_hyper": {k: float(v) for k, v in sorted((static_hyper or {}).items())}}
    history = []
    ckpt = None
    if checkpoint_dir is not None:
        from .checkpoint import Checkpoints
        ckpt = Checkpoints(checkpoint_dir, keep=keep)
    try:
        if ckpt is not None:
            latest = ckpt.latest()
            if latest is not None:
                if not resume:
                    raise FileExistsError(f"{ckpt.directory} holds checkpoints up to step {latest} of an earlier "
                                          "run; pass resume=True to continue it, or choose an empty checkpoint_dir")
                given = state
                saved = ckpt.record(latest)  # the run's own checks first: they name what differs
                _same_static(saved.get("static_hyper", {}), record["static_hyper"], ckpt.directory)
                state, done, saved = ckpt.restore(state, latest)
                _same_run(saved, record, ckpt.directory)
                _same_hyper(state, given, ckpt.directory)
                start, history = saved["start"], [done]
                if start + len(done) > start + epochs * k:
                    raise ValueError(f"cannot resume from {ckpt.directory}: its run is at step {start + len(done)}, "
                                     f"past the {epochs * k} steps of epochs={epochs}; pass epochs >= "
                                     f"{-(-len(done) // k)} to go on, or restore the state itself with "
                                     "paralens.backends.checkpoint.Checkpoints(...).restore(state)")
        record["start"] = start
        return _run(backend, step, state, x, y, record, history, ckpt, start=start, epochs=epochs, k=k,
                    batch_size=batch_size, seed=seed, every=every, counted=counted, progress=progress, desc=desc,
                    on_nonfinite=on_nonfinite, step_options=step_options or {})
    finally:
        if ckpt is not None:
            ckpt.close()


def _run(backend, step, state, x, y, record, history, ckpt, *, start, epochs, k, batch_size, seed, every,
         counted, progress, desc, on_nonfinite, step_options):
    """The loop of :func:`fit` over chunks of steps, once its data and checkpoints are set up."""
    n = len(x)
    t, target = start + sum(map(len, history)), start + epochs * k
    many = backend.compile_step(step, scan=True, **backend.fit_options, **step_options)
    bar = _bar(progress, desc, epochs, (t - start) // max(k, 1))
    saved_at = t if ckpt is not None and history else None
    with _deferred_signals() as interrupted:
        while t < target:
            epoch, i = divmod(t, k)
            end = min((epoch + 1) * k, target)
            if every:
                end = min(end, (t // every + 1) * every)
            order = np.random.default_rng([seed, epoch]).permutation(n)[i * batch_size:(end - epoch * k) * batch_size]
            xs, ys = (_batches(v, order, end - t, batch_size) for v in (x, y))
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below, once
                new, losses = many(state, xs, ys)
                losses = np.asarray(losses)
            if not np.all(np.isfinite(losses)) and on_nonfinite != "continue":
                first = t + int(np.flatnonzero(~np.isfinite(losses))[0])
                message = (f"the loss became {losses[first - t]} at step {first}"
                           + (f" (the last good checkpoint is step {saved_at} in {ckpt.directory})"
                              if saved_at is not None else "")
                           + "; lower the learning rate, check the data, or pass on_nonfinite='continue'")
                if on_nonfinite == "raise":
                    raise FloatingPointError(message)
                warnings.warn(f"training stopped: {message}. Returning the state before step {t}.",
                              NonFiniteLossWarning, stacklevel=4)
                break
            if not np.all(np.isfinite(losses)):
                warnings.warn(f"non-finite loss at step {t + int(np.flatnonzero(~np.isfinite(losses))[0])}, "
                              "training continues (on_nonfinite='continue')", NonFiniteLossWarning, stacklevel=4)
            state, t = (new if counted else {**new, "step": np.asarray(end, np.int32)}), end
            history.append(losses)
            if ckpt is not None and (t % every == 0 or t == target):
                ckpt.save(t, state, np.concatenate(history), record)
                saved_at = t
            if bar is not None and t % k == 0:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(history[-1]):.4f}")
            if interrupted.is_set() and t < target:
                if ckpt is not None and saved_at != t:
                    ckpt.save(t, state, np.concatenate(history), record)
                    saved_at = t
                where = (f"a checkpoint is in {ckpt.directory}: resume with fit(..., checkpoint_dir="
                         f"{ckpt.directory!r}, resume=True)" if ckpt is not None else
                         "the state so far is on this exception's .state (pass checkpoint_dir= to save it)")
                raise TrainingInterrupted(f"training {interrupted.name} after step {t} of {target}; {where}",
                                          state=state, losses=_joined(history), step=t,
                                          checkpoint=ckpt.directory if ckpt is not None else None,
                                          signal_name=interrupted.name)
    if bar is not None:
        bar.close()
    return state, _joined(history)


def _joined(history) -> np.ndarray:
    return np.concatenate(history) if history else np.zeros(0, np.float32)


def _batches(v, order, steps: int, batch_size: int):
    return v[order].reshape((steps, batch_size) + v.shape[1:])


def _fingerprint(x, y) -> int:
    """A CRC of the data's shapes, dtypes and bytes (of any dtype: bfloat16 too)."""
    crc = 0
    for v in (x, y):
        raw = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
        crc = zlib.crc32(raw.data, zlib.crc32(str((v.shape, v.dtype.name)).encode(), crc))
    return crc


def _same_run(saved: dict, now: dict, where: str):
    for key, what in (("data_crc", "the data"), ("examples", "the number of examples"),
                      ("batch_size", "the batch size"), ("seed", "the seed"), ("backend", "the backend")):
        if saved.get(key) != now[key]:
            raise ValueError(f"cannot resume from {where}: {what} differs from the checkpointed run's "
                             f"({saved.get(key)} then, {now[key]} now)")


def _same_static(saved: dict, now: dict, where: str):
    """A resumed run goes on with the hyperparameters its step compiled in (a learner's
    ``static_hyper``, by name): a learner built with others is refused, naming them."""
    changed = [f"{k}={saved.get(k, 'run-time')} there, {now.get(k, 'run-time')} here"
               for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        raise ValueError(f"cannot resume from {where}: its run compiled in other hyperparameters than this "
                         f"learner's static_hyper ({'; '.join(changed)}). Resume with the learner it was started "
                         "with; to go on with new values, restore the state and fit(state=...) into a new "
                         "checkpoint_dir")


def _same_hyper(restored: dict, given: dict, where: str):
    """A resumed run goes on with the hyperparameters it was checkpointed with: a learner built
    with others (another learning rate) is refused, naming them and the way to change them."""
    saved, now = restored.get("hyper", {}), given.get("hyper", {})
    changed = []
    for name in sorted(set(saved) & set(now)):
        a, b = np.asarray(saved[name]), np.asarray(now[name])
        if a.shape != b.shape or not np.array_equal(a, b):
            changed.append(f"{name}={a!s} there, {b!s} here")  # str: NumPy prints a float32 at its precision
    if changed:
        raise ValueError(f"cannot resume from {where}: its run has other hyperparameters than this learner "
                         f"({'; '.join(changed)}). Resume with the learner it was started with; to go on with "
                         "new values, restore the state (Checkpoints(...).restore), set them with "
                         "learner.set_hyper(state, ...) and fit(state=...) into a new checkpoint_dir")


def _bar(progress: bool, desc: str, epochs: int, done: int):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=epochs, initial=min(done, epochs), desc=desc, unit="epoch")


class _Flag:
    """Set by the first Ctrl-C or SIGTERM; ``name`` says which ("interrupted" or "terminated")."""

    def __init__(self):
        self._event = threading.Event()
        self.name = "interrupted"

    def set(self, name: str):
        self.name = name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def _deferred_signals():
    """Turn the first Ctrl-C (SIGINT) or SIGTERM into a flag the loop reads between chunks; a
    second one acts at once, as it would have without this. A signal the process ignores stays
    ignored. Signals reach only the main thread, so elsewhere this does nothing."""
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {}
    for sig, name in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
        before = signal.getsignal(sig)
        if before is signal.SIG_IGN:
            continue
        if before is None:  # installed from C: Python cannot reinstall it
            before = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        previous[sig] = before

        def handler(signum, frame, name=name):
            flag.set(name)
            for s, h in previous.items():  # a second signal acts as it would have
                signal.signal(s, h)
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
