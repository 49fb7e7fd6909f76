"""Past one device: logical axes on parameter wires, rule tables, FSDP and tensor parallelism.

The layouts themselves are checked here on one device; the sharded runs (8 CPU devices, against
the single-device step) in tests/sharding_worker.py, in a process of their own."""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import paralens as pl
from paralens.backends.sharding import Sharding

WORKER = pathlib.Path(__file__).with_name("sharding_worker.py")


class FakeMesh(Mesh):
    """A mesh of the shape given, over copies of the one CPU device: enough for the layout's
    arithmetic (``spec``), which reads only the axis names and sizes."""

    def __new__(cls, **shape):
        devices = np.empty(tuple(shape.values()), dtype=object)
        devices.fill(jax.devices()[0])
        return Mesh.__new__(cls, devices, tuple(shape))


def test_built_in_layers_name_their_axes_as_megatron_splits_them():
    f = pl.nn.mlp([4, 8, 8, 3])
    assert f.param_axes == {"dense0.W": ("embed", "mlp"), "dense0.b": ("mlp",), "dense1.W": ("mlp", "embed"),
                            "dense1.b": ("embed",), "dense2.W": ("embed", "mlp"), "dense2.b": ("mlp",)}
    block = pl.nn.transformer_block(8, 2).at(pl.Array[5, 8])
    axes = block.param_axes
    assert axes["attention.Wq"] == axes["attention.Wk"] == axes["attention.Wv"] == ("embed", "heads")
    assert axes["attention.Wo"] == ("heads", "embed") and axes["attention.bo"] == ("embed",)
    assert axes["dense0.W"] == ("embed", "mlp") and axes["dense1.W"] == ("mlp", "embed")
    assert axes["layer_norm0.scale"] == ("embed",)
    assert pl.nn.embedding(10, 4).at(pl.Array(3, dtype="int32")).param_axes == {"embedding.table": ("vocab", "embed")}
    assert pl.nn.dense(3, 2, axes=("mlp", "embed")).param_axes["dense.b"] == ("embed",)


def test_axes_survive_composition_derivatives_and_precision():
    f = pl.nn.dense(3, 4) >> pl.nn.tanh() >> pl.nn.dense(4, 2, axes=("mlp", "embed"))
    want = f.param_axes
    for g in (pl.R(f), pl.lens(f).fwd, pl.astype(f, "bfloat16"), pl.D(f)):
        assert g.param_axes == want, g.name
    longer = pl.nn.dense(2, 3) >> f    # renumbered: dense0 is the new layer, f's come after
    assert list(longer.param_axes.values()) == [("embed", "mlp"), ("mlp",)] + list(want.values())


def test_with_axes_names_a_users_layer_and_refuses_what_does_not_fit():
    @pl.para
    def layer(x: pl.Array[4], w: pl.Param[4, 8], s: pl.Param[8]):
        return pl.tanh(x @ w) * s

    named = pl.with_axes(layer, {"layer.w": ("embed", "mlp"), "layer.s": [None]})
    assert named.param_axes == {"layer.w": ("embed", "mlp"), "layer.s": (None,)}
    assert named == named and named.dom == layer.dom and named.param_names == layer.param_names
    x, w, s = np.ones((2, 4)), np.full((4, 8), 0.1), np.ones(8)
    run = pl.backends.get("numpy").compile
    params = {"layer.w": w, "layer.s": s}
    np.testing.assert_array_equal(run(named)(params, x), run(layer)(params, x))
    with pytest.raises(KeyError, match="layer.v"):
        pl.with_axes(layer, {"layer.v": ("embed",)})
    with pytest.raises(ValueError, match="each of the 2 axes"):
        pl.with_axes(layer, {"layer.w": ("embed",)})
    with pytest.raises(ValueError, match="each of the 2 axes"):
        pl.with_axes(layer, {"layer.w": ("embed", "")})
    with pytest.raises(TypeError, match="logical axis names"):
        pl.with_axes(layer, {"layer.w": ("embed", 3)})
    with pytest.raises(TypeError, match="logical axis names"):
        pl.with_axes(layer, {"layer.w": "embed"})
    assert pl.with_axes(named, {"layer.w": None}).param_axes["layer.w"] is None


def _at(tree, path):
    for k in path:
        tree = tree[k.key if hasattr(k, "key") else k.idx]
    return tree


def test_state_axes_give_adam_moments_their_parameters_axes():
    lr = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                    optimizer=pl.optim.chain(pl.optim.clip_by_global_norm(1.0), pl.optim.adam(1e-3)))
    axes, types = lr.state_axes, lr.state_types
    assert axes["params"] == lr.model.param_axes
    flat = jax.tree_util.tree_flatten_with_path(types, is_leaf=lambda t: isinstance(t, pl.ArrayType))[0]
    moments = [p for p, _ in flat if any(getattr(k, "key", None) in ("mu", "nu") for k in p)]
    assert moments, "no Adam moments in the state"
    for path, t in flat:
        a = _at(axes, path)
        name = getattr(path[-1], "key", None)
        if name in lr.param_types and t.shape == lr.param_types[name].shape:
            assert a == lr.model.param_axes[name], path
        else:
            assert a is None, path
    # factored state (Adafactor's row and column moments) is not of the parameter's shape: no names
    fact = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.adafactor(1e-2, min_dim_size_to_factor=2))
    leaves = jax.tree_util.tree_flatten_with_path(fact.state_types, is_leaf=lambda t: isinstance(t, pl.ArrayType))[0]
    for path, t in leaves:
        a = _at(fact.state_axes, path)
        name = getattr(path[-1], "key", None)
        assert (a is not None) == (name in fact.param_types and t.shape == fact.param_types[name].shape)


def test_rules_map_logical_axes_to_mesh_axes_where_they_divide():
    mesh = FakeMesh(data=2, model=4)
    tensor = Sharding(mesh, {"mlp": "model", "heads": "model", "embed": None})
    assert tensor.spec(("embed", "mlp"), (64, 128)) == P(None, "model")
    assert tensor.spec(("mlp", "embed"), (128, 64)) == P("model")
    assert tensor.spec(("mlp",), (10,)) == P()          # 4 does not divide 10: replicated
    assert tensor.spec(None, (64, 128)) == P()
    assert tensor.spec(("mlp", "mlp"), (8, 8)) == P("model")  # a mesh axis splits one array axis only
    fsdp = Sharding(mesh, {"mlp": "model"}, fsdp="data")
    assert fsdp.spec(("embed", "mlp"), (64, 128)) == P("data", "model")
    assert fsdp.spec((None, None), (3, 10)) == P(None, "data")      # the largest axis data divides
    assert fsdp.spec((None,), (7,)) == P()
    assert fsdp.spec((), ()) == P()
    both = Sharding(mesh, [("mlp", ("data", "model"))])  # MaxText's pairs, a tuple of mesh axes
    assert both.spec(("embed", "mlp"), (4, 16)) == P(None, ("data", "model"))
    assert both.spec(("embed", "mlp"), (4, 12)) == P()
    assert Sharding(mesh).batch == ("data",) and Sharding(mesh, batch="model").batch == ("model",)


def test_bad_layouts_are_refused_by_name():
    mesh = FakeMesh(data=2, model=4)
    with pytest.raises(ValueError, match="no axis 'tensor'"):
        Sharding(mesh, {"mlp": "tensor"})
    with pytest.raises(ValueError, match="no axis 'pipe'"):
        Sharding(mesh, fsdp="pipe")
    with pytest.raises(ValueError, match="no axis 'x'"):
        Sharding(mesh, batch="x")
    with pytest.raises(ValueError, match="one mesh axis"):
        Sharding(mesh, fsdp=("data", "model"))
    with pytest.raises(TypeError, match="logical axis name"):
        Sharding(mesh, {1: "model"})
    with pytest.raises(TypeError, match="mesh axis name"):
        Sharding(mesh, {"mlp": 3})
    with pytest.raises(TypeError, match="Mesh"):
        Sharding({"data": 8})
    lr = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                    optimizer=pl.optim.sgd(0.1))
    one = Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(TypeError, match="not both"):
        lr.compile("jax", sharding=Sharding(one), mesh=one)
    with pytest.raises(TypeError, match="option of the JAX backend"):
        lr.compile("numpy", sharding=Sharding(one))
    with pytest.raises(ValueError, match="holds no JAX arrays"):
        lr.init(0, backend="sympy", sharding=Sharding(one))
    with pytest.raises(TypeError, match="type a pl.nn layer"):
        pl.with_axes(pl.nn.layer_norm(4), {"layer_norm.scale": ("embed",)})
    with pytest.raises(TypeError, match="parameter name: axes"):
        pl.with_axes(pl.nn.dense(2, 2), [("dense.W", ("embed", "mlp"))])


def test_a_sharded_step_on_one_device_equals_the_plain_step():
    """The whole path (init placed by the layout, the jitted step with its shardings) on a 1x1
    mesh, where every layout is one device: the numbers must not change."""
    lr = pl.Learner(pl.nn.mlp([5, 8, 3], activation=pl.nn.tanh),
                    loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))
    plan = Sharding(Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model")), {"mlp": "model"}, fsdp="data")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 5)).astype(np.float32), rng.integers(0, 3, 7).astype(np.int32)
    a, b = lr.init(0, backend="jax"), lr.init(0, sharding=plan)
    assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert b["params"]["dense0.W"].sharding.spec == P("data", "model")
    plain, sharded = lr.compile("jax"), lr.compile("jax", sharding=plan)
    for _ in range(3):   # batch 7: odd
        a, la = plain(a, x, y)
        b, lb = sharded(b, x, y)
    assert float(la) == float(lb)
    assert len(plan.describe(lr.state_types, lr.state_axes)) == len(jax.tree.leaves(b))
    # a pipeline of one stage (one device): 7 examples do not cut into 2 microbatches, 8 do
    pipe = Sharding(Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "stage")), pipeline="stage",
                    microbatches=2)
    c, piped = lr.init(0, sharding=pipe), lr.compile("jax", sharding=pipe)
    with pytest.raises(ValueError, match="cannot be split over the 2 data shards x microbatches"):
        piped(c, x, y)
    x8, y8 = np.concatenate([x, x[:1]]), np.concatenate([y, y[:1]])
    c, lc = piped(c, x8, y8)
    d, ld = plain(lr.init(0, backend="jax"), x8, y8)
    np.testing.assert_allclose(float(lc), float(ld), rtol=1e-6)


def run_worker(check: str, tmp_path) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(WORKER.parent))
    r = subprocess.run([sys.executable, str(WORKER), check, str(tmp_path)], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("ok"), (r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "char_lm"])
def test_every_sharding_equals_one_device_after_ten_adam_steps(model, tmp_path):
    out = run_worker(model, tmp_path)
    assert out.count("parameters") == 12, out  # 6 shardings x 2 dtypes, each checked in the worker


@pytest.mark.slow
def test_pipeline_gradients_equal_the_unpipelined_ones_for_1_2_4_microbatches(tmp_path):
    assert run_worker("pipeline", tmp_path).count("gradients") == 12  # 2 models x 2 stage counts x 3


@pytest.mark.slow
def test_a_checkpoint_of_8_devices_resumes_on_4_bit_for_bit(tmp_path):
    assert "bit for bit" in run_worker("checkpoint", tmp_path)


@pytest.mark.slow
def test_an_exported_sharded_step_keeps_its_shardings(tmp_path):
    out = run_worker("export", tmp_path)
    assert "exported on 8 devices: bit for bit" in out and "a pipelined step exported: bit for bit" in out


def test_stages_cut_a_composite_where_its_parameters_balance():
    model = pl.nn.mlp([4, 16, 16, 3], activation=pl.nn.tanh)
    assert pl.nn.mlp([4, 16, 16, 3], activation=pl.nn.tanh) == model
    two = pl.stages(model, 2)
    assert [s.name for s in two] == ["dense(4, 16)", "tanh >> dense(16, 16) >> tanh >> dense(16, 3)"]
    assert pl.seq(*two) == model
    for n in (1, 3, 5):
        cut = pl.stages(model, n)
        assert len(cut) == n and pl.seq(*cut) == model
        assert sum(len(s.params) for s in cut) == len(model.params)
    # the cut minimises the largest stage: 80 | 272 + 51 rather than 80 + 272 | 51
    sizes = [sum(int(np.prod(p.type.shape)) for p in s.params) for s in two]
    assert sizes == [80, 323]
    with pytest.raises(ValueError, match="composite of 5 terms"):
        pl.stages(model, 6)
    with pytest.raises(ValueError, match="composite of 1 terms"):
        pl.stages(pl.nn.dense(3, 2), 2)
    with pytest.raises(ValueError, match="positive int"):
        pl.stages(model, 0)
    with pytest.raises(TypeError, match="positive int"):
        pl.stages(model, 2.0)
    # mixed precision keeps the composite, so a float64 or bfloat16 model is cut the same way
    assert [s.name for s in pl.stages(pl.astype(model, "float64"), 2)] == [s.name for s in two]


def test_a_pipeline_needs_a_plain_reverse_gradient_and_its_own_axis():
    mesh = FakeMesh(data=2, stage=4)
    with pytest.raises(ValueError, match="cannot hold the pipeline"):
        Sharding(mesh, pipeline="data")
    with pytest.raises(ValueError, match="microbatches"):
        Sharding(mesh, batch="data", pipeline="stage", microbatches=0)
    assert Sharding(mesh, pipeline="stage").stages == 4 and Sharding(mesh).stages == 1
    drop = pl.nn.dropout(0.1)

    @pl.para(dom=[pl.Array[4], pl.prims.KEY])
    def keyed(x, key, w: pl.Param[4, 3]):
        h, key = drop(x @ w, key)
        return h, key
    loss = pl.losses.softmax_cross_entropy_with_integer_labels()
    for lr in (pl.Learner(keyed, loss=loss, optimizer=pl.optim.sgd(0.1)),
               pl.Learner(pl.nn.mlp([4, 8, 3]), loss=loss, optimizer=pl.optim.sgd(0.1), gradient="forward"),
               pl.Learner(pl.nn.mlp([4, 8, 3]), loss=loss, optimizer=pl.optim.sgd(0.1), compute_dtype="bfloat16")):
        with pytest.raises(ValueError, match="pipelined learner"):
            lr.pipeline(2)
    with pytest.raises(ValueError, match="reads the loss"):
        pl.Learner(pl.nn.mlp([4, 8, 3]), loss=loss, optimizer=pl.optim.polyak_sgd()).update_term  # noqa: B018
    parts = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=loss, optimizer=pl.optim.sgd(0.1)).pipeline(2)
    assert parts["sources"][0] == (("params", "dense0.W"), ("params", "dense0.b"))
    assert parts["sources"][1] == (("params", "dense1.W"), ("params", "dense1.b"), ("y", 0))


def test_the_update_term_applies_given_gradients_as_the_step_does():
    """step(state, x, y) == update(state, gradients of model >> loss at (x, y)): the optimizer half
    of a step, split off for the pipeline, is the step's own."""
    from paralens.backends import jax as pjax
    lr = pl.Learner(pl.nn.mlp([5, 8, 3], activation=pl.nn.tanh),
                    loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6).astype(np.int32)
    state = lr.init(0, backend="jax")
    params = {**state["params"], lr.objective.param_names[-1]: y}
    _, grads, _ = pjax.compile(pl.value_and_R(lr.objective))(params, x.astype(np.float32), np.float32(1.0))
    new = pjax.compile(lr.update_term)({}, state, {k: grads[k] for k in lr.param_types})
    want, _ = lr.compile("jax", donate=False)(state, x, y)
    for k in lr.param_types:
        np.testing.assert_allclose(new["params"][k], want["params"][k], rtol=1e-6, atol=1e-7)
    assert int(new["step"]) == int(want["step"]) == 1
