"""Iteration as a term constructor: ``scan`` and ``loop``.

``loop(body, K)`` applies ``body`` K times to its carried wires. It is one box
(a ``scan`` holding the body as a term), so a term with a 1000-step loop is as
small as one with a 10-step loop, and JAX compiles it to one ``lax.scan``.

Its reverse derivative is the reverse loop (MATH.md 8.2): a forward scan that
also stacks the carries it went through (the residuals), then a scan backwards
over them applying ``R(body)`` at each stored carry and summing the cotangents
of the wires shared by every step. Both are scans again, so ``R`` applies to
them too.

>>> import paralens as pl
>>> @pl.para
... def halve(x: pl.Array[2]):
...     return 0.5 * x
>>> pl.loop(halve, 1000).n_boxes
1
"""

from __future__ import annotations

from . import prims as P
from .derivative import R
from .terms import Builder, CompositionError, Term
from .types import ArrayType

__all__ = ["SCAN", "loop", "scan_term"]


def _stacked(t: ArrayType, k: int) -> ArrayType:
    return t.with_shape((k,) + t.shape)


def _scan_rule(types, *, body, length, n_carry, n_const, reverse):
    nc, na = n_carry, n_const
    carry, const, xs = types[:nc], types[nc:nc + na], types[nc + na:]
    if body.params:
        raise TypeError(f"scan: the body {body.name} must take its parameters as inputs")
    for t in xs:
        if t.ndim == 0 or t.shape[0] != length:
            raise TypeError(f"scan: a per-step input {t} does not have {length} steps on its first axis")
    elems = [t.with_shape(t.shape[1:]) for t in xs]
    if list(body.dom) != list(carry) + list(const) + elems:
        raise TypeError(f"scan: the body {body.name} takes {body.dom}, "
                        f"but the loop gives it {list(carry) + list(const) + elems}")
    if list(body.cod[:nc]) != list(carry):
        raise TypeError(f"scan: the body {body.name} returns {body.cod[:nc]} for carries of types {carry}")
    return list(carry) + [_stacked(t, length) for t in body.cod[nc:]]


def _with_history(body: Term, nc: int) -> Term:
    """The body, also returning the carry it was given (to stack as residuals)."""
    b = Builder()
    ins = [b.input(t) for t in body.dom]
    outs = b.inline(body, ins)
    return b.build(ins, outs + ins[:nc], name=f"history({body.name})")


def _reverse_body(body: Term, nc: int, na: int) -> Term:
    """One backward step: carry (dc, da_sum), shared (a), per step (c_k, x_k, dy_k) -> (dc_prev, da_sum'), dx_k."""
    rf = R(body)
    carry_t, const_t = list(body.dom[:nc]), list(body.dom[nc:nc + na])
    x_t, y_t = list(body.dom[nc + na:]), list(body.cod[nc:])
    b = Builder()
    dc = [b.input(t) for t in carry_t]
    acc = [b.input(t) for t in const_t]
    a = [b.input(t) for t in const_t]
    c_k = [b.input(t) for t in carry_t]
    x_k = [b.input(t) for t in x_t]
    dy_k = [b.input(t) for t in y_t]
    outs = b.inline(rf, c_k + a + x_k + dc + dy_k)
    d_prev, da_k, dx_k = outs[:nc], outs[nc:nc + na], outs[nc + na:]
    acc2 = [P.add(b, s, d) for s, d in zip(acc, da_k)]
    return b.build(dc + acc + a + c_k + x_k + dy_k, d_prev + acc2 + dx_k, name=f"reverse({body.name})")


def _scan_rev(b, p, ins, outs, douts):
    body, k, nc, na, rev = p["body"], p["length"], p["n_carry"], p["n_const"], p["reverse"]
    carries, consts, xs = ins[:nc], ins[nc:nc + na], ins[nc + na:]
    ny = len(body.cod) - nc
    hist_outs = b.emit(SCAN, carries + consts + xs, body=_with_history(body, nc), length=k, n_carry=nc,
                       n_const=na, reverse=rev)
    history = hist_outs[nc + ny:]
    zeros = [P.zeros_like(b, a) for a in consts]
    back = b.emit(SCAN, list(douts[:nc]) + zeros + consts + history + xs + list(douts[nc:]),
                  body=_reverse_body(body, nc, na), length=k, n_carry=nc + na, n_const=na, reverse=not rev)
    return back[:nc] + back[nc:nc + na] + back[nc + na:]


#: ``scan(carries, consts, xs; body, length, n_carry, n_const, reverse)``: run ``body`` ``length``
#: times on the carries, with shared ``consts`` and one slice of each ``xs`` per step; returns
#: the last carries and the per-step outputs stacked on a new first axis (``lax.scan``).
SCAN = P.define("scan", _scan_rule, _scan_rev)


def _params_as_inputs(term: Term) -> Term:
    b = Builder()
    ins = [b.input(t) for t in term.dom]
    ps = [b.input(s.type) for s in term.params]
    outs = b.inline(term, ins, params=dict(zip(term.param_wires, ps)))
    return b.build(ins + ps, outs, name=term.name)


def loop(body: Term, length: int, n_carry: int | None = None) -> Term:
    """``body`` applied ``length`` times: ``body: (carries, shared) -> carries``.

    The first ``n_carry`` inputs (all of them by default) are carried from one
    step to the next; the rest are shared by every step, as are ``body``'s
    parameters (they stay parameters of the loop). The loop's outputs are the
    last carries.
    """
    if length < 1:
        raise ValueError(f"loop length must be at least 1, got {length}")
    nc = len(body.cod) if n_carry is None else n_carry
    if list(body.cod) != list(body.dom[:nc]):
        raise CompositionError(f"loop: {body.name} returns {body.cod} but its first {nc} inputs are "
                               f"{body.dom[:nc]}; a loop body must return what it carries")
    free = _params_as_inputs(body)
    b = Builder()
    pw = [b.redeclare(s) for s in body.params]
    ins = [b.input(t) for t in body.dom]
    outs = b.emit(SCAN, ins + pw, body=free, length=int(length), n_carry=nc, n_const=len(ins) - nc + len(pw),
                  reverse=False)
    return b.build(ins, outs, name=f"loop({body.name}, {length})")


def scan_term(body: Term, length: int, n_carry: int, n_const: int, reverse: bool = False) -> Term:
    """A term holding one ``scan`` box (per-step inputs and outputs stacked on a leading axis)."""
    b = Builder()
    ins = [b.input(t) for t in body.dom[:n_carry + n_const]]
    xs = [b.input(_stacked(t, length)) for t in body.dom[n_carry + n_const:]]
    outs = b.emit(SCAN, ins + xs, body=body, length=int(length), n_carry=n_carry, n_const=n_const, reverse=reverse)
    return b.build(ins + xs, outs, name=f"scan({body.name}, {length})")
