"""MultiVectorWriter.add_encoded: vectors encoded elsewhere, stored as add() stores them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lfm_core import CollectionError, DenseEncoder, InputError, LateInteractionEncoder
from lfm_qdrant import EdgeStore, ModelRecord, MultiVectorWriter

TEXTS = ["first document", "second, longer document", "third"]


def test_add_encoded_with_records_equals_add(
    tmp_path: Path, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    store = EdgeStore(tmp_path)
    try:
        plain = MultiVectorWriter(store, "plain", dense=tiny_dense, colbert=tiny_colbert)
        ids = plain.add(TEXTS, metadata=[{"n": i} for i in range(3)])
        remote = MultiVectorWriter(
            store, "remote", dense=ModelRecord.of(tiny_dense), colbert=ModelRecord.of(tiny_colbert)
        )
        got = remote.add_encoded(
            TEXTS,
            dense_vectors=tiny_dense.encode_documents(TEXTS),
            colbert_vectors=tiny_colbert.encode_documents(TEXTS),
            metadata=[{"n": i} for i in range(3)],
        )
        assert got == ids
        a = {p.id: p for p in store.retrieve("plain", ids, with_payload=True, with_vectors=True)}
        b = {p.id: p for p in store.retrieve("remote", ids, with_payload=True, with_vectors=True)}
        for key in a:
            # Equal but for the fingerprint, which holds the chunk settings a writer
            # without a tokenizer cannot have.
            assert a[key].payload["_lfm"].pop("fingerprint") != b[key].payload["_lfm"].pop(
                "fingerprint"
            )
            assert a[key].payload == b[key].payload
            np.testing.assert_allclose(
                a[key].vector["colbert"], b[key].vector["colbert"], atol=1e-6
            )
        # A record writer can search nothing: it has no model to encode the query.
        with pytest.raises(TypeError, match="cannot encode"):
            remote.search("first")
        # Another model under the same collection is refused, records or not.
        other = ModelRecord("other/model", tiny_dense.dim, digest="sha256:" + "0" * 32)
        with pytest.raises(CollectionError, match="was written with dense model"):
            MultiVectorWriter(
                store, "remote", dense=other, colbert=ModelRecord.of(tiny_colbert)
            ).ensure_collection()
    finally:
        store.close()


def test_add_encoded_checks_the_vectors_before_writing(
    tmp_path: Path, tiny_dense: DenseEncoder
) -> None:
    store = EdgeStore(tmp_path)
    try:
        writer = MultiVectorWriter(store, "c", dense=tiny_dense)
        good = tiny_dense.encode_documents(TEXTS)
        with pytest.raises(InputError, match="2 entries for 3 texts"):
            writer.add_encoded(TEXTS, dense_vectors=good[:2])
        with pytest.raises(InputError, match=r"dense_vectors\[0\] has shape"):
            writer.add_encoded(
                TEXTS, dense_vectors=np.zeros((3, tiny_dense.dim + 1), dtype=np.float32)
            )
        with pytest.raises(TypeError, match="colbert_vectors given"):
            writer.add_encoded(TEXTS, dense_vectors=good, colbert_vectors=[np.zeros((2, 4))] * 3)
        with pytest.raises(TypeError, match="dense_vectors missing"):
            writer.add_encoded(TEXTS)
        assert not store.collection_exists("c")
    finally:
        store.close()
