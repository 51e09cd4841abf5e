"""LlamaIndex adapters for Liquid AI's LFM2.5 retrieval models.

- :class:`LFMEmbedding`: a ``BaseEmbedding`` over ``lfm_core.DenseEncoder``.
- :class:`LFMColBERTRerank`: a ``BaseNodePostprocessor`` that reranks nodes by ColBERT MaxSim.
- :class:`LFMColBERTRetriever`: a ``BaseRetriever`` over a Qdrant collection written by
  ``lfm_qdrant.MultiVectorWriter`` (dense prefetch, MaxSim inside Qdrant).
"""

from lfm_llamaindex.embeddings import LFMEmbedding
from lfm_llamaindex.reranker import LFMColBERTRerank
from lfm_llamaindex.retriever import LFMColBERTRetriever

__all__ = ["LFMColBERTRerank", "LFMColBERTRetriever", "LFMEmbedding"]
