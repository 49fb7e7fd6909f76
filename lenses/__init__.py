"""paralens: learners as parametrised lenses, differentiated by the reverse-derivative functor.

Docstrings cite the definitions and formulas they implement as "maths §N": the section of
the maths page of the documentation (``docs/math.md``, "The mathematics" on the site).

>>> import paralens as pl
>>> model = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
>>> backward = pl.R(model)       # a term too: (params, x, dy) -> (dparams, dx)
>>> backward.n_boxes < 4 * model.n_boxes
True
>>> pl.lens(model).residuals     # the same, as a lens: forward keeps what backward reads
Ty(Array[3], Array[4, 3, batched=False], Array[4])
"""

from . import (
    backends,
    bilevel,
    diagram,
    dream,
    init,  # initialiser descriptors: pl.init.he_normal()
    learn,
    losses,
    nn,
    optim,
    wires,
    z2,
)
from .bilevel import Bilevel, Hyper
from .derivative import D, R, forward_gradient, value_and_R
from .graph import draw, draw_equation, to_networkx
from .learner import Learner
from .loops import loop, scan_term
from .optics import Lens, costate, lens
from .parameters import bind, hyperparameter, reparam, tie, with_axes
from .passes import Segments
from .pipeline import stages
from .precision import astype
from .prims import PRIMS
from .structure import add, const, zero
from .symbolic import formulas
from .terms import Builder, Eqn, ParamSpec, Poly, Term, as_term, copy, discard, id, seq, swap
from .tracer import para
from .types import Array, ArrayType, CompositionError, Param, Ty
from .wires import *  # noqa: F401,F403 - the pointful vocabulary: exp, einsum, conv2d, ...

__version__ = "0.1.0"

__all__ = [
    "R", "D", "value_and_R", "forward_gradient", "Segments", "lens", "Lens", "costate", "Learner", "Term", "Poly",
    "Eqn", "ParamSpec",
    "Builder", "CompositionError", "Array", "ArrayType", "Param", "Ty", "id", "copy", "discard", "swap", "add",
    "zero", "const", "seq", "as_term", "para", "reparam", "tie", "bind", "hyperparameter", "with_axes",
    "to_networkx", "draw", "draw_equation", "diagram", "formulas", "nn", "losses", "optim", "init", "backends", "PRIMS",
    "loop", "scan_term", "stages",
    "bilevel", "Bilevel", "Hyper", "learn", "dream", "z2", "astype",
] + wires.__all__
