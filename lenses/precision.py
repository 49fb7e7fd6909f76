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

from .prims import FLOATS
from .terms import Builder, Term, as_term
from .types import ArrayType

__all__ = ["astype"]


def astype(term, dtype: str, source: str = "float32") -> Term:
    """``term`` with its ``source`` wires made ``dtype`` (both floating-point dtypes)."""
    for what, d in (("dtype", dtype), ("source", source)):
        if d not in FLOATS:
            raise ValueError(f"astype: {what}={d!r} is not a floating-point dtype; expected one of {FLOATS}")
    term = as_term(term)
    if dtype == source:
        return term
    return _retyped(term, source, dtype)


def _retyped(term: Term, src: str, dst: str) -> Term:
    def ty(t: ArrayType) -> ArrayType:
        return ArrayType(t.shape, dst, batched=t.batched) if t.dtype == src else t

    def param(v):
        if isinstance(v, ArrayType):
            return ty(v)
        if isinstance(v, Term):
            return _retyped(v, src, dst)
        if isinstance(v, tuple):
            return tuple(param(u) for u in v)
        return dst if v == src else v

    b = Builder()
    env = {}
    for w, spec in zip(term.param_wires, term.params):
        env[w] = b.param(spec.layer, spec.slot, spec.local, ty(spec.type), spec.init, spec.hyper)
    for w in term.inputs:
        env[w] = b.input(ty(term.wires[w]))
    for e in term.eqns:
        if e.prim.name == "foreign":
            raise TypeError(f"astype: {term.name} holds an opaque box ({e.prim.name}) whose dtype cannot change")
        b.group, b.layer, b.backward = e.group, e.layer, e.backward
        params = {k: param(v) for k, v in e.attrs}  # a scan's body is a term: retyped too
        outs = b.emit(e.prim, [env[w] for w in e.ins], **params)
        env.update(zip(e.outs, outs))
    b.group, b.layer, b.backward = (), None, False
    out = b.build([env[w] for w in term.inputs], [env[w] for w in term.outputs], in_sig=term.in_sig,
                  out_sig=term.out_sig, name=term.name, dce=False, arg_names=term.arg_names)
    # the parameters keep their names: the learner binds them by name
    assert out.param_names == term.param_names, (out.param_names, term.param_names)
    return out
