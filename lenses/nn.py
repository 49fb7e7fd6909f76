"""Layers as parametrised terms.

Layers whose type is fixed by their arguments (``dense``) are terms; those
whose type follows their input (activations, convolutions, pooling, flatten)
are :class:`~paralens.Poly` and take their type from what they are
composed after. A numeric argument (``leaky_relu``'s slope) may be declared
a :func:`~paralens.hyperparameter`: it then becomes a wire of the layer.

>>> import paralens as pl
>>> model = pl.nn.dense(4, 8) >> pl.nn.relu() >> pl.nn.dense(8, 3)
>>> model.param_names
('dense0.W', 'dense0.b', 'dense1.W', 'dense1.b')
"""

import math
import numbers
from collections.abc import Callable, Sequence

from . import init as inits
from . import wires as W
from .parameters import number, with_axes
from .passes import without_training_only
from .prims import FLOATS, INTS, KEY, promote
from .terms import TRAINING_ONLY, Builder, Poly, Term
from .tracer import term_of, term_on
from .types import Array, ArrayType, Ty, positive_int, real

__all__ = ["dense", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "softmax", "mlp",
           "conv1d", "conv2d", "conv3d", "conv_transpose2d", "max_pool", "avg_pool", "flatten", "layer_norm",
           "rms_norm", "embedding", "dropout",
           "inference_mode", "multi_head_attention", "transformer_block"]


def _activation_layer(fn: Callable, name: str) -> Poly:
    return Poly(lambda ty: term_on(ty, lambda *xs: tuple(fn(x) for x in xs), name), name)


def _with_numbers(fn: Callable, name: str, **numbers) -> Poly:
    """An elementwise layer with numeric arguments, each a number or a hyperparameter wire."""
    def make(ty: Ty) -> Term:
        b = Builder()
        slot = b.new_layer(name)
        b.layer = (name, slot)
        xs = [b.input(t) for t in ty]
        dtype = promote([ArrayType((), "float32"), *ty])
        args = {k: number(b, v, name, slot, k, dtype) for k, v in numbers.items()}
        with W.tracing(b):
            outs = [fn(W.Wire(b, x), **args).id for x in xs]
        return b.build(xs, outs, name=name)
    return Poly(make, name)


def relu() -> Poly:
    """Elementwise ``max(x, 0)``.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``relu``: at a
        type it maps each input wire to an output wire of the same type.
    """
    return _activation_layer(W.relu, "relu")


def leaky_relu(negative_slope: float = 0.01) -> Poly:
    """Elementwise ``x`` where ``x > 0``, else ``negative_slope * x`` (``jax.nn.leaky_relu``).

    Args:
        negative_slope: the slope for ``x <= 0``: a finite number, or a
            :func:`~paralens.hyperparameter` (then a parameter wire of the layer,
            ``leaky_relu.negative_slope``). A plain number is checked when the layer is typed.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) named ``leaky_relu``: at a type it maps each
        input wire to an output wire of the same type.

    >>> import paralens as pl
    >>> pl.nn.leaky_relu(pl.hyperparameter(0.1)).at(pl.Array[3]).hyper_names
    ('leaky_relu.negative_slope',)
    """
    return _with_numbers(lambda x, negative_slope: W.where(W.greater(x, 0.0), x, negative_slope * x),
                         "leaky_relu", negative_slope=negative_slope)


def sigmoid() -> Poly:
    """Elementwise logistic function.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``sigmoid``: at a
        type it maps each input wire to an output wire of the same type.
    """
    return _activation_layer(W.sigmoid, "sigmoid")


def tanh() -> Poly:
    """Elementwise hyperbolic tangent.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``tanh``: at a
        type it maps each input wire to an output wire of the same type.
    """
    return _activation_layer(W.tanh, "tanh")


def gelu() -> Poly:
    """Elementwise GELU (tanh approximation).

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``gelu``: at a
        type it maps each input wire to an output wire of the same type.
    """
    return _activation_layer(W.gelu, "gelu")


def softplus() -> Poly:
    """Elementwise ``log(1 + exp(x))``.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``softplus``: at a
        type it maps each input wire to an output wire of the same type.
    """
    return _activation_layer(W.softplus, "softplus")


def softmax(axis: int = -1) -> Poly:
    """Softmax over a per-example axis.

    Args:
        axis: the axis of each example (the batch axis not counted) to normalise over; negative
            counts from the end, so the default ``-1`` is the last. It must lie in
            ``[-ndim, ndim)`` of the type the layer is given, else typing it raises ``ValueError``.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``softmax``: at a
        type it maps each input wire to an output wire of the same type, summing to 1 along ``axis``.

    Raises:
        TypeError: if ``axis`` is not an int (a bool included).
    """
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"softmax: axis must be an int, got {axis!r}")
    return _activation_layer(lambda x: W.softmax(x, axis), "softmax")


#: The activation layers, as :func:`mlp`'s error message lists them.
_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "softmax")


#: Logical axis names of the built-in layers' parameters (MaxText's: ``embed`` the model's width,
#: ``mlp`` a hidden layer's, ``heads`` attention's, ``vocab`` the tokens'). Megatron's tensor
#: parallelism is the rules ``{"mlp": "model", "heads": "model"}``: a column-parallel layer
#: (``embed -> mlp``) then a row-parallel one (``mlp -> embed``).
COLUMN, ROW = ("embed", "mlp"), ("mlp", "embed")


def _dense_into(b: Builder, x: int, n_in: int, n_out: int, dtype: str, init: tuple,
                axes: tuple = COLUMN) -> int:
    slot = b.new_layer("dense")
    w = b.param("dense", slot, "W", ArrayType((n_in, n_out), dtype, False), init, axes=axes)
    bias = b.param("dense", slot, "b", ArrayType((n_out,), dtype, False), inits.zeros(), axes=axes[1:])
    b.layer = ("dense", slot)
    lead = "abcdefgh"[: b.type_of(x).ndim - 1]  # any leading axes (tokens) are kept
    out = (W.einsum(f"{lead}i,io->{lead}o", W.Wire(b, x), W.Wire(b, w)) + W.Wire(b, bias)).id
    b.layer = None
    return out


def dense(n_in: int, n_out: int, *, dtype: str = "float32", init: tuple = inits.glorot_uniform(),
          axes: tuple[str | None, str | None] = COLUMN) -> Term:
    """``x @ W + b`` with ``W`` of shape ``(n_in, n_out)`` (Glorot-uniform) and ``b`` zero.

    Args:
        n_in: the number of input features, a positive int.
        n_out: the number of output features, a positive int.
        dtype: the dtype of the input and of both parameters (``"float32"``, ``"float64"``, ...).
        init: the initialiser of ``W``, a descriptor of :mod:`paralens.init`; ``b`` starts at zeros.
        axes: the logical names of ``W``'s two axes (``b`` takes the second), which sharding rules
            map to mesh axes: ``("embed", "mlp")`` (the default) is column-parallel under
            tensor parallelism, ``("mlp", "embed")`` row-parallel.

    Returns:
        The term ``Array[n_in] -> Array[n_out]`` (batched), named ``dense(n_in, n_out)``, with the
        parameters ``dense.W`` of shape ``(n_in, n_out)`` and ``dense.b`` of shape ``(n_out,)``.

    Raises:
        TypeError: if ``n_in`` or ``n_out`` is not an int.
        ValueError: if ``n_in`` or ``n_out`` is not positive, ``dtype`` is not a floating-point dtype
            (an integer layer would draw all-zero weights and have no gradient), or ``init`` is not
            an initialiser.

    >>> import paralens as pl
    >>> pl.nn.dense(4, 3).param_types["dense.W"]
    Array[4, 3, batched=False]
    """
    n_in, n_out = positive_int(n_in, "dense: n_in"), positive_int(n_out, "dense: n_out")
    _float_dtype("dense", dtype)
    init = inits.initializer(init, "dense: init")
    b = Builder()
    x = b.input(Array(n_in, dtype=dtype))
    return b.build([x], [_dense_into(b, x, n_in, n_out, dtype, init, axes)], name=f"dense({n_in}, {n_out})")


def mlp(sizes: Sequence[int], activation: Callable | Poly = relu, final_activation: Callable | Poly | None = None,
        *, dtype: str = "float32") -> Term:
    """Dense layers of ``sizes`` (``[4, 20, 3]``: two layers) with ``activation`` between them.

    Args:
        sizes: the feature counts, input first and output last: a list of at least two positive
            ints; each consecutive pair is a :func:`dense` layer (Glorot-uniform ``W``, zero ``b``).
        activation: the layer between two dense layers: an activation of this module, called
            (``pl.nn.relu()``) or not (``pl.nn.relu``), or any other polymorphic layer.
        final_activation: the layer after the last dense layer, given the same ways; ``None``
            for none (the output is the last layer's ``x @ W + b``).
        dtype: the dtype of the input and of every parameter.

    Returns:
        The term ``Array[sizes[0]] -> Array[sizes[-1]]`` (batched), named ``mlp(sizes)``, with the
        parameters ``dense0.W``, ``dense0.b``, ``dense1.W``, ... of its dense layers in order, their
        axes named column- then row-parallel in turn (``("embed", "mlp")``, ``("mlp", "embed")``, ...).

    Raises:
        TypeError: if ``sizes`` is not a list (or other iterable) of ints, or ``activation`` or
            ``final_activation`` is not a layer or a function making one (``pl.tanh`` acts on
            wires: give ``pl.nn.tanh``).
        ValueError: if ``sizes`` has fewer than two entries or an entry is not positive, or ``dtype``
            is not a floating-point dtype.
    """
    _float_dtype("mlp", dtype)
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"mlp: sizes must be a list of positive ints, got {sizes!r}")
    sizes = [positive_int(n, f"mlp: sizes[{i}]") for i, n in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    act = _layer(activation, "activation")
    fin = None if final_activation is None else _layer(final_activation, "final_activation")
    out = None
    for k, (n, m) in enumerate(zip(sizes, sizes[1:])):  # a composite of its layers: pipeline stages cut it
        layer = dense(n, m, dtype=dtype, axes=ROW if k % 2 else COLUMN)
        out = layer if out is None else out >> layer
        a = act if k < len(sizes) - 2 else fin
        if a is not None:
            out = out >> a
    return out.renamed(f"mlp({sizes})")


def _layer(activation, what: str) -> Poly:
    """An activation given to :func:`mlp`: a layer, or a function making one (``pl.nn.relu``)."""
    expected = TypeError(f"mlp: {what} must be a layer of pl.nn such as "
                         f"{', '.join(f'pl.nn.{n}' for n in _ACTIVATIONS)} (or one of them called, pl.nn.relu()), "
                         f"got {activation!r}")
    layer = activation
    if callable(activation) and not isinstance(activation, (Poly, Term)):
        try:
            layer = activation()
        except TypeError as e:  # a function that is not a layer constructor (pl.tanh wants a wire)
            raise expected from e
    if not isinstance(layer, Poly):
        raise expected
    return layer


_SPATIAL = {1: "(L, C)", 2: "(H, W, C)", 3: "(D, H, W, C)"}


def _conv_layer(fn: str, n: int, in_channels, out_channels, kernel, stride, padding, dilation, groups, init,
                transpose: bool = False) -> Poly:
    """A convolution layer of ``n`` spatial axes with a bias (checked here, built at its input type)."""
    in_channels = positive_int(in_channels, f"{fn}: in_channels")
    out_channels = positive_int(out_channels, f"{fn}: out_channels")
    kernel = W.positive_ints(fn, "kernel", kernel, n)
    stride = W.positive_ints(fn, "stride", stride, n)
    dilation = W.positive_ints(fn, "dilation", dilation, n)
    groups = positive_int(groups, f"{fn}: groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"{fn}: groups={groups} must divide in_channels={in_channels} and "
                         f"out_channels={out_channels}")
    pad = W.padding_of(fn, padding, n=n)
    init = inits.initializer(init, f"{fn}: init")
    shape = kernel + (in_channels // groups, out_channels)
    size = "x".join(map(str, kernel))

    def make(ty: Ty) -> Term:
        (t,) = ty
        if t.ndim != n + 1 or t.shape[-1] != in_channels:
            raise TypeError(f"{fn} expects per-example {_SPATIAL.get(n, f'({n} axes, C)')} arrays with "
                            f"C = {in_channels}, got {t}")

        def conv(x, w: ArrayType(shape, t.dtype, False) = init,
                 b: ArrayType((out_channels,), t.dtype, False) = inits.zeros()):
            if transpose:
                return W.conv_transpose(x, w, stride=stride, padding=pad, dilation=dilation) + b
            return W.conv(x, w, stride=stride, padding=pad, dilation=dilation, groups=groups) + b
        return term_of(conv, dom=[t], name=f"{fn}({in_channels}, {out_channels}, {size})", layer="conv")
    return Poly(make, fn)


def conv2d(in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 3, *,
           stride=(1, 1), padding: int | tuple | str = "valid", dilation=1, groups: int = 1,
           init: tuple = inits.he_normal()) -> Poly:
    """2-D convolution with bias on per-example (H, W, C) images; ``padding`` is
    ``"valid"``, ``"same"`` (``ceil(H / stride)`` rows, as JAX and TensorFlow: an even kernel
    pads one more row after than before), an int, ``(ph, pw)`` or ``((top, bottom), (left, right))``.

    Args:
        in_channels: the channels ``C`` of the input images, a positive int.
        out_channels: the channels of the output images (the number of filters), a positive int.
        kernel: the kernel's size, an int for a square ``(k, k)`` or a pair ``(kh, kw)``.
        stride: the step between windows, an int or a pair ``(sh, sw)``; the default moves one pixel.
        padding: the zeros padded around each image, in one of the forms above; ``"valid"``
            (the default) pads none.
        dilation: the kernel's dilation (atrous convolution), an int or a pair.
        groups: feature groups dividing both channel counts; ``groups = in_channels`` is a
            depthwise convolution.
        init: the initialiser of the kernel, a descriptor of :mod:`paralens.init` (He-normal by
            default); the bias starts at zeros.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at a per-example type ``(H, W, in_channels)``
        it is the term to ``(OH, OW, out_channels)``, with the parameters ``conv.w`` of shape
        ``(kh, kw, in_channels / groups, out_channels)`` and ``conv.b`` of shape ``(out_channels,)``.
        Typing it at another shape raises ``TypeError``.

    Raises:
        TypeError: if a size, the stride or the padding has the wrong type or form.
        ValueError: if a size or a stride is not positive, ``groups`` does not divide the channels,
            the padding is negative or an unknown string, or ``init`` is not an initialiser.

    >>> import paralens as pl
    >>> pl.nn.conv2d(1, 2, 4, padding="same").at(pl.Array[8, 8, 1]).cod
    Ty(Array[8, 8, 2])
    >>> pl.nn.conv2d(4, 8, 3, padding=1, groups=4).at(pl.Array[6, 6, 4]).param_types["conv.w"]
    Array[3, 3, 1, 8, batched=False]
    """
    return _conv_layer("conv2d", 2, in_channels, out_channels, kernel, stride, padding, dilation, groups, init)


def conv1d(in_channels: int, out_channels: int, kernel: int | tuple[int] = 3, *, stride=1,
           padding: int | tuple | str = "valid", dilation=1, groups: int = 1, init: tuple = inits.he_normal()) -> Poly:
    """1-D convolution with bias on per-example (L, C) sequences: :func:`conv2d` with one spatial axis.

    Args:
        in_channels: the input's channels ``C``.
        out_channels: the output's channels.
        kernel: the window's length.
        stride: the step between windows.
        padding: ``"valid"``, ``"same"``, an int or ``((lo, hi),)``.
        dilation: the kernel's dilation.
        groups: feature groups dividing both channel counts.
        init: the kernel's initialiser.

    Returns:
        A polymorphic layer: at ``(L, in_channels)`` the term to ``(L', out_channels)``, parameters
        ``conv.w`` ``(k, in_channels / groups, out_channels)`` and ``conv.b``.

    Raises:
        TypeError: if an argument has the wrong type or form.
        ValueError: if a size is not positive, ``groups`` does not divide the channels, or the
            padding is negative or unknown.

    >>> import paralens as pl
    >>> pl.nn.conv1d(3, 5, 4, stride=2, padding="same").at(pl.Array[9, 3]).cod
    Ty(Array[5, 5])
    """
    return _conv_layer("conv1d", 1, in_channels, out_channels, kernel, stride, padding, dilation, groups, init)


def conv3d(in_channels: int, out_channels: int, kernel: int | tuple[int, int, int] = 3, *, stride=1,
           padding: int | tuple | str = "valid", dilation=1, groups: int = 1, init: tuple = inits.he_normal()) -> Poly:
    """3-D convolution with bias on per-example (D, H, W, C) volumes: :func:`conv2d` with three
    spatial axes.

    Args:
        in_channels: the input's channels ``C``.
        out_channels: the output's channels.
        kernel: the window, an int or three.
        stride: the step between windows.
        padding: ``"valid"``, ``"same"``, an int, three, or three ``(lo, hi)`` pairs.
        dilation: the kernel's dilation.
        groups: feature groups dividing both channel counts.
        init: the kernel's initialiser.

    Returns:
        A polymorphic layer: at ``(D, H, W, in_channels)`` the term to ``(D', H', W', out_channels)``,
        parameters ``conv.w`` ``(*kernel, in_channels / groups, out_channels)`` and ``conv.b``.

    Raises:
        TypeError: if an argument has the wrong type or form.
        ValueError: if a size is not positive, ``groups`` does not divide the channels, or the
            padding is negative or unknown.

    >>> import paralens as pl
    >>> pl.nn.conv3d(2, 4, 3, padding="same").at(pl.Array[4, 5, 6, 2]).cod
    Ty(Array[4, 5, 6, 4])
    """
    return _conv_layer("conv3d", 3, in_channels, out_channels, kernel, stride, padding, dilation, groups, init)


def conv_transpose2d(in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 3, *, stride=(1, 1),
                     padding: tuple | str = "valid", dilation=1, init: tuple = inits.he_normal()) -> Poly:
    """2-D transposed convolution with bias on (H, W, C) images, as flax's ``ConvTranspose`` and
    ``lax.conv_transpose``: the input dilated by ``stride``, then convolved; ``"same"`` gives
    ``(H * sh, W * sw)``.

    Args:
        in_channels: the input's channels ``C``.
        out_channels: the output's channels.
        kernel: the kernel's size, an int or a pair.
        stride: the upsampling factor, an int or a pair.
        padding: ``"valid"``, ``"same"``, or ``((top, bottom), (left, right))`` around the dilated input.
        dilation: the kernel's dilation.
        init: the kernel's initialiser.

    Returns:
        A polymorphic layer: at ``(H, W, in_channels)`` the term to ``(H', W', out_channels)``,
        parameters ``conv.w`` ``(kh, kw, in_channels, out_channels)`` and ``conv.b``.

    Raises:
        TypeError: if an argument has the wrong type or form.
        ValueError: if a size is not positive, or the padding is negative or unknown.

    >>> import paralens as pl
    >>> pl.nn.conv_transpose2d(4, 2, 3, stride=2, padding="same").at(pl.Array[5, 5, 4]).cod
    Ty(Array[10, 10, 2])
    """
    return _conv_layer("conv_transpose2d", 2, in_channels, out_channels, kernel, stride, padding, dilation, 1, init,
                       transpose=True)


def _pool_layer(name: str, fn: Callable, window, stride, padding) -> Poly:
    n = len(window) if isinstance(window, (tuple, list)) else 2
    window = W.positive_ints(name, "window", window, n)
    stride = None if stride is None else W.positive_ints(name, "stride", stride, n)
    W.padding_of(name, padding, per_side=False, n=n)
    return _activation_layer(lambda x: fn(x, window, stride, padding), name)


def max_pool(window=(2, 2), stride=None, padding=0) -> Poly:
    """Max pooling (``stride`` defaults to ``window``; ``padding`` an int or one per axis, -inf),
    over as many spatial axes as ``window`` has entries: (H, W, C) images for a pair.

    Args:
        window: the size of the windows, a tuple of one per spatial axis (an int: a square).
        stride: the step between windows, an int or one per axis; ``None`` takes ``window``
            (windows that do not overlap).
        padding: padded on both sides of each spatial axis, an int or one per axis; padding never
            wins a maximum (it is -inf, as in JAX and flax).

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``max_pool``: at a
        per-example type ``(H, W, C)`` (for a pair) it is the term to ``(OH, OW, C)``; typing it at an
        array of another rank raises ``TypeError``.

    Raises:
        TypeError: if ``window``, ``stride`` or ``padding`` is not an int or a tuple of ints.
        ValueError: if ``window`` or ``stride`` is not positive, or ``padding`` is negative or a string.

    >>> import paralens as pl
    >>> pl.nn.max_pool((2,), padding=1).at(pl.Array[7, 3]).cod
    Ty(Array[4, 3])
    """
    return _pool_layer("max_pool", W.max_pool, window, stride, padding)


def avg_pool(window=(2, 2), stride=None, padding=0) -> Poly:
    """Average pooling (``stride`` defaults to ``window``; ``padding`` an int or one per axis),
    over as many spatial axes as ``window`` has entries: (H, W, C) images for a pair.

    Padded zeros count in the average.

    Args:
        window: the size of the windows, a tuple of one per spatial axis (an int: a square).
        stride: the step between windows, an int or one per axis; ``None`` takes ``window``
            (windows that do not overlap).
        padding: the zeros padded on both sides of each spatial axis, an int or one per axis.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``avg_pool``: at a
        per-example type ``(H, W, C)`` (for a pair) it is the term to ``(OH, OW, C)``; typing it at an
        array of another rank raises ``TypeError``.

    Raises:
        TypeError: if ``window``, ``stride`` or ``padding`` is not an int or a tuple of ints.
        ValueError: if ``window`` or ``stride`` is not positive, or ``padding`` is negative or a string.
    """
    return _pool_layer("avg_pool", W.avg_pool, window, stride, padding)


def flatten() -> Poly:
    """Reshape each example to a vector.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) with no parameters, named ``flatten``: at a
        per-example shape ``(d1, ..., dn)`` it maps each input wire to one of shape ``(d1 * ... * dn,)``.
    """
    return _activation_layer(lambda x: W.reshape(x, (x.type.size,)), "flatten")


# --------------------------------------------------------------------------- transformers
# These layers act on per-example sequences (T, d) of T tokens of d features (the norms on the
# last axis of any array). Their type follows the input: each is a Poly, instantiated at the
# type of what it is composed after, or explicitly with ``.at(pl.Array[T, d])``.


def _float_dtype(name: str, dtype) -> str:
    """``dtype`` if it is a floating-point dtype name, else a ``ValueError`` naming ``name``."""
    if dtype not in FLOATS:
        raise ValueError(f"{name}: dtype={dtype!r} is not a floating-point dtype; expected one of {FLOATS} "
                         "(a layer of integers draws all-zero weights and has no gradient)")
    return dtype


def _float_option(name: str, dtype):
    if dtype is not None and dtype not in FLOATS:
        raise ValueError(f"{name}: dtype={dtype!r} is not a floating-point dtype; expected one of {FLOATS} "
                         "(or None: the input's)")
    return dtype


def _features(name: str, ty: Ty, d: int, dtype, *, sequence: bool = False) -> ArrayType:
    """The one input of a layer over the last axis (``d`` features) of float arrays of ``dtype``
    (any float dtype where ``None``); ``sequence``: exactly (T, d)."""
    want = f"(T, {d}) sequences" if sequence else f"arrays whose last axis has {d} features"
    if len(ty) != 1:
        raise TypeError(f"{name} takes one input, {want}; got {ty}")
    (t,) = ty
    if t.ndim == 0 or t.shape[-1] != d or (sequence and t.ndim != 2):
        raise TypeError(f"{name} expects per-example {want}, got {t}")
    if t.dtype not in FLOATS or (dtype is not None and t.dtype != dtype):
        raise TypeError(f"{name} expects {dtype or 'floating-point'} inputs, got {t}")
    return t


def _normalize(x: W.Wire, eps: float, centre: bool) -> W.Wire:
    """``x`` divided by the root mean square over its last axis (after subtracting the mean: ``centre``)."""
    lead = tuple(range(x.ndim - 1))

    def spread(s):  # a statistic per row, back over the row (elementwise broadcasting is trailing only)
        return W.broadcast_to(s, x.shape, lead)
    if centre:
        x = x - spread(W.mean(x, -1))
    return x * spread((W.mean(x * x, -1) + eps) ** -0.5)


def layer_norm(d: int, eps: float = 1e-5, *, dtype: str | None = None) -> Poly:
    """Layer normalisation over the last axis: ``(x - mean) / sqrt(var + eps) * scale + bias``, the
    mean and (biased) variance taken over the ``d`` features of each row; ``scale`` (d,) starts at
    ones, ``bias`` (d,) at zeros. Input and output (..., d); ``dtype``: the inputs' (and parameters')
    dtype, any float where ``None``.

    Args:
        d: the number of features (the last axis), a positive int.
        eps: the number added to the variance, a finite number ``> 0``.
        dtype: the dtype of the inputs and parameters (a float dtype such as ``"float32"``), or
            ``None`` for any float dtype, the parameters taking the input's.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at a float type ``(..., d)`` it is the term to
        the same type, named ``layer_norm(d)``, with the parameters ``layer_norm.scale`` and
        ``layer_norm.bias``. Typing it at one input whose last axis is not ``d``, or whose dtype
        is not a float (or not ``dtype``), raises ``TypeError``.

    Raises:
        TypeError: if ``d`` is not an int or ``eps`` not a number.
        ValueError: if ``d`` or ``eps`` is not positive, ``eps`` is not finite, or ``dtype`` is not a float dtype.

    >>> import paralens as pl
    >>> ln = pl.nn.layer_norm(4).at(pl.Array[3, 4])
    >>> ln.cod, ln.param_names
    (Ty(Array[3, 4]), ('layer_norm.scale', 'layer_norm.bias'))
    """
    d = positive_int(d, "layer_norm: d")
    eps = real(eps, "layer_norm: eps", 0, open_low=True)
    dtype = _float_option("layer_norm", dtype)

    def make(ty: Ty) -> Term:
        t = _features("layer_norm", ty, d, dtype)
        vec = ArrayType((d,), t.dtype, False)

        def norm(x, scale: vec = inits.ones(), bias: vec = inits.zeros()):
            return _normalize(x, eps, centre=True) * scale + bias
        return with_axes(term_of(norm, dom=[t], name=f"layer_norm({d})", layer="layer_norm"),
                         {"layer_norm.scale": ("embed",), "layer_norm.bias": ("embed",)})
    return Poly(make, "layer_norm")


def rms_norm(d: int, eps: float = 1e-6, *, dtype: str | None = None) -> Poly:
    """RMS normalisation over the last axis: ``x / sqrt(mean(x ** 2) + eps) * scale``, with ``scale``
    (d,) starting at ones and no bias or centring. Input and output (..., d); ``dtype`` as in
    :func:`layer_norm`.

    Args:
        d: the number of features (the last axis), a positive int.
        eps: the number added to the mean square, a finite number ``> 0``.
        dtype: the dtype of the inputs and of ``scale`` (a float dtype), or ``None`` for any float
            dtype, ``scale`` taking the input's.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at a float type ``(..., d)`` it is the term to
        the same type, named ``rms_norm(d)``, with the one parameter ``rms_norm.scale``. Typing it
        at another type raises ``TypeError``, as for :func:`layer_norm`.

    Raises:
        TypeError: if ``d`` is not an int or ``eps`` not a number.
        ValueError: if ``d`` or ``eps`` is not positive, ``eps`` is not finite, or ``dtype`` is not a float dtype.

    >>> import paralens as pl
    >>> pl.nn.rms_norm(4).at(pl.Array[4]).param_names
    ('rms_norm.scale',)
    """
    d = positive_int(d, "rms_norm: d")
    eps = real(eps, "rms_norm: eps", 0, open_low=True)
    dtype = _float_option("rms_norm", dtype)

    def make(ty: Ty) -> Term:
        t = _features("rms_norm", ty, d, dtype)

        def norm(x, scale: ArrayType((d,), t.dtype, False) = inits.ones()):
            return _normalize(x, eps, centre=False) * scale
        return with_axes(term_of(norm, dom=[t], name=f"rms_norm({d})", layer="rms_norm"),
                         {"rms_norm.scale": ("embed",)})
    return Poly(make, "rms_norm")


def embedding(vocab: int, d: int, *, dtype: str = "float32", init: tuple = inits.normal(1.0)) -> Poly:
    """Token ids to vectors: integer ids of any per-example shape ``s`` (int32, e.g. (T,)) -> (*s, d),
    row ``id`` of a learned ``table`` (vocab, d) of ``dtype``, drawn with ``init`` (normal, stddev 1).
    Ids must lie in ``[0, vocab)``. The table's gradient is a scatter-add of the output's cotangent:
    a row looked up twice receives the sum, and rows not looked up receive zero.

    Args:
        vocab: the number of token ids (rows of the table), a positive int.
        d: the length of each vector (columns of the table), a positive int.
        dtype: the float dtype of the table and of the output.
        init: the initialiser of the table, a descriptor of :mod:`paralens.init`.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at one integer input (``int32``, ``int64`` or
        ``uint32``) of per-example shape ``s`` it is the term to ``(*s, d)``, named
        ``embedding(vocab, d)``, with the parameter ``embedding.table`` of shape ``(vocab, d)``.
        Typing it at anything else raises ``TypeError``.

    Raises:
        TypeError: if ``vocab`` or ``d`` is not an int.
        ValueError: if ``vocab`` or ``d`` is not positive, ``dtype`` is not a float dtype, or
            ``init`` is not an initialiser.

    >>> import numpy as np, paralens as pl
    >>> emb = pl.nn.embedding(10, 3).at(pl.Array(4, dtype="int32"))
    >>> emb.cod, emb.param_types["embedding.table"]
    (Ty(Array[4, 3]), Array[10, 3, batched=False])
    >>> table = np.arange(30, dtype=np.float32).reshape(10, 3)
    >>> pl.backends.get("numpy").compile(emb)(table, np.array([[2, 0, 2, 9]]))[0, 0].tolist()
    [6.0, 7.0, 8.0]
    """
    vocab, d = positive_int(vocab, "embedding: vocab"), positive_int(d, "embedding: d")
    if dtype not in FLOATS:
        raise ValueError(f"embedding: dtype={dtype!r} is not a floating-point dtype; expected one of {FLOATS}")
    init = inits.initializer(init, "embedding: init")

    def make(ty: Ty) -> Term:
        if len(ty) != 1 or ty[0].dtype not in INTS:
            raise TypeError(f"embedding takes one input of integer token ids ({', '.join(INTS)}), got {ty}")

        def embed(ids, table: ArrayType((vocab, d), dtype, False) = init):
            return W.take(table, ids)
        return with_axes(term_of(embed, dom=list(ty), name=f"embedding({vocab}, {d})", layer="embedding"),
                         {"embedding.table": ("vocab", "embed")})
    return Poly(make, "embedding")


def dropout(rate: float, *, name: str = "dropout") -> Poly:
    """Dropout: ``(x, key) -> (y, key')``. Each entry of ``x`` is zeroed with probability ``rate``
    and the others are scaled by ``1 / (1 - rate)``, so the mean is kept; a batched ``x`` gets a mask
    per example. The randomness is an input wire: ``key`` (the unbatched uint32 pair of
    ``jax.random.PRNGKey``, type ``pl.prims.KEY``) draws the mask, and ``key'`` is the key for the
    next draw; so a step is a deterministic function of its key, and ``R`` passes the cotangent
    through the same mask. ``rate`` is in [0, 1); at ``rate=0`` the layer is the identity and
    hands its key on unchanged, so a model built with ``rate=0`` for evaluation has the same
    parameters and calling convention as the one trained.

    Its boxes carry the role :data:`~paralens.terms.TRAINING_ONLY`, so :func:`inference_mode`
    switches it off whatever it is called; ``name`` is only how it is shown (and numbered).

    In a model, thread the key through every dropout layer and return it with the output (the key
    is an input wire, typed by ``dom``: an unbatched annotation would declare a parameter)::

        drop = pl.nn.dropout(0.1)

        @pl.para(dom=[pl.Array[8], pl.prims.KEY])
        def model(x, key, w: pl.Param[8, 8]):
            h, key = drop(pl.relu(x @ w), key)
            return h, key

    Args:
        rate: the probability that an entry is zeroed, a number in ``[0, 1)``.
        name: the layer's name, as the term and its diagram show it (numbered ``name0``,
            ``name1`` where there are several); it does not change what the layer does.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`) without parameters: at a type
        ``[x, pl.prims.KEY]`` with a float ``x`` it is the term ``(x, key) -> (y, key')``, ``y`` of
        ``x``'s type. Typing it at anything else raises ``TypeError``.

    Raises:
        TypeError: if ``rate`` is not a number.
        ValueError: if ``rate`` is not finite or outside ``[0, 1)``.

    >>> import numpy as np, paralens as pl
    >>> drop = pl.nn.dropout(0.5).at([pl.Array[4], pl.prims.KEY])
    >>> y, key = pl.backends.get("numpy").compile(drop)({}, (np.ones((2, 4), np.float32), np.array([0, 7], np.uint32)))
    >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0]), key.dtype
    (True, dtype('uint32'))
    """
    rate = real(rate, "dropout: rate", 0, 1, open_high=True)

    def make(ty: Ty) -> Term:
        if len(ty) != 2 or ty[1] != KEY or ty[0].dtype not in FLOATS:
            raise TypeError(f"dropout takes (x, key): a floating-point array and a random key of type {KEY}, "
                            f"got {ty}")

        def drop(x, key):
            if rate == 0.0:
                return x, key
            key, u = W.uniform(key, x)
            return x * W.greater(u, rate) * (1.0 / (1.0 - rate)), key
        return term_of(drop, dom=list(ty), name=f"{name}({rate:g})", layer=name, role=TRAINING_ONLY)
    return Poly(make, name)


def _heads(name: str, d, heads) -> tuple[int, int]:
    d, heads = positive_int(d, f"{name}: d"), positive_int(heads, f"{name}: heads")
    if d % heads:
        raise ValueError(f"{name}: heads={heads} does not divide d={d}; each head takes d // heads features, "
                         f"so choose heads among {[h for h in range(1, d + 1) if d % h == 0]}")
    return d, heads


def inference_mode(model: Term) -> Term:
    """The model as it is evaluated: every layer of :func:`dropout` (whatever its name: the
    boxes carry the role :data:`~paralens.terms.TRAINING_ONLY`) the identity, and the random
    key gone. A keyed model ``(x..., key) -> (y..., key')`` becomes ``(x...) -> (y...)`` with
    the same parameters (as equinox's ``eqx.nn.inference_mode`` flips the modules that have an
    ``inference`` field). :class:`~paralens.Learner` predicts and measures accuracy with it.

    Args:
        model: a keyed model: its last input and last output are random keys (``pl.prims.KEY``).

    Returns:
        The model without its key, its training-only layers the identity.

    Raises:
        TypeError: ``model`` is not a keyed model.
        ValueError: a box that is not training-only reads the key: that model has no
            deterministic evaluation this function could know of.

    >>> import numpy as np, paralens as pl
    >>> drop = pl.nn.dropout(0.5)
    >>> @pl.para(dom=[pl.Array[3], pl.prims.KEY])
    ... def model(x, key, w: pl.Param[3, 3]):
    ...     h, key = drop(x @ w, key)
    ...     return h, key
    >>> evaluated = pl.nn.inference_mode(model)
    >>> evaluated.dom, evaluated.param_names
    (Ty(Array[3]), ('model.w',))
    """
    return without_training_only(model)


def multi_head_attention(d: int, heads: int, causal: bool = False, *, dtype: str | None = None) -> Poly:
    """Multi-head self-attention on per-example sequences (T, d) -> (T, d).

    Projections ``q = x @ Wq + bq``, ``k``, ``v`` likewise (each ``W`` (d, d), Glorot-uniform, each
    ``b`` (d,), zero) are split into ``heads`` heads of ``d // heads`` features; each head attends
    with ``softmax(q k^T / sqrt(d // heads))`` over the keys, and the heads, joined again, go
    through ``@ Wo + bo``. ``causal``: position ``t`` attends to positions ``<= t`` only (a constant
    lower-triangular mask, applied with ``where``), so nothing flows back from the future.
    ``dtype`` as in :func:`layer_norm`.

    Args:
        d: the features of each token, a positive int that ``heads`` divides.
        heads: the number of heads, a positive int.
        causal: mask the attention so that each position sees itself and the earlier ones only.
        dtype: the dtype of the input and parameters (a float dtype), or ``None`` for any float
            dtype, the parameters taking the input's.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at a float type ``(T, d)`` it is the term
        to ``(T, d)``, named ``multi_head_attention(d, heads)`` (with ``, causal``), with the
        parameters ``attention.Wq``, ``attention.bq``, ``attention.Wk``, ``attention.bk``,
        ``attention.Wv``, ``attention.bv``, ``attention.Wo`` and ``attention.bo``. Typing it at a
        type that is not one float ``(T, d)`` sequence raises ``TypeError``.

    Raises:
        TypeError: if ``d`` or ``heads`` is not an int.
        ValueError: if ``d`` or ``heads`` is not positive, ``heads`` does not divide ``d``, or
            ``dtype`` is not a float dtype.

    >>> import paralens as pl
    >>> att = pl.nn.multi_head_attention(8, heads=2, causal=True).at(pl.Array[5, 8])
    >>> att.cod, att.param_names[:2]
    (Ty(Array[5, 8]), ('attention.Wq', 'attention.bq'))
    """
    d, heads = _heads("multi_head_attention", d, heads)
    dtype = _float_option("multi_head_attention", dtype)
    dh = d // heads
    causal = bool(causal)

    def make(ty: Ty) -> Term:
        t = _features("multi_head_attention", ty, d, dtype, sequence=True)
        n = t.shape[0]
        mat, vec = ArrayType((d, d), t.dtype, False), ArrayType((d,), t.dtype, False)
        glorot, zeros = inits.glorot_uniform(), inits.zeros()

        def attention(x, Wq: mat = glorot, bq: vec = zeros, Wk: mat = glorot, bk: vec = zeros,  # noqa: N803
                      Wv: mat = glorot, bv: vec = zeros, Wo: mat = glorot, bo: vec = zeros):
            def split(y):  # (T, d) -> (T, heads, d // heads)
                return W.reshape(y, (n, heads, dh))
            q, k, v = split((x @ Wq + bq) * (1.0 / math.sqrt(dh))), split(x @ Wk + bk), split(x @ Wv + bv)
            scores = W.einsum("thc,shc->hts", q, k)
            if causal:
                below = [[1.0 if j <= i else 0.0 for j in range(n)] for i in range(n)]
                scores = W.where(W.constant(below, (n, n), t.dtype), scores,
                                 W.constant(-math.inf, (), t.dtype))
            out = W.einsum("hts,shc->thc", W.softmax(scores, -1), v)
            return W.reshape(out, (n, d)) @ Wo + bo
        term = term_of(attention, dom=[t], name=f"multi_head_attention({d}, {heads}{', causal' * causal})",
                       layer="attention")
        column, row = {"W": ("embed", "heads"), "b": ("heads",)}, {"W": ("heads", "embed"), "b": ("embed",)}
        return with_axes(term, {f"attention.{w}{p}": (row if p == "o" else column)[w]
                                for p in "qkvo" for w in "Wb"})
    return Poly(make, "multi_head_attention")


def _tokenwise_dense(n_in: int, n_out: int, axes: tuple = COLUMN) -> Poly:
    """``dense`` on the last axis of (..., n_in) inputs (each token alike)."""
    def make(ty: Ty) -> Term:
        t = _features("dense", ty, n_in, None)
        b = Builder()
        x = b.input(t)
        return b.build([x], [_dense_into(b, x, n_in, n_out, t.dtype, inits.glorot_uniform(), axes)],
                       name=f"dense({n_in}, {n_out})")
    return Poly(make, "dense")


def transformer_block(d: int, heads: int, mlp_ratio: int = 4, causal: bool = False, *,
                      dtype: str | None = None) -> Poly:
    """A pre-LN transformer block on per-example sequences (T, d) -> (T, d)::

        x = x + multi_head_attention(layer_norm(x))
        x = x + dense(gelu(dense(layer_norm(x))))     # d -> mlp_ratio * d -> d, per token

    (GELU in its tanh form). ``causal`` as in :func:`multi_head_attention`; ``dtype`` as in
    :func:`layer_norm`.

    Args:
        d: the features of each token, a positive int that ``heads`` divides.
        heads: the number of attention heads, a positive int.
        mlp_ratio: the hidden width of the per-token MLP, as a multiple of ``d``; a positive int.
        causal: mask the attention so that each position sees itself and the earlier ones only.
        dtype: the dtype of the input (a float dtype), or ``None`` for any float dtype.

    Returns:
        A polymorphic layer (:class:`~paralens.Poly`): at a float type ``(T, d)`` it is the term
        to ``(T, d)``, named ``transformer_block(d, heads)`` (with ``, causal``), with 16
        parameters: ``layer_norm0.*``, ``attention.*``, ``layer_norm1.*``, then ``dense0.*`` and
        ``dense1.*`` of the MLP. Typing it at a type that is not one float ``(T, d)`` sequence
        raises ``TypeError``.

    Raises:
        TypeError: if ``d``, ``heads`` or ``mlp_ratio`` is not an int.
        ValueError: if ``d``, ``heads`` or ``mlp_ratio`` is not positive, ``heads`` does not
            divide ``d``, or ``dtype`` is not a float dtype.

    >>> import paralens as pl
    >>> block = pl.nn.transformer_block(8, heads=2).at(pl.Array[5, 8])
    >>> block.cod, len(block.param_names)
    (Ty(Array[5, 8]), 16)
    """
    d, heads = _heads("transformer_block", d, heads)
    mlp_ratio = positive_int(mlp_ratio, "transformer_block: mlp_ratio")
    dtype = _float_option("transformer_block", dtype)
    attend = multi_head_attention(d, heads, causal)
    mlp_ = _tokenwise_dense(d, mlp_ratio * d) >> gelu() >> _tokenwise_dense(mlp_ratio * d, d, ROW)

    def make(ty: Ty) -> Term:
        t = _features("transformer_block", ty, d, dtype, sequence=True)

        def block(x):
            x = x + attend(layer_norm(d)(x))
            return x + mlp_(layer_norm(d)(x))
        return term_of(block, dom=[t], name=f"transformer_block({d}, {heads}{', causal' * bool(causal)})",
                     layer="transformer_block")
    return Poly(make, "transformer_block")
