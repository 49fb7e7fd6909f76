"""Export the Iris learner's training step as ONNX for the page in this folder, which trains it in the
browser with onnxruntime-web and draws the loss as it falls:

    python examples/onnx_web/export.py             # writes build/: step.onnx, its state, iris data
    cd examples/onnx_web && npm ci                 # onnxruntime-web, served from this machine
    python examples/onnx_web/serve.py              # then open http://127.0.0.1:8000/

The learner is ``examples/iris.py``'s with a hidden layer: sigmoid MLP, mean squared error, SGD,
full batch. :func:`train` runs the same steps with onnxruntime from Python, the reference the page
is held to.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import paralens as pl
from paralens.backends import datasets
from paralens.backends.artifacts import read_verified
from paralens.backends.onnx import load, read_arrays, write_arrays

HERE = os.path.dirname(os.path.abspath(__file__))


def export(out: str = os.path.join(HERE, "build"), hidden: int = 8, learning_rate: float = 2.0,
           seed: int = 0) -> None:
    """Write ``step.onnx`` (with ``step.state.json``, ``step.state.bin``) and ``iris.json``/``iris.bin``."""
    os.makedirs(out, exist_ok=True)
    learner = pl.Learner(pl.nn.mlp([4, hidden, 3], activation=pl.nn.sigmoid, final_activation=pl.nn.sigmoid),
                         loss=pl.losses.mse(), optimizer=pl.optim.sgd(learning_rate))
    learner.export(os.path.join(out, "step.onnx"), format="onnx", state=learner.init(seed))
    x, y, labels = datasets.iris()
    write_arrays(os.path.join(out, "iris"), {"x": x, "y": y, "labels": labels.astype(np.int32)})


def train(folder: str = os.path.join(HERE, "build"), steps: int = 300) -> list[float]:
    """The page's training with onnxruntime from Python: ``steps`` full-batch steps; the losses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(load(os.path.join(folder, "step.onnx")).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    meta = json.loads(read_verified(os.path.join(folder, "step.state.json")))
    blob = read_verified(os.path.join(folder, meta["data"]))
    state = {e["name"]: np.frombuffer(blob[e["offset"]:e["offset"] + e["bytes"]], e["dtype"]).reshape(e["shape"])
             for e in meta["state"]}
    data = read_arrays(os.path.join(folder, "iris"))
    names = [o.name for o in session.get_outputs()]
    losses = []
    for _ in range(steps):
        got = dict(zip(names, session.run(None, {**state, "x": data["x"], "y": data["y"]})))
        state.update({e["name"]: got[e["output"]] for e in meta["state"] if e["output"]})
        losses.append(float(got["loss"]))
    return losses


def main(out: str = os.path.join(HERE, "build"), steps: int = 300, progress: bool = True) -> list[float]:
    """Export into ``out`` and train there from Python; returns the losses."""
    export(out)
    losses = train(out, steps)
    if progress:
        print(f"{steps} steps in onnxruntime from Python: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    return losses


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "build"))
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    main(a.out, a.steps)
