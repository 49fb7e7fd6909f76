"""Formulas: a term's outputs as SymPy expressions, shown as LaTeX.

>>> import paralens as pl
>>> @pl.para
... def neuron(x: pl.Array[()], w: pl.Param[()], b: pl.Param[()]):
...     return pl.sigmoid(w * x + b)
>>> f = pl.formulas(pl.R(neuron), dy=1)
>>> sorted(f)
['db', 'dw', 'dx']
>>> f["dw"]
x*(1 - sigmoid(b + w*x))*sigmoid(b + w*x)
>>> r"\\sigma" in f.latex()
True
"""

from __future__ import annotations

from . import backends

__all__ = ["formulas"]


def formulas(term, **values):
    """The outputs of ``term`` (a term, lens, optimizer or learner) as formulas, by port name.

    Parameters and inputs become symbols named after them (``w``, ``x``, ``dy``;
    arrays as ``W_{i,j}``), one example at a time; ``values`` fixes some by name.
    Nonlinearities stay named (``\\sigma(z)(1 - \\sigma(z))``). The result is a dict
    of SymPy expressions with ``.latex()``; a notebook shows it as LaTeX.

    A random key (a ``prims.KEY`` wire, such as :func:`~paralens.forward_gradient` takes and
    passes on) is not a number of the maths: a key output has no formula, and each draw from
    a key is a fresh symbol (``v_{k}``).

    Args:
        term: a :class:`~paralens.Term`, a lens, an optimizer or a learner (anything
            :func:`~paralens.as_term` accepts); a polymorphic layer needs a type first.
        **values: values that replace symbols, by name: an input port's label (``dy=1``) or a
            parameter's name (its full name, or the short one its symbol shows); a number, nested
            lists or an array (an input's value is broadcast to the port's shape).

    Returns:
        A dict (``Formulas``) from each output port's label (``dw``, ``dx``) to its SymPy
        expression (a SymPy ``Array`` of expressions for an array output), random keys left out;
        its ``latex()`` method gives all of them as one LaTeX ``aligned`` block.

    Raises:
        KeyError: a name of ``values`` is neither an input port's label nor a parameter's name.
    """
    return backends.get("sympy").formulas(term, **values)
