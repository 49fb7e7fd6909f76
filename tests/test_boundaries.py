"""Round two of the reliability audit (issue 18): every public boundary checks what it is given.

Each test is marked ``finding(n, issue=18)`` after the finding it covers; the CLI's, the
full disk's and the concurrent writers' are in test_cli.py and test_fault_injection.py.
"""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import paralens as pl
from paralens.backends.checkpoint import CheckpointError, CheckpointLockedError, Checkpoints
from paralens.backends.fitting import TrainingInterrupted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n=24, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (np.argmax(x[:, :classes], axis=1)).astype(np.int32)


def _learner(lr=1e-2, model=None):
    return pl.Learner(model or pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.adam(lr))


# ---------------------------------------------------------------- crashes


@pytest.mark.finding(4, issue=18)
def test_python_lists_into_the_jax_step_as_into_the_numpy_step():
    x, y = _data(6)
    learner = _learner()
    want = learner.compile("numpy")(learner.init(0), x.tolist(), y.tolist())[1]
    got = learner.compile("jax", donate=False)(learner.init(0, "jax"), x.tolist(), y.tolist())[1]
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    scanned = learner.compile("jax", scan=True, donate=False)
    _, losses = scanned(learner.init(0, "jax"), x.reshape(2, 3, 4).tolist(), y.reshape(2, 3).tolist())
    assert np.asarray(losses).shape == (2,)


@pytest.mark.finding(5, issue=18)
@pytest.mark.parametrize("data_dtype", [np.float32, jnp.bfloat16])
def test_a_bfloat16_model_fits_and_bfloat16_data_are_numbers(data_dtype):
    x, y = _data()
    learner = _learner(model=pl.nn.dense(4, 3, dtype="bfloat16"))
    state, losses = learner.fit(x.astype(data_dtype), y, epochs=2, batch_size=6, progress=False)
    assert len(losses) == 8 and np.all(np.isfinite(losses))
    assert state["params"]["dense.W"].dtype == jnp.bfloat16
    # the numpy backend takes bfloat16 data too, cast to the model's float32
    f = pl.nn.dense(4, 3)
    out = pl.backends.get("numpy").compile(f)(f.init(0), x.astype(jnp.bfloat16))
    assert out.dtype == np.float32


@pytest.mark.finding(6, issue=18)
def test_fit_on_the_sympy_backend_is_refused_at_once():
    x, y = _data(8)
    with pytest.raises(NotImplementedError, match="sympy backend writes formulas and does not train"):
        _learner().fit(x, y, epochs=1, batch_size=4, backend="sympy", progress=False)


@pytest.mark.finding(7, issue=18)
def test_one_writer_per_checkpoint_folder_and_a_dead_writers_lock_is_taken_over(tmp_path):
    first = Checkpoints(tmp_path)
    with pytest.raises(CheckpointLockedError, match=rf"pid {os.getpid()} on .* since"):
        Checkpoints(tmp_path)
    x, y = _data()
    with pytest.raises(CheckpointLockedError, match="one run writes a checkpoint folder at a time"):
        _learner().fit(x, y, epochs=1, batch_size=6, checkpoint_dir=tmp_path, progress=False)
    first.close()
    Checkpoints(tmp_path).close()  # released: the next writer takes it
    # a writer killed with the lock held: its lock goes with it
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from paralens.backends.checkpoint import Checkpoints
        c = Checkpoints({str(tmp_path)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(CheckpointLockedError, match=f"pid {holder.pid}"):
        Checkpoints(tmp_path)
    holder.kill()
    holder.wait()
    state, losses = _learner().fit(x, y, epochs=1, batch_size=6, checkpoint_dir=tmp_path, progress=False)
    assert len(losses) == 4


@pytest.mark.finding(8, issue=18)
def test_the_readme_recipe_checks_the_digest_before_deserializing(tmp_path, monkeypatch):
    readme = pathlib.Path(ROOT, "README.md").read_text()
    recipe = next(b for b in readme.split("```python")[1:] if "hashlib" in b).split("```")[0]
    learner = _learner()
    monkeypatch.chdir(tmp_path)
    learner.compile("jax").export("step.jaxexport")
    x_train, y_train = _data(10)
    state = learner.init(0, "jax")
    namespace = {"state": state, "x_train": x_train, "y_train": y_train}
    exec(compile(recipe, "README.md", "exec"), namespace)  # the recipe runs the good file
    assert np.isfinite(float(namespace["loss"]))
    blob = bytearray((tmp_path / "step.jaxexport").read_bytes())
    blob[len(blob) // 2] ^= 0x10
    (tmp_path / "step.jaxexport").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match its digest"):
        exec(compile(recipe, "README.md", "exec"), dict(namespace))


# ---------------------------------------------------------------- silent wrong results


@pytest.mark.finding(9, issue=18)
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_labels_that_int32_cannot_hold_are_refused_not_wrapped(backend):
    x, y = _data()
    y = y.astype(np.int64)
    y[3] = 2 ** 32 + 1  # int32 would read 1
    with pytest.raises(ValueError, match=r"holds 4294967297, outside the range of int32"):
        _learner().fit(x, y, epochs=1, batch_size=6, backend=backend, progress=False)


@pytest.mark.finding(10, issue=18)
def test_accuracy_refuses_labels_of_another_shape_or_fractional_labels():
    x, y = _data()
    learner = _learner()
    state = learner.init(0)
    assert learner.accuracy(state, x, y) == learner.accuracy(state, x, np.eye(3)[y])
    with pytest.raises(ValueError, match=r"labels of shape \(24, 1\) for predictions of shape \(24, 3\)"):
        learner.accuracy(state, x, y[:, None])
    with pytest.raises(ValueError, match="fractional"):
        learner.accuracy(state, x, y + 0.5)


def _ridge():
    return pl.Bilevel(pl.nn.dense(3, 1), pl.losses.mse(reduction="none"), pl.optim.sgd(0.1),
                      hyper={"l2": pl.Hyper(0.1)}, method=pl.bilevel.implicit(20))


@pytest.mark.finding(11, issue=18)
def test_bilevel_fit_checks_its_data_and_its_steps():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    problem = _ridge().compile("jax")
    nan_x = x.copy()
    nan_x[2, 1] = np.nan
    with pytest.raises(ValueError, match="train x has 1 non-finite"):
        problem.fit((nan_x, y), (x, y), outer_steps=2, progress=False)
    nan_y = y.copy()
    nan_y[0] = np.nan
    with pytest.raises(ValueError, match="val y has 1 non-finite"):
        problem.fit((x, y), (x, nan_y), outer_steps=2, progress=False)
    with pytest.raises(ValueError, match="outer_steps must be >= 0"):
        problem.fit((x, y), (x, y), outer_steps=-1, progress=False)


@pytest.mark.finding(12, issue=18)
def test_dream_checks_targets_and_steps():
    model = pl.nn.dense(4, 3)
    params = model.init(0)
    x = np.zeros((2, 4), np.float32)
    for target in ([7, 0], [-1, 0]):
        with pytest.raises(ValueError, match="class labels for 3 classes"):
            pl.dream.dream(model, params, x, np.array(target, np.int32), steps=2)
    with pytest.raises(ValueError, match="x holds 2 examples but target 1"):
        pl.dream.dream(model, params, x, np.array([1], np.int32), steps=2)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        pl.dream.dream(model, params, x, np.array([1, 2], np.int32), steps=-1)


@pytest.mark.finding(13, issue=18)
def test_a_machine_is_fed_as_many_targets_as_inputs():
    machine = pl.learn.L(pl.nn.dense(2, 1), eps=0.1).machine()
    state = pl.nn.dense(2, 1).init(0)
    with pytest.raises(ValueError, match="4 inputs but 3 targets"):
        machine.run(state, [np.ones((1, 2))] * 4, [np.ones((1, 1))] * 3)
    with pytest.raises(ValueError, match="the targets ended after 3 ticks"):
        machine.run(state, (np.ones((1, 2)) for _ in range(4)), (np.ones((1, 1)) for _ in range(3)))


@pytest.mark.finding(14, issue=18)
def test_resuming_with_another_learning_rate_is_refused_naming_both(tmp_path):
    x, y = _data()
    _learner(lr=1e-2).fit(x, y, epochs=1, batch_size=6, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"learning_rate=0.01.* there, 0.5 here.*set_hyper"):
        _learner(lr=0.5).fit(x, y, epochs=2, batch_size=6, checkpoint_dir=tmp_path, resume=True, progress=False)
    _, losses = _learner(lr=1e-2).fit(x, y, epochs=2, batch_size=6, checkpoint_dir=tmp_path, resume=True,
                                      progress=False)
    assert len(losses) == 8


@pytest.mark.finding(15, issue=18)
def test_resuming_with_fewer_epochs_is_refused_and_a_user_folder_is_no_step(tmp_path):
    x, y = _data()
    _learner().fit(x, y, epochs=3, batch_size=6, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"at step 12, past the 8 steps of epochs=2; pass epochs >= 3"):
        _learner().fit(x, y, epochs=2, batch_size=6, checkpoint_dir=tmp_path, resume=True, progress=False)
    other = tmp_path / "other"
    (other / "123").mkdir(parents=True)
    (other / "123" / "notes.txt").write_text("mine")
    _, losses = _learner().fit(x, y, epochs=1, batch_size=6, checkpoint_dir=other, resume=True, progress=False)
    assert len(losses) == 4 and (other / "123" / "notes.txt").read_text() == "mine"


@pytest.mark.finding(16, issue=18)
def test_seq_takes_terms_only():
    with pytest.raises(TypeError, match="seq takes terms"):
        pl.seq(3)
    with pytest.raises(TypeError, match="got str"):
        pl.seq(pl.nn.dense(2, 2), "relu")


@pytest.mark.finding(17, issue=18)
def test_an_integer_layer_is_refused_rather_than_drawn_as_zeros():
    with pytest.raises(ValueError, match="dense: dtype='int32' is not a floating-point dtype"):
        pl.nn.dense(2, 3, dtype="int32")
    with pytest.raises(ValueError, match="mlp: dtype='int64'"):
        pl.nn.mlp([2, 3], dtype="int64")

    @pl.para
    def counts(x: pl.Array(2, dtype="int32"), w: pl.Param(2, 2, dtype="int32")):
        return x @ w
    with pytest.raises(ValueError, match="draws real numbers, which a int32 parameter would round to zeros"):
        counts.init(0)


@pytest.mark.finding(18, issue=18)
def test_a_float64_model_on_jax_without_x64_is_refused_naming_the_switch():
    code = textwrap.dedent("""
        import jax, paralens as pl
        assert not jax.config.jax_enable_x64
        for make in (lambda: pl.nn.dense(3, 2, dtype="float64").init(backend="jax"),
                     lambda: pl.backends.get("jax").compile(pl.nn.dense(3, 2, dtype="float64"))):
            try:
                make()
            except TypeError as e:
                assert "jax_enable_x64" in str(e), e
            else:
                raise SystemExit("not refused")
        assert pl.nn.dense(3, 2).init(backend="jax")["dense.W"].dtype == "float32"
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "JAX_ENABLE_X64": "0"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.finding(19, issue=18)
def test_set_hyper_checks_values_as_the_optimizer_does():
    learner = _learner()
    state = learner.init(0)
    with pytest.raises(ValueError, match=r"learning_rate=-1.0 is out of range: expected a number >= 0"):
        learner.set_hyper(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"b2=1.5 is out of range"):
        learner.set_hyper(state, b2=1.5)
    assert float(learner.set_hyper(state, learning_rate=0.5)["hyper"]["learning_rate"]) == 0.5


@pytest.mark.finding(20, issue=18)
def test_bilevel_methods_refuse_solves_that_cannot_converge():
    with pytest.raises(ValueError, match="solver_steps must be a positive int, got 0"):
        pl.bilevel.implicit(200, "cg", 0)
    with pytest.raises(ValueError, match=r"tol_decay=1.1 is out of range: expected a number in \(0, 1\)"):
        pl.bilevel.hoag(tol_decay=1.1)
    with pytest.raises(ValueError, match="tol0"):
        pl.bilevel.hoag(tol0=0.0)


@pytest.mark.finding(21, issue=18)
def test_device_labels_out_of_range_give_a_nan_loss_and_fit_stops():
    x, y = _data()
    learner = _learner()
    step = learner.compile("jax", donate=False)
    state = learner.init(0, "jax")
    _, good = step(state, jnp.asarray(x[:6]), jnp.asarray(y[:6]))
    bad_y = jnp.asarray(y[:6]).at[2].set(7)
    _, bad = step(state, jnp.asarray(x[:6]), bad_y)
    assert np.isfinite(float(good)) and np.isnan(float(bad))
    _, bad = step(state, jnp.asarray(x[:6]), jnp.asarray(y[:6]).at[0].set(-1))
    assert np.isnan(float(bad))


@pytest.mark.finding(22, issue=18)
@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_sigterm_checkpoints_and_stops_like_ctrl_c(backend, tmp_path):
    from test_fitting import _InterruptAt

    x, y = _data()
    learner = _learner()
    with _InterruptAt(pl.backends.get(backend), 2, sig=signal.SIGTERM) as at:
        with pytest.raises(TrainingInterrupted) as info:
            learner.fit(x, y, epochs=4, batch_size=6, every=4, checkpoint_dir=tmp_path, backend=backend,
                        progress=False)
        assert signal.getsignal(signal.SIGTERM) is at.before
    assert info.value.signal_name == "terminated" and info.value.step == 8
    with Checkpoints(tmp_path) as saved:
        assert saved.steps()[-1] == 8
    whole, _ = learner.fit(x, y, epochs=4, batch_size=6, backend=backend, progress=False)
    resumed, _ = learner.fit(x, y, epochs=4, batch_size=6, checkpoint_dir=tmp_path, resume=True, backend=backend,
                             progress=False)
    for k in whole["params"]:
        np.testing.assert_array_equal(np.asarray(resumed["params"][k]), np.asarray(whole["params"][k]))


@pytest.mark.finding(23, issue=18)
def test_a_tampered_checkpoint_is_named_with_what_is_wrong(tmp_path):
    x, y = _data()
    _learner().fit(x, y, epochs=1, batch_size=6, checkpoint_dir=tmp_path, progress=False)
    record = next((tmp_path / "step_4" / "record").glob("*"))
    record.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"the checkpoint .*step_4 cannot be read: its record"):
        _learner().fit(x, y, epochs=2, batch_size=6, checkpoint_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"step_4 .*(another model|cannot be read)"):
        other = tmp_path / "other"
        _learner().fit(x, y, epochs=1, batch_size=6, checkpoint_dir=other, progress=False)
        _learner(model=pl.nn.mlp([4, 5, 3])).fit(x, y, epochs=2, batch_size=6, checkpoint_dir=other, resume=True,
                                                 progress=False)


@pytest.mark.finding(24, issue=18)
def test_the_docs_say_the_checksum_is_integrity_not_authentication():
    readme = pathlib.Path(ROOT, "README.md").read_text()
    training = pathlib.Path(ROOT, "docs", "training.md").read_text()
    from paralens.backends import artifacts
    for text in (readme, training, artifacts.__doc__):
        assert "integrity, not authentication" in " ".join(text.split()), text[:200]


@pytest.mark.finding(25, issue=18)
def test_the_ctrl_c_tests_pass_when_the_suite_starts_with_sigint_ignored():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_fitting.py::test_ctrl_c_without_a_checkpoint_dir_keeps_the_state"],
                       cwd=ROOT, capture_output=True, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert r.returncode == 0, r.stdout[-3000:]
    # and a fit started with SIGINT ignored leaves it ignored
    code = textwrap.dedent("""
        import signal, numpy as np, paralens as pl
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        L = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
        L.fit(np.ones((4, 2)), np.zeros((4, 1)), epochs=1, batch_size=2, backend="numpy", progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr[-2000:]


def test_the_z2_engines_read_integers_alike():
    @pl.para
    def passthrough(x: pl.z2.Bits(3)):
        return x + pl.constant([0, 0, 0], (3,), "bool", like=x)
    z2 = pl.backends.get("z2")
    data = np.array([[2, 3, 0]])
    a = z2.compile(passthrough)({}, data)
    b = z2.compile(passthrough, engine="jax")({}, data)
    assert np.asarray(a).tolist() == np.asarray(b).tolist() == [[False, True, False]]
    assert jax is not None


# ---------------------------------------------------------------- the same kinds, at other boundaries


def test_initial_parameters_of_another_shape_are_refused_not_broadcast():
    learner = pl.Learner(pl.nn.dense(4, 3), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
    for backend in ("numpy", "jax"):
        with pytest.raises(ValueError, match=r"shape \(3,\) where the type .* needs shape \(4, 3\)"):
            learner.init(params={"dense.W": np.ones(3)}, backend=backend)
    assert learner.init(params={"dense.W": np.ones((4, 3))})["params"]["dense.W"].shape == (4, 3)


def test_the_step_size_of_L_and_the_names_of_a_forward_gradient_are_checked():
    with pytest.raises(ValueError, match="eps=inf is not finite"):
        pl.learn.L(pl.nn.dense(2, 1), eps=float("inf"))
    with pytest.raises(TypeError, match="must be a number"):
        pl.learn.L(pl.nn.dense(2, 1), eps="0.1")
    objective = pl.nn.dense(3, 1) >> pl.losses.mse().at(pl.Array[1])
    with pytest.raises(TypeError, match="wrt is a list of parameter names"):
        pl.forward_gradient(objective, "dense.W")
