"""What the backends share: one interpreter loop and array rules written once.

A backend is a functor: it says what each primitive means (a *rule*) and the
loop below does composition (run the boxes in order, wires are variables).
Rules are written against a NumPy-like namespace ``xp`` (``numpy``,
``jax.numpy`` or an object-array shim for SymPy). A rule receives the types of
its inputs, so it knows which operands carry the leading batch axis.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from paralens.prims import parse_einsum, patches_shape
from paralens.terms import DictSig, Term
from paralens.types import ArrayType

Rule = Callable[..., Any]


def _ax(t: ArrayType, axes) -> tuple[int, ...]:
    return tuple(a + t.batched for a in axes)


def _batch_size(vals, types):
    for v, t in zip(vals, types):
        if t.batched:
            return v.shape[0]
    return None


def _align(xp, vals, types, out: ArrayType):
    """Put a batched operand's batch axis in front of the axes it is broadcast along:
    (B, *s) -> (B, 1, ..., 1, *s), so trailing-axis broadcasting lines up."""
    return [xp.reshape(v, (v.shape[0],) + (1,) * (out.ndim - t.ndim) + t.shape)
            if t.batched and t.ndim < out.ndim else v for v, t in zip(vals, types)]


def elementwise(fn):
    def rule(xp, ins, outs, *vals, **_):
        return fn(*_align(xp, vals, ins, outs[0]))
    return rule


def make_rules(xp, ops) -> dict[str, Rule]:
    """Rules for every primitive over namespace ``xp``; ``ops`` supplies the
    nonlinearities and the few operations that differ between libraries."""

    def full(t: ArrayType, batch, value):
        shape = ((batch,) if t.batched else ()) + t.shape
        return ops.full(shape, value, t.dtype)

    def broadcast(xp_, ins, outs, x, *, shape, dims):
        t = ins[0]
        new = [1] * len(shape)
        for i, d in enumerate(dims):
            new[d] = t.shape[i]
        lead = (x.shape[0],) if t.batched else ()
        return xp.broadcast_to(xp.reshape(x, lead + tuple(new)), lead + tuple(shape))

    def einsum(xp_, ins, outs, a, c, *, spec, batched_out=None):
        (sa, sc), so = parse_einsum(spec)
        z = next(ch for ch in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if ch not in spec)
        sa, sc = (z + sa if ins[0].batched else sa), (z + sc if ins[1].batched else sc)
        so = z + so if outs[0].batched else so
        return ops.einsum(f"{sa},{sc}->{so}", a, c)

    def patches(xp_, ins, outs, x, *, kh, kw, stride, padding):
        t = ins[0]
        x4 = x if t.batched else x[None]
        oh, ow = patches_shape(t.shape, kh, kw, stride, padding)[:2]
        (ph, pw), (sh, sw) = padding, stride
        xp4 = ops.pad(x4, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        rows = [xp.stack([xp4[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]
                          for j in range(kw)], axis=3) for i in range(kh)]
        out = xp.stack(rows, axis=3)  # (N, OH, OW, kh, kw, C)
        return out if t.batched else out[0]

    def patches_t(xp_, ins, outs, d, *, in_shape, kh, kw, stride, padding):
        t = ins[0]
        d6 = d if t.batched else d[None]
        h, w, c = in_shape
        (ph, pw), (sh, sw) = padding, stride
        oh, ow = t.shape[:2]
        acc = ops.full((d6.shape[0], h + 2 * ph, w + 2 * pw, c), 0, t.dtype)
        for i in range(kh):
            for j in range(kw):
                idx = (slice(None), slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw),
                       slice(None))
                acc = ops.add_at(acc, idx, d6[:, :, :, i, j, :])
        out = acc[:, ph: ph + h, pw: pw + w, :]
        return out if t.batched else out[0]

    def reduce_max(xp_, ins, outs, x, *, axes):
        return ops.max(x, _ax(ins[0], axes)) if axes else x

    def reduce_sum(xp_, ins, outs, x, *, axes):
        return xp.sum(x, axis=_ax(ins[0], axes)) if axes else x

    return {
        "neg": elementwise(lambda x: -x),
        "exp": elementwise(ops.exp),
        "log": elementwise(ops.log),
        "sqrt": elementwise(ops.sqrt),
        "tanh": elementwise(ops.tanh),
        "sigmoid": elementwise(ops.sigmoid),
        "softplus": elementwise(ops.softplus),
        "relu": elementwise(ops.relu),
        "step": elementwise(ops.step),
        "cos": elementwise(ops.cos),
        "sin": elementwise(ops.sin),
        "floor": elementwise(ops.floor),
        "stop_gradient": elementwise(ops.stop_gradient),
        "scale": lambda xp_, i, o, x, *, c: x * ops.const(c),
        "shift": lambda xp_, i, o, x, *, c: x + ops.const(c),
        "pow": lambda xp_, i, o, x, *, p: ops.pow(x, p),
        "add": elementwise(lambda x, y: x + y),
        "sub": elementwise(lambda x, y: x - y),
        "mul": elementwise(lambda x, y: x * y),
        "div": elementwise(lambda x, y: x / y),
        "power": elementwise(ops.power),
        "cast": lambda xp_, ins, outs, x, *, dtype: ops.cast(x, dtype),
        "greater": elementwise(ops.greater),
        "equal": elementwise(ops.equal),
        "where": elementwise(ops.where),
        "zeros": lambda xp_, ins, outs, *vals, types: [full(t, _batch_size(vals, ins), 0) for t in outs],
        "const": lambda xp_, ins, outs, *, value, shape, dtype: ops.constant(value, shape, dtype),
        "reduce_sum": reduce_sum,
        "reduce_max": reduce_max,
        "broadcast": broadcast,
        "reshape": lambda xp_, ins, outs, x, *, shape: xp.reshape(
            x, ((x.shape[0],) if ins[0].batched else ()) + tuple(shape)),
        "transpose": lambda xp_, ins, outs, x, *, perm: xp.transpose(
            x, ((0,) + tuple(p + 1 for p in perm)) if ins[0].batched else perm),
        "einsum": einsum,
        "softmax": lambda xp_, ins, outs, x, *, axis: ops.softmax(x, axis + ins[0].batched),
        "logsumexp": lambda xp_, ins, outs, x, *, axis: ops.logsumexp(x, axis + ins[0].batched),
        "patches": patches,
        "patches_t": patches_t,
        "foreign": lambda xp_, ins, outs, *vals, fn, types_out: list(fn(*vals)),
        "batch_sum": lambda xp_, ins, outs, x: xp.sum(x, axis=0),
        "batch_broadcast": lambda xp_, ins, outs, u, ref: xp.broadcast_to(u, (ref.shape[0],) + tuple(u.shape)),
        "batch_count": lambda xp_, ins, outs, ref: ops.full((), ref.shape[0], ins[0].dtype),
    }


class Interpreter:
    """Runs terms with a table of rules. ``convert`` turns user inputs into arrays,
    ``finish`` turns output arrays into what the user gets back."""

    def __init__(self, name: str, xp, rules: dict[str, Rule], convert: Callable, finish: Callable = lambda v: v,
                 loop: Callable | None = None):
        self.name = name
        self.xp = xp
        self.rules = {**rules, "scan": self._scan}
        self.convert = convert
        self.finish = finish
        self.loop = loop or python_loop

    def _scan(self, xp, ins, outs, *vals, body, length, n_carry, n_const, reverse):
        """Run a ``scan`` box: the body is a term, run by this same interpreter."""
        nc, na = n_carry, n_const
        carries, consts = list(vals[:nc]), list(vals[nc:nc + na])
        # stacked arrays are (batch, steps, ...) when batched: put the steps first
        xs = [xp.moveaxis(v, 1, 0) if t.batched else v for v, t in zip(vals[nc + na:], ins[nc + na:])]

        def step(c, x):
            out = self.run(body, list(c) + consts + list(x))
            return out[:nc], out[nc:]
        final, ys = self.loop(step, carries, xs, length, reverse)
        ys = [xp.moveaxis(v, 0, 1) if t.batched else v for v, t in zip(ys, outs[nc:])]
        return list(final) + list(ys)

    def run(self, term: Term, values: list) -> list:
        env: dict[int, Any] = dict(zip(term.param_wires + term.inputs, values))
        wires, rules, xp = term.wires, self.rules, self.xp
        for e in term.eqns:
            try:
                rule = rules[e.prim.name]
            except KeyError:
                raise NotImplementedError(f"the {self.name} backend has no rule for {e.prim.name}") from None
            out = rule(xp, [wires[w] for w in e.ins], [wires[w] for w in e.outs],
                       *(env[w] for w in e.ins), **dict(e.params))
            if len(e.outs) == 1 and not isinstance(out, list):
                env[e.outs[0]] = out
            else:
                env.update(zip(e.outs, out))
        return [env[w] for w in term.outputs]

    def compile(self, term: Term) -> Callable:
        """``fn(params, *args)`` following ``term``'s calling convention."""
        if not isinstance(term, Term):
            raise TypeError(f"compile takes a Term, got {term!r}; a Poly such as pl.nn.relu() "
                            "needs a type first: .at(pl.Array[...])")
        names = term.param_names
        ptypes = [s.type for s in term.params]
        leaf_types = [term.wires[w] for w in term.inputs]

        def fn(params, *args):
            if len(args) != len(term.in_sig):
                raise TypeError(f"{term.name} takes params and {len(term.in_sig)} argument(s), got {len(args)}")
            flat = _flatten_params(params, names)
            pos = len(flat)
            for a, sig in zip(args, term.in_sig):
                _flatten(a, sig, flat)
            if len(flat) - pos != len(leaf_types):  # pragma: no cover - guarded by _flatten
                raise TypeError(f"{term.name} expects {len(leaf_types)} input arrays")
            vals = [self.convert(v) for v in flat]
            _check(term, names, ptypes + leaf_types, vals)
            outs = [self.finish(v) for v in self.run(term, vals)]
            # a single parameter passed bare gets its cotangent back bare too
            bare = names if len(names) == 1 and not isinstance(params, dict) else None
            return _unflatten(term.out_sig, iter(outs), bare)

        fn.__name__ = f"{self.name}_compiled"
        fn.__doc__ = f"{term.name}: {term.dom} -> {term.cod}, compiled for {self.name}"
        fn.term = term
        return fn


def python_loop(step, carries, xs, length, reverse, dtype=None):
    """An eager loop with ``lax.scan``'s contract: ``(final carries, stacked per-step outputs)``."""
    import numpy as np

    ys_steps = []
    for k in (reversed(range(length)) if reverse else range(length)):
        carries, ys = step(carries, [x[k] for x in xs])
        ys_steps.append(ys)
    if reverse:
        ys_steps.reverse()
    n_y = len(ys_steps[0]) if ys_steps else 0
    return carries, [np.stack([np.asarray(s[i], dtype=dtype) for s in ys_steps]) for i in range(n_y)]


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


def _flatten(value, sig, out: list):
    if sig is None:
        out.append(value)
    elif isinstance(sig, DictSig):
        if not isinstance(value, dict) or set(value) != set(sig.keys):
            raise TypeError(f"expected a dict with keys {list(sig.keys)}, got {value!r:.80}")
        out.extend(value[k] for k in sig.keys)
    else:
        if not isinstance(value, (tuple, list)) or len(value) != len(sig):
            raise TypeError(f"expected a tuple of {len(sig)} values, got {type(value).__name__}")
        for v, s in zip(value, sig):
            _flatten(v, s, out)


def _unflatten(sig, it, bare=None):
    if sig is None:
        return next(it)
    if isinstance(sig, DictSig):
        if bare is not None and sig.keys == tuple(bare):
            return next(it)
        return {k: next(it) for k in sig.keys}
    return tuple(_unflatten(s, it, bare) for s in sig)


def _check(term: Term, names, types, vals):
    """Shapes must match the types. Batch sizes may differ between inputs: each batched
    wire's batch is its own (a training set and a validation set feed one bilevel term)."""
    for k, (t, v) in enumerate(zip(types, vals)):
        shape = tuple(getattr(v, "shape", ()))
        what = names[k] if k < len(names) else f"input {k - len(names)}"
        want = t.shape
        if t.batched:
            if len(shape) != len(want) + 1 or shape[1:] != want:
                raise ValueError(f"{term.name}: {what} should have shape (batch, {', '.join(map(str, want))})"
                                 f" for per-example type {t}, got {shape}")
        elif shape != want:
            raise ValueError(f"{term.name}: {what} should have shape {want} (no batch axis), got {shape}")


def fans(shape) -> tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)
