"""The NumPy backend writes a term out as straight-line Python: same numbers as the interpreter, readable source."""

import re

import numpy as np
import pytest

import paralens as pl
from paralens.backends import numpy as pnp
from paralens.backends.numpy import _contraction
from paralens.terms import as_term, flatten, unflatten
from paralens.types import ArrayType

BE = pnp.backend


def _values(term, rng, batch=3):
    """Random flat values for ``term``'s parameters and inputs (integer wires get small labels)."""
    out = []
    for t in [s.type for s in term.params] + list(term.dom):
        shape = ((batch,) if t.batched else ()) + t.shape
        if t.dtype.startswith("int"):
            out.append(rng.integers(0, 3, shape).astype(t.dtype))
        else:
            out.append(rng.standard_normal(shape).astype(t.dtype))
    return out


def _same_as_interpreter(term, seed=0):
    term = as_term(term)
    vals = _values(term, np.random.default_rng(seed))
    want = BE.run(term, vals)
    got = BE.straight_line(term)(*vals)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_array_equal(g, w)  # bitwise: the same callables, in the same order
    return term


@pl.para(dom=[pl.Array(3, dtype="float64"), pl.Array(3, dtype="float64")])
def _body(x, v, w: pl.Param((3, 3), dtype="float64")):
    return pl.tanh(x @ w) + 0.5 * v, v * 0.9


@pl.para(dom=[pl.Array(3, dtype="float64")])
def _one(x, w: pl.Param((3, 3), dtype="float64")):
    return pl.tanh(x @ w) + 0.5 * x


def _learner():
    return pl.Learner(pl.nn.mlp([4, 20, 3]), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                      optimizer=pl.optim.sgd(0.01))


TERMS = {
    "mlp": lambda: pl.nn.mlp([4, 20, 3]),
    "conv": lambda: (pl.nn.conv2d(2, 3, 3, padding="same") >> pl.nn.relu()).at(pl.Array[6, 5, 2]),
    "R(mlp)": lambda: pl.R(pl.nn.mlp([4, 8, 3], activation=pl.nn.tanh)),
    "R(conv)": lambda: pl.R(pl.nn.conv2d(2, 3, (2, 3), stride=(2, 1)).at(pl.Array[6, 5, 2])),
    "learner step": lambda: _learner().step_term,
    "adam step": lambda: pl.Learner(pl.nn.mlp([4, 5, 3]), loss=pl.losses.mse(),
                                    optimizer=pl.optim.adam(1e-2)).step_term,
    "scan": lambda: pl.loop(_body, 4),
    "scan, one output": lambda: pl.para(lambda x: pl.loop(_one, 3)(x) * x, dom=[pl.Array(3, dtype="float64")],
                                         name="loop_scan"),
    "R(scan)": lambda: pl.R(pl.loop(_body, 3)),
}


@pytest.mark.parametrize("name", list(TERMS))
def test_straight_line_code_gives_bitwise_the_interpreters_numbers(name):
    _same_as_interpreter(TERMS[name]())


def test_compiled_learner_step_matches_the_interpreter_step_for_step():
    """Through the calling convention and the fast entry too: three steps, bitwise."""
    learner = _learner()
    step, term = learner.compile("numpy"), learner.step_term
    keys = term.in_sig[0].keys
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 2, 1, 1, 0], np.int32)
    state = ref = learner.init(0)
    for _ in range(3):
        state, loss = step(state, x, y)
        outs = BE.run(term, flatten(({k: ref[k] for k in keys}, x, y), tuple(term.in_sig)))
        new, ref_loss = unflatten(term.out_sig, iter(outs))
        ref = {**ref, **new}
        assert loss == ref_loss
        for k in ref["params"]:
            np.testing.assert_array_equal(state["params"][k], ref["params"][k])
        assert state["step"] == ref["step"]


def test_the_generated_source_is_one_line_per_box_and_can_be_read():
    f = pl.nn.dense(3, 2) >> pl.nn.relu()
    fn = pnp.compile(f)
    src = fn.source
    assert src.startswith("def term(") and "# term 'dense(3, 2) >> relu'" in src
    body = [line for line in src.splitlines()[1:] if not line.strip().startswith(("return", "#"))]
    assert len(body) == f.n_boxes
    assert "# relu" in src and "# einsum" in src
    assert BE.straight_line(f).source == src
    step_src = BE.straight_line(_learner().step_term).source
    assert "logsumexp" in step_src and "[optimizer" in step_src


def test_constants_are_computed_once_but_an_output_constant_is_fresh_each_call():
    b = pl.Builder()
    x = b.input(pl.Array(2, dtype="float32"))
    c = b.emit1(pl.prims.CONST, value=(1.0, 2.0), shape=(2,), dtype="float32")
    y = b.emit1(pl.prims.ADD, x, c)
    term = b.build([x], [y, c], name="with_const")
    fn = BE.straight_line(term)
    _, c1 = fn(np.zeros((1, 2), np.float32))
    c1 += 5  # mutating what was returned does not change the next call
    _, c2 = fn(np.zeros((1, 2), np.float32))
    np.testing.assert_array_equal(c2, [1.0, 2.0])


def test_a_box_without_a_rule_is_refused_when_compiled():
    class Partial(type(BE)):
        pass
    rules = {k: v for k, v in BE.rules.items() if k != "relu"}
    be = Partial.__new__(Partial)
    be.__dict__.update({**BE.__dict__, "rules": rules})
    with pytest.raises(NotImplementedError, match="no rule for relu"):
        be.straight_line(pl.nn.dense(2, 2) >> pl.nn.relu())


@pytest.mark.parametrize("spec", ["Zi,io->Zo", "Zo,io->Zi", "Zi,Zo->io", "i,o->io", "Zhwklc,klcf->Zhwf",
                                  "Zhwklc,Zhwf->klcf", "Zhwf,klcf->Zhwklc", "Zij,Zjk->Zki", "i,i->", "ii,i->i"])
@pytest.mark.parametrize("batch", [0, 1, 4])
def test_planned_contraction_is_einsum(spec, batch):
    rng = np.random.default_rng(2)
    ta, tb = spec.split("->")[0].split(",")
    size = {c: int(rng.integers(2, 5)) for c in set(ta + tb)}
    size["Z"] = batch
    a = rng.standard_normal([size[c] for c in ta])
    b = rng.standard_normal([size[c] for c in tb])
    got = _contraction(spec, *(tuple(None if c == "Z" else size[c] for c in t) for t in (ta, tb)))(a, b)
    want = np.einsum(spec, a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _broadcasts(batched: bool):
    """``broadcast(a) + broadcast(a)``, ``broadcast(c) * y``, their sum summed, and ``broadcast(c)``
    as an output. One of the first two is a view, not both: two views of ``a`` would not span
    the sum's shape. The product's is a view; the output's is written out."""
    b = pl.Builder()
    a = b.input(ArrayType((2,), "float64", batched=batched))
    c = b.input(ArrayType((3,), "float64", batched=not batched))
    y = b.input(ArrayType((3, 2), "float64", batched=True))
    spread_a = [b.emit1(pl.prims.BROADCAST, a, shape=(3, 2), dims=(1,)) for _ in range(2)]
    s = b.emit1(pl.prims.ADD, *spread_a)
    p = b.emit1(pl.prims.MUL, b.emit1(pl.prims.BROADCAST, c, shape=(3, 2), dims=(0,)), y)
    total = b.emit1(pl.prims.REDUCE_SUM, b.emit1(pl.prims.ADD, s, p), axes=(0, 1))
    return b.build([a, c, y], [total, b.emit1(pl.prims.BROADCAST, c, shape=(3, 2), dims=(0,))], name="broadcasts")


@pytest.mark.parametrize("batched", [False, True])
def test_a_broadcast_read_only_by_elementwise_boxes_that_span_it_is_a_view(batched):
    src = BE.straight_line(_same_as_interpreter(_broadcasts(batched))).source
    assert src.count("as a view") == 2, src
    assert len(re.findall(r"= f\d+\(v\d+\)  # broadcast", src)) == 2, src


def test_a_broadcast_read_by_another_box_is_written_out():
    f = pl.para(lambda x: pl.sum(pl.broadcast_to(x, (3, 2), (1,)) * 2.0), dom=[pl.Array(2, dtype="float64")],
                 name="read_by_a_reduction")
    _same_as_interpreter(f)


def test_rewritten_rules_keep_their_numbers_on_infinities_and_nans():
    """logsumexp holds its max finite with two ufuncs (not isfinite and where), relu and step
    compare with a typed zero: the numbers are those of the plain formulas, edge values included."""
    rows = np.array([[1.0, 2.0, 3.0], [np.inf, 1.0, 2.0], [-np.inf] * 3, [np.nan, 1.0, 2.0],
                     [np.inf, -np.inf, 0.0], [3e38, 3e38, 1.0], [-3.4e38, -np.inf, -3.4e38]])
    for dtype in ("float16", "float32", "float64"):
        with np.errstate(all="ignore"):
            x = rows.astype(dtype)
            m = np.max(x, axis=1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            want = np.log(np.sum(np.exp(x - m), axis=1)) + m[:, 0]
            t = pl.Array(3, dtype=dtype)
            got = BE.run(pl.para(lambda v: pl.logsumexp(v), dom=[t], name="lse"), [x])[0]
            relu = BE.run(pl.nn.relu().at(t), [x])[0]
            step = BE.rules["step"]([t], [t], x)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), (dtype, got, want)
        assert relu.tobytes() == np.maximum(x, 0).tobytes()
        assert step.tobytes() == (x > 0).astype(np.result_type(x, np.float32)).tobytes()


def _bad_calls(x, y, state):
    """(name, state, x, y) that the step must treat as its general path does: errors or casts."""
    big_y = np.zeros(100, np.int32)
    big_y[70] = 3
    return [
        ("label out of range", state, x, np.array([0, 2, 3, 1, 0], np.int32)),
        ("negative label", state, x, np.array([0, -1, 1, 1, 0], np.int32)),
        ("label out of range, a big batch", state, np.zeros((100, 4), np.float32), big_y),
        ("int64 label that int32 would wrap", state, x, np.array([0, 2, 2 ** 32 + 1, 1, 0], np.int64)),
        ("fractional labels", state, x, y + 0.5),
        ("one label for a batch", state, x, y[:1]),
        ("complex inputs", state, x + 1j, y),
        ("too many features", state, np.zeros((5, 5), np.float32), y),
        ("inputs as a list", state, x.tolist(), y),
        ("float64 inputs and int64 labels", state, x.astype(np.float64), y.astype(np.int64)),
        ("a state without hyperparameters", {k: v for k, v in state.items() if k != "hyper"}, x, y),
        ("a parameter missing", {**state, "params": {"dense0.W": state["params"]["dense0.W"]}}, x, y),
        ("a float64 parameter", {**state, "params": {**state["params"],
                                                     "dense0.b": state["params"]["dense0.b"].astype(float)}}, x, y),
        ("a parameter of another shape", {**state, "params": {**state["params"],
                                                              "dense0.b": np.zeros(3, np.float32)}}, x, y),
        ("a Python learning rate", {**state, "hyper": {"learning_rate": 0.5}}, x, y),
        ("a step counter as a NumPy scalar", {**state, "step": np.int32(3)}, x, y),
        ("a state with another key", {**state, "note": "kept"}, x, y),
    ]


def _outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the outcome compared is the exception itself
        return e


def _same_outcome(got, want, name):
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want), (name, got, want)
        return
    assert not isinstance(got, Exception), (name, got)
    got_leaves, want_leaves = pl.terms.leaves(got), pl.terms.leaves(want)
    assert len(got_leaves) == len(want_leaves), name
    for g, w in zip(got_leaves, want_leaves):
        if isinstance(w, (np.ndarray, np.generic)):
            assert np.asarray(g).dtype == np.asarray(w).dtype and np.array_equal(g, w), name
        else:
            assert g == w, name


def test_the_fast_step_raises_and_casts_as_the_general_path_does():
    learner = _learner()
    step = learner.compile("numpy")
    assert step.entry_source.startswith("def _step(")
    general = step.__globals__["_general"]  # the general path the generated step falls back to
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 2, 1, 1, 0], np.int32)
    state = learner.init(0)
    taken = []
    step.__globals__["_general"] = lambda *args: taken.append(1) or general(*args)
    try:
        for name, s, xb, yb in _bad_calls(x, y, state):
            taken.clear()
            _same_outcome(_outcome(step, s, xb, yb), _outcome(general, s, xb, yb), name)
            if name in INLINE:
                assert not taken, f"{name}: took the general path"
    finally:
        step.__globals__["_general"] = general


#: the calls of :func:`_bad_calls` that the generated step answers itself (casting what it must)
INLINE = {"float64 inputs and int64 labels", "a float64 parameter", "a Python learning rate",
          "a step counter as a NumPy scalar", "a state with another key"}


def test_the_fast_entry_of_a_compiled_term_falls_back_as_the_general_path_does():
    f = pl.nn.mlp([3, 4, 2])
    fn = pnp.compile(f)
    general = fn.__globals__["_general"]
    params = pnp.init(f)
    x = np.ones((2, 3), np.float32)
    calls = [(params, x), (params,), (params, x, x), (None, x), ([1.0], x), ({**params, "extra": 1}, x),
             (params, x.astype(np.float64)), (params, np.ones(3, np.float32)), (params, x + 1j), (params, [[1, 2, 3]])]
    for args in calls:
        _same_outcome(_outcome(fn, *args), _outcome(general, *args), repr(args)[:60])
    r = pnp.compile(pl.R(_one))  # one parameter, passed bare: the general path, its cotangent bare too
    w, x = np.eye(3), np.ones((2, 3))
    _same_outcome(r(w, x, x), r.__globals__["_general"](w, x, x), "bare")
    assert isinstance(r(w, x, x)[0], np.ndarray)
