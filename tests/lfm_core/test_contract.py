"""One encoder contract: both encoders score and rerank alike, one resolver for every caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from lfm_core import (
    DEFAULT_TOP_N,
    DenseEncoder,
    Encoder,
    InputError,
    LateInteractionEncoder,
    LoadOptions,
    resolve_encoder,
)
from lfm_langchain import LFMColBERTReranker
from lfm_llamaindex import LFMColBERTRerank

DOCS = ["Orders ship in two days.", "", "Our cafe opens at nine.", "   ", "Refunds take a week."]


@pytest.mark.parametrize("fixture", ["tiny_dense", "tiny_colbert", "minilm"])
def test_both_encoders_follow_the_contract(request, fixture):
    encoder = request.getfixturevalue(fixture)
    assert isinstance(encoder, Encoder)
    q = encoder.encode_queries(["where is my order"])[0]
    scores = encoder.score(q, encoder.encode_documents(DOCS[::2]))
    assert scores.shape == (3,) and scores.dtype == np.float32
    ranked = encoder.rerank("where is my order", DOCS, top_k=np.int64(4))
    assert len(ranked) == 4
    # Blank documents are never encoded: after every other one, at 0.0, in input order.
    assert [i for i, _ in ranked[-1:]] == [1]
    full = encoder.rerank("where is my order", DOCS)
    assert [i for i, _ in full[-2:]] == [1, 3] and [s for _, s in full[-2:]] == [0.0, 0.0]
    texts_first = [i for i, _ in full[:3]]
    assert sorted(texts_first) == [0, 2, 4]
    np.testing.assert_allclose(sorted(s for _, s in full[:3]), sorted(scores.tolist()), atol=1e-5)


def test_dense_score_is_the_dot_product(tiny_dense):
    q = tiny_dense.encode_queries(["x"])[0]
    d = tiny_dense.encode_documents(["a", "b"])
    np.testing.assert_allclose(tiny_dense.score(q, d), d @ q, atol=1e-6)
    with pytest.raises(TypeError, match="document_vectors has shape"):
        tiny_dense.score(q, d[0])


def test_langchain_and_llamaindex_rerankers_rank_the_same_input_alike(tiny_colbert):
    query = "where is my order"
    lc = LFMColBERTReranker(encoder=tiny_colbert, top_n=None).compress_documents(
        [Document(page_content=t) for t in DOCS], query
    )
    li = LFMColBERTRerank(encoder=tiny_colbert, top_n=None).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t), score=1.0) for t in DOCS], QueryBundle(query)
    )
    assert [d.page_content for d in lc] == [n.node.get_content() for n in li]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in lc], [n.score for n in li], atol=1e-6
    )
    assert LFMColBERTReranker(encoder=tiny_colbert).top_n == DEFAULT_TOP_N
    assert LFMColBERTRerank(encoder=tiny_colbert).top_n == DEFAULT_TOP_N


# ---------------------------------------------------------------------- the resolver


def test_a_loaded_encoder_is_shared_as_it_is(tiny_dense):
    same = resolve_encoder(DenseEncoder, tiny_dense, model_name=tiny_dense.model_name, owner="t")
    assert same is tiny_dense
    assert (
        resolve_encoder(DenseEncoder, tiny_dense, options=LoadOptions(device="cpu"), owner="t")
        is tiny_dense
    )


def test_a_name_or_folder_is_loaded_with_the_options(tiny_dense_dir: Path):
    options = LoadOptions(device="cpu", max_batch_size=3, normalize=False)
    encoder = resolve_encoder(DenseEncoder, tiny_dense_dir, options=options, owner="t")
    assert encoder.batching.max_batch_size == 3 and encoder.head.normalize is False
    by_name = resolve_encoder(
        DenseEncoder, model_name=str(tiny_dense_dir), options=options, owner="t"
    )
    assert by_name.model_name == str(tiny_dense_dir)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda e, c: resolve_encoder(DenseEncoder, e, model_name="other", owner="X"),
            InputError,
            "X: model_name='other' does not match",
        ),
        (
            lambda e, c: resolve_encoder(
                DenseEncoder, e, options=LoadOptions(max_batch_size=2), owner="X"
            ),
            InputError,
            "max_batch_size cannot be combined with a loaded encoder",
        ),
        (
            lambda e, c: resolve_encoder(
                DenseEncoder, e, options=LoadOptions(device="cuda"), owner="X"
            ),
            InputError,
            "device='cuda' does not match",
        ),
        (
            lambda e, c: resolve_encoder(DenseEncoder, c, owner="X"),
            TypeError,
            "X: encoder is LateInteractionEncoder; expected lfm_core.DenseEncoder",
        ),
        (lambda e, c: resolve_encoder(DenseEncoder, 42, owner="X"), TypeError, "encoder is int"),
        (lambda e, c: resolve_encoder(DenseEncoder, None, owner="X"), InputError, "no model given"),
        (lambda e, c: LoadOptions(max_batch_size=0), InputError, "max_batch_size must be >= 1"),
        (
            lambda e, c: LoadOptions.from_kwargs({"batch": 2}, "X"),
            InputError,
            r"unknown model_kwargs \['batch'\]",
        ),
        (
            lambda e, c: LoadOptions(normalize=False).load(LateInteractionEncoder, "unused"),
            InputError,
            "normalize=False is a dense option",
        ),
    ],
    ids=[
        "name-mismatch",
        "loading-option",
        "device",
        "other-kind",
        "not-an-encoder",
        "nothing",
        "bad-option",
        "unknown-kwarg",
        "colbert-normalize",
    ],
)
def test_one_rule_and_one_error_type(tiny_dense, tiny_colbert, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_dense, tiny_colbert)
