"""NTREX-128 cross-lingual table: reading, ranks, Recall@10 / MRR, both model kinds."""

from __future__ import annotations

import numpy as np
import pytest

from lfm_core import maxsim
from lfm_retrieval.corpus import CorpusError
from lfm_retrieval.crosslingual import (
    LANGUAGES,
    NTREX_FILES,
    evaluate_crosslingual,
    read_ntrex,
)


class _LineEncoder:
    """Dense stand-in: text "s<i> ..." -> the unit vector of line ``order[i]``."""

    model_name = "line-encoder"

    def __init__(self, n: int, query_order: list[int] | None = None) -> None:
        self.n = n
        self.query_order = query_order or list(range(n))

    def _vectors(self, texts, order):
        out = np.zeros((len(texts), self.n), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, order[int(text.split()[0][1:])]] = 1.0
        return out

    def encode_queries(self, texts, *, show_progress=None):
        return self._vectors(texts, self.query_order)

    def encode_documents(self, texts, *, show_progress=None):
        return self._vectors(texts, list(range(self.n)))

    def score(self, query_vectors, document_vectors):  # the dense contract: a dot product
        return document_vectors @ query_vectors


class _ConstantEncoder:
    model_name = "constant"

    def encode_queries(self, texts, *, show_progress=None):
        return np.ones((len(texts), 4), dtype=np.float32) / 2

    encode_documents = encode_queries

    def score(self, query_vectors, document_vectors):
        return document_vectors @ query_vectors


def _sentences(n: int, languages=("en", "de", "ja")) -> dict[str, list[str]]:
    return {code: [f"s{i} in {code}" for i in range(n)] for code in languages}


def test_a_perfect_encoder_scores_one_everywhere():
    result = evaluate_crosslingual(_LineEncoder(12), _sentences(12))
    assert result.languages == ("en", "de", "ja")
    assert result.n_queries == 12
    np.testing.assert_array_equal(result.recall_at_10, np.ones((3, 3)))
    np.testing.assert_array_equal(result.mrr, np.ones((3, 3)))


def test_mrr_and_recall_follow_the_rank_of_the_aligned_line():
    # Query i points at document (i + 1) % 12: the right document scores 0, one document
    # scores 1 and ten tie at 0. Ties rank pessimistically, so the rank is 12 for all.
    order = [(i + 1) % 12 for i in range(12)]
    result = evaluate_crosslingual(_LineEncoder(12, order), _sentences(12, ("en",)))
    assert result.recall_at_10[0, 0] == 0.0
    assert result.mrr[0, 0] == pytest.approx(1 / 12)


def test_ties_count_against_the_query():
    result = evaluate_crosslingual(_ConstantEncoder(), _sentences(20, ("en", "de")))
    np.testing.assert_array_equal(result.recall_at_10, np.zeros((2, 2)))
    np.testing.assert_allclose(result.mrr, np.full((2, 2), 1 / 20))


def test_a_repeated_sentence_is_not_counted_against_its_twin():
    # Lines 0 and 1 are the same sentence in German: either is a right answer.
    sentences = {"en": ["s0 a", "s1 b", "s2 c"], "de": ["s0 x", "s0 x", "s2 z"]}
    result = evaluate_crosslingual(_LineEncoder(3), sentences)
    # de->de: document 0 ties with document 1 for query 1 but is the same sentence.
    # en->de: query 1 scores 0 everywhere; only document 2 counts against it (rank 2).
    assert result.mrr[1, 1] == 1.0
    assert result.recall_at_10[0, 1] == 1.0


def test_late_interaction_encoders_rank_with_their_own_maxsim():
    class MultiVector:
        model_name = "multi"

        def encode_queries(self, texts, *, show_progress=None):
            return [np.eye(3, dtype=np.float32)[[int(t[1])]] for t in texts]

        def encode_documents(self, texts, *, show_progress=None):
            return [np.eye(3, dtype=np.float32)[[int(t[1]), 2]] for t in texts]

        def score(self, query_vectors, document_vectors):
            self.calls = getattr(self, "calls", 0) + 1
            return maxsim(query_vectors, document_vectors)

    encoder = MultiVector()
    result = evaluate_crosslingual(encoder, {"en": ["s0", "s1"], "fr": ["s0", "s1"]})
    assert encoder.calls == 2 * 2 * 2  # one call per query, per language pair
    np.testing.assert_array_equal(result.mrr, np.ones((2, 2)))


def test_table_has_a_row_and_a_column_per_language():
    result = evaluate_crosslingual(_LineEncoder(3), _sentences(3, LANGUAGES))
    table = result.format_table()
    assert table.count("| query \\ doc | " + " | ".join(LANGUAGES) + " |") == 2
    for code in LANGUAGES:
        assert table.count(f"\n| {code} | ") == 2
    assert "mean off-diagonal 1.0000" in table


def test_unequal_lists_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_crosslingual(_LineEncoder(3), {"en": ["s0", "s1"], "de": ["s0"]})


def test_read_ntrex_strips_crlf_and_keeps_alignment(tmp_path):
    for code, name in NTREX_FILES.items():
        (tmp_path / name).write_bytes(f"one {code}\r\ntwo {code}\u2028still two\r\n".encode())
    sentences = read_ntrex(tmp_path, ("en", "ja"))
    assert sentences == {
        "en": ["one en", "two en\u2028still two"],
        "ja": ["one ja", "two ja\u2028still two"],
    }
    assert read_ntrex(tmp_path, ("en",), limit=1) == {"en": ["one en"]}


def test_read_ntrex_errors(tmp_path):
    with pytest.raises(CorpusError, match="unknown NTREX language.*'xx'.*supported: en, ar"):
        read_ntrex(tmp_path, ("en", "xx"))
    with pytest.raises(CorpusError, match="NTREX-128 file not found"):
        read_ntrex(tmp_path, ("en",))
    (tmp_path / NTREX_FILES["en"]).write_text("a\r\nb\r\n")
    (tmp_path / NTREX_FILES["de"]).write_text("a\r\n")
    with pytest.raises(CorpusError, match="not line-aligned"):
        read_ntrex(tmp_path, ("en", "de"))


def test_real_ntrex_is_line_aligned(shared_data):
    sentences = read_ntrex(shared_data / "ntrex128")
    assert set(sentences) == set(LANGUAGES)
    assert {len(lines) for lines in sentences.values()} == {1997}
    assert not any("\r" in line for lines in sentences.values() for line in lines)


def test_minilm_finds_english_sentences_among_english_sentences(shared_data, minilm):
    # MiniLM is symmetric (no prompts): a sentence is its own nearest neighbour.
    sentences = read_ntrex(shared_data / "ntrex128", ("en", "ja"), limit=20)
    result = evaluate_crosslingual(minilm, sentences)
    assert result.mrr[0, 0] == 1.0
    # An English-only model barely links English and Japanese.
    assert result.mrr[0, 1] < 0.5
