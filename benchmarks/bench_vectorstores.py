"""What the framework vector stores add to a search: the same hybrid query three ways.

On one Qdrant Edge collection of ``--docs`` short texts, written with the tiny LFM2 test
checkpoints (so the model's share of a query is as small as it gets and the stores' own
work shows the most), it times per query, one query at a time on one torch thread:

- ``MultiVectorWriter.search`` (encode both sides, one ``query_points``);
- ``lfm_langchain.LFMQdrantVectorStore.similarity_search`` (the same, plus ``Document`` s);
- ``lfm_llamaindex.LFMQdrantVectorStore.query`` with the query embedded by ``LFMEmbedding``
  (plus nodes rebuilt from their JSON).

Then it profiles 100 LangChain store searches and prints the time spent outside
``writer.search``: the store's own cost, free of the machine's noise between runs.

Usage::

    python benchmarks/bench_vectorstores.py --docs 2000 --queries 200
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from llama_index.core.vector_stores.types import VectorStoreQuery

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_core.testing import write_colbert_checkpoint, write_dense_checkpoint
from lfm_langchain import LFMQdrantVectorStore as LangChainStore
from lfm_llamaindex import LFMEmbedding
from lfm_llamaindex import LFMQdrantVectorStore as LlamaIndexStore
from lfm_qdrant import EdgeStore, MultiVectorWriter


def per_query_ms(fn: Callable[[str], object], queries: list[str], repeats: int = 3) -> float:
    """Best of ``repeats`` passes, in ms per query."""
    fn(queries[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for query in queries:
            fn(query)
        best = min(best, (time.perf_counter() - start) / len(queries) * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dense = DenseEncoder.from_pretrained(write_dense_checkpoint(root / "d"), device="cpu")
        colbert = LateInteractionEncoder.from_pretrained(
            write_colbert_checkpoint(root / "c"), device="cpu"
        )
        texts = [
            f"document {i} about topic {i % 37} and item {i * 7 % 101}" for i in range(args.docs)
        ]
        queries = [f"topic {i} item {i * 3}" for i in range(args.queries)]
        with EdgeStore(root / "store") as edge:
            langchain = LangChainStore(edge, "bench", embedding=dense, colbert=colbert)
            langchain.add_texts(texts, ids=[f"d{i}" for i in range(len(texts))])
            writer = MultiVectorWriter(edge, "bench", dense=dense, colbert=colbert)
            embed = LFMEmbedding(encoder=dense)
            llamaindex = LlamaIndexStore(
                collection_name="bench", client=edge, colbert=colbert, embed_model=embed
            )

            def llama_query(q: str) -> object:
                vector = embed.get_query_embedding(q)
                return llamaindex.query(
                    VectorStoreQuery(query_embedding=vector, query_str=q, similarity_top_k=10)
                )

            runs = {
                "MultiVectorWriter.search": lambda q: writer.search(q, limit=10),
                "LangChain similarity_search": lambda q: langchain.similarity_search(q, k=10),
                "LlamaIndex query (+ embed)": llama_query,
            }
            times = {name: per_query_ms(fn, queries) for name, fn in runs.items()}
            base = times["MultiVectorWriter.search"]
            for name, ms in times.items():
                print(f"{name:30} {ms:7.2f} ms/query  {ms / base:5.2f}x")
            profile = cProfile.Profile()
            profile.runcall(lambda: [langchain.similarity_search(q, k=10) for q in queries[:100]])
            stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
            total = max(v[3] for v in stats.values())
            inner = max(v[3] for k, v in stats.items() if k[2] == "search" and "writer" in k[0])
            print(
                f"LangChain store's own work: {(total - inner) / 100 * 1000:.2f} ms/query "
                f"of {total / 100 * 1000:.2f} (profiled)"
            )


if __name__ == "__main__":
    main()
