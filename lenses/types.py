"""Array object types and their monoidal product.

Types are *per example*: ``Array[4]`` is a vector of four numbers. When a term
is evaluated, a *batched* wire carries one extra leading axis (the batch);
an unbatched wire (a parameter, a constant, a loss averaged over the batch)
does not. The batch flag is part of the type, so the type checker knows, when
a term is built, which arrays carry a batch axis.

>>> from paralens import Array, Ty
>>> Array[4] @ Array[2, 3]
Ty(Array[4], Array[2, 3])
>>> Array[4].unbatched
Array[4, batched=False]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, replace

__all__ = ["ArrayType", "Array", "Param", "Ty", "as_ty", "CompositionError", "positive_int", "real", "printable"]

class CompositionError(TypeError):
    """Raised when a term is built from pieces whose types do not fit; the message names both."""


_DTYPES = ("float32", "float64", "float16", "bfloat16", "int32", "int64", "uint32", "bool", "complex64", "complex128")


def positive_int(value, what: str) -> int:
    """``value`` as an ``int`` if it is a positive integer (a Python or NumPy integer, not a
    bool); otherwise an error naming ``what`` (the argument), the value and what was expected.

    >>> positive_int(3, "n_out")
    3
    >>> positive_int(True, "n_out")
    Traceback (most recent call last):
    ...
    TypeError: n_out must be a positive int, got True (a bool)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be a positive int, got {value!r} (a {type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def real(value, what: str, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False,
         open_high: bool = False) -> float:
    """``value`` as a float if it is a finite number between ``low`` and ``high`` (excluded where
    ``open_low``/``open_high``); else an error naming ``what`` (the argument), the value and
    what was expected.

    >>> real(0.9, "b1", 0, 1, open_high=True)
    0.9
    >>> real(1.0, "b1", 0, 1, open_high=True)
    Traceback (most recent call last):
    ...
    ValueError: b1=1.0 is out of range: expected a number in [0, 1)
    """
    if isinstance(value, (bool, str)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    try:  # a Python or NumPy number, or a 0-d array of any library
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what}={value!r} is not finite; expected a finite number")
    if x < low or x > high or (open_low and x == low) or (open_high and x == high):
        if high == math.inf:
            expected = f"a number {'>' if open_low else '>='} {low:g}"
        else:
            expected = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{what}={value!r} is out of range: expected {expected}")
    return x


def printable(text: str, limit: int | None = None) -> str:
    """``text`` as it can be shown in one line: every character that is not printable (a line
    break, a tab, NUL, an unpaired surrogate) written as its Python escape, then anything past
    ``limit`` characters cut off with ``...``. Letters of any script stay as they are, and a
    printable text comes back as it is (so ``printable(printable(t, n), n) == printable(t, n)``).

    Args:
        text: the text to show.
        limit: the length to cut the escaped text to, the ``...`` included; ``None``: no cut.

    Returns:
        ``text`` with its unprintable characters escaped, and, where it is longer than ``limit``,
        its first ``max(limit - 3, 0)`` characters followed by ``...``.

    >>> printable("layer\\n#2"), printable("größe"), printable("x" * 10, limit=6)
    ('layer\\\\n#2', 'größe', 'xxx...')
    """
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


@dataclass(frozen=True)
class ArrayType:
    """The type of one wire: a per-example ``shape`` (positive int sizes), a ``dtype`` and a batch flag.

    Attributes:
        shape: the per-example sizes, a tuple of positive ints (``()`` for a scalar); a batch axis is
            never part of it.
        dtype: the element type: ``"float32"``, ``"float64"``, ``"float16"``, ``"bfloat16"``, ``"int32"``,
            ``"int64"``, ``"uint32"`` or ``"bool"``.
        batched: whether the wire carries a leading batch axis when evaluated (data), or not
            (parameters, constants, means over the batch).

    Raises:
        TypeError: a size is not an int (a bool is not one), or ``dtype`` is none of these.
        ValueError: a size is not positive.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    batched: bool = True

    def __post_init__(self):
        shape = tuple(self.shape)
        if not all(type(d) is int and d > 0 for d in shape):  # the fast path: plain positive ints
            shape = tuple(positive_int(d, f"size {i} of the array shape {shape!r}") for i, d in enumerate(shape))
        if self.dtype not in _DTYPES:
            raise TypeError(f"unknown dtype {self.dtype!r}; expected one of {_DTYPES}")
        object.__setattr__(self, "shape", shape)

    @property
    def ndim(self) -> int:
        """The number of per-example axes."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements of one example (1 for a scalar)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def unbatched(self) -> ArrayType:
        """This type without the batch axis."""
        return replace(self, batched=False)

    @property
    def as_batched(self) -> ArrayType:
        """This type with the batch axis."""
        return replace(self, batched=True)

    def with_shape(self, shape) -> ArrayType:
        """This type with another per-example shape, its dtype and batch flag kept.

        Args:
            shape: the new sizes, an iterable of positive ints.

        Returns:
            The new ``ArrayType``.

        Raises:
            TypeError: a size is not an int.
            ValueError: a size is not positive.
        """
        return replace(self, shape=tuple(shape))

    def __matmul__(self, other) -> Ty:
        return Ty(self) @ other

    def __rmatmul__(self, other) -> Ty:
        return as_ty(other) @ Ty(self)

    def __repr__(self) -> str:
        dims = ", ".join(map(str, self.shape))
        extra = "" if self.dtype == "float32" else f", dtype={self.dtype!r}"
        extra += "" if self.batched else ", batched=False"
        sep = ", " if dims and extra else ""
        return f"Array[{dims}{sep}{extra.lstrip(', ')}]"


class _ArrayFactory:
    """``Array[4, 3]`` builds a batched float32 ``ArrayType``; ``Array(shape, dtype)`` too."""

    def __init__(self, batched: bool):
        self._batched = batched

    def __getitem__(self, dims) -> ArrayType:
        if not isinstance(dims, tuple):
            dims = (dims,)
        if len(dims) == 1 and isinstance(dims[0], tuple) and not dims[0]:
            dims = ()
        return ArrayType(tuple(dims), batched=self._batched)

    def __call__(self, *shape, dtype: str = "float32") -> ArrayType:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ArrayType(tuple(shape), dtype, self._batched)

    def __repr__(self) -> str:
        return "Array" if self._batched else "Param"


#: ``Array[n, m]``: a per-example data type (batched when evaluated).
Array = _ArrayFactory(batched=True)
#: ``Param[n, m]``: a parameter type (no batch axis); as an annotation in
#: :func:`paralens.para` it declares a parameter wire.
Param = _ArrayFactory(batched=False)


class Ty(tuple):
    """A monoidal product of array types: the type of a bundle of wires.

    ``@`` concatenates; the empty ``Ty()`` is the unit.

    Args:
        *types: the array types of the wires, in order.

    Raises:
        TypeError: an argument is not an :class:`~paralens.ArrayType`.
    """

    def __new__(cls, *types: ArrayType):
        for t in types:
            if not isinstance(t, ArrayType):
                raise TypeError(f"Ty takes ArrayType objects, got {t!r}")
        return super().__new__(cls, types)

    def __matmul__(self, other) -> Ty:
        return Ty(*self, *as_ty(other))

    def __rmatmul__(self, other) -> Ty:
        return Ty(*as_ty(other), *self)

    def __add__(self, other):  # tuple + would silently return a plain tuple
        return self @ other

    def __reduce__(self):  # pickle and copy rebuild it from its types
        return (Ty, tuple(self))

    def __getitem__(self, item):
        result = super().__getitem__(item)
        return Ty(*result) if isinstance(item, slice) else result

    def __iter__(self) -> Iterator[ArrayType]:
        return super().__iter__()

    def __repr__(self) -> str:
        return f"Ty({', '.join(map(repr, self))})"


def as_ty(t) -> Ty:
    """Coerce an ``ArrayType``, a ``Ty`` or an iterable of array types to a ``Ty``."""
    if isinstance(t, Ty):
        return t
    if isinstance(t, ArrayType):
        return Ty(t)
    if isinstance(t, (tuple, list)):
        return Ty(*(x for item in t for x in as_ty(item)))
    raise TypeError(f"expected an array type or a Ty, got {t!r}")
