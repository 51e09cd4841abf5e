"""The command line given what the service is given by hostile clients: one error line or a
defined result, never a traceback (names too long in bytes, text that cannot be encoded,
serve's own flags)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lfm_retrieval import cli


def _one_error_line(capsys: pytest.CaptureFixture[str], code: int, pattern: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (
            "\u4e2d" * 100,
            r"error: --collection: collection name .* is 300 bytes of UTF-8 \(100 characters\); .*",
        ),
        # A byte that is not UTF-8 in argv reaches Python as a lone surrogate.
        ("faq\udcff", r"error: --collection: collection name .* unpaired UTF-16 surrogate .*"),
    ],
)
def test_a_collection_name_qdrant_cannot_hold_is_one_error_line(
    tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str], name: str, pattern: str
) -> None:
    code = cli.main(["search", "q", "--collection", name, *models, "--path", str(tmp_path / "q")])
    _one_error_line(capsys, code, pattern)


def test_text_that_cannot_be_encoded_is_indexed_repaired(
    tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "broken \ud800 text"}) + "\n")  # "\ud800"
    store = ["--path", str(tmp_path / "q")]
    assert cli.main(["index", str(corpus), "--collection", "c", *models, *store, "--quiet"]) == 0
    assert cli.main(["search", "broken", "--collection", "c", *models, *store]) == 0
    assert "broken \ufffd text" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (
            ["--served-model-name", "only-one"],
            r"error: --served-model-name has 1 name\(s\) for 2 .*",
        ),
        (["--served-model-name", "a", "a"], r"error: --served-model-name .* distinct"),
        (["--header-timeout", "0"], r"error: --header-timeout must be > 0, got 0.0"),
    ],
)
def test_serve_flags_are_checked_before_the_models_load(
    models: list[str], capsys: pytest.CaptureFixture[str], flags: list[str], pattern: str
) -> None:
    code = cli.main(["serve", *models, *flags])
    _one_error_line(capsys, code, pattern)
