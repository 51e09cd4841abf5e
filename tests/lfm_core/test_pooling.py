"""Token pooling (lfm_core.pooling) and the ``pool_factor`` of ColBERT documents."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient

from lfm_core import InputError
from lfm_core.pooling import pool_tokens
from lfm_qdrant import EdgeStore, MultiVectorWriter


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("pool_factor", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 5, 31, 64])
def test_pooled_shape_unit_rows_and_protected_first_row(pool_factor, n):
    v = _unit(np.random.default_rng(n).standard_normal((n, 16)))
    out = pool_tokens(v, pool_factor)
    expected = n if pool_factor == 1 or n - 1 <= 1 else 1 + max(1, (n - 1) // pool_factor)
    assert out.shape == (expected, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[0], v[0])


def test_duplicated_tokens_pool_back_to_the_originals():
    base = _unit(np.random.default_rng(0).standard_normal((4, 32)))
    doubled = np.concatenate([base[:1], np.repeat(base[1:], 2, axis=0)])  # 1 + 3 pairs
    np.testing.assert_allclose(pool_tokens(doubled, 2), base, atol=1e-6)


@pytest.mark.parametrize(("bad", "error"), [(0, InputError), (2.0, TypeError), (True, TypeError)])
def test_bad_pool_factor_is_named(bad, error):
    with pytest.raises(error, match="pool_factor"):
        pool_tokens(np.ones((4, 2), dtype=np.float32), bad)


def test_encoder_pool_factor_pools_each_document(tiny_colbert):
    docs = ["a long document " * 20, "short", ""]
    full = tiny_colbert.encode_documents(docs)
    pooled = tiny_colbert.encode_documents(docs, pool_factor=2)
    for f, p in zip(full, pooled, strict=True):
        np.testing.assert_allclose(p, pool_tokens(f, 2), atol=1e-6)
        assert p.shape[0] <= max(f.shape[0], 1)
    assert pooled[0].shape[0] < full[0].shape[0]


@pytest.mark.parametrize("datatype", ["float16", "turbo8"])
@pytest.mark.parametrize("kind", ["edge", "local"])
def test_smaller_colbert_storage_keeps_the_ranking_close(
    tmp_path, tiny_dense, tiny_colbert, kind, datatype
):
    texts = [
        f"note {i} on {w}" for i, w in enumerate(["shipping", "refunds", "cats", "tea", "jazz"] * 4)
    ]
    client = EdgeStore(tmp_path / "e") if kind == "edge" else QdrantClient(path=str(tmp_path / "l"))
    try:
        full = MultiVectorWriter(client, "full", dense=tiny_dense, colbert=tiny_colbert)
        small = MultiVectorWriter(
            client,
            "small",
            dense=tiny_dense,
            colbert=tiny_colbert,
            colbert_datatype=datatype,
            pool_factor=2,
        )
        full.add(texts)
        small.add(texts)
        params = client.get_collection("small").config.params.vectors["colbert"]
        assert params.datatype.value == datatype
        a = [h.id for h in full.search("refunds", limit=5, prefetch_limit=20)]
        b = [h.id for h in small.search("refunds", limit=5, prefetch_limit=20)]
        assert len(set(a) & set(b)) >= 3  # random tiny weights: a loose bound
    finally:
        client.close()


def test_uint8_storage_is_refused_because_it_would_zero_unit_vectors(tmp_path, tiny_colbert):
    with pytest.raises(InputError, match="would become zeros"):
        MultiVectorWriter(
            EdgeStore(tmp_path / "e"), "c", colbert=tiny_colbert, colbert_datatype="uint8"
        )


def test_turbo8_in_edge_keeps_maxsim_close_to_float32(tmp_path, tiny_colbert):
    texts = [f"note {i} on {w}" for i, w in enumerate(["shipping", "refunds", "cats", "tea"] * 3)]
    with EdgeStore(tmp_path / "e") as store:
        exact = MultiVectorWriter(store, "f32", colbert=tiny_colbert)
        small = MultiVectorWriter(store, "t8", colbert=tiny_colbert, colbert_datatype="turbo8")
        exact.add(texts)
        small.add(texts)
        a = {h.id: h.score for h in exact.search("refunds", limit=12)}
        b = {h.id: h.score for h in small.search("refunds", limit=12)}
    assert a.keys() == b.keys()
    # 32 query vectors x a max of dot products with 2e-3 error per number: well under 0.5.
    assert max(abs(a[k] - b[k]) for k in a) < 0.5
