"""Session fixtures of the docs harness, and the block counts CI prints at the end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lfm_core.testing import write_hub_cache
from tests.docs.blocks import documents, read_blocks
from tests.docs.harness import HUB_MODELS, OUTCOMES, ROOT, DocRun, World

# A BEIR folder in SciFact's layout, small enough to evaluate in a second: the stand-in
# for the data folder where a doc shows the output of `lfm-retrieval eval`.
_CORPUS = [
    ("d1", "Shipping", "Orders ship within two days of payment."),
    ("d2", "Returns", "Returns are free for thirty days; refunds reach your card in a week."),
    ("d3", "Account", "Reset your password from the login page."),
    ("d4", "Pedidos", "Los pedidos salen del almacén en dos días laborables."),
]
_QUERIES = [("q1", "when does my order ship"), ("q2", "how do I get a refund")]
_QRELS = [("q1", "d1", 1), ("q2", "d2", 1)]


def _write_beir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in _CORPUS),
        encoding="utf-8",
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in _QUERIES), encoding="utf-8"
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in _QRELS),
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="session")
def docs_world(
    tmp_path_factory: pytest.TempPathFactory, tiny_dense_dir: Path, tiny_colbert_dir: Path
) -> World:
    """The offline hub cache (docs/offline.md's second way) holding the tiny checkpoints."""
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    for repo_id, folder in zip(HUB_MODELS, (tiny_dense_dir, tiny_colbert_dir)):
        write_hub_cache(cache, repo_id, folder)
    stand_ins = tmp_path_factory.mktemp("stand-in-data")
    _write_beir(stand_ins / "beir-scifact")
    return World(
        tmp=tmp_path_factory.mktemp("docs"),
        hub_cache=cache,
        dense_dir=tiny_dense_dir,
        colbert_dir=tiny_colbert_dir,
        stand_ins=stand_ins,
    )


@pytest.fixture(scope="session")
def doc_runs(docs_world: World) -> dict[str, DocRun]:
    """One runner per document; a block's test runs the document's earlier blocks first."""
    return {
        path.relative_to(ROOT).as_posix(): DocRun(
            docs_world, path.relative_to(ROOT).as_posix(), read_blocks(path, ROOT)
        )
        for path in documents(ROOT)
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """``docs harness: N blocks: R run, C checked but not run, F failed`` with the reasons."""
    if not OUTCOMES:
        return
    statuses = Counter(status for _, status, _ in OUTCOMES)
    # One count per kind of reason: "needs the data folder", not each data set named.
    reasons = Counter(
        why.split(" (")[0]
        for _, status, reason in OUTCOMES
        if status == "checked"
        for why in set(reason.split("; "))
    )
    write = terminalreporter.write_line
    write(
        f"docs harness: {len(OUTCOMES)} blocks of README.md and docs/*.md: "
        f"{statuses['run']} run, {statuses['checked']} checked but not run, "
        f"{statuses['text']} text, {statuses['failed']} failed"
    )
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        write(f"  not run ({count}): {reason}")
    for block_id, _, reason in (o for o in OUTCOMES if o[1] == "failed"):
        write(f"  failed: {block_id}: {reason}")
