"""Retrieval for RAG with LlamaIndex: LFM2.5 dense index in Qdrant, ColBERT rerank, query engine.

Runs offline on local model folders:

    pip install "lfm-retrieval[llamaindex,qdrant]" llama-index-vector-stores-qdrant
    python examples/llamaindex_rag.py /models/LFM2.5-Embedding-350M /models/LFM2.5-ColBERT-350M \\
        --question "How do plants make energy from light?"

It answers the question twice, with one copy of each model shared by every component:

1. ``VectorStoreIndex`` on ``QdrantVectorStore`` with ``LFMEmbedding``, and a query engine
   that reranks the dense hits with ``LFMColBERTRerank``;
2. ``LFMColBERTRetriever`` over an ``lfm_qdrant.MultiVectorWriter`` collection, where the
   dense prefetch and the MaxSim rerank both run inside Qdrant.

Any sentence-transformers folder works as the dense model and any PyLate folder as the
ColBERT model. Without ``--corpus`` a dozen built-in passages are indexed; with it, one
passage per line of a text file, or a BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``).
The LLM is LlamaIndex's ``MockLLM``, which answers with the prompt it was given, so the
script prints exactly what your model would read; pass ``llm=`` any LlamaIndex LLM instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import NodeWithScore
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_llamaindex import LFMColBERTRerank, LFMColBERTRetriever, LFMEmbedding
from lfm_qdrant import MultiVectorWriter

PASSAGES = [
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.",
    "Chlorophyll absorbs mostly red and blue light and reflects green.",
    "Mitochondria release the energy stored in glucose through cellular respiration.",
    "The Treaty of Westphalia ended the Thirty Years' War in 1648.",
    "A bank raises interest rates to slow inflation.",
    "Rust's borrow checker rejects data races at compile time.",
    "The Mariana Trench is the deepest known point of Earth's oceans.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "Qdrant stores vectors with a JSON payload and filters on it during search.",
    "Late-interaction models keep one vector per token and score with MaxSim.",
    "Marathon runners train their aerobic base with long, slow runs.",
    "Jupiter's Great Red Spot is a storm larger than Earth.",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense_model", help="local folder (or hub id) of the dense model")
    parser.add_argument("colbert_model", help="local folder (or hub id) of the ColBERT model")
    parser.add_argument("--question", default="How do plants make energy from light?")
    parser.add_argument("--corpus", type=Path, help="passages: .txt one per line, or BEIR .jsonl")
    parser.add_argument("--limit", type=int, help="index only the first N passages")
    parser.add_argument("--qdrant-path", help="keep the Qdrant collections in this folder")
    parser.add_argument("--k", type=int, default=8, help="dense candidates to rerank")
    parser.add_argument("--top-n", type=int, default=3, help="passages given to the LLM")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    return parser.parse_args(argv)


def read_corpus(path: Path | None, limit: int | None) -> list[Document]:
    """Documents with stable ids, so a rerun over ``--qdrant-path`` overwrites, not duplicates."""
    if path is None:
        rows = [(f"p{i}", text) for i, text in enumerate(PASSAGES)]
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            records = (json.loads(line) for line in f if line.strip())
            rows = [(str(r["_id"]), f"{r.get('title', '')} {r['text']}".strip()) for r in records]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [(f"l{i}", line) for i, line in enumerate(lines) if line.strip()]
    return [
        # doc_id is bookkeeping: keep it out of what the models and the LLM read.
        Document(
            id_=doc_id,
            text=text,
            metadata={"doc_id": doc_id},
            excluded_embed_metadata_keys=["doc_id"],
            excluded_llm_metadata_keys=["doc_id"],
        )
        for doc_id, text in rows[:limit]
    ]


def show(title: str, nodes: list[NodeWithScore]) -> None:
    print(f"\n{title}")
    for rank, node in enumerate(nodes, start=1):
        text = node.node.get_content()
        print(f"{rank:2d}. {node.score:8.3f}  [{node.node.metadata.get('doc_id')}] {text[:100]}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    documents = read_corpus(args.corpus, args.limit)
    # One copy of each model, shared by the index, the reranker and the Qdrant writer.
    dense = DenseEncoder.from_pretrained(args.dense_model, device=args.device)
    colbert = LateInteractionEncoder.from_pretrained(args.colbert_model, device=args.device)
    client = QdrantClient(path=args.qdrant_path) if args.qdrant_path else QdrantClient(":memory:")
    llm = MockLLM()  # answers with its prompt; swap in any LlamaIndex LLM

    # 1. Dense index with LlamaIndex's Qdrant store; ColBERT reranks the dense hits.
    embed_model = LFMEmbedding(encoder=dense)
    store = QdrantVectorStore(client=client, collection_name="lfm_llamaindex_dense")
    if client.collection_exists("lfm_llamaindex_dense"):
        index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    else:
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=embed_model,
        )
    engine = index.as_query_engine(
        llm=llm,
        similarity_top_k=args.k,
        node_postprocessors=[LFMColBERTRerank(encoder=colbert, top_n=args.top_n)],
    )
    response = engine.query(args.question)
    print(f"Question: {args.question}")
    show(f"1. Dense top {args.k} -> LFMColBERTRerank top {args.top_n}:", response.source_nodes)

    # 2. Both stages inside Qdrant, on a multivector collection. lexical=False keeps the
    # collection to the two stages of pipeline 1 (so both print the same hits); the default
    # adds Qdrant's BM25 as a third leg of hybrid search.
    writer = MultiVectorWriter(
        client, "lfm_llamaindex_multivector", dense=dense, colbert=colbert, lexical=False
    )
    writer.add(
        [d.text for d in documents],
        ids=[d.doc_id for d in documents],
        metadata=[{"doc_id": d.doc_id} for d in documents],
    )
    retriever = LFMColBERTRetriever(writer, similarity_top_k=args.top_n, prefetch_limit=args.k)
    response2 = RetrieverQueryEngine.from_args(retriever, llm=llm).query(args.question)
    show(
        f"2. LFMColBERTRetriever (dense prefetch {args.k}, MaxSim in Qdrant):",
        response2.source_nodes,
    )

    print("\nWhat the LLM reads (MockLLM echoes its prompt):\n")
    print(str(response))
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
