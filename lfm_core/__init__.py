"""lfm_core: the LFM2 bidirectional encoder, its tokenization rules and batching.

Usage::

    from lfm_core import DenseEncoder, LateInteractionEncoder
"""

from .config import BatchingConfig, ColBERTHeadConfig, DenseHeadConfig, Lfm2Config
from .encoders import (
    DEFAULT_TOP_N,
    DenseEncoder,
    Encoder,
    InputType,
    LateInteractionEncoder,
    TokenCounts,
)
from .errors import CheckpointError, CollectionError, InputError, LFMError
from .explain import Explanation, TokenMatch
from .resolve import LoadOptions, resolve_encoder
from .scoring import maxsim, rank_scores
from .validation import check_positive_int, validate_text, validate_texts

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
    "TokenCounts",
    "TokenMatch",
    "check_positive_int",
    "maxsim",
    "rank_scores",
    "resolve_encoder",
    "validate_text",
    "validate_texts",
]
