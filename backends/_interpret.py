"""What the array backends share: one interpreter loop, the rules every array library
computes alike, and the host-side helpers of :class:`ArrayBackend`.

A backend is a functor: its table ``rules`` says what each primitive means and
the loop below does composition (run the boxes in order, wires are
variables). An *elementwise* primitive's entry is one function of arrays
(``"exp": np.exp``); the interpreter lines up batched and unbatched operands
first. Any other entry is a rule ``rule(in_types, out_types, *arrays, **params)``:
it receives the wires' types, so it knows which operands carry the leading
batch axis. The rules that read the same in every library (broadcast,
reshape, convolution windows, ...) are written once here, over an :class:`ArrayLib`.
"""

from __future__ import annotations

import functools
import itertools
import math
import types
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from paralens.backends import Backend
from paralens.prims import PRIMS, dilated_size, parse_einsum
from paralens.terms import DictSig, Term, as_term, flatten, unflatten
from paralens.types import ArrayType

from ._codegen import fast_entry, fast_step, staged, straight_line
from .validate import cast, check_labels, check_same_batch, labels_check

__all__ = ["ArrayLib", "ArrayBackend", "python_loop", "fans"]


class ArrayLib(types.SimpleNamespace):
    """What the shared rules need of an array library: ``xp`` (a NumPy-like namespace) and
    ``full(shape, value, dtype)``, ``constant(flat_values, shape, dtype)``,
    ``einsum(spec, a, b)``, ``add_at(acc, index, values)`` (``acc[index] += values``
    with repeated indices adding up, as ``numpy.add.at``; it may update ``acc`` in place). Optionally
    ``sum(x, axis)``, ``x.sum(axis=axis)`` called the cheapest way (else the method); and for the
    window rules (convolution, pooling) ``pad_with(x, widths, fill)`` (else ``xp.pad``),
    ``lowest(dtype)`` (a max window's padding; else -inf), ``max_over(x, axis)`` (else the method)
    and ``first_max(x, axis)``, a one-hot of each first maximum along ``axis`` (else by ``argmax``)."""


#: einsum letters for a convolution's axes (g, i, o name its groups and channels)
_AXES = "abcdefhjklmn"


def _lowest(dtype):
    """The fill of a max window's padding: -inf, or an integer dtype's least value."""
    dtype = np.dtype(dtype)
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _first_max(x, axis):
    """A one-hot along ``axis`` of its first maximum (what XLA's select with ``>=`` keeps)."""
    first = np.expand_dims(x.argmax(axis=axis), axis)
    where = np.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return (first == where).astype(x.dtype)


def _ax(t: ArrayType, axes) -> tuple[int, ...]:
    return tuple(a + t.batched for a in axes)


def _batch_size(vals, types_):
    for v, t in zip(vals, types_):
        if t.batched:
            return v.shape[0]
    return None


def _array_shape(t: ArrayType) -> tuple:
    """A wire's array shape, ``None`` standing for the batch size (known when it runs)."""
    return ((None,) if t.batched else ()) + t.shape


def _align(xp, vals, ins, out: ArrayType):
    """Put a batched operand's batch axis in front of the axes it is broadcast along:
    (B, *s) -> (B, 1, ..., 1, *s), so trailing-axis broadcasting lines up."""
    return [xp.reshape(v, (v.shape[0],) + (1,) * (out.ndim - t.ndim) + t.shape)
            if t.batched and t.ndim < out.ndim else v for v, t in zip(vals, ins)]


def shared_rules(lib: ArrayLib) -> dict[str, Callable]:
    """The rules that read alike in every array library."""
    xp = lib.xp

    def full(t: ArrayType, batch, value):
        return lib.full(((batch,) if t.batched else ()) + t.shape, value, t.dtype)

    broadcast_to = getattr(lib, "broadcast_to", xp.broadcast_to)

    @staged
    def broadcast(ins, outs, *, shape, dims):
        t = ins[0]
        new = [1] * len(shape)
        for i, d in enumerate(dims):
            new[d] = t.shape[i]
        new, shape = tuple(new), tuple(shape)
        if not t.batched:
            return lambda x: broadcast_to(x.reshape(new), shape)

        def batched(x):
            lead = (x.shape[0],)
            return broadcast_to(x.reshape(lead + new), lead + shape)
        return batched

    total = getattr(lib, "sum", None)

    def summed(axis):
        if total is None:
            return lambda x: x.sum(axis=axis)  # the method: NumPy's xp.sum adds a layer of dispatch
        return lambda x: total(x, axis)

    @staged
    def reduce_sum(ins, outs, *, axes):
        return summed(_ax(ins[0], axes)) if axes else lambda x: x

    @staged
    def reshape(ins, outs, *, shape):
        shape = tuple(shape)
        if not ins[0].batched:
            return lambda x: xp.reshape(x, shape)
        return lambda x: xp.reshape(x, (x.shape[0],) + shape)

    @staged
    def transpose(ins, outs, *, perm):
        perm = ((0,) + tuple(p + 1 for p in perm)) if ins[0].batched else tuple(perm)
        return lambda x: xp.transpose(x, perm)

    @staged
    def batch_count(ins, outs):
        dtype = ins[0].dtype
        return lambda ref: lib.asarray(ref.shape[0], dtype)

    @staged
    def einsum(ins, outs, *, spec, batched_out=None):
        (sa, sc), so = parse_einsum(spec)
        z = next(ch for ch in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if ch not in spec)
        sa, sc = (z + sa if ins[0].batched else sa), (z + sc if ins[1].batched else sc)
        so = z + so if outs[0].batched else so
        full = f"{sa},{sc}->{so}"
        # a library may plan the contraction once for the wires' shapes (NumPy: one matmul)
        plan = getattr(lib, "contraction", None)
        if plan is None:
            return functools.partial(lib.einsum, full)
        return plan(full, _array_shape(ins[0]), _array_shape(ins[1]))

    @staged
    def const(ins, outs, *, value, shape, dtype):
        def make():
            return lib.constant(value, shape, dtype)
        make.constant = True  # straight-line code computes it once
        return make

    # ---------------------------------------------------------------- convolution and windows
    # The array libraries without a convolution of their own (NumPy, SymPy) take windows: each
    # output position's window of the (dilated, padded) input, stacked on a new axis, then one
    # contraction with the kernel (im2col), or one reduction over the window. Arrays here have a
    # leading batch axis (an unbatched operand goes through as a batch of one).
    pad_with = getattr(lib, "pad_with", None) or (lambda x, widths, fill: xp.pad(x, widths, constant_values=fill))
    max_over = getattr(lib, "max_over", None) or (lambda x, axis: x.max(axis=axis))
    first_max = getattr(lib, "first_max", None) or _first_max

    def dilate_pad(x, base, padding, fill):
        """``x`` (B, *S, C) with ``base - 1`` fills between elements of each spatial axis, then
        padded by ``(lo, hi)`` of ``fill`` (a negative pad crops)."""
        n = len(base)
        if any(d > 1 for d in base):
            shape = (x.shape[0],) + tuple(dilated_size(s, d) for s, d in zip(x.shape[1:1 + n], base)) + x.shape[-1:]
            out = lib.full(shape, fill, x.dtype)
            out[(slice(None),) + tuple(slice(None, None, d) for d in base) + (slice(None),)] = x
            x = out
        x = x[(slice(None),) + tuple(slice(max(-lo, 0), x.shape[1 + i] - max(-hi, 0))
                                     for i, (lo, hi) in enumerate(padding)) + (slice(None),)]
        widths = ((0, 0),) + tuple((max(lo, 0), max(hi, 0)) for lo, hi in padding) + ((0, 0),)
        return pad_with(x, widths, fill) if any(w != (0, 0) for w in widths) else x

    def windows(x, window, strides, padding, base, dilation, fill):
        """(B, *S', P, C): the window of each output position, its P = prod(window) elements in
        row-major order."""
        n = len(window)
        x = dilate_pad(x, base, padding, fill)
        out = [(x.shape[1 + i] - dilated_size(window[i], dilation[i])) // strides[i] + 1 for i in range(n)]
        parts = [x[(slice(None),) + tuple(slice(k[i] * dilation[i], k[i] * dilation[i] + strides[i] * (out[i] - 1) + 1,
                                                strides[i]) for i in range(n)) + (slice(None),)]
                 for k in itertools.product(*map(range, window))]
        return xp.stack(parts, axis=1 + n)

    def windows_t(v, in_shape, window, strides, padding):
        """The transpose of :func:`windows` without dilation: ``v`` (B, *S', P, C) added back
        into zeros of (B, *in_shape, C), overlapping windows adding up."""
        n = len(window)
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(in_shape, padding))
        acc = lib.full((v.shape[0],) + padded + v.shape[-1:], 0, v.dtype)
        out = v.shape[1:1 + n]
        for p, k in enumerate(itertools.product(*map(range, window))):
            idx = (slice(None),) + tuple(slice(k[i], k[i] + strides[i] * (out[i] - 1) + 1, strides[i])
                                         for i in range(n)) + (slice(None),)
            acc = lib.add_at(acc, idx, v[(slice(None),) * (1 + n) + (p,)])
        return acc[(slice(None),) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(in_shape, padding))]

    def batch_of_one(f):
        """``f`` on arrays with a leading batch axis, applied to unbatched ones as a batch of one."""
        def rule(ins, outs, *vals, **attrs):
            if ins[0].batched:
                return f(*vals, **attrs)
            return f(*(v[None] if t.batched == ins[0].batched else v for v, t in zip(vals, ins)), **attrs)[0]
        return rule

    def conv(ins, outs, x, w, *, strides, padding, lhs_dilation, rhs_dilation, groups):
        n = len(strides)
        xb = x if ins[0].batched else x[None]
        p = windows(xb, w.shape[:n], strides, padding, lhs_dilation, rhs_dilation, 0)  # (B, *S', P, C)
        cin_g, cout = w.shape[n], w.shape[n + 1]
        p = xp.reshape(p, p.shape[:n + 2] + (groups, cin_g))
        k = xp.reshape(w, (-1, cin_g, groups, cout // groups))
        out = lib.einsum(f"{_AXES[:n + 2]}gi,{_AXES[n + 1]}igo->{_AXES[:n + 1]}go", p, k)
        out = xp.reshape(out, out.shape[:n + 1] + (cout,))
        return out if ins[0].batched else out[0]

    def conv_weight(ins, outs, x, dy, *, kernel, strides, padding, lhs_dilation, rhs_dilation, groups):
        n = len(kernel)
        if not ins[0].batched:
            x, dy = x[None], dy[None]
        p = windows(x, kernel, strides, padding, lhs_dilation, rhs_dilation, 0)  # (B, *S', P, C)
        cin, cout = x.shape[-1], dy.shape[-1]
        p = xp.reshape(p, p.shape[:n + 2] + (groups, cin // groups))
        d = xp.reshape(dy, dy.shape[:n + 1] + (groups, cout // groups))
        out = lib.einsum(f"{_AXES[:n + 2]}gi,{_AXES[:n + 1]}go->{_AXES[n + 1]}igo", p, d)
        return xp.reshape(out, tuple(kernel) + (cin // groups, cout))

    def lowest(x):
        return lib.lowest(x.dtype) if hasattr(lib, "lowest") else _lowest(x.dtype)

    @batch_of_one
    def window_max(x, *, window, strides, padding):
        n = len(window)
        return max_over(windows(x, window, strides, padding, (1,) * n, (1,) * n, lowest(x)), 1 + n)

    @batch_of_one
    def window_sum(x, *, window, strides, padding, base_dilation, window_dilation):
        n = len(window)
        return summed(1 + n)(windows(x, window, strides, padding, base_dilation, window_dilation, 0))

    def chosen(operand, window, strides, padding):
        """A one-hot of each window's first maximum: (B, *S', P, C)."""
        n = len(window)
        return first_max(windows(operand, window, strides, padding, (1,) * n, (1,) * n, lowest(operand)), 1 + n)

    @batch_of_one
    def select_and_scatter_add(source, operand, *, window, strides, padding):
        n = len(window)
        picks = chosen(operand, window, strides, padding) * xp.expand_dims(source, 1 + n)
        return windows_t(picks, operand.shape[1:1 + n], window, strides, padding)

    @batch_of_one
    def select_and_gather_add(tangent, operand, *, window, strides, padding):
        n = len(window)
        picks = chosen(operand, window, strides, padding)
        return summed(1 + n)(picks * windows(tangent, window, strides, padding, (1,) * n, (1,) * n, 0))

    def rows_of(n: int, idx: ArrayType):
        """Example numbers shaped to index a batched array alongside ``idx`` (one per example)."""
        return xp.reshape(xp.arange(n), (n,) + (1,) * idx.ndim)

    def indices(idx, t: ArrayType):
        return xp.asarray(idx).astype(t.dtype)  # SymPy holds indices as Integer objects

    def take(ins, outs, table, idx):
        idx = indices(idx, ins[1])
        return table[rows_of(table.shape[0], ins[1]), idx] if ins[0].batched else table[idx]

    def scatter_add(ins, outs, v, idx, *, size, batched_out=None):
        tv, ti = ins
        idx = indices(idx, ti)
        n = _batch_size((v, idx), ins)
        acc = full(outs[0], n, 0)
        if outs[0].batched:
            return lib.add_at(acc, (rows_of(n, ti), idx), v)
        if tv.batched and not ti.batched:  # every example's rows go to the same table
            idx = xp.broadcast_to(idx, (n,) + ti.shape)
        return lib.add_at(acc, idx, v)

    return {
        "zeros": lambda ins, outs, *vals, types: [full(t, _batch_size(vals, ins), 0) for t in outs],
        "const": const,
        "reduce_sum": reduce_sum,
        "broadcast": broadcast,
        "reshape": reshape,
        "transpose": transpose,
        "einsum": einsum,
        "conv": conv,
        "conv_weight": conv_weight,
        "rev": staged(lambda ins, outs, *, axes: functools.partial(xp.flip, axis=_ax(ins[0], axes))),
        "window_max": window_max,
        "window_sum": window_sum,
        "select_and_scatter_add": select_and_scatter_add,
        "select_and_gather_add": select_and_gather_add,
        "take": take,
        "scatter_add": scatter_add,
        "foreign": lambda ins, outs, *vals, fn, types_out: list(fn(*vals)),
        "batch_sum": staged(lambda ins, outs: summed(0)),
        "batch_broadcast": staged(lambda ins, outs: lambda u, ref: broadcast_to(u, (ref.shape[0],) + u.shape)),
        "batch_count": batch_count,
        "optimization_barrier": lambda ins, outs, *vals: list(vals),
    }


def _aligned_rule(fn: Callable, xp) -> Callable:
    """The rule of an elementwise entry ``fn``: a function of arrays, or one made with :func:`staged`
    when it depends on the wires' types (a mask's dtype); its operands are lined up first."""
    typed = getattr(fn, "stage", None)

    def rule(ins, outs, *vals, **params):
        vals = _align(xp, vals, ins, outs[0])
        return fn(*vals, **params) if typed is None else fn(ins, outs, *vals, **params)

    def stage(ins, outs, **params):
        """``fn`` with its parameters bound; batched operands are lined up as :func:`_align` does,
        by indexing with the new axes fixed now."""
        out = outs[0]
        index = [(slice(None),) + (None,) * (out.ndim - t.ndim) if t.batched and t.ndim < out.ndim else None
                 for t in ins]
        if typed is not None:
            bound = typed(ins, outs, **params)
        else:
            bound = functools.partial(fn, **params) if params else fn
        if not any(i is not None for i in index):
            return bound

        def aligned(*vals):
            return bound(*[v if i is None else v[i] for v, i in zip(vals, index)])
        return aligned
    rule.stage, rule.fn = stage, fn
    rule.__name__ = getattr(fn, "__name__", "elementwise")
    return rule


def python_loop(step, carries, xs, length, reverse, dtype=None):
    """An eager loop with ``lax.scan``'s contract: ``(final carries, stacked per-step outputs)``."""
    ys_steps = []
    for k in (reversed(range(length)) if reverse else range(length)):
        carries, ys = step(carries, [x[k] for x in xs])
        ys_steps.append(ys)
    if reverse:
        ys_steps.reverse()
    n_y = len(ys_steps[0]) if ys_steps else 0
    return carries, [np.stack([np.asarray(s[i], dtype=dtype) for s in ys_steps]) for i in range(n_y)]


def fans(shape) -> tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def sample(spec_init: tuple, t: ArrayType, rng: np.random.Generator) -> np.ndarray:
    """Draw one parameter from its initialiser descriptor (a NumPy array of its type)."""
    kind, *args = spec_init
    if t.dtype not in ("float16", "bfloat16", "float32", "float64") and kind not in ("zeros", "ones", "const", "bits"):
        raise ValueError(f"the initialiser {kind} draws real numbers, which a {t.dtype} parameter would round to "
                         "zeros; give it a floating-point dtype, or an initialiser of zeros, ones or a constant")
    fan_in, fan_out = fans(t.shape)
    if kind == "zeros":
        out = np.zeros(t.shape)
    elif kind == "ones":
        out = np.ones(t.shape)
    elif kind == "const":
        out = np.full(t.shape, args[0])
    elif kind == "bits":  # random bits, each set with probability args[0]
        out = rng.random(t.shape) < args[0]
    elif kind == "normal":
        out = rng.normal(0.0, args[0], t.shape)
    elif kind == "uniform":
        out = rng.uniform(args[0], args[1], t.shape)
    elif kind == "glorot_uniform":
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        out = rng.uniform(-lim, lim, t.shape)
    elif kind == "glorot_normal":
        out = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), t.shape)
    elif kind == "he_normal":
        out = rng.normal(0.0, np.sqrt(2.0 / fan_in), t.shape)
    elif kind == "he_uniform":
        lim = np.sqrt(6.0 / fan_in)
        out = rng.uniform(-lim, lim, t.shape)
    else:
        raise ValueError(f"unknown initialiser {spec_init!r}")
    return np.asarray(out, dtype=t.dtype)


def _unchanged(v):
    return v


class ArrayBackend(Backend):
    """A backend that runs terms box by box on the arrays of one library.

    ``rules`` is its one table: an entry per primitive that the shared rules do
    not cover (the elementwise primitives, and the few whose stable form
    differs between libraries). An elementwise primitive with no entry takes the
    function ``library(prim)`` gives, the array library's function of the same
    name (``tan`` is ``numpy.tan``); :meth:`rule` looks both up. ``convert`` turns
    user inputs into arrays, ``finish`` turns output arrays into what the user
    gets back.
    """

    #: whether bool wires mean bits of Z2 here (+ is XOR, * is AND); elsewhere arithmetic on them is refused
    bits = False
    #: ``cast(value, type, what)``: user data to the wire's dtype, refusing what cannot be (validate.cast)
    cast = staticmethod(cast)
    #: whether :meth:`compile` writes a term out as straight-line Python (:meth:`straight_line`)
    #: instead of running it through the interpreter loop :meth:`run` on every call
    generates_code = False
    #: the array class whose values of the wire's dtype :meth:`compile`'s fast entry passes as they are
    #: (cast and convert leave them alone); ``None``: every call takes the general path
    native: type | None = None
    #: ``native_scalar(dtype)``: the scalar class a 0-d result of ``dtype`` comes back as, which
    #: the fast entry also passes as it is on a 0-d wire (``None``: none)
    native_scalar: Callable | None = None

    def __init__(self, name: str, lib: ArrayLib, rules: dict[str, Callable], *, convert: Callable,
                 finish: Callable = _unchanged, loop: Callable = python_loop, wrap: Callable | None = None,
                 library: Callable | None = None):
        self.name = name
        self.library = library
        self.lib = lib
        self.convert = convert
        self.finish = finish
        self.loop = loop
        self.wrap = wrap  # applied to every box's outputs, for libraries whose 0-d results are not arrays
        table = {**shared_rules(lib), **rules}
        unknown = sorted(set(table) - set(PRIMS) - {"scan"})
        if unknown:
            raise ValueError(f"the {name} backend has rules for unknown primitives {unknown}")
        self.rules = {k: (_aligned_rule(fn, lib.xp) if k in PRIMS and PRIMS[k].elementwise else fn)
                      for k, fn in table.items()}
        self.rules["scan"] = self._scan_rule()

    def rule(self, name: str) -> Callable:
        """The rule of primitive ``name``: this backend's table entry, or for an elementwise
        primitive without one the library's function of that name (kept in the table)."""
        rule = self.rules.get(name)
        if rule is None:
            prim = PRIMS.get(name)
            fn = self.library(prim) if self.library is not None and prim is not None and prim.elementwise else None
            if fn is None:
                raise NotImplementedError(f"the {self.name} backend has no rule for {name}")
            rule = self.rules[name] = _aligned_rule(fn, self.lib.xp)
        return rule

    # ---------------------------------------------------------------- running terms
    def _scan_rule(self) -> Callable:
        """The ``scan`` box's rule: the body is a term, run by this same interpreter; staged,
        the body is written out too (when this backend writes code)."""
        def rule(ins, outs, *vals, body, **params):
            return self._scan(lambda v: self.run(body, v), ins, outs, vals, **params)

        def stage(ins, outs, *, body, **params):
            run = self.evaluator(body)
            if len(outs) == 1:  # a stage's function answers one output bare
                return lambda *vals: self._scan(run, ins, outs, vals, **params)[0]
            return lambda *vals: self._scan(run, ins, outs, vals, **params)
        rule.stage = stage
        return rule

    def _scan(self, run, ins, outs, vals, *, length, n_carry, n_const, reverse):
        xp = self.lib.xp
        nc, na = n_carry, n_const
        carries, consts = list(vals[:nc]), list(vals[nc:nc + na])
        # stacked arrays are (batch, steps, ...) when batched: put the steps first
        xs = [xp.moveaxis(v, 1, 0) if t.batched else v for v, t in zip(vals[nc + na:], ins[nc + na:])]

        def step(c, x):
            out = run(list(c) + consts + list(x))
            return out[:nc], out[nc:]
        final, ys = self.loop(step, carries, xs, length, reverse)
        ys = [xp.moveaxis(v, 0, 1) if t.batched else v for v, t in zip(ys, outs[nc:])]
        return list(final) + list(ys)

    def run(self, term: Term, values: list) -> list:
        """Evaluate ``term`` on flat values (parameters first, then inputs); returns its flat outputs."""
        env = self._environment(term, values)
        return [env[w] for w in term.outputs]

    def _environment(self, term: Term, values: list) -> dict[int, Any]:
        """Every wire's value, the term evaluated box by box on flat values (parameters, then inputs)."""
        env: dict[int, Any] = dict(zip(term.param_wires + term.inputs, values))
        wires, wrap = term.wires, self.wrap
        for e in term.eqns:
            out = self.rule(e.prim.name)([wires[w] for w in e.ins], [wires[w] for w in e.outs],
                                         *(env[w] for w in e.ins), **e.kwargs)
            if len(e.outs) == 1 and not isinstance(out, list):
                out = [out]
            if wrap is not None:
                out = [wrap(o) for o in out]
            env.update(zip(e.outs, out))
        return env

    def wire_values(self, term, params, *args) -> dict[int, Any]:
        """The value of every wire of ``term`` (by wire number) on these arguments, evaluated box by
        box: what :func:`paralens.draw` writes on the wires with ``values=``.

        Args:
            term: a term, or a lens, optimizer or learner.
            params: the parameters, as :meth:`compile`'s function takes them.
            *args: the term's arguments, as :meth:`compile`'s function takes them.

        Returns:
            ``{wire: value}`` for every wire: parameters, inputs and each box's outputs.

        Raises:
            TypeError, ValueError: arguments the compiled function would refuse.
        """
        term = as_term(term)
        if not self.bits:
            _refuse_bit_arithmetic(term, self.name)
        names, all_types = term.param_names, [s.type for s in term.params] + list(term.dom)
        vals = self._values(term, names, all_types, tuple(term.in_sig), params, args)
        return {w: self.finish(v) for w, v in self._environment(term, vals).items()}

    def _values(self, term: Term, names, all_types, sig, params, args) -> list:
        """The flat input values of a call ``fn(params, *args)``: flattened by the calling
        convention, cast to the wires' types and checked (what :meth:`compile`'s function runs on)."""
        if len(args) != len(sig):
            raise TypeError(f"{term.name} takes params and {len(sig)} argument(s), got {len(args)}")
        flat = _flatten_params(params, names)
        flatten(args, sig, flat, "the arguments")
        vals = [self.convert(self.cast(v, t, _what(names, k))) for k, (v, t) in enumerate(zip(flat, all_types))]
        _check(term, names, all_types, vals)
        return vals

    def straight_line(self, term: Term) -> Callable[..., list]:
        """``fn(*values) -> outputs``: what :meth:`run` computes, written out once as one Python
        function with a line per box (its text is ``fn.source``; see ``backends/_codegen.py``)."""
        return straight_line(self, as_term(term))

    def evaluator(self, term: Term) -> Callable[[list], list]:
        """``evaluate(values) -> outputs`` for ``term``: its straight-line function when this backend
        writes code, else the interpreter."""
        if not self.generates_code:
            return lambda values: self.run(term, values)
        fn = self.straight_line(term)
        evaluate = lambda values: fn(*values)  # noqa: E731
        evaluate.source, evaluate.fn = fn.source, fn
        return evaluate

    def compile(self, term, **options) -> Callable:
        """``fn(params, *args)`` following ``term``'s calling convention (params: a dict by name,
        or the one parameter's array bare). Where this backend writes code and has a
        ``native`` array class, ``fn`` is itself generated: the common call runs the
        straight-line body inline (``fn.entry_source``), any other goes the general way."""
        if options:
            raise TypeError(f"the {self.name} backend takes no options here, got {sorted(options)}")
        term = as_term(term)
        if not self.bits:
            _refuse_bit_arithmetic(term, self.name)
        names = term.param_names
        all_types = [s.type for s in term.params] + list(term.dom)
        sig = tuple(term.in_sig)
        evaluate = self.evaluator(term)

        def fn(params, *args):
            outs = [self.finish(v) for v in evaluate(self._values(term, names, all_types, sig, params, args))]
            # a single parameter passed bare gets its cotangent back bare too
            bare = names if len(names) == 1 and not isinstance(params, dict) else None
            return _unflatten(term.out_sig, iter(outs), bare)

        if self._fast:
            fn = fast_entry(self, term, fn, **self._entry_options(term))
        fn.__name__ = f"{self.name}_compiled"
        fn.__doc__ = f"{term.name}: {term.dom} -> {term.cod}, compiled for {self.name}"
        fn.term = term
        fn.source = getattr(evaluate, "source", None)  # the straight-line code, where there is one
        return fn

    @property
    def _fast(self) -> bool:
        """Whether compiled functions get a generated entry (``_codegen.fast_entry``)."""
        return self.native is not None and self.generates_code

    def _entry_options(self, term: Term) -> dict:
        names = term.param_names
        return {"whats": [_what(names, k) for k in range(len(names) + len(term.dom))],
                "finish": None if self.finish is _unchanged else self.finish}

    # ---------------------------------------------------------------- the rest of the protocol
    def init(self, term, seed: int = 0) -> dict:
        """Initial parameters; each draw depends on ``seed`` and the parameter's name only, so
        adding a layer does not change the others' initial values. Labels are data, not drawn."""
        term = as_term(term)
        out = {}
        for name, spec in zip(term.param_names, term.params):
            if spec.type.batched:
                continue
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            out[name] = self.array(sample(spec.init, spec.type, rng), spec.type)
        return out

    def array(self, value, type: ArrayType):
        """``value`` as an array of ``type`` (a batched type keeps the batch axis ``value`` has).

        Args:
            value: a number (filling the array), or an array of the type's shape.
            type: the wire's type.

        Returns:
            The array.

        Raises:
            ValueError: ``value`` is an array of another shape: it is never broadcast (a ``(3,)``
                array would otherwise fill a ``(4, 3)`` weight row by row, silently).
        """
        v = self.lib.asarray(value, type.dtype)
        shape = tuple(v.shape)
        if shape == type.shape or (type.batched and shape[1:] == type.shape and len(shape) == type.ndim + 1):
            return v
        if shape:
            raise ValueError(f"an array of shape {shape} where the type {type} needs shape "
                             f"{'(batch, ' if type.batched else '('}{', '.join(map(str, type.shape))}"
                             f"{',' if len(type.shape) == 1 and not type.batched else ''}) (or one number to fill it)")
        return self.lib.full(type.shape, v, type.dtype)

    #: options of :meth:`compile_step` that :meth:`fit` uses
    fit_options: dict = {}

    def compile_step(self, step, *, scan: bool = False, classes: int | None = None, **options) -> Callable:
        """``step(state, x, y) -> (state, loss)``, eager; with ``scan=True`` it takes stacks of
        batches ``(xs, ys)`` and returns the per-step losses. ``classes``: the labels are class
        indices, checked to be in range. ``options`` go to :meth:`compile`. Where compiled
        functions get a generated entry, so does the one-step form with one ``x`` and one ``y``
        (``_codegen.fast_step``): the state is read and rebuilt in it."""
        check = labels_check(classes)
        term = as_term(step)
        fn = self.compile(term, **options)
        keys = term.in_sig[0].keys
        same_batch = batch_check(term, scan)

        def run(state, x, y):
            new, loss = fn({}, {k: state[k] for k in keys}, x, y)
            return {**state, **new}, loss

        def one(state, x, y):
            same_batch(x, y)
            if check is not None:
                check(x, y)
            return run(state, x, y)

        def many(state, xs, ys):
            same_batch(xs, ys)
            if check is not None:
                check(xs, ys)
            losses = []
            for x, y in zip(xs, ys):
                state, loss = run(state, x, y)
                losses.append(loss)
            return state, np.asarray(losses)
        if scan:
            return many
        if self._fast and term.in_sig[1:] == (None, None):
            return fast_step(self, term, one, labels=check, classes=classes, **self._entry_options(term))
        return one

    def fit(self, step: Term, state, x, y, **options):
        """Shuffle, batch and run the step's scanned form (see :func:`paralens.backends.fitting.fit`)."""
        from .fitting import fit
        return fit(self, step, state, x, y, **options)

    def accuracy(self, predictions, labels, x=None) -> float:
        """Fraction of examples whose arg-max prediction equals the label.

        Args:
            predictions: the model's outputs, ``(n, ..., classes)``.
            labels: class indices of the predictions' leading shape ``(n, ...)`` (integers, or
                floats holding integers), or one-hot rows of the predictions' shape.
            x: the inputs, checked to be as many as the labels.

        Returns:
            The accuracy, in [0, 1].

        Raises:
            ValueError: the labels are of neither shape (``y[:, None]`` for ``y``), hold fractional
                values, are out of range, or are not as many as the inputs.
            TypeError: the labels are not numbers.
        """
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        check_same_batch({"x": predictions if x is None else x, "labels": labels})
        classes = predictions.shape[-1]
        if labels.shape == predictions.shape[:-1]:
            if labels.dtype.kind == "f":
                if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
                    raise ValueError("the labels are fractional or not finite: class labels are integers "
                                     f"0..{classes - 1} (or one-hot rows of the predictions' shape "
                                     f"{predictions.shape})")
                labels = labels.astype(np.int64)
            elif labels.dtype.kind not in "iub":
                raise TypeError(f"the labels have dtype {labels.dtype}: class labels are integers 0..{classes - 1}")
            check_labels(labels, classes, "the labels")
        elif labels.shape == predictions.shape:
            labels = np.argmax(labels, axis=-1)
        else:
            raise ValueError(f"labels of shape {labels.shape} for predictions of shape {predictions.shape}: "
                             f"expected class indices of shape {predictions.shape[:-1]} or one-hot rows of shape "
                             f"{predictions.shape}")
        return float(np.mean(np.argmax(predictions, axis=-1) == labels))


#: Primitives whose meaning on bits is Z2's (XOR for +, AND for *), not the array library's (OR for +).
BIT_ARITHMETIC = {"add", "sub", "mul", "neg", "einsum", "reduce_sum", "batch_sum", "scale", "shift", "div", "power",
                  "pow"}


def _refuse_bit_arithmetic(term: Term, backend: str):
    for e in term.eqns:
        if e.prim.name in BIT_ARITHMETIC and any(term.wires[w].dtype == "bool" for w in e.ins):
            raise TypeError(f"{term.name}: {e.prim.name} on bool wires means Z2 arithmetic (+ is XOR, * is AND), "
                            f"which the {backend} backend does not compute (it would take + for OR); run this "
                            "circuit with paralens.backends.get('z2')")


def _flatten_params(params, names) -> list:
    if len(names) == 1 and not isinstance(params, dict):
        return [params]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict with keys {list(names)}, got {type(params).__name__}")
    missing = [n for n in names if n not in params]
    extra = [k for k in params if k not in names]
    if missing or extra:
        raise KeyError(f"params do not match the term: missing {missing}, unexpected {extra}")
    return [params[n] for n in names]


def _unflatten(sig, it, bare=None):
    if isinstance(sig, DictSig) and bare is not None and sig.keys == tuple(bare) and sig.values is None:
        return next(it)
    if isinstance(sig, tuple):
        return tuple(_unflatten(s, it, bare) for s in sig)
    return unflatten(sig, it)


def batch_check(step: Term, scan: bool) -> Callable:
    """``check(x, y)``: a step's inputs and labels share a batch (and, scanned, a number of steps),
    so their leading sizes must agree."""
    lead = 2 if scan else 1
    _, x_types, y_types = step.input_types()
    batched = [t.batched for t in _as_list(x_types) + _as_list(y_types)]

    def check(x, y):
        sizes = [tuple(getattr(v, "shape", ())[:lead]) for v, b in zip(_as_list(x) + _as_list(y), batched) if b]
        if len(set(sizes)) > 1:
            raise ValueError(f"{step.name}: the inputs and labels of a step share a batch, but their leading sizes "
                             f"differ: {sizes} (x first, then y); give one label per example")
    return check


def _as_list(v) -> list:
    return list(v) if isinstance(v, (tuple, list)) else [v]


def _what(names, k: int) -> str:
    return names[k] if k < len(names) else f"input {k - len(names)}"


def _check(term: Term, names, types_, vals):
    """Shapes must match the types. Batch sizes may differ between inputs: each batched
    wire's batch is its own (a training set and a validation set feed one bilevel term)."""
    for k, (t, v) in enumerate(zip(types_, vals)):
        shape = tuple(getattr(v, "shape", ()))
        what = _what(names, k)
        want = t.shape
        if t.batched:
            if len(shape) != len(want) + 1 or shape[1:] != want:
                raise ValueError(f"{term.name}: {what} should have shape (batch, {', '.join(map(str, want))})"
                                 f" for per-example type {t}, got {shape}")
        elif shape != want:
            raise ValueError(f"{term.name}: {what} should have shape {want} (no batch axis), got {shape}")
