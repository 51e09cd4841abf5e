"""LangChain adapters for Liquid AI's LFM2.5 retrieval models.

- :class:`LFMEmbeddings`: a LangChain ``Embeddings`` over LFM2.5-Embedding (or any
  sentence-transformers checkpoint), query and document prompts applied by the core.
- :class:`LFMColBERTReranker`: a ``BaseDocumentCompressor`` that reranks retrieved
  documents with LFM2.5-ColBERT by MaxSim.
- :class:`LFMColBERTRetriever`: a ``BaseRetriever`` over a Qdrant collection written by
  ``lfm_qdrant.MultiVectorWriter``: dense prefetch and MaxSim inside Qdrant.

Install with ``pip install lfm-retrieval[langchain]`` (the retriever also needs ``[qdrant]``).
"""

from .embeddings import LFMEmbeddings
from .reranker import LFMColBERTReranker
from .retriever import LFMColBERTRetriever

__all__ = ["LFMColBERTReranker", "LFMColBERTRetriever", "LFMEmbeddings"]
