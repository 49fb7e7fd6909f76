"""Sharded training on 8 CPU devices, checked against the single-device step (run by
tests/test_sharding.py in its own process, since the device count is fixed when JAX starts).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/sharding_worker.py CHECK TMPDIR

CHECK is ``mlp``, ``char_lm`` (every sharding, float32 and float64, 10 Adam steps),
``pipeline`` (the pipeline's gradients, microbatches 1, 2, 4), ``checkpoint`` (8 devices to 4,
bit for bit) or ``export`` (a sharded exported step).
Each prints ``ok`` and its figures.
"""

import sys

import jax
import numpy as np
from jax.sharding import Mesh

import paralens as pl
from examples_loader import load
from paralens.backends.sharding import Sharding

jax.config.update("jax_enable_x64", True)
STEPS = 10
TENSOR = {"mlp": "model", "heads": "model", "vocab": "model"}


def plans() -> dict:
    devices = np.array(jax.devices())
    assert len(devices) == 8, devices
    line, grid = Mesh(devices, ("data",)), Mesh(devices.reshape(2, 4), ("data", "model"))
    return {"data": Sharding(line), "fsdp": Sharding(line, fsdp="data"), "tensor": Sharding(grid, TENSOR),
            "fsdp x tensor": Sharding(grid, TENSOR, fsdp="data"),
            "pipeline 2": Sharding(Mesh(devices.reshape(4, 2), ("data", "stage")), pipeline="stage", microbatches=2),
            "pipeline 4": Sharding(Mesh(devices.reshape(2, 4), ("data", "stage")), pipeline="stage", microbatches=4)}


def adam():
    # eps 1e-3: Adam's default 1e-8 turns reduction-order noise in near-zero gradients into O(lr)
    # steps, which would test that noise and not the sharding
    return pl.optim.adam(1e-2, eps=1e-3)


def mlp(dtype):
    lr = pl.Learner(pl.nn.mlp([16, 64, 64, 8], activation=pl.nn.tanh, dtype=dtype),
                    loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=adam())
    rng = np.random.default_rng(0)
    return lr, rng.standard_normal((STEPS, 24, 16)).astype(dtype), rng.integers(0, 8, (STEPS, 24)).astype(np.int32)


def char_lm(dtype):
    ex = load("char_lm")
    length = 16
    # one block: four >> factors (tokens, block, layer_norm, readout), enough for 4 pipeline stages
    model, loss = ex.build(length=length, d=32, heads=4, blocks=1), ex.next_char_loss(length)
    if dtype == "float64":
        model, loss = pl.astype(model, "float64"), pl.astype(loss, "float64")
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(ex.VOCAB), (STEPS, 8, length + 1)).astype(np.int32)
    return pl.Learner(model, loss=loss, optimizer=adam()), ids[..., :-1], ids[..., 1:]


def relative(a: dict, b: dict) -> float:
    """|a - b| / |b| over all the parameters together (one parameter alone, such as attention's
    key bias, whose gradient is zero, holds only rounding noise)."""
    num = sum(float(np.sum((np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)) ** 2)) for k in b)
    return (num / sum(float(np.sum(np.asarray(b[k], np.float64) ** 2)) for k in b)) ** 0.5


def per_device_fraction(state: dict) -> float:
    """The largest bytes of parameters plus optimizer state on one device, over their whole."""
    leaves = jax.tree.leaves({"params": state["params"], "opt": state["opt"]})
    held: dict = {}
    for a in leaves:
        for shard in a.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return max(held.values()) / sum(a.nbytes for a in leaves)


def check_equal(make):
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
        lr, xs, ys = make(dtype)
        step, state = lr.compile("jax"), lr.init(0, backend="jax")
        for x, y in zip(xs, ys):
            state, loss = step(state, x, y)
        for name, plan in plans().items():
            sharded = lr.init(0, backend="jax", sharding=plan)
            for k, v in sharded["params"].items():  # never whole on one device where the layout splits it
                if not plan.state(lr.state_types, lr.state_axes)["params"][k].is_fully_replicated:
                    assert all(s.data.shape != v.shape for s in v.addressable_shards), (name, k)
            fraction = per_device_fraction(sharded)
            step_n = lr.compile("jax", sharding=plan)
            if name == "fsdp":
                assert fraction <= 1 / 8 * 1.05, fraction
            # the program's collectives do not depend on the dtype: read them once (each read
            # compiles the step a second time)
            if dtype == "float32" and name == "fsdp":
                hlo = step_n.lower(sharded, xs[0], ys[0]).compile().as_text()
                assert "all-gather" in hlo, "FSDP without an all-gather of the parameters"
            if dtype == "float32" and name.startswith("pipeline"):
                hlo = step_n.lower(sharded, xs[0], ys[0]).compile().as_text()
                assert "collective-permute" in hlo, "a pipeline that hands nothing from stage to stage"
            for x, y in zip(xs, ys):
                sharded, loss_n = step_n(sharded, x, y)
            err, loss_err = relative(sharded["params"], state["params"]), abs(float(loss_n) / float(loss) - 1)
            print(f"{dtype} {name}: parameters {err:.1e}, loss {loss_err:.1e}, per device {fraction:.4f}")
            assert err <= tol and loss_err <= tol, (dtype, name, err, loss_err)
            assert sharded["params"]["dense0.W"].dtype == dtype


def check_pipeline_gradients():
    """The pipeline's gradients against the unpipelined reverse derivative of model >> loss, for
    microbatches 1, 2 and 4, on 2 and 4 stages."""
    from paralens.backends import jax as pjax
    from paralens.backends.pipeline import pipelined
    for make in (mlp, char_lm):
        lr, xs, ys = make("float32")
        state = lr.init(0, backend="jax")
        objective = pjax.compile(pl.value_and_R(lr.objective))
        n = len(lr.model.params)
        params = {**state["params"], **dict.fromkeys(lr.objective.param_names[n:], ys[0])}
        value, want, _ = objective(params, xs[0], np.float32(1.0))
        for stages in (2, 4):
            mesh = Mesh(np.array(jax.devices()[:stages]), ("stage",))
            for m in (1, 2, 4):
                plan = Sharding(mesh, batch=(), pipeline="stage", microbatches=m)
                got, loss = jax.jit(pipelined(lr.pipeline(stages), plan, pjax.compile).gradients)(state, xs[0], ys[0])
                err = relative(got, {k: want[k] for k in got})
                print(f"{lr.model.name[:12]} {stages} stages, {m} microbatches: gradients {err:.1e}, loss "
                      f"{abs(float(loss) / float(value) - 1):.1e}")
                assert err <= 1e-6 and abs(float(loss) / float(value) - 1) <= 1e-6, (stages, m, err)


def check_checkpoint(tmp):
    lr, _, _ = mlp("float32")
    devices = np.array(jax.devices())
    eight = Sharding(Mesh(devices, ("data",)), fsdp="data")
    four = Sharding(Mesh(devices[:4].reshape(2, 2), ("data", "model")), TENSOR, fsdp="data")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((96, 16)).astype(np.float32), rng.integers(0, 8, 96).astype(np.int32)
    saved, _ = lr.fit(x, y, epochs=1, batch_size=16, sharding=eight, checkpoint_dir=f"{tmp}/ck", progress=False)
    assert saved["params"]["dense0.W"].sharding.mesh.size == 8
    resumed, losses = lr.fit(x, y, epochs=3, batch_size=16, sharding=four, checkpoint_dir=f"{tmp}/ck", resume=True,
                             progress=False)
    assert resumed["params"]["dense0.W"].sharding.mesh.size == 4
    start = four.place(jax.tree.map(np.asarray, saved), four.state(lr.state_types, lr.state_axes))
    straight, straight_losses = lr.fit(x, y, epochs=2, batch_size=16, sharding=four, state=start, progress=False)
    assert np.array_equal(losses[6:], straight_losses)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    print("8 devices to 4: bit for bit over", len(straight_losses), "steps")


def check_export():
    lr, xs, ys = mlp("float32")
    plan = plans()["fsdp x tensor"]
    step = lr.compile("jax", sharding=plan, donate=False)
    exported = jax.export.deserialize(step.export())
    assert exported.nr_devices == 8
    state = lr.init(0, sharding=plan)
    types = lr.step_term.input_types()
    x, y = jax.device_put(xs[0], plan.data(types[1])), jax.device_put(ys[0], plan.data(types[2]))
    new, loss = exported.call(state, x, y)
    ref, ref_loss = step(state, xs[0], ys[0])
    assert new["params"]["dense0.W"].sharding.spec == ref["params"]["dense0.W"].sharding.spec
    for a, b in zip(jax.tree.leaves((new, loss)), jax.tree.leaves((ref, ref_loss))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    print("exported on 8 devices: bit for bit,", ref["params"]["dense0.W"].sharding.spec)
    plan = plans()["pipeline 2"]                     # a pipelined step exports too, and fits as it steps
    step = lr.compile("jax", sharding=plan, donate=False)
    try:
        step.export()
    except ValueError as e:
        assert "batch_size=" in str(e)
    else:
        raise AssertionError("a pipelined step exported with a symbolic batch (XLA:CPU crashes running it)")
    exported = jax.export.deserialize(step.export(batch_size=len(xs[0])))
    state = lr.init(0, sharding=plan)
    x, y = jax.device_put(xs[0], plan.data(types[1])), jax.device_put(ys[0], plan.data(types[2]))
    for a, b in zip(jax.tree.leaves(exported.call(state, x, y)), jax.tree.leaves(step(state, xs[0], ys[0]))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    data_x, data_y = xs.reshape(-1, xs.shape[-1]), ys.reshape(-1)
    _, piped = lr.fit(data_x, data_y, epochs=1, batch_size=24, sharding=plan, progress=False)
    _, plain = lr.fit(data_x, data_y, epochs=1, batch_size=24, progress=False)
    np.testing.assert_allclose(piped, plain, rtol=1e-5)
    print("a pipelined step exported: bit for bit; fit over", len(piped), "steps equals the plain fit")


if __name__ == "__main__":
    check = sys.argv[1]
    {"mlp": lambda: check_equal(mlp), "char_lm": lambda: check_equal(char_lm),
     "checkpoint": lambda: check_checkpoint(sys.argv[2]), "export": check_export,
     "pipeline": check_pipeline_gradients}[check]()
    print("ok")
