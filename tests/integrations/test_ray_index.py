"""lfm_ray on a local Ray (one ``ray.init(num_cpus=2)`` for the session), tiny checkpoints.

Exactness: the same points as ``MultiVectorWriter.add`` in one process (ids, payloads with
their chunk records and fingerprints, vectors within 1e-5), long documents in chunks; a
worker killed mid-run leaves every document stored exactly once; a sync run adds, updates,
keeps and deletes what one process's sync does, without encoding the unchanged; a bad row
is named before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder
from lfm_qdrant import COLBERT, DENSE, ChunkingOptions, EdgeStore, MultiVectorWriter, SyncReport
from lfm_ray import EncodeBatch, index_dataset
from tests.texts import prose

SMALL = ChunkingOptions(max_tokens=24, overlap_tokens=4)


# Every seventh document is long: several chunks of SMALL.
TEXTS = [
    prose(i, 3 + i % 5)
    if i % 7 == 3
    else f"document {i}: " + "word " * (i % 13) + ("über café" if i % 5 == 0 else "")
    for i in range(60)
]


def stored(path: Path, collection: str) -> dict[str, dict[str, Any]]:
    """Every point of a collection: id -> {payload, dense, colbert}."""
    with EdgeStore(path) as store:
        points, _ = store.scroll(collection, limit=10_000, with_payload=True, with_vectors=True)
    return {
        str(p.id): {
            "payload": p.payload,
            "dense": np.array(p.vector.get(DENSE)) if DENSE in p.vector else None,
            "colbert": np.array(p.vector.get(COLBERT)) if COLBERT in p.vector else None,
        }
        for p in points
    }


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> dict[str, dict[str, Any]]:
    """The collection one process writes with MultiVectorWriter.add."""
    path = tmp_path_factory.mktemp("single")
    store = EdgeStore(path)
    try:
        writer = MultiVectorWriter(
            store, "docs", dense=tiny_dense, colbert=tiny_colbert, chunking=SMALL
        )
        writer.add(
            TEXTS,
            ids=[f"k{i}" for i in range(len(TEXTS))],
            metadata=[{"n": i} for i in range(len(TEXTS))],
        )
    finally:
        store.close()
    return stored(path, "docs")


def dataset(rows: list[dict[str, Any]], blocks: int = 4) -> Any:
    return ray.data.from_items(rows, override_num_blocks=blocks)


def rows_of(texts: list[str]) -> list[dict[str, Any]]:
    return [{"text": t, "key": f"k{i}", "meta": json.dumps({"n": i})} for i, t in enumerate(texts)]


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for key, point in want.items():
        # Chunk records included: the same spans, chunk counts and fingerprints.
        assert got[key]["payload"] == point["payload"]
        np.testing.assert_allclose(got[key]["dense"], point["dense"], atol=1e-5)
        np.testing.assert_allclose(got[key]["colbert"], point["colbert"], atol=1e-5)


def test_two_workers_write_what_one_process_writes_and_a_rerun_finishes_the_rest(
    ray_session: Any,
    tmp_path: Path,
    tiny_dense_dir: Path,
    tiny_colbert_dir: Path,
    reference: dict[str, Any],
) -> None:
    kwargs = {
        "collection": "docs",
        "path": tmp_path,
        "dense": str(tiny_dense_dir),
        "colbert": str(tiny_colbert_dir),
        "id_column": "key",
        "metadata_column": "meta",
        "concurrency": 2,
        "batch_size": 8,
        "chunking": SMALL,
    }
    first = index_dataset(dataset(rows_of(TEXTS)[:25]), **kwargs)  # an interrupted run
    assert (first.rows, first.encoded, first.skipped_existing, first.added) == (25, 25, 0, 25)
    seen: list[int] = []
    again = index_dataset(dataset(rows_of(TEXTS)), progress=seen.append, **kwargs)
    assert (again.rows, again.encoded, again.skipped_existing, again.added) == (60, 35, 25, 35)
    assert sum(seen) == 35
    assert again.points == len(reference) > 60  # the long documents are several points
    assert_same(stored(tmp_path, "docs"), reference)


class DiesOnce(EncodeBatch):
    """Kills its own process (as a crash would) on its third batch, the first time only."""

    def __init__(self, *args: Any, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker
        self.calls = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 3 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return super().__call__(batch)


def test_a_killed_worker_is_restarted_and_every_document_is_stored_once(
    ray_session: Any,
    tmp_path: Path,
    tiny_dense_dir: Path,
    tiny_colbert_dir: Path,
    reference: dict[str, Any],
) -> None:
    marker = tmp_path / "died"

    class Killer(DiesOnce):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, marker=str(marker), **kwargs)

    result = index_dataset(
        dataset(rows_of(TEXTS), blocks=6),
        collection="docs",
        path=tmp_path / "store",
        dense=str(tiny_dense_dir),
        colbert=str(tiny_colbert_dir),
        id_column="key",
        metadata_column="meta",
        concurrency=1,
        batch_size=8,
        encoder_class=Killer,
        chunking=SMALL,
    )
    assert marker.exists()  # the worker did die
    assert result.points == len(reference)
    assert_same(stored(tmp_path / "store", "docs"), reference)


def test_a_sync_run_does_what_one_process_does_and_encodes_only_the_changed(
    ray_session: Any,
    tmp_path: Path,
    tiny_dense_dir: Path,
    tiny_colbert_dir: Path,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> None:
    """Both start from the collection one process wrote; the corpus then changes."""
    texts = {f"k{i}": t for i, t in enumerate(TEXTS[:30])}
    for path in (tmp_path / "one", tmp_path / "ray"):
        with EdgeStore(path) as store:
            MultiVectorWriter(
                store, "docs", dense=tiny_dense, colbert=tiny_colbert, chunking=SMALL
            ).add(list(texts.values()), ids=list(texts))
    del texts["k1"], texts["k10"]  # removed, one of them long
    texts["k3"] = prose(99, 2)  # a long document shrinks
    texts["k4"] = prose(98, 6)  # a short one grows
    texts["k30"] = "a new one"
    with EdgeStore(tmp_path / "one") as store:
        want = MultiVectorWriter(
            store, "docs", dense=tiny_dense, colbert=tiny_colbert, chunking=SMALL
        ).sync(list(texts.values()), ids=list(texts))
    assert want == SyncReport(added=1, updated=2, unchanged=26, deleted=2)
    result = index_dataset(
        dataset([{"text": t, "key": k} for k, t in texts.items()]),
        collection="docs",
        path=tmp_path / "ray",
        dense=str(tiny_dense_dir),
        colbert=str(tiny_colbert_dir),
        id_column="key",
        batch_size=8,
        chunking=SMALL,
        delete_missing=True,
    )
    got = (result.added, result.updated, result.skipped_existing, result.deleted)
    assert got == (want.added, want.updated, want.unchanged, want.deleted)
    assert result.encoded == 3  # the unchanged were not encoded
    assert_same(stored(tmp_path / "ray", "docs"), stored(tmp_path / "one", "docs"))


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"text": None, "key": "k7", "meta": "{}"}, TypeError, "row 7: 'text' is None"),
        ({"text": 12, "key": "k7", "meta": "{}"}, TypeError, "row 7: 'text' is a int"),
        ({"text": "x", "key": "k7", "meta": "[1, 2]"}, TypeError, "row 7: 'meta' is a list"),
        (
            {"text": "x", "key": "k7", "meta": "{not json"},
            InputError,
            "row 7: 'meta' is a string but not JSON",
        ),
        ({"text": "x", "key": "k7", "meta": json.dumps({"text": "clash"})}, InputError, "row 7"),
        (
            {"text": "x", "key": "k3", "meta": "{}"},
            InputError,
            "rows 3 and 7 have the same point id",
        ),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_written(
    ray_session: Any,
    tmp_path: Path,
    tiny_dense_dir: Path,
    bad: dict[str, Any],
    error: type,
    message: str,
) -> None:
    rows = rows_of(TEXTS[:12])
    rows[7] = bad
    with pytest.raises(error, match=message):
        index_dataset(
            dataset(rows),
            collection="docs",
            path=tmp_path,
            dense=str(tiny_dense_dir),
            id_column="key",
            metadata_column="meta",
        )
    store = EdgeStore(tmp_path)
    try:
        assert not store.collection_exists("docs")
    finally:
        store.close()


def test_ids_from_texts_match_the_writer_without_ids(
    ray_session: Any, tmp_path: Path, tiny_dense_dir: Path, tiny_dense: DenseEncoder
) -> None:
    store = EdgeStore(tmp_path / "one")
    try:
        ids = MultiVectorWriter(store, "docs", dense=tiny_dense).add(TEXTS[:10])
    finally:
        store.close()
    index_dataset(
        dataset([{"text": t} for t in TEXTS[:10]]),
        collection="docs",
        path=tmp_path / "ray",
        dense=str(tiny_dense_dir),
    )
    assert set(stored(tmp_path / "ray", "docs")) == {str(i) for i in ids}


def test_encode_batch_alone_gives_the_encoders_vectors(
    tiny_dense_dir: Path,
    tiny_colbert_dir: Path,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> None:
    stage = EncodeBatch(str(tiny_dense_dir), str(tiny_colbert_dir))
    out = stage({"text": np.array(TEXTS[:5], dtype=object)})
    np.testing.assert_allclose(out["dense"], tiny_dense.encode_documents(TEXTS[:5]), atol=1e-5)
    for got, want in zip(out["colbert"], tiny_colbert.encode_documents(TEXTS[:5])):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_model_that_cannot_load_leaves_no_store_folder(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(Exception, match="broken-model"):
        index_dataset(None, collection="docs", path=tmp_path / "store", dense=str(broken))
    assert not (tmp_path / "store").exists()


def test_index_dataset_needs_one_target(tiny_dense_dir: Path) -> None:
    with pytest.raises(InputError, match="url= .* or path="):
        index_dataset(None, collection="docs", dense=str(tiny_dense_dir))


@pytest.mark.skipif(
    not os.environ.get("QDRANT_URL"), reason="needs a Qdrant server: set QDRANT_URL"
)
def test_workers_write_to_a_server_through_the_datasink(
    ray_session: Any, tiny_dense_dir: Path, tiny_colbert_dir: Path, reference: dict[str, Any]
) -> None:
    import uuid

    from qdrant_client import QdrantClient

    name = f"lfm-ray-{uuid.uuid4().hex[:8]}"
    url = os.environ["QDRANT_URL"]
    result = index_dataset(
        dataset(rows_of(TEXTS)),
        collection=name,
        url=url,
        api_key=os.environ.get("QDRANT_API_KEY"),
        dense=str(tiny_dense_dir),
        colbert=str(tiny_colbert_dir),
        id_column="key",
        metadata_column="meta",
        concurrency=2,
        batch_size=8,
    )
    client = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))
    try:
        assert result.points == 60
        found, _ = client.scroll(name, limit=100, with_payload=True)
        assert {str(p.id) for p in found} == set(reference)
    finally:
        client.delete_collection(name)
        client.close()
