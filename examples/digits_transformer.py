"""A small transformer on scikit-learn's bundled 8x8 digits, compiled with JAX.

Each image is a sequence of 8 tokens (its rows) of 8 pixels. A linear map takes each row to
``d`` features and a learned position embedding is added; transformer blocks (pre-LN
self-attention and an MLP) mix the rows; a final layer norm, the mean over the tokens and a
dense layer give the 10 class scores.

    python examples/digits_transformer.py [--epochs 30] [--blocks 2]
"""

import argparse  # no `from __future__ import annotations`: build's parameter types name its arguments

import paralens as pl
from paralens.backends import datasets
from paralens.backends.training import train_classifier

ROWS = COLS = 8


def build(d: int = 32, heads: int = 4, blocks: int = 2, mlp_ratio: int = 2) -> pl.Term:
    """The model: (64,) pixels -> (10,) class scores."""
    def tokens(x, W: pl.Param[COLS, d] = pl.init.glorot_uniform(), b: pl.Param[d] = pl.init.zeros(),  # noqa: N803
               position: pl.Param[ROWS, d] = pl.init.normal(0.02)):
        return pl.reshape(x, (ROWS, COLS)) @ W + b + position

    model = pl.para(tokens, dom=[pl.Array[ROWS * COLS]], name="tokens")
    for _ in range(blocks):
        model = model >> pl.nn.transformer_block(d, heads, mlp_ratio)
    pool = pl.para(lambda h: pl.mean(h, axis=0), dom=[pl.Array[ROWS, d]], name="mean_pool")
    return model >> pl.nn.layer_norm(d) >> pool >> pl.nn.dense(d, 10)


def main(seed: int = 0, progress: bool = True, epochs: int = 30, learning_rate: float = 3e-3, batch_size: int = 32,
         d: int = 32, heads: int = 4, blocks: int = 2):
    """Train with Adam; return ``(learner, state, losses, test_accuracy)``."""
    learner, state, losses, acc = train_classifier(build(d, heads, blocks), datasets.digits(), epochs=epochs,
                                                   batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                                   progress=progress)
    if progress:
        print(f"transformer ({blocks} blocks, d={d}, {heads} heads): test accuracy {acc:.4f}")
    return learner, state, losses, acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.seed, epochs=a.epochs, learning_rate=a.learning_rate, blocks=a.blocks)
