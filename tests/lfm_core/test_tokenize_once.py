"""``TextTokenizer.encode`` tokenizes each text once and cuts long ones like the tokenizer does."""

from __future__ import annotations

import random

import pytest

WORDS = ["order", "ship", "refund", "día", "配送", "naïve", "x", "don't", "COVID-19", "🚚"]


def texts(seed: int, n: int = 40, most: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, most))) for _ in range(n)]


@pytest.fixture(params=["tiny_dense", "tiny_colbert", "minilm"])
def tokenizer(request):
    return request.getfixturevalue(request.param).tokenizer


@pytest.mark.parametrize("max_length", [4, 8, 31, 32, 33, 100])
def test_one_pass_equals_tokenizing_the_long_texts_again(tokenizer, max_length):
    batch = texts(max_length)
    once = tokenizer.encode(batch, max_length)
    twice = tokenizer._encode_twice(batch, max_length)
    assert once.ids == twice.ids
    assert once.truncated_rows == twice.truncated_rows and once.n_truncated > 0
    assert all(len(ids) <= max_length for ids in once.ids)


def test_a_long_text_is_tokenized_once(tokenizer, monkeypatch):
    tokenizer._tail_specials()  # read once per tokenizer
    calls = []
    inner = tokenizer._tok

    class Counting:
        def __getattr__(self, name):
            return getattr(inner, name)

        def __call__(self, batch, **kwargs):
            calls.append(len(batch))
            return inner(batch, **kwargs)

    monkeypatch.setattr(tokenizer, "_tok", Counting())
    result = tokenizer.encode(["word " * 5000, "short"], 16)
    assert calls == [2]
    assert result.truncated_rows == (0,)
