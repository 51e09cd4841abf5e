"""LlamaIndex adapters for Liquid AI's LFM2.5 retrieval models.

- :class:`LFMEmbedding`: a ``BaseEmbedding`` over ``lfm_core.DenseEncoder``.
- :class:`LFMColBERTRerank`: a ``BaseNodePostprocessor`` that reranks nodes by ColBERT MaxSim.
- :class:`LFMQdrantVectorStore`: a LlamaIndex vector store over a Qdrant multivector
  collection (the nodes' dense embeddings + ColBERT, MaxSim inside Qdrant).
- :class:`LFMColBERTRetriever`: a ``BaseRetriever`` over a Qdrant collection written by
  ``lfm_qdrant.MultiVectorWriter`` (dense prefetch, MaxSim inside Qdrant).
"""

from typing import TYPE_CHECKING

from lfm_llamaindex.embeddings import LFMEmbedding
from lfm_llamaindex.reranker import LFMColBERTRerank
from lfm_llamaindex.retriever import LFMColBERTRetriever

if TYPE_CHECKING:
    from lfm_llamaindex.vectorstore import LFMQdrantVectorStore

__all__ = ["LFMColBERTRerank", "LFMColBERTRetriever", "LFMEmbedding", "LFMQdrantVectorStore"]


def __getattr__(name: str) -> object:
    # Imported on first use, so the embeddings and the reranker load without Qdrant's client.
    if name == "LFMQdrantVectorStore":
        from lfm_llamaindex.vectorstore import LFMQdrantVectorStore

        return LFMQdrantVectorStore
    raise AttributeError(f"module 'lfm_llamaindex' has no attribute {name!r}")
