"""Every primitive (and random composites): R against central finite differences and
``jax.vjp``; D against ``jax.jvp``; R(R(f)) against ``jax.hessian``. float64."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import paralens as pl
from helpers import endo_terms, f64
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

F = "float64"


def arr(*shape):
    return pl.Array(*shape, dtype=F)


def par(*shape):
    return pl.Param(*shape, dtype=F)


def pos(x):  # inputs kept away from singularities
    return np.abs(x) + 0.5


def case(name, fn, dom, transform=None, fd=True):
    """A small term exercising one primitive; ``transform`` maps random inputs into its
    domain; ``fd=False`` where finite differences do not apply (stop_gradient)."""
    f = pl.para(fn, dom=dom, name=name)
    return pytest.param(f, transform, fd, id=name)


def w_scale(x, w: par(3)):
    return x * w


def w_einsum(x, w: par(3, 2)):
    return pl.einsum("i,io->o", x, w)


def w_div(x, w: par(3)):
    return w / x


def w_where(x, w: par(3)):
    return pl.where(pl.greater(x, 0.0), x * w, w - x)


def w_conv2d(x, k: par(2, 2, 2, 3)):
    return pl.conv2d(x, k, stride=(1, 2), padding=(1, 0))


def w_conv_grouped(x, k: par(3, 2, 4)):
    return pl.conv(x, k, stride=2, padding=((1, 2),), dilation=2, input_dilation=2, groups=2)


def w_conv_transpose(x, k: par(3, 2, 2, 3)):
    return pl.conv_transpose(x, k, stride=(2, 1), padding="same")


def _loop_body(x, w: par(3, 3)):
    return pl.tanh(x @ w) + 0.5 * x


def ids_of(x, n):  # integer ids in [0, n) computed from a float wire (constant almost everywhere)
    return pl.cast(pl.floor(pl.sigmoid(x) * float(n)), "int32")


def w_take(x, table: par(4, 3)):
    return pl.take(table, ids_of(x, 4)) + x


def takes(x, y):  # a batched table, with shared and with per-example ids
    return pl.take(x, pl.constant([2, 0, 2], (3,), "int32")), pl.take(x, ids_of(y, 4))


def scatters(x, y):  # repeated ids add up
    return pl.scatter_add(x, ids_of(y, 4), 4), pl.scatter_add(x, pl.constant([1, 3, 1], (3,), "int32"), 5)


LOOP = pl.loop(pl.para(_loop_body, dom=[arr(3)], name="body"), 4)

CASES = [
    case("neg", lambda x: -x, [arr(3)]),
    case("exp", pl.exp, [arr(3)]),
    case("log", pl.log, [arr(3)], pos),
    case("sqrt", pl.sqrt, [arr(3)], pos),
    case("tanh", pl.tanh, [arr(3)]),
    case("sigmoid", pl.sigmoid, [arr(3)]),
    case("softplus", pl.softplus, [arr(3)]),
    case("relu", pl.relu, [arr(3)]),
    case("gelu", pl.gelu, [arr(3)]),
    case("scale_shift", lambda x: 3.0 * x - 2.0, [arr(3)]),
    case("pow", lambda x: x ** 3.0 + x ** 2.5, [arr(3)], pos),
    case("add_sub", lambda x, y: (x + y, x - y), [arr(3), arr(3)]),
    case("mul", lambda x, y: x * y, [arr(2, 3), arr(2, 3)]),
    case("div", lambda x, y: x / y, [arr(3), arr(3)], pos),
    case("mul_param_broadcast", w_scale, [arr(3)]),
    case("div_param", w_div, [arr(3)], pos),
    case("scalar_broadcast", lambda x, s: x * s + s, [arr(2, 3), arr()]),
    case("where_greater", w_where, [arr(3)]),
    case("maximum", lambda x, y: pl.maximum(x, y), [arr(3), arr(3)]),
    case("step_equal", lambda x: pl.relu(x) * x + pl.equal(x, x) * x, [arr(3)]),
    case("stop_gradient", lambda x: x * pl.stop_gradient(x), [arr(3)], fd=False),
    case("optimization_barrier", lambda x, y: pl.optimization_barrier(x * y, y)[0] * x, [arr(3), arr(3)]),
    case("power", lambda x, e: pl.power(x, e), [arr(3), arr(3)], pos),
    case("cast", lambda x: pl.cast(pl.cast(x, "float32") * 2.0, "float64") * x, [arr(3)], fd=False),
    case("cos_sin", lambda x: pl.cos(x) * pl.sin(2.0 * x), [arr(3)]),
    case("tan_arctan", lambda x: pl.tan(0.5 * x) * pl.arctan(3.0 * x), [arr(3)]),
    case("floor", lambda x: pl.floor(3.0 * x) * x, [arr(3)]),
    case("sign_abs", lambda x: pl.sign(x) * x * x + pl.abs(2.0 * x), [arr(3)]),
    case("conj_real", lambda x: pl.real(pl.conj(x) * x) + pl.conj(pl.sin(x)), [arr(3)]),  # on floats
    case("loop_scan", lambda x: LOOP(x) * x, [arr(3)]),
    case("reduce_sum", lambda x: pl.sum(x, axis=(0, 2)), [arr(2, 3, 2)]),
    case("mean", lambda x: pl.mean(x, axis=1), [arr(2, 3)]),
    case("reduce_max", lambda x: pl.max(x, axis=1), [arr(2, 4)]),
    case("broadcast", lambda x: pl.broadcast_to(x, (2, 3, 4), (1,)) * 1.5, [arr(3)]),
    case("broadcast_size1", lambda x: pl.broadcast_to(x, (4, 3), (0, 1)), [arr(1, 3)]),
    case("reshape", lambda x: pl.reshape(x, (3, 2)) ** 2.0, [arr(2, 3)]),
    case("transpose", lambda x: pl.transpose(x, (2, 0, 1)) * 2.0, [arr(2, 3, 4)]),
    case("einsum_param", w_einsum, [arr(3)]),
    case("einsum_batched_pair", lambda q, k: pl.einsum("td,sd->ts", q, k), [arr(3, 2), arr(4, 2)]),
    case("einsum_batch_contracted", lambda x, y: pl.einsum("i,j->ij", x, y, batched_out=False),
         [arr(3), arr(2)]),
    case("matmul", lambda x, y: x @ y, [arr(2, 3), arr(3, 4)]),
    case("softmax", lambda x: pl.softmax(x, axis=0), [arr(3, 2)]),
    case("logsumexp", lambda x: pl.logsumexp(x), [arr(2, 4)]),
    case("conv2d", w_conv2d, [arr(4, 5, 2)]),
    case("conv1d_grouped_dilated", w_conv_grouped, [arr(5, 4)]),
    case("conv_transpose", w_conv_transpose, [arr(3, 2, 2)]),
    case("max_pool", lambda x: pl.max_pool(x, (2, 2)), [arr(4, 4, 2)]),
    case("max_pool_padded_1d", lambda x: pl.max_pool(x, (3,), 2, 1), [arr(6, 2)]),
    case("avg_pool_overlap", lambda x: pl.avg_pool(x, (2, 2), (1, 1), (1, 1)), [arr(3, 3, 1)]),
    case("batch_sum_mean", lambda x: (pl.batch_sum(x * x), pl.batch_mean(x)),
         [arr(3)]),
    case("take_param_table", w_take, [arr(3)]),
    case("take_batched_table", takes, [arr(4, 2), arr(3)]),
    case("scatter_add", scatters, [arr(3, 2), arr(3)]),
    case("zeros_const", lambda x: x + pl.zeros_like(x) + pl.constant([1.0, 2.0, 3.0], (3,)), [arr(3)]),
]


def inputs(f, rng, transform, batch=3):
    xs = [rng.standard_normal(((batch,) if t.batched else ()) + t.shape) for t in f.dom]
    if transform is not None:
        xs = [transform(v) for v in xs]
    return xs[0] if len(xs) == 1 else tuple(xs)


def params_of(f, rng):
    return {n: rng.standard_normal(t.shape) for n, t in f.param_types.items()}


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree_util.tree_leaves(tree)]) \
        if jax.tree_util.tree_leaves(tree) else np.zeros(0)


def jax_fn(f):
    fn = pjax.compile(f)
    return lambda p, x: fn(p, x)


@pytest.mark.parametrize("f, transform, fd", CASES)
def test_R_matches_vjp_and_finite_differences(f, transform, fd):
    rng = np.random.default_rng(0)
    p, x = params_of(f, rng), inputs(f, rng, transform)
    y = pnp.compile(f)(p, x)
    dy = jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)), y)
    dp, dx = pnp.compile(pl.R(f))(p, x, dy)
    _, vjp = jax.vjp(jax_fn(f), p, x)
    rp, rx = vjp(dy)
    np.testing.assert_allclose(flat((dp, dx)), flat((rp, rx)), rtol=1e-9, atol=1e-9)
    if not fd:
        return
    # central differences of <dy, f(p, x)> along a random direction
    tp, tx = params_of(f, rng), jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)), x)
    eps = 1e-6

    def s(t):
        pp = {k: p[k] + t * tp[k] for k in p}
        xx = jax.tree_util.tree_map(lambda a, b: a + t * b, x, tx)
        return float(np.dot(flat(pnp.compile(f)(pp, xx)), flat(dy)))
    fd = (s(eps) - s(-eps)) / (2 * eps)
    np.testing.assert_allclose(np.dot(flat((dp, dx)), flat((tp, tx))), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("f, transform, fd", CASES)
def test_D_matches_jvp(f, transform, fd):
    rng = np.random.default_rng(1)
    p, x = params_of(f, rng), inputs(f, rng, transform)
    tp, tx = params_of(f, rng), jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)), x)
    ours = pnp.compile(pl.D(f))(p, x, tp, tx)
    _, ref = jax.jvp(jax_fn(f), (p, x), (tp, tx))
    np.testing.assert_allclose(flat(ours), flat(ref), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("f, transform, fd", CASES)
def test_RR_gives_hessian_vector_products(f, transform, fd):
    rng = np.random.default_rng(2)
    p, x = params_of(f, rng), inputs(f, rng, transform)
    y = pnp.compile(f)(p, x)
    dy = jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)), y)
    vp, vx = params_of(f, rng), jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)), x)
    dp_rr, (dx_rr, _) = pnp.compile(pl.R(pl.R(f)))(p, (x, dy), (vp, vx))
    fj = jax_fn(f)

    def s(p, x):  # the scalar <dy, f(p, x)>
        return sum(jnp.vdot(jnp.asarray(a), b) for a, b in zip(jax.tree_util.tree_leaves(dy),
                                                             jax.tree_util.tree_leaves(fj(p, x))))
    # jax.hessian of s over the flattened (params, x), applied to the flattened direction
    flat, unravel = jax.flatten_util.ravel_pytree((p, x))
    hessian = jax.hessian(lambda z: s(*unravel(z)))(flat)
    direction, _ = jax.flatten_util.ravel_pytree((vp, vx))
    ours, _ = jax.flatten_util.ravel_pytree((dp_rr, dx_rr))
    tol = 1e-8 if fd else 1e-5  # the no-finite-difference cases pass through float32 (cast)
    np.testing.assert_allclose(ours, hessian @ direction, rtol=tol, atol=tol)


@given(endo_terms())
def test_random_composites_match_jax(f):
    rng = np.random.default_rng(3)
    p, x = f64(f.init(0)), rng.standard_normal((4, 3))
    dy = rng.standard_normal((4, 3))
    dp, dx = pnp.compile(pl.R(f))(p, x, dy)
    _, vjp = jax.vjp(jax_fn(f), p, x)
    np.testing.assert_allclose(flat((dp, dx)), flat(vjp(dy)), rtol=1e-8, atol=1e-8)
    tp, tx = params_of(f, rng), rng.standard_normal((4, 3))
    np.testing.assert_allclose(pnp.compile(pl.D(f))(p, x, tp, tx),
                               jax.jvp(jax_fn(f), (p, x), (tp, tx))[1], rtol=1e-8, atol=1e-8)


def test_every_primitive_is_exercised():
    names = {e.prim.name for param in CASES for e in param.values[0].eqns}
    names |= {e.prim.name for param in CASES for e in pl.R(param.values[0]).eqns}
    names |= {e.prim.name for param in CASES for e in pl.R(pl.R(param.values[0])).eqns}
    # foreign: no reverse derivative by design (tested with from_optax); normal: each backend draws its
    # own numbers, so JAX cannot be the reference (tested in test_forward_gradient; uniform in
    # test_transformer_layers, through dropout)
    opaque = {"foreign", "normal", "uniform"}
    assert set(pl.PRIMS) - opaque <= names, sorted(set(pl.PRIMS) - opaque - names)


@pytest.mark.parametrize("dtype, tol", [("float32", 2e-6), ("float64", 1e-12)])
@pytest.mark.parametrize("backend", ["numpy", "jax", "sympy"])
@pytest.mark.parametrize("fn, ref", [(pl.tan, jnp.tan), (pl.arctan, jnp.arctan), (pl.sign, jnp.sign),
                                     (pl.abs, jnp.abs)], ids=["tan", "arctan", "sign", "abs"])
def test_tan_and_arctan_match_jax_vjp_on_every_backend(fn, ref, backend, dtype, tol):
    f = pl.para(fn, dom=[pl.Array(5, dtype=dtype)], name=fn.__name__)
    rng = np.random.default_rng(7)
    x, dy = (rng.uniform(-1.2, 1.2, (3, 5)).astype(dtype) for _ in range(2))
    y, vjp = jax.vjp(ref, jnp.asarray(x))
    run = pl.backends.get(backend).compile
    got_y, (_, got_dx) = run(f)({}, x), run(pl.R(f))({}, x, dy)
    if backend == "sympy":  # exact formulas, evaluated in float64
        got_y, got_dx = (np.array(np.asarray(v).tolist(), dtype=np.float64) for v in (got_y, got_dx))
    else:
        assert np.asarray(got_y).dtype == np.asarray(got_dx).dtype == np.dtype(dtype)
    np.testing.assert_allclose(np.asarray(got_y, np.float64), np.asarray(y, np.float64), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(got_dx, np.float64), np.asarray(vjp(jnp.asarray(dy))[0], np.float64),
                               rtol=tol, atol=tol)
