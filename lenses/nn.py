"""Layers as parametrised terms.

Layers whose type is fixed by their arguments (``dense``) are terms; those
whose type follows their input (activations, convolutions, pooling, flatten)
are :class:`~paralens.terms.Poly` and take their type from what they are
composed after. A numeric argument (``leaky_relu``'s slope) may be declared
a :func:`~paralens.hyperparameter`: it then becomes a wire of the layer.

>>> import paralens as pl
>>> model = pl.nn.dense(4, 8) >> pl.nn.relu() >> pl.nn.dense(8, 3)
>>> model.param_names
('dense0.W', 'dense0.b', 'dense1.W', 'dense1.b')
"""

import numbers
from typing import Callable, Sequence

from . import para as _init
from . import wires as W
from .para import number
from .prims import promote
from .terms import Builder, Poly, Term
from .trace import trace, trace_on
from .types import Array, ArrayType, Ty, positive_int

__all__ = ["dense", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "softmax", "mlp",
           "conv2d", "max_pool", "avg_pool", "flatten"]


def _elementwise(fn: Callable, name: str) -> Poly:
    return Poly(lambda ty: trace_on(ty, lambda *xs: tuple(fn(x) for x in xs), name), name)


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
    """Elementwise ``max(x, 0)``."""
    return _elementwise(W.relu, "relu")


def leaky_relu(negative_slope: float = 0.01) -> Poly:
    """Elementwise ``x`` where ``x > 0``, else ``negative_slope * x`` (``jax.nn.leaky_relu``).

    >>> import paralens as pl
    >>> pl.nn.leaky_relu(pl.hyperparameter(0.1)).at(pl.Array[3]).hyper_names
    ('leaky_relu.negative_slope',)
    """
    return _with_numbers(lambda x, negative_slope: W.where(W.greater(x, 0.0), x, negative_slope * x),
                         "leaky_relu", negative_slope=negative_slope)


def sigmoid() -> Poly:
    """Elementwise logistic function."""
    return _elementwise(W.sigmoid, "sigmoid")


def tanh() -> Poly:
    """Elementwise hyperbolic tangent."""
    return _elementwise(W.tanh, "tanh")


def gelu() -> Poly:
    """Elementwise GELU (tanh approximation)."""
    return _elementwise(W.gelu, "gelu")


def softplus() -> Poly:
    """Elementwise ``log(1 + exp(x))``."""
    return _elementwise(W.softplus, "softplus")


def softmax(axis: int = -1) -> Poly:
    """Softmax over a per-example axis."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"softmax: axis must be an int, got {axis!r}")
    return _elementwise(lambda x: W.softmax(x, axis), "softmax")


#: The activation layers, as :func:`mlp`'s error message lists them.
_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "softmax")


def _dense_into(b: Builder, x: int, n_in: int, n_out: int, dtype: str, init: tuple) -> int:
    slot = b.new_layer("dense")
    w = b.param("dense", slot, "W", ArrayType((n_in, n_out), dtype, False), init)
    bias = b.param("dense", slot, "b", ArrayType((n_out,), dtype, False), _init.zeros())
    b.layer = ("dense", slot)
    out = (W.einsum("i,io->o", W.Wire(b, x), W.Wire(b, w)) + W.Wire(b, bias)).id
    b.layer = None
    return out


def dense(n_in: int, n_out: int, *, dtype: str = "float32", init: tuple = _init.glorot_uniform()) -> Term:
    """``x @ W + b`` with ``W`` of shape ``(n_in, n_out)`` (Glorot-uniform) and ``b`` zero.

    >>> import paralens as pl
    >>> pl.nn.dense(4, 3).param_types["dense.W"]
    Array[4, 3, batched=False]
    """
    n_in, n_out = positive_int(n_in, "dense: n_in"), positive_int(n_out, "dense: n_out")
    init = _init.initializer(init, "dense: init")
    b = Builder()
    x = b.input(Array(n_in, dtype=dtype))
    return b.build([x], [_dense_into(b, x, n_in, n_out, dtype, init)], name=f"dense({n_in}, {n_out})")


def mlp(sizes: Sequence[int], activation: Callable | Poly = relu, final_activation: Callable | Poly | None = None,
        *, dtype: str = "float32") -> Term:
    """Dense layers of ``sizes`` (``[4, 20, 3]``: two layers) with ``activation`` between them."""
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"mlp: sizes must be a list of positive ints, got {sizes!r}")
    sizes = [positive_int(n, f"mlp: sizes[{i}]") for i, n in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    act = _layer(activation, "activation")
    fin = None if final_activation is None else _layer(final_activation, "final_activation")
    b = Builder()
    x0 = x = b.input(Array(sizes[0], dtype=dtype))
    for k, (n, m) in enumerate(zip(sizes, sizes[1:])):
        x = _dense_into(b, x, n, m, dtype, _init.glorot_uniform())
        a = act if k < len(sizes) - 2 else fin
        if a is not None:
            (x,) = b.inline(a.at(Ty(b.type_of(x))), [x])
    return b.build([x0], [x], name=f"mlp({sizes})")


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


def conv2d(in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 3, *,
           stride=(1, 1), padding: int | tuple | str = "valid", init: tuple = _init.he_normal()) -> Poly:
    """2-D convolution with bias on per-example (H, W, C) images; ``padding`` is
    ``"valid"``, ``"same"`` (``ceil(H / stride)`` rows, as JAX and TensorFlow: an even kernel
    pads one more row after than before), an int, ``(ph, pw)`` or ``((top, bottom), (left, right))``.

    >>> import paralens as pl
    >>> pl.nn.conv2d(1, 2, 4, padding="same").at(pl.Array[8, 8, 1]).cod
    Ty(Array[8, 8, 2])
    """
    in_channels = positive_int(in_channels, "conv2d: in_channels")
    out_channels = positive_int(out_channels, "conv2d: out_channels")
    kh, kw = W.positive_pair("conv2d", "kernel", kernel)
    stride = W.positive_pair("conv2d", "stride", stride)
    pad = W.padding_of("conv2d", padding)
    init = _init.initializer(init, "conv2d: init")

    def make(ty: Ty) -> Term:
        (t,) = ty
        if t.ndim != 3 or t.shape[2] != in_channels:
            raise TypeError(f"conv2d expects (H, W, {in_channels}) images, got {t}")

        def conv(x, w: ArrayType((kh, kw, in_channels, out_channels), t.dtype, False) = init,
                 b: ArrayType((out_channels,), t.dtype, False) = _init.zeros()):
            return W.conv2d(x, w, stride=stride, padding=pad) + b
        return trace(conv, dom=[t], name=f"conv2d({in_channels}, {out_channels}, {kh}x{kw})", layer="conv")
    return Poly(make, "conv2d")


def _pool(name: str, fn: Callable, window, stride, padding) -> Poly:
    window = W.positive_pair(name, "window", window)
    stride = None if stride is None else W.positive_pair(name, "stride", stride)
    W.padding_of(name, padding, per_side=False)
    return _elementwise(lambda x: fn(x, window, stride, padding), name)


def max_pool(window=(2, 2), stride=None, padding=(0, 0)) -> Poly:
    """Max pooling of (H, W, C) images (``stride`` defaults to ``window``; ``padding`` an int or ``(ph, pw)``)."""
    return _pool("max_pool", W.max_pool, window, stride, padding)


def avg_pool(window=(2, 2), stride=None, padding=(0, 0)) -> Poly:
    """Average pooling of (H, W, C) images (``stride`` defaults to ``window``; ``padding`` an int or ``(ph, pw)``)."""
    return _pool("avg_pool", W.avg_pool, window, stride, padding)


def flatten() -> Poly:
    """Reshape each example to a vector."""
    return _elementwise(lambda x: W.reshape(x, (x.type.size,)), "flatten")
