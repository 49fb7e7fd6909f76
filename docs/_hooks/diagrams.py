"""Wide diagrams scroll in their own box: ``pl.draw`` writes an SVG that fills the column but not
below a ``min-width`` at which its smallest text is still 9 CSS px (paralens.diagram); a diagram
wider than the column would otherwise push the whole page sideways. Each such SVG of a page
goes in a ``<div class="paralens-diagram">`` that scrolls horizontally
(tests/test_site_browser.py checks that no page as a whole does).
"""

import re

#: an inline SVG that pl.draw sized (matplotlib's SVGs do not nest, so the first ``</svg>`` ends it)
_DRAWN = re.compile(r"<svg\b[^>]*\bmin-width:[^>]*>.*?</svg>", re.S)


def on_page_content(html, page, config, files):
    return _DRAWN.sub(lambda m: f'<div class="paralens-diagram" style="overflow-x: auto">{m.group(0)}</div>', html)
