"""Terms as networkx graphs, and diagrams of terms, lenses, optimizers and learners.

:func:`draw` lays a term out as a string diagram (:mod:`paralens.diagram`) and
renders it with the ``matplotlib`` backend: the forward band over the backward
band, named ports, residual wires marked, boxes framed by the layer that made
them, a learner's four parts as labelled regions. :func:`draw_equation` puts the
two sides of a law next to each other. Terms, lenses, optimizers and learners
display themselves in Jupyter through the same drawing.

>>> import paralens as pl
>>> g = pl.to_networkx(pl.nn.dense(4, 3))
>>> sorted(d["kind"] for _, d in g.nodes(data=True))
['box', 'box', 'input', 'output', 'param', 'param']
"""

from __future__ import annotations

from . import backends
from .diagram import box_label
from .terms import as_term

__all__ = ["to_networkx", "draw", "draw_equation"]


def to_networkx(term) -> networkx.MultiDiGraph:  # noqa: F821
    """A ``networkx.MultiDiGraph`` of ``term`` (or of a lens's, an optimizer's, a learner's term).

    Node attributes: ``kind`` (``"input"``, ``"param"``, ``"box"``, ``"output"``),
    ``label`` and, for boxes, ``group`` (the outermost part the box belongs to,
    or ``None``); edge attributes: ``type`` (the wire's :class:`ArrayType`) and
    ``param`` (whether the wire is a parameter wire).

    Args:
        term: a :class:`~paralens.Term`, a lens, an optimizer or a learner (anything
            :func:`~paralens.as_term` accepts).

    Returns:
        The graph, named after the term: nodes ``param:<name>`` for each parameter, ``in:<i>``
        for each input, ``box:<k>`` for each box (with its primitive's name as ``prim``) and
        ``out:<i>`` for each output; one edge per wire a box or an output reads.
    """
    import networkx as nx

    term = as_term(term)
    in_labels, out_labels = term.port_labels()
    g = nx.MultiDiGraph(name=term.name)
    source: dict[int, str] = {}
    for name, w in zip(term.param_names, term.param_wires):
        g.add_node(f"param:{name}", kind="param", label=name)
        source[w] = f"param:{name}"
    for i, (label, w) in enumerate(zip(in_labels, term.inputs)):
        g.add_node(f"in:{i}", kind="input", label=f"{label}: {term.wires[w]}")
        source.setdefault(w, f"in:{i}")
    param_wires = set(term.param_wires)
    for k, e in enumerate(term.eqns):
        node = f"box:{k}"
        g.add_node(node, kind="box", label=box_label(e), prim=e.prim.name, group=e.group[0] if e.group else None)
        for w in e.ins:
            g.add_edge(source[w], node, type=term.wires[w], param=w in param_wires)
        for w in e.outs:
            source[w] = node
            param_wires.discard(w)
    for i, (label, w) in enumerate(zip(out_labels, term.outputs)):
        g.add_node(f"out:{i}", kind="output", label=f"{label}: {term.wires[w]}")
        g.add_edge(source[w], f"out:{i}", type=term.wires[w], param=w in param_wires)
    return g


def draw(term, path: str | None = None, *, collapse=False, title: str | None = None, values=None,
         expand=False) -> str:
    """Draw ``term`` (a term, lens, optimizer or learner) as a string diagram.

    Writes ``path`` (``.png`` or ``.svg``) and returns it, or returns the SVG
    text when ``path`` is ``None``. The SVG scales to the width of the page it is
    put in (``width="100%"``, its height from its ``viewBox``), no larger than its
    natural size and no smaller than the width at which its smallest text is 9 CSS px
    (put it in a container with ``overflow-x: auto`` and a narrower page scrolls).

    Args:
        term: a :class:`~paralens.Term`, a lens, an optimizer or a learner (anything
            :func:`~paralens.as_term` accepts).
        path: the file to write, ending in ``.png`` or ``.svg`` (any other ending raises
            ``ValueError``); ``None`` writes no file.
        collapse: ``False``: every primitive box. ``True``: a learner's four parts (model, loss,
            learning rate, optimizer) as one box each per band, the way "Categorical Foundations"
            draws its lenses, and a term without parts one box per layer instance (``dense0``,
            ``relu1``). ``"layers"``: one box per layer instance, inside the frames of the parts.
        title: the title over the drawing; ``None`` uses the term's name.
        values: ``(params, *args)``, the arguments of the term's compiled function: each wire is
            labelled with the value the NumPy backend computes on it (a number, or shape and norm),
            so ``pl.draw(pl.R(f), values=(params, x, dy))`` shows every cotangent of the backward
            pass beside the forward values; ``None`` (the default): structure only.
        expand: ``False``: a learner's (or an optimizer's) state trees, ``params``, ``opt0``,
            ``hyper``, are drawn as one wire each, labelled with their number of wires
            (``params (4)``). ``True``: every state wire on its own. A list of names
            (``["opt0"]``): those trees wire by wire, the others bundled.

    Returns:
        ``path`` as a string once the file is written, or the SVG text when ``path`` is ``None``.

    Raises:
        TypeError: ``values`` is not a tuple, or holds arguments the term does not take; ``expand``
            is neither a bool nor a list of names.
        ValueError: ``path`` ends in neither ``.png`` nor ``.svg``; ``collapse`` is not one of the
            above; ``expand`` names a state tree the term does not have.

    >>> import paralens as pl
    >>> step = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    >>> svg = pl.draw(step, collapse=True)
    >>> ">params (4)<" in svg and ">model<" in svg and ">optimizer<" in svg
    True
    >>> pl.diagram.smallest_text_px(svg, column=690) >= 9
    True
    """
    return backends.get("matplotlib").draw(term, path, collapse=collapse, title=title, values=values, expand=expand)


def draw_equation(lhs, rhs, path: str | None = None, *, collapse=False, title: str | None = None,
                  expand=False) -> str:
    """Draw the two sides of a law next to each other, ``lhs = rhs``.

    For example ``pl.lens(f >> g)`` and ``pl.lens(f) >> pl.lens(g)``.

    Args:
        lhs: the left side: a :class:`~paralens.Term`, a lens, an optimizer or a learner.
        rhs: the right side, of the same kinds; the two are laid out separately, with ``=``
            between them.
        path: the file to write, ending in ``.png`` or ``.svg`` (any other ending raises
            ``ValueError``); ``None`` writes no file.
        collapse: as :func:`draw`'s, on both sides.
        title: the title over the drawing; ``None`` uses ``"<lhs name>  =  <rhs name>"``.
        expand: as :func:`draw`'s, on both sides.

    Returns:
        ``path`` as a string once the file is written, or the SVG text when ``path`` is ``None``.
    """
    return backends.get("matplotlib").draw_equation(lhs, rhs, path, collapse=collapse, title=title, expand=expand)
