"""The built docs site, read as a student reads it: every page opened in headless Chromium (Debian's
``chromium``, driven by playwright) at a 1280 px window, served from this machine.

Checked on every page: no request leaves the machine (each one is intercepted; any host but
localhost is refused and recorded); every formula is typeset (each ``arithmatex`` span holds
MathJax's ``mjx-container``, and no raw ``\\[``, ``\\(`` or ``$$`` is left in the text); no console
error; and the smallest text of every diagram, as rendered, is at least 9 CSS px. A screenshot of
each page is saved (the folder is printed, and named in each failure): its first 6000 px where it
has diagrams or formulas, else the window.
"""

import base64
import contextlib
import functools
import http.server
import json
import pathlib
import threading
import urllib.parse

import pytest

CHROMIUM = pathlib.Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 900
SMALLEST_TEXT_PX = 9.0
SHOT_HEIGHT = 6000   # a screenshot of a page with diagrams or formulas stops there (the longest run to 30000 px)
# as root in a closed network: no sandbox, and none of Chromium's own traffic (updates, sync, ...)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

# The smallest rendered font size of any diagram text: each <text> of an inline SVG, its font size
# times the scale from its user space to the screen (getScreenCTM: the viewBox's shrinking and any
# transform); an SVG shown by <img> is parsed and laid over the image at its rendered box (as an
# <img> scales it: the viewBox, or the intrinsic size) and measured the same way.
MEASURE = """async () => {
  const found = [];
  const measure = (root, where) => {
    for (const t of root.querySelectorAll('text')) {
      const label = t.textContent.trim();
      const box = t.getBoundingClientRect();
      if (!label || (box.width === 0 && box.height === 0)) continue;
      const m = t.getScreenCTM();
      if (!m) continue;
      const px = parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.c, m.d);
      found.push({px, label: label.slice(0, 40), where});
    }
  };
  document.querySelectorAll('svg').forEach((svg, i) => {
    if (!svg.parentElement.closest('svg')) measure(svg, `svg ${i}`);
  });
  for (const [i, img] of [...document.querySelectorAll('img')].entries()) {
    const src = img.currentSrc || img.src;
    const box = img.getBoundingClientRect();
    if (!(src.startsWith('data:image/svg+xml') || /\\.svg([?#]|$)/i.test(src)) || box.width === 0) continue;
    const doc = new DOMParser().parseFromString(await (await fetch(src)).text(), 'image/svg+xml');
    const svg = document.importNode(doc.documentElement, true);
    if (!svg.getAttribute('viewBox')) svg.setAttribute('viewBox', `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
    svg.setAttribute('width', '100%');
    svg.setAttribute('height', '100%');
    const holder = document.createElement('div');
    holder.style.cssText = `position:absolute;visibility:hidden;left:${box.left + scrollX}px;` +
      `top:${box.top + scrollY}px;width:${box.width}px;height:${box.height}px`;
    holder.appendChild(svg);
    document.body.appendChild(holder);
    measure(svg, `img ${i}`);
    holder.remove();
  }
  return found;
}"""

MATH = r"""() => {
  const spans = [...document.querySelectorAll('.arithmatex')];
  const untypeset = spans.filter(s => !s.querySelector('mjx-container')).map(s => s.textContent.slice(0, 80));
  const skip = 'pre, code, script, style, textarea, mjx-container';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT,
    {acceptNode: n => n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode())
    if (/\\\[|\\\(|\$\$/.test(n.data)) raw.push(n.data.trim().slice(0, 80));
  // a formula typeset twice: MathJax's hidden MathML copy of it typeset again inside it
  const twice = [...document.querySelectorAll('mjx-container mjx-container')].map(c => c.textContent.slice(0, 80));
  return {formulas: spans.length, typeset: document.querySelectorAll('mjx-container').length, untypeset, raw, twice};
}"""


TYPESET = "() => [...document.querySelectorAll('.arithmatex')].every(s => s.querySelector('mjx-container'))"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _page(folder) -> str:
    """The URL path of a page's folder in the site: ``""`` for the top page (``.``)."""
    return "" if str(folder) == "." else str(folder)


@pytest.fixture(scope="module")
def pages_read(built_site, tmp_path_factory):
    """Every page of the site opened in Chromium: what each requested, logged and rendered."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    shots = tmp_path_factory.mktemp("screenshots")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(built_site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    paths = sorted(_page(p.parent.relative_to(built_site)) for p in built_site.rglob("index.html"))
    results = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS,
                                        chromium_sandbox=False)
            context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, service_workers="block")
            outside, everywhere = [], []

            def route(r):
                if urllib.parse.urlsplit(r.request.url).hostname in ("127.0.0.1", "localhost"):
                    r.continue_()
                else:
                    outside.append(r.request.url)
                    everywhere.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            for path in paths:
                page = context.new_page()
                errors = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                del outside[:]
                page.goto(base + path, wait_until="load")
                with contextlib.suppress(PlaywrightError):   # MathJax typesets after the page loads; what is
                    page.wait_for_function(TYPESET, timeout=20000)   # left untypeset is reported below
                page.evaluate("() => document.fonts.ready.then(() => true)")   # MathJax's fonts
                math, texts = page.evaluate(MATH), page.evaluate(MEASURE)
                shot = shots / ((path.strip("/").replace("/", "_") or "index") + ".jpeg")
                height = (min(page.evaluate("() => document.documentElement.scrollHeight"), SHOT_HEIGHT)
                          if texts or math["formulas"] else HEIGHT)   # the window only, on a page of prose
                page.screenshot(path=str(shot), full_page=True, clip=dict(x=0, y=0, width=WIDTH, height=height),
                                type="jpeg", quality=80)
                smallest = min(texts, key=lambda t: t["px"]) if texts else None
                sideways = page.evaluate(SIDEWAYS)
                results[path or "/"] = dict(outside=list(outside), errors=errors, math=math, texts=len(texts),
                                            smallest=smallest, screenshot=str(shot), sideways=sideways)
                page.close()
            browser.close()
            results["(any page, late)"] = dict(outside=everywhere, errors=[], texts=0, smallest=None, screenshot="",
                                               sideways=dict(page=0, diagrams=0),
                                               math=dict(formulas=0, typeset=0, untypeset=[], raw=[], twice=[]))
    finally:
        server.shutdown()
        server.server_close()
    (shots / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nscreenshots and results: {shots}")
    for path, r in results.items():
        s = r["smallest"]
        print(f"{path:40s} {r['texts']:4d} texts, smallest "
              + (f"{s['px']:.2f} px ({s['label']!r})" if s else "-")
              + f"; {r['math']['typeset']}/{r['math']['formulas']} formulas typeset")
    return results


#: how far the page overflows the window sideways, and how many diagram boxes scroll instead
SIDEWAYS = """() => ({
    page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    diagrams: [...document.querySelectorAll('.paralens-diagram')].filter(d => d.scrollWidth > d.clientWidth).length,
})"""


def _failing(results, check):
    return {path: bad for path, r in results.items() if (bad := check(r))}


@pytest.mark.slow
def test_every_page_was_read(pages_read, built_site):
    assert len(pages_read) - 1 == len(list(built_site.rglob("index.html"))) >= 20   # and "(any page, late)"
    assert any(r["texts"] for r in pages_read.values()) and any(r["math"]["formulas"] for r in pages_read.values())


@pytest.mark.slow
def test_no_request_leaves_the_machine(pages_read):
    assert not _failing(pages_read, lambda r: r["outside"])


@pytest.mark.slow
def test_every_formula_is_typeset(pages_read):
    assert not _failing(pages_read, lambda r: r["math"]["untypeset"] + r["math"]["raw"] + r["math"]["twice"])


@pytest.mark.slow
def test_no_console_errors(pages_read):
    assert not _failing(pages_read, lambda r: r["errors"])


@pytest.mark.slow
def test_diagram_text_is_at_least_9_css_px(pages_read):
    small = _failing(pages_read, lambda r: r["smallest"] if r["smallest"] and r["smallest"]["px"] < SMALLEST_TEXT_PX
                     else None)
    assert not small, {p: f"{s['px']:.2f} px: {s['label']!r} ({s['where']}; {pages_read[p]['screenshot']})"
                       for p, s in small.items()}


@pytest.mark.slow
def test_wide_diagrams_scroll_in_their_own_box(pages_read):
    """A diagram wider than the column (its text kept at 9 px) scrolls inside its box
    (docs/_hooks/diagrams.py); the page itself never scrolls sideways."""
    assert not _failing(pages_read, lambda r: r["sideways"]["page"] > 0 and r["sideways"])
    assert any(r["sideways"]["diagrams"] for r in pages_read.values()), "no diagram is wider than the column"


@pytest.mark.slow
def test_the_measure_reads_text_as_rendered():
    """MEASURE against sizes known by construction: 12-unit text in an SVG whose 400-unit viewBox is
    drawn 200 px wide is 6 px, and 3 px under a further scale(0.5); the same SVG shown by <img> at
    100 px wide gives 3 and 1.5 px; text in a hidden SVG is not counted."""
    from playwright.sync_api import sync_playwright

    svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 100" width="{w}">'
           '<text x="10" y="50" style="font-size: 12px">six</text>'
           '<g transform="scale(0.5)"><text x="10" y="150" font-size="12">three</text></g></svg>')
    src = "data:image/svg+xml;base64," + base64.b64encode(svg.format(w=400).encode()).decode()
    html = (f'<div style="width:200px">{svg.format(w="100%")}</div><img src="{src}" style="width:100px">'
            f'<div style="display:none">{svg.format(w=400)}</div>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS, chromium_sandbox=False)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.set_content(html)
        page.wait_for_function("() => document.querySelector('img').complete")
        found = sorted((t["where"].split()[0], t["label"], round(t["px"], 3)) for t in page.evaluate(MEASURE))
        browser.close()
    assert found == [("img", "six", 3.0), ("img", "three", 1.5), ("svg", "six", 6.0), ("svg", "three", 3.0)]
