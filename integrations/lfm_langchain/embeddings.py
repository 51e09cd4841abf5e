"""LangChain ``Embeddings`` over an lfm_core :class:`~lfm_core.DenseEncoder`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from lfm_core import InputError, validate_text, validate_texts
from lfm_core.notices import TruncationLog

from ._loading import coerce_model_name, load_options, remote_client

if TYPE_CHECKING:
    from lfm_core import DenseEncoder
    from lfm_core.remote import RemoteClient

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

    Or point it at ``lfm-retrieval serve`` (remote mode: no torch, no weights in this
    process; the service applies the prompts, so queries still get the query prompt)::

        embeddings = LFMEmbeddings(base_url="http://gpu-box:8080", api_key="KEY")

    Args:
        encoder: An already loaded :class:`~lfm_core.DenseEncoder` to use instead of
            loading ``model_name``. Loading options (``max_batch_size``,
            ``max_tokens_per_batch``, ``model_kwargs``, ``normalize=False``) belong to that
            encoder and cannot be passed here; a ``model_name`` or ``device`` must match it.
        **data: the fields below, by keyword.

    Attributes:
        base_url: The service's URL; set, it switches to remote mode, where ``model_name``
            (when given) names the served model and loading options are refused.
        api_key: The service's key (``Authorization: Bearer``), remote mode only.
        timeout_s: Seconds to wait for one answer of the service.
        max_retries: Retries of a busy service (503, honouring ``Retry-After``) or a
            connection error.
        model_name: Hugging Face hub id or local folder of the checkpoint.
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``; None lets the core pick
            (cuda, then mps, then cpu).
        max_batch_size: At most this many texts per forward pass (remote mode: per
            request, default 256); None: the core's default.
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
    _truncations: TruncationLog = PrivateAttr(
        default_factory=lambda: TruncationLog("LFMEmbeddings")
    )

    def __init__(self, *, encoder: DenseEncoder | None = None, **data: Any) -> None:
        super().__init__(**data)
        if self.base_url is not None:
            self._remote = remote_client(self, "LFMEmbeddings", encoder)
            return
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
        from lfm_core import DenseEncoder, resolve_encoder

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
        """The loaded encoder; pass it as ``encoder=`` to share the model.

        Raises:
            InputError: in remote mode, where no model is loaded here.
        """
        if self._encoder is None:
            raise InputError(f"LFMEmbeddings: remote mode ({self.base_url}) loads no encoder")
        encoder: DenseEncoder = self._encoder
        return encoder

    @property
    def remote(self) -> RemoteClient | None:
        """The service's client in remote mode, else None."""
        return self._remote

    @property
    def dim(self) -> int:
        """Length of every vector (1024 for LFM2.5-Embedding-350M)."""
        if self._remote is not None:
            return int(self._remote.model_info("dense")["dim"])
        return int(self._encoder.dim)

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
        if self._remote is not None:
            return self._remote.embed(texts, input_type="document").tolist()
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
        if self._remote is not None:
            return self._remote.embed([text], input_type="query")[0].tolist()
        return self._encoder.encode_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`; the model runs in a worker thread (remote mode:
        non-blocking requests on a pooled connection).

        Args:
            texts: The documents.

        Returns:
            Same as :meth:`embed_documents`.
        """
        if self._remote is not None:
            texts = validate_texts(texts)
            if not texts:
                return []
            vectors = await self._remote.aembed(texts, input_type="document")
            return vectors.tolist()
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`; the model runs in a worker thread.

        Args:
            text: The query.

        Returns:
            Same as :meth:`embed_query`.
        """
        if self._remote is not None:
            validate_text(text, "text")
            vectors = await self._remote.aembed([text], input_type="query")
            return vectors[0].tolist()
        return await asyncio.to_thread(self.embed_query, text)


__all__ = ["DEFAULT_MODEL_NAME", "LFMEmbeddings"]
