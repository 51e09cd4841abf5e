"""lfm_llamaindex.LFMColBERTRerank: a LlamaIndex node postprocessor over the core's MaxSim."""

from __future__ import annotations

import asyncio
import copy
import logging

import numpy as np
import pytest
from llama_index.core.bridge.pydantic import ValidationError
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from lfm_core import InputError, LateInteractionEncoder
from lfm_llamaindex import LFMColBERTRerank

QUERY = "which river flows through Paris?"
DOCS = [
    ("The Seine flows through Paris.", {"source": "geo", "year": 2020}),
    ("Photosynthesis happens in chloroplasts.", {"source": "bio", "year": 2019}),
    ("Berlin lies on the Spree river.", {"source": "geo", "year": 2021}),
    ("A longer text about rivers. " * 8, {"source": "long", "year": 2018}),
    ("Tokyo is the capital of Japan.", {"source": "geo", "year": 2022}),
]


def make_nodes() -> list[NodeWithScore]:
    nodes = []
    for i, (text, metadata) in enumerate(DOCS):
        node = TextNode(id_=f"n{i}", text=text, metadata=dict(metadata))
        # LlamaIndex hides excluded keys from EMBED mode; "year" must not reach the model.
        node.excluded_embed_metadata_keys = ["year"]
        nodes.append(NodeWithScore(node=node, score=1.0 - 0.1 * i))
    return nodes


def core_scores(encoder: LateInteractionEncoder, query: str, texts: list[str]) -> np.ndarray:
    return encoder.score(encoder.encode_queries([query])[0], encoder.encode_documents(texts))


class CallLog:
    """Wraps an encoder method to record the arguments of each call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, encoder: object, name: str):
        self.calls: list[tuple] = []
        original = getattr(encoder, name)

        def spy(*args, **kwargs):
            self.calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(encoder, name, spy)


def test_scores_are_core_maxsim_of_the_embed_text(tiny_colbert: LateInteractionEncoder) -> None:
    nodes = make_nodes()
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    want = core_scores(tiny_colbert, QUERY, texts)
    out = LFMColBERTRerank(encoder=tiny_colbert, top_n=None).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.node.node_id for n in out] == [f"n{i}" for i in np.argsort(-want, kind="stable")]
    np.testing.assert_allclose([n.score for n in out], np.sort(want)[::-1], rtol=1e-5)


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.NONE, MetadataMode.ALL])
def test_metadata_mode_decides_the_text_scored(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch, mode: MetadataMode
) -> None:
    nodes = make_nodes()
    log = CallLog(monkeypatch, tiny_colbert, "encode_documents")
    LFMColBERTRerank(encoder=tiny_colbert, metadata_mode=mode).postprocess_nodes(
        nodes, query_str=QUERY
    )
    sent = list(log.calls[0][0])
    assert sent == [n.node.get_content(metadata_mode=mode) for n in nodes]
    assert any("year" in t for t in sent) == (mode == MetadataMode.ALL)
    assert any("source: geo" in t for t in sent) == (mode != MetadataMode.NONE)


def test_one_batched_call_for_all_nodes(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama-index-postprocessor-colbert-rerank runs the model once per node.
    queries = CallLog(monkeypatch, tiny_colbert, "encode_queries")
    documents = CallLog(monkeypatch, tiny_colbert, "encode_documents")
    scores = CallLog(monkeypatch, tiny_colbert, "score")
    LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [list(c[0]) for c in queries.calls] == [[QUERY]]
    assert [len(c[0]) for c in documents.calls] == [len(DOCS)]
    assert len(scores.calls) == 1


def test_scores_with_the_projected_marked_vectors(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The upstream ColBERT reranker scores raw hidden states (no projection head, no
    # [Q]/[D] markers, no query expansion). Here MaxSim sees the core's head output:
    # query_length expanded query vectors and document vectors of the projected size.
    log = CallLog(monkeypatch, tiny_colbert, "score")
    LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(make_nodes(), query_str="Paris")
    query_vectors, document_vectors = log.calls[0]
    assert query_vectors.shape == (tiny_colbert.query_length, tiny_colbert.dim)
    assert all(d.shape[1] == tiny_colbert.dim for d in document_vectors)
    np.testing.assert_allclose(np.linalg.norm(query_vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("top_n", "expected"), [(1, 1), (3, 3), (5, 5), (50, 5), (None, 5)])
def test_top_n_best_first(
    tiny_colbert: LateInteractionEncoder, top_n: int | None, expected: int
) -> None:
    out = LFMColBERTRerank(encoder=tiny_colbert, top_n=top_n).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    scores = [n.score for n in out]
    assert len(out) == expected
    assert scores == sorted(scores, reverse=True)


def test_returns_new_objects_and_leaves_callers_nodes_untouched(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    out = LFMColBERTRerank(
        encoder=tiny_colbert, top_n=None, keep_retrieval_score=True
    ).postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.score, n.node.metadata) for n in nodes] == [
        (b.score, b.node.metadata) for b in before
    ]
    assert not {id(n) for n in out} & {id(n) for n in nodes}
    by_id = {n.node.node_id: n for n in before}
    for n in out:
        assert n.node.metadata["retrieval_score"] == by_id[n.node.node_id].score
        assert n.node.text == by_id[n.node.node_id].node.text


def test_without_keep_retrieval_score_nodes_are_shared_unchanged(
    tiny_colbert: LateInteractionEncoder,
) -> None:
    nodes = make_nodes()
    out = LFMColBERTRerank(encoder=tiny_colbert, top_n=None).postprocess_nodes(
        nodes, query_str=QUERY
    )
    originals = {n.node.node_id: n.node for n in nodes}
    assert all(n.node is originals[n.node.node_id] for n in out)
    assert all("retrieval_score" not in n.node.metadata for n in out)


def test_empty_node_list_returns_empty_without_encoding(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = CallLog(monkeypatch, tiny_colbert, "encode_queries")
    rerank = LFMColBERTRerank(encoder=tiny_colbert)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert asyncio.run(rerank.apostprocess_nodes([], query_str=QUERY)) == []
    assert log.calls == []


@pytest.mark.parametrize("empty_text", ["", "   \n"])
def test_node_without_text_is_kept_last_with_score_zero(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch, empty_text: str
) -> None:
    nodes = make_nodes()
    nodes.insert(1, NodeWithScore(node=TextNode(id_="empty", text=empty_text), score=9.0))
    log = CallLog(monkeypatch, tiny_colbert, "encode_documents")
    rerank = LFMColBERTRerank(encoder=tiny_colbert, top_n=None)
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == len(nodes)
    assert out[-1].node.node_id == "empty"
    assert out[-1].score == 0.0
    assert empty_text not in log.calls[0][0]
    # top_n keeps the nodes that have text first.
    rerank.top_n = len(DOCS)
    assert "empty" not in [n.node.node_id for n in rerank.postprocess_nodes(nodes, query_str=QUERY)]


def test_only_nodes_without_text_skip_the_model(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = CallLog(monkeypatch, tiny_colbert, "encode_queries")
    nodes = [NodeWithScore(node=TextNode(id_=str(i), text=""), score=1.0) for i in range(3)]
    out = LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in out] == [("0", 0.0), ("1", 0.0), ("2", 0.0)]
    assert log.calls == []


def test_long_query_is_truncated_with_a_warning(
    tiny_colbert: LateInteractionEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    long_query = " ".join(f"word{i}" for i in range(200))
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        out = LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(
            make_nodes(), query_str=long_query
        )
    assert len(out) == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "1 of 1 queries" in warnings[0]
    assert "truncated" in warnings[0]


def test_async_matches_sync(tiny_colbert: LateInteractionEncoder) -> None:
    rerank = LFMColBERTRerank(encoder=tiny_colbert, top_n=3)
    want = rerank.postprocess_nodes(make_nodes(), query_str=QUERY)
    got = asyncio.run(rerank.apostprocess_nodes(make_nodes(), query_bundle=QueryBundle(QUERY)))
    assert [(n.node.node_id, n.score) for n in got] == [(n.node.node_id, n.score) for n in want]


def test_missing_query_is_refused(tiny_colbert: LateInteractionEncoder) -> None:
    with pytest.raises(InputError, match="needs a query"):
        LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(make_nodes())


def test_non_str_query_is_refused(tiny_colbert: LateInteractionEncoder) -> None:
    with pytest.raises(TypeError, match="query_str is None; expected str"):
        LFMColBERTRerank(encoder=tiny_colbert).postprocess_nodes(
            make_nodes(),
            query_bundle=QueryBundle(None),  # type: ignore[arg-type]
        )


def test_fields_follow_the_shared_encoder(tiny_colbert: LateInteractionEncoder) -> None:
    rerank = LFMColBERTRerank(encoder=tiny_colbert)
    assert rerank.encoder is tiny_colbert
    assert rerank.model_name == tiny_colbert.model_name
    assert rerank.device == str(tiny_colbert.device)
    assert rerank.top_n == 5
    assert LFMColBERTRerank.class_name() == "LFMColBERTRerank"


def test_built_from_model_name(tiny_colbert_dir, tiny_colbert: LateInteractionEncoder) -> None:
    # A Path is accepted and stored as a str (the field LlamaIndex serializes).
    rerank = LFMColBERTRerank(model_name=tiny_colbert_dir, device="cpu", top_n=None)
    assert rerank.encoder is not tiny_colbert
    assert (rerank.model_name, rerank.device) == (str(tiny_colbert_dir), "cpu")
    shared = LFMColBERTRerank(encoder=tiny_colbert, top_n=None)
    got = rerank.postprocess_nodes(make_nodes(), query_str=QUERY)
    want = shared.postprocess_nodes(make_nodes(), query_str=QUERY)
    np.testing.assert_allclose([n.score for n in got], [n.score for n in want], rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model_name": "other/model"}, InputError, "not both"),
        ({"device": "meta"}, InputError, "device="),
        ({"top_n": 0}, ValidationError, "top_n"),
        ({"rerank_everything": True}, ValidationError, "rerank_everything"),
    ],
)
def test_bad_arguments_are_refused(
    tiny_colbert: LateInteractionEncoder, kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LFMColBERTRerank(encoder=tiny_colbert, **kwargs)


def test_dense_encoder_is_refused(tiny_dense) -> None:
    with pytest.raises(TypeError, match="lfm_core.LateInteractionEncoder"):
        LFMColBERTRerank(encoder=tiny_dense)
