"""Training runs that survive: checkpoints and bit-exact resume, Ctrl-C, non-finite losses,
and the data checks at fit, step, predict and accuracy (backends/fitting.py, backends/validate.py)."""

import os
import signal
import warnings

import jax
import numpy as np
import pytest

import paralens as pl
from paralens import backends
from paralens.backends.fitting import NonFiniteLossWarning, TrainingInterrupted

BACKENDS = ["numpy", "jax"]


def _data(n=45, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (np.argmax(x[:, :classes], axis=1)).astype(np.int32)
    return x, y


def _learner(lr=0.05):
    return pl.Learner(pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.adam(lr))


def _leaves(state):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(state)]


def assert_bitwise_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for u, v in zip(_leaves(a), _leaves(b)):
        assert u.dtype == v.dtype and np.array_equal(u, v), (u, v)


class _InterruptAt:
    """Wrap a backend's scanned step so that its ``k``-th call delivers ``sig`` (SIGINT, as Ctrl-C
    would) to this process, in the middle of that chunk of steps. While it is on, SIGINT has
    Python's own handler, whatever the suite was started with (a script may start it with SIGINT
    ignored); ``self.before`` is the handler the run found."""

    def __init__(self, backend, k, sig=signal.SIGINT):
        self.backend, self.k, self.calls, self.sig = backend, k, 0, sig
        self.compile_step = backend.compile_step

    def __enter__(self):
        self.outer = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.before = signal.getsignal(self.sig)
        def compile_step(step, **options):
            many = self.compile_step(step, **options)

            def interrupted(state, xs, ys):
                self.calls += 1
                if self.calls == self.k:
                    os.kill(os.getpid(), self.sig)
                return many(state, xs, ys)
            return interrupted
        self.backend.compile_step = compile_step
        return self

    def __exit__(self, *exc):
        del self.backend.compile_step
        signal.signal(signal.SIGINT, self.outer)


@pytest.mark.finding(5)
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_after_ctrl_c_is_bit_exact(backend, tmp_path):
    """Ctrl-C during the third chunk of steps (0-4, 4-8, 8-9: chunks end at every 4th step and
    at each epoch's end), resume: parameters, optimizer state and losses equal the
    uninterrupted run's bit for bit."""
    x, y = _data()
    learner = _learner()
    kw = dict(epochs=5, batch_size=5, seed=3, backend=backend, progress=False)
    full, full_losses = learner.fit(x, y, **kw)
    with _InterruptAt(backends.get(backend), 3), pytest.raises(TrainingInterrupted) as info:
        learner.fit(x, y, checkpoint_dir=tmp_path / "ck", every=4, **kw)
    assert info.value.step == 9 and "resume=True" in str(info.value)
    assert len(info.value.losses) == 9
    with pytest.raises(FileExistsError, match="resume=True"):
        learner.fit(x, y, checkpoint_dir=tmp_path / "ck", every=4, **kw)
    resumed, losses = learner.fit(x, y, checkpoint_dir=tmp_path / "ck", every=4, resume=True, **kw)
    assert_bitwise_equal(resumed, full)
    assert np.array_equal(losses, full_losses) and len(losses) == 45
    assert sorted(int(d[5:]) for d in os.listdir(tmp_path / "ck") if d.startswith("step_")) == [40, 44, 45]


@pytest.mark.finding(4)
def test_ctrl_c_without_a_checkpoint_dir_keeps_the_state(tmp_path):
    x, y = _data()
    with _InterruptAt(backends.get("numpy"), 2) as at:
        with pytest.raises(TrainingInterrupted) as info:
            _learner().fit(x, y, epochs=4, batch_size=5, backend="numpy", progress=False)
        # the handler is restored: a later Ctrl-C is handled as it was before the run
        assert signal.getsignal(signal.SIGINT) is at.before
    e = info.value
    assert e.checkpoint is None and e.step == 18 and int(e.state["step"]) == 18
    assert "checkpoint_dir" in str(e)


@pytest.mark.finding(6)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_from_a_state_continues_the_data_order(backend):
    x, y = _data()
    learner = _learner()
    kw = dict(batch_size=4, seed=1, backend=backend, progress=False)
    once, losses = learner.fit(x, y, epochs=6, **kw)
    half, first = learner.fit(x, y, epochs=3, **kw)
    twice, second = learner.fit(x, y, epochs=3, state=half, **kw)
    assert_bitwise_equal(twice, once)
    assert np.array_equal(np.concatenate([first, second]), losses)


def test_a_float64_run_resumes_with_its_float64_losses(tmp_path):
    """The losses before the checkpoint come back in the run's dtype, not rounded to float32."""
    x, y = _data()  # the suite runs with x64 on (conftest)
    learner = pl.Learner(pl.nn.mlp([4, 5, 3], dtype="float64"),
                         loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(0.05))
    kw = dict(batch_size=5, backend="numpy", progress=False)
    whole, losses = learner.fit(x.astype(np.float64), y, epochs=2, **kw)
    learner.fit(x.astype(np.float64), y, epochs=1, checkpoint_dir=tmp_path, **kw)
    resumed, again = learner.fit(x.astype(np.float64), y, epochs=2, checkpoint_dir=tmp_path, resume=True, **kw)
    assert again.dtype == np.float64 and np.array_equal(again, losses)
    assert_bitwise_equal(resumed, whole)


def test_resume_refuses_another_run(tmp_path):
    x, y = _data()
    learner = _learner()
    learner.fit(x, y, epochs=1, batch_size=5, backend="numpy", progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="the batch size differs"):
        learner.fit(x, y, epochs=1, batch_size=3, backend="numpy", progress=False, checkpoint_dir=tmp_path,
                    resume=True)
    with pytest.raises(ValueError, match="the data differs"):
        learner.fit(x + 1, y, epochs=1, batch_size=5, backend="numpy", progress=False, checkpoint_dir=tmp_path,
                    resume=True)
    with pytest.raises(ValueError, match="the backend differs"):  # its numbers (and random draws) differ
        learner.fit(x, y, epochs=2, batch_size=5, backend="jax", progress=False, checkpoint_dir=tmp_path,
                    resume=True)
    other = pl.Learner(pl.nn.mlp([4, 5, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                       optimizer=pl.optim.adam(0.05))
    with pytest.raises(ValueError, match="does not hold this learner's state"):
        other.fit(x, y, epochs=2, batch_size=5, backend="numpy", progress=False, checkpoint_dir=tmp_path,
                  resume=True)


def test_a_run_with_static_hyperparameters_resumes_only_with_the_same_values(tmp_path):
    x, y = _data()

    def learner(lr, static=True):
        return pl.Learner(pl.nn.mlp([4, 5, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                          optimizer=pl.optim.adam(lr), static_hyper=static)
    fit = dict(batch_size=5, backend="numpy", progress=False, checkpoint_dir=tmp_path)
    _, first = learner(0.05).fit(x, y, epochs=1, **fit)
    with pytest.raises(ValueError, match=r"compiled in other.*learning_rate=0.05 there, 0.5 here"):
        learner(0.5).fit(x, y, epochs=2, resume=True, **fit)
    with pytest.raises(ValueError, match=r"learning_rate=0.05 there, run-time here"):
        learner(0.05, ["b1"]).fit(x, y, epochs=2, resume=True, **fit)
    state, losses = learner(0.05).fit(x, y, epochs=2, resume=True, **fit)
    _, straight = learner(0.05).fit(x, y, epochs=2, batch_size=5, backend="numpy", progress=False)
    np.testing.assert_array_equal(losses, straight)  # resumed as if never stopped
    assert len(first) == len(losses) // 2 and int(state["step"]) == len(losses) and state["hyper"] == {}


@pytest.mark.finding(34)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_diverging_run_stops_with_the_last_good_state(backend, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32) * 10
    y = x @ np.ones((3, 1), np.float32)
    learner = pl.Learner(pl.nn.dense(3, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.5))
    kw = dict(epochs=30, batch_size=8, backend=backend, progress=False)
    with pytest.warns(NonFiniteLossWarning, match="training stopped: the loss became") as caught:
        state, losses = learner.fit(x, y, checkpoint_dir=tmp_path, every=5, **kw)
    import re
    (good,) = re.findall(r"last good checkpoint is step (\d+)", str(caught[0].message))
    assert len(caught) == 1 and int(good) == int(state["step"]) == len(losses) < 150
    assert np.all(np.isfinite(losses))
    assert all(np.all(np.isfinite(v)) for v in _leaves(state))
    with pytest.raises(FloatingPointError, match="the loss became"):
        learner.fit(x, y, on_nonfinite="raise", **kw)
    with pytest.warns(NonFiniteLossWarning, match="continues"):
        _, losses = learner.fit(x, y, on_nonfinite="continue", **kw)
    assert len(losses) == 150 and not np.all(np.isfinite(losses))
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        learner.fit(x, y, on_nonfinite="ignore", **kw)


# ---------------------------------------------------------------- the data checks


@pytest.mark.finding(13)
@pytest.mark.finding(14)
@pytest.mark.finding(15)
@pytest.mark.parametrize("bad", [-1, 3, 1000])
@pytest.mark.parametrize("backend", BACKENDS)
def test_labels_out_of_range_are_refused(bad, backend):
    x, y = _data()
    y[7] = bad
    learner = _learner()
    with pytest.raises(ValueError, match=rf"each must be in 0\.\.2; got {bad} at index 7"):
        learner.fit(x, y, epochs=1, batch_size=5, backend=backend, progress=False)
    step = learner.compile(backend)
    with pytest.raises(ValueError, match=f"got {bad} at index 7"):
        step(learner.init(backend=backend), x[:8], y[:8])
    with pytest.raises(ValueError, match=f"got {bad}"):
        learner.accuracy(learner.init(), x, y)


@pytest.mark.finding(16)
@pytest.mark.finding(17)
@pytest.mark.parametrize("nx,ny", [(30, 40), (40, 30)])
def test_fit_needs_one_label_per_input(nx, ny):
    x, y = _data(45)
    with pytest.raises(ValueError, match=f"x has {nx}, y has {ny}"):
        _learner().fit(x[:nx], y[:ny], epochs=1, batch_size=5, progress=False)
    with pytest.raises(ValueError, match="same number of examples"):
        _learner().accuracy(_learner().init(), x[:nx], y[:ny])


@pytest.mark.finding(18)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scan", [False, True])
def test_a_step_refuses_one_label_for_a_batch(backend, scan):
    x, y = _data()
    learner = _learner()
    step = learner.compile(backend, scan=scan)
    xs, ys = (x[:8], y[:1]) if not scan else (x[:16].reshape(2, 8, 4), y[:2].reshape(2, 1))
    with pytest.raises(ValueError, match="share a batch"):
        step(learner.init(backend=backend), xs, ys)


@pytest.mark.finding(18)
@pytest.mark.parametrize("scan", [False, True])
def test_a_jax_step_refuses_mismatched_device_arrays(scan):
    """Data already on the device takes the step's quick path: the program's trace compares the
    leading sizes (static shapes), so each mismatched call is refused, before a good call and after."""
    x, y = _data()
    learner = _learner()
    step = learner.compile("jax", scan=scan)
    if scan:
        cases = [(x[:16].reshape(2, 8, 4), y[:2].reshape(2, 1)), (x[:16].reshape(2, 8, 4), y[:24].reshape(3, 8))]
    else:
        cases = [(x[:8], y[:1]), (x[:1], y[:8])]
    for xs, ys in cases:
        with pytest.raises(ValueError, match="share a batch"):
            step(learner.init(backend="jax"), jax.device_put(xs), jax.device_put(ys))
    good = (x[:16].reshape(2, 8, 4), y[:16].reshape(2, 8)) if scan else (x[:8], y[:8])
    state, loss = step(learner.init(backend="jax"), *map(jax.device_put, good))
    want = learner.compile("jax", scan=scan)(learner.init(backend="jax"), *good)[1]
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(want))
    for xs, ys in cases + cases:  # a refused trace is not cached: refused again
        with pytest.raises(ValueError, match="share a batch"):
            step(state, jax.device_put(xs), jax.device_put(ys))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(state["params"]))


@pytest.mark.finding(19)
@pytest.mark.finding(20)
@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_data_keeps_a_float32_state(backend):
    x, y = _data()
    learner = _learner()
    state, _ = learner.fit(x.astype(np.float64), y.astype(np.int64), epochs=1, batch_size=5, backend=backend,
                           progress=False)
    state, _ = learner.compile(backend)(state, x[:5].astype(np.float64), y[:5].astype(np.int64))
    for v in jax.tree_util.tree_leaves({k: state[k] for k in ("params", "opt")}):
        assert np.asarray(v).dtype in (np.float32, np.int32), np.asarray(v).dtype
    assert learner.predict(state, x.astype(np.float64)).dtype == np.float32


@pytest.mark.finding(21)
@pytest.mark.parametrize("backend", BACKENDS)
def test_r_of_a_float32_term_returns_float32_cotangents_for_float64_input(backend):
    f = pl.nn.dense(3, 2)
    params = {k: np.asarray(v, np.float64) for k, v in backends.get("numpy").init(f).items()}
    x = np.ones((4, 3))
    dy = np.ones((4, 2))
    _, dparams, dx = backends.get(backend).compile(pl.lens(f).as_term())(params, x, dy)
    assert {np.asarray(v).dtype for v in dparams.values()} == {np.dtype(np.float32)}
    assert np.asarray(dx).dtype == np.float32


@pytest.mark.finding(22)
@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_and_text_data_are_refused(backend):
    x, y = _data()
    learner = _learner()
    with pytest.raises(TypeError, match="x is complex"):
        learner.fit(x + 1j, y, epochs=1, batch_size=5, backend=backend, progress=False)
    with pytest.raises(TypeError, match="complex"):
        learner.predict(learner.init(), x.astype(np.complex64), backend=backend)
    with pytest.raises(TypeError, match="not numbers"):
        learner.predict(learner.init(), x.astype(str), backend=backend)
    with pytest.raises((TypeError, ValueError), match="fractional|integers"):
        learner.fit(x, y + 0.5, epochs=1, batch_size=5, backend=backend, progress=False)


@pytest.mark.finding(23)
def test_backends_agree_on_float64_data_into_a_float32_term():
    f = pl.nn.mlp([4, 8, 3], activation=pl.nn.tanh)
    params = backends.get("numpy").init(f)
    x = np.random.default_rng(0).standard_normal((6, 4)) * 3
    outs = [np.asarray(backends.get(b).compile(f)(params, x)) for b in BACKENDS]
    assert all(o.dtype == np.float32 for o in outs)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6, atol=1e-6)


@pytest.mark.finding(29)
@pytest.mark.parametrize("bad,error", [(8.0, TypeError), (True, TypeError), (0, ValueError), (-3, ValueError),
                                       (46, ValueError)])
def test_batch_size_must_be_a_positive_int(bad, error):
    x, y = _data()
    with pytest.raises(error, match="batch_size"):
        _learner().fit(x, y, epochs=1, batch_size=bad, progress=False)


@pytest.mark.finding(30)
def test_an_optax_optimizer_is_refused_with_the_way_to_wrap_it():
    optax = pytest.importorskip("optax")
    with pytest.raises(TypeError, match="pl.optim.from_optax"):
        pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=optax.adam(1e-3))
    learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.from_optax(optax.adam(1e-3)))
    state, losses = learner.fit(np.ones((8, 2)), np.zeros((8, 1)), epochs=2, batch_size=4, progress=False)
    assert losses.shape == (4,)


@pytest.mark.finding(31)
def test_nan_data_is_refused_before_training():
    x, y = _data()
    x[11, 2] = np.nan
    with pytest.raises(ValueError, match="x has 1 non-finite values .* example 11"):
        _learner().fit(x, y, epochs=1, batch_size=5, progress=False)


@pytest.mark.finding(32)
def test_set_hyper_refuses_a_nan_learning_rate():
    learner = _learner()
    with pytest.raises(ValueError, match="learning_rate=nan is not finite"):
        learner.set_hyper(learner.init(), learning_rate=float("nan"))


def test_checks_do_not_change_valid_runs():
    """Batch 1 and odd batch sizes train, on both backends, to the same losses."""
    x, y = _data(21)
    learner = _learner()
    runs = [learner.fit(x, y, epochs=2, batch_size=b, backend=be, progress=False)[1]
            for b in (1, 7) for be in BACKENDS]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs[2], runs[3], rtol=1e-4, atol=1e-5)
    assert len(runs[0]) == 42 and len(runs[2]) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.fit(x, y, epochs=1, batch_size=3, progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_random_key_of_a_forward_gradient_run_is_checkpointed(backend, tmp_path):
    """A forward-gradient learner's state carries its random key: a run resumed (and extended)
    from a checkpoint draws the same tangents as one run."""
    x, y = _data()
    learner = pl.Learner(pl.nn.mlp([4, 8, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.sgd(0.1), gradient="forward")
    kw = dict(batch_size=5, backend=backend, progress=False)
    whole, _ = learner.fit(x, y, epochs=4, **kw)
    learner.fit(x, y, epochs=2, checkpoint_dir=tmp_path, **kw)
    resumed, losses = learner.fit(x, y, epochs=4, checkpoint_dir=tmp_path, resume=True, **kw)
    assert_bitwise_equal(resumed, whole)
    assert len(losses) == 36


def test_a_circuits_run_is_counted_by_fit_and_resumes_bit_exactly(tmp_path):
    """A circuit's step runs on bits only, so fit keeps its step count; resume still matches."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (24, 3)).astype(bool)
    y = np.stack([x[:, 0] ^ x[:, 1], x[:, 2]], axis=1)
    learner = pl.z2.rda_learner(pl.z2.dense(3, 2))
    assert not learner.counts_steps and "step" not in learner.init(backend="z2")
    kw = dict(batch_size=4, backend="z2", progress=False)
    whole, losses = learner.fit(x, y, epochs=4, **kw)
    assert int(whole["step"]) == 24 == len(losses)
    learner.fit(x, y, epochs=2, checkpoint_dir=tmp_path, **kw)
    resumed, _ = learner.fit(x, y, epochs=4, checkpoint_dir=tmp_path, resume=True, **kw)
    assert_bitwise_equal(resumed, whole)


def test_quieting_orbax_from_two_threads_leaves_the_log_levels_as_they_were():
    """Two checkpoint operations overlapping (nested, or in two threads) used to restore each
    other's CRITICAL: JAX's compile log stayed silent for the rest of the process."""
    import logging
    import threading

    from paralens.backends.checkpoint import _quiet_orbax

    jax_log = logging.getLogger("jax")
    before = jax_log.level
    entered, release = threading.Event(), threading.Event()

    def other():
        with _quiet_orbax():
            entered.set()
            release.wait(10)
    t = threading.Thread(target=other)
    with _quiet_orbax():          # this one first ...
        t.start()
        entered.wait(10)
        assert jax_log.level == logging.CRITICAL
    assert jax_log.level == logging.CRITICAL   # ... leaves while the other is still inside
    release.set()
    t.join(10)
    assert jax_log.level == before
    with _quiet_orbax(), _quiet_orbax():
        pass
    assert jax_log.level == before
