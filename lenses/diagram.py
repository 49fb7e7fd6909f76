"""String diagrams laid out in our own code: boxes on wires flowing left to right.

:func:`layout` places a term (a lens, an optimizer or a learner: their term) on
a grid: every wire runs from left to right. A reverse derivative's or a lens's
backward boxes go in a second band under the forward ones. A wire from the
forward band into the backward band is a *residual*: a value the forward pass
keeps for the backward pass.

Ports carry their names (``x``, ``dy``, ``dW``, ``dx``). A wire that spans
several columns runs through waypoints between the boxes, so it never passes
behind one. Boxes are grouped by the layer that made them; with
``collapse=True`` each layer becomes one box. Constants show their values. The
layout is plain data (boxes with coordinates, wires with their points), so
tests can check it; :func:`paralens.draw` renders it with matplotlib.

>>> import paralens as pl
>>> lay = pl.diagram.layout(pl.R(pl.nn.dense(3, 2) >> pl.nn.sigmoid()))
>>> sorted(n.label for n in lay.nodes if n.kind in ("input", "output"))
['dW', 'db', 'dx', 'dy', 'x']
>>> any(w.kind == "residual" for w in lay.wires)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .terms import as_term
from .types import printable

__all__ = ["Node", "Wire", "Layout", "layout", "box_label", "value_label", "printable"]

FORWARD, BACKWARD = 0, 1
GAP_X, GAP_Y, BAND_GAP = 0.55, 0.3, 0.9
BOX_H, PORT_H, DUMMY_H = 0.5, 0.36, 0.12


@dataclass
class Node:
    """A box, a port (``input``, ``param``, ``output``) or a waypoint (``dummy``) of a wire.

    Attributes:
        id: the node's index in ``Layout.nodes``.
        kind: ``"box"``, ``"input"``, ``"param"``, ``"output"`` or ``"dummy"`` (a waypoint).
        label: what the node shows: a box's :func:`box_label` (or its layer's name when
            collapsed), a port's name; unprintable characters escaped, cut to 48 characters
            (``LABEL_LIMIT``) with ``...``.
        band: ``0`` for the forward band, ``1`` for the backward band under it.
        column: the grid column, counted from the left; outputs share the last one.
        x: the centre's horizontal position.
        y: the centre's vertical position (``y`` grows downwards).
        w: the width (``0`` for a waypoint).
        h: the height.
        part: the outermost part of a learner's step the box belongs to (its model, loss,
            learning rate or optimizer), or ``None``.
        unit: the layer instance that made the box (``dense0``, ``relu1``), or ``None``.
        prim: the name of a box's primitive (``einsum``, ``const``); ``None`` for ports and waypoints.
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
            for the others.
        points: the ``(x, y)`` points the wire runs through, from the right edge of ``src``
            through the waypoints to the left edge of ``dst``.
        value: what the wire carries, as :func:`value_label` writes it, when the layout was made
            with ``values``; ``""`` otherwise.
    """

    src: int
    dst: int
    kind: str
    label: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)
    value: str = ""


@dataclass
class Layout:
    """A laid-out diagram, as :func:`layout` returns it: nodes with coordinates and wires with points.

    Attributes:
        nodes: every :class:`Node` (parameters, inputs, boxes, outputs, then waypoints), each at
            the index of its ``id``.
        wires: every :class:`Wire`: one per term wire a node reads from another node (one per pair of
            nodes when collapsed).
        width: the width of the drawing, from the left edge of the first column to the right edge
            of the last.
        height: the height of the drawing: the bottom of its lowest band.
        bands: ``(name, top, bottom)`` of each band: ``"forward"``, then ``"backward"`` when the
            term has backward boxes.
        title: the term's name (cut to 150 characters), shown over the drawing.
    """

    nodes: list[Node]
    wires: list[Wire]
    width: float
    height: float
    bands: list[tuple[str, float, float]]  # (name, top, bottom)
    title: str = ""

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


#: the longest label a box or port shows (a longer name is cut short, with an ellipsis)
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


def _width(label: str) -> float:
    return max(0.5, 0.085 * len(label) + 0.3)


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


def layout(term, *, collapse: bool = False, values: dict | None = None) -> Layout:
    """Lay ``term`` out (see the module's docstring); ``collapse=True`` shows each layer as one box.

    Args:
        term: a :class:`~paralens.Term`, a lens, an optimizer or a learner (anything
            :func:`~paralens.as_term` accepts).
        collapse: draw each layer instance (in each band and part) as one box labelled with its
            name; a box outside any layer folds into the innermost part it belongs to (an
            optimizer's transform), and one outside both stays a box of its own.
        values: ``{wire: value}`` (what a backend's ``wire_values`` returns): each drawn wire is
            labelled with its value (:func:`value_label`); ``None`` for none.

    Returns:
        The :class:`Layout`: nodes placed in columns, ordered to uncross wires, forward band
        over backward band, and wires with the points they run through.
    """
    term = as_term(term)
    d = term._flat()
    in_labels, out_labels = term.port_labels()
    units = term.layer_names()
    nodes: list[Node] = []
    producer: dict[int, int] = {}  # wire -> node

    def add(kind, label, **kw) -> Node:
        n = Node(len(nodes), kind, printable(label, LABEL_LIMIT), **kw)
        nodes.append(n)
        return n

    for name, w in zip(term.param_names, d.param_wires):
        producer[w] = add("param", name).id
    for label, w in zip(in_labels, d.inputs):
        producer.setdefault(w, add("input", label).id)

    # boxes (one per box, or one per layer instance and band when collapsed)
    edges: list[tuple[int, int, int]] = []  # (src node, dst node, wire)
    cluster: dict[tuple, int] = {}
    for e in d.eqns:
        band = BACKWARD if e.backward else FORWARD
        unit = units.get(e.layer) if e.layer is not None else None
        part = e.group[0] if e.group else None
        # collapsed, a box is its layer, or else the innermost part it belongs to (an optimizer's transform)
        fold = unit or (e.group[-1] if e.group else None)
        key = (fold, band, part)
        if collapse and fold is not None and key in cluster:
            node = nodes[cluster[key]]
        else:
            label = fold if collapse and fold is not None else box_label(e)
            node = add("box", label, band=band, part=part, unit=unit, prim=e.prim.name)
            if collapse and fold is not None:
                cluster[key] = node.id
        for w in e.ins:
            if producer[w] != node.id:
                edges.append((producer[w], node.id, w))
        for w in e.outs:
            producer[w] = node.id
    for label, w in zip(out_labels, d.outputs):
        out = add("output", label)
        edges.append((producer[w], out.id, w))
    edges = list(dict.fromkeys(edges)) if not collapse else \
        list({(s, t): (s, t, w) for s, t, w in edges}.values())

    # bands of the ports: an input read by a forward box is forward; an output is where it is made
    consumers: dict[int, list[int]] = {}
    for s, t, _ in edges:
        consumers.setdefault(s, []).append(t)
    has_backward = any(n.band == BACKWARD for n in nodes if n.kind == "box")
    for n in nodes:
        if n.kind in ("input", "param"):
            bands = {nodes[t].band for t in consumers.get(n.id, []) if nodes[t].kind == "box"}
            n.band = FORWARD if FORWARD in bands or not has_backward or not bands else BACKWARD
    for s, t, _ in edges:
        if nodes[t].kind == "output":
            nodes[t].band = nodes[s].band

    wires = []
    param_wires = set(d.param_wires)
    for s, t, w in edges:
        src, dst = nodes[s], nodes[t]
        kind = "residual" if src.band == FORWARD and dst.band == BACKWARD and dst.kind == "box" else \
            "param" if w in param_wires else "data"
        wires.append(Wire(s, t, kind, str(d.wires[w].shape) if src.kind in ("input", "param") else "",
                          value=value_label(values[w]) if values is not None and w in values else ""))

    _columns(nodes, wires)
    order = _waypoints(nodes, wires)
    _order(nodes, wires, order)
    width, height, bands = _place(nodes, order, has_backward)
    for wire in wires:
        src, dst = nodes[wire.src], nodes[wire.dst]
        via = [(nodes[i].x, nodes[i].y) for i in wire.points]
        wire.points = [(src.x + src.w / 2, src.y)] + via + [(dst.x - dst.w / 2, dst.y)]
    return Layout(nodes, wires, width, height, bands, printable(term.name, 150))


def _columns(nodes: list[Node], wires: list[Wire]):
    """Columns: each box right of everything it reads (longest path, in topological order), then
    moved right up to its first reader in the same band (so a chain that only feeds a later box,
    a constant or an optimizer's bias correction, sits next to it); outputs in one last column."""
    preds: dict[int, list[int]] = {n.id: [] for n in nodes}
    succs: dict[int, list[int]] = {n.id: [] for n in nodes}
    for w in wires:
        if w.src != w.dst:
            preds[w.dst].append(w.src)
            succs[w.src].append(w.dst)
    order = _topological(nodes, preds, succs)
    for i in order:
        n = nodes[i]
        if n.kind == "box":
            n.column = 1 + max((nodes[p].column for p in preds[i]), default=0)
    last = max((n.column for n in nodes if n.kind == "box"), default=0)
    for i in reversed(order):
        n = nodes[i]
        readers = [nodes[s] for s in succs[i] if nodes[s].kind != "output"]
        if n.kind == "box" and readers and all(r.kind == "box" and r.band == n.band for r in readers):
            n.column = max(n.column, min(r.column for r in readers) - 1)
    for n in nodes:
        if n.kind == "output":
            n.column = last + 1


def _topological(nodes: list[Node], preds, succs) -> list[int]:
    """Node ids in an order where every node comes after what it reads (Kahn's algorithm);
    creation order breaks ties. A cycle (possible between collapsed boxes) is broken arbitrarily."""
    waiting = {n.id: len(set(preds[n.id])) for n in nodes}
    ready = [n.id for n in nodes if waiting[n.id] == 0]
    out, done = [], set()
    while len(out) < len(nodes):
        if not ready:  # a cycle: take the earliest node left
            ready = [min(i for i in waiting if i not in done)]
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


def _waypoints(nodes: list[Node], wires: list[Wire]) -> dict[tuple[int, int], list[int]]:
    """Add a waypoint in every column a wire crosses (in its source's band), so that wires run
    between boxes; returns the nodes of each (column, band), in order of creation."""
    for w in wires:
        src, dst = nodes[w.src], nodes[w.dst]
        w.points = []
        for c in range(src.column + 1, dst.column):
            dummy = Node(len(nodes), "dummy", "", band=src.band, column=c)
            nodes.append(dummy)
            w.points.append(dummy.id)
    order: dict[tuple[int, int], list[int]] = {}
    for n in nodes:
        order.setdefault((n.column, n.band), []).append(n.id)
    return order


def _order(nodes: list[Node], wires: list[Wire], order: dict[tuple[int, int], list[int]], sweeps: int = 4):
    """Order each column by the mean position of its neighbours (barycentre sweeps), to uncross wires."""
    left: dict[int, list[int]] = {n.id: [] for n in nodes}
    right: dict[int, list[int]] = {n.id: [] for n in nodes}
    for w in wires:
        chain = [w.src] + w.points + [w.dst]
        for a, b in zip(chain, chain[1:]):
            right[a].append(b)
            left[b].append(a)
    pos = {i: k for ids in order.values() for k, i in enumerate(ids)}
    columns = sorted({c for c, _ in order})
    for sweep in range(sweeps):
        neighbours, cols = (left, columns[1:]) if sweep % 2 == 0 else (right, columns[::-1][1:])
        for c in cols:
            for band in (FORWARD, BACKWARD):
                ids = order.get((c, band))
                if not ids:
                    continue
                def key(i, ids=ids, neighbours=neighbours):
                    ns = neighbours[i]
                    return sum(pos[j] for j in ns) / len(ns) if ns else pos[i]
                ids.sort(key=key)
                pos.update({i: k for k, i in enumerate(ids)})


def _place(nodes: list[Node], order, has_backward: bool):
    for n in nodes:
        if n.kind == "box":
            n.w, n.h = _width(n.label), BOX_H
        elif n.kind == "dummy":
            n.w, n.h = 0.0, DUMMY_H
        else:
            n.w, n.h = _width(n.label), PORT_H
    columns = sorted({c for c, _ in order})
    x = 0.0
    for c in columns:
        ids = [i for band in (FORWARD, BACKWARD) for i in order.get((c, band), [])]
        width = max((nodes[i].w for i in ids), default=0.0)
        for i in ids:
            nodes[i].x = x + width / 2
        x += width + GAP_X
    heights = [0.0, 0.0]
    for (_, band), ids in order.items():
        heights[band] = max(heights[band], sum(nodes[i].h + GAP_Y for i in ids))
    top = {FORWARD: 0.0, BACKWARD: heights[FORWARD] + BAND_GAP}
    for (_, band), ids in order.items():
        y = top[band]
        for i in ids:
            nodes[i].y = y + nodes[i].h / 2
            y += nodes[i].h + GAP_Y
    bands = [("forward", 0.0, heights[FORWARD])]
    if has_backward:
        bands.append(("backward", top[BACKWARD], top[BACKWARD] + heights[BACKWARD]))
    return x - GAP_X, bands[-1][2], bands
