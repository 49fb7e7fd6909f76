"""Terms: string diagrams of typed boxes, with named parameter wires.

A :class:`Term` is a string diagram stored as a flat list of equations (like a
jaxpr): each :class:`Eqn` applies one primitive box to some wires and produces
fresh wires. Copying a wire is using it twice, discarding is not using it,
swapping is permuting the outputs, so the symmetric monoidal structure costs
nothing and no operation on terms recurses over their depth (a 256-layer model
is a list of ~800 equations, not an 800-deep tree).

Every term is a parametrised map (a morphism of Para): ``term.params`` lists
its parameter wires, which are unbatched. Composition ``f >> g`` runs ``f``
first; its parameters come first (forward order, MATH.md section 0). ``f @ g``
runs side by side; ``f``'s parameters come first.

>>> import paralens as pl
>>> f = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
>>> f.dom, f.cod
(Ty(Array[4]), Ty(Array[3]))
>>> sorted(f.param_types)
['dense.W', 'dense.b']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .types import ArrayType, Ty, as_ty

__all__ = [
    "Prim", "Eqn", "ParamSpec", "Term", "Poly", "Builder", "DictSig", "seq",
    "id", "copy", "discard", "swap", "plain_sig", "sig_leaves",
]


class CompositionError(TypeError):
    """Raised when a term is built from pieces whose types do not fit."""


# --------------------------------------------------------------------------- boxes


class Prim:
    """A primitive box: a name, a type rule and a reverse derivative.

    ``type_rule(in_types, **params) -> out_types`` checks the inputs and gives
    the outputs' types (raise ``TypeError`` with a clear message when they do
    not fit). ``rev(b, params, ins, outs, dys) -> dins`` writes the reverse
    derivative *as a term of primitives*: it emits equations into the builder
    ``b`` and returns one cotangent wire (or ``None`` for zero) per input.
    ``ins`` and ``outs`` are the forward wires (the optic's residuals).
    """

    def __init__(self, name: str, type_rule: Callable, rev: Callable | None, *, linear: bool = False):
        self.name = name
        self.type_rule = type_rule
        self.rev = rev
        self.linear = linear

    def __repr__(self) -> str:
        return f"<prim {self.name}>"

    def __reduce__(self):  # primitives are singletons, looked up by name
        return (_prim_by_name, (self.name,))


_PRIMS: dict[str, Prim] = {}


def _prim_by_name(name: str) -> Prim:
    return _PRIMS[name]


def register(prim: Prim) -> Prim:
    if prim.name in _PRIMS:
        raise ValueError(f"primitive {prim.name!r} is already registered")
    _PRIMS[prim.name] = prim
    return prim


def registered_prims() -> dict[str, Prim]:
    return dict(_PRIMS)


@dataclass(frozen=True)
class Eqn:
    """One box in a diagram: ``outs = prim(*ins; **params)``."""

    prim: Prim
    params: tuple[tuple[str, Any], ...]
    ins: tuple[int, ...]
    outs: tuple[int, ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def __hash__(self):
        return hash((self.prim.name, self.params, self.ins, self.outs))

    def __eq__(self, other):
        return (isinstance(other, Eqn) and self.prim is other.prim and self.params == other.params
                and self.ins == other.ins and self.outs == other.outs)


@dataclass(frozen=True)
class ParamSpec:
    """A parameter wire: which layer instance it belongs to, its type and initialiser.

    Its readable name in a term is ``layer.local`` when the term has one
    instance of that layer, and ``layer{slot}.local`` when it has several
    (``dense0.W``, ``dense1.W``, numbered in forward order).
    """

    layer: str
    slot: int
    local: str
    type: ArrayType
    init: tuple = ("zeros",)


@dataclass(frozen=True)
class DictSig:
    """A calling-convention node: a dict of single wires with these keys."""

    keys: tuple[str, ...]


def plain_sig(n: int):
    """The calling convention of ``n`` wires: one array, or a tuple of them."""
    return None if n == 1 else (None,) * n


def sig_leaves(sig) -> int:
    if sig is None:
        return 1
    if isinstance(sig, DictSig):
        return len(sig.keys)
    return sum(sig_leaves(s) for s in sig)


# --------------------------------------------------------------------------- terms


@dataclass(frozen=True, eq=False)
class Term:
    """A parametrised string diagram. Build terms with ``>>``, ``@`` and the
    constructors of :mod:`paralens`; do not call this constructor directly.

    ``in_sig`` is the calling convention of the compiled callable: one entry
    per positional argument after ``params`` (``(x,)`` for a plain term,
    ``(x, dy)`` for a reverse derivative). ``out_sig`` shapes the result.
    """

    wires: tuple[ArrayType, ...]
    params: tuple[ParamSpec, ...]
    param_wires: tuple[int, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    eqns: tuple[Eqn, ...]
    in_sig: tuple = field(default=None)
    out_sig: Any = field(default=None)
    name: str = "term"

    def __post_init__(self):
        if self.in_sig is None:
            object.__setattr__(self, "in_sig", (plain_sig(len(self.inputs)),))
        if self.out_sig is None and len(self.outputs) != 1:
            object.__setattr__(self, "out_sig", plain_sig(len(self.outputs)))

    # --- identity and hashing: structural, cached (terms are immutable)
    def _key(self):
        return (self.wires, self.params, self.param_wires, self.inputs, self.outputs,
                self.eqns, self.in_sig, self.out_sig)

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(self._key())
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other):
        return isinstance(other, Term) and (self is other or self._key() == other._key())

    # --- types
    @property
    def dom(self) -> Ty:
        return Ty(*(self.wires[i] for i in self.inputs))

    @property
    def cod(self) -> Ty:
        return Ty(*(self.wires[i] for i in self.outputs))

    @property
    def param_names(self) -> tuple[str, ...]:
        return _param_names(self.params)

    @property
    def param_types(self) -> dict[str, ArrayType]:
        return dict(zip(self.param_names, (p.type for p in self.params)))

    @property
    def n_boxes(self) -> int:
        """The number of primitive boxes in the diagram."""
        return len(self.eqns)

    def __repr__(self) -> str:
        ps = f", params={list(self.param_names)}" if self.params else ""
        return f"Term({self.name}: {self.dom} -> {self.cod}, {self.n_boxes} boxes{ps})"

    def __str__(self) -> str:
        return self.name

    # --- composition
    def __rshift__(self, other: Term) -> Term:
        """Sequential composition: ``self`` first, then ``other``."""
        if not isinstance(other, Term):
            return NotImplemented
        if self.cod != other.dom:
            raise CompositionError(
                f"cannot compose {_short(self)} >> {_short(other)}: the codomain of "
                f"{_short(self)} is {self.cod} but the domain of {_short(other)} is {other.dom}")
        b = Builder()
        xs = [b.input(t) for t in self.dom]
        ys = b.inline(self, xs)
        zs = b.inline(other, ys)
        return b.build(xs, zs, name=f"{_paren(self, '>>')} >> {_paren(other, '>>', right=True)}")

    def __matmul__(self, other: Term) -> Term:
        """Parallel composition: ``self`` on the first wires, ``other`` on the rest."""
        if not isinstance(other, Term):
            return NotImplemented
        b = Builder()
        xs = [b.input(t) for t in self.dom]
        ys = [b.input(t) for t in other.dom]
        outs = b.inline(self, xs) + b.inline(other, ys)
        return b.build(xs + ys, outs, name=f"{_paren(self, '@')} @ {_paren(other, '@', right=True)}")

    def then(self, *others: Term) -> Term:
        """``f.then(g, h)`` is ``f >> g >> h`` built in one pass (linear time)."""
        return seq(self, *others)

    # --- pointful use: calling a term on wires inlines it into the tracer
    def __call__(self, *wires):
        from .trace import apply_term
        return apply_term(self, wires)

    # --- Para
    def init(self, seed: int = 0) -> dict:
        """A parameter dict ``{name: numpy array}`` drawn with each parameter's initialiser."""
        from .para import init
        return init(self, seed)


class Poly:
    """A term whose domain is fixed by what it is composed with (activations, pooling, losses).

    ``f >> pl.nn.relu()`` instantiates ``relu`` at ``f.cod``; ``poly.at(ty)``
    instantiates it explicitly; calling it on a wire inside ``@pl.para``
    instantiates it at the wire's type.
    """

    def __init__(self, make: Callable[[Ty], Term], name: str):
        self._make = make
        self.name = name

    def at(self, ty) -> Term:
        """The term on domain ``ty``."""
        return self._make(as_ty(ty))

    def __rrshift__(self, f: Term) -> Term:
        if not isinstance(f, Term):
            return NotImplemented
        return f >> self.at(f.cod)

    def __rshift__(self, g):
        if isinstance(g, Term):  # a type-preserving map placed before g
            return self.at(g.dom) >> g
        if isinstance(g, Poly):
            return Poly(lambda ty: self.at(ty) >> g, f"{self.name} >> {g.name}")
        return NotImplemented

    def __matmul__(self, other):
        raise CompositionError(f"{self.name} has no type yet: use {self.name}.at(pl.Array[...]) before @")

    __rmatmul__ = __matmul__

    def __call__(self, *wires):
        return self.at([w.type for w in wires])(*wires)

    def __repr__(self) -> str:
        return f"Poly({self.name})"


def seq(*terms: Term) -> Term:
    """``seq(f, g, h) == f >> g >> h``, built in one pass."""
    if not terms:
        raise ValueError("seq needs at least one term")
    for f, g in zip(terms, terms[1:]):
        if f.cod != g.dom:
            raise CompositionError(
                f"cannot compose {_short(f)} >> {_short(g)}: the codomain of {_short(f)} is "
                f"{f.cod} but the domain of {_short(g)} is {g.dom}")
    b = Builder()
    xs = [b.input(t) for t in terms[0].dom]
    ys = xs
    for t in terms:
        ys = b.inline(t, ys)
    name = " >> ".join(_paren(t, ">>") for t in terms) if len(terms) < 8 else \
        f"{_paren(terms[0], '>>')} >> ... ({len(terms)} terms) >> {_paren(terms[-1], '>>')}"
    return b.build(xs, ys, name=name)


def _short(t: Term, n: int = 60) -> str:
    s = t.name
    return s if len(s) <= n else s[: n - 3] + "..."


def _paren(t: Term, op: str, right: bool = False) -> str:
    s = _short(t, 200)
    other = "@" if op == ">>" else ">>"
    return f"({s})" if f" {other} " in s or (right and f" {op} " in s) else s


def _param_names(params: Sequence[ParamSpec]) -> tuple[str, ...]:
    slots: dict[str, set[int]] = {}
    for p in params:
        slots.setdefault(p.layer, set()).add(p.slot)
    names = []
    for p in params:
        layer = p.layer if len(slots[p.layer]) == 1 else f"{p.layer}{p.slot}"
        names.append(f"{layer}.{p.local}" if p.local else layer)
    return tuple(names)


# --------------------------------------------------------------------------- building


class Builder:
    """Builds a term equation by equation. Used by composition, the tracer and ``R``."""

    def __init__(self):
        self.wires: list[ArrayType] = []
        self.eqns: list[Eqn] = []
        self.params: list[ParamSpec] = []
        self.param_wires: list[int] = []
        self._slots: dict[str, int] = {}

    def new_wire(self, t: ArrayType) -> int:
        self.wires.append(t)
        return len(self.wires) - 1

    def input(self, t: ArrayType) -> int:
        return self.new_wire(t)

    def type_of(self, w: int) -> ArrayType:
        return self.wires[w]

    def new_layer(self, layer: str) -> int:
        """Reserve the next instance number of ``layer`` in this term."""
        slot = self._slots.get(layer, 0)
        self._slots[layer] = slot + 1
        return slot

    def param(self, layer: str, slot: int, local: str, t: ArrayType, init: tuple = ("zeros",)) -> int:
        spec = ParamSpec(layer, slot, local, t, init)
        if any((p.layer, p.slot, p.local) == (layer, slot, local) for p in self.params):
            raise ValueError(f"parameter {layer}{slot}.{local} declared twice")
        w = self.new_wire(t)
        self.params.append(spec)
        self.param_wires.append(w)
        return w

    def emit(self, prim: Prim, ins: Sequence[int], **params) -> list[int]:
        """Apply ``prim`` to wires ``ins``; returns the output wires."""
        in_types = [self.wires[w] for w in ins]
        out_types = prim.type_rule(in_types, **params)
        outs = [self.new_wire(t) for t in out_types]
        self.eqns.append(Eqn(prim, tuple(sorted(params.items())), tuple(ins), tuple(outs)))
        return outs

    def emit1(self, prim: Prim, *ins: int, **params) -> int:
        (out,) = self.emit(prim, ins, **params)
        return out

    def inline(self, term: Term, inputs: Sequence[int], params: dict[int, int] | None = None) -> list[int]:
        """Copy ``term``'s equations in, reading its inputs from ``inputs``.

        Its parameters become fresh parameters of this builder (renumbered after
        those already here), unless ``params`` maps some of its parameter wires
        to existing wires (used for reparametrisation and for ``R``).
        """
        if len(inputs) != len(term.inputs):
            raise CompositionError(f"{_short(term)} takes {len(term.inputs)} wires, got {len(inputs)}")
        for w, t in zip(inputs, term.dom):
            if self.wires[w] != t:
                raise CompositionError(
                    f"cannot apply {_short(term)} to a wire of type {self.wires[w]}: it expects {t}")
        env: dict[int, int] = dict(zip(term.inputs, inputs))
        params = params or {}
        offsets: dict[str, int] = {}
        for spec, w in zip(term.params, term.param_wires):
            if w in params:
                env[w] = params[w]
                continue
            if spec.layer not in offsets:
                offsets[spec.layer] = self._slots.get(spec.layer, 0)
            env[w] = self.param(spec.layer, offsets[spec.layer] + spec.slot, spec.local, spec.type, spec.init)
        for layer, off in offsets.items():
            n = 1 + max(s.slot for s in term.params if s.layer == layer)
            self._slots[layer] = max(self._slots.get(layer, 0), off + n)
        wires = term.wires
        for e in term.eqns:
            try:
                ins = tuple(env[w] for w in e.ins)
            except KeyError:  # pragma: no cover - terms are closed by construction
                raise CompositionError(f"ill-formed term {_short(term)}") from None
            outs = []
            for w in e.outs:
                nw = self.new_wire(wires[w])
                env[w] = nw
                outs.append(nw)
            self.eqns.append(Eqn(e.prim, e.params, ins, tuple(outs)))
        return [env[w] for w in term.outputs]

    def build(self, inputs: Sequence[int], outputs: Sequence[int], *, in_sig=None, out_sig=None,
              name: str = "term", dce: bool = True) -> Term:
        """Close the diagram: renumber wires densely, drop boxes no output needs."""
        eqns = _live_eqns(self.eqns, outputs) if dce else list(self.eqns)
        pairs = list(zip(self.params, self.param_wires))
        order: dict[int, int] = {}

        def number(w):
            if w not in order:
                order[w] = len(order)
            return order[w]

        pw = [number(w) for _, w in pairs]
        ins = [number(w) for w in inputs]
        new_eqns = []
        for e in eqns:
            new_eqns.append(Eqn(e.prim, e.params, tuple(number(w) for w in e.ins),
                                tuple(number(w) for w in e.outs)))
        outs = []
        for w in outputs:
            if w not in order:
                raise CompositionError("an output wire is neither an input nor produced by a box")
            outs.append(order[w])
        types = [None] * len(order)
        for w, i in order.items():
            types[i] = self.wires[w]
        return Term(tuple(types), tuple(p for p, _ in pairs), tuple(pw), tuple(ins), tuple(outs),
                    tuple(new_eqns), in_sig, out_sig, name)


def _live_eqns(eqns: Sequence[Eqn], outputs: Sequence[int]) -> list[Eqn]:
    needed = set(outputs)
    live = []
    for e in reversed(eqns):
        if any(w in needed for w in e.outs):
            live.append(e)
            needed.update(e.ins)
    live.reverse()
    return live


# --------------------------------------------------------------------------- structure


def _wiring(dom: Ty, perm: Callable[[list[int]], list[int]], name: str) -> Term:
    b = Builder()
    xs = [b.input(t) for t in dom]
    return b.build(xs, perm(xs), name=name)


def id(ty) -> Term:  # noqa: A001 - the categorical name is the public contract
    """The identity on ``ty``: ``pl.id(A) >> f == f == f >> pl.id(B)``."""
    ty = as_ty(ty)
    return _wiring(ty, lambda xs: xs, f"id({_ty_str(ty)})")


def copy(ty, n: int = 2) -> Term:
    """Copy ``ty`` to ``n`` copies (``n = 2``: the diagonal). Its reverse derivative adds."""
    ty = as_ty(ty)
    return _wiring(ty, lambda xs: xs * n, f"copy({_ty_str(ty)})")


def discard(ty) -> Term:
    """Discard ``ty`` (the map to the unit). Its reverse derivative is zero."""
    ty = as_ty(ty)
    return _wiring(ty, lambda xs: [], f"discard({_ty_str(ty)})")


def swap(a, b) -> Term:
    """The symmetry ``a @ b -> b @ a``."""
    a, b = as_ty(a), as_ty(b)
    k = len(a)
    return _wiring(a @ b, lambda xs: xs[k:] + xs[:k], f"swap({_ty_str(a)}, {_ty_str(b)})")


def _ty_str(ty: Ty) -> str:
    return " @ ".join(map(repr, ty)) if len(ty) else "Ty()"
