"""The compiled learner: parity with hand-written JAX + optax, one compile, scan, numpy."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl
from helpers import hand_written_step, xent

MODEL = dict(sizes=[8, 16, 16, 4])


def mse(pred, y):
    return jnp.mean(0.5 * jnp.sum((pred - y) ** 2, axis=-1))


CASES = [
    ("sgd", pl.optim.sgd(0.05), optax.sgd(0.05), pl.losses.mse(), mse, False),
    ("momentum", pl.optim.sgd(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9), pl.losses.mse(), mse, False),
    ("adam", pl.optim.adam(1e-2), optax.adam(1e-2), pl.losses.softmax_cross_entropy_with_integer_labels(),
     xent, True),
]


@pytest.mark.parametrize("name, opt, tx, loss, ref_loss, integer", CASES, ids=[c[0] for c in CASES])
def test_twenty_steps_equal_hand_written_jax_and_optax(name, opt, tx, loss, ref_loss, integer):
    model = pl.nn.mlp(**MODEL, activation=pl.nn.tanh)
    learner = pl.Learner(model, loss=loss, optimizer=opt)
    state = learner.init(seed=0, backend="jax")
    step = learner.compile("jax")
    params = {k: jnp.array(v) for k, v in state["params"].items()}
    ostate = tx.init(params)
    ref = hand_written_step(model, tx, ref_loss)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal((32, 8)).astype(np.float32)
        y = rng.integers(0, 4, 32).astype(np.int32) if integer else rng.standard_normal((32, 4)).astype(np.float32)
        state, l1 = step(state, x, y)
        params, ostate, l2 = ref(params, ostate, x, y)
        np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(state["params"][k], params[k], rtol=1e-5, atol=1e-6)
    if name == "adam":  # optimizer state too: count, mu, nu
        adam_state, ours = ostate[0], state["opt"][0]  # ScaleByAdamState(count, mu, nu) as named fields
        assert int(ours["count"]) == int(adam_state.count) == 20
        for k in params:
            np.testing.assert_allclose(ours["mu"][k], adam_state.mu[k], rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(ours["nu"][k], adam_state.nu[k], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("count", [0, 41, 2**31 - 2, 2**31 - 1])
def test_step_and_adam_count_saturate_at_the_int32_maximum_as_optax(backend, count):
    # the learner's step count and Adam's count increment as optax's safe_increment: at int32's
    # largest value they stay there (a wrapped count would be negative, and Adam's bias correction
    # would divide by 1 - b1**-2**31); the update there equals optax's from the same state (Adam with
    # injected hyperparameters, whose 1 - b2 is, as paralens's, a float32 computed at run time)
    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    state = learner.init(0, backend=backend)
    as_array = jnp.asarray if backend == "jax" else np.asarray
    state["step"] = as_array(count, np.int32)
    state["opt"][0]["count"] = as_array(count, np.int32)
    rng = np.random.default_rng(count % 7)
    x, y = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32)
    params = {k: jnp.array(v) for k, v in state["params"].items()}  # before the step takes the state
    new, _ = learner.compile(backend)(state, x, y)
    expect = int(optax.safe_increment(jnp.asarray(count, jnp.int32)))
    assert expect == min(count + 1, 2**31 - 1)
    for got in (new["step"], new["opt"][0]["count"]):
        assert np.asarray(got).dtype == np.int32 and int(got) == expect
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
    ostate = tx.init(params)
    adam = ostate.inner_state[0]._replace(count=jnp.asarray(count, jnp.int32))
    ostate = ostate._replace(inner_state=(adam, *ostate.inner_state[1:]))
    params, ostate, _ = hand_written_step(pl.nn.mlp([3, 4, 2]), tx, mse)(params, ostate, x, y)
    assert int(ostate.inner_state[0].count) == expect
    for k in params:
        np.testing.assert_allclose(new["params"][k], params[k], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_static_hyperparameters_are_compiled_in_and_train_as_run_time_ones_and_as_optax(backend):
    def learner(static):
        return pl.Learner(pl.nn.mlp([3, 5, 2], activation=pl.nn.tanh), loss=pl.losses.mse(),
                          optimizer=pl.optim.adam(1e-2, b1=0.8), static_hyper=static)
    fixed, free, part = learner(True), learner(False), learner(["b1", "b2", "eps"])
    assert fixed.static_hyper == {"learning_rate", "b1", "b2", "eps", "eps_root"} and free.static_hyper == set()
    states = {name: lr.init(0, backend=backend) for name, lr in (("fixed", fixed), ("free", free), ("part", part))}
    assert states["fixed"]["hyper"] == {} and sorted(states["part"]["hyper"]) == ["eps_root", "learning_rate"]
    # the step reads no hyperparameter input: its program takes only params, opt state, step, x, y
    assert set(fixed.step_term.input_types()[0]["hyper"]) == set()
    params = {k: jnp.array(v) for k, v in states["free"]["params"].items()}
    tx = optax.adam(1e-2, b1=0.8)
    ostate, ref = tx.init(params), hand_written_step(pl.nn.mlp([3, 5, 2], activation=pl.nn.tanh), tx, mse)
    steps = {name: lr.compile(backend) for name, lr in (("fixed", fixed), ("free", free), ("part", part))}
    rng = np.random.default_rng(3)
    for _ in range(7):  # batch 7, an odd size
        x, y = rng.standard_normal((7, 3)).astype(np.float32), rng.standard_normal((7, 2)).astype(np.float32)
        losses = {}
        for name in steps:
            states[name], losses[name] = steps[name](states[name], x, y)
        params, ostate, l_ref = ref(params, ostate, x, y)
        assert float(losses["fixed"]) == float(losses["free"]) == float(losses["part"])
        np.testing.assert_allclose(losses["fixed"], l_ref, rtol=1e-5)
    for k in params:  # compiled in or read at run time, the same float32 arithmetic: equal
        np.testing.assert_array_equal(states["fixed"]["params"][k], states["free"]["params"][k])
        np.testing.assert_array_equal(states["part"]["params"][k], states["free"]["params"][k])
        np.testing.assert_allclose(states["fixed"]["params"][k], params[k], rtol=1e-5, atol=1e-6)
    # a run-time one still changes without a rebuild; a static one is refused by name
    a, b = part.set_hyper(states["part"], learning_rate=0.5), free.set_hyper(states["free"], learning_rate=0.5)
    (a, la), (b, lb) = steps["part"](a, x, y), steps["free"](b, x, y)
    assert float(la) == float(lb)
    for k in params:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])
    with pytest.raises(KeyError, match=r"\['b1'\] are compiled into the step"):
        part.set_hyper(states["part"], b1=0.5)


def test_static_hyper_is_checked_when_the_learner_is_built():
    def build(static, loss=None):
        return pl.Learner(pl.nn.mlp([3, 2]), loss=loss or pl.losses.mse(), optimizer=pl.optim.sgd(0.1),
                          static_hyper=static)
    for bad in ("learning_rate", 3, [1], None):
        with pytest.raises(TypeError, match="static_hyper must be True, False or a list"):
            build(bad)
    with pytest.raises(ValueError, match=r"static_hyper names \['b1'\], which are not the optimizer's"):
        build(["b1"])
    with pytest.raises(ValueError, match=r"\['huber.delta'\].*a model's or a loss's hyperparameter stays run-time"):
        build(["huber.delta"], pl.losses.huber(delta=1.0))
    assert build(("learning_rate",)).static_hyper == {"learning_rate"} == build(iter(["learning_rate"])).static_hyper


def test_one_compile_for_ten_calls_with_changing_learning_rate(caplog):
    learner = pl.Learner(pl.nn.mlp([4, 8, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-3))
    state = learner.init(0, backend="jax")
    step = learner.compile("jax")
    x, y = np.ones((16, 4), np.float32), np.zeros((16, 2), np.float32)
    losses = []
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        for i in range(10):
            state = learner.set_hyper(state, learning_rate=10.0 ** -(1 + i % 3))
            state, loss = step(state, x, y)
            losses.append(float(loss))
    compiles = [r for r in caplog.records if "Compiling" in r.getMessage() and "paralens_step" in r.getMessage()]
    assert len(compiles) == 1, [r.getMessage() for r in compiles]
    assert step._jit._cache_size() == 1
    assert losses[-1] < losses[0]


def test_changing_the_learning_rate_changes_the_step():
    learner = pl.Learner(pl.nn.dense(3, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
    step = learner.compile("jax", donate=False)
    s0 = learner.init(0, backend="jax")
    x, y = np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)
    a, _ = step(s0, x, y)
    b, _ = step(learner.set_hyper(s0, learning_rate=0.2), x, y)
    da = a["params"]["dense.b"] - s0["params"]["dense.b"]
    db = b["params"]["dense.b"] - s0["params"]["dense.b"]
    np.testing.assert_allclose(db, 2 * da, rtol=1e-6)


def test_scanned_steps_equal_single_steps_and_numpy_equals_jax():
    learner = pl.Learner(pl.nn.mlp([5, 7, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adam(1e-2))
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((6, 10, 5)).astype(np.float32)
    ys = rng.integers(0, 3, (6, 10)).astype(np.int32)
    many = learner.compile("jax", scan=True)
    s_scan, losses = many(learner.init(0, backend="jax"), xs, ys)
    one = learner.compile("jax")
    s1 = learner.init(0, backend="jax")
    s_np = learner.init(0)
    step_np = learner.compile("numpy")
    for k in range(6):
        s1, l1 = one(s1, xs[k], ys[k])
        s_np, l_np = step_np(s_np, xs[k], ys[k])
        np.testing.assert_allclose(losses[k], l1, rtol=1e-5)
        np.testing.assert_allclose(l_np, l1, rtol=1e-4)
    for k in s1["params"]:
        np.testing.assert_allclose(s_scan["params"][k], s1["params"][k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s_np["params"][k], s1["params"][k], rtol=1e-4, atol=1e-5)


def test_fit_returns_history_and_state_is_plain_pytree():
    x = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [2.0], [-1.0]], np.float32))
    learner = pl.Learner(pl.nn.dense(3, 1), loss=pl.losses.mse(), optimizer=pl.optim.adam(0.05))
    state, history = learner.fit(x, y, epochs=20, batch_size=10, seed=0, progress=False)
    assert history.shape == (200,) and history[-1] < 0.05 * history[0]
    leaves, treedef = jax.tree_util.tree_flatten(state)
    assert all(isinstance(l, jax.Array) for l in leaves)
    assert set(state) == {"params", "opt", "hyper", "step"} and int(state["step"]) == 200
    with pytest.raises(KeyError, match="unknown hyperparameters"):
        learner.set_hyper(state, lr=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        learner.fit(x, y, batch_size=1000)


def test_loss_type_mismatch_is_a_build_time_error():
    with pytest.raises(TypeError, match="the loss"):
        pl.Learner(pl.nn.dense(3, 2), loss=pl.losses.mse().at(pl.Array[3]), optimizer=pl.optim.sgd())


# ---------------------------------------------------------------- the learner, assembled from lenses

def test_the_step_is_assembled_from_four_lenses_and_drawn_as_four_parts(tmp_path):
    learner = pl.Learner(pl.nn.mlp([3, 4, 2]), loss=pl.losses.mse(), optimizer=pl.optim.adam(1e-2))
    step = learner.step_term
    assert {e.group[0] for e in step.eqns} == {"model", "loss", "learning rate", "optimizer"}
    model_boxes = [e.prim.name for e in step.eqns if e.group[0] == "model"]
    assert model_boxes.count("relu") == 1  # the model's forward part runs once: its backward reads residuals
    svg = pl.draw(learner, str(tmp_path / "learner.svg"))
    text = (tmp_path / "learner.svg").read_text()
    for part in ("model", "loss", "learning rate", "optimizer"):
        assert f">{part}<" in text, part
    assert svg.endswith(".svg")
    # the state's types are read off the step term: what init returns, compile takes
    state = learner.init(0)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(step.input_types()[0])


def test_model_and_loss_hyperparameters_are_state_and_change_without_recompiling(caplog):
    model = pl.nn.dense(3, 4) >> pl.nn.leaky_relu(pl.hyperparameter(0.1)) >> pl.nn.dense(4, 2)
    learner = pl.Learner(model, loss=pl.losses.huber(pl.hyperparameter(0.5)), optimizer=pl.optim.sgd(0.1))
    state = learner.init(0, backend="jax")
    assert sorted(state["hyper"]) == ["huber.delta", "leaky_relu.negative_slope", "learning_rate"]
    assert set(state["params"]) == {"dense0.W", "dense0.b", "dense1.W", "dense1.b"}
    step = learner.compile("jax", donate=False)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)).astype(np.float32), 3 * rng.standard_normal((8, 2)).astype(np.float32)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        outs = [step(learner.set_hyper(state, **{"huber.delta": d, "leaky_relu.negative_slope": a}), x, y)[1]
                for d, a in ((0.5, 0.1), (2.0, 0.1), (0.5, 0.3))]
    assert len([r for r in caplog.records if "Compiling" in r.getMessage() and "paralens_step" in r.getMessage()]) == 1
    assert len({float(l) for l in outs}) == 3  # each hyperparameter changes the loss

    def by_hand(p, delta, slope):  # the same objective in JAX
        h = x @ p["dense0.W"] + p["dense0.b"]
        h = jnp.where(h > 0, h, slope * h)
        return jnp.mean(optax.huber_loss(h @ p["dense1.W"] + p["dense1.b"], y, delta=delta).sum(-1))
    np.testing.assert_allclose(outs[1], by_hand(state["params"], 2.0, 0.1), rtol=1e-6)
    np.testing.assert_allclose(learner.predict(state, x, backend="jax"),
                               pl.backends.get("jax").compile(model)(learner.model_params(state), x))


def test_the_learner_refuses_what_is_not_a_lens():
    with pytest.raises(TypeError, match="from_optax"):
        pl.Learner(pl.nn.dense(3, 1), loss=pl.losses.mse(), optimizer=optax.adam(1e-3))
    with pytest.raises(TypeError, match="must be a term"):
        pl.Learner(lambda x: x, loss=pl.losses.mse(), optimizer=pl.optim.sgd())
