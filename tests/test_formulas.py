"""Formulas: the SymPy backend's expressions for a term and its reverse derivative, as LaTeX."""

import numpy as np
import pytest
import sympy as sp
from sympy.parsing.latex import parse_latex

import paralens as pl
from paralens.backends import numpy as pnp


@pl.para
def neuron(x: pl.Array[()], w: pl.Param[()], b: pl.Param[()]):
    return pl.sigmoid(w * x + b)


def row(latex: str, name: str) -> str:
    line = next(r for r in latex.splitlines() if r.startswith(rf"\mathit{{{name}}}"))
    return line.split("&=", 1)[1].strip().rstrip("\\").strip()


def test_the_latex_of_R_of_a_sigmoid_neuron_keeps_sigma_and_parses_back_to_the_derivative():
    formulas = pl.formulas(pl.R(neuron), dy=1)
    latex = formulas.latex()
    assert r"\sigma" in latex and "cosh" not in latex and "exp" not in latex
    x, w, b, z = sp.symbols("x w b z")
    logistic = sp.Lambda(z, 1 / (1 + sp.exp(-z)))
    for name, var in (("dw", w), ("db", b), ("dx", x)):
        parsed = parse_latex(row(latex, name)).replace(sp.Function("sigma"), logistic)
        assert sp.simplify(parsed - sp.diff(logistic(w * x + b), var)) == 0, name
    assert formulas._repr_latex_().startswith("$$")


def test_formulas_evaluate_to_what_numpy_computes():
    f = pl.nn.dense(2, 2, dtype="float64") >> pl.nn.tanh() >> pl.nn.dense(2, 1, dtype="float64") >> pl.nn.sigmoid()
    formulas = pl.formulas(pl.R(f))
    assert set(formulas) == {"ddense0.W", "ddense0.b", "ddense1.W", "ddense1.b", "dx"}
    rng = np.random.default_rng(0)
    p = {n: rng.standard_normal(t.shape) for n, t in f.param_types.items()}
    x, dy = rng.standard_normal((1, 2)), rng.standard_normal((1, 1))
    names = {"dense0.W": "dense0_W", "dense0.b": "dense0_b", "dense1.W": "dense1_W", "dense1.b": "dense1_b"}
    subs = {}
    for n, v in p.items():
        for idx in np.ndindex(v.shape):
            subs[sp.Symbol(f"{names[n]}_{{{','.join(map(str, idx))}}}")] = v[idx]
    subs.update({sp.Symbol("x_{0}"): x[0, 0], sp.Symbol("x_{1}"): x[0, 1], sp.Symbol("dy_{0}"): dy[0, 0]})
    dp, dx = pnp.compile(pl.R(f))(p, x, dy)
    expected = {**{f"d{n}": v for n, v in dp.items()}, "dx": dx[0]}
    for label, expr in formulas.items():
        got = np.array(sp.Array(expr).subs(subs), dtype=np.float64)
        np.testing.assert_allclose(got, expected[label], rtol=1e-10)
    assert any(isinstance(a, sp.tanh) for a in sp.Array(formulas["dx"]).atoms(sp.Function))  # tanh stays named


def test_formulas_of_optimizers_and_lenses():
    adam = pl.formulas(pl.optim.adam(1e-3), **{"learning_rate": sp.Symbol("eta")})
    assert sp.Symbol("eta") in adam["w'"].free_symbols and sp.Symbol("dw") in adam["w'"].free_symbols
    lens = pl.formulas(pl.lens(neuron))
    assert set(lens) == {"y", "dw", "db", "dx"}


def test_a_random_key_has_no_formula_and_unknown_names_are_refused():
    """forward_gradient passes its key on; the key is not a number of the maths, so the formulas
    are the gradient estimates only (each v_k (v . grad f), checked against sympy.diff), and a
    value given under a name that no input or parameter has is refused, not ignored."""
    @pl.para
    def tanh_neuron(x: pl.Array[()], w: pl.Param[()], b: pl.Param[()]):
        return pl.tanh(w * x + b)
    estimate = pl.forward_gradient(tanh_neuron >> pl.losses.mse().at(pl.Array[()]))  # the label: a batched param
    formulas = pl.formulas(estimate)
    assert len(formulas) == 2 and len(estimate.cod) == 3  # dw, db; the next key has no row
    key = estimate.port_labels()[0][1]
    symbols = set().union(*(e.free_symbols for e in formulas.values()))
    assert not any(s.name.startswith(key) for s in symbols)
    x, w, b, label = (sp.Symbol(n) for n in (estimate.port_labels()[0][0], "w", "b", "mse"))
    f = 0.5 * (sp.tanh(w * x + b) - label) ** 2
    v = sorted((s for s in symbols if s.name.startswith("v_")), key=lambda s: int(s.name[3:-1]))
    assert len(v) == 2   # the draws v_0, v_1, else the loop below checks nothing
    for e, vk in zip(formulas.values(), v):
        assert sp.simplify(e - vk * (v[0] * sp.diff(f, w) + v[1] * sp.diff(f, b))) == 0
    with pytest.raises(KeyError, match=r"no input or parameter is named \['seed'\]"):
        pl.formulas(estimate, seed=np.array([0, 1], np.uint32))
