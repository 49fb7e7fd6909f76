"""The docs site builds with --strict: every page's blocks run while it builds (diagrams, formulas,
checked laws), and each page on an idea shows a diagram and formulas."""

import html.parser
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDEAS = ["terms-and-para", "reverse-derivative", "categorical-foundations", "backprop-as-functor",
         "learners-languages", "optimizers", "bilevel", "dreaming-and-forward-gradients"]
CIRCUITS = "boolean-circuits"  # diagrams of a circuit and its reverse derivative, no formulas


@pytest.mark.slow
def test_mkdocs_build_strict(built_site):
    site = built_site   # conftest.py: built once with --strict, its output shown if it fails
    for page in IDEAS:
        html = (site / page / "index.html").read_text()
        assert "https://matplotlib.org" in html and ">forward<" in html, f"{page} has no diagram"
        assert 'class="arithmatex"' in html, f"{page} has no formulas"
    html = (site / CIRCUITS / "index.html").read_text()
    assert html.count(">backward<") >= 1 and html.count("https://matplotlib.org") >= 2
    home = (site / "index.html").read_text()   # the first page: a diagram with values, an output, both ideas named
    assert "https://matplotlib.org" in home and ">backward<" in home and "|.|=" in home, "the index has no diagram"
    assert "loss " in home and " -&gt; " in home, "the index shows no executed output"
    assert "reverse derivative ascent" in home and "Z2" in home
    _content_defects_stay_fixed(site)
    assert not list(ROOT.glob("*.svg")) and not list(ROOT.glob("*.png"))  # building writes nothing beside it
    _every_public_name_has_a_reference_entry_with_its_arguments(site)


def _content_defects_stay_fixed(site):
    """The built pages show what issue 22 found missing (each page's blocks also assert it)."""
    import re

    page = (site / "categorical-foundations" / "index.html").read_text()  # printed lines in a table, not one paragraph
    assert re.search(r"<td>4 -&gt; 3</td>\s*<td>0\.9\d\d</td>", page), "the Iris accuracies are not table rows"
    assert re.search(r"<td>4 -&gt; 20 -&gt; 3</td>\s*<td>0\.9\d\d</td>", page)
    page = (site / "dreaming-and-forward-gradients" / "index.html").read_text()
    formulas = re.findall(r'class="arithmatex">(.*?)</div>', page, flags=re.S)
    assert formulas and not any("key" in f or "x1_{" in f for f in formulas), "a formula shows the random key"
    assert "<td>dreamed, Gaussian prior</td>" in page and page.count('src="data:image/png;base64,') >= 1
    page = (site / CIRCUITS / "index.html").read_text()
    for label in ("bits_of", "xor", "and", "sum", "carry", "dsum", "dcarry"):
        assert f">{label}<" in page, f"the circuit's drawing has no {label}"
    assert re.search(r"<td>setosa against versicolor</td>\s*<td>0\.980</td>", page)
    assert re.search(r"<td>three classes, one-hot</td>\s*<td>0\.747</td>", page)
    page = (site / "backprop-as-functor" / "index.html").read_text()   # L(f)'s wires with their numbers
    assert page.count("|.|=2.232") >= 2, "L(f) is not drawn with values (the request r, its norm 2.232)"


class _Loads(html.parser.HTMLParser):
    """The addresses a page loads on its own: scripts, styles, images, frames, media, preloads and
    url(...) in style attributes (a hyperlink is followed only when the reader clicks it)."""

    LOADS = {"script": "src", "img": "src", "iframe": "src", "embed": "src", "source": "src", "audio": "src",
             "video": "src", "track": "src", "input": "src", "object": "data", "image": "href", "use": "href"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and attrs.get("rel") not in ("canonical", None):
            self.urls.append(attrs.get("href") or "")
        if tag in self.LOADS:
            self.urls.append(attrs.get(self.LOADS[tag]) or attrs.get("xlink:href") or "")
        self.urls += attrs.get("srcset", "").split()
        self.urls += re.findall(r"url\(\s*['\"]?([^'\")]+)", attrs.get("style") or "")


@pytest.mark.slow
def test_no_page_loads_anything_from_outside(built_site):
    """Read offline, the site is whole: no page loads a script, style, font or image from another
    host (MathJax and its fonts come with the site, docs/_hooks/mathjax.py), and no stylesheet
    imports one. tests/test_site_browser.py checks the same on the requests Chromium makes."""
    outside = re.compile(r"^\s*(https?:)?//", re.I)
    found = []
    for page in sorted(built_site.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text())
        found += [(str(page.relative_to(built_site)), u) for u in parser.urls if outside.match(u)]
    for sheet in sorted(built_site.rglob("*.css")):
        found += [(str(sheet.relative_to(built_site)), u) for u in
                  re.findall(r"(?:@import\s+|url\(\s*)['\"]?((?:https?:)?//[^'\")\s]+)", sheet.read_text())]
    assert not found, found[:20]
    mathjax = built_site / "javascripts" / "mathjax"
    assert (mathjax / "tex-chtml.js").is_file() and list(mathjax.glob("output/chtml/fonts/woff-v2/*.woff"))


def _every_public_name_has_a_reference_entry_with_its_arguments(site):
    """Every name of ``paralens.__all__`` has an entry in the API reference (the inventory
    mkdocstrings writes), and a function's entry lists its parameters."""
    import zlib

    import paralens as pl

    inventory = (site / "objects.inv").read_bytes().split(b"\n", 4)[4]
    entries = {line.split()[0] for line in zlib.decompress(inventory).decode().splitlines()}
    missing = [n for n in pl.__all__ if f"paralens.{n}" not in entries]
    assert not missing, missing
    html = (site / "reference" / "paralens" / "index.html").read_text()
    for name in ("R", "para", "tie", "einsum", "conv2d", "tan", "Learner"):
        start = html.index(f'id="paralens.{name}"')
        assert "Parameters:" in html[start:start + 30000], name


def test_a_broken_cross_reference_fails_the_strict_build(tmp_path):
    """A docstring role pointing nowhere (``:func:`paralens.no_such_thing```) fails ``--strict``:
    the reference's Griffe extension turns roles into cross-references that must resolve."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# x\n\n::: broken\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.py").write_text(
        '"""A module."""\n\n\ndef f():\n    """See :func:`paralens.no_such_thing`."""\n')
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nplugins:\n  - mkdocstrings:\n      handlers:\n        python:\n"
        "          paths: [src]\n          options:\n            extensions:\n"
        f"              - {ROOT / 'docs' / '_griffe' / 'rst_roles.py'}:RstRoles\n")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "paralens.no_such_thing" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_a_build_without_mathjax_fails_naming_it(tmp_path, monkeypatch):
    """Without npm, or with an npm that fails, the MathJax hook stops the build with a message naming
    MathJax (the site would otherwise show raw TeX); it never falls back to a CDN."""
    import importlib.util

    from mkdocs.exceptions import PluginError

    spec = importlib.util.spec_from_file_location("mathjax_hook", ROOT / "docs" / "_hooks" / "mathjax.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    monkeypatch.setattr(hook, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(hook, "PACKAGE", tmp_path / "cache" / "node_modules" / "mathjax")
    monkeypatch.setattr(hook.shutil, "which", lambda name: None)
    with pytest.raises(PluginError, match="MathJax 3.2.2 from the npm registry, and npm is not installed"):
        hook.install()
    monkeypatch.setattr(hook.shutil, "which", lambda name: "/bin/false")
    with pytest.raises(PluginError, match="npm install mathjax@3.2.2 failed"):
        hook.install()
    assert not (tmp_path / "cache").exists()
