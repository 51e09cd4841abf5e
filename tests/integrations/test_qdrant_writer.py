"""lfm_qdrant.MultiVectorWriter: layout, idempotent batched writes, two-stage search.

Backends: ``":memory:"``, ``path=`` (embedded, on disk) and a server when ``QDRANT_URL``
is set. Encoders: the tiny random-weight checkpoints from conftest (their rankings mean
nothing, so scores are checked against the encoders' own math), and the real MiniLM for
one retrieval-quality check.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from lfm_core import CollectionError, DenseEncoder, InputError, LateInteractionEncoder
from lfm_qdrant import (
    CHUNK_KEY,
    COLBERT,
    DENSE,
    MAX_MULTIVECTOR_FLOATS,
    TEXT_NAMESPACE,
    EdgeStore,
    MultiVectorWriter,
    point_id,
    text_point_id,
)

DOCS = [
    "The cat sat on the warm mat by the door.",
    "Dogs bark at the mail carrier every morning.",
    "Photosynthesis turns light, water and CO2 into sugar.",
    "The stock market fell three percent on Monday.",
    "A recipe for bread needs flour, water, salt and yeast.",
    "Mitochondria are the powerhouse of the cell.",
    "The Eiffel Tower was finished in 1889 in Paris.",
    "Rust's borrow checker prevents data races at compile time.",
    "Penguins live in the southern hemisphere, mostly Antarctica.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "Quantum computers use qubits that can be in superposition.",
    "The Nile is one of the longest rivers in the world.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Jazz grew out of blues and ragtime in New Orleans.",
    "A black hole's gravity is so strong light cannot escape.",
    "Coffee beans are roasted seeds of the Coffea plant.",
]
QUERIES = ["where do penguins live?", "how do plants make sugar", "bread ingredients"]
# A server backend joins the matrix only when one is configured.
BACKENDS = ["edge", "memory", "path"] + (["url"] if os.environ.get("QDRANT_URL") else [])


# ---------------------------------------------------------------------------- helpers


def make_client(kind: str, tmp_path: Path, *, asynchronous: bool = False) -> Any:
    if kind == "edge":  # sync only: the writer's async methods run it in a worker thread
        return EdgeStore(tmp_path / ("edge-async" if asynchronous else "edge"))
    cls = AsyncQdrantClient if asynchronous else QdrantClient
    if kind == "memory":
        return cls(":memory:")
    if kind == "path":
        return cls(path=str(tmp_path / ("qdrant-async" if asynchronous else "qdrant")))
    return cls(url=os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def collection() -> str:
    # Unique, so runs against a shared server never meet.
    return f"lfm_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(backend: str, tmp_path: Path, collection: str):
    qdrant = make_client(backend, tmp_path)
    yield qdrant
    if backend == "url" and qdrant.collection_exists(collection):
        qdrant.delete_collection(collection)
    qdrant.close()


class Memo:
    """Caches an encoder's vectors per text.

    The tiny encoders are deterministic and batch-independent, and this file encodes the
    same 16 documents dozens of times; the writer only sees ``dim`` and the two methods.
    """

    def __init__(self, inner: Any, *, stack: bool):
        self.inner, self.dim, self._stack = inner, inner.dim, stack
        # The same model: a collection's record names it, not the wrapper.
        self.model_name, self.checkpoint_digest = inner.model_name, inner.checkpoint_digest
        self._cache: dict[tuple[str, str], Any] = {}

    def _encode(self, kind: str, texts: list[str]) -> Any:
        missing = [t for t in dict.fromkeys(texts) if (kind, t) not in self._cache]
        if missing:
            encode = getattr(self.inner, f"encode_{kind}")
            for text, vectors in zip(missing, encode(missing), strict=True):
                self._cache[kind, text] = vectors
        out = [self._cache[kind, t] for t in texts]
        return np.stack(out) if self._stack else out

    def encode_documents(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        return self._encode("documents", list(texts))

    def encode_queries(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        return self._encode("queries", list(texts))

    def score(self, query: np.ndarray, documents: list[np.ndarray]) -> np.ndarray:
        return self.inner.score(query, documents)


@pytest.fixture(scope="module")
def dense(tiny_dense):
    return Memo(tiny_dense, stack=True)


@pytest.fixture(scope="module")
def colbert(tiny_colbert):
    return Memo(tiny_colbert, stack=False)


@pytest.fixture
def memory_client():
    qdrant = QdrantClient(":memory:")
    yield qdrant
    qdrant.close()


class Proxy:
    """A client wrapper: counts calls, can fail the n-th upsert, records request sizes."""

    def __init__(self, inner: Any, fail_upsert: dict[int, Exception] | None = None):
        self.inner = inner
        self.fail_upsert = fail_upsert or {}
        self.upserts = 0
        self.request_bytes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, **kwargs: Any) -> Any:
        self.upserts += 1
        if self.upserts in self.fail_upsert:
            raise self.fail_upsert[self.upserts]
        body = models.PointsList(points=kwargs["points"])
        self.request_bytes.append(len(body.model_dump_json(exclude_none=True)))
        return self.inner.upsert(**kwargs)


class CountingEncoder:
    """Wraps an encoder and counts the documents it encodes."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.dim = inner.dim
        self.model_name, self.checkpoint_digest = inner.model_name, inner.checkpoint_digest
        self.encoded: list[str] = []

    def encode_documents(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        self.encoded += texts
        return self.inner.encode_documents(texts, show_progress=show_progress)

    def encode_queries(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        return self.inner.encode_queries(texts, show_progress=show_progress)


def stored(qdrant: QdrantClient, collection: str) -> dict[str, dict[str, Any]]:
    """Every point's payload, by id, less the chunk record (tests/.../test_qdrant_chunks.py)."""
    points, _ = qdrant.scroll(collection, limit=10_000, with_payload=True)
    return {str(p.id): {k: v for k, v in p.payload.items() if k != CHUNK_KEY} for p in points}


# ------------------------------------------------------------------- layout & writes


def test_new_collection_has_the_documented_layout(client, collection, dense, colbert):
    MultiVectorWriter(client, collection, dense=dense, colbert=colbert).add(DOCS[:2])
    vectors = client.get_collection(collection).config.params.vectors
    assert sorted(vectors) == [COLBERT, DENSE]
    assert (vectors[DENSE].size, vectors[DENSE].distance) == (dense.dim, "Cosine")
    assert vectors[DENSE].multivector_config is None
    assert vectors[COLBERT].size == colbert.dim
    assert vectors[COLBERT].multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert vectors[COLBERT].hnsw_config.m == 0


def test_add_stores_text_and_metadata_under_uuid5_ids(client, collection, dense, colbert):
    writer = MultiVectorWriter(client, collection, dense=dense, colbert=colbert)
    metadata = [{"n": i, "tags": ["a", "b"]} for i in range(len(DOCS))]
    ids = writer.add(DOCS, metadata=metadata)
    assert ids == [str(uuid.uuid5(TEXT_NAMESPACE, t)) for t in DOCS]
    assert stored(client, collection) == {
        i: {"text": t, **m} for i, t, m in zip(ids, DOCS, metadata, strict=True)
    }


def test_stored_vectors_are_the_encoders_output(memory_client, dense, colbert):
    writer = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert)
    ids = writer.add(DOCS[:3])
    points = memory_client.retrieve("c", ids, with_vectors=True)
    by_id = {str(p.id): p.vector for p in points}
    dense = dense.encode_documents(DOCS[:3])
    colbert = colbert.encode_documents(DOCS[:3])
    for i, pid in enumerate(ids):
        np.testing.assert_allclose(by_id[pid][DENSE], dense[i], atol=1e-6)
        np.testing.assert_allclose(by_id[pid][COLBERT], colbert[i], atol=1e-6)


def test_rerunning_add_neither_duplicates_nor_loses(client, collection, dense, colbert):
    writer = MultiVectorWriter(client, collection, dense=dense, colbert=colbert, batch_size=5)
    first = writer.add(DOCS)
    second = writer.add(DOCS)
    assert first == second
    assert client.count(collection, exact=True).count == len(DOCS)


def test_a_second_writer_reuses_a_matching_collection(memory_client, dense, colbert):
    MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert).add(DOCS[:4])
    again = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert)
    again.add(DOCS[4:6])
    assert memory_client.count("c").count == 6


def test_caller_ids_ints_uuids_and_other_strings(memory_client, dense):
    writer = MultiVectorWriter(memory_client, "c", dense=dense)
    given_uuid = str(uuid.uuid4())
    ids = writer.add(DOCS[:3], ids=[np.int64(7), given_uuid, "doc-3"])
    assert ids == [7, given_uuid, point_id("doc-3")]
    assert set(stored(memory_client, "c")) == {str(i) for i in ids}
    assert memory_client.retrieve("c", [7])[0].payload["text"] == DOCS[0]


def test_generator_input_is_read_once(memory_client, dense):
    writer = MultiVectorWriter(memory_client, "c", dense=dense)
    ids = writer.add(text for text in DOCS[:5])
    assert ids == [text_point_id(t) for t in DOCS[:5]]
    assert memory_client.count("c").count == 5


def test_empty_input_is_a_no_op(memory_client, dense):
    assert MultiVectorWriter(memory_client, "c", dense=dense).add([]) == []
    assert not memory_client.collection_exists("c")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ids": ["a", "b"]}, InputError, r"ids has 2 items but texts has 3"),
        ({"metadata": [{}]}, InputError, r"metadata has 1 items but texts has 3"),
        ({"ids": ["a", "b", "a"]}, InputError, r"ids\[0\] and ids\[2\] are the same point id"),
        ({"ids": [1, 2, -3]}, InputError, r"ids\[2\]: .*\[0, 2\*\*64\)"),
        ({"ids": [1, 2, 3.0]}, TypeError, r"ids\[2\]: .*str or an int"),
        ({"metadata": [{}, {"text": "x"}, {}]}, InputError, r"metadata\[1\] has a 'text' key"),
        ({"metadata": [{}, "x", {}]}, TypeError, r"metadata\[1\] is a str"),
        ({"texts": ["a", None, "c"]}, TypeError, r"texts\[1\] is None"),
        (
            {"texts": ["same", "other", "same"]},
            InputError,
            r"texts\[0\] and texts\[2\] are the same",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    memory_client, dense, kwargs, error, match
):
    writer = MultiVectorWriter(memory_client, "c", dense=dense)
    texts = kwargs.pop("texts", ["a", "b", "c"])
    with pytest.raises(error, match=match):
        writer.add(texts, **kwargs)
    assert not memory_client.collection_exists("c")


def _existing(qdrant: QdrantClient, vectors_config: Any) -> None:
    qdrant.create_collection("c", vectors_config=vectors_config)


MAX_SIM = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)


@pytest.mark.parametrize(
    ("make_config", "match"),
    [
        (
            lambda d, c: models.VectorParams(size=d, distance=models.Distance.COSINE),
            "single unnamed",
        ),
        (
            lambda d, c: {DENSE: models.VectorParams(size=d, distance=models.Distance.COSINE)},
            r"has vectors \['dense'\].*writes \['dense', 'colbert'\]",
        ),
        (
            lambda d, c: {
                DENSE: models.VectorParams(size=d + 1, distance=models.Distance.COSINE),
                COLBERT: models.VectorParams(
                    size=c, distance=models.Distance.COSINE, multivector_config=MAX_SIM
                ),
            },
            r"vector 'dense': size \d+, expected \d+",
        ),
        (
            lambda d, c: {
                DENSE: models.VectorParams(size=d, distance=models.Distance.EUCLID),
                COLBERT: models.VectorParams(
                    size=c, distance=models.Distance.COSINE, multivector_config=MAX_SIM
                ),
            },
            "distance Euclid",
        ),
        (
            lambda d, c: {
                DENSE: models.VectorParams(size=d, distance=models.Distance.COSINE),
                COLBERT: models.VectorParams(size=c, distance=models.Distance.COSINE),
            },
            r"vector 'colbert': multivector comparator None",
        ),
    ],
    ids=["unnamed", "missing-colbert", "dense-size", "distance", "colbert-not-multi"],
)
def test_mismatched_collection_raises_before_writing(
    memory_client, dense, colbert, make_config, match
):
    _existing(memory_client, make_config(dense.dim, colbert.dim))
    writer = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert)
    with pytest.raises(CollectionError, match=match):
        writer.add(DOCS[:2])
    assert memory_client.count("c").count == 0


def test_storage_options_reach_the_collection(memory_client, dense, colbert):
    writer = MultiVectorWriter(
        memory_client,
        "c",
        dense=dense,
        colbert=colbert,
        quantization="binary",
        on_disk=True,
    )
    writer.add(DOCS[:2])
    vectors = memory_client.get_collection("c").config.params.vectors
    for name in (DENSE, COLBERT):
        assert vectors[name].on_disk is True
        assert isinstance(vectors[name].quantization_config, models.BinaryQuantization)


# ---------------------------------------------------------------- size limits, retries


def test_requests_stay_under_the_byte_limit(memory_client, dense, colbert):
    limit = 40_000
    proxy = Proxy(memory_client)
    writer = MultiVectorWriter(
        proxy, "c", dense=dense, colbert=colbert, batch_size=16, max_request_bytes=limit
    )
    writer.add(DOCS)
    assert proxy.upserts > 1  # the limit did split the batch
    assert max(proxy.request_bytes) <= limit
    assert memory_client.count("c").count == len(DOCS)


class WideColBERT:
    """A stand-in ColBERT encoder whose first document has one row too many for Qdrant."""

    dim = 128

    def encode_documents(
        self, texts: list[str], *, show_progress: bool | None = None
    ) -> list[np.ndarray]:
        rows = [MAX_MULTIVECTOR_FLOATS // self.dim + 1] + [3] * (len(texts) - 1)
        return [np.full((n, self.dim), 1 / np.sqrt(self.dim), np.float32) for n in rows]

    def encode_queries(
        self, texts: list[str], *, show_progress: bool | None = None
    ) -> list[np.ndarray]:
        return [np.full((4, self.dim), 1 / np.sqrt(self.dim), np.float32) for _ in texts]


def test_a_multivector_over_qdrants_limit_is_truncated_with_one_warning(memory_client, caplog):
    writer = MultiVectorWriter(memory_client, "c", colbert=WideColBERT())
    with caplog.at_level(logging.WARNING, logger="lfm_qdrant"):
        ids = writer.add(DOCS[:2])
    (point,) = memory_client.retrieve("c", ids[:1], with_vectors=True)
    assert len(point.vector[COLBERT]) == MAX_MULTIVECTOR_FLOATS // 128
    warnings = [r for r in caplog.records if "multivector" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith("1 document(s)")


@pytest.mark.parametrize(
    ("failures", "raised"),
    [
        ({1: ConnectionError("reset"), 2: TimeoutError("slow")}, None),
        ({i: ConnectionError("down") for i in range(1, 5)}, ConnectionError),
        ({1: UnexpectedResponse(400, "Bad Request", b"{}", None)}, UnexpectedResponse),
    ],
    ids=["transient-then-ok", "retries-exhausted", "not-transient"],
)
def test_retries_only_transient_errors(memory_client, dense, failures, raised):
    proxy = Proxy(memory_client, fail_upsert=failures)
    writer = MultiVectorWriter(proxy, "c", dense=dense, max_retries=2, retry_backoff_s=0)
    if raised is None:
        writer.add(DOCS[:3])
        assert memory_client.count("c").count == 3
    else:
        with pytest.raises(raised):
            writer.add(DOCS[:3])
        # One attempt for a non-transient error, 1 + max_retries for a transient one.
        assert proxy.upserts == (1 if raised is UnexpectedResponse else 3)


# --------------------------------------------------------------- interrupted indexing


def test_run_interrupted_by_an_error_is_finished_by_running_it_again(memory_client, dense, colbert):
    crashing = Proxy(memory_client, fail_upsert={3: RuntimeError("crash")})
    writer = MultiVectorWriter(crashing, "c", dense=dense, colbert=colbert, batch_size=4)
    with pytest.raises(RuntimeError, match="crash"):
        writer.add(DOCS)
    assert memory_client.count("c").count == 8  # two batches made it
    rerun = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert, batch_size=4)
    ids = rerun.add(DOCS)
    assert stored(memory_client, "c") == {i: {"text": t} for i, t in zip(ids, DOCS, strict=True)}


class HashEncoder:
    """Deterministic 8-d vectors from a hash of each text: no model, the test is about the writer."""

    dim = 8

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s

    def encode_documents(self, texts, show_progress=None):
        print("encoding", flush=True)
        time.sleep(self.delay_s)
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).random(self.dim) for s in seeds])

    encode_queries = encode_documents


KILLED_TEXTS = [f"document number {i}" for i in range(40)]
_WRITER_SCRIPT = f"""
import hashlib, sys, time
import numpy as np
from qdrant_client import QdrantClient
from lfm_qdrant import EdgeStore, MultiVectorWriter

{inspect.getsource(HashEncoder)}

client = EdgeStore(sys.argv[1]) if sys.argv[2] == "edge" else QdrantClient(path=sys.argv[1])
writer = MultiVectorWriter(client, "c", dense=HashEncoder(delay_s=0.2), batch_size=4)
writer.add({KILLED_TEXTS!r})
"""


def _open(kind: str, path: str) -> Any:
    return EdgeStore(path) if kind == "edge" else QdrantClient(path=path)


@pytest.mark.parametrize("kind", ["edge", "path"])
def test_killed_writer_process_is_finished_by_running_it_again(tmp_path, kind):
    """SIGKILL mid-run loses at most the batch in flight; re-running completes it exactly."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER_SCRIPT)
    path = str(tmp_path / "qdrant")
    with subprocess.Popen(
        [sys.executable, str(script), path, kind], stdout=subprocess.PIPE, text=True
    ) as proc:
        for _ in range(4):  # let three batches reach the collection, then kill mid-run
            assert proc.stdout.readline().strip() == "encoding"
        proc.kill()
    # Three batches of 4 were acknowledged before the kill: none of them is lost.
    assert 12 <= _count_on_disk(kind, path) < len(KILLED_TEXTS)
    qdrant = _open(kind, path)
    try:
        MultiVectorWriter(qdrant, "c", dense=HashEncoder(), batch_size=4).add(KILLED_TEXTS)
        assert stored(qdrant, "c") == {text_point_id(t): {"text": t} for t in KILLED_TEXTS}
    finally:
        qdrant.close()


def _count_on_disk(kind: str, path: str) -> int:
    qdrant = _open(kind, path)
    try:
        return qdrant.count("c").count
    finally:
        qdrant.close()


def test_skip_existing_encodes_only_new_or_changed_points(memory_client, dense):
    MultiVectorWriter(memory_client, "c", dense=dense).add(DOCS[:6])
    counting = CountingEncoder(dense)
    writer = MultiVectorWriter(memory_client, "c", dense=counting, batch_size=4)
    metadata = [{}] * 6 + [{}] * 2
    metadata[2] = {"changed": True}
    ids = writer.add(DOCS[:8], metadata=metadata, skip_existing=True)
    assert counting.encoded == [DOCS[2], DOCS[6], DOCS[7]]
    assert ids == [text_point_id(t) for t in DOCS[:8]]
    assert stored(memory_client, "c")[ids[2]] == {"text": DOCS[2], "changed": True}


# ----------------------------------------------------------------------------- search


def _two_stage_oracle(
    query: str, dense: Any, colbert: Any, prefetch_limit: int
) -> list[tuple[str, float]]:
    """Dense top-k by the encoders' cosine, then their own MaxSim: what Qdrant must return."""
    q = dense.encode_queries([query])[0]
    candidates = np.argsort(-(dense.encode_documents(DOCS) @ q), kind="stable")[:prefetch_limit]
    scores = colbert.score(
        colbert.encode_queries([query])[0], colbert.encode_documents([DOCS[i] for i in candidates])
    )
    ranked = sorted(zip(candidates, scores, strict=True), key=lambda pair: -pair[1])
    return [(text_point_id(DOCS[i]), float(s)) for i, s in ranked]


def test_search_is_dense_prefetch_then_colbert_maxsim(client, collection, dense, colbert):
    # Without the lexical leg (collections written before it), hybrid is the two stages.
    writer = MultiVectorWriter(client, collection, dense=dense, colbert=colbert, lexical=False)
    writer.add(DOCS)
    for query in QUERIES:
        hits = writer.search(query, limit=4, prefetch_limit=6)
        expected = _two_stage_oracle(query, dense, colbert, prefetch_limit=6)[:4]
        assert [str(h.id) for h in hits] == [pid for pid, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-4)
        assert all(
            h.payload["text"] == DOCS[[text_point_id(d) for d in DOCS].index(str(h.id))]
            for h in hits
        )


@pytest.mark.parametrize("mode", ["dense", "colbert"])
def test_single_model_collections_search_with_that_model(memory_client, dense, colbert, mode):
    encoders = {"dense": dense} if mode == "dense" else {"colbert": colbert}
    writer = MultiVectorWriter(memory_client, "c", **encoders, lexical=False)
    writer.add(DOCS)
    assert list(memory_client.get_collection("c").config.params.vectors) == [mode]
    hits = writer.search(QUERIES[0], limit=len(DOCS))
    if mode == "dense":
        expected = dense.encode_documents(DOCS) @ dense.encode_queries(QUERIES[:1])[0]
    else:
        expected = colbert.score(
            colbert.encode_queries(QUERIES[:1])[0], colbert.encode_documents(DOCS)
        )
    by_id = {text_point_id(t): s for t, s in zip(DOCS, expected, strict=True)}
    assert [str(h.id) for h in hits] == sorted(by_id, key=lambda pid: -by_id[pid])
    np.testing.assert_allclose(
        [h.score for h in hits], [by_id[str(h.id)] for h in hits], rtol=1e-4, atol=1e-6
    )


def test_search_filter_applies_to_both_stages(memory_client, dense, colbert):
    writer = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert)
    writer.add(DOCS, metadata=[{"even": i % 2 == 0} for i in range(len(DOCS))])
    only_odd = models.Filter(
        must=[models.FieldCondition(key="even", match=models.MatchValue(value=False))]
    )
    # A prefetch of 3 that ignored the filter would return fewer than 3 odd documents.
    hits = writer.search(QUERIES[1], limit=3, prefetch_limit=3, query_filter=only_odd)
    assert len(hits) == 3 and all(h.payload["even"] is False for h in hits)


def test_search_of_a_missing_collection_raises(memory_client, dense):
    with pytest.raises(CollectionError, match="'nope' does not exist"):
        MultiVectorWriter(memory_client, "nope", dense=dense).search("q")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"limit": 0}, "limit must be >= 1, got 0"),
        ({"limit": 20, "prefetch_limit": 10}, "smaller than limit"),
    ],
)
def test_search_refuses_bad_limits(memory_client, dense, colbert, kwargs, match):
    writer = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert)
    with pytest.raises(InputError, match=match):
        writer.search("q", **kwargs)


def test_models_given_by_folder_are_loaded(memory_client, tiny_dense_dir, tiny_colbert_dir):
    writer = MultiVectorWriter(
        memory_client, "c", dense=str(tiny_dense_dir), colbert=tiny_colbert_dir, device="cpu"
    )
    assert isinstance(writer.dense, DenseEncoder)
    assert isinstance(writer.colbert, LateInteractionEncoder)
    assert len(writer.add(DOCS[:2])) == 2


def test_real_minilm_finds_the_right_document(memory_client, minilm):
    writer = MultiVectorWriter(memory_client, "c", dense=minilm)
    writer.add(DOCS)
    for query, doc in [(QUERIES[0], 8), (QUERIES[1], 2), (QUERIES[2], 4)]:
        assert writer.search(query, limit=1)[0].payload["text"] == DOCS[doc]


# ------------------------------------------------------------------------------ async


def test_async_client_gives_the_same_results(backend, tmp_path, collection, dense, colbert):
    async def run() -> tuple[list[str], list[Any]]:
        aclient = make_client(backend, tmp_path, asynchronous=True)
        try:
            writer = MultiVectorWriter(
                aclient, collection, dense=dense, colbert=colbert, batch_size=5, lexical=False
            )
            ids = await writer.aadd(DOCS)
            assert await writer.aadd(DOCS) == ids
            assert await writer.acount() == len(DOCS)
            return ids, await writer.asearch(QUERIES[0], limit=4, prefetch_limit=6)
        finally:
            if backend == "url":
                await aclient.delete_collection(collection)
            closed = aclient.close()
            if inspect.isawaitable(closed):  # an EdgeStore is sync
                await closed

    ids, hits = asyncio.run(run())
    assert ids == [text_point_id(t) for t in DOCS]
    expected = _two_stage_oracle(QUERIES[0], dense, colbert, prefetch_limit=6)[:4]
    assert [str(h.id) for h in hits] == [pid for pid, _ in expected]


class AsyncFlaky:
    """An async client wrapper whose first upsert fails with a transient error."""

    def __init__(self, inner: AsyncQdrantClient):
        self.inner, self.upserts = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def upsert(self, **kwargs: Any) -> Any:
        self.upserts += 1
        if self.upserts == 1:
            raise ConnectionError("reset")
        return await self.inner.upsert(**kwargs)


def test_async_path_retries_transient_errors(dense):
    async def run() -> tuple[int, int]:
        flaky = AsyncFlaky(AsyncQdrantClient(":memory:"))
        writer = MultiVectorWriter(flaky, "c", dense=dense, retry_backoff_s=0)
        await writer.aadd(DOCS[:3])
        count = (await flaky.count("c")).count
        await flaky.close()
        return count, flaky.upserts

    assert asyncio.run(run()) == (3, 2)


def test_sync_methods_refuse_an_async_client(dense):
    writer = MultiVectorWriter(AsyncQdrantClient(":memory:"), "c", dense=dense)
    with pytest.raises(TypeError, match=r"use `await writer.aadd"):
        writer.add(DOCS[:1])
    with pytest.raises(TypeError, match=r"use `await writer.asearch"):
        writer.search("q")


def test_async_methods_work_on_a_sync_client(memory_client, dense):
    writer = MultiVectorWriter(memory_client, "c", dense=dense)
    ids = asyncio.run(writer.aadd(DOCS[:5]))
    assert memory_client.count("c").count == 5
    hits = asyncio.run(writer.asearch(QUERIES[0], limit=3))
    assert [h.id for h in hits] == [h.id for h in writer.search(QUERIES[0], limit=3)]
    assert {str(h.id) for h in hits} <= set(ids)


# ------------------------------------------------------------------ cross-check: edge


def test_qdrant_edge_returns_the_same_top_results(tmp_path, memory_client, dense, colbert):
    qe = pytest.importorskip("qdrant_edge")
    writer = MultiVectorWriter(memory_client, "c", dense=dense, colbert=colbert, lexical=False)
    ids = writer.add(DOCS)

    config = qe.EdgeConfig(
        vectors={
            DENSE: qe.EdgeVectorParams(size=dense.dim, distance=qe.Distance.Cosine),
            COLBERT: qe.EdgeVectorParams(
                size=colbert.dim,
                distance=qe.Distance.Cosine,
                multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            ),
        }
    )
    shard = qe.EdgeShard.create(str(tmp_path / "edge"), config)
    records = memory_client.retrieve("c", ids, with_payload=True, with_vectors=True)
    points = [qe.Point(str(r.id), r.vector, r.payload) for r in records]
    shard.update(qe.UpdateOperation.upsert_points(points))
    try:
        for query in QUERIES:
            hits = writer.search(query, limit=5, prefetch_limit=8)
            request = qe.QueryRequest(
                limit=5,
                prefetches=[
                    qe.Prefetch(
                        limit=8,
                        query=qe.Query.Nearest(
                            dense.encode_queries([query])[0].tolist(), using=DENSE
                        ),
                    )
                ],
                query=qe.Query.Nearest(colbert.encode_queries([query])[0].tolist(), using=COLBERT),
                with_payload=True,
            )
            edge_hits = shard.query(request)
            assert [str(p.id) for p in edge_hits] == [str(h.id) for h in hits]
            np.testing.assert_allclose(
                [p.score for p in edge_hits], [h.score for h in hits], rtol=1e-4
            )
            assert [p.payload["text"] for p in edge_hits] == [h.payload["text"] for h in hits]
    finally:
        shard.close()


def test_writer_exposes_its_parts(memory_client, dense):
    writer = MultiVectorWriter(memory_client, "c", dense=dense)
    assert (writer.client, writer.collection_name, writer.dense, writer.colbert) == (
        memory_client,
        "c",
        dense,
        None,
    )
    assert repr(writer).startswith("MultiVectorWriter(collection_name='c'")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lexical": False}, TypeError, "needs dense=, colbert=, or the lexical leg"),
        ({"dense": 3}, TypeError, "dense=: encoder is int; expected lfm_core.DenseEncoder"),
        ({"dense": "unused", "batch_size": 0}, InputError, "batch_size must be >= 1, got 0"),
        ({"dense": "unused", "quantization": "pq"}, InputError, "quantization must be"),
    ],
)
def test_constructor_refuses_bad_arguments(memory_client, kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiVectorWriter(memory_client, "c", **kwargs)


def test_an_encoder_passed_as_the_other_kind_is_refused(memory_client, tiny_dense):
    with pytest.raises(TypeError, match="belongs to the other argument"):
        MultiVectorWriter(memory_client, "c", colbert=tiny_dense)


# ---------------------------------------------------------------------- cluster settings


@pytest.mark.parametrize("kind", ["edge", "memory", "path"])
def test_cluster_settings_reach_create_collection_and_embedded_stores_ignore_them(
    kind, tmp_path, dense
):
    calls: list[dict[str, Any]] = []
    inner = make_client(kind, tmp_path)

    class Recording(Proxy):
        def create_collection(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return inner.create_collection(**kwargs)

    writer = MultiVectorWriter(
        Recording(inner),
        "c",
        dense=dense,
        shard_number=3,
        replication_factor=2,
        write_consistency_factor=2,
    )
    writer.add(DOCS[:3])
    assert {
        k: calls[0][k] for k in ("shard_number", "replication_factor", "write_consistency_factor")
    } == {
        "shard_number": 3,
        "replication_factor": 2,
        "write_consistency_factor": 2,
    }
    assert writer.count() == 3
    inner.close()


@pytest.mark.skipif(
    not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL"
)
def test_a_server_creates_the_collection_with_the_cluster_settings(collection, dense):
    qdrant = make_client("url", Path("."))
    try:
        MultiVectorWriter(
            qdrant, collection, dense=dense, shard_number=2, replication_factor=1
        ).add(DOCS[:2])
        params = qdrant.get_collection(collection).config.params
        assert (params.shard_number, params.replication_factor) == (2, 1)
    finally:
        qdrant.delete_collection(collection)
        qdrant.close()


def test_cluster_settings_are_checked(memory_client, dense):
    with pytest.raises(InputError, match="shard_number must be >= 1"):
        MultiVectorWriter(memory_client, "c", dense=dense, shard_number=0)
