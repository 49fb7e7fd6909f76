"""Terms: string diagrams of typed boxes, with named parameter wires.

A :class:`Term` is a string diagram stored as a flat list of equations (like a
jaxpr): each :class:`Eqn` applies one primitive box to some wires and produces
fresh wires. Copying a wire is using it twice, discarding is not using it,
swapping is permuting the outputs, so the symmetric monoidal structure costs
nothing and no operation on terms recurses over their depth.

Every term is a parametrised map (a morphism of Para): ``term.params`` lists
its parameter wires, which are unbatched. Composition ``f >> g`` runs ``f``
first; its parameters come first (forward order, maths §0). ``f @ g``
runs side by side; ``f``'s parameters come first. Composition checks the types
at once but copies nothing: the composite remembers its two parts and is
flattened into one equation list the first time it is looked inside, so a
chain built by ``t = t >> layer`` in a loop costs time linear in its length.

Each composition makes fresh instances of its parts' layers, so weights are
shared only where :func:`paralens.tie` says so, and ``param_names`` are always
unique (see :class:`ParamSpec`).

>>> import paralens as pl
>>> f = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
>>> f.dom, f.cod
(Ty(Array[4]), Ty(Array[3]))
>>> f.param_names
('dense.W', 'dense.b')
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, NamedTuple

from .backends import get as _backend
from .prims import Prim
from .types import ArrayType, CompositionError, Ty, as_ty
from .wires import Wire, builder_of, lift

__all__ = [
    "Eqn", "TRAINING_ONLY", "Seq", "Par", "ParamSpec", "DictSig", "Term", "Poly", "Builder", "seq", "id", "copy",
    "discard", "swap",
    "wiring", "as_term", "plain_sig", "sig_of", "flatten", "unflatten", "tree_map", "leaves", "CompositionError",
]


@dataclass(frozen=True)
class Eqn:
    """One box in a diagram: ``outs = prim(*ins; **attrs)``.

    ``attrs`` are the primitive's attributes (an einsum's ``spec``, a cast's ``dtype``), as
    sorted ``(name, value)`` pairs. ``group`` names the parts it belongs to, outermost first
    (``("model",)`` in a learner's step); ``layer`` is the layer instance ``(layer, slot)`` that
    made it (numbered like parameters); ``backward`` marks the boxes of a reverse derivative's
    or a lens's backward part; ``role`` is what the box is for, read by the passes that
    rewrite terms (:data:`~paralens.terms.TRAINING_ONLY`: a dropout layer's), never its layer's name.
    Diagrams use the first three.

    Attributes:
        prim: the primitive box applied (a :class:`~paralens.prims.Prim`).
        attrs: the primitive's attributes, as ``(name, value)`` pairs sorted by name.
        ins: the wire numbers the box reads, in the primitive's argument order.
        outs: the fresh wire numbers the box makes.
        group: the names of the parts it belongs to, outermost first (``()``: none).
        layer: the layer instance ``(layer, slot)`` that made it; ``None`` for a box no layer made.
        backward: whether it is a box of a reverse derivative's or a lens's backward part.
        role: what the box is for (:data:`~paralens.terms.TRAINING_ONLY` or ``None``).
    """

    prim: Prim
    attrs: tuple[tuple[str, Any], ...]
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    group: tuple[str, ...] = ()
    layer: tuple[str, int] | None = None
    backward: bool = False
    role: str | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """The attributes as a dict, to pass on as keyword arguments (``b.emit(e.prim, ins, **e.kwargs)``)."""
        return dict(self.attrs)

    def replace(self, **changes) -> Eqn:
        """A copy with some fields changed (as ``jax.core.JaxprEqn.replace``).

        Args:
            **changes: new values of fields, by name (``ins=...``, ``outs=...``, ``backward=...``).

        Returns:
            A new :class:`Eqn`; this one is unchanged (equations are frozen).

        Raises:
            TypeError: a name is not a field of :class:`Eqn`.
        """
        if not _EQN_FIELDS.issuperset(changes):  # written out: dataclasses.replace costs 10x (R copies every box)
            raise TypeError(f"Eqn has no fields {sorted(set(changes) - _EQN_FIELDS)}; it has {sorted(_EQN_FIELDS)}")
        get = changes.get
        return Eqn(get("prim", self.prim), get("attrs", self.attrs), get("ins", self.ins), get("outs", self.outs),
                   get("group", self.group), get("layer", self.layer), get("backward", self.backward),
                   get("role", self.role))


_EQN_FIELDS = frozenset(f.name for f in dataclasses.fields(Eqn))


#: The role of a box that only runs while training: in inference mode
#: (:func:`paralens.nn.inference_mode`) its layer is the identity on its data and passes its key on.
TRAINING_ONLY = "training only"


class Seq(NamedTuple):
    """A lazy sequential composite ``first >> then`` (flattened on first use)."""

    first: Term
    then: Term


class Par(NamedTuple):
    """A lazy parallel composite ``left @ right`` (flattened on first use)."""

    left: Term
    right: Term


@dataclass(frozen=True)
class ParamSpec:
    """A parameter wire: which layer instance it belongs to, its type and initialiser.

    Its readable name in a term is ``layer.local`` when the term has one
    instance of that layer, and ``layer{slot}.local`` when it has several
    (``dense0.W``, ``dense1.W``, numbered in forward order). Should two
    instances still read alike (a layer named ``block1`` beside two ``block``
    layers), the later one gets a suffix (``block1_1``): names are unique.

    ``hyper`` marks a hyperparameter: a parameter wire that training does not
    update (a loss's ``delta``, a temperature) but that a bilevel problem can
    learn. A batched parameter wire is a label: data, one per example.

    Attributes:
        layer: the name of the layer that declared it (``dense``).
        slot: the instance number of that layer in the term (from 0, in forward order).
        local: the parameter's name inside its layer (``W``); empty for a layer whose only
            parameter is named by the layer alone.
        type: its :class:`~paralens.ArrayType` (batched for a label).
        init: the initialiser as ``pl.init`` makes it: a tuple of its name and arguments
            (``("zeros",)`` by default, ``("const", 0.5)``).
        hyper: whether it is a hyperparameter (not updated by training).
        axes: the logical name of each of its axes (``("embed", "mlp")`` for a dense layer's ``W``,
            ``None`` for an axis without one), as flax's ``with_partitioning`` and MaxText name them;
            a rule table maps them to the axes of a device mesh (:mod:`paralens.backends.sharding`).
            ``None``: no names (the parameter is replicated unless FSDP shards it).
    """

    layer: str
    slot: int
    local: str
    type: ArrayType
    init: tuple = ("zeros",)
    hyper: bool = False
    axes: tuple[str | None, ...] | None = None


# --------------------------------------------------------------------------- calling conventions
# A term's inputs and outputs are flat lists of wires; its calling convention groups
# them into the nested dicts and tuples a user passes and gets back. A signature is
# None (one array), a tuple of signatures, or a DictSig.


@dataclass(frozen=True)
class DictSig:
    """A dict with these ``keys``; ``values`` are their signatures (``None``: one array each)."""

    keys: tuple[str, ...]
    values: tuple | None = None

    def items(self):
        return zip(self.keys, self.values if self.values is not None else (None,) * len(self.keys))


def plain_sig(n: int):
    """The calling convention of ``n`` wires: one array, or a tuple of them."""
    return None if n == 1 else (None,) * n


def sig_of(tree):
    """The signature of a nested structure of dicts and tuples (anything else is a leaf)."""
    if isinstance(tree, dict):
        values = tuple(sig_of(v) for v in tree.values())
        return DictSig(tuple(tree), None if all(v is None for v in values) else values)
    if isinstance(tree, (tuple, list)):
        return tuple(sig_of(v) for v in tree)
    return None


def flatten(value, sig, out: list | None = None, where: str = "argument") -> list:
    """The leaves of ``value`` in the order ``sig`` gives them; a clear error when it does not fit."""
    out = [] if out is None else out
    if sig is None:
        out.append(value)
    elif isinstance(sig, DictSig):
        if not isinstance(value, dict) or set(value) != set(sig.keys):
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise TypeError(f"{where}: expected a dict with keys {list(sig.keys)}, got {got}")
        for k, s in sig.items():
            flatten(value[k], s, out, f"{where}[{k!r}]")
    else:
        if not isinstance(value, (tuple, list)) or len(value) != len(sig):
            raise TypeError(f"{where}: expected a tuple of {len(sig)} values, got {type(value).__name__}"
                            + (f" of {len(value)}" if isinstance(value, (tuple, list)) else ""))
        for i, (v, s) in enumerate(zip(value, sig)):
            flatten(v, s, out, f"{where}[{i}]")
    return out


def leaves(tree) -> list:
    """The leaves of a nested structure of dicts and tuples, in calling-convention order."""
    return flatten(tree, sig_of(tree))


def tree_map(fn: Callable, tree):
    """``fn`` applied to every leaf of a nested structure of dicts and tuples."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return tuple(tree_map(fn, v) for v in tree)
    return fn(tree)


def unflatten(sig, leaves: Iterator):
    """The inverse of :func:`flatten`: rebuild the structure ``sig`` from an iterator of leaves."""
    if sig is None:
        return next(leaves)
    if isinstance(sig, DictSig):
        return {k: unflatten(s, leaves) for k, s in sig.items()}
    return tuple(unflatten(s, leaves) for s in sig)


# --------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class _Diagram:
    wires: tuple[ArrayType, ...]
    params: tuple[ParamSpec, ...]
    param_wires: tuple[int, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    eqns: tuple[Eqn, ...]


class Term:
    """A parametrised string diagram. Build terms with ``>>``, ``@``, :func:`paralens.para`
    and the constructors of :mod:`paralens`; do not call this constructor directly.

    ``in_sig`` is the calling convention of the compiled callable: one entry
    per positional argument after ``params`` (``(x,)`` for a plain term,
    ``(x, dy)`` for a reverse derivative). ``out_sig`` shapes the result.

    Args:
        dom: the types of the input wires.
        cod: the types of the output wires.
        diagram: the flat diagram (``_Diagram``: wires, parameters, equations), or ``None`` for a
            composite not yet flattened.
        node: the lazy composite (:class:`~paralens.terms.Seq` or :class:`~paralens.terms.Par`)
            this term is, flattened into ``diagram`` on first use; ``None`` for a flat term.
        in_sig: the calling convention of the inputs, one signature per positional argument
            after ``params`` (default: one argument, ``dom`` as one array or a tuple of them).
        out_sig: the calling convention of the outputs (default: one array, or a tuple of
            ``len(cod)`` arrays).
        name: the term's name; by default it is made from the parts of ``node``
            (``"term"`` for a flat term).
        arg_names: ``(input names, output names)``, one base name per argument and per output,
            read by :meth:`port_labels`; ``None`` for ``x``/``y``.
    """

    __slots__ = ("dom", "cod", "in_sig", "out_sig", "arg_names", "_node", "_diagram", "_name", "_names", "_hash",
                 "_label")

    def __init__(self, dom: Ty, cod: Ty, *, diagram: _Diagram | None = None, node: Seq | Par | None = None,
                 in_sig=None, out_sig=None, name: str | None = None, arg_names: tuple | None = None):
        s = object.__setattr__
        s(self, "dom", dom)
        s(self, "cod", cod)
        s(self, "in_sig", in_sig if in_sig is not None else (plain_sig(len(dom)),))
        s(self, "out_sig", out_sig if out_sig is not None or len(cod) == 1 else plain_sig(len(cod)))
        s(self, "arg_names", arg_names)
        s(self, "_node", node)
        s(self, "_diagram", diagram)
        s(self, "_name", name)
        s(self, "_label", name is not None and node is not None)  # a composite given its own name
        s(self, "_names", None)
        s(self, "_hash", None)

    def __setattr__(self, key, value):
        raise FrozenInstanceError(f"terms are immutable: cannot assign to {key!r}")

    def __getstate__(self):  # pickle and copy, despite the frozen __setattr__
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        object.__setattr__(self, "_label", False)  # a term pickled before composites could be named
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # --- the flat diagram, built on first use
    def _flat(self) -> _Diagram:
        d = self._diagram
        if d is None:
            # Flattening makes many objects and no reference cycles: pausing the cyclic garbage
            # collector keeps its passes over the whole heap from making long chains superlinear.
            paused = gc.isenabled()
            gc.disable()
            try:
                b = Builder()
                xs = [b.input(t) for t in self.dom]
                d = b.build(xs, b.inline(self, xs))._diagram
            finally:
                if paused:
                    gc.enable()
            object.__setattr__(self, "_diagram", d)
        return d

    @property
    def wires(self) -> tuple[ArrayType, ...]:
        return self._flat().wires

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return self._flat().params

    @property
    def param_wires(self) -> tuple[int, ...]:
        return self._flat().param_wires

    @property
    def inputs(self) -> tuple[int, ...]:
        return self._flat().inputs

    @property
    def outputs(self) -> tuple[int, ...]:
        return self._flat().outputs

    @property
    def eqns(self) -> tuple[Eqn, ...]:
        return self._flat().eqns

    @property
    def name(self) -> str:
        if self._name is None:
            object.__setattr__(self, "_name", _composite_name(self))
        return self._name

    # --- identity and hashing: structural, cached (terms are immutable)
    def _key(self):
        return (self._flat(), self.in_sig, self.out_sig)

    def __hash__(self):
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(self._key()))
        return self._hash

    def __eq__(self, other):
        return isinstance(other, Term) and (self is other or self._key() == other._key())

    # --- parameters
    @property
    def param_names(self) -> tuple[str, ...]:
        """Readable, unique names of the parameter wires, in forward order."""
        if self._names is None:
            object.__setattr__(self, "_names", _param_names(self.params))
        return self._names

    @property
    def param_types(self) -> dict[str, ArrayType]:
        return dict(zip(self.param_names, (p.type for p in self.params)))

    @property
    def param_axes(self) -> dict[str, tuple[str | None, ...] | None]:
        """The logical axis names of each parameter (``None``: none given), by parameter name: what a
        sharding rule table maps to mesh axes (:mod:`paralens.backends.sharding`).

        >>> import paralens as pl
        >>> pl.nn.dense(4, 3).param_axes
        {'dense.W': ('embed', 'mlp'), 'dense.b': ('mlp',)}
        """
        return dict(zip(self.param_names, (p.axes for p in self.params)))

    def layer_names(self) -> dict[tuple[str, int], str]:
        """Readable names of the layer instances that made its boxes (``dense0``, ``relu1``), as
        parameter names read (for diagrams).

        Returns:
            A dict from each layer instance ``(layer, slot)`` (of the parameters, then of the boxes)
            to its readable name.
        """
        seen = list(dict.fromkeys([(p.layer, p.slot) for p in self.params] +
                                  [e.layer for e in self.eqns if e.layer is not None]))
        return dict(zip(seen, _instance_names(seen)))

    @property
    def hyper_names(self) -> tuple[str, ...]:
        """The names of the hyperparameter wires among the parameters."""
        return tuple(n for n, p in zip(self.param_names, self.params) if p.hyper)

    @property
    def n_boxes(self) -> int:
        """The number of primitive boxes in the diagram."""
        return len(self.eqns)

    def input_types(self) -> tuple:
        """The types of the inputs, shaped as the calling convention (one tree per argument).

        Returns:
            A tuple with one entry per argument of ``in_sig``: an
            :class:`~paralens.ArrayType`, or a tuple or dict of them as that argument's signature
            nests them.
        """
        return unflatten(tuple(self.in_sig), iter(self.dom))

    def port_labels(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Names of the input and output wires, for diagrams and formulas: ``x``, ``dy``,
        ``dW``, ``dx`` for a reverse derivative; ``x``/``y`` (``x0``, ``x1``, ...) by default.

        ``arg_names`` gives a base name per argument and per output; a dict's entries
        extend it (``d{}`` with the entry's short name gives ``dW``).

        Returns:
            ``(input labels, output labels)``: one label per input wire (in ``dom`` order) and
            one per output wire (in ``cod`` order).
        """
        ins, outs = self.arg_names or (None, None)
        in_sigs = tuple(self.in_sig)
        out_sigs = self.out_sig if isinstance(self.out_sig, tuple) else (self.out_sig,)
        ins = ins or (("x",) if len(in_sigs) == 1 else tuple(f"x{i}" for i in range(len(in_sigs))))
        outs = outs or (("y",) if len(out_sigs) == 1 else tuple(f"y{i}" for i in range(len(out_sigs))))
        return (tuple(lab for sig, base in zip(in_sigs, ins) for lab in _labels(sig, base)),
                tuple(lab for sig, base in zip(out_sigs, outs) for lab in _labels(sig, base)))
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
                f"{_short(self)} is {self.cod} but the domain of {_short(other)} is {other.dom}"
                + _lens_hint(self, other))
        return Term(self.dom, other.cod, node=Seq(self, other))

    def __matmul__(self, other: Term) -> Term:
        """Parallel composition: ``self`` on the first wires, ``other`` on the rest."""
        if not isinstance(other, Term):
            return NotImplemented
        return Term(self.dom @ other.dom, self.cod @ other.cod, node=Par(self, other))

    def renamed(self, name: str) -> Term:
        """The same term under another name (what its diagram and messages show); a composite
        stays a composite of the same parts.

        Args:
            name: the new name, any ``str``.

        Returns:
            The renamed term, equal to this one.

        Raises:
            TypeError: ``name`` is not a ``str``.
        """
        if type(name) is not str:
            raise TypeError(f"a term's name must be a str, got {type(name).__name__}")
        return Term(self.dom, self.cod, diagram=self._diagram, node=self._node, in_sig=self.in_sig,
                    out_sig=self.out_sig, name=name, arg_names=self.arg_names)

    def with_ports(self, inputs=None, outputs=None) -> Term:
        """The same term with its ports named: what its diagrams, its formulas and its reverse
        derivative's ports (``d<name>``) show instead of ``x``/``y`` (``x0``, ``y1``, ...).

        Args:
            inputs: one name per input argument (a ``str`` for a term of one argument); ``None``:
                keep the current names.
            outputs: one name per output (a ``str`` for a term of one output); ``None``: keep them.

        Returns:
            The term with those port names, equal to this one in everything else.

        Raises:
            TypeError: a name is not a ``str``.
            ValueError: a name is empty or holds ``{`` or ``}``, two names are the same, or the names
                are not as many as the arguments or outputs.

        >>> import paralens as pl
        >>> @pl.para
        ... def half_adder(x: pl.z2.Bits(2)):
        ...     a, b = pl.z2.bits_of(x)
        ...     return a + b, a * b
        >>> half_adder.with_ports(outputs=("sum", "carry")).port_labels()
        (('x',), ('sum', 'carry'))
        >>> pl.R(half_adder.with_ports(outputs=("sum", "carry"))).port_labels()[0]
        ('x', 'dsum', 'dcarry')
        """
        n_in, n_out = len(tuple(self.in_sig)), len(self.out_sig) if isinstance(self.out_sig, tuple) else 1
        old_in, old_out = self.arg_names or (None, None)  # the defaults, as port_labels makes them
        old_in = old_in or (("x",) if n_in == 1 else tuple(f"x{i}" for i in range(n_in)))
        old_out = old_out or (("y",) if n_out == 1 else tuple(f"y{i}" for i in range(n_out)))
        return Term(self.dom, self.cod, diagram=self._diagram, node=self._node, in_sig=self.in_sig,
                    out_sig=self.out_sig, name=self._name, arg_names=(
                        _port_names(inputs, n_in, "input") if inputs is not None else old_in,
                        _port_names(outputs, n_out, "output") if outputs is not None else old_out))

    def then(self, *others: Term) -> Term:
        """``f.then(g, h)`` is ``f >> g >> h``.

        Args:
            *others: the terms to run after this one, in order.

        Returns:
            The sequential composite (this term itself when ``others`` is empty).

        Raises:
            CompositionError: a term's domain is not the codomain of the one before it
                (raised by ``>>``).
        """
        return seq(self, *others)

    # --- pointful use: calling a term on wires inlines it into the function being traced
    def __call__(self, *args):
        b = builder_of(*args)
        ids = [lift(b, a) for a in args]
        if len(ids) != len(self.dom):
            raise CompositionError(f"{_short(self)} takes {len(self.dom)} wires ({self.dom}), got {len(ids)}")
        for i, (w, t) in enumerate(zip(ids, self.dom)):
            if b.type_of(w) != t:
                raise CompositionError(
                    f"cannot apply {_short(self)} to argument {i} of type {b.type_of(w)}: "
                    f"{_short(self)} expects {t} (its domain is {self.dom})")
        outs = [Wire(b, w) for w in b.inline(self, ids)]
        if len(outs) == 1:
            return outs[0]
        return tuple(outs) if outs else None

    def _repr_svg_(self) -> str:  # Jupyter shows a term as its diagram
        return _backend("matplotlib").draw(self)

    # --- Para
    def init(self, seed: int = 0, backend: str = "numpy") -> dict:
        """Initial parameters ``{name: array}``, drawn by ``backend`` with each parameter's initialiser
        (hyperparameters take their declared values; labels are data, not drawn).

        Args:
            seed: the random seed; each parameter's draw depends on it and on the parameter's name.
            backend: the name of the backend that makes the arrays (``"numpy"``, ``"jax"``, ...).

        Returns:
            A dict from each parameter name (labels excluded) to its initial array.

        Raises:
            ValueError: ``backend`` is not a known backend.
            ImportError: the backend needs a library that is not installed.
        """
        return _backend(backend).init(self, seed)


def _port_names(names, n: int, what: str) -> tuple[str, ...]:
    """``names`` (a ``str`` or a sequence of them) as ``n`` port names, checked: names are data."""
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if type(name) is not str:
            raise TypeError(f"an {what} port's name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError(f"an {what} port's name must not be empty")
    if len(names) != n:
        raise ValueError(f"the term has {n} {what} argument{'s' if n != 1 else ''}, got {len(names)} names "
                         f"{list(names)}")
    if len(set(names)) != n:
        raise ValueError(f"two {what} ports would have one name: {list(names)}")
    bad = [name for name in names if "{" in name or "}" in name]
    if bad:
        raise ValueError(f"an {what} port's name must not hold braces (they mark a wire's place in "
                         f"a name): {bad}")
    return names


def _labels(sig, base) -> list[str]:
    """Leaf labels of ``sig`` under ``base`` (a name, or one name per entry of a tuple)."""
    if isinstance(base, tuple):
        return [lab for s, b in zip(sig, base) for lab in _labels(s, b)]
    if sig is None:
        return [base]
    if isinstance(sig, DictSig):
        locals_ = [k.rsplit(".", 1)[-1] for k in sig.keys]
        short = locals_ if len(set(locals_)) == len(locals_) else list(sig.keys)
        out = []
        for (k, s), name in zip(sig.items(), short):
            out += _labels(s, base.format(name) if "{}" in base else (f"{base}.{k}" if base else k))
        return out
    return [lab for i, s in enumerate(sig) for lab in _labels(s, f"{base}{i}")]


def _lens_hint(f: Term, g: Term) -> str:
    if f.name.startswith("R(") and g.name.startswith("R("):
        return ("; R(f) is the reverse derivative map (params, x, dy) -> (dparams, dx), not a lens: "
                "compose lenses with pl.lens(f) >> pl.lens(g)")
    return ""


def _parts(t: Term, kind: type) -> list[Term]:
    """The terms of a chain ``a >> b >> c`` (``kind=Seq``) or ``a @ b @ c`` (``Par``), however it
    was bracketed (no recursion); a composite given its own name (``mlp``) is one part."""
    out, todo = [], [t]
    while todo:
        u = todo.pop()
        if isinstance(u._node, kind) and (u is t or not u._label):
            todo += reversed(u._node)
        else:
            out.append(u)
    return out


def _composite_name(t: Term) -> str:
    if t._node is None:
        return "term"
    op, parts = (">>", _parts(t, Seq)) if isinstance(t._node, Seq) else ("@", _parts(t, Par))
    if len(parts) > 8:
        return f"{_paren(parts[0], op)} {op} ... ({len(parts)} terms) {op} {_paren(parts[-1], op)}"
    return f" {op} ".join(_paren(p, op) for p in parts)


class Poly:
    """A term whose domain is fixed by what it is composed with (activations, pooling, losses).

    ``f >> pl.nn.relu()`` instantiates ``relu`` at ``f.cod``; ``poly.at(ty)``
    instantiates it explicitly; calling it on a wire inside ``@pl.para``
    instantiates it at the wire's type.

    Args:
        make: builds the term at a domain: ``make(ty)`` for a :class:`~paralens.Ty`.
        name: the name shown in errors, reprs and composites.
    """

    def __init__(self, make: Callable[[Ty], Term], name: str):
        self._make = make
        self.name = name

    def at(self, ty) -> Term:
        """The term on domain ``ty``.

        Args:
            ty: the domain: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a list of
                array types.

        Returns:
            The :class:`Term` this polymorphic term is at ``ty``.

        Raises:
            TypeError: ``ty`` is not an array type, a ``Ty`` or a list of them.
        """
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
    """``seq(f, g, h) == f >> g >> h``.

    Args:
        *terms: the terms, in the order they run.

    Returns:
        Their sequential composite (the term itself for one term).

    Raises:
        ValueError: no term is given.
        TypeError: an argument is not a term (a :class:`Poly` is typed by the term before it, so
            it may come second or later).
        CompositionError: a term's domain is not the codomain of the one before it.
    """
    if not terms:
        raise ValueError("seq needs at least one term")
    for i, t in enumerate(terms):
        if not isinstance(t, Term) and not (i and isinstance(t, Poly)):
            raise TypeError(f"seq takes terms (layers such as pl.nn.dense(4, 3)), got {type(t).__name__} "
                            f"{t!r:.60} as argument {i}")
    out = terms[0]
    for t in terms[1:]:
        out = out >> t
    return out


def as_term(x) -> Term:
    """``x`` as a term: a term itself, or the term of a lens, an optimizer or a learner
    (anything with an ``as_term()`` method). Backends and diagrams accept all of these.

    Args:
        x: a :class:`Term`, or an object with an ``as_term()`` method (a :class:`~paralens.Lens`,
            an optimizer, a learner).

    Returns:
        ``x`` itself if it is a term, else ``x.as_term()``.

    Raises:
        TypeError: ``x`` is a :class:`Poly` with no type yet, or is neither a term nor has an
            ``as_term()`` method.
    """
    if isinstance(x, Term):
        return x
    if isinstance(x, Poly):
        raise TypeError(f"{x.name} has no type yet: give it one with .at(pl.Array[...])")
    make = getattr(x, "as_term", None)
    if callable(make):
        return make()
    raise TypeError(f"expected a term, a lens, an optimizer or a learner, got {type(x).__name__}")


def _short(t: Term, n: int = 60) -> str:
    s = t.name
    return s if len(s) <= n else s[: n - 3] + "..."


def _paren(t: Term, op: str) -> str:
    s = _short(t, 200)
    other = "@" if op == ">>" else ">>"
    return f"({s})" if f" {other} " in s else s


def _instance_names(instances: Sequence[tuple[str, int]]) -> list[str]:
    """Unique readable names of layer instances (in forward order, each once): ``layer`` for a
    layer's only instance, ``layer{slot}`` for several; an instance whose name is already taken
    (``block1`` beside ``block`` slot 1) gets ``_k``."""
    slots: dict[str, set[int]] = {}
    for layer, slot in instances:
        slots.setdefault(layer, set()).add(slot)
    plain = [layer if len(slots[layer]) == 1 else f"{layer}{slot}" for layer, slot in instances]
    reserved = set(plain)
    taken: set[str] = set()
    out = []
    for name in plain:  # the first keeps its name
        if name in taken:
            k = 1
            while f"{name}_{k}" in taken or f"{name}_{k}" in reserved:
                k += 1
            name = f"{name}_{k}"
        taken.add(name)
        out.append(name)
    return out


def _param_names(params: Sequence[ParamSpec]) -> tuple[str, ...]:
    """Unique readable names ``instance.local`` (see :func:`_instance_names`)."""
    instances = list(dict.fromkeys((p.layer, p.slot) for p in params))
    prefix = dict(zip(instances, _instance_names(instances)))
    return tuple(f"{prefix[p.layer, p.slot]}.{p.local}" if p.local else prefix[p.layer, p.slot] for p in params)


# --------------------------------------------------------------------------- building


class Builder:
    """Builds a term equation by equation. Used by composition, the tracer, ``R`` and the
    assemblies of lenses and learners.

    ``group``, ``layer``, ``backward`` and ``role`` are given to every equation emitted
    while they are set (see :class:`Eqn`).
    """

    def __init__(self):
        self.wires: list[ArrayType] = []
        self.eqns: list[Eqn] = []
        self.params: list[ParamSpec] = []
        self.param_wires: list[int] = []
        self.group: tuple[str, ...] = ()
        self.layer: tuple[str, int] | None = None
        self.backward = False
        self.role: str | None = None
        self._slots: dict[str, int] = {}
        self._declared: set[tuple[str, int, str]] = set()

    def new_wire(self, t: ArrayType) -> int:
        """Make a fresh wire of type ``t`` (no box produces it yet).

        Args:
            t: the wire's :class:`~paralens.ArrayType`.

        Returns:
            The new wire's number.
        """
        self.wires.append(t)
        return len(self.wires) - 1

    def input(self, t: ArrayType) -> int:
        """A fresh input wire of type ``t``: pass it to :meth:`build` among the ``inputs``.

        Args:
            t: the wire's :class:`~paralens.ArrayType`.

        Returns:
            The new wire's number.
        """
        return self.new_wire(t)

    def inputs(self, types) -> Any:
        """Fresh input wires shaped like ``types`` (a tree of array types, e.g. ``term.input_types()``).

        Args:
            types: an :class:`~paralens.ArrayType`, or nested dicts and tuples (or lists) of them.

        Returns:
            Wire numbers in the same structure: an int for an array type, a dict or a tuple of them.
        """
        if isinstance(types, ArrayType):
            return self.input(types)
        if isinstance(types, dict):
            return {k: self.inputs(v) for k, v in types.items()}
        return tuple(self.inputs(v) for v in types)

    def type_of(self, w: int) -> ArrayType:
        """The type of wire ``w``.

        Args:
            w: a wire number of this builder.

        Returns:
            The wire's :class:`~paralens.ArrayType`.
        """
        return self.wires[w]

    def new_layer(self, layer: str) -> int:
        """Reserve the next instance number of ``layer`` in this term.

        Args:
            layer: the layer's name: any text but ``.``.

        Returns:
            The slot reserved: 0 for the first instance of ``layer``, then 1, 2, ...

        Raises:
            TypeError: ``layer`` is not a ``str``.
            ValueError: ``layer`` is empty, contains ``.`` or is not UTF-8 encodable text.
        """
        _check_name(layer, "layer")
        slot = self._slots.get(layer, 0)
        self._slots[layer] = slot + 1
        return slot

    def param(self, layer: str, slot: int, local: str, t: ArrayType, init: tuple = ("zeros",),
              hyper: bool = False, axes: tuple[str | None, ...] | None = None) -> int:
        """Declare a parameter wire of instance ``slot`` of ``layer``.

        Args:
            layer: the layer's name: any text but ``.``.
            slot: the layer instance (usually from :meth:`new_layer`).
            local: the parameter's name inside the layer (any text but ``.``); empty to name it by
                the layer alone.
            t: the parameter's :class:`~paralens.ArrayType` (batched for a label).
            init: the initialiser as ``pl.init`` makes it: a tuple of its name and arguments.
            hyper: whether it is a hyperparameter, which training does not update.
            axes: the logical name of each axis (see :class:`ParamSpec`), or ``None``.

        Returns:
            The parameter's wire number.

        Raises:
            TypeError: ``layer`` or ``local`` is not a ``str``, or ``axes`` is not a tuple of names.
            ValueError: ``layer`` or ``local`` is not a valid name (empty layer, a ``.``, not
                UTF-8 encodable), this parameter of this instance is already declared, or ``axes``
                does not name each of the parameter's axes.
        """
        _check_name(layer, "layer")
        if local:
            _check_name(local, "parameter")
        key = (layer, slot, local)
        if key in self._declared:
            raise ValueError(f"parameter {layer}{slot}.{local} declared twice")
        self._declared.add(key)
        w = self.new_wire(t)
        axes = check_axes(axes, t, f"{layer}.{local}")
        self.params.append(ParamSpec(layer, slot, local, t, tuple(init), hyper, axes))
        self.param_wires.append(w)
        return w

    def redeclare(self, spec: ParamSpec) -> int:
        """Declare a parameter like ``spec`` (same layer instance, type and initialiser).

        Args:
            spec: the :class:`ParamSpec` to copy, usually one of another term's ``params``.

        Returns:
            The new parameter's wire number.

        Raises:
            ValueError: that parameter is already declared in this builder.
        """
        return self.param(spec.layer, spec.slot, spec.local, spec.type, spec.init, spec.hyper, spec.axes)

    def emit(self, prim: Prim, ins: Sequence[int], **attrs) -> list[int]:
        """Apply ``prim`` with attributes ``attrs`` to wires ``ins``; returns the output wires.

        The equation gets the builder's current ``group``, ``layer``, ``backward`` and ``role``.

        Args:
            prim: the primitive box (a :class:`~paralens.prims.Prim`).
            ins: the wire numbers it reads.
            **attrs: the primitive's attributes (an einsum's ``spec``, a cast's ``dtype``).

        Returns:
            The numbers of its fresh output wires, typed by ``prim``'s type rule.

        Raises:
            TypeError: ``prim``'s type rule rejects the input types or attributes.
        """
        in_types = [self.wires[w] for w in ins]
        out_types = prim.type_rule(in_types, **attrs)
        outs = [self.new_wire(t) for t in out_types]
        self.eqns.append(Eqn(prim, tuple(sorted(attrs.items())), tuple(ins), tuple(outs), self.group, self.layer,
                             self.backward, self.role))
        return outs

    def emit1(self, prim: Prim, *ins: int, **attrs) -> int:
        """:meth:`emit` for a box with one output: that output's wire.

        Args:
            prim: the primitive box, with exactly one output.
            *ins: the wire numbers it reads.
            **attrs: the primitive's attributes.

        Returns:
            The number of its output wire.

        Raises:
            TypeError: ``prim``'s type rule rejects the input types or attributes.
            ValueError: the box has more or fewer than one output.
        """
        (out,) = self.emit(prim, ins, **attrs)
        return out

    def inline(self, term: Term, inputs: Sequence[int], params: dict[int, int] | None = None,
               group: str | None = None, backward: bool = False) -> list[int]:
        """Copy ``term``'s equations in, reading its inputs from ``inputs``; returns its outputs.

        Its parameters become fresh parameters of this builder (new instances,
        numbered after those already here), unless ``params`` maps its
        parameter wires to existing wires (reparametrisation, ``R``, assemblies:
        the same instances). ``group`` labels the copied equations (nested
        inside the current group); ``backward`` marks them as a backward part.

        Args:
            term: the term to copy in.
            inputs: one wire of this builder per wire of ``term.dom``, of the same type.
            params: ``{term's parameter wire: wire of this builder}`` for the parameters to bind;
                ``None`` or empty: all of them become fresh parameters.
            group: a name nesting the copied equations one group deeper; ``None``: the current group.
            backward: whether to mark the copied equations as a backward part.

        Returns:
            The wires of this builder that carry ``term``'s outputs, in ``term.cod`` order.

        Raises:
            CompositionError: the number of ``inputs`` is not that of ``term``'s domain, or an input
                wire's type is not the type ``term`` expects there.
        """
        if len(inputs) != len(term.dom):
            raise CompositionError(f"{_short(term)} takes {len(term.dom)} wires, got {len(inputs)}")
        for w, t in zip(inputs, term.dom):
            if self.wires[w] != t:
                raise CompositionError(
                    f"cannot apply {_short(term)} to a wire of type {self.wires[w]}: it expects {t}")
        outer = self.group
        if group is not None:
            self.group = outer + (group,)
        try:
            if params or backward or term._diagram is not None or term._node is None:
                return self._inline_flat(term, list(inputs), params or {}, backward)
            return self._inline_tree(term, list(inputs))
        finally:
            self.group = outer

    def _inline_tree(self, term: Term, inputs: list[int]) -> list[int]:
        """Inline a composite part by part, with an explicit stack (a chain of 10^4 compositions
        needs no recursion); each part not yet flattened is visited, never flattened itself."""
        results: list[list[int]] = []
        todo: list[tuple] = [("visit", term, inputs)]
        while todo:
            op = todo.pop()
            if op[0] == "visit":
                t, ins = op[1], op[2]
                node = t._node
                if t._diagram is not None or node is None:
                    results.append(self._inline_flat(t, ins, {}, False))
                elif isinstance(node, Seq):
                    todo += [("then", node.then), ("visit", node.first, ins)]
                else:
                    k = len(node.left.dom)
                    todo += [("join",), ("visit", node.right, ins[k:]), ("visit", node.left, ins[:k])]
            elif op[0] == "then":
                todo.append(("visit", op[1], results.pop()))
            else:
                right = results.pop()
                results.append(results.pop() + right)
        return results.pop()

    def _inline_flat(self, term: Term, inputs: list[int], params: dict[int, int], backward: bool) -> list[int]:
        d = term._flat()
        env: dict[int, int] = dict(zip(d.inputs, inputs))
        fresh = not params  # new instances: renumber layers after those already here
        offsets: dict[str, int] = {}
        last: dict[str, int] = {}
        for spec in d.params:
            last[spec.layer] = max(last.get(spec.layer, -1), spec.slot)
        if fresh:
            for e in d.eqns:
                if e.layer is not None:
                    last[e.layer[0]] = max(last.get(e.layer[0], -1), e.layer[1])
            offsets = {layer: self._slots.get(layer, 0) for layer in last}
        for spec, w in zip(d.params, d.param_wires):
            if w in params:
                env[w] = params[w]
                continue
            if spec.layer not in offsets:
                offsets[spec.layer] = self._slots.get(spec.layer, 0)
            env[w] = self.param(spec.layer, offsets[spec.layer] + spec.slot, spec.local, spec.type, spec.init,
                                spec.hyper, spec.axes)
        for layer, off in offsets.items():
            self._slots[layer] = max(self._slots.get(layer, 0), off + last[layer] + 1)
        wires, group, role, new = d.wires, self.group, self.role, self.new_wire
        append = self.eqns.append
        for e in d.eqns:
            try:
                ins = tuple(env[w] for w in e.ins)
            except KeyError:  # pragma: no cover - terms are closed by construction
                raise CompositionError(f"ill-formed term {_short(term)}") from None
            outs = []
            for w in e.outs:
                env[w] = nw = new(wires[w])
                outs.append(nw)
            layer = e.layer if not fresh or e.layer is None else (e.layer[0], offsets[e.layer[0]] + e.layer[1])
            append(Eqn(e.prim, e.attrs, ins, tuple(outs), group + e.group, layer, backward or e.backward,
                       role or e.role))
        return [env[w] for w in d.outputs]

    def build(self, inputs: Sequence[int], outputs: Sequence[int], *, in_sig=None, out_sig=None,
              name: str | None = None, dce: bool = True, arg_names: tuple | None = None) -> Term:
        """Close the diagram: drop boxes no output needs, number the wires that remain in the order
        they were made (when nothing is dropped the numbering is kept and no box is copied).

        Args:
            inputs: the term's input wires, in order (its domain).
            outputs: the term's output wires, in order (its codomain); a wire may appear twice.
            in_sig: the calling convention of the inputs (see :class:`Term`); ``None``: the default.
            out_sig: the calling convention of the outputs; ``None``: the default.
            name: the term's name (``"term"`` when not given).
            dce: whether to drop the boxes no output needs; ``False`` keeps every box emitted.
            arg_names: ``(input names, output names)`` for :meth:`Term.port_labels`.

        Returns:
            The closed :class:`Term`, with this builder's parameters.

        Raises:
            CompositionError: an output wire is neither an input, a parameter nor made by a box.
        """
        eqns = _live_eqns(self.eqns, outputs) if dce else self.eqns
        used = set(self.param_wires).union(inputs)
        for e in eqns:
            used.update(e.outs)
        if not used.issuperset(outputs):
            raise CompositionError("an output wire is neither an input nor produced by a box")
        if len(used) == len(self.wires):  # every wire made is used: keep the numbering
            wires, pw, ins, outs, new_eqns = (tuple(self.wires), tuple(self.param_wires), tuple(inputs),
                                              tuple(outputs), tuple(eqns))
        else:
            order = {w: i for i, w in enumerate(sorted(used))}
            wires = tuple(self.wires[w] for w in sorted(used))
            pw, ins, outs = (tuple(order[w] for w in ws) for ws in (self.param_wires, inputs, outputs))
            new_eqns = tuple(Eqn(e.prim, e.attrs, tuple(order[w] for w in e.ins), tuple(order[w] for w in e.outs),
                                 e.group, e.layer, e.backward, e.role) for e in eqns)  # the hot path: no replace()
        d = _Diagram(wires, tuple(self.params), pw, ins, outs, new_eqns)
        return Term(Ty(*(wires[i] for i in ins)), Ty(*(wires[i] for i in outs)), diagram=d, in_sig=in_sig,
                    out_sig=out_sig, name=name or "term", arg_names=arg_names)


def check_axes(axes, t: ArrayType, what: str) -> tuple[str | None, ...] | None:
    """``axes`` as a parameter of type ``t`` keeps them: ``None``, or a tuple of one logical name
    (a non-empty ``str``) or ``None`` per axis of ``t``."""
    if axes is None:
        return None
    if not isinstance(axes, (tuple, list)) or any(a is not None and type(a) is not str for a in axes):
        raise TypeError(f"{what}: axes must be a tuple of logical axis names (str or None), got {axes!r}")
    if len(axes) != t.ndim or any(a == "" for a in axes):
        raise ValueError(f"{what}: axes {tuple(axes)!r} must name each of the {t.ndim} axes of {t} "
                         f"(a non-empty str, or None for an axis without a name)")
    return tuple(axes)


def _check_name(name, what: str) -> None:
    """A layer or parameter name is any text but ``.`` (which joins them in parameter names):
    a ``str``, not empty, that UTF-8 can encode (no lone surrogate), since it becomes a key of the
    state that checkpoints and exports store. It is data: never code (see the NumPy backend)."""
    if type(name) is not str:
        raise TypeError(f"a {what} name must be a str, got {type(name).__name__}")
    if not name or "." in name:
        raise ValueError(f"a {what} name must be non-empty and cannot contain '.' (it joins layer and parameter "
                         f"names), got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a {what} name must be text UTF-8 can encode (no lone surrogates), got {name!r}") from None


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


def wiring(dom, outputs: Sequence[int], name: str) -> Term:
    """The term that sends input wire ``outputs[i]`` to output ``i``: copies, discards and
    permutations, with no boxes."""
    dom = as_ty(dom)
    b = Builder()
    xs = [b.input(t) for t in dom]
    return b.build(xs, [xs[i] for i in outputs], name=name)


def id(ty) -> Term:  # noqa: A001 - the categorical name is the public contract
    """The identity on ``ty``: ``pl.id(A) >> f == f == f >> pl.id(B)``.

    Args:
        ty: the type: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a list of array types.

    Returns:
        A term with no boxes and no parameters that sends each input wire to the same output.

    Raises:
        TypeError: ``ty`` is not an array type, a ``Ty`` or a list of them.
    """
    ty = as_ty(ty)
    return wiring(ty, range(len(ty)), f"id({_ty_str(ty)})")


def copy(ty, n: int = 2) -> Term:
    """Copy ``ty`` to ``n`` copies (``n = 2``: the diagonal). Its reverse derivative adds.

    Args:
        ty: the type to copy: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a list
            of array types.
        n: the number of copies (0 discards, 1 is the identity).

    Returns:
        A term ``ty -> ty @ ... @ ty`` (``n`` times) with no boxes.

    Raises:
        ValueError: ``n`` is not an int >= 0.
        TypeError: ``ty`` is not an array type, a ``Ty`` or a list of them.
    """
    ty = as_ty(ty)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"copy makes n >= 0 copies, got n={n!r} (n=0 is pl.discard)")
    return wiring(ty, list(range(len(ty))) * n, f"copy({_ty_str(ty)})")


def discard(ty) -> Term:
    """Discard ``ty`` (the map to the unit). Its reverse derivative is zero.

    Args:
        ty: the type to discard: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a
            list of array types.

    Returns:
        A term ``ty -> Ty()`` with no boxes.

    Raises:
        TypeError: ``ty`` is not an array type, a ``Ty`` or a list of them.
    """
    ty = as_ty(ty)
    return wiring(ty, [], f"discard({_ty_str(ty)})")


def swap(a, b) -> Term:
    """The symmetry ``a @ b -> b @ a``.

    Args:
        a: the type of the first wires: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty`
            or a list of array types.
        b: the type of the last wires, likewise.

    Returns:
        A term with no boxes that moves the ``b`` wires before the ``a`` wires.

    Raises:
        TypeError: ``a`` or ``b`` is not an array type, a ``Ty`` or a list of them.
    """
    a, b = as_ty(a), as_ty(b)
    k, n = len(a), len(a) + len(b)
    return wiring(a @ b, list(range(k, n)) + list(range(k)), f"swap({_ty_str(a)}, {_ty_str(b)})")


def _ty_str(ty: Ty) -> str:
    return " @ ".join(map(repr, ty)) if len(ty) else "Ty()"
