"""The SymPy backend: symbolic arrays, for deriving and teaching formulas.

Arrays are NumPy object arrays of SymPy expressions while a term runs; inputs
may be SymPy arrays, matrices, expressions or numbers, and every array output
is a ``sympy.Array`` (a scalar output is an expression). ``init`` gives each
parameter as symbols named after it, so a learner's step comes out as formulas.

>>> import sympy as sp, paralens as pl
>>> from paralens.backends import sympy as psym
>>> x, w = sp.symbols("x w")
>>> @pl.para
... def f(x: pl.Array[()], w: pl.Param[()]):
...     return pl.tanh(w * x)
>>> dparams, dx = psym.compile(pl.R(f))({"f.w": w}, sp.Array([x]), sp.Array([1]))
>>> sp.simplify(dparams["f.w"] - x * (1 - sp.tanh(w * x) ** 2))
0
>>> psym.init(pl.nn.dense(2, 1))["dense.W"]
[[dense.W[0,0]], [dense.W[1,0]]]
"""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np
import sympy as sp

from paralens.prims import KEY
from paralens.terms import as_term
from paralens.types import ArrayType, printable

from ._interpret import ArrayBackend, ArrayLib, python_loop

__all__ = ["backend", "compile", "init", "RULES"]


def _named_latex(name: str, argument: str, exp=None) -> str:
    """``name(argument)`` in LaTeX, to the power ``exp`` where given."""
    tex = name + r"\left(" + argument + r"\right)"
    return tex if exp is None else tex + "^{" + str(exp) + "}"


class sigmoid(sp.Function):  # noqa: N801 - a SymPy function, named as it prints
    r"""The logistic function ``1 / (1 + exp(-z))``, kept by name: it prints as :math:`\sigma(z)` and
    differentiates to :math:`\sigma(z)(1 - \sigma(z))`. ``.rewrite(sympy.exp)`` expands it."""

    @classmethod
    def eval(cls, z):
        if z.is_Number:
            return 1 / (1 + sp.exp(-z))

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sp.exp(-z))

    def _latex(self, printer, exp=None):
        return _named_latex(r"\sigma", printer._print(self.args[0]), exp)


class softplus(sp.Function):  # noqa: N801
    r"""``log(1 + exp(z))``, kept by name; its derivative is :class:`sigmoid`."""

    @classmethod
    def eval(cls, z):
        if z.is_Number:
            return sp.log(1 + sp.exp(z))

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _latex(self, printer, exp=None):
        return _named_latex(r"\operatorname{softplus}", printer._print(self.args[0]), exp)


def _vec(f, n=1):
    uf = np.frompyfunc(f, n, 1)
    return lambda *xs, **kw: np.asarray(uf(*xs), dtype=object)


def _piecewise(*pieces):
    """``sympy.Piecewise``, folded only where no piece holds another: folding nested pieces
    simplifies their conditions, which took minutes on LAMB's nested norms."""
    nested = any(isinstance(v, sp.Basic) and v.has(sp.Piecewise) for piece in pieces for v in piece)
    return sp.Piecewise(*pieces, evaluate=not nested)


def _condition(c):
    """The condition under which the selector ``c`` is non-zero: ``C`` for a mask
    ``Piecewise((1, C), (0, True))``, ``Or`` of them for a sum of masks, else ``Ne(c, 0)``: a
    condition holding no ``Piecewise``, which SymPy would fold and simplify."""
    def mask(t):
        if isinstance(t, sp.Piecewise) and len(t.args) == 2 and t.args[0].expr == 1 and t.args[1].expr == 0 \
                and t.args[1].cond == sp.true:
            return t.args[0].cond
        return None
    if mask(c) is not None:
        return mask(c)
    if isinstance(c, sp.Add) and all(mask(t) is not None for t in c.args):
        return sp.Or(*(mask(t) for t in c.args))
    return sp.Ne(c, 0)


def _num(c):
    return sp.nsimplify(c) if float(c) == float(c) else sp.Float(c)


def _max(ins, outs, x, *, axes):
    for a in sorted((a + ins[0].batched for a in axes), reverse=True):
        x = np.apply_along_axis(lambda v: sp.Max(*v), a, x)
    return np.asarray(x, dtype=object)


def _max_over(x, axis):
    return np.asarray(np.apply_along_axis(lambda v: sp.Max(*v), axis, x), dtype=object)


def _first_max(x, axis):
    """1 where an element is its window's first maximum (greater than those before it, at least
    those after it: XLA's select with ``>=``), else 0; as ``Piecewise`` formulas."""
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]

    def pick(p, *v):
        cond = sp.And(*(v[p] > v[q] for q in range(p)), *(v[p] >= v[q] for q in range(p + 1, n)))
        return sp.Piecewise((1, cond), (0, True))
    out = [np.asarray(np.frompyfunc(functools.partial(pick, p), n, 1)(*x), dtype=object) for p in range(n)]
    return np.moveaxis(np.stack(out), 0, axis)


def _exp_sum(x, axis):
    return np.sum(_vec(sp.exp)(x), axis=axis, keepdims=True)


def _add_at(acc, idx, v):
    np.add.at(acc, idx, v)  # repeated indices add up
    return acc


def _foreign(ins, outs, *vals, fn, types_out):
    raise NotImplementedError(f"{fn.name} is an opaque box computed on JAX arrays: the sympy backend cannot "
                              "evaluate it (it has no formula)")


_DRAWS = itertools.count()


def _normal(ins, outs, key, *, shape, dtype):
    """A draw is a fresh symbol per number (``v_{k}``): formulas show where randomness enters."""
    cells = [sp.Symbol(f"v_{{{next(_DRAWS)}}}") for _ in range(int(np.prod(shape, dtype=int)))]
    return [key, np.asarray(cells, dtype=object).reshape(shape)]


def _uniform(ins, outs, key, like):
    """Like :func:`_normal`: a fresh symbol ``u_{k}`` per number (one per example where batched)."""
    shape = np.shape(like)
    cells = [sp.Symbol(f"u_{{{next(_DRAWS)}}}") for _ in range(int(np.prod(shape, dtype=int)))]
    return [key, np.asarray(cells, dtype=object).reshape(shape)]


def _pow(x, *, p):
    return _vec(lambda v: v ** _num(p))(x)


#: One entry per primitive the shared rules do not cover: elementwise ones are functions of arrays.
RULES = {
    "neg": _vec(lambda x: -x), "exp": _vec(sp.exp), "log": _vec(sp.log), "sqrt": _vec(sp.sqrt),
    "tanh": _vec(sp.tanh), "sigmoid": _vec(sigmoid), "softplus": _vec(softplus),
    "relu": _vec(lambda x: sp.Max(x, 0)),
    "step": _vec(lambda x: sp.Piecewise((1, x > 0), (0, True))), "cos": _vec(sp.cos), "sin": _vec(sp.sin),
    "floor": _vec(sp.floor), "stop_gradient": lambda x: x,
    "scale": lambda x, *, c: x * _num(c), "shift": lambda x, *, c: x + _num(c), "pow": _pow,
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y,
    "power": _vec(lambda x, e: x ** e, 2),
    "greater": _vec(lambda x, y: _piecewise((1, x > y), (0, True)), 2),
    "equal": _vec(lambda x, y: _piecewise((1, sp.Eq(x, y)), (0, True)), 2),
    "where": _vec(lambda c, x, y: _piecewise((x, _condition(c)), (y, True)), 3),
    "cast": lambda x, *, dtype: x,
    "real": _vec(sp.re), "conj": _vec(sp.conjugate),
    "reduce_max": _max,
    "foreign": _foreign,
    "normal": _normal,
    "uniform": _uniform,
    "softmax": lambda ins, outs, x, *, axis: _vec(sp.exp)(x) / _exp_sum(x, axis + ins[0].batched),
    "logsumexp": lambda ins, outs, x, *, axis: np.squeeze(_vec(sp.log)(_exp_sum(x, axis + ins[0].batched)),
                                                        axis + ins[0].batched),
}


def _library_function(prim):
    """SymPy's function named as the elementwise primitive: ``sympy.tan``; NumPy's ``arc`` names
    are SymPy's ``a`` names (``arctan`` is ``sympy.atan``), and ``abs`` is ``sympy.Abs``."""
    name = prim.name
    fn = getattr(sp, name, None) or getattr(sp, name.capitalize(), None) or \
        (getattr(sp, "a" + name[3:], None) if name.startswith("arc") else None)
    return _vec(fn, prim.arity) if isinstance(fn, type) and issubclass(fn, sp.Function) else None


def _sympify(v):
    # a boolean is the number 0 or 1 here (SymPy's true and false are not numbers: Ne(false, 0) holds);
    # strict: a string is refused, never parsed (SymPy's parser evaluates Python)
    if isinstance(v, (bool, np.bool_)):
        return sp.Integer(int(v))
    try:
        return sp.sympify(v, strict=True)
    except sp.SympifyError:
        raise TypeError(f"the sympy backend takes numbers, SymPy expressions and arrays of them, not "
                        f"{type(v).__name__} ({printable(repr(v), 60)}); build an expression with sympy.Symbol "
                        "or sympy.parse_expr yourself") from None


def _convert(v):
    if isinstance(v, (sp.NDimArray, sp.MatrixBase)):
        v = v.tolist()
    arr = np.asarray(v, dtype=object)
    return _vec(_sympify)(arr) if arr.size else arr


def _finish(v):
    v = np.asarray(v, dtype=object)
    return v.item() if v.ndim == 0 else sp.Array(v.tolist(), v.shape)


LIB = ArrayLib(
    xp=np,
    asarray=lambda v, dtype: _convert(v),
    full=lambda shape, value, dtype: np.full(shape, _sympify(value), dtype=object),
    constant=lambda value, shape, dtype: np.asarray([_num(v) for v in value], dtype=object).reshape(shape),
    einsum=lambda spec, a, b: np.asarray(np.einsum(spec, a, b), dtype=object),
    pad_with=lambda x, widths, fill: np.pad(x, widths, constant_values=_sympify(fill)),
    lowest=lambda dtype: -sp.oo,
    max_over=_max_over,
    first_max=_first_max,
    add_at=_add_at,
)


class Formulas(dict):
    """A term's outputs as formulas, by port name (``dW``, ``dx``, ...); a notebook shows them as LaTeX.

    ``symbol_names`` gives the LaTeX of the symbols whose names are not plain identifiers: a
    name is data, and reaches LaTeX with every special character escaped (:func:`tex_text`).

    Args:
        items: the formulas, as a mapping or as ``(port name, formula)`` pairs, as for ``dict``.
        symbol_names: the LaTeX of each symbol whose name is not a plain identifier, by symbol
            (what ``sympy.latex`` takes as ``symbol_names``); ``None``: none.
    """

    def __init__(self, items=(), symbol_names: dict | None = None):
        super().__init__(items)
        self.symbol_names = dict(symbol_names or {})

    def latex(self) -> str:
        """The formulas as one LaTeX ``aligned`` environment, a row ``name &= formula`` per output.

        Each port name is set in ``\\mathit`` with its special characters escaped; products are
        written with ``\\cdot``, and the symbols of ``symbol_names`` with their LaTeX.

        Returns:
            The LaTeX source, without math delimiters (a notebook shows it between ``$$``).
        """
        rows = [rf"{_latex_name(k)} &= {sp.latex(v, mul_symbol='dot', symbol_names=self.symbol_names)}"
                for k, v in self.items()]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


#: a name SymPy prints well as it is: letters, digits and ``_`` subscripts
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)?")
#: what each character special to LaTeX (or to the HTML a formula sits in) is written as
_TEX = {"\\": r"\backslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%",
        "_": r"\_", "^": r"\hat{}", "~": r"\sim{}", "<": r"\lt{}", ">": r"\gt{}", " ": r"\ "}


def tex_text(name: str, limit: int = 48) -> str:
    """``name`` as LaTeX that shows it letter for letter: unprintable characters escaped
    (:func:`~paralens.diagram.printable`), then every character special to LaTeX written as its
    command, so a name can never be read as LaTeX commands.

    >>> tex_text("a_{b}\\\\input")
    'a\\\\_\\\\{b\\\\}\\\\backslash{}input'
    """
    return "".join(_TEX.get(c, c) for c in printable(name, limit))


def _latex_name(label: str) -> str:
    return r"\mathit{" + tex_text(label) + "}"


def _symbols(name: str, shape: tuple, names: dict):
    """Symbols for an array named ``name`` (``name_{i,j}``); the LaTeX of each whose name is not
    plain goes into ``names``."""
    shown = None if _PLAIN.fullmatch(name) else r"\mathtt{" + tex_text(name) + "}"
    if not shape:
        symbol = sp.Symbol(name)
        if shown:
            names[symbol] = shown
        return symbol
    cells = []
    for i in itertools.product(*map(range, shape)):
        index = ",".join(map(str, i))
        cells.append(sp.Symbol(f"{name}_{{{index}}}"))
        if shown:
            names[cells[-1]] = f"{shown}_{{{index}}}"
    return np.asarray(cells, dtype=object).reshape(shape)


class SympyBackend(ArrayBackend):
    """SymPy: every box becomes a formula. ``init`` gives symbols, not random numbers."""

    @staticmethod
    def cast(value, type, what):
        """Symbols and formulas have no dtype to cast: they pass as they are."""
        return value

    def fit(self, step, state, x, y, **options):
        """Refused: the SymPy backend writes formulas, and a run of training steps would grow
        them step by step without end; train with ``backend="numpy"`` or ``"jax"``, then read
        one step as formulas with ``learner.compile("sympy")`` or :func:`paralens.formulas`.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("the sympy backend writes formulas and does not train: each step's formulas "
                                  "hold the previous step's, so a run's grow without end. Train with "
                                  "backend='numpy' or 'jax'; see one step as formulas with "
                                  "learner.compile('sympy') or pl.formulas(learner)")

    def formulas(self, term, **values) -> Formulas:
        """``term``'s outputs as formulas in symbols named after its ports and parameters (one
        example: batched wires are shown per example). ``values`` fixes inputs or parameters
        by name (``dy=1``); a name that is neither raises ``KeyError``. Random keys
        (``prims.KEY`` wires, as :func:`~paralens.forward_gradient` and dropout pass on) are not
        numbers of the maths: a key output has no formula, and draws from a key are symbols."""
        term = as_term(term)
        in_labels, out_labels = term.port_labels()
        locals_ = [s.local or s.layer for s in term.params]
        short = locals_ if len(set(locals_)) == len(locals_) else [n.replace(".", "_") for n in term.param_names]
        unknown = sorted(set(values) - set(short) - set(term.param_names) - set(in_labels))
        if unknown:
            raise KeyError(f"formulas of {term.name}: no input or parameter is named {unknown}; the inputs are "
                           f"{list(in_labels)} and the parameters {list(term.param_names)}")
        args, names = [], {}
        for name, full, spec in zip(short, term.param_names, term.params):
            v = values.get(full, values.get(name))
            v = _convert(v) if v is not None else _symbols(name, spec.type.shape, names)
            args.append(np.asarray(v, dtype=object)[None] if spec.type.batched else v)  # a label: one example's
        for label, t in zip(in_labels, term.dom):
            v = values.get(label)
            v = np.asarray(_convert(v) if v is not None else _symbols(label, t.shape, names), dtype=object)
            if v.shape != t.shape:
                v = np.broadcast_to(v, t.shape)
            args.append(v[None] if t.batched else v)  # one example
        outs = self.run(term, [np.asarray(a, dtype=object) for a in args])
        return Formulas(((label, _finish(np.asarray(v, dtype=object)[0] if t.batched else v))
                         for label, v, t in zip(out_labels, outs, term.cod) if t != KEY), names)

    def init(self, term, seed: int = 0) -> dict:
        """Each parameter as an array of symbols named ``name[i,j]`` (``seed`` is not used);
        hyperparameters keep their declared values. Labels are data, not made."""
        term = as_term(term)
        out = {}
        for name, spec in zip(term.param_names, term.params):
            if spec.type.batched:
                continue
            if spec.hyper:
                out[name] = self.array(spec.init[1], spec.type)
                continue
            shape = spec.type.shape
            cells = [sp.Symbol(f"{name}[{','.join(map(str, i))}]" if shape else name)
                     for i in itertools.product(*map(range, shape))]
            out[name] = _finish(np.asarray(cells, dtype=object).reshape(shape))
        return out

    def array(self, value, type: ArrayType):
        v = _convert(value)
        if v.shape != type.shape:
            v = np.broadcast_to(v, type.shape).copy()
        return _finish(v)

    def owns(self, value) -> bool:
        return isinstance(value, (sp.Basic, sp.NDimArray))


backend = SympyBackend("sympy", LIB, RULES, convert=_convert, finish=_finish,
                       loop=functools.partial(python_loop, dtype=object),
                       # NumPy gives 0-d object results as bare objects
                       wrap=lambda v: np.asarray(v, dtype=object), library=_library_function)


def compile(term):  # noqa: A001 - the public contract
    """A function on SymPy values for ``term`` (same calling convention as the NumPy backend).

    Args:
        term: the term to compile, or a lens, optimizer or learner (its term is taken).

    Returns:
        ``fn(params, *args)``: parameters and inputs may be SymPy arrays, matrices, expressions or
        numbers (a string is refused with ``TypeError``, never parsed); each array output is a
        ``sympy.Array`` and a scalar output an expression.

    Raises:
        TypeError: ``term`` is not a term, lens, optimizer or learner (or has no type yet), or it
            does arithmetic on bool wires (Z2 arithmetic: run it with the ``z2`` backend).
    """
    return backend.compile(term)


def init(term, seed: int = 0) -> dict:
    """Each parameter as symbols (see :meth:`SympyBackend.init`).

    Args:
        term: the term, or a lens, optimizer or learner, whose parameters to make.
        seed: not used: nothing is drawn (it is there for the common signature of ``init``).

    Returns:
        A dict from each parameter's full name to a ``sympy.Array`` of symbols named
        ``name[i,j]`` (a scalar parameter: one symbol named ``name``); a hyperparameter keeps its
        declared value, and labels (batched parameters) are data, and are left out.
    """
    return backend.init(term, seed)
