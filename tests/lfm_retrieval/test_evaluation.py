"""nDCG@k and Recall@k against values computed by hand, and against trec_eval when present."""

from __future__ import annotations

import math
import random

import pytest

from lfm_retrieval.evaluation import evaluate, ndcg_at_k, ranked_ids, recall_at_k


def _dcg(gains: list[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


@pytest.mark.parametrize(
    ("relevance", "ranking", "k", "expected"),
    [
        # Perfect ranking.
        ({"a": 1}, ["a", "b"], 10, 1.0),
        # The one relevant document at rank 2: 1/log2(3).
        ({"a": 1}, ["b", "a"], 10, 1 / math.log2(3)),
        # ... and outside the cut-off.
        ({"a": 1}, ["b", "a"], 1, 0.0),
        # Graded: linear gains 2 and 1, retrieved in the wrong order.
        ({"a": 2, "b": 1}, ["b", "a"], 10, _dcg([1, 2]) / _dcg([2, 1])),
        # Three relevant, one found at rank 3; the ideal counts all three.
        ({"a": 1, "b": 1, "c": 1}, ["x", "y", "a"], 10, (1 / 2) / _dcg([1, 1, 1])),
        # The ideal DCG is cut at k too: 2 relevant but k=1.
        ({"a": 1, "b": 1}, ["a", "x"], 1, 1.0),
        # Level 0 and negative levels are not relevant.
        ({"a": 0, "b": -1, "c": 1}, ["a", "b", "c"], 10, 0.5 / 1.0),
        # Nothing relevant: 0, not a division by zero.
        ({"a": 0}, ["a"], 10, 0.0),
        ({"a": 1}, [], 10, 0.0),
    ],
)
def test_ndcg_at_k_matches_hand_values(relevance, ranking, k, expected):
    assert ndcg_at_k(relevance, ranking, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("relevance", "ranking", "k", "expected"),
    [
        ({"a": 1, "b": 1}, ["a", "x", "b"], 2, 0.5),
        ({"a": 1, "b": 1}, ["a", "x", "b"], 3, 1.0),
        ({"a": 1, "b": 2, "c": 0}, ["c", "x"], 10, 0.0),
        ({"a": 1, "b": 1, "c": 1, "d": 1}, ["d", "c", "b"], 100, 0.75),
        ({"a": 0}, ["a"], 10, 0.0),
    ],
)
def test_recall_at_k_matches_hand_values(relevance, ranking, k, expected):
    assert recall_at_k(relevance, ranking, k) == pytest.approx(expected)


def test_ties_rank_by_document_id_descending_like_trec_eval():
    assert ranked_ids({"d1": 0.5, "d3": 0.5, "d2": 0.9, "d0": 0.1}) == ["d2", "d3", "d1", "d0"]


def test_evaluate_averages_over_queries_with_a_relevant_document():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q_none": {"d1": 0}}
    run = {
        "q1": {"d1": 0.9, "d2": 0.1},  # nDCG 1, R@1 1
        "q2": {"d1": 0.9, "d2": 0.8},  # nDCG (1/log2 3) / (1 + 1/log2 3), R@1 0, R@2 1/2
        "q_none": {"d1": 1.0},
    }
    metrics = evaluate(qrels, run, recall_ks=(1, 2))
    q2_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert list(metrics) == ["nDCG@10", "Recall@1", "Recall@2"]
    assert metrics["nDCG@10"] == pytest.approx((1 + q2_ndcg) / 2)
    assert metrics["Recall@1"] == pytest.approx(0.5)
    assert metrics["Recall@2"] == pytest.approx(0.75)


def test_evaluate_counts_a_query_missing_from_the_run_as_a_miss():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    metrics = evaluate(qrels, {"q1": {"d1": 1.0}})
    assert metrics == {"nDCG@10": 0.5, "Recall@10": 0.5, "Recall@100": 0.5}


def test_evaluate_ignores_the_order_of_the_run_dict():
    qrels = {"q": {"b": 1}}
    forward = evaluate(qrels, {"q": {"a": 0.2, "b": 0.9}})
    backward = evaluate(qrels, {"q": {"b": 0.9, "a": 0.2}})
    assert forward == backward == {"nDCG@10": 1.0, "Recall@10": 1.0, "Recall@100": 1.0}


def test_evaluate_refuses_qrels_without_a_relevant_document():
    with pytest.raises(ValueError, match="no query with a relevant document"):
        evaluate({"q": {"d": 0}}, {"q": {"d": 1.0}})


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_cut_off_must_be_a_positive_int(k):
    with pytest.raises(ValueError, match="positive int"):
        ndcg_at_k({"a": 1}, ["a"], k)
    with pytest.raises(ValueError, match="positive int"):
        recall_at_k({"a": 1}, ["a"], k)


def test_matches_pytrec_eval_on_random_runs():
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier not installed")
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(150)]
    qrels = {
        f"q{q}": {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 12))}
        for q in range(40)
    }
    # Scores rounded to two decimals, so that ties occur and their order matters.
    run = {qid: {d: round(rng.random(), 2) for d in rng.sample(docs, 120)} for qid in qrels}
    ours = evaluate(qrels, run)
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10,100"}).evaluate(
        run
    )
    for ours_name, trec_name in [
        ("nDCG@10", "ndcg_cut_10"),
        ("Recall@10", "recall_10"),
        ("Recall@100", "recall_100"),
    ]:
        theirs = sum(scores[trec_name] for scores in per_query.values()) / len(per_query)
        assert ours[ours_name] == pytest.approx(theirs, abs=1e-9), ours_name
