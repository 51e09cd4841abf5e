"""Index a corpus into Qdrant, search it in one of three modes, evaluate it on BEIR qrels.

Writing goes through :class:`lfm_qdrant.MultiVectorWriter`: its point ids are the
corpus ids (or the text, for a document without one) mapped by ``lfm_qdrant.point_id``,
and ``add(..., skip_existing=True)`` skips the points already stored with the same
payload. So indexing is resumable: running it again after an interruption encodes only
what is missing.

Search modes:

- ``hybrid``: the writer's two-stage search, dense prefetch then ColBERT MaxSim rerank;
- ``dense``: cosine on the ``dense`` vector alone;
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

Mode = Literal["dense", "colbert", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "colbert", "hybrid")


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did.

    Attributes:
        documents: documents read from the corpus.
        skipped_empty: documents left out because their text (and title) is blank.
        skipped_repeats: documents without an id whose text repeats an earlier one.
        points: points in the collection afterwards.
    """

    documents: int
    skipped_empty: int
    skipped_repeats: int
    points: int


def index_corpus(
    writer: Any,
    corpus: str | Path,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> IndexReport:
    """Write every document of a corpus to the writer's collection; resumable.

    Each document is stored as ``"title text"`` (the embedded text) with the payload
    ``{"text": ..., "id": <corpus id>, "title": ..., **metadata}``; ``id`` and ``title`` are
    there only when the corpus has them.

    Args:
        writer: a :class:`lfm_qdrant.MultiVectorWriter` on a sync client.
        corpus: a JSONL file, a BEIR folder or a folder of ``.txt`` / ``.md`` files.
        batch_size: documents per ``writer.add`` call (one resume step).
        progress: called with the number of documents done after each batch.

    Returns:
        An :class:`IndexReport`.

    Raises:
        CorpusError: the corpus is missing or malformed, or two documents share an id.
        CollectionError: the collection exists with another layout (other models).
    """
    from lfm_qdrant import point_id

    seen: dict[str, int] = {}
    documents = empty = repeats = 0
    for batch in _batches(read_corpus(corpus), batch_size):
        texts, ids, payloads = [], [], []
        for doc in batch:
            documents += 1
            content = doc.content
            if not content.strip():
                empty += 1
                continue
            key = point_id(doc.id if doc.id is not None else content)
            if key in seen:
                if doc.id is not None:
                    raise CorpusError(
                        f"document id {doc.id!r} appears twice in {str(corpus)!r} "
                        f"(documents {seen[key] + 1} and {documents}); ids must be unique"
                    )
                repeats += 1
                continue
            seen[key] = documents - 1
            texts.append(content)
            ids.append(doc.id if doc.id is not None else content)
            payloads.append(_payload(doc))
        if texts:
            writer.add(texts, ids=ids, metadata=payloads, skip_existing=True, show_progress=False)
        if progress is not None:
            progress(len(batch))
    if documents == 0:
        raise CorpusError(f"corpus {str(corpus)!r} holds no document")
    points = writer.client.count(writer.collection_name, exact=True).count
    return IndexReport(documents, empty, repeats, points)


def search(
    client: Any,
    collection_name: str,
    queries: list[str],
    *,
    mode: Mode,
    dense: Any = None,
    colbert: Any = None,
    limit: int = 10,
    prefetch_limit: int = 100,
) -> list[list[Any]]:
    """Search a collection for each query.

    Args:
        client: a sync ``QdrantClient``.
        collection_name: a collection written by :func:`index_corpus`.
        queries: the query texts.
        mode: ``"hybrid"`` (needs both encoders), ``"dense"`` or ``"colbert"``.
        dense: the ``DenseEncoder`` that built the collection (hybrid and dense modes).
        colbert: the ``LateInteractionEncoder`` that built it (hybrid and colbert modes).
        limit: results per query.
        prefetch_limit: dense candidates reranked in hybrid mode (raised to ``limit`` if lower).

    Returns:
        One list of ``ScoredPoint`` per query, best first, with payloads.

    Raises:
        CollectionError: the collection is missing, or lacks the vector the mode needs,
            or its vectors have another width than the encoder.
        InputError: the mode needs an encoder that was not given.
    """
    from lfm_qdrant import COLBERT, DENSE, MultiVectorWriter

    vectors = collection_vectors(client, collection_name)
    needed = {"dense": [DENSE], "colbert": [COLBERT], "hybrid": [DENSE, COLBERT]}[mode]
    encoders = {DENSE: dense, COLBERT: colbert}
    for name in needed:
        if encoders[name] is None:
            flag = "--embedding-model" if name == DENSE else "--colbert-model"
            raise InputError(f"search mode {mode!r} needs a {name} model; {flag} is 'none'")
        if name not in vectors:
            raise CollectionError(
                f"collection {collection_name!r} has no {name!r} vector (it has "
                f"{sorted(vectors)}); use --mode {' or '.join(sorted(_modes_for(vectors)))}"
            )
        if vectors[name] != encoders[name].dim:
            raise CollectionError(
                f"collection {collection_name!r}: vector {name!r} has width {vectors[name]}, "
                f"but model {encoders[name].model_name!r} gives {encoders[name].dim}; "
                "pass the model that built the collection"
            )
    if mode == "hybrid":
        writer = MultiVectorWriter(client, collection_name, dense=dense, colbert=colbert)
        prefetch = max(prefetch_limit, limit)
        return [writer.search(q, limit=limit, prefetch_limit=prefetch) for q in queries]
    # One vector alone: query it directly, with the queries encoded in one batch (the
    # writer's search covers every vector of its layout, one query at a time).
    if mode == "dense":
        matrix = dense.encode_queries(queries, show_progress=False)
        query_vectors: list[Any] = [row.tolist() for row in matrix]
    else:
        query_vectors = [m.tolist() for m in colbert.encode_queries(queries, show_progress=False)]
    using = DENSE if mode == "dense" else COLBERT
    return [
        client.query_points(
            collection_name, query=vector, using=using, limit=limit, with_payload=True
        ).points
        for vector in query_vectors
    ]


def collection_vectors(client: Any, collection_name: str) -> dict[str, int]:
    """``{vector name: width}`` of a collection.

    Raises:
        CollectionError: the collection does not exist or has an unnamed vector.
    """
    if not client.collection_exists(collection_name):
        raise CollectionError(
            f"collection {collection_name!r} does not exist; build it first with "
            f"`lfm-retrieval index CORPUS --collection {collection_name}`"
        )
    vectors = client.get_collection(collection_name).config.params.vectors
    if not isinstance(vectors, dict):
        raise CollectionError(
            f"collection {collection_name!r} has one unnamed vector; it was not written "
            "by lfm-retrieval (expected named vectors 'dense' and/or 'colbert')"
        )
    return {name: params.size for name, params in vectors.items()}


def default_mode(vectors: Iterable[str], dense: bool, colbert: bool) -> Mode:
    """The best mode a collection and the loaded models allow: hybrid, then dense, then colbert.

    >>> default_mode(["dense", "colbert"], dense=True, colbert=False)
    'dense'
    """
    modes = _modes_for(vectors) & _modes_for(
        [name for name, on in (("dense", dense), ("colbert", colbert)) if on]
    )
    preference: tuple[Mode, ...] = ("hybrid", "dense", "colbert")
    for mode in preference:
        if mode in modes:
            return mode
    raise InputError(
        f"no search mode fits: the collection has vectors {sorted(vectors)} and the models "
        f"given are dense={dense}, colbert={colbert}"
    )


def evaluate_beir(
    client: Any,
    collection_name: str,
    folder: str | Path,
    *,
    mode: Mode,
    dense: Any = None,
    colbert: Any = None,
    split: str = "test",
    prefetch_limit: int = 100,
    recall_ks: tuple[int, ...] = (10, 100),
) -> tuple[dict[str, float], int]:
    """Search an indexed BEIR corpus with its queries and score the run on the qrels.

    Args:
        client, collection_name, mode, dense, colbert, prefetch_limit: as for :func:`search`.
        folder: the BEIR folder the collection was built from.
        split: the qrels file (``qrels/<split>.tsv``).
        recall_ks: Recall cut-offs; the search returns ``max(recall_ks)`` results.

    Returns:
        ``(metrics, n_queries)``: ``{"nDCG@10": ..., "Recall@10": ..., "Recall@100": ...}``
        (see :func:`lfm_retrieval.evaluation.evaluate`) and the number of queries run.

    Raises:
        CorpusError: the queries or qrels are missing, or a qrels query has no text.
    """
    qrels = read_beir_qrels(folder, split)
    queries = read_beir_queries(folder)
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise CorpusError(
            f"{len(missing)} query id(s) of qrels/{split}.tsv are not in queries.jsonl "
            f"(first: {missing[0]!r})"
        )
    query_ids = list(qrels)
    limit = max(recall_ks)
    results = search(
        client,
        collection_name,
        [queries[qid] for qid in query_ids],
        mode=mode,
        dense=dense,
        colbert=colbert,
        limit=limit,
        prefetch_limit=max(prefetch_limit, limit),
    )
    run = {
        qid: {str(point.payload.get("id", point.id)): float(point.score) for point in points}
        for qid, points in zip(query_ids, results, strict=True)
    }
    return evaluate(qrels, run, recall_ks=recall_ks), len(query_ids)


def _payload(doc: Document) -> dict[str, Any]:
    payload: dict[str, Any] = dict(doc.metadata)
    if doc.id is not None:
        payload["id"] = doc.id
    if doc.title is not None:
        payload["title"] = doc.title
    return payload


def _modes_for(vectors: Iterable[str]) -> set[str]:
    names = set(vectors)
    modes = {mode for mode, name in (("dense", "dense"), ("colbert", "colbert")) if name in names}
    if {"dense", "colbert"} <= names:
        modes.add("hybrid")
    return modes


def _batches(documents: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while batch := list(islice(documents, size)):
        yield batch
