"""LangChain adapters for Liquid AI's LFM2.5 retrieval models.

- :class:`LFMEmbeddings`: a LangChain ``Embeddings`` over LFM2.5-Embedding (or any
  sentence-transformers checkpoint), query and document prompts applied by the core.
- :class:`LFMColBERTReranker`: a ``BaseDocumentCompressor`` that reranks retrieved
  documents with LFM2.5-ColBERT by MaxSim.
- :class:`LFMQdrantVectorStore`: a LangChain ``VectorStore`` over a Qdrant multivector
  collection (dense + ColBERT, MaxSim in Qdrant); works with ``langchain_core.indexing.index``.
- :class:`LFMColBERTRetriever`: a ``BaseRetriever`` over a Qdrant collection written by
  ``lfm_qdrant.MultiVectorWriter``: dense prefetch and MaxSim inside Qdrant.

Install with ``pip install -e ".[langchain]"`` in a checkout (published:
``pip install "lfm-retrieval[langchain]"``); the store, and the writer the retriever
searches, also need ``[qdrant]``.
"""

from typing import TYPE_CHECKING

from .embeddings import LFMEmbeddings
from .reranker import LFMColBERTReranker
from .retriever import LFMColBERTRetriever

if TYPE_CHECKING:
    from .vectorstore import LFMQdrantVectorStore

__all__ = ["LFMColBERTReranker", "LFMColBERTRetriever", "LFMEmbeddings", "LFMQdrantVectorStore"]


def __getattr__(name: str) -> object:
    # Imported on first use: the store needs lfm_qdrant (the [qdrant] extra), the rest not.
    if name == "LFMQdrantVectorStore":
        from .vectorstore import LFMQdrantVectorStore

        return LFMQdrantVectorStore
    raise AttributeError(f"module 'lfm_langchain' has no attribute {name!r}")
