"""`lfm-retrieval index --ray` writes the collection the plain command writes, `--sync` too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfm_qdrant import EdgeStore
from lfm_retrieval.cli import main
from tests.texts import prose

CHUNKS = ["--chunk-tokens", "24", "--chunk-overlap", "4"]


def points(path: Path, collection: str) -> dict[str, Any]:
    with EdgeStore(path) as store:
        found, _ = store.scroll(collection, limit=1000, with_payload=True, with_vectors=True)
    return {str(p.id): p for p in found}


def assert_same_points(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert set(a) == set(b)
    for key in a:
        # Chunk records included: the same spans and fingerprints.
        assert a[key].payload == b[key].payload
        for name in ("dense", "colbert"):
            np.testing.assert_allclose(
                np.array(a[key].vector[name]), np.array(b[key].vector[name]), atol=1e-5
            )


def write_corpus(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_index_ray_equals_the_plain_command_and_so_does_its_sync(
    ray_session: Any,
    tmp_path: Path,
    models: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {
            "_id": f"d{i}",
            "title": f"T{i}",
            "text": prose(i, 6) if i % 5 == 2 else f"text number {i} " * (i % 4 + 1),
            "lang": "en",
        }
        for i in range(30)
    ]
    write_corpus(corpus, [*rows, {"_id": "blank", "text": "  "}])
    flags = [*models, *CHUNKS, "--quiet"]

    def index(where: str, *extra: str) -> str:
        store = tmp_path / where
        argv = ["index", str(corpus), "--collection", "c", "--path", str(store), *flags, *extra]
        if where == "ray":
            argv += ["--ray", "--concurrency", "2", "--batch-size", "8"]
        assert main(argv) == 0
        return capsys.readouterr().out.strip().splitlines()[-1].replace(str(store), "X")

    plain_line, ray_line = index("plain"), index("ray")
    assert ray_line == plain_line
    assert "31 documents read (skipped 1 empty); 30 added, 0 updated, 0 unchanged;" in ray_line
    assert_same_points(points(tmp_path / "plain", "c"), points(tmp_path / "ray", "c"))
    assert len(points(tmp_path / "ray", "c")) > 30  # the long documents are several chunks
    # A rerun finds everything stored and writes nothing new.
    assert "0 added, 0 updated, 30 unchanged;" in index("ray")

    # The corpus changes: a long document removed, one shrunk, a short one grown, a new one.
    rows = [r for r in rows if r["_id"] != "d7"]
    rows[2]["text"] = "short now"
    rows[3]["text"] = prose(99, 5)
    rows.append({"_id": "new", "text": "a new document"})
    write_corpus(corpus, rows)
    plain_line, ray_line = index("plain", "--sync"), index("ray", "--sync")
    assert ray_line == plain_line
    assert "30 documents read; 1 added, 2 updated, 27 unchanged, 1 deleted;" in ray_line
    assert_same_points(points(tmp_path / "plain", "c"), points(tmp_path / "ray", "c"))


FAQ = Path(__file__).resolve().parents[2] / "examples" / "data" / "support_faq.jsonl"


def test_index_ray_prints_our_lines_only(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, models: list[str]
) -> None:
    """A fresh local Ray, as a user's first `index --ray` starts it: Ray's own start-up,
    plans, progress reports and notices stay off the terminal."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),  # Ray writes its token under ~/.ray: here, not in the real home
        "RAY_TMPDIR": str(tmp_path_factory.mktemp("r")),  # short: Ray's socket paths
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop("RAY_ADDRESS", None)
    argv = ["index", str(FAQ), "--collection", "faq", "--path", str(tmp_path / "q"), *models]
    done = subprocess.run(
        [sys.executable, "-m", "lfm_retrieval.cli", *argv, "--ray"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"faq: 24 documents read; 24 added, 0 updated, 0 unchanged; 24 points stored in {tmp_path / 'q'}"
    ]
    # Ray >= 2.5x writes a token on its first start: said in one line of ours, not Ray's.
    token = home / ".ray" / "auth_token"
    notice = f"Ray wrote its cluster access token to {token} (see docs/scale-out.md)"
    assert done.stderr.splitlines() == ([notice] if token.is_file() else []), done.stderr


def test_the_stderr_filter_drops_a_notice_split_across_reads_and_passes_bars() -> None:
    import time

    from lfm_retrieval.cli_ray import _without_stderr_lines

    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        with _without_stderr_lines((b"NOTICE",)):
            os.write(2, b"keep 1\nhas NOT")
            time.sleep(0.1)  # the notice's line arrives in two reads
            os.write(2, b"ICE here\n\r 10%|bar")
            time.sleep(0.1)
            os.write(2, b"\nlast")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    assert os.read(read_end, 1000) == b"keep 1\n\r 10%|bar\nlast"
    os.close(read_end)
