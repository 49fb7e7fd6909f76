"""The JAX backend: the same rules over ``jax.numpy``, traceable by ``jax.jit``,
``jax.grad``, ``jax.vmap`` and ``jax.export``; training steps compiled as one program.

>>> import jax, numpy as np, paralens as pl
>>> from paralens.backends import jax as pjax
>>> fn = jax.jit(pjax.compile(pl.nn.dense(2, 1)))
>>> fn({"dense.W": np.ones((2, 1), np.float32), "dense.b": np.zeros(1, np.float32)},
...    np.ones((3, 2), np.float32)).shape
(3, 1)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from paralens.prims import OPT_BARRIER, rhs_cotangent_padding
from paralens.terms import Term, as_term
from paralens.types import ArrayType

from ._interpret import ArrayBackend, ArrayLib, batch_check
from .numpy import backend as host
from .validate import cast, labels_check

__all__ = ["backend", "compile", "init", "CompiledStep", "RULES"]


def _as_mask(cond, *like):
    return cond.astype(jnp.result_type(*like, jnp.float32))


def _normal(ins, outs, key, *, shape, dtype):
    new, draw = jax.random.split(key)
    return [new, jax.random.normal(draw, shape, dtype)]


def _uniform(ins, outs, key, like):
    new, draw = jax.random.split(key)
    return [new, jax.random.uniform(draw, like.shape, outs[1].dtype)]


#: The floating-point dtypes, on which each jax.numpy function below is its lax primitive.
_FLOATS = frozenset(np.dtype(d) for d in ("float16", jnp.bfloat16, "float32", "float64"))


def _lax_unary(op, numpy_fn):
    """``numpy_fn`` of one array, as the lax primitive ``op`` it binds on floats. Tracing a step
    calls a rule once a box: the primitive skips jax.numpy's promotion and the ``jit`` each
    jax.numpy function is wrapped in (the program is the same); other dtypes take ``numpy_fn``."""
    def fn(x):
        return op(x) if getattr(x, "dtype", None) in _FLOATS else numpy_fn(x)
    fn.__name__ = numpy_fn.__name__
    return fn


def _binary(op, numpy_fn, floats_only: bool = True):
    """``numpy_fn(x, y)`` as the lax primitive ``op`` when both operands have one dtype (a float,
    or with ``floats_only=False`` any but bool): what jax.numpy does there, rank promotion
    included, without its promotion machinery and ``jit`` wrapper per call."""
    def fn(x, y):
        dtype = getattr(x, "dtype", None)
        if dtype is None or dtype != getattr(y, "dtype", None) or (dtype not in _FLOATS if floats_only
                                                                   else dtype == np.bool_):
            return numpy_fn(x, y)
        if x.ndim != y.ndim and x.ndim and y.ndim:  # jax.numpy's rank promotion; lax broadcasts scalars
            rank = max(x.ndim, y.ndim)
            x, y = lax.broadcast_to_rank(x, rank), lax.broadcast_to_rank(y, rank)
        return op(x, y)
    fn.__name__ = numpy_fn.__name__
    return fn


def _by_constant(op, numpy_fn):
    """``x * c`` or ``x + c`` with a Python float ``c``, as ``op``: jax.numpy takes ``c`` weakly typed,
    in ``x``'s dtype, so ``c`` is converted to it here (with 64-bit JAX too)."""
    def fn(x, *, c):
        dtype = getattr(x, "dtype", None)
        return op(x, dtype.type(c)) if type(c) is float and dtype in _FLOATS else numpy_fn(x, c)
    return fn


def _dimension_numbers(n: int, weight: bool = False) -> lax.ConvDimensionNumbers:
    """Channels last, as paralens lays arrays out: inputs (B, *S, C), kernels (*K, C, O). For the
    kernel's cotangent (``weight``) the batch is contracted as the features and the kernel comes
    out (JAX's own transpose rule)."""
    data, kernel = (0, n + 1) + tuple(range(1, n + 1)), (n + 1, n) + tuple(range(n))
    if not weight:
        return lax.ConvDimensionNumbers(data, kernel, data)
    swapped = (n + 1, 0) + tuple(range(1, n + 1))
    return lax.ConvDimensionNumbers(swapped, swapped, (n, n + 1) + tuple(range(n)))


def _conv(ins, outs, x, w, *, strides, padding, lhs_dilation, rhs_dilation, groups):
    dtype = outs[0].dtype
    xb = x if ins[0].batched else x[None]
    out = lax.conv_general_dilated(xb.astype(dtype), w.astype(dtype), strides, padding, lhs_dilation, rhs_dilation,
                                   _dimension_numbers(len(strides)), feature_group_count=groups)
    return out if ins[0].batched else out[0]


def _conv_weight(ins, outs, x, dy, *, kernel, strides, padding, lhs_dilation, rhs_dilation, groups):
    if not ins[0].batched:
        x, dy = x[None], dy[None]
    n = len(kernel)
    pads = [rhs_cotangent_padding(s, k, st, p, ld, rd, o) for s, k, st, p, ld, rd, o in
            zip(x.shape[1:1 + n], kernel, strides, padding, lhs_dilation, rhs_dilation, dy.shape[1:1 + n])]
    dtype = outs[0].dtype
    return lax.conv_general_dilated(x.astype(dtype), dy.astype(dtype), rhs_dilation, pads, lhs_dilation, strides,
                                    _dimension_numbers(n, weight=True), batch_group_count=groups)


def _one_batch(rule):
    """``rule`` on arrays with a leading batch axis, applied to unbatched ones as a batch of one."""
    def batched(ins, outs, *vals, **attrs):
        if ins[0].batched:
            return rule(*vals, **attrs)
        return rule(*(v[None] for v in vals), **attrs)[0]
    return batched


def _window(window, strides, padding):
    """``lax.reduce_window``'s window, strides and padding over the spatial axes of (B, *S, C)."""
    return (1, *window, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0))


def _max_windows(window, strides, padding):
    dims, st, pads = _window(window, strides, padding)
    return lambda x: lax.reduce_window(x, -jnp.inf, lax.max, dims, st, pads)


@_one_batch
def _window_max(x, *, window, strides, padding):
    return _max_windows(window, strides, padding)(x)


@_one_batch
def _window_sum(x, *, window, strides, padding, base_dilation, window_dilation):
    """As JAX's own transpose of a window sum: a dilated input is padded inside first (``lax.pad``),
    then summed over undilated windows."""
    dims, st, pads = _window(window, strides, padding)
    if any(b > 1 for b in base_dilation) or any(p < 0 for lo_hi in padding for p in lo_hi):
        zero = jnp.zeros((), x.dtype)
        x = lax.pad(x, zero, [(lo, hi, b - 1) for (lo, hi), b in zip(pads, (1, *base_dilation, 1))])
        pads = ((0, 0),) * x.ndim
    return lax.reduce_window(x, jnp.zeros((), x.dtype), lax.add, dims, st, pads, None, (1, *window_dilation, 1))


@_one_batch
def _select_and_scatter_add(source, operand, *, window, strides, padding):
    """The cotangent of a max window: each ``source`` value added at its window's first maximum.

    Windows that tile the input (stride = window, no padding: pooling's default) take
    :func:`_to_first_maxima`, elementwise and bit for bit XLA's select-and-scatter; others take
    XLA's select-and-scatter itself, as JAX's ``jax.vjp`` of ``lax.reduce_window``.
    """
    source = source.astype(operand.dtype)
    if tuple(strides) == tuple(window) and all(tuple(p) == (0, 0) for p in padding):
        return _to_first_maxima(source, operand, tuple(window))
    _, pullback = jax.vjp(_max_windows(window, strides, padding), operand)
    return pullback(source)[0]


def _to_first_maxima(source, operand, window):
    """Select-and-scatter over windows that tile ``operand`` (B, *S, C), stride = window, written
    as elementwise selects that XLA fuses into one loop.

    XLA's select-and-scatter (``select=ge``) walks each window in row-major order and moves its
    choice to an element only where ``not chosen >= element``: the first maximum wins ties, and a
    NaN is passed over. The same walk over the window's K slots gives each output the index of its
    chosen slot, and the cotangent goes to that slot, zeros elsewhere (and on the rows and columns
    past the last whole window, as VALID pooling leaves them). On XLA:CPU select-and-scatter
    becomes a variadic reduce-window over iotas and a scatter: 2x to 23x slower than this on
    (32, 4..64, 4..64, 16..32) images.
    """
    b, *sizes, c = operand.shape
    n = len(window)
    outs = [s // k for s, k in zip(sizes, window)]
    whole = operand[(slice(None), *(slice(0, o * k) for o, k in zip(outs, window)), slice(None))]
    split = whole.reshape(b, *(d for o, k in zip(outs, window) for d in (o, k)), c)
    # (B, O1, K1, ..., On, Kn, C) -> (B, O1, ..., On, C, K1, ..., Kn): the window's slots last
    perm = (0, *range(1, 2 * n, 2), 2 * n + 1, *range(2, 2 * n + 1, 2))
    slots = split.transpose(perm).reshape(b, *outs, c, -1)
    chosen, at = slots[..., 0], jnp.zeros(slots.shape[:-1], jnp.int32)
    for k in range(1, slots.shape[-1]):
        move = ~(chosen >= slots[..., k])
        chosen, at = jnp.where(move, slots[..., k], chosen), jnp.where(move, k, at)
    zero = jnp.zeros((), source.dtype)
    spread = jnp.stack([jnp.where(at == k, source, zero) for k in range(slots.shape[-1])], axis=-1)
    dx = spread.reshape(b, *outs, c, *window).transpose(np.argsort(perm)).reshape(whole.shape)
    rest = [(0, s - o * k) for s, o, k in zip(sizes, outs, window)]
    return jnp.pad(dx, [(0, 0), *rest, (0, 0)]) if any(hi for _, hi in rest) else dx


@_one_batch
def _select_and_gather_add(tangent, operand, *, window, strides, padding):
    """The tangent of a max window, as JAX computes it (its transpose is select-and-scatter)."""
    return jax.jvp(_max_windows(window, strides, padding), (operand,), (tangent.astype(operand.dtype),))[1]


#: One entry per primitive the shared rules do not cover: elementwise ones are functions of arrays.
RULES = {
    "real": jnp.real, "conj": jnp.conjugate,
    "neg": _lax_unary(lax.neg, jnp.negative), "exp": _lax_unary(lax.exp, jnp.exp), "log": _lax_unary(lax.log, jnp.log),
    "sqrt": _lax_unary(lax.sqrt, jnp.sqrt), "tanh": _lax_unary(lax.tanh, jnp.tanh),
    "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus, "relu": jax.nn.relu,
    "step": lambda x: _as_mask(x > 0, x), "cos": jnp.cos, "sin": jnp.sin, "floor": jnp.floor,
    "stop_gradient": jax.lax.stop_gradient,
    "optimization_barrier": lambda ins, outs, *vals: list(jax.lax.optimization_barrier(tuple(vals))),
    "scale": _by_constant(lax.mul, jnp.multiply), "shift": _by_constant(lax.add, jnp.add),
    "pow": lambda x, *, p: jnp.power(x, p),
    "add": _binary(lax.add, jnp.add, floats_only=False), "sub": _binary(lax.sub, jnp.subtract, floats_only=False),
    "mul": _binary(lax.mul, jnp.multiply, floats_only=False), "div": _binary(lax.div, jnp.divide),
    "power": jnp.power,
    "greater": lambda x, y: _as_mask(jnp.greater(x, y), x, y), "equal": lambda x, y: _as_mask(jnp.equal(x, y), x, y),
    "where": lambda c, x, y: jnp.where(c != 0, x, y), "cast": lambda x, *, dtype: jnp.asarray(x).astype(dtype),
    "reduce_max": lambda ins, outs, x, *, axes: jnp.max(x, axis=tuple(a + ins[0].batched for a in axes)) if axes else x,
    "softmax": lambda ins, outs, x, *, axis: jax.nn.softmax(x, axis=axis + ins[0].batched),
    "logsumexp": lambda ins, outs, x, *, axis: jax.nn.logsumexp(x, axis=axis + ins[0].batched),
    "normal": _normal,
    "uniform": _uniform,
    "conv": _conv,
    "conv_weight": _conv_weight,
    "window_max": _window_max,
    "window_sum": _window_sum,
    "select_and_scatter_add": _select_and_scatter_add,
    "select_and_gather_add": _select_and_gather_add,
}


def _library_function(prim):
    """``jax.numpy``'s function named as the elementwise primitive (``jnp.tan``), binding the lax
    primitive of that name on floats where there is one (:func:`_lax_unary`)."""
    fn = getattr(jnp, prim.name, None)
    if not callable(fn):
        return None
    op = getattr(lax, prim.name, None)
    return _lax_unary(op, fn) if op is not None and prim.arity == 1 else fn


def _needs_x64(types, what: str):
    """Refuse 64-bit wires while JAX computes in 32 bits (``jax_enable_x64`` off): it would run
    them as float32 and int32, with only a warning of JAX's own."""
    if not jax.config.jax_enable_x64:
        wide = sorted({t.dtype for t in types if t.dtype in ("float64", "int64", "complex128")})
        if wide:
            raise TypeError(f"{what} has {' and '.join(wide)} wires, but JAX runs with 32-bit numbers, so it would "
                            "compute them in float32/int32: turn on 64-bit JAX first, "
                            "jax.config.update('jax_enable_x64', True), or build the model in float32")


def _lax_loop(step, carries, xs, length, reverse):
    def body(c, x):
        c2, y = step(list(c), list(x))
        return tuple(c2), tuple(y)
    final, ys = jax.lax.scan(body, tuple(carries), tuple(xs), length=length, reverse=reverse)
    return list(final), list(ys)


#: The class of a concrete JAX array (what ``jax.device_put`` returns)
_DEVICE_ARRAY = type(jnp.zeros(()))

#: What is data on the host: NumPy arrays and Python numbers (and nested lists of them).
_HOST = (np.ndarray, np.generic, int, float, list, tuple)


def _fresh(v, dtype):
    """A new JAX array of ``v``: a state leaf never aliases a parameter. Host data is copied
    with NumPy and put on the device in one transfer (no conversion dispatched per leaf)."""
    if isinstance(v, _HOST):
        return jax.device_put(np.array(v, dtype=dtype))
    return jnp.array(v, dtype=dtype)


def _contraction(spec: str, shape_a: tuple, shape_b: tuple):
    """``jnp.einsum(spec, a, b)`` planned once for these shapes (``None``: the batch size): the one
    ``lax.dot_general`` (and transpose) it emits for two operands, which opt_einsum hands it
    ``b`` first, without its path search and ``jit`` per call. Indices summed out of one
    operand alone, repeated in one, or of size 1 against a larger one, and operands of two
    dtypes, are left to ``jnp.einsum``."""
    (ta, tb), to = spec.split("->")[0].split(","), spec.split("->")[1]
    general = functools.partial(jnp.einsum, spec)
    size_a, size_b = dict(zip(ta, shape_a)), dict(zip(tb, shape_b))
    if len(set(ta)) < len(ta) or len(set(tb)) < len(tb) or not set(ta) ^ set(tb) <= set(to) \
            or any((size_a[i] == 1) != (size_b[i] == 1) for i in set(ta) & set(tb)):
        return general
    contracted = sorted(set(ta) & set(tb) - set(to))
    batch = [i for i in to if i in ta and i in tb]
    kept_a, kept_b = ([i for i in t if i not in batch and i not in contracted] for t in (ta, tb))
    dims_a, dims_b = ((tuple(t.index(i) for i in contracted), tuple(t.index(i) for i in batch)) for t in (ta, tb))
    if "".join(batch + kept_a + kept_b) == to:
        operands, numbers, names = (0, 1), ((dims_a[0], dims_b[0]), (dims_a[1], dims_b[1])), to
    else:
        operands, numbers = (1, 0), ((dims_b[0], dims_a[0]), (dims_b[1], dims_a[1]))
        names = "".join(batch + kept_b + kept_a)
    perm = None if names == to else tuple(names.index(i) for i in to)

    def contract(a, b):
        if a.dtype != b.dtype or a.dtype not in _FLOATS:
            return general(a, b)
        lhs, rhs = (a, b)[operands[0]], (a, b)[operands[1]]
        out = lax.dot_general(lhs, rhs, numbers, None, preferred_element_type=a.dtype)
        return out if perm is None else lax.transpose(out, perm)
    return contract


LIB = ArrayLib(
    xp=jnp,
    asarray=lambda v, dtype: _fresh(v, dtype),
    full=lambda shape, value, dtype: jnp.full(shape, value, dtype=dtype),
    constant=lambda value, shape, dtype: jnp.asarray(np.asarray(value, dtype=dtype).reshape(shape)),
    einsum=lambda spec, a, b: jnp.einsum(spec, a, b),
    contraction=_contraction,
    add_at=lambda acc, idx, v: acc.at[idx].add(v),
)


class JaxBackend(ArrayBackend):
    """JAX: terms become functions ``jax.jit`` compiles; training steps are one ``jax.jit``
    program (donated state, ``lax.scan`` over batches, sharding over a mesh, ``jax.export``)."""

    def owns(self, value) -> bool:
        """Whether ``value`` is a JAX array.

        Args:
            value: anything.

        Returns:
            ``isinstance(value, jax.Array)``.
        """
        return isinstance(value, jax.Array)

    def array(self, value, type: ArrayType):
        """``value`` as a JAX array of ``type``; host data (a zero state leaf, a drawn parameter)
        is shaped with NumPy and put on the device in one transfer, not broadcast by a dispatched
        ``jnp.full`` after it.

        Args:
            value: a number, nested lists or an array.
            type: the wire's type.

        Returns:
            The JAX array.

        Raises:
            TypeError: ``type`` is 64-bit and JAX runs with 32-bit numbers (see :meth:`compile`).
        """
        _needs_x64([type], "an array")
        if isinstance(value, _HOST):
            return jax.device_put(host.array(value, type))
        return super().array(value, type)

    def compile(self, term, **options):
        """``fn(params, *args)`` computing ``term`` with JAX (to wrap in ``jax.jit``).

        A term of 64-bit wires (float64, int64) needs JAX's 64-bit mode: without it JAX would
        quietly compute in 32 bits, so the term is refused, naming the switch.

        Args:
            term: a term, or a lens, optimizer or learner.
            **options: none are taken.

        Returns:
            The function.

        Raises:
            TypeError: 64-bit wires while ``jax_enable_x64`` is off, or options given.
        """
        term = as_term(term)
        _needs_x64(term.wires, term.name)
        return super().compile(term, **options)

    def init(self, term, seed: int = 0) -> dict:
        """Initial parameters as JAX arrays (the NumPy backend's draws).

        Args:
            term: the term (or lens, optimizer, learner) whose parameters to draw.
            seed: the seed.

        Returns:
            ``{name: array}``.

        Raises:
            TypeError: 64-bit parameters while ``jax_enable_x64`` is off.
        """
        term = as_term(term)
        _needs_x64([p.type for p in term.params], term.name)
        return super().init(term, seed)

    #: fit keeps the state before each chunk of steps (to return it if a loss turns non-finite)
    fit_options = {"donate": False}

    def compile_step(self, step, *, donate: bool = True, scan: bool = False, mesh=None,
                     batch_axis: str | None = None, sharding=None, state_axes=None, pipeline=None,
                     classes: int | None = None) -> CompiledStep:
        """The training step as one ``jax.jit`` program (see :class:`CompiledStep`).

        ``mesh``: a ``jax.sharding.Mesh``; the batch is sharded over ``batch_axis``
        (its first axis by default), parameters and optimizer state are
        replicated, and XLA inserts the all-reduce of the parameter cotangents.
        ``sharding``: a :class:`~paralens.backends.sharding.Sharding` (FSDP, tensor parallelism),
        with the learner's ``state_axes``.
        """
        step = as_term(step)
        _needs_x64(step.wires, step.name)
        return CompiledStep(step, donate=donate, scan=scan, mesh=mesh, batch_axis=batch_axis, sharding=sharding,
                            state_axes=state_axes, pipeline=pipeline, check=labels_check(classes), classes=classes)

    def to_optax(self, opt):
        """A paralens optimizer as an ``optax.GradientTransformation``."""
        from . import optax as interop
        return interop.to_optax(opt)

    def from_optax(self, tx):
        """An ``optax.GradientTransformation`` as a paralens optimizer (one opaque box)."""
        from . import optax as interop
        return interop.from_optax(tx)

    def compile_bilevel(self, problem, **options):
        """The outer step of a :class:`~paralens.Bilevel` problem, compiled with JAX."""
        from .bilevel import CompiledBilevel
        return CompiledBilevel(problem, **options)


backend = JaxBackend("jax", LIB, RULES, convert=jnp.asarray, loop=_lax_loop, library=_library_function)


def compile(term):  # noqa: A001 - the public contract
    """A JAX function for ``term`` (same calling convention as the NumPy backend).

    It is not jitted, so it composes with any JAX transformation; wrap it in
    ``jax.jit`` to compile.

    Args:
        term: a term, or a lens, optimizer or learner (its term is taken).

    Returns:
        ``fn(params, *args)``: ``params`` the dict of parameter arrays by name (or the one
            parameter's array bare), ``args`` the term's inputs; it returns the term's outputs as JAX
            arrays.

    Raises:
        TypeError: ``term`` has 64-bit wires (float64, int64) while ``jax_enable_x64`` is off.
    """
    return backend.compile(term)


def init(term, seed: int = 0) -> dict:
    """The NumPy backend's initial values, as JAX arrays.

    Args:
        term: a term, or a lens, optimizer or learner, whose parameters to draw.
        seed: the seed; each parameter's draw depends on it and the parameter's name only.

    Returns:
        ``{name: JAX array}`` for each parameter but the batched ones (labels and other data,
            which are not drawn).

    Raises:
        TypeError: 64-bit parameters while ``jax_enable_x64`` is off.
    """
    return backend.init(term, seed)


def _has_barrier(term: Term) -> bool:
    """Whether ``term`` or a term inside one of its boxes (a scan's body) has an optimization barrier."""
    return any(e.prim is OPT_BARRIER or any(isinstance(v, Term) and _has_barrier(v) for v in e.kwargs.values())
               for e in term.eqns)


class CompiledStep:
    """A training step compiled as one ``jax.jit`` program, from a learner's step term alone.

    ``step(state, x, y) -> (state, loss)``; with ``scan=True``,
    ``step(state, xs, ys) -> (state, losses)`` runs one step per leading slice
    of ``xs``/``ys`` inside a single ``lax.scan``. The parts of the state the
    step rewrites (``params``, ``opt``, and ``step`` and ``key`` where the state
    has them) are donated: their buffers are reused
    for the new state, so do not keep using the old one. The rest
    (``hyper``) is read, never rewritten, so it is passed undonated and not
    returned by the program.

    Made by ``learner.compile("jax", ...)`` (:meth:`paralens.Learner.compile`).

    Args:
        term: a learner's step term (``learner.step_term``); it alone gives the state's types.
        donate: donate the rewritten parts of the state (default ``True``); ``False`` leaves the
            old state usable (``fit`` keeps it, to return it when a loss goes non-finite).
        scan: take stacks of batches ``(xs, ys)``, one step per leading slice, in one ``lax.scan``
            (default ``False``).
        mesh: a ``jax.sharding.Mesh`` to run data-parallel on: the batch is sharded over
            ``batch_axis``, the state replicated, and XLA inserts the all-reduce of the
            parameter cotangents; ``None`` (the default): one device.
        batch_axis: the mesh axis the batch is sharded over; ``None`` (the default): the mesh's
            first axis.
        sharding: a :class:`~paralens.backends.sharding.Sharding`: the state laid out by its rules
            (FSDP, tensor parallelism) and the batch over its batch axes; instead of ``mesh``.
        state_axes: the logical axes of the state's leaves (``learner.state_axes``), which
            ``sharding``'s rules read; ``None``: no names (only FSDP splits the state).
        pipeline: the learner's pipeline stages (``learner.pipeline(n)``), run with a GPipe
            schedule over ``sharding``'s pipeline axis (:mod:`paralens.backends.pipeline`) in place of
            ``term``'s own computation; ``None``: no pipeline.
        check: ``check(x, y)``, the host check of the labels (class indices in range, from
            ``paralens.backends.validate.labels_check``), run before each call unless ``x`` and ``y``
            are already JAX arrays of one batch size (labels on a device are not read back);
            ``None`` (the default): no check.
        classes: the labels are class indices into this many classes: a step whose labels are
            not all in ``[0, classes)`` returns a NaN loss (checked inside the program, on the
            device, so labels that never come back to the host are checked too; the state is
            updated as the step term computes it, and ``fit`` stops at the NaN). ``None``: no check.
    """

    def __init__(self, term: Term, *, donate: bool = True, scan: bool = False, mesh=None,
                 batch_axis: str | None = None, sharding=None, state_axes=None, pipeline=None, check=None,
                 classes: int | None = None):
        self.term = term
        self.scan = scan
        self._same_batch = batch_check(term, scan)
        self._check = check
        _, x_type, y_type = term.input_types()
        self._lead = 2 if scan else 1
        # one batched x and one batched y: device arrays of equal leading sizes need no other check
        self._plain = all(isinstance(t, ArrayType) and t.batched for t in (x_type, y_type))
        self.updated = term.out_sig[0].keys  # the parts of the state the step returns
        self.kept = tuple(k for k in term.in_sig[0].keys if k not in self.updated)
        if pipeline is not None:
            if sharding is None or sharding.pipeline is None:
                raise TypeError("pipeline= needs sharding= with a pipeline axis")
            from .pipeline import pipelined
            program = pipelined(pipeline, sharding, backend.compile)
        else:
            fn = backend.compile(term)

            def program(state, x, y):
                return fn({}, state, x, y)

        def step(state, x, y):
            new, loss = program(state, x, y)
            if classes is not None:  # labels on a device are not read back: a wrong one makes the loss NaN
                valid = jnp.all((y >= 0) & (y < classes))
                loss = jnp.where(valid, loss, jnp.asarray(jnp.nan, loss.dtype))
            return {**state, **new}, loss

        def many(state, xs, ys):
            return jax.lax.scan(lambda s, xy: step(s, *xy), state, (xs, ys))

        self._fn = many if scan else step

        def paralens_step(updated, kept, x, y):
            self._same_batch(x, y)  # at trace time, on static shapes: a call pays nothing for it
            new, loss = self._fn({**updated, **kept}, x, y)
            return {k: new[k] for k in self.updated}, loss

        kw = {}
        if mesh is not None or sharding is not None:
            from .sharding import Sharding
            if sharding is None:
                sharding = Sharding(mesh, batch=batch_axis)
            elif mesh is not None or batch_axis is not None:
                raise TypeError("give either sharding= or mesh= (and batch_axis=), not both")
            mesh = sharding.mesh
            state_t, x_t, y_t = term.input_types()
            layout = sharding.state(state_t, state_axes)
            updated, kept = ({k: layout[k] for k in keys} for keys in (self.updated, self.kept))
            self._data = (sharding.data(x_t, self._lead), sharding.data(y_t, self._lead))
            kw = dict(in_shardings=(updated, kept, *self._data), out_shardings=(updated, sharding.replicated()))
            self.state_sharding = layout
        self.sharding = sharding
        self.mesh = mesh
        platform = (mesh.devices.flat[0] if mesh is not None else jax.devices()[0]).platform
        if platform == "cpu" and _has_barrier(term):
            # XLA:CPU removes optimization barriers before common-subexpression elimination,
            # which merges a recomputed layer back into the forward pass and keeps every
            # residual alive (hand-written jax.checkpoint loses its savings the same way).
            # Keeping the barriers makes a recomputing residual policy save memory on CPU too.
            kw["compiler_options"] = {"xla_disable_hlo_passes": "cse_barrier_expander"}
        self._jit = jax.jit(paralens_step, donate_argnums=(0,) if donate else (), **kw)

    def _split(self, state):
        return {k: state[k] for k in self.updated}, {k: state[k] for k in self.kept}

    def __call__(self, state, x, y):
        """One step (or, scanned, one step per leading slice of ``x`` and ``y``).

        Args:
            state: the training state (``learner.init(backend="jax")``); its rewritten parts
                (``params``, ``opt``, ``step``, ``key``) are donated.
            x: the inputs, batched (arrays, or nested lists of numbers).
            y: the labels, batched.

        Returns:
            ``(new state, loss)`` (losses, one a step, when scanned).

        Raises:
            ValueError: ``x`` and ``y`` differ in batch size, or host labels are out of range; a
                sharded step's batch does not divide into its data shards (and microbatches).
            TypeError: data that cannot be cast to the step's dtypes.
        """
        if not (self._plain and type(x) is _DEVICE_ARRAY and type(y) is _DEVICE_ARRAY):  # their batches: the trace's
            x, y = self._arrays(x, 1), self._arrays(y, 2)
            self._same_batch(x, y)  # labels on a device are not range-checked (no read back)
            if self._check is not None:
                self._check(x, y)
            if self.sharding is not None:  # host data, each device given its slice (every process its own)
                self._divides(x)
                x, y = self._place(x, self._data[0]), self._place(y, self._data[1])
        elif self.sharding is not None:
            self._divides(x)
        new, loss = self._jit(*self._split(state), x, y)
        return {**state, **new}, loss

    def _divides(self, x):
        """A sharded batch must split evenly over its data shards (and, pipelined, microbatches)."""
        first = x[0] if isinstance(x, tuple) else x
        size = np.shape(first)[self._lead - 1]
        ways = self.sharding._size(self.sharding.batch) * (self.sharding.microbatches if self.sharding.pipeline else 1)
        if size % ways:
            raise ValueError(f"a batch of {size} examples cannot be split over the {ways} "
                             f"{'data shards x microbatches' if self.sharding.pipeline else 'data shards'} of "
                             f"{self.sharding}; give a multiple of {ways}")

    @staticmethod
    def _place(value, sharding):
        if isinstance(value, tuple):
            return tuple(CompiledStep._place(v, s) for v, s in zip(value, sharding))
        if isinstance(value, jax.Array):
            return value
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def _arrays(self, value, k: int):
        """Python lists and numbers (leaves of argument ``k``) as NumPy arrays of the step's dtypes:
        a trace cannot read them, the host can."""
        types, sig = self.term.input_types()[k], self.term.in_sig[k]

        def convert(v, t, s, what):
            if s is None:
                return cast(np.asarray(v), t, what) if isinstance(v, (list, tuple, int, float)) else v
            if isinstance(v, (list, tuple)) and len(v) == len(s):
                return tuple(convert(a, b, c, f"{what}[{i}]") for i, (a, b, c) in enumerate(zip(v, t, s)))
            return v
        return convert(value, types, sig, "xy"[k - 1])

    def lower(self, state, x, y):
        """``jax.jit(...).lower``: inspect the program (``.as_text()``, ``.compile()``).

        Nothing is checked or cast on the host first, and nothing runs or is donated.

        Args:
            state: the training state, or its shapes and dtypes (``jax.ShapeDtypeStruct`` leaves).
            x: the inputs as the step takes them (a batch, or a stack of batches with ``scan``):
                arrays or ``jax.ShapeDtypeStruct``.
            y: the labels, likewise.

        Returns:
            The ``jax.stages.Lowered`` program for those shapes.
        """
        return self._jit.lower(*self._split(state), x, y)

    def export(self, path: str | None = None, *, batch: str = "b", batch_size: int | None = None) -> bytes:
        """Serialize the step with ``jax.export``, batch dimension symbolic; write it to ``path``.

        The state's types are the step term's, so the state ``learner.init``
        returns is what it takes (whole: the exported program does not donate it). A step
        compiled with ``mesh=`` or ``sharding=`` is exported with its shardings
        (``Exported.in_shardings_hlo``): it runs on a mesh of the same shape, the state laid out
        as ``learner.init(..., sharding=)`` lays it out. The file is written atomically, with its
        checksum beside it (``path + ".sha256"``), which
        :func:`paralens.backends.artifacts.load_export` verifies. The artifact
        needs only JAX to run::

            exp = jax.export.deserialize(open(path, "rb").read())
            new_state, loss = exp.call(state, x, y)

        Args:
            path: the file to write; ``None`` (the default): write nothing, only return the bytes.
            batch: the name of the symbolic batch dimension (default ``"b"``); with ``scan``, the
                stacked steps' dimension is the symbolic ``k``.
            batch_size: a fixed batch size instead of the symbolic one; a pipelined step needs it
                (XLA:CPU crashes running a pipeline exported with a symbolic batch, jax 0.10).

        Returns:
            The serialized program, what ``jax.export.deserialize`` reads.

        Raises:
            OSError: ``path`` or its checksum could not be written.
            ValueError: a pipelined step without ``batch_size``, or a ``batch_size`` that does not
                split over the data shards and microbatches.
        """
        from jax import export as jex

        state_t, x_t, y_t = self.term.input_types()
        if self.sharding is not None and self.sharding.pipeline is not None and batch_size is None:
            raise ValueError("a pipelined step exports with a fixed batch: pass batch_size= (a multiple of "
                             f"{self.sharding._size(self.sharding.batch) * self.sharding.microbatches})")
        # sharded, the batch is a multiple of the devices it is split over (a symbolic "8*b"), times the
        # microbatches of a pipeline
        n = 1 if self.sharding is None else \
            self.sharding._size(self.sharding.batch) * (self.sharding.microbatches if self.sharding.pipeline else 1)
        dim = batch if n == 1 else f"{n}*{batch}"
        if batch_size is not None:
            if type(batch_size) is not int or batch_size < 1 or batch_size % n:
                raise ValueError(f"batch_size must be a positive int multiple of {n}, got {batch_size!r}")
            dim = str(batch_size)
        if self.scan:
            k, b = jex.symbolic_shape(f"k, {dim}")
            lead = (k, b)
        else:
            (b,) = jex.symbolic_shape(dim)
            lead = (b,)

        def spec(tree, data: bool):
            if isinstance(tree, dict):
                return {key: spec(v, data) for key, v in tree.items()}
            if isinstance(tree, tuple):
                return tuple(spec(v, data) for v in tree)
            shape = (lead if data or tree.batched else ()) + tree.shape
            return jax.ShapeDtypeStruct(shape, tree.dtype)
        kw = {}
        if self.sharding is not None:  # the program keeps its shardings: it runs on a mesh of the same shape
            data = (self.sharding.data(x_t, self._lead), self.sharding.data(y_t, self._lead))
            kw = dict(in_shardings=(self.state_sharding, *data),
                      out_shardings=(self.state_sharding, self.sharding.replicated()))
        exported = jex.export(jax.jit(self._fn, **kw))(spec(state_t, False), spec(x_t, True), spec(y_t, True))
        blob = exported.serialize()
        if path is not None:
            from .artifacts import write_export
            write_export(path, blob)
        return blob
