"""String diagrams laid out in our own code: boxes on wires, forward left to right, backward right to left.

:func:`layout` places a term (a lens, an optimizer or a learner: their term) as
nested blocks. Every group of boxes (a learner's parts, an optimizer's
transforms, the layer instances) is a rectangle of its own, laid out inside its
parent: its children (boxes and smaller groups) in columns by how they read each
other, each column stacked. So frames of different groups never overlap, nested
groups nest, and no box overlaps another. A reverse derivative's or a lens's
backward boxes go in a second band under the forward ones, running right to left
as a lens is drawn (``dy`` comes in on the right, ``dx`` leaves on the left, each
layer's backward boxes under its forward ones); a wire from the forward band into
the backward band is a *residual*: a value the forward pass keeps for the
backward pass.

Ports carry their names (``x``, ``dy``, ``dW``, ``dx``). A learner's or an
optimizer's state arrives as trees (``params``, ``opt0``, ``hyper``); each tree
is one port labelled with its number of wires (``params (4)``) unless it is
expanded (``expand=True``, or ``expand=["opt0"]``). A wire that spans several
columns of a block runs through waypoints between them. ``collapse=True`` draws
each of a learner's parts (model, loss, learning rate, optimizer) as one box per
band, as "Categorical Foundations" draws its four lenses, and a term without
parts one box per layer; ``collapse="layers"`` draws one box per layer instance
inside the parts. Constants show their values.

The layout is plain data, in layout units (``UNIT_PT`` points each): nodes with
rectangles, wires with their points, frames with their rectangles and members,
and every text as a :class:`Label` with its font size and rectangle, so tests
read its geometry; :func:`paralens.draw` renders it with matplotlib, as an SVG
that scales to its column (:func:`smallest_text_px` measures what a reader sees).

>>> import paralens as pl
>>> lay = pl.diagram.layout(pl.R(pl.nn.dense(3, 2) >> pl.nn.sigmoid()))
>>> sorted(n.label for n in lay.nodes if n.kind in ("input", "output"))
['dW', 'db', 'dx', 'dy', 'x']
>>> any(w.kind == "residual" for w in lay.wires)
True
>>> sorted(f.name for f in lay.frames)
['dense', 'dense', 'sigmoid', 'sigmoid']
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .terms import DictSig, _labels, as_term
from .types import printable

__all__ = ["Node", "Wire", "Frame", "Label", "Layout", "layout", "box_label", "value_label", "printable",
           "smallest_text_px", "responsive", "text_size"]

FORWARD, BACKWARD = 0, 1
_HEADING = {FORWARD: 1, BACKWARD: -1}
#: points per layout unit (the renderer draws one unit as this many points)
UNIT_PT = 57.6
#: font sizes in points, by what a label names; the smallest is at least ``MIN_FONT_PT``
FONTS = {"box": 8.0, "port": 8.0, "part": 8.0, "group": 7.0, "unit": 7.0, "wire": 7.0, "value": 7.0,
         "band": 7.0, "title": 10.0, "equals": 20.0}
MIN_FONT_PT = 7.0
#: the width of the docs' column in CSS px, and the smallest a text may be shown there
COLUMN_PX, FLOOR_PX = 690.0, 9.0
GAP_X, GAP_Y, BAND_GAP = 0.36, 0.2, 0.3
BOX_H, PORT_H, DUMMY_H = 0.42, 0.36, 0.08
PAD, MARGIN = 0.08, 0.1
_EM = {"mono": 0.61, "sans": 0.63, "bold": 0.7}  # a character's advance, in ems (DejaVu fonts, rounded up)


def text_size(text: str, size: float, face: str = "sans") -> tuple[float, float]:
    """The width and height of one line of ``text`` at ``size`` points, in layout units: an upper
    estimate from the DejaVu fonts' advances, so a label fits the box made for it.

    Args:
        text: the line.
        size: the font size in points.
        face: ``"mono"``, ``"sans"`` or ``"bold"``.

    Returns:
        ``(width, height)`` in layout units (``UNIT_PT`` points each).

    >>> w, h = text_size("einsum", 8.0, "mono")
    >>> round(w * UNIT_PT, 1), round(h * UNIT_PT, 1)    # points
    (29.3, 10.0)
    """
    return len(text) * size * _EM[face] / UNIT_PT, size * 1.25 / UNIT_PT


@dataclass
class Node:
    """A box, a port (``input``, ``param``, ``output``) or a waypoint (``dummy``) of a wire.

    Attributes:
        id: the node's index in ``Layout.nodes``.
        kind: ``"box"``, ``"input"``, ``"param"``, ``"output"`` or ``"dummy"`` (a waypoint).
        label: what the node shows: a box's :func:`box_label` (or the part or layer it stands for
            when collapsed), a port's name (a bundled state tree's root and its number of wires,
            ``params (4)``); unprintable characters escaped, cut to 48 characters (``LABEL_LIMIT``).
        band: ``0`` for the forward band, ``1`` for the backward band under it.
        column: the node's column inside the block that holds it, counted from the left.
        x: the centre's horizontal position.
        y: the centre's vertical position (``y`` grows downwards).
        w: the width (``0`` for a waypoint).
        h: the height.
        part: the outermost part of a learner's step the box belongs to (its model, loss,
            learning rate or optimizer), or ``None``.
        unit: the layer instance that made the box (``dense0``, ``relu1``), or ``None``.
        prim: the name of a box's primitive (``einsum``, ``const``); ``None`` for ports and waypoints.
        path: the groups the node is drawn inside, outermost first (a :class:`Frame` each).
        members: for a port, the port labels of the term it stands for (several for a bundle).
    """

    id: int
    kind: str
    label: str
    band: int = FORWARD
    column: int = 0
    x: float = 0.0
    y: float = 0.0  # the centre; y grows downwards
    w: float = 0.0
    h: float = 0.0
    part: str | None = None   # a learner's model, loss, learning rate, optimizer
    unit: str | None = None   # the layer instance that made it (dense0, relu1)
    prim: str | None = None
    path: tuple[str, ...] = ()
    members: tuple[str, ...] = ()

    @property
    def rect(self) -> tuple[float, float, float, float]:
        """``(left, top, right, bottom)``."""
        return (self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2)


@dataclass
class Wire:
    """A wire from ``src`` to ``dst`` through ``points``; ``kind`` is ``data``, ``param`` or
    ``residual`` (a forward value read by a backward box).

    Attributes:
        src: the id of the node the wire leaves.
        dst: the id of the node the wire enters.
        kind: ``"data"``, ``"param"`` (a parameter wire) or ``"residual"`` (from the forward band
            into a backward box).
        label: the shape of the value, for a wire leaving an input or a parameter port; ``""``
            for the others (and for a bundle's).
        points: the ``(x, y)`` points the wire runs through, from the output side of ``src`` (its
            right edge in the forward band, its left edge in the backward band) through the
            waypoints to the input side of ``dst``.
        value: what the wire carries, as :func:`value_label` writes it, when the layout was made
            with ``values``; ``""`` otherwise.
        into: for a bundle's wire into a group, the group's path: the one wire stands for all the
            bundle's wires into that group, and ends at its frame (``()`` for other wires).
        out_of: for a bundle's wire out of a group, the group's path (``()`` for other wires).
        ends: the way the wire heads as it leaves ``src`` and as it enters ``dst``: ``1`` rightwards
            (the forward band), ``-1`` leftwards (the backward band, which runs right to left).
    """

    src: int
    dst: int
    kind: str
    label: str = ""
    points: list = field(default_factory=list)
    value: str = ""
    into: tuple[str, ...] = ()
    out_of: tuple[str, ...] = ()
    ends: tuple[int, int] = (1, 1)


@dataclass
class Frame:
    """The rectangle drawn around one group of boxes in one band.

    Attributes:
        path: the group's names, outermost first (``("optimizer", "scale_by_adam")``); a frame
            nests inside the frame of each prefix of its path.
        band: the band it is in.
        kind: ``"part"`` (a learner's part, or an optimizer's transform: a coloured region),
            ``"group"`` (a group inside one) or ``"unit"`` (a layer instance: a dashed frame).
        rect: ``(left, top, right, bottom)``, the frame's name inside its top edge.
        members: the ids of the nodes inside it (boxes and waypoints).
    """

    path: tuple[str, ...]
    band: int
    kind: str
    rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    members: frozenset = frozenset()

    @property
    def name(self) -> str:
        """The group's own name, the last of its path."""
        return self.path[-1]


@dataclass
class Label:
    """One text of the drawing, where it goes and how large it is.

    Attributes:
        text: the text, as it is shown.
        kind: what it names: a key of ``FONTS`` (``"box"``, ``"port"``, ``"part"``, ``"group"``,
            ``"unit"``, ``"wire"``, ``"value"``, ``"band"``, ``"title"``).
        x: the anchor's horizontal position.
        y: the anchor's vertical position.
        ha: the horizontal alignment at the anchor (``"left"``, ``"center"``, ``"right"``).
        va: the vertical alignment at the anchor (``"top"``, ``"center"``, ``"bottom"``).
        size: the font size in points.
        rect: ``(left, top, right, bottom)`` around the text (estimated from the font's advances).
        node: the node it names (a box's or a port's label), or ``None``.
    """

    text: str
    kind: str
    x: float
    y: float
    ha: str = "left"
    va: str = "center"
    size: float = 8.0
    rect: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    node: int | None = None

    @property
    def face(self) -> str:
        """The font: ``mono`` for a box, ``bold`` for a part's name, ``sans`` otherwise."""
        return "mono" if self.kind == "box" else "bold" if self.kind == "part" else "sans"


def _label(text, kind, x, y, ha="left", va="center", node=None, size=None) -> Label:
    size = size or FONTS[kind]
    lab = Label(printable(text, LABEL_LIMIT if kind != "title" else 150), kind, x, y, ha, va, size, node=node)
    w, h = text_size(lab.text, size, lab.face)
    left = x - {"left": 0.0, "center": w / 2, "right": w}[ha]
    top = y - {"top": 0.0, "center": h / 2, "bottom": h}[va]
    lab.rect = (left, top, left + w, top + h)
    return lab


@dataclass
class Layout:
    """A laid-out diagram, as :func:`layout` returns it: nodes, wires, frames and labels, placed.

    Attributes:
        nodes: every :class:`Node` (parameters, inputs, boxes, outputs, then waypoints), each at
            the index of its ``id``.
        wires: every :class:`Wire`: one per term wire a node reads from another node (one per pair of
            nodes when collapsed, or when either end is a bundle).
        width: the width of the drawing's bands.
        height: the height of the drawing: the bottom of its lowest band.
        bands: ``(name, top, bottom)`` of each band: ``"forward"``, then ``"backward"`` when the
            term has backward boxes.
        title: the term's name (cut to 150 characters), shown over the drawing.
        frames: every :class:`Frame`, outer frames before the frames inside them.
        labels: every :class:`Label`: the nodes' names, the frames', the bands', the wires' shapes
            and values, the title.
        extent: ``(left, top, right, bottom)`` around everything drawn, the title and labels included.
        left: the left edge of the bands (``0`` unless the layout was :meth:`shifted`).
    """

    nodes: list[Node]
    wires: list[Wire]
    width: float
    height: float
    bands: list  # (name, top, bottom)
    title: str = ""
    frames: list[Frame] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    left: float = 0.0

    def boxes(self) -> list[Node]:
        """Every node drawn as a box or a port (waypoints left out).

        Returns:
            The nodes whose ``kind`` is not ``"dummy"``, in the order of ``nodes``.
        """
        return [n for n in self.nodes if n.kind != "dummy"]

    def groups(self, key: str) -> dict[tuple[str, int], tuple[float, float, float, float]]:
        """The bounding rectangle of each ``part`` or ``unit`` (by ``key``), per band.

        Args:
            key: ``"part"`` (a learner's parts) or ``"unit"`` (the layer instances): the
                :class:`Node` attribute to group boxes by; boxes where it is ``None`` are left out.

        Returns:
            A dict from ``(name, band)`` to the ``(left, top, right, bottom)`` rectangle around
            the boxes of that group in that band.
        """
        out: dict[tuple[str, int], list[float]] = {}
        for n in self.nodes:
            name = getattr(n, key)
            if n.kind != "box" or name is None:
                continue
            l, t, r, b = n.rect
            cur = out.setdefault((name, n.band), [l, t, r, b])
            cur[:] = [min(cur[0], l), min(cur[1], t), max(cur[2], r), max(cur[3], b)]
        return {k: tuple(v) for k, v in out.items()}

    def shifted(self, dx: float, dy: float = 0.0) -> Layout:
        """This layout moved (to draw two side by side, or one over the other).

        Args:
            dx: how far to move it right, in layout units.
            dy: how far to move it down, in layout units.

        Returns:
            A new :class:`Layout`, every coordinate moved by ``(dx, dy)``; this one is unchanged.
        """
        import copy

        out = copy.deepcopy(self)

        def move(r):
            return (r[0] + dx, r[1] + dy, r[2] + dx, r[3] + dy)
        for n in out.nodes:
            n.x, n.y = n.x + dx, n.y + dy
        for w in out.wires:
            w.points = [(x + dx, y + dy) for x, y in w.points]
        for f in out.frames:
            f.rect = move(f.rect)
        for lab in out.labels:
            lab.x, lab.y = lab.x + dx, lab.y + dy
            lab.rect = move(lab.rect)
        out.bands = [(name, top + dy, bottom + dy) for name, top, bottom in out.bands]
        out.extent = move(out.extent)
        out.left += dx
        return out


LABEL_LIMIT = 48


def box_label(e, constants: int = 4) -> str:
    """What a box shows: its primitive and the parameters that say what it does; a constant's value.

    Args:
        e: the box: a term's :class:`~paralens.Eqn`.
        constants: the most values a constant shows; a larger constant shows its shape instead.

    Returns:
        The label: a short constant's values (``"0.5"``, ``"[1, 2]"``) or ``"const (shape)"``;
        ``"einsum <spec>"``; ``"× k"``, ``"+ k"`` or ``"^ k"`` for ``scale``, ``shift`` and
        ``pow``; ``"sum <axes>"`` or ``"max <axes>"`` for reductions; ``"cast <dtype>"``;
        ``"scan ×<length>"``; any other primitive's name.
    """
    kw = e.kwargs
    name = e.prim.name
    if name == "const":
        v = kw["value"]
        if len(v) <= constants:
            nums = ", ".join(f"{x:g}" for x in v)
            return nums if not kw["shape"] else f"[{nums}]"
        return f"const {tuple(kw['shape'])}"
    if name == "einsum":
        return f"einsum {kw['spec']}"
    if name in ("scale", "shift", "pow"):
        return {"scale": "×", "shift": "+", "pow": "^"}[name] + f" {next(iter(kw.values())):g}"
    if name in ("reduce_sum", "reduce_max"):
        return f"{name.split('_')[1]} {kw['axes']}"
    if name == "cast":
        return f"cast {kw['dtype']}"
    if name == "scan":
        return f"scan ×{kw['length']}"
    return name


def value_label(value) -> str:
    """A wire's value as a diagram shows it: a number with 4 significant digits when it is one
    number (of any shape of size 1), else its shape and Euclidean norm, ``(2, 3) |.|=1.234``.

    Args:
        value: an array or a number.

    Returns:
        The label.

    >>> value_label(0.5), value_label([[3.0, 4.0]])
    ('0.5', '(1, 2) |.|=5')
    """
    shape, flat = _shape_and_values(value)
    if len(flat) == 1:
        return f"{flat[0]:.4g}"
    return f"{shape} |.|={sum(v * v for v in flat) ** 0.5:.4g}"


def _shape_and_values(value) -> tuple[tuple, list[float]]:
    """``value``'s shape and its entries as Python floats (an array of any library, or nested
    lists); a complex entry counts by its modulus."""
    shape = tuple(value.shape) if hasattr(value, "shape") else None
    items = value.tolist() if hasattr(value, "tolist") else value
    flat: list[float] = []
    dims: list[int] = []
    todo = [(items, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (list, tuple)):
            if len(dims) <= d:
                dims.append(len(v))
            todo.extend((u, d + 1) for u in reversed(v))
        else:
            flat.append(abs(v) if isinstance(v, complex) else float(v))
    return (shape if shape is not None else tuple(dims)), flat




def _fold_loose(names: list[str], limit: int = 3) -> str:
    """The label of a box standing for several primitive boxes outside any layer: their primitives."""
    names = list(dict.fromkeys(names))
    return ", ".join(names[:limit]) + (f" +{len(names) - limit}" if len(names) > limit else "")


def _nested(sig) -> bool:
    return isinstance(sig, tuple) or (isinstance(sig, DictSig) and any(v is not None for _, v in sig.items()))


def _roots(sigs, labels, expand) -> list[str | None]:
    """For each port label, the state tree it is bundled into (``params``, ``opt0``, ``hyper``), or ``None``.

    A port is bundled when it is a leaf of a nested argument (a dict of dicts: a learner's or an
    optimizer's state), with at least one other leaf under the same first name, and that name is
    not expanded."""
    nested: list[bool] = []
    for sig in sigs:
        nested += [_nested(sig)] * len(_labels(sig, "x"))
    if len(nested) != len(labels) or expand is True:
        return [None] * len(labels)
    roots = [lab.split(".", 1)[0] if ok and "." in lab else None for lab, ok in zip(labels, nested)]
    count: dict[str, int] = {}
    for r in roots:
        if r is not None:
            count[r] = count.get(r, 0) + 1
    keep = expand if isinstance(expand, frozenset) else frozenset()
    return [r if r is not None and count[r] > 1 and r not in keep else None for r in roots]


def _expand_names(expand) -> bool | frozenset:
    if expand is True or expand is False or expand is None:
        return bool(expand)
    if isinstance(expand, str) or not all(isinstance(n, str) for n in expand):
        raise TypeError(f"expand is True, False or a list of state trees to expand (['opt0']), got {expand!r}")
    return frozenset(expand)


def _mode(collapse) -> str | None:
    if collapse is False or collapse is None:
        return None
    if collapse is True or collapse == "parts":
        return "parts"
    if collapse == "layers":
        return "layers"
    raise ValueError(f"collapse is True, False, 'parts' or 'layers', got {collapse!r}")


def layout(term, *, collapse=False, values: dict | None = None, expand=False) -> Layout:
    """Lay ``term`` out (see the module's docstring).

    Args:
        term: a :class:`~paralens.Term`, a lens, an optimizer or a learner (anything
            :func:`~paralens.as_term` accepts).
        collapse: ``False``: every primitive box. ``True`` (or ``"parts"``): each of a learner's
            parts (model, loss, learning rate, optimizer: a box's outermost group) as one box per
            band, and a box outside any part as its layer (one box per layer instance), so a
            learner is drawn as four lenses with their forward and backward strands.
            ``"layers"``: one box per layer instance (per band), inside the frames of its groups;
            boxes of a group outside any layer fold into one box labelled with their primitives
            (or with the group's name where the group holds nothing else).
        values: ``{wire: value}`` (what a backend's ``wire_values`` returns): each drawn wire is
            labelled with its value (:func:`value_label`); ``None`` for none. A bundled state
            tree's wires carry no value label.
        expand: ``False``: each state tree of a nested argument (a learner's ``params``, ``opt0``,
            ``hyper``; an optimizer's ``state0``) is one port, labelled with its number of wires.
            ``True``: every state wire is a port of its own. A list of names (``["opt0"]``):
            those trees are expanded, the others bundled.

    Returns:
        The :class:`Layout`.

    Raises:
        ValueError: ``collapse`` is none of the above.
        TypeError: ``expand`` is neither a bool nor a list of names.

    >>> import paralens as pl
    >>> step = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    >>> lay = pl.diagram.layout(step, collapse=True)
    >>> sorted(n.label for n in lay.nodes if n.kind == "input")
    ['hyper (5)', 'opt0 (9)', 'params (4)', 'step', 'x', 'y']
    >>> sorted({n.label for n in lay.nodes if n.kind == "box"})
    ['learning rate', 'loss', 'model', 'optimizer']
    """
    mode = _mode(collapse)
    expand = _expand_names(expand)
    term = as_term(term)
    d = term._flat()
    in_labels, out_labels = term.port_labels()
    out_sigs = term.out_sig if isinstance(term.out_sig, tuple) else (term.out_sig,)
    in_roots = _roots(tuple(term.in_sig), in_labels, expand)
    out_roots = _roots(out_sigs, out_labels, expand)
    if isinstance(expand, frozenset):
        known = {r for r in _roots(tuple(term.in_sig), in_labels, frozenset()) +
                 _roots(out_sigs, out_labels, frozenset()) if r is not None}
        if not expand <= known:
            raise ValueError(f"expand names state trees {sorted(expand - known)} that {term.name} does not have; "
                             f"it has {sorted(known)}")
    units = term.layer_names()
    nodes: list[Node] = []
    producer: dict[int, int] = {}  # wire -> node
    unit_paths: set[tuple[str, ...]] = set()

    def add(kind, label, **kw) -> Node:
        n = Node(len(nodes), kind, printable(label, LABEL_LIMIT), **kw)
        nodes.append(n)
        return n

    def ports(kind, labels, roots):
        out, bundles = [], {}
        for label, root in zip(labels, roots):
            if root is None:
                out.append(add(kind, label, members=(label,)))
            else:
                if root not in bundles:
                    members = tuple(lab for lab, r in zip(labels, roots) if r == root)
                    bundles[root] = add(kind, f"{root} ({len(members)})", members=members)
                out.append(bundles[root])
        return out, {n.id for n in bundles.values()}

    for name, w in zip(term.param_names, d.param_wires):
        producer[w] = add("param", name, members=(name,)).id
    in_nodes, bundled = ports("input", in_labels, in_roots)
    for node, w in zip(in_nodes, d.inputs):
        producer.setdefault(w, node.id)

    # the groups that hold layers or smaller groups: their loose boxes fold into a box inside them
    structured = {(e.backward, tuple(e.group)[:k]) for e in d.eqns
                  for k in range(len(e.group) + (e.layer is not None and e.layer in units))}
    edges: list[tuple[int, int, int]] = []  # (src node, dst node, wire)
    cluster: dict[tuple, int] = {}
    folded: dict[int, list[str]] = {}
    for e in d.eqns:
        band = BACKWARD if e.backward else FORWARD
        unit = units.get(e.layer) if e.layer is not None else None
        group = tuple(e.group)
        part = group[0] if group else None
        if mode is None:
            path, fold = group + ((unit,) if unit else ()), None
            if unit:
                unit_paths.add(path)
        elif mode == "parts":
            fold = ("part", part) if part else ("unit", unit) if unit else None
            path = ()
        elif unit:
            fold, path = ("unit", unit), group
        elif group and (e.backward, group) in structured:
            fold, path = ("loose", group[-1]), group
        else:
            fold, path = ("group", group[-1]) if group else None, group[:-1]
        key = (band, path, fold)
        if fold is not None and key in cluster:
            node = nodes[cluster[key]]
            folded[node.id].append(e.prim.name)
        else:
            label = box_label(e) if fold is None else fold[1] if fold[0] != "loose" else e.prim.name
            node = add("box", label, band=band, part=part, unit=unit if fold is None or fold[0] == "unit" else None,
                       prim=e.prim.name, path=path)
            if fold is not None:
                cluster[key] = node.id
                folded[node.id] = [e.prim.name]
        for w in e.ins:
            if producer[w] != node.id:
                edges.append((producer[w], node.id, w))
        for w in e.outs:
            producer[w] = node.id
    for key, i in cluster.items():
        if key[2][0] == "loose":
            nodes[i].label = printable(_fold_loose(folded[i]), LABEL_LIMIT)
    out_nodes, out_bundled = ports("output", out_labels, out_roots)
    bundled |= out_bundled
    for out, w in zip(out_nodes, d.outputs):
        edges.append((producer[w], out.id, w))
    seen: dict[tuple, tuple[int, int, int]] = {}
    for s, t, w in edges:
        key = (s, t) if mode is not None or s in bundled or t in bundled else (s, t, w)
        seen.setdefault(key, (s, t, w))
    edges = list(seen.values())

    # bands of the ports: an input read by a forward box is forward; an output is where it is made
    consumers: dict[int, list[int]] = {}
    for s, t, _ in edges:
        consumers.setdefault(s, []).append(t)
    has_backward = any(n.band == BACKWARD for n in nodes if n.kind == "box")
    for n in nodes:
        if n.kind in ("input", "param"):
            bands = {nodes[t].band for t in consumers.get(n.id, []) if nodes[t].kind == "box"}
            n.band = FORWARD if FORWARD in bands or not has_backward or not bands else BACKWARD
    for n in nodes:
        if n.kind == "output":
            n.band = max((nodes[s].band for s, t, _ in edges if t == n.id), default=FORWARD)

    wires = []
    param_wires = set(d.param_wires)
    for s, t, w in edges:
        src, dst = nodes[s], nodes[t]
        bundle = s in bundled or t in bundled
        kind = "residual" if src.band == FORWARD and dst.band == BACKWARD and dst.kind == "box" else \
            "param" if w in param_wires else "data"
        wires.append(Wire(s, t, kind, str(d.wires[w].shape) if src.kind in ("input", "param") and not bundle else "",
                          value=value_label(values[w]) if values is not None and w in values and not bundle else ""))

    for n in nodes:
        face = "mono" if n.kind == "box" else "sans"
        tw, _ = text_size(n.label, FONTS["box" if n.kind == "box" else "port"], face)
        n.w, n.h = max(0.4, tw + 0.2), BOX_H if n.kind == "box" else PORT_H
    wires = _merge_bundles(nodes, wires, bundled)
    frames, labels = [], []
    blocks = _blocks(nodes, unit_paths)
    y = 0.0
    bands, roots = [], []
    for band in (FORWARD, BACKWARD) if has_backward else (FORWARD,):
        root = blocks[(band, ())]
        _measure(root, nodes, wires, blocks)
        roots.append((band, root))
    width = max(r.w for _, r in roots) + 2 * MARGIN
    for band, root in roots:
        name = "forward" if band == FORWARD else "backward"
        head = text_size(name, FONTS["band"])[1] + 0.04
        labels.append(_label(name, "band", 0.05, y + 0.02, va="top"))
        placed = len(frames)
        _position(root, MARGIN, y + head, nodes, frames)
        if band == BACKWARD:  # the backward pass runs right to left, under the forward boxes it reverses
            for n in nodes:
                if n.band == BACKWARD:
                    n.x = width - n.x
            for f in frames[placed:]:
                f.rect = (width - f.rect[2], f.rect[1], width - f.rect[0], f.rect[3])
        bottom = y + head + root.h + MARGIN
        bands.append((name, y, bottom))
        y = bottom + BAND_GAP
    height = bands[-1][2]
    rects = {(f.band, f.path): f.rect for f in frames}
    for wire in wires:
        src, dst = nodes[wire.src], nodes[wire.dst]
        out, into = _HEADING[src.band], _HEADING[dst.band]  # left by its output side, entered by its input side
        wire.ends = (out, into)
        via = [(nodes[i].x, nodes[i].y) for i in wire.points]
        start, end = (src.x + out * src.w / 2, src.y), (dst.x - into * dst.w / 2, dst.y)
        if wire.into:  # a bundle's wire ends at the frame of the group it enters
            l, t, r, b = rects[(dst.band, wire.into)]
            end = (l if into > 0 else r, (t + b) / 2)
        if wire.out_of:
            l, t, r, b = rects[(src.band, wire.out_of)]
            start = (r if out > 0 else l, (t + b) / 2)
        wire.points = [start] + via + [end]

    for n in nodes:
        if n.kind != "dummy":
            labels.append(_label(n.label, "box" if n.kind == "box" else "port", n.x, n.y, ha="center", node=n.id))
    for f in frames:
        labels.append(_label(f.name, f.kind, f.rect[0] + PAD, f.rect[1] + PAD / 2, va="top"))
    shown, stacked = set(), {}  # each text once per source; shapes stack up, values down, each on its own
    for w in wires:
        (x0, y0) = w.points[0]
        for text, kind in ((w.label, "wire"), (w.value, "value")):
            if not text or (w.src, text) in shown:
                continue
            shown.add((w.src, text))
            k = stacked[(w.src, kind)] = stacked.get((w.src, kind), -1) + 1
            step = text_size(text, FONTS[kind])[1]
            yy = y0 - 0.02 - k * step if kind == "wire" else y0 + 0.02 + k * step
            labels.append(_label(text, kind, x0 + 0.04 * w.ends[0], yy, ha="left" if w.ends[0] > 0 else "right",
                                 va="bottom" if kind == "wire" else "top"))
    title = printable(term.name, 150)
    if title:
        labels.append(_label(title, "title", width / 2, -0.08, ha="center", va="bottom"))
    extent = _extent(labels, wires, 0.0, width, height)
    return Layout(nodes, wires, width, height, bands, title, frames, labels, extent)


def _merge_bundles(nodes: list[Node], wires: list[Wire], bundled: set[int]) -> list[Wire]:
    """One wire per bundle and outermost group it enters (or leaves), in each band, in place of
    one per box: a state tree (``opt0 (9)``) feeds the optimizer as one wire."""
    out, seen = [], set()
    for w in wires:
        src, dst = nodes[w.src], nodes[w.dst]
        if w.src in bundled and dst.path:
            key = ("in", w.src, dst.band, dst.path[:1])
            w.into = dst.path[:1]
        elif w.dst in bundled and src.path:
            key = ("out", w.dst, src.band, src.path[:1])
            w.out_of = src.path[:1]
        else:
            out.append(w)
            continue
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def _extent(labels, wires, left: float, width: float, height: float) -> tuple[float, float, float, float]:
    """The rectangle around the bands, the labels and the wires (a curve bulges past its ends), with a margin."""
    rects = [lab.rect for lab in labels] + [(left, 0.0, left + width, height)]
    rects += [(min(x for x, _ in w.points) - 0.3, min(y for _, y in w.points),
               max(x for x, _ in w.points) + 0.3, max(y for _, y in w.points)) for w in wires]
    return (min(r[0] for r in rects) - MARGIN, min(r[1] for r in rects) - MARGIN,
            max(r[2] for r in rects) + MARGIN, max(r[3] for r in rects) + MARGIN)


class _Block:
    """A group of one band, laid out as columns of its children (nodes and smaller blocks)."""

    def __init__(self, band: int, path: tuple[str, ...], kind: str):
        self.band, self.path, self.kind = band, path, kind
        self.items: list = []  # ("node", id) or ("block", _Block)
        self.w = self.h = 0.0
        self.place: list[tuple[object, float, float]] = []  # (item, x, y) of each child's top left


def _blocks(nodes: list[Node], unit_paths: set) -> dict[tuple, _Block]:
    blocks: dict[tuple, _Block] = {}

    def block(band, path) -> _Block:
        if (band, path) not in blocks:
            kind = "unit" if path in unit_paths else "part" if len(path) == 1 else "group"
            blocks[(band, path)] = b = _Block(band, path, kind)
            if path:
                block(band, path[:-1]).items.append(("block", b))
        return blocks[(band, path)]
    for band in (FORWARD, BACKWARD):
        block(band, ())
    for n in nodes:
        block(n.band, n.path).items.append(("node", n.id))
    return blocks


def _child(block: _Block, node: Node, blocks) -> object | None:
    """The item of ``block`` that holds ``node``, or ``None`` where ``node`` is outside it."""
    k = len(block.path)
    if node.band != block.band or node.path[:k] != block.path:
        return None
    if len(node.path) > k:
        return ("block", blocks[(node.band, node.path[:k + 1])])
    return ("node", node.id)


def _measure(block: _Block, nodes: list[Node], wires: list[Wire], blocks):
    """Lay ``block``'s children out in columns (recursively) and set its size."""
    for kind, item in block.items:
        if kind == "block":
            _measure(item, nodes, wires, blocks)
    items = list(block.items)
    index = {id(it[1]) if it[0] == "block" else ("n", it[1]): i for i, it in enumerate(items)}

    def key(it):
        return id(it[1]) if it[0] == "block" else ("n", it[1])
    links: list[tuple[int, int, Wire]] = []
    for w in wires:
        a, b = _child(block, nodes[w.src], blocks), _child(block, nodes[w.dst], blocks)
        if a is not None and b is not None and a != b:
            links.append((index[key(a)], index[key(b)], w))
    n = len(items)
    preds = {i: [] for i in range(n)}
    succs = {i: [] for i in range(n)}
    for a, b, _ in links:
        preds[b].append(a)
        succs[a].append(b)
    order = _topological(n, preds, succs)
    kind_of = [nodes[it[1]].kind if it[0] == "node" else "block" for it in items]
    layer = [0] * n
    rank = {i: k for k, i in enumerate(order)}
    first = 1 if not block.path and any(k in ("input", "param") for k in kind_of) else 0  # ports alone on the left
    for i in order:
        if kind_of[i] not in ("input", "param"):
            layer[i] = max([first] + [layer[p] + 1 for p in preds[i] if rank[p] < rank[i]])
    last = max([layer[i] for i in range(n) if kind_of[i] != "output"], default=-1)
    for i in reversed(order):  # a chain that only feeds a later child sits next to it
        readers = [s for s in succs[i] if kind_of[s] != "output" and rank[s] > rank[i]]
        if kind_of[i] not in ("input", "param", "output") and readers:
            layer[i] = max(layer[i], min(layer[s] for s in readers) - 1)
    for i in range(n):
        if kind_of[i] == "output":
            layer[i] = last + 1
    # waypoints: a wire spanning several columns of this block passes between their children
    for a, b, w in links:
        w.points = []
        for c in range(layer[a] + 1, layer[b]):
            dummy = Node(len(nodes), "dummy", "", band=block.band, column=c, h=DUMMY_H, path=block.path)
            nodes.append(dummy)
            items.append(("node", dummy.id))
            layer.append(c)
            w.points.append(dummy.id)
    columns: dict[int, list[int]] = {}
    for i, c in enumerate(layer):
        columns.setdefault(c, []).append(i)
    _uncross(items, columns, links, nodes)
    # sizes and places
    sizes = [(it[1].w, it[1].h) if it[0] == "block" else (nodes[it[1]].w, nodes[it[1]].h) for it in items]
    gap: dict[int, float] = {}
    for a, _, w in links:
        for text, kind in ((w.label, "wire"), (w.value, "value")):
            if text:
                gap[layer[a]] = max(gap.get(layer[a], GAP_X), text_size(text, FONTS[kind])[0] + 0.15)
    x, placed = 0.0, []
    heights = {c: sum(sizes[i][1] for i in ids) + GAP_Y * (len(ids) - 1) for c, ids in columns.items()}
    content_h = max(heights.values(), default=0.0)
    for c in sorted(columns):
        ids = columns[c]
        cw = max(sizes[i][0] for i in ids)
        y = (content_h - heights[c]) / 2
        for i in ids:
            placed.append((items[i], x + (cw - sizes[i][0]) / 2, y))
            if items[i][0] == "node":
                nodes[items[i][1]].column = c
            y += sizes[i][1] + GAP_Y
        x += cw + gap.get(c, GAP_X)
    content_w = max(x - gap.get(max(columns), GAP_X), 0.0) if columns else 0.0
    if block.path:  # a frame: padding, and its name inside its top edge
        name = _label(block.path[-1], block.kind, 0.0, 0.0, va="top").rect  # as drawn: escaped, cut
        lw, lh = name[2] - name[0], name[3] - name[1]
        head = PAD / 2 + lh + 0.03
        inner_w = max(content_w, lw + PAD)
        block.w, block.h = inner_w + 2 * PAD, content_h + head + PAD
        dx = PAD + (inner_w - content_w) / 2
        block.place = [(it, px + dx, py + head) for it, px, py in placed]
    else:
        block.w, block.h, block.place = content_w, content_h, placed
    block.items = items


def _uncross(items, columns: dict[int, list[int]], links, nodes, sweeps: int = 4):
    """Order each column by the mean position of its neighbours (barycentre sweeps), to uncross wires."""
    left: dict[int, list[int]] = {i: [] for i in range(len(items))}
    right: dict[int, list[int]] = {i: [] for i in range(len(items))}
    where = {("n", it[1]): i for i, it in enumerate(items) if it[0] == "node"}
    for a, b, w in links:
        chain = [a] + [where[("n", p)] for p in w.points] + [b]
        for s, t in zip(chain, chain[1:]):
            right[s].append(t)
            left[t].append(s)
    pos = {i: k for ids in columns.values() for k, i in enumerate(ids)}
    cols = sorted(columns)
    for sweep in range(sweeps):
        neighbours, order = (left, cols[1:]) if sweep % 2 == 0 else (right, cols[::-1][1:])
        for c in order:
            ids = columns[c]

            def key(i, neighbours=neighbours):
                ns = neighbours[i]
                return sum(pos[j] for j in ns) / len(ns) if ns else pos[i]
            ids.sort(key=key)
            pos.update({i: k for k, i in enumerate(ids)})


def _position(block: _Block, x0: float, y0: float, nodes: list[Node], frames: list[Frame]):
    """Put ``block``'s top left at ``(x0, y0)``: its nodes' centres and its frames' rectangles."""
    members = []
    if block.path:
        frame = Frame(block.path, block.band, block.kind, (x0, y0, x0 + block.w, y0 + block.h))
        frames.append(frame)
    for (kind, item), px, py in block.place:
        if kind == "block":
            members += _position(item, x0 + px, y0 + py, nodes, frames)
        else:
            n = nodes[item]
            n.x, n.y = x0 + px + n.w / 2, y0 + py + n.h / 2
            members.append(item)
    if block.path:
        frame.members = frozenset(members)
    return members


def _topological(n: int, preds, succs) -> list[int]:
    """Indices in an order where every one comes after what it reads (Kahn's algorithm);
    creation order breaks ties. A cycle (possible between blocks) is broken at its earliest member."""
    waiting = {i: len(set(preds[i])) for i in range(n)}
    ready = [i for i in range(n) if waiting[i] == 0]
    out, done = [], set()
    while len(out) < n:
        if not ready:  # a cycle: take the earliest left
            ready = [min(i for i in range(n) if i not in done)]
        i = ready.pop(0)
        if i in done:
            continue
        done.add(i)
        out.append(i)
        for s in dict.fromkeys(succs[i]):
            waiting[s] -= 1
            if waiting[s] == 0 and s not in done:
                ready.append(s)
    return out


# --------------------------------------------------------------------------- what a reader sees

_LENGTH = re.compile(r"^\s*([0-9.]+)\s*(px|pt|%)?\s*$")


def _css(style: str) -> dict[str, str]:
    out = {}
    for decl in style.split(";"):
        if ":" in decl:
            k, v = decl.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _px(length: str | None, column: float) -> float | None:
    """A CSS length in CSS px (``pt`` is 4/3 px, ``%`` of ``column``); ``None`` for none or ``auto``."""
    if length is None or length in ("auto", "none"):
        return None
    m = _LENGTH.match(length)
    if not m:
        raise ValueError(f"cannot read the length {length!r}")
    v, unit = float(m.group(1)), m.group(2) or "px"
    return v * {"px": 1.0, "pt": 4 / 3, "%": column / 100}[unit]


def smallest_text_px(svg: str, column: float = COLUMN_PX) -> float:
    """The height in CSS px of the smallest text of ``svg`` as a page shows it in a column
    ``column`` px wide, the way a browser sizes an inline SVG (with ``max-width: 100%``, as
    MkDocs Material sets it): its width from its ``width`` attribute or style, limited by
    ``max-width`` and raised to ``min-width``, and its ``viewBox`` scaled to that width.

    Args:
        svg: the SVG text; its texts must be ``<text>`` elements (matplotlib's ``svg.fonttype = 'none'``),
            with their font size in their ``style``.
        column: the width of the column in CSS px.

    Returns:
        The smallest font size times the scale, in CSS px.

    Raises:
        ValueError: the SVG has no ``viewBox``, no ``<text>`` (its letters drawn as paths cannot be
            measured), a text without a font size, or a scaling transform on a text.

    >>> svg = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 100" style="width: 100%">'
    ...        '<text style="font-size: 10px">a</text></svg>')
    >>> smallest_text_px(svg, 690)
    6.9
    """
    import xml.etree.ElementTree as ET

    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG: no <svg> element")
    root = ET.fromstring(svg[start:])
    box = root.get("viewBox")
    if not box:
        raise ValueError("the SVG has no viewBox, so it does not scale")
    vb_w = float(box.replace(",", " ").split()[2])
    style = _css(root.get("style", ""))
    width = _px(style.get("width") or root.get("width") or "100%", column)
    shown = min(width, column)  # max-width: 100% of the column
    if _px(style.get("max-width"), column) is not None:
        shown = min(shown, _px(style.get("max-width"), column))
    if _px(style.get("min-width"), column) is not None:
        shown = max(shown, _px(style.get("min-width"), column))
    sizes = _font_sizes(root, column)
    return round(min(sizes) * shown / vb_w, 6)


def _font_sizes(root, column: float) -> list[float]:
    """The font size of each ``<text>`` under ``root``, in the SVG's own units."""
    import xml.etree.ElementTree as ET

    sizes = []
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "text":
            continue
        css = _css(el.get("style", ""))
        size = css.get("font-size") or el.get("font-size")
        if size is None and "font" in css:
            m = re.search(r"([0-9.]+)px", css["font"])
            size = m and m.group(0)
        if size is None:
            raise ValueError(f"a text without a font size: {ET.tostring(el)[:80]!r}")
        if re.search(r"scale|matrix", el.get("transform", "")):
            raise ValueError("a text is scaled by a transform; its size cannot be read from its style")
        sizes.append(_px(size, column))
    if not sizes:
        raise ValueError("the SVG has no <text>: its letters are paths (use svg.fonttype = 'none')")
    return sizes


def responsive(svg: str, floor_px: float = FLOOR_PX) -> str:
    """Make a matplotlib SVG scale to its column: ``width="100%"`` and no fixed height, so its
    ``viewBox`` keeps its aspect; at most its natural size (points as CSS points), and at least
    the width at which its smallest text is ``floor_px`` CSS px, so a page too narrow for that
    scrolls (in a scrolling container) rather than shrink the text below the floor.

    Args:
        svg: the SVG text, with a ``viewBox`` in points and its texts as ``<text>``.
        floor_px: the smallest a text may become, in CSS px.

    Returns:
        The SVG text with its root element's ``width``, ``height`` and ``style`` set.

    Raises:
        ValueError: the SVG has no ``viewBox``, or its texts cannot be measured (see
            :func:`smallest_text_px`).
    """
    start = svg.find("<svg")
    end = svg.find(">", start)
    tag = svg[start:end]
    m = re.search(r'viewBox="([^"]+)"', tag)
    if not m:
        raise ValueError("the SVG has no viewBox")
    vb_w = float(m.group(1).split()[2])
    import xml.etree.ElementTree as ET

    smallest = min(_font_sizes(ET.fromstring(svg[start:]), vb_w))
    tag = re.sub(r'\s(width|height|style)="[^"]*"', "", tag)
    natural = vb_w * 4 / 3
    least = math.ceil(vb_w * floor_px / smallest) + 1  # a whole px more: browsers lay out in fractions of one
    style = f"width: 100%; height: auto; max-width: {max(natural, least):.2f}px; min-width: {least:.2f}px"
    return svg[:start] + tag + f' width="100%" style="{style}"' + svg[end:]
