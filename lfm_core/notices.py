"""Warnings that scale with the work, not with the calls.

An encoder call that cuts texts at the model's limit logs one warning with the count. But
a framework that embeds batch after batch (langchain-qdrant's ``add_texts``, LlamaIndex's
``embed_batch_size`` chunks) calls the encoder once per batch, and one warning per batch is
noise. :class:`TruncationLog` is held by an adapter object: its first truncation warns, with
the count, and says where the rest go; later ones are logged at DEBUG with running totals.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Truncation", "TruncationLog", "collecting_truncations", "report_truncation"]

logger = logging.getLogger("lfm_core")
_collecting = threading.local()


@dataclass(frozen=True)
class Truncation:
    """One encoder call's cut texts: ``truncated`` of ``total`` ``what`` over ``limit`` tokens."""

    truncated: int
    total: int
    what: str
    limit: int


@contextlib.contextmanager
def collecting_truncations() -> Iterator[list[Truncation]]:
    """Within the block (this thread), encoder truncations are collected instead of logged."""
    notes: list[Truncation] = []
    previous = getattr(_collecting, "notes", None)
    _collecting.notes = notes
    try:
        yield notes
    finally:
        _collecting.notes = previous


def report_truncation(truncated: int, total: int, what: str, limit: int) -> None:
    """Log an encoder call's truncation, or hand it to the collecting block around it."""
    notes = getattr(_collecting, "notes", None)
    if notes is not None:
        notes.append(Truncation(truncated, total, what, limit))
        return
    logger.warning(
        "%d of %d %s were longer than %d tokens and were truncated to fit the model",
        truncated,
        total,
        what,
        limit,
        # A caller encoding batch after batch may add the first two numbers up and report
        # once (the CLI does).
        extra={"lfm_summable_args": 2},
    )


class TruncationLog:
    """Truncation notices of one adapter object: one warning, then DEBUG lines.

    Args:
        owner: how the warning names the object, e.g. ``"LFMEmbeddings"``.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.truncated = 0
        self.total = 0
        self._warned = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def around(self) -> Iterator[None]:
        """Collect the truncations of the encoder calls in the block and report them."""
        with collecting_truncations() as notes:
            yield
        for note in notes:
            self._report(note)

    def _report(self, note: Truncation) -> None:
        with self._lock:
            self.truncated += note.truncated
            self.total += note.total
            first = not self._warned
            self._warned = True
        if first:
            logger.warning(
                "%d of %d %s were longer than %d tokens and were truncated to fit the model "
                "(later truncations by this %s are logged at DEBUG level, with totals)",
                note.truncated,
                note.total,
                note.what,
                note.limit,
                self.owner,
            )
        else:
            logger.debug(
                "%s: %d of %d %s truncated so far (over %d tokens)",
                self.owner,
                self.truncated,
                self.total,
                note.what,
                note.limit,
            )
