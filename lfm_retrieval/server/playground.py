"""The search playground at ``/`` and the collection list it starts from.

``GET /`` is one HTML page with a small script and a stylesheet, all shipped in
``lfm_retrieval/server/static`` (no build step, no CDN: the host may be offline). The page
calls the service's own JSON endpoints (``/v1/collections``, ``/v1/search`` with
``"explain": true``), so it can do nothing a client could not.

Like every endpoint but ``/health`` it wants the API key when one is set. A browser cannot
send ``Authorization: Bearer``, so the page answers a missing key with a Basic challenge:
the browser asks for a user name (any) and a password (the key), then sends those
credentials with every request of the page, which the service accepts in place of Bearer.

Documents and queries reach the page as JSON and are inserted as text nodes only; the
Content-Security-Policy below allows no inline script, so a ``<script>`` in a document
could not run even if it were parsed.
"""

from __future__ import annotations

from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from lfm_core import CollectionError

from .errors import error_responses

if TYPE_CHECKING:
    from .app import _Service

__all__ = ["add_collections_route", "add_playground"]

# name -> media type: the only files served, so no path from the URL reaches the disk.
_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_MODES = ("hybrid", "dense", "lexical", "colbert")


def add_collections_route(app: FastAPI, service: _Service) -> None:
    """``GET /v1/collections``: the store's collections and the modes each can be searched in."""
    from .app import ApiError

    @app.get("/v1/collections", responses=error_responses(401, 404))
    async def list_collections() -> dict[str, Any]:
        """Collections of the store: name, points, vectors, and the search modes the loaded
        models allow on it (the default first)."""
        if service.store is None:
            raise ApiError(
                404,
                "this service has no Qdrant store; start it with --path DIR or --url URL",
                code="no_store",
            )
        data = await service.batcher.call(partial(_collections, service))
        return {"object": "list", "data": data}


def add_playground(app: FastAPI, service: _Service) -> None:
    """``GET /`` (the page) and ``GET /playground/{app.js,style.css}``."""
    from .app import ApiError

    folder = resources.files("lfm_retrieval.server") / "static"
    files = {name: (folder / name).read_bytes() for name in _STATIC}

    async def page_auth(request: Request) -> None:
        try:
            await service.authorize(request)
        except ApiError as error:
            # Basic, not Bearer: the one scheme a browser asks its user for by itself.
            error.headers = {"WWW-Authenticate": 'Basic realm="lfm-retrieval", charset="UTF-8"'}
            raise

    def answer(name: str) -> Response:
        return Response(files[name], media_type=_STATIC[name], headers=_HEADERS)

    @app.get("/", dependencies=[Depends(page_auth)], include_in_schema=False)
    async def page() -> Response:
        return answer("index.html")

    @app.get("/playground/{name}", dependencies=[Depends(page_auth)], include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in _STATIC or name == "index.html":
            raise ApiError(404, f"no playground file {name!r}", code="not_found")
        return answer(name)


def _collections(service: _Service) -> list[dict[str, Any]]:
    """On the model thread (the store is not async): one entry per collection, by name."""
    from lfm_qdrant import LEXICAL

    store = service.store
    out = []
    for name in sorted(c.name for c in store.get_collections().collections):
        try:
            info = store.get_collection(name)
        except CollectionError:  # dropped between the two calls
            continue
        vectors = info.config.params.vectors
        names = sorted(vectors) if isinstance(vectors, dict) else []
        legs = set(names) & {"dense", "colbert"}
        if LEXICAL in (info.config.params.sparse_vectors or {}):
            legs.add("lexical")
            names.append(LEXICAL)
        usable = {leg for leg in legs if leg == "lexical" or leg in service.encoders}
        modes = [
            mode for mode in _MODES if (mode == "hybrid" and len(usable) > 1) or mode in usable
        ]
        out.append({"name": name, "points": info.points_count, "vectors": names, "modes": modes})
    return out
