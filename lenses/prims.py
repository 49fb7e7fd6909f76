"""The primitive boxes, in one registry: each with a type rule and its reverse derivative as a term.

A primitive is declared once, here (or, for ``scan``, in ``paralens.loops``),
with :func:`define`: its name, its type rule and its reverse-derivative rule.
Every reverse-derivative rule builds its result out of primitives of this same
registry, so ``R`` applies again to its output (``R(R(f))``). A rule is written
like the formula: it gets the box's attributes, the forward input wires ``x``
and output wires ``y`` (the optic's residuals) and the output cotangents
``dy``, as :class:`~paralens.wires.Wire` objects with arithmetic, and returns
one cotangent per input, or ``None`` where the derivative is zero. A primitive
applied to wires emits its box (``SIN(x)``, ``BROADCAST(y, shape=..., dims=...)``),
so tanh's rule reads ``dy * (1 - y * y)``::

    TANH = unary("tanh", lambda p, x, y, dy: [dy[0] * (1.0 - y[0] * y[0])])

An elementwise primitive named as the array libraries name the function
(``tan``, ``arctan``) needs no entry in a backend's table: the backend takes
the library's own function.

Shapes are per example. Elementwise boxes broadcast as NumPy does: shapes line
up at their trailing axes and axes of size 1 stretch (a scalar, a bias, a
mean taken with ``keepdims``); batched and unbatched operands mix freely (an
unbatched operand is shared by every example). ``R`` reconciles such implicit
broadcasts generically (sum over the batch, over the broadcast leading axes
and over the stretched axes), so no rule here special-cases them.

This module needs nothing but ``paralens.types``: rules reach the builder
only through the ``b`` they are given.

>>> from paralens.prims import PRIMS
>>> PRIMS["tanh"].elementwise, PRIMS["einsum"].elementwise
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .types import ArrayType

__all__ = [
    "Prim", "PRIMS", "define", "unary", "binary", "promote", "emit_const",
    "NEG", "EXP", "LOG", "SQRT", "TANH", "SIGMOID", "SOFTPLUS", "RELU", "STEP", "SCALE", "SHIFT",
    "POW", "ADD", "SUB", "MUL", "DIV", "GREATER", "EQUAL", "WHERE", "ZEROS", "CONST",
    "STOP_GRADIENT", "REDUCE_SUM", "REDUCE_MAX", "BROADCAST", "RESHAPE", "TRANSPOSE", "EINSUM",
    "SOFTMAX", "LOGSUMEXP", "CONV", "CONV_WEIGHT", "REV", "WINDOW_MAX", "WINDOW_SUM", "SELECT_AND_SCATTER_ADD",
    "SELECT_AND_GATHER_ADD", "BATCH_SUM", "BATCH_BROADCAST", "BATCH_COUNT",
    "CAST", "POWER", "COS", "SIN", "TAN", "ARCTAN", "FLOOR", "FOREIGN", "Foreign", "NORMAL", "UNIFORM", "KEY",
    "TAKE", "SCATTER_ADD", "INTS", "OPT_BARRIER", "FLOATS", "COMPLEX", "REAL_OF",
]


class Prim:
    """A primitive box: a name, a type rule and a reverse derivative.

    ``type_rule(in_types, **attrs) -> out_types`` checks the inputs and gives
    the outputs' types (raise ``TypeError`` with a clear message when they do
    not fit). ``rev(attrs, x, y, dy) -> dx`` writes the reverse derivative *as a
    term of primitives*, with wires (see the module's docstring). An
    ``elementwise`` primitive maps arrays to arrays entry by entry (after
    broadcasting) and takes ``arity`` operands, so a backend implements it with
    one function of arrays.
    """

    def __init__(self, name: str, type_rule: Callable, rev: Callable, *, elementwise: bool = False,
                 arity: int | None = None):
        self.name = name
        self.type_rule = type_rule
        self.rev = rev
        self.elementwise = elementwise
        self.arity = arity
        #: ``(forward, reverse)`` for a box that keeps its own residuals when ``R`` copies it
        #: (a scan stores its body's residuals per step): ``forward(b, attrs, ins) -> (outs,
        #: kept)`` replaces the copy of the box, ``reverse(b, attrs, ins, outs, kept, douts,
        #: needed) -> dins`` replaces ``rev`` (``needed[i]``: input ``i`` depends on a parameter
        #: or an input of the term, so its cotangent is wanted). ``None``: copy, then ``rev``.
        #: These two work on the builder ``b`` and wire numbers: they build terms, not formulas.
        self.optic: tuple[Callable, Callable] | None = None

    def __call__(self, *wires, **attrs):
        """Emit this box on ``wires`` (all of one traced function) into their builder: ``SIN(x)``,
        ``REDUCE_SUM(x, axes=(0,))``. Returns a wire of the same class as the first, or a
        tuple of them for several outputs."""
        try:
            b = wires[0].builder
            ids = [w.id for w in wires]
            same = all(w.builder is b for w in wires)
        except (IndexError, AttributeError):
            raise TypeError(f"{self.name} applies to wires, got "
                            f"{', '.join(type(w).__name__ for w in wires) or 'none'}") from None
        if not same:
            raise TypeError(f"{self.name}: its wires come from two different traced functions")
        outs = b.emit(self, ids, **attrs)
        make = type(wires[0])
        return make(b, outs[0]) if len(outs) == 1 else tuple(make(b, o) for o in outs)

    def __repr__(self) -> str:
        return f"<prim {self.name}>"

    def __reduce__(self):  # primitives are singletons, looked up by name
        return (_prim_by_name, (self.name,))


#: The registry: every primitive by name. Backends implement each of these.
PRIMS: dict[str, Prim] = {}


def _prim_by_name(name: str) -> Prim:
    return PRIMS[name]


def define(name: str, type_rule: Callable, rev: Callable, *, elementwise: bool = False,
           arity: int | None = None) -> Prim:
    """Declare a primitive: add it to :data:`PRIMS` (each name once)."""
    if name in PRIMS:
        raise ValueError(f"primitive {name!r} is already defined")
    PRIMS[name] = prim = Prim(name, type_rule, rev, elementwise=elementwise, arity=arity)
    return prim


FLOATS = ("float16", "bfloat16", "float32", "float64")
#: complex numbers: what optimizers need of them (arithmetic, conj, real, abs, sqrt, powers), as
#: optax treats complex parameters; R does not differentiate them
COMPLEX = ("complex64", "complex128")
#: a complex dtype's real part
REAL_OF = {"complex64": "float32", "complex128": "float64"}


def _fail(name: str, types: Sequence[ArrayType], why: str):
    raise TypeError(f"{name}: {why} (got {', '.join(map(repr, types)) or 'no inputs'})")


def _arity(name, types, n):
    if len(types) != n:
        _fail(name, types, f"takes {n} input{'s' * (n != 1)}")


# --------------------------------------------------------------------------- type rules


def _unary_rule(name, bits: bool = False, complex_to=None):
    """The type rule of an elementwise function of a float (or a bit, with ``bits``), or of a
    complex number where ``complex_to`` says what it gives: ``"same"`` or ``"real"``."""
    def rule(types, **_):
        _arity(name, types, 1)
        t = types[0]
        if t.dtype in COMPLEX and complex_to:
            return [t if complex_to == "same" else ArrayType(t.shape, REAL_OF[t.dtype], t.batched)]
        if t.dtype not in FLOATS and not (bits and t.dtype == "bool"):
            _fail(name, types, "needs a floating-point input")
        return [t]
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


_ORDER = ("bool", "uint32", "int32", "int64", "float16", "bfloat16", "float32", "float64")


def promote(types: Sequence[ArrayType]) -> str:
    """The result dtype of mixing operands: the widest float (ints and bools give way); with a
    complex operand, the complex dtype as wide as the widest float among them (as JAX)."""
    dtypes = [t.dtype for t in types]
    if not any(d in COMPLEX for d in dtypes):
        return max(dtypes, key=_ORDER.index)
    wide = any(d in ("float64", "complex128", "int64") for d in dtypes)
    return "complex128" if wide else "complex64"


def _elementwise_rule(name, n, out_dtype=None):
    def rule(types, **_):
        _arity(name, types, n)
        shape = _broadcast_shapes(name, types)
        dt = out_dtype or promote(types)
        return [ArrayType(shape, dt, any(t.batched for t in types))]
    return rule


# --------------------------------------------------------------------------- emitters
# Builder-level helpers for code that builds terms out of wire numbers (R's bookkeeping, the
# assemblies); the rules below are written with wires instead.

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

def unary(name: str, rev: Callable, *, bits: bool = False, complex_to: str | None = None) -> Prim:
    """Declare an elementwise primitive of one floating-point operand (or a bit, with ``bits``;
    or a complex number, giving ``complex_to``: ``"same"`` or ``"real"``)."""
    return define(name, _unary_rule(name, bits, complex_to), rev, elementwise=True, arity=1)


def binary(name: str, rev: Callable) -> Prim:
    """Declare an elementwise primitive of two broadcasting operands."""
    return define(name, _elementwise_rule(name, 2), rev, elementwise=True, arity=2)


#: ``-x``; over Z2 (bool wires) the identity, so ``R`` of ``sub`` stays a circuit.
NEG = unary("neg", lambda p, x, y, dy: [-dy[0]], bits=True, complex_to="same")
EXP = unary("exp", lambda p, x, y, dy: [dy[0] * y[0]], complex_to="same")
LOG = unary("log", lambda p, x, y, dy: [dy[0] / x[0]], complex_to="same")
SQRT = unary("sqrt", lambda p, x, y, dy: [dy[0] / y[0] * 0.5], complex_to="same")
TANH = unary("tanh", lambda p, x, y, dy: [dy[0] * (1.0 - y[0] * y[0])])
SIGMOID = unary("sigmoid", lambda p, x, y, dy: [dy[0] * (y[0] * (1.0 - y[0]))])
SOFTPLUS = unary("softplus", lambda p, x, y, dy: [dy[0] * SIGMOID(x[0])])
#: ``step(x) = 1 if x > 0 else 0``: the derivative of relu (and itself of zero derivative).
STEP = unary("step", lambda p, x, y, dy: [None])
RELU = unary("relu", lambda p, x, y, dy: [dy[0] * STEP(x[0])])
COS = unary("cos", lambda p, x, y, dy: [-(dy[0] * SIN(x[0]))])
SIN = unary("sin", lambda p, x, y, dy: [dy[0] * COS(x[0])])
TAN = unary("tan", lambda p, x, y, dy: [dy[0] * (1.0 + y[0] * y[0])])
ARCTAN = unary("arctan", lambda p, x, y, dy: [dy[0] / (1.0 + x[0] * x[0])])
#: ``floor(x)``: largest integer <= x (zero derivative almost everywhere).
FLOOR = unary("floor", lambda p, x, y, dy: [None])
STOP_GRADIENT = unary("stop_gradient", lambda p, x, y, dy: [None])
#: ``sign(x)``: -1, 0 or 1 (zero derivative almost everywhere).
SIGN = unary("sign", lambda p, x, y, dy: [None], complex_to="same")
ABS = unary("abs", lambda p, x, y, dy: [dy[0] * SIGN(x[0])], complex_to="real")
#: the complex conjugate (the identity on floats); ``real``: the real part. Optimizers read
#: ``real(conj(g) * g)`` for a complex gradient's squared size, as optax's ``abs_sq``.
CONJ = unary("conj", lambda p, x, y, dy: [CONJ(dy[0])], complex_to="same")
REAL = unary("real", lambda p, x, y, dy: [dy[0]], complex_to="real")


def _barrier_rule(types):
    if not types:
        _fail("optimization_barrier", types, "needs at least one input")
    return list(types)


#: ``optimization_barrier(*xs)``: the identity on its inputs, which a compiler may not see
#: through (``jax.lax.optimization_barrier``): recomputed residuals stay recomputed, in the
#: backward pass (:func:`paralens.R` with a ``residuals`` policy).
OPT_BARRIER = define("optimization_barrier", _barrier_rule, lambda p, x, y, dy: list(dy))
#: ``scale(x; c) = c * x`` and ``shift(x; c) = x + c`` for a Python constant ``c``.
SCALE = unary("scale", lambda p, x, y, dy: [SCALE(dy[0], c=p["c"])], complex_to="same")
SHIFT = unary("shift", lambda p, x, y, dy: [dy[0]], complex_to="same")
#: ``pow(x; p) = x ** p`` for a Python constant ``p``.
POW = unary("pow", lambda p, x, y, dy: [dy[0] * POW(x[0], p=p["p"] - 1.0) * p["p"]], complex_to="same")

ADD = binary("add", lambda p, x, y, dy: [dy[0], dy[0]])
SUB = binary("sub", lambda p, x, y, dy: [dy[0], -dy[0]])
MUL = binary("mul", lambda p, x, y, dy: [dy[0] * x[1], dy[0] * x[0]])


def _div_rev(p, x, y, dy):
    d0 = dy[0] / x[1]
    return [d0, -(d0 * y[0])]


DIV = binary("div", _div_rev)
#: ``power(x, e)``: elementwise ``x ** e`` with both operands wires (``x > 0`` for the ``e``
#: derivative): ``d/dx = e x**e / x`` and ``d/de = log(x) x**e``.
POWER = binary("power", lambda p, x, y, dy: [dy[0] * (x[1] * (y[0] / x[0])), dy[0] * (LOG(x[0]) * y[0])])
#: Comparisons give float masks (1.0 where true) so they compose with arithmetic.
GREATER = binary("greater", lambda p, x, y, dy: [None, None])
EQUAL = binary("equal", lambda p, x, y, dy: [None, None])


def _where_rev(p, x, y, dy):
    z = ZEROS(dy[0], types=(dy[0].type,))
    return [None, WHERE(x[0], dy[0], z), WHERE(x[0], z, dy[0])]


WHERE = define("where", _elementwise_rule("where", 3), _where_rev, elementwise=True, arity=3)


def _cast_rule(types, *, dtype):
    _arity("cast", types, 1)
    return [ArrayType(types[0].shape, dtype, types[0].batched)]


def _cast_rev(p, x, y, dy):
    src = x[0].type.dtype
    return [CAST(dy[0], dtype=src) if src in FLOATS else None]


#: ``cast(x; dtype)``: convert the element type (an optimizer's int32 step count to float).
CAST = define("cast", _cast_rule, _cast_rev, elementwise=True, arity=1)


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


def _foreign_rev(p, x, y, dy):
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
NORMAL = define("normal", _normal_rule, lambda p, x, y, dy: [None])


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
UNIFORM = define("uniform", _uniform_rule, lambda p, x, y, dy: [None, None])


# --------------------------------------------------------------------------- constants


def _zeros_rule(ins, *, types):
    if any(t.batched for t in types) and not any(t.batched for t in ins):
        _fail("zeros", ins, "a batched zero needs a batched input to take its batch size from")
    return list(types)


#: ``zeros(*xs; types)``: zero arrays of ``types``, ignoring the inputs (the zero map).
ZEROS = define("zeros", _zeros_rule, lambda p, x, y, dy: [None] * len(x))


def _const_rule(types, *, value, shape, dtype):
    if types:
        _fail("const", types, "takes no inputs")
    if len(value) != math.prod(shape):
        raise TypeError(f"const: {len(value)} values do not fill shape {shape}")
    return [ArrayType(tuple(shape), dtype, batched=False)]


#: ``const(; value, shape, dtype)``: an unbatched constant (``value`` a flat tuple).
CONST = define("const", _const_rule, lambda p, x, y, dy: [])


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


def _reduce_sum_rev(p, x, y, dy):
    t = x[0].type
    return [BROADCAST(dy[0], shape=t.shape, dims=_kept(t.ndim, p["axes"]))]


REDUCE_SUM = define("reduce_sum", _reduce_rule("reduce_sum"), _reduce_sum_rev)


def _reduce_max_rev(p, x, y, dy):
    t = x[0].type
    kept = _kept(t.ndim, p["axes"])
    mask = EQUAL(x[0], BROADCAST(y[0], shape=t.shape, dims=kept))  # ties share the cotangent
    count = REDUCE_SUM(mask, axes=p["axes"])
    return [BROADCAST(dy[0] / count, shape=t.shape, dims=kept) * mask]


REDUCE_MAX = define("reduce_max", _reduce_rule("reduce_max"), _reduce_max_rev)


def _broadcast_rule(types, *, shape, dims):
    _arity("broadcast", types, 1)
    t = types[0]
    if len(dims) != t.ndim or any(not 0 <= d < len(shape) for d in dims) or list(dims) != sorted(set(dims)):
        _fail("broadcast", types, f"dims {dims} must be increasing positions in {shape}, one per input axis")
    if any(t.shape[i] not in (1, shape[d]) for i, d in enumerate(dims)):
        _fail("broadcast", types, f"cannot broadcast to {shape} along {dims}")
    return [t.with_shape(shape)]


def _broadcast_rev(p, x, y, dy):
    t = x[0].type
    shape, dims = p["shape"], p["dims"]
    summed = tuple(i for i in range(len(shape))
                   if i not in dims or (t.shape[dims.index(i)] == 1 and shape[i] != 1))
    r = REDUCE_SUM(dy[0], axes=summed) if summed else dy[0]
    return [r if r.type.shape == t.shape else RESHAPE(r, shape=t.shape)]


BROADCAST = define("broadcast", _broadcast_rule, _broadcast_rev)


def _reshape_rule(types, *, shape):
    _arity("reshape", types, 1)
    if math.prod(shape) != types[0].size:
        _fail("reshape", types, f"cannot reshape to {shape}")
    return [types[0].with_shape(shape)]


RESHAPE = define("reshape", _reshape_rule, lambda p, x, y, dy: [RESHAPE(dy[0], shape=x[0].type.shape)])


def _transpose_rule(types, *, perm):
    _arity("transpose", types, 1)
    t = types[0]
    if sorted(perm) != list(range(t.ndim)):
        _fail("transpose", types, f"perm={perm} is not a permutation of the axes")
    return [t.with_shape(t.shape[i] for i in perm)]


def _transpose_rev(p, x, y, dy):
    inv = tuple(sorted(range(len(p["perm"])), key=p["perm"].__getitem__))
    return [TRANSPOSE(dy[0], perm=inv)]


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


def _contract_into(target: str, u, su: str, v, sv: str, batched: bool):
    """``einsum(u, v) -> target``, operands ordered so that the contraction's free axes come
    out in ``target``'s order (a plain matmul, no transpose after it)."""
    free_u = "".join(ch for ch in su if ch in target)
    free_v = "".join(ch for ch in sv if ch in target)
    if free_v + free_u == target and free_u + free_v != target:
        u, su, v, sv = v, sv, u, su
    return EINSUM(u, v, spec=f"{su},{sv}->{target}", batched_out=batched)


def _einsum_rev(p, x, y, dy):
    (a, c), out = parse_einsum(p["spec"])
    return [_contract_into(a, dy[0], out, x[1], c, x[0].type.batched),
            _contract_into(c, dy[0], out, x[0], a, x[1].type.batched)]


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


def _softmax_rev(p, x, y, dy):
    t = x[0].type
    s = REDUCE_SUM(dy[0] * y[0], axes=(p["axis"],))
    return [y[0] * (dy[0] - BROADCAST(s, shape=t.shape, dims=_kept(t.ndim, (p["axis"],))))]


def _logsumexp_rev(p, x, y, dy):
    t = x[0].type
    kept = _kept(t.ndim, (p["axis"],))
    softmax = EXP(x[0] - BROADCAST(y[0], shape=t.shape, dims=kept))  # from the output: one exp
    return [BROADCAST(dy[0], shape=t.shape, dims=kept) * softmax]


SOFTMAX = define("softmax", _axis_rule("softmax", False), _softmax_rev)
LOGSUMEXP = define("logsumexp", _axis_rule("logsumexp", True), _logsumexp_rev)


# --------------------------------------------------------------------------- convolution and windows
# Per example, arrays are channels-last: an input (*S, C) of n spatial axes, a kernel (*K, C / G, O).
# The attributes are those of ``lax.conv_general_dilated``: ``strides``, ``padding`` ((lo, hi) per
# spatial axis, negative crops), ``lhs_dilation``, ``rhs_dilation`` and ``groups``.


def dilated_size(n: int, d: int) -> int:
    """The size of an axis of ``n`` elements with ``d - 1`` zeros between each two."""
    return 0 if n == 0 else 1 + d * (n - 1)


def window_out_size(size: int, k: int, stride: int, pad: tuple[int, int], base: int = 1, window: int = 1) -> int:
    """Positions of a window of ``k`` (dilated by ``window``) over ``size`` elements (dilated by
    ``base``, padded by ``pad``), taken every ``stride``."""
    return (dilated_size(size, base) + pad[0] + pad[1] - dilated_size(k, window)) // stride + 1


def _spatial(name, types, t: ArrayType, n: int):
    if t.ndim != n + 1:
        _fail(name, types, f"needs per-example arrays of {n} spatial axes and one of channels")


def _conv_attrs(name, types, n, strides, padding, lhs_dilation, rhs_dilation):
    for what, v in (("strides", strides), ("lhs_dilation", lhs_dilation), ("rhs_dilation", rhs_dilation)):
        if len(v) != n or any(not isinstance(s, int) or s < 1 for s in v):
            _fail(name, types, f"{what}={v} must be {n} positive ints")
    if len(padding) != n or any(len(p) != 2 for p in padding):
        _fail(name, types, f"padding={padding} must be {n} pairs (lo, hi)")


def _conv_rule(types, *, strides, padding, lhs_dilation, rhs_dilation, groups):
    _arity("conv", types, 2)
    x, w = types
    n = w.ndim - 2
    if n < 1:
        _fail("conv", types, "needs a kernel (*window, in_channels / groups, out_channels)")
    if w.batched:
        _fail("conv", types, "takes one kernel for every example (an unbatched kernel)")
    _spatial("conv", types, x, n)
    _conv_attrs("conv", types, n, strides, padding, lhs_dilation, rhs_dilation)
    cin, cin_g, cout = x.shape[-1], w.shape[n], w.shape[n + 1]
    if groups < 1 or cin % groups or cin // groups != cin_g or cout % groups:
        _fail("conv", types, f"with groups={groups} the input's {cin} channels and the kernel's {cin_g} x "
                             f"{cout} do not fit (in_channels = groups * kernel in, groups divides out)")
    out = tuple(window_out_size(s, k, st, p, ld, rd) for s, k, st, p, ld, rd in
                zip(x.shape[:n], w.shape[:n], strides, padding, lhs_dilation, rhs_dilation))
    if any(o < 1 for o in out):
        _fail("conv", types, f"the window does not fit: output positions {out}")
    return [ArrayType(out + (cout,), promote(types), x.batched)]


def _conv_weight_rule(types, *, kernel, strides, padding, lhs_dilation, rhs_dilation, groups):
    _arity("conv_weight", types, 2)
    x, dy = types
    n = len(kernel)
    _spatial("conv_weight", types, x, n)
    _spatial("conv_weight", types, dy, n)
    if x.batched != dy.batched:
        _fail("conv_weight", types, "takes inputs and output cotangents both batched, or both not")
    _conv_attrs("conv_weight", types, n, strides, padding, lhs_dilation, rhs_dilation)
    cin, cout = x.shape[-1], dy.shape[-1]
    if groups < 1 or cin % groups or cout % groups:
        _fail("conv_weight", types, f"groups={groups} divides neither {cin} input nor {cout} output channels")
    out = tuple(window_out_size(s, k, st, p, ld, rd) for s, k, st, p, ld, rd in
                zip(x.shape[:n], kernel, strides, padding, lhs_dilation, rhs_dilation))
    if out != dy.shape[:n]:
        _fail("conv_weight", types, f"the cotangent's positions {dy.shape[:n]} are not the convolution's {out}")
    return [ArrayType(tuple(kernel) + (cin // groups, cout), promote(types), batched=False)]


def _transposed_kernel(w, n: int, groups: int):
    """The kernel of a convolution's input cotangent: the window reversed, in and out channels
    swapped within each group (as JAX's own rule)."""
    k, cin_g, cout = w.type.shape[:n], w.type.shape[n], w.type.shape[n + 1]
    r = REV(w, axes=tuple(range(n)))
    if groups == 1:
        return TRANSPOSE(r, perm=tuple(range(n)) + (n + 1, n))
    r = RESHAPE(r, shape=k + (cin_g, groups, cout // groups))
    r = TRANSPOSE(r, perm=tuple(range(n)) + (n + 2, n + 1, n))
    return RESHAPE(r, shape=k + (cout // groups, groups * cin_g))


def lhs_cotangent_padding(size, k, stride, pad, base, window, out):
    """The padding of the convolution giving an input's cotangent (JAX's
    ``_conv_general_vjp_lhs_padding``), per axis."""
    before = dilated_size(k, window) - pad[0] - 1
    after = dilated_size(size, base) + dilated_size(k, window) - 1 - dilated_size(out, stride) - before
    return (before, after)


def rhs_cotangent_padding(size, k, stride, pad, base, window, out):
    """The padding of the convolution giving a kernel's cotangent (JAX's
    ``_conv_general_vjp_rhs_padding``), per axis."""
    lo = pad[0]
    hi = dilated_size(out, stride) - dilated_size(size, base) + dilated_size(k, window) - lo - 1
    return (lo, hi)


def _input_cotangent(p, dy, kernel_wire, n, spatial):
    pads = tuple(lhs_cotangent_padding(s, k, st, pd, ld, rd, o) for s, k, st, pd, ld, rd, o in
                 zip(spatial, kernel_wire.type.shape[:n], p["strides"], p["padding"], p["lhs_dilation"],
                     p["rhs_dilation"], dy.type.shape[:n]))
    return CONV(dy, _transposed_kernel(kernel_wire, n, p["groups"]), strides=p["lhs_dilation"], padding=pads,
                lhs_dilation=p["strides"], rhs_dilation=p["rhs_dilation"], groups=p["groups"])


def _conv_rev(p, x, y, dy):
    n = len(p["strides"])
    dx = _input_cotangent(p, dy[0], x[1], n, x[0].type.shape[:n])
    dw = CONV_WEIGHT(x[0], dy[0], kernel=x[1].type.shape[:n], **p)
    return [dx, dw]


def _conv_weight_rev(p, x, y, dy):
    n = len(p["kernel"])
    q = {k: v for k, v in p.items() if k != "kernel"}
    dx = _input_cotangent(q, x[1], dy[0], n, x[0].type.shape[:n])
    ddy = CONV(x[0], dy[0], **q)
    return [dx, ddy]


#: ``conv(x, w; strides, padding, lhs_dilation, rhs_dilation, groups)``: the N-d convolution
#: (cross-correlation) of ``lax.conv_general_dilated``, channels last: ``x`` (*S, C), ``w`` (*K, C /
#: groups, O) -> (*S', O). Its reverse derivative is convolutions again: the input's cotangent a
#: convolution of the output cotangent with the kernel reversed and transposed, the kernel's a
#: :data:`CONV_WEIGHT`; so ``R(R(conv))`` stays in convolutions.
CONV = define("conv", _conv_rule, _conv_rev)
#: ``conv_weight(x, dy; kernel, ...)``: the kernel cotangent of ``conv`` with the same attributes:
#: the correlation of the inputs with the output cotangent, summed over the batch (one
#: convolution; JAX's kernel-transpose rule).
CONV_WEIGHT = define("conv_weight", _conv_weight_rule, _conv_weight_rev)


def _rev_rule(types, *, axes):
    _arity("rev", types, 1)
    _axes_ok("rev", types[0], axes)
    return [types[0]]


#: ``rev(x; axes)``: ``x`` reversed along ``axes`` (``lax.rev``); its own reverse derivative.
REV = define("rev", _rev_rule, lambda p, x, y, dy: [REV(dy[0], axes=p["axes"])])


def _window_attrs(name, types, t: ArrayType, window, strides, padding, base_dilation=None, window_dilation=None):
    n = t.ndim - 1
    if n < 1:
        _fail(name, types, "needs per-example arrays of spatial axes and one of channels")
    for what, v in (("window", window), ("strides", strides), ("base_dilation", base_dilation),
                    ("window_dilation", window_dilation)):
        if v is not None and (len(v) != n or any(not isinstance(s, int) or s < 1 for s in v)):
            _fail(name, types, f"{what}={v} must be {n} positive ints")
    if len(padding) != n or any(len(p) != 2 for p in padding):
        _fail(name, types, f"padding={padding} must be {n} pairs (lo, hi)")
    if base_dilation is None and any(p < 0 for lo_hi in padding for p in lo_hi):  # a sum's may crop
        _fail(name, types, f"padding={padding} must be non-negative")
    base = base_dilation or (1,) * n
    wd = window_dilation or (1,) * n
    out = tuple(window_out_size(s, k, st, p, b, d) for s, k, st, p, b, d in
                zip(t.shape[:n], window, strides, padding, base, wd))
    if any(o < 1 for o in out):
        _fail(name, types, f"the window does not fit: output positions {out}")
    return out


def _window_max_rule(types, *, window, strides, padding):
    _arity("window_max", types, 1)
    out = _window_attrs("window_max", types, types[0], window, strides, padding)
    return [types[0].with_shape(out + types[0].shape[-1:])]


def _window_sum_rule(types, *, window, strides, padding, base_dilation, window_dilation):
    _arity("window_sum", types, 1)
    out = _window_attrs("window_sum", types, types[0], window, strides, padding, base_dilation, window_dilation)
    return [types[0].with_shape(out + types[0].shape[-1:])]


def _window_sum_rev(p, x, y, dy):
    n = len(p["window"])
    pads = tuple(lhs_cotangent_padding(s, k, st, pd, b, d, o) for s, k, st, pd, b, d, o in
                 zip(x[0].type.shape[:n], p["window"], p["strides"], p["padding"], p["base_dilation"],
                     p["window_dilation"], dy[0].type.shape[:n]))
    return [WINDOW_SUM(dy[0], window=p["window"], strides=p["base_dilation"], padding=pads,
                       base_dilation=p["strides"], window_dilation=p["window_dilation"])]


def _select_rule(name, source_is_window: bool):
    def rule(types, *, window, strides, padding):
        _arity(name, types, 2)
        values, operand = types
        out = _window_attrs(name, types, operand, window, strides, padding)
        want = out + operand.shape[-1:] if source_is_window else operand.shape
        if values.shape != want or values.batched != operand.batched:
            _fail(name, types, f"the values must be {want}, batched as the operand")
        shape = operand.shape if source_is_window else out + operand.shape[-1:]
        return [ArrayType(shape, values.dtype, operand.batched)]
    return rule


#: ``window_max(x; window, strides, padding)``: the maximum of each window over the spatial axes of
#: ``x`` (*S, C), padded with -inf (``lax.reduce_window`` with ``max``; max pooling). Its reverse
#: derivative routes each window's cotangent to the window's first maximum (XLA's
#: select-and-scatter, as JAX's own rule; the JAX backend computes it elementwise where the
#: windows tile the input).
WINDOW_MAX = define("window_max", _window_max_rule,
                    lambda p, x, y, dy: [SELECT_AND_SCATTER_ADD(dy[0], x[0], **p)])
#: ``window_sum(x; window, strides, padding, base_dilation, window_dilation)``: the sum of each
#: window, zeros padded (``lax.reduce_window`` with ``add``; average pooling divides it). Its
#: reverse derivative is a window sum again.
WINDOW_SUM = define("window_sum", _window_sum_rule, _window_sum_rev)
#: ``select_and_scatter_add(source, operand; window, strides, padding)``: zeros of ``operand``'s
#: shape with each ``source`` value added at its window's first maximum of ``operand``. Linear in
#: ``source``: its transpose is :data:`SELECT_AND_GATHER_ADD`.
SELECT_AND_SCATTER_ADD = define("select_and_scatter_add", _select_rule("select_and_scatter_add", True),
                                lambda p, x, y, dy: [SELECT_AND_GATHER_ADD(dy[0], x[1], **p), None])
#: ``select_and_gather_add(tangent, operand; window, strides, padding)``: for each window, the
#: ``tangent`` value at the window's first maximum of ``operand``. Linear in ``tangent``: its
#: transpose is :data:`SELECT_AND_SCATTER_ADD`.
SELECT_AND_GATHER_ADD = define("select_and_gather_add", _select_rule("select_and_gather_add", False),
                               lambda p, x, y, dy: [SELECT_AND_SCATTER_ADD(dy[0], x[1], **p), None])


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


def _take_rev(p, x, y, dy):
    t = x[0].type
    return [SCATTER_ADD(dy[0], x[1], size=t.shape[0], batched_out=t.batched), None]


#: ``take(table, idx)``: rows of ``table`` (``n, *rest``) at integer indices ``idx`` of any shape ``s``,
#: giving ``(*s, *rest)`` (``table[idx]``; an embedding lookup). Batched if either operand is; a batched
#: table is indexed per example. Indices must be in ``[0, n)``: out of range, NumPy raises and JAX clamps.
TAKE = define("take", _take_rule, _take_rev)
#: ``scatter_add(values, idx; size, batched_out)``: zeros of shape ``(size, *rest)`` with each row
#: ``values[i]`` added at row ``idx[i]`` (repeated indices add up): the transpose of ``take``, and
#: linear. With ``batched_out=False`` batched operands are also summed over the batch, in the same
#: scatter (the cotangent of an embedding table shared by every example).
SCATTER_ADD = define("scatter_add", _scatter_add_rule, lambda p, x, y, dy: [TAKE(dy[0], x[1]), None])


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
BATCH_SUM = define("batch_sum", _batch_sum_rule, lambda p, x, y, dy: [BATCH_BROADCAST(dy[0], x[0])])
#: ``batch_broadcast(u, ref)``: the same ``u`` for every example of ``ref``'s batch.
BATCH_BROADCAST = define("batch_broadcast", _batch_broadcast_rule, lambda p, x, y, dy: [BATCH_SUM(dy[0]), None])
#: ``batch_count(ref)``: the number of examples in ``ref``'s batch, as a float scalar.
BATCH_COUNT = define("batch_count", _batch_count_rule, lambda p, x, y, dy: [None])


def increment(b, n) -> int:
    """``n + 1`` for a step count ``n`` (an int32 scalar), saturating at int32's largest value
    rather than wrapping to a negative count, as optax's ``safe_increment``. Learners' and
    optimizers' counts all increment this way, so that XLA builds one kernel for them all (an
    increment read in place, where a plain ``n + 1`` fuses into each reader of the new count and
    makes XLA copy the old one)."""
    top = emit_const(b, 2**31 - 1, (), "int32")
    return b.emit1(WHERE, b.emit1(GREATER, top, n), add(b, n, emit_const(b, 1, (), "int32")), top)


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
