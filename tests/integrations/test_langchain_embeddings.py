"""LFMEmbeddings: LangChain's standard suites, prompts, options, bad input, async."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from lfm_core import DenseEncoder
from lfm_langchain import LFMEmbeddings

# anyio's plugin runs the async tests (the standard suites' too) and leaves sync ones alone.
pytestmark = pytest.mark.anyio

TEXTS = ["Où est ma commande ?", "The cell cycle has four phases.", "  two\nlines\t "]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["tiny_dense", "minilm"])
def model_key(request: pytest.FixtureRequest) -> str:
    """A tiny LFM2.5-Embedding-layout checkpoint, then the real all-MiniLM-L6-v2."""
    return request.param


@pytest.fixture
def encoder(request: pytest.FixtureRequest, model_key: str) -> DenseEncoder:
    return request.getfixturevalue(model_key)


@pytest.fixture
def checkpoint_dir(request: pytest.FixtureRequest, model_key: str) -> Path:
    # Not named `model`: the standard suites use that name for the adapter itself.
    return request.getfixturevalue(f"{model_key}_dir")


class TestLFMEmbeddingsStandardUnit(EmbeddingsUnitTests):
    """langchain-tests' unit suite, building the adapter from ``model_name=``."""

    @pytest.fixture(autouse=True)
    def _use_checkpoint(self, checkpoint_dir: Path) -> None:
        # pytest binds class fixtures to the test's own instance, so the suite's
        # `embedding_model_params` property (read without fixtures) can see the path.
        self._checkpoint_dir = checkpoint_dir

    @property
    def embeddings_class(self) -> type[LFMEmbeddings]:
        return LFMEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self._checkpoint_dir), "device": "cpu"}


class TestLFMEmbeddingsStandardIntegration(EmbeddingsIntegrationTests):
    """langchain-tests' integration suite, on the shared session encoders (``encoder=``)."""

    @pytest.fixture(autouse=True)
    def _use_encoder(self, encoder: DenseEncoder) -> None:
        self._encoder = encoder

    @property
    def embeddings_class(self) -> type[LFMEmbeddings]:
        return LFMEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": self._encoder}


def test_query_and_documents_are_the_cores_query_and_document_encodings(
    encoder: DenseEncoder,
) -> None:
    embeddings = LFMEmbeddings(encoder=encoder)

    np.testing.assert_allclose(
        embeddings.embed_query(TEXTS[0]), encoder.encode_queries([TEXTS[0]])[0], atol=1e-6
    )
    np.testing.assert_allclose(
        embeddings.embed_documents(TEXTS), encoder.encode_documents(TEXTS), atol=1e-6
    )


@pytest.mark.parametrize(("fixture", "has_prompts"), [("tiny_dense", True), ("minilm", False)])
def test_query_and_document_differ_exactly_when_the_checkpoint_has_prompts(
    request: pytest.FixtureRequest, fixture: str, has_prompts: bool
) -> None:
    embeddings = LFMEmbeddings(encoder=request.getfixturevalue(fixture))

    as_query = np.array(embeddings.embed_query(TEXTS[1]))
    as_document = np.array(embeddings.embed_documents([TEXTS[1]])[0])

    assert np.allclose(as_query, as_document, atol=1e-6) is not has_prompts


def test_minilm_matches_sentence_transformers(minilm_dir: Path, minilm: DenseEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")

    got = LFMEmbeddings(encoder=minilm).embed_documents(TEXTS)

    np.testing.assert_allclose(got, reference.encode(TEXTS), atol=2e-5)


@pytest.mark.parametrize("show_progress", [False, True])
def test_texts_reach_the_encoder_unaltered(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch, show_progress: bool
) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []
    original = tiny_dense.encode_documents

    def spy(texts: list[str], **kwargs: Any) -> np.ndarray:
        calls.append((list(texts), kwargs))
        return original(texts, **kwargs)

    monkeypatch.setattr(tiny_dense, "encode_documents", spy)
    LFMEmbeddings(encoder=tiny_dense, show_progress=show_progress).embed_documents(TEXTS)

    assert calls == [(TEXTS, {"show_progress": show_progress})]


def test_vectors_are_unit_length_floats(encoder: DenseEncoder) -> None:
    vectors = LFMEmbeddings(encoder=encoder).embed_documents(TEXTS)

    assert all(type(x) is float for vector in vectors for x in vector)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_normalize_false_returns_the_pooled_vectors_unscaled(
    tiny_dense_dir: Path, tiny_dense: DenseEncoder
) -> None:
    embeddings = LFMEmbeddings(model_name=tiny_dense_dir, normalize=False)
    raw = np.array(embeddings.embed_documents(TEXTS))

    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms, tiny_dense.encode_documents(TEXTS), atol=1e-5)
    # An adapter sharing that encoder reports its setting instead of the default.
    assert LFMEmbeddings(encoder=embeddings.encoder).normalize is False


def test_model_name_forwards_loading_options(
    tiny_dense_dir: Path, tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    original = DenseEncoder.from_pretrained

    def spy(name_or_path: str, **kwargs: Any) -> DenseEncoder:
        seen.append({"name_or_path": name_or_path, **kwargs})
        return original(name_or_path, **kwargs)

    monkeypatch.setattr(DenseEncoder, "from_pretrained", spy)
    embeddings = LFMEmbeddings(
        model_name=tiny_dense_dir,
        device="cpu",
        max_batch_size=2,
        max_tokens_per_batch=64,
        model_kwargs={"dtype": "float32", "revision": "main"},
    )

    keys = ("name_or_path", "device", "max_batch_size", "max_tokens_per_batch", "normalize")
    assert [{k: call[k] for k in keys} for call in seen] == [
        {
            "name_or_path": str(tiny_dense_dir),
            "device": "cpu",
            "max_batch_size": 2,
            "max_tokens_per_batch": 64,
            "normalize": True,
        }
    ]
    assert (seen[0]["dtype"], seen[0]["revision"]) == ("float32", "main")
    # Small batches change how texts are grouped, never their vectors.
    np.testing.assert_allclose(
        embeddings.embed_documents(TEXTS * 2), tiny_dense.encode_documents(TEXTS * 2), atol=1e-5
    )


def test_adapters_share_one_encoder(tiny_dense: DenseEncoder) -> None:
    first = LFMEmbeddings(encoder=tiny_dense)
    second = LFMEmbeddings(encoder=first.encoder)

    assert second.encoder is tiny_dense
    assert second.model_name == tiny_dense.model_name
    assert second.dim == tiny_dense.dim == len(second.embed_query("x"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model_name": "other"}, "model_name= or encoder=, not both"),
        ({"device": "cuda"}, "device='cuda' does not match the encoder passed in"),
        (
            {"max_batch_size": 4, "max_tokens_per_batch": 64},
            "max_tokens_per_batch, max_batch_size cannot be combined with a loaded encoder",
        ),
        ({"normalize": False}, "normalize=False contradicts the encoder"),
        ({"batch_size": 0}, "greater than 0"),
        ({"prompt": "query: "}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_rejected(
    tiny_dense: DenseEncoder, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        LFMEmbeddings(encoder=tiny_dense, **kwargs)


def test_encoder_of_the_wrong_kind_is_rejected(tiny_colbert: object) -> None:
    with pytest.raises(TypeError, match="encoder is LateInteractionEncoder; expected"):
        LFMEmbeddings(encoder=tiny_colbert)


async def test_empty_document_list_gives_empty_list(tiny_dense: DenseEncoder) -> None:
    embeddings = LFMEmbeddings(encoder=tiny_dense)

    assert embeddings.embed_documents([]) == []
    assert await embeddings.aembed_documents([]) == []


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        (["a", None], r"texts\[1\] is None; expected str"),
        (["a", "b", 3], r"texts\[2\] is an? int; expected str"),
        ("a single string", "not a single str"),
    ],
)
def test_non_string_documents_raise_type_error_naming_the_position(
    tiny_dense: DenseEncoder, texts: Any, match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        LFMEmbeddings(encoder=tiny_dense).embed_documents(texts)


def test_non_string_query_raises_type_error(tiny_dense: DenseEncoder) -> None:
    with pytest.raises(TypeError, match="text is a list; expected str"):
        LFMEmbeddings(encoder=tiny_dense).embed_query(["a"])  # type: ignore[arg-type]


async def test_async_runs_off_the_event_loop(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The encoder waits for an event that only the event loop can set: if aembed_*
    # ran the model on the loop's thread, the wait would time out.
    released = threading.Event()
    original = tiny_dense.encode_documents

    def gated(texts: list[str], **kwargs: Any) -> np.ndarray:
        if not released.wait(timeout=10):
            raise AssertionError("the event loop was blocked while embedding")
        return original(texts, **kwargs)

    monkeypatch.setattr(tiny_dense, "encode_documents", gated)
    embeddings = LFMEmbeddings(encoder=tiny_dense)

    task = asyncio.ensure_future(embeddings.aembed_documents(TEXTS))
    await asyncio.sleep(0.05)
    released.set()

    np.testing.assert_allclose(await task, original(TEXTS), atol=1e-6)


async def test_async_query_equals_sync_query(tiny_dense: DenseEncoder) -> None:
    embeddings = LFMEmbeddings(encoder=tiny_dense)

    assert await embeddings.aembed_query(TEXTS[2]) == embeddings.embed_query(TEXTS[2])


def test_batch_size_is_a_deprecated_name_of_max_batch_size(tiny_dense_dir: Path) -> None:
    with pytest.warns(DeprecationWarning, match="max_batch_size"):
        embeddings = LFMEmbeddings(model_name=tiny_dense_dir, device="cpu", batch_size=3)
    assert embeddings.encoder.batching.max_batch_size == 3


def test_unknown_model_kwargs_are_named(tiny_dense_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown model_kwargs \['trust_remote_code'\]"):
        LFMEmbeddings(model_name=tiny_dense_dir, model_kwargs={"trust_remote_code": True})
