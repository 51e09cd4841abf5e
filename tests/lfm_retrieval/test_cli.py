"""The ``lfm-retrieval`` command end to end, through ``main([...])``, on tiny checkpoints."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest

import lfm_core
from lfm_qdrant import EdgeStore, text_point_id
from lfm_retrieval import cli, cli_store
from lfm_retrieval.evaluation import evaluate

DOCS = [
    {"id": "cat", "title": "Cats", "text": "The cat sat on the mat and purred."},
    {"id": "rust", "text": "Rust's borrow checker keeps shared state safe across threads."},
    {"id": "oven", "text": "Preheat the oven to 200C, then butter a cake tin."},
    {"id": "ship", "text": "Where is my order? Shipping takes three days.", "lang": "en"},
    {"text": "Vector search with a 350M encoder."},
    {"id": 6, "text": "The quick brown fox jumps over the lazy dog."},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def _points(path: Path, collection: str) -> int:
    with EdgeStore(path) as store:
        return store.count(collection, exact=True).count


def _ranked_labels(stdout: str) -> list[str]:
    return re.findall(r"^\s*\d+\.\s+-?\d+\.\d{4}\s+\[([^\]]+)\]", stdout, flags=re.MULTILINE)


def _contents(docs=DOCS) -> list[str]:
    return [f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in docs]


class _EncodeSpy:
    """Counts the texts DenseEncoder.encode_documents sees; optionally fails on call ``fail_at``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> None:
        self.texts = 0
        self.calls = 0
        original = lfm_core.DenseEncoder.encode_documents
        spy = self

        def encode_documents(encoder, texts, **kwargs):
            spy.calls += 1
            if spy.calls == fail_at:
                raise KeyboardInterrupt
            texts = list(texts)
            spy.texts += len(texts)
            return original(encoder, texts, **kwargs)

        monkeypatch.setattr(lfm_core.DenseEncoder, "encode_documents", encode_documents)


def test_index_then_search_prints_ranked_results_with_snippets(tmp_path, corpus, models, capsys):
    store = ["--path", str(tmp_path / "q")]
    assert cli.main(["index", str(corpus), "--collection", "docs", *models, *store, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(
        f"docs: 6 documents read; 6 added, 0 updated, 0 unchanged; 6 points stored in "
        f"{tmp_path / 'q'}"
    )

    assert (
        cli.main(
            ["search", "cat on a mat", "--collection", "docs", "--limit", "3", *models, *store]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    # Corpus ids come back as labels, and a title is shown apart from its text.
    cat = next(line for line in lines if "[cat]" in line)
    assert "Cats — The cat sat on the mat and purred." in cat


@pytest.mark.parametrize("mode", ["dense", "colbert", "hybrid"])
def test_search_modes_rank_like_the_encoders_themselves(
    tmp_path, corpus, models, capsys, mode, tiny_dense, tiny_colbert
):
    store = ["--path", str(tmp_path / "q")]
    # Without the lexical leg, hybrid is dense prefetch then MaxSim (the lexical leg's own
    # tests are in test_cli_lexical.py and tests/integrations/test_qdrant_lexical.py).
    index = ["index", str(corpus), "--collection", "docs", "--no-lexical"]
    assert cli.main([*index, *models, *store, "--quiet"]) == 0
    query = "who keeps threads safe?"
    assert cli.main(["search", query, "--collection", "docs", "--mode", mode, *models, *store]) == 0
    labels = _ranked_labels(capsys.readouterr().out)

    texts = _contents()
    if mode == "dense":
        scores = tiny_dense.encode_documents(texts) @ tiny_dense.encode_queries([query])[0]
        expected = list(np.argsort(-scores, kind="stable"))
    else:  # the prefetch (100) holds every document, so hybrid = MaxSim over all of them
        expected = [i for i, _ in tiny_colbert.rerank(query, texts)]
    # A document without an id is labelled with its point id, made from its text.
    ids = [str(d["id"]) if "id" in d else text_point_id(text) for d, text in zip(DOCS, texts)]
    assert labels == [ids[i] for i in expected]


def test_index_reads_beir_and_text_folders(tmp_path, models, capsys):
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": f"T{i}", "text": f"doc {i}"}) + "\n"
            for i in range(4)
        )
    )
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.md").write_text("# Title\n\nBody.")
    (notes / "sub" / "b.txt").write_text("Plain text.")
    (notes / "empty.txt").write_text("   \n")
    store = ["--path", str(tmp_path / "q"), "--quiet"]
    assert cli.main(["index", str(beir), "--collection", "beir", *models, *store]) == 0
    assert cli.main(["index", str(notes), "--collection", "notes", *models, *store]) == 0
    out = capsys.readouterr().out
    assert "beir: 4 documents read; 4 added, 0 updated, 0 unchanged; 4 points" in out
    assert (
        "notes: 3 documents read (skipped 1 empty); 2 added, 0 updated, 0 unchanged; 2 points"
        in out
    )
    assert _points(tmp_path / "q", "beir") == 4


def test_rerunning_index_encodes_nothing_and_adds_no_point(tmp_path, corpus, models, monkeypatch):
    args = [
        "index",
        str(corpus),
        "--collection",
        "docs",
        *models,
        "--path",
        str(tmp_path / "q"),
        "--quiet",
    ]
    assert cli.main(args) == 0
    spy = _EncodeSpy(monkeypatch)
    assert cli.main(args) == 0
    assert spy.texts == 0
    assert _points(tmp_path / "q", "docs") == len(DOCS)


def test_an_interrupted_index_is_finished_by_running_it_again(
    tmp_path, corpus, models, monkeypatch, capsys
):
    args = [
        "index",
        str(corpus),
        "--collection",
        "docs",
        *models,
        "--path",
        str(tmp_path / "q"),
        "--batch-size",
        "2",
        "--quiet",
    ]
    spy = _EncodeSpy(monkeypatch, fail_at=2)  # Ctrl-C while encoding the second batch
    assert cli.main(args) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "error: interrupted after 2 of 6 documents; run the same command again to finish" in err
    assert _points(tmp_path / "q", "docs") == 2

    spy = _EncodeSpy(monkeypatch)
    assert cli.main(args) == 0
    assert spy.texts == 4  # only what the first run had not stored
    assert _points(tmp_path / "q", "docs") == 6


def test_dense_only_collection_searches_without_a_colbert_model(
    tmp_path, corpus, tiny_dense_dir, capsys
):
    store = [
        "--path",
        str(tmp_path / "q"),
        "--embedding-model",
        str(tiny_dense_dir),
        "--colbert-model",
        "none",
    ]
    assert cli.main(["index", str(corpus), "--collection", "d", *store, "--quiet"]) == 0
    assert cli.main(["search", "fox", "--collection", "d", *store, "--limit", "2"]) == 0
    assert len(_ranked_labels(capsys.readouterr().out)) == 2
    assert cli.main(["search", "fox", "--collection", "d", *store, "--mode", "colbert"]) == 2
    assert (
        "error: search mode 'colbert' needs the collection's 'colbert' vector; it has "
        "['dense', 'lexical']" in capsys.readouterr().err
    )


def _one_error_line(capsys, code: int, returned: int, pattern: str) -> None:
    captured = capsys.readouterr()
    assert returned == code
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert "Traceback" not in captured.err


def test_missing_corpus_is_one_error_line(tmp_path, models, capsys):
    code = cli.main(
        [
            "index",
            str(tmp_path / "nope.jsonl"),
            "--collection",
            "c",
            *models,
            "--path",
            str(tmp_path / "q"),
        ]
    )
    _one_error_line(
        capsys, 2, code, r"error: corpus not found: '.*nope\.jsonl'; expected a JSONL file, .*"
    )


def test_malformed_corpus_line_is_one_error_line(tmp_path, models, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    code = cli.main(
        ["index", str(bad), "--collection", "c", *models, "--path", str(tmp_path / "q"), "--quiet"]
    )
    _one_error_line(capsys, 2, code, r"error: .*bad\.jsonl:2: not valid JSON .*")


def test_duplicate_ids_are_one_error_line(tmp_path, models, capsys):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "one"}\n\n{"id": "a", "text": "two"}\n')
    code = cli.main(
        ["index", str(dup), "--collection", "c", *models, "--path", str(tmp_path / "q"), "--quiet"]
    )
    _one_error_line(
        capsys,
        2,
        code,
        r"error: document id 'a' appears twice: .*dup\.jsonl:1 and .*dup\.jsonl:3; ids must be "
        "unique",
    )


def test_unloadable_model_is_one_error_line(tmp_path, corpus, capsys):
    # Offline, the hub is unreachable; online, the id does not exist: a CheckpointError either way.
    code = cli.main(
        [
            "index",
            str(corpus),
            "--collection",
            "c",
            "--embedding-model",
            "lfm-retrieval-tests/no-such-model",
            "--colbert-model",
            "none",
            "--path",
            str(tmp_path / "q"),
        ]
    )
    _one_error_line(capsys, 2, code, r"error: .*no-such-model.*")


def test_unreachable_server_is_one_error_line(tmp_path, corpus, tiny_dense_dir, capsys):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = cli.main(
        [
            "index",
            str(corpus),
            "--collection",
            "c",
            "--embedding-model",
            str(tiny_dense_dir),
            "--colbert-model",
            "none",
            "--url",
            f"http://127.0.0.1:{port}",
        ]
    )
    _one_error_line(
        capsys, 1, code, rf"error: cannot reach the Qdrant server at http://127\.0\.0\.1:{port}: .*"
    )


def test_searching_a_missing_collection_says_how_to_build_it(tmp_path, models, capsys):
    code = cli.main(
        ["search", "q", "--collection", "ghost", *models, "--path", str(tmp_path / "q")]
    )
    _one_error_line(
        capsys,
        2,
        code,
        r"error: collection 'ghost' does not exist; build it first with `lfm-retrieval index CORPUS --collection ghost`",
    )


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            [
                "index",
                "c.jsonl",
                "--collection",
                "c",
                "--embedding-model",
                "none",
                "--colbert-model",
                "none",
            ],
            r"error: --embedding-model and --colbert-model are both 'none'; keep at least one",
        ),
        (
            ["search", "q", "--collection", "c", "--path", "p", "--url", "http://x"],
            r"error: pass --path \(embedded Qdrant Edge\) or --url \(a server\), not both",
        ),
        (
            ["eval", "no-such-folder"],
            r"error: not a BEIR folder: 'no-such-folder' has no corpus\.jsonl .*",
        ),
    ],
)
def test_configuration_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv, pattern):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    _one_error_line(capsys, 2, cli.main(argv), pattern)


def test_bad_option_values_exit_2_with_usage(capsys):
    assert cli.main(["search", "q", "--collection", "c", "--mode", "sparse"]) == 2
    assert "invalid choice: 'sparse'" in capsys.readouterr().err
    assert cli.main(["index", "c.jsonl", "--collection", "c", "--batch-size", "0"]) == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_default_qdrant_path_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli_store.default_qdrant_path() == tmp_path / "lfm-retrieval" / "qdrant"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        cli_store.default_qdrant_path() == tmp_path / "home" / ".cache" / "lfm-retrieval" / "qdrant"
    )


def test_the_installed_command_has_no_bench(capsys):
    """The benchmark harness lives in the repository, not the wheel: no command may fail."""
    assert cli.main(["bench"]) == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def _tiny_beir(
    root: Path, docs: list[dict], queries: dict[str, str], qrels: dict[str, dict[str, int]]
) -> Path:
    root.mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    )
    (root / "qrels").mkdir()
    rows = [f"{q}\t{d}\t{s}" for q, judged in qrels.items() for d, s in judged.items()]
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n"
    )
    return root


def test_eval_prints_the_metrics_and_reuses_its_index(tmp_path, models, monkeypatch, capsys):
    docs = [{"_id": str(i), "title": f"T{i}", "text": d["text"]} for i, d in enumerate(DOCS)]
    queries = {"q1": "cat on a mat", "q2": "borrow checker", "q3": "oven"}
    qrels = {"q1": {"0": 1}, "q2": {"1": 1}, "q3": {"2": 1, "5": 1}}
    folder = _tiny_beir(tmp_path / "tiny-beir", docs, queries, qrels)
    args = ["eval", str(folder), *models, "--path", str(tmp_path / "q"), "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^tiny-beir \(test\): 3 queries, 6 documents, mode hybrid, collection 'eval-tiny-beir-[0-9a-f]{8}'",
        out,
        re.M,
    )
    metrics = dict(re.findall(r"^(nDCG@10|Recall@10|Recall@100) = (\d\.\d{4})$", out, re.M))
    assert list(metrics) == ["nDCG@10", "Recall@10", "Recall@100"]
    # Every document is retrieved for every query: Recall@10 and @100 are 1.
    assert metrics["Recall@10"] == metrics["Recall@100"] == "1.0000"

    spy = _EncodeSpy(monkeypatch)
    assert cli.main(args) == 0
    assert spy.texts == 0  # the second run searches the index built by the first
    assert (
        dict(
            re.findall(
                r"^(nDCG@10|Recall@10|Recall@100) = (\d\.\d{4})$", capsys.readouterr().out, re.M
            )
        )
        == metrics
    )


def test_eval_with_missing_qrels_fails_before_indexing(tmp_path, models, monkeypatch, capsys):
    folder = _tiny_beir(tmp_path / "b", [{"_id": "d", "text": "x"}], {"q": "x"}, {"q": {"d": 1}})
    (folder / "qrels" / "test.tsv").unlink()
    spy = _EncodeSpy(monkeypatch)
    code = cli.main(["eval", str(folder), *models, "--path", str(tmp_path / "q")])
    _one_error_line(capsys, 2, code, r"error: BEIR qrels not found: .*test\.tsv.*")
    assert spy.calls == 0


def test_eval_on_a_scifact_slice_matches_brute_force_search(
    tmp_path, shared_data, minilm_dir, minilm, capsys
):
    """The Qdrant path (index, search, payload ids) gives the metrics of exact numpy search."""
    from lfm_retrieval.corpus import read_beir_qrels, read_beir_queries, read_corpus

    scifact = shared_data / "beir-scifact"
    qrels = dict(list(read_beir_qrels(scifact).items())[:8])
    relevant = {d for judged in qrels.values() for d in judged}
    docs = [d for d in read_corpus(scifact) if d.id in relevant]
    docs += [d for d in read_corpus(scifact) if d.id not in relevant][: 24 - len(docs)]
    queries = read_beir_queries(scifact)
    folder = _tiny_beir(
        tmp_path / "scifact-slice",
        [{"_id": d.id, "title": d.title, "text": d.text} for d in docs],
        {q: queries[q] for q in qrels},
        qrels,
    )
    code = cli.main(
        [
            "eval",
            str(folder),
            "--embedding-model",
            str(minilm_dir),
            "--colbert-model",
            "none",
            "--mode",
            "dense",
            "--no-chunking",  # documents whole (cut at the window), as the numpy search reads them
            "--path",
            str(tmp_path / "q"),
            "--quiet",
        ]
    )
    assert code == 0
    printed = dict(re.findall(r"^(\S+) = (\d\.\d{4})$", capsys.readouterr().out, re.M))

    doc_vectors = minilm.encode_documents([d.content for d in docs])
    query_vectors = minilm.encode_queries([queries[q] for q in qrels])
    run = {
        qid: {d.id: float(s) for d, s in zip(docs, doc_vectors @ qv, strict=True)}
        for qid, qv in zip(qrels, query_vectors, strict=True)
    }
    expected = evaluate(qrels, run)
    assert printed == {name: f"{value:.4f}" for name, value in expected.items()}
    assert expected["nDCG@10"] > 0.5  # a real model on real data: far above chance


def test_crosslingual_prints_both_tables(tmp_path, tiny_dense_dir, capsys):
    from lfm_retrieval.crosslingual import NTREX_FILES

    for code, name in NTREX_FILES.items():
        (tmp_path / name).write_text("".join(f"line {i} in {code}\r\n" for i in range(4)))
    argv = ["crosslingual", str(tmp_path), "--languages", "en,de,ja", "--lines", "3"]
    assert cli.main([*argv, "--embedding-model", str(tiny_dense_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 sentences per language" in out
    assert out.count("| query \\ doc | en | de | ja |") == 2
    assert re.search(r"^Recall@10 .*^MRR ", out, re.M | re.S)
