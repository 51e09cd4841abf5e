"""The CPU facts behind `serve`'s defaults, measured in one process with all-MiniLM-L6-v2.

1. Model workers: 32 queries per forward, as one forward with 2 torch threads, as two
   forwards side by side (two Python threads, 1 torch thread each), and one 1-thread forward.
   Then queries/s by queries per forward (1, 8, 16, 32) on one torch thread, and two
   1-thread workers beside a thread that keeps the GIL busy the way the event loop does.
2. Token budget: 128 SciFact documents encoded with ``max_tokens_per_batch`` 8,192 / 2,048 /
   1,024, with 1 and 2 torch threads (best of 2).
3. The garbage collector: one full ``gc.collect()`` with the model and the service loaded,
   before and after ``gc.freeze()``.

The queries and documents are ``bench_server``'s: SciFact from the data folder that
``--data DIR`` names (``beir-scifact/``, ``ntrex128/``, ``lfm2-tokenizer/``), seeded
synthetic words without it.

Usage::

    python -m benchmarks.bench_cpu_serving --data DATA
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import threading
import time

import numpy as np
import orjson
import torch

from benchmarks.bench_server import queries_and_docs
from benchmarks.harness import _minilm_dir
from benchmarks.measure import latencies
from benchmarks.workload import SCIFACT_CORPUS, add_data_argument, require_data
from lfm_core import DenseEncoder


def workers(encoder: DenseEncoder, queries: list[str], rounds: int = 12, batch: int = 32) -> None:
    print(f"\n## {batch} queries per forward, {rounds} forwards per thread")
    for threads, intra in ((1, 2), (2, 1), (1, 1)):
        torch.set_num_threads(intra)
        encoder.encode_documents(queries[:batch])

        def work(k: int) -> None:
            for r in range(rounds):
                start = ((k * rounds + r) * batch) % (len(queries) - batch)
                encoder.encode_documents(queries[start : start + batch], show_progress=False)

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        rate = threads * rounds * batch / (time.perf_counter() - t0)
        print(f"{threads} forward(s) at once x {intra} torch thread(s): {rate:.0f} queries/s")


def per_forward(encoder: DenseEncoder, queries: list[str], total: int = 512) -> None:
    """What merging saves: queries/s on one torch thread (a ``serve`` worker's setting) by
    queries per call; a batched service can gain at most this over an unbatched one."""
    print(f"\n## queries per forward, one torch thread, {total} queries, best of 3")
    torch.set_num_threads(1)
    queries = [queries[i % len(queries)] for i in range(total)]
    for batch in (1, 8, 16, 32):

        def all_queries(batch: int = batch) -> None:
            for start in range(0, total, batch):
                encoder.encode_documents(queries[start : start + batch], show_progress=False)

        best = min(latencies(all_queries, "cpu", warmup=1, reps=3))
        print(f"{batch:>3} per forward: {total / best:.0f} queries/s")


def beside_a_busy_loop(encoder: DenseEncoder, queries: list[str], seconds: float = 8) -> None:
    """Two 1-thread workers encoding 16 queries per call while a third Python thread stands in
    for the service's event loop: 0.3 ms of Python (orjson of one 384-d answer, a list) per
    "request", at a fixed rate. What the workers lose is CPU and GIL taken by the loop."""
    print(f"\n## two 1-thread workers, 16 queries per call, {seconds:g} s each")
    torch.set_num_threads(1)
    vector = np.zeros(384, dtype=np.float32)

    def measure(requests_per_s: int) -> float:
        stop = time.perf_counter() + seconds
        done = [0, 0]

        def work(k: int) -> None:
            i = 0
            while time.perf_counter() < stop:
                start = (i * 16 + k * 200) % (len(queries) - 16)
                encoder.encode_documents(queries[start : start + 16], show_progress=False)
                done[k] += 16
                i += 1

        def loop() -> None:
            t0, n = time.perf_counter(), 0
            while time.perf_counter() < stop:
                began = time.perf_counter()
                while time.perf_counter() - began < 0.0003:
                    orjson.dumps(
                        {"data": [{"embedding": vector}]}, option=orjson.OPT_SERIALIZE_NUMPY
                    )
                    _ = [x for x in range(50)]
                n += 1
                time.sleep(max(0.0, t0 + n / requests_per_s - time.perf_counter()))

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        if requests_per_s:
            threads.append(threading.Thread(target=loop))
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done) / (time.perf_counter() - t0)

    for rate in (0, 250, 500):
        print(f"beside {rate:>3} loop 'requests'/s: {measure(rate):.0f} queries/s")


def budgets(folder: str, docs: list[str]) -> None:
    print(f"\n## {len(docs)} documents, best of 2")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for budget in (8192, 2048, 1024):
            encoder = DenseEncoder.from_pretrained(
                folder, device="cpu", max_tokens_per_batch=budget
            )
            times = latencies(
                lambda encoder=encoder: encoder.encode_documents(docs, show_progress=False),
                "cpu",
                warmup=1,
                reps=2,
            )
            print(
                f"{threads} thread(s), {budget} tokens per forward: {len(docs) / min(times):.1f} docs/s"
            )


def collector(encoder: DenseEncoder) -> None:
    from lfm_retrieval.server import create_app

    app = create_app(encoder, None)
    print(
        f"\n## gc with the model and the service loaded ({len(gc.get_objects())} tracked objects)"
    )
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    print(f"full collection: {statistics.median(times):.0f} ms (median of 3)")
    gc.freeze()
    t0 = time.perf_counter()
    gc.collect()
    print(f"after gc.freeze(): {(time.perf_counter() - t0) * 1000:.2f} ms")
    gc.unfreeze()
    del app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser, without="queries and documents from seeded synthetic words")
    args = parser.parse_args(argv)
    if args.data is not None:
        require_data(args.data, SCIFACT_CORPUS)
    folder = str(_minilm_dir())
    queries, docs = queries_and_docs(args.data, 600)
    print(
        f"# bench_cpu_serving: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
    )
    default_threads = torch.get_num_threads()
    encoder = DenseEncoder.from_pretrained(folder, device="cpu")
    workers(encoder, queries)
    per_forward(encoder, queries)
    beside_a_busy_loop(encoder, queries)
    budgets(folder, docs[:128])
    torch.set_num_threads(default_threads)
    collector(encoder)


if __name__ == "__main__":
    main()
