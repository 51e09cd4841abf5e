"""A newcomer's first commands: the hub error, nothing left on disk, filters, no stray bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

import lfm_core.loading
from lfm_retrieval import cli

FAQ = Path(__file__).resolve().parents[2] / "examples" / "data" / "support_faq.jsonl"
DENSE_ID = cli.DEFAULT_EMBEDDING_MODEL
COLBERT_ID = cli.DEFAULT_COLBERT_MODEL


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hugging Face Hub out of reach and its cache empty, online or not."""

    def unreachable(repo_id: str, **kwargs: Any) -> str:
        raise LocalEntryNotFoundError(f"{repo_id} is not cached and the hub cannot be reached")

    monkeypatch.setattr(lfm_core.loading, "snapshot_download", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_the_hub_error_names_both_models_once_and_leaves_no_store(
    no_hub: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["index", str(FAQ), "--collection", "faq"]) == cli.EXIT_USAGE
    line = _error_line(capsys)
    for name in (DENSE_ID, COLBERT_ID, "docs/offline.md"):
        assert line.count(name) == 1, line
    assert "the Hugging Face Hub cannot be reached (no connection)" in line
    assert "(--embedding-model DIR --colbert-model DIR)" in line
    assert line.count("--embedding-model") == 2 and line.count("--colbert-model") == 2, line
    # The default store folder and the folders above it that the command would have made.
    assert not (tmp_path / "cache").exists()


def test_one_missing_model_is_named_alone_with_its_flag(
    no_hub: None, tmp_path: Path, tiny_dense_dir: Path, capsys: Any
) -> None:
    store = tmp_path / "a" / "b" / "store"
    argv = ["index", str(FAQ), "--collection", "faq", "--path", str(store)]
    assert cli.main([*argv, "--embedding-model", str(tiny_dense_dir)]) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert COLBERT_ID in line and DENSE_ID not in line
    assert "(--colbert-model DIR)" in line and "--embedding-model" not in line
    assert "docs/offline.md shows how to download it" in line
    assert not (tmp_path / "a").exists()


def test_a_missing_folder_and_a_missing_hub_model_are_reported_together(
    no_hub: None, tmp_path: Path, capsys: Any
) -> None:
    argv = ["index", str(FAQ), "--collection", "faq", "--path", str(tmp_path / "q")]
    assert cli.main([*argv, "--embedding-model", str(tmp_path / "nope")]) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert f"--embedding-model: model folder '{tmp_path / 'nope'}' does not exist" in line
    assert f"{COLBERT_ID} (--colbert-model) is not cached" in line
    assert not (tmp_path / "q").exists()


def test_a_store_that_was_there_before_is_kept(
    no_hub: None, tmp_path: Path, models: list[str], capsys: Any
) -> None:
    store = tmp_path / "store"
    assert cli.main(["index", str(FAQ), "--collection", "faq", "--path", str(store), *models]) == 0
    capsys.readouterr()
    assert cli.main(["index", str(FAQ), "--collection", "other", "--path", str(store)]) == 2
    assert DENSE_ID in _error_line(capsys)
    assert cli.main(["search", "order", "--collection", "faq", "--path", str(store)]) == 0
    assert "faq-0" in capsys.readouterr().out


def test_a_run_that_fails_on_its_corpus_leaves_no_store(
    tmp_path: Path, models: list[str], capsys: Any
) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    store = tmp_path / "new" / "store"
    code = cli.main(["index", str(corpus), "--collection", "c", "--path", str(store), *models])
    assert code == cli.EXIT_USAGE
    assert "bad.jsonl" in _error_line(capsys)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------ --filter


@pytest.fixture
def faq_store(tmp_path: Path, models: list[str], capsys: Any) -> Path:
    store = tmp_path / "store"
    assert cli.main(["index", str(FAQ), "--collection", "faq", "--path", str(store), *models]) == 0
    capsys.readouterr()
    return store


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (
            {"must": [{"key": "lang", "match": "de"}]},
            'error: --filter must[0].match: expected {"value": ...}, {"text": ...}',
        ),
        (
            {"must": [{"key": "lang", "match": {"value": ["de", "fr"]}}]},
            "error: --filter must[0].match.value: expected a string, an integer or true or "
            "false, got a list of strings",
        ),
        ({"must": [{"key": "lang"}]}, "error: --filter must[0]: a condition on 'lang' needs one"),
        ({"mus": []}, "error: --filter mus: unknown key: a filter takes 'should'"),
        ("lang=de", "error: --filter is not JSON: "),
        (["lang"], "error: --filter must be a JSON object such as "),
    ],
)
def test_a_bad_filter_is_one_line_naming_its_path(
    faq_store: Path, capsys: Any, flt: Any, expected: str
) -> None:
    text = flt if isinstance(flt, str) else json.dumps(flt)
    argv = ["search", "order", "--collection", "faq", "--path", str(faq_store), "--filter", text]
    assert cli.main(argv) == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert line.startswith(expected), line
    assert "Input should" not in line and "problem(s)" not in line


def test_a_filter_keeps_only_the_matching_documents(faq_store: Path, capsys: Any) -> None:
    flt = json.dumps({"must": [{"key": "lang", "match": {"value": "de"}}]})
    argv = ["search", "order", "--collection", "faq", "--path", str(faq_store), "--json"]
    assert cli.main([*argv, "--filter", flt]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits and all(hit["payload"]["lang"] == "de" for hit in hits)


# -------------------------------------------------------------- no stray progress bars


def test_loading_a_transformers_model_draws_no_bar(minilm_dir: Path, capfd: Any) -> None:
    from transformers.utils import logging as hf_logging

    from lfm_core import DenseEncoder

    before = hf_logging.is_progress_bar_enabled()
    encoder = DenseEncoder.from_pretrained(minilm_dir, device="cpu")
    encoder.encode_documents(["a text"])
    assert capfd.readouterr().err == ""
    assert hf_logging.is_progress_bar_enabled() == before  # the switch is put back
    encoder.encode_documents(["a text"] * 3, show_progress=True)
    assert "3/3" in capfd.readouterr().err  # our own bar, when asked for


def test_an_adapter_draws_no_transformers_bar(minilm_dir: Path, capfd: Any) -> None:
    # The command's own check is tests/lfm_retrieval/test_cli_integrity.py; the service
    # loads through the same path as the command.
    from lfm_langchain import LFMEmbeddings

    LFMEmbeddings(model_name=str(minilm_dir), device="cpu").embed_query("where is my order")
    assert capfd.readouterr().err == ""


def test_a_second_model_of_another_width_is_refused_naming_both(
    tmp_path: Path, tiny_dense_dir: Path, minilm_dir: Path, capsys: Any
) -> None:
    argv = ["index", str(FAQ), "--collection", "faq", "--path", str(tmp_path / "q"), "--quiet"]
    assert (
        cli.main([*argv, "--embedding-model", str(tiny_dense_dir), "--colbert-model", "none"]) == 0
    )
    capsys.readouterr()
    code = cli.main([*argv, "--embedding-model", str(minilm_dir), "--colbert-model", "none"])
    assert code == cli.EXIT_USAGE
    line = _error_line(capsys)
    assert f"was written with dense model {tiny_dense_dir} (64-d" in line, line
    assert f"not {minilm_dir} (384-d" in line, line
