"""One way to get an encoder: from a loaded one, a hub id or a folder, plus typed options.

Every adapter (LangChain, LlamaIndex), the Qdrant writer and the CLI call
:func:`resolve_encoder`, so they share one rule:

- an encoder object is used as it is (shared between adapters); a ``model_name`` or a
  ``device`` that contradicts it, or a loading option (which only means something when
  loading), is an :class:`~lfm_core.InputError` naming it;
- a name or folder is loaded with the options;
- nothing at all loads the adapter's default model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch

from .devices import parse_device
from .encoders import DenseEncoder, DTypeName, LateInteractionEncoder
from .errors import InputError
from .validation import check_positive_int

__all__ = ["LoadOptions", "resolve_encoder"]

EncoderT = TypeVar("EncoderT", DenseEncoder, LateInteractionEncoder)


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded: the arguments of ``from_pretrained``, in one typed object.

    Attributes:
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda:1"``, ...
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 elsewhere), ``"float32"``, ...
        max_tokens_per_batch: token budget of one forward pass (``None``: the default).
        max_batch_size: most texts in one forward pass (``None``: the default).
        quantize: ``"int8"`` on CPU, or ``None``.
        compile: wrap the model in ``torch.compile``.
        revision: hub branch, tag or commit to pin.
        cache_dir: hub cache folder.
        allow_pickle: accept ``pytorch_model.bin`` weights.
        normalize: L2-normalize dense vectors (ColBERT vectors always are).
    """

    device: str = "auto"
    dtype: DTypeName = "auto"
    max_tokens_per_batch: int | None = None
    max_batch_size: int | None = None
    quantize: Literal["int8"] | None = None
    compile: bool = False
    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    allow_pickle: bool = False
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("max_tokens_per_batch", "max_batch_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, check_positive_int(value, name))

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None, owner: str) -> LoadOptions:
        """Options from a ``model_kwargs=`` dict, naming an unknown key."""
        if not kwargs:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InputError(
                f"{owner}: unknown model_kwargs {unknown}; known: {', '.join(sorted(known))}"
            )
        return cls(**kwargs)

    def replace(self, **changes: Any) -> LoadOptions:
        """A copy with the non-``None`` ``changes`` applied."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def changed(self) -> list[str]:
        """The names of the options that differ from their defaults."""
        default = LoadOptions()
        return [
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]

    def load(self, kind: type[EncoderT], name_or_path: str | os.PathLike[str]) -> EncoderT:
        """``kind.from_pretrained(name_or_path, ...)`` with these options."""
        kwargs: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype,
            "max_tokens_per_batch": self.max_tokens_per_batch,
            "max_batch_size": self.max_batch_size,
            "quantize": self.quantize,
            "compile": self.compile,
            "revision": self.revision,
            "cache_dir": self.cache_dir,
            "allow_pickle": self.allow_pickle,
        }
        if kind is DenseEncoder:
            kwargs["normalize"] = self.normalize
        elif not self.normalize:
            raise InputError(
                "normalize=False is a dense option: ColBERT vectors are always normalized"
            )
        return kind.from_pretrained(name_or_path, **kwargs)


def resolve_encoder(
    kind: type[EncoderT],
    encoder: Any = None,
    *,
    model_name: str | os.PathLike[str] | None = None,
    options: LoadOptions | None = None,
    default_model: str | None = None,
    owner: str,
) -> EncoderT:
    """The encoder an adapter, the writer or the CLI should use; loads only when needed.

    Args:
        kind: ``DenseEncoder`` or ``LateInteractionEncoder``.
        encoder: a loaded encoder to share (or any object with ``dim``, ``encode_queries`` and
            ``encode_documents``), a hub id or folder to load, or ``None``.
        model_name: a hub id or folder to load when ``encoder`` is ``None``.
        options: how to load; with a loaded encoder only ``device`` may be given, and must match.
        default_model: loaded when neither ``encoder`` nor ``model_name`` is given.
        owner: who asks, for the messages (``"LFMEmbeddings"``).

    Raises:
        TypeError: ``encoder`` is the other kind of encoder, or not an encoder at all.
        InputError: a ``model_name``, ``device`` or loading option contradicts a loaded
            ``encoder``, or there is nothing to load.
    """
    options = options or LoadOptions()
    if isinstance(model_name, os.PathLike):
        model_name = os.fspath(model_name)
    if isinstance(encoder, (str, os.PathLike)):
        if model_name is not None and os.fspath(encoder) != model_name:
            raise InputError(
                f"{owner}: two models given ({os.fspath(encoder)!r} and {model_name!r})"
            )
        return options.load(kind, encoder)
    if encoder is None:
        name = model_name if model_name is not None else default_model
        if name is None:
            raise InputError(f"{owner}: no model given; pass model_name= or encoder=")
        return options.load(kind, name)
    other = LateInteractionEncoder if kind is DenseEncoder else DenseEncoder
    if isinstance(encoder, other):
        raise TypeError(
            f"{owner}: encoder is {type(encoder).__name__}; expected lfm_core.{kind.__name__} "
            f"(a {type(encoder).__name__} belongs to the other argument)"
        )
    if not isinstance(encoder, kind) and not _duck(encoder):
        raise TypeError(
            f"{owner}: encoder is {type(encoder).__name__}; expected lfm_core.{kind.__name__}, "
            "a model name or a folder"
        )
    own_name = getattr(encoder, "model_name", None)
    if model_name is not None and model_name != own_name:
        raise InputError(
            f"{owner}: model_name={model_name!r} does not match the encoder passed in "
            f"({own_name!r}); pass model_name= or encoder=, not both"
        )
    loading = [name for name in options.changed() if name != "device"]
    if loading:
        raise InputError(
            f"{owner}: {', '.join(loading)} cannot be combined with a loaded encoder (they are "
            f"used only when loading); pass them to {kind.__name__}.from_pretrained(...)"
        )
    own_device = getattr(encoder, "device", None)
    if (
        options.device != "auto"
        and isinstance(own_device, torch.device)
        and not _same_device(parse_device(options.device), own_device)
    ):
        raise InputError(
            f"{owner}: device={options.device!r} does not match the encoder passed in, "
            f"which runs on {own_device}; load the encoder on that device, or drop device="
        )
    return encoder


def _duck(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("dim", "encode_queries", "encode_documents"))


def _same_device(wanted: torch.device, actual: torch.device) -> bool:
    """``cuda`` matches ``cuda:0``: an index left out means "the current one"."""
    if wanted.type != actual.type:
        return False
    return wanted.index is None or wanted.index == (actual.index or 0)
