"""Deep dreaming (maths §4.6): the same learner, with the roles of input and parameter swapped.

A trained model ``(P, f): A -> B`` is read as parametrised by its *input*:
``(A, (a, p) -> f(p, a)): P -> B``. Feeding the trained ``p`` on the former
input wire and reparametrising the ``A`` wire by an optimizer lens gives a
learner whose steps change the input toward a target and leave the
parameters as they are (they are data now).

>>> import numpy as np, paralens as pl
>>> swapped = pl.dream.input_as_param(pl.nn.dense(2, 3))
>>> swapped.param_names, swapped.dom
(('input',), Ty(Array[2, 3, batched=False], Array[3, batched=False]))

Without more, the steps find whatever input the model scores highest, which for a small
classifier is a pattern of noise. A *prior* on the input, a penalty added to the loss,
keeps the dream near images: :func:`l2` (a Gaussian, optionally fitted to data with
:func:`gaussian_prior`) and :func:`total_variation` (smoothness). A prior is a term from the
input to one unbatched scalar, so ``R`` differentiates it like any other term;
:func:`with_prior` puts it beside the model and :func:`plus_prior` adds its value to the loss.

>>> pl.dream.with_prior(pl.nn.dense(2, 3), pl.dream.l2(0.1)).cod
Ty(Array[3], Array[batched=False])
"""

from __future__ import annotations

import math
import numbers

from . import backends
from . import prims as P
from . import wires as W
from .learner import Learner
from .losses import softmax_cross_entropy_with_integer_labels
from .optim import Transform, adam
from .terms import Builder, Poly, Term
from .types import ArrayType, Ty

__all__ = ["input_as_param", "dream", "learner_of", "l2", "gaussian_prior", "total_variation", "with_prior",
           "plus_prior"]


def input_as_param(model: Term) -> Term:
    """``model`` with its roles swapped: its input is the parameter ``input`` (per example, so
    batched), its parameters are data inputs in their order (maths §4.6).

    Args:
        model: a term with one input wire.

    Returns:
        A term named ``dream(<model's name>)`` with one parameter, ``input``, of the model's input
            type; its inputs are the model's parameters (hyperparameters included), in the model's
            order, and its outputs the model's.

    Raises:
        TypeError: ``model`` has no input wire or more than one.
    """
    if len(model.dom) != 1:
        raise TypeError(f"dreaming needs a model with one input wire, {model.name} takes {model.dom}")
    b = Builder()
    x = b.param("input", 0, "", model.dom[0])
    ps = [b.input(s.type) for s in model.params]
    out = b.inline(model, [x], params=dict(zip(model.param_wires, ps)))
    return b.build(ps, out, name=f"dream({model.name})")


def _weight(fn: str, weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{fn}: weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def _prior(name: str, penalty, check=lambda t: None) -> Poly:
    """A prior as a polymorphic term: at an input type ``t``, ``t -> Array[()]`` (unbatched), the
    mean over the batch of ``penalty(x)``, a per-example scalar."""
    def make(ty: Ty) -> Term:
        if len(ty) != 1 or not ty[0].batched or ty[0].dtype not in P.FLOATS:
            raise TypeError(f"{name} takes one batched floating-point input wire, got {ty}")
        check(ty[0])
        b = Builder()
        x = b.input(ty[0])
        with W.tracing(b):
            out = W.batch_mean(penalty(W.Wire(b, x)))
        return b.build([x], [out.id], name=f"{name}({ty[0]})")
    return Poly(make, name)


def l2(weight: float, *, center=None, whiten=None) -> Poly:
    """An L2 prior on the input: ``weight / 2 * |(x - center) @ whiten|^2`` per example, mean
    over the batch.

    With ``center=0`` and ``whiten=I`` (the defaults) it pulls the input toward zero (weight
    decay on the input). With the data's mean and ``whiten = cov^(-1/2)`` it is, up to a
    constant, ``weight`` times the negative log-density of a Gaussian fitted to the data
    (:func:`gaussian_prior`): it pulls the input toward what images look like.

    Args:
        weight: the prior's weight, a finite number ``>= 0``.
        center: the point it pulls toward, an array of the input's per-example shape; ``None``: zero.
        whiten: a square matrix (``size x size``, ``size`` the number of entries of one input);
            ``None``: the identity.

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a batched floating-point input type it maps
        the input to one unbatched scalar, named ``l2_prior(type)``, with no parameters.

    Raises:
        ValueError: ``weight`` is negative or not finite, or ``center``/``whiten`` do not fit the
            input (when the term is typed).

    >>> import numpy as np, paralens as pl
    >>> prior = pl.dream.l2(2.0).at(pl.Array[3])
    >>> float(pl.backends.get("numpy").compile(prior)({}, np.array([[1.0, 2.0, 2.0]])))
    9.0
    """
    weight = _weight("l2", weight)
    c = None if center is None else _array("l2", "center", center)
    a = None if whiten is None else _array("l2", "whiten", whiten)

    def check(t: ArrayType):
        n = math.prod(t.shape)
        if c is not None and tuple(c.shape) != tuple(t.shape):
            raise ValueError(f"l2: center has shape {tuple(c.shape)}, the input {tuple(t.shape)}")
        if a is not None and tuple(a.shape) != (n, n):
            raise ValueError(f"l2: whiten must be {n} x {n} for an input of {n} entries, got {tuple(a.shape)}")

    def penalty(x):
        d = x if c is None else x - W.constant(c, dtype=x.type.dtype, like=x)
        d = d.reshape(-1) if d.ndim != 1 else d
        if a is not None:
            d = d @ W.constant(a, dtype=x.type.dtype, like=x)
        return (0.5 * weight) * W.sum(d * d)
    return _prior("l2_prior", penalty, check)


def gaussian_prior(images, weight: float, *, ridge: float = 0.01) -> Poly:
    """The :func:`l2` prior of a Gaussian fitted to ``images``: their mean as ``center``, and
    ``whiten = (cov + ridge * I)^(-1/2)`` from their covariance.

    Args:
        images: examples, ``(n, ...)``: what the dream should look like (e.g. training images).
        weight: the prior's weight, a finite number ``>= 0``.
        ridge: added to the covariance's diagonal (pixels that never vary have no variance).

    Returns:
        The :func:`l2` prior, a polymorphic term on inputs of the images' per-example shape.

    Raises:
        ValueError: fewer than two images, a negative weight or a ridge that is not ``> 0``.

    >>> import numpy as np, paralens as pl
    >>> images = np.random.default_rng(0).standard_normal((50, 4))
    >>> prior = pl.dream.gaussian_prior(images, 1.0).at(pl.Array[4])
    >>> at_the_mean = pl.backends.get("numpy").compile(prior)({}, images.mean(0, keepdims=True))
    >>> abs(float(at_the_mean)) < 1e-12
    True
    """
    import numpy as np  # here, not at the top: building terms imports no array library

    x = _array("gaussian_prior", "images", images)
    if x.ndim < 2 or len(x) < 2:
        raise ValueError(f"gaussian_prior needs at least two images (n, ...), got shape {x.shape}")
    if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real) or not ridge > 0:
        raise ValueError(f"gaussian_prior: ridge must be > 0, got {ridge!r}")
    flat = x.reshape(len(x), -1)
    vals, vecs = np.linalg.eigh(np.cov(flat, rowvar=False) + ridge * np.eye(flat.shape[1]))
    return l2(weight, center=x.mean(0), whiten=(vecs / np.sqrt(vals)) @ vecs.T)


def total_variation(weight: float, shape) -> Poly:
    """A smoothness prior: ``weight`` times the sum of the squared differences of neighbouring
    pixels (down and across) of each input read as an image of ``shape``, mean over the batch
    (the squared total variation of Mahendran and Vedaldi, 2015).

    Args:
        weight: the prior's weight, a finite number ``>= 0``.
        shape: ``(rows, columns)`` of the image that one input is (its entries in row-major order).

    Returns:
        A polymorphic term (:class:`~paralens.Poly`): at a batched floating-point input of
        ``rows * columns`` entries it maps the input to one unbatched scalar, named
        ``total_variation(type)``, with no parameters.

    Raises:
        ValueError: ``weight`` is negative or not finite, ``shape`` is not two positive ints, or
            (when the term is typed) the input does not have ``rows * columns`` entries.

    >>> import numpy as np, paralens as pl
    >>> tv = pl.dream.total_variation(1.0, (2, 2)).at(pl.Array[4])
    >>> float(pl.backends.get("numpy").compile(tv)({}, np.array([[0.0, 1.0, 0.0, 1.0]])))
    2.0
    """
    weight = _weight("total_variation", weight)
    shape = W.positive_ints("total_variation", "shape", shape, 2)
    rows, cols = shape
    pairs = [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)] + \
            [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]

    def check(t: ArrayType):
        if math.prod(t.shape) != rows * cols:
            raise ValueError(f"total_variation: an image of {rows} x {cols} has {rows * cols} entries, "
                             f"the input {t} has {math.prod(t.shape)}")

    def penalty(x):
        if not pairs:  # one pixel: nothing to compare
            return 0.0 * W.sum(x)
        diff = [[0.0] * len(pairs) for _ in range(rows * cols)]  # x @ diff: each neighbour's difference
        for k, (i, j) in enumerate(pairs):
            diff[i][k], diff[j][k] = -1.0, 1.0
        flat = x.reshape(-1) if x.ndim != 1 else x
        d = flat @ W.constant(diff, (rows * cols, len(pairs)), x.type.dtype, like=x)
        return weight * W.sum(d * d)
    return _prior("total_variation", penalty, check)


def with_prior(model: Term, prior) -> Term:
    """``model`` with priors beside it: ``x -> (model(x)..., prior(x))`` (one value per prior).

    The dreaming learner (:func:`learner_of`, which :func:`dream` steps) is
    ``input_as_param(with_prior(model, prior))`` with the loss :func:`plus_prior`: each prior's
    value is added to the loss, and its gradient, by ``R`` like every other term's, to the input's.

    Args:
        model: a term with one input wire.
        prior: a term from that input to one unbatched scalar, a polymorphic one (:func:`l2`,
            :func:`total_variation`), or a list of them.

    Returns:
        A term named ``<model>_with_<priors>``: the model's input, its parameters then the priors',
        the model's outputs then each prior's value.

    Raises:
        TypeError: ``model`` does not have one input wire, or a prior is not a term from it to one
            unbatched scalar.

    >>> import paralens as pl
    >>> pl.dream.with_prior(pl.nn.dense(2, 3), pl.dream.total_variation(1.0, (1, 2))).cod
    Ty(Array[3], Array[batched=False])
    """
    if not isinstance(model, Term) or len(model.dom) != 1:
        raise TypeError(f"a prior goes beside a model with one input wire, got {model!r}")
    priors = []
    for p in (prior if isinstance(prior, (list, tuple)) else [prior]):
        p = p.at(model.dom) if isinstance(p, Poly) else p
        if not isinstance(p, Term) or p.dom != model.dom or len(p.cod) != 1 or p.cod[0].shape != () \
                or p.cod[0].batched:
            raise TypeError(f"a prior maps the model's input {model.dom} to one unbatched scalar, got {p!r}")
        priors.append(p)
    b = Builder()
    wires = [[b.redeclare(s) for s in t.params] for t in [model] + priors]
    x = b.input(model.dom[0])
    outs = []
    for t, ws in zip([model] + priors, wires):
        outs += b.inline(t, [x], params=dict(zip(t.param_wires, ws)))
    return b.build([x], outs, name=f"{model.name}_with_{'_'.join(p.name.split('(')[0] for p in priors)}")


def plus_prior(loss: Term, priors: int = 1) -> Term:
    """``loss`` with the values of ``priors`` priors added: ``(y..., r_1, ..., r_k) -> loss(y...) + r_1 + ... + r_k``.

    Args:
        loss: a loss term returning one unbatched scalar (a :mod:`paralens.losses` loss typed
            with ``.at``).
        priors: how many prior values follow the loss's inputs.

    Returns:
        A term with the loss's parameters (its labels), named ``loss + prior``.

    Raises:
        TypeError: ``loss`` does not return one unbatched scalar, or ``priors`` is not an int ``>= 0``.

    >>> import paralens as pl
    >>> pl.dream.plus_prior(pl.losses.mse().at(pl.Array[2])).dom
    Ty(Array[2], Array[batched=False])
    """
    if not isinstance(loss, Term) or len(loss.cod) != 1 or loss.cod[0].shape != () or loss.cod[0].batched:
        raise TypeError(f"plus_prior needs a loss returning one unbatched scalar, got {loss!r}")
    if isinstance(priors, bool) or not isinstance(priors, int) or priors < 0:
        raise TypeError(f"plus_prior: priors must be an int >= 0, got {priors!r}")
    b = Builder()
    lp = [b.redeclare(s) for s in loss.params]
    ys = [b.input(t) for t in loss.dom]
    rs = [b.input(loss.cod[0]) for _ in range(priors)]
    (total,) = b.inline(loss, ys, params=dict(zip(loss.param_wires, lp)))
    for r in rs:
        total = P.add(b, total, r)
    return b.build(ys + rs, [total], name=f"{loss.name} + prior")


def dream(model: Term, params: dict, x, target, *, optimizer: Transform | None = None,
          loss: Term | Poly | None = None, prior=None, steps: int = 100, backend: str = "jax"):
    """Optimise the input ``x`` so that ``model`` (with ``params`` fixed) gives ``target``.

    ``target`` is what the loss compares the output with (class indices for the
    default, softmax cross-entropy with integer labels); ``optimizer`` is any
    of :mod:`paralens.optim` (Adam with step 0.05 by default). ``params`` are read,
    never written.

    Args:
        model: a term with one input wire.
        params: the model's parameters, by name.
        x: the inputs to start from, a batch of examples.
        target: one target per example of ``x`` (a class index each, for the default loss).
        optimizer: the optimizer of the input (``adam(0.05)`` by default).
        loss: the loss comparing the output with the target (softmax cross-entropy with integer
            labels by default).
        prior: a prior on the input added to the loss (:func:`l2`, :func:`gaussian_prior`,
            :func:`total_variation`, or any term from the input to one unbatched scalar), a list
            of them (their sum), or ``None``: none.
        steps: how many steps to take (0: none).
        backend: the backend that runs the steps.

    Returns:
        ``(dreamed x, losses)``: the optimised inputs and the loss of each step.

    Raises:
        ValueError: ``steps`` is negative, ``x`` and ``target`` are not as many, or a class target
            is outside the model's classes.
        TypeError: ``steps`` is not an int, or ``model`` has more than one input wire.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"dream: steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"dream: steps must be >= 0, got {steps}")
    if _examples(x) != _examples(target):
        raise ValueError(f"dream: x holds {_examples(x)} examples but target {_examples(target)}; give one target "
                         "per example")
    learner = learner_of(model, loss, optimizer, prior)
    be = backends.get(backend)
    state = learner.init(backend=backend, params={"input": x})
    fixed = tuple(params[n] for n in model.param_names)
    step = be.compile_step(learner.step_term, classes=learner.classes,
                           **({"donate": False} if backend == "jax" else {}))
    losses = []
    for _ in range(steps):
        state, value = step(state, fixed if len(fixed) != 1 else fixed[0], target)
        losses.append(value)
    return state["params"]["input"], losses


def learner_of(model: Term, loss: Term | Poly | None = None, optimizer: Transform | None = None,
               prior=None) -> Learner:
    """The learner that :func:`dream` steps: its parameter is the model's input.

    Args:
        model: a term with one input wire.
        loss: as for :func:`dream` (softmax cross-entropy with integer labels by default).
        optimizer: as for :func:`dream` (``adam(0.05)`` by default).
        prior: as for :func:`dream`: a prior, a list of priors, or ``None``.

    Returns:
        ``Learner(input_as_param(model), loss, optimizer)``; with priors,
        ``Learner(input_as_param(with_prior(model, prior)), plus_prior(loss, k), optimizer)``.

    Raises:
        TypeError: as :func:`with_prior`, :func:`input_as_param` and :class:`~paralens.Learner` do.

    >>> import paralens as pl
    >>> pl.dream.learner_of(pl.nn.dense(2, 3), prior=pl.dream.l2(0.1)).param_types["input"]
    Array[2]
    """
    loss = loss or softmax_cross_entropy_with_integer_labels()
    optimizer = optimizer or adam(0.05)
    priors = [] if prior is None else list(prior) if isinstance(prior, (list, tuple)) else [prior]
    if not priors:
        return Learner(input_as_param(model), loss, optimizer)
    loss = loss.at(model.cod) if isinstance(loss, Poly) else loss
    return Learner(input_as_param(with_prior(model, priors)), plus_prior(loss, len(priors)), optimizer)


def _array(fn: str, what: str, v):
    """``v`` as a finite float64 array (NumPy imported here: building terms imports no array library)."""
    import numpy as np

    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {what} must be an array of numbers, got {type(v).__name__}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{fn}: {what} has values that are not finite")
    return a


def _examples(v) -> int | None:
    """The number of examples in ``v`` (its leading size), without an array library."""
    shape = getattr(v, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    return len(v) if isinstance(v, (list, tuple)) else None
