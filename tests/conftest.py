"""Test session set-up: float64 in JAX, hypothesis settings sized for 2 cores."""

import shutil

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
    """The docs site, built once a run with ``mkdocs build --strict``: tests/test_docs_site.py reads
    its pages, tests/test_site_browser.py opens them in Chromium, tests/test_notebooks.py runs its
    notebooks. Every page's blocks run while it builds, so one build serves them all.

    Under pytest-xdist the workers share it: the first to need it builds it into the run's common
    temporary folder, holding a lock there, and the others wait for it and read it."""
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    site = shared / "built-site"
    with open(shared / "built-site.lock", "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no flock (Windows): each worker builds its own
            site = tmp_path_factory.mktemp("built") / "site"
        if not (site / "index.html").is_file():
            staging = site.with_name(site.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(staging)], cwd=root,
                               capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail("mkdocs build --strict failed:\n" + (r.stdout + r.stderr)[-4000:])
            staging.rename(site)
    return site
