"""The reverse-derivative functor ``R``, the forward derivative ``D`` derived from it, and optics.

``R`` works on syntax by structural recursion over a term's boxes (maths
§1.5, §2.3): copy the forward boxes once, then walk them backwards, asking each
primitive for its reverse derivative *as a term* and adding up the cotangents
of wires that fan out (the reverse derivative of copy). The forward wires the
backward boxes read are the optic's residuals; nothing of the forward pass is
recomputed, so ``R(f)`` has a number of boxes linear in that of ``f``.

For a term ``f`` with parameters ``P``, input ``x`` and output ``y``:

* ``R(f)`` takes ``(params, x, dy)`` and returns ``(dparams, dx)``;
* ``D(f)`` takes ``(params, x, dparams, dx)`` and returns ``dy``; it is
  ``pi_1 R(R(f))((x, 0), (dparams, dx))`` (maths §1.4), not a second set of rules;
* ``R(R(f))`` gives second derivatives: at ``((x, dy), (0, v))`` its ``dx``
  output is the Hessian-vector product of ``dy . f`` along ``v``.

Splitting ``R(f)`` at its residuals gives the lens of ``f`` (:func:`paralens.optics`).

>>> import paralens as pl
>>> f = pl.nn.dense(3, 2) >> pl.nn.tanh()
>>> pl.R(f).cod == pl.R(f).dom[:0] @ f.param_types['dense.W'] @ f.param_types['dense.b'] @ f.dom
True
"""

from __future__ import annotations

from typing import NamedTuple

from . import prims as P
from .passes import recomputed, residual_policy
from .terms import Builder, DictSig, Eqn, Term
from .wires import Wire

__all__ = ["R", "D", "value_and_R", "forward_gradient", "Reverse", "reverse"]


def _arg_sig(term: Term):
    """The calling convention of a term's inputs taken as one value."""
    return term.in_sig[0] if len(term.in_sig) == 1 else tuple(term.in_sig)


def _d_names(f: Term) -> tuple:
    """Argument names of ``R(f)``: ``(x, dy) -> (d<param>, dx)`` after ``f``'s own ``(x) -> (y)``."""
    ins, outs = f.arg_names or (("x",), ("y",))
    x, y = (ins[0] if len(ins) == 1 else ins), (outs[0] if len(outs) == 1 else outs)

    def d(name):
        return tuple(d(n) for n in name) if isinstance(name, tuple) else f"d{name}"
    return (x, d(y)), ("d{}", d(x))


def _fit(b: Builder, d: int, target: int) -> int:
    """Bring a cotangent to its wire's type: undo implicit broadcasts and dtype promotion.

    An operand broadcast along leading axes (a scalar, a bias) or stretched along
    axes of size 1 receives the sum of its cotangent over them; an unbatched wire
    (a parameter) used by every example receives
    the sum over the batch (the reverse derivative of copying it B times).
    """
    td, tt = b.type_of(d), b.type_of(target)
    if td.shape != tt.shape:
        lead = td.ndim - tt.ndim
        stretched = [lead + i for i, n in enumerate(tt.shape) if n == 1 and td.shape[lead + i] != 1]
        if lead < 0 or any(td.shape[lead + i] not in (n, 1) and n != 1 for i, n in enumerate(tt.shape)):
            raise AssertionError(f"cotangent of shape {td.shape} for a wire of shape {tt.shape}")
        d = P.reduce_sum(b, d, list(range(lead)) + stretched)
        if stretched:  # the summed size-1 axes come back
            d = P.reshape(b, d, tt.shape)
    if td.batched and not tt.batched:
        d = b.emit1(P.BATCH_SUM, d)
    elif tt.batched and not td.batched:
        d = b.emit1(P.BATCH_BROADCAST, d, target)
    if td.dtype != tt.dtype and tt.dtype in P.FLOATS:  # a promoted cotangent goes back to its wire's dtype
        d = b.emit1(P.CAST, d, dtype=tt.dtype)
    return d


class Reverse(NamedTuple):
    """``R(f)`` being built: its builder, and the wires the lens split needs."""

    builder: Builder
    n_forward: int          #: the first ``n_forward`` boxes are the forward part
    param_wires: list[int]  #: ``f``'s parameters
    inputs: list[int]       #: ``f``'s inputs ``x``
    outputs: list[int]      #: ``f``'s outputs ``y`` (made by the forward part)
    cotangents: list[int]   #: the inputs ``dy``
    dparams: list[int]      #: the parameters' cotangents
    dinputs: list[int]      #: the inputs' cotangents ``dx``


def reverse(f: Term, residuals=None) -> Reverse:
    """Build ``R(f)`` in a fresh builder (see :class:`Reverse`). ``residuals``: the policy
    (:func:`~paralens.passes.residual_policy`) for what the backward pass reads stored and what it recomputes."""
    store = residual_policy(residuals)
    recompute, checkpoint = recomputed(f, store) if store is not None else ({}, {})
    b = Builder()
    env: dict[int, int] = {}
    for spec, w in zip(f.params, f.param_wires):
        env[w] = b.redeclare(spec)
    xs = [b.input(t) for t in f.dom]
    env.update(zip(f.inputs, xs))
    varying = set(env.values()) | set(xs)  # wires that depend on a parameter or an input
    kept: dict[int, object] = {}  # eqn index -> what its optic forward kept for its reverse
    for i, e in enumerate(f.eqns):  # forward part: each box once
        ins = tuple(env[w] for w in e.ins)
        if e.prim.optic is not None:  # a box that keeps its own residuals (a scan)
            b.group, b.layer = e.group, e.layer
            outs, kept[i] = e.prim.optic[0](b, e.kwargs, list(ins))
            b.group, b.layer = (), None
            env.update(zip(e.outs, outs))
        else:
            outs = []
            for w in e.outs:
                env[w] = b.new_wire(f.wires[w])
                outs.append(env[w])
            b.eqns.append(Eqn(e.prim, e.attrs, ins, tuple(outs), e.group, e.layer, False, e.role))
        if varying.intersection(ins):
            varying.update(outs)
    n_fwd = len(b.eqns)
    ys = [env[w] for w in f.outputs]
    dys = [b.input(t) for t in f.cod]

    cot: dict[int, int] = {}  # forward wire of b -> its accumulated cotangent

    def accumulate(w: int, d: int):
        d = _fit(b, d, w)
        cot[w] = P.add(b, cot[w], d) if w in cot else d

    b.backward = True
    for y, dy in zip(ys, dys):
        accumulate(y, dy)
    seen = {}  # the backward pass's view of the forward wires: recomputed ones where the policy says
    for i in reversed(range(len(f.eqns))):
        e = f.eqns[i]
        outs = [env[w] for w in e.outs]
        if not any(o in cot for o in outs):
            continue  # no cotangent reaches this box
        b.group, b.layer = e.group, e.layer  # a box's backward boxes belong where it does
        if checkpoint.get(e.layer) in recompute:
            _recompute(b, f, recompute.pop(checkpoint[e.layer]), env, seen, [cot[o] for o in outs if o in cot][0])
        r_outs = [seen.get(w, env[w]) for w in e.outs]
        douts = [cot[o] if o in cot else P.zeros_like(b, r) for o, r in zip(outs, r_outs)]
        ins = [env[w] for w in e.ins]
        r_ins = [seen.get(w, env[w]) for w in e.ins]
        if i in kept:
            dins = e.prim.optic[1](b, e.kwargs, r_ins, r_outs, kept[i], douts, [w in varying for w in ins])
        else:
            dins = [None if d is None else d.id for d in e.prim.rev(e.kwargs, _wires(b, r_ins), _wires(b, r_outs),
                                                                       _wires(b, douts))]
        for w, d in zip(ins, dins):
            if d is not None:
                accumulate(w, d)
    b.group, b.layer = (), None

    def result(w):
        return cot[w] if w in cot else P.zeros_like(b, w)

    pw = [env[w] for w in f.param_wires]
    return Reverse(b, n_fwd, pw, xs, ys, dys, [result(w) for w in pw], [result(w) for w in xs])


def _wires(b: Builder, ws) -> list[Wire]:
    return [Wire(b, w) for w in ws]


def _recompute(b: Builder, f: Term, boxes: list[int], env: dict, seen: dict, after: int):
    """Emit, in the backward pass, the forward boxes ``boxes`` of one checkpoint (a layer
    instance, or a segment of them) again, from its stored wires passed with the cotangent
    ``after`` through an optimization barrier: the compiler can neither merge the copies with
    the forward pass nor run them before the backward pass reaches the layer."""
    made = {w for i in boxes for w in f.eqns[i].outs}
    reads = list(dict.fromkeys(w for i in boxes for w in f.eqns[i].ins if w not in made))
    barred = b.emit(P.OPT_BARRIER, [seen.get(w, env[w]) for w in reads] + [after])
    local = dict(zip(reads, barred))
    for i in boxes:
        e = f.eqns[i]
        outs = b.emit(e.prim, [local[w] for w in e.ins], **e.kwargs)
        local.update(zip(e.outs, outs))
    seen.update({w: local[w] for w in made})


def R(f: Term, residuals=None) -> Term:
    """The reverse derivative of ``f``: ``(params, x, dy) -> (dparams, dx)``.

    ``dparams`` is a dict keyed like ``f``'s parameters. ``R`` is a functor:
    ``R(f >> g)`` computes what the lens composite of ``R(f)`` and ``R(g)`` does.

    ``residuals`` chooses what the backward pass reads stored and what it recomputes
    (:func:`~paralens.passes.residual_policy`: ``"store"``, ``"recompute"``, ``"segments"``,
    ``"matmuls"``, per layer, or a function of the box); every choice gives the same numbers.

    Args:
        f: the term to differentiate.
        residuals: the residual policy (see above); ``None`` stores every residual.

    Returns:
        The term ``R(f)``, named ``R(<f's name>)``, with ``f``'s parameters: it takes ``(x, dy)``
        (``dy`` shaped like ``f``'s output) and returns ``(dparams, dx)``.

    Raises:
        TypeError: ``f`` is not a :class:`~paralens.Term` (use :func:`~paralens.as_term` on a lens or
            a learner), or ``residuals`` is not a policy name, a dict or a function.
        ValueError: ``residuals`` names no known policy, or a dict of policies holds a segment policy.

    >>> import numpy as np, paralens as pl
    >>> from paralens.backends import numpy as pnp
    >>> f = pl.nn.dense(2, 1)
    >>> params = {"dense.W": np.ones((2, 1)), "dense.b": np.zeros(1)}
    >>> dparams, dx = pnp.compile(pl.R(f))(params, np.array([[1.0, 2.0]]), np.array([[1.0]]))
    >>> dparams["dense.W"].ravel().tolist(), dx.tolist()
    ([1.0, 2.0], [[1.0, 1.0]])
    """
    if not isinstance(f, Term):
        raise TypeError(f"R takes a Term, got {type(f).__name__}")
    r = reverse(f, residuals)
    x_sig, y_sig = _arg_sig(f), f.out_sig
    return r.builder.build(r.inputs + r.cotangents, r.dparams + r.dinputs, in_sig=(x_sig, y_sig),
                   out_sig=(DictSig(f.param_names), x_sig), name=f"R({f.name})", arg_names=_d_names(f))


def value_and_R(f: Term) -> Term:
    """``R(f)`` that also returns the forward value: ``(params, x, dy) -> (y, dparams, dx)``.

    The forward pass runs once and feeds both outputs (as ``jax.value_and_grad``).

    Args:
        f: the term to differentiate.

    Returns:
        The term, named ``value_and_R(<f's name>)``, with ``f``'s parameters: it takes ``(x, dy)`` and
        returns ``(y, dparams, dx)``, ``dparams`` a dict keyed like ``f``'s parameters.
    """
    r = reverse(f)
    x_sig = _arg_sig(f)
    (x, y), (dp, dx) = _d_names(f)
    return r.builder.build(r.inputs + r.cotangents, r.outputs + r.dparams + r.dinputs, in_sig=(x_sig, f.out_sig),
                   out_sig=(f.out_sig, DictSig(f.param_names), x_sig), name=f"value_and_R({f.name})",
                   arg_names=((x, y), (y[1:], dp, dx)))


def D(f: Term) -> Term:
    """The forward derivative ``(params, x, dparams, dx) -> dy`` (a Jacobian-vector product).

    Derived from ``R`` by the double-reverse identity
    ``D[f](x, u) = pi_1 R[R[f]]((x, 0), u)`` (maths §1.4).

    Args:
        f: the term to differentiate.

    Returns:
        The term ``D(f)``, named ``D(<f's name>)``, with ``f``'s parameters: it takes
        ``(x, dparams, dx)`` (``dparams`` a dict keyed like ``f``'s parameters, ``dx`` shaped like
        ``x``) and returns ``dy``, shaped like ``f``'s output.

    Raises:
        TypeError: ``f`` is not a :class:`~paralens.Term`.
    """
    rrf = R(R(f))
    b = Builder()
    pw = [b.redeclare(s) for s in f.params]
    xs = [b.input(t) for t in f.dom]
    dps = [b.input(t) for t in f.param_types.values()]
    dxs = [b.input(t) for t in f.dom]
    zero_dy = b.emit(P.ZEROS, xs, types=tuple(f.cod)) if len(f.cod) else []
    first = len(b.eqns)
    outs = b.inline(rrf, xs + zero_dy + dps + dxs, params=dict(zip(rrf.param_wires, pw)))
    # R's backward boxes, run twice, compute a forward derivative: D has no backward pass
    b.eqns[first:] = [e.replace(backward=False) if e.backward else e for e in b.eqns[first:]]
    dy = outs[len(outs) - len(f.cod):]
    x_sig = _arg_sig(f)
    (x, y), (dp, dx) = _d_names(f)
    return b.build(xs + dps + dxs, dy, in_sig=(x_sig, DictSig(f.param_names), x_sig),
                   out_sig=f.out_sig, name=f"D({f.name})", arg_names=((x, dp, dx), (y,)))


def forward_gradient(f: Term, wrt=None) -> Term:
    """A forward-gradient estimate of a scalar objective's parameter gradient (Baydin et al.,
    maths §9): ``(params; x, key) -> (grads, key')``.

    It draws a tangent ``v ~ N(0, I)`` for each parameter in ``wrt`` (by default
    the unbatched, non-hyper ones) with the random ``key``, takes one forward
    derivative ``d = D(f)(params, x; v, 0)`` and returns ``d * v``, whose mean over
    draws is the gradient. ``D`` here is ``R`` applied twice, so no forward-mode rule
    is written for any primitive.

    Args:
        f: a scalar objective: one unbatched output of shape ``()`` (a loss averaged over the batch).
        wrt: the names of the parameters whose gradient to estimate, as in ``f.param_names``;
            ``None``: every parameter that is neither a label nor a hyperparameter.

    Returns:
        A term taking ``(x, key)`` (``key`` a ``pl.prims.KEY`` wire) and returning ``(grads, key')``:
        ``grads`` a dict of the estimates keyed by the names in ``wrt``, ``key'`` the next random key.

    Raises:
        TypeError: ``f`` is not a scalar objective, or ``wrt`` is not a list of names (a bare string).
        KeyError: ``wrt`` names a parameter ``f`` does not have.

    >>> import numpy as np, paralens as pl
    >>> f = pl.nn.dense(3, 1) >> pl.losses.mse().at(pl.Array[1])
    >>> pl.forward_gradient(f).out_sig[0].keys    # (grads by name, the next key)
    ('dense.W', 'dense.b')
    """
    if len(f.cod) != 1 or f.cod[0].shape != () or f.cod[0].batched:
        raise TypeError(f"a forward gradient needs a scalar objective, {f.name} returns {f.cod}")
    names = f.param_names
    if wrt is None:
        wrt = [n for n, s in zip(names, f.params) if not s.type.batched and not s.hyper]
    elif isinstance(wrt, str) or not all(isinstance(n, str) for n in wrt):
        raise TypeError(f"forward_gradient: wrt is a list of parameter names (of {list(names)}), got {wrt!r}")
    unknown = sorted(set(wrt) - set(names))
    if unknown:
        raise KeyError(f"{f.name} has no parameters {unknown}; it has {list(names)}")
    d = D(f)
    b = Builder()
    pw = [b.redeclare(s) for s in f.params]
    xs = [b.input(t) for t in f.dom]
    key = key_in = b.input(P.KEY)
    tangents = {}
    for n, s in zip(names, f.params):
        if n in wrt:
            key, tangents[n] = b.emit(P.NORMAL, [key], shape=s.type.shape, dtype=s.type.dtype)
    dps = [tangents[n] if n in tangents else P.zeros_like(b, w) for n, w in zip(names, pw)]
    (dy,) = b.inline(d, xs + dps + [P.zeros_like(b, x) for x in xs], params=dict(zip(d.param_wires, pw)))
    grads = [P.mul(b, tangents[n], dy) for n in wrt]
    (x, _), _ = _d_names(f)
    return b.build(xs + [key_in], grads + [key], in_sig=(_arg_sig(f), None),
                   out_sig=(DictSig(tuple(wrt)), None), name=f"forward_gradient({f.name})",
                   arg_names=((x, "key"), ("d{}", "key'")))
