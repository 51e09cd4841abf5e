"""``index --sync`` over a folder that changes: deletes, counts, kills, bad files."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfm_qdrant import EdgeStore
from lfm_retrieval import cli
from lfm_retrieval.corpus import read_text_folder

CHUNKS = ["--chunk-tokens", "24", "--chunk-overlap", "4"]


def _paragraphs(seed: int, n: int) -> str:
    words = ["install", "the", "server", "then", "restart", "cache", "and", "check", "logs"]
    rng = np.random.default_rng(seed)
    return "\n\n".join(
        " ".join(words[i] for i in rng.integers(0, len(words), 14)).capitalize() + "."
        for _ in range(n)
    )


def _folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "guide.md").write_text("# Guide\n\n" + _paragraphs(1, 8), encoding="utf-8")
    (root / "notes.txt").write_text(_paragraphs(2, 3), encoding="utf-8")
    (root / "faq").mkdir(exist_ok=True)
    (root / "faq" / "page.html").write_text(
        "<html><head><title>FAQ</title></head><body><p>"
        + "</p><p>".join(_paragraphs(3, 4).split("\n\n"))
        + "</p><script>x()</script></body></html>",
        encoding="utf-8",
    )
    (root / "image.png").write_bytes(b"\x89PNG\x00\x00")  # not a text suffix: ignored
    return root


def _state(path: Path, collection: str = "kb") -> dict[str, Any]:
    with EdgeStore(path) as store:
        points, _ = store.scroll(collection, limit=100_000, with_payload=True, with_vectors=True)
    return {
        str(p.id): (p.payload, np.round(np.asarray(p.vector["dense"]), 4).tolist()) for p in points
    }


def _index(folder: Path, store: Path, models: list[str], *extra: str) -> int:
    return cli.main(
        ["index", str(folder), "--collection", "kb", "--path", str(store), "--quiet"]
        + models
        + CHUNKS
        + list(extra)
    )


@pytest.fixture
def dense_only(tiny_dense_dir: Path) -> list[str]:
    return ["--embedding-model", str(tiny_dense_dir), "--colbert-model", "none", "--device", "cpu"]


def test_folder_reader_takes_md_txt_html_with_titles(tmp_path) -> None:
    docs = {d.id: d for d in read_text_folder(_folder(tmp_path / "kb"))}
    assert sorted(docs) == ["faq/page.html", "guide.md", "notes.txt"]
    assert docs["faq/page.html"].title == "FAQ" and docs["guide.md"].title == "Guide"
    assert "x()" not in docs["faq/page.html"].text
    assert docs["faq/page.html"].text.count("\n\n") == 3  # one paragraph per <p>


def test_sync_after_deleting_a_file_removes_its_points_and_nothing_else(
    tmp_path, dense_only, capsys
) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    assert _index(folder, store, dense_only, "--sync", "--json") == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["added"], first["updated"], first["unchanged"], first["deleted"]) == (3, 0, 0, 0)
    before = _state(store)
    assert first["points"] == len(before) > 3  # the guide is several chunks

    (folder / "guide.md").unlink()
    assert _index(folder, store, dense_only, "--sync", "--json") == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["added"], second["updated"], second["unchanged"], second["deleted"]) == (
        0,
        0,
        2,
        1,
    )
    after = _state(store)
    assert after == {pid: v for pid, v in before.items() if v[0]["path"] != "guide.md"}


def test_index_without_sync_keeps_deleted_files_and_prints_counts(
    tmp_path, dense_only, capsys
) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    assert _index(folder, store, dense_only) == 0
    (folder / "notes.txt").write_text("notes, rewritten", encoding="utf-8")
    (folder / "guide.md").unlink()
    capsys.readouterr()
    assert _index(folder, store, dense_only) == 0
    out = capsys.readouterr().out
    assert "2 documents read; 0 added, 1 updated, 1 unchanged;" in out
    assert any(p[0]["path"] == "guide.md" for p in _state(store).values())


_KILLED = """
import sys, time
import lfm_core
from lfm_retrieval import cli

original = lfm_core.DenseEncoder.encode_documents

def slow(encoder, texts, **kwargs):
    print("encoding", flush=True)
    time.sleep(0.3)
    return original(encoder, texts, **kwargs)

lfm_core.DenseEncoder.encode_documents = slow
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_killed_sync_run_again_ends_as_one_clean_run(tmp_path, dense_only) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    for i in range(6):
        (folder / f"extra{i}.txt").write_text(_paragraphs(10 + i, 4), encoding="utf-8")
    assert _index(folder, store, dense_only, "--sync") == 0
    # The corpus changes: a file removed, one shrunk, one grown, new ones.
    (folder / "extra0.txt").unlink()
    (folder / "guide.md").write_text("# Guide\n\nShort now.", encoding="utf-8")
    (folder / "notes.txt").write_text(_paragraphs(2, 12), encoding="utf-8")
    for i in range(6, 12):
        (folder / f"extra{i}.txt").write_text(_paragraphs(10 + i, 4), encoding="utf-8")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(_KILLED))
    argv = ["index", str(folder), "--collection", "kb", "--path", str(store), "--quiet"]
    argv += [*dense_only, *CHUNKS, "--sync", "--batch-size", "2"]
    with subprocess.Popen(
        [sys.executable, str(script), *argv], stdout=subprocess.PIPE, text=True
    ) as proc:
        for _ in range(3):  # some batches written, then killed mid-run
            assert proc.stdout.readline().strip() == "encoding"
        proc.kill()
    assert _index(folder, store, dense_only, "--sync") == 0
    clean = tmp_path / "clean"
    assert _index(folder, clean, dense_only, "--sync") == 0
    assert _state(store) == _state(clean)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("data.txt", b"text\x00\x01\x02binary", r"data.txt: holds NUL bytes"),
        ("page.html", b"<html>\x00\xff</html>", r"page.html: holds NUL bytes"),
        ("latin.md", "caf\xe9".encode("latin-1"), r"latin.md: not UTF-8"),
    ],
)
def test_a_bad_file_is_one_error_line_and_nothing_is_written(
    tmp_path, dense_only, capsys, name: str, content: bytes, pattern: str
) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    (folder / name).write_bytes(content)
    assert _index(folder, store, dense_only, "--sync") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert re.search(pattern, err[0])
    with EdgeStore(store) as edge:
        assert not edge.collection_exists("kb")


def test_empty_files_are_skipped_and_counted(tmp_path, dense_only, capsys) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    (folder / "empty.md").write_text("  \n", encoding="utf-8")
    assert _index(folder, store, dense_only, "--sync") == 0
    assert "4 documents read (skipped 1 empty); 3 added" in capsys.readouterr().out


def test_search_prints_each_document_once(tmp_path, dense_only, capsys) -> None:
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    assert _index(folder, store, dense_only) == 0
    capsys.readouterr()
    argv = ["search", "restart the server", "--collection", "kb", "--path", str(store)]
    assert cli.main([*argv, *dense_only]) == 0
    labels = [line.split("[")[1].split("]")[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(labels) == ["faq/page.html", "guide.md", "notes.txt"]
    assert cli.main([*argv, *dense_only, "--chunks", "--limit", "8"]) == 0
    labels = [line.split("[")[1].split("]")[0] for line in capsys.readouterr().out.splitlines()]
    assert len(labels) == 8 and len(set(labels)) < 8


def test_rerun_over_float_metadata_reports_all_unchanged_and_encodes_nothing(
    tmp_path, dense_only, monkeypatch, capsys
) -> None:
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": i, "text": f"document {i}", "score": i / 3} for i in range(300)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["index", str(corpus), "--collection", "kb", "--path", str(tmp_path / "q"), "--quiet"]
    assert cli.main([*argv, *dense_only, "--json"]) == 0
    calls = []
    import lfm_core

    original = lfm_core.DenseEncoder.encode_documents
    monkeypatch.setattr(
        lfm_core.DenseEncoder,
        "encode_documents",
        lambda self, texts, **kw: calls.append(len(texts)) or original(self, texts, **kw),
    )
    capsys.readouterr()
    assert cli.main([*argv, *dense_only, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: report[k] for k in ("added", "updated", "unchanged", "deleted")} == {
        "added": 0,
        "updated": 0,
        "unchanged": 300,
        "deleted": 0,
    }
    assert calls == []


def test_html_that_does_not_parse_cleanly_is_read_leniently(tmp_path, dense_only, capsys) -> None:
    """Broken markup, a byte outside the page's encoding, a page of scripts: no error."""
    folder, store = _folder(tmp_path / "kb"), tmp_path / "q"
    (folder / "broken.html").write_bytes(b"<html><body><p>caf\xe9 ok<div>unclosed <b>bold &bogus;")
    (folder / "scripts.html").write_bytes(b"<html><script>var x = 1;</script></html>")
    assert _index(folder, store, dense_only, "--sync") == 0
    assert "5 documents read (skipped 1 empty); 4 added" in capsys.readouterr().out
    chunks = sorted(
        (v[0]["path"], v[0]["_lfm"]["chunk"], v[0]["text"]) for v in _state(store).values()
    )
    broken = " ".join(text for path, _, text in chunks if path == "broken.html")
    assert broken.startswith("caf") and "unclosed bold &bogus" in broken
    assert "scripts.html" not in {path for path, _, _ in chunks}


def test_a_megabyte_line_without_spaces_is_stored_as_chunks_covering_it(
    tmp_path, dense_only, capsys, monkeypatch
) -> None:
    import lfm_core

    # Its ~2,200 chunks would take minutes through the tiny model: what is tested is the
    # reading, splitting and writing, so the encoder returns unit vectors.
    def unit_vectors(encoder: Any, texts: list[str], **kwargs: Any) -> np.ndarray:
        rows = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        rows[:, 0] = 1.0
        return rows

    monkeypatch.setattr(lfm_core.DenseEncoder, "encode_documents", unit_vectors)
    folder, store = tmp_path / "kb", tmp_path / "q"
    folder.mkdir()
    rng = np.random.default_rng(0)
    line = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789+/"), 1_000_000))
    (folder / "blob.txt").write_text(line, encoding="utf-8")
    argv = ["index", str(folder), "--collection", "kb", "--path", str(store), "--quiet"]
    assert cli.main([*argv, *dense_only, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["added"] == 1 and report["points"] > 100
    spans = sorted(
        (p[0]["_lfm"]["start"], p[0]["_lfm"]["end"], p[0]["text"]) for p in _state(store).values()
    )
    assert spans[0][0] == 0 and spans[-1][1] == len(line)
    assert all(line[a:b] == text for a, b, text in spans)
    assert all(b >= c for (_, b, _), (c, _, _) in itertools.pairwise(spans))  # no gap


def test_a_second_folder_replaces_the_files_with_the_same_relative_path(
    tmp_path, dense_only, capsys
) -> None:
    """Ids are paths relative to the folder: one collection holds one folder's files."""
    first, second, store = _folder(tmp_path / "a"), tmp_path / "b", tmp_path / "q"
    second.mkdir()
    (second / "notes.txt").write_text("other notes", encoding="utf-8")
    assert _index(first, store, dense_only, "--json") == 0
    assert _index(second, store, dense_only, "--json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["added"], report["updated"], report["deleted"]) == (0, 1, 0)
    texts = {
        v[0]["path"]: v[0]["text"] for v in _state(store).values() if v[0]["_lfm"]["chunk"] == 0
    }
    assert texts["notes.txt"] == "other notes" and "guide.md" in texts
    assert _index(second, store, dense_only, "--sync", "--json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["unchanged"], report["deleted"]) == (1, 2)
