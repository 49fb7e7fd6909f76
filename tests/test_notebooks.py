"""Each page under "The ideas" is also a Jupyter notebook (docs/_hooks/notebooks.py), linked from the
page; each notebook runs top to bottom in a fresh Jupyter kernel with no cell failing, and shows
what the page shows: its diagrams as HTML, its formulas as Markdown."""

import json
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
import notebooks  # noqa: E402  (the hook that makes them)

sys.path.pop(0)


def _ideas():
    import yaml

    class _Loader(yaml.SafeLoader):   # mkdocs.yml may carry !!python tags (pymdownx options)
        pass

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return notebooks.idea_pages(yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader))


IDEAS = _ideas()


def test_a_page_becomes_cells_with_its_output_modes():
    """The conversion on a page made here: prose, a shown block printing Markdown, a hidden block
    printing HTML, a text block, a plain block, and another language's fence left as prose."""
    page = ("# T\n\nSome prose.\n\n```python exec=\"on\" source=\"above\" session=\"s\"\nprint('$$x$$')\n```\n\n"
            "```python exec=\"on\" html=\"1\" session=\"s\"\nprint('<b>d</b>')\n```\n"
            "```python exec=\"on\" source=\"above\" result=\"text\"\nprint(1)\n```\n"
            "```python\ny = 2\n```\n\n```sh\npip install x\n```\nEnd.\n")
    cells = notebooks.notebook(page, "t.md").cells[2:]
    assert [c.cell_type for c in cells] == ["markdown", "code", "code", "code", "code", "markdown"]
    assert cells[0].source == "# T\n\nSome prose."
    assert cells[1].source == "%%printed_markdown\nprint('$$x$$')" and "jupyter" not in cells[1].metadata
    assert cells[2].source == "%%printed_html\nprint('<b>d</b>')" and cells[2].metadata.jupyter.source_hidden
    assert cells[3].source == "print(1)" and cells[4].source == "y = 2"
    assert cells[5].source == "```sh\npip install x\n```\nEnd."
    with pytest.raises(Exception, match="not closed"):
        notebooks.notebook("```python\nx = 1\n", "t.md")


@pytest.fixture(scope="module")
def executed(built_site, tmp_path_factory):
    """Every idea notebook of the built site, run top to bottom in its own fresh kernel (two at a
    time: the machine has two cores): the notebook with its outputs, or the error that stopped it."""
    import asyncio

    import nbclient
    import nbformat

    async def run(src, limit):
        nb = nbformat.reads((built_site / notebooks.notebook_name(src)).read_text(), as_version=4)
        nbformat.validate(nb)
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
        async with limit:
            start = time.perf_counter()
            try:
                await client.async_execute()   # raises on a cell's error
            except Exception as e:  # noqa: BLE001 - reported by the notebook's test
                return src, e, time.perf_counter() - start
            return src, nb, time.perf_counter() - start

    async def run_all():
        limit = asyncio.Semaphore(2)
        return await asyncio.gather(*(run(src, limit) for src in IDEAS))

    results = asyncio.run(run_all())
    print("\nnotebooks executed:", ", ".join(f"{pathlib.Path(s).stem} {t:.1f} s" for s, _, t in results))
    return {src: nb for src, nb, _ in results}


@pytest.mark.slow
@pytest.mark.parametrize("src", IDEAS)
def test_each_idea_notebook_runs_and_shows_the_page(built_site, executed, src):
    name = notebooks.notebook_name(src)
    page = (built_site / pathlib.PurePosixPath(src).stem / "index.html").read_text()
    assert f'href="../{name}"' in page, f"{src} has no link to its notebook"
    nb = executed[src]
    if isinstance(nb, Exception):
        pytest.fail(f"{name} failed:\n{nb}"[-6000:])
    shown = {"%%printed_html": "text/html", "%%printed_markdown": "text/markdown"}
    for cell in nb.cells:
        kind = shown.get(cell.source.split("\n", 1)[0]) if cell.cell_type == "code" else None
        if kind:
            data = [o["data"][kind] for o in cell.outputs if o["output_type"] == "display_data" and kind in o["data"]]
            assert data and data[0].strip(), f"{src}: a cell shows nothing:\n{cell.source[:300]}"
    drawn = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%printed_html")]
    outputs = json.dumps([o for c in drawn for o in c.outputs])
    assert not drawn or "<svg" in outputs, f"{src}: no diagram in the notebook"
