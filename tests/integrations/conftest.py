"""Fixtures the adapter tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import QdrantClient

from lfm_qdrant import EdgeStore


@pytest.fixture(params=["edge", "memory"])
def client(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """Each store the writer runs on in process: Qdrant Edge, and qdrant-client's local mode."""
    store = EdgeStore(tmp_path / "store") if request.param == "edge" else QdrantClient(":memory:")
    yield store
    store.close()
