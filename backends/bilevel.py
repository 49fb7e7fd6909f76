"""Running bilevel problems with JAX: the hypergradient methods and the outer loop.

The hypergradients come from terms built by :class:`paralens.Bilevel`
(``R`` of the unrolled objective; ``R(R(J))`` for Hessian-vector products and
mixed derivatives). What lives here is the numerical driving: linear solvers
(conjugate gradient, Neumann series, dense solve), HOAG's tolerance schedule,
the outer optimizer step, and the loop over outer steps.
"""

from __future__ import annotations

import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from paralens.bilevel import SolverWarning
from paralens.derivative import R, value_and_R
from paralens.optim import init_state
from paralens.terms import leaves, unflatten
from paralens.types import ArrayType

from . import jax as pjax

__all__ = ["CompiledBilevel"]

tmap = jax.tree_util.tree_map


def _dot(a: dict, b: dict):
    return sum(jnp.vdot(a[k], b[k]) for k in a)


def _axpy(alpha, x: dict, y: dict) -> dict:
    return {k: alpha * x[k] + y[k] for k in x}


def _theta0(h, value, n: int, dtype):
    v = np.full(n, value, dtype=np.float64) if h.per_example and np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if h.positive == "log":
        v = np.log(v)
    elif h.positive == "softplus":
        v = v + np.log(-np.expm1(-v))  # log(exp(v) - 1), without overflow for large v
    elif h.positive == "sigmoid":
        v = np.log(v) - np.log1p(-v)
    return jnp.asarray(v, dtype=dtype)


class CompiledBilevel:
    """``step(state, (x, y), (x_val, y_val)) -> (state, metrics)``: one outer step as one
    ``jax.jit`` program; ``fit`` loops over outer steps with a progress bar.

    The state holds ``theta`` (the raw hyperparameters), the inner ``params``
    and optimizer state ``opt`` (warm-started from one outer step to the next),
    and the outer optimizer's state.
    """

    def __init__(self, problem, *, jit: bool = True):
        self.problem = problem
        self.method = problem.method
        p = problem
        self._names = tuple(p.inner.param_types)
        self._n_params = len(self._names)
        self._opt_sig = p.inner.step_term.in_sig[0].values[1]
        self._obj_names = list(p.objective_hypers)
        self._lam = pjax.compile(p.lambda_term)
        self._lam_R = pjax.compile(R(p.lambda_term))
        self._val = pjax.compile(p.validation)
        self._val_R = pjax.compile(R(p.validation))
        if self.method.kind in ("unrolled", "truncated"):
            self._F = pjax.compile(value_and_R(p.unrolled_objective))
        else:
            self._inner = pjax.compile(p.inner_loop(self.method.steps)) if self.method.kind == "implicit" else None
            self._step1 = pjax.compile(p.inner_step)
            self._J_R = pjax.compile(R(p.objective))
            self._hvp = pjax.compile(p.hvp_term)
        self._outer_cache: dict = {}
        self.step = jax.jit(self._step, donate_argnums=(0,)) if jit else self._step

    # ---------------------------------------------------------------- state
    def init(self, seed: int, n_train: int) -> dict:
        p = self.problem
        values = pjax.init(p.model, seed)
        params = {n: values[n] for n in self._names}
        opt = init_state(p.state_specs, params, pjax.backend.array)
        theta = {k: _theta0(p.hyper[k], p.initial_value(k), n_train, p.theta_type(k).dtype) for k in p.hyper_names}
        upd, specs = self._outer_update(theta)
        outer = init_state(specs, theta, pjax.backend.array)
        outer_hyper = {k: jnp.asarray(v, p.hyper_dtype) for k, v in p.outer_optimizer.hyper.items()}
        return {"theta": theta, "params": params, "opt": opt, "outer": outer, "outer_hyper": outer_hyper,
                "k": jnp.asarray(0, jnp.int32)}

    def hyperparameters(self, state) -> dict:
        """``lambda`` (the hyperparameters themselves) from ``state["theta"]``."""
        lam = self._lam({}, self._theta_args(state["theta"]))
        lam = lam if isinstance(lam, tuple) else (lam,)
        return dict(zip(self.problem.hyper_names, lam))

    def _theta_args(self, theta):
        args = tuple(theta[k] for k in self.problem.hyper_names)
        return args[0] if len(args) == 1 else args

    def _outer_update(self, theta):
        key = tuple((k, v.shape, str(v.dtype)) for k, v in theta.items())
        if key not in self._outer_cache:
            types = {k: ArrayType(tuple(v.shape), str(v.dtype), False) for k, v in theta.items()}
            term = self.problem.outer_optimizer.term(types)
            self._outer_cache[key] = (pjax.compile(term), self.problem.outer_optimizer.state(types))
        return self._outer_cache[key]

    # ---------------------------------------------------------------- hypergradients
    def hypergradient(self, state, train, val):
        """``(dtheta, metrics, inner params, inner opt state)`` at ``state``, by the problem's method."""
        kind = self.method.kind
        if kind in ("unrolled", "truncated"):
            return self._unrolled(state, train, val)
        return self._implicit(state, train, val)

    def _unrolled(self, state, train, val):
        p = self.problem
        theta = [state["theta"][k] for k in p.hyper_names]
        carry = self._carry(state)
        xv, yv = val
        inputs = tuple(theta + carry + list(train) + [xv, yv])
        seed = tuple([jnp.ones((), p.hyper_dtype)] + [jnp.zeros_like(c) for c in carry])
        outs, _, dins = self._F({}, inputs, seed)
        val_loss, new_carry = outs[0], outs[1:]
        dtheta = dict(zip(p.hyper_names, dins[: len(theta)]))
        params, opt = self._uncarry(new_carry)
        return dtheta, {"validation_loss": val_loss}, params, opt

    def _carry(self, state) -> list:
        return [state["params"][n] for n in self._names] + leaves(state["opt"])

    def _uncarry(self, carry):
        carry = list(carry)
        return dict(zip(self._names, carry[: self._n_params])), unflatten(self._opt_sig, iter(carry[self._n_params:]))

    def _lam_obj(self, theta):
        lam = self.hyperparameters({"theta": theta})
        return [lam[k] for k in self._obj_names]

    def _lam_model(self, theta):
        lam = self.hyperparameters({"theta": theta})
        return [lam[k] for k in self.problem.model_hypers]

    def _jargs(self, train, lam_obj):
        x, y = train
        args = (x, y, *lam_obj)
        return args

    def hvp(self, params, train, lam_obj, v: dict):
        """``(H v, mixed)`` at ``params``; ``mixed[k] = (d2 J/dw dlambda_k)^T v``."""
        out = self._hvp(params, self._jargs(train, lam_obj) + tuple(v[n] for n in self._names))
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(self._names, out[: self._n_params])), list(out[self._n_params:])

    def grad_J(self, params, train, lam_obj):
        dp, _ = self._J_R(params, self._jargs(train, lam_obj), jnp.ones((), self.problem.hyper_dtype))
        return dp

    def solve(self, params, train, lam_obj, g: dict, tol=None):
        """``(H^{-1} g, ok)`` by the method's solver; ``ok`` is false where the solver cannot
        answer: conjugate gradient met non-positive curvature, the Neumann series' terms grew
        (``alpha`` outside ``(0, 2 / largest eigenvalue)``, or ``H`` not positive definite), or
        the exact solve was not finite (``H`` singular)."""
        meth = self.method
        A = lambda v: self.hvp(params, train, lam_obj, v)[0]  # noqa: E731
        if meth.solver == "exact":
            flat, unravel = jax.flatten_util.ravel_pytree(g)
            column = lambda e: jax.flatten_util.ravel_pytree(A(unravel(e)))[0]  # noqa: E731
            cols = jax.vmap(column)(jnp.eye(flat.size, dtype=flat.dtype))
            q = jnp.linalg.solve(cols.T, flat)
            return unravel(q), jnp.all(jnp.isfinite(q))
        if meth.solver == "neumann":
            alpha = meth.alpha if meth.alpha is not None else 1.0 / self._largest_eigenvalue(A, g)
            def body(_, pv):
                p_, v = pv
                v = _axpy(-alpha, A(v), v)
                return _axpy(1.0, v, p_), v
            p_, v = jax.lax.fori_loop(0, meth.solver_steps, body, (g, g))
            # v = (I - alpha H)^K g shrinks iff |1 - alpha lambda| < 1 for H's eigenvalues; NaN compares false
            ok = (alpha > 0) & (_dot(v, v) <= _dot(g, g))
            return tmap(lambda t: alpha * t, p_), ok
        return _cg(A, g, meth.solver_steps, tol)

    def _largest_eigenvalue(self, A, g, iters: int = 30):
        def body(_, v):
            w = A(v)
            n = jnp.sqrt(_dot(w, w))
            return tmap(lambda t: t / jnp.where(n > 0, n, 1.0), w)
        v = jax.lax.fori_loop(0, iters, body, tmap(lambda t: jnp.ones_like(t), g))
        return _dot(v, A(v)) / _dot(v, v)

    def _implicit(self, state, train, val):
        p, meth = self.problem, self.method
        theta = state["theta"]
        lam_obj = self._lam_obj(theta)
        th_args = tuple(theta[k] for k in p.hyper_names)
        lam_model = self._lam_model(theta)
        if meth.kind == "implicit":
            carry = self._inner({}, tuple(self._carry(state) + list(th_args) + list(train)))
            carry = carry if isinstance(carry, tuple) else (carry,)
            tol = None
        else:  # HOAG: solve the inner problem to a tolerance that shrinks with the outer step
            tol = meth.tol0 * jnp.power(meth.tol_decay, state["k"].astype(p.hyper_dtype))
            carry = self._solve_inner_to(state, th_args, train, lam_obj, tol)
        params, opt = self._uncarry(carry)
        xv, yv = val
        gv, dval = self._val_R(params, (xv, yv, *lam_model), jnp.ones((), p.hyper_dtype))
        q, ok = self.solve(params, train, lam_obj, gv, tol)
        _, mixed = self.hvp(params, train, lam_obj, q)
        dlam = {k: -m for k, m in zip(self._obj_names, mixed)}
        for k, d in zip(p.model_hypers, dval[2:]):  # V depends on the model's hyperparameters directly too
            dlam[k] = dlam[k] + d
        dlam_all = tuple(dlam.get(k, jnp.zeros_like(theta[k])) for k in p.hyper_names)
        _, dth = self._lam_R({}, th_args if len(th_args) > 1 else th_args[0],
                             dlam_all if len(dlam_all) > 1 else dlam_all[0])
        dth = dth if isinstance(dth, tuple) else (dth,)
        metrics = {"validation_loss": self._val(params, (xv, yv, *lam_model)), "solver_failed": ~ok}
        return dict(zip(p.hyper_names, dth)), metrics, params, opt

    def _solve_inner_to(self, state, th_args, train, lam_obj, tol):
        n = self._n_params
        carry0 = tuple(self._carry(state))

        def gnorm(c):
            g = self.grad_J(dict(zip(self._names, c[:n])), train, lam_obj)
            return jnp.sqrt(_dot(g, g))

        def cond(ic):
            i, c = ic
            return (i < self.method.max_inner) & (gnorm(c) > tol)

        def body(ic):
            i, c = ic
            out = self._step1({}, tuple(c) + tuple(th_args) + tuple(train))
            return i + 1, tuple(out) if isinstance(out, tuple) else (out,)
        _, carry = jax.lax.while_loop(cond, body, (jnp.asarray(0), carry0))
        return carry

    # ---------------------------------------------------------------- the outer step
    def _step(self, state, train, val):
        dtheta, metrics, params, opt = self.hypergradient(state, train, val)
        upd, _ = self._outer_update(state["theta"])
        outer, theta = upd({}, state["outer"], state["theta"], dtheta, state["outer_hyper"])
        if "solver_failed" in metrics:  # a failed linear solve gives no hypergradient: theta stays
            keep = lambda new, old: tmap(lambda a, b: jnp.where(metrics["solver_failed"], b, a), new, old)  # noqa: E731
            outer, theta = keep(outer, state["outer"]), keep(theta, state["theta"])
        new = {"theta": theta, "params": params, "opt": opt, "outer": outer, "outer_hyper": state["outer_hyper"],
               "k": state["k"] + 1}
        metrics = dict(metrics)
        metrics["hypergradient_norm"] = jnp.sqrt(_dot(dtheta, dtheta))
        for k, v in self.hyperparameters(new).items():  # inside the compiled step: no extra dispatch
            metrics[k] = jnp.mean(v)
        return new, metrics

    def minibatches(self, train, rng):
        """Stacked minibatches for one outer step: ``(x_front, y_front, x, y)`` (front only when
        truncating), each ``(batch, steps, ...)`` (the batch axis first, as batched wires carry it)."""
        meth, bs = self.method, self.problem.batch_size
        k_back = meth.steps if meth.kind == "unrolled" else meth.truncate
        out = []
        for k in ([meth.steps - k_back] if meth.steps > k_back else []) + [k_back]:
            idx = np.stack([rng.choice(len(train[0]), bs, replace=False) for _ in range(k)], axis=1)
            out += [np.asarray(a)[idx] for a in train]
        return tuple(out)

    def fit(self, train, val, *, outer_steps: int = 100, seed: int = 0, state=None, progress: bool = True):
        """Run ``outer_steps`` outer steps; returns ``(state, history)`` where ``history`` maps
        ``validation_loss``, ``hypergradient_norm`` and each hyperparameter's value (its mean for
        per-example ones) to an array with one entry per outer step; for the implicit methods
        also ``solver_failed``, and if any step's linear solve failed a :class:`SolverWarning`
        says which steps and what to change.

        ``train`` and ``val`` are pairs ``(x, y)`` with one label per example; they are checked
        on the host first (lengths, per-example shapes, real and finite numbers, class labels in
        range) and cast to the wires' dtypes.

        Args:
            train: the training pair ``(x, y)``.
            val: the validation pair ``(x, y)``.
            outer_steps: outer steps to take, an int >= 0.
            seed: the minibatches' seed.
            state: the state to start from (``init`` by default).
            progress: show a progress bar.

        Returns:
            ``(state, history)``.

        Raises:
            TypeError: data that are not pairs of arrays of numbers; ``outer_steps`` not an int.
            ValueError: data of the wrong shape, not finite, labels out of range or not one per
                example; ``outer_steps`` negative; a batch size beyond the training set.
        """
        from .validate import positive_int

        p = self.problem
        v = p.validation
        n_x = len(p.model.dom)
        outer_steps = positive_int(outer_steps, "fit: outer_steps", zero=True)
        classes = _classes(p.label_types[0], p.model.cod)
        train = _host_data("train", train, p.model.dom[0], p.label_types[0], classes)
        val = _host_data("val", val, v.dom[0], v.dom[n_x], classes)
        if p.batch_size is not None and p.batch_size > len(train[0]):
            raise ValueError(f"fit: batch_size={p.batch_size} is more than the {len(train[0])} training examples")
        state = self.init(seed, len(train[0])) if state is None else state
        history: dict[str, list] = {}
        steps = range(outer_steps)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = steps = tqdm(steps, desc="outer steps", unit="step")
        rng = np.random.default_rng(seed)
        host_train = tuple(np.asarray(a) for a in train)
        for _ in steps:
            data = train if self.problem.batch_size is None else self.minibatches(host_train, rng)
            state, metrics = self.step(state, data, val)
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)  # device scalars: read back once, at the end
            if bar is not None:  # showing progress reads the loss back each step
                bar.set_postfix(val=f"{float(metrics['validation_loss']):.4f}")
        history = {k: np.asarray(jnp.stack(v)) for k, v in history.items()}
        if "solver_failed" in history and history["solver_failed"].any():
            warnings.warn(self._solver_failure(np.flatnonzero(history["solver_failed"])), SolverWarning,
                          stacklevel=2)
        return state, history

    def _solver_failure(self, steps) -> str:
        """What went wrong at outer ``steps`` (indices) and what to change."""
        meth = self.method
        where = f"at {len(steps)} outer step(s) (first: {steps[0]}); those steps left theta unchanged"
        if meth.solver == "cg":
            return (f"conjugate gradient met non-positive curvature (p^T H p <= 0) solving H q = grad V {where}: the "
                    "inner Hessian H is not positive definite there (the inner parameters are not at a strict "
                    "minimum, or the inner objective is not convex). Use solver='exact' (any invertible H), "
                    "more inner steps, a larger l2, or method=unrolled(...)")
        if meth.solver == "neumann":
            how = (f"alpha={meth.alpha} is at or beyond 2 / (largest eigenvalue of H): pass a smaller alpha, or "
                   "alpha=None for 1 / (largest eigenvalue) by power iteration" if meth.alpha is not None else
                   "with alpha = 1 / (largest eigenvalue, by power iteration) this means H has a negative "
                   "eigenvalue: the inner parameters are not at a minimum; use solver='exact' or more inner steps")
            return f"the Neumann series for H^-1 grad V diverged (its terms grew) {where}: {how}"
        return (f"the exact solve of H q = grad V gave non-finite values {where}: the inner Hessian H is singular; "
                "add an l2 penalty")


def _classes(label: ArrayType, cod) -> int | None:
    """The number of classes when the labels are integer class indices into the model's last axis."""
    if label.shape == () and label.dtype in ("int32", "int64", "uint32") and len(cod) == 1 and cod[0].ndim >= 1:
        return cod[0].shape[-1]
    return None


def _host_data(what: str, data, x_type: ArrayType, y_type: ArrayType, classes: int | None = None) -> tuple:
    """``data`` (a pair ``(x, y)``, one label per example) as JAX arrays of the wires' dtypes;
    refused with a message naming ``what`` when lengths, shapes or kinds of number do not fit,
    when a value is NaN or infinite, or when a class label is out of range."""
    from .validate import check_finite, check_labels
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"fit: {what} must be a pair (x, y), got {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    out = []
    for part, a, t in zip("xy", data, (x_type, y_type)):
        a = np.asarray(a)
        integral = np.issubdtype(np.dtype(t.dtype), np.integer) if t.dtype != "bfloat16" else False
        allowed = "biu" if integral else "biuf"
        if a.dtype.kind not in allowed:
            raise TypeError(f"fit: {what} {part} must hold {'integers' if integral else 'real numbers'} for a "
                            f"{t.dtype} wire, got dtype {a.dtype}")
        if a.ndim != t.ndim + 1 or a.shape[1:] != t.shape:
            raise ValueError(f"fit: {what} {part} should have shape (examples, {', '.join(map(str, t.shape))}) "
                             f"for per-example type {t}, got {a.shape}")
        check_finite(a, f"fit: {what} {part}")
        if part == "y" and classes is not None:
            check_labels(a, classes, f"fit: {what} y")
        out.append(jnp.asarray(a, dtype=t.dtype))
    if len(out[0]) != len(out[1]):
        raise ValueError(f"fit: {what} has {len(out[0])} examples in x but {len(out[1])} labels in y; "
                         "give one label per example")
    return tuple(out)


def _cg(A, b: dict, iters: int, tol=None):
    """Conjugate gradient for ``A x = b`` (``A`` symmetric positive definite), from ``x = 0``:
    ``iters`` iterations, or fewer once the residual norm is below ``tol``. Returns ``(x, ok)``;
    ``ok`` is false when a search direction ``p`` had ``p^T A p <= 0`` (or not finite): ``A`` is not
    positive definite, CG stops there and ``x`` is the iterate it had reached."""
    x = tmap(jnp.zeros_like, b)
    rs = _dot(b, b)

    def body(state):
        i, x, r, p, rs, _ = state
        ap = A(p)
        pap = _dot(p, ap)
        curved = pap > 0
        alpha = jnp.where(curved, rs / jnp.where(curved, pap, 1.0), 0.0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rs_new = _dot(r, r)
        p = _axpy(rs_new / rs, p, r)  # rs > 0 inside the loop
        return i + 1, x, r, p, rs_new, curved

    def cond(state):
        i, _, _, _, rs, ok = state
        done = i >= iters
        if tol is not None:
            done = done | (jnp.sqrt(rs) <= tol)
        return ~done & (rs > 0) & ok
    _, x, _, _, _, ok = jax.lax.while_loop(cond, body, (jnp.asarray(0), x, b, b, rs, jnp.asarray(True)))
    return x, ok
