"""examples/onnx_web: headless Chromium trains Iris in the page with onnxruntime-web, served from this
machine, drawing the loss as it falls, to the final loss of onnxruntime from Python on the same export."""

import os
import shutil
import subprocess

import pytest

from examples_loader import ROOT, load

EXAMPLE = ROOT / "examples" / "onnx_web"
CHROMIUM = "/usr/bin/chromium"
#: Chromium as root in a container, with nothing of its own going out
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
STEPS = 300


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None or not os.path.exists(CHROMIUM), reason="needs npm and chromium")
def test_the_page_trains_iris_to_the_python_onnxruntime_loss_without_leaving_the_machine(tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    pytest.importorskip("onnxruntime")
    # onnxruntime-web into the example's own (ignored) node_modules, once: 130 MB a fresh install
    if not (EXAMPLE / "node_modules" / "onnxruntime-web" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, capture_output=True,
                       timeout=300)
    example = load("onnx_web/export")
    build = tmp_path / "build"
    example.export(str(build))
    reference = example.train(str(build), STEPS)
    httpd, url = load("onnx_web/serve").serve(str(build))
    requests = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            page.goto(f"{url}?steps={STEPS}")
            page.wait_for_function("window.paralens !== undefined", timeout=120_000)
            result = page.evaluate("window.paralens")
            drawn = page.evaluate("document.getElementById('loss').getContext('2d')"
                                  ".getImageData(0, 0, 640, 320).data.some(v => v !== 0)")
            browser.close()
    finally:
        httpd.shutdown()
    assert "error" not in result, result
    losses = result["losses"]
    assert len(losses) == STEPS and losses[-1] < 0.2 * losses[0]  # the loss falls
    assert result["draws"] >= STEPS // 5 and drawn  # drawn as it trains, not once at the end
    print(f"final loss: page {losses[-1]!r}, Python onnxruntime {reference[-1]!r}")
    assert abs(losses[-1] - reference[-1]) <= 1e-4, (losses[-1], reference[-1])
    assert requests and all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]
    assert any(r.endswith(".wasm") for r in requests)  # onnxruntime-web's WebAssembly, from this machine
