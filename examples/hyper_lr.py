"""Learn the learning rate of an MLP on scikit-learn's bundled digits.

The inner learner is minibatch SGD whose learning rate is a hyperparameter
wire; each outer step unrolls K inner steps on K minibatches (one ``scan``
box) and back-propagates the validation loss through them to ``log(lr)``. The inner
training is warm-started, so after N outer steps the model has taken N * K
steps; the baseline takes the same number of steps with the fixed rate 0.01.

    python examples/hyper_lr.py [--lr 0.01] [--outer-steps 40] [--unroll 20]
"""

import argparse

import numpy as np

import paralens as pl
from paralens.backends import datasets


def load(seed: int = 0):
    x_tr, y_tr, x_te, y_te = datasets.digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_tr))
    n_val = len(x_tr) // 4
    val, train = order[:n_val], order[n_val:]
    mean, std = x_tr[train].mean(0), (x_tr[train].std(0) + 0.1) / SPREAD  # standardised, then spread
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    return (x_tr[train], y_tr[train]), (x_tr[val], y_tr[val]), (x_te, y_te)


def model():
    return pl.nn.mlp([64, 128, 10], activation=pl.nn.relu)


BATCH = 32
SPREAD = 2.0


def build(lr: float, unroll: int):
    return pl.Bilevel(model(), pl.losses.softmax_cross_entropy_with_integer_labels(reduction="none"),
                      pl.optim.sgd(lr), hyper={"learning_rate": pl.Hyper(lr)}, method=pl.bilevel.unrolled(unroll),
                      outer_optimizer=pl.optim.adam(0.1), batch_size=BATCH,
                      validation_loss=pl.losses.softmax_cross_entropy_with_integer_labels())


def fixed_rate(train, val, test, lr: float, steps: int, seed: int):
    """Validation loss and test accuracy of minibatch SGD with a fixed rate, as many steps."""
    learner = pl.Learner(model(), loss=pl.losses.softmax_cross_entropy_with_integer_labels(),
                         optimizer=pl.optim.sgd(lr))
    state = learner.init(seed, backend="jax")
    many = learner.compile("jax", scan=True)
    x, y = train
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(len(x), BATCH, replace=False) for _ in range(steps)])
    state, _ = many(state, x[idx], y[idx])
    from paralens.backends import jax as pjax
    v = pjax.compile(learner.objective)({**state["params"], "softmax_cross_entropy": val[1]}, val[0])
    return float(v), learner.accuracy(state, *test, backend="jax")


def main(lr: float = 0.01, outer_steps: int = 40, unroll: int = 20, seed: int = 0, progress: bool = True):
    """Returns ``(learned lr, validation loss, test accuracy, baseline validation loss, baseline accuracy)``."""
    train, val, test = load(seed)
    problem = build(lr, unroll)
    runner = problem.compile()
    state, history = runner.fit(train, val, outer_steps=outer_steps, seed=seed, progress=progress)
    learned = float(runner.hyperparameters(state)["learning_rate"])
    from paralens.backends import jax as pjax
    val_loss = float(pjax.compile(problem.validation)(state["params"], val))
    pred = np.argmax(np.asarray(pjax.compile(problem.model)(state["params"], test[0])), axis=1)
    acc = float(np.mean(pred == test[1]))
    base_val, base_acc = fixed_rate(train, val, test, 0.01, outer_steps * unroll, seed)
    if progress:
        print(f"learning rate {lr:g} -> {learned:.4g}: validation loss {val_loss:.4f}, test accuracy {acc:.3f}; "
              f"fixed rate 0.01: validation loss {base_val:.4f}, test accuracy {base_acc:.3f}")
    return learned, val_loss, acc, base_val, base_acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr", type=float, default=0.01, help="initial learning rate")
    ap.add_argument("--outer-steps", type=int, default=40)
    ap.add_argument("--unroll", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.lr, a.outer_steps, a.unroll, a.seed)
