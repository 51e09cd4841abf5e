"""LlamaIndex node postprocessor that reranks nodes with :class:`lfm_core.LateInteractionEncoder`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from lfm_core import DEFAULT_TOP_N, InputError, validate_text

from ._remote import REMOTE_DEVICE, remote_client

if TYPE_CHECKING:
    from lfm_core import LateInteractionEncoder

DEFAULT_COLBERT_MODEL = "LiquidAI/LFM2.5-ColBERT-350M"

dispatcher = get_dispatcher(__name__)


class LFMColBERTRerank(BaseNodePostprocessor):
    """Rerank the nodes a retriever returned by ColBERT MaxSim, with no index to build.

    The query and every node with text are encoded by the core (``[Q]``/``[D]`` markers,
    query expansion to 32 tokens, the 128-d projection, L2 normalization, punctuation
    skiplist), all nodes in one batched call on the encoder's device, and scored with the
    core's MaxSim. Queries longer than ``query_length`` tokens are truncated by the core,
    which logs a warning.

    The result is a new list of new ``NodeWithScore`` objects, best first, cut to ``top_n``;
    the ``NodeWithScore`` objects passed in are left untouched. A node whose content (in
    ``metadata_mode``) is empty or whitespace is not sent to the model: it is kept with
    score ``0.0`` and placed after every node that has text, so ``top_n`` drops it first.

    Example:
        >>> query_engine = index.as_query_engine(  # doctest: +SKIP
        ...     similarity_top_k=20,
        ...     node_postprocessors=[LFMColBERTRerank(top_n=5)],
        ... )

    With ``base_url`` the service's ``/v1/rerank`` scores the nodes (remote mode: no
    torch in this process): ``LFMColBERTRerank(base_url="http://gpu-box:8080", top_n=5)``.

    Args:
        model_name: Hub id or local folder of a ColBERT (PyLate layout) checkpoint. Defaults
            to ``LiquidAI/LFM2.5-ColBERT-350M`` when ``encoder`` is not given either.
        encoder: An already loaded :class:`lfm_core.LateInteractionEncoder` to share.
        device: ``"auto"``, ``"cpu"``, ``"cuda:1"``, ... Used when loading; with ``encoder``
            it must match the encoder's device.
        top_n: Nodes to return, best first; ``None`` returns them all, reordered.
        metadata_mode: Which metadata goes into the text the model reads. ``EMBED`` (the
            default) is what LlamaIndex's own rerankers read.
        keep_retrieval_score: Copy each node's incoming score into the returned node's
            metadata as ``retrieval_score`` (on a copy of the node; the original is untouched).
        model_kwargs: Loading options of :class:`lfm_core.LoadOptions`; not with ``encoder``.
        base_url: ``lfm-retrieval serve``'s URL: remote mode; loading options are refused.
        api_key: The service's key (``Authorization: Bearer``).
        timeout_s: Seconds to wait for one answer of the service.
        max_retries: Retries of a busy (503, honouring ``Retry-After``) or unreachable service.
        **kwargs: Other ``BaseNodePostprocessor`` fields (``callback_manager``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = Field(description="Name or path of the ColBERT checkpoint.")
    device: str = Field(description="Device the encoder runs on, e.g. 'cpu' or 'cuda:0'.")
    top_n: int | None = Field(
        default=DEFAULT_TOP_N, ge=1, description="Nodes to return, best first; None keeps them all."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata included in the text that is scored."
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score in metadata['retrieval_score']."
    )

    base_url: str | None = Field(default=None, description="lfm-retrieval serve's URL.")
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds per service answer.")
    max_retries: int = Field(default=3, ge=0, description="Retries of a busy service.")

    _encoder: Any = PrivateAttr(default=None)
    _remote: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        *,
        encoder: LateInteractionEncoder | None = None,
        device: str | None = None,
        top_n: int | None = DEFAULT_TOP_N,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        keep_retrieval_score: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        **kwargs: Any,
    ) -> None:
        common = {
            "top_n": top_n,
            "metadata_mode": metadata_mode,
            "keep_retrieval_score": keep_retrieval_score,
            "base_url": base_url,
            "timeout_s": timeout_s,
            "max_retries": max_retries,
        }
        if base_url is not None:
            client = remote_client(
                type(self).__name__,
                base_url,
                api_key=api_key,
                model=None if model_name is None else os.fspath(model_name),
                timeout_s=timeout_s,
                max_retries=max_retries,
                batch_size=256,
                local={"encoder": encoder, "device": device, "model_kwargs": model_kwargs},
            )
            super().__init__(
                model_name=client.model or "served", device=REMOTE_DEVICE, **common, **kwargs
            )
            self._remote = client
            return
        from lfm_core import LateInteractionEncoder, LoadOptions, resolve_encoder

        options = LoadOptions.from_kwargs(model_kwargs, type(self).__name__).replace(device=device)
        loaded = resolve_encoder(
            LateInteractionEncoder,
            encoder,
            model_name=model_name,
            options=options,
            default_model=DEFAULT_COLBERT_MODEL,
            owner=type(self).__name__,
        )
        super().__init__(
            model_name=loaded.model_name,
            device=str(loaded.device),
            **common,
            **kwargs,
        )
        self._encoder = loaded

    @classmethod
    def class_name(cls) -> str:
        """Key LlamaIndex uses to serialize this component."""
        return "LFMColBERTRerank"

    @property
    def encoder(self) -> LateInteractionEncoder:
        """The underlying encoder, to share with other adapters.

        Raises:
            InputError: in remote mode, where no model is loaded here.
        """
        if self._encoder is None:
            raise InputError(f"LFMColBERTRerank: remote mode ({self.base_url}) loads no encoder")
        encoder: LateInteractionEncoder = self._encoder
        return encoder

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InputError(
                "LFMColBERTRerank needs a query: call postprocess_nodes(nodes, query_str=...) "
                "or pass query_bundle="
            )
        validate_text(query_bundle.query_str, "query_bundle.query_str")
        nodes = list(nodes)
        if not nodes:
            return []
        top_n = len(nodes) if self.top_n is None else self.top_n
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model_name
            )
        )
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model_name,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            ranked = self._rank(query_bundle.query_str, nodes)[:top_n]
            reranked = [self._rescored(nodes[i], score) for i, score in ranked]
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _rank(self, query: str, nodes: list[NodeWithScore]) -> list[tuple[int, float]]:
        """``(index into nodes, score)`` for all nodes, best first (``encoder.rerank``'s rules)."""
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        if self._remote is not None:
            return self._remote.rerank(query, texts)
        return self._encoder.rerank(query, texts)

    def _rescored(self, original: NodeWithScore, score: float) -> NodeWithScore:
        node = original.node
        if self.keep_retrieval_score:
            # model_copy, not an in-place edit: the caller's node keeps its metadata.
            metadata = {**node.metadata, "retrieval_score": original.score}
            node = node.model_copy(update={"metadata": metadata})
        return NodeWithScore(node=node, score=float(score))
