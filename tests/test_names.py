"""Names are data, never code: hostile layer and term names through every backend and display.

A layer name comes from a config file in a real project. Whatever it holds (a newline and
Python code, quotes, backslashes, ``#``, a keyword, letters of any script, ten thousand
characters), compiling, differentiating, training, exporting, drawing and printing formulas
must compute what a plain name computes, execute nothing, and show the name escaped where it
cannot be shown as it is.
"""

import builtins
import xml.etree.ElementTree as ET

import jax
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import paralens as pl
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp
from paralens.types import printable

#: code that, if it ever ran, would leave a mark on ``builtins``
PAYLOAD = "x\n    setattr(__import__('builtins'), 'PARALENS_PWNED', 1)\n#"
HOSTILE = [
    PAYLOAD,
    "layer\n    print('injected', file=open('PWNED', 'w'))\n    #",
    "a'b\"c", "back\\slash\\n", "#comment", "lambda", "class", "None", "def",
    "größe", "层", "λ-layer", "\x00nul", "line\u2028sep", "$x^2$", "<script>alert(1)</script>",
    "\\input{/etc/passwd}", "}{", "x" * 10_000,
]
NAMES = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=30).filter(lambda s: "." not in s))


def _model(name: str):
    """Two layers named ``name`` (so the parameter names are ``name0.w``, ``name1.w``)."""
    def layer(x, w: pl.Param(3, dtype="float64")):
        return pl.tanh(x * w) + x
    first = pl.para(layer, dom=[pl.Array(3, dtype="float64")], name=name)
    return first >> pl.para(layer, dom=[pl.Array(3, dtype="float64")], name=name)


def _params(term, rng):
    return {n: rng.standard_normal(t.shape) for n, t in term.param_types.items()}


def _renamed(values: dict, names) -> dict:
    return dict(zip(names, values.values()))


def _check(name: str, compiled: bool = True):
    """Everything a name goes through; ``compiled=False`` leaves out the JAX programs (the slow part),
    which a few representative names run."""
    plain, named = _model("plain"), _model(name)
    rng = np.random.default_rng(0)
    p = _params(plain, rng)
    q = _renamed(p, named.param_names)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))

    # compile and R, on NumPy and JAX: the same numbers as with a plain name
    for compile_ in (pnp.compile, lambda t: jax.jit(pjax.compile(t))) if compiled else (pnp.compile,):
        np.testing.assert_array_equal(np.asarray(compile_(named)(q, x)), np.asarray(compile_(plain)(p, x)))
        (dq, dxq), (dp, dxp) = compile_(pl.R(named))(q, x, dy), compile_(pl.R(plain))(p, x, dy)
        np.testing.assert_array_equal(np.asarray(dxq), np.asarray(dxp))
        for a, b in zip(dq.values(), dp.values()):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # a learner's step on both backends, and the exported step
    y = rng.standard_normal((5, 3))
    losses = []
    for model in (named, plain):
        learner = pl.Learner(model, loss=pl.losses.mse(), optimizer=pl.optim.adam(0.1))
        state = learner.init(0, params=_renamed(p, learner.param_types))
        state_np, loss_np = learner.compile("numpy")(state, x, y)
        losses.append([float(loss_np)] + [float(np.sum(v)) for v in state_np["params"].values()])
        if compiled:
            start = learner.init(0, "jax", _renamed(p, learner.param_types))
            _, loss_jax = learner.compile("jax", donate=False)(start, x, y)
            exported = jax.export.deserialize(learner.compile("jax").export())
            _, loss_exported = exported.call(learner.init(0, "jax", _renamed(p, learner.param_types)), x, y)
            losses[-1] += [float(loss_jax), float(loss_exported)]
    assert losses[0] == losses[1]

    # the formulas: symbols are named after the parameters, escaped in LaTeX
    formulas = pl.formulas(pl.R(_scalar(name) >> _scalar(name)), dy=1)
    latex = formulas.latex()
    _safe_latex(latex, rows=len(formulas))

    # the diagram: an SVG that parses as XML, its labels escaped
    svg = pl.draw(named)
    ET.fromstring(svg.encode())
    shown = printable(f"{name}0.w", 48)
    escaped = shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in svg or shown in svg


def _safe_latex(latex: str, rows: int):
    """No character of a name acts as LaTeX: one line per row, ``&`` only in ``&=``, no raw
    ``$ # %`` or HTML brackets, balanced braces, and no command a name spelled out."""
    assert latex.count("\n") == rows + 1 and latex.count("&") - latex.count("\\&") == rows, latex[:300]
    for c in "$#%<>":
        assert latex.count(c) == latex.count("\\" + c), (c, latex[:300])
    depth = 0
    for i, c in enumerate(latex):
        if c in "{}" and latex[i - 1] != "\\":
            depth += 1 if c == "{" else -1
            assert depth >= 0, latex[:300]
    assert depth == 0 and "\\input" not in latex


def _scalar(name):
    def layer(x, w: pl.Param[()]):
        return pl.tanh(w * x)
    return pl.para(layer, dom=[pl.Array[()]], name=name)


#: the names that also go through the JAX programs (the step and its export)
COMPILED = {PAYLOAD, "a'b\"c", "größe", "x" * 10_000}


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: ascii(n)[:20])
def test_a_hostile_name_computes_what_a_plain_one_does_and_runs_nothing(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check(name, compiled=name in COMPILED)
    assert not hasattr(builtins, "PARALENS_PWNED")
    assert not (tmp_path / "PWNED").exists()


@settings(max_examples=12, deadline=None)
@given(NAMES)
@example("if")
def test_any_name_computes_what_a_plain_one_does(name):
    _check(name, compiled=False)
    assert not hasattr(builtins, "PARALENS_PWNED")


def test_a_plain_lambda_and_keyword_names_compile_on_numpy():
    f = pl.para(lambda x: pl.tanh(x), dom=[pl.Array[2]])
    np.testing.assert_allclose(pnp.compile(f)({}, np.ones((1, 2))), np.tanh(np.ones((1, 2))), rtol=1e-6)
    for keyword in ("lambda", "def", "return", "import"):
        g = pl.para(lambda x: pl.tanh(x), dom=[pl.Array[2]], name=keyword)
        assert pnp.compile(g)({}, np.zeros((1, 2))).shape == (1, 2)


def test_a_string_is_never_parsed_by_the_sympy_backend():
    f = pl.para(lambda x: x * 2.0, dom=[pl.Array[()]], name="double")
    with pytest.raises(TypeError, match="not str"):
        pl.backends.get("sympy").compile(f)({}, ["setattr(__import__('builtins'), 'PARALENS_PWNED', 1)"])
    assert not hasattr(builtins, "PARALENS_PWNED")


@pytest.mark.parametrize("bad", ["", "a.b", "\ud800"])
def test_a_layer_name_that_cannot_be_a_key_is_refused_when_the_layer_is_made(bad):
    with pytest.raises(ValueError, match="name must be"):
        pl.Builder().new_layer(bad)
    if bad:  # pl.para(name="") names the term after its function
        with pytest.raises(ValueError, match="name must be"):
            pl.para(lambda x: x * 2.0, dom=[pl.Array[2]], name=bad)
