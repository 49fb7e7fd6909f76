"""The ``paralens`` command.

    paralens train            train the built-in default (an MLP on the bundled 8x8 digits, JAX)
    paralens train --help     options: model, epochs, learning rate, output folder, ...
"""

from __future__ import annotations

import argparse
import json
import os
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
          learning_rate: float = 1e-3, seed: int = 0, out: str = "paralens-out", progress: bool = True) -> dict:
    """Train on the bundled digits and write the artifacts into ``out``; returns a summary dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import paralens as pl
    from paralens.backends import datasets
    from paralens.backends.training import train_classifier

    t0 = time.perf_counter()
    net, images = _build(model, hidden)
    learner, state, losses, acc = train_classifier(net, datasets.digits(images=images), epochs=epochs,
                                                   batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                                   progress=progress)
    os.makedirs(out, exist_ok=True)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(len(losses)), losses, lw=0.6, label="per step")
    per_epoch = len(losses) // max(epochs, 1)
    if per_epoch:
        means = losses[: per_epoch * epochs].reshape(epochs, per_epoch).mean(axis=1)
        ax.plot((np.arange(epochs) + 1) * per_epoch, means, "o-", label="epoch mean")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"{net.name[:60]}  (test accuracy {acc:.3f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"))
    plt.close(fig)
    pl.draw(net, os.path.join(out, "model.svg"))
    learner.compile("jax").export(os.path.join(out, "step.jaxexport"))
    np.savez(os.path.join(out, "params.npz"), **{k: np.asarray(v) for k, v in state["params"].items()})
    summary = {"model": net.name, "epochs": epochs, "steps": int(len(losses)), "final_loss": float(losses[-1]),
               "test_accuracy": acc, "seconds": round(time.perf_counter() - t0, 2),
               "files": sorted(os.listdir(out))}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="paralens", description="Learners as parametrised lenses.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    tr = sub.add_parser("train", help="train on scikit-learn's bundled 8x8 digits (default: an MLP, JAX)",
                        description="Train on the bundled digits and write into the output folder: loss.png "
                                    "(loss curve), model.svg (the model's diagram), step.jaxexport (the "
                                    "compiled training step, loadable with jax.export alone), params.npz "
                                    "(trained parameters, no pickle) and summary.json.")
    tr.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="model to train (default: mlp)")
    tr.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="MLP hidden widths (default: 128 128)")
    tr.add_argument("--epochs", type=int, default=30, help="passes over the training set (default: 30)")
    tr.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    tr.add_argument("--learning-rate", type=float, default=1e-3, help="Adam step size (default: 1e-3)")
    tr.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed (default: 0)")
    tr.add_argument("--out", default="paralens-out", help="output folder (default: ./paralens-out)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    s = train(args.model, tuple(args.hidden), args.epochs, args.batch_size, args.learning_rate, args.seed,
              args.out, progress=not args.quiet)
    print(f"{s['model']}: test accuracy {s['test_accuracy']:.4f} after {s['steps']} steps ({s['seconds']} s)")
    print(f"wrote {', '.join(s['files'])} to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
