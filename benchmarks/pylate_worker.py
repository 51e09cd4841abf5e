"""PyLate side of the parity test and of the benchmark, run by the PyLate interpreter.

PyLate 1.6 pins sentence-transformers 5.3 and transformers <= 5.3, which clash with
the project's environment, so PyLate lives in its own virtual environment
(``benchmarks/pylate_env.py`` builds it) and this script is the only code that runs
there. It imports nothing from the project unless ``--lfm-core-backbone`` asks for it.
Input and output travel as files: a JSON request in, ``.npz`` vectors or JSON timings out.

Commands:
    build   make a PyLate ColBERT checkpoint from a base model (PyLate adds ``[Q] ``/``[D] ``
            and a random ``1_Dense``) and save it.
    encode  encode queries and documents one text at a time and in batches (``--build-from``:
            ``build`` first); write the vectors, PyLate's token ids and masks, and MaxSim
            scores to an ``.npz``.
    bench   time ``ColBERT.encode`` (throughput, single-query latency, rerank); write JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _load(model_dir: str, device: str, dtype: str, lfm_core_backbone: bool) -> Any:
    from pylate import models

    # An explicit dtype: transformers 5 would otherwise keep the checkpoint's (bf16).
    model = models.ColBERT(
        model_name_or_path=model_dir, device=device, model_kwargs={"dtype": getattr(torch, dtype)}
    )
    if lfm_core_backbone:
        _plug_lfm_core(model, model_dir, device)
    model.eval()
    return model


class _PackedAsAutoModel(torch.nn.Module):
    """lfm_core's bidirectional LFM2 behind the ``AutoModel`` call sentence-transformers makes.

    Runs each row alone; positions with ``attention_mask == 0`` stay in the sequence and
    are only masked as attention keys, which is PyLate's query expansion. Pads of a
    batched document would then go through the convolution as content, so in this mode
    ``encode`` runs one text at a time only, as the LFM2.5 reference outputs were made.
    """

    def __init__(self, backbone: torch.nn.Module, config: Any):
        super().__init__()
        self.backbone = backbone
        self.config = config  # sentence-transformers reads flags from it

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> tuple:
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            cu = torch.tensor([0, ids.numel()], dtype=torch.int32, device=ids.device)
            rows.append(self.backbone(ids, cu, mask.bool()))
        return (torch.stack(rows),)


def _plug_lfm_core(model: Any, model_dir: str, device: str) -> None:
    repo_root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo_root))
    from lfm_core.backbones import load_backbone

    backbone = load_backbone(Path(model_dir)).to(device=device, dtype=torch.float32)
    transformer = model[0]
    transformer.auto_model = _PackedAsAutoModel(backbone.eval(), transformer.auto_model.config)
    transformer.model_forward_params = {"input_ids", "attention_mask"}


def build(base: str, out: str, *, embedding_size: int = 128, seed: int = 0) -> None:
    """PyLate's own conversion of a base encoder into a ColBERT checkpoint, saved to ``out``."""
    from pylate import models

    torch.manual_seed(seed)  # the 1_Dense init and the [Q]/[D] embedding rows
    model = models.ColBERT(model_name_or_path=base, embedding_size=embedding_size, device="cpu")
    model.save(out)


def cmd_build(args: argparse.Namespace) -> None:
    build(args.base, args.out, embedding_size=args.embedding_size, seed=args.seed)


def _as_float32(vectors: Any) -> np.ndarray:
    return np.asarray(vectors, dtype=np.float32)


def cmd_encode(args: argparse.Namespace) -> None:
    from pylate import scores

    request = json.loads(Path(args.input).read_text(encoding="utf-8"))
    queries: list[str] = request["queries"]
    documents: list[str] = request["documents"]
    batch_size = int(request.get("batch_size", 32))
    if args.build_from:
        build(args.build_from, args.model, seed=args.seed)  # then load it back, as a user would
    model = _load(args.model, "cpu", "float32", args.lfm_core_backbone)
    out: dict[str, np.ndarray] = {}
    for kind, texts, is_query in (("query", queries, True), ("document", documents, False)):
        for i, text in enumerate(texts):
            single = model.encode([text], is_query=is_query, batch_size=1, output_value=None)
            out[f"{kind}.single.{i}.input_ids"] = np.asarray(single["input_ids"][0], dtype=np.int64)
            out[f"{kind}.single.{i}.attention_mask"] = np.asarray(
                single["attention_mask"][0], dtype=np.int64
            )
            out[f"{kind}.single.{i}.kept"] = np.asarray(single["masks"][0], dtype=bool)
            # The default output (filtered, normalized): what a PyLate user stores.
            out[f"{kind}.single.{i}"] = _as_float32(
                model.encode([text], is_query=is_query, batch_size=1)[0]
            )
        if not args.lfm_core_backbone:
            batched = model.encode(texts, is_query=is_query, batch_size=batch_size)
            for i, vectors in enumerate(batched):
                out[f"{kind}.batched.{i}"] = _as_float32(vectors)
    for i in range(len(queries)):
        q = torch.from_numpy(out[f"query.single.{i}"])[None]
        # One document at a time: PyLate's rank.rerank pads documents with zero vectors
        # and no mask, which is not MaxSim for short documents; this is.
        row = [
            float(
                scores.colbert_scores(q, torch.from_numpy(out[f"document.single.{j}"])[None])[0, 0]
            )
            for j in range(len(documents))
        ]
        out[f"maxsim.{i}"] = np.asarray(row, dtype=np.float32)
    meta = {
        "query_prefix_id": model.query_prefix_id,
        "document_prefix_id": model.document_prefix_id,
        "pad_token_id": model.tokenizer.pad_token_id,
        "query_length": model.query_length,
        "document_length": model.document_length,
        "attend_to_expansion_tokens": model.attend_to_expansion_tokens,
        "skiplist_ids": sorted(int(i) for i in model.skiplist if i is not None),
    }
    out["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(args.output, **out)


def cmd_bench(args: argparse.Namespace) -> None:
    """Time PyLate on the harness's inputs (see ``benchmarks/harness.py``); write JSON."""
    import measure  # beside this script, which Python put first on sys.path
    from pylate import rank

    request = json.loads(Path(args.input).read_text(encoding="utf-8"))
    device = request["device"]
    torch.set_num_threads(request["threads"])
    model = _load(args.model, device, request["dtype"], lfm_core_backbone=False)
    documents: list[str] = request["documents"]
    query: str = request["query"]
    rerank_docs: list[str] = request["rerank_documents"]

    def encode_documents(texts: list[str], batch_size: int) -> None:
        model.encode(texts, is_query=False, batch_size=batch_size)

    def rerank() -> None:
        q = model.encode([query], is_query=True)
        d = model.encode([rerank_docs], is_query=False)
        rank.rerank(
            documents_ids=[list(range(len(rerank_docs)))],
            queries_embeddings=q,
            documents_embeddings=d,
        )

    encode_documents(documents[:8], 8)  # warm-up
    result = {
        "versions": _versions(),
        "weights_bytes": measure.weights_bytes(model),
        "throughput": measure.batch_size_runs(
            encode_documents,
            documents,
            device,
            default=request["default_batch_size"],
            candidates=request["candidates"],
            sweep_docs=request["sweep_docs"],
        ),
        "latency_seconds": measure.latencies(
            lambda: model.encode([query], is_query=True),
            device,
            warmup=request["warmup"],
            reps=request["latency_reps"],
        ),
        "rerank_seconds": measure.latencies(rerank, device, warmup=1, reps=request["rerank_reps"]),
    }
    Path(args.output).write_text(json.dumps(result), encoding="utf-8")


def _versions() -> dict[str, str]:
    import pylate
    import sentence_transformers
    import transformers

    return {
        "pylate": pylate.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build")
    build_cmd.add_argument("--base", required=True)
    build_cmd.add_argument("--out", required=True)
    build_cmd.add_argument("--embedding-size", type=int, default=128)
    build_cmd.add_argument("--seed", type=int, default=0)
    encode_cmd, bench_cmd = sub.add_parser("encode"), sub.add_parser("bench")
    for p in (encode_cmd, bench_cmd):
        p.add_argument("--model", required=True)
        p.add_argument("--input", required=True)
        p.add_argument("--output", required=True)
    encode_cmd.add_argument("--lfm-core-backbone", action="store_true")
    encode_cmd.add_argument("--build-from", default=None, help="build --model from this base first")
    encode_cmd.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    {"build": cmd_build, "encode": cmd_encode, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    main()
