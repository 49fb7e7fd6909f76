"""Every docstring example and every Python block of README.md and docs/*.md runs."""

import contextlib
import doctest
import importlib
import io
import pathlib
import pkgutil
import re

import pytest

import paralens
from helpers import backends_as_they_were

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ["paralens"] + [f"paralens.{m.name}" for m in pkgutil.iter_modules(paralens.__path__)] + \
    [f"paralens.backends.{m.name}" for m in pkgutil.iter_modules(importlib.import_module("paralens.backends").__path__)]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def markdown_blocks(path) -> list[tuple[str, bool]]:
    """Each python block with whether the site prints its output as Markdown (``exec="on"``
    without ``html="1"``)."""
    return [(code, 'exec="on"' in head and 'html="1"' not in head)
            for head, code in re.findall(r"```python([^\n]*)\n(.*?)```", path.read_text(), flags=re.S)]


_TABLE_ROW, _LIST_ITEM = re.compile(r"\s*\|"), re.compile(r"\s*([-*+]|\d+\.) ")


def merged_lines(output: str) -> list[tuple[str, str]]:
    """Pairs of printed lines that Python-Markdown would join into one paragraph: consecutive
    lines outside a ``$$`` formula that are not rows of one table or items of one list, the first
    not ending in a hard break. (A list or table, too, needs a blank line before it.)"""
    pairs, in_math = [], False
    lines = output.splitlines()
    for a, b in zip(lines, lines[1:]):
        if a.strip() == "$$":
            in_math = not in_math
        if in_math or not a.strip() or not b.strip() or a.endswith("  ") or a.rstrip().endswith("<br>"):
            continue
        if all(_TABLE_ROW.match(v) for v in (a, b)) or all(_LIST_ITEM.match(v) for v in (a, b)):
            continue
        pairs.append((a, b))
    return pairs


def test_merged_lines_finds_lines_that_would_run_together():
    assert merged_lines("4 -> 3: accuracy 0.93\n4 -> 20 -> 3: accuracy 0.95\n") == \
        [("4 -> 3: accuracy 0.93", "4 -> 20 -> 3: accuracy 0.95")]
    assert merged_lines("a\n- b\n") == [("a", "- b")]  # a list needs a blank line before it
    assert merged_lines("a\n\nb\n\n- c\n- d\n\n$$\nx \\\\\ny\n$$\n\n| t |\n|---|\n") == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_markdown_code_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = markdown_blocks(path)
    assert code, f"{path.name} has no python blocks"
    namespace = {}
    with backends_as_they_were():  # a page may register a backend (architecture.md)
        for block, as_markdown in code:  # blocks of one page share a namespace, like a notebook
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(path), "exec"), namespace)
            if as_markdown:  # two printed lines without a blank line between read as one paragraph
                assert not merged_lines(out.getvalue()), f"{path.name}: printed lines run together: " \
                    f"{merged_lines(out.getvalue())}"


EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\n```py\n(.*?)```", flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_excerpts_of_the_source_are_still_in_the_source(path):
    for source, block in EXCERPT.findall(path.read_text()):
        text = (ROOT / source).read_text()
        assert block.strip() in text, f"{path.name}: an excerpt of {source} is no longer there:\n{block}"
