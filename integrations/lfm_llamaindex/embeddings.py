"""LlamaIndex ``BaseEmbedding`` over :class:`lfm_core.DenseEncoder`."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr

from lfm_core import InputError, validate_text, validate_texts
from lfm_core.notices import TruncationLog

from ._remote import REMOTE_DEVICE, remote_client

if TYPE_CHECKING:
    from lfm_core import DenseEncoder

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

    With ``base_url`` it calls ``lfm-retrieval serve`` instead (remote mode: no torch and
    no weights in this process; queries still get the query prompt, the service applies it)::

        LFMEmbedding(base_url="http://gpu-box:8080", api_key="KEY")

    Args:
        model_name: Hub id or local folder to load (remote mode: the served model to name;
            None lets the service choose). Defaults to ``LiquidAI/LFM2.5-Embedding-350M``
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
        base_url: ``lfm-retrieval serve``'s URL: remote mode; loading options are refused.
        api_key: The service's key (``Authorization: Bearer``).
        timeout_s: Seconds to wait for one answer of the service.
        max_retries: Retries of a busy (503, honouring ``Retry-After``) or unreachable service.
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

    base_url: str | None = Field(default=None, description="lfm-retrieval serve's URL.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds per service answer.")
    max_retries: int = Field(default=3, ge=0, description="Retries of a busy service.")

    _encoder: Any = PrivateAttr(default=None)
    _remote: Any = PrivateAttr(default=None)
    _truncations: TruncationLog = PrivateAttr(default_factory=lambda: TruncationLog("LFMEmbedding"))

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        *,
        encoder: DenseEncoder | None = None,
        device: str | None = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        model_kwargs: dict[str, Any] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        remote = {"base_url": base_url, "timeout_s": timeout_s, "max_retries": max_retries}
        if base_url is not None:
            client = remote_client(
                type(self).__name__,
                base_url,
                api_key=api_key,
                model=None if model_name is None else os.fspath(model_name),
                timeout_s=timeout_s,
                max_retries=max_retries,
                batch_size=embed_batch_size,
                local={"encoder": encoder, "device": device, "model_kwargs": model_kwargs},
            )
            super().__init__(
                model_name=client.model or "served",
                device=REMOTE_DEVICE,
                embed_batch_size=embed_batch_size,
                **remote,
                **kwargs,
            )
            self._remote = client
            return
        from lfm_core import DenseEncoder, LoadOptions, resolve_encoder

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
            **remote,
            **kwargs,
        )
        self._encoder = loaded

    @classmethod
    def class_name(cls) -> str:
        """Key LlamaIndex uses to serialize this component."""
        return "LFMEmbedding"

    @property
    def encoder(self) -> DenseEncoder:
        """The underlying encoder, to share with other adapters.

        Raises:
            InputError: in remote mode, where no model is loaded here.
        """
        if self._encoder is None:
            raise InputError(f"LFMEmbedding: remote mode ({self.base_url}) loads no encoder")
        encoder: DenseEncoder = self._encoder
        return encoder

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([validate_text(query, "query")], "query")[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([validate_text(text, "text")], "document")[0]

    def _embed(self, texts: list[str], input_type: str) -> list[Embedding]:
        if self._remote is not None:
            vectors = self._remote.embed(texts, input_type=input_type)
        elif input_type == "query":
            vectors = self._encoder.encode_queries(texts, show_progress=False)
        else:
            # LlamaIndex's own show_progress draws the bar over the chunks; the core draws
            # none of its own. Chunk after chunk: one truncation warning per object.
            with self._truncations.around():
                vectors = self._encoder.encode_documents(texts, show_progress=False)
        return vectors.tolist()

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
        # One call for the whole chunk: the core batches it for the device.
        return self._embed(texts, "document")

    # Async: the encoder is synchronous and thread-safe, so each call runs in a worker thread
    # and the event loop stays free while the model works; remote mode awaits the service.
    async def _aembed(self, texts: list[str], input_type: str) -> list[Embedding]:
        if self._remote is not None:
            vectors = await self._remote.aembed(texts, input_type=input_type)
            return vectors.tolist()
        return await asyncio.to_thread(self._embed, texts, input_type)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aembed([validate_text(query, "query")], "query"))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aembed([validate_text(text, "text")], "document"))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._aembed(texts, "document")
