"""Test session set-up: float64 in JAX, hypothesis settings sized for 2 cores."""

import jax
import numpy as np
import pytest
from hypothesis import settings

jax.config.update("jax_enable_x64", True)
settings.register_profile("ci", max_examples=25, deadline=None)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The docs site, built once a session with ``mkdocs build --strict``: tests/test_docs_site.py reads
    its pages, tests/test_site_browser.py opens them in Chromium, tests/test_notebooks.py runs its
    notebooks. Every page's blocks run while it builds, so one build serves them all."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    site = tmp_path_factory.mktemp("built") / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=root,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("mkdocs build --strict failed:\n" + (r.stdout + r.stderr)[-4000:])
    return site
