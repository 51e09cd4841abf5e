"""``"explain": true`` on /v1/search and /v1/rerank, GET /v1/collections, and the playground's
routes (auth, files, headers), in process over ASGI."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_qdrant import EdgeStore, MultiVectorWriter
from lfm_retrieval.server import ServiceConfig, create_app

KEY = "explain-test-key"
DOCS = [
    "Orders ship within two business days.",
    "Returns are accepted for 30 days with a receipt.",
    "Das Café öffnet um neun Uhr.",
    "<script>document.title='pwned'</script> Gift cards never expire.",
]
LANGS = ["en", "en", "de", "en"]


@pytest.fixture
def store(
    tmp_path: Path, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> Iterator[EdgeStore]:
    with EdgeStore(tmp_path / "store") as edge:
        MultiVectorWriter(edge, "faq", dense=tiny_dense, colbert=tiny_colbert).add(
            DOCS, metadata=[{"lang": lang} for lang in LANGS]
        )
        MultiVectorWriter(edge, "dense_only", dense=tiny_dense).add(DOCS[:2])
        yield edge


def call(
    app: Any, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    async def main() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, headers=headers, **kw)

    return asyncio.run(main())


BEARER = {"Authorization": f"Bearer {KEY}"}


def app_for(store: Any, dense: Any, colbert: Any, **config: Any) -> Any:
    return create_app(dense, colbert, store=store, config=ServiceConfig(api_key=KEY, **config))


@pytest.mark.parametrize("mode", ["hybrid", "colbert", "dense"])
def test_search_explain_matches_add_up_to_the_colbert_score(
    store: EdgeStore, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder, mode: str
) -> None:
    app = app_for(store, tiny_dense, tiny_colbert)
    query = "when do orders ship?"
    body = {"query": query, "collection": "faq", "mode": mode, "limit": 4, "explain": True}
    answer = call(app, "POST", "/v1/search", BEARER, json=body).json()
    assert len(answer["results"]) == 4
    for hit in answer["results"]:
        why = hit["explain"]
        assert why is not None and not why["pooled"]
        assert sum(m["similarity"] for m in why["matches"]) == pytest.approx(why["score"], abs=1e-5)
        if mode == "colbert":  # the hit's score is that same MaxSim
            assert why["score"] == pytest.approx(hit["score"], abs=1e-4)
        if mode == "hybrid" and "colbert" in hit["legs"]:  # hybrid fuses it with the legs
            assert why["score"] == pytest.approx(hit["legs"]["colbert"]["score"], abs=1e-4)
        text = hit["payload"]["text"]
        for m in why["matches"]:
            if m["document_span"] is not None:
                start, end = m["document_span"]
                assert text[start:end] == m["document_token"]
    plain = call(app, "POST", "/v1/search", BEARER, json={**body, "explain": False}).json()
    assert all("explain" not in hit for hit in plain["results"])
    assert [h["id"] for h in plain["results"]] == [h["id"] for h in answer["results"]]


def test_search_explain_on_a_dense_only_collection_is_null(
    store: EdgeStore, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    app = app_for(store, tiny_dense, tiny_colbert)
    body = {"query": "orders", "collection": "dense_only", "explain": True}
    answer = call(app, "POST", "/v1/search", BEARER, json=body).json()
    assert answer["results"] and all(hit["explain"] is None for hit in answer["results"])


def test_rerank_explain(tiny_colbert: LateInteractionEncoder) -> None:
    app = app_for(None, None, tiny_colbert)
    docs = ["Orders ship fast.", "", "Das Café öffnet."]
    body = {"query": "orders ship", "documents": docs, "explain": True}
    answer = call(app, "POST", "/v1/rerank", BEARER, json=body).json()
    by_index = {r["index"]: r for r in answer["results"]}
    assert by_index[1]["explain"] is None  # blank: not scored
    for i in (0, 2):
        why = by_index[i]["explain"]
        assert why["score"] == pytest.approx(by_index[i]["relevance_score"], abs=1e-5)
        assert sum(m["similarity"] for m in why["matches"]) == pytest.approx(why["score"], abs=1e-5)
        for m in why["matches"]:
            if m["document_span"]:
                assert docs[i][slice(*m["document_span"])] == m["document_token"]
    plain = call(app, "POST", "/v1/rerank", BEARER, json={**body, "explain": False}).json()
    assert all("explain" not in r for r in plain["results"])
    refused = call(app, "POST", "/v1/rerank", BEARER, json={**body, "explain": "yes"})
    assert refused.status_code == 400 and "explain" in refused.json()["error"]["message"]


def test_collections_lists_names_points_and_modes(
    store: EdgeStore, tiny_dense: DenseEncoder, tiny_colbert: LateInteractionEncoder
) -> None:
    answer = call(app_for(store, tiny_dense, tiny_colbert), "GET", "/v1/collections", BEARER)
    data = {c["name"]: c for c in answer.json()["data"]}
    assert data["faq"]["modes"] == ["hybrid", "dense", "lexical", "colbert"]
    assert data["faq"]["points"] == len(DOCS)
    assert data["dense_only"]["modes"] == ["hybrid", "dense", "lexical"]  # BM25 needs no model
    # only the modes the loaded models allow
    answer = call(app_for(store, None, tiny_colbert), "GET", "/v1/collections", BEARER)
    assert {c["name"]: c["modes"] for c in answer.json()["data"]} == {
        "dense_only": ["lexical"],
        "faq": ["hybrid", "lexical", "colbert"],
    }
    assert call(app_for(store, tiny_dense, None), "GET", "/v1/collections").status_code == 401
    no_store = call(app_for(None, tiny_dense, None), "GET", "/v1/collections", BEARER)
    assert no_store.status_code == 404 and no_store.json()["error"]["code"] == "no_store"


def test_playground_wants_the_key_and_asks_the_browser_for_it(
    tiny_dense: DenseEncoder,
) -> None:
    app = app_for(None, tiny_dense, None)
    refused = call(app, "GET", "/")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert call(app, "GET", "/playground/app.js").status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(f"any:{KEY}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"any:nope").decode()}
    assert call(app, "GET", "/", wrong).status_code == 401
    assert call(app, "GET", "/", {"Authorization": "Basic %%%"}).status_code == 401
    page = call(app, "GET", "/", basic)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/playground/app.js"' in page.text
    script = call(app, "GET", "/playground/app.js", BEARER)
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text
    assert call(app, "GET", "/playground/style.css", basic).status_code == 200
    # the Basic credentials of the page work on the API it calls
    assert call(app, "GET", "/v1/models", basic).status_code == 200
    assert call(app, "GET", "/playground/..%2Fapp.py", BEARER).status_code == 404
    assert call(app, "GET", "/health").status_code == 200


def test_playground_can_be_turned_off(tiny_dense: DenseEncoder) -> None:
    app = app_for(None, tiny_dense, None, playground=False)
    assert call(app, "GET", "/", BEARER).status_code == 404
    assert call(app, "GET", "/playground/app.js", BEARER).status_code == 404
