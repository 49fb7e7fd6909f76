"""A MkDocs hook: each page under "The ideas" is also a Jupyter notebook, made from the page's source.

The page's prose becomes Markdown cells and each of its ``python`` blocks a code cell, in order:
the blocks the site runs (```` ```python exec="on" ... ````) and the plain ones, which
tests/test_docs.py runs in one namespace just as a notebook does. On the site, what a block prints
is read as Markdown (formulas included), or as HTML where the block says ``html="1"`` (the
diagrams), or as text where it says ``result="text"``; the notebook shows it the same way, through
two cell magics its first code cell defines (``%%printed_markdown``, ``%%printed_html``). A block
the site runs without showing its source has its source collapsed in the notebook.

The notebooks are written into the site beside the pages (``<page>.ipynb``), and each idea page
gets a link to its notebook under its title. tests/test_notebooks.py executes them.

(Jupytext would read the page too, but it makes no distinction between markdown-exec's output
modes, so the diagrams would print as SVG source; the split below is all the conversion needed.)
"""

from __future__ import annotations

import pathlib
import re

import nbformat
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

SECTION = "The ideas"
FENCE = re.compile(r"^(`{3,})(.*)$")
OPTION = re.compile(r'(\w+)="([^"]*)"')

SETUP = '''\
# As on the site, what a cell marked %%printed_markdown prints is shown as Markdown (formulas
# included), and what a cell marked %%printed_html prints is shown as HTML (the diagrams).
import contextlib
import io

from IPython.core.magic import register_cell_magic
from IPython.display import HTML, Markdown, display


def _printed(show):
    def magic(line, cell):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(cell, "<cell>", "exec"), get_ipython().user_ns)
        display(show(out.getvalue()))
    return magic


register_cell_magic("printed_markdown")(_printed(Markdown))
register_cell_magic("printed_html")(_printed(HTML))'''


def idea_pages(config) -> list[str]:
    """The source paths (relative to ``docs/``) of the pages in the nav section "The ideas".

    Args:
        config: the MkDocs configuration.

    Returns:
        The pages' paths, in nav order.

    Raises:
        PluginError: the nav has no such section.
    """
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and SECTION in entry:
            return [page if isinstance(page, str) else next(iter(page.values())) for page in entry[SECTION]]
    raise PluginError(f'mkdocs.yml: the nav has no section "{SECTION}" to make notebooks of')


def notebook_name(src: str) -> str:
    return pathlib.PurePosixPath(src).with_suffix(".ipynb").as_posix()


def notebook(markdown: str, source: str) -> nbformat.NotebookNode:
    """A notebook of a page: its prose as Markdown cells, its ``python`` blocks as code cells.

    Args:
        markdown: the page's Markdown source.
        source: where it comes from, named in the first cell.

    Returns:
        The notebook (nbformat 4), not executed.

    Raises:
        PluginError: a code fence is not closed.
    """
    v4 = nbformat.v4
    cells = [v4.new_markdown_cell(f"*This notebook is made from the page `{source}` of paralens's documentation; "
                                  "it needs paralens installed.*"),
             v4.new_code_cell(SETUP)]
    prose, lines, i = [], markdown.splitlines(), 0

    def flush():
        text = "\n".join(prose).strip("\n")
        if text.strip():
            cells.append(v4.new_markdown_cell(text))
        prose.clear()

    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            prose.append(lines[i])
            i += 1
            continue
        ticks, info = opened.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            raise PluginError(f"{source}: the code fence on line {i + 1} is not closed")
        language, _, rest = info.strip().partition(" ")
        if language != "python":
            prose.extend(lines[i:end + 1])
            i = end + 1
            continue
        flush()
        code, options = "\n".join(lines[i + 1:end]), dict(OPTION.findall(rest))
        cell = v4.new_code_cell(code)
        if options.get("exec") in ("on", "1", "true"):
            if options.get("html") in ("1", "on", "true"):
                cell.source = "%%printed_html\n" + code
            elif options.get("result") is None:
                cell.source = "%%printed_markdown\n" + code
            if options.get("source") is None:   # the site shows only what it prints
                cell.metadata["jupyter"] = {"source_hidden": True}
        cells.append(cell)
        i = end + 1
    flush()
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def on_files(files, config, **kwargs):
    docs = pathlib.Path(config["docs_dir"])
    for src in idea_pages(config):
        nb = notebook((docs / src).read_text(encoding="utf-8"), f"docs/{src}")
        files.append(File.generated(config, notebook_name(src), content=nbformat.writes(nb)))
    return files


def on_page_markdown(markdown, page, config, **kwargs):
    src = page.file.src_uri
    if src not in idea_pages(config):
        return markdown
    name = pathlib.PurePosixPath(notebook_name(src)).name
    link = f"*This page is also a Jupyter notebook: [{name}]({name}), made from its source.*"
    lines = markdown.splitlines()
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    return "\n".join([*lines[:title + 1], "", link, "", *lines[title + 1:]])
