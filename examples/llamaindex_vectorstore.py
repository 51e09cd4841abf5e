"""A LlamaIndex knowledge base on LFMQdrantVectorStore: ingest, re-ingest, retrieve.

Runs offline on local model folders, with Qdrant's engine embedded in the process:

    pip install "lfm-retrieval[llamaindex]"
    python examples/llamaindex_vectorstore.py /models/LFM2.5-Embedding-350M \\
        --colbert /models/LFM2.5-ColBERT-350M --store ./kb

An ``IngestionPipeline`` with a document store splits, embeds and upserts the documents;
run again on a changed corpus it re-embeds only the changed document. Retrieval takes
dense candidates and reranks them by ColBERT MaxSim, inside Qdrant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import NodeWithScore
from llama_index.core.storage.docstore import SimpleDocumentStore

from lfm_llamaindex import LFMEmbedding, LFMQdrantVectorStore

FAQ = {
    "shipping": "Orders ship within two days of payment. Tracking numbers arrive by email.",
    "returns": "Returns are free for thirty days. Refunds reach your card within a week.",
    "account": "Reset your password from the login page. The link expires after an hour.",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense_model", help="local folder (or hub id) of the dense model")
    parser.add_argument("--colbert", help="local folder (or hub id) of a ColBERT model")
    parser.add_argument("--store", default="./lfm-llamaindex-kb", help="embedded store folder")
    parser.add_argument("--query", default="when will my order arrive?")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[NodeWithScore]:
    args = parse_args(argv)
    embed = LFMEmbedding(model_name=args.dense_model, device=args.device)
    store = LFMQdrantVectorStore(
        collection_name="faq",
        path=args.store,
        colbert=args.colbert,
        embed_model=embed,
        writer_kwargs={"device": args.device},
    )
    docstore = SimpleDocumentStore()  # persist it (docstore.persist) to keep it across runs

    def ingest(corpus: dict[str, str]) -> int:
        pipeline = IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), embed],
            docstore=docstore,
            vector_store=store,
        )
        docs = [Document(text=text, doc_id=key) for key, text in corpus.items()]
        return len(pipeline.run(documents=docs))

    print("nodes written:", ingest(FAQ))
    print("nodes written after one change:", ingest({**FAQ, "returns": "Returns: sixty days."}))

    index = VectorStoreIndex.from_vector_store(store, embed_model=embed)
    hits = index.as_retriever(similarity_top_k=2).retrieve(args.query)
    for hit in hits:
        print(f"{hit.score:8.3f}  {hit.node.ref_doc_id:10}  {hit.node.get_content()}")
    store.client.close()
    return hits


if __name__ == "__main__":
    main()
