"""Multi-process data-parallel training: two processes joined by ``jax.distributed`` (CPU,
gloo collectives) train as one process does on the whole batch."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
from distributed_worker import learner, sharded_learner

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
PROCESSES, STEPS, BATCH = 2, 10, 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_processes(tmp_path, xs, ys, *, devices: int | None, timeout: int, mode=()):
    """Run the worker in PROCESSES processes joined by jax.distributed, each with ``devices`` CPU
    devices (``None``: one); returns what process 0 wrote."""
    np.savez(tmp_path / "data.npz", xs=xs, ys=ys)
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), str(PROCESSES), str(port),
                               str(tmp_path / "data.npz"), str(tmp_path / "out.npz"), *mode],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(PROCESSES)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{log[-3000:]}"
    return np.load(tmp_path / "out.npz")


def one_process(xs, ys):
    lr = learner()
    step = lr.compile("jax")
    state = lr.init(0, backend="jax")
    losses = []
    for x, y in zip(xs, ys):
        state, loss = step(state, x, y)
        losses.append(loss)
    return state["params"], np.array(losses)


def test_two_processes_train_as_one_process_on_the_whole_batch(tmp_path):
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((STEPS, BATCH, 6)).astype(np.float32)
    ys = rng.integers(0, 3, (STEPS, BATCH)).astype(np.int32)
    out = run_processes(tmp_path, xs, ys, devices=None, timeout=120)  # one CPU device each: the mesh spans the two
    params, losses = one_process(xs, ys)
    np.testing.assert_allclose(out["losses"], losses, rtol=1e-6, atol=1e-6)
    for k, v in params.items():
        np.testing.assert_allclose(out[k], np.asarray(v), rtol=1e-6, atol=1e-6, err_msg=k)
    # the distributed run really moved the parameters away from where they started
    start = jax.tree.map(np.asarray, learner().init(0)["params"])
    assert max(np.abs(out[k] - start[k]).max() for k in start) > 1e-2


def test_two_processes_of_four_devices_train_fsdp_x_tensor_and_a_pipeline_as_one_device(tmp_path):
    """2 processes x 4 CPU devices, one mesh over the 8: FSDP x tensor parallelism and a 4-stage
    pipeline equal the single-device step; fit's sharded checkpoints (each process its shards) resume."""
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((STEPS, 16, 6)).astype(np.float32)
    ys = rng.integers(0, 3, (STEPS, 16)).astype(np.int32)
    out = run_processes(tmp_path, xs, ys, devices=4, timeout=300, mode=["sharded"])
    lr = sharded_learner()
    step, state = lr.compile("jax"), lr.init(0, backend="jax")
    losses = []
    for x, y in zip(xs, ys):
        state, loss = step(state, x, y)
        losses.append(float(loss))
    np.testing.assert_allclose(out["losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(out["pipe_losses"], losses, rtol=1e-5)
    for k, v in state["params"].items():
        np.testing.assert_allclose(out[k], np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(out[f"pipe/{k}"], np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=k)
    fitted, fit_losses = lr.fit(xs.reshape(-1, 6), ys.reshape(-1), epochs=2, batch_size=16, progress=False)
    np.testing.assert_allclose(out["fit_losses"], fit_losses, rtol=1e-5)
    for k, v in fitted["params"].items():
        np.testing.assert_allclose(out[f"fit/{k}"], np.asarray(v), rtol=1e-5, atol=1e-6, err_msg=k)
