"""A deadline for a request head, added to uvicorn's own HTTP protocol.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a
client takes to send a request head: a client that sends half a head, or nothing, and
waits keeps its connection (and a file descriptor) forever, and a few hundred of them hold
every one (uvicorn issue #157, "--timeout-request-start", still open). Go's servers call
this ``ReadHeaderTimeout``; granian and hypercorn have it too.

uvicorn takes the protocol class as ``Config(http=...)``; this module subclasses the one it
would pick (httptools when installed, else h11) with a timer and nothing else: parsing,
keep-alive and flow control stay uvicorn's. The timer starts when a connection opens and
when the first bytes of a new request arrive; it stops as soon as uvicorn has parsed the
head (it then creates the request's ``cycle``); when it fires first, the connection is
closed. A body being uploaded, or a response being computed, is never cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["with_header_timeout"]


class _HeadDeadline:
    """Mixed in before uvicorn's protocol class (which provides ``loop``, ``transport``,
    ``cycle`` and the ``asyncio.Protocol`` methods)."""

    header_timeout_s: float
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: Any = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        # A new request starts when none is in progress; a body's bytes do not re-arm.
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()
        super().data_received(data)  # type: ignore[misc]
        if self._head_timer is not None and self.cycle is not self._head_cycle:
            self._disarm()  # uvicorn parsed the head: it made the request's cycle

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_cycle and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(timeout_s: float, base: type[asyncio.Protocol] | None = None) -> type:
    """uvicorn's HTTP protocol class, closing a connection whose request head is not in
    after ``timeout_s`` seconds; pass it as ``uvicorn.Config(http=...)``.

    Args:
        timeout_s: seconds from the connection (or a new request's first byte) to the end
            of its head.
        base: the uvicorn protocol to extend (default: the one ``http="auto"`` picks).

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """
    if not timeout_s > 0:
        raise ValueError(f"the header timeout must be > 0 seconds, got {timeout_s}")
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    return type(
        f"HeaderTimeout{base.__name__}",
        (_HeadDeadline, base),
        {"header_timeout_s": float(timeout_s)},
    )
