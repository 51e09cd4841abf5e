"""LlamaIndex ``BaseEmbedding`` over :class:`lfm_core.DenseEncoder`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr

from lfm_core import DenseEncoder, LoadOptions, resolve_encoder, validate_text, validate_texts
from lfm_core.notices import TruncationLog

DEFAULT_DENSE_MODEL = "LiquidAI/LFM2.5-Embedding-350M"

# LlamaIndex cuts a node list into chunks of ``embed_batch_size`` and hands each chunk to
# ``_get_text_embeddings``. The core then sorts the chunk by length and splits it by a token
# budget that fits the device, so a larger chunk only means better length packing and fewer
# callback events; 10 (LlamaIndex's default) would leave the GPU mostly idle.
DEFAULT_EMBED_BATCH_SIZE = 256


class LFMEmbedding(BaseEmbedding):
    """LFM2.5-Embedding (or any sentence-transformers checkpoint) as a LlamaIndex embedding.

    Queries go through ``encode_queries`` and nodes through ``encode_documents``, so the
    checkpoint's own prompts (``"query: "`` / ``"document: "`` for LFM2.5) are applied by the
    core; this class never adds text of its own. Vectors are L2-normalized, so LlamaIndex's
    default cosine similarity and a dot product agree.

    Example:
        >>> from llama_index.core import Settings  # doctest: +SKIP
        >>> Settings.embed_model = LFMEmbedding("LiquidAI/LFM2.5-Embedding-350M")  # doctest: +SKIP

    Args:
        model_name: Hub id or local folder to load. Defaults to ``LiquidAI/LFM2.5-Embedding-350M``
            when ``encoder`` is not given either.
        encoder: An already loaded :class:`lfm_core.DenseEncoder` to share (with a LangChain
            adapter, a Qdrant writer, ...). Mutually exclusive with a different ``model_name``.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda:1"``, ... Used when
            loading; with ``encoder`` it must match the encoder's device.
        embed_batch_size: Texts per call into the core (LlamaIndex's chunking); the core
            splits each call further by its token budget.
        model_kwargs: Loading options of :class:`lfm_core.LoadOptions` (``dtype``,
            ``max_tokens_per_batch``, ``max_batch_size``, ``quantize``, ``revision``, ...),
            as ``HuggingFaceEmbedding`` takes them. Not with ``encoder``.
        **kwargs: Other ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``,
            ``embeddings_cache``). Unknown names raise a validation error.
    """

    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, protected_namespaces=("pydantic_model_",)
    )

    device: str = Field(description="Device the encoder runs on, e.g. 'cpu' or 'cuda:0'.")
    embed_batch_size: int = Field(
        default=DEFAULT_EMBED_BATCH_SIZE,
        description="Texts per call into the encoder; the encoder batches further by tokens.",
        gt=0,
        le=8192,
    )

    _encoder: DenseEncoder = PrivateAttr()
    _truncations: TruncationLog = PrivateAttr(default_factory=lambda: TruncationLog("LFMEmbedding"))

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        *,
        encoder: DenseEncoder | None = None,
        device: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        options = LoadOptions.from_kwargs(model_kwargs, type(self).__name__).replace(device=device)
        loaded = resolve_encoder(
            DenseEncoder,
            encoder,
            model_name=model_name,
            options=options,
            default_model=DEFAULT_DENSE_MODEL,
            owner=type(self).__name__,
        )
        super().__init__(
            model_name=loaded.model_name,
            device=str(loaded.device),
            embed_batch_size=embed_batch_size,
            **kwargs,
        )
        self._encoder = loaded

    @classmethod
    def class_name(cls) -> str:
        """Key LlamaIndex uses to serialize this component."""
        return "LFMEmbedding"

    @property
    def encoder(self) -> DenseEncoder:
        """The underlying encoder, to share with other adapters."""
        return self._encoder

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode_queries([validate_text(query, "query")])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode_documents([validate_text(text, "text")])[0].tolist()

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed documents in chunks of ``embed_batch_size``; ``texts`` is checked whole first.

        LlamaIndex iterates ``texts`` chunk by chunk: a bare ``str`` would be embedded one
        character at a time, and a bad item would be named by its place in its chunk.
        """
        return super().get_text_embedding_batch(
            validate_texts(texts), show_progress=show_progress, **kwargs
        )

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`, with the same check."""
        return await super().aget_text_embedding_batch(
            validate_texts(texts), show_progress=show_progress, **kwargs
        )

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        # One call for the whole chunk: the core batches it for the device. LlamaIndex's
        # own show_progress draws the bar over the chunks; the core draws none of its own.
        # Chunk after chunk: one truncation warning per object, not one per chunk.
        with self._truncations.around():
            return self._encoder.encode_documents(texts, show_progress=False).tolist()

    # Async: the encoder is synchronous and thread-safe, so each call runs in a worker thread
    # and the event loop stays free while the model works.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
