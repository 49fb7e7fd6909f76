"""Lenses as values: the functor ``R : C -> Lens(C)`` and the optic composition rule.

``pl.lens(f)`` is ``f`` as a lens (maths §2.2-2.3), stored as an *optic*: a
forward part ``fwd: (params; x) -> (y, residuals)`` that runs ``f`` once and
keeps what the backward pass needs, and a reverse part
``rev: (residuals, dy) -> (dparams, dx)`` that reads them. Lenses compose with
``>>`` and ``@``: the residuals of the parts are carried side by side and
nothing is recomputed. A lens with parameters is a parametric lens
(maths §3.4): its parameter wires keep their names, and its reverse part
returns their cotangents; a loss is one whose parameter is the label.

Functoriality, ``lens(f >> g) == lens(f) >> lens(g)``, is the reverse chain
rule (RD.5); the tests check it against ``jax.vjp``.

>>> import numpy as np, paralens as pl
>>> model = pl.lens(pl.nn.dense(3, 2)) >> pl.lens(pl.nn.tanh().at(pl.Array[2]))
>>> model.dom, model.cod, model.param_names
(Ty(Array[3]), Ty(Array[2]), ('dense.W', 'dense.b'))
>>> run = pl.backends.get("numpy").compile(model)     # (params, x, dy) -> (y, dparams, dx)
>>> p = {"dense.W": np.ones((3, 2), np.float32), "dense.b": np.zeros(2, np.float32)}
>>> y, dp, dx = run(p, np.ones((1, 3), np.float32), np.ones((1, 2), np.float32))
>>> dx.shape, sorted(dp)
((1, 3), ['dense.W', 'dense.b'])
"""

from __future__ import annotations

from dataclasses import dataclass

from . import prims as P
from .derivative import reverse
from .terms import Builder, DictSig, Term, as_term, id, plain_sig, wiring
from .types import ArrayType, CompositionError, Ty, as_ty

__all__ = ["Lens", "lens", "costate"]


@dataclass(frozen=True, eq=False)
class Lens:
    """A (parametric) lens as an optic: ``fwd`` keeps residuals, ``rev`` reads them.

    ``fwd: (params; x) -> (y, residuals)`` and ``rev: (residuals, dy) -> (dparams, dx)``
    where ``residuals`` are the last ``n_residuals`` outputs of ``fwd`` and
    ``dparams`` follow ``fwd.params``. Build lenses with :func:`lens`,
    :meth:`Lens.id`, :func:`costate`, ``>>`` and ``@``.

    Attributes:
        fwd: the forward part ``(params; x) -> (y, residuals)``; its parameters are the lens's.
        rev: the reverse part ``(residuals, dy) -> (dparams, dx)``, with no parameters of its own.
        n_residuals: how many of ``fwd``'s last outputs are residuals rather than ``y``.
        name: the lens's name, shown in reprs and errors (the term's name for :func:`lens`).
    """

    fwd: Term
    rev: Term
    n_residuals: int
    name: str = "lens"

    # --- types
    @property
    def dom(self) -> Ty:
        return self.fwd.dom

    @property
    def cod(self) -> Ty:
        return self.fwd.cod[: len(self.fwd.cod) - self.n_residuals]

    @property
    def residuals(self) -> Ty:
        """The types of the wires carried from the forward to the reverse part."""
        return self.fwd.cod[len(self.cod):]

    @property
    def params(self):
        return self.fwd.params

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.fwd.param_names

    @property
    def param_types(self) -> dict[str, ArrayType]:
        return self.fwd.param_types

    def __repr__(self) -> str:
        ps = f", params={list(self.param_names)}" if self.params else ""
        return f"Lens({self.name}: {self.dom} -> {self.cod}, {len(self.residuals)} residuals{ps})"

    # --- the whole lens as one term, for backends and diagrams
    def _repr_svg_(self) -> str:  # Jupyter shows it as its diagram
        return self.as_term()._repr_svg_()

    def as_term(self) -> Term:
        """``(params; x, dy) -> (y, dparams, dx)``: the forward part, then the reverse part.

        Returns:
            One :class:`~paralens.Term` with the lens's parameters, taking ``(x, dy)`` and returning
            ``(y, dparams, dx)``, ``dparams`` a dict keyed by ``param_names``; backends compile it.
        """
        b = Builder()
        pw = [b.redeclare(s) for s in self.fwd.params]
        xs = [b.input(t) for t in self.dom]
        dys = [b.input(t) for t in self.cod]
        y, res = self.forward(b, xs, pw)
        dps, dxs = self.backward(b, res, dys)
        x_sig, y_sig = plain_sig(len(self.dom)), plain_sig(len(self.cod))
        return b.build(xs + dys, y + dps + dxs, in_sig=(x_sig, y_sig),
                       out_sig=(y_sig, DictSig(self.param_names), x_sig), name=self.name,
                       arg_names=(("x", "dy"), ("y", "d{}", "dx")))

    # --- using a lens inside an assembly
    def forward(self, b: Builder, xs, params, group: str | None = None) -> tuple[list[int], list[int]]:
        """Emit the forward part into ``b`` with its parameter wires bound to ``params``;
        returns ``(outputs, residuals)``.

        Args:
            b: the :class:`~paralens.Builder` of the assembly.
            xs: wires of ``b`` for the inputs, one per wire of ``dom``.
            params: wires of ``b`` for the parameters, in the order of ``fwd.params``.
            group: a group name for the emitted boxes (nested in ``b``'s current group); ``None``: none.

        Returns:
            ``(outputs, residuals)``: the wires of ``b`` carrying ``y`` (one per wire of ``cod``)
            and the residuals to pass to :meth:`backward`.

        Raises:
            CompositionError: ``xs`` does not match the lens's domain in number or types.
        """
        outs = b.inline(self.fwd, list(xs), params=dict(zip(self.fwd.param_wires, params)), group=group)
        k = len(outs) - self.n_residuals
        return outs[:k], outs[k:]

    def backward(self, b: Builder, residuals, dys, group: str | None = None) -> tuple[list[int], list[int]]:
        """Emit the reverse part into ``b`` (its boxes marked backward); returns ``(dparams, dxs)``.

        Args:
            b: the :class:`~paralens.Builder` of the assembly.
            residuals: the residual wires :meth:`forward` returned.
            dys: wires of ``b`` for the output cotangents, one per wire of ``cod``.
            group: a group name for the emitted boxes (nested in ``b``'s current group); ``None``: none.

        Returns:
            ``(dparams, dxs)``: the wires carrying the parameters' cotangents (in the order of
            ``fwd.params``) and the inputs' cotangents (one per wire of ``dom``).

        Raises:
            CompositionError: ``residuals`` and ``dys`` do not match the reverse part's domain in
                number or types.
        """
        outs = b.inline(self.rev, list(residuals) + list(dys), group=group, backward=True)
        k = len(self.fwd.params)
        return outs[:k], outs[k:]

    # --- the category of lenses
    @staticmethod
    def id(ty) -> Lens:
        """The identity lens on ``ty``: forward and backward are identities, no residuals.

        Args:
            ty: the type: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a list of
                array types.

        Returns:
            A :class:`Lens` with no parameters and no residuals.

        Raises:
            TypeError: ``ty`` is not an array type, a ``Ty`` or a list of them.
        """
        ty = as_ty(ty)
        return Lens(id(ty), id(ty), 0, f"id({', '.join(map(repr, ty))})")

    def __rshift__(self, other: Lens) -> Lens:
        """Sequential composition (maths §2.3): residuals ``M x N``, forward ``f`` then ``g``,
        reverse ``g`` then ``f``; parameters in forward order."""
        if not isinstance(other, Lens):
            return NotImplemented
        if self.cod != other.dom:
            raise CompositionError(f"cannot compose lenses {self.name} >> {other.name}: the codomain of "
                                   f"{self.name} is {self.cod} but the domain of {other.name} is {other.dom}")
        m, n = self.residuals, other.residuals
        nz, nm, nn = len(other.cod), len(m), len(n)
        # forward: x -> (y1, m) -> (z, n, m) -> (z, m, n)
        fwd = self.fwd >> (other.fwd @ id(m)) >> _permute(other.cod @ n @ m,
                                                           _ranges(nz, (nz + nn, nm), (nz, nn)))
        # reverse: (m, n, dz) -> (m, dq, dy) -> (dq, m, dy) -> (dq, dp, dx) -> (dp, dq, dx)
        nq, np_ = len(other.fwd.params), len(self.fwd.params)
        dq_types = tuple(s.type for s in other.fwd.params)
        rev = (id(m) @ other.rev) >> _permute(Ty(*m, *dq_types, *other.dom),
                                              _ranges((nm, nq), (0, nm), (nm + nq, len(other.dom))))
        rev = rev >> (id(Ty(*dq_types)) @ self.rev) >> _permute(
            Ty(*dq_types, *(s.type for s in self.fwd.params), *self.dom),
            _ranges((nq, np_), (0, nq), (nq + np_, len(self.dom))))
        return Lens(fwd, rev, nm + nn, f"{self.name} >> {other.name}")

    def __matmul__(self, other: Lens) -> Lens:
        """Parallel composition: residuals ``M x N``, each part on its own wires."""
        if not isinstance(other, Lens):
            return NotImplemented
        m, n = self.residuals, other.residuals
        y1, y2 = self.cod, other.cod
        # forward: (y1, m, y2, n) -> (y1, y2, m, n)
        fwd = (self.fwd @ other.fwd) >> _permute(
            y1 @ m @ y2 @ n, _ranges((0, len(y1)), (len(y1) + len(m), len(y2)), (len(y1), len(m)),
                                     (len(y1) + len(m) + len(y2), len(n))))
        # reverse: (m, n, dy1, dy2) -> (m, dy1, n, dy2) -> (dp, dx1, dq, dx2) -> (dp, dq, dx1, dx2)
        rev = _permute(m @ n @ y1 @ y2, _ranges((0, len(m)), (len(m) + len(n), len(y1)), (len(m), len(n)),
                                                (len(m) + len(n) + len(y1), len(y2))))
        rev = rev >> (self.rev @ other.rev)
        dp = tuple(s.type for s in self.fwd.params)
        dq = tuple(s.type for s in other.fwd.params)
        x1, x2 = self.dom, other.dom
        rev = rev >> _permute(Ty(*dp, *x1, *dq, *x2), _ranges(
            (0, len(dp)), (len(dp) + len(x1), len(dq)), (len(dp), len(x1)), (len(dp) + len(x1) + len(dq), len(x2))))
        return Lens(fwd, rev, len(m) + len(n), f"{_bracketed(self.name)} @ {_bracketed(other.name)}")


def _ranges(*spans) -> list[int]:
    """Indices from ``(start, length)`` spans (a bare int ``k`` is the span ``(0, k)``)."""
    out = []
    for s in spans:
        start, length = (0, s) if isinstance(s, int) else s
        out += range(start, start + length)
    return out


def _permute(ty: Ty, order) -> Term:
    return wiring(ty, list(order), "permute")


def _bracketed(name: str) -> str:
    return f"({name})" if " >> " in name else name


def lens(f, residuals=None) -> Lens:
    """The lens of a term: ``R(f)`` split at its residuals into a forward and a reverse part.

    The forward part runs each box of ``f`` once and also returns the wires the
    reverse derivative reads (activations, parameters); the reverse part is
    ``R(f)``'s backward boxes, reading only those residuals. ``residuals`` is the
    policy of :func:`paralens.R`: with ``"recompute"`` a layer's residuals are its
    inputs only, and its reverse part recomputes the rest.

    Args:
        f: a :class:`~paralens.Term`, or anything :func:`~paralens.as_term` accepts.
        residuals: the residual policy (:func:`~paralens.passes.residual_policy`); ``None``
            stores every residual.

    Returns:
        The :class:`Lens` of ``f``, named like ``f``, with ``f``'s parameters.

    Raises:
        TypeError: ``f`` is not a term and has no ``as_term()``, or ``residuals`` is not a policy
            name, a dict or a function.
        ValueError: ``residuals`` names no known policy.
    """
    f = as_term(f) if not isinstance(f, Term) else f
    r = reverse(f, residuals)
    b = r.builder
    fwd_eqns, rev_eqns = b.eqns[:r.n_forward], b.eqns[r.n_forward:]
    produced_by_rev = {w for e in rev_eqns for w in e.outs} | set(r.cotangents)
    residuals: list[int] = []
    seen: set[int] = set()
    for w in [w for e in rev_eqns for w in e.ins] + r.dparams + r.dinputs:
        if w not in produced_by_rev and w not in seen:
            seen.add(w)
            residuals.append(w)

    fb = Builder()
    fb.wires, fb.params, fb.param_wires, fb.eqns = list(b.wires), list(b.params), list(r.param_wires), fwd_eqns
    fwd = fb.build(r.inputs, r.outputs + residuals, name=f"fwd({f.name})")
    rb = Builder()
    rb.wires, rb.eqns = list(b.wires), rev_eqns
    rev = rb.build(residuals + r.cotangents, r.dparams + r.dinputs, name=f"rev({f.name})")
    return Lens(fwd, rev, len(residuals), f.name)


def costate(ty, value: float = 1.0, name: str = "learning rate") -> Lens:
    """A costate lens ``(L, L') -> (I, I)``: forward discards, backward returns the constant
    ``value`` (maths §2.1, §4.1). With ``value = 1`` it is the learning-rate lens of a
    learner whose step size lives in the optimizer, as in optax (maths §4.3).

    Args:
        ty: the type of the wires it ends (a loss's value): an :class:`~paralens.ArrayType`, a
            :class:`~paralens.Ty` or a list of array types, all unbatched.
        value: the constant the backward part returns on every wire (filled to each wire's shape).
        name: the lens's name; its forward part is named ``discard(name)``.

    Returns:
        A :class:`Lens` ``ty -> Ty()`` with no parameters and no residuals.

    Raises:
        TypeError: a wire of ``ty`` is batched, or ``ty`` is not an array type, a ``Ty`` or a
            list of them.
    """
    ty = as_ty(ty)
    b = Builder()
    xs = [b.input(t) for t in ty]
    fwd = b.build(xs, [], name=f"discard({name})")
    rb = Builder()
    seeds = [P.emit_const(rb, value, t.shape, t.dtype) if not t.batched else None for t in ty]
    if None in seeds:
        raise TypeError(f"a costate's wires are unbatched (a loss averaged over the batch), got {ty}")
    rev = rb.build([], seeds, name=name)
    return Lens(fwd, rev, 0, name)
