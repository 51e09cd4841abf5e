"""The checkpoint's prompts are applied once: a text that already carries one is taken as given."""

from __future__ import annotations

import numpy as np

from lfm_core import DenseEncoder


def test_a_hand_written_prompt_is_never_doubled(tiny_dense: DenseEncoder) -> None:
    query, document = tiny_dense.head.query_prompt, tiny_dense.head.document_prompt
    assert query and document  # the tiny checkpoint has LFM2.5-Embedding's prompts
    plain = tiny_dense.encode_queries(["where is my parcel"])
    np.testing.assert_allclose(
        tiny_dense.encode_queries([f"{query}where is my parcel"]), plain, atol=1e-6
    )
    # A query prompt written by hand on a document call: the query's vector, as written.
    np.testing.assert_allclose(
        tiny_dense.encode_documents([f"{query}where is my parcel"]), plain, atol=1e-6
    )
    counts = tiny_dense.count_tokens([f"{query}where is my parcel"], input_type="document")
    assert (
        counts.tokens == tiny_dense.count_tokens(["where is my parcel"], input_type="query").tokens
    )
