"""The writer's models: loaded encoders, or records of models that run elsewhere."""

from __future__ import annotations

from typing import Any

from lfm_core import DenseEncoder, LateInteractionEncoder, LoadOptions, resolve_encoder

from .fingerprint import ModelRecord


class EncodedElsewhere:
    """Stands for a model that runs in other processes: the writer records and checks it,
    and writes its vectors (:meth:`MultiVectorWriter.add_encoded`), but cannot encode."""

    def __init__(self, record: ModelRecord) -> None:
        self.model_name = record.model
        self.dim = record.dim
        self.revision = record.revision
        self.checkpoint_digest = record.digest

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: a model given as a ``ModelRecord`` cannot encode (``TypeError``)."""
        raise TypeError(
            f"{self.model_name} is given as a ModelRecord: this writer writes vectors encoded "
            "elsewhere (add_encoded) and cannot encode; pass a loaded encoder or a model name"
        )

    encode_documents = encode_queries = _refuse


def load_encoder(value: Any, kind: str, device: str) -> Any:
    """An encoder from what the caller passed as ``dense=`` or ``colbert=`` (or ``None``)."""
    if value is None:
        return None
    if isinstance(value, ModelRecord):
        return EncodedElsewhere(value)
    options = LoadOptions(device=device)
    if kind == "dense":
        return resolve_encoder(
            DenseEncoder, value, options=options, owner="MultiVectorWriter dense="
        )
    return resolve_encoder(
        LateInteractionEncoder, value, options=options, owner="MultiVectorWriter colbert="
    )


def model_label(encoder: Any) -> str | None:
    if encoder is None:
        return None
    return repr(getattr(encoder, "model_name", type(encoder).__name__))
