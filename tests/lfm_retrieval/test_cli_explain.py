"""``lfm-retrieval search --explain``: the matched words highlighted under each hit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lfm_core import LateInteractionEncoder
from lfm_retrieval import cli
from lfm_retrieval.highlight import highlight

DOCS = [
    {"id": "cat", "title": "Cats", "text": "The cat sat on the mat and purred."},
    {"id": "ship", "text": "Where is my order? Shipping takes three days.", "lang": "en"},
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog."},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_explain_highlights_the_words_explain_names(
    tmp_path: Path,
    corpus: Path,
    models: list[str],
    tiny_colbert: LateInteractionEncoder,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    store = ["--path", str(tmp_path / "q")]
    assert cli.main(["index", str(corpus), "--collection", "d", *models, *store, "--quiet"]) == 0
    capsys.readouterr()
    query = "where is my order"
    args = ["search", query, "--collection", "d", "--mode", mode, "--explain", *models, *store]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 * len(DOCS)  # hit, legs, highlighted text, matched words
    texts = {"Cats The cat sat on the mat and purred.", DOCS[1]["text"], DOCS[2]["text"]}
    for hit, legs, shown, matched in zip(
        lines[0::4], lines[1::4], lines[2::4], lines[3::4], strict=True
    ):
        assert re.match(r"^\s+\d+\.\s", hit)
        assert legs.strip().startswith("found by: ")
        plain = shown.strip().replace("[[", "").replace("]]", "")
        text = next(t for t in texts if t == plain)
        # what --explain prints is the highlight of what explain() names (not a TTY: [[...]])
        assert shown.strip() == highlight(text, tiny_colbert.explain(query, text), color=False)
        assert "[[" in shown and "\x1b[" not in shown
        assert matched.strip().startswith("matched: ")
        # the query's own tokens, in order, spell the query
        spelled = re.findall(r"(\S+?)->", matched.split("matched: ", 1)[1])
        assert "".join(spelled) == query.replace(" ", "")


def test_explain_without_colbert_vectors_says_which_legs_found_each_hit(
    tmp_path: Path, corpus: Path, tiny_dense_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--path", str(tmp_path / "q"), "--embedding-model", str(tiny_dense_dir)]
    store += ["--colbert-model", "none", "--device", "cpu"]
    assert cli.main(["index", str(corpus), "--collection", "d", *store, "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["search", "fox", "--collection", "d", "--explain", *store]) == 0
    lines = capsys.readouterr().out.splitlines()
    # No ColBERT vectors: no word highlights, but each hit names the legs that found it.
    assert lines[1].strip().startswith("found by: ") and "lexical #1" in lines[1]
    assert not any("matched: " in line for line in lines)


@pytest.mark.parametrize(("flag", "playground"), [([], True), (["--no-playground"], False)])
def test_serve_no_playground_turns_the_page_off(
    monkeypatch: pytest.MonkeyPatch, models: list[str], flag: list[str], playground: bool
) -> None:
    import lfm_retrieval.server as server

    seen: dict[str, object] = {}
    monkeypatch.setattr(server, "serve", lambda app, **kwargs: seen.update(app=app))
    assert cli.main(["serve", "--port", "0", *models, *flag]) == 0
    app = seen["app"]
    assert app.state.service.config.playground is playground  # type: ignore[attr-defined]
    assert any(getattr(r, "path", None) == "/" for r in app.routes) is playground  # type: ignore[attr-defined]
