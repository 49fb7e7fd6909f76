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
import pathlib
import warnings
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch, PathPatch, Rectangle  # noqa: E402
from matplotlib.path import Path  # noqa: E402

from paralens.backends import Backend  # noqa: E402
from paralens.diagram import (  # noqa: E402
    COLUMN_PX,
    FLOOR_PX,
    MARGIN,
    MIN_FONT_PT,
    UNIT_PT,
    Layout,
    _extent,
    _label,
    layout,
    responsive,
)

__all__ = ["backend", "draw", "draw_equation"]

SCALE = UNIT_PT / 72  # inches per layout unit: the layout's font sizes are the drawing's
PORTS = {"input": "#9ecae1", "param": "#fdae6b", "output": "#a1d99b"}
PARTS = ["#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1", "#d9d9d9"]
WIRES = {"data": dict(color="#555555", lw=1.0, ls="-"), "param": dict(color="#e6550d", lw=1.2, ls="--"),
         "residual": dict(color="#756bb1", lw=1.6, ls=":")}
TEXT = {"box": dict(family="monospace"), "part": dict(fontweight="bold"), "group": dict(color="#555555"),
        "unit": dict(color="#777777"), "wire": dict(color="#666666"), "value": dict(color="#08519c"),
        "band": dict(color="#888888", style="italic")}


def _curve(points, ends=(1, 1)):
    """A smooth path through ``points``: horizontal tangents at each point, heading ``ends[0]``
    (``1`` right, ``-1`` left) as it leaves the first and ``ends[1]`` as it enters the last."""
    verts, codes = [points[0]], [Path.MOVETO]
    last = len(points) - 2
    for k, ((x0, y0), (x1, y1)) in enumerate(zip(points, points[1:])):
        a = ends[0] if k == 0 else (1 if x1 >= x0 else -1)
        b = ends[1] if k == last else (1 if x1 >= x0 else -1)
        ahead = max(abs(x1 - x0) / 2, 0.25)  # an end that heads against the way to go turns round tightly
        ra = ahead if a * (x1 - x0) >= 0 else 0.35
        rb = ahead if b * (x1 - x0) >= 0 else 0.35
        verts += [(x0 + a * ra, y0), (x1 - b * rb, y1), (x1, y1)]
        codes += [Path.CURVE4] * 3
    return Path(verts, codes)


def _render(ax, lay: Layout, colours: dict | None = None):
    """Draw ``lay`` into ``ax`` (layout units; y grows downwards): everything where the layout put it."""
    colours = {} if colours is None else colours
    for name, top, bottom in lay.bands:
        ax.add_patch(Rectangle((lay.left, top), lay.width, bottom - top, facecolor="#f7f7f7" if name == "forward"
                               else "#f2f0f7", edgecolor="none", zorder=0))

    def colour(part):
        return colours.setdefault(part, PARTS[len(colours) % len(PARTS)])
    for f in lay.frames:
        l, t, r, b = f.rect
        if f.kind == "part":
            ax.add_patch(FancyBboxPatch((l, t), r - l, b - t, boxstyle="round,pad=0,rounding_size=0.05",
                                        facecolor=colour(f.path[0]), edgecolor="#888888", alpha=0.45, zorder=1))
        else:
            ax.add_patch(FancyBboxPatch((l, t), r - l, b - t, boxstyle="round,pad=0,rounding_size=0.03",
                                        facecolor="none", edgecolor="#999999" if f.kind == "unit" else "#666666",
                                        ls="--", lw=0.7, zorder=2))
    for w in lay.wires:
        style = WIRES[w.kind]
        pts = list(w.points)
        ax.add_patch(PathPatch(_curve(pts, w.ends), facecolor="none", edgecolor=style["color"], lw=style["lw"],
                               ls=style["ls"], zorder=3))
        ax.annotate("", xy=pts[-1], xytext=(pts[-1][0] - 0.05 * w.ends[1], pts[-1][1]),
                    arrowprops=dict(arrowstyle="-|>", color=style["color"], lw=0.8), zorder=3)
    for n in lay.boxes():
        l, t, r, b = n.rect
        face = PORTS.get(n.kind) or (colour(n.part) if n.part is not None and not n.path else "#ffffff")
        style = "round,pad=0,rounding_size=0.04" if n.kind == "box" else "round4,pad=0,rounding_size=0.06"
        ax.add_patch(FancyBboxPatch((l, t), r - l, b - t, boxstyle=style, facecolor=face,
                                    edgecolor="#333333", lw=0.9, zorder=4))
    for lab in lay.labels:
        ax.text(lab.x, lab.y, lab.text, fontsize=lab.size, ha=lab.ha, va=lab.va, zorder=6, parse_math=False,
                **TEXT.get(lab.kind, {}))


def _figure(extent) -> tuple[Figure, object]:
    """A figure as large as ``extent`` (layout units), its axes the whole of it, one unit ``SCALE`` inches."""
    l, t, r, b = extent
    fig = Figure(figsize=(SCALE * (r - l), SCALE * (b - t)))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(l, r)
    ax.set_ylim(b, t)
    ax.axis("off")
    return fig, ax


def _titled(lay: Layout, title: str | None) -> Layout:
    """``lay`` with ``title`` over it in place of its own (``""``: none); ``None``: ``lay`` as it is."""
    if title is None:
        return lay
    labels = [x for x in lay.labels if x.kind != "title"]
    if title:
        labels.append(_label(title, "title", lay.left + lay.width / 2, -0.08, ha="center", va="bottom"))
    return replace(lay, labels=labels, title=title, extent=_extent(labels, lay.wires, lay.left, lay.width, lay.height))


def _save(fig: Figure, path: str | None) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "paralens"}), \
            warnings.catch_warnings():  # labels stay text, ids stay the same from run to run
        # a letter the font lacks (a CJK name) stays a letter in the SVG text; in a PNG it is a box
        warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
        if path is None:
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            return responsive(buf.getvalue())
        if not str(path).lower().endswith((".png", ".svg")):
            raise ValueError(f"draw writes .png or .svg files, got {path!r}")
        from .artifacts import atomic_path
        with atomic_path(path) as tmp:
            if str(path).lower().endswith(".svg"):
                buf = io.StringIO()
                fig.savefig(buf, format="svg")
                pathlib.Path(tmp).write_text(responsive(buf.getvalue()), encoding="utf-8")
            else:
                fig.savefig(tmp, dpi=110)
        return str(path)


class MatplotlibBackend(Backend):
    """Draws terms, lenses, optimizers and learners as string diagrams."""

    def draw(self, term, path: str | None = None, *, collapse=False, title: str | None = None,
             values=None, expand=False) -> str:
        """Draw to ``path`` (``.png`` or ``.svg``) and return it, or return the SVG text; with
        ``values=(params, *args)``, each wire labelled with what the NumPy backend computes on it.
        ``collapse`` and ``expand`` are :func:`paralens.diagram.layout`'s."""
        env = None
        if values is not None:
            from . import get
            if not isinstance(values, tuple) or not values:
                raise TypeError("values must be a tuple (params, *args): the compiled term's arguments, got "
                                f"{type(values).__name__}")
            env = get("numpy").wire_values(term, *values)
        lay = _titled(layout(term, collapse=collapse, values=env, expand=expand), title)
        fig, ax = _figure(lay.extent)
        _render(ax, lay)
        return _save(fig, path)

    def draw_equation(self, lhs, rhs, path: str | None = None, *, collapse=False,
                      title: str | None = None, expand=False) -> str:
        """The two sides of a law, side by side with ``=`` between them, or one over the other
        where side by side would be too wide for the docs' column at the text floor."""
        left = layout(lhs, collapse=collapse, expand=expand)
        right = layout(rhs, collapse=collapse, expand=expand)
        left, right = (_titled(left, ""), _titled(right, ""))
        gap = 0.8
        wide = left.extent[2] - left.extent[0] + gap + right.extent[2] - right.extent[0]
        tall = max(left.extent[2] - left.extent[0], right.extent[2] - right.extent[0])
        if wide * UNIT_PT * FLOOR_PX / MIN_FONT_PT > COLUMN_PX and tall < wide:
            # side by side it would scroll: the right side under the left, "=" between them
            right = right.shifted(left.extent[0] - right.extent[0], left.extent[3] - right.extent[1] + gap)
            equals = _label("=", "equals", (left.extent[0] + left.extent[2]) / 2,
                            (left.extent[3] + right.extent[1]) / 2, ha="center")
        else:
            right = right.shifted(left.extent[2] - right.extent[0] + gap)
            equals = _label("=", "equals", (left.extent[2] + right.extent[0]) / 2,
                            (max(left.height, right.height)) / 2, ha="center")
        head = _label(title if title is not None else f"{left_title(lhs)}  =  {left_title(rhs)}", "title",
                      (left.extent[0] + max(left.extent[2], right.extent[2])) / 2, -0.08, ha="center", va="bottom")
        rects = [left.extent, right.extent, equals.rect, head.rect]
        extent = (min(r[0] for r in rects) - MARGIN, min(r[1] for r in rects) - MARGIN,
                  max(r[2] for r in rects) + MARGIN, max(r[3] for r in rects) + MARGIN)
        fig, ax = _figure(extent)
        colours: dict = {}
        _render(ax, left, colours)
        _render(ax, right, colours)
        for lab in (equals, head):
            ax.text(lab.x, lab.y, lab.text, fontsize=lab.size, ha=lab.ha, va=lab.va, parse_math=False)
        return _save(fig, path)


def left_title(obj) -> str:
    """The name a side of an equation is shown with (its term's name)."""
    from paralens.terms import as_term
    return as_term(obj).name


backend = MatplotlibBackend()
backend.name = "matplotlib"
draw = backend.draw
draw_equation = backend.draw_equation
