"""The command line on bad input and on stores it must not mangle: one ``error:`` line, exit 2.

Each case is what a user can run into: files that are not UTF-8, JSON the decoder cannot
nest, escaped lone surrogates, corpora with nothing to index, collection names Qdrant
refuses, a corrupt or foreign store folder, a store of qdrant-client's local mode, another
model than the collection's, a missing extra.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from lfm_core.testing import write_dense_checkpoint
from lfm_qdrant import EdgeStore
from lfm_retrieval import cli

DOCS = [{"id": f"d{i}", "text": f"document {i} about shipping and refunds"} for i in range(5)]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.fixture
def dense_only(tiny_dense_dir: Path) -> list[str]:
    return ["--embedding-model", str(tiny_dense_dir), "--colbert-model", "none", "--device", "cpu"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', r"corpus\.jsonl:2: not UTF-8"),
        (
            b'{"text": "x", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
            r":1: JSON nested too deep",
        ),
        (b'{"text": ""}\n{"text": "   "}\n', r"every one of the 2 documents .* is empty"),
    ],
    ids=["latin1", "deep-json", "all-empty"],
)
def test_bad_corpus_is_one_line_exit_2(tmp_path, capsys, dense_only, content, match):
    corpus = write_bytes(tmp_path / "corpus.jsonl", content)
    code, _, err = run(
        [
            "index",
            str(corpus),
            "--collection",
            "c",
            "--path",
            str(tmp_path / "s"),
            *dense_only,
            "--quiet",
        ],
        capsys,
    )
    assert code == 2
    assert pytest.importorskip("re").search(match, one_error_line(err))


def test_an_escaped_lone_surrogate_is_repaired_with_a_warning(tmp_path, capsys, dense_only):
    corpus = write_bytes(
        tmp_path / "corpus.jsonl",
        b'{"id": "a", "text": "broken \\ud800 text", "tag": "x\\udc00"}\n',
    )
    store = tmp_path / "s"
    code, out, err = run(
        ["index", str(corpus), "--collection", "c", "--path", str(store), *dense_only, "--quiet"],
        capsys,
    )
    assert code == 0, err
    assert "surrogates" in err and "1 points stored" in out
    with EdgeStore(store) as s:
        (record,) = s.scroll("c", limit=10)[0]
    assert record.payload["text"] == "broken \ufffd text" and record.payload["tag"] == "x\ufffd"


@pytest.mark.parametrize("name", ["../x", "", "a" * 256, "a/b"])
def test_collection_names_qdrant_refuses(tmp_path, capsys, corpus, dense_only, name):
    code, _, err = run(
        ["index", str(corpus), "--collection", name, "--path", str(tmp_path / "s"), *dense_only],
        capsys,
    )
    assert code == 2
    assert "--collection: collection name" in one_error_line(err)
    assert not (tmp_path / "x").exists()


def test_qrels_that_are_not_utf8(tmp_path, capsys, dense_only):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "doc"}) + "\n")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "query"}) + "\n")
    (beir / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq\xe91\td1\t1\n")
    code, _, err = run(["eval", str(beir), "--path", str(tmp_path / "s"), *dense_only], capsys)
    assert code == 2
    assert "test.tsv:2: not UTF-8" in one_error_line(err)


def test_eval_skips_qrels_queries_without_text_as_beir_does(tmp_path, capsys, dense_only):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(3))
    )
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "doc 1"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("q1\td1\t1\nq2\td2\t1\nq3\td0\t0\nq1\tmissing\t1\n")
    code, out, err = run(
        ["eval", str(beir), "--path", str(tmp_path / "s"), *dense_only, "--quiet"], capsys
    )
    assert code == 0, err
    assert "1 queries" in out
    assert "2 of 3 query id(s) of qrels/test.tsv are not in queries.jsonl" in err
    assert "1 judged corpus-ids not in the corpus" in out


def test_a_corrupt_store_record_is_one_line(tmp_path, capsys, corpus, dense_only):
    store = tmp_path / "s"
    argv = ["index", str(corpus), "--collection", "c", "--path", str(store), *dense_only, "--quiet"]
    assert cli.main(argv) == 0
    (store / "collections" / "c" / "collection.json").write_text("{not json")
    code, _, err = run(
        ["search", "refunds", "--collection", "c", "--path", str(store), *dense_only], capsys
    )
    assert code == cli.EXIT_STORAGE
    assert "collection.json is corrupt" in one_error_line(err)


def test_a_folder_that_is_not_a_store_is_refused_and_left_alone(
    tmp_path, capsys, corpus, dense_only
):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    code, _, err = run(
        ["index", str(corpus), "--collection", "c", "--path", str(folder), *dense_only], capsys
    )
    assert code == cli.EXIT_STORAGE
    assert "is not a Qdrant Edge store" in one_error_line(err)
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]


def test_a_local_mode_folder_is_refused_with_how_to_move_it(tmp_path, capsys, corpus, dense_only):
    old = tmp_path / "old"
    client = QdrantClient(path=str(old))
    client.create_collection(
        "c", vectors_config={"dense": models.VectorParams(size=4, distance="Cosine")}
    )
    client.close()
    code, _, err = run(
        ["search", "x", "--collection", "c", "--path", str(old), *dense_only], capsys
    )
    assert code == cli.EXIT_STORAGE
    line = one_error_line(err)
    assert "qdrant-client's local mode" in line and "--path NEW_FOLDER" in line


def test_another_model_is_refused_and_search_reads_the_recorded_one(
    tmp_path, capsys, corpus, tiny_dense_dir
):
    store = ["--path", str(tmp_path / "s")]
    index = ["index", str(corpus), "--collection", "c", *store, "--quiet", "--device", "cpu"]
    assert (
        cli.main([*index, "--embedding-model", str(tiny_dense_dir), "--colbert-model", "none"]) == 0
    )
    capsys.readouterr()
    other = write_dense_checkpoint(tmp_path / "other", seed=99)
    code, _, err = run([*index, "--embedding-model", str(other), "--colbert-model", "none"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert str(tiny_dense_dir.resolve()) in line and str(other) in line
    # No model flags: search uses the models the collection records.
    code, out, err = run(
        ["search", "refunds", "--collection", "c", *store, "--device", "cpu"], capsys
    )
    assert code == 0, err
    assert len(out.strip().splitlines()) == 5


def test_a_second_process_on_the_store_gets_one_line(tmp_path, capsys, corpus, dense_only):
    store = tmp_path / "s"
    with EdgeStore(store):
        code, _, err = run(
            ["index", str(corpus), "--collection", "c", "--path", str(store), *dense_only], capsys
        )
    assert code == cli.EXIT_STORAGE
    assert "is in use by another process" in one_error_line(err)


def test_without_the_qdrant_extra_the_command_names_it(
    monkeypatch, tmp_path, capsys, corpus, dense_only
):
    real = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        return None if name in ("qdrant_client", "qdrant_edge") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for argv in (
        ["index", str(corpus), "--collection", "c"],
        ["search", "q", "--collection", "c"],
        ["eval", str(tmp_path)],
    ):
        code, _, err = run([*argv, "--path", str(tmp_path / "s"), *dense_only], capsys)
        assert code == 2
        assert "pip install 'lfm-retrieval[qdrant]'" in one_error_line(err)


def test_the_default_store_is_under_xdg_cache_home(
    monkeypatch, tmp_path, capsys, corpus, dense_only
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["index", str(corpus), "--collection", "c", *dense_only, "--quiet"]) == 0
    assert (tmp_path / "cache" / "lfm-retrieval" / "qdrant" / "lfm-store.json").is_file()


def test_truncation_is_reported_once_with_the_total(tmp_path, capsys, tiny_dense_dir):
    long_docs = [{"id": f"l{i}", "text": "word " * 800} for i in range(7)]
    corpus = tmp_path / "long.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in long_docs), encoding="utf-8")
    argv = ["index", str(corpus), "--collection", "c", "--path", str(tmp_path / "s"), "--quiet",
            "--embedding-model", str(tiny_dense_dir), "--colbert-model", "none", "--device", "cpu",
            "--batch-size", "2", "--no-chunking"]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "truncated" in line]
    assert warnings == [
        "WARNING: 7 of 7 documents were longer than 512 tokens and were truncated to fit the model"
    ]
    assert "more warning(s)" not in err


def test_no_loading_bar_from_transformers(tmp_path, capsys, corpus, minilm_dir):
    argv = ["index", str(corpus), "--collection", "c", "--path", str(tmp_path / "s"), "--quiet",
            "--embedding-model", str(minilm_dir), "--colbert-model", "none", "--device", "cpu"]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "Loading weights" not in err and "%|" not in err
