"""Validated boundaries: every argument of the DSL is checked when the term is built, and the
error names the argument, the value and what was expected (issue 11's findings 24-28, 32-33)."""

import math
import re

import jax
import numpy as np
import pytest

import paralens as pl
from helpers import f64
from paralens.backends import numpy as pnp

O = pl.optim
F = "float64"


def traced(fn, *types):
    """Trace ``fn`` on wires of ``types``: where the wire functions check their arguments."""
    return pl.para(fn, dom=list(types), name="f")


# --------------------------------------------------------------------------- finding 24: axes


REDUCTIONS = [
    pytest.param(pl.sum, id="sum"), pytest.param(pl.mean, id="mean"), pytest.param(pl.max, id="max"),
    pytest.param(pl.logsumexp, id="logsumexp"), pytest.param(pl.softmax, id="softmax"),
]


@pytest.mark.finding(24)
@pytest.mark.parametrize("fn", REDUCTIONS)
@pytest.mark.parametrize("axis", [7, 2, -3])
def test_axis_out_of_range_is_refused(fn, axis):
    with pytest.raises(ValueError, match=re.escape(f"axis={axis} is out of range: expected an int in [-2, 2)")):
        traced(lambda x: fn(x, axis=axis), pl.Array[2, 3])


@pytest.mark.finding(24)
@pytest.mark.parametrize("fn", REDUCTIONS)
def test_negative_axis_in_range_still_works(fn):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3))
    by_negative = pnp.compile(traced(lambda x: fn(x, axis=-1), pl.Array(2, 3, dtype=F)))({}, x)
    by_positive = pnp.compile(traced(lambda x: fn(x, axis=1), pl.Array(2, 3, dtype=F)))({}, x)
    np.testing.assert_allclose(by_negative, by_positive)


@pytest.mark.finding(24)
def test_axis_tuples_and_wire_methods_are_checked():
    with pytest.raises(ValueError, match=r"sum: axis=7 is out of range"):
        traced(lambda x: x.sum(axis=(0, 7)), pl.Array[2, 3])
    with pytest.raises(ValueError, match=r"mean: axis=\(0, -2\) names an axis .* twice"):
        traced(lambda x: pl.mean(x, axis=(0, -2)), pl.Array[2, 3])
    with pytest.raises(TypeError, match=r"max: axis must be an int, got 1.0"):
        traced(lambda x: x.max(axis=1.0), pl.Array[2, 3])
    with pytest.raises(ValueError, match=r"softmax: axis=-1 is out of range: Array\[\] has no axes"):
        traced(lambda x: pl.softmax(x), pl.Array[()])
    assert traced(lambda x: pl.sum(x, axis=np.int64(-1)), pl.Array[2, 3]).cod == pl.Ty(pl.Array[2])


@pytest.mark.finding(24)
def test_layer_axis_is_checked():
    with pytest.raises(ValueError, match=r"softmax: axis=5 is out of range"):
        pl.nn.softmax(axis=5).at(pl.Array[3])
    with pytest.raises(TypeError, match=r"softmax: axis must be an int, got 'last'"):
        pl.nn.softmax(axis="last")


@pytest.mark.finding(24)
def test_transpose_broadcast_and_reshape_arguments_are_checked():
    with pytest.raises(ValueError, match=re.escape("transpose: perm entry=2 is out of range: expected an int in [-2, 2)"
                                                   " for Array[2, 3]")):
        traced(lambda x: pl.transpose(x, (2, 0)), pl.Array[2, 3])
    with pytest.raises(TypeError, match="perm=.*is not a permutation"):
        traced(lambda x: pl.transpose(x, (0, 0)), pl.Array[2, 3])
    assert traced(lambda x: pl.transpose(x, (-1, 0)), pl.Array[2, 3]).cod == pl.Ty(pl.Array[3, 2])
    with pytest.raises(ValueError, match=re.escape("broadcast_to: dims entry=3 is out of range: expected an int in "
                                                   "[-3, 3) for shape=(2, 3, 4)")):
        traced(lambda x: pl.broadcast_to(x, (2, 3, 4), (3,)), pl.Array[3])
    assert traced(lambda x: pl.broadcast_to(x, (2, 3, 4), (-2,)), pl.Array[3]).cod == pl.Ty(pl.Array[2, 3, 4])
    with pytest.raises(ValueError, match=r"broadcast_to: shape=\(3,\) has fewer axes than Array\[2, 3\]"):
        traced(lambda x: pl.broadcast_to(x, (3,)), pl.Array[2, 3])
    with pytest.raises(ValueError, match=re.escape("reshape: size 0 of shape=(0, 6) must be a positive int, got 0")):
        traced(lambda x: pl.reshape(x, (0, 6)), pl.Array[2, 3])
    with pytest.raises(TypeError, match=re.escape("reshape: size 1 of shape=(6, True) must be a positive int")):
        traced(lambda x: pl.reshape(x, (6, True)), pl.Array[2, 3])


# --------------------------------------------------------------------------- finding 25: "same" padding


def lax_conv(x, w, b, stride, padding):
    """The reference: ``jax.lax``'s convolution, NHWC images and HWIO kernels."""
    return jax.lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


@pytest.mark.finding(25)
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
@pytest.mark.parametrize("kernel", [2, 3, 4, (2, 3)])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_matches_jax(size, kernel, stride):
    layer = pl.nn.conv2d(2, 3, kernel, stride=stride, padding="same").at(pl.Array(*size, 2, dtype=F))
    expected = tuple(-(-n // stride) for n in size)
    assert layer.cod == pl.Ty(pl.Array(*expected, 3, dtype=F))
    rng = np.random.default_rng(0)
    p = {n: rng.standard_normal(t.shape) for n, t in layer.param_types.items()}
    x = rng.standard_normal((3, *size, 2))
    np.testing.assert_allclose(pnp.compile(layer)(p, x),
                               lax_conv(x, p["conv.w"], p["conv.b"], (stride, stride), "SAME"), rtol=1e-10, atol=1e-10)


@pytest.mark.finding(25)
def test_same_padding_of_an_even_kernel_keeps_the_size():
    assert pl.nn.conv2d(1, 2, 4, padding="same").at(pl.Array[8, 8, 1]).cod == pl.Ty(pl.Array[8, 8, 2])


@pytest.mark.finding(25)
@pytest.mark.parametrize("padding", ["same", ((1, 2), (0, 1))])
def test_asymmetric_padding_reverse_derivative_matches_vjp(padding):
    layer = pl.nn.conv2d(2, 3, (4, 2), padding=padding).at(pl.Array(5, 6, 2, dtype=F))
    rng = np.random.default_rng(1)
    p = {n: rng.standard_normal(t.shape) for n, t in layer.param_types.items()}
    x = rng.standard_normal((2, 5, 6, 2))
    y = pnp.compile(layer)(p, x)
    dy = rng.standard_normal(y.shape)
    dp, dx = pnp.compile(pl.R(layer))(p, x, dy)
    pads = "SAME" if padding == "same" else padding
    _, vjp = jax.vjp(lambda p, x: lax_conv(x, p["conv.w"], p["conv.b"], (1, 1), pads), p, x)
    rp, rx = vjp(dy)
    np.testing.assert_allclose(dx, rx, rtol=1e-10, atol=1e-10)
    for n in p:
        np.testing.assert_allclose(dp[n], rp[n], rtol=1e-10, atol=1e-10)


@pytest.mark.finding(25)
def test_pointful_conv2d_takes_same_and_per_side_padding():
    def f(x, w: pl.Param(2, 4, 1, 1, dtype=F)):
        return pl.conv2d(x, w, padding="same"), pl.conv2d(x, w, padding=((0, 1), (1, 2)))
    term = pl.para(f, dom=[pl.Array(6, 6, 1, dtype=F)])
    rng = np.random.default_rng(2)
    w, x = rng.standard_normal((2, 4, 1, 1)), rng.standard_normal((2, 6, 6, 1))
    same, sides = pnp.compile(term)({"f.w": w}, x)
    np.testing.assert_allclose(same, lax_conv(x, w, 0.0, (1, 1), "SAME"), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sides, lax_conv(x, w, 0.0, (1, 1), ((0, 1), (1, 2))), rtol=1e-10, atol=1e-10)


def test_odd_kernel_same_padding_builds_the_same_term_as_explicit_padding():
    same = pl.nn.conv2d(1, 2, 3, padding="same").at(pl.Array[8, 8, 1])
    explicit = pl.nn.conv2d(1, 2, 3, padding=1).at(pl.Array[8, 8, 1])
    assert [e.prim.name for e in same.eqns] == [e.prim.name for e in explicit.eqns]
    # an even kernel pads one more row after than before, in the conv box itself: no extra boxes
    even = pl.nn.conv2d(1, 2, 4, padding="same").at(pl.Array[8, 8, 1])
    assert [e.prim.name for e in even.eqns] == [e.prim.name for e in explicit.eqns]
    assert [e.kwargs["padding"] for e in even.eqns if e.prim.name == "conv"] == [((1, 2), (1, 2))]
    assert same.n_boxes == explicit.n_boxes


# --------------------------------------------------------------------------- finding 26: padding, strides, windows


@pytest.mark.finding(26)
@pytest.mark.parametrize("build, text", [
    (lambda: pl.nn.conv2d(1, 2, 3, padding=-1), "conv2d: padding=-1 is negative"),
    (lambda: pl.nn.conv2d(1, 2, 3, padding=(1, -1)), "conv2d: padding=(1, -1) is negative"),
    (lambda: pl.nn.conv2d(1, 2, 3, padding=((0, -1), (0, 0))), "conv2d: padding=((0, -1), (0, 0)) is negative"),
    (lambda: pl.nn.max_pool(padding=-1), "max_pool: padding=-1 is negative"),
    (lambda: pl.nn.avg_pool(padding=(0, -2)), "avg_pool: padding=(0, -2) is negative"),
    (lambda: traced(lambda x: pl.max_pool(x, padding=(-1, 0)), pl.Array[4, 4, 1]), "max_pool: padding=(-1, 0)"),
    (lambda: traced(lambda x, w: pl.conv2d(x, w, padding=-2), pl.Array[4, 4, 1], pl.Param[2, 2, 1, 1]),
     "conv2d: padding=-2 is negative"),
])
def test_negative_padding_is_refused_at_build(build, text):
    with pytest.raises(ValueError, match=re.escape(text)):
        build()


@pytest.mark.finding(26)
def test_unknown_padding_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"conv2d: unknown padding='full'; expected 'valid', 'same'"):
        pl.nn.conv2d(1, 2, 3, padding="full")
    with pytest.raises(ValueError, match=r"max_pool: unknown padding='same'; expected a non-negative int"):
        pl.nn.max_pool(padding="same")
    with pytest.raises(TypeError, match=r"avg_pool: padding must be .*, got \(\(0, 1\), \(0, 1\)\)"):
        pl.nn.avg_pool(padding=((0, 1), (0, 1)))  # pooling pads both sides alike
    with pytest.raises(TypeError, match=r"conv2d: padding must be .*, got 1.5"):
        pl.nn.conv2d(1, 2, 3, padding=1.5)


@pytest.mark.finding(26)
@pytest.mark.parametrize("build, error, text", [
    (lambda: pl.nn.conv2d(1, 2, 0), ValueError, "conv2d: kernel=0: each entry must be a positive int, got 0"),
    (lambda: pl.nn.conv2d(1, 2, (3, -1)), ValueError, "conv2d: kernel=(3, -1): each entry must be a positive int"),
    (lambda: pl.nn.conv2d(1, 2, True), TypeError, "conv2d: kernel must be a positive int or a pair of them, got True"),
    (lambda: pl.nn.conv2d(1, 2, 3, stride=(1, 0)), ValueError, "conv2d: stride=(1, 0): each entry must be a positive"),
    (lambda: pl.nn.conv2d(1, 2, 3, stride=(1, 1, 1)), TypeError, "conv2d: stride must be a positive int or a pair"),
    (lambda: pl.nn.max_pool(window=0), ValueError, "max_pool: window=0: each entry must be a positive int, got 0"),
    (lambda: pl.nn.max_pool(stride=(2, 0)), ValueError, "max_pool: stride=(2, 0)"),
    (lambda: pl.nn.avg_pool(window=(2, 2.0)), TypeError, "avg_pool: window=(2, 2.0): each entry must be a positive"),
    (lambda: traced(lambda x: pl.avg_pool(x, (2, 2), (0, 1)), pl.Array[4, 4, 1]), ValueError, "stride=(0, 1)"),
])
def test_non_positive_strides_windows_and_kernels_are_refused(build, error, text):
    with pytest.raises(error, match=re.escape(text)):
        build()


def test_conv_operands_are_checked():
    with pytest.raises(TypeError, match=r"conv2d: the kernel w must have shape \(kh, kw, channels, outputs\)"):
        traced(lambda x, w: pl.conv2d(x, w), pl.Array[4, 4, 1], pl.Param[2, 2])
    with pytest.raises(TypeError, match=r"max_pool: x must be per-example \(height, width, channels\) images"):
        traced(lambda x: pl.max_pool(x), pl.Array[4, 4])


# --------------------------------------------------------------------------- finding 27: sizes


@pytest.mark.finding(27)
@pytest.mark.parametrize("build, error, text", [
    (lambda: pl.nn.dense(True, 3), TypeError, "dense: n_in must be a positive int, got True (a bool)"),
    (lambda: pl.nn.dense(3, 2.0), TypeError, "dense: n_out must be a positive int, got 2.0 (a float)"),
    (lambda: pl.nn.dense(0, 3), ValueError, "dense: n_in must be a positive int, got 0"),
    (lambda: pl.nn.dense(3, -2), ValueError, "dense: n_out must be a positive int, got -2"),
    (lambda: pl.nn.conv2d(False, 2), TypeError, "conv2d: in_channels must be a positive int, got False"),
    (lambda: pl.nn.conv2d(1, 0), ValueError, "conv2d: out_channels must be a positive int, got 0"),
    (lambda: pl.nn.mlp([4, 0, 3]), ValueError, "mlp: sizes[1] must be a positive int, got 0"),
    (lambda: pl.nn.mlp([4, True]), TypeError, "mlp: sizes[1] must be a positive int, got True"),
    (lambda: pl.nn.mlp(4), TypeError, "mlp: sizes must be a list of positive ints, got 4"),
])
def test_layer_sizes_are_positive_ints(build, error, text):
    with pytest.raises(error, match=re.escape(text)):
        build()


@pytest.mark.finding(27)
@pytest.mark.parametrize("dims, error", [(True, TypeError), ((2, 2.0), TypeError), (0, ValueError),
                                         ((3, -1), ValueError), ("3", TypeError)])
def test_array_sizes_are_positive_ints(dims, error):
    with pytest.raises(error, match="array shape .* must be a positive int"):
        pl.Array[dims]
    with pytest.raises(error, match="must be a positive int"):
        pl.ArrayType(dims if isinstance(dims, tuple) else (dims,))


@pytest.mark.finding(27)
def test_numpy_integer_sizes_are_accepted_as_ints():
    t = pl.Array[np.int64(4), np.int32(3)]
    assert t == pl.Array[4, 3] and all(type(d) is int for d in t.shape)
    assert pl.nn.dense(np.int64(4), np.int64(3)).param_types == pl.nn.dense(4, 3).param_types
    assert pl.Array[()] == pl.ArrayType(())


# --------------------------------------------------------------------------- finding 28: copy


@pytest.mark.finding(28)
def test_copy_refuses_a_negative_count_and_zero_copies_discard():
    with pytest.raises(ValueError, match=r"n >= 0 copies, got n=-1"):
        pl.copy(pl.Array[3], n=-1)
    with pytest.raises(ValueError, match=r"got n=1.5"):
        pl.copy(pl.Array[3], n=1.5)
    with pytest.raises(ValueError, match=r"got n=True"):
        pl.copy(pl.Array[3], n=True)
    none = pl.copy(pl.Array[3], n=0)
    assert none.dom == pl.discard(pl.Array[3]).dom and none.cod == pl.Ty()
    assert pl.copy(pl.Array[3], n=3).cod == pl.Ty(pl.Array[3], pl.Array[3], pl.Array[3])


# --------------------------------------------------------------------------- findings 32-33: optimizers


BAD_LEARNING_RATES = [(-0.1, ValueError, "out of range: expected a number >= 0"),
                      (math.nan, ValueError, "not finite"), (math.inf, ValueError, "not finite"),
                      ("0.1", TypeError, "must be a number")]
WITH_LEARNING_RATE = [O.sgd, O.momentum, O.nesterov, O.adagrad, O.rmsprop, O.adam, O.adamw, O.amsgrad, O.adopt,
                      O.dog, O.scale_by_learning_rate]


@pytest.mark.finding(32)
@pytest.mark.parametrize("make", WITH_LEARNING_RATE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("lr, error, text", BAD_LEARNING_RATES, ids=["negative", "nan", "inf", "string"])
def test_bad_learning_rate_is_refused(make, lr, error, text):
    with pytest.raises(error, match="learning_rate") as e:
        make(lr)
    assert text in str(e.value) and repr(lr) in str(e.value)


@pytest.mark.finding(32)
@pytest.mark.parametrize("make", WITH_LEARNING_RATE, ids=lambda f: f.__name__)
def test_zero_learning_rate_and_schedules_are_accepted(make):
    assert make(0.0).hyper.get("learning_rate") == 0.0
    assert "learning_rate" not in make(O.constant_schedule(0.1)).hyper  # a schedule: not a hyperparameter


BAD_HYPERPARAMETERS = [
    (lambda: O.sgd(0.1, momentum=1.0), "momentum=1.0", "[0, 1)"),
    (lambda: O.sgd(0.1, momentum=-0.5), "momentum=-0.5", "[0, 1)"),
    (lambda: O.momentum(0.1, math.nan), "momentum=nan", "not finite"),
    (lambda: O.nesterov(0.1, 2.0), "momentum=2.0", "[0, 1)"),
    (lambda: O.adam(b1=1.0), "b1=1.0", "[0, 1)"),
    (lambda: O.adam(b1=-0.1), "b1=-0.1", "[0, 1)"),
    (lambda: O.adam(b2=1.5), "b2=1.5", "[0, 1)"),
    (lambda: O.adam(eps=-1e-8), "eps=-1e-08", ">= 0"),
    (lambda: O.adam(eps_root=-1.0), "eps_root=-1.0", ">= 0"),
    (lambda: O.adamw(weight_decay=-1e-4), "weight_decay=-0.0001", ">= 0"),
    (lambda: O.adamw(b2=math.inf), "b2=inf", "not finite"),
    (lambda: O.amsgrad(b2=1.0), "b2=1.0", "[0, 1)"),
    (lambda: O.adopt(0.1, b1=1.0), "b1=1.0", "[0, 1)"),
    (lambda: O.rmsprop(0.1, decay=1.0), "decay=1.0", "[0, 1)"),
    (lambda: O.rmsprop(0.1, eps=-1.0), "eps=-1.0", ">= 0"),
    (lambda: O.rmsprop(0.1, initial_scale=-1.0), "initial_scale=-1.0", ">= 0"),
    (lambda: O.rmsprop(0.1, centered=True, decay=-0.1), "decay=-0.1", "[0, 1)"),
    (lambda: O.adagrad(0.1, eps=-1e-7), "eps=-1e-07", ">= 0"),
    (lambda: O.adagrad(0.1, initial_accumulator_value=-0.1), "initial_accumulator_value=-0.1", ">= 0"),
    (lambda: O.clip_by_global_norm(-1.0), "max_norm=-1.0", ">= 0"),
    (lambda: O.add_decayed_weights(math.nan), "weight_decay=nan", "not finite"),
    (lambda: O.dog(eps=-1.0), "eps=-1.0", ">= 0"),
    (lambda: O.dog(weight_decay=-0.1), "weight_decay=-0.1", ">= 0"),
    (lambda: O.dog(init_step=("distance", 0.0)), "init_step value (distance)=0.0", "> 0"),
    (lambda: O.trace(decay=1.0), "momentum=1.0", "[0, 1)"),
]


@pytest.mark.finding(33)
@pytest.mark.parametrize("build, named, expected", BAD_HYPERPARAMETERS)
def test_bad_hyperparameter_is_refused_naming_it_and_its_value(build, named, expected):
    with pytest.raises(ValueError) as e:
        build()
    assert named in str(e.value) and expected in str(e.value)


@pytest.mark.finding(33)
def test_edge_hyperparameters_are_accepted():
    assert O.adam(0.0, b1=0.0, b2=0.0, eps=0.0).hyper == {"b1": 0.0, "b2": 0.0, "eps": 0.0, "eps_root": 0.0,
                                                          "learning_rate": 0.0}
    assert O.sgd(0.1, momentum=0.0).hyper["momentum"] == 0.0
    assert O.clip_by_global_norm(0.0).hyper == {"max_norm": 0.0}
    assert O.adamw(1e-3, weight_decay=0.0).hyper["weight_decay"] == 0.0
    assert O.sgd(np.float32(0.5)).hyper["learning_rate"] == 0.5
    assert O.dog(init_step=("learning_rate", 0.0)).hyper["learning_rate"] == 1.0


@pytest.mark.finding(33)
def test_state_dtypes_are_known_options():
    with pytest.raises(ValueError, match=r"scale_by_adam: mu_dtype='float8' is not a floating-point dtype; "
                                         r"expected None or one of \('float16'"):
        O.adam(mu_dtype="float8")
    with pytest.raises(ValueError, match=r"trace: accumulator_dtype='int32'"):
        O.sgd(0.1, momentum=0.9, accumulator_dtype="int32")
    with pytest.raises(TypeError, match=r"scale_by_dog: init_step must be a pair \(kind, value\), got 1e-06"):
        O.dog(init_step=1e-6)


def test_schedule_numbers_are_checked():
    with pytest.raises(ValueError, match=r"constant_schedule: value=nan is not finite"):
        O.constant_schedule(math.nan)
    with pytest.raises(ValueError, match=r"exponential_decay: decay_rate=-0.5 is out of range: expected a number >= 0"):
        O.exponential_decay(0.1, 10, -0.5)
    with pytest.raises(ValueError, match=r"polynomial_schedule: end_value=inf is not finite"):
        O.linear_schedule(0.1, math.inf, 10)
    with pytest.raises(ValueError, match=r"join_schedules: 2 schedules need 1 boundaries .* got boundaries=\[10, 20\]"):
        O.join_schedules([O.constant_schedule(0.1), O.constant_schedule(0.2)], [10, 20])
    with pytest.raises(ValueError, match=r"decay_steps=10 counts the warm-up; expected more than warmup_steps=10"):
        O.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10)
    with pytest.raises(TypeError, match=r"cosine_decay_schedule: alpha must be a number, got 'x'"):
        O.cosine_decay_schedule(0.1, 10, alpha="x")


# --------------------------------------------------------------------------- known options


def test_unknown_loss_reduction_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"mse: unknown reduction='avg'; expected one of 'mean', 'sum', 'none'"):
        pl.losses.mse(reduction="avg")


def test_huber_delta_is_a_positive_number():
    for delta in (0.0, -1.0):
        with pytest.raises(ValueError, match=rf"huber: delta={delta!r} is out of range: expected a number > 0"):
            pl.losses.huber(delta)
    assert pl.losses.huber(pl.hyperparameter(0.5)).at(pl.Array[2]).hyper_names == ("huber.delta",)


def test_numeric_layer_arguments_are_numbers():
    with pytest.raises(TypeError, match=r"leaky_relu: negative_slope must be a number, got 'steep'"):
        pl.nn.leaky_relu("steep").at(pl.Array[3])
    with pytest.raises(ValueError, match=r"leaky_relu: negative_slope=nan is not finite"):
        pl.nn.leaky_relu(math.nan).at(pl.Array[3])


def test_unknown_initialiser_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"dense: init='he_normal' is not an initialiser \(call it: "
                                         r"pl.init.he_normal\(\)\); expected one of pl.init.zeros\(\)"):
        pl.nn.dense(2, 3, init="he_normal")
    with pytest.raises(ValueError, match=r"conv2d: init=<function he_normal .*call it: pl.init.he_normal\(\)"):
        pl.nn.conv2d(1, 2, init=pl.init.he_normal)
    with pytest.raises(ValueError, match=r"dense: init=\('lecun',\) is not an initialiser; expected one of"):
        pl.nn.dense(2, 3, init=("lecun",))
    assert pl.nn.dense(2, 3, init=pl.init.uniform(-0.1, 0.1)).params[0].init == ("uniform", -0.1, 0.1)


@pytest.mark.parametrize("build, error, text", [
    (lambda: pl.init.normal(-1.0), ValueError, "normal: stddev=-1.0 is out of range: expected a number >= 0"),
    (lambda: pl.init.bits(1.5), ValueError, "bits: p=1.5 is out of range: expected a number in [0, 1]"),
    (lambda: pl.init.uniform(1.0, 0.0), ValueError, "uniform: low=1.0 is above high=0.0; expected low <= high"),
    (lambda: pl.init.constant(math.inf), ValueError, "constant: value=inf is not finite"),
    (lambda: pl.init.constant("1"), TypeError, "constant: value must be a number, got '1'"),
])
def test_initialiser_arguments_are_checked(build, error, text):
    with pytest.raises(error, match=re.escape(text)):
        build()


def test_mlp_activation_must_be_a_layer():
    with pytest.raises(TypeError, match=r"mlp: activation must be a layer of pl.nn such as pl.nn.relu, .*got 'relu'"):
        pl.nn.mlp([4, 3, 2], activation="relu")
    with pytest.raises(TypeError, match=r"mlp: final_activation must be a layer"):
        pl.nn.mlp([4, 3, 2], final_activation=pl.tanh)  # a wire function, not a layer
    assert pl.nn.mlp([4, 3, 2], activation=pl.nn.tanh(), final_activation=pl.nn.sigmoid).cod == pl.Ty(pl.Array[2])


def test_einsum_spec_needs_an_output():
    with pytest.raises(TypeError, match=r"einsum: spec='i,io' must name the output after '->'"):
        traced(lambda x, w: pl.einsum("i,io", x, w), pl.Array[3], pl.Param[3, 2])


def test_valid_terms_are_unchanged_by_the_checks():
    rng = np.random.default_rng(3)
    model = (pl.nn.conv2d(1, 2, 3, padding="same").at(pl.Array(6, 6, 1, dtype=F)) >> pl.nn.relu()
             >> pl.nn.max_pool() >> pl.nn.flatten() >> pl.nn.dense(18, 2, dtype=F))
    p = f64(model.init(0))
    y = pnp.compile(model)(p, rng.standard_normal((2, 6, 6, 1)))
    assert y.shape == (2, 2) and np.all(np.isfinite(y))
