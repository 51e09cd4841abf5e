"""Retrieval for RAG with LangChain: LFM2.5 dense search in Qdrant, ColBERT rerank, prompt.

Runs offline on local model folders:

    pip install "lfm-retrieval[langchain]" langchain-qdrant
    python examples/langchain_rag.py /models/LFM2.5-Embedding-350M \\
        --colbert /models/LFM2.5-ColBERT-350M --query "How do plants make energy?"

Any sentence-transformers folder works as the dense model (all-MiniLM-L6-v2, for one).
Without ``--corpus`` a dozen built-in passages are indexed; with it, one passage per
line of a UTF-8 text file. The script prints the retrieved passages and the prompt you
would send to a chat model; plug in the chat model of your choice to finish the RAG loop.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_qdrant import QdrantVectorStore
from qdrant_client import QdrantClient, models

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_langchain import LFMColBERTReranker, LFMEmbeddings

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

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the context. Cite passages as [n]."),
        ("human", "Context:\n{context}\n\nQuestion: {question}"),
    ]
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense_model", help="local folder (or hub id) of the dense model")
    parser.add_argument("--colbert", help="local folder (or hub id) of a ColBERT model")
    parser.add_argument("--query", default="How do plants make energy from light?")
    parser.add_argument("--corpus", type=Path, help="UTF-8 text file, one passage per line")
    parser.add_argument("--qdrant-path", help="keep the Qdrant collection in this folder")
    parser.add_argument("--collection", default="lfm_langchain_rag")
    parser.add_argument("--k", type=int, default=8, help="passages from dense search")
    parser.add_argument("--top-n", type=int, default=3, help="passages kept after rerank")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    return parser.parse_args(argv)


def open_store(client: QdrantClient, name: str, embeddings: LFMEmbeddings) -> QdrantVectorStore:
    """The collection, created from ``embeddings.dim`` when it does not exist yet."""
    if client.collection_exists(name):
        # langchain-qdrant checks the existing collection against one probe embedding.
        return QdrantVectorStore(client, name, embedding=embeddings)
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=embeddings.dim, distance=models.Distance.COSINE),
    )
    # We just made it with the model's own size: nothing to validate, no probe to embed.
    return QdrantVectorStore(client, name, embedding=embeddings, validate_collection_config=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    passages = PASSAGES
    if args.corpus is not None:
        lines = args.corpus.read_text(encoding="utf-8").splitlines()
        passages = [line for line in lines if line.strip()]

    dense = DenseEncoder.from_pretrained(args.dense_model, device=args.device)
    embeddings = LFMEmbeddings(encoder=dense)
    client = QdrantClient(path=args.qdrant_path) if args.qdrant_path else QdrantClient(":memory:")
    store = open_store(client, args.collection, embeddings)
    # Ids derived from the text make re-indexing idempotent (langchain-qdrant's default
    # ids are random, so a second run would store every passage twice).
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, text)) for text in passages]
    store.add_documents([Document(page_content=text) for text in passages], ids=ids)

    docs = store.as_retriever(search_kwargs={"k": args.k}).invoke(args.query)
    label = "dense"
    if args.colbert:
        colbert = LateInteractionEncoder.from_pretrained(args.colbert, device=args.device)
        reranker = LFMColBERTReranker(encoder=colbert, top_n=args.top_n)
        docs = list(reranker.compress_documents(docs, args.query))
        label = "ColBERT MaxSim"
    else:
        docs = docs[: args.top_n]

    print(f"Query: {args.query}\nTop {len(docs)} by {label}:")
    for rank, doc in enumerate(docs, start=1):
        score = doc.metadata.get("relevance_score")
        shown = f"{score:7.3f}  " if score is not None else ""
        print(f"{rank:2d}. {shown}{doc.page_content}")

    context = "\n".join(f"[{n}] {doc.page_content}" for n, doc in enumerate(docs, start=1))
    print("\nPrompt for your chat model:")
    for message in PROMPT.format_messages(context=context, question=args.query):
        print(f"--- {message.type}\n{message.content}")
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
