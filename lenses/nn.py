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

from typing import Callable, Sequence

from . import para as _init
from . import wires as W
from .para import number
from .prims import promote
from .terms import Builder, Poly, Term
from .trace import trace, trace_on
from .types import Array, ArrayType, Ty

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
    return _elementwise(lambda x: W.softmax(x, axis), "softmax")


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
    b = Builder()
    x = b.input(Array(n_in, dtype=dtype))
    return b.build([x], [_dense_into(b, x, n_in, n_out, dtype, init)], name=f"dense({n_in}, {n_out})")


def mlp(sizes: Sequence[int], activation: Callable | Poly = relu, final_activation: Callable | Poly | None = None,
        *, dtype: str = "float32") -> Term:
    """Dense layers of ``sizes`` (``[4, 20, 3]``: two layers) with ``activation`` between them."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}")
    act = activation() if not isinstance(activation, Poly) else activation
    fin = None if final_activation is None else (
        final_activation() if not isinstance(final_activation, Poly) else final_activation)
    b = Builder()
    x0 = x = b.input(Array(sizes[0], dtype=dtype))
    for k, (n, m) in enumerate(zip(sizes, sizes[1:])):
        x = _dense_into(b, x, n, m, dtype, _init.glorot_uniform())
        a = act if k < len(sizes) - 2 else fin
        if a is not None:
            (x,) = b.inline(a.at(Ty(b.type_of(x))), [x])
    return b.build([x0], [x], name=f"mlp({sizes})")


def conv2d(in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 3, *,
           stride=(1, 1), padding: int | tuple[int, int] | str = "valid", init: tuple = _init.he_normal()) -> Poly:
    """2-D convolution with bias on per-example (H, W, C) images; ``padding`` is
    ``"valid"``, ``"same"`` (odd kernels, stride 1) or explicit ints."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    if padding == "valid":
        pad = (0, 0)
    elif padding == "same":
        pad = (kh // 2, kw // 2)
    else:
        pad = (padding, padding) if isinstance(padding, int) else tuple(padding)

    def make(ty: Ty) -> Term:
        (t,) = ty
        if t.ndim != 3 or t.shape[2] != in_channels:
            raise TypeError(f"conv2d expects (H, W, {in_channels}) images, got {t}")

        def conv(x, w: ArrayType((kh, kw, in_channels, out_channels), t.dtype, False) = init,
                 b: ArrayType((out_channels,), t.dtype, False) = _init.zeros()):
            return W.conv2d(x, w, stride=stride, padding=pad) + b
        return trace(conv, dom=[t], name=f"conv2d({in_channels}, {out_channels}, {kh}x{kw})", layer="conv")
    return Poly(make, "conv2d")


def max_pool(window=(2, 2), stride=None, padding=(0, 0)) -> Poly:
    """Max pooling of (H, W, C) images."""
    return _elementwise(lambda x: W.max_pool(x, window, stride, padding), "max_pool")


def avg_pool(window=(2, 2), stride=None, padding=(0, 0)) -> Poly:
    """Average pooling of (H, W, C) images."""
    return _elementwise(lambda x: W.avg_pool(x, window, stride, padding), "avg_pool")


def flatten() -> Poly:
    """Reshape each example to a vector."""
    return _elementwise(lambda x: W.reshape(x, (x.type.size,)), "flatten")
