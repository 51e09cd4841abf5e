"""Corpus readers: JSONL, BEIR folders, text folders, and their error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lfm_core import InputError
from lfm_retrieval.corpus import (
    CorpusError,
    Document,
    corpus_format,
    count_documents,
    read_beir_qrels,
    read_beir_queries,
    read_corpus,
)


def _write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_jsonl_reads_text_ids_titles_and_metadata(tmp_path):
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "a", "text": "alpha", "title": "A", "lang": "en", "year": 2020},
            {"_id": 7, "text": "beta"},
            {"text": "gamma", "title": ""},
        ],
    )
    assert list(read_corpus(path)) == [
        Document(text="alpha", id="a", title="A", metadata={"lang": "en", "year": 2020}),
        Document(text="beta", id="7", title=None, metadata={}),
        Document(text="gamma", id=None, title=None, metadata={}),
    ]


def test_jsonl_skips_blank_lines_and_counts_documents(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n   \n{"text": "b"}\n', encoding="utf-8")
    assert [d.text for d in read_corpus(path)] == ["a", "b"]
    assert count_documents(path) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "ok"', r"c\.jsonl:2: not valid JSON"),
        ('["text"]', r"c\.jsonl:2: expected a JSON object, got list"),
        ('{"title": "no body"}', r"c\.jsonl:2: 'text' must be a string, got NoneType"),
        ('{"text": 3}', r"c\.jsonl:2: 'text' must be a string, got int"),
        ('{"text": "x", "id": [1]}', r"c\.jsonl:2: id must be a string or an int, got list"),
        ('{"text": "x", "title": 5}', r"c\.jsonl:2: 'title' must be a string, got int"),
    ],
)
def test_jsonl_errors_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        list(read_corpus(path))


def test_corpus_errors_are_input_errors():
    # The CLI and library callers catch one family (lfm_core's) for bad input.
    assert issubclass(CorpusError, InputError)


def test_content_joins_title_and_text_as_beir_does():
    assert Document(text="body", title="Head").content == "Head body"
    assert Document(text="", title="Head").content == "Head"
    assert Document(text="body").content == "body"


def test_missing_corpus_is_reported_with_what_is_accepted(tmp_path):
    with pytest.raises(CorpusError, match=r"corpus not found: .*nope.*expected a JSONL file"):
        read_corpus(tmp_path / "nope")


def test_a_non_jsonl_file_is_refused(tmp_path):
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(CorpusError, match=r"not a \.jsonl file"):
        corpus_format(tmp_path / "c.csv")


def _beir_folder(root: Path) -> Path:
    _write_jsonl(
        root / "corpus.jsonl",
        [{"_id": "d1", "title": "T1", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}],
    )
    _write_jsonl(
        root / "queries.jsonl", [{"_id": "q1", "text": "first?"}, {"_id": 2, "text": "second?"}]
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n2\td2\t0\n", encoding="utf-8"
    )
    return root


def test_beir_folder_is_detected_and_read(tmp_path):
    root = _beir_folder(tmp_path)
    assert corpus_format(root) == "beir"
    assert [(d.id, d.content) for d in read_corpus(root)] == [("d1", "T1 one"), ("d2", "two")]
    assert read_beir_queries(root) == {"q1": "first?", "2": "second?"}
    assert read_beir_qrels(root) == {"q1": {"d1": 1, "d2": 2}, "2": {"d2": 0}}
    assert count_documents(root) == 2


def test_missing_qrels_split_lists_the_splits_present(tmp_path):
    root = _beir_folder(tmp_path)
    with pytest.raises(
        CorpusError, match=r"qrels not found: .*dev\.tsv.*splits present: \['test'\]"
    ):
        read_beir_qrels(root, "dev")


def test_malformed_qrels_row_names_the_line(tmp_path):
    root = _beir_folder(tmp_path)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(CorpusError, match=r"test\.tsv:2: score 'yes' is not an int"):
        read_beir_qrels(root)


def test_text_folder_reads_txt_and_md_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b.md").write_text("# Bee", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("ay", encoding="utf-8")
    (tmp_path / "a.txt").write_text("top", encoding="utf-8")
    (tmp_path / "skip.pdf").write_bytes(b"%PDF")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden", encoding="utf-8")
    docs = list(read_corpus(tmp_path))
    assert corpus_format(tmp_path) == "text"
    assert [(d.id, d.text) for d in docs] == [
        ("a.txt", "top"),
        ("b.md", "# Bee"),
        ("sub/a.txt", "ay"),
    ]
    assert docs[2].metadata == {"path": "sub/a.txt"}
    assert count_documents(tmp_path) == 3


def test_empty_text_folder_is_an_error(tmp_path):
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(CorpusError, match=r"no \.txt, \.md or \.html file in folder"):
        list(read_corpus(tmp_path))


def test_non_utf8_text_file_is_named(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.txt: not UTF-8 text"):
        list(read_corpus(tmp_path))


def test_scifact_matches_its_published_statistics(shared_data):
    folder = shared_data / "beir-scifact"
    qrels = read_beir_qrels(folder, "test")
    assert count_documents(folder) == 5183
    assert len(read_beir_queries(folder)) == 1109
    assert (len(qrels), sum(len(v) for v in qrels.values())) == (300, 339)
    first = next(iter(read_corpus(folder)))
    assert first.id == "4983" and first.content.startswith(first.title + " ")
