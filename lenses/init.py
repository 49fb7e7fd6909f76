"""Initialisers of parameter wires: descriptors a backend draws from (``pl.init.he_normal()``).

A descriptor is a plain tuple (``("he_normal",)``, ``("uniform", -0.1, 0.1)``), so
terms that hold one stay hashable and free of any array library; each backend's
``init`` draws from it.

>>> import paralens as pl
>>> pl.init.he_normal(), pl.init.uniform(-0.1, 0.1)
(('he_normal',), ('uniform', -0.1, 0.1))
>>> pl.nn.dense(2, 3, init=pl.init.normal(0.5)).params[0].init
('normal', 0.5)
"""

from __future__ import annotations

from .types import real

__all__ = ["zeros", "ones", "constant", "bits", "normal", "uniform", "glorot_uniform", "glorot_normal", "he_normal",
           "he_uniform", "initializer"]


def zeros() -> tuple:
    """Every entry 0 (the default of biases).

    Returns:
        The descriptor ``("zeros",)``.
    """
    return ("zeros",)


def ones() -> tuple:
    """Every entry 1 (the default of a normalisation's scale).

    Returns:
        The descriptor ``("ones",)``.
    """
    return ("ones",)


def constant(value: float) -> tuple:
    """Every entry ``value``.

    Args:
        value: a finite number (a Python or NumPy number, or a 0-d array).

    Returns:
        The descriptor ``("const", value)``, with ``value`` as a float.

    Raises:
        TypeError: if ``value`` is not a number (a bool or a string included).
        ValueError: if ``value`` is not finite.
    """
    return ("const", real(value, "constant: value"))


def glorot_uniform() -> tuple:
    """Glorot (Xavier) uniform: uniform in ``[-l, l)`` with ``l = sqrt(6 / (fan_in + fan_out))``.

    The fans of a shape ``(..., n_in, n_out)`` are ``n_in`` and ``n_out`` times the product of
    the leading axes (a convolution's kernel window); a vector's are both its length, a
    scalar's both 1. The default of weight matrices.

    Returns:
        The descriptor ``("glorot_uniform",)``.
    """
    return ("glorot_uniform",)


def glorot_normal() -> tuple:
    """Glorot (Xavier) normal: mean 0, standard deviation ``sqrt(2 / (fan_in + fan_out))``.

    Fans as for :func:`glorot_uniform`.

    Returns:
        The descriptor ``("glorot_normal",)``.
    """
    return ("glorot_normal",)


def he_normal() -> tuple:
    """He (Kaiming) normal: mean 0, standard deviation ``sqrt(2 / fan_in)``, for ReLU layers.

    Fans as for :func:`glorot_uniform`.

    Returns:
        The descriptor ``("he_normal",)``.
    """
    return ("he_normal",)


def he_uniform() -> tuple:
    """He (Kaiming) uniform: uniform in ``[-l, l)`` with ``l = sqrt(6 / fan_in)``, for ReLU layers.

    Fans as for :func:`glorot_uniform`.

    Returns:
        The descriptor ``("he_uniform",)``.
    """
    return ("he_uniform",)


def bits(p: float = 0.5) -> tuple:
    """Random bits, each set with probability ``p`` in [0, 1].

    Args:
        p: the probability that a bit is 1, a number in ``[0, 1]``.

    Returns:
        The descriptor ``("bits", p)``, with ``p`` as a float.

    Raises:
        TypeError: if ``p`` is not a number.
        ValueError: if ``p`` is not finite or outside ``[0, 1]``.
    """
    return ("bits", real(p, "bits: p", 0, 1))


def normal(stddev: float = 1e-2) -> tuple:
    """Normal numbers of mean 0 and standard deviation ``stddev >= 0``.

    Args:
        stddev: the standard deviation, a finite number ``>= 0`` (0 gives zeros).

    Returns:
        The descriptor ``("normal", stddev)``, with ``stddev`` as a float.

    Raises:
        TypeError: if ``stddev`` is not a number.
        ValueError: if ``stddev`` is not finite or is negative.
    """
    return ("normal", real(stddev, "normal: stddev", 0))


def uniform(low: float = -1e-2, high: float = 1e-2) -> tuple:
    """Uniform numbers in ``[low, high)``, ``low <= high``.

    Args:
        low: the lower bound (included), a finite number.
        high: the upper bound (excluded), a finite number not below ``low``.

    Returns:
        The descriptor ``("uniform", low, high)``, with both bounds as floats.

    Raises:
        TypeError: if ``low`` or ``high`` is not a number.
        ValueError: if ``low`` or ``high`` is not finite, or ``low > high``.
    """
    low, high = real(low, "uniform: low"), real(high, "uniform: high")
    if low > high:
        raise ValueError(f"uniform: low={low!r} is above high={high!r}; expected low <= high")
    return ("uniform", low, high)


_CONSTRUCTORS = (zeros, ones, constant, bits, normal, uniform, glorot_uniform, glorot_normal, he_normal, he_uniform)
#: Each descriptor's kind and its number of arguments, as the constructors above build them.
_INITIALIZERS = {"zeros": 0, "ones": 0, "const": 1, "bits": 1, "normal": 1, "uniform": 2, "glorot_uniform": 0,
                 "glorot_normal": 0, "he_normal": 0, "he_uniform": 0}


def initializer(init, what: str) -> tuple:
    """``init`` if it is an initialiser descriptor (``pl.init.he_normal()``); else an error
    naming ``what`` (the argument), the value and the known initialisers.

    Args:
        init: the value to check: a descriptor such as ``pl.init.he_normal()`` (a tuple whose
            first item is a known kind and whose length fits it).
        what: the name of the argument ``init`` was given as (``"init"``), for the message.

    Returns:
        ``init`` itself, unchanged.

    Raises:
        ValueError: if ``init`` is not a descriptor; the message suggests calling it when it is
            a constructor or a constructor's name (``pl.init.he_normal`` instead of
            ``pl.init.he_normal()``).

    >>> initializer(he_normal(), "init")
    ('he_normal',)
    """
    if isinstance(init, tuple) and init and _INITIALIZERS.get(init[0]) == len(init) - 1:
        return init
    names = [f.__name__ for f in _CONSTRUCTORS]
    name = getattr(init, "__name__", init) if init in _CONSTRUCTORS or init in names else None
    hint = f" (call it: pl.init.{name}())" if name else ""
    raise ValueError(f"{what}={init!r} is not an initialiser{hint}; expected one of "
                     f"{', '.join(f'pl.init.{n}()' for n in names)}")


