"""The benchmark's own arithmetic and inputs, and one short end-to-end run on real MiniLM."""

from __future__ import annotations

import doctest
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not installed
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks import harness, measure, workload  # noqa: E402


@pytest.mark.parametrize("module", [measure, workload])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("lfm2-dense", 354_483_968),  # the model card's figure
        ("lfm2-colbert", 354_483_968 - (65_536 - 64_402) * 1024),  # smaller vocabulary
    ],
)
def test_flops_model_counts_every_parameter(shared_data: Path, model: str, params: int) -> None:
    assert workload.lfm2_parameter_count(workload.load_lfm2_config(shared_data, model)) == params


def test_forward_flops_of_a_512_token_document(shared_data: Path) -> None:
    flops = workload.lfm2_flops(workload.load_lfm2_config(shared_data, "lfm2-dense"))
    # 2 x 287,340,544 matmul weights per token, plus 6 attention layers of width 1024.
    expected = 2 * 287_340_544 * 512 + 4 * 6 * 512 * 512 * 1024
    assert flops.per_sequence(512) == expected


def test_corpus_texts_read_the_data_folder_or_make_synthetic_words(tmp_path: Path) -> None:
    (tmp_path / "beir-scifact").mkdir()
    rows = ['{"_id": "1", "title": "Statins", "text": "lower risk."}', '{"_id": "2", "text": "x"}']
    (tmp_path / workload.SCIFACT_CORPUS).write_text("\n".join(rows) + "\n", encoding="utf-8")
    texts, source = workload.corpus_texts(tmp_path)
    assert texts == ["Statins lower risk.", "x"] and "SciFact" in source
    synthetic, source = workload.corpus_texts(None, max_chars=6000, seed=1)
    assert len(synthetic) == 10 and source == "synthetic words (no --data)"
    assert synthetic == workload.corpus_texts(None, max_chars=6000, seed=1)[0]


def test_missing_data_is_a_one_line_error_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match=r"^--data .*: beir-scifact/corpus\.jsonl not found"):
        workload.require_data(tmp_path, workload.SCIFACT_CORPUS)
    with pytest.raises(
        SystemExit, match=r"^--model lfm2-dense needs --data DIR \(the data folder holds"
    ):
        harness.main(["--model", "lfm2-dense", "--quick"])  # exits before any work
    with pytest.raises(FileNotFoundError, match="lfm2.5-colbert-350m/config.json not found"):
        workload.load_lfm2_config(tmp_path, "lfm2-colbert")
    assert workload.require_data(tmp_path) == tmp_path


def test_stand_in_tokenizer_has_the_real_ids(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    corpus = ["the quick brown fox jumps over the lazy dog"] * 50
    workload.write_tokenizer(tmp_path, corpus, vocab_size=64_402, prefix_tokens=True, bpe_size=300)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(tok) == 64_402
    assert tok.convert_tokens_to_ids(["[Q] ", "[D] "]) == [64_400, 64_401]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 7)
    assert tok("the fox")["input_ids"][0] == 1


def test_documents_follow_the_length_mix() -> None:
    corpus = [" ".join(f"w{i}" for i in range(2000))]
    lengths = workload.log_uniform_lengths(200, seed=3)
    texts = workload.cut_texts(str.split, " ".join, corpus, lengths, seed=3)
    assert [len(t.split()) for t in texts] == lengths
    assert min(lengths) >= 16 and max(lengths) <= 512
    assert 60 < sorted(lengths)[100] < 130  # median near sqrt(16 * 512) = 90


def test_batch_size_runs_reports_default_and_best() -> None:
    speed = {8: 0.0, 32: 0.05}  # batch 8 is the fastest

    def encode(texts: list[str], batch_size: int) -> None:
        time.sleep(speed[batch_size])

    runs = measure.batch_size_runs(
        encode, ["a"] * 4, "cpu", default=32, candidates=[8], sweep_docs=2
    )
    assert [r["batch_size"] for r in runs] == [32, 8]
    assert runs[1]["label"] == "best of 8, 32"


@pytest.mark.slow
def test_minilm_quick_run_prints_a_table_and_matching_vectors(
    minilm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.md"
    argv = ["--model", "minilm", "--quick", "--docs", "4", "--rerank-docs", "4"]
    argv += ["--latency-reps", "2", "--device", "cpu", "--int8", "--output", str(out)]
    code = harness.main(argv)
    printed = capsys.readouterr().out
    assert code == 0
    assert "| ours (lfm_core) (default) |" in printed and "| sentence-transformers" in printed
    assert "same vectors: min cosine" in printed
    int8_row = next(line for line in printed.splitlines() if line.startswith("| ours int8 |"))
    worst = float(int8_row.split("|")[-2].split("/")[0])
    assert 0.99 <= worst <= 1.0
    assert out.read_text(encoding="utf-8").strip() == printed.strip()


def test_measure_imports_nothing_from_this_project() -> None:
    """pylate_worker.py imports measure.py inside the PyLate environment, which has no lfm_core."""
    import ast

    tree = ast.parse(Path(measure.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    ours = {
        "lfm_core",
        "lfm_retrieval",
        "lfm_qdrant",
        "lfm_langchain",
        "lfm_llamaindex",
        "benchmarks",
    }
    assert not {name.split(".")[0] for name in imported} & ours
