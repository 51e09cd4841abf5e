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

__all__ = ["TextTokenizer", "TokenSpans", "Tokenized"]


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


@dataclass(frozen=True)
class TokenSpans:
    """One text's token ids with the character span of each token in that text.

    Attributes:
        ids: token ids, special tokens included, as :meth:`TextTokenizer.encode` gives them.
        spans: ``(start, end)`` in the text per id, ``None`` for special tokens.
        truncated: whether the text was cut at the length limit.
    """

    ids: list[int]
    spans: list[tuple[int, int] | None]
    truncated: bool


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

        A text counts as truncated when it has more than ``max_length`` ids. Each text is
        tokenized once, to ``max_length + 1`` ids (never in full, however long it is); a
        long one then loses its last content token, which is exactly what the tokenizer
        gives at ``max_length``.
        """
        if not texts:
            return Tokenized([], 0)
        tail = self._tail_specials()
        if tail is None:  # a post-processor we cannot read: cut by tokenizing again
            return self._encode_twice(texts, max_length)
        raw = self._raw(texts, max_length + 1)
        out, long_rows = [], []
        for i, ids in enumerate(raw):
            fixed = self._with_bos(ids, max_length + 1)
            if len(fixed) > max_length:
                long_rows.append(i)
                if len(ids) > max_length:
                    ids = ids[: len(ids) - tail - 1] + ids[len(ids) - tail :]
                fixed = self._with_bos(ids, max_length)
            out.append(fixed)
        return Tokenized(out, len(long_rows), tuple(long_rows))

    def _encode_twice(self, texts: list[str], max_length: int) -> Tokenized:
        probe = self._call(texts, max_length + 1)
        long_rows = [i for i, ids in enumerate(probe) if len(ids) > max_length]
        if long_rows:
            cut = self._call([texts[i] for i in long_rows], max_length)
            for i, ids in zip(long_rows, cut):
                probe[i] = ids
        return Tokenized(probe, len(long_rows), tuple(long_rows))

    def encode_spans(self, text: str, max_length: int) -> TokenSpans:
        """:meth:`encode` of one text, with the character span of every token.

        The ids equal ``encode([text], max_length).ids[0]``; spans come from the fast
        tokenizer's offset mapping (``None`` for special tokens).
        """
        for limit in (max_length + 1, max_length):
            with self._lock:
                out = self._tok(
                    text,
                    add_special_tokens=True,
                    truncation=True,
                    max_length=limit,
                    padding=False,
                    return_offsets_mapping=True,
                    return_special_tokens_mask=True,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                )
            ids = list(out["input_ids"])
            if len(ids) <= max_length:
                break
        spans: list[tuple[int, int] | None] = [
            None if special or end <= start else (int(start), int(end))
            for (start, end), special in zip(out["offset_mapping"], out["special_tokens_mask"])
        ]
        if self._bos is not None and ids[:1] != [self._bos]:
            ids, spans = [self._bos, *ids][:max_length], [None, *spans][:max_length]
        return TokenSpans(ids, spans, limit == max_length)

    def token_strings(self, ids: list[int]) -> list[str]:
        """The vocabulary strings of ``ids`` (``"[MASK]"``, ``"Ġword"``), for labels."""
        return [str(t) for t in self._tok.convert_ids_to_tokens(ids)]

    def _tail_specials(self) -> int | None:
        """How many special ids the tokenizer appends after the text (BERT's [SEP]: 1)."""
        if not hasattr(self, "_tail"):
            with self._lock:
                content = self._tok("a b", add_special_tokens=False)["input_ids"]
                full = self._tok("a b", add_special_tokens=True)["input_ids"]
            self._tail: int | None = None
            if getattr(self._tok, "truncation_side", "right") != "right":
                return None  # cut from the start: the last content token is not the one lost
            for start in range(len(full) - len(content) + 1):
                if content and full[start : start + len(content)] == content:
                    self._tail = len(full) - start - len(content)
                    break
        return self._tail

    def _call(self, texts: list[str], max_length: int) -> list[list[int]]:
        return [self._with_bos(ids, max_length) for ids in self._raw(texts, max_length)]

    def _with_bos(self, ids: list[int], max_length: int) -> list[int]:
        if self._bos is None or ids[:1] == [self._bos]:
            return ids
        return [self._bos, *ids][:max_length]

    def _raw(self, texts: list[str], max_length: int) -> list[list[int]]:
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
        return [list(ids) for ids in out]
