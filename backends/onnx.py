"""The ONNX backend: terms as ONNX models, run anywhere onnxruntime runs.

A backend is a functor: each primitive becomes a few ONNX nodes, and composition
does the rest. Any term (a model, ``pl.R(f)``, a lens, an optimizer's update, a
learner's whole training step) becomes one ``onnx.ModelProto`` of opset
:data:`OPSET`, with inputs and outputs named by the calling convention:

* a term's parameters ``params/<name>``; its arguments by the term's own names
  (``x``, ``dy``; ``x0``, ``x1``, ... when it has several), a dict's or tuple's
  leaves below them (``x/0``);
* a training step's state leaves by their paths (``params/dense.W``,
  ``opt/0/mu/dense.W``, ``step``), then ``x`` and ``y``; its outputs are the new
  state's leaves (``new/params/dense.W``, ...) and ``loss``.

Names are data in the protobuf, never code. The batch axis of a batched wire is
the symbolic dimension ``batch``. Terms whose primitives have no ONNX form here
(``foreign`` boxes, ``scan``) or that draw random numbers from a key (``normal``,
``uniform``: dropout, forward gradients) are refused with
:class:`UnsupportedPrimitive`, naming the primitive.

The models are built with ``onnx.helper``: a backend lowers one primitive at a
time into nodes whose shapes it already knows, which is what the helper's
``make_node`` does with nothing in between; onnxscript's and onnx-ir's gains
(Python functions traced into graphs, graph rewriting) would sit unused.

>>> import numpy as np, paralens as pl
>>> from paralens import backends
>>> onnx_backend = backends.get("onnx")
>>> model = onnx_backend.to_onnx(pl.nn.dense(2, 1) >> pl.nn.relu())
>>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
(['params/dense.W', 'params/dense.b', 'x'], ['y'])
>>> fn = onnx_backend.compile(pl.nn.dense(2, 1) >> pl.nn.relu())
>>> fn({"dense.W": np.array([[1.0], [-1.0]], np.float32), "dense.b": np.zeros(1, np.float32)},
...    np.array([[3.0, 1.0]], np.float32)).tolist()
[[2.0]]
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from paralens.backends import Backend
from paralens.prims import dilated_size, parse_einsum, promote, rhs_cotangent_padding
from paralens.terms import DictSig, Term, as_term, flatten, unflatten
from paralens.types import ArrayType

from ._interpret import _refuse_bit_arithmetic
from .numpy import backend as host

__all__ = ["backend", "OPSET", "UnsupportedPrimitive", "OnnxStep", "to_onnx", "load", "BATCH", "write_arrays",
           "read_arrays"]

#: The ONNX opset every model is written in (onnxruntime 1.18 and later run it, in Python, C, C++,
#: C#, Java, Node and the browser).
OPSET = 21
#: The IR version of the models: the one opset 21 came with, so older runtimes read them too.
IR_VERSION = 10
#: The name of the symbolic batch dimension.
BATCH = "batch"


class UnsupportedPrimitive(NotImplementedError):
    """A term holds a primitive that has no ONNX form here.

    Args:
        primitive: the primitive's name, kept as the attribute ``primitive``.
        why: the message, which names the primitive and says why it has no ONNX form.
    """

    def __init__(self, primitive: str, why: str):
        super().__init__(why)
        self.primitive = primitive


#: primitives with no ONNX form, and why
_REFUSED = {
    "normal": "draws random numbers from a key (key-driven randomness, as dropout or forward gradients); "
              "ONNX's random operators cannot reproduce the key's stream",
    "uniform": "draws random numbers from a key (key-driven randomness, as dropout or forward gradients); "
               "ONNX's random operators cannot reproduce the key's stream",
    "foreign": "is an opaque Python function (an optax transformation): there is nothing to translate",
    "scan": "is a loop over a term (lax.scan); unroll it or run it with the jax backend",
}

_DTYPES = {"bool": TensorProto.BOOL, "uint32": TensorProto.UINT32, "int32": TensorProto.INT32,
           "int64": TensorProto.INT64, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16,
           "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}

_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "tanh": "Tanh", "sigmoid": "Sigmoid",
          "relu": "Relu", "cos": "Cos", "sin": "Sin", "tan": "Tan", "arctan": "Atan", "floor": "Floor",
          "sign": "Sign", "abs": "Abs", "stop_gradient": "Identity", "conj": "Identity", "real": "Identity"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "power": "Pow"}
_COMPARE = {"greater": "Greater", "equal": "Equal"}


def _elem(dtype: str) -> int:
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise TypeError(f"the onnx backend has no ONNX element type for {dtype} wires") from None


def _join(base: str, key) -> str:
    return str(key) if not base else f"{base}/{key}"


def _names(sig, base) -> list[str]:
    """The leaf names of one argument with signature ``sig``, below ``base`` (a name, or one per
    entry of a tuple; ``d{}`` names a dict of parameter cotangents ``dparams/...``)."""
    if isinstance(base, tuple):
        return [n for s, b in zip(sig, base) for n in _names(s, b)]
    base = base.replace("{}", "params")
    if sig is None:
        return [base]
    if isinstance(sig, DictSig):
        return [n for k, s in sig.items() for n in _names(s, _join(base, k))]
    return [n for i, s in enumerate(sig) for n in _names(s, _join(base, i))]


def io_names(term: Term) -> tuple[list[str], list[str]]:
    """The names of ``term``'s ONNX inputs (parameters first) and outputs, by its calling convention.

    Args:
        term: the term.

    Returns:
        ``(input names, output names)``, one per wire of ``term.param_wires + term.inputs`` and of
        ``term.outputs``; an output whose name is an input's gets the prefix ``new/``.

    Raises:
        ValueError: two inputs, or two outputs, would share a name (keys that contain ``/``).
    """
    ins, outs = term.arg_names or (None, None)
    in_sigs = tuple(term.in_sig)
    out_sigs = term.out_sig if isinstance(term.out_sig, tuple) else (term.out_sig,)
    ins = ins or (("x",) if len(in_sigs) == 1 else tuple(f"x{i}" for i in range(len(in_sigs))))
    outs = outs or (("y",) if len(out_sigs) == 1 else tuple(f"y{i}" for i in range(len(out_sigs))))
    inputs = [_join("params", n) for n in term.param_names]
    inputs += [n for sig, base in zip(in_sigs, ins) for n in _names(sig, base)]
    outputs = [n for sig, base in zip(out_sigs, outs) for n in _names(sig, base)]
    taken = set(inputs)
    outputs = [_join("new", n) if n in taken else n for n in outputs]
    for what, names in (("inputs", inputs), ("outputs", outputs)):
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{term.name}: two ONNX {what} would be named {dup[0]!r} (a key holding '/'); "
                             "rename the parameter or key")
    return inputs, outputs


class _Graph:
    """The nodes and constants of one model under construction; value names are generated
    (``t0``, ``t1``, ...), skipping the inputs' and outputs' names."""

    def __init__(self, reserved):
        self.nodes, self.inits = [], []
        self.reserved = set(reserved)
        self.count = 0
        self.consts: dict = {}
        self.batches: dict = {}

    def fresh(self) -> str:
        while True:
            name = f"t{self.count}"
            self.count += 1
            if name not in self.reserved:
                return name

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.fresh() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype: str) -> str:
        array = np.asarray(value, dtype=np.dtype(dtype))
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.consts:
            name = self.fresh()
            self.inits.append(numpy_helper.from_array(array, name))
            self.consts[key] = name
        return self.consts[key]

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), np.int64), "int64")

    def batch(self, value: str) -> str:
        """The batch size of the batched ``value``, an int64 tensor of shape (1,)."""
        if value not in self.batches:
            self.batches[value] = self.op("Shape", [value], start=0, end=1)
        return self.batches[value]

    def cast(self, value: str, src: str, dst: str) -> str:
        return value if src == dst else self.op("Cast", [value], to=_elem(dst))

    def shape_of(self, t: ArrayType, ref: str | None) -> str:
        """The int64 shape of an array of ``t``: its batch size from ``ref`` where batched."""
        if not t.batched:
            return self.ints(t.shape)
        return self.op("Concat", [self.batch(ref), self.ints(t.shape)], axis=0)

    def zeros(self, t: ArrayType, ref: str | None) -> str:
        if not t.batched:
            return self.const(np.zeros(t.shape), t.dtype)
        value = numpy_helper.from_array(np.zeros(1, np.dtype(t.dtype)), "value")
        return self.op("ConstantOfShape", [self.shape_of(t, ref)], value=value)


# ------------------------------------------------------------------------------ the rules
# A rule is ``rule(g, ins, outs, *values, **attrs)``: the graph, the wires' types and the input
# values' names; it returns the output values' names (one name for one output).


def _aligned(g: _Graph, ins, out: ArrayType, vals, dtype: str | None = None):
    """Elementwise operands lined up for ONNX's trailing-axis broadcasting: a batched operand of
    fewer axes than the output gets size-1 axes after its batch axis; ``dtype``: cast to it."""
    res = []
    for t, v in zip(ins, vals):
        if dtype is not None:
            v = g.cast(v, t.dtype, dtype)
        if t.batched and t.ndim < out.ndim:
            v = g.op("Unsqueeze", [v, g.ints(range(1, 1 + out.ndim - t.ndim))])
        res.append(v)
    return res


def _unary(op_type):
    def rule(g, ins, outs, x):
        return g.op(op_type, [x])
    return rule


def _binary(op_type):
    def rule(g, ins, outs, *vals):
        return g.op(op_type, _aligned(g, ins, outs[0], vals, outs[0].dtype))
    return rule


def _compare(op_type):
    def rule(g, ins, outs, *vals):
        common = promote(ins)
        mask = g.op(op_type, _aligned(g, ins, outs[0], vals, common))
        return g.op("Cast", [mask], to=_elem(outs[0].dtype))
    return rule


def _step(g, ins, outs, x):
    return g.op("Cast", [g.op("Greater", [x, g.const(0, ins[0].dtype)])], to=_elem(outs[0].dtype))


def _softplus(g, ins, outs, x):
    """``max(x, 0) + log1p(exp(-|x|))``, as JAX's ``logaddexp(x, 0)`` (onnxruntime's Softplus has no
    float64 kernel, and takes ``log(1 + u)``, which loses the small ``u`` of a very negative ``x``).
    ONNX has no log1p: ``log(w) * u / (w - 1)`` with ``w = 1 + u`` corrects ``w``'s rounding."""
    dtype = ins[0].dtype
    u = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])
    one = g.const(1, dtype)
    w = g.op("Add", [one, u])
    exact = g.op("Div", [g.op("Mul", [g.op("Log", [w]), u]), g.op("Sub", [w, one])])
    log1p = g.op("Where", [g.op("Equal", [w, one]), u, exact])
    return g.op("Add", [g.op("Relu", [x]), log1p])


def _where(g, ins, outs, c, x, y):
    c, x, y = _aligned(g, ins, outs[0], (c, x, y))
    cond = c if ins[0].dtype == "bool" else g.op("Cast", [c], to=TensorProto.BOOL)  # c != 0, NaN true
    dtype = outs[0].dtype
    return g.op("Where", [cond, g.cast(x, ins[1].dtype, dtype), g.cast(y, ins[2].dtype, dtype)])


def _axes(t: ArrayType, axes) -> list[int]:
    return [a + t.batched for a in axes]


def _reduce(op_type):
    def rule(g, ins, outs, x, *, axes):
        if not axes:
            return g.op("Identity", [x])
        return g.op(op_type, [x, g.ints(_axes(ins[0], axes))], keepdims=0)
    return rule


def _lead(t: ArrayType) -> list[int]:
    """A reshape target's leading entry: 0 (copy the input's batch size) where batched."""
    return [0] if t.batched else []


def _broadcast(g, ins, outs, x, *, shape, dims):
    t = ins[0]
    new = [1] * len(shape)
    for i, d in enumerate(dims):
        new[d] = t.shape[i]
    if tuple(new) != t.shape:
        x = g.op("Reshape", [x, g.ints(_lead(t) + new)])
    if tuple(new) != tuple(shape):
        x = g.op("Expand", [x, g.ints(([1] if t.batched else []) + list(shape))])
    return x


def _reshape(g, ins, outs, x, *, shape):
    return g.op("Reshape", [x, g.ints(_lead(ins[0]) + list(shape))])


def _transpose(g, ins, outs, x, *, perm):
    perm = ([0] + [p + 1 for p in perm]) if ins[0].batched else list(perm)
    return g.op("Transpose", [x], perm=perm)


def _einsum(g, ins, outs, a, b, *, spec, batched_out=None):
    """A contraction as one MatMul: each operand transposed to (batch, kept, contracted) axes and
    reshaped to three groups (the batch axes stay apart, MatMul broadcasts over them), then the
    product reshaped and transposed to the output's axes, as ``np.einsum(optimize=True)`` plans it.
    An outer product (nothing contracted) stays an Einsum node."""
    (sa, sb), so = parse_einsum(spec)
    z = next(ch for ch in "zyxwvutsrqponmlkjihgfedcba" if ch not in spec.lower())
    sa, sb = (z + sa if ins[0].batched else sa), (z + sb if ins[1].batched else sb)
    so = z + so if outs[0].batched else so
    dtype = outs[0].dtype
    a, b = g.cast(a, ins[0].dtype, dtype), g.cast(b, ins[1].dtype, dtype)
    shape_a = (None, *ins[0].shape) if ins[0].batched else ins[0].shape
    shape_b = (None, *ins[1].shape) if ins[1].batched else ins[1].shape
    size = {**dict(zip(sa, shape_a)), **dict(zip(sb, shape_b))}

    def alone(x, sx, other):  # an index of one operand only (a batch summed with batched_out=False)
        gone = [k for k, i in enumerate(sx) if i not in other and i not in so]
        if not gone:
            return x, sx
        return g.op("ReduceSum", [x, g.ints(gone)], keepdims=0), "".join(i for i in sx if i in other or i in so)
    a, sa = alone(a, sa, sb)
    b, sb = alone(b, sb, sa)
    bat = [i for i in sa if i in sb and i in so]
    con = [i for i in sa if i in sb and i not in so]
    keep_a, keep_b = [i for i in sa if i not in sb], [i for i in sb if i not in sa]
    if not con:
        return g.op("Einsum", [a, b], equation=f"{sa},{sb}->{so}")

    def group(letters):  # one axis for a group of indices; -1 for the one holding the batch
        sizes = [size[i] for i in letters]
        return -1 if None in sizes else int(np.prod(sizes, dtype=np.int64))

    def arrange(x, have, order, groups):
        if list(have) != order:
            x = g.op("Transpose", [x], perm=[have.index(i) for i in order])
        if any(len(gr) != 1 for gr in groups):
            x = g.op("Reshape", [x, g.ints([group([i]) for i in bat] + [group(gr) for gr in groups])])
        return x

    left = arrange(a, sa, bat + keep_a + con, [keep_a, con])
    right = arrange(b, sb, bat + con + keep_b, [con, keep_b])
    y = g.op("MatMul", [left, right])
    made = bat + keep_a + keep_b
    if len(keep_a) != 1 or len(keep_b) != 1:
        y = g.op("Reshape", [y, g.ints([group([i]) for i in made])])
    return y if made == list(so) else g.op("Transpose", [y], perm=[made.index(i) for i in so])


def _softmax(g, ins, outs, x, *, axis):
    return g.op("Softmax", [x], axis=axis + ins[0].batched)


def _logsumexp(g, ins, outs, x, *, axis):
    """``log(sum(exp(x - m))) + m`` with ``m`` the max held to finite values (the NumPy backend's
    formula: an infinite max gives the same infinite result, and NaN stays NaN)."""
    t = ins[0]
    ax = g.ints([axis + t.batched])
    big = np.finfo(np.dtype(t.dtype)).max
    m = g.op("Clip", [g.op("ReduceMax", [x, ax], keepdims=1), g.const(-big, t.dtype), g.const(big, t.dtype)])
    total = g.op("ReduceSum", [g.op("Exp", [g.op("Sub", [x, m])]), ax], keepdims=0)
    return g.op("Add", [g.op("Log", [total]), g.op("Squeeze", [m, ax])])


def _scale(g, ins, outs, x, *, c):
    return g.op("Mul", [x, g.const(c, ins[0].dtype)])


def _shift(g, ins, outs, x, *, c):
    return g.op("Add", [x, g.const(c, ins[0].dtype)])


def _pow(g, ins, outs, x, *, p):
    return g.op("Pow", [x, g.const(p, ins[0].dtype)])


def _cast(g, ins, outs, x, *, dtype):
    return g.op("Cast", [x], to=_elem(dtype))


def _zeros(g, ins, outs, *vals, types):
    ref = next((v for v, t in zip(vals, ins) if t.batched), None)
    return [g.zeros(t, ref) for t in outs]


def _const(g, ins, outs, *, value, shape, dtype):
    return g.const(np.asarray(value).reshape(shape), dtype)


def _batch_sum(g, ins, outs, x):
    return g.op("ReduceSum", [x, g.ints([0])], keepdims=0)


def _batch_broadcast(g, ins, outs, u, ref):
    return g.op("Expand", [u, g.shape_of(outs[0], ref)])


def _batch_count(g, ins, outs, ref):
    n = g.op("Reshape", [g.batch(ref), g.ints([])])
    return g.op("Cast", [n], to=_elem(outs[0].dtype))


def _barrier(g, ins, outs, *vals):
    return [g.op("Identity", [v]) for v in vals]


def _rev(g, ins, outs, x, *, axes):
    axes = _axes(ins[0], axes)
    n = len(axes)
    return g.op("Slice", [x, g.ints([-1] * n), g.ints([np.iinfo(np.int64).min] * n), g.ints(axes), g.ints([-1] * n)])


# ---------------------------------------------------------------- convolution and windows
# paralens lays arrays out channels last, (B, *S, C), kernels (*K, C / groups, O); ONNX's Conv
# and pooling take (B, C, *S) and (O, C / groups, *K).


def _batched(g, t: ArrayType, x: str) -> str:
    """``x`` with a leading batch axis: an unbatched operand as a batch of one."""
    return x if t.batched else g.op("Unsqueeze", [x, g.ints([0])])


def _unbatched(g, t: ArrayType, x: str) -> str:
    return x if t.batched else g.op("Squeeze", [x, g.ints([0])])


def _first(n):  # (B, *S, C) -> (B, C, *S)
    return [0, n + 1] + list(range(1, n + 1))


def _last(n):  # (B, C, *S) -> (B, *S, C)
    return [0] + list(range(2, n + 2)) + [1]


def _dilate_pad(g, x: str, shape: list, base, padding, fill, dtype: str):
    """``x`` (B, *S, C) of ``shape`` (``None`` for B) with ``base - 1`` fills between elements of
    each spatial axis, then padded by ``(lo, hi)`` (negative: cropped). Returns the new value and
    its shape."""
    shape = list(shape)
    for i, d in enumerate(base):
        s = shape[1 + i]
        if d == 1 or s <= 1:
            continue
        x = g.op("Unsqueeze", [x, g.ints([2 + i])])
        pads = [0] * (len(shape) + 1) * 2
        pads[len(shape) + 1 + 2 + i] = d - 1
        x = g.op("Pad", [x, g.ints(pads), g.const(fill, dtype)])
        merged = [0] + shape[1:1 + i] + [s * d] + shape[2 + i:]
        x = g.op("Reshape", [x, g.ints(merged)])
        x = g.op("Slice", [x, g.ints([0]), g.ints([dilated_size(s, d)]), g.ints([1 + i])])
        shape[1 + i] = dilated_size(s, d)
    crop = [(i, max(-lo, 0), max(-hi, 0)) for i, (lo, hi) in enumerate(padding) if lo < 0 or hi < 0]
    if crop:
        x = g.op("Slice", [x, g.ints([lo for _, lo, _ in crop]), g.ints([shape[1 + i] - hi for i, _, hi in crop]),
                           g.ints([1 + i for i, _, _ in crop])])
        for i, lo, hi in crop:
            shape[1 + i] -= lo + hi
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in padding]
    if any(p != (0, 0) for p in grow):
        pads = [0] + [lo for lo, _ in grow] + [0] + [0] + [hi for _, hi in grow] + [0]
        x = g.op("Pad", [x, g.ints(pads), g.const(fill, dtype)])
        for i, (lo, hi) in enumerate(grow):
            shape[1 + i] += lo + hi
    return x, shape


def _plain(base, padding) -> bool:
    """No dilation of the input and no cropping: ONNX's own ``pads`` do."""
    return all(d == 1 for d in base) and all(p >= 0 for lo_hi in padding for p in lo_hi)


def _pads(padding) -> list[int]:
    return [lo for lo, _ in padding] + [hi for _, hi in padding]


def _conv(g, ins, outs, x, w, *, strides, padding, lhs_dilation, rhs_dilation, groups):
    n = len(strides)
    dtype = outs[0].dtype
    x, w = g.cast(x, ins[0].dtype, dtype), g.cast(w, ins[1].dtype, dtype)
    xb = _batched(g, ins[0], x)
    pads = _pads(padding)
    if not _plain(lhs_dilation, padding):
        xb, _ = _dilate_pad(g, xb, [None, *ins[0].shape], lhs_dilation, padding, 0, dtype)
        pads = [0] * 2 * n
    kernel = g.op("Transpose", [w], perm=[n + 1, n] + list(range(n)))
    y = g.op("Conv", [g.op("Transpose", [xb], perm=_first(n)), kernel], strides=list(strides), pads=pads,
             dilations=list(rhs_dilation), group=groups)
    return _unbatched(g, ins[0], g.op("Transpose", [y], perm=_last(n)))


def _conv_weight(g, ins, outs, x, dy, *, kernel, strides, padding, lhs_dilation, rhs_dilation, groups):
    """As JAX's kernel-transpose rule: the inputs, channels as the batch and the batch as the
    channels, convolved with the output cotangents as the kernel."""
    n = len(kernel)
    dtype = outs[0].dtype
    x, dy = _batched(g, ins[0], g.cast(x, ins[0].dtype, dtype)), _batched(g, ins[1], g.cast(dy, ins[1].dtype, dtype))
    shape = [None, *ins[0].shape]
    pads = [rhs_cotangent_padding(s, k, st, p, ld, rd, o) for s, k, st, p, ld, rd, o in
            zip(ins[0].shape[:n], kernel, strides, padding, lhs_dilation, rhs_dilation, ins[1].shape[:n])]
    onnx_pads = _pads(pads)
    if not _plain(lhs_dilation, pads):
        x, shape = _dilate_pad(g, x, shape, lhs_dilation, pads, 0, dtype)
        onnx_pads = [0] * 2 * n
    swap = [n + 1, 0] + list(range(1, n + 1))  # (B, *S, C) -> (C, B, *S)
    xs, ds = g.op("Transpose", [x], perm=swap), g.op("Transpose", [dy], perm=swap)
    cin, cout = ins[0].shape[-1], ins[1].shape[-1]
    parts = []
    for k in range(groups):  # the groups' kernels are independent: one convolution each
        xk, dk = xs, ds
        if groups > 1:
            xk = g.op("Slice", [xs, g.ints([k * cin // groups]), g.ints([(k + 1) * cin // groups]), g.ints([0])])
            dk = g.op("Slice", [ds, g.ints([k * cout // groups]), g.ints([(k + 1) * cout // groups]), g.ints([0])])
        parts.append(g.op("Conv", [xk, dk], strides=list(rhs_dilation), dilations=list(strides), pads=onnx_pads))
    out = parts[0] if groups == 1 else g.op("Concat", parts, axis=1)  # (C / groups, O, *K)
    return g.op("Transpose", [out], perm=list(range(2, n + 2)) + [0, 1])


def _window_max(g, ins, outs, x, *, window, strides, padding):
    n = len(window)
    xb = g.op("Transpose", [_batched(g, ins[0], x)], perm=_first(n))
    y = g.op("MaxPool", [xb], kernel_shape=list(window), strides=list(strides), pads=_pads(padding))
    return _unbatched(g, ins[0], g.op("Transpose", [y], perm=_last(n)))


def _window_sum(g, ins, outs, x, *, window, strides, padding, base_dilation, window_dilation):
    """A convolution of each channel with a window of ones."""
    n = len(window)
    t = ins[0]
    xb = _batched(g, t, x)
    pads = _pads(padding)
    if not _plain(base_dilation, padding):
        xb, _ = _dilate_pad(g, xb, [None, *t.shape], base_dilation, padding, 0, t.dtype)
        pads = [0] * 2 * n
    c = t.shape[-1]
    ones = g.const(np.ones((c, 1, *window)), t.dtype)
    y = g.op("Conv", [g.op("Transpose", [xb], perm=_first(n)), ones], strides=list(strides), pads=pads,
             dilations=list(window_dilation), group=c)
    return _unbatched(g, t, g.op("Transpose", [y], perm=_last(n)))


def _argmax_windows(g, operand: str, n: int, window, strides, padding) -> tuple[str, str]:
    """Each window's first maximum, as MaxPool's flat index into the (B, C, *S) operand; and
    that operand."""
    xt = g.op("Transpose", [operand], perm=_first(n))
    _, idx = g.op("MaxPool", [xt], 2, kernel_shape=list(window), strides=list(strides), pads=_pads(padding))
    return idx, xt


def _flat(g, x: str) -> str:
    return g.op("Reshape", [x, g.ints([-1])])


def _select_and_scatter_add(g, ins, outs, source, operand, *, window, strides, padding):
    n = len(window)
    t = ins[1]
    operand, source = _batched(g, t, operand), _batched(g, ins[0], g.cast(source, ins[0].dtype, outs[0].dtype))
    idx, xt = _argmax_windows(g, g.cast(operand, t.dtype, outs[0].dtype), n, window, strides, padding)
    src = g.op("Transpose", [source], perm=_first(n))
    zeros = g.op("ConstantOfShape", [g.op("Reshape", [g.op("Size", [xt]), g.ints([1])])],
                 value=numpy_helper.from_array(np.zeros(1, np.dtype(outs[0].dtype)), "value"))
    acc = g.op("ScatterElements", [zeros, _flat(g, idx), _flat(g, src)], axis=0, reduction="add")
    y = g.op("Reshape", [acc, g.op("Shape", [xt])])
    return _unbatched(g, t, g.op("Transpose", [y], perm=_last(n)))


def _select_and_gather_add(g, ins, outs, tangent, operand, *, window, strides, padding):
    n = len(window)
    t = ins[1]
    operand, tangent = _batched(g, t, operand), _batched(g, ins[0], tangent)
    idx, _ = _argmax_windows(g, operand, n, window, strides, padding)
    tt = g.op("Transpose", [tangent], perm=_first(n))
    y = g.op("Reshape", [g.op("GatherElements", [_flat(g, tt), _flat(g, idx)], axis=0), g.op("Shape", [idx])])
    return _unbatched(g, t, g.op("Transpose", [y], perm=_last(n)))


# ---------------------------------------------------------------- gather and scatter


def _index(g, t: ArrayType, idx: str) -> str:
    return g.cast(idx, t.dtype, "int64")


def _take(g, ins, outs, table, idx):
    tt, ti = ins
    idx = _index(g, ti, idx)
    if not tt.batched:
        return g.op("Gather", [table, idx], axis=0)
    if not ti.batched:
        return g.op("Gather", [table, idx], axis=1)
    return g.op("GatherND", [table, g.op("Unsqueeze", [idx, g.ints([-1])])], batch_dims=1)


def _scatter_add(g, ins, outs, v, idx, *, size, batched_out=None):
    tv, ti = ins
    out = outs[0]
    idx = _index(g, ti, idx)
    ref = v if tv.batched else idx
    if (tv.batched or ti.batched) and not ti.batched:  # every example's rows go to the same table
        idx = g.op("Expand", [idx, g.shape_of(ti.as_batched, ref)])
    if ti.batched and not tv.batched:  # every example adds the same values
        v = g.op("Expand", [v, g.shape_of(tv.as_batched, ref)])
    where = g.op("Unsqueeze", [idx, g.ints([-1])])
    if out.batched:  # each example into its own table: (example, row) pairs
        rows = g.op("Range", [g.const(0, "int64"), g.op("Reshape", [g.batch(ref), g.ints([])]),
                              g.const(1, "int64")])
        rows = g.op("Reshape", [rows, g.ints([-1] + [1] * (ti.ndim + 1))])
        rows = g.op("Expand", [rows, g.op("Shape", [where])])
        where = g.op("Concat", [rows, where], axis=-1)
    return g.op("ScatterND", [g.zeros(out, ref), where, v], reduction="add")


#: One entry per primitive: the ONNX nodes it becomes.
RULES: dict[str, Callable] = {
    **{k: _unary(v) for k, v in _UNARY.items()},
    **{k: _binary(v) for k, v in _BINARY.items()},
    **{k: _compare(v) for k, v in _COMPARE.items()},
    "step": _step, "softplus": _softplus, "where": _where, "cast": _cast, "scale": _scale, "shift": _shift, "pow": _pow,
    "reduce_sum": _reduce("ReduceSum"), "reduce_max": _reduce("ReduceMax"),
    "broadcast": _broadcast, "reshape": _reshape, "transpose": _transpose, "einsum": _einsum,
    "softmax": _softmax, "logsumexp": _logsumexp, "zeros": _zeros, "const": _const,
    "batch_sum": _batch_sum, "batch_broadcast": _batch_broadcast, "batch_count": _batch_count,
    "optimization_barrier": _barrier, "rev": _rev,
    "conv": _conv, "conv_weight": _conv_weight, "window_max": _window_max, "window_sum": _window_sum,
    "select_and_scatter_add": _select_and_scatter_add, "select_and_gather_add": _select_and_gather_add,
    "take": _take, "scatter_add": _scatter_add,
}


def _refuse_untranslatable(term: Term):
    """Refuse, before building anything, a term with a primitive that has no ONNX form here."""
    for e in term.eqns:
        name = e.prim.name
        if name in _REFUSED:
            raise UnsupportedPrimitive(name, f"{term.name}: the onnx backend cannot translate the primitive "
                                             f"{name!r}: it {_REFUSED[name]}")
        if name not in RULES:
            raise UnsupportedPrimitive(name, f"{term.name}: the onnx backend has no ONNX form for the primitive "
                                             f"{name!r}")


def _value_info(name: str, t: ArrayType):
    return helper.make_tensor_value_info(name, _elem(t.dtype), ([BATCH] if t.batched else []) + list(t.shape))


def to_onnx(term, *, check: bool = True):
    """``term`` (or a lens, optimizer or learner: its term) as an ONNX model of opset :data:`OPSET`.

    Args:
        term: the term to translate.
        check: run ``onnx.checker.check_model(full_check=True)`` and strict shape inference on the
            model (default ``True``).

    Returns:
        The model; its inputs and outputs are named as the module's docstring says.

    Raises:
        UnsupportedPrimitive: (a ``NotImplementedError``) the term holds a primitive with no ONNX
            form, named in the message and in the error's ``primitive``.
        TypeError: a wire of a dtype ONNX has no type for (complex), or bit arithmetic (Z2).
        ValueError: two inputs or outputs would share a name.
    """
    term = as_term(term)
    _refuse_bit_arithmetic(term, "onnx")
    _refuse_untranslatable(term)
    in_names, out_names = io_names(term)
    g = _Graph(in_names + out_names)
    wires = term.wires
    env = dict(zip(term.param_wires + term.inputs, in_names))
    for e in term.eqns:
        out = RULES[e.prim.name](g, [wires[w] for w in e.ins], [wires[w] for w in e.outs],
                                 *(env[w] for w in e.ins), **e.kwargs)
        env.update(zip(e.outs, [out] if isinstance(out, str) else out))
    for w, name in zip(term.outputs, out_names):
        g.nodes.append(helper.make_node("Identity", [env[w]], [name]))
    graph = helper.make_graph(
        g.nodes, "paralens", [_value_info(n, wires[w]) for n, w in zip(in_names, term.param_wires + term.inputs)],
        [_value_info(n, wires[w]) for n, w in zip(out_names, term.outputs)], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="paralens",
                              ir_version=IR_VERSION, doc_string=f"{term.name}: {term.dom} -> {term.cod}")
    if check:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


def _session(model: onnx.ModelProto, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own classes
        if "NOT_IMPLEMENTED" not in str(e):
            raise
        raise NotImplementedError(f"the model is valid ONNX, but onnxruntime's CPU kernels do not cover one of its "
                                  f"nodes ({e}); float64 convolutions and pooling have none: build the model in "
                                  "float32") from e


def _feed(names, types, values) -> dict:
    """onnxruntime's inputs, each cast to its wire's dtype by :func:`~paralens.backends.validate.cast`,
    which refuses what the cast would change (fractional labels, integers out of range), as the
    other backends do."""
    from .validate import cast

    return {n: np.ascontiguousarray(cast(v, t, f"input {n!r}")) for n, t, v in zip(names, types, values)}


class _Compiled:
    """``fn(params, *args)`` running ``term``'s ONNX model in onnxruntime."""

    def __init__(self, term: Term, threads: int | None = None):
        self.term = term
        self.model = to_onnx(term)
        self.input_names, self.output_names = io_names(term)
        self._types = [s.type for s in term.params] + list(term.dom)
        self._threads = threads
        self._session = None

    def __call__(self, params, *args):
        term = self.term
        names = term.param_names
        if len(names) == 1 and not isinstance(params, dict):
            params = {names[0]: params}
        params = params or {}
        if not isinstance(params, dict) or set(params) != set(names):
            raise KeyError(f"params do not match the term: expected keys {list(names)}, "
                           f"got {sorted(params) if isinstance(params, dict) else type(params).__name__}")
        if len(args) != len(term.in_sig):
            raise TypeError(f"{term.name} takes params and {len(term.in_sig)} argument(s), got {len(args)}")
        flat = [params[n] for n in names]
        flatten(args, tuple(term.in_sig), flat, "the arguments")
        if self._session is None:
            self._session = _session(self.model, self._threads)
        outs = self._session.run(self.output_names, _feed(self.input_names, self._types, flat))
        return unflatten(term.out_sig if isinstance(term.out_sig, tuple) else term.out_sig, iter(outs)) \
            if term.out_sig is not None else outs[0]


class OnnxStep:
    """A learner's training step as an ONNX model, run by onnxruntime (CPU).

    ``step(state, x, y) -> (state, loss)``, as the other backends' steps; the state is
    ``learner.init()``'s (NumPy arrays). Its attribute ``model`` is the ``onnx.ModelProto``;
    :meth:`OnnxStep.export` writes it.

    Made by ``learner.compile("onnx")``.

    Args:
        term: a learner's step term (``learner.step_term``).
        threads: onnxruntime's intra-op threads; ``None``: its default (one per core). Small
            models on a busy machine run faster on one.
        classes: the labels are class indices into this many classes, checked on the host before
            each step (as the other backends check them); ``None``: no check.
    """

    def __init__(self, term: Term, threads: int | None = None, classes: int | None = None):
        from ._interpret import batch_check
        from .validate import labels_check

        self.term = term
        self.model = to_onnx(term)
        self.input_names, self.output_names = io_names(term)
        self._types = list(term.dom)
        self._threads = threads
        self._session = None
        self._same_batch, self._labels = batch_check(term, False), labels_check(classes)

    def __call__(self, state, x, y):
        """One step.

        Args:
            state: the training state (``learner.init()``).
            x: the inputs, batched.
            y: the labels, batched.

        Returns:
            ``(new state, loss)``; the state's parts the step does not rewrite (``hyper``) are
            passed through.

        Raises:
            ValueError: ``x`` and ``y`` differ in batch size, or a class label is out of range.
        """
        self._same_batch(x, y)
        if self._labels is not None:
            self._labels(x, np.asarray(y))
        flat = flatten((state, x, y), tuple(self.term.in_sig), None, "the step's arguments")
        if self._session is None:
            self._session = _session(self.model, self._threads)
        outs = self._session.run(self.output_names, _feed(self.input_names, self._types, flat))
        new, loss = unflatten(tuple(self.term.out_sig), iter(outs))
        return {**state, **new}, loss

    def export(self, path: str | os.PathLike | None = None, *, state: dict | None = None) -> bytes:
        """The serialized ONNX model; written to ``path`` atomically, with its checksum beside it
        (``path + ".sha256"``), which :func:`load` verifies.

        With ``state``, the state is written beside the model too, for a runtime without Python:
        ``<stem>.state.bin`` holds every state leaf's bytes, little-endian, one after another, and
        ``<stem>.state.json`` says for each leaf its input name, dtype, shape and byte range, and the
        output that holds its next value (``null`` for a leaf the step only reads, such as a
        hyperparameter); it lists the data inputs ``x``, ``y`` and the output ``loss`` with their
        dtypes and shapes (``"batch"`` for the batch axis). Both get checksums too.

        Args:
            path: the file to write (``.onnx`` by custom); ``None``: write nothing.
            state: a training state (``learner.init()``) to write beside the model; needs ``path``.

        Returns:
            The model's bytes (what ``onnx.load_model_from_string`` and onnxruntime read).

        Raises:
            ValueError: ``state`` without ``path``.
        """
        from .artifacts import write_export

        blob = self.model.SerializeToString()
        if state is not None and path is None:
            raise ValueError("state= is written beside the model: give a path")
        if state is not None:  # a state that does not fit is refused before any file is replaced
            stem = os.path.splitext(os.fspath(path))[0]
            data, manifest = self.state_files(state, os.path.basename(stem) + ".state.bin")
        if path is not None:
            write_export(path, blob)
        if state is not None:
            write_export(stem + ".state.bin", data)
            write_export(stem + ".state.json", manifest)
        return blob

    def state_files(self, state: dict, data_name: str = "state.bin") -> tuple[bytes, bytes]:
        """The two files :meth:`OnnxStep.export` writes for ``state``: its leaves' bytes and the JSON manifest.

        Args:
            state: the training state.
            data_name: the data file's name, recorded in the manifest.

        Returns:
            ``(data, manifest)``, both bytes.
        """
        import json

        leaves = flatten(state, self.term.in_sig[0], None, "the state")
        n_state = len(leaves)
        types = list(self.term.dom)
        outputs = dict(zip(self.output_names, self.term.cod))
        chunks, entries, offset = [], [], 0
        for name, t, v in zip(self.input_names[:n_state], types, leaves):
            raw = np.asarray(v, dtype=np.dtype(t.dtype).newbyteorder("<")).tobytes(order="C")
            new = _join("new", name)
            entries.append({"name": name, "dtype": t.dtype, "shape": list(t.shape), "offset": offset,
                            "bytes": len(raw), "output": new if new in outputs else None})
            chunks.append(raw)
            offset += len(raw)

        def io(name, t):
            return {"name": name, "dtype": t.dtype, "shape": ([BATCH] if t.batched else []) + list(t.shape)}
        manifest = {"format": "paralens onnx step", "opset": OPSET, "data": data_name, "state": entries,
                    "inputs": [io(n, t) for n, t in zip(self.input_names[n_state:], types[n_state:])],
                    "outputs": [io(n, t) for n, t in outputs.items() if not n.startswith("new/")]}
        return b"".join(chunks), (json.dumps(manifest, indent=1) + "\n").encode()


def load(path: str | os.PathLike):
    """An exported ONNX model, after verifying its checksum (``path + ".sha256"``)::

        model = load("step.onnx")
        session = onnxruntime.InferenceSession(model.SerializeToString())

    Args:
        path: the ``.onnx`` file :meth:`OnnxStep.export` wrote.

    Returns:
        The ``onnx.ModelProto``, checked by ``onnx.checker``.

    Raises:
        paralens.backends.artifacts.CorruptArtifactError: (a ``ValueError``) the checksum is missing
            or does not match, or the verified bytes are not a valid ONNX model.
    """
    from .artifacts import CorruptArtifactError, read_verified

    blob = read_verified(path)
    try:
        model = onnx.load_model_from_string(blob)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf and the checker raise their own kinds
        raise CorruptArtifactError(f"{os.fspath(path)} matches its checksum but is not a valid ONNX model: "
                                   f"{type(e).__name__}: {e}") from e
    return model


def write_arrays(stem: str | os.PathLike, arrays: dict) -> None:
    """Write NumPy arrays for a runtime without Python: ``<stem>.bin`` holds their bytes,
    little-endian, one after another, and ``<stem>.json`` gives each name its dtype, shape and
    byte range; both atomically, each with its ``.sha256`` (the layout of a step's state files).

    Args:
        stem: the files' path without the extension.
        arrays: ``{name: array}``.
    """
    import json

    from .artifacts import write_export

    stem = os.fspath(stem)
    entries, chunks, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.asarray(a)
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes(order="C")
        entries[name] = {"dtype": str(a.dtype), "shape": list(a.shape), "offset": offset, "bytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
    write_export(stem + ".bin", b"".join(chunks))
    write_export(stem + ".json", (json.dumps(entries, indent=1) + "\n").encode())


def read_arrays(stem: str | os.PathLike) -> dict:
    """The arrays :func:`write_arrays` wrote, after checking both files against their checksums.

    Args:
        stem: the files' path without the extension.

    Returns:
        ``{name: array}``.

    Raises:
        paralens.backends.artifacts.CorruptArtifactError: a file does not match its checksum.
    """
    import json

    from .artifacts import read_verified

    stem = os.fspath(stem)
    entries, data = json.loads(read_verified(stem + ".json")), read_verified(stem + ".bin")
    return {name: np.frombuffer(data[e["offset"]:e["offset"] + e["bytes"]], np.dtype(e["dtype"]).newbyteorder("<"))
            .reshape(e["shape"]).astype(e["dtype"]) for name, e in entries.items()}


class OnnxBackend(Backend):
    """Terms as ONNX models (:func:`to_onnx`), run by onnxruntime; parameters and states are
    NumPy arrays (the NumPy backend's draws)."""

    name = "onnx"

    def to_onnx(self, term, **options):
        """``term`` as an ``onnx.ModelProto`` (see :func:`to_onnx`)."""
        return to_onnx(term, **options)

    def compile(self, term, **options) -> Callable:
        """``fn(params, *args)`` running ``term``'s ONNX model in onnxruntime; ``fn.model`` is the model.

        Args:
            term: a term, or a lens, optimizer or learner.
            **options: ``threads``, onnxruntime's intra-op threads (default: one per core).

        Returns:
            The function, following the term's calling convention, as the NumPy backend's.

        Raises:
            TypeError: another option given.
            UnsupportedPrimitive: the term holds a primitive with no ONNX form.
        """
        threads = options.pop("threads", None)
        if options:
            raise TypeError(f"the onnx backend takes only threads=, got {sorted(options)}")
        return _Compiled(as_term(term), threads)

    def fit(self, *args, **kwargs):
        """Not supported: train with ``learner.compile("onnx")``'s step in a loop, or fit on JAX and export.

        Raises:
            NotImplementedError: always.
        """
        self._lacks("fit a learner (call learner.compile('onnx')'s step in a loop)")

    def compile_step(self, step, *, classes: int | None = None, **options) -> OnnxStep:
        """The training step as an :class:`OnnxStep`.

        Args:
            step: a learner's step term.
            classes: the labels are class indices into this many classes, checked before each step.
            **options: ``threads``, onnxruntime's intra-op threads (default: one per core).

        Returns:
            The :class:`OnnxStep`.

        Raises:
            TypeError: another option given.
        """
        threads = options.pop("threads", None)
        if options:
            raise TypeError(f"the onnx backend takes only threads= for steps, got {sorted(options)}")
        return OnnxStep(as_term(step), threads, classes)

    def init(self, term, seed: int = 0) -> dict:
        """The NumPy backend's initial values (see :func:`paralens.backends.numpy.init`)."""
        return host.init(term, seed)

    def array(self, value, type: ArrayType):
        """A NumPy array of ``type`` (see :meth:`paralens.backends._interpret.ArrayBackend.array`)."""
        return host.array(value, type)


backend = OnnxBackend()
