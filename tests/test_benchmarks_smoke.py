"""The accelerator benchmark and the memory benchmark run end to end (tiny sizes, on the CPU)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{script} {' '.join(args)} exited with {r.returncode}:\n{r.stdout}\n{r.stderr[-3000:]}"
    return r.stdout


def test_memory_benchmark_reports_every_kind_and_passes_its_check():
    out = run("bench_memory.py", "--check")
    assert "MLP [784, 512, 512, 10] batch 256 Adam" in out
    for kind in ("temp", "argument", "output", "alias", "total"):
        assert re.search(rf"^  {kind} +[\d.]+ MiB vs +[\d.]+ MiB  [\d.]+x$", out, re.M), (kind, out)


@pytest.mark.slow
def test_gpu_benchmark_cpu_smoke_prints_every_section():
    out = run("gpu.py", "--cpu-smoke", "--check")  # --check: temporaries <= 1.0x hand-written in every case
    assert "dense bf16 peak unknown" in out
    for model in ("MLP ", "CNN ", "transformer block ", "char LM ", "wide MLP "):
        assert re.search(rf"^  {model}.*: [\d.]+x \([\d.]+ ms vs [\d.]+ ms", out, re.M), (model, out)
        assert re.search(rf"^  {model}.*: temp [\d.]+x, total [\d.]+x, peak ", out, re.M), (model, out)
    flops = [line for line in out.splitlines() if "TFLOP/s" in line and re.match(r"^  \S", line)]
    assert len(flops) == 2 and all(line.count("peak unknown") == 2 for line in flops), out
    assert re.search(r"measured matmul FLOP/s for the same shapes \([\d.]+ TFLOP/s\): paralens [\d.]+%, jax [\d.]+%",
                     out), out


@pytest.mark.slow
def test_sharding_benchmark_runs_every_sharding_on_8_devices():
    # sets its own 8 CPU devices (XLA_FLAGS is unset above); the char-LM's shardings are checked in test_sharding
    out = run("bench_sharding.py", "--quick", "--models", "mlp")
    for model in ("mlp",):
        for kind in ("data", "fsdp", "tensor", "fsdp x tensor", "pipeline 2", "pipeline 4"):
            assert re.search(rf"^{model} +{kind} +step [\d.]+x of jax\+optax .* per device [\d.]+ of the state",
                             out, re.M), (model, kind, out)
    fsdp = re.search(r"^mlp +fsdp +step .* per device ([\d.]+) of the state", out, re.M)
    assert float(fsdp.group(1)) <= 1 / 8 * 1.05, out


@pytest.mark.slow
def test_onnx_benchmark_reports_step_time_and_size():
    out = run("bench_onnx.py", "--models", "mlp", "--rounds", "1", "--calls", "2", "--threads", "1")
    assert re.search(r"^MLP .* step [\d.]+x of JAX \([\d.]+ ms vs [\d.]+ ms.*size [\d.]+x \([\d.]+ KiB \.onnx", out,
                     re.M), out


def test_trace_benchmark_counts_the_object_files_xla_builds():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_trace
    finally:
        sys.path.remove(str(BENCHMARKS))
    counts = bench_trace.kernels(depths=(4,))[4]
    assert set(counts) == {"ours", "static", "theirs", "injected"}, counts
    # every side builds several kernels; paralens's step, with the same layers, loss and optimizer,
    # builds no more than the hand-written one of the same program, though it also counts its steps
    # (its count and Adam's increment alike, and share one kernel): with run-time hyperparameters as
    # optax.inject_hyperparams (18 and 18 with jax 0.10.2), compiled in as optax.adam(1e-3) (17 and
    # 17); run-time ones cost at most one more than constants
    assert all(n >= 5 for n in counts.values()), counts
    assert counts["ours"] <= counts["injected"], counts
    assert counts["static"] <= counts["theirs"], counts
    assert counts["ours"] <= counts["static"] + 1, counts
