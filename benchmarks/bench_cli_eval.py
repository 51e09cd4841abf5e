"""``lfm-retrieval eval --mode hybrid`` end to end on 10,000 short multilingual documents.

Builds a BEIR folder from NTREX-128 (``ntrex128/`` in the data folder that ``--data DIR``
names, beside ``beir-scifact/`` and ``lfm2-tokenizer/``): the corpus is the first
sentences of the 11 languages (10,000 in all, 20-40 tokens each), the queries are English
sentences whose German translation is the relevant document. Builds tiny random-weight
checkpoints in the LFM2.5 layouts (small models, so that the store, not the model, is what
is timed; their nDCG means nothing), then runs the command twice, through ``cli.main``,
into a fresh Edge store:

1. ``eval``: indexing documents/s (encoding included), the HNSW build time, and the search
   time per query that the command prints (query encoding included);
2. the same command again: everything is stored, so it measures the resume check and the
   search alone.

Usage::

    python benchmarks/bench_cli_eval.py --data DATA --docs 10000 --queries 300
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.workload import NTREX_DIR, add_data_argument, require_data
from lfm_core.testing import write_colbert_checkpoint, write_dense_checkpoint
from lfm_retrieval import cli
from lfm_retrieval.crosslingual import LANGUAGES, read_ntrex


def build_beir(ntrex: Path, folder: Path, n_docs: int, n_queries: int) -> None:
    per_language = -(-n_docs // len(LANGUAGES))
    sentences = read_ntrex(ntrex, LANGUAGES, limit=min(per_language, 1997))
    folder.mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        written = 0
        for code in LANGUAGES:
            for i, text in enumerate(sentences[code]):
                if written < n_docs:
                    f.write(json.dumps({"_id": f"{code}-{i}", "text": text, "lang": code}) + "\n")
                    written += 1
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n_queries):
            f.write(json.dumps({"_id": f"q{i}", "text": sentences["en"][i]}) + "\n")
    (folder / "qrels").mkdir()
    with (folder / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in range(n_queries):
            f.write(f"q{i}\tde-{i}\t1\n")


def run(argv: list[str]) -> tuple[float, str]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"lfm-retrieval failed ({code}): {err.getvalue()}")
    return wall, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    add_data_argument(parser)
    args = parser.parse_args()
    ntrex = require_data(args.data, NTREX_DIR) / NTREX_DIR
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_beir(ntrex, root / "ntrex-beir", args.docs, args.queries)
        dense = write_dense_checkpoint(root / "dense")
        colbert = write_colbert_checkpoint(root / "colbert")
        argv = [
            "eval", str(root / "ntrex-beir"), "--mode", "hybrid", "--quiet", "--device", "cpu",
            "--embedding-model", str(dense), "--colbert-model", str(colbert),
            "--path", str(root / "store"),
        ]  # fmt: skip
        print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
        for label in ("first run (index + search)", "second run (all stored: search)"):
            wall, out = run(argv)
            print(f"## {label}: {wall:.1f} s wall")
            print(out.strip())
            if label.startswith("first"):
                print(f"indexing + search: {args.docs / wall:.0f} documents/s over the whole run")


if __name__ == "__main__":
    main()
