"""from_optax: any optax transformation as a paralens optimizer lens."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl
from helpers import hand_written_step, xent
from paralens.backends import datasets


@pytest.mark.parametrize("make", [lambda: optax.lion(3e-3), lambda: optax.lamb(3e-2)], ids=["lion", "lamb"])
def test_from_optax_trains_digits_mlp_like_optax_alone(make):
    x_tr, y_tr, _, _ = datasets.digits()
    model = pl.nn.mlp([64, 32, 10])
    learner = pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.from_optax(make()))
    state = learner.init(seed=0, backend="jax")
    step = learner.compile("jax")
    tx = make()
    params = {k: jnp.asarray(v) for k, v in learner.init(seed=0)["params"].items()}
    ostate = tx.init(params)
    ref = hand_written_step(model, tx, xent)

    losses = []
    for i in range(60):
        j = i % (len(x_tr) // 32)
        x, y = x_tr[32 * j: 32 * (j + 1)], y_tr[32 * j: 32 * (j + 1)]
        state, l1 = step(state, x, y)
        params, ostate, l2 = ref(params, ostate, x, y)
        losses.append(float(l1))
    for k in params:
        np.testing.assert_allclose(state["params"][k], params[k], rtol=1e-5, atol=1e-6)
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])


def test_from_optax_state_is_optax_state_leaves_and_opaque_to_R():
    tx = pl.optim.from_optax(optax.adam(1e-2))
    specs = tx.state({"w": pl.Param(3)})
    assert len(specs) == 3  # count, mu, nu
    learner = pl.Learner(pl.nn.dense(3, 1), loss=pl.losses.mse(), optimizer=tx)
    state = learner.init(0)
    step = learner.compile("numpy")
    new, _ = step(state, np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32))
    assert int(np.asarray(new["opt"][0])) == 1  # optax's leaves in optax's order: the count first
    with pytest.raises(NotImplementedError, match="opaque"):
        pl.R(learner.step_term)


def test_to_optax_runs_in_an_optax_chain():
    tx = optax.chain(optax.clip_by_global_norm(1.0), pl.optim.to_optax(pl.optim.adam(0.1)))
    params = {"w": jnp.array([3.0, -2.0])}
    state = tx.init(params)
    for _ in range(200):
        g = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
        u, state = tx.update(g, state, params)
        params = optax.apply_updates(params, u)
    assert float(jnp.abs(params["w"]).max()) < 0.05


@pytest.mark.parametrize("name, fields", [
    ("my\noptimizer!'); import os #", ("m",)),  # a hostile name: only its letters name the class
    ("x", ("a b", "class")),                      # fields no namedtuple takes: the state is a dict
    ("层 adam", ("mu",)),
])
def test_to_optax_state_of_any_named_transform(name, fields):
    from paralens.optim import Leaf, State, per_param

    def update(h, s, params, updates):
        return {k: {n: s[k][n] + g for n, g in updates.items()} for k in fields}, updates
    t = pl.optim.to_optax(Leaf(name, [], State(**{k: per_param() for k in fields}), update))
    p = {"w": jnp.ones(2)}
    state = t.init(p)
    _, state = t.update({"w": jnp.ones(2)}, state, p)
    _, state = t.update({"w": jnp.ones(2)}, state, p)
    got = [state[k] if isinstance(state, dict) else getattr(state, k) for k in fields]
    for field in got:
        np.testing.assert_array_equal(field["w"], [2.0, 2.0])
    assert isinstance(state, dict) == (name == "x")
