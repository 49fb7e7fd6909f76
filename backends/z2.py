"""The Z2 backend: terms over bits, where ``+`` is XOR and ``*`` is AND (maths §1.6).

Polynomials over Z2 form a reverse derivative category, so ``R`` of a circuit is
again a circuit, by the same rules as for real numbers. The derivatives are
formal partial derivatives, not finite differences (``R(x AND x)`` is ``2x = 0``),
and cotangents add up by XOR. Every wire of a circuit is a bit (``dtype="bool"``).

Evaluation is vectorised over the batch with NumPy. ``compile(term, engine="jax")``
runs the same rules with ``jax.numpy`` under ``jax.jit``.

>>> import numpy as np, paralens as pl
>>> bit = pl.Array((), dtype="bool")
>>> @pl.para
... def f(x: bit, w: pl.Param((), dtype="bool")):
...     return x * w + x                         # AND, then XOR: not OR
>>> z2 = pl.backends.get("z2")
>>> z2.compile(f)(np.array(True), np.array([True, True])).tolist()
[False, False]
>>> z2.compile(f)(np.array(False), np.array([True, True])).tolist()
[True, True]
"""

from __future__ import annotations

import numpy as np

from paralens.terms import as_term

from ._interpret import ArrayBackend, ArrayLib

__all__ = ["backend", "compile", "RULES"]


def _parity(x, axis):
    return (np.sum(x, axis=axis, dtype=np.int64) % 2).astype(bool)


def _xor_at(acc, idx, v):
    acc[idx] ^= v
    return acc


def _rules(xp, parity):
    """One entry per primitive a circuit uses, over namespace ``xp``."""
    def reduce_sum(ins, outs, x, *, axes):
        return parity(x, tuple(a + ins[0].batched for a in axes)) if axes else x

    def fixed(c):  # a number inside a box (scale, shift) as a bit
        return bool(int(c) % 2)

    return {
        "add": xp.logical_xor, "sub": xp.logical_xor, "mul": xp.logical_and, "neg": lambda x: x,
        "scale": lambda x, *, c: xp.logical_and(x, fixed(c)), "shift": lambda x, *, c: xp.logical_xor(x, fixed(c)),
        "where": lambda c, x, y: xp.where(c, x, y), "stop_gradient": lambda x: x,
        "cast": lambda x, *, dtype: x,
        "reduce_sum": reduce_sum,
        "batch_sum": lambda ins, outs, x: parity(x, 0),
    }


RULES = _rules(np, _parity)

LIB = ArrayLib(
    xp=np,
    asarray=lambda v, dtype: np.array(v) % 2 != 0 if np.asarray(v).dtype != bool else np.array(v),
    full=lambda shape, value, dtype: np.full(shape, bool(int(value) % 2)),
    constant=lambda value, shape, dtype: (np.asarray(value, dtype=np.int64) % 2 != 0).reshape(shape),
    einsum=lambda spec, a, b: (np.einsum(spec, a.astype(np.int64), b.astype(np.int64)) % 2).astype(bool),
    pad=np.pad,
    add_at=_xor_at,
)


def _jax_bits(v):
    """Values as bits on JAX, read as the NumPy engine reads them: an integer modulo 2."""
    import jax.numpy as jnp

    v = jnp.asarray(v)
    return v if v.dtype == bool else v % 2 != 0


def _jax_engine() -> ArrayBackend:
    """The same rules over ``jax.numpy`` (built on first use, so NumPy-only use needs no JAX)."""
    import jax.numpy as jnp

    from .jax import _lax_loop

    def parity(x, axis):
        return (jnp.sum(x, axis=axis, dtype=jnp.int32) % 2).astype(bool)

    lib = ArrayLib(
        xp=jnp,
        asarray=lambda v, dtype: jnp.asarray(np.asarray(v) % 2 != 0),
        full=lambda shape, value, dtype: jnp.full(shape, bool(int(value) % 2)),
        constant=lambda value, shape, dtype: jnp.asarray((np.asarray(value, np.int64) % 2 != 0).reshape(shape)),
        einsum=lambda spec, a, b: (jnp.einsum(spec, a.astype(jnp.int32), b.astype(jnp.int32)) % 2).astype(bool),
        pad=jnp.pad,
        add_at=lambda acc, idx, v: acc.at[idx].set(acc[idx] ^ v),
    )
    engine = Z2Backend("z2", lib, _rules(jnp, parity), convert=_jax_bits,
                       loop=_lax_loop)
    return engine


class Z2Backend(ArrayBackend):
    """Circuits over bits. ``compile(term, engine="jax")`` (and ``compile_step(step, engine="jax")``)
    runs them under ``jax.jit``."""

    bits = True

    def compile(self, term, engine: str = "numpy", **options):
        """``fn(params, *args)`` on bool arrays; ``engine="jax"`` compiles it with ``jax.jit``."""
        term = as_term(term)
        wrong = sorted({t.dtype for t in term.wires} - {"bool"})
        if wrong:
            raise TypeError(f"{term.name}: the z2 backend runs circuits over bits, every wire bool; this term has "
                            f"{', '.join(wrong)} wires")
        if engine == "numpy":
            return super().compile(term, **options)
        if engine == "jax":
            import jax
            return jax.jit(self._jax.compile(term, **options))
        raise ValueError(f"engine must be 'numpy' or 'jax', got {engine!r}")

    @property
    def _jax(self) -> ArrayBackend:
        if self.__dict__.get("_jax_engine") is None:
            self.__dict__["_jax_engine"] = _jax_engine()
        return self.__dict__["_jax_engine"]

    def owns(self, value) -> bool:
        return isinstance(value, np.ndarray) and value.dtype == bool


backend = Z2Backend("z2", LIB, RULES, convert=lambda v: np.asarray(v) % 2 != 0 if np.asarray(v).dtype != bool
                    else np.asarray(v))


def compile(term, engine: str = "numpy"):  # noqa: A001 - the public contract
    """A function on bool arrays for the circuit ``term`` (see :class:`Z2Backend`).

    Args:
        term: the circuit: a term (or a lens or learner) whose every wire is bool.
        engine: ``"numpy"`` runs the circuit eagerly with NumPy, vectorised over the batch;
            ``"jax"`` runs the same rules with ``jax.numpy`` under ``jax.jit`` (JAX is imported
            on first use).

    Returns:
        ``fn(params, *args)`` following ``term``'s calling convention, every output a bool array.
        Pass bool arrays: of integers, the ``numpy`` engine reads each modulo 2, the ``jax``
        engine any nonzero one as ``True``.

    Raises:
        TypeError: a wire of ``term`` is not bool, or ``term`` is not a term, lens or learner.
        ValueError: ``engine`` is neither ``"numpy"`` nor ``"jax"``.
    """
    return backend.compile(term, engine=engine)
