"""Upload throughput and peak memory of ``lfm_qdrant.MultiVectorWriter.add``, encoding excluded.

The encoders are replaced by stand-ins that hand back precomputed random unit vectors
(dense 1024-d, ColBERT 128-d with one row per document token, as LFM2.5-Embedding-350M
and LFM2.5-ColBERT-350M produce), so the time measured is the writer's upload path:
validation, ids, payloads, building points, byte-sized requests, the client's
serialization and the backend's write.

Token counts per document are log-uniform in [16, 512] (median about 90, as passage
corpora; the benchmark harness's ``workload.log_uniform_lengths``); payload texts are cut
from SciFact (about 4 characters per token) in the data folder that ``--data DIR`` names
(``beir-scifact/``, ``ntrex128/``, ``lfm2-tokenizer/``), from seeded synthetic words without it.

Backends:
- ``null`` / ``null-grpc``: a client that serializes each upsert as the REST client
  (pydantic JSON) or the gRPC client (protobuf) would, and drops it. The writer's own
  cost plus the client's serialization, no network, no storage.
- ``memory`` / ``path``: qdrant-client's local mode (``":memory:"`` / ``path=``). Local
  mode keeps every vector in Python memory, so its peak RSS grows with the collection;
  it is not a server and qdrant-client warns above 20,000 points.
- ``url``: a Qdrant server (``--url`` or ``QDRANT_URL``); the collection is deleted after.

Usage::

    python benchmarks/bench_qdrant_write.py --data DATA --docs 10000 --backend null
    python benchmarks/bench_qdrant_write.py --data DATA --docs 10000 --backend memory
    python benchmarks/bench_qdrant_write.py --data DATA --docs 2000 --backend path
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.workload import (
    SCIFACT_CORPUS,
    add_data_argument,
    corpus_texts,
    log_uniform_lengths,
    require_data,
)
from lfm_qdrant import MultiVectorWriter

DENSE_DIM = 1024
COLBERT_DIM = 128
POOL = 64  # distinct precomputed vectors, reused round-robin: generating is not timed


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.standard_normal(shape, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class PrecomputedDense:
    """Dense stand-in: a [n, 1024] float32 block of precomputed unit vectors."""

    dim = DENSE_DIM

    def __init__(self, index: dict[str, int], seed: int = 0):
        self._index = index
        self._pool = _unit(np.random.default_rng(seed), (POOL, DENSE_DIM))
        self.seconds = 0.0

    def encode_documents(
        self, texts: list[str], *, show_progress: bool | None = None
    ) -> np.ndarray:
        start = time.perf_counter()
        out = self._pool[[self._index[t] % POOL for t in texts]]
        self.seconds += time.perf_counter() - start
        return out

    encode_queries = encode_documents


class PrecomputedColBERT:
    """ColBERT stand-in: per document, a view of ``n_tokens`` precomputed 128-d unit rows."""

    dim = COLBERT_DIM

    def __init__(self, index: dict[str, int], n_tokens: list[int], seed: int = 1):
        self._index, self._n_tokens = index, n_tokens
        self._pool = _unit(np.random.default_rng(seed), (POOL, max(n_tokens), COLBERT_DIM))
        self.seconds = 0.0

    def encode_documents(
        self, texts: list[str], *, show_progress: bool | None = None
    ) -> list[np.ndarray]:
        start = time.perf_counter()
        rows = [self._index[t] for t in texts]
        out = [self._pool[i % POOL, : self._n_tokens[i]] for i in rows]
        self.seconds += time.perf_counter() - start
        return out

    def encode_queries(
        self, texts: list[str], *, show_progress: bool | None = None
    ) -> list[np.ndarray]:
        return [self._pool[0, :32] for _ in texts]


class NullClient:
    """Serializes each upsert like the REST client (pydantic JSON) or the gRPC client
    (protobuf), and drops it."""

    def __init__(self, grpc: bool = False) -> None:
        self.grpc = grpc
        self.bytes_sent = 0
        self.requests = 0

    def collection_exists(self, collection_name: str) -> bool:
        return False

    def create_collection(self, **kwargs: Any) -> bool:
        return True

    def create_payload_index(self, **kwargs: Any) -> bool:  # the writer indexes chunk.doc
        return True

    def delete(self, **kwargs: Any) -> None:
        """The writer's per-batch delete of a document's stale points: nothing to drop here."""

    def upsert(self, collection_name: str, points: list[Any], wait: bool = True) -> None:
        from qdrant_client import models
        from qdrant_client.conversions.conversion import RestToGrpc

        if self.grpc:
            self.bytes_sent += sum(RestToGrpc.convert_point_struct(p).ByteSize() for p in points)
        else:
            body = models.PointsList(points=points).model_dump_json(exclude_none=True)
            self.bytes_sent += len(body)
        self.requests += 1


class TimedClient:
    """Forwards to a client, adding up the seconds spent in ``upsert``."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds = 0.0
        self.requests = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.upsert(**kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.requests += 1


def make_client(backend: str, url: str | None, workdir: Path) -> Any:
    if backend in ("null", "null-grpc"):
        return NullClient(grpc=backend == "null-grpc")
    from qdrant_client import QdrantClient

    if backend == "memory":
        return QdrantClient(":memory:")
    if backend == "path":
        return QdrantClient(path=str(workdir / "qdrant"))
    if not url:
        raise SystemExit("--backend url needs --url or QDRANT_URL")
    return QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY"))


def documents(data: Path | None, n: int, seed: int) -> tuple[list[str], list[int], str]:
    """``n`` distinct payload texts, their token counts, and where the text came from."""
    lengths = log_uniform_lengths(n, low=16, high=512, seed=seed)
    corpus, source = corpus_texts(data, max_chars=3_000_000, seed=seed)
    texts = [f"{i}: {corpus[i % len(corpus)][: 4 * k]}" for i, k in enumerate(lengths)]
    return texts, lengths, source


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_argument(parser, without="payload texts from seeded synthetic words")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument(
        "--backend", choices=["null", "null-grpc", "memory", "path", "url"], default="null"
    )
    parser.add_argument("--url", default=os.environ.get("QDRANT_URL"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vectors", choices=["both", "dense", "colbert"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.data is not None:
        require_data(args.data, SCIFACT_CORPUS)

    texts, lengths, source = documents(args.data, args.docs, args.seed)
    index = {t: i for i, t in enumerate(texts)}
    dense = PrecomputedDense(index) if args.vectors in ("both", "dense") else None
    colbert = PrecomputedColBERT(index, lengths) if args.vectors in ("both", "colbert") else None

    with tempfile.TemporaryDirectory() as tmp:
        client = make_client(args.backend, args.url, Path(tmp))
        timed = TimedClient(client)
        name = f"bench_{uuid.uuid4().hex[:8]}"
        writer = MultiVectorWriter(
            timed,
            name,
            dense=dense,
            colbert=colbert,
            batch_size=args.batch_size,
            show_progress=False,
        )
        rss_before = psutil.Process().memory_info().rss
        start, cpu_start = time.perf_counter(), time.process_time()
        writer.add(texts, ids=list(range(len(texts))))
        wall = time.perf_counter() - start
        # CPU seconds of this process: robust to other jobs sharing the machine. (Local
        # mode runs in-process, so it is included; a server's own work is not.)
        cpu = time.process_time() - cpu_start
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        if args.backend == "url":
            client.delete_collection(name)

    encode_s = (dense.seconds if dense else 0.0) + (colbert.seconds if colbert else 0.0)
    upload_s = wall - encode_s
    floats = sum(lengths) * COLBERT_DIM * (colbert is not None) + len(texts) * DENSE_DIM * (
        dense is not None
    )
    result = {
        "backend": args.backend,
        "vectors": args.vectors,
        "docs": len(texts),
        "batch_size": args.batch_size,
        "tokens_mean": float(np.mean(lengths)),
        "tokens_median": float(np.median(lengths)),
        "float32_mb": floats * 4 / 2**20,
        "wall_s": wall,
        "encode_s_excluded": encode_s,
        "upsert_s": timed.seconds,
        "writer_s": upload_s - timed.seconds,
        "requests": timed.requests,
        "points_per_s": len(texts) / upload_s,
        "process_cpu_s": cpu,
        "points_per_cpu_s": len(texts) / cpu,
        "load_avg_1m": os.getloadavg()[0],
        "rss_before_mb": rss_before / 2**20,
        "peak_rss_mb": peak_rss / 2**20,
        "text_source": source,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if isinstance(client, NullClient):
        result["mb_serialized"] = client.bytes_sent / 2**20
    for key, value in result.items():
        print(f"{key:>18}: {value:.2f}" if isinstance(value, float) else f"{key:>18}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
