"""The lexical leg: Qdrant's BM25 as the ``bm25`` sparse vector, and ``hybrid`` over every leg.

Runs on Qdrant Edge, qdrant-client's local mode and, when ``QDRANT_URL`` is set, a server.
The tiny test models have random weights: in these tests only the lexical leg knows
anything, which is exactly what the product-code guarantee must survive.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from lfm_core import CollectionError, InputError
from lfm_qdrant import (
    LEXICAL,
    EdgeStore,
    ExplainedPoint,
    LexicalConfig,
    MultiVectorWriter,
)
from lfm_qdrant.search import RRF_K, dense_weight

BACKENDS = ["edge", "memory"] + (["url"] if os.environ.get("QDRANT_URL") else [])

# Product entries with codes (letters, digits, dashes) in several of our languages. No two
# codes share a token, so each code has exactly one exact match.
CATALOG = [
    ("XR-4471-B", "Cordless drill {code}, 18 V, two batteries and a case"),
    ("E0x8024", "Update error {code}: the installer could not reach the server"),
    ("KQ-1187-T", "Akku-Bohrschrauber {code}, 18 V, zwei Akkus im Koffer"),
    ("ZT-9902-M", "Taladro inalámbrico {code}, 18 V, dos baterías"),
    ("PW-3310-C", "Perceuse sans fil {code}, 18 V, deux batteries"),
    ("HJ-5528-N", "Trapano avvitatore {code}, 18 V, due batterie"),
    ("LM-6604-R", "コードレスドリル {code} 18V バッテリー2個付き"),
    ("VB-7735-S", "무선 드릴 {code}, 18V, 배터리 2개"),
    ("GF-2249-D", "Skruvdragare {code}, 18 V, två batterier"),
    ("NC-8816-K", "Furadeira sem fio {code}, 18 V, duas baterias"),
    ("QY-4093-W", "Batteridrill {code}, 18 V, to batterier"),
    ("E0x5161", "Error de actualización {code}: el instalador no pudo conectar"),
]
TEXTS = [template.format(code=code) for code, template in CATALOG]
# Entries without codes that compete for the embedding legs.
FILLER = [
    "Cordless drill, 18 V, two batteries and a case",
    "Akku-Bohrschrauber, 18 V, zwei Akkus",
    "The installer could not reach the server",
    "Where is my order? Tracking links are sent by email",
    "Refunds reach your card within a week",
    "Passwords are reset from the login page",
] * 3
FILLER = [f"{text} (note {i})" for i, text in enumerate(FILLER)]


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "edge":
        store = EdgeStore(tmp_path / "edge")
        yield store
        store.close()
        return
    if request.param == "memory":
        qdrant = QdrantClient(":memory:")
    else:
        qdrant = QdrantClient(
            url=os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY")
        )
    yield qdrant
    qdrant.close()


@pytest.fixture
def name() -> str:
    return f"lfm_lexical_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def catalog(client: Any, name: str, tiny_dense: Any, tiny_colbert: Any):
    writer = MultiVectorWriter(client, name, dense=tiny_dense, colbert=tiny_colbert)
    ids = writer.add(TEXTS + FILLER, ids=[f"doc-{i}" for i in range(len(TEXTS) + len(FILLER))])
    yield writer, ids
    if isinstance(client, QdrantClient) and client.collection_exists(name):
        client.delete_collection(name)


def test_a_new_collection_has_bm25_with_idf_and_records_its_settings(catalog):
    writer, _ = catalog
    info = writer.client.get_collection(writer.collection_name)
    assert info.config.params.sparse_vectors[LEXICAL].modifier == models.Modifier.IDF
    record = info.config.metadata["lfm_retrieval"]["lexical"]
    assert LexicalConfig.from_json(record, "here") == LexicalConfig()


def test_lexical_false_leaves_the_sparse_vector_out(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense, lexical=False)
    writer.add(TEXTS[:3])
    info = client.get_collection(name)
    assert not info.config.params.sparse_vectors
    assert info.config.metadata["lfm_retrieval"]["lexical"] is None
    with pytest.raises(InputError, match="'bm25' sparse vector"):
        writer.search("XR-4471-B", mode="lexical")


def test_querying_a_code_returns_its_entry_first_in_hybrid_mode(catalog):
    """Random-weight models: only the lexical leg knows, and hybrid must not lose it."""
    writer, ids = catalog
    for i, (code, _) in enumerate(CATALOG):
        for mode in ("hybrid", "lexical"):
            hits = writer.search(code, limit=5, mode=mode)
            assert hits[0].id == ids[i], (code, mode, [h.payload["text"] for h in hits])


def test_hybrid_without_colbert_keeps_codes_first_too(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    ids = writer.add(TEXTS + FILLER)
    for i, (code, _) in enumerate(CATALOG):
        assert writer.search(code, limit=3)[0].id == ids[i]


def test_the_fused_score_is_the_weighted_rrf_of_the_legs_ranks(catalog):
    """Each hybrid hit's score is Qdrant's weighted RRF, sum(1 / (k - 1 + rank / weight))
    over the legs that found it, with the ranks ``explain`` reports: the final stage is
    what the docs say it is."""
    writer, _ = catalog
    for query in ("cordless drill 18 V", "E0x8024 installer", "Akkus im Koffer"):
        hits = writer.search(query, limit=8, prefetch_limit=20, explain=True)
        assert hits and all(isinstance(h, ExplainedPoint) for h in hits)
        weight = {"colbert": 1.0, "dense": dense_weight(20), "lexical": 1.0}
        for hit in hits:
            expected = sum(1 / (RRF_K - 1 + r.rank / weight[leg]) for leg, r in hit.legs.items())
            assert hit.score == pytest.approx(expected, rel=1e-5), hit.legs
        assert hits == sorted(hits, key=lambda h: -h.score)


def test_explain_needs_no_second_encoding(catalog, monkeypatch):
    writer, _ = catalog
    calls = []
    original = writer.dense.encode_queries

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(writer.dense, "encode_queries", counted)
    writer.search("cordless drill", explain=True)
    assert len(calls) == 1


@pytest.mark.parametrize("mode", ["dense", "lexical", "colbert", "hybrid"])
def test_every_mode_and_explain_in_search_batch(catalog, mode):
    writer, _ = catalog
    queries = ["XR-4471-B", "zwei Akkus", "???"]
    batch = writer.search_batch(queries, limit=4, mode=mode, explain=True)
    assert len(batch) == 3
    for query, hits in zip(queries, batch, strict=True):
        single = writer.search(query, limit=4, mode=mode, explain=True)
        assert [h.id for h in hits] == [h.id for h in single]
        if mode == "lexical" and query == "???":
            assert hits == []  # nothing to match: a defined, empty result
        for hit in hits:
            legs = {"hybrid": {"dense", "lexical", "colbert"}}.get(mode, {mode})
            assert set(hit.legs) <= legs


def test_dbsf_fusion_and_bad_fusion(catalog):
    writer, _ = catalog
    assert writer.search("XR-4471-B", limit=3, fusion="dbsf")
    with pytest.raises(InputError, match="fusion must be one of rrf, dbsf"):
        writer.search("x", fusion="max")
    with pytest.raises(TypeError, match="explain must be a bool"):
        writer.search("x", explain="yes")


@pytest.mark.parametrize(
    "query",
    [
        "the of and",  # English stopwords only: the lexical leg has no token
        "!!! ??? ...",
        "x" * 100_000,
        "XR-4471-B 注文 주문 طلب Bestellung",  # mixed scripts
    ],
    ids=["stopwords", "punctuation", "100k-chars", "mixed-scripts"],
)
def test_odd_queries_have_a_defined_result(catalog, query):
    writer, _ = catalog
    for mode in ("hybrid", "dense", "colbert"):
        assert len(writer.search(query, limit=3, mode=mode)) == 3
    lexical = writer.search(query, limit=3, mode="lexical")
    assert isinstance(lexical, list) and len(lexical) <= 3


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_blank_queries_are_refused(catalog, query):
    writer, _ = catalog
    with pytest.raises(InputError, match="query is blank"):
        writer.search(query)
    with pytest.raises(InputError, match=r"queries\[1\] is blank"):
        writer.search_batch(["fine", query])


def test_a_collection_written_before_the_lexical_leg_keeps_working(
    client, name, tiny_dense, tiny_colbert
):
    old = MultiVectorWriter(client, name, dense=tiny_dense, colbert=tiny_colbert, lexical=False)
    old.add(TEXTS)
    before = [h.id for h in old.search("cordless drill", limit=5)]
    # A new writer (lexical on by default) adds to it without a bm25 vector, and its hybrid
    # is the two-stage search the collection always had.
    new = MultiVectorWriter(client, name, dense=tiny_dense, colbert=tiny_colbert)
    new.add(FILLER[:2])
    assert not client.get_collection(name).config.params.sparse_vectors
    old.add(FILLER[:2])
    assert before  # the two-stage search answered before, and answers alike now:
    assert [h.id for h in new.search("cordless drill", limit=5)] == [
        h.id for h in old.search("cordless drill", limit=5)
    ]
    with pytest.raises(InputError, match="'bm25' sparse vector"):
        new.search("cordless", mode="lexical")


def test_queries_are_tokenized_with_the_collections_settings(client, name, tiny_dense):
    german = LexicalConfig(language="german")
    MultiVectorWriter(client, name, dense=tiny_dense, lexical=german).add(
        ["Die Bestellungen verlassen das Lager"]
    )
    # A writer with other settings (the default English) still searches with German ones.
    reader = MultiVectorWriter(client, name, dense=tiny_dense)
    assert reader.search("bestellung", mode="lexical")  # German stemming: Bestellungen
    stored = client.get_collection(name).config.metadata["lfm_retrieval"]["lexical"]
    assert stored["language"] == "german"


def test_a_lexical_only_writer_needs_no_model(client, name, tiny_dense):
    MultiVectorWriter(client, name, dense=tiny_dense).add(TEXTS)
    bm25_only = MultiVectorWriter(client, name)
    hits = bm25_only.search("E0x8024", limit=2)
    assert hits[0].id == point_id_of(TEXTS[1])
    with pytest.raises(TypeError, match="the lexical leg"):
        MultiVectorWriter(client, name, lexical=False)


def test_bad_lexical_settings_are_refused():
    with pytest.raises(InputError, match="lexical language 'klingon' has no stemmer"):
        LexicalConfig(language="klingon")
    with pytest.raises(InputError, match="tokenizer must be one of"):
        LexicalConfig(tokenizer="bpe")
    with pytest.raises(InputError, match="0 <= b <= 1"):
        LexicalConfig(b=2.0)


def test_a_malformed_lexical_record_is_a_collection_error():
    with pytest.raises(CollectionError, match="'lexical' settings are not valid"):
        LexicalConfig.from_json({"k": 1.2, "shoe_size": 44}, "collection 'c'")


def test_bm25_vectors_are_qdrants_own(catalog):
    """The stored sparse vector is Qdrant's BM25 of the text, the same on every backend."""
    writer, ids = catalog
    (record,) = writer.client.retrieve(
        writer.collection_name, [ids[0]], with_payload=True, with_vectors=True
    )
    expected = LexicalConfig().embed_documents([TEXTS[0]])[0]
    stored = record.vector[LEXICAL]
    order = np.argsort(stored.indices)
    assert np.array(stored.indices)[order].tolist() == sorted(expected.indices)
    np.testing.assert_allclose(
        np.array(stored.values)[order],
        np.array(expected.values)[np.argsort(expected.indices)],
        rtol=1e-6,
    )


def point_id_of(text: str) -> str:
    from lfm_qdrant import text_point_id

    return text_point_id(text)
