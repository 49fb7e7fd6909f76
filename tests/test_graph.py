"""Diagrams: networkx graphs of terms and their reverse derivatives, drawn to PNG and SVG."""

import networkx as nx
import pytest

import paralens as pl


def test_networkx_graph_of_forward_and_backward_terms():
    f = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
    g = pl.to_networkx(f)
    kinds = nx.get_node_attributes(g, "kind")
    assert sorted(v for v in kinds.values() if v != "box") == ["input", "output", "param", "param"]
    assert sum(v == "box" for v in kinds.values()) == f.n_boxes
    assert nx.is_directed_acyclic_graph(g)
    param_edges = [d for _, _, d in g.edges(data=True) if d["param"]]
    assert len(param_edges) == 2 and all(not d["type"].batched for d in param_edges)
    r = pl.to_networkx(pl.R(f))
    assert sum(d["kind"] == "box" for _, d in r.nodes(data=True)) == pl.R(f).n_boxes
    assert sum(d["kind"] == "output" for _, d in r.nodes(data=True)) == 3  # dW, db, dx


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_draw_writes_png_and_svg(tmp_path, suffix, magic):
    f = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
    for term in (f, pl.R(f)):
        path = tmp_path / f"{term.name[:5]}{suffix}"
        pl.draw(term, str(path))
        assert path.read_bytes().startswith(magic)
    svg = (tmp_path / f"dense{suffix}").read_bytes() if suffix == ".svg" else b""
    if svg:
        assert b"stroke-dasharray" in svg  # parameter wires are dashed
    with pytest.raises(ValueError):
        pl.draw(f, str(tmp_path / "x.pdf"))


# ---------------------------------------------------------------- string diagrams that teach

def overlaps(layout):
    boxes = layout.boxes()
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            l1, t1, r1, b1 = a.rect
            l2, t2, r2, b2 = b.rect
            if l1 < r2 and l2 < r1 and t1 < b2 and t2 < b1:
                out.append((a.label, b.label))
    return out


def dense_sigmoid():
    return pl.nn.dense(3, 2) >> pl.nn.sigmoid()


CASES = {
    "R(dense >> sigmoid)": lambda: pl.R(dense_sigmoid()),
    "lens composite": lambda: pl.lens(pl.nn.dense(3, 2)) >> pl.lens(pl.nn.sigmoid().at(pl.Array[2])),
    "optimizer": lambda: pl.optim.adam(1e-3),
    "learner": lambda: pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2)),
}


@pytest.mark.parametrize("collapse", [False, True], ids=["boxes", "layers"])
@pytest.mark.parametrize("name", list(CASES))
def test_diagrams_have_no_overlapping_boxes_and_every_port_label(name, collapse, tmp_path):
    obj = CASES[name]()
    layout = pl.diagram.layout(obj, collapse=collapse, expand=True)  # every state wire a port of its own
    assert not overlaps(layout), overlaps(layout)[:5]
    ins, outs = pl.as_term(obj).port_labels()
    labels = [n.label for n in layout.boxes() if n.kind in ("input", "output")]
    assert sorted(labels) == sorted(ins + outs)
    svg = pl.draw(obj, collapse=collapse, expand=True)
    for label in set(ins + outs):
        assert f">{label}<" in svg, label
    assert all(len(w.points) >= 2 for w in layout.wires)
    assert (tmp_path / "d.png").exists() is False and pl.draw(obj, str(tmp_path / "d.png"), collapse=collapse)


@pytest.mark.parametrize("name", ["R(dense >> sigmoid)", "lens composite"])
def test_the_residual_from_the_sigmoids_output_into_the_backward_band_is_drawn(name):
    layout = pl.diagram.layout(CASES[name]())
    (sig,) = [n for n in layout.nodes if n.prim == "sigmoid"]
    assert sig.band == pl.diagram.FORWARD
    into_backward = [w for w in layout.wires if w.src == sig.id and layout.nodes[w.dst].band == pl.diagram.BACKWARD]
    assert into_backward and all(w.kind == "residual" for w in into_backward)
    assert {n.label for n in layout.boxes() if n.kind == "input"} == {"x", "dy"}
    assert {"dW", "db", "dx"} <= {n.label for n in layout.boxes() if n.kind == "output"}
    assert [name for name, _, _ in layout.bands] == ["forward", "backward"]
    top_bottom = {n.band: n.y for n in layout.boxes()}
    assert top_bottom[pl.diagram.FORWARD] < top_bottom[pl.diagram.BACKWARD]  # the backward band is below


def test_layers_group_boxes_and_collapse_into_one_box_each():
    f = pl.nn.dense(3, 4) >> pl.nn.relu() >> pl.nn.dense(4, 2)
    full, collapsed = pl.diagram.layout(pl.R(f)), pl.diagram.layout(pl.R(f), collapse=True)
    units = {(n.unit, n.band) for n in full.boxes() if n.kind == "box"}
    assert {u for u, _ in units} == {"dense0", "relu", "dense1"}
    boxes = [n for n in collapsed.boxes() if n.kind == "box"]
    assert sorted((n.label, n.band) for n in boxes) == sorted(units)
    assert set(full.groups("unit")) == units


def test_constants_show_their_values_and_a_learner_shows_its_four_parts():
    @pl.para
    def f(x: pl.Array[3]):
        return 1.5 * x + pl.constant([1.0, 2.0, 3.0], (3,))
    labels = {n.label for n in pl.diagram.layout(f).boxes()}
    assert "× 1.5" in labels and "[1, 2, 3]" in labels
    learner = CASES["learner"]()
    parts = {name for name, _ in pl.diagram.layout(learner).groups("part")}
    assert parts == {"model", "loss", "learning rate", "optimizer"}
    svg = pl.draw(learner)
    assert all(f">{p}<" in svg for p in parts)


def test_an_equation_view_and_jupyter_display():
    f = dense_sigmoid()
    svg = pl.draw_equation(pl.lens(f), pl.lens(pl.nn.dense(3, 2)) >> pl.lens(pl.nn.sigmoid().at(pl.Array[2])))
    assert ">=<" in svg and svg.count(">dx<") == 2
    for obj in (f, pl.lens(f), pl.optim.sgd(0.1), CASES["learner"](), pl.learn.L(f, 0.1)):
        assert obj._repr_svg_().lstrip().startswith("<?xml")


def test_values_on_a_diagram_are_what_the_numpy_backend_computes():
    """pl.draw(R(f), values=(params, x, dy)): every wire carries its value, the backward wires
    their cotangents; the outputs' labels are what the compiled R(f) returns (a second path:
    the generated code, not the box-by-box interpreter that labels the wires)."""
    import numpy as np

    from paralens.backends import numpy as pnp
    from paralens.diagram import layout, value_label

    rng = np.random.default_rng(0)
    f = pl.nn.dense(3, 2) >> pl.nn.sigmoid()
    p = {"dense.W": rng.standard_normal((3, 2)), "dense.b": rng.standard_normal(2)}
    x, dy = rng.standard_normal((1, 3)), rng.standard_normal((1, 2))
    r = pl.R(f)
    dp, dx = pnp.compile(r)(p, x, dy)
    y = pnp.compile(f)(p, x)
    env = pl.backends.get("numpy").wire_values(r, p, x, dy)
    lay = layout(r, values=env)
    assert all(w.value for w in lay.wires)            # every drawn wire is labelled
    labels = {w.value for w in lay.wires}
    for v in (dx, dp["dense.W"], dp["dense.b"]):       # the backward pass's results, on their wires
        assert value_label(v) in labels, (value_label(v), labels)
    svg = pl.draw(r, values=(p, x, dy))
    for v in (dx, dp["dense.W"], dp["dense.b"]):
        assert value_label(v) in svg
    # the forward value: sigmoid's output on its wire into the backward band, one number per entry
    assert value_label(pnp.compile(f)(p, x)) in pl.draw(f, values=(p, x))
    assert value_label(np.float64(y[0, 0])) == f"{y[0, 0]:.4g}"
    assert value_label([[3.0, 4.0]]) == "(1, 2) |.|=5" and value_label(0.5) == "0.5"
    with pytest.raises(TypeError, match="values must be a tuple"):
        pl.draw(f, values=[p, x])
    with pytest.raises(TypeError, match="takes params and 1 argument"):
        pl.draw(f, values=(p, x, dy))
