"""Convolutions and windows against JAX's own: ``conv`` equals ``lax.conv_general_dilated`` and
``window_max`` / ``window_sum`` equal ``lax.reduce_window``, forward, reverse (``jax.vjp``) and
reverse of reverse (``jax.jvp`` of ``jax.grad``: Hessian-vector products), over hypothesis-drawn
shapes, strides, paddings, dilations and groups, in float32 and float64, on NumPy and JAX."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax

import paralens as pl
import paralens.prims as P
import paralens.wires as W
from paralens.backends import get

TOL = {"float32": 2e-4, "float64": 1e-10}
BACKENDS = ["numpy", "jax"]


def close(got, want, dtype, scale=1.0):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    tol = TOL[dtype] * max(1.0, scale)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _spec(n):
    sp = "DHW"[3 - n:] if n <= 3 else "".join(chr(ord("a") + i) for i in range(n))
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


@st.composite
def convolutions(draw):
    n = draw(st.sampled_from([1, 1, 2, 2, 3]))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(n))
    lhs = tuple(draw(st.integers(1, 2)) for _ in range(n))
    rhs = tuple(draw(st.integers(1, 2)) for _ in range(n))
    padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(n))
    size = tuple(draw(st.integers(1, 6 if n < 3 else 4)) for _ in range(n))
    for s, k, p, ld, rd in zip(size, kernel, padding, lhs, rhs):
        assume(P.dilated_size(s, ld) + p[0] + p[1] >= P.dilated_size(k, rd))
    batch = draw(st.sampled_from([1, 2, 3]))
    return dict(size=size, cin=cin, cout=cout, kernel=kernel, strides=strides, padding=padding, lhs=lhs,
                rhs=rhs, groups=groups, batch=batch)


def conv_case(c, dtype):
    n = len(c["size"])
    wshape = c["kernel"] + (c["cin"] // c["groups"], c["cout"])

    def f(x, w: pl.Param(*wshape, dtype=dtype)):
        return pl.conv(x, w, stride=c["strides"], padding=c["padding"], dilation=c["rhs"],
                       input_dilation=c["lhs"], groups=c["groups"])
    term = pl.para(f, dom=[pl.Array(*c["size"], c["cin"], dtype=dtype)], name="conv")
    dn = lax.conv_dimension_numbers((1,) * (n + 2), wshape, _spec(n))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, c["strides"], c["padding"], c["lhs"], c["rhs"], dn,
                                        feature_group_count=c["groups"], precision=lax.Precision.HIGHEST)
    rng = np.random.default_rng(sum(c["size"]) + 7 * c["groups"])
    x = rng.standard_normal((c["batch"],) + c["size"] + (c["cin"],)).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    return term, ref, x, w, rng


@settings(max_examples=15, deadline=None)
@given(convolutions(), st.sampled_from(["float32", "float64"]))
def test_conv_equals_lax_conv_general_dilated_and_its_vjp(c, dtype):
    term, ref, x, w, rng = conv_case(c, dtype)
    y, vjp = jax.vjp(ref, jnp.asarray(x), jnp.asarray(w))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, dw = vjp(jnp.asarray(dy))
    scale = float(np.prod(c["kernel"])) * c["cin"]
    for name in BACKENDS:
        be = get(name)
        got = be.compile(term)(w, x)
        assert np.asarray(got).dtype == np.dtype(dtype)
        close(got, y, dtype, scale)
        gw, gx = be.compile(pl.R(term))(w, x, dy)
        close(gx, dx, dtype, scale)
        close(gw, dw, dtype, scale * c["batch"])


@settings(max_examples=8, deadline=None)
@given(convolutions())
def test_conv_reverse_of_reverse_is_hessian_vector_products(c):
    """``R(R(conv))``, made of convolutions again: its parameter and input cotangents are the
    Hessian-vector products of ``<dy, conv(x, w)>`` (``jax.jvp`` of ``jax.grad``), its output
    cotangent's part the forward derivative (``jax.jvp`` of the convolution)."""
    dtype = "float64"
    term, ref, x, w, rng = conv_case(c, dtype)
    dy = rng.standard_normal(ref(x, w).shape)
    vx, vw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)

    def s(x, w):
        return jnp.vdot(dy, ref(x, w))
    grad = jax.grad(s, argnums=(0, 1))
    _, (hx, hw) = jax.jvp(grad, (x, w), (vx, vw))
    _, tangent = jax.jvp(ref, (x, w), (vx, vw))
    rr = pl.R(pl.R(term))
    assert {e.prim.name for e in rr.eqns} & {"einsum", "take", "scatter_add"} == set()
    for name in BACKENDS:
        gw, (gx, gdy) = get(name).compile(rr)(w, (x, dy), ({"conv.w": vw}, vx))
        close(gw, hw, dtype)
        close(gx, hx, dtype)
        close(gdy, tangent, dtype)


@st.composite
def windows(draw, dilations: bool):
    n = draw(st.sampled_from([1, 2, 2, 3]))
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(n))
    base = tuple(draw(st.integers(1, 2)) for _ in range(n)) if dilations else (1,) * n
    wd = tuple(draw(st.integers(1, 2)) for _ in range(n)) if dilations else (1,) * n
    padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in window)
    size = tuple(draw(st.integers(1, 6 if n < 3 else 4)) for _ in range(n))
    for s, k, p, b, d in zip(size, window, padding, base, wd):
        assume(P.dilated_size(s, b) + p[0] + p[1] >= P.dilated_size(k, d))
    return dict(size=size, channels=draw(st.integers(1, 2)), window=window, strides=strides, padding=padding,
                base=base, wd=wd, batch=draw(st.sampled_from([1, 2, 3])), ties=draw(st.booleans()))


def window_case(c, dtype, kind):
    n = len(c["size"])
    if kind == "max":
        attrs = dict(window=c["window"], strides=c["strides"], padding=c["padding"])
        prim, init, op = P.WINDOW_MAX, -jnp.inf, lax.max
    else:
        attrs = dict(window=c["window"], strides=c["strides"], padding=c["padding"], base_dilation=c["base"],
                     window_dilation=c["wd"])
        prim, init, op = P.WINDOW_SUM, 0.0, lax.add

    def f(x):
        return W.Wire(x.builder, x.builder.emit1(prim, x.id, **attrs))
    term = pl.para(f, dom=[pl.Array(*c["size"], c["channels"], dtype=dtype)], name=f"window_{kind}")

    def ref(x):
        return lax.reduce_window(x, jnp.asarray(init, x.dtype), op, (1, *c["window"], 1), (1, *c["strides"], 1),
                                 ((0, 0), *c["padding"], (0, 0)), (1, *c["base"], 1), (1, *c["wd"], 1))
    rng = np.random.default_rng(sum(c["size"]) + n)
    shape = (c["batch"],) + c["size"] + (c["channels"],)
    # small integers make ties: the cotangent then goes to each window's first maximum, as XLA's
    x = rng.integers(-2, 3, shape).astype(dtype) if c["ties"] else rng.standard_normal(shape).astype(dtype)
    return term, ref, x, rng


@settings(max_examples=15, deadline=None)
@given(windows(dilations=False), st.sampled_from(["float32", "float64"]))
def test_window_max_equals_reduce_window_and_its_vjp(c, dtype):
    term, ref, x, rng = window_case(c, dtype, "max")
    y, vjp = jax.vjp(ref, jnp.asarray(x))
    dy = rng.standard_normal(y.shape).astype(dtype)
    (dx,) = vjp(jnp.asarray(dy))
    vx = rng.standard_normal(x.shape).astype(dtype)
    _, tangent = jax.jvp(ref, (jnp.asarray(x),), (jnp.asarray(vx),))
    for name in BACKENDS:
        be = get(name)
        close(be.compile(term)({}, x), y, dtype)
        close(be.compile(pl.R(term))({}, x, dy)[1], dx, dtype)
        # R(R): no curvature, and the output cotangent's part is the forward derivative
        # (select-and-gather, the transpose of select-and-scatter)
        _, (gx, gdy) = be.compile(pl.R(pl.R(term)))({}, (x, dy), ({}, vx))
        close(gx, np.zeros_like(x), dtype)
        if not c["ties"] or name == "jax":
            close(gdy, tangent, dtype)
        else:
            # with ties XLA's select-and-gather (JAX's jvp) breaks them in its reduction's order, not
            # always at the first maximum as its select-and-scatter does; ours is that one's transpose
            close(np.vdot(np.asarray(gdy, np.float64), dy), np.vdot(vx, np.asarray(dx, np.float64)), dtype)


@settings(max_examples=15, deadline=None)
@given(windows(dilations=True), st.sampled_from(["float32", "float64"]))
def test_window_sum_equals_reduce_window_and_its_vjp(c, dtype):
    term, ref, x, rng = window_case(c, dtype, "sum")
    y, vjp = jax.vjp(ref, jnp.asarray(x))
    dy = rng.standard_normal(y.shape).astype(dtype)
    (dx,) = vjp(jnp.asarray(dy))
    vx = rng.standard_normal(x.shape).astype(dtype)
    _, tangent = jax.jvp(ref, (jnp.asarray(x),), (jnp.asarray(vx),))
    scale = float(np.prod(c["window"]))
    for name in BACKENDS:
        be = get(name)
        close(be.compile(term)({}, x), y, dtype, scale)
        close(be.compile(pl.R(term))({}, x, dy)[1], dx, dtype, scale)
        _, (gx, gdy) = be.compile(pl.R(pl.R(term)))({}, (x, dy), ({}, vx))
        close(gx, np.zeros_like(x), dtype)
        close(gdy, tangent, dtype, scale)


@pytest.mark.parametrize("name", BACKENDS)
def test_layers_equal_flax_style_references(name):
    """The layers' conventions: ``conv_transpose`` is ``lax.conv_transpose``; ``max_pool`` pads
    with -inf and ``avg_pool`` counts padded zeros (as flax.linen's pools, ``count_include_pad``);
    a depthwise ``conv2d`` is ``feature_group_count = C``."""
    rng = np.random.default_rng(0)
    be = get(name)
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((3, 2, 3, 4))
    for padding in ("same", "valid", ((1, 2), (0, 1))):
        def up(x, w: pl.Param(3, 2, 3, 4, dtype="float64")):
            return pl.conv_transpose(x, w, stride=(2, 3), padding=padding)  # noqa: B023 - traced at once
        up = pl.para(up, dom=[pl.Array(5, 4, 3, dtype="float64")])
        ref = lax.conv_transpose(x, w, (2, 3), padding.upper() if isinstance(padding, str) else padding,
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
        close(be.compile(up)(w, x), ref, "float64")
    neg = -np.abs(x) - 1.0  # every value below the padding's zeros: -inf padding never wins
    pool = pl.para(lambda x: pl.max_pool(x, 2, 1, 1), dom=[pl.Array(5, 4, 3, dtype="float64")])
    close(be.compile(pool)({}, neg), lax.reduce_window(neg, -np.inf, lax.max, (1, 2, 2, 1), (1, 1, 1, 1),
                                                        ((0, 0), (1, 1), (1, 1), (0, 0))), "float64")
    avg = pl.para(lambda x: pl.avg_pool(x, (3, 2), 2, 1), dom=[pl.Array(5, 4, 3, dtype="float64")])
    want = lax.reduce_window(x, 0.0, lax.add, (1, 3, 2, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))) / 6
    close(be.compile(avg)({}, x), want, "float64")
    dw = rng.standard_normal((3, 3, 1, 6))

    def depthwise(x, w: pl.Param(3, 3, 1, 6, dtype="float64")):
        return pl.conv2d(x, w, padding="same", groups=3)
    depthwise = pl.para(depthwise, dom=[pl.Array(5, 4, 3, dtype="float64")])
    ref = lax.conv_general_dilated(x, dw, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=3)
    close(be.compile(depthwise)(dw, x), ref, "float64")


def test_unbatched_inputs_and_sympy_formulas():
    """An unbatched input runs as a batch of one; SymPy gives the convolution's formulas by the
    definition (each output a sum of products) and a max window's derivative as a Piecewise."""
    import sympy as sp

    def f(x, w: pl.Param(2, 1, 1)):
        return pl.conv(x, w)
    f = pl.para(f, dom=[pl.ArrayType((3, 1), "float32", batched=False)])
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 1)).astype("float32"), rng.standard_normal((2, 1, 1)).astype("float32")
    for name in BACKENDS:
        close(get(name).compile(f)(w, x), np.correlate(x[:, 0], w[:, 0, 0])[:, None], "float32")
    sym = get("sympy")
    w = sym.init(f)["conv.w"] if "conv.w" in f.param_names else next(iter(sym.init(f).values()))
    y = sym.compile(f)(w, np.array([[sp.Integer(1)], [sp.Integer(2)], [sp.Integer(3)]], dtype=object))
    assert sp.expand(y[0, 0] - (w[0, 0, 0] + 2 * w[1, 0, 0])) == 0  # the definition: a sum of products
    pool = pl.para(lambda x: pl.max_pool(x, (2,)), dom=[pl.Array(2, 1)])
    syms = np.array([[[sp.Symbol("a")], [sp.Symbol("b")]]], dtype=object)
    _, dx = get("sympy").compile(pl.R(pool))({}, syms, np.array([[[sp.Integer(1)]]], dtype=object))
    assert dx[0, 0, 0].subs({"a": 2, "b": 1}) == 1 and dx[0, 1, 0].subs({"a": 2, "b": 1}) == 0
    assert dx[0, 0, 0].subs({"a": 1, "b": 1}) == 1 and dx[0, 1, 0].subs({"a": 1, "b": 1}) == 0  # the first max


@pytest.mark.parametrize("build, message", [
    (lambda: pl.para(lambda x, w: pl.conv(x, w, groups=2), dom=[pl.Array(4, 3), pl.Param(2, 1, 2)]),
     "groups=2"),
    (lambda: pl.para(lambda x, w: pl.conv(x, w), dom=[pl.Array(2, 1), pl.Param(3, 1, 1)]), "does not fit"),
    (lambda: pl.para(lambda x, w: pl.conv(x, w, stride=(1, 1)), dom=[pl.Array(4, 1), pl.Param(2, 1, 1)]),
     "conv: stride must be a positive int or a tuple of 1"),
    (lambda: pl.para(lambda x, w: pl.conv(x, w), dom=[pl.Array(4, 4, 1), pl.Param(2, 1, 1)]),
     r"conv: x must be per-example \(length, channels\)"),
    (lambda: pl.para(lambda x, w: pl.conv(x, w), dom=[pl.Array(4, 1), pl.Array(2, 1, 1)]), "unbatched kernel"),
    (lambda: pl.para(lambda x: pl.max_pool(x, (2, 2, 2)), dom=[pl.Array(4, 4, 1)]),
     r"max_pool: x must be per-example \(depth, height, width, channels\)"),
    (lambda: pl.nn.conv2d(4, 6, groups=4), "groups=4 must divide"),
])
def test_bad_arguments_are_refused_with_their_names(build, message):
    with pytest.raises((TypeError, ValueError), match=message):
        build()


@st.composite
def tilings(draw):
    """Max pools whose windows tile the input (stride = window, no padding), which the JAX backend
    differentiates elementwise; sizes need not divide (VALID pooling leaves a remainder)."""
    n = draw(st.sampled_from([1, 2, 2, 3]))
    window = tuple(draw(st.integers(1, 3)) for _ in range(n))
    size = tuple(k * draw(st.integers(1, 3)) + draw(st.integers(0, k - 1)) for k in window)
    return dict(size=size, window=window, channels=draw(st.integers(1, 3)), batch=draw(st.sampled_from([0, 1, 2, 5])),
                dtype=draw(st.sampled_from(["float32", "float64", "bfloat16", "float16"])))


@settings(max_examples=12, deadline=None)
@given(tilings())
def test_tiling_max_pool_cotangent_is_xla_select_and_scatter_bit_for_bit(c):
    """The JAX backend's elementwise select-and-scatter (windows that tile the input) gives exactly
    ``jax.vjp`` of ``lax.reduce_window``'s numbers: ties go to the first maximum, NaN is passed
    over, -inf and inf windows, the rows past the last whole window get zeros; batched and not."""
    n, batched = len(c["size"]), c["batch"] > 0
    shape = ((c["batch"],) if batched else ()) + c["size"] + (c["channels"],)
    t = pl.Array(*shape[batched:], dtype=c["dtype"])
    term = pl.para(lambda x: pl.max_pool(x, c["window"]), dom=[t if batched else t.unbatched])
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 2, shape).astype(np.float32)  # small integers: many ties
    for value in (np.nan, -np.inf, np.inf):
        x.flat[rng.integers(0, x.size, max(1, x.size // 10))] = value
    x = jnp.asarray(x, c["dtype"])

    def ref(x):
        xb = x if batched else x[None]
        y = lax.reduce_window(xb, jnp.asarray(-jnp.inf, x.dtype), lax.max, (1, *c["window"], 1), (1, *c["window"], 1),
                              ((0, 0),) * (n + 2))
        return y if batched else y[0]
    y, vjp = jax.vjp(ref, x)
    dy = jnp.asarray(rng.standard_normal(y.shape), c["dtype"])
    (want,) = vjp(dy)
    got = get("jax").compile(pl.R(term))({}, x, dy)[1]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(want, np.float64))


def test_tiling_max_pool_cotangent_compiles_without_scatters():
    """Tiling windows: no select-and-scatter and no scatter in XLA's program (on CPU select-and-scatter
    becomes a reduce-window over iotas and a scatter); overlapping windows keep XLA's own."""
    x = jax.ShapeDtypeStruct((4, 8, 8, 3), jnp.float32)
    for stride, scatters in ((2, 0), (1, 1)):
        term = pl.R(pl.nn.max_pool(2, stride).at(pl.Array[8, 8, 3]))
        out = 8 // stride - (stride == 1)
        dy = jax.ShapeDtypeStruct((4, out, out, 3), jnp.float32)
        text = jax.jit(lambda x, dy, f=get("jax").compile(term): f({}, x, dy)).lower(x, dy).compile().as_text()
        ops = [line.split("=", 1)[1] for line in text.splitlines() if "=" in line]
        assert sum(" scatter(" in o or " select-and-scatter(" in o for o in ops) == scatters, stride
