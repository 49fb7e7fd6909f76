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
    "max", "logsumexp", "softmax", "reshape", "transpose", "broadcast_to", "einsum", "matmul", "conv", "conv2d",
    "conv_transpose", "max_pool", "avg_pool", "batch_sum", "batch_mean", "zeros_like", "constant", "normal",
    "uniform", "take", "scatter_add",
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
    """A wire inside a function being traced: supports ``+ - * / ** @``, ``.T`` and the methods below.

    ``x + c``, ``x - c``, ``x * c`` and ``x / c`` with a Python number ``c`` emit a ``shift`` or
    ``scale`` box (a constant box where ``x`` is ``bool``); ``x ** p`` takes a number ``p``
    (:func:`~paralens.power` takes a wire exponent). A wire
    has no truth value: ``bool(x)``, as in ``if x:``, raises ``TypeError``; select with
    :func:`~paralens.where`.

    Args:
        builder: the :class:`~paralens.Builder` of the term being traced, which the wire belongs to.
        id: the wire's number in ``builder`` (its type is ``builder.type_of(id)``).
    """

    __slots__ = ("builder", "id")

    def __init__(self, builder, id: int):  # noqa: A002
        self.builder = builder
        self.id = id

    @property
    def type(self) -> ArrayType:
        """The wire's per-example array type (shape, dtype, batch flag)."""
        return self.builder.type_of(self.id)

    @property
    def shape(self) -> tuple[int, ...]:
        """The per-example shape (without the batch axis)."""
        return self.type.shape

    @property
    def ndim(self) -> int:
        """The number of per-example axes."""
        return self.type.ndim

    def __repr__(self) -> str:
        return f"Wire({self.type})"

    def __bool__(self):
        raise TypeError("a traced wire has no truth value; use pl.where(cond, a, b) for branches")

    # arithmetic; Python numbers become scale/shift/constant boxes
    def __add__(self, o): return _arith(self, o, P.ADD, lambda x, c: P.shift(x.builder, x.id, c))
    def __radd__(self, o): return self.__add__(o)
    def __sub__(self, o): return _arith(self, o, P.SUB, lambda x, c: P.shift(x.builder, x.id, -c))
    def __rsub__(self, o):
        if isinstance(o, numbers.Real) and not isinstance(o, bool) and self.type.dtype in P.FLOATS:
            # c - x as one sub box (not neg, then shift): XLA keeps what it is given, and a scalar
            # computed once is copied into every fusion that reads it
            c = constant(float(o), (), self.type.dtype, like=self)
            return _wrap(self.builder, P.sub(self.builder, c.id, self.id))
        return (-self) + o
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
        """The per-example axes in reverse order (:func:`~paralens.transpose`)."""
        return transpose(self, tuple(reversed(range(self.ndim))))

    def sum(self, axis=None, keepdims=False) -> Wire:
        """:func:`~paralens.sum` of this wire.

        Args:
            axis: the per-example axis or axes to sum over (an int or a tuple of ints, negative ones
                counting from the end); ``None``: all of them.
            keepdims: keep the summed axes, as axes of size 1.

        Returns:
            A wire of this one's dtype and batch flag, without the summed axes (size 1 with ``keepdims``).
        """
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False) -> Wire:
        """:func:`~paralens.mean` of this wire.

        Args:
            axis: the per-example axis or axes to average over (an int or a tuple of ints, negative
                ones counting from the end); ``None``: all of them.
            keepdims: keep the averaged axes, as axes of size 1.

        Returns:
            A wire of this one's dtype and batch flag, without the averaged axes (size 1 with ``keepdims``).
        """
        return mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False) -> Wire:
        """:func:`~paralens.max` of this wire.

        Args:
            axis: the per-example axis or axes to take the maximum over (an int or a tuple of ints,
                negative ones counting from the end); ``None``: all of them.
            keepdims: keep the reduced axes, as axes of size 1.

        Returns:
            A wire of this one's dtype and batch flag, without the reduced axes (size 1 with ``keepdims``).
        """
        return max(self, axis, keepdims)

    def reshape(self, *shape) -> Wire:
        """:func:`~paralens.reshape` of this wire: ``x.reshape(2, 3)`` or ``x.reshape((2, 3))``.

        Args:
            *shape: the new per-example shape, as positive ints or as one tuple of them.

        Returns:
            A wire of that shape, with this one's dtype and batch flag.
        """
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
    with a finite reverse derivative ``sigmoid(-z)``, where ``sigmoid(z)`` underflows to 0.

    Args:
        x: a wire of floating-point numbers, of any shape (positive, for a finite result).

    Returns:
        A wire of ``x``'s type.
    """
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
    (``jax.lax.optimization_barrier``); its reverse derivative is the identity too.

    Args:
        *xs: the wires to pass through, at least one.

    Returns:
        A tuple of new wires holding the same values, one per wire of ``xs`` and of its type.

    Raises:
        TypeError: ``xs`` is empty.
    """
    b = builder_of(*xs)
    return tuple(_wrap(b, w) for w in b.emit(P.OPT_BARRIER, [lift(b, x) for x in xs]))


cos = _pointful(P.COS, "Elementwise cosine.")
sin = _pointful(P.SIN, "Elementwise sine.")
floor = _pointful(P.FLOOR, "Elementwise floor (zero derivative).")
tan = _pointful(P.TAN, "Elementwise tangent.")
arctan = _pointful(P.ARCTAN, "Elementwise inverse tangent, in (-pi/2, pi/2).")
sign = _pointful(P.SIGN, "Elementwise sign: -1, 0 or 1 (zero derivative).")
abs = _pointful(P.ABS, "Elementwise absolute value (its derivative is the sign; of a complex number, its modulus).")  # noqa: A001,E501
conj = _pointful(P.CONJ, "Elementwise complex conjugate (the identity on real numbers).")
real = _pointful(P.REAL, "Elementwise real part (the identity on real numbers).")


def gelu(x: Wire) -> Wire:
    """GELU, tanh approximation (as ``jax.nn.gelu(x, approximate=True)``).

    Args:
        x: a wire of floating-point numbers, of any shape.

    Returns:
        A wire of ``x``'s type: ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))``.
    """
    c = (2.0 / 3.141592653589793) ** 0.5
    # 0.5 * (x + x * t): the pass back keeps x and t only (as x * cdf it keeps cdf too, and as
    # 0.5 * x * (1 + t) a scaled copy of x): on a bfloat16 transformer block, XLA's temporaries
    # are 0.88x (at T=8, D=16) and 1.03x (T=64, D=128) hand-written jax.nn.gelu's, against
    # 0.97x and 1.10x as x * cdf
    t = tanh(c * (x + 0.044715 * x ** 3.0))
    return 0.5 * (x + x * t)


def power(x, e) -> Wire:
    """Elementwise ``x ** e`` where the exponent is a wire too (``x > 0`` to differentiate in ``e``).

    Args:
        x: the base: a wire, or a number (made a constant of ``e``'s dtype).
        e: the exponent: a wire, or (where ``x`` is a wire) a constant, a number or an array; it
            broadcasts against ``x`` as NumPy's arrays do.

    Returns:
        A wire of the broadcast shape of ``x`` and ``e``, in the wider of their dtypes, batched if
        either is.

    Raises:
        TypeError: the shapes of ``x`` and ``e`` do not broadcast.
    """
    b = builder_of(x, e)
    if not isinstance(x, Wire):  # a number base takes the exponent's dtype
        x = constant(x, (), b.type_of(lift(b, e)).dtype, like=e)
    return _wrap(b, b.emit1(P.POWER, lift(b, x), lift(b, e)))


def cast(x: Wire, dtype: str) -> Wire:
    """Convert the element type; cotangents are converted back (to a floating-point ``x`` only: a
    wire of integers or bits gets none).

    Args:
        x: a wire of any dtype.
        dtype: the new element type: ``"float32"``, ``"float64"``, ``"float16"``, ``"bfloat16"``,
            ``"int32"``, ``"int64"``, ``"uint32"`` or ``"bool"``.

    Returns:
        A wire of ``x``'s shape and batch flag, of ``dtype``.

    Raises:
        TypeError: ``dtype`` is none of these.
    """
    return _wrap(x.builder, x.builder.emit1(P.CAST, x.id, dtype=dtype))


def greater(x, y) -> Wire:
    """1.0 where ``x > y``, else 0.0 (zero derivative).

    Args:
        x: a wire, or a constant (a number or an array).
        y: a wire, or a constant; ``x`` and ``y`` broadcast as NumPy's arrays do.

    Returns:
        A wire of ones and zeros of the broadcast shape, in the wider dtype of ``x`` and ``y`` (a
        number counts as ``float32``), batched if either is.

    Raises:
        TypeError: the shapes of ``x`` and ``y`` do not broadcast.
    """
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.GREATER, lift(b, x), lift(b, y)))


def equal(x, y) -> Wire:
    """1.0 where ``x == y``, else 0.0 (zero derivative).

    Args:
        x: a wire, or a constant (a number or an array).
        y: a wire, or a constant; ``x`` and ``y`` broadcast as NumPy's arrays do.

    Returns:
        A wire of ones and zeros of the broadcast shape, in the wider dtype of ``x`` and ``y`` (a
        number counts as ``float32``), batched if either is.

    Raises:
        TypeError: the shapes of ``x`` and ``y`` do not broadcast.
    """
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.EQUAL, lift(b, x), lift(b, y)))


def where(cond, x, y) -> Wire:
    """``x`` where ``cond`` is non-zero, else ``y`` (elementwise selection).

    The cotangent goes to ``x`` where ``cond`` is non-zero and to ``y`` elsewhere; ``cond`` gets none.

    Args:
        cond: the selector, non-zero where ``x`` is taken: a wire (a mask from
            :func:`~paralens.greater`, or a ``bool`` wire) or a constant.
        x: the values taken where ``cond`` is non-zero: a wire, or a constant (a number or an array).
        y: the values taken elsewhere: a wire, or a constant. The three broadcast as NumPy's arrays do.

    Returns:
        A wire of the broadcast shape of ``cond``, ``x`` and ``y``, in the widest of their dtypes,
        batched if any of them is.

    Raises:
        TypeError: the three shapes do not broadcast.
    """
    b = builder_of(cond, x, y)
    return _wrap(b, b.emit1(P.WHERE, lift(b, cond), lift(b, x), lift(b, y)))


def maximum(x, y) -> Wire:
    """Elementwise maximum; the cotangent goes to the larger operand (to ``y`` on ties).

    Args:
        x: a wire, or a constant (a number or an array).
        y: a wire, or a constant; ``x`` and ``y`` broadcast as NumPy's arrays do.

    Returns:
        A wire of the broadcast shape, in the wider dtype of ``x`` and ``y``, batched if either is.

    Raises:
        TypeError: the shapes of ``x`` and ``y`` do not broadcast.
    """
    return where(greater(x, y), x, y)


def minimum(x, y) -> Wire:
    """Elementwise minimum; the cotangent goes to the smaller operand (to ``y`` on ties).

    Args:
        x: a wire, or a constant (a number or an array).
        y: a wire, or a constant; ``x`` and ``y`` broadcast as NumPy's arrays do.

    Returns:
        A wire of the broadcast shape, in the wider dtype of ``x`` and ``y``, batched if either is.

    Raises:
        TypeError: the shapes of ``x`` and ``y`` do not broadcast.
    """
    return where(greater(y, x), x, y)


def clip(x, low, high) -> Wire:
    """``minimum(maximum(x, low), high)``: ``x`` limited to ``[low, high]``.

    Args:
        x: the wire to clip.
        low: the lower bound: a wire, or a constant (a number or an array).
        high: the upper bound: a wire, or a constant; where ``low > high`` the result is ``high``.
            The three broadcast as NumPy's arrays do.

    Returns:
        A wire of the broadcast shape of ``x``, ``low`` and ``high``, batched if any of them is.

    Raises:
        TypeError: the three shapes do not broadcast.
    """
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
    ``keepdims=True`` keeps them as axes of size 1, to broadcast against ``x``.

    Args:
        x: a wire.
        axis: the per-example axis or axes to sum over: an int, or a tuple or list of distinct ints,
            negative ones counting from the end; ``None``: all of them. The batch axis is never
            summed here (:func:`~paralens.batch_sum` sums over the examples).
        keepdims: keep the summed axes, as axes of size 1.

    Returns:
        A wire of ``x``'s dtype and batch flag, its shape ``x``'s without the summed axes (with
        them of size 1 where ``keepdims``).

    Raises:
        TypeError: an axis is not an int.
        ValueError: an axis is out of range for ``x``, or is named twice.
    """
    axes = _axes("sum", x, axis)
    return _keepdims(x, _wrap(x.builder, P.reduce_sum(x.builder, x.id, axes)), axes, keepdims)


def mean(x: Wire, axis=None, keepdims: bool = False) -> Wire:
    """Mean over per-example ``axis`` (an int or a tuple; all per-example axes by default);
    ``x - pl.mean(x, -1, keepdims=True)`` centres the last axis, as in NumPy.

    Args:
        x: a wire of floating-point numbers.
        axis: the per-example axis or axes to average over: an int, or a tuple or list of distinct
            ints, negative ones counting from the end; ``None``: all of them (never the batch axis:
            :func:`~paralens.batch_mean` averages over the examples).
        keepdims: keep the averaged axes, as axes of size 1.

    Returns:
        A wire of ``x``'s dtype and batch flag, its shape ``x``'s without the averaged axes (with
        them of size 1 where ``keepdims``).

    Raises:
        TypeError: an axis is not an int, or ``x`` is not floating-point.
        ValueError: an axis is out of range for ``x``, or is named twice.
    """
    axes = _axes("mean", x, axis)
    n = 1
    for a in axes:
        n *= x.shape[a]
    return sum(x, axes, keepdims) * (1.0 / n)


def max(x: Wire, axis=None, keepdims: bool = False) -> Wire:  # noqa: A001
    """Maximum over per-example ``axis``; ties share the cotangent equally.

    Args:
        x: a wire.
        axis: the per-example axis or axes to reduce: an int, or a tuple or list of distinct ints,
            negative ones counting from the end; ``None``: all of them (never the batch axis).
        keepdims: keep the reduced axes, as axes of size 1.

    Returns:
        A wire of ``x``'s dtype and batch flag, its shape ``x``'s without the reduced axes (with
        them of size 1 where ``keepdims``).

    Raises:
        TypeError: an axis is not an int.
        ValueError: an axis is out of range for ``x``, or is named twice.
    """
    axes = _axes("max", x, axis)
    return _keepdims(x, _wrap(x.builder, x.builder.emit1(P.REDUCE_MAX, x.id, axes=axes)), axes, keepdims)


def logsumexp(x: Wire, axis: int = -1, keepdims: bool = False) -> Wire:
    """``log(sum(exp(x), axis))``, computed stably.

    Args:
        x: a wire of floating-point numbers with at least one per-example axis.
        axis: the per-example axis to reduce, one int (negative counts from the end).
        keepdims: keep that axis, as an axis of size 1.

    Returns:
        A wire of ``x``'s dtype and batch flag, its shape ``x``'s without ``axis`` (with it of size 1
        where ``keepdims``).

    Raises:
        TypeError: ``axis`` is not an int.
        ValueError: ``axis`` is out of range for ``x`` (or ``x`` has no per-example axes).
    """
    a = _axis("logsumexp", axis, x.ndim, x.type)
    return _keepdims(x, _wrap(x.builder, x.builder.emit1(P.LOGSUMEXP, x.id, axis=a)), (a,), keepdims)


def softmax(x: Wire, axis: int = -1) -> Wire:
    """``exp(x) / sum(exp(x), axis)``, computed stably.

    Args:
        x: a wire of floating-point numbers with at least one per-example axis.
        axis: the per-example axis to normalise along, one int (negative counts from the end).

    Returns:
        A wire of ``x``'s type, of positive numbers summing to 1 along ``axis``.

    Raises:
        TypeError: ``axis`` is not an int.
        ValueError: ``axis`` is out of range for ``x`` (or ``x`` has no per-example axes).
    """
    return _wrap(x.builder, x.builder.emit1(P.SOFTMAX, x.id, axis=_axis("softmax", axis, x.ndim, x.type)))


def reshape(x: Wire, shape) -> Wire:
    """Reshape the per-example array (the batch axis is untouched).

    Args:
        x: a wire.
        shape: the new per-example shape: a tuple or list of positive ints (no ``-1``), with as many
            elements in all as ``x``'s shape.

    Returns:
        A wire of ``shape``, with ``x``'s dtype and batch flag.

    Raises:
        TypeError: ``shape`` is not a tuple or list, a size is not an int, or the sizes' product is
            not ``x``'s number of elements.
        ValueError: a size is not positive.
    """
    return _wrap(x.builder, P.reshape(x.builder, x.id, _shape_arg("reshape", shape)))


def transpose(x: Wire, perm) -> Wire:
    """Permute the per-example axes (``perm[i]`` is the input axis that becomes axis ``i``).

    Args:
        x: a wire.
        perm: a permutation of ``x``'s per-example axes: a tuple or list of ints, negative ones
            counting from the end.

    Returns:
        A wire of ``x``'s dtype and batch flag, of shape ``tuple(x.shape[i] for i in perm)``.

    Raises:
        TypeError: ``perm`` is not a tuple or list, an entry is not an int, or ``perm`` is not a
            permutation of the axes.
        ValueError: an entry is out of range for ``x``.
    """
    if not isinstance(perm, (tuple, list)):
        raise TypeError(f"transpose: perm must be a tuple of axes, got {perm!r}")
    perm = tuple(_axis("transpose", a, x.ndim, x.type, "perm entry") for a in perm)
    return _wrap(x.builder, x.builder.emit1(P.TRANSPOSE, x.id, perm=perm))


def broadcast_to(x: Wire, shape, dims=None) -> Wire:
    """Broadcast to ``shape``; ``dims[i]`` is where input axis ``i`` goes (trailing by default).

    Args:
        x: a wire; each of its axes has size 1 or the size of the axis of ``shape`` it goes to.
        shape: the per-example shape to broadcast to: a tuple or list of positive ints.
        dims: for each axis of ``x``, its position in ``shape``: a tuple or list of increasing ints,
            negative ones counting from the end of ``shape``. ``None``: ``x``'s axes are the last
            ones of ``shape``, as in NumPy.

    Returns:
        A wire of ``shape``, with ``x``'s dtype and batch flag.

    Raises:
        TypeError: ``shape`` or ``dims`` is not a tuple or list, an entry of either is not an int,
            ``dims`` is not one increasing position per axis of ``x``, or an axis of ``x`` is
            neither 1 nor the size it is broadcast to.
        ValueError: a size in ``shape`` is not positive, an entry of ``dims`` is out of range, or
            (without ``dims``) ``x`` has more axes than ``shape``.
    """
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
    """Two-operand contraction over per-example axes, e.g. ``einsum("i,io->o", x, w)``.

    The subscripts name per-example axes only: the batch axis of a batched operand is implicit,
    and kept in the output unless ``batched_out=False``.

    Args:
        spec: the subscripts, ``"<x's>,<y's>-><output's>"``, one letter per axis, the output named
            after ``->``. Each index occurs in at least two of the three places (sum one axis with
            :func:`~paralens.sum`), and no output index repeats.
        x: the first operand: a wire, or a constant (a number or an array).
        y: the second operand: a wire, or a constant.
        batched_out: whether the output carries the batch axis. ``None``: when an operand does.
            ``False`` with a batched operand also sums over the examples, in the same contraction
            (the cotangent of a parameter shared by every example). ``True`` needs a batched operand.

    Returns:
        A wire of the shape the output subscripts give, in the wider dtype of ``x`` and ``y``.

    Raises:
        TypeError: ``spec`` is malformed or does not fit the operands (a subscript string whose
            length is not the operand's rank, an index with two sizes or in one place only, a
            repeated output index), or ``batched_out=True`` with no batched operand.
    """
    b = builder_of(x, y)
    return _wrap(b, b.emit1(P.EINSUM, lift(b, x), lift(b, y), spec=spec, batched_out=batched_out))


def matmul(x, y) -> Wire:
    """``x @ y`` on per-example arrays, as NumPy: ``(..., k) @ (k,)``, ``(k,) @ (k, m)``,
    ``(..., n, k) @ (k, m)`` and ``(..., n, k) @ (..., k, m)`` with equal leading axes.

    Args:
        x: the left operand: a wire (or an array) of rank at least 1, its last axis ``k``.
        y: the right operand: a wire (or an array) of shape ``(k,)``, ``(k, m)`` or ``(..., k, m)``.

    Returns:
        A wire of shape ``x.shape[:-1]`` when ``y`` is a vector, else ``x.shape[:-1] + (m,)``, in the
        wider dtype of the operands, batched if either is.

    Raises:
        TypeError: an operand has rank 0, the ranks are none of the cases above, or the contracted
            sizes differ.
    """
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


def positive_ints(fn: str, what: str, value, n: int) -> tuple[int, ...]:
    """``value`` (an int, or ``n`` of them, one per spatial axis) as ``n`` positive ints; else an
    error naming ``fn``, the argument ``what`` and the value."""
    many = _count(n)
    ints = (value,) * n if _is_int(value) else value
    if not isinstance(ints, (tuple, list)) or len(ints) != n:
        raise TypeError(f"{fn}: {what} must be a positive int or {many} of them, got {value!r}")
    return tuple(positive_int(v, f"{fn}: {what}={value!r}: each entry") for v in ints)


def _count(n: int) -> str:
    return "a pair" if n == 2 else f"a tuple of {n}"


def positive_pair(fn: str, what: str, value) -> tuple[int, int]:
    """``value`` (an int, or a pair for height and width) as a pair of positive ints."""
    return positive_ints(fn, what, value, 2)


def padding_of(fn: str, padding, *, per_side: bool = True, n: int = 2):
    """A checked padding of ``n`` spatial axes: one of :data:`PADDINGS` (where ``per_side``), or
    ``((lo, hi), ...)`` from an int, ``n`` ints (both sides alike) or (where ``per_side``) ``n``
    pairs ``(lo, hi)``, all non-negative."""
    if n == 2:
        forms = ("'valid', 'same', a non-negative int, a pair (ph, pw) or ((top, bottom), (left, right))"
                 if per_side else "a non-negative int or a pair (ph, pw)")
    else:
        forms = (f"'valid', 'same', a non-negative int, {n} of them or {n} pairs (lo, hi)" if per_side
                 else f"a non-negative int or {n} of them")
    if isinstance(padding, str):
        if per_side and padding in PADDINGS:
            return padding
        raise ValueError(f"{fn}: unknown padding={padding!r}; expected {forms}")
    many = (padding,) * n if _is_int(padding) else padding
    if not isinstance(many, (tuple, list)) or len(many) != n:
        raise TypeError(f"{fn}: padding must be {forms}, got {padding!r}")
    sides = []
    for p in many:
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


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """JAX's and TensorFlow's "SAME": ``ceil(size / s)`` outputs, the odd pad after."""
    total = builtins.max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pads(pads, sizes, kernel, strides):
    """Explicit ``(lo, hi)`` pairs from a checked padding (``kernel``: the dilated window sizes)."""
    if pads == "valid":
        return ((0, 0),) * len(sizes)
    if pads == "same":
        return tuple(_same_padding(n, k, s) for n, k, s in zip(sizes, kernel, strides))
    return pads


def _names(n: int) -> str:
    return {1: "(length, channels)", 2: "(height, width, channels)", 3: "(depth, height, width, channels)"}.get(
        n, f"({n} spatial axes, channels)")


def _spatial_input(fn: str, x: Wire, n: int):
    if x.ndim != n + 1:
        what = "images" if n == 2 else "arrays"
        raise TypeError(f"{fn}: x must be per-example {_names(n)} {what}, got {x.type}")


def conv(x: Wire, w: Wire, *, stride=1, padding="valid", dilation=1, input_dilation=1, groups: int = 1) -> Wire:
    """N-d convolution (cross-correlation), channels last: ``x`` (*S, C), ``w`` (*K, C / groups, O)
    -> (*S', O); the number of spatial axes is the kernel's rank less two. One ``conv`` box, which
    the JAX backend runs as ``lax.conv_general_dilated`` (its derivatives are convolutions too).

    Args:
        x: a wire of per-example arrays (*S, C).
        w: the kernel (*K, C / groups, O), an unbatched wire (usually a parameter).
        stride: the step between windows: a positive int, or one per spatial axis.
        padding: ``"valid"``, ``"same"`` (``ceil(size / stride)`` positions, as ``jax.lax``: the odd
            pad after), a non-negative int, one per axis, or one ``(lo, hi)`` pair per axis; zeros
            are padded.
        dilation: the kernel's dilation (``rhs_dilation``, atrous convolution): a positive int or
            one per axis.
        input_dilation: the input's dilation (``lhs_dilation``; a transposed convolution's stride).
        groups: feature groups (``feature_group_count``): ``C`` and ``O`` are split into ``groups``
            blocks, block ``g`` of the output seeing block ``g`` of the input only;
            ``groups = C`` with ``O = k * C`` is a depthwise convolution.

    Returns:
        A wire (*S', O), ``S' = (dilated S + lo + hi - dilated K) // stride + 1`` per axis, in the
        wider dtype of ``x`` and ``w``.

    Raises:
        TypeError: a rank does not fit, an argument has none of the forms above, the channels do not
            fit ``groups``, or the window does not fit the padded input.
        ValueError: a stride, dilation or group count is not positive, or a padding is negative or
            an unknown string.

    >>> import paralens as pl
    >>> @pl.para
    ... def f(x: pl.Array[10, 4], w: pl.Param[3, 2, 6]):
    ...     return pl.conv(x, w, stride=2, padding="same", groups=2)
    >>> f.cod
    Ty(Array[5, 6])
    """
    if w.ndim < 3:
        raise TypeError(f"conv: the kernel w must have shape (*window, in_channels / groups, out_channels), "
                        f"got {w.type}")
    n = w.ndim - 2
    _spatial_input("conv", x, n)
    strides = positive_ints("conv", "stride", stride, n)
    rhs = positive_ints("conv", "dilation", dilation, n)
    lhs = positive_ints("conv", "input_dilation", input_dilation, n)
    groups = positive_int(groups, "conv: groups")
    window = tuple(P.dilated_size(k, d) for k, d in zip(w.shape[:n], rhs))
    sizes = tuple(P.dilated_size(s, d) for s, d in zip(x.shape[:n], lhs))
    pads = _pads(padding_of("conv", padding, n=n), sizes, window, strides)
    b = builder_of(x, w)
    return _wrap(b, b.emit1(P.CONV, lift(b, x), lift(b, w), strides=strides, padding=pads, lhs_dilation=lhs,
                            rhs_dilation=rhs, groups=groups))


def conv2d(x: Wire, w: Wire, *, stride=(1, 1), padding=(0, 0), dilation=1, groups: int = 1) -> Wire:
    """2-D convolution (cross-correlation), NHWC: ``x`` (H, W, C), ``w`` (kh, kw, C / groups, O)
    -> (OH, OW, O); :func:`conv` with two spatial axes.

    ``padding``: ``"valid"``, ``"same"`` (``ceil(H / stride)`` rows, as ``jax.lax`` and
    TensorFlow: an even kernel pads one more row after than before), an int, ``(ph, pw)``
    or per side ``((top, bottom), (left, right))``; zeros are padded.

    Args:
        x: a wire of per-example images (H, W, C).
        w: the kernel, a wire (kh, kw, C / groups, O), usually a parameter.
        stride: the step between windows: a positive int, or a pair for height and width.
        padding: ``"valid"``, ``"same"``, or non-negative ints in one of the forms above; the
            default pads nothing.
        dilation: the kernel's dilation, a positive int or a pair.
        groups: feature groups; ``groups = C`` is a depthwise convolution.

    Returns:
        A wire (OH, OW, O) with ``OH = (H + top + bottom - kh) // stride + 1`` (likewise ``OW``) without
        dilation, in the wider dtype of ``x`` and ``w``, batched if ``x`` is.

    Raises:
        TypeError: ``x`` is not of rank 3 or ``w`` of rank 4, ``stride`` or ``padding`` has none of
            the forms above, the channels of ``x`` and ``w`` do not fit ``groups``, or the kernel
            does not fit the padded image.
        ValueError: a stride is not positive, a padding is negative, or ``padding`` is a string other
            than ``"valid"`` and ``"same"``.
    """
    _spatial_input("conv2d", x, 2)
    if w.ndim != 4:
        raise TypeError(f"conv2d: the kernel w must have shape (kh, kw, channels, outputs), got {w.type}")
    stride = positive_pair("conv2d", "stride", stride)
    pads = padding_of("conv2d", padding)
    return conv(x, w, stride=stride, padding=pads, dilation=positive_pair("conv2d", "dilation", dilation),
                groups=positive_int(groups, "conv2d: groups"))


def _transpose_padding(k: int, s: int, padding: str) -> tuple[int, int]:
    """``lax.conv_transpose``'s padding for ``"same"`` and ``"valid"`` (``k``: the dilated kernel)."""
    if padding == "same":
        total = k + s - 2
        lo = k - 1 if s > k - 1 else -(-total // 2)
    else:
        total = k + s - 2 + builtins.max(k - s, 0)
        lo = k - 1
    return lo, total - lo


def conv_transpose(x: Wire, w: Wire, *, stride=1, padding="valid", dilation=1) -> Wire:
    """Transposed convolution ("deconvolution"), channels last, as ``lax.conv_transpose`` (with
    ``transpose_kernel=False``, flax's ``ConvTranspose``): ``x`` (*S, C), ``w`` (*K, C, O) ->
    (*S', O), the input dilated by ``stride`` then convolved. ``"same"`` gives ``S * stride``
    positions.

    Args:
        x: a wire of per-example arrays (*S, C).
        w: the kernel (*K, C, O), an unbatched wire.
        stride: the input's dilation (the upsampling factor): a positive int, or one per axis.
        padding: ``"valid"``, ``"same"``, or one ``(lo, hi)`` pair per axis, padded around the
            dilated input (as ``lax.conv_transpose`` takes them).
        dilation: the kernel's dilation, a positive int or one per axis.

    Returns:
        A wire (*S', O).

    Raises:
        TypeError: a rank does not fit or an argument has none of the forms above.
        ValueError: a stride or dilation is not positive, or a padding is negative or unknown.

    >>> import paralens as pl
    >>> @pl.para
    ... def up(x: pl.Array[4, 4, 3], w: pl.Param[3, 3, 3, 2]):
    ...     return pl.conv_transpose(x, w, stride=2, padding="same")
    >>> up.cod
    Ty(Array[8, 8, 2])
    """
    if w.ndim < 3:
        raise TypeError(f"conv_transpose: the kernel w must have shape (*window, in_channels, out_channels), "
                        f"got {w.type}")
    n = w.ndim - 2
    _spatial_input("conv_transpose", x, n)
    strides = positive_ints("conv_transpose", "stride", stride, n)
    rhs = positive_ints("conv_transpose", "dilation", dilation, n)
    pads = padding_of("conv_transpose", padding, n=n)
    if isinstance(pads, str):
        pads = tuple(_transpose_padding(P.dilated_size(k, d), s, pads) for k, d, s in zip(w.shape[:n], rhs, strides))
    b = builder_of(x, w)
    return _wrap(b, b.emit1(P.CONV, lift(b, x), lift(b, w), strides=(1,) * n, padding=pads, lhs_dilation=strides,
                            rhs_dilation=rhs, groups=1))


def _pool(fn: str, x: Wire, window, stride, padding):
    n = len(window) if isinstance(window, (tuple, list)) else x.ndim - 1
    if n < 1:
        raise TypeError(f"{fn}: x must be per-example arrays with spatial axes and channels, got {x.type}")
    _spatial_input(fn, x, n)
    window = positive_ints(fn, "window", window, n)
    stride = window if stride is None else positive_ints(fn, "stride", stride, n)
    pads = padding_of(fn, padding, per_side=False, n=n)
    return window, stride, pads


def max_pool(x: Wire, window=(2, 2), stride=None, padding=0) -> Wire:
    """Max pooling over ``window`` (stride defaults to the window): (*S, C) -> (*S', C), over as
    many spatial axes as ``window`` has entries (an int: all but the channels). One
    ``window_max`` box: ``lax.reduce_window`` on JAX, its derivative XLA's select-and-scatter
    (computed elementwise where the windows tile the input: stride = window, no padding).

    Args:
        x: a wire of per-example arrays (*S, C), e.g. images (H, W, C).
        window: the window's size: a positive int, or one per spatial axis.
        stride: the step between windows, in the same form; ``None``: the window (windows do not
            overlap).
        padding: added on both sides of each spatial axis: a non-negative int, or one per axis.
            Padding is -inf, as JAX's and flax's: it never wins a maximum.

    Returns:
        A wire (*S', C) of ``x``'s dtype and batch flag, ``S' = (S + 2 * p - window) // stride + 1``
        per axis.

    Raises:
        TypeError: ``x`` has the wrong rank, ``window``, ``stride`` or ``padding`` has none of the
            forms above, or the window does not fit the padded input.
        ValueError: a window size or stride is not positive, a padding is negative, or ``padding`` is
            a string.
    """
    window, stride, pads = _pool("max_pool", x, window, stride, padding)
    return _wrap(x.builder, x.builder.emit1(P.WINDOW_MAX, x.id, window=window, strides=stride, padding=pads))


def avg_pool(x: Wire, window=(2, 2), stride=None, padding=0) -> Wire:
    """Average pooling over ``window`` (zero padding counts): (*S, C) -> (*S', C), over as many
    spatial axes as ``window`` has entries (an int: all but the channels). A ``window_sum`` box
    (``lax.reduce_window`` with ``add`` on JAX) divided by the window's size.

    Args:
        x: a wire of per-example arrays (*S, C), e.g. images (H, W, C).
        window: the window's size: a positive int, or one per spatial axis.
        stride: the step between windows, in the same form; ``None``: the window (windows do not
            overlap).
        padding: zeros added on both sides of each spatial axis: a non-negative int, or one per
            axis; the padded zeros count in each average.

    Returns:
        A wire (*S', C) of ``x``'s dtype and batch flag, ``S' = (S + 2 * p - window) // stride + 1``
        per axis.

    Raises:
        TypeError: ``x`` has the wrong rank, ``window``, ``stride`` or ``padding`` has none of the
            forms above, or the window does not fit the padded input.
        ValueError: a window size or stride is not positive, a padding is negative, or ``padding`` is
            a string.
    """
    window, stride, pads = _pool("avg_pool", x, window, stride, padding)
    ones = (1,) * len(window)
    total = _wrap(x.builder, x.builder.emit1(P.WINDOW_SUM, x.id, window=window, strides=stride, padding=pads,
                                             base_dilation=ones, window_dilation=ones))
    count = 1
    for k in window:
        count *= k
    return total * (1.0 / count)


def batch_sum(x: Wire) -> Wire:
    """Sum over the examples of the batch: a batched wire becomes an unbatched one.

    Args:
        x: a batched wire.

    Returns:
        An unbatched wire of ``x``'s per-example shape and dtype.

    Raises:
        TypeError: ``x`` is not batched.
    """
    return _wrap(x.builder, x.builder.emit1(P.BATCH_SUM, x.id))


def batch_mean(x: Wire) -> Wire:
    """Mean over the examples of the batch.

    Args:
        x: a batched wire.

    Returns:
        An unbatched wire of ``x``'s per-example shape and dtype: the sum over the examples divided
        by their number.

    Raises:
        TypeError: ``x`` is not batched.
    """
    b = x.builder
    return _wrap(b, P.div(b, b.emit1(P.BATCH_SUM, x.id), b.emit1(P.BATCH_COUNT, x.id)))


def zeros_like(x: Wire) -> Wire:
    """Zeros of ``x``'s type.

    Args:
        x: a wire; only its type is read.

    Returns:
        A wire of zeros of ``x``'s type (batched, of ``x``'s batch size, where ``x`` is); no
        cotangent flows back to ``x``.
    """
    return _wrap(x.builder, P.zeros_like(x.builder, x.id))


def constant(value, shape=None, dtype: str = "float32", *, like: Wire | None = None) -> Wire:
    """A constant wire (unbatched) inside a traced function, from a number, nested lists or an array.

    Args:
        value: a number, nested lists (or tuples) of numbers, or an array (anything with ``tolist()``).
        shape: the shape; ``None``: ``value``'s ``shape`` (``()`` for a number). Nested lists need it.
        dtype: the element type (``"float32"``, ``"int32"``, ``"bool"``, ...); the values, an array's
            too, are converted to it.
        like: a wire of the traced function to emit into; ``None``: the function being traced now.

    Returns:
        An unbatched wire of ``shape`` and ``dtype``.

    Raises:
        TypeError: ``value`` is a list or tuple and no shape is given, the values do not fill
            ``shape``, ``dtype`` is unknown, or the call is outside a traced function and has no ``like``.
    """
    b = like.builder if like is not None else builder_of()
    shape = tuple(getattr(value, "shape", ())) if shape is None else tuple(shape)
    if shape == () and isinstance(value, (list, tuple)):
        raise TypeError("give the shape of a constant built from nested lists")
    return _wrap(b, P.emit_const(b, value, shape, dtype))


def normal(key: Wire, shape=(), dtype: str = "float32") -> tuple[Wire, Wire]:
    """``(key', sample)``: standard normal numbers of ``shape`` drawn with the random ``key``
    (an unbatched uint32 pair, e.g. ``jax.random.PRNGKey(0)``), and the next key.

    Args:
        key: the random key: an unbatched ``uint32`` wire of shape (2,) (``pl.prims.KEY``).
        shape: the sample's shape, a tuple of positive ints.
        dtype: a floating-point dtype: ``"float32"``, ``"float64"``, ``"float16"`` or ``"bfloat16"``.

    Returns:
        ``(key', sample)``: the next key, and an unbatched wire of ``shape`` and ``dtype`` (one draw
        shared by every example).

    Raises:
        TypeError: ``key`` is not of the key's type, ``dtype`` is not floating-point, or a size in
            ``shape`` is not an int.
        ValueError: a size in ``shape`` is not positive.
    """
    b = key.builder
    new, sample = b.emit(P.NORMAL, [key.id], shape=tuple(shape), dtype=dtype)
    return Wire(b, new), Wire(b, sample)


def uniform(key: Wire, like: Wire) -> tuple[Wire, Wire]:
    """``(key', sample)``: numbers uniform in [0, 1) of ``like``'s type (shape, dtype, and a draw
    per example where ``like`` is batched), drawn with the random ``key``, and the next key.

    Args:
        key: the random key: an unbatched ``uint32`` wire of shape (2,) (``pl.prims.KEY``).
        like: a floating-point wire whose type the sample takes; only its type is read.

    Returns:
        ``(key', sample)``: the next key, and a wire of ``like``'s type.

    Raises:
        TypeError: ``key`` is not of the key's type, or ``like`` is not floating-point.
    """
    b = builder_of(key, like)
    new, sample = b.emit(P.UNIFORM, [lift(b, key), lift(b, like)])
    return Wire(b, new), Wire(b, sample)


def take(table, idx) -> Wire:
    """Rows of ``table`` at integer indices: ``table`` (n, *rest), ``idx`` of any shape s ->
    (*s, *rest), as ``table[idx]``. Its reverse derivative scatters the cotangent back
    (:func:`scatter_add`: rows taken twice receive the sum).

    Args:
        table: a wire (n, *rest) of any dtype, e.g. an embedding parameter.
        idx: integer indices (``int32``, ``int64`` or ``uint32``) of any shape ``s``, in ``[0, n)``:
            out of range, the NumPy backend raises and JAX clamps.

    Returns:
        A wire (*s, *rest) of ``table``'s dtype, batched if either operand is (a batched table is
        indexed per example).

    Raises:
        TypeError: ``idx`` is not of an integer dtype, or ``table`` has no axis.

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
    up): ``values`` (*s, *rest), ``idx`` integers of shape s. The transpose of :func:`take`.

    Args:
        values: a wire (*s, *rest): the rows to add.
        idx: integer indices (``int32``, ``int64`` or ``uint32``) of shape ``s``, in ``[0, size)``.
        size: the number of rows of the result, a positive int.

    Returns:
        A wire (size, *rest) of ``values``'s dtype, batched if either operand is.

    Raises:
        TypeError: ``size`` is not an int, ``idx`` is not of an integer dtype, or the shape of
            ``values`` does not start with that of ``idx``.
        ValueError: ``size`` is not positive.
    """
    b = builder_of(values, idx)
    size = positive_int(size, "scatter_add: size")
    return _wrap(b, b.emit1(P.SCATTER_ADD, lift(b, values), lift(b, idx), size=size))
