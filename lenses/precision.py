"""Mixed precision: a term at another floating-point dtype, for a learner's compute.

:func:`astype` rebuilds a term box by box with every ``float32`` wire (and
every ``float32`` in a box's parameters: constants, zeros, casts, a scan's
body) made ``bfloat16`` (or any pair of float dtypes). Each box is re-emitted
through its type rule, so the result is checked as any term is.

``Learner(..., compute_dtype="bfloat16")`` uses it: the parameters and the
optimizer state stay float32; each step casts the parameters and the input
to bfloat16, runs the model there, and casts its output back to float32 for
the loss. ``R`` of a cast is a cast back, so the cotangents reach the
optimizer in float32.

>>> import paralens as pl
>>> low = pl.astype(pl.nn.dense(3, 2), "bfloat16")
>>> low.dom, [p.type.dtype for p in low.params]
(Ty(Array[3, dtype='bfloat16']), ['bfloat16', 'bfloat16'])
"""

from __future__ import annotations

from .passes import retyped
from .pipeline import factors
from .prims import FLOATS
from .terms import Seq, Term, as_term, seq

__all__ = ["astype"]


def astype(term, dtype: str, source: str = "float32") -> Term:
    """``term`` with its ``source`` wires made ``dtype`` (both floating-point dtypes).

    Args:
        term: a term, or what :func:`~paralens.as_term` takes (a lens, an optimizer, a learner).
        dtype: the floating-point dtype to convert to: ``"float16"``, ``"bfloat16"``, ``"float32"``
            or ``"float64"``.
        source: the floating-point dtype converted; wires of other dtypes (integers, random keys,
            other floats) keep theirs.

    Returns:
        The rebuilt term, its parameters keeping their names; ``term``'s term unchanged when
        ``dtype == source``.

    Raises:
        ValueError: ``dtype`` or ``source`` is not a floating-point dtype.
        TypeError: ``term`` is not a term or has no type yet, or it holds an opaque box (an optax
            transformation) whose dtype cannot change.
    """
    for what, d in (("dtype", dtype), ("source", source)):
        if d not in FLOATS:
            raise ValueError(f"astype: {what}={d!r} is not a floating-point dtype; expected one of {FLOATS}")
    term = as_term(term)
    if dtype == source:
        return term
    if isinstance(term._node, Seq):  # a composite stays one, of its parts converted (pipeline stages cut it)
        out = seq(*[astype(f, dtype, source) for f in factors(term, keep_named=True)])
        return out if term._name is None else out.renamed(term._name)
    return retyped(term, source, dtype)
