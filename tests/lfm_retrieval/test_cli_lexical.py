"""The command line and the lexical leg: modes checked first, BM25 without a model, JSON hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfm_qdrant import EdgeStore
from lfm_retrieval import cli

DOCS = [
    {"id": "sku-1", "text": "Cordless drill XR-4471-B, 18 V, two batteries"},
    {"id": "sku-2", "text": "Akku-Bohrschrauber KQ-1187-T, 18 V, zwei Akkus"},
    {"id": "err-1", "text": "Update error E0x8024: the installer could not reach the server"},
    {"id": "faq-1", "text": "Where is my order? Tracking links are sent by email"},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture
def indexed(tmp_path: Path, corpus: Path, tiny_dense_dir: Path, tiny_colbert_dir: Path):
    store = ["--path", str(tmp_path / "q")]
    models = ["--embedding-model", str(tiny_dense_dir), "--colbert-model", str(tiny_colbert_dir)]
    assert cli.main(["index", str(corpus), "--collection", "cat", *models, *store, "--quiet"]) == 0
    return store, models


def test_search_json_prints_one_object_per_hit_with_legs(indexed, capsys):
    store, models = indexed
    argv = ["search", "E0x8024", "--collection", "cat", *store, *models, "--json", "--explain"]
    assert cli.main([*argv, "--limit", "3"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3
    assert hits[0]["payload"]["id"] == "err-1"  # the code's only exact match comes first
    assert hits[0]["legs"]["lexical"]["rank"] == 1
    assert set(hits[0]) == {"id", "score", "payload", "legs", "matches"}
    assert hits[0]["matches"]["score"] == pytest.approx(hits[0]["legs"]["colbert"]["score"], 1e-4)


def test_lexical_search_loads_no_model(indexed, capsys, monkeypatch):
    store, _ = indexed

    def refuse(*args, **kwargs):
        raise AssertionError("a lexical search loaded a model")

    monkeypatch.setattr(cli, "_load_models", refuse)
    argv = ["search", "KQ-1187-T", "--collection", "cat", *store, "--mode", "lexical"]
    assert cli.main(argv) == 0
    assert "[sku-2]" in capsys.readouterr().out.splitlines()[0]


def test_index_no_lexical_leaves_bm25_out(tmp_path, corpus, tiny_dense_dir, capsys):
    store = ["--path", str(tmp_path / "q"), "--embedding-model", str(tiny_dense_dir)]
    argv = ["index", str(corpus), "--collection", "c", "--colbert-model", "none", "--no-lexical"]
    assert cli.main([*argv, *store, "--quiet"]) == 0
    with EdgeStore(tmp_path / "q") as edge:
        assert not edge.get_collection("c").config.params.sparse_vectors
    search = ["search", "drill", "--collection", "c", *store, "--colbert-model", "none"]
    assert cli.main([*search, "--mode", "lexical"]) == 2
    assert "needs the collection's 'bm25' sparse vector" in capsys.readouterr().err


def _beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d["id"], "text": d["text"]}) + "\n" for d in DOCS)
    )
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "E0x8024"}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\terr-1\t1\n")
    return folder


def test_eval_checks_the_mode_before_indexing(tmp_path, tiny_dense_dir, capsys):
    folder = _beir(tmp_path / "beir")
    argv = ["eval", str(folder), "--path", str(tmp_path / "q"), "--quiet"]
    argv += ["--embedding-model", str(tiny_dense_dir), "--colbert-model", "none"]
    assert cli.main([*argv, "--mode", "colbert"]) == 2
    assert "search mode 'colbert' needs" in capsys.readouterr().err
    with EdgeStore(tmp_path / "q") as edge:  # nothing was indexed before the refusal
        assert edge.get_collections().collections == []
    # Dense + lexical is a hybrid of its own, with no ColBERT model.
    assert cli.main([*argv, "--mode", "hybrid"]) == 0
    out = capsys.readouterr().out
    assert "mode hybrid" in out and "nDCG@10 = 1.0000" in out
