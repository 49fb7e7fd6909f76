"""The primitive boxes, in one registry: each with a type rule and its reverse derivative as a term.

A primitive is declared once, here (or, for ``scan``, in :mod:`paralens.loops`),
with :func:`define`: its name, its type rule and its reverse-derivative rule.
Every reverse-derivative rule builds its result out of primitives of this same
registry, so ``R`` applies again to its output (``R(R(f))``). A rule gets the
builder ``b`` to emit into, the box's parameters, the forward input wires ``x``
and output wires ``y`` (the optic's residuals) and the output cotangents
``dy``; it returns one cotangent per input, or ``None`` where the derivative
is zero.

Shapes are per example. Elementwise boxes broadcast as NumPy does: shapes line
up at their trailing axes and axes of size 1 stretch (a scalar, a bias, a
mean taken with ``keepdims``); batched and unbatched operands mix freely (an
unbatched operand is shared by every example). ``R`` reconciles such implicit
broadcasts generically (sum over the batch, over the broadcast leading axes
and over the stretched axes), so no rule here special-cases them.

This module needs nothing but :mod:`paralens.types`: rules reach the builder
only through the ``b`` they are given.

>>> from paralens.prims import PRIMS
>>> PRIMS["tanh"].elementwise, PRIMS["einsum"].elementwise
(True, False)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from .types import ArrayType

__all__ = [
    "Prim", "PRIMS", "define", "unary", "binary", "promote", "emit_const",
    "NEG", "EXP", "LOG", "SQRT", "TANH", "SIGMOID", "SOFTPLUS", "RELU", "STEP", "SCALE", "SHIFT",
    "POW", "ADD", "SUB", "MUL", "DIV", "GREATER", "EQUAL", "WHERE", "ZEROS", "CONST",
    "STOP_GRADIENT", "REDUCE_SUM", "REDUCE_MAX", "BROADCAST", "RESHAPE", "TRANSPOSE", "EINSUM",
    "SOFTMAX", "LOGSUMEXP", "PATCHES", "PATCHES_T", "BATCH_SUM", "BATCH_BROADCAST", "BATCH_COUNT",
    "CAST", "POWER", "COS", "SIN", "FLOOR", "FOREIGN", "Foreign", "NORMAL", "UNIFORM", "KEY", "TAKE", "SCATTER_ADD",
    "INTS",
]


class Prim:
    """A primitive box: a name, a type rule and a reverse derivative.

    ``type_rule(in_types, **params) -> out_types`` checks the inputs and gives
    the outputs' types (raise ``TypeError`` with a clear message when they do
    not fit). ``rev(b, params, ins, outs, dys) -> dins`` writes the reverse
    derivative *as a term of primitives* into the builder ``b``. An
    ``elementwise`` primitive maps arrays to arrays entry by entry (after
    broadcasting), so a backend implements it with one function of arrays.
    """

    def __init__(self, name: str, type_rule: Callable, rev: Callable, *, elementwise: bool = False):
        self.name = name
        self.type_rule = type_rule
        self.rev = rev
        self.elementwise = elementwise
        #: ``(forward, reverse)`` for a box that keeps its own residuals when ``R`` copies it
        #: (a scan stores its body's residuals per step): ``forward(b, params, ins) -> (outs,
        #: kept)`` replaces the copy of the box, ``reverse(b, params, ins, outs, kept, douts,
        #: needed) -> dins`` replaces ``rev`` (``needed[i]``: input ``i`` depends on a parameter
        #: or an input of the term, so its cotangent is wanted). ``None``: copy, then ``rev``.
        self.optic: tuple[Callable, Callable] | None = None

    def __repr__(self) -> str:
        return f"<prim {self.name}>"

    def __reduce__(self):  # primitives are singletons, looked up by name
        return (_prim_by_name, (self.name,))


#: The registry: every primitive by name. Backends implement each of these.
PRIMS: dict[str, Prim] = {}


def _prim_by_name(name: str) -> Prim:
    return PRIMS[name]


def define(name: str, type_rule: Callable, rev: Callable, *, elementwise: bool = False) -> Prim:
    """Declare a primitive: add it to :data:`PRIMS` (each name once)."""
    if name in PRIMS:
        raise ValueError(f"primitive {name!r} is already defined")
    PRIMS[name] = prim = Prim(name, type_rule, rev, elementwise=elementwise)
    return prim


FLOATS = ("float16", "bfloat16", "float32", "float64")


def _fail(name: str, types: Sequence[ArrayType], why: str):
    raise TypeError(f"{name}: {why} (got {', '.join(map(repr, types)) or 'no inputs'})")


def _arity(name, types, n):
    if len(types) != n:
        _fail(name, types, f"takes {n} input{'s' * (n != 1)}")


# --------------------------------------------------------------------------- type rules


def _unary_rule(name, bits: bool = False):
    def rule(types, **_):
        _arity(name, types, 1)
        if types[0].dtype not in FLOATS and not (bits and types[0].dtype == "bool"):
            _fail(name, types, "needs a floating-point input")
        return [types[0]]
    return rule


def _broadcast_shapes(name, types):
    """Operands broadcast as NumPy's do: shapes line up at their trailing axes, and an axis of
    size 1 stretches to the others' size."""
    first = types[0].shape
    if all(t.shape == first for t in types):  # the common case, checked first
        return first
    ndim = max(t.ndim for t in types)
    out = []
    for i in range(ndim):
        sizes = {t.shape[t.ndim - ndim + i] for t in types if t.ndim - ndim + i >= 0} - {1}
        if len(sizes) > 1:
            _fail(name, types, "operand shapes do not broadcast (trailing axes must be equal or 1)")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def promote(types: Sequence[ArrayType]) -> str:
    """The result dtype of mixing operands: the widest float (ints and bools give way)."""
    order = ("bool", "uint32", "int32", "int64", "float16", "bfloat16", "float32", "float64")
    return max((t.dtype for t in types), key=order.index)


def _elementwise_rule(name, n, out_dtype=None):
    def rule(types, **_):
        _arity(name, types, n)
        shape = _broadcast_shapes(name, types)
        dt = out_dtype or promote(types)
        return [ArrayType(shape, dt, any(t.batched for t in types))]
    return rule


# --------------------------------------------------------------------------- emitters
# Small helpers so that reverse-derivative rules read like formulas.

def neg(b, x): return b.emit1(NEG, x)
def add(b, x, y): return b.emit1(ADD, x, y)
def sub(b, x, y): return b.emit1(SUB, x, y)
def mul(b, x, y): return b.emit1(MUL, x, y)
def div(b, x, y): return b.emit1(DIV, x, y)
def scale(b, x, c): return b.emit1(SCALE, x, c=float(c))
def shift(b, x, c): return b.emit1(SHIFT, x, c=float(c))
def zeros_like(b, x): return b.emit1(ZEROS, x, types=(b.type_of(x),))
def reduce_sum(b, x, axes): return b.emit1(REDUCE_SUM, x, axes=tuple(axes))
def reshape(b, x, shape): return b.emit1(RESHAPE, x, shape=tuple(shape))
def broadcast(b, x, shape, dims): return b.emit1(BROADCAST, x, shape=tuple(shape), dims=tuple(dims))


def _kept(ndim, axes):
    return tuple(i for i in range(ndim) if i not in axes)


# --------------------------------------------------------------------------- elementwise

def unary(name: str, rev: Callable, *, bits: bool = False) -> Prim:
    """Declare an elementwise primitive of one floating-point operand (or a bit, with ``bits``)."""
    return define(name, _unary_rule(name, bits), rev, elementwise=True)


def binary(name: str, rev: Callable) -> Prim:
    """Declare an elementwise primitive of two broadcasting operands."""
    return define(name, _elementwise_rule(name, 2), rev, elementwise=True)


#: ``-x``; over Z2 (bool wires) the identity, so ``R`` of ``sub`` stays a circuit.
NEG = unary("neg", lambda b, p, x, y, dy: [neg(b, dy[0])], bits=True)
EXP = unary("exp", lambda b, p, x, y, dy: [mul(b, dy[0], y[0])])
LOG = unary("log", lambda b, p, x, y, dy: [div(b, dy[0], x[0])])
SQRT = unary("sqrt", lambda b, p, x, y, dy: [scale(b, div(b, dy[0], y[0]), 0.5)])
TANH = unary("tanh", lambda b, p, x, y, dy: [mul(b, dy[0], shift(b, neg(b, mul(b, y[0], y[0])), 1.0))])
SIGMOID = unary("sigmoid", lambda b, p, x, y, dy: [
    mul(b, dy[0], mul(b, y[0], shift(b, neg(b, y[0]), 1.0)))])
SOFTPLUS = unary("softplus", lambda b, p, x, y, dy: [mul(b, dy[0], b.emit1(SIGMOID, x[0]))])
#: ``step(x) = 1 if x > 0 else 0``: the derivative of relu (and itself of zero derivative).
STEP = unary("step", lambda b, p, x, y, dy: [None])
RELU = unary("relu", lambda b, p, x, y, dy: [mul(b, dy[0], b.emit1(STEP, x[0]))])
COS = unary("cos", lambda b, p, x, y, dy: [neg(b, mul(b, dy[0], b.emit1(SIN, x[0])))])
SIN = unary("sin", lambda b, p, x, y, dy: [mul(b, dy[0], b.emit1(COS, x[0]))])
#: ``floor(x)``: largest integer <= x (zero derivative almost everywhere).
FLOOR = unary("floor", lambda b, p, x, y, dy: [None])
STOP_GRADIENT = unary("stop_gradient", lambda b, p, x, y, dy: [None])


def _barrier_rule(types):
    if not types:
        _fail("optimization_barrier", types, "needs at least one input")
    return list(types)


#: ``optimization_barrier(*xs)``: the identity on its inputs, which a compiler may not see
#: through (``jax.lax.optimization_barrier``): recomputed residuals stay recomputed, in the
#: backward pass (:func:`paralens.R` with a ``residuals`` policy).
OPT_BARRIER = define("optimization_barrier", _barrier_rule, lambda b, p, x, y, dy: list(dy))
#: ``scale(x; c) = c * x`` and ``shift(x; c) = x + c`` for a Python constant ``c``.
SCALE = unary("scale", lambda b, p, x, y, dy: [scale(b, dy[0], p["c"])])
SHIFT = unary("shift", lambda b, p, x, y, dy: [dy[0]])


def _pow_rev(b, p, x, y, dy):
    e = p["p"]
    return [scale(b, mul(b, dy[0], b.emit1(POW, x[0], p=e - 1.0)), e)]


POW = unary("pow", _pow_rev)

ADD = binary("add", lambda b, p, x, y, dy: [dy[0], dy[0]])
SUB = binary("sub", lambda b, p, x, y, dy: [dy[0], neg(b, dy[0])])
MUL = binary("mul", lambda b, p, x, y, dy: [mul(b, dy[0], x[1]), mul(b, dy[0], x[0])])


def _div_rev(b, p, x, y, dy):
    d0 = div(b, dy[0], x[1])
    return [d0, neg(b, mul(b, d0, y[0]))]


DIV = binary("div", _div_rev)
#: Comparisons give float masks (1.0 where true) so they compose with arithmetic.
def _power_rev(b, p, x, y, dy):
    # d(x**e)/dx = e * x**e / x; d(x**e)/de = log(x) * x**e
    return [mul(b, dy[0], mul(b, x[1], div(b, y[0], x[0]))),
            mul(b, dy[0], mul(b, b.emit1(LOG, x[0]), y[0]))]


#: ``power(x, e)``: elementwise ``x ** e`` with both operands wires (``x > 0`` for the ``e`` derivative).
POWER = binary("power", _power_rev)
GREATER = binary("greater", lambda b, p, x, y, dy: [None, None])
EQUAL = binary("equal", lambda b, p, x, y, dy: [None, None])


def _where_rev(b, p, x, y, dy):
    z = zeros_like(b, dy[0])
    return [None, b.emit1(WHERE, x[0], dy[0], z), b.emit1(WHERE, x[0], z, dy[0])]


WHERE = define("where", _elementwise_rule("where", 3), _where_rev, elementwise=True)


def _cast_rule(types, *, dtype):
    _arity("cast", types, 1)
    return [ArrayType(types[0].shape, dtype, types[0].batched)]


def _cast_rev(b, p, x, y, dy):
    src = b.type_of(x[0]).dtype
    return [b.emit1(CAST, dy[0], dtype=src) if src in FLOATS else None]


#: ``cast(x; dtype)``: convert the element type (an optimizer's int32 step count to float).
CAST = define("cast", _cast_rule, _cast_rev, elementwise=True)


class Foreign:
    """A backend-level function inside a term: called as ``fn(*arrays) -> list of arrays``.

    Equal only to itself, so terms holding one stay hashable. Used to wrap
    code paralens cannot see into (an optax transformation).
    """

    def __init__(self, fn, name: str):
        self.fn = fn
        self.name = name

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<foreign {self.name}>"


def _foreign_rule(types, *, fn, types_out):
    return list(types_out)


def _foreign_rev(b, p, x, y, dy):
    raise NotImplementedError(f"{p['fn'].name} is an opaque box: paralens cannot differentiate through it")


#: ``foreign(*xs; fn, types_out)``: an opaque box computed by ``fn`` on the backend's arrays.
FOREIGN = define("foreign", _foreign_rule, _foreign_rev)


# --------------------------------------------------------------------------- randomness
# Randomness is an input wire (a key), so a term is a deterministic function of its key.

#: The type of a random key: two unbatched uint32 words (the layout of ``jax.random.PRNGKey``).
KEY = ArrayType((2,), "uint32", batched=False)


def _normal_rule(types, *, shape, dtype):
    _arity("normal", types, 1)
    if types[0] != KEY:
        _fail("normal", types, f"takes a random key of type {KEY}")
    if dtype not in FLOATS:
        _fail("normal", types, f"draws floating-point numbers, not {dtype}")
    return [KEY, ArrayType(tuple(shape), dtype, batched=False)]


#: ``normal(key; shape, dtype) -> (key', sample)``: standard normal numbers drawn with ``key``, and
#: the key to draw the next ones with. Neither depends differentiably on anything.
NORMAL = define("normal", _normal_rule, lambda b, p, x, y, dy: [None])


def _uniform_rule(types):
    _arity("uniform", types, 2)
    if types[0] != KEY:
        _fail("uniform", types, f"takes a random key of type {KEY} first")
    if types[1].dtype not in FLOATS:
        _fail("uniform", types, f"draws floating-point numbers, not {types[1].dtype}")
    return [KEY, types[1]]


#: ``uniform(key, like) -> (key', sample)``: numbers uniform in [0, 1) of ``like``'s type, drawn
#: with ``key``; a batched ``like`` gets a draw per example (dropout masks). Only the type of
#: ``like`` is read, so nothing here depends differentiably on anything.
UNIFORM = define("uniform", _uniform_rule, lambda b, p, x, y, dy: [None, None])


# --------------------------------------------------------------------------- constants


def _zeros_rule(ins, *, types):
    if any(t.batched for t in types) and not any(t.batched for t in ins):
        _fail("zeros", ins, "a batched zero needs a batched input to take its batch size from")
    return list(types)


#: ``zeros(*xs; types)``: zero arrays of ``types``, ignoring the inputs (the zero map).
ZEROS = define("zeros", _zeros_rule, lambda b, p, x, y, dy: [None] * len(x))


def _const_rule(types, *, value, shape, dtype):
    if types:
        _fail("const", types, "takes no inputs")
    if len(value) != math.prod(shape):
        raise TypeError(f"const: {len(value)} values do not fill shape {shape}")
    return [ArrayType(tuple(shape), dtype, batched=False)]


#: ``const(; value, shape, dtype)``: an unbatched constant (``value`` a flat tuple).
CONST = define("const", _const_rule, lambda b, p, x, y, dy: [])


# --------------------------------------------------------------------------- reductions and shapes


def _axes_ok(name, t, axes):
    if len(set(axes)) != len(axes) or any(not 0 <= a < t.ndim for a in axes):
        _fail(name, [t], f"axes {axes} out of range or repeated")


def _reduce_rule(name):
    def rule(types, *, axes):
        _arity(name, types, 1)
        t = types[0]
        _axes_ok(name, t, axes)
        return [t.with_shape(t.shape[i] for i in _kept(t.ndim, axes))]
    return rule


def _reduce_sum_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    return [broadcast(b, dy[0], t.shape, _kept(t.ndim, p["axes"]))]


REDUCE_SUM = define("reduce_sum", _reduce_rule("reduce_sum"), _reduce_sum_rev)


def _reduce_max_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    kept = _kept(t.ndim, p["axes"])
    mask = b.emit1(EQUAL, x[0], broadcast(b, y[0], t.shape, kept))
    count = reduce_sum(b, mask, p["axes"])
    return [mul(b, broadcast(b, div(b, dy[0], count), t.shape, kept), mask)]


REDUCE_MAX = define("reduce_max", _reduce_rule("reduce_max"), _reduce_max_rev)


def _broadcast_rule(types, *, shape, dims):
    _arity("broadcast", types, 1)
    t = types[0]
    if len(dims) != t.ndim or any(not 0 <= d < len(shape) for d in dims) or list(dims) != sorted(set(dims)):
        _fail("broadcast", types, f"dims {dims} must be increasing positions in {shape}, one per input axis")
    if any(t.shape[i] not in (1, shape[d]) for i, d in enumerate(dims)):
        _fail("broadcast", types, f"cannot broadcast to {shape} along {dims}")
    return [t.with_shape(shape)]


def _broadcast_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    shape, dims = p["shape"], p["dims"]
    summed = [i for i in range(len(shape))
              if i not in dims or (t.shape[dims.index(i)] == 1 and shape[i] != 1)]
    r = reduce_sum(b, dy[0], summed) if summed else dy[0]
    return [r if b.type_of(r).shape == t.shape else reshape(b, r, t.shape)]


BROADCAST = define("broadcast", _broadcast_rule, _broadcast_rev)


def _reshape_rule(types, *, shape):
    _arity("reshape", types, 1)
    if math.prod(shape) != types[0].size:
        _fail("reshape", types, f"cannot reshape to {shape}")
    return [types[0].with_shape(shape)]


RESHAPE = define("reshape", _reshape_rule,
               lambda b, p, x, y, dy: [reshape(b, dy[0], b.type_of(x[0]).shape)])


def _transpose_rule(types, *, perm):
    _arity("transpose", types, 1)
    t = types[0]
    if sorted(perm) != list(range(t.ndim)):
        _fail("transpose", types, f"perm={perm} is not a permutation of the axes")
    return [t.with_shape(t.shape[i] for i in perm)]


def _transpose_rev(b, p, x, y, dy):
    inv = tuple(sorted(range(len(p["perm"])), key=p["perm"].__getitem__))
    return [b.emit1(TRANSPOSE, dy[0], perm=inv)]


TRANSPOSE = define("transpose", _transpose_rule, _transpose_rev)


# --------------------------------------------------------------------------- contraction


def parse_einsum(spec: str) -> tuple[list[str], str]:
    lhs, out = spec.replace(" ", "").split("->")
    return lhs.split(","), out


def _einsum_rule(types, *, spec, batched_out=None):
    _arity("einsum", types, 2)
    if not isinstance(spec, str) or spec.count("->") != 1:
        _fail("einsum", types, f"spec={spec!r} must name the output after '->', e.g. 'i,io->o'")
    ins, out = parse_einsum(spec)
    if len(ins) != 2:
        _fail("einsum", types, f"spec {spec!r} needs two operands")
    sizes: dict[str, int] = {}
    for sub_, t in zip(ins, types):
        if len(sub_) != t.ndim or len(set(sub_)) != len(sub_):
            _fail("einsum", types, f"subscripts {sub_!r} do not match shape {t.shape}")
        for c, d in zip(sub_, t.shape):
            if sizes.setdefault(c, d) != d:
                _fail("einsum", types, f"index {c!r} has sizes {sizes[c]} and {d}")
    subs = ins + [out]
    for k, s in enumerate(subs):
        for c in s:
            if sum(c in other for j, other in enumerate(subs) if j != k) == 0:
                _fail("einsum", types, f"index {c!r} of {spec!r} must occur in two places "
                                       "(sum a single axis with reduce_sum)")
    if len(set(out)) != len(out):
        _fail("einsum", types, f"repeated output index in {spec!r}")
    any_b = any(t.batched for t in types)
    bo = any_b if batched_out is None else batched_out
    if bo and not any_b:
        _fail("einsum", types, "a batched output needs a batched operand")
    return [ArrayType(tuple(sizes[c] for c in out), promote(types), bo)]


def _contract_into(b, target: str, u: int, su: str, v: int, sv: str, batched: bool) -> int:
    """``einsum(u, v) -> target``, operands ordered so that the contraction's free axes come
    out in ``target``'s order (a plain matmul, no transpose after it)."""
    free_u = "".join(ch for ch in su if ch in target)
    free_v = "".join(ch for ch in sv if ch in target)
    if free_v + free_u == target and free_u + free_v != target:
        u, su, v, sv = v, sv, u, su
    return b.emit1(EINSUM, u, v, spec=f"{su},{sv}->{target}", batched_out=batched)


def _einsum_rev(b, p, x, y, dy):
    (a, c), out = parse_einsum(p["spec"])
    da = _contract_into(b, a, dy[0], out, x[1], c, b.type_of(x[0]).batched)
    dc = _contract_into(b, c, dy[0], out, x[0], a, b.type_of(x[1]).batched)
    return [da, dc]


#: ``einsum(a, b; spec)`` over per-example axes, e.g. ``"i,io->o"`` for ``x @ W``.
#: A batched operand carries the batch axis too: it is kept in the output unless
#: ``batched_out=False``, in which case it is contracted (one matmul over the
#: whole batch, the reverse derivative of sharing a parameter across examples).
EINSUM = define("einsum", _einsum_rule, _einsum_rev)


# --------------------------------------------------------------------------- softmax family


def _axis_rule(name, drop):
    def rule(types, *, axis):
        _arity(name, types, 1)
        t = types[0]
        _axes_ok(name, t, (axis,))
        return [t.with_shape(t.shape[:axis] + t.shape[axis + 1:]) if drop else t]
    return rule


def _softmax_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    s = reduce_sum(b, mul(b, dy[0], y[0]), (p["axis"],))
    return [mul(b, y[0], sub(b, dy[0], broadcast(b, s, t.shape, _kept(t.ndim, (p["axis"],)))))]


def _logsumexp_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    kept = _kept(t.ndim, (p["axis"],))
    sm = b.emit1(EXP, sub(b, x[0], broadcast(b, y[0], t.shape, kept)))  # softmax from the output: one exp
    return [mul(b, broadcast(b, dy[0], t.shape, kept), sm)]


SOFTMAX = define("softmax", _axis_rule("softmax", False), _softmax_rev)
LOGSUMEXP = define("logsumexp", _axis_rule("logsumexp", True), _logsumexp_rev)


# --------------------------------------------------------------------------- convolution patches


def pad_sides(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """``padding`` as ``((top, bottom), (left, right))``; ``(ph, pw)`` pads both sides alike."""
    return tuple(p if isinstance(p, tuple) else (p, p) for p in padding)


def patches_shape(in_shape, kh, kw, stride, padding):
    h, w, c = in_shape
    (t, b), (l, r) = pad_sides(padding)
    oh = (h + t + b - kh) // stride[0] + 1
    ow = (w + l + r - kw) // stride[1] + 1
    return (oh, ow, kh, kw, c)


def _patches_rule(types, *, kh, kw, stride, padding):
    _arity("patches", types, 1)
    t = types[0]
    if t.ndim != 3:
        _fail("patches", types, "needs a per-example (height, width, channels) input")
    out = patches_shape(t.shape, kh, kw, stride, padding)
    if out[0] < 1 or out[1] < 1:
        _fail("patches", types, f"window {kh}x{kw} does not fit")
    return [t.with_shape(out)]


def _patches_t_rule(types, *, in_shape, kh, kw, stride, padding):
    _arity("patches_t", types, 1)
    t = types[0]
    if t.shape != patches_shape(in_shape, kh, kw, stride, padding):
        _fail("patches_t", types, f"is not the patches shape of {in_shape}")
    return [t.with_shape(in_shape)]


def _patches_rev(b, p, x, y, dy):
    return [b.emit1(PATCHES_T, dy[0], in_shape=b.type_of(x[0]).shape, **p)]


def _patches_t_rev(b, p, x, y, dy):
    q = dict(p)
    q.pop("in_shape")
    return [b.emit1(PATCHES, dy[0], **q)]


#: ``patches(x; kh, kw, stride, padding)``: (H, W, C) -> (OH, OW, kh, kw, C), the
#: sliding windows of a 2-D convolution or pooling (zero padding). Linear; its
#: reverse derivative is its transpose ``patches_t`` (overlapping windows add up).
PATCHES = define("patches", _patches_rule, _patches_rev)
PATCHES_T = define("patches_t", _patches_t_rule, _patches_t_rev)


# --------------------------------------------------------------------------- gather and scatter

#: The dtypes of indices.
INTS = ("int32", "int64", "uint32")


def _indices(name, types, idx: ArrayType):
    if idx.dtype not in INTS:
        _fail(name, types, f"takes integer indices ({', '.join(INTS)}), not {idx.dtype}")


def _take_rule(types):
    _arity("take", types, 2)
    table, idx = types
    _indices("take", types, idx)
    if table.ndim == 0:
        _fail("take", types, "needs a table with at least one axis to take rows of")
    return [ArrayType(idx.shape + table.shape[1:], table.dtype, table.batched or idx.batched)]


def _scatter_add_rule(types, *, size, batched_out=None):
    _arity("scatter_add", types, 2)
    values, idx = types
    _indices("scatter_add", types, idx)
    if values.shape[:idx.ndim] != idx.shape:
        _fail("scatter_add", types, f"the values' shape must start with the indices' shape {idx.shape}")
    any_b = values.batched or idx.batched
    bo = any_b if batched_out is None else batched_out
    if bo and not any_b:
        _fail("scatter_add", types, "a batched output needs a batched operand")
    return [ArrayType((size,) + values.shape[idx.ndim:], values.dtype, bo)]


def _take_rev(b, p, x, y, dy):
    t = b.type_of(x[0])
    return [b.emit1(SCATTER_ADD, dy[0], x[1], size=t.shape[0], batched_out=t.batched), None]


#: ``take(table, idx)``: rows of ``table`` (``n, *rest``) at integer indices ``idx`` of any shape ``s``,
#: giving ``(*s, *rest)`` (``table[idx]``; an embedding lookup). Batched if either operand is; a batched
#: table is indexed per example. Indices must be in ``[0, n)``: out of range, NumPy raises and JAX clamps.
TAKE = define("take", _take_rule, _take_rev)
#: ``scatter_add(values, idx; size, batched_out)``: zeros of shape ``(size, *rest)`` with each row
#: ``values[i]`` added at row ``idx[i]`` (repeated indices add up): the transpose of ``take``, and
#: linear. With ``batched_out=False`` batched operands are also summed over the batch, in the same
#: scatter (the cotangent of an embedding table shared by every example).
SCATTER_ADD = define("scatter_add", _scatter_add_rule,
                     lambda b, p, x, y, dy: [b.emit1(TAKE, dy[0], x[1]), None])


# --------------------------------------------------------------------------- the batch axis


def _batch_sum_rule(types):
    _arity("batch_sum", types, 1)
    if not types[0].batched:
        _fail("batch_sum", types, "needs a batched input")
    return [types[0].unbatched]


def _batch_broadcast_rule(types):
    _arity("batch_broadcast", types, 2)
    if types[0].batched or not types[1].batched:
        _fail("batch_broadcast", types, "takes an unbatched value and a batched reference")
    return [types[0].as_batched]


def _batch_count_rule(types):
    _arity("batch_count", types, 1)
    if not types[0].batched:
        _fail("batch_count", types, "needs a batched input")
    return [ArrayType((), types[0].dtype, batched=False)]


#: ``batch_sum(x)``: sum over the examples (batched -> unbatched).
BATCH_SUM = define("batch_sum", _batch_sum_rule,
                 lambda b, p, x, y, dy: [b.emit1(BATCH_BROADCAST, dy[0], x[0])])
#: ``batch_broadcast(u, ref)``: the same ``u`` for every example of ``ref``'s batch.
BATCH_BROADCAST = define("batch_broadcast", _batch_broadcast_rule,
                       lambda b, p, x, y, dy: [b.emit1(BATCH_SUM, dy[0]), None])
#: ``batch_count(ref)``: the number of examples in ``ref``'s batch, as a float scalar.
BATCH_COUNT = define("batch_count", _batch_count_rule, lambda b, p, x, y, dy: [None])


def emit_const(b, value, shape=(), dtype="float32") -> int:
    """Emit a constant from a Python number or nested lists (no array library needed)."""
    conv = float if dtype in FLOATS else int
    flat = tuple(conv(v) for v in _flatten(value))
    return b.emit1(CONST, value=flat, shape=tuple(shape), dtype=dtype)


def _flatten(v):
    if hasattr(v, "tolist"):  # an array from any library, without importing one
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        for item in v:
            yield from _flatten(item)
    else:
        yield v
