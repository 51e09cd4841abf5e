"""LangChain adapters for Liquid AI's LFM2.5 retrieval models.

- :class:`LFMEmbeddings`: a LangChain ``Embeddings`` over LFM2.5-Embedding (or any
  sentence-transformers checkpoint), query and document prompts applied by the core.
- :class:`LFMColBERTReranker`: a ``BaseDocumentCompressor`` that reranks retrieved
  documents with LFM2.5-ColBERT by MaxSim.

Install with ``pip install lfm-retrieval[langchain]``.
"""

from .embeddings import LFMEmbeddings
from .reranker import LFMColBERTReranker

__all__ = ["LFMColBERTReranker", "LFMEmbeddings"]
