"""A MkDocs hook: MathJax served from the built site, so formulas typeset offline.

MathJax 3 (its ES5 components: the ``tex-chtml`` bundle, the TeX extensions it loads on
demand, the accessibility and menu components, and the CHTML output's WOFF fonts) is taken
at build time from the npm registry's ``mathjax`` package, the MathJax Consortium's own
distribution of those files, pinned to one version and checked against the registry's
integrity hash by ``npm install``. It is installed once into ``build/mathjax-<version>/``
(a cache; a fresh checkout installs it on its first build) and copied into the site's
``javascripts/mathjax/`` after each build; ``mkdocs.yml`` loads it from there. A build that
cannot get it fails, naming what is missing: the site would otherwise show raw TeX.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess

from mkdocs.exceptions import PluginError

ROOT = pathlib.Path(__file__).resolve().parents[2]
VERSION = "3.2.2"
CACHE = ROOT / "build" / f"mathjax-{VERSION}"
PACKAGE = CACHE / "node_modules" / "mathjax"
TARGET = "javascripts/mathjax"  # under the site; mkdocs.yml's extra_javascript names TARGET/BUNDLE
# TeX in, CommonHTML out: the pages' formulas are all TeX (pymdownx.arithmatex). tex-mml-chtml would
# also read MathML, and then typeset again the hidden MathML copy MathJax puts beside each formula
# for screen readers when the page typesets a second time (docs/javascripts/mathjax.js)
BUNDLE = "tex-chtml.js"
# what the bundle loads at view time, relative to es5/: TeX extensions (autoload), the menu, the
# accessibility tools and the speech-rule engine they load, and the CHTML fonts
PARTS = [BUNDLE, "input", "output", "ui", "a11y", "sre", "adaptors"]


def _installed() -> bool:
    try:
        return json.loads((PACKAGE / "package.json").read_text())["version"] == VERSION
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def _one_at_a_time():
    """Held by one build at a time (builds run side by side in the test workers): an exclusive lock
    on a file beside the cache, where the platform has ``fcntl``."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.with_name(CACHE.name + ".lock"), "w") as lock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): builds side by side are the caller's to avoid
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install() -> pathlib.Path:
    """The directory ``es5/`` of MathJax ``VERSION``, installed from npm into the cache if it is not there.

    Builds running at once install it once: the first, holding a lock, installs it into a staging
    folder of its own and moves that into place; the others then find it there.

    Returns:
        The path of the package's ``es5`` directory.

    Raises:
        PluginError: npm is missing, or the install failed or left no bundle.
    """
    if not _installed():
        with _one_at_a_time():
            if not _installed():
                _install_into_cache()
    es5 = PACKAGE / "es5"
    if not _installed() or not (es5 / BUNDLE).is_file():
        raise PluginError(f"MathJax {VERSION} is not in {PACKAGE} after installing it")
    return es5


def _install_into_cache() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError(f"the docs need MathJax {VERSION} from the npm registry, and npm is not installed "
                          "(Debian: apt-get install npm)")
    staging = CACHE.with_name(f"{CACHE.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        r = subprocess.run([npm, "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
                            "--ignore-scripts", "--prefix", str(staging), f"mathjax@{VERSION}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PluginError(f"npm install mathjax@{VERSION} failed:\n{(r.stdout + r.stderr)[-2000:]}")
        shutil.rmtree(CACHE, ignore_errors=True)  # another version's
        staging.rename(CACHE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def on_config(config, **kwargs):
    install()   # before the pages run: a build without MathJax fails at once
    return config


def on_post_build(config, **kwargs):
    es5, target = install(), pathlib.Path(config["site_dir"]) / TARGET
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for part in PARTS:
        source = es5 / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    shutil.copy2(PACKAGE / "LICENSE", target / "LICENSE")
