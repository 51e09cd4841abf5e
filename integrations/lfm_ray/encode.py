"""The encoding stage: a callable class for ``Dataset.map_batches``, one model per actor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lfm_core import DenseEncoder, LateInteractionEncoder, LoadOptions, resolve_encoder
from lfm_qdrant import ChunkingOptions, ModelRecord
from lfm_qdrant.chunking import make_chunker

__all__ = ["COLBERT_COLUMN", "COLBERT_ROWS_COLUMN", "DENSE_COLUMN", "SPANS_COLUMN", "EncodeBatch"]

DENSE_COLUMN = "dense"
"""Column of ``[dim]`` float32 vectors that :class:`EncodeBatch` adds."""
COLBERT_COLUMN = "colbert"
"""Column of ``[n_tokens, dim]`` float32 matrices (ragged) that :class:`EncodeBatch` adds."""
SPANS_COLUMN = "chunk_spans"
"""With chunking: each row's ``[n_chunks, 2]`` int64 ``(start, end)`` spans in its text."""
COLBERT_ROWS_COLUMN = "colbert_rows"
"""With chunking: each row's ``[n_chunks]`` int64 counts of its ColBERT rows per chunk."""


class EncodeBatch:
    """Adds the ``dense`` and/or ``colbert`` vectors of each row's text to a batch.

    Ray builds one instance per actor, so each actor loads its models once, on the GPU Ray
    gave it when ``num_gpus`` is set (``device="auto"`` sees only that GPU). Vectors are
    exactly what ``encode_documents`` gives in one process: the encoders pack sequences,
    so a text's vectors never depend on the other texts of its batch.

    Args:
        dense: model name or folder of the dense model, or ``None``.
        colbert: model name or folder of the ColBERT model, or ``None``.
        text_column: the column holding the texts.
        options: how the models load (device, dtype, batching...).
        pool_factor: ColBERT token pooling (see ``LateInteractionEncoder.encode_documents``).
        expect: the records the driver wrote into the collection; an actor whose models
            differ (another checkpoint under the same name on that node) refuses to start.
        prepare: applied to each batch before encoding (``index_dataset`` adds point ids
            and drops stored rows here: one stage, so the actors never wait on tasks that
            have no CPU left).
        chunking: split texts longer than the models' window as ``MultiVectorWriter`` does
            (:class:`~lfm_qdrant.ChunkingOptions`, or ``True`` for its defaults), with this
            actor's tokenizers. A row stays one row: the ``dense`` column then holds its
            ``[n_chunks, dim]`` vectors, ``colbert`` its chunks' matrices stacked
            (``colbert_rows`` says how many rows each), and ``chunk_spans`` their spans.
            ``False`` (the default): one vector per text, cut at the window.

    Example::

        ds = ray.data.from_items([{"text": t} for t in texts])
        ds = ds.map_batches(EncodeBatch, fn_constructor_kwargs={"dense": "LiquidAI/LFM2.5-Embedding-350M"},
                            concurrency=4, num_gpus=1, batch_size=256)
    """

    def __init__(
        self,
        dense: str | None = None,
        colbert: str | None = None,
        *,
        text_column: str = "text",
        options: LoadOptions | None = None,
        pool_factor: int = 1,
        expect: Mapping[str, ModelRecord | None] | None = None,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        chunking: ChunkingOptions | bool = False,
    ) -> None:
        if dense is None and colbert is None:
            raise TypeError("EncodeBatch needs dense=, colbert= or both")
        options = options or LoadOptions()
        self.text_column = text_column
        self.pool_factor = pool_factor
        self.prepare = prepare
        self.dense = (
            None
            if dense is None
            else resolve_encoder(DenseEncoder, dense, options=options, owner="EncodeBatch dense=")
        )
        self.colbert = (
            None
            if colbert is None
            else resolve_encoder(
                LateInteractionEncoder, colbert, options=options, owner="EncodeBatch colbert="
            )
        )
        for side, encoder in ((DENSE_COLUMN, self.dense), (COLBERT_COLUMN, self.colbert)):
            wanted = (expect or {}).get(side)
            if encoder is not None and wanted is not None:
                got = ModelRecord.of(encoder)
                if not got.same_model(wanted):
                    raise RuntimeError(
                        f"this worker's {side} model is {got.describe()}, but the collection "
                        f"records {wanted.describe()}; every worker must see the same checkpoint"
                    )
        # The writer's own splitter, from this actor's tokenizers (checked above to be the
        # checkpoint the collection records): the chunks one process cuts.
        self.chunker = make_chunker(chunking, self.dense, self.colbert)

    def records(self) -> dict[str, ModelRecord | None]:
        """The records of this stage's models, by column."""
        return {
            DENSE_COLUMN: None if self.dense is None else ModelRecord.of(self.dense),
            COLBERT_COLUMN: None if self.colbert is None else ModelRecord.of(self.colbert),
        }

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` (numpy format) with the vector columns added."""
        if self.prepare is not None:
            batch = self.prepare(batch)
        texts = [str(t) for t in batch[self.text_column]]
        if self.chunker is not None:
            return self._chunked(batch, texts)
        out = dict(batch)
        if self.dense is not None:
            out[DENSE_COLUMN] = self.dense.encode_documents(texts, show_progress=False)
        if self.colbert is not None:
            matrices = self.colbert.encode_documents(
                texts, show_progress=False, pool_factor=self.pool_factor
            )
            out[COLBERT_COLUMN] = _objects(matrices)
        return out

    def _chunked(self, batch: dict[str, Any], texts: list[str]) -> dict[str, Any]:
        """Each text split, its chunks encoded, the vectors gathered back into its row."""
        assert self.chunker is not None
        spans = [[(c.start, c.end) for c in self.chunker.split(text)] for text in texts]
        pieces = [text[a:b] for text, cuts in zip(texts, spans, strict=True) for a, b in cuts]
        bounds = np.cumsum([0] + [len(cuts) for cuts in spans])
        rows = range(len(texts))
        out = dict(batch)
        out[SPANS_COLUMN] = _objects([np.array(cuts, dtype=np.int64) for cuts in spans])
        if self.dense is not None:
            vectors = self.dense.encode_documents(pieces, show_progress=False)
            out[DENSE_COLUMN] = _objects([vectors[bounds[i] : bounds[i + 1]] for i in rows])
        if self.colbert is not None:
            matrices = self.colbert.encode_documents(
                pieces, show_progress=False, pool_factor=self.pool_factor
            )
            dim = self.colbert.dim
            stacked, counts = [], []
            for i in rows:
                mine = matrices[bounds[i] : bounds[i + 1]]
                counts.append(np.array([len(m) for m in mine], dtype=np.int64))
                stacked.append(np.concatenate([np.reshape(m, (-1, dim)) for m in mine]))
            out[COLBERT_COLUMN] = _objects(stacked)
            out[COLBERT_ROWS_COLUMN] = _objects(counts)
        return out


def _objects(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays: Ray stores it as a (variable-shaped) tensor column."""
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column


def model_records(
    dense: str | None, colbert: str | None, options: LoadOptions | None = None
) -> dict[str, ModelRecord | None]:
    """The records of the models as a worker loads them (run as a Ray task, or here)."""
    return EncodeBatch(dense, colbert, options=options).records()
