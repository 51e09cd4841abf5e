"""Ranking metrics: nDCG@k and Recall@k, computed the way BEIR reports them.

BEIR scores runs with ``pytrec_eval`` (trec_eval's ``ndcg_cut`` and ``recall``). The
functions here follow the same rules so that a number printed by ``lfm-retrieval eval``
can be compared with a published BEIR / MTEB figure:

- gains are the graded relevance levels themselves (linear gain, not ``2**rel - 1``);
  levels ``<= 0`` count as not relevant;
- the ideal DCG is built from every judged relevant document of the query, retrieved
  or not;
- a run is ranked by score, best first, ties broken by document id in descending
  order (trec_eval's order), never by the order of the dict.

One deliberate difference: a query of the qrels that is missing from the run counts
as a miss (0), where trec_eval silently leaves it out of the mean. Queries without any
relevant document are left out (there is nothing to find).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Qrels = Mapping[str, Mapping[str, int]]
"""``{query_id: {doc_id: relevance}}``, relevance > 0 meaning relevant."""

Run = Mapping[str, Mapping[str, float]]
"""``{query_id: {doc_id: score}}``, higher scores ranking first."""


def ranked_ids(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first, ties broken by id in descending order (as trec_eval).

    Args:
        scores: ``{doc_id: score}`` of one query.

    Returns:
        The ids sorted by decreasing score.

    Example:
        >>> ranked_ids({"a": 0.5, "b": 0.9, "c": 0.5})
        ['b', 'c', 'a']
    """
    return sorted(scores, key=lambda doc_id: (scores[doc_id], doc_id), reverse=True)


def ndcg_at_k(relevance: Mapping[str, int], ranking: Iterable[str], k: int = 10) -> float:
    """nDCG@k of one ranked list.

    Args:
        relevance: ``{doc_id: level}`` judged for the query; levels <= 0 are not relevant.
        ranking: document ids, best first.
        k: cut-off.

    Returns:
        DCG@k / ideal DCG@k in [0, 1]; 0 when the query has no relevant document.

    Example:
        Relevant documents at ranks 1 and 3, two relevant in all:
        (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.6309...

        >>> round(ndcg_at_k({"a": 1, "b": 1}, ["a", "x", "b"], k=10), 4)
        0.9197
    """
    _check_k(k)
    dcg = sum(
        max(relevance.get(doc_id, 0), 0) / math.log2(rank + 2)
        for rank, doc_id in enumerate(list(ranking)[:k])
    )
    ideal_gains = sorted((level for level in relevance.values() if level > 0), reverse=True)
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal_gains[:k]))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(relevance: Mapping[str, int], ranking: Iterable[str], k: int) -> float:
    """Recall@k of one ranked list: the share of relevant documents found in the top k.

    Args:
        relevance: ``{doc_id: level}`` judged for the query; levels <= 0 are not relevant.
        ranking: document ids, best first.
        k: cut-off.

    Returns:
        A value in [0, 1]; 0 when the query has no relevant document.

    Example:
        >>> recall_at_k({"a": 1, "b": 1, "c": 0}, ["c", "a", "x"], k=2)
        0.5
    """
    _check_k(k)
    relevant = {doc_id for doc_id, level in relevance.items() if level > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(list(ranking)[:k])) / len(relevant)


def evaluate(
    qrels: Qrels, run: Run, *, ndcg_k: int = 10, recall_ks: Iterable[int] = (10, 100)
) -> dict[str, float]:
    """Mean nDCG@k and Recall@k over the queries of ``qrels`` that have a relevant document.

    Args:
        qrels: ``{query_id: {doc_id: relevance}}``.
        run: ``{query_id: {doc_id: score}}``; a query missing from it scores 0.
        ndcg_k: cut-off of nDCG.
        recall_ks: cut-offs of Recall.

    Returns:
        ``{"nDCG@10": ..., "Recall@10": ..., "Recall@100": ...}`` (keys follow the
        cut-offs), each the mean over the evaluated queries.

    Raises:
        ValueError: a cut-off is not a positive int, or no query of ``qrels`` has a
            relevant document.

    Example:
        >>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
        >>> run = {"q1": {"d1": 0.9, "d2": 0.1}, "q2": {"d1": 0.9, "d2": 0.1}}
        >>> evaluate(qrels, run, recall_ks=(1, 2))
        {'nDCG@10': 0.8154648767857288, 'Recall@1': 0.5, 'Recall@2': 1.0}
    """
    recall_ks = list(recall_ks)
    queries = [qid for qid, judged in qrels.items() if any(level > 0 for level in judged.values())]
    if not queries:
        raise ValueError("qrels hold no query with a relevant document (relevance > 0)")
    totals = dict.fromkeys([f"nDCG@{ndcg_k}", *(f"Recall@{k}" for k in recall_ks)], 0.0)
    for qid in queries:
        ranking = ranked_ids(run.get(qid, {}))
        totals[f"nDCG@{ndcg_k}"] += ndcg_at_k(qrels[qid], ranking, ndcg_k)
        for k in recall_ks:
            totals[f"Recall@{k}"] += recall_at_k(qrels[qid], ranking, k)
    return {name: total / len(queries) for name, total in totals.items()}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"cut-off k must be a positive int, got {k!r}")
