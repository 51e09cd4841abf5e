"""Run by .ci/release-check inside a venv that has the wheel with one extra: import that
extra's public classes from the installed package (never the checkout) and use them once
on a tiny checkpoint built on the spot. Prints one line; exits non-zero on any failure.

Usage: python -I release_imports.py EXTRA   (EXTRA: core, langchain, llamaindex, qdrant,
server, ray)
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

PUBLIC = {
    "core": ("lfm_core", ["DenseEncoder", "LateInteractionEncoder", "LoadOptions", "maxsim"]),
    "langchain": ("lfm_langchain", ["LFMEmbeddings", "LFMColBERTReranker", "LFMColBERTRetriever"]),
    "llamaindex": (
        "lfm_llamaindex",
        ["LFMEmbedding", "LFMColBERTRerank", "LFMColBERTRetriever", "LFMQdrantVectorStore"],
    ),
    "qdrant": ("lfm_qdrant", ["MultiVectorWriter", "EdgeStore", "LexicalConfig", "ModelRecord"]),
    "server": ("lfm_retrieval.server", ["create_app", "serve", "ServiceConfig"]),
    "ray": ("lfm_ray", ["index_dataset", "EncodeBatch", "QdrantDatasink", "IndexResult"]),
}


def main(extra: str) -> None:
    module_name, names = PUBLIC[extra]
    module = importlib.import_module(module_name)
    if "site-packages" not in str(module.__file__):
        raise SystemExit(f"{module_name} came from {module.__file__}, not the installed wheel")
    objects = {name: getattr(module, name) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        did = _use(extra, objects, Path(tmp))
    print(f"[{extra}] {module_name}: imported {', '.join(names)}; {did}")


def _use(extra: str, objects: dict, tmp: Path) -> str:
    from lfm_core.testing import write_dense_checkpoint

    dense_dir = write_dense_checkpoint(tmp / "dense")
    if extra == "core":
        vectors = (
            objects["DenseEncoder"].from_pretrained(dense_dir, device="cpu").encode_queries(["x"])
        )
        return f"encoded a query ({vectors.shape[1]}-d)"
    if extra == "langchain":
        vector = objects["LFMEmbeddings"](model_name=str(dense_dir), device="cpu").embed_query("x")
        return f"embed_query gave {len(vector)} floats"
    if extra == "llamaindex":
        vector = objects["LFMEmbedding"](
            model_name=str(dense_dir), device="cpu"
        ).get_query_embedding("x")
        return f"get_query_embedding gave {len(vector)} floats"
    if extra == "qdrant":
        with objects["EdgeStore"](tmp / "store") as store:
            writer = objects["MultiVectorWriter"](store, "docs", dense=str(dense_dir), colbert=None)
            writer.add(["orders ship in two days", "refunds take a week"])
            hits = writer.search("when does my order ship", limit=1)
        return f"wrote 2 documents to an Edge store and found {len(hits)}"
    if extra == "server":
        from lfm_core import DenseEncoder

        app = objects["create_app"](DenseEncoder.from_pretrained(dense_dir, device="cpu"))
        paths = sorted(route.path for route in app.routes if route.path.startswith("/v1/"))
        return f"app routes {', '.join(paths[:3])}, ..."
    if extra == "ray":
        import ray

        return f"ray {ray.__version__} imported (no cluster started)"
    raise SystemExit(f"unknown extra {extra!r}")


if __name__ == "__main__":
    main(sys.argv[1])
