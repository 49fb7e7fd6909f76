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
    """``+ : A @ A -> A`` (wirewise). Its reverse derivative copies the cotangent."""
    ty = as_ty(ty)
    b = Builder()
    xs = [b.input(t) for t in ty]
    ys = [b.input(t) for t in ty]
    return b.build(xs + ys, [P.add(b, x, y) for x, y in zip(xs, ys)], name=f"add({_s(ty)})")


def zero(dom, cod) -> Term:
    """The zero map ``dom -> cod`` (inputs discarded). A batched output needs a batched input."""
    dom, cod = as_ty(dom), as_ty(cod)
    b = Builder()
    xs = [b.input(t) for t in dom]
    outs = b.emit(P.ZEROS, xs, types=tuple(cod)) if len(cod) else []
    return b.build(xs, outs, name=f"zero({_s(dom)}, {_s(cod)})")


def const(value, shape=None, dtype: str = "float32") -> Term:
    """A constant ``() -> Param[shape]`` from a number, nested lists or an array."""
    shape = tuple(getattr(value, "shape", ())) if shape is None else tuple(shape)
    b = Builder()
    return b.build([], [P.emit_const(b, value, shape, dtype)], name=f"const({shape})")


def _s(ty: Ty) -> str:
    return " @ ".join(map(repr, ty)) if len(ty) else "Ty()"
