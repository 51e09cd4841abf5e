"""lfm_core: the LFM2 bidirectional encoder, its tokenization rules and batching.

Usage::

    from lfm_core import DenseEncoder, LateInteractionEncoder

The encoders (and torch) load on first use of their names: an app that only talks to
``lfm-retrieval serve`` through :mod:`lfm_core.remote` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .defaults import DEFAULT_TOP_N
from .errors import (
    CheckpointError,
    CollectionError,
    InputError,
    LFMError,
    ModelUnavailableError,
)
from .validation import check_positive_int, validate_text, validate_texts

if TYPE_CHECKING:
    from .config import BatchingConfig, ColBERTHeadConfig, DenseHeadConfig, Lfm2Config
    from .encoders import DenseEncoder, Encoder, InputType, LateInteractionEncoder, TokenCounts
    from .explain import Explanation, TokenMatch
    from .resolve import LoadOptions, resolve_encoder
    from .scoring import maxsim, rank_scores

# Names that need torch, and the module each comes from (PEP 562: imported on first use).
_LAZY = {
    "BatchingConfig": "config",
    "ColBERTHeadConfig": "config",
    "DenseHeadConfig": "config",
    "Lfm2Config": "config",
    "DenseEncoder": "encoders",
    "Encoder": "encoders",
    "InputType": "encoders",
    "LateInteractionEncoder": "encoders",
    "TokenCounts": "encoders",
    "Explanation": "explain",
    "TokenMatch": "explain",
    "LoadOptions": "resolve",
    "resolve_encoder": "resolve",
    "maxsim": "scoring",
    "rank_scores": "scoring",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lfm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_TOP_N",
    "BatchingConfig",
    "CheckpointError",
    "ColBERTHeadConfig",
    "CollectionError",
    "DenseEncoder",
    "DenseHeadConfig",
    "Encoder",
    "Explanation",
    "InputError",
    "InputType",
    "LFMError",
    "LateInteractionEncoder",
    "Lfm2Config",
    "LoadOptions",
    "ModelUnavailableError",
    "TokenCounts",
    "TokenMatch",
    "check_positive_int",
    "maxsim",
    "rank_scores",
    "resolve_encoder",
    "validate_text",
    "validate_texts",
]
