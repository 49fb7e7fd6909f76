"""Learn the ridge penalty of a linear model on scikit-learn's bundled diabetes data.

Inner problem: J(w; l2) = mean 1/2 (x.w - y)^2 + l2/2 ||w||^2, trained by gradient
descent (warm-started between outer steps). Outer problem: the validation loss,
minimised over log(l2) with Adam, hypergradients by the implicit function theorem
(conjugate gradient on Hessian-vector products from R(R(J))). The result is
compared with the best penalty on a fine grid, computed in closed form.

    python examples/hyper_ridge.py [--method implicit|unrolled|hoag] [--outer-steps 150]
"""


import argparse

import numpy as np

import paralens as pl


def load(seed: int = 0, n_train: int = 40, n_val: int = 150):
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    x = d.data[order]
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([x, x ** 2 / 2], axis=1)  # more features than the few examples can pin down
    y = (d.target[order] - d.target.mean()) / d.target.std()
    tr, va = slice(0, n_train), slice(n_train, n_train + n_val)
    return (x[tr], y[tr, None]), (x[va], y[va, None])


def closed_form_validation_loss(train, val, l2):
    (x, y), (xv, yv) = train, val
    n, d = x.shape
    w = np.linalg.solve(x.T @ x / n + l2 * np.eye(d), x.T @ y / n)
    return float(np.mean(0.5 * np.sum((xv @ w - yv) ** 2, axis=1)))


def build(d: int, method: str, l2: float):
    @pl.para(dom=[pl.Array(d, dtype="float64")])
    def linear(x, w: pl.Param((d, 1), dtype="float64") = pl.init.zeros()):
        return x @ w
    meth = {"implicit": pl.bilevel.implicit(inner_steps=200, solver="cg", solver_steps=50),
            "unrolled": pl.bilevel.unrolled(200),
            "hoag": pl.bilevel.hoag(tol0=1e-2, tol_decay=0.95, max_inner=2000)}[method]
    return pl.Bilevel(linear, pl.losses.mse(reduction="none"), pl.optim.sgd(0.1), hyper={"l2": pl.Hyper(l2)},
                      method=meth, outer_optimizer=pl.optim.adam(0.1), validation_loss=pl.losses.mse())


def main(method: str = "implicit", outer_steps: int = 150, l2: float = 1.0, seed: int = 0, progress: bool = True):
    """Learn the penalty; returns ``(learned l2, its validation loss, best grid loss, best grid l2)``."""
    import jax
    jax.config.update("jax_enable_x64", True)
    train, val = load(seed)
    problem = build(train[0].shape[1], method, l2)
    runner = problem.compile()
    state, history = runner.fit(train, val, outer_steps=outer_steps, seed=seed, progress=progress)
    learned = float(runner.hyperparameters(state)["l2"])
    grid = np.logspace(-4, 3, 2000)
    losses = [closed_form_validation_loss(train, val, g) for g in grid]
    best = int(np.argmin(losses))
    ours = closed_form_validation_loss(train, val, learned)
    if progress:
        print(f"learned l2 = {learned:.4g} (validation loss {ours:.5f}); "
              f"best on the grid l2 = {grid[best]:.4g} (validation loss {losses[best]:.5f}); "
              f"ratio {ours / losses[best]:.4f}")
    return learned, ours, losses[best], float(grid[best])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["implicit", "unrolled", "hoag"], default="implicit")
    ap.add_argument("--outer-steps", type=int, default=150)
    ap.add_argument("--l2", type=float, default=1.0, help="initial penalty")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.method, a.outer_steps, a.l2, a.seed)
