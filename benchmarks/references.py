"""Hand-written plain JAX + optax references of the benchmarked models, and the HLO audit.

Each reference reads its parameters by paralens's names, so both sides start from the same
``learner.init(seed)``; each step is ``jax.value_and_grad`` and ``optax.adam``, ``jax.jit`` with
the state donated. :func:`op_counts` reads a compiled program's instructions by opcode
(``compiled.as_text()``), what bench_cnn.py and tests/test_hlo_audit.py compare.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

import paralens as pl

#: the opcodes the audit compares: the heavy ones an accelerator library recognises
AUDITED = ("convolution", "dot", "scatter", "select-and-scatter")

_OPCODE = re.compile(r"([a-z][a-z0-9\-]*)\(")


def op_counts(compiled) -> collections.Counter:
    """Instructions by opcode in a compiled program's HLO (every computation: the entry, fused
    computations, loop bodies), plus ``"instructions"``, their total."""
    counts = collections.Counter()
    for line in compiled.as_text().splitlines():
        if " = " not in line or line.lstrip().startswith(("HloModule", "//")):
            continue
        m = _OPCODE.search(line.split(" = ", 1)[1])
        if m:
            counts[m.group(1)] += 1
            counts["instructions"] += 1
    return counts


def adam_step(forward: Callable, loss: Callable, lr: float):
    """A hand-written step: jax.value_and_grad of ``loss(forward(params, x), y)``, optax.adam."""
    tx = optax.adam(lr)

    def step(state, x, y):
        params, opt_state = state
        value, grads = jax.value_and_grad(lambda p: loss(forward(p, x), y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value
    return tx, step


def cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()


def half_squared_error(pred, y):
    """paralens's ``mse``: half the squared error summed per example, mean over the batch."""
    d = (pred - y).astype(jnp.float32)
    return 0.5 * jnp.sum(d * d) / d.shape[0]


# ---- the MLP

def mlp_learner(sizes, lr):
    return pl.Learner(pl.nn.mlp(sizes, activation=pl.nn.relu),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))


def mlp_forward(p, x):
    n = sum(1 for k in p if k.endswith(".W"))
    for i in range(n):
        x = x @ p[f"dense{i}.W"] + p[f"dense{i}.b"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


# ---- the CNN: two 3x3 convolutions, ReLU, 2x2 max pooling, a dense readout

def cnn_learner(size: int, channels=(16, 32), classes: int = 10, lr: float = 1e-3, in_channels: int = 1):
    c1, c2 = channels
    features = (pl.nn.conv2d(in_channels, c1, 3, padding="same").at(pl.Array[size, size, in_channels])
                >> pl.nn.relu() >> pl.nn.max_pool() >> pl.nn.conv2d(c1, c2, 3, padding="same") >> pl.nn.relu()
                >> pl.nn.max_pool() >> pl.nn.flatten())
    model = features >> pl.nn.dense(features.cod[0].size, classes)
    return pl.Learner(model, loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(lr))


def cnn_forward(p, x):
    """The CNN as flax.linen writes it: ``lax.conv_general_dilated`` (NHWC, HWIO, "SAME") and
    ``lax.reduce_window`` max pooling."""
    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = pool(jax.nn.relu(conv(x, p["conv0.w"], p["conv0.b"])))
    x = pool(jax.nn.relu(conv(x, p["conv1.w"], p["conv1.b"])))
    return x.reshape(x.shape[0], -1) @ p["dense.W"] + p["dense.b"]


# ---- the transformer block (pl.nn.transformer_block) and the character LM (examples/char_lm.py)

def _layer_norm(x, p, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * (var + 1e-5) ** -0.5 * p[f"{name}.scale"] + p[f"{name}.bias"]


def block_forward(p, x, heads: int, names: dict, causal: bool = False):
    """``pl.nn.transformer_block(d, heads)`` by hand on (N, T, D); ``names`` maps ``attention``,
    ``norm0``, ``norm1``, ``dense0``, ``dense1`` to the layers' paralens names."""
    n, t, d = x.shape
    y = _layer_norm(x, p, names["norm0"])
    att = names["attention"]

    def project(w, scale=1.0):
        return jnp.reshape((y @ p[f"{att}.W{w}"] + p[f"{att}.b{w}"]) * scale, (n, t, heads, d // heads))
    q, k, v = project("q", 1 / math.sqrt(d // heads)), project("k"), project("v")
    scores = jnp.einsum("nqhe,nkhe->nhqk", q, k)
    if causal:
        scores = jnp.where(jnp.tril(jnp.ones((t, t), bool)), scores, -jnp.inf)
    a = jax.nn.softmax(scores, axis=-1)
    h = x + jnp.einsum("nhqk,nkhe->nqhe", a, v).reshape(n, t, d) @ p[f"{att}.Wo"] + p[f"{att}.bo"]
    z = jax.nn.gelu(_layer_norm(h, p, names["norm1"]) @ p[f"{names['dense0']}.W"] + p[f"{names['dense0']}.b"],
                    approximate=True)
    return h + z @ p[f"{names['dense1']}.W"] + p[f"{names['dense1']}.b"]


def transformer_forward(heads: int) -> Callable:
    """One ``pl.nn.transformer_block`` learner's forward pass, by hand."""
    names = {"attention": "attention", "norm0": "layer_norm0", "norm1": "layer_norm1", "dense0": "dense0",
             "dense1": "dense1"}
    return lambda p, x: block_forward(p, x, heads, names)


def char_lm_forward(heads: int, blocks: int) -> Callable:
    """examples/char_lm.py's model by hand: token embeddings plus positions, causal blocks, a
    final LayerNorm and the readout."""
    def forward(p, ids):
        x = p["embedding.table"][ids] + p["tokens.position"]
        for i in range(blocks):
            names = {"attention": f"attention{i}", "norm0": f"layer_norm{2 * i}", "norm1": f"layer_norm{2 * i + 1}",
                     "dense0": f"dense{2 * i}", "dense1": f"dense{2 * i + 1}"}
            x = block_forward(p, x, heads, names, causal=True)
        return _layer_norm(x, p, f"layer_norm{2 * blocks}") @ p["readout.W"] + p["readout.b"]
    return forward


def next_char_cross_entropy(logits, y):
    """examples/char_lm.py's loss: softmax cross-entropy at every position, the mean."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
