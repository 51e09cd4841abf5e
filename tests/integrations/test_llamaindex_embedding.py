"""lfm_llamaindex.LFMEmbedding: a LlamaIndex BaseEmbedding that only converts types."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from llama_index.core.bridge.pydantic import ValidationError

from lfm_core import DenseEncoder, InputError
from lfm_llamaindex import LFMEmbedding

TEXTS = [
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns light into chemical energy.",
    "Ein kurzer deutscher Satz.",
    "",
    "Liquid AI builds efficient foundation models. " * 20,
]


@pytest.fixture(params=["tiny_dense", "minilm"])
def encoder(request: pytest.FixtureRequest) -> DenseEncoder:
    return request.getfixturevalue(request.param)


class CallLog:
    """Wraps an encoder method to record each call's texts and thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, encoder: DenseEncoder, name: str):
        self.calls: list[list[str]] = []
        self.threads: list[int] = []
        original = getattr(encoder, name)

        def spy(texts, **kwargs):
            texts = list(texts)
            self.calls.append(texts)
            self.threads.append(threading.get_ident())
            return original(texts, **kwargs)

        monkeypatch.setattr(encoder, name, spy)


def test_query_embedding_is_the_core_query_vector(encoder: DenseEncoder) -> None:
    emb = LFMEmbedding(encoder=encoder)
    got = emb.get_query_embedding("where is the Eiffel Tower?")
    want = encoder.encode_queries(["where is the Eiffel Tower?"])[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_text_embedding_is_the_core_document_vector(encoder: DenseEncoder) -> None:
    emb = LFMEmbedding(encoder=encoder)
    got = emb.get_text_embedding(TEXTS[0])
    np.testing.assert_allclose(got, encoder.encode_documents([TEXTS[0]])[0], rtol=0, atol=1e-6)


def test_query_and_text_prompts_differ(tiny_dense: DenseEncoder) -> None:
    # tiny_dense has prompts "query: " / "document: ": the two paths must not coincide.
    emb = LFMEmbedding(encoder=tiny_dense)
    q = np.asarray(emb.get_query_embedding(TEXTS[0]))
    d = np.asarray(emb.get_text_embedding(TEXTS[0]))
    assert not np.allclose(q, d, atol=1e-4)


def test_adapter_adds_no_prompt_text(
    encoder: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = CallLog(monkeypatch, encoder, "encode_queries")
    documents = CallLog(monkeypatch, encoder, "encode_documents")
    emb = LFMEmbedding(encoder=encoder)
    emb.get_query_embedding("raw query")
    emb.get_text_embedding("raw text")
    emb.get_text_embedding_batch(["a", "b"])
    assert queries.calls == [["raw query"]]
    assert documents.calls == [["raw text"], ["a", "b"]]


@pytest.mark.parametrize(("batch_size", "sizes"), [(2, [2, 2, 1]), (5, [5]), (256, [5])])
def test_batch_is_one_core_call_per_chunk(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch, batch_size: int, sizes: list[int]
) -> None:
    want = tiny_dense.encode_documents(TEXTS)
    log = CallLog(monkeypatch, tiny_dense, "encode_documents")
    got = LFMEmbedding(encoder=tiny_dense, embed_batch_size=batch_size).get_text_embedding_batch(
        TEXTS
    )
    assert [len(c) for c in log.calls] == sizes
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5)


def test_default_batch_size_is_larger_than_llamaindex_default(tiny_dense: DenseEncoder) -> None:
    # LlamaIndex's default of 10 would cut every node list into tiny core calls.
    assert LFMEmbedding(encoder=tiny_dense).embed_batch_size >= 64


def test_vectors_are_unit_length_lists_of_float(encoder: DenseEncoder) -> None:
    emb = LFMEmbedding(encoder=encoder)
    vectors = [emb.get_query_embedding("q"), *emb.get_text_embedding_batch(TEXTS)]
    for vector in vectors:
        assert isinstance(vector, list)
        assert len(vector) == encoder.dim
        assert all(isinstance(x, float) for x in vector)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_empty_batch_gives_empty_list(tiny_dense: DenseEncoder) -> None:
    emb = LFMEmbedding(encoder=tiny_dense)
    assert emb.get_text_embedding_batch([]) == []
    assert asyncio.run(emb.aget_text_embedding_batch([])) == []


def test_async_matches_sync_and_runs_off_the_event_loop(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = LFMEmbedding(encoder=tiny_dense, embed_batch_size=2)
    want_q = emb.get_query_embedding("q")
    want_t = emb.get_text_embedding(TEXTS[0])
    want_b = emb.get_text_embedding_batch(TEXTS)
    queries = CallLog(monkeypatch, tiny_dense, "encode_queries")
    documents = CallLog(monkeypatch, tiny_dense, "encode_documents")

    async def run() -> tuple[int, list, list, list]:
        loop_thread = threading.get_ident()
        q = await emb.aget_query_embedding("q")
        t = await emb.aget_text_embedding(TEXTS[0])
        b = await emb.aget_text_embedding_batch(TEXTS)
        return loop_thread, q, t, b

    loop_thread, q, t, b = asyncio.run(run())
    np.testing.assert_allclose(q, want_q, atol=1e-6)
    np.testing.assert_allclose(t, want_t, atol=1e-6)
    np.testing.assert_allclose(b, want_b, atol=1e-5)
    # One core call per chunk (not per text), and none on the event loop's thread.
    assert sorted(len(c) for c in documents.calls) == [1, 1, 2, 2]
    assert loop_thread not in queries.threads + documents.threads


def test_built_from_model_name_and_rebuilt_from_its_dict(
    tiny_dense_dir, tiny_dense: DenseEncoder
) -> None:
    emb = LFMEmbedding(model_name=str(tiny_dense_dir), device="cpu", embed_batch_size=32)
    assert (emb.model_name, emb.device) == (str(tiny_dense_dir), "cpu")
    assert emb.encoder is not tiny_dense
    want = tiny_dense.encode_queries(["q"])[0]
    np.testing.assert_allclose(emb.get_query_embedding("q"), want, atol=1e-5)
    # LlamaIndex serializes components with to_dict(); from_dict() must load the same model.
    again = LFMEmbedding.from_dict(emb.to_dict())
    assert (again.model_name, again.device, again.embed_batch_size) == (emb.model_name, "cpu", 32)
    np.testing.assert_allclose(again.get_query_embedding("q"), want, atol=1e-5)


def test_shared_encoder_fields(tiny_dense: DenseEncoder) -> None:
    emb = LFMEmbedding(encoder=tiny_dense)
    assert emb.encoder is tiny_dense
    assert emb.model_name == tiny_dense.model_name
    assert emb.device == str(tiny_dense.device)
    assert LFMEmbedding.class_name() == "LFMEmbedding"
    assert emb.to_dict()["class_name"] == "LFMEmbedding"


def test_encoder_with_other_model_name_is_refused(tiny_dense: DenseEncoder) -> None:
    with pytest.raises(InputError, match="model_name=.*not both"):
        LFMEmbedding(model_name="some/other-model", encoder=tiny_dense)


def test_encoder_on_other_device_is_refused(tiny_dense: DenseEncoder) -> None:
    other = "meta" if tiny_dense.device.type != "meta" else "cpu"
    with pytest.raises(InputError, match="device="):
        LFMEmbedding(encoder=tiny_dense, device=other)


def test_wrong_encoder_kind_is_refused(tiny_colbert) -> None:
    with pytest.raises(TypeError, match="lfm_core.DenseEncoder"):
        LFMEmbedding(encoder=tiny_colbert)


def test_unknown_field_is_refused(tiny_dense: DenseEncoder) -> None:
    with pytest.raises(ValidationError, match="query_instruction"):
        LFMEmbedding(encoder=tiny_dense, query_instruction="Represent this: ")


@pytest.mark.parametrize("bad", [None, 3, ["a list"]])
def test_non_str_query_is_refused(tiny_dense: DenseEncoder, bad: object) -> None:
    with pytest.raises(TypeError, match="query is .*expected str"):
        LFMEmbedding(encoder=tiny_dense).get_query_embedding(bad)  # type: ignore[arg-type]
