"""The transformer layers of ``pl.nn`` (layer_norm, rms_norm, embedding, dropout,
multi_head_attention, transformer_block): forward and ``R`` on the NumPy and JAX backends
against the same computation written in plain JAX (``jax.vjp``), in float32 and float64;
causal attention leaks nothing from the future; the embedding's gradient is a scatter-add;
dropout is a function of its key; bad arguments are refused when the layer is built."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl
from examples_loader import load
from paralens.backends import jax as pjax
from paralens.backends import numpy as pnp

TOL = {"float32": 1e-5, "float64": 1e-12}
COMPILE = {"numpy": pnp.compile, "jax": lambda term: jax.jit(pjax.compile(term))}
T, D, HEADS = 5, 8, 2


# --------------------------------------------------------------------------- plain JAX references
# Each takes the paralens parameter dict (the same names) and a batch of examples.

def layer_norm_ref(p, x, pre="layer_norm", eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p[f"{pre}.scale"] + p[f"{pre}.bias"]


def rms_norm_ref(p, x, eps=1e-6):
    return x / jnp.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * p["rms_norm.scale"]


def attention_ref(p, x, heads=HEADS, causal=False, pre="attention"):
    b, t, d = x.shape

    def split(n):  # (B, T, d) -> (B, heads, T, d // heads)
        return (x @ p[f"{pre}.W{n}"] + p[f"{pre}.b{n}"]).reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)
    q, k, v = split("q"), split("k"), split("v")
    scores = q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(d // heads)
    if causal:
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
    out = (jax.nn.softmax(scores, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    return out @ p[f"{pre}.Wo"] + p[f"{pre}.bo"]


def block_ref(p, x, heads=HEADS, causal=False):
    x = x + attention_ref(p, layer_norm_ref(p, x, "layer_norm0"), heads, causal)
    h = jax.nn.gelu(layer_norm_ref(p, x, "layer_norm1") @ p["dense0.W"] + p["dense0.b"], approximate=True)
    return x + h @ p["dense1.W"] + p["dense1.b"]


def embedding_ref(p, ids):
    return p["embedding.table"][ids]


# --------------------------------------------------------------------------- helpers


def random_params(term, rng, dtype):
    return {n: (0.5 * rng.standard_normal(t.shape)).astype(dtype) for n, t in term.param_types.items()}


def assert_close(ours, ref, dtype, errors=None, what=""):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.dtype == np.dtype(dtype) and ours.shape == ref.shape, (what, ours.dtype, ours.shape, ref.shape)
    np.testing.assert_allclose(ours, ref, rtol=TOL[dtype], atol=TOL[dtype], err_msg=what)
    if errors is not None:
        errors.append(float(np.max(np.abs(ours - ref) / (TOL[dtype] + TOL[dtype] * np.abs(ref)))))


def check_against_jax(term, ref, params, x, dtype, backend, *, x_is_data=True):
    """Forward and R of ``term`` on ``backend`` equal ``ref`` and its ``jax.vjp`` (in params and x)."""
    rng = np.random.default_rng(1)
    y = COMPILE[backend](term)(params, x)
    ref_y, vjp = jax.vjp(ref, params, x) if x_is_data else jax.vjp(lambda p: ref(p, x), params)
    assert_close(y, ref_y, dtype, what="forward")
    dy = rng.standard_normal(np.shape(y)).astype(dtype)
    dparams, dx = COMPILE[backend](pl.R(term))(params, x, dy)
    ref_d = vjp(jnp.asarray(dy))
    assert sorted(dparams) == sorted(params)
    for name in params:
        assert_close(dparams[name], ref_d[0][name], dtype, what=f"d{name}")
    if x_is_data:
        assert_close(dx, ref_d[1], dtype, what="dx")
    else:  # integer inputs have no cotangent: R gives zeros
        assert not np.any(np.asarray(dx))


CASES = {
    "layer_norm": (lambda dt: pl.nn.layer_norm(D, dtype=dt), layer_norm_ref),
    "rms_norm": (lambda dt: pl.nn.rms_norm(D, dtype=dt), rms_norm_ref),
    "attention": (lambda dt: pl.nn.multi_head_attention(D, HEADS, dtype=dt), attention_ref),
    "causal_attention": (lambda dt: pl.nn.multi_head_attention(D, HEADS, causal=True, dtype=dt),
                         lambda p, x: attention_ref(p, x, causal=True)),
    "transformer_block": (lambda dt: pl.nn.transformer_block(D, HEADS, dtype=dt), block_ref),
    "causal_transformer_block": (lambda dt: pl.nn.transformer_block(D, HEADS, mlp_ratio=4, causal=True, dtype=dt),
                                 lambda p, x: block_ref(p, x, causal=True)),
}


# --------------------------------------------------------------------------- forward and R against JAX


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_layer_and_its_R_match_plain_jax(name, dtype, batch, backend):
    make, ref = CASES[name]
    term = make(dtype).at(pl.Array(T, D, dtype=dtype))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, T, D)).astype(dtype)
    check_against_jax(term, ref, random_params(term, rng, dtype), x, dtype, backend)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_norms_act_on_the_last_axis_of_any_rank(dtype, backend):
    rng = np.random.default_rng(0)
    for shape in [(D,), (2, 3, D)]:
        for make, ref in (CASES["layer_norm"], CASES["rms_norm"]):
            term = make(dtype).at(pl.Array(*shape, dtype=dtype))
            x = rng.standard_normal((3,) + shape).astype(dtype)
            check_against_jax(term, ref, random_params(term, rng, dtype), x, dtype, backend)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_embedding_and_its_R_match_plain_jax(dtype, batch, backend):
    term = pl.nn.embedding(11, D, dtype=dtype).at(pl.Array(T, dtype="int32"))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (batch, T)).astype(np.int32)
    check_against_jax(term, embedding_ref, random_params(term, rng, dtype), ids, dtype, backend, x_is_data=False)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_embedding_gradient_is_a_scatter_add(backend):
    term = pl.nn.embedding(6, 3, dtype="float64").at(pl.Array(4, dtype="int32"))
    ids = np.array([[1, 1, 4, 1], [4, 0, 0, 1]], np.int32)  # 1 thrice, 4 and 0 twice; 2, 3, 5 never
    dy = np.random.default_rng(0).standard_normal((2, 4, 3))
    dparams, _ = COMPILE[backend](pl.R(term))(term.init(0), ids, dy)
    dtable = dparams["embedding.table"]
    expected = np.zeros((6, 3))
    np.add.at(expected, ids, dy)
    np.testing.assert_allclose(np.asarray(dtable), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(dtable)[1], dy[0, 0] + dy[0, 1] + dy[0, 3] + dy[1, 3], rtol=1e-12)
    assert not np.any(np.asarray(dtable)[[2, 3, 5]])


def test_embedding_looks_up_rows_in_a_model():
    model = (pl.nn.embedding(10, D).at(pl.Array(T, dtype="int32")) >> pl.nn.transformer_block(D, HEADS)
             >> pl.nn.layer_norm(D))
    assert model.cod == pl.Ty(pl.Array[T, D])
    params = model.init(0)
    ids = np.array([[3, 1, 4, 1, 5]], np.int32)
    y = pnp.compile(model)(params, ids)
    np.testing.assert_allclose(y, np.asarray(COMPILE["jax"](model)(params, ids)), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- causal attention


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("layer", ["attention", "block"])
def test_causal_attention_leaks_nothing_from_the_future(layer, backend):
    make = (pl.nn.multi_head_attention if layer == "attention" else pl.nn.transformer_block)
    term = make(D, HEADS, causal=True).at(pl.Array[T, D])
    rng = np.random.default_rng(0)
    params = random_params(term, rng, "float32")
    x = rng.standard_normal((2, T, D)).astype(np.float32)
    fwd, back = COMPILE[backend](term), COMPILE[backend](pl.R(term))
    y = np.asarray(fwd(params, x))
    for t in range(T):
        changed = x.copy()
        changed[:, t + 1:] = rng.standard_normal(changed[:, t + 1:].shape)
        np.testing.assert_array_equal(np.asarray(fwd(params, changed))[:, :t + 1], y[:, :t + 1])
        dy = np.zeros_like(y)
        dy[:, t] = rng.standard_normal((2, D))
        _, dx = back(params, x, dy)
        assert np.all(np.asarray(dx)[:, t + 1:] == 0.0), f"output {t} has a gradient from the future"
        assert np.any(np.asarray(dx)[:, :t + 1] != 0.0)


def test_attention_without_the_mask_does_see_the_future():
    term = pl.nn.multi_head_attention(D, HEADS).at(pl.Array[T, D])
    rng = np.random.default_rng(0)
    params = random_params(term, rng, "float32")
    x = rng.standard_normal((1, T, D)).astype(np.float32)
    changed = x.copy()
    changed[:, -1] += 1.0
    assert not np.allclose(pnp.compile(term)(params, x)[:, 0], pnp.compile(term)(params, changed)[:, 0])


# --------------------------------------------------------------------------- dropout

KEY = np.array([0, 42], np.uint32)


def dropout_ref(x, key, rate):
    """Dropout in plain JAX, drawing as the JAX backend does: split the key, a uniform per entry."""
    new, draw = jax.random.split(key)
    u = jax.random.uniform(draw, x.shape, x.dtype)
    return jnp.where(u > rate, x / (1 - rate), 0.0), new


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_and_its_R_match_plain_jax(dtype, batch):
    rate = 0.3
    term = pl.nn.dropout(rate).at([pl.Array(T, D, dtype=dtype), pl.prims.KEY])
    x = np.random.default_rng(0).standard_normal((batch, T, D)).astype(dtype)
    (y, key) = COMPILE["jax"](term)({}, (x, KEY))
    (ref_y, ref_key), vjp = jax.vjp(lambda x: dropout_ref(x, KEY, rate), x)
    assert_close(y, ref_y, dtype, what="forward")
    np.testing.assert_array_equal(key, ref_key)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    _, (dx, dkey) = COMPILE["jax"](pl.R(term))({}, (x, KEY), (dy, np.zeros(2, np.uint32)))
    (ref_dx,) = vjp((jnp.asarray(dy), np.zeros(2, jax.dtypes.float0)))
    assert_close(dx, ref_dx, dtype, what="dx")
    assert not np.any(np.asarray(dkey))


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_dropout_is_a_function_of_its_key(backend):
    rate = 0.25
    term = pl.nn.dropout(rate).at([pl.Array[40, 50], pl.prims.KEY])
    fn = COMPILE[backend](term)
    x = np.random.default_rng(0).standard_normal((2, 40, 50)).astype(np.float32) + 5.0  # no zeros of its own
    y1, k1 = map(np.asarray, fn({}, (x, KEY)))
    y2, k2 = map(np.asarray, fn({}, (x, KEY)))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(k1, k2)
    assert not np.array_equal(k1, KEY)
    y3, _ = map(np.asarray, fn({}, (x, k1)))  # the next key draws another mask
    assert not np.array_equal(y1 == 0, y3 == 0)
    kept = y1 != 0
    assert abs(1 - kept.mean() - rate) < 0.02
    np.testing.assert_allclose(y1[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert not np.array_equal(kept[0], kept[1])  # each example its own mask
    # R passes the cotangent through the same mask
    dy = np.ones_like(x)
    _, (dx, _) = COMPILE[backend](pl.R(term))({}, (x, KEY), (dy, np.zeros(2, np.uint32)))
    np.testing.assert_allclose(np.asarray(dx), kept / (1 - rate), rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_dropout_at_rate_zero_is_the_identity(backend):
    term = pl.nn.dropout(0.0).at([pl.Array[3, 4], pl.prims.KEY])
    assert term.n_boxes == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y, key = COMPILE[backend](term)({}, (x, KEY))
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(key, KEY)


def test_dropout_threads_its_key_through_a_model():
    drop = pl.nn.dropout(0.5)

    @pl.para(dom=[pl.Array[D], pl.prims.KEY])  # a key is an input wire, not a parameter: typed by dom
    def model(x, key, w: pl.Param[D, D]):
        h, key = drop(pl.tanh(x @ w), key)
        h, key = drop(h, key)
        return pl.sum(h * h), key

    fn = COMPILE["jax"](pl.R(model))
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((D, D)).astype(np.float32), rng.standard_normal((4, D)).astype(np.float32)
    dy = (np.ones(4, np.float32), np.zeros(2, np.uint32))
    g1, _ = fn(w, (x, KEY), dy)
    g2, _ = fn(w, (x, KEY), dy)
    g3, _ = fn(w, (x, KEY + 1), dy)
    np.testing.assert_array_equal(g1, g2)
    assert not np.array_equal(g1, g3)

    def ref(w, x, key):  # the same model in plain JAX
        h, key = dropout_ref(jnp.tanh(x @ w), key, 0.5)
        h, key = dropout_ref(h, key, 0.5)
        return (h * h).sum(-1)
    np.testing.assert_allclose(g1, jax.grad(lambda w: ref(w, x, KEY).sum())(w), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("build, message", [
    (lambda: pl.nn.multi_head_attention(8, 3), "heads=3 does not divide d=8"),
    (lambda: pl.nn.transformer_block(10, 4), "heads=4 does not divide d=10"),
    (lambda: pl.nn.dropout(1.0), r"rate=1.0 is out of range: expected a number in \[0, 1\)"),
    (lambda: pl.nn.dropout(-0.1), "rate=-0.1 is out of range"),
    (lambda: pl.nn.embedding(0, 4), "vocab must be a positive int, got 0"),
    (lambda: pl.nn.embedding(-3, 4), "vocab must be a positive int, got -3"),
    (lambda: pl.nn.embedding(5, 4, dtype="int32"), "not a floating-point dtype"),
    (lambda: pl.nn.layer_norm(4, eps=0.0), "eps=0.0 is out of range"),
    (lambda: pl.nn.transformer_block(8, 2, mlp_ratio=0), "mlp_ratio must be a positive int"),
])
def test_bad_arguments_are_refused_when_the_layer_is_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build, ty, message", [
    (lambda: pl.nn.embedding(5, 4), [pl.Array[3]], "integer token ids"),
    (lambda: pl.nn.layer_norm(4), [pl.Array[3, 5]], "last axis has 4 features"),
    (lambda: pl.nn.layer_norm(4, dtype="float64"), [pl.Array[4]], "expects float64 inputs"),
    (lambda: pl.nn.multi_head_attention(8, 2), [pl.Array[8]], r"\(T, 8\) sequences"),
    (lambda: pl.nn.dropout(0.1), [pl.Array[4]], "dropout takes \\(x, key\\)"),
])
def test_inputs_of_the_wrong_type_are_refused_when_the_layer_is_placed(build, ty, message):
    with pytest.raises(TypeError, match=message):
        build().at(ty)


# --------------------------------------------------------------------------- the example


@pytest.mark.slow
def test_digits_transformer_reaches_95_percent():
    start = time.perf_counter()
    learner, state, losses, acc = load("digits_transformer").main(progress=False)
    elapsed = time.perf_counter() - start
    print(f"digits_transformer: test accuracy {acc:.4f} in {elapsed:.1f} s")
    assert acc >= 0.95
    assert losses[-1] < losses[0]
