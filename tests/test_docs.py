"""Every docstring example and every Python block of README.md and docs/*.md runs."""

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import paralens

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ["paralens"] + [f"paralens.{m.name}" for m in pkgutil.iter_modules(paralens.__path__)] + \
    [f"paralens.backends.{m.name}" for m in pkgutil.iter_modules(importlib.import_module("paralens.backends").__path__)]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def blocks(path):
    """The python blocks of a page: plain ones and those the site runs (```python exec="on" ...)."""
    return re.findall(r"```python[^\n]*\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markdown_code_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = blocks(path)
    assert code, f"{path.name} has no python blocks"
    namespace = {}
    for block in code:  # blocks of one page share a namespace, like a notebook
        exec(compile(block, str(path), "exec"), namespace)


EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\n```py\n(.*?)```", flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_excerpts_of_the_source_are_still_in_the_source(path):
    for source, block in EXCERPT.findall(path.read_text()):
        text = (ROOT / source).read_text()
        assert block.strip() in text, f"{path.name}: an excerpt of {source} is no longer there:\n{block}"
