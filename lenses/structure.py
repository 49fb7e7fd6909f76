"""The additive structure as terms: addition, zero maps and constants (maths §1.1).

>>> import paralens as pl
>>> pl.add(pl.Array[3]).dom
Ty(Array[3], Array[3])
"""

from __future__ import annotations

from . import prims as P
from .terms import Builder, Term
from .types import Ty, as_ty

__all__ = ["add", "zero", "const"]


def add(ty) -> Term:
    """``+ : A @ A -> A`` (wirewise). Its reverse derivative copies the cotangent.

    Args:
        ty: the type ``A`` of one summand: an :class:`~paralens.ArrayType` (``pl.Array[3]``), a
            :class:`~paralens.Ty` or a list of array types; a ``Ty`` of n wires gives a term of
            2n inputs (the first operand's wires, then the second's) and n outputs.

    Returns:
        The term ``A @ A -> A`` that adds the two operands wire by wire, named ``add(A)``.
    """
    ty = as_ty(ty)
    b = Builder()
    xs = [b.input(t) for t in ty]
    ys = [b.input(t) for t in ty]
    return b.build(xs + ys, [P.add(b, x, y) for x, y in zip(xs, ys)], name=f"add({_s(ty)})")


def zero(dom, cod) -> Term:
    """The zero map ``dom -> cod`` (inputs discarded). A batched output needs a batched input.

    Args:
        dom: the input type: an :class:`~paralens.ArrayType`, a :class:`~paralens.Ty` or a list
            of array types (``[]`` for none).
        cod: the output type, given the same ways; every output is zeros of its type. A batched
            output takes its batch size from a batched input, so ``dom`` then needs one.

    Returns:
        The term ``dom -> cod``, named ``zero(dom, cod)``.
    """
    dom, cod = as_ty(dom), as_ty(cod)
    b = Builder()
    xs = [b.input(t) for t in dom]
    outs = b.emit(P.ZEROS, xs, types=tuple(cod)) if len(cod) else []
    return b.build(xs, outs, name=f"zero({_s(dom)}, {_s(cod)})")


def const(value, shape=None, dtype: str = "float32") -> Term:
    """A constant ``() -> Param[shape]`` from a number, nested lists or an array.

    Args:
        value: a Python number, nested lists of numbers or an array of any library (anything with
            ``tolist()``); its values are read in row-major order.
        shape: the constant's shape; ``None`` takes ``value.shape``, or ``()`` for a value without
            one, so nested lists need it given. Its size must equal the number of values.
        dtype: the element type; a float type (``"float16"``, ``"bfloat16"``, ``"float32"``,
            ``"float64"``) stores the values as floats, any other as integers.

    Returns:
        The term with no inputs and one unbatched output of type ``Param[shape]`` (dtype
        ``dtype``), named ``const(shape)``.
    """
    shape = tuple(getattr(value, "shape", ())) if shape is None else tuple(shape)
    b = Builder()
    return b.build([], [P.emit_const(b, value, shape, dtype)], name=f"const({shape})")


def _s(ty: Ty) -> str:
    return " @ ".join(map(repr, ty)) if len(ty) else "Ty()"
