"""Messages that scale with the work: one truncation warning per adapter object, no bar unasked."""

from __future__ import annotations

import dataclasses
import logging

from lfm_langchain import LFMEmbeddings
from lfm_llamaindex import LFMEmbedding

LONG = "shipping " * 2000  # far over the 512-token limit


def truncation_warnings(caplog) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "truncated to fit the model" in r.getMessage()
    ]


def test_langchain_warns_once_for_batch_after_batch(tiny_dense, caplog):
    embeddings = LFMEmbeddings(encoder=tiny_dense)
    with caplog.at_level(logging.DEBUG, "lfm_core"):
        for _ in range(5):  # as langchain-qdrant's add_texts does, one call per batch
            assert len(embeddings.embed_documents([LONG, "short"])) == 2
    warnings = truncation_warnings(caplog)
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("1 of 2 documents were longer than")
    assert "5 of 10 documents truncated so far" in caplog.text  # the running total, at DEBUG


def test_llamaindex_warns_once_per_run_of_chunks_and_draws_no_bar(tiny_dense, caplog, capsys):
    # A core that would draw a bar for any input: the adapter must still draw none.
    tiny_dense.batching, saved = (
        dataclasses.replace(tiny_dense.batching, progress_threshold=1),
        tiny_dense.batching,
    )
    try:
        embedding = LFMEmbedding(encoder=tiny_dense, embed_batch_size=2)
        with caplog.at_level(logging.WARNING, "lfm_core"):
            vectors = embedding.get_text_embedding_batch([LONG, "a", LONG, "b", LONG, "c"])
    finally:
        tiny_dense.batching = saved
    assert len(vectors) == 6
    assert len(truncation_warnings(caplog)) == 1
    assert "Encoding" not in capsys.readouterr().err


def test_a_plain_encoder_call_still_warns_with_its_count(tiny_dense, caplog):
    with caplog.at_level(logging.WARNING, "lfm_core"):
        tiny_dense.encode_documents([LONG, "x", LONG])
        tiny_dense.encode_documents([LONG])
    messages = [r.getMessage() for r in truncation_warnings(caplog)]
    assert [m.split(" were")[0] for m in messages] == ["2 of 3 documents", "1 of 1 documents"]
