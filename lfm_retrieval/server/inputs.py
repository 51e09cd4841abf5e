"""Request policies the OpenAI and Cohere routes share: query aliases and over-long inputs.

Query aliases: a stock OpenAI client sends no ``input_type``, so the dense model is also
served as ``MODEL:query`` (query prompt) and ``MODEL:document`` (document prompt). A
LangChain or LlamaIndex app makes one client per side, each naming its alias.

Over-long inputs: a text over the model's token limit is refused (400 ``input_too_long``,
naming the item and its token count) unless the request asks to truncate (``"truncate":
true`` on our routes, Cohere's ``truncate: "END"``, its default, on Cohere's).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from lfm_core import DenseEncoder, InputType

from .batching import Encoded, ServedEncoder

if TYPE_CHECKING:
    from .app import _Service

__all__ = ["ALIAS_SUFFIXES", "aliases_of", "refuse_over_long", "resolve_input_type", "split_alias"]

ALIAS_SUFFIXES: dict[str, InputType] = {":query": "query", ":document": "document"}


def split_alias(model: str | None) -> tuple[str | None, InputType | None]:
    """``("NAME", "query")`` for ``"NAME:query"``; ``(model, None)`` for a plain name."""
    if model is not None:
        for suffix, input_type in ALIAS_SUFFIXES.items():
            if model.endswith(suffix):
                return model[: -len(suffix)], input_type
    return model, None


def aliases_of(model_name: str) -> list[str]:
    """The names under which the dense model is also served, one per input type.

    Built on the last part of the id (``LFM2.5-Embedding-350M:query``), which names the
    model as well as the full id or folder does.
    """
    short = model_name.rstrip("/").rsplit("/", 1)[-1]
    return [short + suffix for suffix in ALIAS_SUFFIXES]


def resolve_input_type(requested: InputType | None, alias: InputType | None) -> InputType:
    """The body's ``input_type``, else the alias's, else ``document``; a contradiction is a 400."""
    from .app import ApiError

    if requested is not None and alias is not None and requested != alias:
        raise ApiError(
            400,
            f"input_type={requested!r} contradicts the model alias ':{alias}'; send one of them",
            code="conflicting_input_type",
            param="input_type",
        )
    return requested or alias or "document"


async def refuse_over_long(
    service: _Service,
    encoder: ServedEncoder,
    out: Encoded,
    texts: Sequence[str],
    *,
    param: str,
    single: bool,
    how_to_truncate: str,
) -> None:
    """A 400 naming the first text the model had to cut, with its token count."""
    from .app import ApiError

    if not out.counts.truncated:
        return
    first = out.counts.truncated[0]
    limit = _limit(encoder)
    # The full count (the probe stopped at the limit): one more tokenization, off the loop.
    tokens = await service.batcher.call(partial(_full_count, encoder, texts[first]))
    where = param if single else f"{param}[{first}]"
    name = next(n for side, n in service.names.items() if service.encoders[side] is encoder)
    more = len(out.counts.truncated) - 1
    raise ApiError(
        400,
        f"{where} has {tokens} tokens; {name} reads at most {limit} "
        f"(prompt and special tokens included)"
        + (f", and {more} more input{'s are' if more > 1 else ' is'} over it" if more else "")
        + f": shorten it, or send {how_to_truncate} to embed the first {limit} tokens",
        code="input_too_long",
        param=where,
    )


def _limit(encoder: ServedEncoder) -> int:
    if isinstance(encoder, DenseEncoder):
        return encoder.max_length
    return encoder.document_length


def _full_count(encoder: ServedEncoder, text: str) -> int:
    # 100,000 characters (the service's cap) never reach a million tokens.
    return len(encoder.tokenizer.encode([text], 1_000_000).ids[0])
