"""Optics, not naive lenses: the size of R(f) and of its traced JAX program grow linearly
with depth, and deep models build, differentiate and compile without recursion."""

import sys

import jax
import numpy as np
import pytest

import paralens as pl
from paralens.backends import jax as pjax

DEPTHS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def count_eqns(jaxpr) -> int:
    n = 0
    for e in jaxpr.eqns:
        n += 1
        for v in e.params.values():
            for sub in (v if isinstance(v, (list, tuple)) else [v]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    n += count_eqns(inner if hasattr(inner, "eqns") else inner.jaxpr)
    return n


def model(depth):
    return pl.nn.mlp([4] * (depth + 1), activation=pl.nn.tanh)


def assert_linear(ns, counts):
    ns, counts = np.asarray(ns, float), np.asarray(counts, float)
    slope, intercept = np.polyfit(ns, counts, 1)
    residual = counts - (slope * ns + intercept)
    assert np.abs(residual).max() <= 0.01 * counts.max() + 2, (ns, counts)
    # and not secretly quadratic: per-layer cost at the deepest equals the fitted slope
    assert abs((counts[-1] - counts[-2]) / (ns[-1] - ns[-2]) - slope) <= 0.01 * slope + 0.5


def test_R_has_linearly_many_boxes():
    counts = [pl.R(model(n)).n_boxes for n in DEPTHS]
    assert_linear(DEPTHS, counts)
    assert counts[-1] <= 4 * model(256).n_boxes  # a constant factor over the forward pass


def test_traced_jax_program_of_R_is_linear():
    counts = []
    for n in DEPTHS:
        f = model(n)
        p = f.init(0)
        x, dy = np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32)
        counts.append(count_eqns(jax.make_jaxpr(pjax.compile(pl.R(f)))(p, x, dy).jaxpr))
    assert_linear(DEPTHS, counts)


def test_256_layers_build_differentiate_and_compile_under_a_low_recursion_limit():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # well below the 256 * 3 boxes of the model
    try:
        f = model(256)
        f = f >> pl.nn.relu() >> pl.nn.dense(4, 2)
        r = pl.R(f)
        rr = pl.R(r)
        d = pl.D(f)
        assert hash(r) != hash(rr) and d.n_boxes > 0
    finally:
        sys.setrecursionlimit(old)
    p = f.init(0)
    x, dy = np.ones((3, 4), np.float32), np.ones((3, 2), np.float32)
    compiled = jax.jit(pjax.compile(r)).lower(p, x, dy).compile()
    dp, dx = compiled(p, x, dy)
    assert dx.shape == (3, 4) and np.all(np.isfinite(dx))


def test_a_chain_built_by_repeated_composition_is_flattened_once_without_recursion(monkeypatch):
    from paralens.terms import Builder
    n, calls = 2000, []
    inline = Builder._inline_flat
    monkeypatch.setattr(Builder, "_inline_flat", lambda self, *a: calls.append(1) or inline(self, *a))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        chain = [pl.nn.dense(4, 4)]
        for _ in range(n - 1):
            chain.append(chain[-1] >> pl.nn.dense(4, 4))
        assert len(calls) == 0  # composing looks inside nothing
        f = chain[-1]
        assert len(f.param_names) == 2 * n and f.param_names[-1] == f"dense{n - 1}.b"
        assert len(calls) == n  # one pass over the layers, each copied once
        assert all(t._diagram is None for t in chain[1:-1])  # the partial chains were never flattened
        assert pl.R(f).n_boxes < 4 * f.n_boxes and f.name.endswith(f"({n} terms) >> dense(4, 4)")
    finally:
        sys.setrecursionlimit(old)


@pytest.mark.parametrize("depth", [3])
def test_optic_split_has_residuals_and_no_recomputation(depth):
    f = model(depth)
    o = pl.lens(f)
    fwd_prims = [e.prim.name for e in o.fwd.eqns]
    rev_prims = [e.prim.name for e in o.rev.eqns]
    assert fwd_prims == [e.prim.name for e in f.eqns]  # the forward pass, once
    assert "tanh" not in rev_prims  # the backward pass reads tanh's outputs from the residuals
    assert len(o.residuals) > 0
