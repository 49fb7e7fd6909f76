"""A small character-level language model on the docstrings of Python's standard library.

The text ships with Python: the docstrings (``inspect.getdoc``) of a fixed list of standard
library modules and of their public functions and classes, in sorted order, so the corpus is
the same on every run and nothing is downloaded. Characters outside printable ASCII and newline
become one ``UNKNOWN`` symbol. The text is cut into 2 KiB chunks; every tenth chunk is held out
for validation.

A training example is a window of ``length`` characters (int32 ids) and, as its label, the
same window shifted by one: the next character at every position. The model embeds the ids,
adds a learned position embedding, runs causal transformer blocks (position ``t`` sees
positions ``<= t`` only), a final layer norm and a dense readout to the vocabulary at every
position; the loss is the softmax cross-entropy of each next character, averaged over the
positions and the batch. The baseline is the unigram model: the character frequencies of the
training text, scored on the validation text.

    python examples/char_lm.py [--epochs 8] [--d 64] [--blocks 2]
"""

import argparse  # no `from __future__ import annotations`: build's parameter types name its arguments
import importlib
import inspect
import string
import sys
import time

import numpy as np

import paralens as pl

#: The modules whose docstrings make the corpus (all in ``sys.stdlib_module_names``).
MODULES = ("abc", "argparse", "ast", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
           "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools",
           "glob", "gzip", "hashlib", "heapq", "inspect", "io", "itertools", "json", "logging", "math", "os",
           "pathlib", "pickle", "pprint", "queue", "random", "re", "shlex", "shutil", "socket", "statistics",
           "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "typing",
           "unittest", "urllib.parse", "uuid", "warnings", "zipfile")
UNKNOWN = "~"  # rare in docstrings; every character outside the vocabulary becomes it
VOCAB = "\n" + "".join(c for c in string.printable if c.isprintable())  # newline and the 95 printable ASCII
CHUNK, HELD_OUT = 2048, 10  # every HELD_OUT-th chunk of CHUNK characters is validation text


def corpus(modules=MODULES) -> str:
    """The docstrings of ``modules`` and of their public functions and classes, sorted by name."""
    docs = []
    for name in sorted(modules):
        if name.split(".")[0] not in sys.stdlib_module_names:
            raise ValueError(f"{name} is not a standard library module; the corpus must ship with Python")
        module = importlib.import_module(name)
        docs.append(inspect.getdoc(module) or "")
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue
            if obj.__module__ == name and obj.__name__ == attr:  # defined here, under its own name
                docs.append(inspect.getdoc(obj) or "")
    return "\n\n".join(d for d in docs if d)


def encode(text: str) -> np.ndarray:
    """Character ids (int32) in ``VOCAB``; tabs become a space, anything else outside it ``UNKNOWN``."""
    index = {c: i for i, c in enumerate(VOCAB)}
    unknown = index[UNKNOWN]
    return np.array([index.get(" " if c == "\t" else c, unknown) for c in text], np.int32)


def decode(ids) -> str:
    return "".join(VOCAB[i] for i in ids)


def split(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)``: every ``HELD_OUT``-th chunk of ``CHUNK`` characters is validation."""
    chunks = [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]
    val = [c for k, c in enumerate(chunks) if k % HELD_OUT == HELD_OUT - 1]
    train = [c for k, c in enumerate(chunks) if k % HELD_OUT != HELD_OUT - 1]
    return np.concatenate(train), np.concatenate(val)


def windows(ids: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``ids[i:i+length]`` and targets ``ids[i+1:i+length+1]``, for ``i`` every ``stride``."""
    starts = np.arange(0, len(ids) - length, stride)
    at = starts[:, None] + np.arange(length)
    return ids[at], ids[at + 1]


def build(length: int = 64, d: int = 64, heads: int = 4, blocks: int = 2, vocab: int = len(VOCAB)) -> pl.Term:
    """The model: (length,) int32 ids -> (length, vocab) next-character logits."""
    embed = pl.nn.embedding(vocab, d, init=pl.init.normal(0.1))

    def tokens(ids, position: pl.Param[length, d] = pl.init.normal(0.02)):
        return embed(ids) + position

    def readout(h, W: pl.Param[d, vocab] = pl.init.glorot_uniform(),  # noqa: N803
                b: pl.Param[vocab] = pl.init.zeros()):
        return h @ W + b

    # logical axis names, which sharding rules map to mesh axes (the built-in layers name theirs)
    model = pl.with_axes(pl.para(tokens, dom=[pl.Array(length, dtype="int32")], name="tokens"),
                         {"tokens.position": (None, "embed")})
    for _ in range(blocks):
        model = model >> pl.nn.transformer_block(d, heads, mlp_ratio=4, causal=True)
    head = pl.with_axes(pl.para(readout, dom=[pl.Array[length, d]], name="readout"),
                        {"readout.W": ("embed", "vocab"), "readout.b": ("vocab",)})
    return model >> pl.nn.layer_norm(d) >> head


def next_char_loss(length: int, vocab: int = len(VOCAB)) -> pl.Term:
    """Softmax cross-entropy at every position: logits (length, vocab) in, the label (length,)
    int32 next-character ids per example; the mean over the positions and the batch, in nats.

    ``pl.losses.softmax_cross_entropy_with_integer_labels`` takes one class per example; here an
    example has ``length``. As in ``pl.losses``, the label is the loss's batched parameter wire.
    """
    b = pl.Builder()
    slot = b.new_layer("next_char")
    b.layer = ("next_char", slot)
    labels = pl.Wire(b, b.param("next_char", slot, "", pl.Array(length, dtype="int32")))
    logits = pl.Wire(b, b.input(pl.Array[length, vocab]))
    with pl.wires.tracing(b):
        classes = pl.broadcast_to(pl.cast(labels, "float32"), (length, vocab), (0,))
        onehot = pl.equal(classes, pl.constant(np.arange(vocab, dtype=np.float32), (vocab,)))
        per_example = (pl.sum(pl.logsumexp(logits, -1)) - pl.sum(onehot * logits)) * (1.0 / length)
        loss = pl.batch_mean(per_example)
    return b.build([logits.id], [loss.id], name=f"next_char_loss({length}, {vocab})")


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean ``-log softmax(logits)[target]`` in nats (logits (..., vocab), targets (...))."""
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, targets[..., None], -1).mean())


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab: int = len(VOCAB)) -> float:
    """Cross-entropy (nats per character) on ``val`` of the character frequencies of ``train``
    (add-one smoothed, so a character unseen in training costs a finite amount)."""
    p = (np.bincount(train, minlength=vocab) + 1.0) / (len(train) + vocab)
    return float(-np.log(p[val]).mean())


def sample(learner: pl.Learner, state: dict, prompts, length: int, n_chars: int = 80, temperature: float = 0.7,
           seed: int = 0) -> list[str]:
    """Continue each prompt by ``n_chars`` characters drawn from the model, each fed back in.

    The model reads a window of ``length`` characters; as attention is causal, the logits at a
    position depend only on the characters up to it, so while the text is shorter than the
    window the rest is padding the model never looks at."""
    rng = np.random.default_rng(seed)
    texts = [list(encode(p)) for p in prompts]
    for _ in range(n_chars):
        ends = [min(len(t), length) for t in texts]
        x = np.zeros((len(texts), length), np.int32)
        for i, (t, n) in enumerate(zip(texts, ends)):
            x[i, :n] = t[-n:]
        logits = np.asarray(learner.predict(state, x, backend="jax"), np.float64)
        last = logits[np.arange(len(texts)), np.array(ends) - 1] / temperature
        p = np.exp(last - last.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        for t, pi in zip(texts, p):
            t.append(int(rng.choice(len(VOCAB), p=pi)))
    return [decode(t) for t in texts]


PROMPTS = ("Return the ", "If the ", "This module ")


def main(seed: int = 0, progress: bool = True, epochs: int = 8, length: int = 64, stride: int = 48, d: int = 64,
         heads: int = 4, blocks: int = 2, batch_size: int = 32, learning_rate: float = 3e-3) -> dict:
    """Train with Adam; return ``validation_loss`` and ``unigram_loss`` (nats per character),
    ``samples`` (continuations of ``PROMPTS``), ``losses`` (one per step), ``seconds`` (training),
    ``learner`` and ``state``."""
    train, val = split(encode(corpus()))
    x, y = windows(train, length, stride)
    x_val, y_val = windows(val, length, length)
    learner = pl.Learner(build(length, d, heads, blocks), loss=next_char_loss(length),
                         optimizer=pl.optim.adam(learning_rate))
    start = time.perf_counter()
    state, losses = learner.fit(x, y, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    val_loss = cross_entropy(np.asarray(learner.predict(state, x_val, backend="jax"), np.float64), y_val)
    result = {"validation_loss": val_loss, "unigram_loss": unigram_loss(train, val),
              "samples": sample(learner, state, PROMPTS, length, seed=seed), "losses": np.asarray(losses),
              "seconds": seconds, "learner": learner, "state": state}
    if progress:
        for s in result["samples"]:
            print(repr(s))
        print(f"{len(x)} windows of {length} characters, {len(losses)} steps in {seconds:.0f} s: validation loss "
              f"{val_loss:.3f} nats/char against the unigram's {result['unigram_loss']:.3f} "
              f"(ratio {val_loss / result['unigram_loss']:.2f})")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.seed, epochs=a.epochs, d=a.d, heads=a.heads, blocks=a.blocks, learning_rate=a.learning_rate)
