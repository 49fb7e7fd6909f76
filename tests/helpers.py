"""Shared test helpers: random well-typed terms (hypothesis strategies), sampling, evaluation."""

import ast
import contextlib

import numpy as np
from hypothesis import strategies as st

import paralens as pl
from paralens.backends import numpy as pnp
from paralens.types import as_ty

A = pl.Array(3, dtype="float64")
B = pl.Array(2, dtype="float64")
BATCH = 4


def f64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def sample(ty, rng, batch=BATCH):
    """Random values for the wires of ``ty`` (a Ty), batched where the type says so."""
    vals = [rng.standard_normal(((batch,) if t.batched else ()) + t.shape) for t in as_ty(ty)]
    return vals[0] if len(vals) == 1 else tuple(vals)


def closed(term, seed=0):
    """``term`` with its parameters fixed to random constants: a map of C."""
    rng = np.random.default_rng(seed)
    return pl.bind(term, {n: 0.7 * rng.standard_normal(t.shape) for n, t in term.param_types.items()})


def run(term, x, params=None):
    return pnp.compile(term)(params if params is not None else {}, x)


# ---------------------------------------------------------------- random terms

def _fn(name, fn, ty):
    return pl.para(fn, dom=[ty], name=name)


def _leaves(ty):
    """Parameter-free and parametrised endomorphisms of ``ty`` built from several primitives."""
    n = ty.shape[0]
    return [
        pl.nn.tanh().at(ty),
        pl.nn.sigmoid().at(ty),
        pl.nn.softplus().at(ty),
        _fn("cube", lambda x: 0.3 * x ** 3.0 - x, ty),
        _fn("wave", lambda x: pl.tanh(x) * x + 0.5, ty),
        _fn("lse", lambda x: x - pl.broadcast_to(pl.logsumexp(x), (n,), ()), ty),
        _fn("smax", lambda x: pl.softmax(2.0 * x) * x, ty),
        _fn("quot", lambda x: x / (1.0 + x * x), ty),
        _fn("logq", lambda x: pl.log(1.0 + x * x) + pl.sqrt(2.0 + pl.sigmoid(x)), ty),
        pl.nn.dense(n, n, dtype=ty.dtype),
        _param_gate(ty),
    ]


def _param_gate(ty):
    @pl.para(dom=[ty])
    def gate(x, w: pl.Param(ty.shape, dtype=ty.dtype)):
        return x * w + pl.exp(-(x * x))
    return gate


def endo_terms(ty=A, max_leaves=4):
    """Random endomorphisms of ``ty``: sequences, fan-out sums and swaps of leaves."""
    leaves = st.sampled_from(_leaves(ty))

    def extend(children):
        pair = st.tuples(children, children)
        return st.one_of(
            pair.map(lambda fg: fg[0] >> fg[1]),
            pair.map(lambda fg: pl.copy(ty) >> (fg[0] @ fg[1]) >> pl.add(ty)),
            pair.map(lambda fg: pl.copy(ty) >> (fg[0] @ fg[1]) >> pl.swap(ty, ty) >> pl.add(ty)),
        )
    return st.recursive(leaves, extend, max_leaves=max_leaves)


def hom_terms(dom, cod):
    """Random maps ``dom -> cod`` (each a single array type)."""
    return st.tuples(endo_terms(dom, 3), endo_terms(cod, 2)).map(
        lambda fg: fg[0] >> _proj(dom, cod) >> fg[1])


def _proj(dom, cod):
    @pl.para(dom=[dom])
    def proj(x, w: pl.Param(dom.shape + cod.shape, dtype=dom.dtype)):
        return pl.tanh(x @ w)
    return proj


def hand_written_step(model, tx, loss):
    """The reference training step: ``model``'s forward map (paralens, JAX backend), gradients
    from ``jax.value_and_grad``, the update from the optax transformation ``tx``."""
    import jax
    import optax

    from paralens.backends import jax as pjax

    fwd = pjax.compile(model)

    @jax.jit
    def step(p, s, x, y):
        l, g = jax.value_and_grad(lambda p: loss(fwd(p, x), y))(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, l
    return step


def xent(logits, labels):
    """Mean softmax cross-entropy with integer labels, by optax."""
    import optax
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@contextlib.contextmanager
def backends_as_they_were():
    """Run a docs page's blocks and put the backend registry back as it was: a page registers
    backends of its own (architecture.md's ``doubling``), which a later page's run, in the same
    test process, would otherwise find registered already."""
    from paralens import backends
    before = dict(backends._FACTORIES), dict(backends._LOADED)
    try:
        yield
    finally:
        for table, kept in zip((backends._FACTORIES, backends._LOADED), before):
            table.clear()
            table.update(kept)


def parse(source: str) -> ast.Module:
    """``ast.parse``, retried where CPython 3.11 reports "AST constructor recursion depth mismatch":
    its AST conversion keeps the depth in the interpreter, not the thread, so another thread's ast
    work at the same moment trips it (python/cpython#106905; seen once in CI)."""
    for attempt in range(3):
        try:
            return ast.parse(source)
        except SystemError as e:
            if "recursion depth mismatch" not in str(e) or attempt == 2:
                raise
