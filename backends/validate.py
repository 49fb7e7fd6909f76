"""Checks at the boundaries where data meets a compiled term, on the host.

Data whose dtype differs from the term's is cast to the term's dtype, so a
float32 learner's state stays float32 whatever it is fed; complex and
non-numeric data are refused, as are fractional values for an integer wire.
Inputs that share a batch must agree on its size, class labels must lie in
range. Every error names the argument, the value and what was expected.

None of this runs inside a compiled step: the JAX step checks shapes when it
is traced and these host checks before it is called, so the program XLA runs
is the same as without them.

>>> import numpy as np
>>> from paralens.types import ArrayType
>>> cast(np.ones(3), ArrayType((), "float32", batched=True), "x").dtype
dtype('float32')
>>> check_labels(np.array([0, 2, 3]), 3, "y")
Traceback (most recent call last):
...
ValueError: y holds class labels for 3 classes, so each must be in 0..2; got 3 at index 2
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["cast", "check_labels", "check_same_batch", "check_finite", "positive_int", "labels_check",
           "training_data"]


def _kind(dtype) -> str:
    """NumPy's kind letter; the floats of ml_dtypes (bfloat16, float8), kind ``V`` to NumPy, are ``f``."""
    dtype = np.dtype(dtype)
    if dtype.kind == "V" and dtype.type.__module__.startswith("ml_dtypes"):
        return "f"
    return dtype.kind


def cast(value, type, what: str, asarray=None):
    """``value`` with ``type``'s dtype, refusing what the cast would change.

    Args:
        value: an array (NumPy, JAX, or a JAX tracer), a number, or nested lists of numbers.
        type: the wire's :class:`~paralens.ArrayType`.
        what: the argument's name, for the errors.
        asarray: ``asarray(value, dtype)`` makes the array (NumPy's by default); a JAX tracer is
            cast with ``astype``, and checked by dtype alone.

    Returns:
        ``value`` as it is when its dtype is the wire's, else converted.

    Raises:
        TypeError: complex or non-numeric data; floats for an integer wire inside a trace.
        ValueError: fractional or non-finite floats for an integer wire, or integers outside the
            range of the wire's integer dtype (``2**32 + 1`` for int32 would wrap around).
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        value = np.asarray(value)
        dtype = value.dtype
    want = np.dtype(type.dtype)
    if dtype == want:
        return value
    kind = _kind(dtype)
    if kind == "c":
        raise TypeError(f"{what} is complex ({dtype}), but the term takes real {want} values; "
                        "pass the real part (or split real and imaginary parts into two inputs)")
    if kind not in "biuf":
        raise TypeError(f"{what} has dtype {dtype}, not numbers; the term takes {want}")
    if want.kind in "iub" and kind == "f":
        if not _concrete(value):
            raise TypeError(f"{what} is {dtype}, but the term takes {want} (class labels?): pass integers")
        v = np.asarray(value)
        if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            raise ValueError(f"{what} is {dtype} with fractional or non-finite values, but the term takes {want}")
    if want.kind == "b" and kind in "iu":
        return value  # integers on a bit wire: the backend reads them (Z2 reads them mod 2)
    if want.kind in "iu" and kind in "iuf" and _concrete(value):
        v = np.asarray(value)
        info = np.iinfo(want)
        if v.size and (v.min() < info.min or v.max() > info.max):
            bad = v.ravel()[int(np.flatnonzero((v.ravel() < info.min) | (v.ravel() > info.max))[0])]
            raise ValueError(f"{what} holds {bad}, outside the range of {want} ({info.min}..{info.max}) that the "
                             "term takes: it would wrap around; check the data")
    if asarray is not None:
        return asarray(value, want)
    if hasattr(value, "astype"):
        return value.astype(want)
    return np.asarray(value, want)


def _concrete(value) -> bool:
    """Whether the value can be read on the host (not a JAX tracer)."""
    return isinstance(value, (np.ndarray, np.generic, numbers.Number)) or type(value).__name__ == "ArrayImpl"


def check_labels(labels, classes: int, what: str = "y"):
    """Integer class labels must lie in ``0..classes-1``; checked where they are on the host
    (NumPy data; a JAX array already on a device is not read back)."""
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.size == 0:
        return
    if labels.size <= 64:  # a small batch: Python's min and max cost less than NumPy's dispatch
        flat = labels.ravel().tolist()
        if min(flat) >= 0 and max(flat) < classes:
            return
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"{what} holds class labels for {classes} classes, so each must be in 0..{classes - 1}; "
                         f"got {labels.ravel()[i]} at index {i}")


def check_same_batch(named: dict):
    """The values in ``named`` share a batch: their leading sizes must agree."""
    sizes = {k: (v.shape[0] if getattr(v, "ndim", 0) else None) for k, v in named.items()}
    if len(set(sizes.values())) > 1:
        said = ", ".join(f"{k} has {s}" for k, s in sizes.items())
        raise ValueError(f"{' and '.join(named)} must have the same number of examples (one label per input); "
                         f"{said}")


def check_finite(value, what: str):
    """Refuse NaN or infinite data (a NumPy array on the host)."""
    v = np.asarray(value)
    if v.dtype.kind in "fc":
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(len(v), -1).any(axis=1))[0]) if v.ndim else 0
            raise ValueError(f"{what} has {int(bad.sum())} non-finite values (NaN or inf), the first in "
                             f"example {i}; clean or impute the data first")


def positive_int(value, what: str, *, zero: bool = False) -> int:
    """``value`` as an int, refusing bools, floats (even ``8.0``) and values below 1 (0 when ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if value < (0 if zero else 1):
        raise ValueError(f"{what} must be {'>= 0' if zero else 'positive'}, got {value}")
    return int(value)


def labels_check(classes: int | None):
    """``check(x, y)`` for a step whose labels are class indices (``None``: no check)."""
    if classes is None:
        return None

    def check(x, y):
        check_labels(y, classes, "the labels y")
    return check


def training_data(step, x, y, batch_size, classes: int | None):
    """``x``, ``y`` as NumPy arrays of the step's dtypes, after the checks ``fit`` makes: one
    label per input, finite values, labels in range, ``batch_size`` an int in ``1..len(x)``."""
    x_type, y_type = step.input_types()[1:]
    if isinstance(x_type, tuple) or isinstance(y_type, tuple):
        raise TypeError("fit takes one input array and one label array; compile the step for several")
    x, y = cast(np.asarray(x), x_type, "x"), cast(np.asarray(y), y_type, "y")
    check_same_batch({"x": x, "y": y})
    batch_size = positive_int(batch_size, "batch_size")
    if batch_size > len(x):
        raise ValueError(f"batch_size must be in 1..{len(x)} (the number of examples), got {batch_size}")
    check_finite(x, "x")
    check_finite(y, "y")
    if classes is not None:
        check_labels(y, classes, "the labels y")
    return x, y, batch_size
