"""One process of a multi-process data-parallel run (started twice by tests/test_distributed.py).

    python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT DATA.npz OUT.npz [sharded]

Each process joins the run with ``jax.distributed.initialize``, builds the mesh over
every process's devices, feeds its own slice of the global batch with
``jax.make_array_from_process_local_data``, takes the steps, and (process 0) writes
the final parameters and losses to OUT.npz. With ``sharded``, see :func:`sharded`.
"""

import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import paralens as pl


def learner() -> pl.Learner:
    """The learner the test also trains in one process; the two must stay the same."""
    return pl.Learner(pl.nn.mlp([6, 12, 3], activation=pl.nn.tanh),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))


def main(process_id: int, num_processes: int, port: int, data: str, out: str) -> None:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the CPU all-reduce across processes
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                               process_id=process_id)
    assert jax.process_count() == num_processes and len(jax.devices()) > len(jax.local_devices())

    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated, batch = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    lr = learner()
    step = lr.compile("jax", mesh=mesh)
    # every process starts from the same seed, so its local copy of the state is the global one
    state = jax.tree.map(lambda v: jax.make_array_from_process_local_data(replicated, np.asarray(v)), lr.init(0))

    d = np.load(data)
    xs, ys = d["xs"], d["ys"]                     # (steps, global batch, ...): every process reads it all
    share = xs.shape[1] // num_processes
    mine = slice(process_id * share, (process_id + 1) * share)
    losses = []
    for x, y in zip(xs, ys):
        gx = jax.make_array_from_process_local_data(batch, x[mine])
        gy = jax.make_array_from_process_local_data(batch, y[mine])
        assert gx.shape == x.shape and not gx.is_fully_addressable
        if not losses:
            assert "all-reduce" in step.lower(state, gx, gy).compile().as_text(), "no all-reduce across processes"
        state, loss = step(state, gx, gy)
        losses.append(np.asarray(loss.addressable_data(0)))
    if process_id == 0:
        np.savez(out, losses=np.array(losses),
                 **{k: np.asarray(v.addressable_data(0)) for k, v in state["params"].items()})
    jax.distributed.shutdown()


def sharded(process_id: int, num_processes: int, port: int, data: str, out: str) -> None:
    """FSDP x tensor parallelism over every process's devices (a (data, model) mesh): the state
    initialised shard by shard, every process giving the whole batch (each device takes its
    slice); a 4-stage pipeline over the same devices; then ``fit`` with sharded checkpoints,
    interrupted after one epoch and resumed."""
    from paralens.backends.sharding import Sharding

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=num_processes,
                               process_id=process_id)
    devices = np.array(jax.devices())
    mesh = Mesh(devices.reshape(2, -1), ("data", "model"))
    plan = Sharding(mesh, {"mlp": "model"}, fsdp="data")
    lr = sharded_learner()
    state = lr.init(0, sharding=plan)
    assert not state["params"]["dense0.W"].is_fully_addressable
    step = lr.compile("jax", sharding=plan)
    d = np.load(data)
    losses = []
    for x, y in zip(d["xs"], d["ys"]):
        state, loss = step(state, x, y)
        losses.append(float(loss.addressable_data(0)))
    gather = jax.jit(lambda t: t, out_shardings=plan.replicated())  # every process gets the whole arrays
    params = {k: np.asarray(gather(v).addressable_data(0)) for k, v in state["params"].items()}
    # a pipeline of 4 stages across the processes' devices (data parallel over the other axis)
    pipe = Sharding(Mesh(devices.reshape(2, -1), ("data", "stage")), pipeline="stage", microbatches=2)
    piped, step = lr.init(0, sharding=pipe), lr.compile("jax", sharding=pipe)
    pipe_losses = []
    for x, y in zip(d["xs"], d["ys"]):
        piped, loss = step(piped, x, y)
        pipe_losses.append(float(loss.addressable_data(0)))
    pipe_params = {f"pipe/{k}": np.asarray(gather(v).addressable_data(0)) for k, v in piped["params"].items()}
    ck = out + ".checkpoints"
    x, y = d["xs"].reshape(-1, d["xs"].shape[-1]), d["ys"].reshape(-1)
    lr.fit(x, y, epochs=1, batch_size=16, sharding=plan, checkpoint_dir=ck, progress=False)
    fitted, fit_losses = lr.fit(x, y, epochs=2, batch_size=16, sharding=plan, checkpoint_dir=ck, resume=True,
                                progress=False)
    fitted = {k: np.asarray(gather(v).addressable_data(0)) for k, v in fitted["params"].items()}
    if process_id == 0:
        np.savez(out, losses=np.array(losses), fit_losses=fit_losses, pipe_losses=np.array(pipe_losses), **params,
                 **pipe_params, **{f"fit/{k}": v for k, v in fitted.items()})
    jax.distributed.shutdown()


def sharded_learner() -> pl.Learner:
    return pl.Learner(pl.nn.mlp([6, 16, 16, 3], activation=pl.nn.tanh),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.adam(1e-2, eps=1e-3))


if __name__ == "__main__":
    pid, n, port = (int(a) for a in sys.argv[1:4])
    (sharded if sys.argv[6:] == ["sharded"] else main)(pid, n, port, *sys.argv[4:6])
