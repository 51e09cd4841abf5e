"""Parity with PyLate, the reference implementation of the ColBERT checkpoints we load.

PyLate 1.6 pins sentence-transformers 5.3 and transformers <= 5.3, so it runs in its own
virtual environment (``python benchmarks/pylate_env.py`` builds ``.venv-pylate``; the
environment variable ``LFM_PYLATE_PYTHON`` can name another interpreter). PyLate encodes
in a subprocess (``benchmarks/pylate_worker.py``) and writes its vectors to an ``.npz``;
our ``LateInteractionEncoder`` loads the same folder in this process.

Two checkpoints:

- ``minilm``: a PyLate checkpoint that PyLate itself builds from the real
  all-MiniLM-L6-v2 (BERT): it adds ``[Q] ``/``[D] `` to the vocabulary and a random
  ``1_Dense`` 384 -> 128. PyLate runs its own pipeline end to end (transformers'
  ``BertModel``), one text at a time and in batches.
- ``lfm2``: the tiny LFM2.5-ColBERT-layout checkpoint. transformers' ``Lfm2Model`` is
  causal (the bidirectional model is remote code), so PyLate's pipeline runs with our
  bidirectional backbone plugged in as its ``auto_model``: everything around the model
  (prefix insertion, EOS query expansion masked as keys, skiplist, truncation, whitespace
  handling) is PyLate's. One text at a time, as the LFM2.5 reference outputs were made.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from lfm_core import LateInteractionEncoder

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER = PROJECT_ROOT / "benchmarks" / "pylate_worker.py"
DEFAULT_PYLATE_PYTHON = PROJECT_ROOT / ".venv-pylate" / "bin" / "python"

QUERIES = [
    "how do I stop two threads corrupting shared state",
    "Where is my ORDER? It shipped on Monday!",
    "日本語のテキスト検索",
    # Longer than query_length: truncated, no expansion left.
    " ".join(f"word{i}" for i in range(60)),
    "  leading and trailing spaces  ",  # last: see test_outer_whitespace_is_stripped_as_in_pylate
]
DOCUMENTS = [
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads in Rust.",
    "Punctuation!! Should, be; skipped: right? (yes)",
    "Preheat the oven to 200C, then butter a cake tin.",
    "short",
    "",
    # Longer than document_length (180 for MiniLM, 512 for the tiny LFM2): truncated.
    " ".join(f"token{i % 97}, and more." for i in range(400)),
    "  padded   with  spaces  ",  # last: see test_outer_whitespace_is_stripped_as_in_pylate
]
# The texts with leading/trailing whitespace are kept apart: one convention, one test.
N_PLAIN_QUERIES, N_PLAIN_DOCUMENTS = len(QUERIES) - 1, len(DOCUMENTS) - 1
BATCH_SIZE = 4  # several batches of mixed lengths, so PyLate pads


def _pylate_python() -> Path:
    path = Path(os.environ.get("LFM_PYLATE_PYTHON") or DEFAULT_PYLATE_PYTHON)
    if not path.is_file() and os.environ.get("CI"):
        pytest.fail(f"PyLate interpreter absent in CI: {path}; .ci/run builds it first")
    if not path.is_file():
        pytest.skip(
            f"PyLate interpreter absent: {path} not found; build it with "
            f"`python benchmarks/pylate_env.py` or set LFM_PYLATE_PYTHON"
        )
    return path


def _run_worker(python: Path, *args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [str(python), str(WORKER), *args], capture_output=True, text=True, env=env, timeout=600
    )
    if proc.returncode != 0:
        raise AssertionError(f"PyLate worker {args[0]} failed:\n{proc.stderr[-4000:]}")


def _pylate_outputs(
    python: Path, model_dir: Path, workdir: Path, *extra: str
) -> dict[str, np.ndarray]:
    request = workdir / "request.json"
    request.write_text(
        json.dumps({"queries": QUERIES, "documents": DOCUMENTS, "batch_size": BATCH_SIZE}),
        encoding="utf-8",
    )
    out = workdir / "pylate.npz"
    _run_worker(
        python,
        "encode",
        "--model",
        str(model_dir),
        "--input",
        str(request),
        "--output",
        str(out),
        *extra,
    )
    with np.load(out) as data:
        return dict(data)


@pytest.fixture(scope="module", params=["minilm", "lfm2"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{"name", "encoder", "pylate"}``: our encoder and PyLate's outputs on one folder."""
    python = _pylate_python()
    workdir = tmp_path_factory.mktemp(f"pylate-{request.param}")
    if request.param == "minilm":
        minilm_dir = request.getfixturevalue("minilm_dir")
        model_dir = workdir / "minilm-colbert"
        pylate = _pylate_outputs(
            python, model_dir, workdir, "--build-from", str(minilm_dir), "--seed", "0"
        )
    else:
        model_dir = request.getfixturevalue("tiny_colbert_dir")
        pylate = _pylate_outputs(python, model_dir, workdir, "--lfm-core-backbone")
    encoder = LateInteractionEncoder.from_pretrained(model_dir, device="cpu", dtype="float32")
    return {"name": request.param, "encoder": encoder, "pylate": pylate}


def _meta(case: dict) -> dict:
    return json.loads(bytes(case["pylate"]["meta"]).decode())


def _modes(case: dict) -> list[str]:
    # The lfm2 case runs PyLate one text at a time only (see the module docstring).
    return ["single", "batched"] if case["name"] == "minilm" else ["single"]


def _assert_same_vectors(
    ours: list[np.ndarray], theirs: list[np.ndarray], texts: list[str], what: str
) -> None:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape, (
            f"{what}[{i}] {texts[i][:40]!r}: ours {a.shape}, PyLate {b.shape}"
        )
        torch.testing.assert_close(
            torch.from_numpy(a),
            torch.from_numpy(b),
            rtol=0,
            atol=1e-5,
            msg=lambda m, i=i: f"{what}[{i}] {texts[i][:40]!r}: {m}",
        )


def test_query_vectors_match_pylate(case: dict) -> None:
    texts = QUERIES[:N_PLAIN_QUERIES]
    ours = case["encoder"].encode_queries(texts)
    for mode in _modes(case):
        theirs = [case["pylate"][f"query.{mode}.{i}"] for i in range(len(texts))]
        _assert_same_vectors(ours, theirs, texts, f"query ({mode})")


def test_document_vectors_match_pylate(case: dict) -> None:
    texts = DOCUMENTS[:N_PLAIN_DOCUMENTS]
    ours = case["encoder"].encode_documents(texts)
    for mode in _modes(case):
        theirs = [case["pylate"][f"document.{mode}.{i}"] for i in range(len(texts))]
        _assert_same_vectors(ours, theirs, texts, f"document ({mode})")


def test_maxsim_matches_pylate(case: dict) -> None:
    encoder: LateInteractionEncoder = case["encoder"]
    docs = encoder.encode_documents(DOCUMENTS[:N_PLAIN_DOCUMENTS])
    for i, q in enumerate(encoder.encode_queries(QUERIES[:N_PLAIN_QUERIES])):
        torch.testing.assert_close(
            torch.from_numpy(encoder.score(q, docs)),
            torch.from_numpy(case["pylate"][f"maxsim.{i}"][:N_PLAIN_DOCUMENTS]),
            rtol=0,
            atol=1e-4,
        )


def test_outer_whitespace_is_stripped_as_in_pylate(case: dict) -> None:
    """PyLate 1.6 (sentence-transformers 5.3's ``Transformer.tokenize``) strips each text.

    A byte-level BPE (LFM2) tokenizes spaces, so without the strip a text with leading or
    trailing whitespace gets other tokens and other vectors than in PyLate; WordPiece
    (BERT) drops whitespace anyway, so the ``minilm`` case cannot tell.
    """
    encoder: LateInteractionEncoder = case["encoder"]
    ours_q = encoder.encode_queries(QUERIES[N_PLAIN_QUERIES:])
    ours_d = encoder.encode_documents(DOCUMENTS[N_PLAIN_DOCUMENTS:])
    theirs_q = [case["pylate"][f"query.single.{N_PLAIN_QUERIES}"]]
    theirs_d = [case["pylate"][f"document.single.{N_PLAIN_DOCUMENTS}"]]
    _assert_same_vectors(ours_q, theirs_q, QUERIES[N_PLAIN_QUERIES:], "query")
    _assert_same_vectors(ours_d, theirs_d, DOCUMENTS[N_PLAIN_DOCUMENTS:], "document")


def test_pylate_conventions_are_the_ones_we_follow(case: dict) -> None:
    """What PyLate feeds the model: the conventions lfm_core re-implements (DESIGN.md)."""
    meta, out, encoder = _meta(case), case["pylate"], case["encoder"]
    assert (meta["query_length"], meta["document_length"]) == (
        encoder.query_length,
        encoder.document_length,
    )
    assert meta["attend_to_expansion_tokens"] is False
    # Query expansion pads with [MASK] on BERT-like checkpoints, with EOS on LFM2 (no mask token).
    expansion = 103 if case["name"] == "minilm" else 7
    assert meta["pad_token_id"] == expansion
    ids = out["query.single.0.input_ids"]
    mask = out["query.single.0.attention_mask"]
    assert len(ids) == encoder.query_length
    assert ids[1] == meta["query_prefix_id"]  # the prefix right after the first token
    n_real = int(mask.sum())
    assert (ids[n_real:] == expansion).all() and not mask[n_real:].any()  # expansion: masked keys
    # Documents: prefix after the first token; skiplist (punctuation) vectors dropped, nothing else.
    doc = DOCUMENTS.index("Punctuation!! Should, be; skipped: right? (yes)")
    ids, kept = out[f"document.single.{doc}.input_ids"], out[f"document.single.{doc}.kept"]
    assert ids[1] == meta["document_prefix_id"]
    np.testing.assert_array_equal(~kept, np.isin(ids, meta["skiplist_ids"]))
    assert (~kept).sum() > 0
