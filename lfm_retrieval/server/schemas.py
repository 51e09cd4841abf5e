"""Request bodies of the service, in the shapes of the APIs each endpoint copies.

Unknown fields are ignored (clients of those APIs send some we do not use, ``user`` for
one); wrong types are refused, never coerced: ``"input": 3`` is an error, not ``"3"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

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


def _refuse_token_ids(value: Any) -> Any:
    """Token-id arrays (what LangChain's ``OpenAIEmbeddings`` sends by default) get a fix."""
    items = value if isinstance(value, list) else []
    if isinstance(value, list) and (
        any(isinstance(x, int) for x in items)
        or any(isinstance(x, list) and x and isinstance(x[0], int) for x in items)
    ):
        raise ValueError(
            "token ids are not accepted, send the texts: this service tokenizes with the "
            "model's own tokenizer (LangChain: OpenAIEmbeddings(..., "
            "check_embedding_ctx_length=False))"
        )
    return value


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
    input_type: InputTypeField | None = Field(
        None,
        description="'query' applies the model's query prompt; default: the model alias's "
        "(MODEL:query, MODEL:document), else 'document'",
    )
    truncate: StrictBool = Field(
        False, description="cut texts over the model's token limit instead of refusing them"
    )

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: Any) -> Any:
        return _refuse_token_ids(value)


class MultivectorRequest(_Request):
    """``POST /v1/multivector``: ColBERT token vectors, one matrix per input."""

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: EncodingFormat = "float"
    input_type: InputTypeField = "document"
    truncate: StrictBool = False

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_ids(cls, value: Any) -> Any:
        return _refuse_token_ids(value)


class RerankRequest(_Request):
    """``POST /v1/rerank``: Cohere's, Jina's and TEI's shape."""

    query: StrictStr
    documents: list[StrictStr]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="keep the best top_n (default all)")
    return_documents: StrictBool = False
    explain: StrictBool = Field(
        False, description="per result, the document tokens each query token matched (ColBERT)"
    )


class SearchRequest(_Request):
    """``POST /v1/search``: a query over a collection written by ``lfm_qdrant``."""

    query: StrictStr = Field(examples=["when do orders ship?"])
    collection: StrictStr = Field(
        description="a collection written by lfm_qdrant; 1 to 255 bytes of UTF-8",
        examples=["faq"],
    )
    mode: Literal["hybrid", "dense", "lexical", "colbert"] | None = Field(
        None,
        description="hybrid: every leg the collection has, fused; dense, lexical (BM25) or "
        "colbert alone. Default: hybrid when two legs or more are there",
    )
    fusion: Literal["rrf", "dbsf"] = Field("rrf", description="how hybrid fuses rankings")
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
    explain: StrictBool = Field(
        False,
        description="per hit, `legs`: which legs found it, at what rank and score; and "
        "`explain`: the document tokens each query token matched, from the stored ColBERT "
        "vectors (null where the collection has none)",
    )
