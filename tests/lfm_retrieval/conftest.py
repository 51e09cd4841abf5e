"""Fixtures shared by the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder


@pytest.fixture
def models(tiny_dense_dir: Path, tiny_colbert_dir: Path) -> list[str]:
    """The CLI flags that load the tiny dense and ColBERT checkpoints on CPU."""
    return [
        "--embedding-model",
        str(tiny_dense_dir),
        "--colbert-model",
        str(tiny_colbert_dir),
        "--device",
        "cpu",
    ]


@pytest.fixture(scope="module")
def edge_store(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> Iterator[Any]:
    """An Edge store with one hybrid collection, ``faq``: ids 1-3, ``lang`` en, de, en."""
    from lfm_qdrant import EdgeStore, MultiVectorWriter

    store = EdgeStore(tmp_path_factory.mktemp("served-edge-store"))
    MultiVectorWriter(store, "faq", dense=tiny_dense, colbert=tiny_colbert).add(
        ["orders ship in two days", "returns within 30 days", "gift cards never expire"],
        ids=[1, 2, 3],
        metadata=[{"lang": "en"}, {"lang": "de"}, {"lang": "en"}],
    )
    yield store
    store.close()
