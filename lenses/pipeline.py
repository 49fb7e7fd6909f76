"""Pipeline stages from composition: a sequential composite ``f >> g >> h`` is already a list of
stages. :func:`stages` cuts a model into ``n`` consecutive groups of its ``>>`` factors, balanced by
their parameters; the JAX backend runs them on the stages of a mesh axis with a GPipe schedule
(:class:`paralens.backends.sharding.Sharding`, ``pipeline=``).

>>> import paralens as pl
>>> model = pl.nn.mlp([4, 16, 16, 3], activation=pl.nn.tanh)
>>> [s.name for s in pl.stages(model, 2)]
['dense(4, 16)', 'tanh >> dense(16, 16) >> tanh >> dense(16, 3)']
"""

from __future__ import annotations

import math

from .terms import Seq, Term, seq

__all__ = ["factors", "stages"]


def factors(term: Term, *, keep_named: bool = False) -> list[Term]:
    """The terms ``term`` is the sequential composite of, in order (``[term]`` for one that is not
    a ``>>`` composite; a composite renamed, such as :func:`~paralens.nn.mlp`, still has its parts).
    Found without recursion, so a chain of thousands of layers is fine.

    Args:
        term: a term.
        keep_named: keep a named composite inside ``term`` (an ``mlp`` in ``mlp >> dense``) as one
            factor rather than opening it.

    Returns:
        The factors ``[f, g, h]`` of ``f >> g >> h``, however it is bracketed.
    """
    out, todo = [], [term]
    while todo:
        t = todo.pop()
        if isinstance(t._node, Seq) and not (keep_named and t is not term and t._label):
            todo.append(t._node.then)
            todo.append(t._node.first)
        else:
            out.append(t)
    return out


def _size(t: Term) -> int:
    return sum(math.prod(p.type.shape) for p in t.params if not p.hyper)


def stages(model: Term, n: int) -> tuple[Term, ...]:
    """``model`` cut into ``n`` consecutive stages of its ``>>`` factors, so that the largest
    stage's parameter count is as small as it can be; their composite is ``model`` again.

    Parameters keep their order: stage ``s``'s are the next ones of ``model.param_names`` (the
    names inside a stage are its own, numbered from 0).

    Args:
        model: a sequential composite of at least ``n`` factors (``pl.nn.mlp``, ``a >> b >> c``).
        n: the number of stages, a positive int.

    Returns:
        ``n`` terms, ``stages[0] >> ... >> stages[n - 1] == model``.

    Raises:
        TypeError: ``n`` is not an int or ``model`` not a term.
        ValueError: ``n`` is not positive, or ``model`` has fewer than ``n`` factors.
    """
    if not isinstance(model, Term):
        raise TypeError(f"stages cuts a term, got {type(model).__name__}")
    if type(n) is not int or n < 1:
        raise (TypeError if type(n) is not int else ValueError)(f"stages: n must be a positive int, got {n!r}")
    parts = factors(model)
    if len(parts) < n:
        raise ValueError(f"{model.name} is a composite of {len(parts)} terms and cannot be cut into {n} stages; "
                         "compose it from more layers with >> (a traced @pl.para body is one term)")
    sizes = [_size(p) for p in parts]
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    # best[k][i]: the least largest stage over cuts of parts[:i] into k stages; at[k][i]: its last cut
    inf = float("inf")
    best = [[inf] * (len(parts) + 1) for _ in range(n + 1)]
    at = [[0] * (len(parts) + 1) for _ in range(n + 1)]
    best[0][0] = 0
    for k in range(1, n + 1):
        for i in range(k, len(parts) + 1):
            for j in range(k - 1, i):
                cost = max(best[k - 1][j], prefix[i] - prefix[j])
                if cost < best[k][i]:
                    best[k][i], at[k][i] = cost, j
    cuts, i = [], len(parts)
    for k in range(n, 0, -1):
        cuts.append((at[k][i], i))
        i = at[k][i]
    return tuple(seq(*parts[a:b]) for a, b in reversed(cuts))
