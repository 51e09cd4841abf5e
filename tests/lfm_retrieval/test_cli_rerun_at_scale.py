"""``index`` run again over a complete 20,000-document collection with float metadata.

Floats are where a resume goes wrong: the engine gives some of them back rounded
differently (``i / 3``), so a check that compares the stored payload with the input would
see every such document as changed and encode it again. The fingerprint is computed from the
input, so the second run must find all 20,000 documents unchanged without one encoder call.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lfm_core
from lfm_qdrant import EdgeStore
from lfm_retrieval import cli

N = 20_000


def test_rerun_over_20000_documents_with_float_metadata_encodes_nothing(
    tmp_path: Path, models: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    corpus = tmp_path / "catalog.jsonl"
    with corpus.open("w", encoding="utf-8") as out:
        for i in range(N):
            record = {
                "id": f"sku-{i}",
                "text": f"item {i}",
                "price": i / 3,
                "weight_kg": 0.1 * i,
                "rating": {"mean": i / 7, "n": i % 13},
            }
            out.write(json.dumps(record) + "\n")
    args = ["index", str(corpus), "--collection", "catalog", *models]
    args += ["--path", str(tmp_path / "store"), "--quiet", "--batch-size", "1000"]
    # The first run writes the collection with stand-in vectors of the models' widths (the
    # vectors' values play no part in a resume; encoding 20,000 texts would only cost time).
    with monkeypatch.context() as fast:
        rng = np.random.default_rng(0)

        def dense_vectors(self, texts, **kwargs):
            return rng.standard_normal((len(texts), self.dim)).astype(np.float32)

        def colbert_vectors(self, texts, **kwargs):
            return [rng.standard_normal((3, self.dim)).astype(np.float32) for _ in texts]

        fast.setattr(lfm_core.DenseEncoder, "encode_documents", dense_vectors)
        fast.setattr(lfm_core.LateInteractionEncoder, "encode_documents", colbert_vectors)
        assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert f"{N} added, 0 updated, 0 unchanged" in first

    with EdgeStore(tmp_path / "store") as store:
        points, _ = store.scroll("catalog", limit=N, with_payload=True)
    given = {f"sku-{i}": i / 3 for i in range(N)}
    # The engine does give some floats back otherwise than they were written ...
    assert len(points) == N
    assert any(p.payload["price"] != given[p.payload["id"]] for p in points) or any(
        p.payload["weight_kg"] != 0.1 * int(p.payload["id"][4:]) for p in points
    )

    calls = {"dense": 0, "colbert": 0}

    def counted(cls: type, side: str) -> None:
        original = cls.encode_documents

        def encode_documents(self, texts, **kwargs):
            calls[side] += 1
            return original(self, texts, **kwargs)

        monkeypatch.setattr(cls, "encode_documents", encode_documents)

    counted(lfm_core.DenseEncoder, "dense")
    counted(lfm_core.LateInteractionEncoder, "colbert")
    assert cli.main(args) == 0
    again = capsys.readouterr().out
    # ... and the second run still finds every document unchanged, encoding none.
    assert f"0 added, 0 updated, {N} unchanged; {N} points stored" in again
    assert calls == {"dense": 0, "colbert": 0}
