"""Request bodies of the service, in the shapes of the APIs each endpoint copies.

Unknown fields are ignored (clients of those APIs send some we do not use, ``user`` for
one); wrong types are refused, never coerced: ``"input": 3`` is an error, not ``"3"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

__all__ = [
    "EmbeddingsRequest",
    "MultivectorRequest",
    "RerankRequest",
    "SearchRequest",
]

EncodingFormat = Literal["float", "base64"]
InputTypeField = Literal["query", "document"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class EmbeddingsRequest(_Request):
    """``POST /v1/embeddings``: OpenAI's request, plus ``input_type`` (Voyage's and Cohere's name)."""

    input: StrictStr | list[StrictStr] = Field(
        description="a text or a list of texts (token-id arrays are not accepted)"
    )
    model: StrictStr | None = Field(None, description="the dense model's id (GET /v1/models)")
    encoding_format: EncodingFormat = "float"
    dimensions: StrictInt | None = Field(
        None, description="must equal the model's width: LFM2.5 vectors cannot be shortened"
    )
    input_type: InputTypeField = Field(
        "document", description="'query' applies the model's query prompt"
    )


class MultivectorRequest(_Request):
    """``POST /v1/multivector``: ColBERT token vectors, one matrix per input."""

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: EncodingFormat = "float"
    input_type: InputTypeField = "document"


class RerankRequest(_Request):
    """``POST /v1/rerank``: Cohere's, Jina's and TEI's shape."""

    query: StrictStr
    documents: list[StrictStr]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="keep the best top_n (default all)")
    return_documents: StrictBool = False


class SearchRequest(_Request):
    """``POST /v1/search``: a query over a collection written by ``lfm_qdrant``."""

    query: StrictStr
    collection: StrictStr
    mode: Literal["dense", "colbert", "hybrid"] | None = Field(
        None, description="default: hybrid when the collection and the models allow it"
    )
    limit: StrictInt = Field(10, ge=1, le=1000)
    prefetch_limit: StrictInt = Field(100, ge=1, le=10000)
    filter: dict[str, Any] | None = Field(
        None,
        description='a Qdrant filter as JSON, e.g. {"must": [{"key": "lang", "match": {"value": "de"}}]}',
    )
    chunks: StrictBool = Field(
        False,
        description="return chunks of long documents (several may share a document) instead "
        "of one hit per document",
    )
    with_payload: StrictBool = True
