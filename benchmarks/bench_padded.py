"""In-process queries/s of a transformers model (all-MiniLM-L6-v2): transformers' padded
forward (with and without the padded-batch cap and oneDNN packing) against the packed
forward of ``lfm_core.modeling_bert``, the default since 2026-12-02; then how many rows
the padded layout computes per real token.

The queries are the ones ``bench_server`` sends (the first words of SciFact titles, 11-26
tokens, from the data folder that ``--data DIR`` names: ``beir-scifact/``, ``ntrex128/``,
``lfm2-tokenizer/``; seeded synthetic words without it). For each setting it prints
queries/s encoding 1 query at a time and 64 at once (median of 5 calls).

Usage::

    python -m benchmarks.bench_padded --data DATA
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys

import lfm_core.backbones as backbones
import lfm_core.batching as batching
import lfm_core.encoders as encoders
from benchmarks.bench_server import queries_and_docs
from benchmarks.harness import _minilm_dir
from benchmarks.measure import latencies
from benchmarks.workload import SCIFACT_CORPUS, add_data_argument, require_data
from lfm_core import DenseEncoder


def rate(encoder: DenseEncoder, texts: list[str]) -> float:
    times = latencies(lambda: encoder.encode_documents(texts), "cpu", warmup=1, reps=5)
    return len(texts) / statistics.median(times)


def padding(encoder: DenseEncoder, queries: list[str]) -> None:
    """Padded rows per real token of the padded layout, for calls of 8, 16 and 32 queries."""
    lengths = encoder.count_tokens(queries, input_type="document").tokens
    for per_call in (8, 16, 32):
        real = padded = 0
        for start in range(0, len(lengths) - per_call + 1, per_call):
            part = lengths[start : start + per_call]
            plan = batching.plan_batches(
                part,
                max_tokens=encoder.batching.max_tokens_per_batch,
                max_batch_size=encoder.batching.max_batch_size,
                padded=True,
            )
            real += sum(part)
            padded += sum(len(b) * max(part[i] for i in b) for b in plan)
        print(f"padded layout, {per_call} queries per call: {padded / real:.2f} rows per token")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser, without="queries from seeded synthetic words")
    args = parser.parse_args(argv)
    if args.data is not None:
        require_data(args.data, SCIFACT_CORPUS)
    queries, _ = queries_and_docs(args.data, 600)
    cap = batching._MAX_PADDING
    pack = encoders.pack_linears_checked
    print(
        f"# bench_padded: all-MiniLM-L6-v2, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"{'layout':<8}{'padding cap':<13}{'oneDNN':<8}{'1 query/s':>11}{'64 queries/s':>14}")
    runs_packed = backbones.runs_packed
    settings = [("padded", False, False), ("padded", True, False), ("padded", True, True)]
    for layout, capped, packed in [*settings, ("packed", False, True)]:
        batching._MAX_PADDING = cap if capped else math.inf
        encoders.pack_linears_checked = pack if packed else (lambda module, probe: 0)
        if layout == "padded":
            backbones.runs_packed = lambda model: False
        try:
            encoder = DenseEncoder.from_pretrained(_minilm_dir(), device="cpu")
            assert encoder.backbone.padded == (layout == "padded")
            one = statistics.median(rate(encoder, queries[i : i + 1]) for i in range(8))
            many = rate(encoder, queries[:64])
        finally:
            batching._MAX_PADDING = cap
            encoders.pack_linears_checked = pack
            backbones.runs_packed = runs_packed
        cap_shown = "-" if layout == "packed" else ("on" if capped else "off")
        print(f"{layout:<8}{cap_shown:<13}{'on' if packed else 'off':<8}{one:>11.1f}{many:>14.1f}")
    padding(encoder, queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
