"""Index a corpus into Qdrant, search it in one of three modes, evaluate it on BEIR qrels.

Writing and searching go through :class:`lfm_qdrant.MultiVectorWriter`: its point ids
are the corpus ids mapped by ``lfm_qdrant.point_id`` (or ``text_point_id`` of the text, for
a document without one), and ``writer.sync`` skips the documents already stored with the same
fingerprint (text, metadata, models, chunking). So indexing is resumable: running it again
after an interruption encodes only what is missing; with ``sync=True`` the documents no
longer in the corpus are deleted too.

Search modes (:mod:`lfm_qdrant.search`):

- ``hybrid``: every leg the collection has: dense and BM25 candidates fused, ColBERT MaxSim
  over them, fused again with the legs' rankings (one Qdrant query);
- ``dense``: cosine on the ``dense`` vector alone;
- ``lexical``: Qdrant's BM25 on the ``bm25`` sparse vector alone (no model needed);
- ``colbert``: MaxSim on the ``colbert`` multivector over the whole collection (exact,
  slow on a large collection: its HNSW graph is off by design).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from lfm_core import CollectionError, InputError
from lfm_retrieval.corpus import (
    CorpusError,
    Document,
    read_beir_qrels,
    read_beir_queries,
    read_corpus,
)
from lfm_retrieval.evaluation import evaluate

logger = logging.getLogger(__name__)

Mode = Literal["dense", "lexical", "colbert", "hybrid"]
LEGS = ("dense", "lexical", "colbert")


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did.

    Attributes:
        documents: documents read from the corpus.
        skipped_empty: documents left out because their text (and title) is blank.
        skipped_repeats: documents without an id whose text repeats an earlier one.
        points: points in the collection afterwards (one per chunk).
        added: documents written that were not stored.
        updated: documents rewritten because their fingerprint changed.
        unchanged: documents stored with the same fingerprint, not encoded again.
        deleted: stored documents no longer in the corpus, deleted (``sync=True`` only).
    """

    documents: int
    skipped_empty: int
    skipped_repeats: int
    points: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


def index_corpus(
    writer: Any,
    corpus: str | Path,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    sync: bool = False,
) -> IndexReport:
    """Write every document of a corpus to the writer's collection; resumable.

    Each document is stored as ``"title text"`` (the embedded text) with the payload
    ``{"text": ..., "id": <corpus id>, "title": ..., **metadata}``; ``id`` and ``title`` are
    there only when the corpus has them. Point ids are ``lfm_qdrant.point_id(corpus id)``,
    or ``lfm_qdrant.text_point_id(text)`` for a document without an id.

    Args:
        writer: a :class:`lfm_qdrant.MultiVectorWriter` on a sync client or an EdgeStore.
        corpus: a JSONL file, a BEIR folder or a folder of ``.txt`` / ``.md`` files.
        batch_size: documents per ``writer.add`` call (one resume step).
        progress: called with the number of documents done after each batch.
        sync: make the collection equal the corpus: documents whose id is no longer in it
            are deleted. The whole corpus is read and checked before the first write
            (without ``sync`` it is streamed, a batch at a time).

    Returns:
        An :class:`IndexReport`.

    Raises:
        CorpusError: the corpus is missing, malformed or holds no text, or two documents
            share an id.
        CollectionError: the collection exists with another layout or other models.
    """
    from lfm_qdrant import SyncReport

    points = CorpusPoints(corpus)
    done = SyncReport()
    if sync:
        texts, ids, metadata = [], [], []
        for _, batch_texts, batch_ids, batch_metadata in points.batches(batch_size):
            texts += batch_texts
            ids += batch_ids
            metadata += batch_metadata
        points.check_not_empty()
        # Blank documents and id-less repeats are not written; the progress counts them.
        if progress is not None and points.documents > len(texts):
            progress(points.documents - len(texts))
        done = writer.sync(
            texts, ids=ids, metadata=metadata, show_progress=False, progress=progress
        )
    else:
        for read, texts, ids, metadata in points.batches(batch_size):
            if texts:
                done += writer.sync(
                    texts, ids=ids, metadata=metadata, delete_missing=False, show_progress=False
                )
            if progress is not None:
                progress(read)
        points.check_not_empty()
    return points.report(writer.count(), done)


class CorpusPoints:
    """A corpus as the texts, point ids and payloads to store, with what was left out.

    Blank documents are skipped; a document without an id whose text repeats an earlier
    one is skipped (it would be the same point); two documents with the same id are an
    error. Used by :func:`index_corpus` and by ``index --ray``, so both store the same points.
    """

    def __init__(self, corpus: str | Path) -> None:
        self.corpus = corpus
        self.documents = self.empty = self.repeats = self.kept = 0
        self._seen: dict[Any, int] = {}  # point id -> its document's number, from 0

    def batches(
        self, batch_size: int
    ) -> Iterator[tuple[int, list[str], list[Any], list[dict[str, Any]]]]:
        """``(documents read, texts, point ids, payloads)`` per batch of the corpus."""
        from lfm_qdrant import point_id, text_point_id

        for batch in _batches(read_corpus(self.corpus), batch_size):
            texts: list[str] = []
            ids: list[Any] = []
            payloads: list[dict[str, Any]] = []
            for doc in batch:
                self.documents += 1
                content = doc.content
                if not content.strip():
                    self.empty += 1
                    continue
                key = point_id(doc.id) if doc.id is not None else text_point_id(content)
                if key in self._seen:
                    if doc.id is not None:
                        first = self._where(self._seen[key])
                        raise CorpusError(
                            f"document id {doc.id!r} appears twice: {first} and "
                            f"{self._where(self.documents - 1, doc)}; ids must be unique"
                        )
                    self.repeats += 1
                    continue
                self._seen[key] = self.documents - 1
                texts.append(content)
                ids.append(key)
                payloads.append(_payload(doc))
            self.kept += len(texts)
            yield len(batch), texts, ids, payloads

    def _where(self, number: int, doc: Document | None = None) -> str:
        """Where document ``number`` (from 0) was read: ``file:line``, or its file."""
        if doc is None:  # an error path: read again rather than keep every source
            doc = next(islice(read_corpus(self.corpus), number, None))
        return doc.source or f"document {number + 1} of {str(self.corpus)!r}"

    def check_not_empty(self) -> None:
        """Raises CorpusError when the corpus had no document, or only blank ones."""
        if self.documents == 0:
            raise CorpusError(f"corpus {str(self.corpus)!r} holds no document")
        if self.kept == 0:
            raise CorpusError(
                f"every one of the {self.documents} documents of {str(self.corpus)!r} is "
                "empty; nothing to index"
            )

    def report(self, points: int, done: Any = None) -> IndexReport:
        """The report of a run that left ``points`` points, with the writer's counts."""
        counts = {} if done is None else done.to_json()
        return IndexReport(self.documents, self.empty, self.repeats, points, **counts)


# Queries sent in one batch request: bounds the request size of a long evaluation.
_QUERY_BATCH = 256


def search(
    writer: Any,
    queries: list[str],
    *,
    mode: Mode,
    limit: int = 10,
    prefetch_limit: int = 100,
    fusion: str = "rrf",
    explain: bool = False,
    chunks: bool = False,
    query_filter: Any = None,
) -> list[list[Any]]:
    """Search the writer's collection for each query, in batches of one round trip each.

    Args:
        writer: a :class:`lfm_qdrant.MultiVectorWriter` with the models the mode needs.
        queries: the query texts.
        mode: ``"hybrid"``, ``"dense"``, ``"lexical"`` or ``"colbert"``.
        limit: results per query.
        prefetch_limit: candidates of each first-stage leg in hybrid mode (raised to
            ``limit`` if lower).
        fusion: ``"rrf"`` or ``"dbsf"``, for hybrid mode.
        explain: hits say which legs found them (``lfm_qdrant.ExplainedPoint``).
        chunks: return chunks rather than one hit per document.
        query_filter: a Qdrant payload filter (``models.Filter`` or its dict form).

    Returns:
        One list of ``ScoredPoint`` per query, best first, with payloads.

    Raises:
        FilterError: ``query_filter`` is not a filter Qdrant can run (naming its path).
    """
    results: list[list[Any]] = []
    for start in range(0, len(queries), _QUERY_BATCH):
        results += writer.search_batch(
            queries[start : start + _QUERY_BATCH],
            limit=limit,
            prefetch_limit=max(prefetch_limit, limit),
            mode=mode,
            fusion=fusion,
            explain=explain,
            chunks=chunks,
            query_filter=query_filter,
        )
    return results


def collection_legs(client: Any, collection_name: str) -> set[str]:
    """The search legs a collection has: ``dense``, ``colbert`` and ``lexical`` (``bm25``).

    Raises:
        CollectionError: the collection does not exist or has an unnamed vector.
    """
    from lfm_qdrant import LEXICAL

    if not client.collection_exists(collection_name):
        raise CollectionError(
            f"collection {collection_name!r} does not exist; build it first with "
            f"`lfm-retrieval index CORPUS --collection {collection_name}`"
        )
    params = client.get_collection(collection_name).config.params
    if not isinstance(params.vectors, dict):
        raise CollectionError(
            f"collection {collection_name!r} has one unnamed vector; it was not written "
            "by lfm-retrieval (expected named vectors 'dense' and/or 'colbert')"
        )
    legs = {name for name in params.vectors if name in ("dense", "colbert")}
    if LEXICAL in (params.sparse_vectors or {}):
        legs.add("lexical")
    return legs


def choose_mode(requested: str | None, legs: Iterable[str], dense: bool, colbert: bool) -> Mode:
    """The search mode: the one asked for, checked, or the best the collection and models allow.

    ``hybrid`` uses every leg that both the collection and the models have (the lexical leg
    needs no model), and is the default when that is two legs or more.

    Args:
        requested: ``"dense"``, ``"lexical"``, ``"colbert"``, ``"hybrid"`` or ``None``.
        legs: the legs of the collection (:func:`collection_legs`), or of the one that
            will be written.
        dense, colbert: whether that model is given.

    Raises:
        InputError: a mode that needs a vector the collection lacks, or a model not given.

    >>> choose_mode(None, ["dense", "colbert", "lexical"], dense=True, colbert=False)
    'hybrid'
    >>> choose_mode("colbert", ["dense", "lexical"], dense=True, colbert=True)
    Traceback (most recent call last):
    ...
    lfm_core.errors.InputError: search mode 'colbert' needs the collection's 'colbert' vector; ...
    """
    have = set(legs)
    models_given = {"dense": dense, "colbert": colbert, "lexical": True}
    usable = [leg for leg in LEGS if leg in have and models_given[leg]]
    if requested is None:
        if not usable:
            raise InputError(
                f"no search mode fits: the collection has {sorted(have) or 'no vectors'} and "
                f"the models given are dense={dense}, colbert={colbert}"
            )
        return "hybrid" if len(usable) > 1 else usable[0]  # type: ignore[return-value]
    if requested == "hybrid":
        if not usable:
            raise InputError(
                f"search mode 'hybrid' needs at least one leg: the collection has "
                f"{sorted(have) or 'no vectors'} and the models given are dense={dense}, "
                f"colbert={colbert}"
            )
        return "hybrid"
    if requested not in LEGS:
        raise InputError(f"mode must be one of {', '.join((*LEGS, 'hybrid'))}; got {requested!r}")
    if requested not in have:
        what = "'bm25' sparse vector" if requested == "lexical" else f"{requested!r} vector"
        raise InputError(
            f"search mode {requested!r} needs the collection's {what}; it has "
            f"{sorted(have) or 'none'}"
        )
    if not models_given[requested]:
        raise InputError(f"search mode {requested!r} needs a {requested} model; none is given")
    return requested  # type: ignore[return-value]


@dataclass(frozen=True)
class EvalReport:
    """What one BEIR evaluation scored.

    Attributes:
        metrics: ``{"nDCG@10": ..., "Recall@10": ..., "Recall@100": ...}``, means over
            the judged queries.
        queries: queries searched (those with text and at least one positive judgement).
        skipped_no_text: qrels query ids that ``queries.jsonl`` does not hold.
        skipped_no_positive: queries whose judgements are all 0 (BEIR leaves them out).
        unknown_documents: qrels corpus-ids that are not in the collection's corpus.
    """

    metrics: dict[str, float]
    queries: int
    skipped_no_text: int = 0
    skipped_no_positive: int = 0
    unknown_documents: int = 0


def evaluate_beir(
    writer: Any,
    folder: str | Path,
    *,
    mode: Mode,
    split: str = "test",
    prefetch_limit: int = 100,
    recall_ks: tuple[int, ...] = (10, 100),
    fusion: str = "rrf",
) -> EvalReport:
    """Search an indexed BEIR corpus with its queries and score the run on the qrels.

    As BEIR's evaluator, pytrec_eval and MTEB do: qrels queries that have no text in
    ``queries.jsonl`` are skipped (one warning gives the count), and so are queries with
    no positive judgement; corpus-ids of the qrels missing from the corpus are counted.

    Args:
        writer: the writer of the collection built from ``folder``.
        folder: the BEIR folder the collection was built from.
        mode, prefetch_limit, fusion: as for :func:`search`.
        split: the qrels file (``qrels/<split>.tsv``).
        recall_ks: Recall cut-offs; the search returns ``max(recall_ks)`` results.

    Raises:
        CorpusError: the queries or qrels are missing, or no qrels query can be scored.
    """
    qrels = read_beir_qrels(folder, split)
    queries = read_beir_queries(folder)
    no_text = [qid for qid in qrels if qid not in queries]
    if no_text:
        logger.warning(
            "%d of %d query id(s) of qrels/%s.tsv are not in queries.jsonl (first: %r); "
            "they are skipped",
            len(no_text),
            len(qrels),
            split,
            no_text[0],
        )
    no_positive = [q for q in qrels if q in queries and not any(v > 0 for v in qrels[q].values())]
    query_ids = [q for q in qrels if q in queries and any(v > 0 for v in qrels[q].values())]
    if not query_ids:
        raise CorpusError(
            f"no query of qrels/{split}.tsv can be scored: {len(no_text)} have no text in "
            f"queries.jsonl and {len(no_positive)} have no positive judgement"
        )
    corpus_ids = {doc.id for doc in read_corpus(folder) if doc.id is not None}
    unknown = {d for q in qrels for d in qrels[q] if d not in corpus_ids}
    limit = max(recall_ks)
    results = search(
        writer,
        [queries[qid] for qid in query_ids],
        mode=mode,
        limit=limit,
        prefetch_limit=max(prefetch_limit, limit),
        fusion=fusion,
    )
    run = {
        qid: {str(point.payload.get("id", point.id)): float(point.score) for point in points}
        for qid, points in zip(query_ids, results, strict=True)
    }
    judged = {qid: qrels[qid] for qid in query_ids}
    return EvalReport(
        metrics=evaluate(judged, run, recall_ks=recall_ks),
        queries=len(query_ids),
        skipped_no_text=len(no_text),
        skipped_no_positive=len(no_positive),
        unknown_documents=len(unknown),
    )


def _payload(doc: Document) -> dict[str, Any]:
    payload: dict[str, Any] = dict(doc.metadata)
    if doc.id is not None:
        payload["id"] = doc.id
    if doc.title is not None:
        payload["title"] = doc.title
    return payload


def _batches(documents: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while batch := list(islice(documents, size)):
        yield batch
