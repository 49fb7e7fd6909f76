"""Wires: what a traced function computes with, and the functions on them.

Inside :func:`paralens.para` the arguments are :class:`Wire` objects;
arithmetic on them and the functions below emit primitive boxes into the term
being built. Using a wire twice inserts a copy (its cotangents add up), leaving
an argument unused discards it. Each function here is the pointful wrapper of
one primitive (or a short composite of a few).

>>> import paralens as pl
>>> @pl.para
... def f(x: pl.Array[3]):
...     return pl.tanh(x) * x + 1.0
>>> [e.prim.name for e in f.eqns]
['tanh', 'mul', 'shift']
"""

from __future__ import annotations

import builtins
import numbers
from collections.abc import Callable
from contextlib import contextmanager

from . import prims as P
from .types import ArrayType, CompositionError, positive_int

# The pointful vocabulary, exported as ``paralens.<name>`` (tracing, builder_of and lift are for the core).
__all__ = [
    "Wire",
    "log", "gelu", "optimization_barrier",
    "power", "cast", "greater", "equal", "where", "maximum", "minimum", "clip", "sum", "mean",
    "max", "logsumexp", "softmax", "reshape", "transpose", "broadcast_to", "einsum", "matmul", "conv2d",
    "max_pool", "avg_pool", "batch_sum", "batch_mean", "zeros_like", "constant", "normal", "uniform", "take",
    "scatter_add",
]  # and each elementwise function made by _pointful, which adds itself

_STACK: list = []  # builders of the functions being traced, innermost last


@contextmanager
def tracing(builder):
    """Make ``builder`` the one that wire functions without wire arguments (``constant``) emit into."""
    _STACK.append(builder)
    try:
        yield builder
    finally:
        _STACK.pop()


class Wire:
    """A wire inside a function being traced: supports ``+ - * / ** @`` and indexing helpers."""

    __slots__ = ("builder", "id")

    def __init__(self, builder, id: int):  # noqa: A002
        self.builder = builder
        self.id = id

    @property
    def type(self) -> ArrayType:
        return self.builder.type_of(self.id)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def __repr__(self) -> str:
        return f"Wire({self.type})"

    def __bool__(self):
        raise TypeError("a traced wire has no truth value; use pl.where(cond, a, b) for branches")

    # arithmetic; Python numbers become scale/shift/constant boxes
    def __add__(self, o): return _arith(self, o, P.ADD, lambda x, c: P.shift(x.builder, x.id, c))
    def __radd__(self, o): return self.__add__(o)
    def __sub__(self, o): return _arith(self, o, P.SUB, lambda x, c: P.shift(x.builder, x.id, -c))
    def __rsub__(self, o): return (-self) + o
    def __mul__(self, o): return _arith(self, o, P.MUL, lambda x, c: P.scale(x.builder, x.id, c))
    def __rmul__(self, o): return self.__mul__(o)
    def __truediv__(self, o): return _arith(self, o, P.DIV, lambda x, c: P.scale(x.builder, x.id, 1.0 / c))
    def __rtruediv__(self, o): return _wrap(self.builder, P.div(self.builder, lift(self.builder, o), self.id))
    def __neg__(self): return _wrap(self.builder, P.neg(self.builder, self.id))
    def __pow__(self, p):
        if not isinstance(p, numbers.Real):
            raise TypeError("only constant exponents are supported: x ** 2.0")
        return _wrap(self.builder, self.builder.emit1(P.POW, self.id, p=float(p)))
    def __rpow__(self, base): return power(base, self)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)

    @property
    def T(self) -> Wire:
        return transpose(self, tuple(reversed(range(self.ndim))))

    def sum(self, axis=None, keepdims=False) -> Wire: return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False) -> Wire: return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False) -> Wire: return max(self, axis, keepdims)
    def reshape(self, *shape) -> Wire:
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)


def _wrap(b, w: int) -> Wire:
    return Wire(b, w)


def builder_of(*xs):
    bs = {id(x.builder): x.builder for x in xs if isinstance(x, Wire)}
    if len(bs) > 1:
        raise CompositionError("wires from two different traced functions were combined")
    if bs:
        return next(iter(bs.values()))
    if _STACK:
        return _STACK[-1]
    raise TypeError("this operation needs a wire; call it inside a function decorated with @pl.para")


def lift(b, v) -> int:
    if isinstance(v, Wire):
        if v.builder is not b:
            raise CompositionError("wires from two different traced functions were combined")
        return v.id
    if isinstance(v, numbers.Real) or hasattr(v, "tolist"):
        shape = tuple(getattr(v, "shape", ()))
        return P.emit_const(b, v, shape, str(getattr(v, "dtype", "float32")) if shape else "float32")
    raise TypeError(f"cannot use {type(v).__name__} as a wire")


def _arith(x: Wire, o, prim, with_number: Callable) -> Wire:
    if isinstance(o, numbers.Real) and x.type.dtype == "bool":  # a bit: 1 is True (x + 1 is NOT over Z2)
        o = constant(int(o) % 2, (), "bool", like=x)
    elif isinstance(o, numbers.Real) and not isinstance(o, bool):
        return _wrap(x.builder, with_number(x, float(o)))
    b = x.builder
    return _wrap(b, b.emit1(prim, x.id, lift(b, o)))


# --------------------------------------------------------------------------- functions on wires


def _pointful(prim, doc: str):
    """The pointful function of the elementwise primitive ``prim`` of one operand, named after
    it and exported: ``pl.tanh(x)``."""
    def f(x: Wire) -> Wire:
        b = builder_of(x)
        return _wrap(b, b.emit1(prim, lift(b, x)))
    f.__name__ = f.__qualname__ = prim.name
    f.__doc__ = doc + "\n\nArgs:\n    x: a wire of floating-point numbers.\n\nReturns:\n    A wire of ``x``'s type."
    __all__.append(prim.name)
    return f


exp = _pointful(P.EXP, "Elementwise e**x.")


def log(x: Wire) -> Wire:
    """Elementwise natural logarithm. ``log(sigmoid(z))`` is built as ``-softplus(-z)``: finite, and
    with a finite reverse derivative ``sigmoid(-z)``, where ``sigmoid(z)`` underflows to 0."""
    b = builder_of(x)
    w = lift(b, x)
    made = next((e for e in reversed(b.eqns) if w in e.outs), None)
    if made is not None and made.prim is P.SIGMOID:
        return -softplus(-Wire(b, made.ins[0]))
    return _wrap(b, b.emit1(P.LOG, w))


sqrt = _pointful(P.SQRT, "Elementwise square root.")
tanh = _pointful(P.TANH, "Elementwise hyperbolic tangent.")
sigmoid = _pointful(P.SIGMOID, "Elementwise logistic function 1 / (1 + e**-x).")
softplus = _pointful(P.SOFTPLUS, "Elementwise log(1 + e**x).")
relu = _pointful(P.RELU, "Elementwise max(x, 0).")
stop_gradient = _pointful(P.STOP_GRADIENT, "The identity, with zero reverse derivative.")


def optimization_barrier(*xs: Wire) -> tuple[Wire, ...]:
    """The identity on ``xs``, which a compiler may not see through or reorder across
    (``jax.lax.optimization_barrier``); its reverse derivative is the identity too."""
    b = builder_of(*xs)
    return tuple(_wrap(b, w) for w in b.emit(P.OPT_BARRIER, [lift(b, x) for x in xs]))


cos = _pointful(P.COS, "Elementwise cosine.")
sin = _pointful(P.SIN, "Elementwise sine.")
floor = _pointful(P.FLOOR, "Elementwise floor (zero derivative).")
tan = _pointful(P.TAN, "Elementwise tangent.")
arctan = _pointful(P.ARCTAN, "Elementwise inverse tangent, in (-pi/2, pi/2).")


def gelu(x: Wire) -> Wire:
    """GELU, tanh approximation (as ``jax.nn.gelu(x, approximate=True)``)."""
    c = (2.0 / 3.141592653589793) ** 0.5
    return 0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x ** 3.0)))


def power(x, e) -> Wire:
    """Elementwise ``x ** e`` where the exponent is a wire too (``x > 0`` to differentiate in ``e``)."""
    b = builder_of(x, e)
    if not isinstance(x, Wire):  # a number base takes the exponent's dtype
        x = constant(x, (), b.type_of(lift(b, e)).dtype, like=e)
    return _wrap(b, b.emit1(P.POWER, lift(b, x), lift(b, e)))


def cast(x: Wire, dtype: str) -> Wire:
    """Convert the element type; cotangents are converted back."""
    return _wrap(x.builder, x.builder.emit1(P.CAST, x.id, dtype=dtype))


def greater(x, y) -> Wire:
    """1.0 where ``x > y``, else 0.0 (zero derivative)."""
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.GREATER, lift(b, x), lift(b, y)))


def equal(x, y) -> Wire:
    """1.0 where ``x == y``, else 0.0 (zero derivative)."""
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.EQUAL, lift(b, x), lift(b, y)))


def where(cond, x, y) -> Wire:
    """``x`` where ``cond`` is non-zero, else ``y`` (elementwise selection)."""
    b = builder_of(cond, x, y)
    return _wrap(b, b.emit1(P.WHERE, lift(b, cond), lift(b, x), lift(b, y)))


def maximum(x, y) -> Wire:
    """Elementwise maximum; the cotangent goes to the larger operand (to ``y`` on ties)."""
    return where(greater(x, y), x, y)


def minimum(x, y) -> Wire:
    """Elementwise minimum; the cotangent goes to the smaller operand (to ``y`` on ties)."""
    return where(greater(y, x), x, y)


def clip(x, low, high) -> Wire:
    """``minimum(maximum(x, low), high)``."""
    return minimum(maximum(x, low), high)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _axis(fn: str, axis, ndim: int, of, what: str = "axis") -> int:
    """``axis`` as a non-negative position among ``ndim`` axes (those of ``of``, named in the
    error); negative axes count from the end, as in NumPy."""
    if not _is_int(axis):
        raise TypeError(f"{fn}: {what} must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        expected = f"{of} has no axes" if ndim == 0 else f"expected an int in [{-ndim}, {ndim}) for {of}"
        raise ValueError(f"{fn}: {what}={axis!r} is out of range: {expected}")
    return int(axis) % ndim


def _axes(fn: str, x: Wire, axis) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = tuple(sorted(_axis(fn, a, x.ndim, x.type) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"{fn}: axis={axis!r} names an axis of {x.type} twice; expected distinct axes")
    return out


def _shape_arg(fn: str, shape) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: shape must be a tuple of positive ints, got {shape!r}")
    return tuple(positive_int(d, f"{fn}: size {i} of shape={tuple(shape)!r}") for i, d in enumerate(shape))


def _keepdims(x: Wire, reduced: Wire, axes, keepdims: bool) -> Wire:
    """``reduced`` with the reduced ``axes`` of ``x`` back as size 1, when ``keepdims``."""
    if not keepdims:
        return reduced
    return reshape(reduced, tuple(1 if a in axes else n for a, n in enumerate(x.shape)))


def sum(x: Wire, axis=None, keepdims: bool = False) -> Wire:  # noqa: A001
    """Sum over per-example ``axis`` (an int or a tuple; all per-example axes by default);
    ``keepdims=True`` keeps them as axes of size 1, to broadcast against ``x``."""
    axes = _axes("sum", x, axis)
    return _keepdims(x, _wrap(x.builder, P.reduce_sum(x.builder, x.id, axes)), axes, keepdims)


def mean(x: Wire, axis=None, keepdims: bool = False) -> Wire:
    """Mean over per-example ``axis`` (an int or a tuple; all per-example axes by default);
    ``x - pl.mean(x, -1, keepdims=True)`` centres the last axis, as in NumPy."""
    axes = _axes("mean", x, axis)
    n = 1
    for a in axes:
        n *= x.shape[a]
    return sum(x, axes, keepdims) * (1.0 / n)


def max(x: Wire, axis=None, keepdims: bool = False) -> Wire:  # noqa: A001
    """Maximum over per-example ``axis``; ties share the cotangent equally."""
    axes = _axes("max", x, axis)
    return _keepdims(x, _wrap(x.builder, x.builder.emit1(P.REDUCE_MAX, x.id, axes=axes)), axes, keepdims)


def logsumexp(x: Wire, axis: int = -1, keepdims: bool = False) -> Wire:
    """``log(sum(exp(x), axis))``, computed stably."""
    a = _axis("logsumexp", axis, x.ndim, x.type)
    return _keepdims(x, _wrap(x.builder, x.builder.emit1(P.LOGSUMEXP, x.id, axis=a)), (a,), keepdims)


def softmax(x: Wire, axis: int = -1) -> Wire:
    """``exp(x) / sum(exp(x), axis)``, computed stably."""
    return _wrap(x.builder, x.builder.emit1(P.SOFTMAX, x.id, axis=_axis("softmax", axis, x.ndim, x.type)))


def reshape(x: Wire, shape) -> Wire:
    """Reshape the per-example array (the batch axis is untouched)."""
    return _wrap(x.builder, P.reshape(x.builder, x.id, _shape_arg("reshape", shape)))


def transpose(x: Wire, perm) -> Wire:
    """Permute the per-example axes (``perm[i]`` is the input axis that becomes axis ``i``)."""
    if not isinstance(perm, (tuple, list)):
        raise TypeError(f"transpose: perm must be a tuple of axes, got {perm!r}")
    perm = tuple(_axis("transpose", a, x.ndim, x.type, "perm entry") for a in perm)
    return _wrap(x.builder, x.builder.emit1(P.TRANSPOSE, x.id, perm=perm))


def broadcast_to(x: Wire, shape, dims=None) -> Wire:
    """Broadcast to ``shape``; ``dims[i]`` is where input axis ``i`` goes (trailing by default)."""
    shape = _shape_arg("broadcast_to", shape)
    if dims is None:
        if x.ndim > len(shape):
            raise ValueError(f"broadcast_to: shape={shape} has fewer axes than {x.type}; expected at least {x.ndim}")
        dims = tuple(range(len(shape) - x.ndim, len(shape)))
    elif not isinstance(dims, (tuple, list)):
        raise TypeError(f"broadcast_to: dims must be a tuple of axes of shape={shape}, got {dims!r}")
    dims = tuple(_axis("broadcast_to", d, len(shape), f"shape={shape}", "dims entry") for d in dims)
    return _wrap(x.builder, P.broadcast(x.builder, x.id, shape, dims))


def einsum(spec: str, x, y, *, batched_out: bool | None = None) -> Wire:
    """Two-operand contraction over per-example axes, e.g. ``einsum("i,io->o", x, w)``."""
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.EINSUM, lift(b, x), lift(b, y), spec=spec, batched_out=batched_out))


def matmul(x, y) -> Wire:
    """``x @ y`` on per-example arrays, as NumPy: ``(..., k) @ (k,)``, ``(k,) @ (k, m)``,
    ``(..., n, k) @ (k, m)`` and ``(..., n, k) @ (..., k, m)`` with equal leading axes."""
    b = builder_of(x, y)
    tx, ty = b.type_of(lift(b, x)), b.type_of(lift(b, y))
    if tx.ndim == 0 or ty.ndim == 0:
        raise TypeError(f"matmul: operands must have rank >= 1 (got {tx} and {ty})")
    lead = "abcdefgh"[: tx.ndim - 1]  # x's axes before the contracted one
    if ty.ndim == 1:
        spec = f"{lead}k,k->{lead}"
    elif ty.ndim == 2:
        spec = f"{lead}k,km->{lead}m"
    elif tx.ndim == ty.ndim and tx.shape[:-2] == ty.shape[:-2]:
        spec = f"{lead}k,{lead[:-1]}km->{lead}m"
    else:
        raise TypeError(f"matmul: cannot multiply {tx} by {ty}")
    return einsum(spec, x, y)


#: The padding names of a convolution: no padding, or an output of ``ceil(size / stride)``.
PADDINGS = ("valid", "same")


def positive_pair(fn: str, what: str, value) -> tuple[int, int]:
    """``value`` (an int, or a pair for height and width) as a pair of positive ints; else an
    error naming ``fn``, the argument ``what`` and the value."""
    pair = (value, value) if _is_int(value) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{fn}: {what} must be a positive int or a pair of them, got {value!r}")
    return tuple(positive_int(v, f"{fn}: {what}={value!r}: each entry") for v in pair)


def padding_of(fn: str, padding, *, per_side: bool = True):
    """A checked padding: one of :data:`PADDINGS` (where ``per_side``), or
    ``((lo_h, hi_h), (lo_w, hi_w))`` from an int, a pair ``(ph, pw)`` or (where ``per_side``)
    a pair of ``(lo, hi)`` pairs, all non-negative."""
    forms = ("'valid', 'same', a non-negative int, a pair (ph, pw) or ((top, bottom), (left, right))" if per_side
             else "a non-negative int or a pair (ph, pw)")
    if isinstance(padding, str):
        if per_side and padding in PADDINGS:
            return padding
        raise ValueError(f"{fn}: unknown padding={padding!r}; expected {forms}")
    pair = (padding, padding) if _is_int(padding) else padding
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{fn}: padding must be {forms}, got {padding!r}")
    sides = []
    for p in pair:
        if _is_int(p):
            side = (p, p)
        elif per_side and isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(q) for q in p):
            side = p
        else:
            raise TypeError(f"{fn}: padding must be {forms}, got {padding!r}")
        if side[0] < 0 or side[1] < 0:
            raise ValueError(f"{fn}: padding={padding!r} is negative; expected {forms}")
        sides.append((int(side[0]), int(side[1])))
    return tuple(sides)


def _image(fn: str, x: Wire):
    if x.ndim != 3:
        raise TypeError(f"{fn}: x must be per-example (height, width, channels) images, got {x.type}")


def _patches(x: Wire, kernel, stride, pads) -> Wire:
    return _wrap(x.builder, x.builder.emit1(P.PATCHES, x.id, kh=kernel[0], kw=kernel[1], stride=stride, padding=pads))


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """JAX's and TensorFlow's "SAME": ``ceil(size / s)`` outputs, the odd pad after."""
    total = builtins.max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv2d(x: Wire, w: Wire, *, stride=(1, 1), padding=(0, 0)) -> Wire:
    """2-D convolution (cross-correlation), NHWC: ``x`` (H, W, C), ``w`` (kh, kw, C, O) -> (OH, OW, O).

    ``padding``: ``"valid"``, ``"same"`` (``ceil(H / stride)`` rows, as ``jax.lax`` and
    TensorFlow: an even kernel pads one more row after than before), an int, ``(ph, pw)``
    or per side ``((top, bottom), (left, right))``; zeros are padded.
    """
    _image("conv2d", x)
    if w.ndim != 4:
        raise TypeError(f"conv2d: the kernel w must have shape (kh, kw, channels, outputs), got {w.type}")
    stride = positive_pair("conv2d", "stride", stride)
    pads = padding_of("conv2d", padding)
    if pads == "valid":
        pads = ((0, 0), (0, 0))
    elif pads == "same":
        pads = tuple(_same_padding(n, k, s) for n, k, s in zip(x.shape[:2], w.shape[:2], stride))
    p = _patches(x, w.shape[:2], stride, tuple(lo if lo == hi else (lo, hi) for lo, hi in pads))
    return einsum("hwijc,ijco->hwo", p, w)


def _pool_windows(fn: str, x: Wire, window, stride, padding, reduce) -> Wire:
    _image(fn, x)
    window = positive_pair(fn, "window", window)
    stride = window if stride is None else positive_pair(fn, "stride", stride)
    (ph, _), (pw, _) = padding_of(fn, padding, per_side=False)
    return reduce(_patches(x, window, stride, (ph, pw)), (2, 3))


def max_pool(x: Wire, window=(2, 2), stride=None, padding=(0, 0)) -> Wire:
    """Max pooling over ``window`` (stride defaults to the window): (H, W, C) -> (OH, OW, C);
    ``padding`` is an int or ``(ph, pw)``, zeros on both sides."""
    return _pool_windows("max_pool", x, window, stride, padding, max)


def avg_pool(x: Wire, window=(2, 2), stride=None, padding=(0, 0)) -> Wire:
    """Average pooling over ``window`` (zero padding counts): (H, W, C) -> (OH, OW, C)."""
    return _pool_windows("avg_pool", x, window, stride, padding, mean)


def batch_sum(x: Wire) -> Wire:
    """Sum over the examples of the batch: a batched wire becomes an unbatched one."""
    return _wrap(x.builder, x.builder.emit1(P.BATCH_SUM, x.id))


def batch_mean(x: Wire) -> Wire:
    """Mean over the examples of the batch."""
    b = x.builder
    return _wrap(b, P.div(b, b.emit1(P.BATCH_SUM, x.id), b.emit1(P.BATCH_COUNT, x.id)))


def zeros_like(x: Wire) -> Wire:
    """Zeros of ``x``'s type."""
    return _wrap(x.builder, P.zeros_like(x.builder, x.id))


def constant(value, shape=None, dtype: str = "float32", *, like: Wire | None = None) -> Wire:
    """A constant wire (unbatched) inside a traced function, from a number, nested lists or an array."""
    b = like.builder if like is not None else builder_of()
    shape = tuple(getattr(value, "shape", ())) if shape is None else tuple(shape)
    if shape == () and isinstance(value, (list, tuple)):
        raise TypeError("give the shape of a constant built from nested lists")
    return _wrap(b, P.emit_const(b, value, shape, dtype))


def normal(key: Wire, shape=(), dtype: str = "float32") -> tuple[Wire, Wire]:
    """``(key', sample)``: standard normal numbers of ``shape`` drawn with the random ``key``
    (an unbatched uint32 pair, e.g. ``jax.random.PRNGKey(0)``), and the next key."""
    b = key.builder
    new, sample = b.emit(P.NORMAL, [key.id], shape=tuple(shape), dtype=dtype)
    return Wire(b, new), Wire(b, sample)


def uniform(key: Wire, like: Wire) -> tuple[Wire, Wire]:
    """``(key', sample)``: numbers uniform in [0, 1) of ``like``'s type (shape, dtype, and a draw
    per example where ``like`` is batched), drawn with the random ``key``, and the next key."""
    b = builder_of(key, like)
    new, sample = b.emit(P.UNIFORM, [lift(b, key), lift(b, like)])
    return Wire(b, new), Wire(b, sample)


def take(table, idx) -> Wire:
    """Rows of ``table`` at integer indices: ``table`` (n, *rest), ``idx`` of any shape s ->
    (*s, *rest), as ``table[idx]``. Its reverse derivative scatters the cotangent back
    (:func:`scatter_add`: rows taken twice receive the sum).

    >>> import paralens as pl
    >>> @pl.para
    ... def lookup(ids: pl.Array(5, dtype="int32"), table: pl.Param[10, 3]):
    ...     return pl.take(table, ids)
    >>> lookup.cod
    Ty(Array[5, 3])
    """
    b = builder_of(table, idx)
    return _wrap(b, b.emit1(P.TAKE, lift(b, table), lift(b, idx)))


def scatter_add(values, idx, size: int) -> Wire:
    """Zeros of shape (size, *rest) with ``values[i]`` added at row ``idx[i]`` (repeated indices add
    up): ``values`` (*s, *rest), ``idx`` integers of shape s. The transpose of :func:`take`."""
    b = builder_of(values, idx)
    size = positive_int(size, "scatter_add: size")
    return _wrap(b, b.emit1(P.SCATTER_ADD, lift(b, values), lift(b, idx), size=size))
