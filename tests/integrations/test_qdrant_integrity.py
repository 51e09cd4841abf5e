"""Data integrity of lfm_qdrant: ids that round-trip, no collapsing texts, model records,
payloads converted or refused before the first write, filters, threads.

Every test runs on Qdrant Edge and on qdrant-client's local mode (and a server when
``QDRANT_URL`` is set): the guarantees are the writer's, not one engine's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from lfm_core import CollectionError, DenseEncoder, InputError
from lfm_core.testing import write_dense_checkpoint
from lfm_qdrant import (
    METADATA_KEY,
    EdgeStore,
    MultiVectorWriter,
    point_id,
    text_point_id,
)

BACKENDS = ["edge", "path"] + (["url"] if os.environ.get("QDRANT_URL") else [])
TEXTS = [f"support article {i}: how to reset a password on device {i}" for i in range(12)]


def make_client(kind: str, tmp_path: Path) -> Any:
    if kind == "edge":
        return EdgeStore(tmp_path / "edge")
    if kind == "path":
        return QdrantClient(path=str(tmp_path / "local"))
    return QdrantClient(url=os.environ["QDRANT_URL"], api_key=os.environ.get("QDRANT_API_KEY"))


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path):
    qdrant = make_client(request.param, tmp_path)
    yield qdrant
    qdrant.close()


@pytest.fixture
def name() -> str:
    return f"lfm_integrity_{uuid.uuid4().hex[:10]}"


def all_points(client: Any, collection: str) -> dict[str, dict[str, Any]]:
    points, _ = client.scroll(collection, limit=10_000, with_payload=True)
    return {str(p.id): {k: v for k, v in p.payload.items() if k != "_lfm"} for p in points}


# ------------------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    "given",
    [[1, 2, 3], [np.int64(10), np.uint32(11), 12], ["doc-1", "doc-2", "doc-3"], None],
    ids=["ints", "numpy-ints", "keys", "from-text"],
)
def test_returned_ids_passed_back_name_the_same_points(client, name, tiny_dense, given):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    ids = writer.add(TEXTS[:3], ids=given)
    again = writer.add(TEXTS[3:6], ids=ids)  # new texts, the returned ids: an overwrite
    assert again == ids
    assert writer.count() == 3
    assert sorted(p["text"] for p in all_points(client, name).values()) == sorted(TEXTS[3:6])
    hits = writer.search(TEXTS[4], limit=3)
    assert {h.id for h in hits} == set(ids)  # results carry the same values
    writer.delete(ids[:2])
    assert writer.count() == 1


def test_int_ids_come_back_as_ints(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    assert writer.add(TEXTS[:3], ids=[1, 2, 3]) == [1, 2, 3]
    assert {h.id for h in writer.search(TEXTS[0], limit=3)} == {1, 2, 3}


def test_texts_that_look_like_uuids_never_collapse(client, name, tiny_dense):
    digest = hashlib.md5(b"").hexdigest()  # d41d8cd98f00b204e9800998ecf8427e
    canonical = str(uuid.UUID(digest))
    texts = [digest, digest.upper(), canonical, canonical.upper(), "{" + canonical + "}"]
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    ids = writer.add(texts)
    assert len(set(ids)) == len(texts) == writer.count()
    assert all(i == text_point_id(t) != t for i, t in zip(ids, texts, strict=True))


def test_keys_that_differ_only_in_case_stay_apart(client, name, tiny_dense):
    digest = hashlib.md5(b"x").hexdigest()
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    ids = writer.add(TEXTS[:2], ids=[digest, digest.upper()])
    assert len(set(ids)) == 2 == writer.count()


def test_a_key_equal_to_another_documents_text_is_its_own_point(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    by_text = writer.add(["refund policy"])
    by_key = writer.add(["How do refunds work?"], ids=["refund policy"])
    assert by_text != by_key
    assert writer.count() == 2


def test_delete_by_filter_and_count_by_filter(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    writer.add(TEXTS, metadata=[{"lang": "en" if i % 3 else "es"} for i in range(len(TEXTS))])
    spanish = {"must": [{"key": "lang", "match": {"value": "es"}}]}
    assert writer.count(spanish) == 4
    writer.delete(query_filter=spanish)
    assert writer.count() == 8
    assert writer.count(spanish) == 0
    with pytest.raises(InputError, match="ids or query_filter"):
        writer.delete()


# --------------------------------------------------------------------- model record


@pytest.fixture(scope="module")
def other_dense(tmp_path_factory: pytest.TempPathFactory) -> DenseEncoder:
    """The same architecture and width as tiny_dense, other weights."""
    folder = write_dense_checkpoint(tmp_path_factory.mktemp("other-dense"), seed=123)
    return DenseEncoder.from_pretrained(folder, device="cpu")


def test_collection_records_its_models(client, name, tiny_dense, tiny_colbert):
    MultiVectorWriter(client, name, dense=tiny_dense, colbert=tiny_colbert).add(TEXTS[:2])
    record = client.get_collection(name).config.metadata[METADATA_KEY]
    assert record["dense"]["digest"] == tiny_dense.checkpoint_digest
    assert record["colbert"]["dim"] == tiny_colbert.dim
    assert record["dense"]["model"] == str(Path(tiny_dense.model_name).resolve())


def test_a_writer_with_other_weights_of_the_same_width_is_refused(
    client, name, tiny_dense, other_dense
):
    assert other_dense.dim == tiny_dense.dim
    assert other_dense.checkpoint_digest != tiny_dense.checkpoint_digest
    MultiVectorWriter(client, name, dense=tiny_dense).add(TEXTS[:3])
    intruder = MultiVectorWriter(client, name, dense=other_dense)
    with pytest.raises(CollectionError, match="was written with dense model .* not "):
        intruder.add(TEXTS[3:5])
    with pytest.raises(CollectionError, match="was written with dense model"):
        intruder.search("password")
    assert MultiVectorWriter(client, name, dense=tiny_dense).count() == 3


def test_the_same_checkpoint_from_another_folder_is_accepted(
    client, name, tiny_dense, tiny_dense_dir, tmp_path
):
    MultiVectorWriter(client, name, dense=tiny_dense).add(TEXTS[:3])
    moved = shutil.copytree(tiny_dense_dir, tmp_path / "moved-model")
    again = DenseEncoder.from_pretrained(moved, device="cpu")
    MultiVectorWriter(client, name, dense=again).add(TEXTS[3:4])
    assert MultiVectorWriter(client, name, dense=again).count() == 4


def test_a_collection_without_a_record_is_refused_with_how_to_reindex(client, name, tiny_dense):
    # What lfm-retrieval 0.1 left: the right layout, no record, the old point ids.
    client.create_collection(
        name,
        vectors_config={
            "dense": models.VectorParams(size=tiny_dense.dim, distance=models.Distance.COSINE)
        },
    )
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    with pytest.raises(CollectionError, match=r"no lfm-retrieval model record.*0\.1.*Re-index"):
        writer.add(TEXTS[:1])
    with pytest.raises(CollectionError, match="no lfm-retrieval model record"):
        writer.search("x")


# ------------------------------------------------------------------------- payloads


def test_numpy_values_and_dates_are_stored_as_json(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    meta = {
        "price": np.float32(9.5),
        "stock": np.int64(3),
        "ok": np.bool_(True),
        "dims": np.array([1, 2]),
        "added": dt.date(2024, 5, 1),
        "at": dt.datetime(2024, 5, 1, 12, 30),
        "nested": {"tags": ("a", "b")},
    }
    (pid,) = writer.add(TEXTS[:1], metadata=[meta])
    payload = all_points(client, name)[str(pid)]
    assert payload == {
        "text": TEXTS[0],
        "price": 9.5,
        "stock": 3,
        "ok": True,
        "dims": [1, 2],
        "added": "2024-05-01",
        "at": "2024-05-01T12:30:00",
        "nested": {"tags": ["a", "b"]},
    }


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"blob": b"\x00\x01"}, TypeError, r"metadata\[40\]\['blob'\] is a bytes"),
        ({"obj": object()}, TypeError, r"metadata\[40\]\['obj'\] is a object"),
        ({"s": {1, 2}}, TypeError, r"metadata\[40\]\['s'\] is a set"),
        ({"x": float("nan")}, InputError, r"metadata\[40\]\['x'\] is nan"),
        ({"deep": _deep(100)}, InputError, r"metadata\[40\]\['deep'\].* nested deeper"),
        ({"v": {1: "a"}}, TypeError, r"metadata\[40\]\['v'\] has a non-str key"),
        ({"t": "x\ud800"}, InputError, r"metadata\[40\]\['t'\] holds lone surrogates"),
    ],
    ids=["bytes", "object", "set", "nan", "deep", "int-key", "surrogate"],
)
def test_bad_metadata_is_refused_before_the_first_write(
    client, name, tiny_dense, bad, error, match
):
    writer = MultiVectorWriter(client, name, dense=tiny_dense, batch_size=8)
    texts = [f"doc {i}" for i in range(50)]
    metadata: list[dict[str, Any]] = [{"n": i} for i in range(50)]
    metadata[40] = bad
    with pytest.raises(error, match=match):
        writer.add(texts, metadata=metadata)
    assert not client.collection_exists(name)  # nothing was written, not even 40 points


# -------------------------------------------------------------------------- filters


def test_a_dict_filter_gives_the_same_results_as_a_filter_object(client, name, tiny_dense):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    writer.add(TEXTS, metadata=[{"n": i} for i in range(len(TEXTS))])
    as_dict = {"must": [{"key": "n", "range": {"gte": 6}}]}
    as_model = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=6))])
    # Dense mode: one ranking with no fusion ties, so the order itself is comparable.
    by_dict = writer.search("password", limit=12, query_filter=as_dict, mode="dense")
    assert [h.id for h in by_dict] == [
        h.id for h in writer.search("password", limit=12, query_filter=as_model, mode="dense")
    ]
    assert len(by_dict) == 6 and all(h.payload["n"] >= 6 for h in by_dict)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            "n > 3",
            TypeError,
            "query_filter must be a qdrant_client.models.Filter or a dict, not str",
        ),
        ({"must": "everything"}, InputError, r"^query_filter must: expected \{\"key\": \.\.\.\}"),
    ],
)
def test_a_malformed_filter_is_a_clear_error(client, name, tiny_dense, bad, error, match):
    writer = MultiVectorWriter(client, name, dense=tiny_dense)
    writer.add(TEXTS[:2])
    with pytest.raises(error, match=match):
        writer.search("x", query_filter=bad)


@pytest.mark.parametrize(
    "bad",
    # 86 CJK characters are 258 bytes: names are folders, and the limit is in bytes.
    ["", "../x", "a/b", "x" * 256, "a:b", ".", "\u4e2d" * 86, "faq\ud800"],
)
def test_collection_names_qdrant_refuses_are_refused_up_front(client, tiny_dense, bad):
    with pytest.raises(InputError, match="collection name"):
        MultiVectorWriter(client, bad, dense=tiny_dense)


def test_a_name_of_255_utf8_bytes_is_a_collection(tmp_path, tiny_dense):
    store = EdgeStore(tmp_path / "edge")
    try:
        writer = MultiVectorWriter(store, "\u4e2d" * 85, dense=tiny_dense)
        writer.add(TEXTS[:1])
        assert writer.count() == 1
    finally:
        store.close()


# -------------------------------------------------------------------------- threads


def test_threads_sharing_one_writer_lose_nothing(tmp_path, tiny_dense):
    """Local mode is not thread-safe itself; the writer serializes its client calls."""
    texts = [f"shared text {i}" for i in range(300)]
    for run in range(3):
        client = QdrantClient(path=str(tmp_path / f"local-{run}"))
        writer = MultiVectorWriter(client, "c", dense=tiny_dense, batch_size=16)
        twin = MultiVectorWriter(client, "c", dense=tiny_dense, batch_size=16)
        errors: list[BaseException] = []

        def add(
            w: MultiVectorWriter, part: list[str], errors: list[BaseException] = errors
        ) -> None:
            try:
                w.add(part)
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=add, args=(writer, texts[:200]), daemon=True),
            threading.Thread(target=add, args=(twin, texts[100:]), daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        assert writer.count() == 300
        client.close()


def test_point_id_rules():
    assert point_id(5) == 5
    canonical = str(uuid.uuid4())
    assert point_id(canonical) == canonical
    assert point_id(canonical.upper()) != canonical
    with pytest.raises(InputError, match="cannot be encoded"):
        text_point_id("x\ud800")


def test_the_old_namespace_name_still_works_with_a_warning():
    import lfm_qdrant

    with pytest.warns(DeprecationWarning, match="KEY_NAMESPACE"):
        assert lfm_qdrant.ID_NAMESPACE == lfm_qdrant.KEY_NAMESPACE
