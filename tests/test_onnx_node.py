"""examples/onnx_node: Node trains the exported digits step with onnxruntime-node, without Python, to
the numbers of onnxruntime from Python on the same files."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from examples_loader import ROOT, load

EXAMPLE = ROOT / "examples" / "onnx_node"
pytest.importorskip("onnxruntime")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm")
def test_node_trains_the_exported_step_as_python_onnxruntime_does(tmp_path):
    # onnxruntime-node into the example's own (ignored) node_modules, once; it ships its CPU binaries, and
    # its install script would fetch CUDA ones from the network
    if not (EXAMPLE / "node_modules" / "onnxruntime-node" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, capture_output=True,
                       timeout=300, env=dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip"))
    example = load("onnx_node/export")
    out = tmp_path / "export"
    example.export(str(out))
    r = subprocess.run(["node", "train.mjs", str(out), "--epochs", "2", "--json", str(tmp_path / "node.json")],
                       cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("epoch 1: loss ") and lines[-1].startswith("test accuracy ")
    node = json.loads((tmp_path / "node.json").read_text())
    python = example.train(str(out), epochs=2)
    assert node["losses"][1] < node["losses"][0]
    np.testing.assert_allclose(node["losses"], python["losses"], rtol=1e-6)
    assert abs(node["accuracy"] - python["accuracy"]) <= 1e-6 and python["accuracy"] > 0.85
    assert node["params"].keys() == python["params"].keys()
    for k in python["params"]:
        np.testing.assert_allclose(node["params"][k], python["params"][k], rtol=1e-6, atol=1e-7, err_msg=k)
    # a changed state file is refused, by Node as by paralens
    data = bytearray((out / "step.state.bin").read_bytes())
    data[0] ^= 1
    (out / "step.state.bin").write_bytes(bytes(data))
    r = subprocess.run(["node", "train.mjs", str(out)], cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "does not match its checksum" in r.stderr
