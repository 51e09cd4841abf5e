"""A/B of our float32 CPU path with and without oneDNN pre-packed linear weights.

The same random-weight LFM2.5-Embedding-350M checkpoint (real config) is loaded twice:
once as users get it (``lfm_core.onednn.pack_linears_for_cpu`` applied), once with the
packing turned off (plain ``F.linear``). Both encode the same log-uniform 16-512-token
documents, interleaved so that a change in machine load hits both, and a 32-token query.
Prints seconds per repetition, the speed-up, query p50 and the largest vector difference.

Usage::

    python benchmarks/bench_cpu_packing.py --docs 32 --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--query-reps", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from lfm_core import DenseEncoder
    from lfm_core import encoders as encoders_module

    corpus, source = workload.corpus_texts(seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="lfm-packing-") as tmp:
        folder = workload.write_lfm2_checkpoint(
            Path(tmp) / "lfm2-dense", "lfm2-dense", corpus, seed=args.seed
        )
        packed = DenseEncoder.from_pretrained(folder, device="cpu")
        real_pack = encoders_module.pack_linears_for_cpu
        encoders_module.pack_linears_for_cpu = lambda module: 0  # type: ignore[assignment]
        try:
            plain = DenseEncoder.from_pretrained(folder, device="cpu")
        finally:
            encoders_module.pack_linears_for_cpu = real_pack
        tok = AutoTokenizer.from_pretrained(str(folder))

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    lengths = workload.log_uniform_lengths(args.docs, seed=args.seed)
    docs = workload.cut_texts(encode, decode, corpus, lengths, seed=args.seed)
    query = workload.cut_texts(encode, decode, corpus, [28], seed=args.seed + 1)[0]
    for encoder in (plain, packed):
        encoder.encode_documents(docs[:4])  # warm-up

    print(f"{args.docs} documents cut from {source}; {args.reps} interleaved repetitions")
    print("| repetition | F.linear s | oneDNN-packed s | speed-up |")
    print("|---:|---:|---:|---:|")
    for rep in range(args.reps):
        t0 = time.perf_counter()
        a = plain.encode_documents(docs)
        t1 = time.perf_counter()
        b = packed.encode_documents(docs)
        t2 = time.perf_counter()
        print(f"| {rep + 1} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t1 - t0) / (t2 - t1):.2f}× |")

    def p50(encoder: DenseEncoder) -> float:
        times = []
        for _ in range(args.query_reps):
            t0 = time.perf_counter()
            encoder.encode_queries([query])
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    print(f"query p50: F.linear {1e3 * p50(plain):.1f} ms, packed {1e3 * p50(packed):.1f} ms")
    print(f"max abs difference of the document vectors: {np.abs(a - b).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
