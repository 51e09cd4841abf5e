"""Batch planning, out-of-memory recovery and overlap of CPU work with compute.

Nothing here knows about LFM2: it sees sequence lengths and callables.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["plan_batches", "prefetch", "split_on_oom"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


# Padded layout: a batch already this many padded tokens long is closed rather than let
# padding pass _MAX_PADDING of its real tokens. Below it, products are too small to run
# at full speed anyway, so a few more padded rows cost less than another forward.
_MIN_PADDED_BATCH = 256
_MAX_PADDING = 1.25


def plan_batches(
    lengths: Sequence[int], *, max_tokens: int, max_batch_size: int, padded: bool = False
) -> list[list[int]]:
    """Group sequence indices into batches under a token budget, longest first.

    Sorting by length keeps similar lengths together, so a padded layout wastes little
    and a packed layout gets evenly sized batches. A sequence longer than the budget
    gets a batch of its own. In the padded layout a batch is also closed once it is big
    and its padding would exceed a quarter of its real tokens: 64 queries of 11 to 26
    tokens then run as three forwards of about 1,200 padded tokens instead of one of 1,664.

    Args:
        lengths: token count of each sequence.
        max_tokens: budget per batch: the sum of lengths (packed) or
            ``batch_size * longest`` (padded).
        max_batch_size: most sequences in one batch.
        padded: whether the budget counts padding.

    Returns:
        Batches of indices into ``lengths``; every index appears exactly once.

    >>> plan_batches([3, 10, 2, 9], max_tokens=12, max_batch_size=8)
    [[1], [3, 0], [2]]
    >>> plan_batches([3, 10, 2, 9], max_tokens=12, max_batch_size=8, padded=True)
    [[1], [3], [0, 2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        n = lengths[i]
        cost = (len(current) + 1) * lengths[current[0]] if padded and current else used + n
        wasteful = (
            padded
            and bool(current)
            and len(current) * lengths[current[0]] >= _MIN_PADDED_BATCH
            and cost > _MAX_PADDING * (used + n)
        )
        if current and (cost > max_tokens or len(current) >= max_batch_size or wasteful):
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        batches.append(current)
    return batches


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # MPS reports exhaustion as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def split_on_oom(run: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
    """``run(items)``, halving the batch and retrying while the device is out of memory.

    Results come back in the order of ``items``; nothing is dropped or reordered. A
    single item that still does not fit re-raises the out-of-memory error.
    """
    try:
        return run(items)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_oom(exc) or len(items) == 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(items) // 2
    logger.warning(
        "out of memory on a batch of %d; retrying as %d + %d", len(items), half, len(items) - half
    )
    return split_on_oom(run, items[:half]) + split_on_oom(run, items[half:])


def prefetch(chunks: Iterable[T], prepare: Callable[[T], R]) -> Iterator[R]:
    """Yield ``prepare(chunk)`` for each chunk, preparing the next one in a background thread.

    Tokenization (Rust, releases the GIL) of chunk ``i + 1`` then overlaps the model's
    forward pass on chunk ``i``. A single chunk (a query, a merged serving batch) has
    nothing to overlap with, so it is prepared inline, without starting a thread.
    """
    it = iter(chunks)
    head = list(itertools.islice(it, 2))
    if len(head) < 2:
        yield from (prepare(chunk) for chunk in head)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfm-prefetch") as pool:
        pending = pool.submit(prepare, head[0])
        for chunk in itertools.chain(head[1:], it):
            ready = pending.result()
            pending = pool.submit(prepare, chunk)
            yield ready
        yield pending.result()
