"""Export the digits MLP's training step as ONNX, with everything a runtime without Python needs:

    python examples/onnx_node/export.py OUT        # writes the files below into OUT
    cd examples/onnx_node && npm ci && node train.mjs OUT

* ``step.onnx``: one Adam step of the MLP ``(state, x, y) -> (new state, loss)``, its inputs named by
  the state's paths (``params/dense0.W``, ``opt/0/mu/dense0.W``, ..., ``x``, ``y``), its outputs the
  new state's (``new/params/dense0.W``, ...) and ``loss``;
* ``step.state.json`` and ``step.state.bin``: the initial state, each leaf's bytes little-endian,
  and for each leaf its dtype, shape, byte range and the output holding its next value;
* ``model.onnx``: the model alone, ``(params, x) -> logits``, for the test accuracy;
* ``digits.json`` and ``digits.bin``: scikit-learn's bundled digits, split as the examples split them.

Every file has its ``.sha256`` beside it. :func:`train` runs the same epochs with onnxruntime from
Python, the reference ``train.mjs`` is held to.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import paralens as pl
from paralens import backends
from paralens.backends import datasets
from paralens.backends.artifacts import read_verified, write_export
from paralens.backends.onnx import read_arrays, write_arrays


def export(out: str, hidden=(32,), learning_rate: float = 1e-2, seed: int = 0) -> dict:
    """Write the files into ``out``; return the learner and its initial state."""
    os.makedirs(out, exist_ok=True)
    learner = pl.Learner(pl.nn.mlp([64, *hidden, 10], activation=pl.nn.relu),
                         loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(learning_rate))
    state = learner.init(seed)
    learner.export(os.path.join(out, "step.onnx"), format="onnx", state=state)
    model = backends.get("onnx").to_onnx(learner.inference_model)
    write_export(os.path.join(out, "model.onnx"), model.SerializeToString())
    write_arrays(os.path.join(out, "digits"), dict(zip(("x_train", "y_train", "x_test", "y_test"), datasets.digits())))
    return {"learner": learner, "state": state}


def train(folder: str, epochs: int = 3, batch_size: int = 32) -> dict:
    """What ``train.mjs`` does, with onnxruntime from Python: full batches in order, each epoch.

    Returns:
        ``{"losses": mean loss of each epoch, "accuracy": test accuracy, "params": {name: list}}``.
    """
    import onnxruntime as ort

    from paralens.backends.onnx import load

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread: the same order of sums as train.mjs's session
    step = ort.InferenceSession(load(os.path.join(folder, "step.onnx")).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    model = ort.InferenceSession(load(os.path.join(folder, "model.onnx")).SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
    meta = json.loads(read_verified(os.path.join(folder, "step.state.json")))
    blob = read_verified(os.path.join(folder, meta["data"]))
    state = {e["name"]: np.frombuffer(blob[e["offset"]:e["offset"] + e["bytes"]], e["dtype"]).reshape(e["shape"])
             for e in meta["state"]}
    d = read_arrays(os.path.join(folder, "digits"))
    losses = []
    for _ in range(epochs):
        total, n = 0.0, len(d["x_train"]) // batch_size
        for b in range(n):
            at = slice(b * batch_size, (b + 1) * batch_size)
            outs = step.run(None, {**state, "x": d["x_train"][at], "y": d["y_train"][at]})
            got = dict(zip([o.name for o in step.get_outputs()], outs))
            state.update({e["name"]: got[e["output"]] for e in meta["state"] if e["output"]})
            total += float(got["loss"])
        losses.append(total / n)
    names = [i.name for i in model.get_inputs()]
    logits = model.run(None, {**{k: state[k] for k in names if k != "x"}, "x": d["x_test"]})[0]
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == d["y_test"]))
    return {"losses": losses, "accuracy": accuracy,
            "params": {k: v.ravel().tolist() for k, v in state.items() if k.startswith("params/")}}


def main(out: str = "onnx-digits", epochs: int = 3, progress: bool = True) -> dict:
    """Export into ``out`` and train there with onnxruntime from Python; returns :func:`train`'s result."""
    export(out)
    result = train(out, epochs)
    if progress:
        for e, loss in enumerate(result["losses"]):
            print(f"epoch {e + 1}: loss {loss:.6f}")
        print(f"test accuracy {result['accuracy']:.4f}")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="onnx-digits")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--export-only", action="store_true", help="write the files, train nothing")
    a = ap.parse_args()
    if a.export_only:
        export(a.out)
    else:
        main(a.out, a.epochs)
