"""Text -> token ids, with the checkpoint's own tokenizer and truncation that is counted.

The tokenizer is transformers' fast tokenizer read from the checkpoint folder
(``tokenizer.json`` + ``tokenizer_config.json``), the same object sentence-transformers
and PyLate use, so token ids match theirs by construction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .errors import CheckpointError

__all__ = ["TextTokenizer", "Tokenized"]


@dataclass(frozen=True)
class Tokenized:
    """Token ids of a list of texts, in input order.

    Attributes:
        ids: one list of token ids per text, special tokens included.
        n_truncated: how many texts were cut at the length limit.
        truncated_rows: the indices of those texts, in order.
    """

    ids: list[list[int]]
    n_truncated: int
    truncated_rows: tuple[int, ...] = ()


class TextTokenizer:
    """A checkpoint's tokenizer with a fixed, thread-safe calling convention."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, bos_token_id: int | None = None):
        """Wrap a loaded fast tokenizer.

        Args:
            tokenizer: transformers tokenizer read from the checkpoint.
            bos_token_id: when set, every sequence is made to start with this id (LFM2:
                BOS = CLS is the pooled position, so it must be there whatever the
                tokenizer's post-processor does).
        """
        self._tok = tokenizer
        self._bos = bos_token_id
        # Fast tokenizers keep truncation settings as mutable state in Rust; concurrent
        # calls with different limits would race ("Already borrowed").
        self._lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: Path, *, bos_token_id: int | None = None) -> TextTokenizer:
        """Load ``tokenizer.json`` and friends from a checkpoint folder (never remote code)."""
        if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
            raise CheckpointError(f"no tokenizer.json in {folder}")
        try:
            tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load the tokenizer in {folder}: {exc}") from exc
        return cls(tok, bos_token_id=bos_token_id)

    def token_id(self, token: str) -> int | None:
        """The id of a single token string, or ``None`` if the vocabulary lacks it."""
        tid = self._tok.convert_tokens_to_ids(token)
        if isinstance(tid, list):
            return None
        if tid is None or (tid == self._tok.unk_token_id and token != self._tok.unk_token):
            return None
        return int(tid)

    @property
    def fast_tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` underneath (shared: copy it before changing settings)."""
        return self._tok.backend_tokenizer

    @property
    def mask_token_id(self) -> int | None:
        return self._tok.mask_token_id

    @property
    def pad_token_id(self) -> int | None:
        return self._tok.pad_token_id

    def encode(self, texts: list[str], max_length: int) -> Tokenized:
        """Tokenize with special tokens, cutting each text to ``max_length`` ids.

        A text counts as truncated when it has more than ``max_length`` ids; it is
        detected by tokenizing to ``max_length + 1`` first, so no text is tokenized in
        full however long it is.
        """
        if not texts:
            return Tokenized([], 0)
        probe = self._call(texts, max_length + 1)
        long_rows = [i for i, ids in enumerate(probe) if len(ids) > max_length]
        if long_rows:
            cut = self._call([texts[i] for i in long_rows], max_length)
            for i, ids in zip(long_rows, cut):
                probe[i] = ids
        return Tokenized(probe, len(long_rows), tuple(long_rows))

    def _call(self, texts: list[str], max_length: int) -> list[list[int]]:
        with self._lock:
            out = self._tok(
                texts,
                add_special_tokens=True,
                truncation=True,
                max_length=max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
        if self._bos is not None:
            out = [ids if ids[:1] == [self._bos] else [self._bos, *ids][:max_length] for ids in out]
        return [list(ids) for ids in out]
