"""Every diagram the docs draw, and hypothesis-drawn learners, laid out legibly: no two frames of
different groups overlap unless one nests in the other, no box overlaps another or a frame it is not
in, every port label of the term is shown, and the smallest text is at least 9 CSS px in the docs'
690 px column.

The docs' diagrams are found by running each page's blocks, with ``pl.draw`` and
``pl.draw_equation`` recording what they are asked to draw, so a diagram added to a page is
checked too. The geometry is read from :func:`paralens.diagram.layout` (rectangles), the text
size from the SVG that ``pl.draw`` writes.
"""

import inspect
import pathlib
import re
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paralens as pl
from helpers import backends_as_they_were
from paralens.diagram import layout, smallest_text_px

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLUMN, FLOOR = 690.0, 9.0


def _meet(a, b) -> bool:
    """Whether two ``(left, top, right, bottom)`` rectangles share more than an edge."""
    eps = 1e-9
    return a[0] < b[2] - eps and b[0] < a[2] - eps and a[1] < b[3] - eps and b[1] < a[3] - eps


def _inside(a, b) -> bool:
    eps = 1e-9
    return b[0] - eps <= a[0] and b[1] - eps <= a[1] and a[2] <= b[2] + eps and a[3] <= b[3] + eps


def problems(lay, term, expanded=False) -> list[str]:
    """What is wrong with the geometry of ``lay``, the layout of ``term``: overlaps, frames that cross,
    missing port labels. Empty when the layout is legible."""
    out = []
    shown = lay.boxes()
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            if _meet(a.rect, b.rect):
                out.append(f"box {a.label!r} overlaps box {b.label!r}")
    for f in lay.frames:
        for n in shown:
            if n.id not in f.members and _meet(n.rect, f.rect):
                out.append(f"frame {'/'.join(f.path)} overlaps {n.kind} {n.label!r} of another group")
        for n in shown:  # a node drawn in a group is inside that group's frame
            if n.id in f.members and not _inside(n.rect, f.rect):
                out.append(f"{n.label!r} sticks out of frame {'/'.join(f.path)}")
    for i, f in enumerate(lay.frames):
        for g in lay.frames[i + 1:]:
            if not _meet(f.rect, g.rect):
                continue
            outer, inner = (f, g) if len(f.path) <= len(g.path) else (g, f)
            nested = outer.band == inner.band and inner.path[:len(outer.path)] == outer.path
            if not (nested and _inside(inner.rect, outer.rect) and inner.members <= outer.members):
                out.append(f"frame {'/'.join(f.path)} overlaps frame {'/'.join(g.path)}")
    # every node in a group is inside the frame of each enclosing group
    frames = {(f.band, f.path): f for f in lay.frames}
    for n in shown:
        for k in range(1, len(n.path) + 1):
            f = frames.get((n.band, n.path[:k]))
            if f is None or n.id not in f.members:
                out.append(f"{n.label!r} is in group {'/'.join(n.path[:k])} but not in its frame")
    # every port of the term is shown: as itself, or counted in its state tree's bundle
    ins, outs = pl.as_term(term).port_labels()
    for kind, expected in (("input", ins), ("output", outs)):
        nodes = [n for n in shown if n.kind == kind]
        got = sorted(m for n in nodes for m in n.members)
        if got != sorted(expected):
            out.append(f"{kind} ports show {got}, the term has {sorted(expected)}")
        for n in nodes:
            if len(n.members) > 1:
                root = n.members[0].split(".")[0]
                if expanded or n.label != f"{root} ({len(n.members)})" or \
                        any(m.split(".")[0] != root for m in n.members):
                    out.append(f"bundle {n.label!r} holds {n.members}")
            elif n.label != n.members[0][:48] and not n.members[0].startswith(n.label[:-3]):
                out.append(f"port {n.members[0]!r} is labelled {n.label!r}")
    params = sorted(n.label for n in shown if n.kind == "param")
    if params != sorted(p[:48] for p in pl.as_term(term).param_names):
        out.append(f"parameter ports {params}")
    labelled = {lab.node: lab for lab in lay.labels if lab.node is not None}
    for n in shown:
        lab = labelled.get(n.id)
        if lab is None or lab.text != n.label:
            out.append(f"{n.kind} {n.label!r} has no label")
        elif not _inside(lab.rect, n.rect):
            out.append(f"the label {n.label!r} does not fit its box")
    for f in lay.frames:
        names = [lab for lab in lay.labels if lab.kind == f.kind and lab.text == f.name and _inside(lab.rect, f.rect)]
        if not names:
            out.append(f"frame {'/'.join(f.path)} has no name inside it")
        elif any(_meet(names[0].rect, n.rect) for n in shown):
            out.append(f"the name of frame {'/'.join(f.path)} is under a box")
    return out


# ----------------------------------------------------------------------------- the docs' diagrams

def docs_diagrams():
    """``(page, what, arguments, keywords, svg)`` of each diagram the docs' pages draw, found by running
    each page's blocks up to its last drawing with ``pl.draw`` recording its calls."""
    calls = []
    real = pl.draw, pl.draw_equation
    page = None

    def draw(term, path=None, **kw):
        calls.append((page, "draw", (term,), kw, real[0](term, **kw)))
        return real[0](term, path, **kw) if path is not None else calls[-1][-1]

    def draw_equation(lhs, rhs, path=None, **kw):
        calls.append((page, "equation", (lhs, rhs), kw, real[1](lhs, rhs, **kw)))
        return real[1](lhs, rhs, path, **kw) if path is not None else calls[-1][-1]
    pl.draw, pl.draw_equation = draw, draw_equation
    try:
        with backends_as_they_were():  # pages register backends (architecture.md)
            for path in sorted((ROOT / "docs").glob("*.md")):
                page = path.name
                for blocks in _sessions(path):
                    namespace = {}
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        for block in blocks:
                            exec(compile(block, str(path), "exec"), namespace)
    finally:
        pl.draw, pl.draw_equation = real
    return calls


def _sessions(path) -> list[list[str]]:
    """The blocks to run for the drawings of a page: for a block the site runs in a session
    (```python exec="on" session="s"), the page's blocks of that session up to the last that draws;
    for the plain blocks (which the docs test runs as one namespace), every block up to the last
    plain one that draws."""
    blocks = re.findall(r"```python([^\n]*)\n(.*?)```", path.read_text(), flags=re.S)

    def session(head):
        if "exec=" not in head:
            return None
        m = re.search(r'session="([^"]+)"', head)
        return m.group(1) if m else object()  # a block without a session runs alone
    keys = [session(h) for h, _ in blocks]
    out = []
    for key in dict.fromkeys(keys):
        last = max((i for i, (k, (_, b)) in enumerate(zip(keys, blocks)) if k == key and "pl.draw" in b), default=None)
        if last is not None:
            out.append([b for k, (_, b) in zip(keys[:last + 1], blocks) if key is None or k == key])
    return out


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("docs"))  # the pages write their files here
    try:
        return docs_diagrams()
    finally:
        os.chdir(cwd)


@pytest.mark.slow  # runs the pages' blocks (a bilevel fit among them): about 15 s
def test_every_docs_diagram_is_legible_at_the_columns_width(drawn):
    pages = {p for p, *_ in drawn}
    assert len(drawn) >= 15
    assert {"reverse-derivative.md", "categorical-foundations.md", "backprop-as-functor.md",
            "optimizers.md", "dreaming-and-forward-gradients.md"} <= pages
    found = []
    for page, _, args, kw, svg in drawn:
        layout_kw = {k: v for k, v in kw.items() if k in ("collapse", "expand")}
        for term in args:
            found += [f"{page}: {pl.as_term(term).name}: {p}"
                      for p in problems(layout(term, **layout_kw), term, kw.get("expand") is True)]
        size = smallest_text_px(svg, COLUMN)
        if size < FLOOR:
            found.append(f"{page}: {pl.as_term(args[0]).name}: smallest text {size:.2f} px")
    assert not found, "\n".join(found)


def test_the_known_defects_stay_fixed():
    """The layouts the issue found overlapping, and the forward gradient's bands and ports."""
    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    lf = pl.learn.L(pl.nn.dense(2, 1) >> pl.nn.sigmoid(), 0.1)
    for obj in (learner, pl.optim.adam(1e-3), lf):
        for collapse in (False, True, "layers"):
            assert not problems(layout(obj, collapse=collapse), obj), (obj, collapse)
    # L(f) collapsed: each of its parts one box per band, no box named after the frame it sits in
    lay = layout(lf, collapse=True)
    assert not lay.frames and {n.label for n in lay.boxes() if n.kind == "box"} == {"implement", "update", "request"}
    lay = layout(lf, collapse="layers")
    assert all(not (n.path and n.label == n.path[-1]) for n in lay.boxes())
    # the forward gradient: one forward derivative, no backward band; its ports named
    @pl.para  # the objective of the dreaming-and-forward-gradients page
    def objective(x: pl.Array[()], w: pl.Param[()], b: pl.Param[()]):
        return pl.batch_sum(0.5 * (pl.tanh(w * x + b) - 1.0) ** 2.0)
    estimate = pl.forward_gradient(objective)
    lay = layout(estimate, collapse=True)
    assert [b for b, *_ in lay.bands] == ["forward"]
    ins, outs = pl.as_term(estimate).port_labels()
    assert ins == ("x", "key") and outs == ("dw", "db", "key'")


# ----------------------------------------------------------------------------- learners, drawn at random

def _optimizers() -> list[str]:
    """Every complete optimizer of ``pl.optim``: its public functions whose first argument is the learning rate."""
    out = []
    for name in pl.optim.__all__:
        fn = getattr(pl.optim, name)
        if inspect.isfunction(fn) and not name.endswith("schedule"):
            first = next(iter(inspect.signature(fn).parameters), None)
            if first in ("learning_rate", "max_learning_rate"):
                out.append(name)
    return out


OPTIMIZERS = _optimizers()


def test_the_optimizers_are_found():
    assert {"sgd", "adam", "adafactor", "lamb", "noisy_sgd", "polyak_sgd"} <= set(OPTIMIZERS) and len(OPTIMIZERS) > 30


@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(1, 5), min_size=3, max_size=7), optimizer=st.sampled_from(OPTIMIZERS),
       collapse=st.sampled_from([False, True, "layers"]), expand=st.booleans(),
       activation=st.sampled_from(["relu", "tanh", "sigmoid"]))
def test_learners_of_2_to_6_layers_with_any_optimizer_are_legible(widths, optimizer, collapse, expand, activation):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated optimizers, keys that optax will require
        opt = getattr(pl.optim, optimizer)(0.1)
    model = pl.nn.mlp(widths, activation=getattr(pl.nn, activation))
    learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=opt)
    lay = layout(learner, collapse=collapse, expand=expand)
    assert not problems(lay, learner, expand), problems(lay, learner, expand)[:5]
    bundles = [n.label for n in lay.boxes() if len(n.members) > 1]
    assert bool(bundles) != expand and (expand or f"params ({len(pl.as_term(model).param_names)})" in bundles)
    assert smallest_text_px(pl.draw(learner, collapse=collapse, expand=expand), COLUMN) >= FLOOR


def test_expand_names_the_trees_to_expand():
    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    ports = {n.label for n in layout(learner, expand=["opt0"]).boxes() if n.kind == "input"}
    assert {"params (4)", "hyper (5)", "opt0.count", "opt0.mu.dense0.W"} <= ports
    with pytest.raises(ValueError, match=r"does not have; it has \['hyper', 'opt0', 'params'\]"):
        layout(learner, expand=["optimizer"])
    with pytest.raises(TypeError, match="expand is True, False or a list"):
        layout(learner, expand="opt0")
    with pytest.raises(ValueError, match="collapse is True, False, 'parts' or 'layers'"):
        layout(learner, collapse="boxes")


# ----------------------------------------------------------------------------- what a reader sees

def test_smallest_text_reads_the_size_a_page_shows():
    """Checked against sizes worked by hand: a fixed-width SVG shrunk into the column (Material's
    max-width: 100%), one that scales between a max- and a min-width, and the errors."""
    NS = "http://www.w3.org/2000/svg"

    def svg(attrs, *sizes):
        texts = "".join(f'<text style="font-size: {s}px">t</text>' for s in sizes)
        return f'<?xml version="1.0"?>\n<svg xmlns="{NS}" viewBox="0 0 1000 500" {attrs}>{texts}</svg>'
    assert smallest_text_px(svg('width="1000pt"', 7, 9), 690) == pytest.approx(7 * 690 / 1000)
    assert smallest_text_px(svg('width="300pt"', 7), 690) == pytest.approx(7 * 400 / 1000)  # 300 pt = 400 px
    scaling = 'width="100%" style="width: 100%; max-width: 1333px; min-width: 1286px"'
    assert smallest_text_px(svg(scaling, 7), 690) == pytest.approx(7 * 1286 / 1000)    # scrolls at the floor
    assert smallest_text_px(svg(scaling, 7), 2000) == pytest.approx(7 * 1333 / 1000)   # no larger than natural
    with pytest.raises(ValueError, match="no <text>"):
        smallest_text_px(svg('width="10pt"'))
    with pytest.raises(ValueError, match="no viewBox"):
        smallest_text_px('<svg xmlns="http://www.w3.org/2000/svg"><text style="font-size: 5px">t</text></svg>')


def test_a_drawing_scales_to_its_column_and_scrolls_at_the_floor():
    small, wide = pl.nn.dense(2, 1), pl.Learner(pl.nn.mlp([4, 8, 8, 8, 3]), loss=pl.losses.mse(),
                                                optimizer=pl.optim.adam(1e-2))
    for obj in (small, wide):
        svg = pl.draw(obj)
        root = re.search(r"<svg[^>]*>", svg).group(0)
        assert 'width="100%"' in root and "height=" not in root.replace("height: auto", "")
        vb = float(re.search(r'viewBox="0 0 ([0-9.]+)', root).group(1))
        least = float(re.search(r"min-width: ([0-9.]+)px", root).group(1))
        # at the min-width (a whole px, one more than the floor needs: browsers lay out in fractions
        # of one), the smallest text is just above the floor; at any wider column it is larger
        assert FLOOR < smallest_text_px(svg, 1.0) == smallest_text_px(svg, least) < FLOOR * (1 + 2.01 / least)
        exact = vb * FLOOR / min(map(float, re.findall(r"font-size: ([0-9.]+)px", svg)))
        assert least == int(least) and exact < least <= exact + 2


def test_the_checks_find_what_they_look_for():
    """The checks above fail on a layout spoiled on purpose: a box moved onto another, a frame
    grown over a box of another group, a frame moved across a sibling, a port label dropped."""
    import copy

    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    good = layout(learner)
    assert not problems(good, learner)
    boxes = [n for n in good.nodes if n.kind == "box"]

    lay = copy.deepcopy(good)  # a box onto another
    a, b = lay.nodes[boxes[0].id], lay.nodes[boxes[1].id]
    a.x, a.y = b.x, b.y
    assert any("overlaps box" in p for p in problems(lay, learner))

    lay = copy.deepcopy(good)  # the loss frame grown over the model's boxes (the defect of the issue)
    (loss,) = [f for f in lay.frames if f.path == ("loss",) and f.band == pl.diagram.FORWARD]
    (model,) = [f for f in lay.frames if f.path == ("model",) and f.band == pl.diagram.FORWARD]
    loss.rect = (min(loss.rect[0], model.rect[0]), min(loss.rect[1], model.rect[1]), loss.rect[2], loss.rect[3])
    found = problems(lay, learner)
    assert any("frame loss overlaps box" in p for p in found) and any("overlaps frame" in p for p in found)

    lay = copy.deepcopy(good)  # a port's label gone
    lay.labels = [lab for lab in lay.labels if lab.text != "x"]
    assert any("'x' has no label" in p for p in problems(lay, learner))

    lay = copy.deepcopy(good)  # a bundle that forgot a wire
    (params,) = [n for n in lay.nodes if n.label == "params (4)" and n.kind == "input"]
    params.members = params.members[:-1]
    assert any("input ports show" in p for p in problems(lay, learner))


def test_every_optimizer_in_a_learner_is_legible_collapsed_and_expanded():
    """Each optimizer of pl.optim once (hypothesis above samples some of them with deeper models)."""
    model = pl.nn.mlp([3, 4, 2])
    found = []
    for name in OPTIMIZERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=getattr(pl.optim, name)(0.1))
        for collapse, expand in ((False, True), (True, False)):
            lay = layout(learner, collapse=collapse, expand=expand)
            found += [f"{name}: {p}" for p in problems(lay, learner, expand)]
    assert not found, found[:5]
