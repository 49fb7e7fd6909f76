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
    work = tmp_path / "node"
    work.mkdir()
    for name in ("package.json", "package-lock.json", ".npmrc", "train.mjs"):
        shutil.copy(EXAMPLE / name, work / name)
    # onnxruntime-node ships its CPU binaries; its install script would fetch CUDA ones from the network
    env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=work, env=env, check=True, capture_output=True,
                   timeout=300)
    example = load("onnx_node/export")
    out = tmp_path / "export"
    example.export(str(out))
    r = subprocess.run(["node", "train.mjs", str(out), "--epochs", "2", "--json", str(tmp_path / "node.json")],
                       cwd=work, capture_output=True, text=True, timeout=300)
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
    r = subprocess.run(["node", "train.mjs", str(out)], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "does not match its checksum" in r.stderr
