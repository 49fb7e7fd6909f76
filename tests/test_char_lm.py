"""examples/char_lm.py: the corpus is the standard library's own docstrings (the same text on every
call, no network); the per-position loss is the mean next-character cross-entropy; trained with its
defaults, the model beats the unigram baseline by 20% and samples text of its vocabulary."""

import importlib
import inspect
import socket
import sys
import sysconfig
from pathlib import Path

import jax
import numpy as np
import pytest

import paralens as pl
from examples_loader import load
from paralens.backends import jax as pjax

char_lm = load("char_lm")


def test_the_corpus_is_deterministic_and_ships_with_python(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the corpus must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    text = char_lm.corpus()
    assert text == char_lm.corpus() and len(text) > 100_000
    assert inspect.getdoc(importlib.import_module("json")) in text  # the module docstrings themselves
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for name in char_lm.MODULES:
        assert name.split(".")[0] in sys.stdlib_module_names
        file = getattr(importlib.import_module(name), "__file__", None)  # None: built into the interpreter
        assert file is None or stdlib in Path(file).resolve().parents, (name, file)
    with pytest.raises(ValueError, match="not a standard library module"):
        char_lm.corpus(("json", "numpy"))


def test_encoding_split_and_windows():
    ids = char_lm.encode("a\tb\u00e9\n~")
    assert ids.dtype == np.int32 and char_lm.decode(ids) == "a b~\n~"
    train, val = char_lm.split(np.arange(25 * char_lm.CHUNK) % len(char_lm.VOCAB))
    assert len(val) == 2 * char_lm.CHUNK and len(train) == 23 * char_lm.CHUNK
    x, y = char_lm.windows(np.arange(20, dtype=np.int32), 4, 3)
    assert x.shape == y.shape == (6, 4) and (y == x + 1).all() and x[1].tolist() == [3, 4, 5, 6]


def test_the_loss_is_the_mean_next_character_cross_entropy():
    length, vocab = 5, 7
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, length, vocab)).astype(np.float32)
    labels = rng.integers(0, vocab, (3, length)).astype(np.int32)
    loss = char_lm.next_char_loss(length, vocab)
    got = jax.jit(pjax.compile(loss))(labels, logits)
    np.testing.assert_allclose(got, char_lm.cross_entropy(logits.astype(np.float64), labels), rtol=1e-5)
    ref = jax.grad(lambda z: -jax.nn.log_softmax(z)[np.arange(3)[:, None], np.arange(length), labels].mean())(logits)
    _, grad = jax.jit(pjax.compile(pl.R(loss)))(labels, logits, np.float32(1.0))
    np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_the_default_model_beats_the_unigram_baseline_by_a_fifth():
    r = char_lm.main(progress=False)
    assert r["validation_loss"] <= 0.8 * r["unigram_loss"], (r["validation_loss"], r["unigram_loss"])
    assert len(r["samples"]) == len(char_lm.PROMPTS)
    for prompt, s in zip(char_lm.PROMPTS, r["samples"]):
        assert isinstance(s, str) and len(s) > len(prompt) and s.startswith(prompt)
        assert set(s) <= set(char_lm.VOCAB)
