"""The docs site builds with --strict: every page's blocks run while it builds (diagrams, formulas,
checked laws), and each page on an idea shows a diagram and formulas."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDEAS = ["terms-and-para", "reverse-derivative", "categorical-foundations", "backprop-as-functor",
         "learners-languages", "optimizers", "bilevel", "dreaming-and-forward-gradients"]
CIRCUITS = "boolean-circuits"  # diagrams of a circuit and its reverse derivative, no formulas


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    if shutil.which("mkdocs") is None and subprocess.run([sys.executable, "-m", "mkdocs", "--version"],
                                                         capture_output=True).returncode != 0:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    for page in IDEAS:
        html = (site / page / "index.html").read_text()
        assert "https://matplotlib.org" in html and ">forward<" in html, f"{page} has no diagram"
        assert 'class="arithmatex"' in html, f"{page} has no formulas"
    html = (site / CIRCUITS / "index.html").read_text()
    assert html.count(">backward<") >= 1 and html.count("https://matplotlib.org") >= 2
    assert not list(ROOT.glob("*.svg")) and not list(ROOT.glob("*.png"))  # building writes nothing beside it
