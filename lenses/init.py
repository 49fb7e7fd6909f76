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


def zeros() -> tuple: return ("zeros",)
def ones() -> tuple: return ("ones",)
def constant(value: float) -> tuple: return ("const", real(value, "constant: value"))
def glorot_uniform() -> tuple: return ("glorot_uniform",)
def glorot_normal() -> tuple: return ("glorot_normal",)
def he_normal() -> tuple: return ("he_normal",)
def he_uniform() -> tuple: return ("he_uniform",)


def bits(p: float = 0.5) -> tuple:
    """Random bits, each set with probability ``p`` in [0, 1]."""
    return ("bits", real(p, "bits: p", 0, 1))


def normal(stddev: float = 1e-2) -> tuple:
    """Normal numbers of mean 0 and standard deviation ``stddev >= 0``."""
    return ("normal", real(stddev, "normal: stddev", 0))


def uniform(low: float = -1e-2, high: float = 1e-2) -> tuple:
    """Uniform numbers in ``[low, high)``, ``low <= high``."""
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


