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
