"""The writer's steps and the drivers that run them on a sync or an async client.

The writer's logic (add, delete, search) is written once, as generators that yield
:class:`Call` (a client method call) and :class:`Work` (CPU work such as encoding). A
:class:`StepDriver` runs them: on a ``QdrantClient`` or an :class:`~lfm_qdrant.EdgeStore`
directly, on an ``AsyncQdrantClient`` by awaiting each call and moving the work to a worker
thread. Retries of transient client errors live here, once for both.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .upload import CLIENT_ERRORS, RetryPolicy

__all__ = ["Call", "StepDriver", "Steps", "Work"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One client method call; ``returns_errors`` are handed back to the step as values."""

    method: str
    kwargs: Mapping[str, Any]
    returns_errors: tuple[type[Exception], ...] = ()


@dataclass(frozen=True)
class Work:
    """CPU-bound work (encoding); the async driver runs it in a worker thread."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = field(default_factory=tuple)


Steps = Generator["Call | Work", Any, T]


# qdrant-client's local mode (":memory:" and path=) is not safe for concurrent calls: two
# threads upserting at once lose points. Every writer over one such client takes the same
# lock for its client calls (not for encoding). Keyed weakly: it goes with the client.
_LOCAL_MODE_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _client_lock(client: Any) -> threading.Lock | None:
    inner = getattr(client, "_client", None)
    if type(inner).__name__ != "QdrantLocal":
        return None  # servers take concurrent requests; an EdgeStore locks itself
    with _LOCKS_GUARD:
        lock = _LOCAL_MODE_LOCKS.get(client)
        if lock is None:
            lock = _LOCAL_MODE_LOCKS[client] = threading.Lock()
        return lock


class StepDriver:
    """Runs step generators against one client, with retries of transient errors.

    Args:
        client: a ``QdrantClient``, an ``AsyncQdrantClient`` or an ``EdgeStore``.
        label: what the retry log lines name (the collection).
        retry: how often and how long to retry a transient error.
    """

    def __init__(self, client: Any, label: str, retry: RetryPolicy) -> None:
        self.client = client
        self.label = label
        self.retry = retry
        self.is_async = inspect.iscoroutinefunction(getattr(client, "query_points", None))
        self._lock = _client_lock(client)

    def require_sync(self, method: str, async_method: str) -> None:
        """Refuse a sync method on an async client, naming the async twin."""
        if self.is_async:
            raise TypeError(
                f"{method}() needs a sync QdrantClient; with {type(self.client).__name__} "
                f"use `await writer.{async_method}(...)`"
            )

    async def drive(self, steps: Steps[T]) -> T:
        """Run ``steps`` from async code: awaited on an async client, else in a thread."""
        if not self.is_async:
            return await asyncio.to_thread(self.run, steps)
        return await self._arun(steps)

    def run(self, steps: Steps[T]) -> T:
        """Run ``steps`` on a sync client (or an EdgeStore)."""
        result: Any = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                return done.value
            if isinstance(step, Work):
                result = step.fn(*step.args)
                continue
            try:
                result = self._call(step)
            except step.returns_errors as error:
                result = error

    def _call(self, step: Call) -> Any:
        method = getattr(self.client, step.method)
        attempt = 0
        while True:
            try:
                if self._lock is None:
                    return method(**step.kwargs)
                with self._lock:
                    return method(**step.kwargs)
            except CLIENT_ERRORS as error:
                delay = self.retry.delay(attempt, error)
                if delay is None:
                    raise
                self.retry.log_retry(f"{step.method} on {self.label!r}", attempt, error, delay)
                time.sleep(delay)
                attempt += 1

    async def _arun(self, steps: Steps[T]) -> T:
        result: Any = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                return done.value
            if isinstance(step, Work):
                result = await asyncio.to_thread(step.fn, *step.args)
                continue
            try:
                result = await self._acall(step)
            except step.returns_errors as error:
                result = error

    async def _acall(self, step: Call) -> Any:
        method = getattr(self.client, step.method)
        attempt = 0
        while True:
            try:
                return await method(**step.kwargs)
            except CLIENT_ERRORS as error:
                delay = self.retry.delay(attempt, error)
                if delay is None:
                    raise
                self.retry.log_retry(f"{step.method} on {self.label!r}", attempt, error, delay)
                await asyncio.sleep(delay)
                attempt += 1
