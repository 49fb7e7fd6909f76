"""The NumPy backend writes a term out as straight-line Python: same numbers as the interpreter, readable source."""

import numpy as np
import pytest

import paralens as pl
from paralens.backends import numpy as pnp
from paralens.backends.numpy import _contraction
from paralens.terms import as_term, flatten, unflatten

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
    "scan, one output": lambda: pl.trace(lambda x: pl.loop(_one, 3)(x) * x, dom=[pl.Array(3, dtype="float64")],
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
    assert src.startswith("def dense_3_2_relu(")
    body = [line for line in src.splitlines()[1:] if not line.strip().startswith("return")]
    assert len(body) == f.n_boxes
    assert "relu(" in src and "# einsum" in src
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
    (ta, tb), to = spec.split("->")[0].split(","), spec.split("->")[1]
    size = {c: int(rng.integers(2, 5)) for c in set(ta + tb)}
    size["Z"] = batch
    a = rng.standard_normal([size[c] for c in ta])
    b = rng.standard_normal([size[c] for c in tb])
    got = _contraction(spec, *(tuple(None if c == "Z" else size[c] for c in t) for t in (ta, tb)))(a, b)
    want = np.einsum(spec, a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
