"""Retrieval quality of each search leg and of the ways to fuse them, on real data.

Indexes a corpus once into an Edge store (all-MiniLM-L6-v2 as the dense model, MiniLM in
PyLate's ColBERT layout as the ColBERT stand-in, Qdrant's BM25 as the lexical leg), then
runs every candidate query shape over the same collection and prints one table:

- SciFact (BEIR test, 300 queries): nDCG@10, Recall@100;
- NTREX-128 cross-lingual (English queries, German documents): Recall@10, MRR@10;
- product codes: entries carrying codes (letters, digits, dashes) among other entries in
  several languages, queried by the bare code: how often the entry comes first.

Usage (from the project root; DATA holds ``beir-scifact/`` and ``ntrex128/``)::

    python -m benchmarks.bench_hybrid --data DATA --store /tmp/hybrid-store

The store is kept: a second run re-indexes nothing (the writer skips stored points).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qdrant_client import models

from benchmarks.bench_colbert_storage import minilm_folder, write_minilm_colbert
from benchmarks.workload import NTREX_DIR, SCIFACT_DIR, add_data_argument, require_data
from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_qdrant import COLBERT, DENSE, LEXICAL, EdgeStore, MultiVectorWriter
from lfm_qdrant.search import RRF_K, Legs, QueryVectors, SearchPlan, encode_queries
from lfm_retrieval.corpus import read_beir_qrels, read_beir_queries, read_corpus
from lfm_retrieval.crosslingual import read_ntrex
from lfm_retrieval.evaluation import evaluate

Shape = Callable[[QueryVectors, int, int], models.QueryRequest]


def _leg(query: Any, using: str, limit: int) -> models.Prefetch:
    return models.Prefetch(query=query, using=using, limit=limit)


def _rrf(k: int = RRF_K, weights: list[float] | None = None) -> models.RrfQuery:
    return models.RrfQuery(rrf=models.Rrf(k=k, weights=weights))


DBSF = models.FusionQuery(fusion=models.Fusion.DBSF)


def shapes() -> dict[str, Shape]:
    """Every candidate query shape: ``(vectors, limit, prefetch_limit) -> request``."""

    def legs(v: QueryVectors, pl: int) -> list[models.Prefetch]:
        out = [_leg(v.dense, DENSE, pl)]
        if v.lexical is not None:
            out.append(_leg(v.lexical, LEXICAL, pl))
        return out

    def rerank(v: QueryVectors, pl: int, fusion: Any) -> models.Prefetch:
        first = legs(v, pl)
        fused = (
            models.Prefetch(prefetch=first, query=fusion, limit=pl) if len(first) > 1 else first[0]
        )
        return models.Prefetch(prefetch=[fused], query=v.colbert, using=COLBERT, limit=pl)

    def req(
        query: Any, limit: int, using: str | None = None, prefetch: Any = None
    ) -> models.QueryRequest:
        return models.QueryRequest(
            query=query, using=using, prefetch=prefetch, limit=limit, with_payload=True
        )

    return {
        "dense": lambda v, n, pl: req(v.dense, n, DENSE),
        "lexical": lambda v, n, pl: req(v.lexical, n, LEXICAL) if v.lexical else None,
        "colbert (exact MaxSim)": lambda v, n, pl: req(v.colbert, n, COLBERT),
        "dense -> MaxSim (before)": lambda v, n, pl: req(
            v.colbert, n, COLBERT, [_leg(v.dense, DENSE, pl)]
        ),
        "RRF(dense, lexical)": lambda v, n, pl: req(_rrf(), n, prefetch=legs(v, pl)),
        "DBSF(dense, lexical)": lambda v, n, pl: req(DBSF, n, prefetch=legs(v, pl)),
        "RRF(d,l) -> MaxSim": lambda v, n, pl: req(
            v.colbert, n, COLBERT, [models.Prefetch(prefetch=legs(v, pl), query=_rrf(), limit=pl)]
        ),
        "RRF(MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(), n, prefetch=[rerank(v, pl, _rrf()), *legs(v, pl)]
        ),
        "RRF(MaxSim, RRF(d,l))": lambda v, n, pl: req(
            _rrf(),
            n,
            prefetch=[
                rerank(v, pl, _rrf()),
                models.Prefetch(prefetch=legs(v, pl), query=_rrf(), limit=pl),
            ],
        ),
        "DBSF(MaxSim, dense, lexical)": lambda v, n, pl: req(
            DBSF, n, prefetch=[rerank(v, pl, DBSF), *legs(v, pl)]
        ),
        "RRF(MaxSim, lexical)": lambda v, n, pl: req(
            _rrf(), n, prefetch=[rerank(v, pl, _rrf()), *legs(v, pl)[1:]]
        ),
        "RRF k=2 (MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(2), n, prefetch=[rerank(v, pl, _rrf(2)), *legs(v, pl)]
        ),
        "RRF k=10 (MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(10), n, prefetch=[rerank(v, pl, _rrf(10)), *legs(v, pl)]
        ),
        "RRF w=1,1,2 (MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(weights=[1.0, 1.0, 2.0][: 1 + len(legs(v, pl))]),
            n,
            prefetch=[rerank(v, pl, _rrf()), *legs(v, pl)],
        ),
        "RRF k=2 (MaxSim, lexical)": lambda v, n, pl: req(
            _rrf(2), n, prefetch=[rerank(v, pl, _rrf(2)), *legs(v, pl)[1:]]
        ),
        "RRF k=2 (dense, lexical)": lambda v, n, pl: req(_rrf(2), n, prefetch=legs(v, pl)),
        "RRF k=prefetch (MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(pl), n, prefetch=[rerank(v, pl, _rrf(pl)), *legs(v, pl)]
        ),
        "RRF k=prefetch, first stage k=60": lambda v, n, pl: req(
            _rrf(pl), n, prefetch=[rerank(v, pl, _rrf()), *legs(v, pl)]
        ),
        "RRF w=1,0.38,1 (MaxSim, dense, lexical)": lambda v, n, pl: req(
            _rrf(weights=[1.0, 0.38, 1.0][: 1 + len(legs(v, pl))]),
            n,
            prefetch=[rerank(v, pl, _rrf()), *legs(v, pl)],
        ),
        "RRF w=0.38,1 (dense, lexical)": lambda v, n, pl: req(
            _rrf(weights=[0.38, 1.0][: len(legs(v, pl))]), n, prefetch=legs(v, pl)
        ),
        "shipped hybrid": None,  # filled in by the writer's own plan
    }


def run_shape(
    writer: MultiVectorWriter,
    name: str,
    shape: Shape | None,
    vectors: list[QueryVectors],
    limit: int,
    pl: int,
) -> tuple[list[list[Any]], float]:
    if shape is None:
        plan = SearchPlan("hybrid", limit, pl, None)
        requests = [plan.request(v) for v in vectors]
    else:
        requests = [shape(v, limit, pl) for v in vectors]
    live = [r for r in requests if r is not None]
    started = time.perf_counter()
    answers = iter(writer.client.query_batch_points(writer.collection_name, live))
    elapsed = time.perf_counter() - started
    return [[] if r is None else list(next(answers).points) for r in requests], elapsed


def load_models(root: Path) -> tuple[DenseEncoder, LateInteractionEncoder]:
    dense = DenseEncoder.from_pretrained(minilm_folder(), device="cpu")
    colbert = LateInteractionEncoder.from_pretrained(
        write_minilm_colbert(root / "minilm-colbert"), device="cpu"
    )
    return dense, colbert


def scifact(
    store: EdgeStore, dense: Any, colbert: Any, data: Path, pl: int, n_docs: int | None
) -> None:
    folder = data / SCIFACT_DIR
    docs = list(read_corpus(folder))
    queries = read_beir_queries(folder)
    qrels = read_beir_qrels(folder, "test")
    qids = [q for q in qrels if q in queries]
    name = "scifact"
    if n_docs is not None:  # every judged document, then the first others up to n_docs
        judged = {d for q in qids for d in qrels[q]}
        others = [d for d in docs if d.id not in judged][: max(0, n_docs - len(judged))]
        docs = [d for d in docs if d.id in judged] + others
        name = f"scifact-{len(docs)}"
    writer = MultiVectorWriter(store, name, dense=dense, colbert=colbert, show_progress=True)
    started = time.perf_counter()
    writer.add(
        [d.content for d in docs],
        ids=[d.id for d in docs],
        metadata=[{"id": d.id} for d in docs],
        skip_existing=True,
    )
    store.optimize(name)
    print(f"SciFact: {len(docs)} documents indexed in {time.perf_counter() - started:.0f} s")
    writer.count()  # reads the collection: the writer now uses its BM25 settings
    legs = Legs(dense, colbert, writer._lexical)
    vectors = encode_queries([queries[q] for q in qids], "hybrid", legs)
    print(
        f"\n| SciFact, {len(qids)} queries | nDCG@10 | Recall@100 | ms/query (engine) |\n|---|---|---|---|"
    )
    for name, shape in shapes().items():
        hits, elapsed = run_shape(writer, name, shape, vectors, 100, pl)
        run: dict[str, dict[str, float]] = {}
        for q, found in zip(qids, hits, strict=True):
            # Long abstracts are stored as chunks: a document scores as its best chunk.
            run[q] = {}
            for h in found:
                run[q].setdefault(h.payload["id"], h.score)
        m = evaluate(qrels, run)
        print(
            f"| {name} | {m['nDCG@10']:.4f} | {m['Recall@100']:.4f} | {elapsed / len(qids) * 1000:.1f} |"
        )


def ntrex(store: EdgeStore, dense: Any, colbert: Any, data: Path, pl: int, lines: int) -> None:
    texts = read_ntrex(data / NTREX_DIR, ("en", "de"), limit=lines)
    writer = MultiVectorWriter(store, "ntrex-de", dense=dense, colbert=colbert)
    writer.add(texts["de"], ids=list(range(len(texts["de"]))), skip_existing=True)
    store.optimize("ntrex-de")
    writer.count()
    legs = Legs(dense, colbert, writer._lexical)
    vectors = encode_queries(texts["en"], "hybrid", legs)
    print(f"\n| NTREX en -> de, {lines} sentences | Recall@10 | MRR@10 |\n|---|---|---|")
    for name, shape in shapes().items():
        hits, _ = run_shape(writer, name, shape, vectors, 10, pl)
        found = [
            next((r + 1 for r, h in enumerate(hs) if h.id == i), None) for i, hs in enumerate(hits)
        ]
        recall = sum(r is not None for r in found) / len(found)
        mrr = sum(1 / r for r in found if r is not None) / len(found)
        print(f"| {name} | {recall:.4f} | {mrr:.4f} |")


CODE_ENTRIES = [
    ("Cordless drill {code}, 18 V, two batteries", "en"),
    ("Akku-Bohrschrauber {code}, 18 V, zwei Akkus", "de"),
    ("Taladro inalámbrico {code}, 18 V, dos baterías", "es"),
    ("Perceuse sans fil {code}, 18 V, deux batteries", "fr"),
    ("Trapano avvitatore {code}, 18 V, due batterie", "it"),
    ("コードレスドリル {code} 18V バッテリー2個付き", "ja"),
    ("무선 드릴 {code}, 18V, 배터리 2개", "ko"),
    ("Batteridrill {code}, 18 V, to batterier", "no"),
    ("Furadeira sem fio {code}, 18 V, duas baterias", "pt"),
    ("Skruvdragare {code}, 18 V, två batterier", "sv"),
    ("مثقاب لاسلكي {code}، 18 فولت، بطاريتان", "ar"),
]


def product_codes(seed: int = 0, n: int = 400) -> tuple[list[str], list[str]]:
    """``n`` catalog entries with codes such as ``XR-4471-B`` or ``E0x8024``; the codes."""
    rng = random.Random(seed)
    texts, codes = [], []
    for i in range(n):
        letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
        code = rng.choice(
            [
                f"{letters}-{rng.randint(1000, 9999)}-{rng.choice('ABCDEF')}",
                f"E0x{rng.randint(1000, 9999)}",
                f"{letters}{rng.randint(100, 999)}",
            ]
        )
        template, _ = CODE_ENTRIES[i % len(CODE_ENTRIES)]
        texts.append(template.format(code=code))
        codes.append(code)
    return texts, codes


def codes_first(store: EdgeStore, dense: Any, colbert: Any, label: str, pl: int) -> None:
    texts, codes = product_codes()
    writer = MultiVectorWriter(store, f"codes-{label}", dense=dense, colbert=colbert)
    ids = writer.add(texts, ids=list(range(len(texts))), skip_existing=True)
    writer.count()
    legs = Legs(dense, colbert, writer._lexical)
    vectors = encode_queries(codes, "hybrid", legs)
    print(
        f"\n| codes first, {label} models, {len(codes)} queries | entry first | entry in top 10 |\n|---|---|---|"
    )
    for name, shape in shapes().items():
        hits, _ = run_shape(writer, name, shape, vectors, 10, pl)
        first = sum(bool(hs) and hs[0].id == ids[i] for i, hs in enumerate(hits)) / len(codes)
        top = sum(any(h.id == ids[i] for h in hs) for i, hs in enumerate(hits)) / len(codes)
        print(f"| {name} | {first:.3f} | {top:.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument(
        "--store", type=Path, required=True, help="Edge store folder (kept between runs)"
    )
    parser.add_argument("--prefetch-limit", type=int, default=100)
    parser.add_argument("--ntrex-lines", type=int, default=1997)
    parser.add_argument(
        "--scifact-docs",
        type=int,
        default=None,
        help="a smaller corpus: every judged document, then others up to N (default: all 5,183)",
    )
    parser.add_argument("--only", choices=("scifact", "ntrex", "codes"), action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ("scifact", "ntrex", "codes"))
    needs = {"scifact": SCIFACT_DIR, "ntrex": NTREX_DIR}
    require_data(args.data, *(needs[name] for name in sorted(only) if name in needs))
    with tempfile.TemporaryDirectory() as tmp:
        dense, colbert = load_models(Path(tmp))
        with EdgeStore(args.store) as store:
            if "scifact" in only:
                scifact(store, dense, colbert, args.data, args.prefetch_limit, args.scifact_docs)
            if "ntrex" in only:
                ntrex(store, dense, colbert, args.data, args.prefetch_limit, args.ntrex_lines)
            if "codes" in only:
                codes_first(store, dense, colbert, "MiniLM", args.prefetch_limit)
                from lfm_core.testing import write_colbert_checkpoint, write_dense_checkpoint

                tiny_dense = DenseEncoder.from_pretrained(
                    write_dense_checkpoint(Path(tmp) / "td"), device="cpu"
                )
                tiny_colbert = LateInteractionEncoder.from_pretrained(
                    write_colbert_checkpoint(Path(tmp) / "tc"), device="cpu"
                )
                codes_first(
                    store, tiny_dense, tiny_colbert, "random-weight tiny", args.prefetch_limit
                )


if __name__ == "__main__":
    main()
