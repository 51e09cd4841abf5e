"""LangChain document compressor that reranks with a ColBERT model by MaxSim."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from lfm_core import DEFAULT_TOP_N, InputError, validate_text

from ._loading import coerce_model_name, load_options, remote_client

if TYPE_CHECKING:
    from lfm_core import LateInteractionEncoder

DEFAULT_MODEL_NAME = "LiquidAI/LFM2.5-ColBERT-350M"
SCORE_KEY = "relevance_score"


class LFMColBERTReranker(BaseDocumentCompressor):
    """Rerank the documents a retriever returned with LFM2.5-ColBERT (late interaction).

    Every document is scored against the query by MaxSim (the sum, over the query's
    token vectors, of the best dot product with any of the document's token vectors),
    computed by :meth:`lfm_core.LateInteractionEncoder.rerank` in token-budgeted
    batches. No index is built: only the documents passed in are scored.

    The result is new :class:`~langchain_core.documents.Document` objects, best first,
    each a copy of its input with the score in ``metadata["relevance_score"]``; the
    caller's documents and their metadata dicts are left untouched.

    Use it as the compressor of a ``ContextualCompressionRetriever``::

        from langchain_classic.retrievers import ContextualCompressionRetriever
        from lfm_langchain import LFMColBERTReranker

        retriever = ContextualCompressionRetriever(
            base_compressor=LFMColBERTReranker(model_name="/models/lfm2.5-colbert", top_n=5),
            base_retriever=vector_store.as_retriever(search_kwargs={"k": 50}),
        )

    With ``base_url``, the service's ``/v1/rerank`` scores them instead (remote mode: no
    torch in this process): ``LFMColBERTReranker(base_url="http://gpu-box:8080", top_n=5)``.

    Args:
        encoder: An already loaded :class:`~lfm_core.LateInteractionEncoder` to use
            instead of loading ``model_name``.
        **data: the fields below, by keyword.

    Attributes:
        base_url: ``lfm-retrieval serve``'s URL: remote mode; loading options are refused.
        api_key: The service's key, remote mode only.
        timeout_s: Seconds to wait for one answer of the service.
        max_retries: Retries of a busy (503, ``Retry-After``) or unreachable service.
        model_name: Hugging Face hub id or local folder of a ColBERT checkpoint.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; None lets the core pick.
        max_batch_size: At most this many texts per forward pass; None: the core's default.
        batch_size: Deprecated name of ``max_batch_size``.
        max_tokens_per_batch: Token budget of one forward pass; None: the core's default.
        model_kwargs: Other loading options (:class:`lfm_core.LoadOptions` fields).
        top_n: Keep the ``top_n`` best documents (default 5, as the LlamaIndex reranker);
            None keeps them all. Blank documents are ranked last with score 0.0.
        score_threshold: Drop documents scoring below this. MaxSim scores are sums of
            cosine similarities over the query's token vectors (32 for LFM2.5-ColBERT),
            so they lie in ``[-32, 32]`` there, not in ``[0, 1]``.

    Raises:
        InputError: (a ``ValueError``) a ``model_name`` or ``device`` that contradicts
            ``encoder``, or loading options given with it.
        TypeError: ``encoder`` is not a :class:`~lfm_core.LateInteractionEncoder`.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = DEFAULT_MODEL_NAME
    """Hugging Face hub id or local folder of the ColBERT checkpoint."""
    device: str | None = None
    """Device to load the model on; None lets the core pick."""
    max_batch_size: int | None = Field(default=None, gt=0)
    """At most this many texts per forward pass; None: the core's default."""
    batch_size: int | None = Field(default=None, gt=0, deprecated="use max_batch_size")
    """Deprecated name of ``max_batch_size``."""
    max_tokens_per_batch: int | None = Field(default=None, gt=0)
    """Token budget of one forward pass; None: the core's default."""
    model_kwargs: dict[str, Any] | None = None
    """Other loading options (:class:`lfm_core.LoadOptions` fields)."""
    top_n: int | None = Field(default=DEFAULT_TOP_N, gt=0)
    """Number of documents to return, best first; None returns all."""
    score_threshold: float | None = None
    """Drop documents whose MaxSim score is below this; None keeps all."""

    base_url: str | None = None
    """``lfm-retrieval serve``'s URL: remote mode (no model in this process)."""
    api_key: SecretStr | None = None
    """The service's API key (remote mode)."""
    timeout_s: float = Field(default=60.0, gt=0)
    """Seconds to wait for one answer of the service (remote mode)."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of a busy or unreachable service (remote mode)."""

    _encoder: Any = PrivateAttr(default=None)
    _remote: Any = PrivateAttr(default=None)

    def __init__(self, *, encoder: LateInteractionEncoder | None = None, **data: Any) -> None:
        super().__init__(**data)
        if self.base_url is not None:
            self._remote = remote_client(self, "LFMColBERTReranker", encoder)
            return
        from lfm_core import LateInteractionEncoder, resolve_encoder

        encoder = resolve_encoder(
            LateInteractionEncoder,
            encoder,
            model_name=self.model_name if "model_name" in self.model_fields_set else None,
            options=load_options(self, "LFMColBERTReranker"),
            default_model=DEFAULT_MODEL_NAME,
            owner="LFMColBERTReranker",
        )
        self._encoder = encoder
        # Show the model really in use (repr, model_dump) when the encoder was given.
        self.model_name = encoder.model_name
        self.device = str(encoder.device)

    @field_validator("model_name", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return coerce_model_name(value)

    @property
    def encoder(self) -> LateInteractionEncoder:
        """The loaded encoder; pass it as ``encoder=`` to share the model.

        Raises:
            InputError: in remote mode, where no model is loaded here.
        """
        if self._encoder is None:
            raise InputError(f"LFMColBERTReranker: remote mode ({self.base_url}) loads no encoder")
        encoder: LateInteractionEncoder = self._encoder
        return encoder

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Score ``documents`` against ``query`` and return the best, best first.

        Args:
            documents: The candidates, e.g. what a vector store retrieved.
            query: The user's query.
            callbacks: Accepted for the LangChain interface; not used.

        Returns:
            Copies of at most ``top_n`` documents scoring at least ``score_threshold``,
            sorted by decreasing score, the score in ``metadata["relevance_score"]``
            (a ``float``); ``[]`` when ``documents`` is empty.

        Raises:
            TypeError: ``query`` is not a ``str``, or an element of ``documents`` is not
                a ``Document`` (the message names its position).
        """
        documents = _checked(documents, query)
        if not documents:
            return []
        texts = [doc.page_content for doc in documents]
        if self._remote is not None:
            ranked = self._remote.rerank(query, texts, top_n=self.top_n)
        else:
            ranked = self._encoder.rerank(query, texts, top_k=self.top_n)
        return self._kept(documents, ranked)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`; the model runs in a worker thread.

        Args:
            documents: The candidates.
            query: The user's query.
            callbacks: Accepted for the LangChain interface; not used.

        Returns:
            Same as :meth:`compress_documents`.
        """
        if self._remote is None:
            return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
        documents = _checked(documents, query)
        if not documents:
            return []
        texts = [doc.page_content for doc in documents]
        return self._kept(documents, await self._remote.arerank(query, texts, top_n=self.top_n))

    def _kept(self, documents: list[Document], ranked: list[tuple[int, float]]) -> list[Document]:
        return [
            _with_score(documents[index], score)
            for index, score in ranked
            if self.score_threshold is None or score >= self.score_threshold
        ]


def _checked(documents: Sequence[Document], query: str) -> list[Document]:
    validate_text(query, "query")
    items = list(documents)
    for i, doc in enumerate(items):
        if not isinstance(doc, Document):
            what = "None" if doc is None else f"a {type(doc).__name__}"
            raise TypeError(f"documents[{i}] is {what}; expected langchain_core.documents.Document")
    return items


def _with_score(doc: Document, score: float) -> Document:
    # A new metadata dict on a copy: the caller's Document and dict stay as they were.
    return doc.model_copy(update={"metadata": {**doc.metadata, SCORE_KEY: float(score)}})


__all__ = ["DEFAULT_MODEL_NAME", "SCORE_KEY", "LFMColBERTReranker"]
