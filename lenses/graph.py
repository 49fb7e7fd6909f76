"""Terms as networkx graphs, and drawings of them (forward and backward passes).

Nodes are the term's inputs, parameters, boxes and outputs; an edge is a wire
and carries its type. Parameter wires are drawn in a different colour and
dashed, so they stand apart from data wires. Lenses, optimizers and learners
are drawn through their terms; boxes that belong to a named part (a learner's
model, loss, learning rate and optimizer) are drawn inside a labelled region.

>>> import paralens as pl
>>> g = pl.to_networkx(pl.nn.dense(4, 3))
>>> sorted(d["kind"] for _, d in g.nodes(data=True))
['box', 'box', 'input', 'output', 'param', 'param']
"""

from __future__ import annotations

from .terms import Term, as_term

__all__ = ["to_networkx", "draw"]


def _label(e) -> str:
    kw = {k: v for k, v in e.params if k not in ("value", "types")}
    if e.prim.name == "einsum":
        return f"einsum\n{kw['spec']}"
    if e.prim.name in ("scale", "shift", "pow"):
        return f"{e.prim.name} {next(iter(kw.values())):g}"
    return e.prim.name


def to_networkx(term) -> "networkx.MultiDiGraph":  # noqa: F821
    """A ``networkx.MultiDiGraph`` of ``term`` (or of a lens's, an optimizer's, a learner's term).

    Node attributes: ``kind`` (``"input"``, ``"param"``, ``"box"``, ``"output"``),
    ``label`` and, for boxes, ``group`` (the outermost part the box belongs to,
    or ``None``); edge attributes: ``type`` (the wire's :class:`ArrayType`) and
    ``param`` (whether the wire is a parameter wire).
    """
    import networkx as nx

    term = as_term(term)
    g = nx.MultiDiGraph(name=term.name)
    source: dict[int, str] = {}
    for name, w in zip(term.param_names, term.param_wires):
        g.add_node(f"param:{name}", kind="param", label=name)
        source[w] = f"param:{name}"
    for i, w in enumerate(term.inputs):
        g.add_node(f"in:{i}", kind="input", label=f"x{i}: {term.wires[w]}")
        source.setdefault(w, f"in:{i}")
    param_wires = set(term.param_wires)
    for k, e in enumerate(term.eqns):
        node = f"box:{k}"
        g.add_node(node, kind="box", label=_label(e), prim=e.prim.name, group=e.group[0] if e.group else None)
        for w in e.ins:
            g.add_edge(source[w], node, type=term.wires[w], param=w in param_wires)
        for w in e.outs:
            source[w] = node
            param_wires.discard(w)
    for i, w in enumerate(term.outputs):
        g.add_node(f"out:{i}", kind="output", label=f"y{i}: {term.wires[w]}")
        g.add_edge(source[w], f"out:{i}", type=term.wires[w], param=w in param_wires)
    return g


_COLOURS = {"input": "#9ecae1", "param": "#fdae6b", "box": "#e5e5e5", "output": "#a1d99b"}


_GROUP_COLOURS = ["#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1", "#d9d9d9"]


def draw(term, path: str, *, title: str | None = None) -> str:
    """Draw ``term`` (a term, lens, optimizer or learner) to ``path`` (PNG or SVG by suffix);
    returns ``path``.

    Layers run left to right in execution order; parameter nodes are orange
    and their wires dashed orange; data wires are grey and labelled by shape.
    Boxes of a named part (``group``: a learner's model, loss, learning rate,
    optimizer) take that part's colour, named in the legend.
    """
    term = as_term(term)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    if not str(path).lower().endswith((".png", ".svg")):
        raise ValueError(f"draw writes .png or .svg files, got {path!r}")
    g = to_networkx(term)
    simple = nx.DiGraph(g)
    for layer, nodes in enumerate(nx.topological_generations(simple)):
        for n in nodes:
            g.nodes[n]["layer"] = layer
    pos = nx.multipartite_layout(g, subset_key="layer")
    n_layers = 1 + max((d["layer"] for _, d in g.nodes(data=True)), default=0)
    width = min(60.0, 2.0 + 1.3 * n_layers)
    height = min(40.0, 2.0 + 0.6 * max(len(v) for v in nx.topological_generations(simple)))
    fig, ax = plt.subplots(figsize=(width, height))
    kinds = nx.get_node_attributes(g, "kind")
    groups = list(dict.fromkeys(d["group"] for _, d in g.nodes(data=True) if d.get("group")))
    colour = {name: _GROUP_COLOURS[k % len(_GROUP_COLOURS)] for k, name in enumerate(groups)}
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=1400, node_shape="s",
                           node_color=[colour.get(g.nodes[n].get("group"), _COLOURS[kinds[n]]) for n in g.nodes])
    if groups:
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(facecolor=colour[n], edgecolor="#555555", label=n) for n in groups],
                  loc="upper left", fontsize=9, title="parts")
    nx.draw_networkx_labels(g, pos, ax=ax, labels=nx.get_node_attributes(g, "label"), font_size=7)
    data = [(u, v) for u, v, d in g.edges(data=True) if not d["param"]]
    params = [(u, v) for u, v, d in g.edges(data=True) if d["param"]]
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=data, edge_color="#555555", arrows=True, node_size=1400)
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=params, edge_color="#e6550d", style="dashed",
                           arrows=True, node_size=1400, width=1.5)
    shapes = {(u, v): str(d["type"].shape) for u, v, d in g.edges(data=True) if not d["param"]}
    nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels=shapes, font_size=6)
    ax.set_title(title or term.name[:120])
    ax.axis("off")
    fig.tight_layout()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # labels stay text: searchable, selectable
        fig.savefig(path)
    plt.close(fig)
    return str(path)

