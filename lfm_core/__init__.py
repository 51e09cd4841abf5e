"""lfm_core: the LFM2 bidirectional encoder, its tokenization rules and batching.

Usage::

    from lfm_core import DenseEncoder, LateInteractionEncoder
"""

from .config import BatchingConfig, ColBERTHeadConfig, DenseHeadConfig, Lfm2Config
from .encoders import DenseEncoder, LateInteractionEncoder
from .errors import CheckpointError, CollectionError, InputError, LFMError
from .scoring import maxsim
from .validation import validate_text, validate_texts

__all__ = [
    "BatchingConfig",
    "CheckpointError",
    "ColBERTHeadConfig",
    "CollectionError",
    "DenseEncoder",
    "DenseHeadConfig",
    "InputError",
    "LFMError",
    "LateInteractionEncoder",
    "Lfm2Config",
    "maxsim",
    "validate_text",
    "validate_texts",
]
