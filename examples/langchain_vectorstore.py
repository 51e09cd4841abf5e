"""A LangChain knowledge base on LFMQdrantVectorStore: index, re-index, search, retrieve.

Runs offline on local model folders, with Qdrant's engine embedded in the process:

    pip install "lfm-retrieval[langchain,qdrant]"
    python examples/langchain_vectorstore.py /models/LFM2.5-Embedding-350M \\
        --colbert /models/LFM2.5-ColBERT-350M --store ./kb

Documents go in through LangChain's indexing API with a record manager, so running the
script again re-embeds nothing, and a changed or removed source is replaced or dropped.
Queries run dense candidates reranked by ColBERT MaxSim, inside Qdrant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index

from lfm_langchain import LFMEmbeddings, LFMQdrantVectorStore
from lfm_qdrant import EdgeStore

FAQ = {
    "shipping.md": "Orders ship within two days of payment; tracking numbers arrive by email.",
    "returns.md": "Returns are free for thirty days. Refunds reach your card within a week.",
    "account.md": "Reset your password from the login page; the link expires after an hour.",
    "pedidos.md": "Los pedidos salen del almacén en dos días laborables.",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense_model", help="local folder (or hub id) of the dense model")
    parser.add_argument("--colbert", help="local folder (or hub id) of a ColBERT model")
    parser.add_argument("--store", default="./lfm-langchain-kb", help="embedded store folder")
    parser.add_argument("--query", default="when will my order arrive?")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Document]:
    args = parse_args(argv)
    embeddings = LFMEmbeddings(
        model_name=args.dense_model, device=None if args.device == "auto" else args.device
    )
    with EdgeStore(args.store) as client:
        store = LFMQdrantVectorStore(
            client,
            "faq",
            embedding=embeddings,
            colbert=args.colbert,
            writer_kwargs={"device": args.device},
        )
        # A real application keeps the record manager in a database (SQLRecordManager).
        records = InMemoryRecordManager(namespace="faq")
        records.create_schema()
        docs = [Document(page_content=text, metadata={"source": s}) for s, text in FAQ.items()]
        print(
            index(
                docs, records, store, cleanup="full", source_id_key="source", key_encoder="sha256"
            )
        )

        # The returns page changes and the Spanish page goes away: one add, two deletes.
        docs[1] = Document(
            page_content="Returns are free for sixty days.", metadata={"source": "returns.md"}
        )
        print(
            index(
                docs[:3],
                records,
                store,
                cleanup="full",
                source_id_key="source",
                key_encoder="sha256",
            )
        )

        hits = store.similarity_search_with_score(args.query, k=2)
        for doc, score in hits:
            print(f"{score:8.3f}  {doc.metadata['source']:12}  {doc.page_content}")
        retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3})
        print([doc.metadata["source"] for doc in retriever.invoke(args.query)])
        return [doc for doc, _ in hits]


if __name__ == "__main__":
    main()
