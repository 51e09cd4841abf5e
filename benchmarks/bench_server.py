"""`lfm-retrieval serve` under concurrent clients, side by side with Infinity.

Three services answer the same client with the same texts, started together and measured
in turn (interleaved, ``--rounds`` times, each round starting with the next service,
medians reported), each on 127.0.0.1:

- ``ours``: ``lfm-retrieval serve`` with batching across requests (the default);
- ``ours-unbatched``: the same with ``--no-batching`` (each request its own forward);
- ``infinity``: ``infinity_emb v2 --engine torch --device cpu`` (0.0.78), when its venv
  exists (``.venv-infinity``; built with ``pip install "infinity-emb[torch,server]==0.0.78"``,
  about 7 GB with its CUDA torch). It cannot load LFM2, so it runs with ``--model minilm``.

The client: one thread per concurrent client, each with its own keep-alive
``http.client`` connection, sending OpenAI ``/embeddings`` requests with one query
(``query``) or 8 documents (``docs``). It prints requests/s, texts/s and p50/p99 latency
per service and level, the CPU time per request of the service and of the client (they
share the machine's cores; the service's figure is its main process, from /proc), and the
ratios between the services.

The texts come from SciFact in the data folder (``--data DIR``: ``beir-scifact/``,
``ntrex128/``, ``lfm2-tokenizer/``), from seeded synthetic words without it.
``--model lfm2-dense`` serves a random-weight LFM2.5-Embedding-350M (the real config from the
data folder, so it needs ``--data``) and also compares the service's tokens/s with
in-process ``encode_documents`` on the same texts.

``--remote-clients`` measures the clients instead, on the ``ours`` service alone: remote-mode
``LFMEmbeddings(base_url=...)`` against the openai SDK's ``embeddings.create`` (one shared
client object each, as an app holds one; ``N`` threads call it at once, each request 8
documents), interleaved ``--rounds`` times, medians of requests/s.

Usage::

    python -m benchmarks.bench_server --data DATA --model minilm --clients 1,8,64
    python -m benchmarks.bench_server --data DATA --model minilm --remote-clients --clients 1,8,64
    python -m benchmarks.bench_server --data DATA --model lfm2-dense --clients 1,8 --workloads docs
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INFINITY_VENV = PROJECT_ROOT / ".venv-infinity"
DOCS_PER_REQUEST = 8


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str  # the embeddings endpoint
    model: str


@dataclass
class Result:
    requests: int
    texts: int
    tokens: int
    seconds: float
    latencies: list[float]
    errors: int
    service_cpu_s: float | None  # CPU time the service's process used during the load
    client_cpu_s: float  # CPU time this (client) process used during the load

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def cpu_ms(self) -> str:
        """CPU per request, service + client (ms): both share this machine's cores."""
        service = (
            "?"
            if self.service_cpu_s is None
            else f"{self.service_cpu_s / self.requests * 1000:.1f}"
        )
        return f"{service}+{self.client_cpu_s / self.requests * 1000:.1f}"

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (its threads included), from /proc."""
    try:
        # Fields after the command name, which is in parentheses: utime and stime are the
        # 14th and 15th fields of the line.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(name: str, cmd: list[str], port: int, path: str, model: str, health: str) -> Service:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"{name} exited: {err[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", health)
            if conn.getresponse().status == 200:
                return Service(name, proc, port, path, model)
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{name} did not start")


def stop(service: Service) -> None:
    service.proc.send_signal(signal.SIGTERM)
    try:
        service.proc.wait(30)
    except subprocess.TimeoutExpired:
        service.proc.kill()


def load(service: Service, bodies: list[bytes], clients: int, n_requests: int) -> Result:
    """``n_requests`` requests from ``clients`` threads, keep-alive, bodies round-robin."""
    latencies: list[float] = []
    tokens = 0
    errors = 0
    lock = threading.Lock()
    counter = iter(range(n_requests))
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        nonlocal tokens, errors
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=300)
        mine: list[float] = []
        my_tokens = my_errors = 0
        barrier.wait()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            conn.request(
                "POST", service.path, body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            data = response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200:
                my_errors += 1
                continue
            usage = json.loads(data).get("usage") or {}
            my_tokens += int(usage.get("prompt_tokens") or 0)
        conn.close()
        with lock:
            latencies.extend(mine)
            tokens += my_tokens
            errors += my_errors

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    service_before = cpu_seconds(service.proc.pid)
    client_before = time.process_time()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    client_cpu = time.process_time() - client_before
    service_after = cpu_seconds(service.proc.pid)
    service_cpu = (
        None if service_before is None or service_after is None else service_after - service_before
    )
    per = json.loads(bodies[0])["input"]
    return Result(
        n_requests,
        n_requests * len(per),
        tokens,
        seconds,
        latencies,
        errors,
        service_cpu,
        client_cpu,
    )


def make_bodies(texts: list[str], per_request: int, model: str, count: int) -> list[bytes]:
    bodies = []
    for i in range(count):
        chunk = [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]
        bodies.append(json.dumps({"input": chunk, "model": model}).encode())
    return bodies


def queries_and_docs(data: Path | None, max_doc_chars: int) -> tuple[list[str], list[str]]:
    """Queries (a text's first 8 words and "?") and documents (a text's first characters),
    from SciFact in the data folder ``data``, or from seeded synthetic words when ``None``."""
    from benchmarks.workload import corpus_texts

    texts, _ = corpus_texts(data, max_chars=600_000)
    queries = [" ".join(t.split()[:8]) + "?" for t in texts]
    docs = [t[:max_doc_chars] for t in texts]
    return queries, docs


def main(argv: list[str] | None = None) -> int:
    from benchmarks.workload import LFM2_CONFIGS, SCIFACT_CORPUS, add_data_argument, require_data

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("minilm", "lfm2-dense"), default="minilm")
    add_data_argument(
        parser,
        without="texts from seeded synthetic words; --model lfm2-dense needs it for its real config",
    )
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--workloads", default="query,docs", help="query, docs or both")
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per level (default: scaled to the level)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-infinity", action="store_true")
    parser.add_argument(
        "--remote-clients",
        action="store_true",
        help="compare remote-mode LFMEmbeddings with the openai SDK (ours only)",
    )
    parser.add_argument("--skip-unbatched", action="store_true")
    parser.add_argument("--doc-chars", type=int, default=600, help="characters per document")
    parser.add_argument("--max-wait-ms", default="2")
    parser.add_argument(
        "--model-workers", default="", help="serve --model-workers (default: serve's own)"
    )
    parser.add_argument(
        "--max-batch-tokens", default="", help="serve --max-batch-tokens (default: serve's own)"
    )
    args = parser.parse_args(argv)
    if args.model == "lfm2-dense" or args.data is not None:
        needs = [LFM2_CONFIGS["lfm2-dense"]] if args.model == "lfm2-dense" else []
        require_data(args.data, SCIFACT_CORPUS, *needs, what=f"--model {args.model}")
    levels = [int(x) for x in args.clients.split(",")]
    workloads = args.workloads.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        if args.model == "minilm":
            from benchmarks.harness import _minilm_dir

            folder = _minilm_dir()
        else:
            from benchmarks.workload import corpus_texts, write_lfm2_checkpoint

            corpus, _ = corpus_texts(args.data, max_chars=400_000)
            folder = write_lfm2_checkpoint(args.data, workdir / "lfm2-dense", "lfm2-dense", corpus)
        queries, docs = queries_and_docs(args.data, args.doc_chars)
        if args.remote_clients:
            args.skip_unbatched = args.skip_infinity = True
        services = start_services(args, folder)
        try:
            if args.remote_clients:
                compare_clients(services[0], levels, docs, args.rounds, args.requests)
                client_overhead(docs[:DOCS_PER_REQUEST])
                return 0
            report(args, folder, services, levels, workloads, queries, docs)
        finally:
            for service in services:
                stop(service)
        if args.model == "lfm2-dense" and "docs" in workloads:
            # The texts of the last level's first round, as the client sent them.
            n = args.requests or max(8, levels[-1] * 2)
            in_process_tokens(folder, docs[: n * DOCS_PER_REQUEST])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def compare_clients(
    service: Service, levels: list[int], docs: list[str], rounds: int, requests: int
) -> None:
    """Requests/s of remote-mode ``LFMEmbeddings`` and of the openai SDK, same texts, same
    service; ``N`` threads share one client object of each."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from lfm_langchain import LFMEmbeddings

    url = f"http://127.0.0.1:{service.port}"
    ours = LFMEmbeddings(base_url=url, model_name=service.model)
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    callers = {
        "LFMEmbeddings(base_url)": ours.embed_documents,
        "openai SDK": lambda batch: sdk.embeddings.create(model=service.model, input=batch),
    }
    batches = [docs[(i * DOCS_PER_REQUEST) % len(docs) :][:DOCS_PER_REQUEST] for i in range(4096)]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(
        "| callers | client | requests/s (median) | client CPU ms/request (median) "
        "| ratio LFMEmbeddings / openai, requests/s |"
    )
    print("|---|---|---|---|---|")
    for level in levels:
        n = requests or max(16, level * 4)
        rates: dict[str, list[float]] = {name: [] for name in callers}
        cpu: dict[str, list[float]] = {name: [] for name in callers}
        with ThreadPoolExecutor(level) as pool:
            for call in callers.values():  # warm-up: connections, first batch
                list(pool.map(call, batches[:level]))
            for r in range(rounds):
                order = list(callers.items())
                for name, call in order[r % 2 :] + order[: r % 2]:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    list(pool.map(call, batches[:n]))
                    rates[name].append(n / (time.perf_counter() - started))
                    # This process runs only the clients: its CPU time is theirs.
                    cpu[name].append((time.process_time() - cpu_started) * 1000 / n)
        medians = {name: statistics.median(v) for name, v in rates.items()}
        ratio = medians["LFMEmbeddings(base_url)"] / medians["openai SDK"]
        for name, rate in medians.items():
            ms = statistics.median(cpu[name])
            print(f"| {level} | {name} | {rate:.1f} | {ms:.2f} | {ratio:.2f} |")


def client_overhead(batch: list[str], dim: int = 384, calls: int = 300) -> None:
    """Client CPU per request with no service at all: both clients on one scripted httpx
    transport answering the same base64 vectors, so only the client's own work is timed."""
    import base64

    import httpx
    import numpy as np
    import openai

    from lfm_langchain import LFMEmbeddings

    vector = base64.b64encode(np.random.default_rng(0).random(dim).astype("<f4").tobytes())

    def answer(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["input"])
        data = [{"object": "embedding", "index": i, "embedding": vector.decode()} for i in range(n)]
        return httpx.Response(
            200,
            json={
                "object": "list",
                "model": "m",
                "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )

    transport = httpx.MockTransport(answer)
    sdk = openai.OpenAI(
        base_url="http://svc/v1", api_key="k", http_client=httpx.Client(transport=transport)
    )
    ours = LFMEmbeddings(base_url="http://svc", model_name="m")
    assert ours.remote is not None
    ours.remote._sync = httpx.Client(base_url="http://svc", transport=transport)
    callers = {
        "LFMEmbeddings(base_url)": ours.embed_documents,
        "openai SDK": lambda b: [
            d.embedding for d in sdk.embeddings.create(model="m", input=b).data
        ],
    }
    print(f"\n| client, no service ({len(batch)} texts, {dim}-d) | CPU ms/request (median of 5) |")
    print("|---|---|")
    for name, call in callers.items():
        call(batch)
        runs = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(calls):
                call(batch)
            runs.append((time.process_time() - started) * 1000 / calls)
        print(f"| {name} | {statistics.median(runs):.2f} |")


def start_services(args: argparse.Namespace, folder: Path) -> list[Service]:
    ours = [
        sys.executable,
        "-m",
        "lfm_retrieval.cli",
        "serve",
        "--embedding-model",
        str(folder),
        "--colbert-model",
        "none",
        "--device",
        "cpu",
        "--log-level",
        "warning",
        "--max-wait-ms",
        args.max_wait_ms,
        "--max-queue-texts",
        "100000",
    ]
    if args.model_workers:
        ours += ["--model-workers", args.model_workers]
    if args.max_batch_tokens:
        ours += ["--max-batch-tokens", args.max_batch_tokens]
    services = []
    port = free_port()
    services.append(
        start("ours", [*ours, "--port", str(port)], port, "/v1/embeddings", folder.name, "/health")
    )
    if not args.skip_unbatched:
        port = free_port()
        services.append(
            start(
                "ours-unbatched",
                [*ours, "--port", str(port), "--no-batching"],
                port,
                "/v1/embeddings",
                folder.name,
                "/health",
            )
        )
    infinity = INFINITY_VENV / "bin" / "infinity_emb"
    if args.model == "minilm" and not args.skip_infinity:
        if infinity.is_file():
            port = free_port()
            cmd = [
                str(infinity),
                "v2",
                "--model-id",
                str(folder),
                "--engine",
                "torch",
                "--device",
                "cpu",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            services.append(start("infinity", cmd, port, "/embeddings", str(folder), "/health"))
        else:
            print(f"(infinity skipped: {infinity} not found)")
    return services


def report(
    args: argparse.Namespace,
    folder: Path,
    services: list[Service],
    levels: list[int],
    workloads: list[str],
    queries: list[str],
    docs: list[str],
) -> None:
    print(f"# bench_server: {args.model} ({folder})")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}; services: {', '.join(s.name for s in services)}"
    )
    print(
        f"client: threaded http.client keep-alive; rounds={args.rounds}, medians; "
        f"docs: {DOCS_PER_REQUEST} x ~{args.doc_chars} chars per request"
    )
    for workload in workloads:
        per = 1 if workload == "query" else DOCS_PER_REQUEST
        texts = queries if workload == "query" else docs
        for clients in levels:
            n = args.requests or (max(40, clients * 8) if workload == "query" else max(16, clients))
            if args.model == "lfm2-dense":
                n = args.requests or max(8, clients * 2)
            runs: dict[str, list[Result]] = {s.name: [] for s in services}
            for r in range(args.rounds):
                # Each round starts with another service: the first one measured in a round
                # ran ~15 % slower at one client, whichever it was.
                shift = r % len(services)
                for service in services[shift:] + services[:shift]:
                    # Each round sends texts of its own (no round repeats another's).
                    bodies = make_bodies(texts, per, service.model, (r + 1) * n)
                    load(service, bodies[:clients], clients, min(clients, n))  # warm-up
                    runs[service.name].append(load(service, bodies[r * n :], clients, n))
            print(
                f"\n## {workload}, {clients} concurrent client(s), {n} requests x {args.rounds} rounds"
            )
            print(
                f"{'service':<16}{'req/s':>9}{'texts/s':>10}{'tok/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'errors':>8}  cpu ms/req (service+client)"
            )
            for service in services:
                results = runs[service.name]
                print(
                    f"{service.name:<16}{statistics.median(x.rps for x in results):>9.1f}"
                    f"{statistics.median(x.texts / x.seconds for x in results):>10.1f}"
                    f"{statistics.median(x.tokens / x.seconds for x in results):>9.0f}"
                    f"{statistics.median(x.pct(0.5) for x in results):>9.1f}"
                    f"{statistics.median(x.pct(0.99) for x in results):>9.1f}"
                    f"{sum(x.errors for x in results):>8}  {_median_result(results).cpu_ms()}"
                )
            # The ratios of the medians printed above.
            rps = {name: statistics.median(x.rps for x in rs) for name, rs in runs.items()}
            p99 = {name: statistics.median(x.pct(0.99) for x in rs) for name, rs in runs.items()}
            for peer in ("ours-unbatched", "infinity"):
                if peer in runs:
                    print(
                        f"ours / {peer}: {rps['ours'] / rps[peer]:.2f}x requests/s, "
                        f"p99 {p99['ours']:.0f} vs {p99[peer]:.0f} ms"
                    )


def _median_result(results: list[Result]) -> Result:
    """The round with the median requests/s."""
    return sorted(results, key=lambda x: x.rps)[len(results) // 2]


def in_process_tokens(folder: Path, docs: list[str]) -> None:
    """Tokens/s of ``encode_documents`` in this process on the documents the client sent."""
    from lfm_core import DenseEncoder

    encoder = DenseEncoder.from_pretrained(folder, device="cpu")
    from benchmarks.measure import latencies

    tokens = sum(encoder.count_tokens(docs, input_type="document").tokens)
    times = latencies(
        lambda: encoder.encode_documents(docs, show_progress=False), "cpu", warmup=1, reps=3
    )
    print(
        f"\nin-process encode_documents: {tokens / statistics.median(times):.0f} tokens/s "
        f"({len(docs)} documents, {tokens} tokens, median of 3)"
    )


if __name__ == "__main__":
    sys.exit(main())
