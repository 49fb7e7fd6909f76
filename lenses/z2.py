"""Boolean circuits on the same syntax: bits, gates, Z2 layers and reverse derivative ascent.

Over Z2 a wire is a bit (``dtype="bool"``), ``+`` is XOR and ``*`` is AND, and
``R`` gives formal partial derivatives (maths §1.6). The gates are ordinary
wire arithmetic: ``a + b`` (xor), ``a * b`` (and), ``a + 1`` (not). Run
circuits with ``paralens.backends.get("z2")``; the NumPy and JAX backends refuse
arithmetic on bool wires rather than take ``+`` for OR.

Reverse derivative ascent (Wilson and Zanasi, maths §4.5) is the same learner
assembly as gradient descent. The loss lens is the boolean error
``y + f(p, x)``. The learning-rate lens feeds that error back as the output's
cotangent. The optimizer lens flips the parameter bits that ``R`` selects:
``p <- p + R[f]((p, x), f(p, x) + y)``.

>>> import numpy as np, paralens as pl
>>> @pl.para
... def majority(x: pl.z2.Bits(3)):
...     a, b, c = pl.z2.bits_of(x)
...     return a * b + b * c + a * c
>>> pl.backends.get("z2").compile(majority)({}, np.array([[1, 1, 0], [1, 0, 0]], bool)).tolist()
[True, False]
"""

from __future__ import annotations

from . import wires as W
from .init import bits
from .learner import Learner
from .optics import Lens
from .optim import Leaf, Transform
from .terms import Builder, Poly, Term
from .tracer import term_on
from .types import ArrayType, Ty, as_ty
from .wires import Wire, tracing

__all__ = ["Bits", "Param", "xor", "and_", "not_", "bits_of", "dense", "truth_table", "boolean_error",
           "error_feedback", "rda", "rda_learner"]


def Bits(*shape) -> ArrayType:  # noqa: N802 - reads like pl.Array
    """The type of a per-example array of bits: ``Bits(4)`` is four bits.

    Args:
        *shape: the per-example shape, as positive ints (``Bits(2, 3)``) or as one tuple
            (``Bits((2, 3))``); none for a single bit.

    Returns:
        The batched :class:`~paralens.ArrayType` of that shape with dtype ``"bool"``.
    """
    return ArrayType(tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple) else tuple(shape), "bool")


def Param(*shape) -> ArrayType:  # noqa: N802
    """The type of a parameter of bits (no batch axis).

    Args:
        *shape: the parameter's shape, given as to :func:`Bits`.

    Returns:
        The unbatched :class:`~paralens.ArrayType` of that shape with dtype ``"bool"``.
    """
    return Bits(*shape).unbatched


def xor(a: Wire, b: Wire) -> Wire:
    """``a + b`` over Z2.

    Args:
        a: a wire of bits, inside a function traced by :func:`~paralens.para`.
        b: a wire of bits, combined with ``a`` elementwise.

    Returns:
        The wire of ``a`` XOR ``b``, made by one box named ``xor`` (numbered when repeated):
        what a collapsed drawing shows.
    """
    return _gate("xor", lambda u, v: u + v, a, b)


def and_(a: Wire, b: Wire) -> Wire:
    """``a * b`` over Z2.

    Args:
        a: a wire of bits, inside a function traced by :func:`~paralens.para`.
        b: a wire of bits, combined with ``a`` elementwise.

    Returns:
        The wire of ``a`` AND ``b``, made by one box named ``and`` (numbered when repeated):
        what a collapsed drawing shows.
    """
    return _gate("and", lambda u, v: u * v, a, b)


def not_(a: Wire) -> Wire:
    """``a + 1`` over Z2.

    Args:
        a: a wire of bits, inside a function traced by :func:`~paralens.para`.

    Returns:
        The wire of NOT ``a``, each bit flipped, made by one box named ``not`` (numbered when repeated).
    """
    return _gate("not", lambda u: u + 1, a)


def _gate(name: str, fn, *args) -> Wire:
    """``fn(*args)`` as one named layer, so that a collapsed drawing shows the gate by its name;
    a number among the arguments (``xor(a, 1)``) stays a number, as in ``a + 1``."""
    wires = [a for a in args if isinstance(a, Wire)]
    if not wires:
        return fn(*args)

    def on_wires(*ws):
        it = iter(ws)
        return fn(*(next(it) if isinstance(a, Wire) else a for a in args))
    return term_on([w.type for w in wires], on_wires, name)(*wires)


def bits_of(x: Wire) -> list[Wire]:
    """The bits of a vector wire, one wire each (a contraction with a one-hot constant each, in
    one layer named ``bits_of``: a collapsed drawing shows one box).

    Args:
        x: a wire of per-example shape ``(n,)`` (``Bits(n)``), inside a function traced by
            :func:`~paralens.para`.

    Returns:
        ``n`` scalar wires, bit ``k`` of ``x`` at index ``k``.
    """
    n = x.shape[-1]

    def split(v: Wire) -> list[Wire]:
        return [W.einsum("i,i->", v, W.constant([int(i == k) for i in range(n)], (n,), "bool", like=v))
                for k in range(n)]
    outs = term_on([x.type], split, "bits_of")(x)  # one layer, so a drawing shows it as one box, bits_of
    return list(outs) if isinstance(outs, tuple) else [outs]


def dense(n_in: int, n_out: int, *, bias: bool = True, init: tuple = bits(0.5)) -> Term:
    """A Z2-linear layer ``x @ W + b``: each output bit the parity of the selected input bits.

    Args:
        n_in: the number of input bits, a positive int.
        n_out: the number of output bits, a positive int.
        bias: give the layer the bias ``b`` (``Param(n_out)``, starting at zeros); ``False``
            makes it linear, ``x @ W``.
        init: the initialiser of ``W`` (``Param(n_in, n_out)``), a descriptor of
            :mod:`paralens.init`; the default sets each bit with probability 0.5.

    Returns:
        The term ``Bits(n_in) -> Bits(n_out)``, named ``z2.dense(n_in, n_out)``, with the
        parameters ``z2dense.W`` and (with ``bias``) ``z2dense.b``.
    """
    b = Builder()
    slot = b.new_layer("z2dense")
    x = b.input(Bits(n_in))
    w = b.param("z2dense", slot, "W", Param(n_in, n_out), init)
    bias_w = b.param("z2dense", slot, "b", Param(n_out), bits(0.0)) if bias else None
    b.layer = ("z2dense", slot)
    with tracing(b):
        out = W.einsum("i,io->o", Wire(b, x), Wire(b, w))
        if bias_w is not None:
            out = out + Wire(b, bias_w)
    return b.build([x], [out.id], name=f"z2.dense({n_in}, {n_out})")


def truth_table(n_in: int, n_out: int) -> Term:
    """A lookup table of output bits indexed by the input bits: ``T[index(x)]`` as the
    polynomial ``sum_j m_j(x) T[j]``, with ``m_j`` the minterms (exactly one is 1). The
    table starts at zero; reverse derivative ascent writes the row of each example it sees.

    Args:
        n_in: the number of input bits, a positive int; the table has ``2 ** n_in`` rows, row ``j`` for the
            input whose bits, most significant first, spell ``j``.
        n_out: the number of output bits (the table's columns), a positive int.

    Returns:
        The term ``Bits(n_in) -> Bits(n_out)``, named ``z2.truth_table(n_in, n_out)``, with the
        one parameter ``table.T`` of type ``Param(2 ** n_in, n_out)``.
    """
    rows = 2 ** n_in
    b = Builder()
    slot = b.new_layer("table")
    x = b.input(Bits(n_in))
    table = b.param("table", slot, "T", Param(rows, n_out), bits(0.0))
    b.layer = ("table", slot)
    with tracing(b):
        pattern = W.constant([[(j >> (n_in - 1 - i)) & 1 for i in range(n_in)] for j in range(rows)],
                             (rows, n_in), "bool", like=Wire(b, x))
        # factor i of minterm j: x_i where bit i of j is set, 1 + x_i where it is not
        factors = W.broadcast_to(Wire(b, x), (rows, n_in)) + pattern + 1
        minterm = None
        for i in range(n_in):
            one_hot = W.constant([int(k == i) for k in range(n_in)], (n_in,), "bool", like=factors)
            column = W.einsum("ji,i->j", factors, one_hot)
            minterm = column if minterm is None else minterm * column
        out = W.einsum("j,jk->k", minterm, Wire(b, table))
    return b.build([x], [out.id], name=f"z2.truth_table({n_in}, {n_out})")


def boolean_error() -> Poly:
    """The boolean error lens ``(label; prediction) -> label + prediction``: the bits that are
    wrong, per example (maths §4.2). Its reverse derivative copies the error's cotangent to both.

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at one bit type ``t`` it is ``t -> t``,
        named ``boolean_error(t)``, with the parameter ``error``: the label, of type ``t``.
        Typing it at a type that is not bits raises ``TypeError``.
    """
    def make(ty: Ty) -> Term:
        (t,) = ty
        if t.dtype != "bool":
            raise TypeError(f"the boolean error compares bits, got {t}")
        b = Builder()
        slot = b.new_layer("error")
        label = b.param("error", slot, "", t)
        b.layer = ("error", slot)
        x = b.input(t)
        with tracing(b):
            out = Wire(b, label) + Wire(b, x)
        return b.build([x], [out.id], name=f"boolean_error({t})")
    return Poly(make, "boolean_error")


def error_feedback(ty) -> Lens:
    """The learning-rate lens of reverse derivative ascent: a costate whose backward pass
    returns its forward input (the error bits) as the cotangent (maths §4.5).

    Args:
        ty: the type of the error: an :class:`~paralens.ArrayType` (``Bits(n)``), a
            :class:`~paralens.Ty` or a list of array types.

    Returns:
        The :class:`~paralens.Lens` ``ty -> Ty()`` named ``error feedback``, without parameters:
        its forward part keeps its inputs as residuals, its backward part returns them as ``dx``.
    """
    ty = as_ty(ty)
    b = Builder()
    xs = [b.input(t) for t in ty]
    fwd = b.build(xs, xs, name="keep the error")
    rb = Builder()
    res = [rb.input(t) for t in ty]
    rev = rb.build(res, res, name="feed the error back")
    return Lens(fwd, rev, len(ty), "error feedback")


def rda() -> Transform:
    """The optimizer lens of reverse derivative ascent: the update is the cotangent itself, so
    ``p' = p + dp`` flips the parameter bits ``R`` selects.

    Returns:
        The :class:`~paralens.optim.Transform` named ``rda``, without hyperparameters or state,
        whose update is the cotangent unchanged.
    """
    return Leaf("rda", update=lambda h, s, p, u: (s, u))


def rda_learner(model: Term, loss: Poly | Term | None = None) -> Learner:
    """Reverse derivative ascent on ``model``, assembled like any learner: model lens, boolean
    error lens, error feedback as the learning-rate lens, and :func:`rda` as the optimizer.

    Args:
        model: the circuit to learn, a term whose outputs are bits (a :func:`dense` layer, a
            :func:`truth_table`, or a ``@pl.para`` function over :func:`Bits`).
        loss: the loss lens; ``None`` takes :func:`boolean_error`. A polymorphic loss is typed
            at ``model.cod``, a term is used as it is.

    Returns:
        The :class:`~paralens.Learner` of ``model``, ``loss``, :func:`error_feedback` at the
        loss's output type as the learning rate, and :func:`rda` as the optimizer.
    """
    loss = loss or boolean_error()
    loss_term = loss.at(model.cod) if isinstance(loss, Poly) else loss
    return Learner(model, loss=loss_term, optimizer=rda(), learning_rate=error_feedback(loss_term.cod))
