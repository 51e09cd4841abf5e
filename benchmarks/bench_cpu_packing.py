"""A/B/C of our float32 CPU linear kernels: plain ``F.linear``, oneDNN-packed, as shipped.

The same random-weight LFM2.5-Embedding-350M checkpoint (the real config, from the data
folder that ``--data DIR`` names: ``beir-scifact/``, ``ntrex128/``, ``lfm2-tokenizer/``) is
loaded three times: with the packing turned off (plain ``F.linear``), with every layer on the
packed kernel whatever the row count, and as users get it
(``lfm_core.onednn.pack_linears_for_cpu``: the packed kernel below the row count from which
``F.linear`` was faster when timed at load). All encode the same log-uniform 16-512-token
SciFact documents, interleaved so that a change in
machine load hits each, and a 32-token query. Prints seconds per repetition, the speed-ups
over ``F.linear``, query p50 and the largest vector difference.

Usage::

    python benchmarks/bench_cpu_packing.py --data DATA --docs 32 --reps 3
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
    workload.add_data_argument(parser)
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--query-reps", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    workload.require_data(args.data, workload.SCIFACT_CORPUS, workload.LFM2_CONFIGS["lfm2-dense"])

    from transformers import AutoTokenizer

    from lfm_core import DenseEncoder
    from lfm_core import encoders as encoders_module

    corpus, source = workload.corpus_texts(args.data, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="lfm-packing-") as tmp:
        folder = workload.write_lfm2_checkpoint(
            args.data, Path(tmp) / "lfm2-dense", "lfm2-dense", corpus, seed=args.seed
        )
        t0 = time.perf_counter()
        shipped = DenseEncoder.from_pretrained(folder, device="cpu")
        shipped_load_s = time.perf_counter() - t0
        real_pack = encoders_module.pack_linears_for_cpu
        try:
            encoders_module.pack_linears_for_cpu = lambda module: real_pack(  # type: ignore[assignment]
                module, lambda *shape: None
            )
            t0 = time.perf_counter()
            packed = DenseEncoder.from_pretrained(folder, device="cpu")
            packed_load_s = time.perf_counter() - t0
            encoders_module.pack_linears_for_cpu = lambda module: 0  # type: ignore[assignment]
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
    encoders = {"F.linear": plain, "packed": packed, "shipped": shipped}
    for encoder in encoders.values():
        encoder.encode_documents(docs[:4])  # warm-up

    print(
        f"load: packed {packed_load_s:.1f} s, shipped {shipped_load_s:.1f} s "
        "(its kernels timed per layer shape)"
    )
    print(f"{args.docs} documents cut from {source}; {args.reps} interleaved repetitions")
    print("| repetition | F.linear s | packed s | shipped s | packed speed-up | shipped speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    vectors = {}
    for rep in range(args.reps):
        seconds = {}
        for name, encoder in encoders.items():
            t0 = time.perf_counter()
            vectors[name] = encoder.encode_documents(docs)
            seconds[name] = time.perf_counter() - t0
        base = seconds["F.linear"]
        print(
            f"| {rep + 1} | {base:.2f} | {seconds['packed']:.2f} | {seconds['shipped']:.2f} "
            f"| {base / seconds['packed']:.2f}× | {base / seconds['shipped']:.2f}× |"
        )

    def p50(encoder: DenseEncoder) -> float:
        times = []
        for _ in range(args.query_reps):
            t0 = time.perf_counter()
            encoder.encode_queries([query])
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    print(
        "query p50: "
        + ", ".join(f"{name} {1e3 * p50(encoder):.1f} ms" for name, encoder in encoders.items())
    )
    diff = max(np.abs(vectors[name] - vectors["F.linear"]).max() for name in ("packed", "shipped"))
    print(f"max abs difference of the document vectors from F.linear's: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
