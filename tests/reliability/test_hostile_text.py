"""Hostile text: what scraped pages, support tickets and catalog dumps contain.

For both encoders (the LFM2 path with the tiny checkpoints, the transformers ``AutoModel``
path with the real MiniLM) and both sides (queries, documents), texts drawn from random
Unicode and from the pieces real data is made of (right-to-left scripts, combining marks,
zero-width and control characters, NUL, emoji, special-token strings, 100,000-character
texts, whitespace-only and empty strings) must give:

- a finite result of the documented shape (dense ``[n, dim]``; ColBERT queries
  ``[query_length, dim]``; ColBERT documents ``[1..document_length, dim]``), rows L2-normalized;
- outputs in input order, and a text's vectors the same alone or in any batch.

Lone UTF-16 surrogates (``"\\ud800"``: ``json.loads`` and ``errors="surrogateescape"``
produce them) cannot be encoded to UTF-8. The decision, tested here: they are repaired as a
UTF-16 decoder would (a valid pair joins into its character, an unpaired half becomes
U+FFFD) with one warning, so one bad character never aborts an indexing run and what is
stored is what was embedded.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

import lfm_core.encoders
from lfm_core import DenseEncoder, LateInteractionEncoder, validate_texts
from lfm_qdrant import MultiVectorWriter, text_point_id

# ---------------------------------------------------------------- the hostile pieces

PIECES: dict[str, list[str]] = {
    "rtl": ["שלום עולם", "مرحبا بالعالم", "\u202eevil\u202c", "\u200fRLM\u200e", "ܫܠܡܐ", "ދިވެހި"],
    "combining": ["e\u0301", "Z" + "\u0300\u0301\u0302\u0303\u0336" * 12, "\u0301", "\u20dd"],
    "zero-width": ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad", "\u180e"],
    "control": ["\x00", "\x07", "\x1b[31m", "\r\n", "\x7f", "\x85", "\u2028", "\u2029", "\x0c"],
    "emoji": ["🔍", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "🇫🇷", "👍🏽", "\U0001fae8"],
    "whitespace": ["", " ", "\t", "\u3000", "\u00a0", "   \n\t ", "\n" * 30],
    "special-tokens": [
        "<|startoftext|>",
        "<|pad|>",
        "<|im_end|>",
        "[Q] ",
        "[D] ",
        "[CLS]",
        "[SEP]",
    ],
    "other": ["日本語の検索", "\uffff", "\U0010ffff", "\ue000", "𝕳𝖊𝖑𝖑𝖔", "ǅ", "ﷺ", "...!!!???"],
}
ALL_PIECES = [piece for pieces in PIECES.values() for piece in pieces]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\udc80\udcff"]

# Random code points from every category except surrogates (they get their own tests).
_random_chars = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
hostile_text = st.lists(st.one_of(st.sampled_from(ALL_PIECES), _random_chars), max_size=6).map(
    "".join
)
with_surrogates = st.lists(
    st.one_of(
        st.sampled_from(ALL_PIECES),
        st.sampled_from(SURROGATES),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
        _random_chars,
    ),
    min_size=1,
    max_size=6,
).map("".join)

# Examples per (encoder, side): modest, so the module runs in seconds on 2 shared cores.
PROPERTY = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ENCODERS = ["tiny_dense", "tiny_colbert", "minilm"]
SIDES = ["encode_queries", "encode_documents"]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request: pytest.FixtureRequest) -> DenseEncoder | LateInteractionEncoder:
    """Each encoder in turn (module scope: hypothesis re-runs the test body, not fixtures)."""
    return request.getfixturevalue(request.param)


# ----------------------------------------------------------------------- checks


def rows(out: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """One array per text, whichever encoder made ``out``."""
    return list(out)


def check_documented_shape(
    encoder: DenseEncoder | LateInteractionEncoder, side: str, out: Any, n: int
) -> None:
    """The shape, dtype, finiteness and norm each method documents."""
    if isinstance(encoder, DenseEncoder):
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        assert out.shape == (n, encoder.dim)
    else:
        assert isinstance(out, list) and len(out) == n
        for v in out:
            assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == encoder.dim
            if side == "encode_queries":
                assert v.shape[0] == encoder.query_length
            else:
                # BOS and [D] are never skiplisted: even "" keeps two vectors.
                assert 1 <= v.shape[0] <= encoder.document_length
    for v in rows(out):
        assert np.isfinite(v).all()
        np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-4)


def assert_same_vectors(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5, err_msg=what)


def check_batch_equals_alone(
    encode: Callable[[list[str]], Any], texts: Sequence[str], batch_out: Any
) -> None:
    """Each text's output in the batch is what it gets alone: order kept, no cross-talk."""
    for i, text in enumerate(texts):
        alone = rows(encode([text]))[0]
        assert_same_vectors(rows(batch_out)[i], alone, f"texts[{i}]={text!r}")


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("side", SIDES)
@given(texts=st.lists(hostile_text, min_size=1, max_size=3))
@PROPERTY
def test_hostile_batch_is_finite_documented_and_equals_each_text_alone(
    encoder: DenseEncoder | LateInteractionEncoder, side: str, texts: list[str]
) -> None:
    encode = getattr(encoder, side)
    out = encode(texts)
    check_documented_shape(encoder, side, out, len(texts))
    check_batch_equals_alone(encode, texts, out)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("fixture", ["tiny_dense", "tiny_colbert"])
def test_many_hostile_texts_across_batches_and_chunks_keep_order(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    fixture: str,
    side: str,
) -> None:
    """40 texts of very different lengths: sorted into many batches and prefetched chunks."""
    base = request.getfixturevalue(fixture)
    folder = Path(base.model_name)
    cls = type(base)
    small = cls.from_pretrained(folder, device="cpu", max_batch_size=3, max_tokens_per_batch=96)
    # Chunks of 7 texts: the prefetch thread tokenizes chunk i+1 while chunk i runs.
    monkeypatch.setattr(lfm_core.encoders, "_CHUNK_TEXTS", 7)
    rng = random.Random(8)
    texts = ["".join(rng.choices(ALL_PIECES, k=rng.randint(0, 25))) for _ in range(40)]
    encode = getattr(small, side)
    out = encode(texts)
    check_documented_shape(small, side, out, len(texts))
    reference = getattr(base, side)
    for i, text in enumerate(texts):
        assert_same_vectors(rows(out)[i], rows(reference([text]))[0], f"texts[{i}]")


# ------------------------------------------------------------- explicit edge cases


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000", "\u200b\u200b", "\x00"])
def test_empty_and_invisible_texts_give_documented_vectors(
    encoder: DenseEncoder | LateInteractionEncoder, side: str, text: str
) -> None:
    out = getattr(encoder, side)([text, "a visible text", text])
    check_documented_shape(encoder, side, out, 3)
    assert_same_vectors(rows(out)[0], rows(out)[2], "the same text twice in a batch")


LONG_TEXTS = {
    "ascii": "lorem ipsum dolor sit amet " * 3704,
    "zero-width": "\u200b" * 100_000,
    "combining-nul": ("e\u0301\u0302\x00" * 25_000),
    "mixed-pieces": "".join(random.Random(100).choices(ALL_PIECES, k=30_000))[:100_000],
}


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("fixture", ["tiny_dense", "tiny_colbert"])
@pytest.mark.parametrize("kind", list(LONG_TEXTS))
def test_100k_character_texts_are_truncated_with_a_warning(
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
    fixture: str,
    side: str,
    kind: str,
) -> None:
    encoder = request.getfixturevalue(fixture)
    long = LONG_TEXTS[kind]
    assert len(long) >= 99_999
    encode = getattr(encoder, side)
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        out = encode([long, "short"])
    check_documented_shape(encoder, side, out, 2)
    assert any("truncated" in r.getMessage() for r in caplog.records)
    assert_same_vectors(rows(out)[0], rows(encode([long]))[0], f"{kind} alone vs in a batch")


# ------------------------------------------------------------------ lone surrogates


def reference_repair(text: str) -> str:
    """Independent reference: pair surrogates by hand, replace the unpaired with U+FFFD."""
    out, i = [], 0
    while i < len(text):
        c = ord(text[i])
        nxt = ord(text[i + 1]) if i + 1 < len(text) else 0
        if 0xD800 <= c <= 0xDBFF and 0xDC00 <= nxt <= 0xDFFF:
            out.append(chr(0x10000 + ((c - 0xD800) << 10) + (nxt - 0xDC00)))
            i += 2
            continue
        out.append("\ufffd" if 0xD800 <= c <= 0xDFFF else text[i])
        i += 1
    return "".join(out)


def test_reference_repair_is_right() -> None:
    assert reference_repair("a\ud800b\ud83d\udd0d\udfff") == "a\ufffdb🔍\ufffd"


@pytest.mark.parametrize("side", SIDES)
def test_lone_surrogates_become_replacement_characters_with_one_warning(
    encoder: DenseEncoder | LateInteractionEncoder,
    side: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    texts = ["ok", "a\ud800b", "\udfff", "x\udc80\udcffy", "pair \ud83d\udd0d kept"]
    encode = getattr(encoder, side)
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        got = encode(texts)
    expected = encode(["ok", "a\ufffdb", "\ufffd", "x\ufffd\ufffdy", "pair 🔍 kept"])
    for i in range(len(texts)):
        assert_same_vectors(rows(got)[i], rows(expected)[i], f"texts[{i}]")
    warnings = [r.getMessage() for r in caplog.records if "surrogate" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("4 of 5"), warnings


@given(texts=st.lists(with_surrogates, min_size=1, max_size=4))
@PROPERTY
def test_validate_texts_repairs_surrogates_like_a_utf16_decoder(texts: list[str]) -> None:
    repaired = validate_texts(texts)
    assert repaired == [reference_repair(t) for t in texts]
    for text in repaired:
        text.encode("utf-8")  # what the tokenizer, uuid5 and Qdrant's JSON need


@pytest.mark.parametrize("side", SIDES)
@given(texts=st.lists(with_surrogates, min_size=1, max_size=3))
@settings(PROPERTY, max_examples=15)
def test_text_with_surrogates_encodes_as_its_repair(
    tiny_colbert: LateInteractionEncoder, tiny_dense: DenseEncoder, side: str, texts: list[str]
) -> None:
    for encoder in (tiny_dense, tiny_colbert):
        encode = getattr(encoder, side)
        got = encode(texts)
        check_documented_shape(encoder, side, got, len(texts))
        expected = encode([reference_repair(t) for t in texts])
        for i in range(len(texts)):
            assert_same_vectors(rows(got)[i], rows(expected)[i], f"texts[{i}]={texts[i]!r}")


# -------------------------------------------------------------- nothing lost in Qdrant


@given(texts=st.lists(hostile_text, min_size=1, max_size=6, unique=True))
@settings(PROPERTY, max_examples=15)
def test_hostile_texts_round_trip_through_the_qdrant_writer(
    tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder, texts: list[str]
) -> None:
    """Stored payloads are the texts exactly, under ``text_point_id(text)``, with their vectors."""
    client = QdrantClient(":memory:")
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert)
    ids = writer.add(texts, show_progress=False)
    assert ids == [text_point_id(t) for t in texts]
    points = client.retrieve("c", ids, with_payload=True, with_vectors=True)
    by_id = {str(p.id): p for p in points}
    assert len(by_id) == len(texts) == client.count("c").count
    dense = tiny_dense.encode_documents(texts)
    colbert = tiny_colbert.encode_documents(texts)
    for i, text in enumerate(texts):
        point = by_id[ids[i]]
        assert {k: v for k, v in point.payload.items() if k != "_lfm"} == {"text": text}
        np.testing.assert_allclose(point.vector["dense"], dense[i], atol=1e-5)
        np.testing.assert_allclose(point.vector["colbert"], colbert[i], atol=1e-5)
    client.close()


def test_surrogate_text_is_stored_as_it_was_embedded(tiny_dense: DenseEncoder) -> None:
    client = QdrantClient(":memory:")
    writer = MultiVectorWriter(client, "c", dense=tiny_dense)
    ids = writer.add(["fine", "broken \ud800 byte"], show_progress=False)
    assert ids[1] == text_point_id("broken \ufffd byte")
    (point,) = client.retrieve("c", ids[1:], with_vectors=True)
    assert {k: v for k, v in point.payload.items() if k != "_lfm"} == {"text": "broken \ufffd byte"}
    expected = tiny_dense.encode_documents(["broken \ufffd byte"])[0]
    np.testing.assert_allclose(point.vector["dense"], expected, atol=1e-5)
    client.close()
