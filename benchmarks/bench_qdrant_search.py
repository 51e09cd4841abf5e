"""Two-stage search and writes of ``MultiVectorWriter`` on Qdrant Edge and on local mode.

Collections in our layout (``dense`` 1024-d cosine HNSW + ``colbert`` 128-d multivector
MAX_SIM, HNSW off), ``16-300`` token vectors per document (log-uniform), synthetic unit
vectors generated per document from its index (generation is timed apart and excluded).
For each store and size it prints:

- write points/s through ``writer.add`` (encoding excluded), and the time of ``optimize()``
  (Edge: builds the dense HNSW graph);
- two-stage search p50 / p99 (prefetch 100 by dense, MaxSim rerank to 10; query encoding
  excluded) one query at a time, and per query in a ``search_batch`` of 32;
- reopen time (close the store, open it, first query) and disk size.

Local mode (``QdrantClient(path=...)``) computes MaxSim over every stored point in Python,
so it is run at the small sizes only (``--local-max``).

Usage::

    python benchmarks/bench_qdrant_search.py --sizes 1000,10000 --local-max 10000
    python benchmarks/bench_qdrant_search.py --sizes 100000 --local-max 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lfm_qdrant import EdgeStore, MultiVectorWriter

DENSE_DIM = 1024
COLBERT_DIM = 128
QUERY_TOKENS = 32


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Synthetic:
    """A stand-in encoder: texts are ``"doc <i>"`` / ``"query <i>"``; vectors come from ``i``.

    Document ``i``'s dense vector is a noisy copy of one of 256 topic centres, and its
    token vectors noisy copies of the centre's rows: neighbours exist, as in real data.
    """

    def __init__(self, kind: str, lengths: list[int], seed: int = 0) -> None:
        self.kind, self.lengths = kind, lengths
        self.dim = DENSE_DIM if kind == "dense" else COLBERT_DIM
        rng = np.random.default_rng(seed)
        rows = 1 if kind == "dense" else max(lengths)
        self._centres = _unit(rng, (256, rows, self.dim))
        self.seconds = 0.0
        self.model_name = f"synthetic-{kind}"

    def _vectors(self, i: int, n: int, noise: float) -> np.ndarray:
        rng = np.random.default_rng(i)
        centre = self._centres[i % 256, :n]
        return _unit_rows(centre + noise * rng.standard_normal(centre.shape, dtype=np.float32))

    def encode_documents(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        start = time.perf_counter()
        idx = [int(t.split()[1]) for t in texts]
        if self.kind == "dense":
            out: Any = np.stack([self._vectors(i, 1, 0.5)[0] for i in idx])
        else:
            out = [self._vectors(i, self.lengths[i], 0.5) for i in idx]
        self.seconds += time.perf_counter() - start
        return out

    def encode_queries(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        idx = [int(t.split()[1]) for t in texts]
        if self.kind == "dense":
            return np.stack([self._vectors(10**9 + i, 1, 0.7)[0] for i in idx])
        return [self._vectors(10**9 + i, QUERY_TOKENS, 0.7) for i in idx]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def lengths_for(n: int, low: int = 16, high: int = 300, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [round(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(n)]


def open_store(kind: str, path: Path) -> Any:
    if kind == "edge":
        return EdgeStore(path)
    from qdrant_client import QdrantClient

    return QdrantClient(path=str(path))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Built:
    """One collection written and indexed, open for searching."""

    def __init__(
        self,
        kind: str,
        n: int,
        workdir: Path,
        datatype: str,
        tokens: tuple[int, int],
        lexical: bool,
    ) -> None:
        self.kind, self.n, self.lexical, self.datatype = kind, n, lexical, datatype
        self.lengths = lengths_for(n, *tokens)
        self.dense = Synthetic("dense", self.lengths)
        self.colbert = Synthetic("colbert", self.lengths)
        self.path = workdir / f"{kind}-{n}-{'bm25' if lexical else 'plain'}"
        texts = [f"doc {i}" for i in range(n)]
        self.store = open_store(kind, self.path)
        self.writer = MultiVectorWriter(
            self.store,
            "bench",
            dense=self.dense,
            colbert=self.colbert,
            batch_size=256,
            colbert_datatype=datatype,
            lexical=lexical,
        )
        start = time.perf_counter()
        for s in range(0, n, 4096):  # bounded memory: the vectors of one slice at a time
            self.writer.add(texts[s : s + 4096], ids=list(range(s, min(s + 4096, n))))
        self.write_s = time.perf_counter() - start - self.dense.seconds - self.colbert.seconds
        self.optimize_s = 0.0
        if kind == "edge":
            start = time.perf_counter()
            self.store.optimize("bench")
            self.optimize_s = time.perf_counter() - start
        self.single: list[float] = []
        self.writer.search("query 0")  # warm-up

    def time_one(self, query: str) -> None:
        start = time.perf_counter()
        self.writer.search(query, limit=10, prefetch_limit=100)
        self.single.append((time.perf_counter() - start) * 1000)

    def finish(self, qs: list[str]) -> dict[str, Any]:
        start = time.perf_counter()
        for s in range(0, len(qs), 32):
            self.writer.search_batch(qs[s : s + 32], limit=10, prefetch_limit=100)
        batch_ms = (time.perf_counter() - start) * 1000 / len(qs)
        self.store.close()
        start = time.perf_counter()
        store = open_store(self.kind, self.path)
        MultiVectorWriter(store, "bench", dense=self.dense, colbert=self.colbert).search(qs[0])
        reopen_s = time.perf_counter() - start
        store.close()
        disk = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        shutil.rmtree(self.path)
        return {
            "store": self.kind,
            "points": self.n,
            "lexical": self.lexical,
            "colbert_datatype": self.datatype,
            "tokens_mean": statistics.fmean(self.lengths),
            "write_points_per_s": self.n / self.write_s,
            "optimize_s": self.optimize_s,
            "search_p50_ms": statistics.median(self.single),
            "search_p99_ms": percentile(self.single, 0.99),
            "batch32_ms_per_query": batch_ms,
            "reopen_s": reopen_s,
            "disk_mb": disk / 2**20,
            "queries": len(qs),
        }


def run(
    kind: str,
    n: int,
    workdir: Path,
    queries: int,
    datatype: str,
    tokens: tuple[int, int],
    legs: list[bool],
) -> list[dict[str, Any]]:
    """Build one collection per setting of the bm25 leg, then time their searches
    interleaved (query by query, alternating), so the machine's load falls on each alike."""
    built = [Built(kind, n, workdir, datatype, tokens, lexical) for lexical in legs]
    qs = [f"query {i}" for i in range(queries)]
    for q in qs:
        for b in built:
            b.time_one(q)
    return [b.finish(qs) for b in built]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--local-max", type=int, default=10_000, help="largest size run on local mode"
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--local-queries", type=int, default=10)
    parser.add_argument("--datatype", choices=["float32", "float16", "turbo8"], default="float32")
    parser.add_argument("--tokens", default="16,300", help="token vectors per document: LOW,HIGH")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--lexical",
        choices=("on", "off", "both"),
        default="on",
        help="the bm25 leg (hybrid = every leg, fused) or not (dense prefetch, MaxSim); both: "
        "each size built twice, searches timed alternating between the two",
    )
    args = parser.parse_args()
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            for kind in ("edge", "local"):
                if kind == "local" and n > args.local_max:
                    continue
                queries = args.queries if kind == "edge" else args.local_queries
                low, high = (int(x) for x in args.tokens.split(","))
                legs = {"on": [True], "off": [False], "both": [False, True]}[args.lexical]
                for result in run(kind, n, Path(tmp), queries, args.datatype, (low, high), legs):
                    results.append(result)
                    print(json.dumps(result), flush=True)
    print()
    print(
        "| store | points | bm25 | write pts/s | optimize s | p50 ms | p99 ms | batch ms/q | reopen s | disk MB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['store']} | {r['points']:,} | {'yes' if r['lexical'] else 'no'} "
            f"| {r['write_points_per_s']:,.0f} | {r['optimize_s']:.1f} "
            f"| {r['search_p50_ms']:.1f} | {r['search_p99_ms']:.1f} | {r['batch32_ms_per_query']:.1f} "
            f"| {r['reopen_s']:.2f} | {r['disk_mb']:,.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
