"""Fixtures shared by the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest


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
