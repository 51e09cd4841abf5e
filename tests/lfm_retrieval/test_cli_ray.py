"""`lfm-retrieval index --ray` writes the collection the plain command writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfm_qdrant import EdgeStore
from lfm_retrieval.cli import main


def points(path: Path, collection: str) -> dict[str, Any]:
    with EdgeStore(path) as store:
        found, _ = store.scroll(collection, limit=1000, with_payload=True, with_vectors=True)
    return {str(p.id): p for p in found}


def test_index_ray_equals_the_plain_command(
    ray_session: Any,
    tmp_path: Path,
    models: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"_id": f"d{i}", "title": f"T{i}", "text": f"text number {i} " * (i % 4 + 1), "lang": "en"}
        for i in range(30)
    ]
    rows += [{"_id": "blank", "text": "  "}]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    models = [*models, "--quiet"]
    assert (
        main(
            ["index", str(corpus), "--collection", "c", "--path", str(tmp_path / "plain"), *models]
        )
        == 0
    )
    plain_line = capsys.readouterr().out.strip().splitlines()[-1]
    args = [
        "index",
        str(corpus),
        "--collection",
        "c",
        "--path",
        str(tmp_path / "ray"),
        *models,
        "--ray",
        "--concurrency",
        "2",
        "--batch-size",
        "8",
    ]
    assert main(args) == 0
    ray_line = capsys.readouterr().out.strip().splitlines()[-1]
    # The plain command also counts what it added (Ray's workers do not compare).
    plain_line = re.sub(r"\d+ added, \d+ updated, \d+ unchanged; ", "", plain_line)
    assert ray_line.replace(str(tmp_path / "ray"), "X") == plain_line.replace(
        str(tmp_path / "plain"), "X"
    )
    assert "31 documents read (skipped 1 empty); 30 points stored" in ray_line
    a, b = points(tmp_path / "plain", "c"), points(tmp_path / "ray", "c")
    assert set(a) == set(b)
    for key in a:
        # Equal but for the fingerprint, which holds the plain writer's chunk settings.
        a[key].payload["_lfm"].pop("fingerprint")
        b[key].payload["_lfm"].pop("fingerprint")
        assert a[key].payload == b[key].payload
        for name in ("dense", "colbert"):
            np.testing.assert_allclose(
                np.array(a[key].vector[name]), np.array(b[key].vector[name]), atol=1e-5
            )
    # A rerun finds everything stored and writes nothing new.
    assert main(args) == 0
    assert "30 points stored" in capsys.readouterr().out


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
        f"faq: 24 documents read; 24 points stored in {tmp_path / 'q'}"
    ]
    # Ray >= 2.5x writes a token on its first start: said in one line of ours, not Ray's.
    token = home / ".ray" / "auth_token"
    notice = f"Ray wrote its cluster access token to {token} (see docs/scale-out.md)"
    assert done.stderr.splitlines() == ([notice] if token.is_file() else []), done.stderr
