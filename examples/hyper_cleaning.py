"""Data hyper-cleaning on scikit-learn's bundled digits.

600 training examples, half of them with their label replaced by a random other
class; 600 clean validation examples; the rest for testing. A multinomial
logistic model is trained on the training set with one weight per example,
``sigmoid(theta_i)`` multiplying its loss; the weights are learned on the
validation loss. Corrupted examples end up with small weights.

    python examples/hyper_cleaning.py [--method implicit|unrolled] [--seed 0]
"""

import argparse

import numpy as np

import paralens as pl


def load(seed: int = 0, n_train: int = 600, n_val: int = 600):
    """``(train, val, test, corrupted)``: the training labels are 50% corrupted; ``corrupted`` marks them."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    x = (d.data[order] / 16.0).astype(np.float32)
    y = d.target[order].astype(np.int32)
    tr, va, te = slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, None)
    y_train = y[tr].copy()
    corrupted = rng.random(n_train) < 0.5
    shift = rng.integers(1, 10, n_train)  # a random *other* class
    y_train[corrupted] = (y_train[corrupted] + shift[corrupted]) % 10
    return (x[tr], y_train), (x[va], y[va]), (x[te], y[te]), corrupted


def build(method: str):
    model = pl.nn.dense(64, 10)
    meth = pl.bilevel.implicit(inner_steps=100, solver="cg", solver_steps=50) if method == "implicit" \
        else pl.bilevel.unrolled(100)
    return pl.Bilevel(model, pl.losses.softmax_cross_entropy_with_integer_labels(reduction="none"),
                      pl.optim.sgd(1.0), l2=1e-3,
                      hyper={"weights": pl.Hyper(0.5, positive="sigmoid", per_example=True)},
                      method=meth, outer_optimizer=pl.optim.adam(0.3),
                      validation_loss=pl.losses.softmax_cross_entropy_with_integer_labels())


def roc_auc(scores, positives) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = scores[positives], scores[~positives]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def unweighted_accuracy(train, test, steps: int = 2000, l2: float = 1e-3) -> float:
    """The same model trained to convergence on the noisy labels, every example weighted 1."""
    learner = pl.Learner(pl.nn.dense(64, 10), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.adamw(1e-2, weight_decay=0.0))
    state = learner.init(0, backend="jax")
    many = learner.compile("jax", scan=True)
    x, y = train
    state, _ = many(state, np.broadcast_to(x, (steps,) + x.shape), np.broadcast_to(y, (steps,) + y.shape))
    return learner.accuracy(state, *test, backend="jax")


def main(method: str = "implicit", outer_steps: int = 200, seed: int = 0, progress: bool = True):
    """Returns ``(test accuracy, unweighted test accuracy, ROC AUC of the weights)``."""
    train, val, test, corrupted = load(seed)
    problem = build(method)
    runner = problem.compile()
    state, history = runner.fit(train, val, outer_steps=outer_steps, seed=seed, progress=progress)
    weights = np.asarray(runner.hyperparameters(state)["weights"])
    from paralens.backends import jax as pjax
    pred = np.argmax(np.asarray(pjax.compile(problem.model)(state["params"], test[0])), axis=1)
    acc = float(np.mean(pred == test[1]))
    auc = roc_auc(weights, ~corrupted)
    base = unweighted_accuracy(train, test)
    if progress:
        print(f"{method}: test accuracy {acc:.3f} (unweighted {base:.3f}); weights separate clean from "
              f"corrupted with ROC AUC {auc:.3f}; mean weight clean {weights[~corrupted].mean():.3f}, "
              f"corrupted {weights[corrupted].mean():.3f}")
    return acc, base, auc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["implicit", "unrolled"], default="implicit")
    ap.add_argument("--outer-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.method, a.outer_steps, a.seed)
