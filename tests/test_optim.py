"""Optimizers: equal to optax step for step (float64), inside a learner (float32), convergent."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paralens as pl
from helpers import hand_written_step, xent

O = pl.optim
SCHED = O.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100)
OPTAX_SCHED = optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100)
mask = {"['a']": True, "['b']": False, "['c']": True}

# (paralens, optax) pairs: defaults and non-default hyperparameters
PAIRS = {
    "sgd": (O.sgd(0.1), optax.sgd(0.1)),
    "sgd_schedule": (O.sgd(SCHED), optax.sgd(OPTAX_SCHED)),
    "momentum": (O.sgd(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
    "momentum_alias": (O.momentum(0.05, 0.5), optax.sgd(0.05, momentum=0.5)),
    "nesterov": (O.sgd(0.05, momentum=0.9, nesterov=True), optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "nesterov_alias": (O.nesterov(0.02, 0.7), optax.sgd(0.02, momentum=0.7, nesterov=True)),
    "adagrad": (O.adagrad(0.1), optax.adagrad(0.1)),
    "adagrad_custom": (O.adagrad(0.3, 0.5, 1e-4), optax.adagrad(0.3, 0.5, 1e-4)),
    "rmsprop": (O.rmsprop(0.01), optax.rmsprop(0.01)),
    "rmsprop_custom": (O.rmsprop(0.02, 0.8, 1e-6, 0.1, eps_in_sqrt=False, momentum=0.5, nesterov=True,
                                 bias_correction=True),
                       optax.rmsprop(0.02, 0.8, 1e-6, 0.1, eps_in_sqrt=False, momentum=0.5, nesterov=True,
                                     bias_correction=True)),
    "rmsprop_centered": (O.rmsprop(0.01, centered=True), optax.rmsprop(0.01, centered=True)),
    "rmsprop_centered_custom": (O.rmsprop(0.01, 0.95, centered=True, momentum=0.3, bias_correction=True),
                                optax.rmsprop(0.01, 0.95, centered=True, momentum=0.3, bias_correction=True)),
    "adam": (O.adam(0.01), optax.adam(0.01)),
    "adam_custom": (O.adam(0.03, 0.8, 0.99, 1e-6, 1e-9, nesterov=True),
                    optax.adam(0.03, 0.8, 0.99, 1e-6, 1e-9, nesterov=True)),
    "adamw": (O.adamw(0.01), optax.adamw(0.01)),
    "adamw_masked": (O.adamw(0.01, weight_decay=0.3, mask=mask),
                     optax.adamw(0.01, weight_decay=0.3, mask={"a": True, "b": False, "c": True})),
    "amsgrad": (O.amsgrad(0.01), optax.amsgrad(0.01)),
    "amsgrad_custom": (O.amsgrad(0.02, 0.8, 0.9, bias_correction_mu=False, bias_correction_nu=False),
                       optax.amsgrad(0.02, 0.8, 0.9, bias_correction_mu=False, bias_correction_nu=False)),
    "adopt": (O.adopt(0.01), optax.contrib.adopt(0.01)),
    "adopt_custom": (O.adopt(0.02, 0.8, 0.99, 1e-5, nesterov=True, use_clipping=False),
                     optax.contrib.adopt(0.02, 0.8, 0.99, 1e-5, nesterov=True, use_clipping=False)),
    "dog": (O.dog(), optax.contrib.dog()),
    "dog_distance": (O.dog(0.5, ("distance", 1e-3), weight_decay=1e-2),
                     optax.contrib.dog(0.5, ("distance", 1e-3), weight_decay=1e-2)),
    "dog_learning_rate": (O.dog(init_step=("learning_rate", 0.1)),
                          optax.contrib.dog(init_step=("learning_rate", 0.1))),
    "clip_by_global_norm": (O.chain(O.clip_by_global_norm(3.0), O.adam(0.01)),
                            optax.chain(optax.clip_by_global_norm(3.0), optax.adam(0.01))),
    "exponential_decay": (O.adam(O.exponential_decay(0.1, 10, 0.5, 5, staircase=True, end_value=0.01)),
                          optax.adam(optax.exponential_decay(0.1, 10, 0.5, 5, staircase=True, end_value=0.01))),
    "cosine_decay": (O.sgd(O.cosine_decay_schedule(0.1, 50, 0.1)),
                     optax.sgd(optax.cosine_decay_schedule(0.1, 50, 0.1))),
    "linear_warmup": (O.sgd(O.linear_schedule(0.0, 0.1, 20)), optax.sgd(optax.linear_schedule(0.0, 0.1, 20))),
    # the rest of the optimizers optax's alias tests cover
    "sign_sgd": (O.sign_sgd(0.01), optax.sign_sgd(0.01)),
    "signum": (O.signum(0.01, 0.8), optax.signum(0.01, 0.8)),
    "adamax": (O.adamax(0.01), optax.adamax(0.01)),
    "adamaxw": (O.adamaxw(0.01, 0.8, 0.99, 1e-6, 0.1), optax.adamaxw(0.01, 0.8, 0.99, 1e-6, 0.1)),
    "nadam": (O.nadam(0.01), optax.nadam(0.01)),
    "nadamw": (O.nadamw(0.01, weight_decay=0.05), optax.nadamw(0.01, weight_decay=0.05)),
    "lion": (O.lion(0.01), optax.lion(0.01)),
    "yogi": (O.yogi(0.05), optax.yogi(0.05)),
    "adabelief": (O.adabelief(0.01), optax.adabelief(0.01)),
    "adabelief_nesterov": (O.adabelief(0.01, 0.8, eps=1e-8, nesterov=True),
                           optax.adabelief(0.01, 0.8, eps=1e-8, nesterov=True)),
    "radam": (O.radam(0.01), optax.radam(0.01)),
    "radam_nesterov": (O.radam(0.01, 0.8, 0.9, threshold=3.0, nesterov=True),
                       optax.radam(0.01, 0.8, 0.9, threshold=3.0, nesterov=True)),
    "rprop": (O.rprop(0.01), optax.rprop(0.01)),
    "optimistic_gradient_descent": (O.optimistic_gradient_descent(0.01, 0.7, 0.1),
                                    optax.optimistic_gradient_descent(0.01, 0.7, 0.1)),
    "optimistic_adam_v2": (O.optimistic_adam_v2(0.01), optax.optimistic_adam_v2(0.01)),
    "adan": (O.adan(0.01), optax.adan(0.01)),
    "adan_decay": (O.adan(0.01, weight_decay=0.1), optax.adan(0.01, weight_decay=0.1)),
    "adadelta": (O.adadelta(0.1), optax.adadelta(0.1)),
    "adadelta_no_lr": (O.adadelta(weight_decay=0.01), optax.adadelta(weight_decay=0.01)),
    "lars": (O.lars(0.1, weight_decay=0.01), optax.lars(0.1, weight_decay=0.01)),
    "lamb": (O.lamb(0.01, weight_decay=0.01), optax.lamb(0.01, weight_decay=0.01)),
    "novograd": (O.novograd(0.01, weight_decay=0.01), optax.novograd(0.01, weight_decay=0.01)),
    "fromage": (O.fromage(0.01), optax.fromage(0.01)),
    # factored: the (3, 4) parameter's second moment kept as row and column means
    "adafactor_factored": (O.adafactor(0.05, min_dim_size_to_factor=3, momentum=0.5, weight_decay_rate=0.01),
                           optax.adafactor(0.05, min_dim_size_to_factor=3, momentum=0.5, weight_decay_rate=0.01)),
    "adafactor": (O.adafactor(), optax.adafactor()),
}


def tree(rng):
    return {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5), "c": np.float64(0.3)}


@pytest.mark.parametrize("name", list(PAIRS))
def test_to_optax_matches_optax_for_100_steps_float64(name):
    ours, ref = PAIRS[name]
    t1 = pl.optim.to_optax(ours)
    rng = np.random.default_rng(0)
    p1 = p2 = tree(rng)
    s1, s2 = t1.init(p1), ref.init(p2)
    up1, up2 = jax.jit(t1.update), jax.jit(ref.update)
    for step in range(100):
        g = jax.tree.map(lambda x: rng.standard_normal(np.shape(x)), p1)
        u1, s1 = up1(g, s1, p1)
        u2, s2 = up2(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
        for k in p2:
            np.testing.assert_allclose(p1[k], p2[k], rtol=1e-6, atol=1e-12, err_msg=f"{name} step {step} {k}")
            np.testing.assert_allclose(u1[k], u2[k], rtol=1e-6, atol=1e-12, err_msg=f"{name} step {step} {k}")


def test_adam_state_is_shaped_as_optax_state():
    t1, ref = pl.optim.to_optax(O.adam(0.01)), optax.adam(0.01)
    rng = np.random.default_rng(1)
    p = tree(rng)
    s1, s2 = t1.init(p), ref.init(p)
    for _ in range(10):
        g = jax.tree.map(lambda x: rng.standard_normal(np.shape(x)), p)
        _, s1 = t1.update(g, s1, p)
        _, s2 = ref.update(g, s2, p)
    # the same pytree structure as optax's, down to the class names and the params' shape
    assert type(s1[0]).__name__ == type(s2[0]).__name__ == "ScaleByAdamState" and s1[0]._fields == s2[0]._fields
    assert jax.tree.structure(s1[0].mu) == jax.tree.structure(p) and isinstance(s1[1], optax.EmptyState)
    assert int(s1[0].count) == int(s2[0].count) == 10
    for k in p:
        np.testing.assert_allclose(optax.tree.get(s1, "mu")[k], s2[0].mu[k], rtol=1e-6)
        np.testing.assert_allclose(s1[0].nu[k], s2[0].nu[k], rtol=1e-6)
    doubled = optax.tree.map_params(t1, lambda v: 2 * v, s1)
    np.testing.assert_allclose(doubled[0].mu["a"], 2 * s1[0].mu["a"])
    assert int(doubled[0].count) == 10  # not a copy of the params: left alone


def test_hyperparameters_change_through_inject_hyperparams():
    import functools
    make = functools.wraps(O.adam)(lambda *a, **k: pl.optim.to_optax(O.adam(*a, **k)))
    t = optax.inject_hyperparams(make)(learning_rate=0.01)
    p = {"w": np.ones(3)}
    s = t.init(p)
    g = {"w": np.ones(3)}
    u_small, _ = jax.jit(t.update)(g, s, p)
    s.hyperparams["learning_rate"] = jnp.asarray(0.02)
    u_big, _ = jax.jit(t.update)(g, s, p)  # the same compiled program: a traced learning rate
    np.testing.assert_allclose(u_big["w"], 2 * u_small["w"], rtol=1e-6)
    with pytest.raises(TypeError, match="must be a scalar"):
        jax.jit(lambda lr: O.adam(lr).hyper)(jnp.ones(2))


LEARNER_PAIRS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_centered", "adam", "adamw",
                 "amsgrad", "adopt", "dog", "clip_by_global_norm", "linear_warmup"]


@pytest.mark.parametrize("name", LEARNER_PAIRS)
def test_inside_a_learner_50_steps_equal_hand_written_optax_float32(name):
    ours, tx = PAIRS[name]
    model = pl.nn.mlp([6, 8, 3], activation=pl.nn.tanh)
    learner = pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=ours)
    state = learner.init(seed=0, backend="jax")
    step = learner.compile("jax")
    params = {k: jnp.asarray(v) for k, v in learner.init(seed=0)["params"].items()}
    ostate = tx.init(params)
    ref = hand_written_step(model, tx, xent)

    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.standard_normal((16, 6)).astype(np.float32)
        y = rng.integers(0, 3, 16).astype(np.int32)
        state, _ = step(state, x, y)
        params, ostate, _ = ref(params, ostate, x, y)
    for k in params:
        assert state["params"][k].dtype == np.float32
        np.testing.assert_allclose(state["params"][k], params[k], rtol=1e-5, atol=1e-5, err_msg=k)


def _minimise(tx, f, x0, steps):
    def body(c, _):
        x, s = c
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None
    (x, _), _ = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)
    return np.asarray(x["w"])


CONVERGENCE = [  # (optimizer, learning rate on the quadratic, on Rosenbrock)
    (O.sgd, 0.1, 1e-3), (O.momentum, 0.1, 1e-3), (O.nesterov, 0.1, 1e-3), (O.adagrad, 0.1, 0.1),
    (O.rmsprop, 0.1, 1e-3), (lambda lr: O.rmsprop(lr, centered=True), 0.1, 1e-3), (O.adam, 0.1, 1e-3),
    (lambda lr: O.adamw(lr, weight_decay=0.0), 0.1, 1e-3), (O.amsgrad, 0.1, 0.1), (O.adopt, 0.1, 0.1),
    (O.dog, 1.0, 1.0),
]


@pytest.mark.parametrize("make, lr_quad, lr_rosen", CONVERGENCE)
def test_convergence_on_quadratic_and_rosenbrock(make, lr_quad, lr_rosen):
    target = jnp.array([1.0, -2.0, 3.0])
    quad = _minimise(pl.optim.to_optax(make(lr_quad)), lambda x: jnp.sum((x["w"] - target) ** 2),
                     {"w": jnp.zeros(3)}, 2000)
    np.testing.assert_allclose(quad, target, atol=1e-3)

    def rosenbrock(x):
        a, b = x["w"]
        return (1 - a) ** 2 + 100 * (b - a ** 2) ** 2
    rosen = _minimise(pl.optim.to_optax(make(lr_rosen)), rosenbrock, {"w": jnp.array([-1.2, 1.0])}, 20000)
    np.testing.assert_allclose(rosen, [1.0, 1.0], atol=1e-2)


@pytest.mark.parametrize("ours, ref", [
    (O.exponential_decay(0.1, 7, 0.6, 3), optax.exponential_decay(0.1, 7, 0.6, 3)),
    (O.exponential_decay(0.1, 7, 1.5, staircase=True, end_value=0.5),
     optax.exponential_decay(0.1, 7, 1.5, staircase=True, end_value=0.5)),
    (O.cosine_decay_schedule(1.0, 30, 0.2, 2.0), optax.cosine_decay_schedule(1.0, 30, 0.2, 2.0)),
    (O.linear_schedule(0.0, 1.0, 10, 5), optax.linear_schedule(0.0, 1.0, 10, 5)),
    (O.warmup_cosine_decay_schedule(0.0, 1.0, 10, 50, 0.1), optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, 50, 0.1)),
])
def test_schedules_match_optax(ours, ref):
    _check_schedule(ours, ref)


def test_exponential_decay_at_rate_zero_is_constant_as_in_optax():
    with pytest.warns(UserWarning, match="decay_rate=0"):
        ours = O.exponential_decay(0.1, 7, 0.0)
    _check_schedule(ours, optax.exponential_decay(0.1, 7, 0.0))


def _check_schedule(ours, ref):
    f = pl.para(lambda c: ours(c), dom=[pl.Array((), dtype="float64")], name="schedule")
    counts = np.arange(0, 80, dtype=np.float64)
    from paralens.backends import numpy as pnp
    # optax evaluates schedules on the optimizer's int32 step count
    expected = [float(ref(jnp.asarray(int(c), jnp.int32))) for c in counts]
    np.testing.assert_allclose(pnp.compile(f)({}, counts), expected, rtol=1e-6, atol=1e-9)


def test_masks_and_errors():
    with pytest.raises(KeyError, match="mask"):
        pl.optim.to_optax(O.adamw(mask={"['a']": True})).update({"a": np.ones(2), "b": np.ones(2)},
                                                               pl.optim.to_optax(O.adamw()).init(
                                                                   {"a": np.ones(2), "b": np.ones(2)}),
                                                               {"a": np.ones(2), "b": np.ones(2)})
    t = pl.optim.to_optax(O.adamw())
    p = {"a": np.ones(2)}
    with pytest.raises(ValueError, match="needs params"):
        t.update(p, t.init(p))
    with pytest.raises(ValueError, match="init_step"):
        O.dog(init_step=("bogus", 1.0))


# ---------------------------------------------------------------- every optimizer is a term

PTYPES = {"w": pl.Param(3, dtype="float64"), "v": pl.Param((), dtype="float64")}


def put_inputs(opt, rng):
    """Random inputs ``(state, params, grads, hyper)`` of ``opt``'s put: its initial state after one step."""
    from paralens.backends import numpy as pnp
    params = {n: rng.standard_normal(t.shape) for n, t in PTYPES.items()}
    state = pl.optim.init_state(opt.state(PTYPES), params, pl.backends.get("numpy").array)
    hyper = {k: np.float64(v) for k, v in opt.hyper.items()}
    grads = {n: rng.standard_normal(t.shape) for n, t in PTYPES.items()}
    state, params = pnp.compile(opt.term(PTYPES))({}, state, params, grads, hyper)  # past the first step
    grads = {n: rng.standard_normal(t.shape) for n, t in PTYPES.items()}
    return state, params, grads, hyper


@pytest.mark.parametrize("name", list(PAIRS))
def test_every_optimizer_is_a_term_drawn_evaluated_symbolically_and_differentiated(name, tmp_path):
    import sympy as sp

    from paralens.backends import jax as pjax
    from paralens.backends import numpy as pnp
    from paralens.backends import sympy as psym

    opt = PAIRS[name][0]
    if name == "adamw_masked":  # its mask names optax's pytree paths; here the parameters are w and v
        opt = O.adamw(0.01, weight_decay=0.3, mask=lambda t: {n: n == "w" for n in t})
    put = opt.term(PTYPES)
    assert put.n_boxes > 0 and {e.prim.name for e in put.eqns} <= set(pl.PRIMS) - {"foreign"}
    pl.draw(opt, str(tmp_path / "opt.svg"))
    assert (tmp_path / "opt.svg").stat().st_size > 1000

    rng = np.random.default_rng(0)
    state, params, grads, hyper = put_inputs(opt, rng)
    expected = pnp.compile(put)({}, state, params, grads, hyper)
    # SymPy: the new parameters as formulas in the gradients, equal to NumPy once evaluated
    g = {"w": sp.Array(sp.symbols("g0:3")), "v": sp.Symbol("gv")}
    subs = dict(zip(sp.symbols("g0:3"), grads["w"])) | {sp.Symbol("gv"): grads["v"]}
    _, new_params = psym.compile(put)({}, state, params, g, hyper)
    formula = sp.Array(new_params["w"])
    assert formula.free_symbols & set(sp.symbols("g0:3"))
    # optax's schedules compute in float32 (we match that): NumPy rounds there, SymPy does not
    tol = 1e-6 if any(e.prim.name == "cast" and e.kwargs["dtype"] == "float32" for e in put.eqns) else 1e-9
    np.testing.assert_allclose(np.array(formula.subs(subs), dtype=np.float64), expected[1]["w"], rtol=tol)
    np.testing.assert_allclose(float(sp.sympify(new_params["v"]).subs(subs)), expected[1]["v"], rtol=tol)

    # R: the reverse derivative of the put, against jax.vjp in its floating-point inputs
    args = (state, params, grads, hyper)
    leaves, tree = jax.tree_util.tree_flatten(args)
    floats = [i for i, v in enumerate(leaves) if np.asarray(v).dtype.kind == "f"]

    def f(*xs):
        full = list(leaves)
        for i, x in zip(floats, xs):
            full[i] = x
        return pjax.compile(put)({}, *jax.tree_util.tree_unflatten(tree, full))
    out, vjp = jax.vjp(f, *[jnp.asarray(leaves[i]) for i in floats])
    cot = jax.tree_util.tree_map(lambda v: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype)
                                 if np.asarray(v).dtype.kind == "f"
                                 else np.zeros(np.shape(v), np.asarray(v).dtype), out)
    ref = vjp(jax.tree_util.tree_map(lambda c, o: c if np.asarray(o).dtype.kind == "f"
                                     else np.zeros(np.shape(o), jax.dtypes.float0), cot, out))
    _, dargs = pnp.compile(pl.R(put))({}, args, cot)
    ours = jax.tree_util.tree_leaves(dargs)
    for k, i in enumerate(floats):
        # where a part computes in float32 (a schedule, Adafactor's decay, a float32 momentum), so do
        # its derivatives: NumPy and XLA round them differently there
        np.testing.assert_allclose(ours[i], ref[k], rtol=1e-7 if tol < 1e-6 else 1e-5, atol=1e-9,
                                   err_msg=f"{name} input {i}")


def test_chain_is_composition_and_state_has_named_fields():
    a = O.scale_by_adam() >> O.scale_by_learning_rate(0.1)
    assert a.name == O.adam(0.1).name and a.hyper == O.adam(0.1).hyper
    state = a.state({"w": pl.Param(2)})
    assert sorted(state[0]) == ["count", "mu", "nu"] and set(state[0]["mu"]) == {"w"} and state[1] == {}
    nested = O.clip_by_global_norm(1.0) >> O.adam(0.1)
    assert isinstance(nested.state({"w": pl.Param(2)})[1], tuple)  # a chain in a chain keeps its tuple


def test_from_optax_is_an_opaque_box_that_says_so():
    tx = pl.optim.from_optax(optax.adam(1e-2))
    assert "opaque" in pl.optim.from_optax.__doc__
    put = tx.term({"w": pl.Param(3)})
    assert [e.prim.name for e in put.eqns].count("foreign") == 1
    with pytest.raises(NotImplementedError, match="opaque"):
        pl.R(put)
    params = {"w": np.ones(3, np.float32)}
    state = pl.optim.init_state(tx.state({"w": pl.Param(3)}), params, pl.backends.get("numpy").array)
    with pytest.raises(NotImplementedError, match="opaque"):
        pl.backends.get("sympy").compile(put)({}, state, params, params, {})


# ---------------------------------------------------------------- typed state, declared in one place

def _updating(returned: dict, declared: "O.State"):
    """A transform whose update returns the state fields ``returned`` (each the count, +1)."""
    def update(h, s, params, updates):
        one = pl.constant(1, (), "int32", like=next(iter(updates.values())))
        return dict.fromkeys(returned, one + one), updates
    return O.Leaf("probe", [O.Hyper("beta", 0.5, O.DECAY)], declared, update)


def test_an_update_returning_an_undeclared_state_field_is_refused_when_built():
    with pytest.raises(O.StateFieldError, match=r"probe: .* state field state\['extra'\], which its state does not "
                                                r"declare \(declared: \['count'\]\)"):
        _updating({"count": 1, "extra": 1}, O.State(count=O.counter()))


def test_an_update_missing_a_declared_state_field_is_refused_when_built():
    with pytest.raises(O.StateFieldError, match=r"does not return the declared state field state\['mu'\]"):
        _updating({"count": 1}, O.State(count=O.counter(), mu=O.counter()))


def test_a_declared_hyperparameter_is_checked_against_its_own_range():
    t = _updating({"count": 1}, O.State(count=O.counter()))
    assert t.hyper == {"beta": 0.5} and t.check_hyper("beta", 0.25) == 0.25
    with pytest.raises(ValueError, match=r"probe: beta=1.5 is out of range: expected a number in \[0, 1\)"):
        t.check_hyper("beta", 1.5)
    with pytest.raises(KeyError, match="probe has no hyperparameter 'gamma'; it has \\['beta'\\]"):
        t.check_hyper("gamma", 0.1)
    free = O.Leaf("free", [O.Hyper("beta", 7.0)], update=lambda h, s, p, u: (s, u))  # no range: any finite number
    assert free.hyper == {"beta": 7.0}


def test_empty_chain_is_optax_identity_and_chain_is_an_ordinary_transform():
    assert isinstance(O.chain(), O.Leaf) and O.chain().name == "identity"
    c = O.chain(O.scale_by_adam(), O.scale_by_learning_rate(0.1))
    assert isinstance(c, O.Transform) and isinstance(c, O.Chain) and not isinstance(c, O.Leaf)
    params = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
    grads = jax.tree_util.tree_map(lambda v: v * 0.3 - 1.0, params)
    tx, ref = O.to_optax(O.chain()), optax.identity()
    u, _ = tx.update(grads, tx.init(params), params)
    v, _ = ref.update(grads, ref.init(params), params)
    for k in params:
        np.testing.assert_array_equal(u[k], v[k])
    with pytest.raises(TypeError, match="chain takes pl.optim transforms"):
        O.chain(optax.adam(0.1))


BIT_CASES = {  # name: (paralens, optax factory, its arguments)
    "sgd": (O.sgd(0.1), optax.sgd, dict(learning_rate=0.1)),
    "momentum": (O.sgd(0.1, momentum=0.9), optax.sgd, dict(learning_rate=0.1, momentum=0.9)),
    "nesterov": (O.sgd(0.1, momentum=0.9, nesterov=True), optax.sgd,
                 dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    "adagrad": (O.adagrad(0.1), optax.adagrad, dict(learning_rate=0.1)),
    "adam": (O.adam(1e-3), optax.adam, dict(learning_rate=1e-3)),
    "adamw": (O.adamw(1e-3), optax.adamw, dict(learning_rate=1e-3)),
    "rmsprop": (O.rmsprop(1e-3), optax.rmsprop, dict(learning_rate=1e-3)),
}


@pytest.mark.parametrize("name", list(BIT_CASES))
def test_bit_identical_to_optax_in_float32_for_100_steps_on_mlp_shapes(name):
    """Through to_optax: bit for bit equal to optax with the hyperparameters as float32 arrays
    (optax.inject_hyperparams), as paralens keeps them. Plain optax computes ``1 - b2`` in
    double precision from the Python float before rounding (0.001 against float32's 0.00099998713),
    so Adam, AdamW and RMSProp differ from it by a few 1e-7 (measured, and bounded here)."""
    ours, theirs, kwargs = BIT_CASES[name]
    rng = np.random.default_rng(0)
    shapes = {"W1": (784, 512), "b1": (512,), "W2": (512, 10), "b2": (10,)}
    p0 = {k: jnp.asarray(rng.standard_normal(s).astype(np.float32) * 0.05) for k, s in shapes.items()}
    grads = [{k: jnp.asarray(rng.standard_normal(s).astype(np.float32)) for k, s in shapes.items()}
             for _ in range(100)]
    static = {k: v for k, v in kwargs.items() if isinstance(v, bool)}
    numbers = {k: v for k, v in kwargs.items() if k not in static}

    def run(tx):
        p, s, up = p0, tx.init(p0), jax.jit(tx.update)
        for g in grads:
            u, s = up(g, s, p)
            p = optax.apply_updates(p, u)
        return p
    got = run(O.to_optax(ours))
    injected = run(optax.inject_hyperparams(theirs, static_args=tuple(static))(**numbers, **static))
    plain = run(theirs(**kwargs))
    for k in got:
        assert got[k].dtype == jnp.float32
        np.testing.assert_array_equal(got[k], injected[k], err_msg=f"{name} {k}")
        if name in ("adam", "adamw", "rmsprop"):
            np.testing.assert_allclose(got[k], plain[k], rtol=0, atol=1e-6, err_msg=f"{name} {k}")
        else:
            np.testing.assert_array_equal(got[k], plain[k], err_msg=f"{name} {k}")


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_noisy_sgd_adds_noise_of_optax_variance_from_a_key_in_the_state(backend):
    """The noise cannot equal optax's samples (each backend has its own generator), so its law is
    checked: u = -lr (g + sqrt(eta / t**gamma) n), n standard normal, a new draw each step."""
    eta, gamma, lr = 0.3, 0.55, 0.1
    opt = O.noisy_sgd(lr, eta, gamma, key=7)
    ptypes = {"w": pl.Param(20000, dtype="float64")}
    be = pl.backends.get(backend)
    run = be.compile(opt.update_term(ptypes))
    state = pl.optim.init_state(opt.state(ptypes), {"w": np.zeros(20000)}, be.array)
    hyper = {k: np.float64(v) for k, v in opt.hyper.items()}
    g = {"w": np.full(20000, 2.0)}
    draws = []
    for t in (1, 2, 3):
        state, u = run({}, state, {"w": np.zeros(20000)}, g, hyper)
        n = (np.asarray(u["w"]) / -lr - 2.0) / np.sqrt(eta / t ** gamma)
        assert abs(n.mean()) < 0.03 and abs(n.std() - 1.0) < 0.03, (t, n.mean(), n.std())
        draws.append(n)
    assert abs(np.corrcoef(draws[0], draws[1])[0, 1]) < 0.05  # a fresh draw each step
    assert int(np.asarray(state[0]["count"])) == 3
    assert not np.array_equal(np.asarray(state[0]["rng_key"]), [0, 7])  # the key moved on


COMPLEX_CASES = {  # optimizers optax runs on complex parameters, with |g|**2 as real(conj(g) g)
    "sgd": (O.sgd(0.05, momentum=0.9), optax.sgd(0.05, momentum=0.9)),
    "adam": (O.adam(0.05), optax.adam(0.05)),
    "adagrad": (O.adagrad(0.3), optax.adagrad(0.3)),
    "rmsprop_centered": (O.rmsprop(0.01, centered=True), optax.rmsprop(0.01, centered=True)),
    "amsgrad": (O.amsgrad(0.05), optax.amsgrad(0.05)),
    "yogi": (O.yogi(0.05), optax.yogi(0.05)),
    "adabelief": (O.adabelief(0.05, eps=1e-8), optax.adabelief(0.05, eps=1e-8)),
    "lamb": (O.lamb(0.05), optax.lamb(0.05)),
    "novograd": (O.novograd(0.05), optax.novograd(0.05)),
    "adafactor": (O.adafactor(0.05, min_dim_size_to_factor=3), optax.adafactor(0.05, min_dim_size_to_factor=3)),
    "adamax": (O.adamax(0.05), optax.adamax(0.05)),
}


@pytest.mark.parametrize("dtype", ["complex128"])  # complex64: optax's alias suite
@pytest.mark.parametrize("name", list(COMPLEX_CASES))
def test_complex_parameters_as_optax_on_jax_and_numpy(name, dtype):
    ours, ref = COMPLEX_CASES[name]
    rng = np.random.default_rng(0)
    c = lambda *shape: (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)  # noqa: E731
    p1 = p2 = {"a": c(3, 4), "b": c(5)}
    t1 = pl.optim.to_optax(ours)
    s1, s2 = t1.init(p1), ref.init(p2)
    rtol = 2e-5 if dtype == "complex64" else 1e-11
    for _ in range(30):
        g = {k: c(*np.shape(v)) for k, v in p1.items()}
        u1, s1 = t1.update(g, s1, p1)
        u2, s2 = ref.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for k in p2:
        assert p1[k].dtype == np.dtype(dtype) and u1[k].dtype == np.dtype(dtype)
        np.testing.assert_allclose(p1[k], p2[k], rtol=rtol, atol=rtol, err_msg=f"{name} {k}")
    # the same update term on NumPy: complex arithmetic there too
    ptypes = {k: pl.Param(np.shape(v), dtype=dtype) for k, v in p1.items()}
    term = ours.update_term(ptypes)
    ps = {k: np.asarray(v) for k, v in p1.items()}
    state = pl.optim.init_state(ours.state(ptypes), ps, pl.backends.get("numpy").array)
    hyper = {k: np.asarray(v, pl.optim.hyper_type(ptypes.values()).dtype) for k, v in ours.hyper.items()}
    g = {k: c(*np.shape(v)) for k, v in p1.items()}
    got = pl.backends.get("numpy").compile(term)({}, state, ps, g, hyper)
    want = pl.backends.get("jax").compile(term)({}, state, ps, g, hyper)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
