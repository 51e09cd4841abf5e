"""Cross-lingual retrieval over NTREX-128: queries in one language, documents in another.

NTREX-128 holds the 1,997 sentences of WMT19 newstest translated by people into 128
languages, line-aligned: line ``i`` is the same sentence in every file. For a query
language ``q`` and a document language ``d``, every sentence of ``q`` is a query and the
sentences of ``d`` are the corpus; the one relevant document is the same line. The
result is a table with query languages as rows and document languages as columns, for
Recall@10 and MRR.

Ranking is exhaustive (every query against every document, no index): this measures the
model, not a vector store. A document whose text is identical to the relevant one (a
repeated sentence) is not counted against the query; any other document scoring at
least as high as the relevant one is (ties rank pessimistically).

Run it with ``lfm-retrieval crosslingual DATA/ntrex128 --lines 500`` or from
Python with :func:`read_ntrex` and :func:`evaluate_crosslingual`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lfm_core import check_positive_int
from lfm_retrieval.corpus import CorpusError

NTREX_FILES: dict[str, str] = {
    "en": "newstest2019-src.eng.txt",
    "ar": "newstest2019-ref.arb.txt",
    "de": "newstest2019-ref.deu.txt",
    "es": "newstest2019-ref.spa.txt",
    "fr": "newstest2019-ref.fra.txt",
    "it": "newstest2019-ref.ita.txt",
    "ja": "newstest2019-ref.jpn.txt",
    "ko": "newstest2019-ref.kor.txt",
    "nb": "newstest2019-ref.nob.txt",
    "pt": "newstest2019-ref.por.txt",
    "sv": "newstest2019-ref.swe.txt",
}
"""ISO 639-1 code -> NTREX-128 file, for the 11 languages of the evaluation."""

LANGUAGES: tuple[str, ...] = tuple(NTREX_FILES)


def read_ntrex(
    folder: str | Path, languages: Sequence[str] = LANGUAGES, limit: int | None = None
) -> dict[str, list[str]]:
    """Read the line-aligned sentences of some NTREX-128 languages.

    Args:
        folder: the NTREX-128 folder (``newstest2019-*.txt`` files, CRLF line ends).
        languages: codes among :data:`LANGUAGES`.
        limit: keep the first ``limit`` lines (all when None).

    Returns:
        ``{code: [sentence, ...]}``, all lists of the same length, in ``languages`` order.

    Raises:
        CorpusError: a language is unknown, a file is missing, or files differ in length.
        TypeError, InputError: ``limit`` is not a positive int.
    """
    if limit is not None:
        limit = check_positive_int(limit, "limit")
    unknown = [code for code in languages if code not in NTREX_FILES]
    if unknown:
        raise CorpusError(f"unknown NTREX language(s) {unknown}; supported: {', '.join(LANGUAGES)}")
    folder = Path(folder)
    sentences: dict[str, list[str]] = {}
    for code in languages:
        path = folder / NTREX_FILES[code]
        if not path.is_file():
            raise CorpusError(f"NTREX-128 file not found: {str(path)!r}")
        # splitlines() would also split on U+2028 and friends inside a sentence.
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        sentences[code] = [line.rstrip("\r") for line in lines][:limit]
    lengths = {code: len(lines) for code, lines in sentences.items()}
    if len(set(lengths.values())) > 1:
        raise CorpusError(f"NTREX-128 files are not line-aligned: line counts {lengths}")
    return sentences


@dataclass(frozen=True)
class CrossLingualResult:
    """Scores of every (query language, document language) pair.

    Attributes:
        languages: codes, the row and column order.
        recall_at_10: ``[n_languages, n_languages] float64``; row = query language,
            column = document language.
        mrr: same layout, mean reciprocal rank over the full ranking.
        n_queries: sentences per language.
    """

    languages: tuple[str, ...]
    recall_at_10: np.ndarray
    mrr: np.ndarray
    n_queries: int

    def format_table(self) -> str:
        """Both tables as Markdown, rows = query language, columns = document language."""
        parts = []
        for title, values in (("Recall@10", self.recall_at_10), ("MRR", self.mrr)):
            off_diagonal = values[~np.eye(len(self.languages), dtype=bool)]
            mean = float(off_diagonal.mean()) if off_diagonal.size else float(values.mean())
            header = "| query \\ doc | " + " | ".join(self.languages) + " |"
            rule = "|---" * (len(self.languages) + 1) + "|"
            rows = [
                f"| {code} | " + " | ".join(f"{v:.3f}" for v in values[i]) + " |"
                for i, code in enumerate(self.languages)
            ]
            parts.append(
                f"{title} ({self.n_queries} queries per language; "
                f"mean off-diagonal {mean:.4f})\n\n" + "\n".join([header, rule, *rows])
            )
        return "\n\n".join(parts)


def evaluate_crosslingual(
    encoder: Any, sentences: Mapping[str, Sequence[str]], *, show_progress: bool = False
) -> CrossLingualResult:
    """Rank every language's sentences for every language's queries.

    Args:
        encoder: a loaded ``DenseEncoder`` (cosine of L2-normalized vectors) or
            ``LateInteractionEncoder`` (its own ``score``, MaxSim). Queries go through
            ``encode_queries`` and documents through ``encode_documents``, so the
            checkpoint's prompts apply.
        sentences: ``{code: line-aligned sentences}``, e.g. from :func:`read_ntrex`.
        show_progress: pass a progress bar request on to the encoder.

    Returns:
        A :class:`CrossLingualResult`.

    Raises:
        ValueError: ``sentences`` is empty or its lists differ in length.
    """
    languages = tuple(sentences)
    lengths = {len(lines) for lines in sentences.values()}
    if not languages or lengths == {0}:
        raise ValueError("sentences must hold at least one language with at least one line")
    if len(lengths) > 1:
        raise ValueError(f"sentence lists differ in length: {sorted(lengths)}")
    queries = {
        code: encoder.encode_queries(list(lines), show_progress=show_progress)
        for code, lines in sentences.items()
    }
    documents = {
        code: encoder.encode_documents(list(lines), show_progress=show_progress)
        for code, lines in sentences.items()
    }
    size = len(languages)
    recall, mrr = np.zeros((size, size)), np.zeros((size, size))
    for col, doc_code in enumerate(languages):
        same_text = _same_text_mask(sentences[doc_code])
        for row, query_code in enumerate(languages):
            scores = _score_matrix(encoder, queries[query_code], documents[doc_code])
            ranks = _ranks_of_diagonal(scores, same_text)
            recall[row, col] = float(np.mean(ranks <= 10))
            mrr[row, col] = float(np.mean(1.0 / ranks))
    return CrossLingualResult(languages, recall, mrr, n_queries=lengths.pop())


def _score_matrix(encoder: Any, queries: Any, documents: Any) -> np.ndarray:
    """``[n_queries, n_documents]`` scores by the encoder's own ``score`` (dot or MaxSim)."""
    return np.stack([np.asarray(encoder.score(query, documents)) for query in queries])


def _same_text_mask(texts: Sequence[str]) -> np.ndarray:
    _, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return inverse[:, None] == inverse[None, :]


def _ranks_of_diagonal(scores: np.ndarray, same_text: np.ndarray) -> np.ndarray:
    """1-based rank of document ``i`` for query ``i``; ties and repeats handled as the module says.

    >>> scores = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.2], [0.3, 0.3, 0.3]])
    >>> _ranks_of_diagonal(scores, np.eye(3, dtype=bool)).tolist()
    [1, 3, 3]
    """
    target = np.diagonal(scores)[:, None]
    return 1 + np.sum((scores >= target) & ~same_text, axis=1)
