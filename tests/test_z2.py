"""Boolean circuits over Z2 (maths §1.6, §4.5): RD.1-RD.7 exhaustively, formal derivatives against
brute force, three evaluations that agree, reverse derivative ascent, and no silent booleans."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paralens as pl

z2 = pl.backends.get("z2")
BIT = pl.Array((), dtype="bool")
GATES = ["and", "xor", "not", "one"]


def gate(op, a, b):
    return a * b if op == "and" else a + b if op == "xor" else a + 1 if op == "not" else a * 0 + 1


@st.composite
def circuits(draw, n_in=3, n_out=2, max_gates=7):
    """A random circuit of n_in input bits and n_out output bits, and its gate list."""
    gates = draw(st.lists(st.tuples(st.sampled_from(GATES), st.integers(0, 99), st.integers(0, 99)),
                          min_size=n_out, max_size=max_gates))

    def circuit(*xs):
        wires = list(xs)
        for op, i, j in gates:
            wires.append(gate(op, wires[i % len(wires)], wires[j % len(wires)]))
        return tuple(wires[-n_out:]) if n_out > 1 else wires[-1]
    return pl.para(circuit, dom=[BIT] * n_in, name="circuit"), (gates, n_in, n_out)


def brute_force(spec, x):
    """Evaluate the gate list on Python ints: the reference that shares no code with paralens."""
    gates, n_in, n_out = spec
    wires = list(x)
    for op, i, j in gates:
        a, b = wires[i % len(wires)], wires[j % len(wires)]
        wires.append(a & b if op == "and" else a ^ b if op == "xor" else a ^ 1 if op == "not" else 1)
    return wires[-n_out:]


def every(n):
    """All 2**n bit patterns, one per row, as n columns of bools."""
    rows = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    return [rows[:, k] for k in range(n)] if n else []


def run(term, *args, engine="numpy"):
    out = z2.compile(term, engine=engine)({}, *args)
    return [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]


def R(f, xs, dys):
    """``dx`` of ``R(f)`` at every row of ``xs``, ``dys``."""
    _, dx = z2.compile(pl.R(f))({}, tuple(xs) if len(xs) > 1 else xs[0], tuple(dys) if len(dys) > 1 else dys[0])
    return [np.asarray(d) for d in (dx if isinstance(dx, tuple) else (dx,))]


def xor(a, b):
    return [u ^ v for u, v in zip(a, b)]


# ---------------------------------------------------------------- gates and formal derivatives

def test_every_gate_differentiates_to_its_formal_partials():
    x, y, dy = every(3)
    for name, fn, expected in [
            ("and", lambda a, b: a * b, lambda: [y & dy, x & dy]),
            ("xor", lambda a, b: a + b, lambda: [dy, dy]),
            ("not", lambda a, b: a + 1, lambda: [dy, np.zeros_like(dy)]),
            ("one", lambda a, b: a * 0 + 1, lambda: [np.zeros_like(dy), np.zeros_like(dy)])]:
        f = pl.para(fn, dom=[BIT, BIT], name=name)
        for got, want in zip(R(f, [x, y], [dy]), expected()):
            np.testing.assert_array_equal(got, want, err_msg=name)


def brute_R(f_eval, xs, dys, n_in):
    """``rdiffB``: component i is the parity of (f(x) xor f(x xor e_i)) and dy."""
    fx = f_eval(xs)
    out = []
    for i in range(n_in):
        flipped = [x ^ (k == i) for k, x in enumerate(xs)]
        change = xor(fx, f_eval(flipped))
        out.append(np.logical_xor.reduce([c & d for c, d in zip(change, dys)], axis=0))
    return out


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2 ** 16))
def test_on_multilinear_circuits_R_equals_the_brute_force_derivative(n_in, n_out, seed):
    table = np.random.default_rng(seed).random((2 ** n_in, n_out)) < 0.5
    f = pl.bind(pl.z2.truth_table(n_in, n_out), {"table.T": table})  # a multilinear polynomial of x
    rows = np.array(list(itertools.product([0, 1], repeat=n_in + n_out)), dtype=bool)
    x, dy = rows[:, :n_in], rows[:, n_in:]
    _, dx = z2.compile(pl.R(f))({}, x, dy)
    evaluate = z2.compile(f)
    fx = evaluate({}, x)
    brute = np.stack([np.logical_xor.reduce((fx ^ evaluate({}, x ^ (np.arange(n_in) == i))) & dy, axis=1)
                      for i in range(n_in)], axis=1)
    np.testing.assert_array_equal(dx, brute)


def test_x_and_x_is_where_formal_and_brute_force_derivatives_differ():
    f = pl.para(lambda x: x * x, dom=[BIT], name="square")
    x, dy = every(2)
    (formal,) = R(f, [x], [dy])
    (brute,) = brute_R(lambda v: run(f, v[0]), [x], [dy], 1)
    assert not formal.any()  # d(x^2)/dx = 2x = 0 over Z2
    np.testing.assert_array_equal(brute, dy)  # flipping x always flips x AND x: the finite difference is 1


# ---------------------------------------------------------------- RD.1-RD.7, exhaustively

N, M = 3, 2  # input bits, output bits: every (x, dy, dz) pattern fits in 2**7 rows


@settings(max_examples=15)
@given(circuits(N, M), circuits(N, M))
def test_rd1_rd2_rd4_over_z2(fg, gg):
    (f, _), (g, _) = fg, gg
    A, B = pl.Ty(*[BIT] * N), pl.Ty(*[BIT] * M)
    cols = every(N + 2 * M)
    x, d1, d2 = cols[:N], cols[N:N + M], cols[N + M:]
    f_plus_g = pl.copy(A) >> (f @ g) >> pl.add(B)
    for a, b in zip(R(f_plus_g, x, d1), xor(R(f, x, d1), R(g, x, d1))):  # RD.1
        np.testing.assert_array_equal(a, b)
    for a in R(pl.zero(A, B), x, d1):
        assert not a.any()
    for a, b in zip(R(f, x, xor(d1, d2)), xor(R(f, x, d1), R(f, x, d2))):  # RD.2: linear in dy
        np.testing.assert_array_equal(a, b)
    assert not any(a.any() for a in R(f, x, [np.zeros_like(d) for d in d1]))
    pairing = pl.copy(A) >> (f @ g)  # RD.4
    for a, b in zip(R(pairing, x, d1 + d2), xor(R(f, x, d1), R(g, x, d2))):
        np.testing.assert_array_equal(a, b)


def test_rd3_structural_maps_over_z2():
    x, y, d = every(3)
    proj0 = pl.id(BIT) @ pl.discard(BIT)
    d0, d1 = R(proj0, [x, y], [d])
    np.testing.assert_array_equal(d0, d)
    assert not d1.any()
    (did,) = R(pl.id(BIT), [x], [d])
    np.testing.assert_array_equal(did, d)


@settings(max_examples=15)
@given(circuits(N, M), circuits(M, N))
def test_rd5_chain_rule_over_z2(fg, gg):
    (f, _), (g, _) = fg, gg
    cols = every(N + N)
    x, dz = cols[:N], cols[N:]
    fx = run(f, tuple(x))
    inner = R(g, fx, dz)
    for a, b in zip(R(f >> g, x, dz), R(f, x, inner)):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=10)
@given(circuits(2, 2))
def test_rd6_reverse_derivative_is_linear_in_its_cotangent(fg):
    f, _ = fg
    cols = every(2 + 2 + 2)  # x, dy, dz: 6 bits
    x, dy, dz = cols[:2], cols[2:4], cols[4:]
    zero = [np.zeros_like(v) for v in x]
    rrr = z2.compile(pl.R(pl.R(pl.R(f))))
    # primal ((x, dy), ({}, 0_A)); cotangent of R(R(f))'s output ({}, (0_A, dz)): the last A part is R(f)(x, dz)
    _, ((_, _), (_, u)) = rrr({}, ((tuple(x), tuple(dy)), ({}, tuple(zero))), ({}, (tuple(zero), tuple(dz))))
    for a, b in zip(u, R(f, x, dz)):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=10)
@given(circuits(2, 1))
def test_rd7_symmetry_of_second_derivatives(fg):
    f, _ = fg
    cols = every(8)  # x, u, v, w: 2 bits each
    x, u, v, w = (tuple(cols[k:k + 2]) for k in range(0, 8, 2))
    ddf = z2.compile(pl.D(pl.D(f)))
    np.testing.assert_array_equal(ddf({}, (x, {}, u), {}, (v, {}, w)), ddf({}, (x, {}, v), {}, (u, {}, w)))


# ---------------------------------------------------------------- three evaluations agree

@settings(max_examples=25)
@given(circuits(4, 3, max_gates=12), st.integers(1, 9))
def test_numpy_jax_and_brute_force_evaluations_agree(fg, batch):
    f, spec = fg
    rows = np.random.default_rng(batch).random((batch, 4)) < 0.5
    xs = tuple(rows[:, k] for k in range(4))
    ours = run(f, xs)
    jitted = run(f, xs, engine="jax")
    reference = np.array([brute_force(spec, [int(v) for v in row]) for row in rows], dtype=bool)
    for k in range(3):
        np.testing.assert_array_equal(ours[k], reference[:, k])
        np.testing.assert_array_equal(jitted[k], reference[:, k])


# ---------------------------------------------------------------- reverse derivative ascent

def test_rda_learns_xor_of_inputs_and_the_2_bit_adder_exactly():
    import examples_loader
    functions = examples_loader.load("z2_functions")
    parity, adder, layered = functions.main(progress=False)
    assert parity == 1.0 and adder == 1.0 and layered == 1.0


def test_rda_is_the_learner_assembly_and_flips_the_bits_R_selects():
    model = pl.z2.dense(3, 2)
    learner = pl.z2.rda_learner(model)
    assert isinstance(learner, pl.Learner) and learner.optimizer.name == "rda"
    assert {e.group[0] for e in learner.step_term.eqns} >= {"model", "loss", "optimizer"}
    state = learner.init(seed=3, backend="z2")
    p = state["params"]
    x, y = np.array([[1, 0, 1]], bool), np.array([[0, 1]], bool)
    new, errors = learner.compile("z2")(state, x, y)
    pred = z2.compile(model)(p, x)
    err = pred ^ y
    np.testing.assert_array_equal(errors, err)
    dp, _ = z2.compile(pl.R(model))(p, x, err)  # p <- p + R[f]((p, x), f(p, x) + y)
    for k in p:
        np.testing.assert_array_equal(new["params"][k], p[k] ^ dp[k])


@pytest.mark.parametrize("task, bound", [("two-class", 0.95), ("three-class one-hot", 0.70),
                                         ("three-class binary", 0.70)])
def test_iris_truth_table_model(task, bound):
    import examples_loader
    accuracy = examples_loader.load("iris_rda").main(progress=False)[task]
    assert accuracy >= bound, accuracy


# ---------------------------------------------------------------- no silent booleans

def test_bits_on_numpy_and_jax_get_a_clear_error_never_or_for_plus():
    @pl.para
    def f(x: pl.Array(2, dtype="bool"), w: pl.Param(2, dtype="bool")):
        return x * w + x
    p, x = {"f.w": np.array([True, False])}, np.array([[True, True]])
    for name in ("numpy", "jax"):
        with pytest.raises(TypeError, match=r"XOR.*backends.get\('z2'\)"):
            pl.backends.get(name).compile(f)(p, x)
    np.testing.assert_array_equal(z2.compile(f)(p, x), [[False, True]])  # Z2: x*w + x, not OR
    with pytest.raises(TypeError, match="every wire bool"):
        z2.compile(pl.nn.dense(2, 1))


# ---------------------------------------------------------------- named gates and ports

def test_gates_and_bits_of_are_named_boxes_and_ports_carry_their_names():
    """Collapsed, a half adder draws as bits_of -> xor, and -> sum, carry (not an einsum with
    one-hot constants, not y0/y1); R's ports are dsum, dcarry -> dx; the gates compute as before."""
    @pl.para
    def half_adder(x: pl.z2.Bits(2)):
        a, b = pl.z2.bits_of(x)
        return pl.z2.xor(a, b), pl.z2.and_(a, pl.z2.not_(pl.z2.not_(b)))
    named = half_adder.with_ports(outputs=("sum", "carry"))
    labels = [n.label for n in pl.diagram.layout(named, collapse=True).nodes if n.kind != "dummy"]
    assert sorted(labels) == sorted(["x", "bits_of", "xor", "and", "not0", "not1", "sum", "carry"]), labels
    assert pl.R(named).port_labels() == (("x", "dsum", "dcarry"), ("dx",))
    x = np.array(list(itertools.product([0, 1], repeat=2)), bool)
    s, c = z2.compile(named)({}, x)
    np.testing.assert_array_equal(s, x[:, 0] ^ x[:, 1])
    np.testing.assert_array_equal(c, x[:, 0] & x[:, 1])
    with pytest.raises(ValueError, match="2 output arguments, got 1"):
        half_adder.with_ports(outputs="sum")
    with pytest.raises(TypeError, match="must be a str"):
        half_adder.with_ports(inputs=(3,))
    with pytest.raises(ValueError, match="must not be empty"):
        half_adder.with_ports(inputs="")
    with pytest.raises(ValueError, match="one name"):   # two outputs called sum: one would be lost
        half_adder.with_ports(outputs=("sum", "sum"))
    with pytest.raises(ValueError, match="braces"):
        half_adder.with_ports(outputs=("s{0.__class__}", "carry"))
