"""Token-aware chunks of long documents, counted with the models' own tokenizers.

The models read a fixed window (512 tokens for LFM2.5, prompt and special tokens included);
a longer text would be cut and everything after the cut invisible to search. The writer
splits such documents into chunks that fit the window, with an overlap, at the highest
boundary that fits: markdown sections and blocks, then paragraphs, sentences, words
(Unicode segmentation, so Japanese and Korean sentences too), then characters. The splitting
is `semantic-text-splitter <https://github.com/benbrandt/text-splitter>`_'s
``MarkdownSplitter`` sized by the checkpoint's ``tokenizers.Tokenizer``; plain text has no
markdown structure and falls through to its paragraph and sentence levels.

One set of chunks serves both models: the budget is the smaller of their windows less
their fixed cost (prompt, prefix, special tokens). When their tokenizers differ, a chunk is
sized by the larger of its two counts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from lfm_core import InputError

__all__ = [
    "DEFAULT_OVERLAP_TOKENS",
    "Chunk",
    "Chunker",
    "ChunkingOptions",
    "chunk_settings",
    "make_chunker",
]

DEFAULT_OVERLAP_TOKENS = 32
"""Tokens shared by neighbouring chunks. On SciFact long documents 0 and 32 scored the
same (docs/evaluations.md); 32 keeps a sentence cut by a boundary whole in one chunk."""

# Tokens kept free below the window: a chunk is counted alone, but the model reads it after
# its prompt, and a BPE merge across that seam can change the count by a token or two.
_SEAM_TOKENS = 4
# Runs of non-space characters longer than this many characters per chunk token are cut
# before splitting (see Chunker._sections).
_RUN_CHARS_PER_TOKEN = 8
_SENTENCE_END = re.compile(r"[.!?。！？．｡]+")


@dataclass(frozen=True)
class ChunkingOptions:
    """How the writer splits documents longer than the models' window.

    Attributes:
        enabled: ``False`` stores every document as one point, cut at the window (the
            encoders log how many were cut).
        max_tokens: tokens of document text per chunk; ``None``: as many as the smaller
            model window holds after the prompt and special tokens. A larger value is
            lowered to that.
        overlap_tokens: tokens shared by neighbouring chunks, so a sentence cut by a chunk
            boundary is whole in one of them; below ``max_tokens``.
    """

    enabled: bool = True
    max_tokens: int | None = None
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise InputError(f"max_tokens must be an int >= 1 or None, not {self.max_tokens!r}")
        if (
            isinstance(self.overlap_tokens, bool)
            or not isinstance(self.overlap_tokens, int)
            or self.overlap_tokens < 0
        ):
            raise InputError(f"overlap_tokens must be an int >= 0, not {self.overlap_tokens!r}")


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document.

    Attributes:
        index: its position among the document's chunks, from 0.
        start: offset of its first character in the document (Python ``str`` index).
        end: offset after its last character: ``document[start:end] == text``.
        text: the chunk, outer whitespace trimmed.
    """

    index: int
    start: int
    end: int
    text: str


class Chunker:
    """Splits documents into chunks that fit every model of a writer.

    Args:
        encoders: the writer's loaded encoders (``None`` entries are skipped); each needs a
            ``tokenizer`` and a window (``max_length`` or ``document_length``).
        options: the size and overlap.

    Raises:
        InputError: the overlap is not below the chunk size, or no encoder can count tokens.
    """

    def __init__(self, encoders: list[Any], options: ChunkingOptions) -> None:
        from semantic_text_splitter import MarkdownSplitter

        counters = [_Counter(encoder) for encoder in encoders if encoder is not None]
        if not counters:
            raise InputError("chunking needs a loaded encoder to count tokens with")
        budget = min(counter.budget for counter in counters)
        self.max_tokens = budget if options.max_tokens is None else min(options.max_tokens, budget)
        self.overlap_tokens = options.overlap_tokens
        if self.overlap_tokens >= self.max_tokens:
            raise InputError(
                f"overlap_tokens ({self.overlap_tokens}) must be below the chunk size "
                f"({self.max_tokens} tokens)"
            )
        first = counters[0]
        if all(counter.vocabulary == first.vocabulary for counter in counters):
            # The common case (one tokenizer): counted inside the splitter, in Rust.
            self._splitter = MarkdownSplitter.from_huggingface_tokenizer(
                first.tokenizer, self.max_tokens, self.overlap_tokens
            )
        else:
            self._splitter = MarkdownSplitter.from_callback(
                lambda text: max(counter.count(text) for counter in counters),
                self.max_tokens,
                self.overlap_tokens,
            )

    def settings(self) -> dict[str, int]:
        """The chunk size and overlap in tokens, as recorded with the collection."""
        return {"max_tokens": self.max_tokens, "overlap_tokens": self.overlap_tokens}

    def split(self, text: str) -> list[Chunk]:
        """The chunks of one document, in order; a text that fits is one chunk, all of it.

        Every character of ``text`` outside whitespace falls in at least one chunk, and
        ``text[chunk.start:chunk.end] == chunk.text`` (chunks of a longer text have their
        outer whitespace trimmed). A blank text gives one chunk, so every document has a
        point.
        """
        pieces = [
            (offset + start, piece)
            for offset, section in self._sections(text)
            for start, piece in self._splitter.chunk_indices(section)
        ]
        if len(pieces) <= 1:
            # A text that fits is kept whole, outer whitespace too: stored as before chunking.
            return [Chunk(0, 0, len(text), text)]
        return [
            Chunk(index, start, start + len(piece), piece)
            for index, (start, piece) in enumerate(pieces)
        ]

    def _sections(self, text: str) -> list[tuple[int, str]]:
        """``text`` cut inside every run of non-space characters longer than the run cap.

        With no boundary to cut at, the splitter searches a run character by character,
        re-tokenizing as it goes: a 1 MB line without a space would take minutes. Such a
        run is cut every :data:`_RUN_CHARS_PER_TOKEN` x ``max_tokens`` characters or
        less, after the last sentence end (``。``, ``.``, ``!``, ``?`` ...) in the second
        half of the stretch when there is one: Chinese and Japanese prose, written
        without spaces, is cut between sentences. Text with spaces is never cut here.
        """
        cap = _RUN_CHARS_PER_TOKEN * self.max_tokens
        cuts = []
        for run in re.finditer(rf"\S{{{cap + 1},}}", text):
            at = run.start()
            while run.end() - at > cap:
                stretch = text[at + cap // 2 : at + cap]
                ends = [m.end() for m in _SENTENCE_END.finditer(stretch)]
                at = at + cap // 2 + ends[-1] if ends else at + cap
                cuts.append(at)
        if not cuts:
            return [(0, text)]
        bounds = [0, *cuts, len(text)]
        return [(a, text[a:b]) for a, b in itertools.pairwise(bounds)]


def make_chunker(chunking: ChunkingOptions | bool, dense: Any, colbert: Any) -> Chunker | None:
    """A writer's chunker; ``None`` when chunking is off or no model can count tokens.

    Raises:
        TypeError: ``chunking`` is neither a :class:`ChunkingOptions` nor a ``bool``.
    """
    if chunking is True:
        chunking = ChunkingOptions()
    elif chunking is False:
        return None
    if not isinstance(chunking, ChunkingOptions):
        raise TypeError(
            f"chunking must be a ChunkingOptions or a bool, not {type(chunking).__name__}"
        )
    encoders = [e for e in (dense, colbert) if e is not None and hasattr(e, "tokenizer")]
    if not chunking.enabled or not encoders:
        return None
    return Chunker(encoders, chunking)


def chunk_settings(
    chunking: ChunkingOptions | bool, chunker: Chunker | None
) -> dict[str, int] | None:
    """The chunk settings a writer records and fingerprints: its chunker's; for a writer with
    no tokenizer (models given as records), those of a ``ChunkingOptions`` with ``max_tokens``
    (the size the chunks given to ``add_encoded`` were cut at); else ``None``."""
    if chunker is not None:
        return chunker.settings()
    if isinstance(chunking, ChunkingOptions) and chunking.enabled and chunking.max_tokens:
        return {"max_tokens": chunking.max_tokens, "overlap_tokens": chunking.overlap_tokens}
    return None


class _Counter:
    """One encoder's tokenizer, untruncated, and the tokens its chunks may hold."""

    def __init__(self, encoder: Any) -> None:
        from tokenizers import Tokenizer

        fast = encoder.tokenizer.fast_tokenizer
        # A private copy: the encoder's tokenizer keeps its truncation setting as state.
        self.vocabulary = fast.to_str()
        self.tokenizer = Tokenizer.from_str(self.vocabulary)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        window = getattr(encoder, "document_length", None) or encoder.max_length
        fixed = encoder.count_tokens([""], input_type="document").tokens[0]
        self.budget = int(window) - int(fixed) - _SEAM_TOKENS
        if self.budget < 1:
            raise InputError(
                f"{getattr(encoder, 'model_name', 'the model')} leaves no room for text: "
                f"window {window}, prompt and special tokens {fixed}"
            )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))
