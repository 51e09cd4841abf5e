"""``DenseEncoder`` and ``LateInteractionEncoder``: texts in, vectors out, in input order.

Both share one pipeline: validate -> tokenize (next chunk prefetched in a thread) ->
plan batches by token budget -> packed forward (out-of-memory splits the batch) -> head.
A text's vectors never depend on the other texts of its batch: sequences are packed,
not padded, so nothing of a neighbour reaches the convolution or the attention. (Models
other than LFM2 and the BERT family run padded in transformers, within float rounding.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from typing_extensions import Required, TypedDict, Unpack

from .backbones import AutoModelBackbone, Lfm2Backbone, load_backbone
from .batching import plan_batches, prefetch, split_on_oom
from .config import BatchingConfig, ColBERTHeadConfig, DenseHeadConfig
from .defaults import DEFAULT_TOP_N
from .devices import resolve_device
from .errors import CheckpointError, InputError
from .explain import Explanation, explain_documents
from .loading import (
    LinearSpec,
    ModuleSpec,
    checkpoint_digest,
    read_colbert_head,
    read_dense_head,
    read_linear,
    read_max_length,
    read_modules,
    resolve_checkpoint,
)
from .notices import report_truncation
from .onednn import pack_linears_checked, pack_linears_for_cpu
from .pooling import pool_tokens
from .quantization import quantize_linears_int8
from .scoring import maxsim, rank_scores
from .tokenization import TextTokenizer
from .validation import check_positive_int, validate_text, validate_texts

__all__ = [
    "DEFAULT_TOP_N",
    "DenseEncoder",
    "Encoder",
    "InputType",
    "LateInteractionEncoder",
    "TokenCounts",
]

logger = logging.getLogger("lfm_core")

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
InputType = Literal["query", "document"]
Out = TypeVar("Out")

# The process that imported lfm_core; an encoder running in another one was inherited by fork.
_IMPORT_PID = os.getpid()


# Texts tokenized per chunk: big enough to sort well by length, small enough that the
# next chunk's tokenization overlaps the current chunk's forward passes.
_CHUNK_TEXTS = 4096


def resolve_dtype(dtype: DTypeName | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; supported: auto, {', '.join(table)}")
    return table[dtype]


@runtime_checkable
class Encoder(Protocol):
    """What both encoders, every adapter and the Qdrant writer agree on.

    ``DenseEncoder`` returns one ``[n, dim]`` array and scores by dot product;
    ``LateInteractionEncoder`` returns one ``[n_tokens_i, dim]`` array per text and scores
    by MaxSim. ``rerank`` ranks texts for a query the same way for both.
    """

    model_name: str
    device: torch.device
    dim: int

    def encode_queries(self, texts: Iterable[str], *, show_progress: bool | None = None) -> Any:
        """Vectors of search queries, with the checkpoint's query prompt or prefix."""
        ...

    def encode_documents(self, texts: Iterable[str], *, show_progress: bool | None = None) -> Any:
        """Vectors of documents, with the checkpoint's document prompt or prefix."""
        ...

    def score(self, query_vectors: np.ndarray, document_vectors: Any) -> np.ndarray:
        """``[n_documents]`` float32 scores of one encoded query against encoded documents."""
        ...

    def rerank(
        self, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[tuple[int, float]]:
        """``(index into documents, score)``, best first."""
        ...


@dataclass(frozen=True)
class _Prepared:
    """Token ids of one chunk of texts, ready for batching."""

    ids: list[list[int]]
    key_masks: list[list[bool]] | None
    n_truncated: int
    truncated_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenCounts:
    """What :meth:`~DenseEncoder.count_tokens` reports of a list of texts.

    Attributes:
        tokens: per text, the tokens the model runs on (prompt, prefix, special and, for
            ColBERT queries, expansion tokens included).
        truncated: indices of the texts cut to the model's length limit, in order.
    """

    tokens: list[int]
    truncated: list[int]


@dataclass(frozen=True)
class _Loaded:
    folder: Path
    modules: list[ModuleSpec]
    backbone: Lfm2Backbone | AutoModelBackbone
    tokenizer: TextTokenizer
    max_length: int
    digest: str
    position_limit: int | None


def _load(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    allow_pickle: bool,
) -> _Loaded:
    folder = resolve_checkpoint(
        name_or_path, revision=revision, cache_dir=cache_dir, allow_pickle=allow_pickle
    )
    modules = read_modules(folder)
    body = modules[0].folder
    backbone = load_backbone(body, allow_pickle=allow_pickle)
    tokenizer = TextTokenizer.from_folder(body, bos_token_id=backbone.bos_token_id)
    limit = _position_limit(backbone)
    max_length = _capped(read_max_length(body, 512), limit, "max_seq_length", name_or_path)
    return _Loaded(
        folder,
        modules,
        backbone,
        tokenizer,
        max_length,
        checkpoint_digest(modules),
        limit,
    )


# RoBERTa-style models number positions from padding_idx + 1: two of the table's rows are not
# usable positions.
_POSITION_OFFSET_MODELS = {"roberta": 2, "xlm-roberta": 2, "xlm-roberta-xl": 2, "camembert": 2}


def _position_limit(backbone: Lfm2Backbone | AutoModelBackbone) -> int | None:
    """Most tokens the model's position table encodes (``None``: no limit we know of)."""
    if not isinstance(backbone, AutoModelBackbone):
        return None  # LFM2 uses RoPE
    config = backbone.model.config
    table = getattr(config, "max_position_embeddings", None)
    if not isinstance(table, int):
        return None
    return table - _POSITION_OFFSET_MODELS.get(getattr(config, "model_type", ""), 0)


def _capped(length: int, limit: int | None, key: str, model: object) -> int:
    if limit is None or length <= limit:
        return length
    # As sentence-transformers does: longer inputs would index past the position table.
    logger.warning(
        "%s %d of %s is more than its %d position embeddings allow; using %d",
        key,
        length,
        model,
        limit,
        limit,
    )
    return limit


class _Settings(TypedDict, total=False):
    """What every encoder takes besides its model and head (see ``_Encoder.__init__``)."""

    model_name: Required[str]
    device: str | torch.device
    dtype: DTypeName | torch.dtype
    batching: BatchingConfig | None
    quantize: Literal["int8"] | None
    compile: bool
    revision: str | None
    checkpoint_digest: str | None


class _Encoder:
    """The shared pipeline; subclasses add the head and the public verbs."""

    def __init__(
        self,
        backbone: Lfm2Backbone | AutoModelBackbone,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        device: str | torch.device = "auto",
        dtype: DTypeName | torch.dtype = "auto",
        batching: BatchingConfig | None = None,
        quantize: Literal["int8"] | None = None,
        compile: bool = False,
        revision: str | None = None,
        checkpoint_digest: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model_name = model_name
        self.revision = revision
        # What a Qdrant collection records of the model that wrote it (lfm_qdrant).
        self.checkpoint_digest = checkpoint_digest
        self.batching = batching or BatchingConfig.for_device(self.device.type)
        self.tokenizer = tokenizer
        module: torch.nn.Module = backbone.to(device=self.device, dtype=self.dtype)
        if quantize not in (None, "int8"):
            raise ValueError(f"unknown quantize {quantize!r}; supported: None, 'int8'")
        if quantize == "int8":
            module = _quantize_int8(module, self.device)
        elif not compile and self.device.type == "cpu" and self.dtype == torch.float32:
            # Same vectors within 1e-6; LFM2: 1.15-1.3x faster documents, 1.9x faster
            # queries; MiniLM: 1.4x faster single queries (docs/benchmarks.md). Products
            # of many rows keep F.linear where the CPU runs it faster (timed at load).
            if isinstance(backbone, AutoModelBackbone):
                # A transformers model may read a linear's ``.weight``: packing is kept only
                # if a probe forward agrees with the unpacked one.
                probe = _probe_inputs(self.device)
                pack_linears_checked(module, lambda: module(*probe))
            else:
                pack_linears_for_cpu(module)
        self.backbone = backbone
        self._forward_module: Callable[..., torch.Tensor] = (
            torch.compile(module, dynamic=True) if compile else module
        )

    def _run(
        self,
        texts: list[str],
        prepare: Callable[[list[str]], _Prepared],
        head: Callable[[torch.Tensor, list[int], list[list[int]]], list[Out]],
        *,
        show_progress: bool | None,
        limit: int,
        what: str,
    ) -> list[Out]:
        """Encode ``texts`` through ``prepare`` and ``head``, returning outputs in input order."""
        _guard_fork()
        results: list[Out | None] = [None] * len(texts)
        show = (
            show_progress
            if show_progress is not None
            else len(texts) >= self.batching.progress_threshold
        )
        starts = range(0, len(texts), _CHUNK_TEXTS)
        truncated = 0
        with tqdm(total=len(texts), disable=not show, desc=f"Encoding {what}", unit="text") as bar:
            chunks = (texts[s : s + _CHUNK_TEXTS] for s in starts)
            for start, prep in zip(starts, prefetch(chunks, prepare)):
                truncated += prep.n_truncated
                plan = plan_batches(
                    [len(ids) for ids in prep.ids],
                    max_tokens=self.batching.max_tokens_per_batch,
                    max_batch_size=self.batching.max_batch_size,
                    padded=self.backbone.padded,
                )
                run_batch: Callable[[list[int]], list[Out]] = partial(
                    self._forward, prep=prep, head=head
                )
                for batch in plan:
                    outs = split_on_oom(run_batch, batch)
                    for i, out in zip(batch, outs):
                        results[start + i] = out
                    bar.update(len(batch))
        if truncated:
            report_truncation(truncated, len(texts), what, limit)
        return results  # type: ignore[return-value]

    # Each encoder encodes and scores in its own space; rerank below is shared.
    def encode_queries(self, texts: Iterable[str], *, show_progress: bool | None = None) -> Any:
        raise NotImplementedError

    def encode_documents(self, texts: Iterable[str], *, show_progress: bool | None = None) -> Any:
        raise NotImplementedError

    def score(self, query_vectors: np.ndarray, document_vectors: Any) -> np.ndarray:
        raise NotImplementedError

    def _preparer(self, input_type: InputType) -> Callable[[list[str]], _Prepared]:
        raise NotImplementedError

    def count_tokens(self, texts: Iterable[str], *, input_type: InputType) -> TokenCounts:
        """Tokenize ``texts`` as :meth:`encode_queries` or :meth:`encode_documents` would.

        For accounting (the HTTP service's ``usage``): no forward pass is run.

        Args:
            texts: the texts.
            input_type: ``"query"`` or ``"document"``: which prompt or prefix applies.

        Raises:
            TypeError: ``texts`` is a bare string or an item is not a ``str``.
            InputError: ``input_type`` is neither ``"query"`` nor ``"document"``.
        """
        if input_type not in ("query", "document"):
            raise InputError(f"input_type must be 'query' or 'document', not {input_type!r}")
        items = validate_texts(texts)
        if not items:
            return TokenCounts([], [])
        prep = self._preparer(input_type)(items)
        return TokenCounts([len(ids) for ids in prep.ids], list(prep.truncated_rows))

    def rerank(
        self, query: str, documents: Sequence[str], top_k: int | None = None
    ) -> list[tuple[int, float]]:
        """Rank ``documents`` for ``query`` with no index (dense: dot product; ColBERT: MaxSim).

        Args:
            query: the query text.
            documents: candidate texts.
            top_k: keep the best ``top_k`` (default: all); numpy integers are accepted.

        Returns:
            ``(index into documents, score)`` pairs, best first; ties keep input order.
            Blank documents (empty or whitespace only) are not encoded: they come after
            every other document, with score ``0.0``, in input order, so a cut to ``top_k``
            drops them first.

        Raises:
            TypeError: ``query`` or a document is not a ``str``, or ``top_k`` not an int.
            InputError: ``top_k`` is negative.
        """
        validate_text(query)
        docs = validate_texts(documents, "documents")
        if top_k is not None:
            top_k = check_positive_int(top_k, "top_k", minimum=0)
        with_text = [i for i, doc in enumerate(docs) if doc.strip()]
        scores = np.zeros(0, dtype=np.float32)
        if with_text:
            scores = self.score(
                self.encode_queries([query])[0], self.encode_documents([docs[i] for i in with_text])
            )
        return rank_scores(scores, with_text, len(docs), top_k)

    def _forward(
        self,
        idx: list[int],
        prep: _Prepared,
        head: Callable[[torch.Tensor, list[int], list[list[int]]], list[Out]],
    ) -> list[Out]:
        seqs = [prep.ids[i] for i in idx]
        lengths = [len(s) for s in seqs]
        with torch.inference_mode():
            ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long).to(self.device)
            cu = torch.tensor([0, *accumulate(lengths)], dtype=torch.int32).to(self.device)
            key_mask = None
            if prep.key_masks is not None:
                flat = [m for i in idx for m in prep.key_masks[i]]
                key_mask = torch.tensor(flat, dtype=torch.bool).to(self.device)
            hidden = self._forward_module(ids, cu, key_mask)
            return head(hidden, lengths, seqs)


def _as_matrix(value: object, name: str, *, ndim: int, dim: int) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(value).__name__}")
    if value.ndim != ndim or value.shape[-1] != dim:
        shape = "[dim]" if ndim == 1 else "[n, dim]"
        raise TypeError(f"{name} has shape {value.shape}; expected {shape} with dim {dim}")
    return value.astype(np.float32, copy=False)


def _probe_inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, None]:
    """Two short sequences of low token ids (in every vocabulary), packed."""
    ids = torch.tensor([1, 5, 7, 2, 1, 6, 2], dtype=torch.long, device=device)
    return ids, torch.tensor([0, 4, 7], dtype=torch.int32, device=device), None


def _guard_fork() -> None:
    """Use one intra-op thread in a process started by ``fork`` from one that ran torch.

    torch's OpenMP thread pool does not survive ``fork``: the child's first parallel region
    waits forever for threads that do not exist (a multiprocessing ``Pool`` with the default
    ``fork`` start method on Linux). One thread per process is what such a pool wants anyway.
    """
    if os.getpid() != _IMPORT_PID and torch.get_num_threads() > 1:
        logger.warning(
            "lfm_core runs in a process forked from %d: torch is set to 1 thread here (its "
            "thread pool does not survive fork); for parallel workers prefer the 'spawn' start "
            "method, or set OMP_NUM_THREADS=1",
            _IMPORT_PID,
        )
        torch.set_num_threads(1)


def _quantize_int8(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Int8 linear layers (per-channel weights, per-token activations); CPU only."""
    if device.type != "cpu":
        raise ValueError("quantize='int8' is a CPU option; on GPU use dtype='bfloat16'")
    return quantize_linears_int8(module)


def _strip_all(texts: list[str]) -> list[str]:
    # PyLate tokenizes through sentence-transformers' Transformer.tokenize, which strips
    # outer whitespace; a byte-level BPE would otherwise give the spaces vectors of their own.
    return [t.strip() for t in texts]


def _apply_linear(x: torch.Tensor, spec: LinearSpec) -> torch.Tensor:
    weight = spec.weight.to(device=x.device, dtype=x.dtype)
    bias = None if spec.bias is None else spec.bias.to(device=x.device, dtype=x.dtype)
    y = F.linear(x, weight, bias)
    return torch.tanh(y) if spec.activation == "tanh" else y


class DenseEncoder(_Encoder):
    """One vector per text (sentence-transformers layout; LFM2.5-Embedding-350M or any other).

    Example (downloads the model)::

        enc = DenseEncoder.from_pretrained("LiquidAI/LFM2.5-Embedding-350M")
        enc.encode_queries(["¿Dónde está mi pedido?"]).shape  # (1, 1024)
    """

    def __init__(
        self,
        backbone: Lfm2Backbone | AutoModelBackbone,
        tokenizer: TextTokenizer,
        head: DenseHeadConfig,
        linears: Sequence[LinearSpec] = (),
        **settings: Unpack[_Settings],
    ) -> None:
        super().__init__(backbone, tokenizer, **settings)
        self.head = head
        self._linears = [
            LinearSpec(
                s.weight.float().to(self.device),
                None if s.bias is None else s.bias.float().to(self.device),
                s.activation,
            )
            for s in linears
        ]
        width = backbone.hidden_size
        for i, spec in enumerate(self._linears):
            if spec.weight.shape[1] != width:
                raise CheckpointError(
                    f"{self.model_name}: Dense module {i + 1} takes {spec.weight.shape[1]} "
                    f"inputs, but what comes before it gives {width}"
                )
            width = int(spec.weight.shape[0])
        self.dim = width

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device = "auto",
        dtype: DTypeName | torch.dtype = "auto",
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        normalize: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        allow_pickle: bool = False,
        quantize: Literal["int8"] | None = None,
        compile: bool = False,
    ) -> DenseEncoder:
        """Load a dense checkpoint from a hub id or a local folder.

        Args:
            model_name_or_path: hub id (``"LiquidAI/LFM2.5-Embedding-350M"``) or folder.
            device: ``"auto"`` (cuda, then mps, then cpu) or a torch device.
            dtype: ``"auto"`` (bfloat16 on CUDA, float32 elsewhere) or a dtype.
            max_tokens_per_batch: token budget of one forward pass (default 2,048 on CPU,
                8,192 on accelerators).
            max_batch_size: most texts in one forward pass.
            normalize: L2-normalize the vectors (default; cosine = dot product).
            revision: hub branch, tag or commit to pin.
            cache_dir: hub cache folder.
            allow_pickle: accept ``pytorch_model.bin`` weights (they can run code).
            quantize: ``"int8"`` for int8 linear layers on CPU (faster, vectors close to
                float32 but not equal; see :mod:`lfm_core.quantization`).
            compile: wrap the backbone in ``torch.compile`` (for GPUs: on CPU it measured no
                faster and costs a minute of compilation).

        Raises:
            CheckpointError: the checkpoint is missing, unreachable, unsafe or inconsistent.
        """
        device = resolve_device(device)  # a device this machine lacks fails before any loading
        loaded = _load(
            model_name_or_path, revision=revision, cache_dir=cache_dir, allow_pickle=allow_pickle
        )
        head = read_dense_head(loaded.folder, loaded.modules, loaded.max_length)
        head = dataclasses.replace(head, normalize=normalize)
        linears = [
            read_linear(m.folder, allow_pickle=allow_pickle)
            for m in loaded.modules
            if m.kind == "dense"
        ]
        batching = BatchingConfig.for_device(device.type).replace(
            max_tokens_per_batch=max_tokens_per_batch, max_batch_size=max_batch_size
        )
        return cls(
            loaded.backbone,
            loaded.tokenizer,
            head,
            linears,
            model_name=str(model_name_or_path),
            device=device,
            dtype=dtype,
            batching=batching,
            quantize=quantize,
            compile=compile,
            revision=revision,
            checkpoint_digest=loaded.digest,
        )

    @property
    def max_length(self) -> int:
        """Most tokens per text (prompt and special tokens included); longer texts are cut."""
        return self.head.max_length

    def encode_queries(
        self, texts: Iterable[str], *, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encode search queries with the checkpoint's query prompt.

        Args:
            texts: the queries. An empty string gives the vector of the prompt alone.
            show_progress: show a progress bar (default: for long inputs).

        Returns:
            ``[len(texts), dim]`` float32, L2-normalized unless built with ``normalize=False``.

        Raises:
            TypeError: ``texts`` is a bare string or an item is not a ``str``.
        """
        return self._encode(texts, "query", show_progress)

    def encode_documents(
        self, texts: Iterable[str], *, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encode documents with the checkpoint's document prompt; same contract as queries."""
        return self._encode(texts, "document", show_progress)

    def _preparer(self, input_type: InputType) -> Callable[[list[str]], _Prepared]:
        prompt = self.head.query_prompt if input_type == "query" else self.head.document_prompt

        # A text that already starts with one of the checkpoint's prompts (a user who wrote
        # "query: ..." by hand) is taken as given: never "document: query: ...".
        own = tuple(p for p in (self.head.query_prompt, self.head.document_prompt) if p)

        def prepare(chunk: list[str]) -> _Prepared:
            tok = self.tokenizer.encode(
                [t if own and t.startswith(own) else prompt + t for t in chunk],
                self.head.max_length,
            )
            return _Prepared(tok.ids, None, tok.n_truncated, tok.truncated_rows)

        return prepare

    def _encode(
        self, texts: Iterable[str], input_type: InputType, show_progress: bool | None
    ) -> np.ndarray:
        items = validate_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._run(
            items,
            self._preparer(input_type),
            self._pool,
            show_progress=show_progress,
            limit=self.head.max_length,
            what="queries" if input_type == "query" else "documents",
        )
        return np.stack(rows).astype(np.float32, copy=False)

    def score(self, query_vectors: np.ndarray, document_vectors: np.ndarray) -> np.ndarray:
        """Dot product of one query vector with each document vector (cosine when normalized).

        Args:
            query_vectors: ``[dim]`` float32, a row of :meth:`encode_queries`.
            document_vectors: ``[n, dim]`` float32, from :meth:`encode_documents`.

        Returns:
            ``[n]`` float32 scores.

        Raises:
            TypeError: an argument is not a numpy array of the right shape.
        """
        query = _as_matrix(query_vectors, "query_vectors", ndim=1, dim=self.dim)
        documents = _as_matrix(document_vectors, "document_vectors", ndim=2, dim=self.dim)
        return (documents @ query).astype(np.float32, copy=False)

    def _pool(
        self, hidden: torch.Tensor, lengths: list[int], seqs: list[list[int]]
    ) -> list[np.ndarray]:
        hidden = hidden.float()
        n = torch.tensor(lengths, device=hidden.device)
        ends = torch.cumsum(n, 0)
        if self.head.pooling == "cls":
            pooled = hidden[ends - n]
        elif self.head.pooling == "lasttoken":
            pooled = hidden[ends - 1]
        else:
            seg = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), n)
            sums = torch.zeros(len(lengths), hidden.shape[1], device=hidden.device).index_add_(
                0, seg, hidden
            )
            pooled = sums / n[:, None].float()
        for spec in self._linears:
            pooled = _apply_linear(pooled, spec)
        if self.head.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return list(pooled.cpu().numpy())


class LateInteractionEncoder(_Encoder):
    """One vector per token, scored by MaxSim (PyLate layout; LFM2.5-ColBERT-350M or any other).

    Example (downloads the model)::

        col = LateInteractionEncoder.from_pretrained("LiquidAI/LFM2.5-ColBERT-350M")
        col.rerank("where is my order", ["Orders ship in 2 days.", "Our cafe opens at 9."])
        # [(0, 21.3), (1, 12.8)]: (document index, MaxSim score), best first
    """

    def __init__(
        self,
        backbone: Lfm2Backbone | AutoModelBackbone,
        tokenizer: TextTokenizer,
        head: ColBERTHeadConfig,
        projection: LinearSpec,
        **settings: Unpack[_Settings],
    ) -> None:
        super().__init__(backbone, tokenizer, **settings)
        self.head = head
        self.dim = head.dim
        if projection.weight.shape[1] != backbone.hidden_size:
            raise CheckpointError(
                f"{self.model_name}: the ColBERT projection takes {projection.weight.shape[1]} "
                f"inputs, but the model's hidden size is {backbone.hidden_size}"
            )
        self._projection = LinearSpec(
            projection.weight.float().to(self.device),
            None if projection.bias is None else projection.bias.float().to(self.device),
            projection.activation,
        )
        self._query_prefix_id = self._prefix_id(head.query_prefix)
        self._document_prefix_id = self._prefix_id(head.document_prefix)
        skip = {tokenizer.token_id(w) for w in head.skiplist_words}
        self._skiplist = torch.tensor(sorted(i for i in skip if i is not None), dtype=torch.long)
        # PyLate pads queries with the mask token; checkpoints without one (LFM2.5) use EOS,
        # as their model card sets pad_token = eos_token.
        expansion = tokenizer.mask_token_id
        if expansion is None:
            expansion = (
                backbone.eos_token_id
                if isinstance(backbone, Lfm2Backbone)
                else tokenizer.pad_token_id
            )
        if expansion is None:
            raise CheckpointError(
                f"{self.model_name}: no mask, EOS or pad token to expand queries with"
            )
        self._expansion_id = int(expansion)

    def _prefix_id(self, prefix: str) -> int:
        tid = self.tokenizer.token_id(prefix)
        if tid is None:
            raise CheckpointError(
                f"prefix token {prefix!r} of {self.model_name} is not in its tokenizer's vocabulary"
            )
        return tid

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device = "auto",
        dtype: DTypeName | torch.dtype = "auto",
        max_tokens_per_batch: int | None = None,
        max_batch_size: int | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        allow_pickle: bool = False,
        quantize: Literal["int8"] | None = None,
        compile: bool = False,
    ) -> LateInteractionEncoder:
        """Load a PyLate ColBERT checkpoint from a hub id or a local folder.

        Arguments as :meth:`DenseEncoder.from_pretrained` (no ``normalize``: ColBERT
        vectors are always L2-normalized).
        """
        device = resolve_device(device)  # a device this machine lacks fails before any loading
        loaded = _load(
            model_name_or_path, revision=revision, cache_dir=cache_dir, allow_pickle=allow_pickle
        )
        dense = [m for m in loaded.modules if m.kind == "dense"]
        if len(dense) != 1:
            raise CheckpointError(
                f"{loaded.folder} has {len(dense)} Dense modules in modules.json; a PyLate "
                f"ColBERT checkpoint has exactly one (the projection, e.g. 1_Dense)"
            )
        projection = read_linear(dense[0].folder, allow_pickle=allow_pickle)
        head = read_colbert_head(loaded.folder, dim=int(projection.weight.shape[0]))
        head = dataclasses.replace(
            head,
            query_length=_capped(
                head.query_length, loaded.position_limit, "query_length", model_name_or_path
            ),
            document_length=_capped(
                head.document_length, loaded.position_limit, "document_length", model_name_or_path
            ),
        )
        batching = BatchingConfig.for_device(device.type).replace(
            max_tokens_per_batch=max_tokens_per_batch, max_batch_size=max_batch_size
        )
        return cls(
            loaded.backbone,
            loaded.tokenizer,
            head,
            projection,
            model_name=str(model_name_or_path),
            device=device,
            dtype=dtype,
            batching=batching,
            quantize=quantize,
            compile=compile,
            revision=revision,
            checkpoint_digest=loaded.digest,
        )

    @property
    def query_length(self) -> int:
        """Tokens of every query's vectors: prefix, text, then expansion tokens up to it."""
        return self.head.query_length

    @property
    def document_length(self) -> int:
        """Most tokens per document (``[D] `` and special tokens included); longer ones are cut."""
        return self.head.document_length

    def encode_queries(
        self, texts: Iterable[str], *, show_progress: bool | None = None
    ) -> list[np.ndarray]:
        """Encode queries: ``[Q]`` after the first token, expanded to ``query_length`` tokens.

        Outer whitespace is stripped first, as PyLate does.

        Expansion tokens are masked as attention keys (unless the checkpoint says
        ``attend_to_expansion_tokens``) but their vectors are returned: that is what
        query expansion is for.

        Returns:
            One ``[query_length, dim]`` float32 array per query, each row L2-normalized.
        """
        items = validate_texts(texts)
        return self._run(
            items,
            self._prepare_queries,
            self._project_all,
            show_progress=show_progress,
            limit=self.head.query_length - 1,
            what="queries",
        )

    def _preparer(self, input_type: InputType) -> Callable[[list[str]], _Prepared]:
        return self._prepare_queries if input_type == "query" else self._prepare_documents

    def _prepare_queries(self, chunk: list[str]) -> _Prepared:
        limit = self.head.query_length - 1  # room for the prefix token
        tok = self.tokenizer.encode(_strip_all(chunk), limit)
        ids, masks = [], []
        for seq in tok.ids:
            real = len(seq) + 1
            pad = limit - len(seq) if self.head.do_query_expansion else 0
            ids.append([*seq[:1], self._query_prefix_id, *seq[1:], *[self._expansion_id] * pad])
            masks.append([True] * real + [self.head.attend_to_expansion_tokens] * pad)
        return _Prepared(ids, masks, tok.n_truncated, tok.truncated_rows)

    def _prepare_documents(self, chunk: list[str]) -> _Prepared:
        tok = self.tokenizer.encode(_strip_all(chunk), self.head.document_length - 1)
        ids = [[*seq[:1], self._document_prefix_id, *seq[1:]] for seq in tok.ids]
        return _Prepared(ids, None, tok.n_truncated, tok.truncated_rows)

    def encode_documents(
        self, texts: Iterable[str], *, show_progress: bool | None = None, pool_factor: int = 1
    ) -> list[np.ndarray]:
        """Encode documents: ``[D]`` after the first token; punctuation (skiplist) vectors dropped.

        Outer whitespace is stripped first, as PyLate does.

        Args:
            texts: the documents.
            show_progress: show a progress bar (default: for long inputs).
            pool_factor: merge similar token vectors to keep about ``1 / pool_factor`` of
                them (hierarchical clustering, :func:`lfm_core.pooling.pool_tokens`; the
                first vector is kept). ``1`` (the default) keeps every vector.

        Returns:
            One ``[n_tokens_i, dim]`` float32 array per document, each row L2-normalized.
            An empty string keeps the vectors of its special and prefix tokens.
        """
        pool_factor = check_positive_int(pool_factor, "pool_factor")
        items = validate_texts(texts)
        vectors = self._run(
            items,
            self._prepare_documents,
            self._project_kept,
            show_progress=show_progress,
            limit=self.head.document_length - 1,
            what="documents",
        )
        if pool_factor == 1:
            return vectors
        return [pool_tokens(v, pool_factor) for v in vectors]

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(_apply_linear(hidden.float(), self._projection), dim=-1)

    def _project_all(
        self, hidden: torch.Tensor, lengths: list[int], seqs: list[list[int]]
    ) -> list[np.ndarray]:
        vectors = self._project(hidden).cpu().numpy()
        return np.split(vectors, np.cumsum(lengths)[:-1])

    def _project_kept(
        self, hidden: torch.Tensor, lengths: list[int], seqs: list[list[int]]
    ) -> list[np.ndarray]:
        ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
        keep = ~torch.isin(ids, self._skiplist)
        vectors = self._project(hidden).cpu().numpy()
        parts = np.split(vectors, np.cumsum(lengths)[:-1])
        keeps = np.split(keep.numpy(), np.cumsum(lengths)[:-1])
        return [p[k] for p, k in zip(parts, keeps)]

    def score(
        self, query_vectors: np.ndarray, document_vectors: Sequence[np.ndarray]
    ) -> np.ndarray:
        """MaxSim of one query against each document (see :func:`lfm_core.scoring.maxsim`).

        Args:
            query_vectors: ``[n_query_tokens, dim]`` float32, from :meth:`encode_queries`.
            document_vectors: ``[n_tokens_i, dim]`` float32 arrays, from :meth:`encode_documents`.

        Returns:
            ``[len(document_vectors)]`` float32 scores.
        """
        return maxsim(query_vectors, document_vectors, device=self.device)

    def explain(
        self,
        query: str,
        document: str,
        *,
        document_vectors: np.ndarray | None = None,
        pool_factor: int = 1,
    ) -> Explanation:
        """Why ``document`` scores what it does for ``query``: each query token's best match.

        Args:
            query: the query text.
            document: the document text (as embedded: a stored point's ``payload["text"]``).
            document_vectors: the document's stored ``[n_tokens, dim]`` vectors (retrieved
                from Qdrant); ``None`` encodes ``document``.
            pool_factor: pooling for an encoded document (:meth:`encode_documents`).

        Returns:
            An :class:`~lfm_core.explain.Explanation`: the MaxSim score and one
            ``TokenMatch(query_token, document_span, similarity)`` per query vector, whose
            similarities sum to the score. Pooled vectors give no spans (``pooled``); a
            truncated document says where encoding stopped (``truncated``, ``seen_chars``).

        Raises:
            TypeError: ``query`` or ``document`` is not a ``str``.
            ValueError: ``document_vectors`` is not ``[n, dim]``.
        """
        vectors = None if document_vectors is None else [document_vectors]
        return explain_documents(self, query, [document], vectors, pool_factor=pool_factor)[0]
