"""Terms: build-time type errors, immutability, hashing, the pointful builder."""

import dataclasses

import numpy as np
import pytest

import paralens as pl
from paralens.backends import numpy as pnp


def test_ill_typed_sequential_composition_names_both_terms_and_types():
    f, g = pl.nn.dense(4, 3), pl.nn.dense(5, 2)
    with pytest.raises(pl.CompositionError) as e:
        f >> g
    msg = str(e.value)
    assert "dense(4, 3)" in msg and "dense(5, 2)" in msg
    assert "Ty(Array[3])" in msg and "Ty(Array[5])" in msg


def test_ill_typed_parallel_then_sequential():
    f, g = pl.nn.dense(4, 3), pl.nn.dense(2, 2)
    h = pl.add(pl.Array[3])
    with pytest.raises(pl.CompositionError) as e:
        (f @ g) >> h
    msg = str(e.value)
    assert "dense(4, 3) @ dense(2, 2)" in msg and "add(Array[3])" in msg
    assert "Ty(Array[3], Array[2])" in msg and "Ty(Array[3], Array[3])" in msg
    with pytest.raises(TypeError):
        f @ "not a term"
    with pytest.raises(pl.CompositionError, match="no type yet"):
        pl.nn.relu() @ f


def test_ill_typed_pointful_application():
    layer = pl.nn.dense(4, 3)
    with pytest.raises(pl.CompositionError) as e:
        @pl.para
        def bad(x: pl.Array[5]):
            return layer(x)
    assert "dense(4, 3)" in str(e.value) and "Array[5]" in str(e.value) and "Array[4]" in str(e.value)
    with pytest.raises(TypeError, match="add: operand shapes"):
        @pl.para
        def bad2(x: pl.Array[3], y: pl.Array[2]):
            return x + y
    with pytest.raises(TypeError, match="give argument 'x' a type"):
        pl.para(lambda x: x)


def test_terms_are_immutable_and_hashable():
    f = pl.nn.dense(4, 3) >> pl.nn.relu()
    g = pl.nn.dense(4, 3) >> pl.nn.relu()
    assert f == g and hash(f) == hash(g) and len({f, g}) == 1
    assert f != pl.nn.dense(4, 3) >> pl.nn.tanh()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.name = "x"
    assert {pl.R(f): 1}[pl.R(g)] == 1


def test_pointful_fan_out_discard_and_sum():
    @pl.para
    def h(x: pl.Array[2], unused: pl.Array[3]):
        return x * x + pl.tanh(x)  # x is copied three times; `unused` is discarded
    x, u = np.array([[0.3, -1.2]]), np.zeros((1, 3))
    _, (dx, du) = pnp.compile(pl.R(h))({}, (x, u), np.ones((1, 2)))
    assert dx.dtype == np.float32  # float64 data meets float32 wires: computed in the term's dtype
    np.testing.assert_allclose(dx, 2 * x + 1 - np.tanh(x) ** 2, rtol=1e-6)
    assert np.all(du == 0) and du.shape == (1, 3)


def test_calling_terms_inside_para_and_matmul_variants():
    d = pl.nn.dense(3, 3)

    @pl.para
    def residual(x: pl.Array[3], w: pl.Param[3, 3]):
        return x + d(pl.relu(x @ w))
    assert residual.param_names == ("residual.w", "dense.W", "dense.b")
    p = residual.init(0)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    expected = x + np.maximum(x @ p["residual.w"], 0) @ p["dense.W"] + p["dense.b"]
    np.testing.assert_allclose(pnp.compile(residual)(p, x), expected, rtol=1e-5)


def test_structural_terms():
    A = pl.Array[2]
    x = np.array([[1.0, 2.0]])
    y = np.array([[3.0, 5.0]])
    assert pnp.compile(pl.add(A))({}, (x, y)).tolist() == [[4.0, 7.0]]
    a, b = pnp.compile(pl.copy(A))({}, x)
    assert np.array_equal(a, x) and np.array_equal(b, x)
    assert pnp.compile(pl.swap(A, pl.Array[3]))({}, (x, np.zeros((1, 3))))[0].shape == (1, 3)
    assert pnp.compile(pl.zero(A, pl.Array[4]))({}, x).tolist() == [[0.0] * 4]
    assert pnp.compile(pl.const([1.0, 2.0], (2,)))({}, ()).tolist() == [1.0, 2.0]
    assert pnp.compile(pl.discard(A))({}, x) == ()
    with pytest.raises(TypeError, match="batched zero"):
        pl.zero(pl.Ty(), A)


def test_the_syntax_imports_no_array_library():
    import subprocess
    import sys
    code = ("import sys, paralens as pl; pl.R(pl.nn.mlp([3, 4, 2])); "
            "print([m for m in ('numpy', 'jax', 'sympy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # building and differentiating terms needs no backend


def test_terms_pickle_and_copy_to_equal_terms():
    import copy
    import pickle
    f = pl.nn.dense(3, 2) >> pl.nn.tanh()
    for g in (pickle.loads(pickle.dumps(f)), copy.deepcopy(f), pickle.loads(pickle.dumps(pl.R(f)))):
        assert g == f or g == pl.R(f)
    assert pickle.loads(pickle.dumps(f)).param_names == f.param_names


def test_composition_is_lazy_but_checked_at_once():
    layers = [pl.nn.dense(3, 3) for _ in range(3)]
    f = layers[0] >> layers[1] >> layers[2]
    assert f._diagram is None and f.dom == pl.Ty(pl.Array[3])  # types known, nothing flattened yet
    with pytest.raises(pl.CompositionError, match="dense"):
        f >> pl.nn.dense(4, 1)
    assert f.n_boxes == 6 and f._diagram is not None
    assert f == layers[0] >> (layers[1] >> layers[2])  # however it is bracketed, the same diagram
    assert f.name == "dense(3, 3) >> dense(3, 3) >> dense(3, 3)"
    assert (f @ f).name == "(dense(3, 3) >> dense(3, 3) >> dense(3, 3)) @ (dense(3, 3) >> dense(3, 3) >> dense(3, 3))"
