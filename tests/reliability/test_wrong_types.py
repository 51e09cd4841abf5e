"""Wrong types: ``None``, bytes, numbers, nested lists, a bare string where a list is expected.

Every public entry that takes texts (both encoders, ``rerank``, the LangChain and
LlamaIndex embeddings, ``MultiVectorWriter.add``) must raise ``TypeError`` naming the bad
position (``texts[500] is None``) before any model or store work: the model is never
called and nothing is written. ``MultiVectorWriter.add`` with a bad item at position 500
of 1,000 leaves an existing collection exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder
from lfm_langchain import LFMEmbeddings
from lfm_llamaindex import LFMEmbedding
from lfm_qdrant import MultiVectorWriter

# ------------------------------------------------------------------- the bad values


def _texts_with(bad: object, at: int = 500, n: int = 1000) -> list[Any]:
    texts: list[Any] = [f"document {i}" for i in range(n)]
    texts[at] = bad
    return texts


def _generator_with(bad: object, at: int = 500) -> Iterator[Any]:
    return (bad if i == at else f"document {i}" for i in range(1000))


# id -> (make the argument, message pattern; {name} is the argument's name)
BAD_TEXTS: dict[str, tuple[Callable[[], Any], str]] = {
    "None": (lambda: None, r"{name} must be an iterable of str, not NoneType"),
    "bare-str": (lambda: "a sentence", r"{name} must be a list of str, not a single str"),
    "bytes": (lambda: b"a sentence", r"{name} must be a list of str, not a single bytes"),
    "bytearray": (lambda: bytearray(b"x"), r"{name} must be a list of str, not a single bytearray"),
    "int": (lambda: 42, r"{name} must be an iterable of str, not int"),
    "float": (lambda: 3.5, r"{name} must be an iterable of str, not float"),
    "item-None": (lambda: ["a", None], r"{name}\[1\] is None; expected str"),
    "item-bytes": (lambda: ["a", "b", b"c"], r"{name}\[2\] is an? bytes; expected str"),
    "item-int": (lambda: [7], r"{name}\[0\] is an? int; expected str"),
    "item-nan": (lambda: ["a", float("nan")], r"{name}\[1\] is an? float; expected str"),
    "nested-list": (lambda: [["a", "b"]], r"{name}\[0\] is an? list; expected str"),
    "tuple-item": (lambda: ["a", ("b",)], r"{name}\[1\] is an? tuple; expected str"),
    "dict-item": (lambda: [{"text": "a"}], r"{name}\[0\] is an? dict; expected str"),
    "None-at-500": (lambda: _texts_with(None), r"{name}\[500\] is None; expected str"),
    "bytes-at-500": (lambda: _texts_with(b"x"), r"{name}\[500\] is an? bytes; expected str"),
    "generator-int-at-500": (lambda: _generator_with(5), r"{name}\[500\] is an? int; expected str"),
}


class ModelMustNotRun(AssertionError):
    pass


class _Guarded(dict):
    """Encoders by name, loaded on first use, with a forward pass that must never run."""

    def __init__(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
        super().__init__()
        self._request = request
        self._monkeypatch = monkeypatch

    def __missing__(self, name: str) -> Any:
        fixture = {"dense": "tiny_dense", "colbert": "tiny_colbert", "minilm": "minilm"}[name]
        encoder = self._request.getfixturevalue(fixture)

        def forbidden(*args: Any, **kwargs: Any) -> None:
            raise ModelMustNotRun("the model ran on invalid input")

        self._monkeypatch.setattr(encoder, "_forward_module", forbidden)
        self[name] = encoder
        return encoder


@pytest.fixture
def guarded(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The encoders (MiniLM only where used, so only its tests need it installed)."""
    return _Guarded(request, monkeypatch)


def _writer_add(encoders: dict[str, Any], texts: Any) -> Any:
    client = QdrantClient(":memory:")
    writer = MultiVectorWriter(
        client, "c", dense=encoders["dense"], colbert=encoders["colbert"], batch_size=16
    )
    try:
        return writer.add(texts, show_progress=False)
    finally:
        # Whatever happened, nothing may have been created.
        assert not client.collection_exists("c")
        client.close()


# entry point id -> (call it with the texts, the argument's name in messages)
TEXT_ENTRIES: dict[str, tuple[Callable[[dict[str, Any], Any], Any], str]] = {
    "dense.encode_queries": (lambda e, t: e["dense"].encode_queries(t), "texts"),
    "dense.encode_documents": (lambda e, t: e["dense"].encode_documents(t), "texts"),
    "colbert.encode_queries": (lambda e, t: e["colbert"].encode_queries(t), "texts"),
    "colbert.encode_documents": (lambda e, t: e["colbert"].encode_documents(t), "texts"),
    "minilm.encode_documents": (lambda e, t: e["minilm"].encode_documents(t), "texts"),
    "colbert.rerank": (lambda e, t: e["colbert"].rerank("query", t), "documents"),
    "langchain.embed_documents": (
        lambda e, t: LFMEmbeddings(encoder=e["dense"]).embed_documents(t),
        "texts",
    ),
    "llamaindex.get_text_embedding_batch": (
        lambda e, t: LFMEmbedding(encoder=e["dense"], embed_batch_size=16).get_text_embedding_batch(
            t
        ),
        "texts",
    ),
    "qdrant.MultiVectorWriter.add": (_writer_add, "texts"),
}


@pytest.mark.parametrize("entry", list(TEXT_ENTRIES))
@pytest.mark.parametrize("bad", list(BAD_TEXTS))
def test_wrong_text_types_raise_typeerror_naming_the_position_before_any_work(
    guarded: dict[str, Any], entry: str, bad: str
) -> None:
    call, name = TEXT_ENTRIES[entry]
    make, pattern = BAD_TEXTS[bad]
    with pytest.raises(TypeError, match=pattern.format(name=name)):
        call(guarded, make())


# ------------------------------------------------------------- single-text arguments

BAD_QUERIES = [None, b"query", 12, ["query"], 1.5]


def _search(encoders: dict[str, Any], query: Any) -> Any:
    client = QdrantClient(":memory:")
    try:
        return MultiVectorWriter(client, "c", dense=encoders["dense"]).search(query)
    finally:
        client.close()


QUERY_ENTRIES: dict[str, tuple[Callable[[dict[str, Any], Any], Any], str]] = {
    "colbert.rerank": (lambda e, q: e["colbert"].rerank(q, ["a document"]), "query"),
    "langchain.embed_query": (
        lambda e, q: LFMEmbeddings(encoder=e["dense"]).embed_query(q),
        "text",
    ),
    "llamaindex.get_query_embedding": (
        lambda e, q: LFMEmbedding(encoder=e["dense"]).get_query_embedding(q),
        "query",
    ),
    "qdrant.MultiVectorWriter.search": (_search, "query"),
}


@pytest.mark.parametrize("entry", list(QUERY_ENTRIES))
@pytest.mark.parametrize("bad", BAD_QUERIES, ids=lambda v: type(v).__name__)
def test_a_query_that_is_not_a_str_raises_typeerror_naming_it(
    guarded: dict[str, Any], entry: str, bad: object
) -> None:
    call, name = QUERY_ENTRIES[entry]
    with pytest.raises(TypeError, match=rf"{name} is (None|an? \w+); expected str"):
        call(guarded, bad)


@pytest.mark.parametrize("top_k", ["3", 1.5, True], ids=["str", "float", "bool"])
def test_rerank_top_k_of_the_wrong_type_is_a_typeerror(
    guarded: dict[str, Any], top_k: object
) -> None:
    with pytest.raises(TypeError, match="top_k must be an int"):
        guarded["colbert"].rerank("query", ["a", "b"], top_k=top_k)


def test_rerank_negative_top_k_is_an_input_error(guarded: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="top_k must be >= 0"):
        guarded["colbert"].rerank("query", ["a"], top_k=-1)


# ---------------------------------------------------------------------------- score


def test_score_with_wrong_types_names_the_argument(tiny_colbert: LateInteractionEncoder) -> None:
    q = tiny_colbert.encode_queries(["query"])[0]
    docs = tiny_colbert.encode_documents(["first document", "second"])
    cases: list[tuple[Any, Any, str]] = [
        (None, docs, r"query is a NoneType"),
        ("query", docs, r"query is a str"),
        (q, "document", r"documents is a str"),
        (q, [docs[0], None], r"documents\[1\] is a NoneType"),
        (q, [docs[0], "text"], r"documents\[1\] is a str"),
        (q, [docs[0], docs[1].tolist()], r"documents\[1\] is a list"),
    ]
    for query, documents, pattern in cases:
        with pytest.raises(TypeError, match=pattern):
            tiny_colbert.score(query, documents)


def test_score_with_the_wrong_width_is_a_valueerror(tiny_colbert: LateInteractionEncoder) -> None:
    q = tiny_colbert.encode_queries(["query"])[0]
    with pytest.raises(ValueError, match=r"documents\[0\] has shape \(3, 5\)"):
        tiny_colbert.score(q, [np.zeros((3, 5), dtype=np.float32)])


# ------------------------------------------------------------ what is accepted instead


def test_str_subclasses_and_numpy_strings_are_accepted_as_text(tiny_dense: DenseEncoder) -> None:
    """``df["text"].to_numpy()`` and ``str`` subclasses are text: same vectors as plain str."""

    class Tagged(str):
        pass

    plain = ["first text", "second text"]
    expected = tiny_dense.encode_documents(plain)
    for variant in (np.array(plain), [Tagged(t) for t in plain], tuple(plain), iter(plain)):
        np.testing.assert_allclose(tiny_dense.encode_documents(variant), expected, atol=1e-6)


# ----------------------------------------------- the writer: nothing half-written


@pytest.fixture
def memory_client() -> Iterator[QdrantClient]:
    client = QdrantClient(":memory:")
    yield client
    client.close()


def _snapshot(client: QdrantClient) -> dict[str, Any]:
    points, _ = client.scroll("c", limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, p.vector) for p in points}


# id -> (texts, ids, metadata), each with one bad item at position 500 of 1,000
BAD_AT_500: dict[str, tuple[Callable[[], Any], Any, Any, type[Exception], str]] = {
    "text-None": (lambda: _texts_with(None), None, None, TypeError, r"texts\[500\] is None"),
    "text-bytes": (lambda: _texts_with(b"x"), None, None, TypeError, r"texts\[500\] is an? bytes"),
    "text-generator": (
        lambda: _generator_with(3.0),
        None,
        None,
        TypeError,
        r"texts\[500\] is an? float",
    ),
    "text-duplicate": (
        lambda: _texts_with("document 3"),
        None,
        None,
        InputError,
        r"texts\[3\] and texts\[500\] are the same",
    ),
    "id-float": (
        lambda: _texts_with("document 500"),
        lambda: [*range(500), 1.5, *range(501, 1000)],
        None,
        TypeError,
        r"ids\[500\]",
    ),
    "id-negative": (
        lambda: _texts_with("document 500"),
        lambda: [*range(500), -1, *range(501, 1000)],
        None,
        InputError,
        r"ids\[500\]",
    ),
    "metadata-str": (
        lambda: _texts_with("document 500"),
        None,
        lambda: [{}] * 500 + ["oops"] + [{}] * 499,
        TypeError,
        r"metadata\[500\] is an? str",
    ),
    "metadata-text-key": (
        lambda: _texts_with("document 500"),
        None,
        lambda: [{}] * 500 + [{"text": "x"}] + [{}] * 499,
        InputError,
        r"metadata\[500\] has a 'text' key",
    ),
    "metadata-short": (
        lambda: _texts_with("document 500"),
        None,
        lambda: [{}] * 999,
        InputError,
        r"metadata has 999 items but texts has 1000",
    ),
}


@pytest.mark.parametrize("case", list(BAD_AT_500))
def test_writer_add_with_a_bad_item_at_500_writes_nothing(
    memory_client: QdrantClient,
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    writer = MultiVectorWriter(
        memory_client, "c", dense=tiny_dense, colbert=tiny_colbert, batch_size=16
    )
    writer.add(["already here", "and this", "and that"], show_progress=False)
    before = _snapshot(memory_client)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise ModelMustNotRun("encoded before the whole input was validated")

    monkeypatch.setattr(tiny_dense, "_forward_module", forbidden)
    monkeypatch.setattr(tiny_colbert, "_forward_module", forbidden)
    make_texts, make_ids, make_metadata, error, pattern = BAD_AT_500[case]
    with pytest.raises(error, match=pattern):
        writer.add(
            make_texts(),
            ids=None if make_ids is None else make_ids(),
            metadata=None if make_metadata is None else make_metadata(),
            show_progress=False,
        )
    assert _snapshot(memory_client) == before


def test_writer_add_from_a_generator_that_fails_at_500_writes_nothing(
    memory_client: QdrantClient, tiny_dense: DenseEncoder
) -> None:
    """The caller's own error mid-stream: it propagates, and nothing was written before it."""

    def scraped() -> Iterator[str]:
        for i in range(1000):
            if i == 500:
                raise ConnectionResetError("the crawler lost its connection")
            yield f"page {i}"

    writer = MultiVectorWriter(memory_client, "c", dense=tiny_dense, batch_size=16)
    with pytest.raises(ConnectionResetError, match="crawler"):
        writer.add(scraped(), show_progress=False)
    assert not memory_client.collection_exists("c")
