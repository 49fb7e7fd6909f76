"""The passes that rewrite terms: each finds what it rewrites by a role, never by a name.

A pass reads a term's boxes and writes a new term (or, for a step being
assembled, new boxes into its builder). What a pass looks for is carried by the
boxes themselves, never read from a display name: a layer named ``dropout`` by
its user is an ordinary layer, and a dropout layer renamed ``regulariser`` is
still switched off in inference mode.

* :func:`without_training_only`: inference mode; layers whose boxes carry the
  role :data:`~paralens.terms.TRAINING_ONLY` (dropout) become the identity.
* :func:`recomputed`, with the residual policies (:func:`residual_policy`,
  :class:`Segments`): which forward boxes ``R`` recomputes in the backward pass,
  by layer instance.
* :func:`fuse_updates`: the optimizer's boxes moved into the backward pass, each
  parameter's update right after its cotangent is complete.
* :func:`retyped`: a term at another floating-point dtype (mixed precision).

>>> import paralens as pl
>>> model = pl.nn.dense(3, 3) >> pl.nn.relu()
>>> [e.role for e in model.eqns]
[None, None, None]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from . import prims as P
from .prims import KEY
from .terms import TRAINING_ONLY, Builder, Eqn, Term
from .types import ArrayType, printable

__all__ = ["without_training_only", "fuse_updates", "recomputed", "residual_policy", "Segments", "POLICIES",
           "retyped"]


# --------------------------------------------------------------------------- inference mode

def without_training_only(model: Term) -> Term:
    """``model`` with every layer whose boxes have the role :data:`~paralens.terms.TRAINING_ONLY`
    made the identity on its data (its key passes through), then the random key dropped: the
    rewrite :func:`paralens.nn.inference_mode` is. A layer is found by its boxes' role, never
    by its name; its instance (``layer``) groups its boxes."""
    if not isinstance(model, Term) or len(model.dom) < 2 or model.dom[-1] != KEY or len(model.cod) < 2 \
            or model.cod[-1] != KEY:
        got = f"{model.dom} -> {model.cod}" if isinstance(model, Term) else type(model).__name__
        raise TypeError(f"inference_mode takes a keyed model (x..., key) -> (y..., key'), got {got}")
    eqns = model.eqns
    off = [e.role == TRAINING_ONLY for e in eqns]
    dropped = {(e.layer, e.group) for e, o in zip(eqns, off) if o}
    same: dict[int, int] = {}  # an output wire of a dropped layer -> the input wire it passes on
    for inst in dropped:
        mine = [o and (e.layer, e.group) == inst for e, o in zip(eqns, off)]
        made = {w for e, m in zip(eqns, mine) if m for w in e.outs}
        read = list(dict.fromkeys(w for e, m in zip(eqns, mine) if m for w in e.ins if w not in made))
        xs = [w for w in read if model.wires[w] != KEY]
        keys = [w for w in read if model.wires[w] == KEY]
        outside = {w for e, m in zip(eqns, mine) if not m for w in e.ins} | set(model.outputs)
        for w in (w for w in made if w in outside):
            source = keys if model.wires[w] == KEY else xs
            if len(source) != 1:
                raise ValueError(f"inference_mode: the training-only layer {printable(str(inst[0]), 60)} does "
                                 "not read one array and one key")
            same[w] = source[0]

    def origin(w: int) -> int:
        while w in same:
            w = same[w]
        return w
    b = Builder()
    env = {w: b.redeclare(spec) for spec, w in zip(model.params, model.param_wires)}
    key = model.inputs[-1]
    env.update({w: b.input(model.wires[w]) for w in model.inputs[:-1]})
    for e, o in zip(eqns, off):
        if o:
            continue
        ins = [origin(w) for w in e.ins]
        if key in ins:
            raise ValueError(f"inference_mode: the {e.prim.name} box reads the random key; only training-only "
                             "layers (dropout) may")
        outs = [b.new_wire(model.wires[w]) for w in e.outs]
        env.update(zip(e.outs, outs))
        b.eqns.append(e.replace(ins=tuple(env[w] for w in ins), outs=tuple(outs)))
    outs = [origin(w) for w in model.outputs[:-1]]
    if key in outs:
        raise ValueError("inference_mode: the model returns its key where it should return data")
    in_sig, out_sig = model.in_sig[0], model.out_sig
    return b.build([env[w] for w in model.inputs[:-1]], [env[w] for w in outs],
                   in_sig=(None if len(model.dom) == 2 else in_sig[:-1],) if isinstance(in_sig, tuple) else None,
                   out_sig=None if len(model.cod) == 2 else (out_sig[:-1] if isinstance(out_sig, tuple) else None),
                   name=f"inference({model.name})")


# --------------------------------------------------------------------------- recomputation

class Segments:
    """Residual policy: recompute everything, storing only the inputs of every ``every``-th
    layer instance (``every=None``: ``ceil(sqrt(n))`` of the term's ``n`` layer instances).

    The backward pass reaches a segment, re-runs its ``every`` layers forward from the
    stored input, and reads what that replay made: one extra forward pass in all, as with
    ``"recompute"``, but ``n / every`` stored inputs plus one segment's insides instead of
    ``n`` stored inputs plus one layer's (Chen et al. 2016, "Training deep nets with
    sublinear memory cost"). Best when a layer's insides are about the size of its input;
    ``"recompute"`` (``Segments(1)``) when they are much larger (attention scores).

    Args:
        every: layer instances per segment, a positive int; ``None``: ``ceil(sqrt(n))`` for a term of
            ``n`` layer instances (:meth:`~paralens.Segments.size`).

    Raises:
        ValueError: ``every`` is neither ``None`` nor a positive int.

    >>> import paralens as pl
    >>> blocks = pl.nn.dense(4, 4) >> pl.nn.dense(4, 4) >> pl.nn.dense(4, 4) >> pl.nn.dense(4, 4)
    >>> batched = lambda policy: sum(r.batched for r in pl.lens(blocks, residuals=policy).residuals)
    >>> batched("store"), batched("recompute"), batched(pl.Segments(2)), batched("segments")
    (4, 4, 2, 2)
    """

    def __init__(self, every: int | None = None):
        if every is not None and (isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1):
            raise ValueError(f"Segments(every={every!r}): expected a positive int or None (sqrt of the layer count)")
        self.every = None if every is None else int(every)

    def __call__(self, eqn: Eqn) -> bool:
        return False  # nothing inside a segment is stored

    def size(self, n_layers: int) -> int:
        """Layer instances per segment for a term with ``n_layers`` of them.

        Args:
            n_layers: the number of layer instances of the term.

        Returns:
            ``every`` where it was given, else ``ceil(sqrt(n_layers))`` (at least 1).
        """
        return self.every or max(1, math.isqrt(max(n_layers - 1, 0)) + 1)

    def __repr__(self) -> str:
        return f"Segments({self.every})" if self.every else "Segments()"


#: the named residual policies: which boxes' outputs the backward pass reads as stored
POLICIES = {"store": lambda e: True, "recompute": lambda e: False, "matmuls": lambda e: e.prim is P.EINSUM,
            "segments": Segments()}


def residual_policy(residuals) -> Callable[[Eqn], bool] | None:
    """``residuals`` as ``store(eqn) -> bool`` (``None`` when everything is stored).

    ``"store"`` keeps every residual, ``"recompute"`` none inside a layer (each layer's
    backward re-runs its forward from the layer's stored input), ``"segments"`` none
    inside a segment of ``ceil(sqrt(n))`` layers (:class:`Segments`), ``"matmuls"`` only
    einsum outputs; a callable ``store(eqn)`` decides box by box; a dict
    ``{layer name: policy}`` decides per layer (others are stored).
    """
    if residuals is None or residuals == "store":
        return None
    if isinstance(residuals, str):
        if residuals not in POLICIES:
            raise ValueError(f"residuals={residuals!r}: expected one of {sorted(POLICIES)}, a dict "
                             "{layer name: policy} or a function store(eqn) -> bool")
        return POLICIES[residuals]
    if isinstance(residuals, dict):
        by_layer = {k: residual_policy(v) or POLICIES["store"] for k, v in residuals.items()}
        if any(isinstance(v, Segments) for v in by_layer.values()):
            raise ValueError("segments span layers: pass residuals=\"segments\" or Segments(k) for the whole term")
        return lambda e: e.layer is None or by_layer.get(e.layer[0], POLICIES["store"])(e)
    if callable(residuals):
        return residuals
    raise TypeError(f"residuals must be a policy name, a dict or a function, got {type(residuals).__name__}")


def recomputed(f: Term, store) -> tuple[dict, dict]:
    """The boxes whose outputs the backward pass recomputes, by checkpoint (forward order), and
    each layer instance's checkpoint: the layer itself, or its segment under :class:`Segments`.

    A wire is stored when its box's policy says so, when no layer holds its box,
    when it is an output, or when it crosses from one checkpoint to another: a
    checkpoint's backward recomputes only its own insides."""
    instances = list(dict.fromkeys(e.layer for e in f.eqns if e.layer is not None))
    k = store.size(len(instances)) if isinstance(store, Segments) else 1
    key = {inst: instances[i - i % k] for i, inst in enumerate(instances)}
    stored = set(f.outputs)
    producer = {}
    for i, e in enumerate(f.eqns):
        for w in e.outs:
            producer[w] = i
        if e.layer is None or e.prim.optic is not None or store(e):
            stored.update(e.outs)
    for e in f.eqns:
        for w in e.ins:
            j = producer.get(w)
            if j is not None and key.get(f.eqns[j].layer) != key.get(e.layer):
                stored.add(w)
    out: dict[tuple, list[int]] = {}
    for i, e in enumerate(f.eqns):
        if not stored.issuperset(e.outs):
            out.setdefault(key[e.layer], []).append(i)
    return out, key


# --------------------------------------------------------------------------- fused updates

def fuse_updates(b: Builder, put: int, grads: list[int], outputs: list[int]) -> list[int]:
    """Move the optimizer's boxes ``b.eqns[put:]`` into the backward pass before them: the
    boxes of each parameter's update right after the box that completes its cotangent
    ``grads[k]``, followed by an optimization barrier on the update's ``outputs`` and the
    backward pass's live wires (the cotangents it goes on with), so that no compiler can
    delay the update to the end and keep every gradient alive. Return ``outputs`` renamed
    to the barrier's outputs.

    Raises ``ValueError`` when a box of the optimizer reads two parameters' cotangents
    (global-norm clipping): that update cannot run before the backward pass ends."""
    head, tail = b.eqns[:put], b.eqns[put:]
    made_at = {w: i for i, e in enumerate(head) for w in e.outs}
    which = {g: k for k, g in enumerate(grads)}
    reads: dict[int, frozenset] = {}  # a put box's output wire -> the cotangents it depends on
    part = []  # the cotangent each put box depends on (None: none, it can run any time)
    for e in tail:
        deps = frozenset().union(*(reads.get(w, frozenset({which[w]} if w in which else ())) for w in e.ins))
        if len(deps) > 1:
            raise ValueError(f"fuse_optimizer: the optimizer's {e.prim.name} box reads the cotangents of "
                             f"{len(deps)} parameters (global-norm clipping?); it cannot run inside the "
                             "backward pass")
        reads.update(dict.fromkeys(e.outs, deps))
        part.append(next(iter(deps)) if deps else None)
    # each update goes right after its cotangent's last box; the free boxes (step counts,
    # bias corrections) before the first update
    at = {k: made_at.get(g, -1) for k, g in enumerate(grads)}
    slots: dict[int, list[Eqn]] = {}
    for e, k in zip(tail, part):
        if k is not None:
            slots.setdefault(at[k], []).append(e)
    free = [e for e, k in zip(tail, part) if k is None]
    final = set(outputs)
    last_read = {w: i for i, e in enumerate(head) for w in e.ins}
    rename: dict[int, int] = {}
    live: dict[int, None] = {}  # backward wires made so far and read later (ordered)

    def renamed(e: Eqn) -> Eqn:
        if rename.keys().isdisjoint(e.ins):
            return e
        return e.replace(ins=tuple(rename.get(w, w) for w in e.ins))

    def place(group: list[Eqn]):
        order.extend(renamed(f) for f in free + group)
        free.clear()
        done = [w for f in group for w in f.outs if w in final]
        held = done + list(live)
        outs = tuple(b.new_wire(b.type_of(rename.get(w, w))) for w in held)
        order.append(Eqn(P.OPT_BARRIER, (), tuple(rename.get(w, w) for w in held), outs, ("optimizer",), None, True))
        rename.update(zip(held, outs))

    order: list[Eqn] = []
    if -1 in slots:
        place(slots[-1])
    for i, e in enumerate(head):
        order.append(renamed(e))
        for w in e.ins:
            if last_read[w] == i:
                live.pop(w, None)
        if e.backward:
            live.update((w, None) for w in e.outs if last_read.get(w, -1) > i)
        if i in slots:
            place(slots[i])
    order.extend(renamed(f) for f in free)
    b.eqns[:] = order
    return [rename.get(w, w) for w in outputs]


# --------------------------------------------------------------------------- mixed precision

def retyped(term: Term, src: str, dst: str) -> Term:
    """``term`` rebuilt box by box with every ``src`` wire (and every ``src`` in a box's attributes:
    constants, zeros, casts, a scan's body) made ``dst``: what :func:`~paralens.astype` does.

    Args:
        term: the term.
        src: the floating-point dtype to replace.
        dst: the floating-point dtype to put in its place.

    Returns:
        The retyped term, with the same parameter names.

    Raises:
        TypeError: the term holds an opaque box (``from_optax``), whose dtype cannot change, or a
            box's type rule refuses the new dtype.
    """
    def ty(t: ArrayType) -> ArrayType:
        return ArrayType(t.shape, dst, batched=t.batched) if t.dtype == src else t

    def param(v):
        if isinstance(v, ArrayType):
            return ty(v)
        if isinstance(v, Term):
            return retyped(v, src, dst)
        if isinstance(v, tuple):
            return tuple(param(u) for u in v)
        return dst if v == src else v

    b = Builder()
    env = {}
    for w, spec in zip(term.param_wires, term.params):
        env[w] = b.param(spec.layer, spec.slot, spec.local, ty(spec.type), spec.init, spec.hyper, spec.axes)
    for w in term.inputs:
        env[w] = b.input(ty(term.wires[w]))
    for e in term.eqns:
        if e.prim is P.FOREIGN:
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
