"""`lfm-retrieval index --ray` against the single-process `index`, on this machine.

Both index the same corpus (BEIR SciFact, 5,183 documents, by default) with the same model
(all-MiniLM-L6-v2, dense only) into a fresh embedded Edge store, as separate commands run
one after the other; each is timed from start to finish (model loading, Ray start-up and
the final index build included) and by the documents/s the summary reports. Prints the
overhead of Ray with 2 workers over the single process and the scaling from 1 to 2 workers
(on 2 cores, 2 workers cannot beat one process using both cores: the point is that the
overhead is small).

Usage::

    python -m benchmarks.bench_ray --data DATA                       # full SciFact
    python -m benchmarks.bench_ray --data DATA --docs 1000 --workers 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.workload import SCIFACT_CORPUS, add_data_argument, require_data


def run(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=0, help="first N documents (default all)")
    parser.add_argument("--workers", default="2", help="Ray worker counts to run, e.g. 1,2")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    scifact = require_data(args.data, SCIFACT_CORPUS) / SCIFACT_CORPUS
    from benchmarks.harness import _minilm_dir

    model = str(_minilm_dir())
    workdir = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        corpus = workdir / "corpus.jsonl"
        with scifact.open(encoding="utf-8") as src, corpus.open("w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if args.docs and i >= args.docs:
                    break
                dst.write(line)
        n_docs = sum(1 for _ in corpus.open(encoding="utf-8"))
        base = [
            sys.executable,
            "-m",
            "lfm_retrieval.cli",
            "index",
            str(corpus),
            "--collection",
            "bench",
            "--embedding-model",
            model,
            "--colbert-model",
            "none",
            "--device",
            "cpu",
            "--quiet",
        ]
        print(f"# bench_ray: {n_docs} SciFact documents, all-MiniLM-L6-v2 (dense), Edge store")
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
        )
        results: dict[str, float] = {}
        seconds, line = run([*base, "--path", str(workdir / "single")])
        results["single process"] = seconds
        print(f"single process      {seconds:7.1f} s  {n_docs / seconds:7.1f} docs/s   | {line}")
        for workers in [int(w) for w in args.workers.split(",")]:
            store = workdir / f"ray{workers}"
            seconds, line = run(
                [*base, "--path", str(store), "--ray", "--concurrency", str(workers)]
            )
            results[f"ray {workers}"] = seconds
            print(
                f"ray, {workers} worker(s)    {seconds:7.1f} s  {n_docs / seconds:7.1f} docs/s   | {line}"
            )
        single = results["single process"]
        for name, seconds in results.items():
            if name != "single process":
                print(
                    f"{name} worker(s) / single process: {single / seconds:.2f}x docs/s "
                    f"(Ray overhead {100 * (seconds / single - 1):+.0f} %)"
                )
        print(json.dumps({k: round(v, 2) for k, v in results.items()}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
