"""paralens: learners as parametrised lenses, differentiated by the reverse-derivative functor.

>>> import paralens as pl
>>> model = pl.nn.dense(4, 3) >> pl.nn.sigmoid()
>>> backward = pl.R(model)       # a term too: (params, x, dy) -> (dparams, dx)
>>> backward.n_boxes < 4 * model.n_boxes
True
"""

from . import bilevel, losses, nn, optim
from .bilevel import Bilevel, Hyper
from . import para as init  # initialiser descriptors: pl.init.he_normal()
from .derivative import D, Optic, R, optic, value_and_R
from .graph import draw, to_networkx
from .learner import Learner
from .loops import loop, scan_term
from .para import bind, reparam, tie
from .prims import PRIMS
from .terms import Builder, CompositionError, Eqn, ParamSpec, Poly, Prim, Term, copy, discard, id, seq, swap
from .trace import (Wire, avg_pool, cast, clip, cos, floor, minimum, power, sin, batch_mean, batch_sum, broadcast_to, constant, conv2d, einsum, equal, exp,
                    gelu, greater, log, logsumexp, matmul, max, max_pool, maximum, mean, para, relu, reshape,
                    sigmoid, softmax, softplus, sqrt, stop_gradient, sum, tanh, trace, transpose, where,
                    zeros_like)
from .types import Array, ArrayType, Param, Ty
from .structure import add, const, zero

__version__ = "0.1.0"

__all__ = [
    "R", "D", "value_and_R", "optic", "Optic", "Learner", "Term", "Poly", "Prim", "Eqn", "ParamSpec",
    "Builder", "CompositionError", "Array", "ArrayType", "Param", "Ty", "id", "copy", "discard", "swap", "add",
    "zero", "const", "seq", "para", "trace", "reparam", "tie", "bind", "to_networkx", "draw", "nn", "losses", "optim",
    "init", "PRIMS", "Wire", "loop", "scan_term", "bilevel", "Bilevel", "Hyper",
    "exp", "log", "sqrt", "tanh", "sigmoid", "softplus", "relu", "gelu", "stop_gradient", "greater", "equal",
    "where", "maximum", "sum", "mean", "max", "logsumexp", "softmax", "reshape", "transpose", "broadcast_to",
    "einsum", "matmul", "power", "cast", "cos", "sin", "floor", "minimum", "clip", "conv2d", "max_pool", "avg_pool", "batch_sum", "batch_mean", "zeros_like", "constant",
]
