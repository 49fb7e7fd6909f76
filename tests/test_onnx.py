"""The onnx backend: exported models pass ONNX's checks, and onnxruntime runs them to the numbers of
the JAX backend (training steps for 100 steps, every optimizer, R(f) and lenses against jax.vjp);
what it cannot translate is refused by name; exported files are verified when loaded."""

import json
import os

import jax
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from test_optim import PAIRS

import paralens as pl
from examples_loader import load as load_example
from helpers import A, endo_terms, f64, hom_terms, sample
from paralens import backends
from paralens.backends import datasets
from paralens.backends import jax as pjax
from paralens.backends.artifacts import CorruptArtifactError
from paralens.backends.onnx import OPSET, UnsupportedPrimitive, load

ort = pytest.importorskip("onnxruntime")
ONNX = backends.get("onnx")
CE = pl.losses.softmax_cross_entropy_with_integer_labels()


def _checked(model):
    """The model passes the full checker and strict shape inference, in the stated opset."""
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    return model


def _models():
    """(name, model, loss, x, y): the digits MLP, digits CNN and char-LM transformer, small (the
    examples' own builders)."""
    mlp, cnn, lm = load_example("digits_mlp"), load_example("digits_cnn"), load_example("char_lm")
    x, y, _, _ = datasets.digits()
    xi = x.reshape(-1, 8, 8, 1)
    ids = lm.encode(lm.corpus()[:4000])
    xs, ys = lm.windows(ids, 16, 12)
    return [("mlp", mlp.build((32,)), CE, x, y), ("cnn", cnn.build(), CE, xi, y),
            ("char_lm", lm.build(16, 16, 2, 1), lm.next_char_loss(16), xs, ys)]


def _close_params(got, want, rtol):
    """Each parameter to ``rtol`` relative, measured against the largest parameter of the model:
    a leaf whose gradient is zero in exact arithmetic (attention's key bias: softmax forgets a
    constant added to every score) holds summation noise only, and no relative bound fits it."""
    scale = max(float(np.max(np.abs(np.asarray(v)))) for v in want.values())
    for k in want:
        np.testing.assert_allclose(got[k], np.asarray(want[k]), rtol=rtol, atol=rtol * scale, err_msg=k)


def _train_both(learner, x, y, steps, batch=16):
    onnx_step, jax_step = learner.compile("onnx"), learner.compile("jax", donate=False)
    a, b = learner.init(0), learner.init(0, backend="jax")
    for i in range(steps):
        at = (i * batch) % (len(x) - batch)
        xb, yb = x[at:at + batch], y[at:at + batch]
        a, la = onnx_step(a, xb, yb)
        b, lb = jax_step(b, xb, yb)
        np.testing.assert_allclose(la, np.asarray(lb), rtol=1e-5, atol=1e-5 if la.dtype == np.float32 else 1e-12,
                                   err_msg=f"loss at step {i}")
    return a, b


RUNS = [("mlp", "adam"), ("cnn", "adam"), ("char_lm", "adam"), ("mlp", "sgd")]


@pytest.mark.slow
@pytest.mark.parametrize("model_name, optimizer", RUNS, ids=[f"{m}-{o}" for m, o in RUNS])
def test_100_steps_in_onnxruntime_equal_jax_float32(model_name, optimizer):
    """Adam with eps=1e-3 (its default 1e-8 divides summation-order noise in a near-zero gradient by
    its square root, which tests that noise rather than the export), and SGD beside it."""
    name, model, loss, x, y = next(m for m in _models() if m[0] == model_name)
    opt = pl.optim.adam(3e-3, eps=1e-3) if optimizer == "adam" else pl.optim.sgd(0.05)
    learner = pl.Learner(model, loss=loss, optimizer=opt)
    _checked(learner.compile("onnx").model)
    a, b = _train_both(learner, x, y, 100)
    _close_params(a["params"], b["params"], 1e-5)


@pytest.mark.slow
def test_float64_steps_equal_jax_to_1e_12():
    """Double precision where onnxruntime's CPU kernels take it: the MLP and the transformer (its
    Conv and MaxPool kernels are float32 only, so the CNN is not run in float64)."""
    lm = load_example("char_lm")
    x, y, _, _ = datasets.digits()
    ids = lm.encode(lm.corpus()[:2000])
    xs, ys = lm.windows(ids, 8, 8)
    for model, loss, xd, yd in [(pl.nn.mlp([64, 16, 10], activation=pl.nn.relu, dtype="float64"), CE,
                                 x.astype(np.float64), y),
                                (pl.astype(lm.build(8, 8, 2, 1), "float64"), pl.astype(lm.next_char_loss(8), "float64"),
                                 xs, ys)]:
        learner = pl.Learner(model, loss=loss, optimizer=pl.optim.adam(3e-3, eps=1e-3))
        a, b = _train_both(learner, xd, yd, 10, batch=8)
        assert next(iter(a["params"].values())).dtype == np.float64
        _close_params(a["params"], b["params"], 1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # radam_nesterov's NaN, in both backends
@pytest.mark.parametrize("name", list(PAIRS))
def test_every_optimizer_runs_in_onnxruntime_as_in_numpy(name):
    """Five float64 steps of a small MLP against the NumPy backend, the reference semantics (JAX
    compiling 50 steps would cost a minute; the three models above are held to JAX). The bound is
    1e-6, not 1e-12: rmsprop centered with eps outside the square root divides by the root of a
    difference that nearly cancels, and amplifies the last bit by some 1e9 (most optimizers agree
    to 1e-14)."""
    model = pl.nn.mlp([6, 8, 3], activation=pl.nn.tanh, dtype="float64")
    opt = PAIRS[name][0]
    if name == "adamw_masked":  # its mask names optax's pytree paths: here, decay the weights, not the biases
        opt = pl.optim.adamw(0.01, weight_decay=0.3, mask=lambda t: {n: n.endswith(".W") for n in t})
    learner = pl.Learner(model, loss=CE, optimizer=opt)
    onnx_step, ref_step = learner.compile("onnx"), learner.compile("numpy")
    a, b = learner.init(0), learner.init(0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.standard_normal((16, 6)), rng.integers(0, 3, 16).astype(np.int32)
        a, la = onnx_step(a, x, y)
        b, lb = ref_step(b, x, y)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, np.asarray(v), rtol=1e-6, atol=1e-8),
                           a["opt"], b["opt"])
    _close_params(a["params"], b["params"], 1e-6)


def _onnx_vs_vjp(term, p, x, dy):
    out = ONNX.compile(pl.R(term))(p, x, dy)
    _, vjp = jax.vjp(pjax.compile(term), p, x)
    return out, vjp(dy)


@settings(max_examples=6)  # each example builds a model and an onnxruntime session
@given(endo_terms(A, 3))
def test_r_of_random_terms_in_onnx_equals_jax_vjp(f):
    rng = np.random.default_rng(0)
    p, x, dy = f64(f.init(1)), sample(A, rng), sample(A, rng)
    _checked(ONNX.to_onnx(pl.R(f)))
    (dp, dx), (dp_ref, dx_ref) = _onnx_vs_vjp(f, p, x, dy)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    for k in dp_ref:
        np.testing.assert_allclose(dp[k], dp_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


@settings(max_examples=6)
@given(hom_terms(A, pl.Array(2, dtype="float64")))
def test_lenses_of_random_terms_in_onnx_equal_jax_vjp(f):
    rng = np.random.default_rng(1)
    lens = pl.lens(f)
    p, x, dy = f64(f.init(2)), sample(A, rng), sample(pl.Array(2, dtype="float64"), rng)
    y, dp, dx = ONNX.compile(lens)(p, x, dy)
    y_ref, vjp = jax.vjp(pjax.compile(f), p, x)
    dp_ref, dx_ref = vjp(dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    for k in dp_ref:
        np.testing.assert_allclose(dp[k], dp_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_r_of_the_cnn_layers_equals_jax_vjp():
    """Convolution (strided, padded, grouped, dilated), max and average pooling: R in ONNX against
    jax.vjp (float32: onnxruntime's Conv and MaxPool are float32 kernels)."""
    layers = [pl.nn.conv2d(2, 4, 3, padding="same").at(pl.Array[6, 6, 2]),
              pl.nn.conv2d(4, 4, 3, stride=2, groups=2).at(pl.Array[7, 7, 4]),
              pl.nn.conv2d(2, 3, 2, dilation=2).at(pl.Array[6, 6, 2]),
              pl.nn.max_pool().at(pl.Array[6, 6, 3]),
              pl.nn.max_pool(3, 2, padding=1).at(pl.Array[7, 7, 2]),
              pl.nn.avg_pool(3, 2).at(pl.Array[7, 7, 2]),
              pl.nn.avg_pool(2, 1, padding=1).at(pl.Array[5, 5, 2])]
    rng = np.random.default_rng(0)
    for f in layers:
        p = {k: v.astype(np.float32) for k, v in f.init(0).items()}
        x = rng.standard_normal((3, *f.dom[0].shape)).astype(np.float32)
        dy = rng.standard_normal((3, *f.cod[0].shape)).astype(np.float32)
        _checked(ONNX.to_onnx(pl.R(f)))
        (dp, dx), (dp_ref, dx_ref) = _onnx_vs_vjp(f, p, x, dy)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5, err_msg=f.name)
        for k in dp_ref:
            np.testing.assert_allclose(dp[k], dp_ref[k], rtol=1e-5, atol=1e-4, err_msg=k)


def test_names_follow_the_calling_convention():
    learner = pl.Learner(pl.nn.dense(3, 2), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    model = learner.compile("onnx").model
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    assert ins[:2] == ["params/dense.W", "params/dense.b"] and ins[-2:] == ["x", "y"] and "step" in ins
    assert "opt/0/mu/dense.W" in ins and "hyper/learning_rate" in ins
    assert outs[:2] == ["new/params/dense.W", "new/params/dense.b"] and outs[-1] == "loss" and "new/step" in outs
    x_dims = [d.dim_param or d.dim_value for d in model.graph.input[ins.index("x")].type.tensor_type.shape.dim]
    assert x_dims == ["batch", 3]
    r = ONNX.to_onnx(pl.R(pl.nn.dense(3, 2)))
    assert [o.name for o in r.graph.output] == ["dparams/dense.W", "dparams/dense.b", "dx"]


def test_a_hostile_name_is_data_in_the_protobuf():
    name = "'); import os; os_system('x') #\n"

    def layer(x, w: pl.Param[2, 2]):
        return x @ w
    f = pl.para(layer, dom=[pl.Array[2]], name=name)
    model = ONNX.to_onnx(f)
    assert [i.name for i in model.graph.input] == [f"params/{name}.w", "x"]
    out = ONNX.compile(f)({f"{name}.w": 2 * np.eye(2, dtype=np.float32)}, np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(out, [[2.0, 2.0]])


def test_every_primitive_is_translated_or_refused_by_name():
    from paralens.backends.onnx import _REFUSED, RULES

    assert set(pl.PRIMS) == set(RULES) | set(_REFUSED) and not set(RULES) & set(_REFUSED)


def test_refused_terms_name_their_primitive():
    drop = pl.nn.dropout(0.5).at([pl.Array[4], pl.prims.KEY])
    with pytest.raises(UnsupportedPrimitive, match="'uniform'.*key-driven randomness") as e:
        ONNX.to_onnx(drop)
    assert e.value.primitive == "uniform"
    learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1), gradient="forward")
    with pytest.raises(UnsupportedPrimitive, match="'normal'"):
        learner.compile("onnx")
    import optax
    opaque = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.from_optax(optax.sgd(0.1)))
    with pytest.raises(NotImplementedError, match="'foreign'"):
        opaque.compile("onnx")


def test_a_node_onnxruntime_has_no_kernel_for_is_refused_with_a_clear_error():
    f = pl.astype(pl.nn.conv2d(1, 2, 3).at(pl.Array[4, 4, 1]), "float64")
    _checked(ONNX.to_onnx(f))  # valid ONNX: only onnxruntime's CPU lacks a float64 Conv
    with pytest.raises(NotImplementedError, match="float64 convolutions"):
        ONNX.compile(f)(f.init(0), np.ones((1, 4, 4, 1)))


def test_a_step_checks_its_labels_as_the_other_backends_do():
    learner = pl.Learner(pl.nn.dense(2, 3), loss=CE, optimizer=pl.optim.sgd(0.1))
    step, state = learner.compile("onnx"), learner.init(0)
    with pytest.raises(ValueError, match="labels"):
        step(state, np.ones((2, 2), np.float32), np.array([0, 3], np.int32))
    with pytest.raises(ValueError, match="leading sizes differ"):
        step(state, np.ones((2, 2), np.float32), np.array([0], np.int32))
    with pytest.raises(ValueError, match="fractional"):   # not truncated to 0 and 1 in silence
        step(state, np.ones((2, 2), np.float32), np.array([0.5, 1.7]))
    with pytest.raises(NotImplementedError, match="onnx backend cannot fit"):
        learner.fit(np.ones((2, 2), np.float32), np.array([0, 1], np.int32), backend="onnx")


def test_a_state_that_does_not_fit_is_refused_before_the_model_is_replaced(tmp_path):
    learner = pl.Learner(pl.nn.dense(2, 3), loss=CE, optimizer=pl.optim.sgd(0.1))
    step, path = learner.compile("onnx"), tmp_path / "step.onnx"
    path.write_bytes(b"the user's")
    with pytest.raises((TypeError, KeyError, ValueError)):
        step.export(path, state={"params": {}})
    assert path.read_bytes() == b"the user's" and sorted(os.listdir(tmp_path)) == ["step.onnx"]


def test_export_is_atomic_with_a_checksum_and_a_tampered_file_is_refused(tmp_path):
    learner = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=CE, optimizer=pl.optim.adam(1e-2))
    path = tmp_path / "step.onnx"
    blob = learner.export(path, format="onnx")
    assert path.read_bytes() == blob and os.path.exists(f"{path}.sha256")
    assert sorted(os.listdir(tmp_path)) == ["step.onnx", "step.onnx.sha256"]  # no temporary file left
    model = _checked(load(path))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    state = learner.init(0)
    x, y = np.ones((2, 4), np.float32), np.array([0, 2], np.int32)
    names = [i.name for i in session.get_inputs()]
    step = learner.compile("onnx")
    feed = dict(zip(names, [np.asarray(v) for v in pl.terms.flatten((state, x, y), tuple(step.term.in_sig))]))
    np.testing.assert_allclose(session.run(["loss"], feed)[0], step(state, x, y)[1])
    data = bytearray(blob)
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="does not match its checksum"):
        load(path)
    os.remove(f"{path}.sha256")
    with pytest.raises(CorruptArtifactError, match="checksum file"):
        load(path)
    jax.export.deserialize(learner.export(None))  # the default format is still jax.export's


@pytest.mark.slow
def test_the_cli_exports_onnx_and_touches_no_onnx_file_it_did_not_write(tmp_path, capsys):
    from paralens.backends import cli

    out = tmp_path / "run"
    out.mkdir()
    (out / "step.onnx").write_bytes(b"the user's own model")
    tiny = ["train", "--quiet", "--hidden", "8", "--epochs", "1", "--out", str(out)]
    assert cli.main(tiny) == 0  # a JAX export leaves the user's step.onnx alone
    assert (out / "step.onnx").read_bytes() == b"the user's own model"
    assert cli.main([*tiny, "--export", "jax", "onnx", "--resume"]) == 2
    assert "paralens did not write (step.onnx)" in capsys.readouterr().err
    (out / "step.onnx").unlink()
    assert cli.main([*tiny, "--export", "jax", "onnx", "--force"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"step.onnx", "step.onnx.sha256", "step.jaxexport"} <= set(summary["sha256"])
    model = _checked(load(out / "step.onnx"))
    assert [o.name for o in model.graph.output][-1] == "loss"
    # resumed with one format, then the other: the files of the format left out stay paralens's own
    assert cli.main([*tiny, "--export", "onnx", "--resume"]) == 0
    assert cli.main([*tiny, "--export", "jax", "--resume"]) == 0, capsys.readouterr().err


def _random_like(types, rng, batch=3):
    if isinstance(types, dict):
        return {k: _random_like(v, rng, batch) for k, v in types.items()}
    if isinstance(types, tuple):
        return tuple(_random_like(t, rng, batch) for t in types)
    return rng.standard_normal(((batch,) if types.batched else ()) + types.shape).astype(types.dtype)


def test_second_reverse_derivatives_of_windows_and_strided_convolutions_equal_numpy():
    """R(R(f)) reaches select_and_gather_add (max pooling's tangent) and convolutions of the
    cotangents with dilated inputs; against the NumPy backend, the reference semantics."""
    rng = np.random.default_rng(0)
    for f in [pl.nn.max_pool(3, 2, padding=1).at(pl.Array[7, 7, 2]),
              pl.nn.conv2d(2, 3, 3, stride=2, padding="same").at(pl.Array[7, 7, 2])]:
        term = pl.R(pl.R(f))
        params = {k: rng.standard_normal(t.shape).astype(np.float32) for k, t in term.param_types.items()}
        args = _random_like(term.input_types(), rng)
        want = backends.get("numpy").compile(term)(params, *args)
        got = ONNX.compile(term)(params, *args)
        _checked(ONNX.to_onnx(term))
        jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4), got, want)
