"""The drawing backend: terms as pictures (string diagrams), rendered with matplotlib.

It draws the layout of :mod:`paralens.diagram`, with no Graphviz binary needed:

* a forward band and, under it, a backward band;
* ports named ``x``, ``dy``, ``dW``, ``dx``;
* residual wires dotted purple;
* each layer's boxes in a dashed frame;
* a learner's parts (model, loss, learning rate, optimizer) as coloured regions.

It computes nothing, so it lacks the rest of the backend protocol.

>>> import paralens as pl
>>> svg = pl.backends.get("matplotlib").draw(pl.R(pl.nn.dense(2, 1) >> pl.nn.sigmoid()))
>>> svg.lstrip().startswith("<?xml") and ">dW<" in svg
True
"""

from __future__ import annotations

import io
import warnings

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch, PathPatch, Rectangle  # noqa: E402
from matplotlib.path import Path  # noqa: E402

from paralens.backends import Backend  # noqa: E402
from paralens.diagram import LABEL_LIMIT, Layout, layout  # noqa: E402
from paralens.types import printable  # noqa: E402

__all__ = ["backend", "draw", "draw_equation"]

SCALE = 1.15  # inches per layout unit
PORTS = {"input": "#9ecae1", "param": "#fdae6b", "output": "#a1d99b"}
PARTS = ["#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1", "#d9d9d9"]
WIRES = {"data": dict(color="#555555", lw=1.0, ls="-"), "param": dict(color="#e6550d", lw=1.2, ls="--"),
         "residual": dict(color="#756bb1", lw=1.6, ls=":")}


def _curve(points):
    """A smooth path through ``points``: horizontal tangents at each point."""
    verts, codes = [points[0]], [Path.MOVETO]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        dx = (x1 - x0) / 2
        verts += [(x0 + dx, y0), (x1 - dx, y1), (x1, y1)]
        codes += [Path.CURVE4] * 3
    return Path(verts, codes)


def _render(ax, lay: Layout, x0: float = 0.0, collapse: bool = False):
    """Draw ``lay`` into ``ax`` shifted right by ``x0`` (layout units; y grows downwards)."""
    for name, top, bottom in lay.bands:
        ax.add_patch(Rectangle((x0 - 0.15, top - 0.15), lay.width + 0.3, bottom - top + 0.05,
                               facecolor="#f7f7f7" if name == "forward" else "#f2f0f7", edgecolor="none", zorder=0))
        _text(ax, x0 - 0.12, top - 0.17, name, fontsize=8, color="#888888", va="bottom", ha="left", style="italic")
    parts = {}
    for (name, _band), (l, t, r, b) in lay.groups("part").items():
        colour = parts.setdefault(name, PARTS[len(parts) % len(PARTS)])
        ax.add_patch(FancyBboxPatch((x0 + l - 0.08, t - 0.08), r - l + 0.16, b - t + 0.16,
                                    boxstyle="round,pad=0.02", facecolor=colour, edgecolor="#888888", alpha=0.45,
                                    zorder=1))
        _text(ax, x0 + l - 0.06, t - 0.1, name, fontsize=8, fontweight="bold", va="bottom", ha="left", zorder=5)
    if not collapse:
        for (name, _band), (l, t, r, b) in lay.groups("unit").items():
            ax.add_patch(FancyBboxPatch((x0 + l - 0.04, t - 0.04), r - l + 0.08, b - t + 0.08,
                                        boxstyle="round,pad=0.01", facecolor="none", edgecolor="#999999",
                                        ls="--", lw=0.7, zorder=2))
            _text(ax, x0 + r + 0.02, t - 0.04, name, fontsize=6, color="#777777", va="bottom", ha="right", zorder=5)
    for w in lay.wires:
        style = WIRES[w.kind]
        pts = [(x0 + x, y) for x, y in w.points]
        ax.add_patch(PathPatch(_curve(pts), facecolor="none", edgecolor=style["color"], lw=style["lw"],
                               ls=style["ls"], zorder=3))
        ax.annotate("", xy=pts[-1], xytext=(pts[-1][0] - 0.05, pts[-1][1]),
                    arrowprops=dict(arrowstyle="-|>", color=style["color"], lw=0.8), zorder=3)
        if w.label:
            _text(ax, pts[0][0] + 0.05, pts[0][1] - 0.05, w.label, fontsize=5.5, color="#666666", zorder=5)
        if w.value:  # what the wire carries, under its start (a cotangent in the backward band)
            _text(ax, pts[0][0] + 0.05, pts[0][1] + 0.05, w.value, fontsize=5.5, va="top",
                  color="#08519c" if w.kind != "residual" else "#54278f", zorder=5)
    for n in lay.boxes():
        l, t, r, b = n.rect
        face = PORTS.get(n.kind, "#ffffff")
        style = "round,pad=0.02" if n.kind == "box" else "round4,pad=0.02"
        ax.add_patch(FancyBboxPatch((x0 + l, t), r - l, b - t, boxstyle=style, facecolor=face,
                                    edgecolor="#333333", lw=0.9, zorder=4))
        _text(ax, x0 + n.x, n.y, n.label, fontsize=7, ha="center", va="center", zorder=6,
              family="monospace" if n.kind == "box" else "sans-serif")


def _text(ax, x: float, y: float, text: str, **style):
    """A label as plain text: a name is shown as it is (``$`` is not mathtext), its unprintable
    characters escaped, cut short at a label's length."""
    ax.text(x, y, printable(text, LABEL_LIMIT), parse_math=False, **style)


def _figure(width: float, height: float, title: str | None) -> tuple[Figure, object]:
    fig = Figure(figsize=(min(80.0, SCALE * width + 1.0), min(60.0, SCALE * height + 1.2)))
    ax = fig.add_axes([0.01, 0.01, 0.98, 0.9])
    ax.set_xlim(-0.4, width + 0.4)
    ax.set_ylim(height + 0.3, -0.6)
    ax.axis("off")
    if title:
        fig.suptitle(printable(title, 150), fontsize=10, parse_math=False)
    return fig, ax


def _save(fig: Figure, path: str | None) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none"}), warnings.catch_warnings():  # labels stay text
        # a letter the font lacks (a CJK name) stays a letter in the SVG text; in a PNG it is a box
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        if path is None:
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            return buf.getvalue()
        if not str(path).lower().endswith((".png", ".svg")):
            raise ValueError(f"draw writes .png or .svg files, got {path!r}")
        from .artifacts import atomic_path
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        return str(path)


class MatplotlibBackend(Backend):
    """Draws terms, lenses, optimizers and learners as string diagrams."""

    def draw(self, term, path: str | None = None, *, collapse: bool = False, title: str | None = None,
             values=None) -> str:
        """Draw to ``path`` (``.png`` or ``.svg``) and return it, or return the SVG text; with
        ``values=(params, *args)``, each wire labelled with what the NumPy backend computes on it."""
        env = None
        if values is not None:
            from . import get
            if not isinstance(values, tuple) or not values:
                raise TypeError("values must be a tuple (params, *args): the compiled term's arguments, got "
                                f"{type(values).__name__}")
            env = get("numpy").wire_values(term, *values)
        lay = layout(term, collapse=collapse, values=env)
        fig, ax = _figure(lay.width, lay.height, title or lay.title)
        _render(ax, lay, collapse=collapse)
        return _save(fig, path)

    def draw_equation(self, lhs, rhs, path: str | None = None, *, collapse: bool = False,
                      title: str | None = None) -> str:
        """The two sides of a law, side by side with ``=`` between them."""
        left, right = layout(lhs, collapse=collapse), layout(rhs, collapse=collapse)
        gap = 1.2
        width, height = left.width + gap + right.width, max(left.height, right.height)
        fig, ax = _figure(width, height, title or f"{left.title}  =  {right.title}")
        _render(ax, left, collapse=collapse)
        ax.text(left.width + gap / 2, height / 2, "=", fontsize=28, ha="center", va="center")
        _render(ax, right, x0=left.width + gap, collapse=collapse)
        return _save(fig, path)


backend = MatplotlibBackend()
backend.name = "matplotlib"
draw = backend.draw
draw_equation = backend.draw_equation
