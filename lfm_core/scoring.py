"""MaxSim late-interaction scoring in bounded memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["maxsim", "rank_scores"]

# Floats of the [chunk, query_tokens, doc_tokens] similarity block scored at once
# (64 Mi floats = 256 MB in float32): 10,000 documents of 512 tokens fit in any chunking.
_SIMILARITY_BUDGET = 64 * 1024 * 1024


def maxsim(
    query: np.ndarray | torch.Tensor,
    documents: Sequence[np.ndarray | torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    budget: int = _SIMILARITY_BUDGET,
) -> np.ndarray:
    """ColBERT MaxSim: for each query vector its best dot product in a document, summed.

    Documents are padded in chunks; padded positions are masked with ``-inf`` so they
    can never win a max (zero padding would beat every negative similarity). A
    document with no vectors scores ``-inf``.

    Args:
        query: ``[n_query_tokens, dim]`` float32 query vectors.
        documents: one ``[n_tokens_i, dim]`` float32 array per document.
        device: where to compute.
        budget: most similarity entries computed at once.

    Returns:
        ``[len(documents)]`` float32 scores, in the order of ``documents``.

    Examples:
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
        >>> d0 = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)   # 1.0 + 0.8
        >>> d1 = np.array([[-1.0, 0.0]], dtype=np.float32)              # -1.0 + 0.0
        >>> [round(float(s), 4) for s in maxsim(q, [d0, d1])]
        [1.8, -1.0]
    """
    if query is None or isinstance(query, (str, bytes)):
        raise TypeError(f"query is a {type(query).__name__}; expected a [n_tokens, dim] array")
    if isinstance(documents, (str, bytes)) or not hasattr(documents, "__len__"):
        raise TypeError(
            f"documents is a {type(documents).__name__}; expected a list of [n_tokens, dim] arrays"
        )
    for i, d in enumerate(documents):
        if not isinstance(d, (np.ndarray, torch.Tensor)):
            raise TypeError(
                f"documents[{i}] is a {type(d).__name__}; expected a [n_tokens, dim] array"
            )
    q = torch.as_tensor(query, dtype=torch.float32, device=device)
    if q.ndim != 2:
        raise ValueError(f"query must be [n_tokens, dim], got shape {tuple(q.shape)}")
    scores = np.empty(len(documents), dtype=np.float32)
    lengths = [int(d.shape[0]) for d in documents]
    for i, d in enumerate(documents):
        if d.ndim != 2 or d.shape[1] != q.shape[1]:
            raise ValueError(
                f"documents[{i}] has shape {tuple(d.shape)}; expected [n_tokens, {q.shape[1]}]"
            )
    order = sorted(range(len(documents)), key=lambda i: lengths[i])
    start = 0
    while start < len(order):
        stop = start + 1
        # Ascending lengths: grow the chunk while the block stays under budget.
        while (
            stop < len(order)
            and (stop - start + 1) * q.shape[0] * max(lengths[order[stop]], 1) <= budget
        ):
            stop += 1
        chunk = order[start:stop]
        scores[chunk] = _maxsim_chunk(q, [documents[i] for i in chunk], device)
        start = stop
    return scores


def _maxsim_chunk(
    q: torch.Tensor, docs: Sequence[np.ndarray | torch.Tensor], device: torch.device | str
) -> np.ndarray:
    longest = max(int(d.shape[0]) for d in docs)
    if longest == 0:
        return np.full(len(docs), -np.inf, dtype=np.float32)
    padded = torch.zeros(len(docs), longest, q.shape[1], dtype=torch.float32, device=device)
    valid = torch.zeros(len(docs), longest, dtype=torch.bool, device=device)
    for j, d in enumerate(docs):
        n = int(d.shape[0])
        padded[j, :n] = torch.as_tensor(d, dtype=torch.float32, device=device)
        valid[j, :n] = True
    sim = torch.einsum("qd,btd->bqt", q, padded)
    sim.masked_fill_(~valid[:, None, :], float("-inf"))
    best = sim.max(dim=2).values  # [b, q]
    return best.sum(dim=1).cpu().numpy()


def rank_scores(
    scores: np.ndarray, scored: Sequence[int], n_documents: int, top_k: int | None = None
) -> list[tuple[int, float]]:
    """The ranking every reranker returns: scored documents best first, the others last.

    Args:
        scores: ``[len(scored)]`` scores of the documents at the indices ``scored``.
        scored: indices (into the ``n_documents`` candidates) of the scored documents.
        n_documents: how many candidates there were; the unscored ones (blank texts)
            come after every scored one with score ``0.0``, in input order.
        top_k: keep the first ``top_k`` (default: all).

    Returns:
        ``(index, score)`` pairs; ties keep input order.

    >>> rank_scores(np.array([0.25, 0.5, 0.25]), [0, 2, 3], 4)
    [(2, 0.5), (0, 0.25), (3, 0.25), (1, 0.0)]
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranked = [(scored[j], float(scores[j])) for j in order]
    kept = set(scored)
    ranked += [(i, 0.0) for i in range(n_documents) if i not in kept]
    return ranked[: len(ranked) if top_k is None else top_k]
