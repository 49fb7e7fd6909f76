"""The ``paralens`` command.

    paralens train            train the built-in default (an MLP on the bundled 8x8 digits, JAX)
    paralens train --help     options: model, epochs, learning rate, output folder, ...
    paralens train --export jax onnx    the step exported for jax.export and as an ONNX model

The command owns the files it writes, and only those. Its output folder holds a run record
(``.paralens-run.json``): the run's id, its options and the names of its files. A file the
record does not name is never overwritten or deleted, unless ``--force``; ``--resume``
continues the run the record describes (with the same options). Every file is written under
a temporary name tagged with the run's id, and the artifacts of a run are all written before
any replaces an earlier one: a write that fails (a full disk) leaves every earlier file as it
was, and only the run's own leftover temporaries are ever cleaned up.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid

__all__ = ["main", "train", "ARTIFACTS", "RECORD"]

#: what ``paralens train`` writes into its output folder, besides ``summary.json`` (written last, with
#: each artifact's sha256), ``checkpoints/`` (orbax) and the run record
ARTIFACTS = ("loss.png", "model.svg", "step.jaxexport", "step.jaxexport.sha256", "params.npz")
#: the files of each export format (``--export``; the default is jax)
EXPORTS = {"jax": ("step.jaxexport", "step.jaxexport.sha256"), "onnx": ("step.onnx", "step.onnx.sha256")}
#: the run record: which run the folder holds, with which options, and its files
RECORD = ".paralens-run.json"
#: the names in the output folder a run of the default export writes (and so may replace, when they
#: are its own)
OWNED = ARTIFACTS + ("summary.json", "checkpoints")


def _owned(export) -> tuple[str, ...]:
    """The names a run exporting ``export`` (formats of :data:`EXPORTS`) writes: a format not asked
    for leaves its files alone, so a user's ``step.onnx`` does not stand in the way of a JAX run."""
    other = tuple(n for fmt in EXPORTS if fmt not in export for n in EXPORTS[fmt])
    return tuple(n for n in OWNED if n not in other) + tuple(n for fmt in export for n in EXPORTS[fmt]
                                                              if n not in OWNED)
#: the options a run is resumed with: they must be those it was started with
RESUMED_WITH = ("model", "hidden", "batch_size", "learning_rate", "seed")


def _build(kind: str, hidden):
    import paralens as pl

    if kind == "mlp":
        return pl.nn.mlp([64, *hidden, 10], activation=pl.nn.relu), False
    features = (pl.nn.conv2d(1, 16, 3, padding="same").at(pl.Array[8, 8, 1]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(16, 32, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    return features >> pl.nn.dense(features.cod[0].size, 10), True


class RunFolderError(ValueError):
    """The output folder cannot take this run without touching files that are not its own."""


class _Folder:
    """The output folder of one run: which of its files are the run's, and writing them."""

    def __init__(self, out: str):
        if not out:
            raise ValueError("--out must name a folder, got ''")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file, not a folder; name a folder for the artifacts")
        try:
            os.makedirs(out, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".paralens-probe.check.", suffix=".tmp", dir=out)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise ValueError(f"--out {out} cannot be written: {e.strerror or e}") from e
        self.out = out
        self.run: str | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def _record(self) -> dict | None:
        """The run record, or ``None`` when there is none; a record that is not one (edited, or
        another program's file) is refused."""
        try:
            with open(self.path(RECORD), encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{self.path(RECORD)} is not a paralens run record ({e}); move it away, or choose "
                                 "another --out") from None
        if not isinstance(record, dict) or not isinstance(record.get("run"), str) or \
                not isinstance(record.get("options"), dict):
            raise RunFolderError(f"{self.path(RECORD)} is not a paralens run record; move it away, or choose "
                                 "another --out")
        return record

    def claim(self, options: dict, *, resume: bool, force: bool, owned: tuple[str, ...] = OWNED) -> bool:
        """Make the folder this run's (its files ``owned``), or refuse; returns whether the run
        continues an earlier one of the same record (``--resume``)."""
        from paralens.backends.artifacts import remove_leftovers

        record = self._record()
        in_the_way = [n for n in owned if os.path.lexists(self.path(n))]
        continues = False
        if record is not None:
            earlier = record["options"]
            theirs = record.get("files") if isinstance(record.get("files"), list) else list(OWNED)
            foreign = [n for n in in_the_way if n not in theirs]  # this run writes more than the earlier one
            if foreign and not force:
                raise RunFolderError(f"--out {self.out} holds files paralens did not write ({', '.join(foreign)}); "
                                     "choose another --out, or pass --force to replace them")
            if resume:
                changed = [k for k in RESUMED_WITH if earlier.get(k) != options[k]]
                if changed:
                    said = ", ".join(f"--{k.replace('_', '-')} {_shown(earlier.get(k))} (now {_shown(options[k])})"
                                     for k in changed)
                    raise RunFolderError(f"--out {self.out} holds a run started with {said}; resume it with the "
                                         "options it was started with, or start another run with --force or "
                                         "another --out")
                continues = True
            elif in_the_way and not force:
                raise FileExistsError(f"{self.out} holds the files of an earlier run ({', '.join(in_the_way)}); "
                                      "pass --resume to continue it, --force to replace it, or choose another --out")
            else:  # --force: the earlier run's files are replaced (they are paralens's own)
                remove_leftovers(self.out, record["run"])
                if os.path.isdir(self.path("checkpoints")):
                    shutil.rmtree(self.path("checkpoints"))
        elif in_the_way:
            if not force:
                raise RunFolderError(f"--out {self.out} holds files paralens did not write ({', '.join(in_the_way)}); "
                                     "choose another --out, or pass --force to replace them")
            if os.path.isdir(self.path("checkpoints")):
                raise RunFolderError(f"--out {self.out} holds a checkpoints/ folder paralens did not write; even "
                                     "with --force it is not deleted: move it away, or choose another --out")
        self.run = record["run"] if continues else uuid.uuid4().hex[:16]
        remove_leftovers(self.out, self.run)
        remove_leftovers(self.out, "probe")  # the writability probe of a run killed at its start
        # files an earlier run wrote and this one does not (another --export) stay paralens's own
        kept = [n for n in theirs if n not in owned and os.path.lexists(self.path(n))] if record is not None else []
        self.write(RECORD, json.dumps({"run": self.run, "options": options, "files": list(owned) + kept},
                                      indent=2).encode())
        return continues

    def write(self, name: str, data: bytes):
        from paralens.backends.artifacts import write_bytes
        write_bytes(self.path(name), data, tag=self.run)

    def publish(self, files: dict[str, bytes], summary: dict):
        """Write ``files`` and then ``summary.json``, all or nothing: each is written whole under a
        temporary name first, and only when all are does any replace an earlier file."""
        staged = {}
        try:
            for name, data in [*files.items(), ("summary.json", _summary_bytes(summary))]:
                staged[name] = _staged(self.out, name, data, self.run)
        except BaseException:
            for tmp in staged.values():
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            raise
        with contextlib.suppress(FileNotFoundError):  # from here on no write can fail for want of space
            os.remove(self.path("summary.json"))
        for name, tmp in staged.items():
            if name != "summary.json":
                os.replace(tmp, self.path(name))
        os.replace(staged["summary.json"], self.path("summary.json"))
        from paralens.backends.artifacts import _fsync_folder
        _fsync_folder(os.path.abspath(self.out))


def _staged(folder: str, name: str, data: bytes, tag: str) -> str:
    """``data`` written and flushed to a temporary file of ``tag`` beside ``name``; its path."""
    from paralens.backends.artifacts import _prefix, _umask

    stem, ext = os.path.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f"{_prefix(tag)}{stem}.", suffix=f".tmp{ext}", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return tmp


def _summary_bytes(summary: dict) -> bytes:
    return json.dumps(summary, indent=2, allow_nan=False).encode()


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def train(model: str = "mlp", hidden=(128, 128), epochs: int = 30, batch_size: int = 32,
          learning_rate: float = 1e-3, seed: int = 0, out: str = "paralens-out", progress: bool = True,
          resume: bool = False, checkpoint_every: int | None = None, force: bool = False,
          export=("jax",)) -> dict:
    """Train on the bundled digits and write the artifacts into ``out``.

    The run is checkpointed in ``out/checkpoints`` (each epoch, or every ``checkpoint_every``
    steps). ``summary.json``, written last, lists each artifact's sha256: it describes
    exactly the files beside it. The folder's run record (``.paralens-run.json``) names the
    run and its files; see the module's docstring for what the command may touch.

    Args:
        model: ``"mlp"`` or ``"cnn"``.
        hidden: the MLP's hidden widths.
        epochs: passes over the training set (in all, counting those of a resumed run).
        batch_size: examples per step.
        learning_rate: Adam's step size.
        seed: initialisation and data-order seed.
        out: the output folder.
        progress: show a progress bar.
        resume: continue the run checkpointed in ``out`` (started with the same options).
        checkpoint_every: save a checkpoint every so many steps (default: each epoch).
        force: replace files in ``out`` that are in the way (an earlier run's, or files paralens
            did not write); a ``checkpoints/`` folder paralens did not write is never deleted.
        export: the formats the trained step is exported in: ``"jax"`` (``step.jaxexport``) and
            ``"onnx"`` (``step.onnx``), each with its ``.sha256``.

    Returns:
        The summary: model, epochs, steps, final loss, test accuracy, seconds, files and their sha256.

    Raises:
        ValueError: ``out`` cannot be written, or it holds files this run may not touch
            (:class:`RunFolderError`), or a resumed run's options differ.
        FileExistsError: ``out`` holds an earlier run and neither ``resume`` nor ``force`` is given.
        OSError: a file cannot be written (a full disk); every earlier file is then as it was.
    """
    import hashlib
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import paralens as pl
    from paralens.backends import datasets
    from paralens.backends.artifacts import export_digest
    from paralens.backends.fitting import NonFiniteLossWarning
    from paralens.backends.training import train_classifier

    t0 = time.perf_counter()
    export = tuple(dict.fromkeys((export,) if isinstance(export, str) else export))
    unknown = [f for f in export if f not in EXPORTS]
    if unknown or not export:
        raise ValueError(f"export formats are {', '.join(EXPORTS)}, got {', '.join(map(repr, export)) or 'none'}")
    from paralens import backends
    for fmt in export:  # before training: an export whose library is missing (onnx) fails first, not last
        backends.get(fmt)
    folder = _Folder(out)
    options = {"model": model, "hidden": list(hidden), "batch_size": batch_size, "learning_rate": learning_rate,
               "seed": seed}
    continues = folder.claim(options, resume=resume, force=force, owned=_owned(export))
    net, images = _build(model, hidden)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        learner, state, losses, acc = train_classifier(
            net, datasets.digits(images=images), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            seed=seed, progress=progress, checkpoint_dir=folder.path("checkpoints"), every=checkpoint_every,
            resume=continues)
    stopped = [str(w.message) for w in caught if issubclass(w.category, NonFiniteLossWarning)]

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(losses)), losses, lw=0.6, label="per step")
    per_epoch = len(losses) // max(epochs, 1)
    if per_epoch and not stopped:
        means = losses[: per_epoch * epochs].reshape(epochs, per_epoch).mean(axis=1)
        ax.plot((np.arange(epochs) + 1) * per_epoch, means, "o-", label="epoch mean")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"{net.name[:60]}  (test accuracy {acc:.3f})")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    npz = io.BytesIO()
    np.savez(npz, **{k: np.asarray(v) for k, v in state["params"].items()})
    files = {"loss.png": png.getvalue(), "model.svg": pl.draw(net).encode(), "params.npz": npz.getvalue()}
    for fmt in export:
        name, _ = EXPORTS[fmt]
        blob = bytes(learner.export(None, format=fmt))
        files.update({name: blob, f"{name}.sha256": export_digest(name, blob)})
    final = float(losses[-1]) if len(losses) else None
    summary = {"model": net.name, "epochs": epochs, "steps": int(len(losses)),
               "final_loss": final if final is not None and np.isfinite(final) else None,
               "test_accuracy": acc, "stopped": stopped[0] if stopped else None,
               "seconds": round(time.perf_counter() - t0, 2), "files": sorted(files),
               "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}}
    folder.publish(files, summary)
    summary["files"] = sorted(files) + ["summary.json"]
    return summary


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _resume_command(argv) -> str:
    again = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--resume", "--force")]
    return "paralens " + " ".join(shlex.quote(a) for a in again) + " --resume"


def main(argv=None) -> int:
    """Run the ``paralens`` command.

    Args:
        argv: the arguments (``sys.argv[1:]`` by default).

    Returns:
        The exit status: 0 on success, 2 for an error in the options, the data or the output
        folder (one line on stderr, no traceback), 130 when interrupted (Ctrl-C) and 143 when
        terminated (SIGTERM), with the run checkpointed.
    """
    ap = argparse.ArgumentParser(prog="paralens", description="Learners as parametrised lenses.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    tr = sub.add_parser("train", help="train on scikit-learn's bundled 8x8 digits (default: an MLP, JAX)",
                        description="Train on the bundled digits and write into the output folder: loss.png "
                                    "(loss curve), model.svg (the model's diagram), step.jaxexport (the "
                                    "compiled training step, loadable with jax.export alone) and its checksum "
                                    "step.jaxexport.sha256, params.npz (trained parameters, no pickle), "
                                    "summary.json (written last, with each file's sha256), checkpoints/ "
                                    "(orbax) and the run record .paralens-run.json. Every file is written "
                                    "atomically, and no file paralens did not write is touched without "
                                    "--force. Ctrl-C or SIGTERM saves a checkpoint; --resume continues from it.")
    tr.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="model to train (default: mlp)")
    tr.add_argument("--hidden", type=_positive_int, nargs="+", default=[128, 128],
                    help="MLP hidden widths (default: 128 128)")
    tr.add_argument("--epochs", type=_positive_int, default=30, help="passes over the training set (default: 30)")
    tr.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default: 32)")
    tr.add_argument("--learning-rate", type=_positive_float, default=1e-3, help="Adam step size (default: 1e-3)")
    tr.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default: 0)")
    tr.add_argument("--out", default="paralens-out", help="output folder (default: ./paralens-out)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run checkpointed in OUT/checkpoints (same options), or start one")
    tr.add_argument("--force", action="store_true",
                    help="replace files in OUT that are in the way: an earlier run's, or files paralens did "
                         "not write")
    tr.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="STEPS",
                    help="save a checkpoint every STEPS steps (default: each epoch)")
    tr.add_argument("--export", nargs="+", choices=list(EXPORTS), default=["jax"], metavar="FORMAT",
                    help="export the training step as jax (step.jaxexport: StableHLO, needs JAX to run) and/or "
                         "onnx (step.onnx: an ONNX model onnxruntime runs from C++, C#, Java, JavaScript and "
                         "Python), each with its .sha256 (default: jax)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    from paralens.backends.checkpoint import CheckpointError
    from paralens.backends.fitting import TrainingInterrupted

    try:
        s = train(args.model, tuple(args.hidden), args.epochs, args.batch_size, args.learning_rate, args.seed,
                  args.out, progress=not args.quiet, resume=args.resume, checkpoint_every=args.checkpoint_every,
                  force=args.force, export=tuple(args.export))
    except TrainingInterrupted as e:
        print(f"\n{e.signal_name} after step {e.step}; the run is checkpointed in {e.checkpoint}.\n"
              f"resume with: {_resume_command(argv)}", file=sys.stderr)
        return 143 if e.signal_name == "terminated" else 130
    except KeyboardInterrupt:
        print(f"\ninterrupted; no file in {args.out} is half-written. Resume with: {_resume_command(argv)}",
              file=sys.stderr)
        return 130
    except FileExistsError as e:
        print(f"paralens train: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, CheckpointError, ImportError) as e:
        print(f"paralens train: error: {e}", file=sys.stderr)
        return 2
    if s["stopped"]:
        print(f"warning: {s['stopped']}", file=sys.stderr)
    print(f"{s['model']}: test accuracy {s['test_accuracy']:.4f} after {s['steps']} steps ({s['seconds']} s)")
    print(f"wrote {', '.join(s['files'])} to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
