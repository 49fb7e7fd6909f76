"""The ``paralens`` command.

    paralens train            train the built-in default (an MLP on the bundled 8x8 digits, JAX)
    paralens train --help     options: model, epochs, learning rate, output folder, ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time

__all__ = ["main", "train"]


def _build(kind: str, hidden):
    import paralens as pl

    if kind == "mlp":
        return pl.nn.mlp([64, *hidden, 10], activation=pl.nn.relu), False
    features = (pl.nn.conv2d(1, 16, 3, padding="same").at(pl.Array[8, 8, 1]) >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.conv2d(16, 32, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    return features >> pl.nn.dense(features.cod[0].size, 10), True


def train(model: str = "mlp", hidden=(128, 128), epochs: int = 30, batch_size: int = 32,
          learning_rate: float = 1e-3, seed: int = 0, out: str = "paralens-out", progress: bool = True,
          resume: bool = False, checkpoint_every: int | None = None) -> dict:
    """Train on the bundled digits and write the artifacts into ``out``; returns a summary dict.

    The run is checkpointed in ``out/checkpoints`` (each epoch, or every
    ``checkpoint_every`` steps); ``resume=True`` continues it from there. Every
    file is written atomically, and ``summary.json``, written last, lists each
    artifact's sha256: it describes exactly the files beside it, and it is
    removed while a new run is writing them.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import paralens as pl
    from paralens.backends import datasets
    from paralens.backends.artifacts import atomic_path, write_bytes
    from paralens.backends.fitting import NonFiniteLossWarning
    from paralens.backends.training import train_classifier

    t0 = time.perf_counter()
    _writable_folder(out)
    net, images = _build(model, hidden)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteLossWarning)
        learner, state, losses, acc = train_classifier(
            net, datasets.digits(images=images), epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            seed=seed, progress=progress, checkpoint_dir=os.path.join(out, "checkpoints"), every=checkpoint_every,
            resume=resume)
    stopped = [str(w.message) for w in caught if issubclass(w.category, NonFiniteLossWarning)]
    summary_path = os.path.join(out, "summary.json")
    if os.path.exists(summary_path):  # about to replace the files it describes
        os.remove(summary_path)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(losses)), losses, lw=0.6, label="per step")
    per_epoch = len(losses) // max(epochs, 1)
    if per_epoch and not stopped:
        means = losses[: per_epoch * epochs].reshape(epochs, per_epoch).mean(axis=1)
        ax.plot((np.arange(epochs) + 1) * per_epoch, means, "o-", label="epoch mean")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"{net.name[:60]}  (test accuracy {acc:.3f})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(os.path.join(out, "loss.png")) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    pl.draw(net, os.path.join(out, "model.svg"))
    learner.compile("jax").export(os.path.join(out, "step.jaxexport"))
    with atomic_path(os.path.join(out, "params.npz")) as tmp:
        np.savez(tmp, **{k: np.asarray(v) for k, v in state["params"].items()})
    files = sorted(f for f in os.listdir(out) if f in ARTIFACTS)
    final = float(losses[-1]) if len(losses) else None
    summary = {"model": net.name, "epochs": epochs, "steps": int(len(losses)),
               "final_loss": final if final is not None and np.isfinite(final) else None,
               "test_accuracy": acc, "stopped": stopped[0] if stopped else None,
               "seconds": round(time.perf_counter() - t0, 2), "files": files,
               "sha256": {f: _sha256(os.path.join(out, f)) for f in files}}
    write_bytes(summary_path, json.dumps(summary, indent=2, allow_nan=False).encode())
    summary["files"] = files + ["summary.json"]
    return summary


#: what ``paralens train`` writes into its output folder (besides ``summary.json`` and ``checkpoints/``)
ARTIFACTS = ("loss.png", "model.svg", "step.jaxexport", "step.jaxexport.sha256", "params.npz")


def _sha256(path: str) -> str:
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _writable_folder(out: str):
    """Fail before training, not after it, when ``out`` cannot take the artifacts."""
    import tempfile

    from paralens.backends.artifacts import remove_leftovers

    if not out:
        raise ValueError("--out must name a folder, got ''")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder; name a folder for the artifacts")
    try:
        os.makedirs(out, exist_ok=True)
        remove_leftovers(out)
        fd, probe = tempfile.mkstemp(prefix=".paralens-probe-", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--out {out} cannot be written: {e.strerror or e}") from e


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
    again = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"]
    return "paralens " + " ".join(shlex.quote(a) for a in again) + " --resume"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="paralens", description="Learners as parametrised lenses.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    tr = sub.add_parser("train", help="train on scikit-learn's bundled 8x8 digits (default: an MLP, JAX)",
                        description="Train on the bundled digits and write into the output folder: loss.png "
                                    "(loss curve), model.svg (the model's diagram), step.jaxexport (the "
                                    "compiled training step, loadable with jax.export alone) and its checksum "
                                    "step.jaxexport.sha256, params.npz (trained parameters, no pickle), "
                                    "summary.json (written last, with each file's sha256) and checkpoints/ "
                                    "(orbax). Every file is written atomically. Ctrl-C saves a checkpoint; "
                                    "--resume continues from it.")
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
    tr.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="STEPS",
                    help="save a checkpoint every STEPS steps (default: each epoch)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    from paralens.backends.fitting import TrainingInterrupted

    try:
        s = train(args.model, tuple(args.hidden), args.epochs, args.batch_size, args.learning_rate, args.seed,
                  args.out, progress=not args.quiet, resume=args.resume, checkpoint_every=args.checkpoint_every)
    except TrainingInterrupted as e:
        print(f"\ninterrupted after step {e.step}; the run is checkpointed in {e.checkpoint}.\n"
              f"resume with: {_resume_command(argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"\ninterrupted; no file in {args.out} is half-written. Resume with: {_resume_command(argv)}",
              file=sys.stderr)
        return 130
    except FileExistsError as e:
        print(f"paralens train: error: {args.out} already holds a checkpointed run; pass --resume to continue it, "
              f"or choose another --out ({e})", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:
        print(f"paralens train: error: {e}", file=sys.stderr)
        return 2
    if s["stopped"]:
        print(f"warning: {s['stopped']}", file=sys.stderr)
    print(f"{s['model']}: test accuracy {s['test_accuracy']:.4f} after {s['steps']} steps ({s['seconds']} s)")
    print(f"wrote {', '.join(s['files'])} to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
