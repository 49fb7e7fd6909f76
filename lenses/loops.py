"""Iteration as a term constructor: ``scan`` and ``loop``.

``loop(body, K)`` applies ``body`` K times to its carried wires. It is one box
(a ``scan`` holding the body as a term), so a term with a 1000-step loop is as
small as one with a 10-step loop, and JAX compiles it to one ``lax.scan``.

Its reverse derivative is the reverse loop (maths §8.2), built from the
body's lens: ``R`` runs the forward scan once, with the body's forward part,
which also stacks the body's residuals step by step (a residual that is a
shared input is kept once, not stacked); then a scan backwards over them runs
the body's reverse part at each step, summing the cotangents of the shared
inputs that need one. The body's forward runs once per step. Both are scans
again, so ``R`` applies to them too.

>>> import paralens as pl
>>> @pl.para
... def halve(x: pl.Array[2]):
...     return 0.5 * x
>>> pl.loop(halve, 1000).n_boxes
1
"""

from __future__ import annotations

from . import prims as P
from .optics import lens
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


def _scan_rev(p, x, y, dy):
    raise AssertionError("R reverses a scan through SCAN.optic, which keeps the body's residuals")


#: ``scan(carries, consts, xs; body, length, n_carry, n_const, reverse)``: run ``body`` ``length``
#: times on the carries, with shared ``consts`` and one slice of each ``xs`` per step; returns
#: the last carries and the per-step outputs stacked on a new first axis (``lax.scan``).
SCAN = P.define("scan", _scan_rule, _scan_rev)


def _scan_forward(b, p, ins):
    """``R``'s copy of a scan: the body's lens forward part, which also returns the body's
    residuals, stacked per step; the residuals that are shared inputs are not stacked."""
    body, k, nc, na = p["body"], p["length"], p["n_carry"], p["n_const"]
    optic = lens(body)
    fwd = optic.fwd
    n_out = len(body.cod)
    position = {w: i for i, w in enumerate(fwd.inputs)}
    # each residual: ("const", j) for shared input j, ("x", j) for per-step input j (the loop
    # has them stacked already), ("step", r) for residual r, stacked by the forward scan
    where = []
    stacked = []
    for w in fwd.outputs[n_out:]:
        i = position.get(w)
        if i is not None and nc <= i < nc + na:
            where.append(("const", i - nc))
        elif i is not None and i >= nc + na:
            where.append(("x", i - nc - na))
        else:
            where.append(("step", len(stacked)))
            stacked.append(w)
    fb = Builder()
    fb.wires, fb.params, fb.param_wires, fb.eqns = list(fwd.wires), [], [], list(fwd.eqns)
    body_f = fb.build(list(fwd.inputs), list(fwd.outputs[:n_out]) + stacked, name=f"fwd({body.name})")
    outs = b.emit(SCAN, ins, body=body_f, length=k, n_carry=nc, n_const=na, reverse=p["reverse"])
    return outs[:len(outs) - len(stacked)], (optic, where, outs[len(outs) - len(stacked):])


def _scan_reverse(b, p, ins, outs, kept, douts, needed):
    """The reverse scan over the stored residuals: the body's lens reverse part at each step,
    the shared inputs' cotangents summed (only those of inputs that need one)."""
    body, k, nc, na, rev = p["body"], p["length"], p["n_carry"], p["n_const"], p["reverse"]
    optic, where, stacked = kept
    consts = ins[nc:nc + na]
    wanted = [j for j in range(na) if needed[nc + j]]
    carry_t, const_t = list(body.dom[:nc]), list(body.dom[nc:nc + na])
    x_t, y_t = list(body.dom[nc + na:]), list(body.cod[nc:])
    rb = Builder()
    dc = [rb.input(t) for t in carry_t]
    acc = [rb.input(const_t[j]) for j in wanted]
    a = [rb.input(t) for t in const_t]
    res_k = [rb.input(b.type_of(w).with_shape(b.type_of(w).shape[1:])) for w in stacked]
    x_k = [rb.input(t) for t in x_t]
    dy_k = [rb.input(t) for t in y_t]
    residuals = [{"const": a, "x": x_k, "step": res_k}[kind][i] for kind, i in where]
    d = rb.inline(optic.rev, residuals + dc + dy_k)
    d_prev, da_k, dx_k = d[:nc], d[nc:nc + na], d[nc + na:]
    acc2 = [P.add(rb, s, da_k[j]) for s, j in zip(acc, wanted)]
    rev_body = rb.build(dc + acc + a + res_k + x_k + dy_k, d_prev + acc2 + dx_k, name=f"rev({body.name})")
    zeros = [P.zeros_like(b, consts[j]) for j in wanted]
    xs = ins[nc + na:]
    back = b.emit(SCAN, list(douts[:nc]) + zeros + list(consts) + list(stacked) + list(xs) + list(douts[nc:]),
                  body=rev_body, length=k, n_carry=nc + len(wanted), n_const=na, reverse=not rev)
    d_const = dict(zip(wanted, back[nc:nc + len(wanted)]))
    return back[:nc] + [d_const.get(j) for j in range(na)] + back[nc + len(wanted):]


SCAN.optic = (_scan_forward, _scan_reverse)


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

    Args:
        body: the step: a term whose outputs have the types of its first ``n_carry`` inputs.
        length: the number of steps, at least 1.
        n_carry: how many of ``body``'s inputs, from the first, are carried; they must be exactly
            its outputs. ``None``: as many as ``body`` has outputs.

    Returns:
        A term of one ``scan`` box, named ``loop(<body's name>, <length>)``: ``body``'s inputs ->
        the last carries, with ``body``'s parameters.

    Raises:
        ValueError: ``length`` is less than 1.
        CompositionError: ``body``'s outputs are not of the types of its first ``n_carry`` inputs.
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
    """A term holding one ``scan`` box (per-step inputs and outputs stacked on a leading axis).

    ``body`` takes ``(carries, consts, x)`` and returns ``(carries, y)``; the term runs it ``length``
    times, as ``jax.lax.scan``: the carries pass from step to step, every step reads the same
    ``consts``, and step ``k`` reads slice ``k`` of each per-step input and writes slice ``k`` of each
    per-step output.

    Args:
        body: the step: a term without parameters (:func:`~paralens.loop` makes a body's parameters
            inputs).
        length: the number of steps, the size of the stacked axis.
        n_carry: how many of ``body``'s first inputs are carries; its first ``n_carry`` outputs are
            their next values, of the same types.
        n_const: how many inputs after the carries every step reads whole; the remaining inputs
            are per-step.
        reverse: run the steps from the last slice to the first (each output slice stays at its
            step's position).

    Returns:
        A term ``(carries, consts, xs) -> (last carries, ys)``, named ``scan(<body's name>, <length>)``:
        each of ``xs`` and ``ys`` has the per-example shape of ``body``'s per-step wire with
        ``length`` in front (after the batch axis of a batched wire, when evaluated).

    Raises:
        TypeError: ``body`` has parameters, or its first ``n_carry`` outputs are not of the types of
            its carries.
    """
    b = Builder()
    ins = [b.input(t) for t in body.dom[:n_carry + n_const]]
    xs = [b.input(_stacked(t, length)) for t in body.dom[n_carry + n_const:]]
    outs = b.emit(SCAN, ins + xs, body=body, length=int(length), n_carry=n_carry, n_const=n_const, reverse=reverse)
    return b.build(ins + xs, outs, name=f"scan({body.name}, {length})")
