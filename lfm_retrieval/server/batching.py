"""Batching across HTTP requests: texts that arrive together share one packed forward.

Every request that needs the model puts a job on one queue; one asyncio task takes the
oldest job, gathers the queued jobs of the same kind (same encoder, same input type),
waits at most ``max_wait_ms`` after the oldest one arrived for more, and runs them as one
``encode_queries`` / ``encode_documents`` call on a model thread. The encoders pack
sequences without padding, so each request gets exactly the vectors it would get alone.

The model runs on worker threads, never on the event loop, so the loop keeps answering
``/health`` and accepting requests meanwhile. ``model_workers`` merged batches may run at
once, each on its own thread. One worker suits a GPU (two forwards on one device only
contend). On CPU two workers, each with half the cores as torch threads, beat one worker
with all of them: a forward over a few short texts is mostly serial work (tokenizing,
dispatch), which a second batch fills in (all-MiniLM-L6-v2 on 2 cores: 32 queries at once
run at 563/s as two 1-thread forwards, 408/s as one 2-thread forward;
``python -m benchmarks.bench_cpu_serving``). A batch takes at
most an even share of the queue, so no worker runs everything while another waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from lfm_core import DenseEncoder, InputType, LateInteractionEncoder, TokenCounts

from .metrics import ServiceMetrics

__all__ = ["BatchingOptions", "EncodeBatcher", "Encoded", "Overloaded", "Side"]

logger = logging.getLogger("lfm_retrieval.server")

Side = Literal["dense", "colbert"]
ServedEncoder = DenseEncoder | LateInteractionEncoder
T = TypeVar("T")


class Overloaded(Exception):
    """The queue is full: the request is refused (HTTP 503 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchingOptions:
    """How requests are batched and how much may wait.

    Attributes:
        enabled: merge the jobs of concurrent requests into one forward; ``False`` runs
            each request on its own (for comparison).
        max_wait_ms: longest a request waits for others to join its batch, counted from
            its arrival; a request that waited for a model thread does not wait more.
        max_batch_texts: most texts in one merged call (a single larger request still
            runs whole; the encoder splits it under its token budget).
        max_queue_texts: most texts waiting; a request that would pass it gets 503.
        model_workers: merged batches that may run at once, each on its own thread. The
            batcher does not touch torch's thread count: with ``n`` workers on CPU give
            torch ``cores // n`` threads (``lfm-retrieval serve`` does).
        max_batch_tokens: a merged batch runs in slices of at most this many tokens,
            oldest requests first, and each slice is answered as soon as it is done;
            ``None``: the encoder's own token budget (``max_tokens_per_batch``).
    """

    enabled: bool = True
    max_wait_ms: float = 2.0
    max_batch_texts: int = 512
    max_queue_texts: int = 8192
    model_workers: int = 1
    max_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, not {self.max_wait_ms}")
        for name in ("max_batch_texts", "max_queue_texts", "model_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be >= 1, not {self.max_batch_tokens}")


@dataclass(frozen=True)
class Encoded:
    """One request's share of a batch: its vectors and its token counts."""

    vectors: list[Any]
    counts: TokenCounts


@dataclass(eq=False)
class _Job:
    kind: tuple[Side, InputType] | None  # None: a plain call on a model thread
    texts: Sequence[str]
    future: asyncio.Future[Any]
    arrived: float
    call: Callable[[], Any] | None = None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = max(1, len(self.texts))


class EncodeBatcher:
    """The queue in front of the encoders, and the threads they run on.

    Args:
        encoders: the loaded encoders by side (either may be absent).
        options: batching and queue limits.
        metrics: where batch sizes, queue depth and token counts are recorded.
        in_flight: requests being handled right now (the service counts them); a batch
            then stops waiting for others once every such request already has its job
            queued or running, since nobody else can join (a lone client never waits).
            ``None``: always wait up to ``max_wait_ms``.

    Use ``await start()`` on the serving loop before the first request and ``await
    stop()`` after the last (the service's lifespan does both).
    """

    def __init__(
        self,
        encoders: dict[Side, ServedEncoder],
        options: BatchingOptions,
        metrics: ServiceMetrics,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.encoders = encoders
        self.options = options
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._queued = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._worker_free: asyncio.Event | None = None
        self._running: dict[asyncio.Task[None], list[_Job]] = {}
        self._in_flight = in_flight

    async def start(self) -> None:
        """Start the worker task and the model threads (on the running loop)."""
        self._wake = asyncio.Event()
        self._worker_free = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=self.options.model_workers, thread_name_prefix="lfm-model"
        )
        self._task = asyncio.create_task(self._serve(), name="lfm-batcher")

    async def stop(self) -> None:
        """Stop taking work; jobs still queued or running are failed with :class:`Overloaded`."""
        tasks = [t for t in (self._task, *self._running) if t is not None]
        pending = [job for jobs in self._running.values() for job in jobs]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._running.clear()
        pending.extend(self._queue)
        self._queue.clear()
        for job in pending:
            if not job.future.done():
                job.future.set_exception(Overloaded("the service is shutting down"))
        self._queued = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def running(self) -> bool:
        """Whether the worker task is alive (``/health`` reports it)."""
        return self._task is not None and not self._task.done()

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model (the ``lfm_queue_texts`` gauge)."""
        return self._queued

    async def encode(self, side: Side, input_type: InputType, texts: Sequence[str]) -> Encoded:
        """Vectors and token counts of ``texts``, in order, from the ``side`` encoder.

        Raises:
            Overloaded: the queue is full.
            KeyError: no encoder for ``side`` (the routes check first).
        """
        if side not in self.encoders:
            raise KeyError(side)
        return await self._submit(_Job((side, input_type), texts, self._future(), _now()))

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on a model thread, in turn with the batches (a search, a score)."""
        job = _Job(None, (), self._future(), _now(), call=fn)
        result: T = await self._submit(job)
        return result

    # ------------------------------------------------------------------ internals

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        if self._wake is None:
            raise RuntimeError("EncodeBatcher.start() was not awaited")
        limit = self.options.max_queue_texts
        if self._queued and self._queued + job.size > limit:
            raise Overloaded(
                f"the service is at capacity ({self._queued} texts queued, limit {limit}); "
                "retry shortly"
            )
        self._queue.append(job)
        self._queued += job.size
        self.metrics.queue_texts.set(self._queued)
        self._wake.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            # The client went away (or timed out): its texts are skipped if not yet running.
            job.future.cancel()
            raise

    async def _serve(self) -> None:
        assert self._wake is not None and self._worker_free is not None
        while True:
            if len(self._running) >= self.options.model_workers:
                self._worker_free.clear()
                await self._worker_free.wait()
                continue
            self._drop_cancelled()
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = await self._gather()
            if not batch:
                continue
            self._queued -= sum(job.size for job in batch)
            self.metrics.queue_texts.set(self._queued)
            task = asyncio.create_task(self._execute(batch), name="lfm-batch")
            self._running[task] = batch

    async def _execute(self, batch: list[_Job]) -> None:
        """Run one batch on a model thread; each job gets its outcome as soon as it is ready."""
        assert self._worker_free is not None
        loop = asyncio.get_running_loop()

        def deliver(outcomes: list[tuple[_Job, tuple[bool, Any]]]) -> None:
            loop.call_soon_threadsafe(_settle, outcomes)

        try:
            await loop.run_in_executor(self._executor, self._run, batch, deliver)
        except Exception as error:  # a bug: fail this batch's requests, keep serving
            logger.exception("a batch of %d requests failed outside the encoder", len(batch))
            _settle([(job, (False, error)) for job in batch])
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._worker_free.set()

    def _drop_cancelled(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queued -= self._queue.popleft().size
        self.metrics.queue_texts.set(self._queued)

    async def _gather(self) -> list[_Job]:
        """The oldest job and the queued jobs that can share its forward.

        With several workers a batch takes at most an even share of the queue, so the
        others (idle now or soon) find work instead of one worker taking everything.
        """
        first = self._queue[0]
        if first.kind is None or not self.options.enabled:
            return [self._queue.popleft()]
        deadline = first.arrived + self.options.max_wait_ms / 1000
        limit = self.options.max_batch_texts
        while self._fill(first.kind) < limit and self._others_may_join():
            left = deadline - _now()
            if left <= 0:
                break
            assert self._wake is not None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=left)
            except asyncio.TimeoutError:
                break
        if self.options.model_workers > 1:
            limit = min(limit, -(-self._fill(first.kind) // self.options.model_workers))
        batch: list[_Job] = []
        kept: deque[_Job] = deque()
        texts = 0
        for job in self._queue:
            if job.future.done():
                self._queued -= job.size
                continue
            fits = not batch or texts + len(job.texts) <= limit
            if job.kind == first.kind and fits:
                batch.append(job)
                texts += len(job.texts)
            else:
                kept.append(job)
        self._queue = kept
        return batch

    def _others_may_join(self) -> bool:
        """Whether a request being handled has no job yet (it may still send one)."""
        if self._in_flight is None:
            return True
        with_job = len(self._queue) + sum(len(jobs) for jobs in self._running.values())
        return self._in_flight() > with_job

    def _fill(self, kind: tuple[Side, InputType]) -> int:
        return sum(len(j.texts) for j in self._queue if j.kind == kind and not j.future.done())

    def _run(self, batch: list[_Job], deliver: Callable[[list[tuple[_Job, Any]]], None]) -> None:
        """On a model thread: the batch in slices of at most ``max_batch_tokens``, oldest
        jobs first, each slice answered as soon as its forward is done (so a long merged
        batch does not hold every request until its end)."""
        first = batch[0]
        if first.kind is None:
            deliver([(first, _attempt(first.call))])  # type: ignore[arg-type]
            return
        side, input_type = first.kind
        encoder = self.encoders[side]
        texts = [t for job in batch for t in job.texts]
        ok, counts = _attempt(lambda: encoder.count_tokens(texts, input_type=input_type))
        if not ok:
            for job in batch:
                deliver(_each_alone(encoder, input_type, [job]))
            return
        cap = self.options.max_batch_tokens or encoder.batching.max_tokens_per_batch
        for part, part_counts in _slices(batch, counts, cap):
            deliver(self._run_slice(encoder, side, input_type, part, part_counts))

    def _run_slice(
        self,
        encoder: ServedEncoder,
        side: Side,
        input_type: InputType,
        batch: list[_Job],
        counts: TokenCounts,
    ) -> list[tuple[_Job, tuple[bool, Any]]]:
        """One merged call; on failure each job alone, so one bad request cannot fail the
        others."""
        texts = [t for job in batch for t in job.texts]
        self.metrics.batch_texts.labels(side=side).observe(len(texts))
        self.metrics.batch_requests.labels(side=side).observe(len(batch))
        ok, vectors = _attempt(
            lambda: _encoder_method(encoder, input_type)(texts, show_progress=False)
        )
        if not ok:
            if len(batch) == 1:
                return [(batch[0], (False, vectors))]
            logger.warning(
                "a merged batch failed (%s); running its %d requests one by one",
                vectors,
                len(batch),
            )
            return _each_alone(encoder, input_type, batch)
        out: list[tuple[_Job, tuple[bool, Any]]] = []
        start = 0
        for job in batch:
            end = start + len(job.texts)
            mine = _counts_between(counts, start, end)
            out.append((job, (True, Encoded(list(vectors[start:end]), mine))))
            start = end
        self.metrics.tokens.labels(side=side, input_type=input_type).inc(sum(counts.tokens))
        return out


def _each_alone(
    encoder: ServedEncoder, input_type: InputType, batch: list[_Job]
) -> list[tuple[_Job, tuple[bool, Any]]]:
    """Each job on its own call, so one bad request cannot fail the others."""
    return [(job, _attempt(partial(_encode, encoder, input_type, job.texts))) for job in batch]


def _slices(
    batch: list[_Job], counts: TokenCounts, max_tokens: int
) -> Iterator[tuple[list[_Job], TokenCounts]]:
    """Consecutive runs of jobs of at most ``max_tokens`` tokens (a bigger job runs alone),
    each with its share of ``counts``."""
    part: list[_Job] = []
    tokens = part_start = start = 0
    for job in batch:
        n = sum(counts.tokens[start : start + len(job.texts)])
        if part and tokens + n > max_tokens:
            yield part, _counts_between(counts, part_start, start)
            part, tokens, part_start = [], 0, start
        part.append(job)
        tokens += n
        start += len(job.texts)
    if part:
        yield part, _counts_between(counts, part_start, start)


def _counts_between(counts: TokenCounts, start: int, end: int) -> TokenCounts:
    return TokenCounts(
        counts.tokens[start:end], [i - start for i in counts.truncated if start <= i < end]
    )


def _settle(outcomes: list[tuple[_Job, tuple[bool, Any]]]) -> None:
    """On the loop: resolve each job's future (unless its request has gone)."""
    for job, (ok, value) in outcomes:
        if job.future.done():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _encode(encoder: ServedEncoder, input_type: InputType, texts: Sequence[str]) -> Encoded:
    counts = encoder.count_tokens(texts, input_type=input_type)
    vectors = _encoder_method(encoder, input_type)(list(texts), show_progress=False)
    return Encoded(list(vectors), counts)


def _encoder_method(encoder: ServedEncoder, input_type: InputType) -> Callable[..., Any]:
    return encoder.encode_queries if input_type == "query" else encoder.encode_documents


def _attempt(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as error:  # handed to the request's own handler
        return False, error


def _now() -> float:
    return time.monotonic()
