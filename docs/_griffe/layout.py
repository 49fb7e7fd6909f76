"""A MkDocs hook for the API reference: the package laid out as it is installed.

The repository keeps the package ``paralens`` in ``lenses/`` and ``paralens.backends`` in
``backends/`` (see ``pyproject.toml``). Griffe, which reads the modules for mkdocstrings,
finds submodules on disk under their package's folder, so ``backends/`` would be missed.
This hook makes ``build/api/paralens/`` with a link to each file of ``lenses/`` and a
``backends`` link to ``backends/``: the layout of an installed paralens. The mkdocstrings
handler searches there first (``paths`` in ``mkdocs.yml``).

The reference is made by importing the modules (some names are made at import time), and
Griffe imports with only its search paths on ``sys.path``; so every module is imported here
first, from the installed package.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import pkgutil
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[2]


def on_startup(command, dirty, **kwargs):
    """Lay the package out before any plugin reads its configuration: mkdocstrings keeps only the
    search paths that exist when it starts."""
    target = ROOT / "build" / "api" / "paralens"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in (ROOT / "lenses").glob("*.py"):
        os.symlink(path, target / path.name)
    os.symlink(ROOT / "backends", target / "backends", target_is_directory=True)
    import paralens
    import paralens.backends

    for package in (paralens, paralens.backends):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
