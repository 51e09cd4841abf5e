"""Use a running `lfm-retrieval serve` from the clients you already have.

Start the service (local folders, offline):

    lfm-retrieval serve --embedding-model /models/LFM2.5-Embedding-350M \\
        --colbert-model /models/LFM2.5-ColBERT-350M --port 8080

then:

    pip install openai langchain-openai httpx
    python examples/http_service.py --url http://127.0.0.1:8080

It embeds with the OpenAI SDK and with LangChain's ``OpenAIEmbeddings`` (the same vectors),
reranks with the Cohere-style endpoint and prints the ranking.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx
import numpy as np
from langchain_openai import OpenAIEmbeddings
from openai import OpenAI

DOCS = [
    "Orders ship within two business days.",
    "Rücksendungen sind 30 Tage lang möglich.",
    "La tienda cierra los domingos.",
    "Gift cards never expire.",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", default="none", help="the key of --api-key-env, if set")
    parser.add_argument("--query", default="¿Cuándo llega mi pedido?")
    args = parser.parse_args(argv)

    models = httpx.get(f"{args.url}/v1/models", headers={"Authorization": f"Bearer {args.api_key}"})
    models.raise_for_status()
    dense = next(m["id"] for m in models.json()["data"] if m["kind"] == "dense")

    client = OpenAI(base_url=f"{args.url}/v1", api_key=args.api_key)
    documents = np.array(
        [d.embedding for d in client.embeddings.create(model=dense, input=DOCS).data]
    )
    query = (
        client.embeddings.create(model=dense, input=args.query, extra_body={"input_type": "query"})
        .data[0]
        .embedding
    )
    print("dense cosine:", np.round(documents @ np.array(query), 3).tolist())

    # LangChain's OpenAI class: send texts, not tiktoken ids (which it would download).
    langchain = OpenAIEmbeddings(
        model=dense,
        base_url=f"{args.url}/v1",
        api_key=args.api_key,
        check_embedding_ctx_length=False,
    )
    same = np.allclose(langchain.embed_documents(DOCS), documents, atol=1e-5)
    print("LangChain OpenAIEmbeddings gives the same vectors:", same)

    ranked = httpx.post(
        f"{args.url}/v1/rerank",
        json={"query": args.query, "documents": DOCS, "top_n": 3, "return_documents": True},
        headers={"Authorization": f"Bearer {args.api_key}"},
    )
    ranked.raise_for_status()
    for item in ranked.json()["results"]:
        print(f"{item['relevance_score']:8.3f}  {item['document']['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
