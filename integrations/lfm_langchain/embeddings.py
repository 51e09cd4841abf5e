"""LangChain ``Embeddings`` over an lfm_core :class:`~lfm_core.DenseEncoder`."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from lfm_core import DenseEncoder, InputError, resolve_encoder, validate_text, validate_texts
from lfm_core.notices import TruncationLog

from ._loading import coerce_model_name, load_options

DEFAULT_MODEL_NAME = "LiquidAI/LFM2.5-Embedding-350M"


class LFMEmbeddings(BaseModel, Embeddings):
    """LFM2.5-Embedding (or any sentence-transformers checkpoint) as LangChain embeddings.

    Queries and documents are encoded with the prompts written in the checkpoint
    (``"query: "`` / ``"document: "`` for LFM2.5-Embedding, none for all-MiniLM-L6-v2):
    :meth:`embed_query` uses the query prompt, :meth:`embed_documents` the document
    prompt. Texts reach the model exactly as given (no newline stripping). Vectors are
    L2-normalized by default, so cosine similarity and dot product rank alike.

    Build it from a checkpoint, or from an encoder that is already loaded so that
    several adapters share one model in memory::

        from lfm_core import DenseEncoder
        from lfm_langchain import LFMEmbeddings

        embeddings = LFMEmbeddings(model_name="LiquidAI/LFM2.5-Embedding-350M")
        shared = DenseEncoder.from_pretrained("/models/lfm2.5-embedding")
        embeddings = LFMEmbeddings(encoder=shared)

    Args:
        encoder: An already loaded :class:`~lfm_core.DenseEncoder` to use instead of
            loading ``model_name``. Loading options (``max_batch_size``,
            ``max_tokens_per_batch``, ``model_kwargs``, ``normalize=False``) belong to that
            encoder and cannot be passed here; a ``model_name`` or ``device`` must match it.
        model_name: Hugging Face hub id or local folder of the checkpoint.
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``; None lets the core pick
            (cuda, then mps, then cpu).
        max_batch_size: At most this many texts per forward pass; None: the core's default.
        batch_size: Deprecated name of ``max_batch_size``.
        max_tokens_per_batch: Token budget of one forward pass (texts are grouped by
            length under it); None: the core's default.
        model_kwargs: Other loading options, as :class:`lfm_core.LoadOptions` fields
            (``dtype``, ``quantize``, ``revision``, ``cache_dir``, ...), as
            langchain-huggingface's ``model_kwargs``.
        show_progress: Show a progress bar while embedding documents.
        normalize: L2-normalize the vectors (default). False returns the model's
            pooled vectors as they are, even when the checkpoint has a Normalize module.

    Raises:
        InputError: (a ``ValueError``) a ``model_name`` or ``device`` that contradicts
            ``encoder``, or loading options given with it.
        TypeError: ``encoder`` is not a :class:`~lfm_core.DenseEncoder`.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = DEFAULT_MODEL_NAME
    """Hugging Face hub id or local folder of the checkpoint."""
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
    show_progress: bool = False
    """Show a progress bar in :meth:`embed_documents`."""
    normalize: bool = True
    """L2-normalize the vectors (False: the pooled vectors as the model makes them)."""

    _encoder: DenseEncoder = PrivateAttr()
    _truncations: TruncationLog = PrivateAttr(
        default_factory=lambda: TruncationLog("LFMEmbeddings")
    )

    def __init__(self, *, encoder: DenseEncoder | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._encoder = self._resolve_encoder(encoder)
        # Show the model really in use (repr, model_dump) when the encoder was given.
        self.model_name = self._encoder.model_name
        self.device = str(self._encoder.device)
        self.normalize = self._encoder.head.normalize

    @field_validator("model_name", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return coerce_model_name(value)

    def _resolve_encoder(self, encoder: DenseEncoder | None) -> DenseEncoder:
        options = load_options(self, "LFMEmbeddings").replace(normalize=self.normalize)
        if encoder is not None and "normalize" in self.model_fields_set:
            if self.normalize != encoder.head.normalize:
                raise InputError(
                    f"LFMEmbeddings: normalize={self.normalize} contradicts the encoder, built "
                    f"with normalize={encoder.head.normalize}; pass normalize= to "
                    "DenseEncoder.from_pretrained(...)"
                )
            options = options.replace(normalize=True)  # the encoder's own setting holds
        return resolve_encoder(
            DenseEncoder,
            encoder,
            model_name=self.model_name if "model_name" in self.model_fields_set else None,
            options=options,
            default_model=DEFAULT_MODEL_NAME,
            owner="LFMEmbeddings",
        )

    @property
    def encoder(self) -> DenseEncoder:
        """The loaded encoder; pass it as ``encoder=`` to share the model."""
        return self._encoder

    @property
    def dim(self) -> int:
        """Length of every vector (1024 for LFM2.5-Embedding-350M)."""
        return self._encoder.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents with the checkpoint's document prompt.

        Args:
            texts: The documents; any iterable of ``str`` (read once).

        Returns:
            One list of ``dim`` floats per text in input order, L2-normalized unless
            ``normalize=False``; ``[]`` for no texts.

        Raises:
            TypeError: ``texts`` is a single ``str``, or an element is not a ``str``
                (the message names its position, e.g. ``texts[3] is None``).
        """
        texts = validate_texts(texts)
        if not texts:
            return []
        # langchain-qdrant and friends call this once per batch: one truncation warning
        # per object, not one per batch.
        with self._truncations.around():
            vectors = self._encoder.encode_documents(texts, show_progress=self.show_progress)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query with the checkpoint's query prompt.

        Args:
            text: The query.

        Returns:
            ``dim`` floats, L2-normalized unless ``normalize=False``.

        Raises:
            TypeError: ``text`` is not a ``str``.
        """
        validate_text(text, "text")
        return self._encoder.encode_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`; the model runs in a worker thread.

        Args:
            texts: The documents.

        Returns:
            Same as :meth:`embed_documents`.
        """
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`; the model runs in a worker thread.

        Args:
            text: The query.

        Returns:
            Same as :meth:`embed_query`.
        """
        return await asyncio.to_thread(self.embed_query, text)


__all__ = ["DEFAULT_MODEL_NAME", "LFMEmbeddings"]
