"""Checkpoint files -> configs and state dicts.

Reads the sentence-transformers and PyLate on-disk layouts as they are
(``modules.json``, ``config_sentence_transformers.json``, ``sentence_bert_config.json``,
``1_Pooling/config.json``, ``1_Dense/config.json``); the ``type`` strings in
``modules.json`` are matched against a fixed table and never imported. Only
safetensors are read unless the caller opts in to pickle weights, and nothing from a
model repository is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Literal

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import ColBERTHeadConfig, DenseHeadConfig, PoolingMode
from .errors import CheckpointError, ModelUnavailableError

ModuleKind = Literal["transformer", "pooling", "dense", "normalize"]

# modules.json `type` -> what it is. Class names from sentence-transformers (old and new
# module paths) and PyLate; anything else is refused rather than imported.
_MODULE_CLASSES: dict[str, ModuleKind] = {
    "Transformer": "transformer",
    "Pooling": "pooling",
    "Dense": "dense",
    "Normalize": "normalize",
}
_MODULE_PACKAGES = ("sentence_transformers.", "pylate.")

# Files fetched from the hub. No code (*.py) ever; pickles only on request.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
_PICKLE_PATTERNS = ["*.bin"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# Key renames for config_sentence_transformers.json (older PyLate spellings).
_LEGACY_COLBERT_KEYS = {"query_token": "query_prefix", "document_token": "document_prefix"}


@dataclass(frozen=True)
class ModuleSpec:
    """One entry of ``modules.json``: what it is and the folder holding its files."""

    kind: ModuleKind
    folder: Path


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_pickle: bool = False,
) -> Path:
    """Return a local folder for a hub id or a local path, downloading if needed.

    Args:
        name_or_path: a local folder, or a Hugging Face Hub id such as
            ``"LiquidAI/LFM2.5-Embedding-350M"``.
        revision: a branch, tag or commit to pin (hub ids only).
        cache_dir: where hub downloads are cached (default: the hub's own).
        allow_pickle: also fetch ``*.bin`` pickle weights.

    Raises:
        CheckpointError: the folder does not exist, the id is malformed, or the hub
            cannot be reached and the model is not cached.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    name = str(name_or_path)
    if path.is_absolute() or name.startswith((".", "~")) or ".." in Path(name).parts:
        raise CheckpointError(f"model folder {name!r} does not exist")
    if not _REPO_ID.match(name):
        raise CheckpointError(
            f"{name!r} is neither an existing folder nor a hub id like 'LiquidAI/LFM2.5-Embedding-350M'"
        )
    patterns = _HUB_PATTERNS + (_PICKLE_PATTERNS if allow_pickle else [])
    try:
        folder = snapshot_download(
            name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=patterns,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        if offline:
            why = "HF_HUB_OFFLINE is set"
        elif isinstance(exc, LocalEntryNotFoundError):  # what a failed connection raises
            why = "no connection"
        else:
            why = type(exc).__name__
        raise ModelUnavailableError(
            f"cannot load model {name!r}: it is not cached and the Hugging Face Hub "
            f"could not be reached ({why}). Download it where the hub is reachable "
            f"(`hf download {name} --local-dir {name.split('/')[-1]}`) and load that folder instead",
            model=name,
            reason=why,
        ) from exc
    return Path(folder)


_DIGEST_SAMPLES = 64
_DIGEST_SAMPLE_BYTES = 4096


def checkpoint_digest(modules: list[ModuleSpec]) -> str:
    """A short fingerprint of a checkpoint's weights and configs, cheap at any size.

    Hashes every module's ``config.json`` and, for each weights file, its size and 64
    samples of 4 KiB spread evenly over the file (its header included). Two fine-tunes of
    one architecture differ in every weight, so they differ here; loading the same files
    with another dtype, device or quantization gives the same digest.

    Returns:
        ``"sha256:<32 hex>"``.
    """
    digest = hashlib.sha256()
    for spec in modules:
        if not spec.folder.is_dir():  # e.g. a Normalize module, which has no files
            continue
        for path in sorted(spec.folder.iterdir()):
            if path.name == "config.json" or path.suffix in (".safetensors", ".bin"):
                digest.update(f"{spec.kind}/{path.name}".encode())
                digest.update(_sampled_bytes(path))
    return f"sha256:{digest.hexdigest()[:32]}"


def _sampled_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    parts = [str(size).encode()]
    with open(path, "rb") as handle:
        if size <= _DIGEST_SAMPLES * _DIGEST_SAMPLE_BYTES:
            parts.append(handle.read())
        else:
            step = (size - _DIGEST_SAMPLE_BYTES) // (_DIGEST_SAMPLES - 1)
            for i in range(_DIGEST_SAMPLES):
                handle.seek(i * step)
                parts.append(handle.read(_DIGEST_SAMPLE_BYTES))
    return b"".join(parts)


def read_json(folder: Path, name: str, *, required: bool = True) -> Any:
    """Parse ``folder/name``; a missing optional file gives ``None``."""
    path = folder / name
    if not path.is_file():
        if required:
            raise CheckpointError(f"missing {name} in {folder}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def read_json_object(folder: Path, name: str, *, required: bool = True) -> dict[str, Any] | None:
    """Parse ``folder/name``, which must hold a JSON object; a missing optional file gives ``None``."""
    data = read_json(folder, name, required=required)
    if data is not None and not isinstance(data, dict):
        raise CheckpointError(
            f"{folder / name} must hold a JSON object, not a {type(data).__name__}"
        )
    return data


def config_value(
    cfg: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    source: str,
    default: Any = None,
) -> Any:
    """``cfg[key]`` checked against ``kind`` (``default`` when absent or null).

    Raises:
        CheckpointError: naming the file and the key, when the value has another type.
    """
    value = cfg.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        value = None  # true/false where a number is meant
    if value is None or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise CheckpointError(f"{key!r} in {source} must be {names}, got {cfg.get(key)!r}")
    return value


def inside(root: Path, relative: str, source: str) -> Path:
    """``root / relative``, refusing absolute paths and ``..`` escapes from ``root``.

    The path is checked as written, not where symlinks lead: the Hugging Face cache
    stores each file of a snapshot as a symlink into the repository's ``blobs/`` folder,
    and a hub download cannot create other symlinks.
    """
    if Path(relative).is_absolute() or "\\" in relative:
        raise CheckpointError(f"path {relative!r} in {source} must be relative to the model folder")
    if ".." in Path(relative).parts:
        raise CheckpointError(f"path {relative!r} in {source} escapes the model folder {root}")
    return root / relative


def read_modules(folder: Path) -> list[ModuleSpec]:
    """The pipeline in ``modules.json``; a plain transformers folder counts as one module."""
    raw = read_json(folder, "modules.json", required=False)
    if raw is None:
        return [ModuleSpec("transformer", folder.resolve())]
    if not isinstance(raw, list):
        raise CheckpointError(f"modules.json in {folder} must be a list")
    specs = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise CheckpointError(
                f"modules.json[{i}] in {folder} must be an object with 'type' and 'path', "
                f"not {type(entry).__name__}"
            )
        type_name = str(entry.get("type", ""))
        class_name = type_name.rsplit(".", 1)[-1]
        kind = _MODULE_CLASSES.get(class_name)
        if kind is None or not type_name.startswith(_MODULE_PACKAGES):
            raise CheckpointError(
                f"unknown module type {type_name!r} at modules.json[{i}] in {folder}; "
                f"supported: {', '.join(sorted(_MODULE_CLASSES))} from sentence-transformers or PyLate"
            )
        specs.append(ModuleSpec(kind, inside(folder, str(entry.get("path", "")), "modules.json")))
    if not specs or specs[0].kind != "transformer":
        raise CheckpointError(f"modules.json in {folder} must start with a Transformer module")
    return specs


def load_weights(folder: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load ``model.safetensors`` (single or sharded) from ``folder``.

    Pickle weights (``pytorch_model.bin``) run arbitrary code when unpickled by old
    loaders; they are refused unless ``allow_pickle`` and then read with
    ``weights_only=True``.
    """
    single = folder / "model.safetensors"
    if single.is_file():
        return _load_safetensors(single)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = (read_json_object(folder, index.name) or {}).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} has no 'weight_map' object")
        shards = sorted({str(v) for v in weight_map.values()})
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_safetensors(inside(folder, shard, index.name)))
        return state
    pickle = folder / "pytorch_model.bin"
    if pickle.is_file():
        if not allow_pickle:
            raise CheckpointError(
                f"{folder} has only pickle weights (pytorch_model.bin); pickles can run code "
                f"when loaded. Convert them to safetensors, or pass allow_pickle=True if you "
                f"trust this checkpoint"
            )
        try:
            return torch.load(str(pickle), map_location="cpu", weights_only=True)
        except UnpicklingError as exc:
            raise CheckpointError(
                f"{pickle} holds objects other than tensors, which could run code when "
                f"unpickled; refused even with allow_pickle=True ({str(exc).splitlines()[0]})"
            ) from exc
        except (RuntimeError, EOFError) as exc:
            raise CheckpointError(f"cannot read {pickle}: {exc}") from exc
    raise CheckpointError(f"no model.safetensors in {folder}")


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"cannot read {path.name} in {path.parent} ({exc}); is the download complete?"
        ) from exc


def strip_prefix(
    state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Drop the first of ``prefixes`` that every key starts with (``model.``, ``lfm2.``)."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def read_max_length(transformer_folder: Path, default: int) -> int:
    """``max_seq_length`` from ``sentence_bert_config.json``, else ``default``."""
    name = "sentence_bert_config.json"
    cfg = read_json_object(transformer_folder, name, required=False) or {}
    value = config_value(cfg, "max_seq_length", int, name, default)
    if value < 2:
        raise CheckpointError(f"'max_seq_length' in {name} must be >= 2, got {value}")
    return int(value)


def read_dense_head(folder: Path, modules: list[ModuleSpec], max_length: int) -> DenseHeadConfig:
    """Prompts and pooling of a sentence-transformers checkpoint."""
    source = "config_sentence_transformers.json"
    st = read_json_object(folder, source, required=False) or {}
    prompts = config_value(st, "prompts", dict, source, {})
    bad = next((k for k, v in prompts.items() if not isinstance(v, str)), None)
    if bad is not None:
        raise CheckpointError(
            f"prompts[{bad!r}] in {source} must be a string, got {prompts[bad]!r}"
        )
    query = prompts.get("query", "")
    document = next(
        (prompts[k] for k in ("document", "passage", "corpus", "text") if k in prompts), ""
    )
    pooling: PoolingMode = "mean"
    for spec in modules:
        if spec.kind == "pooling":
            pooling = _pooling_mode(spec.folder)
    return DenseHeadConfig(
        pooling=pooling, max_length=max_length, query_prompt=query, document_prompt=document
    )


def _pooling_mode(folder: Path) -> PoolingMode:
    source = f"{folder.name}/config.json"
    cfg = read_json_object(folder, "config.json") or {}
    if "pooling_mode" in cfg:
        mode = {"cls": "cls", "mean": "mean", "lasttoken": "lasttoken"}.get(
            config_value(cfg, "pooling_mode", str, source)
        )
        if mode is None:
            raise CheckpointError(
                f"unknown pooling {cfg['pooling_mode']!r} in {source}; supported: cls, mean, lasttoken"
            )
        return mode  # type: ignore[return-value]
    flags = {
        "cls": config_value(cfg, "pooling_mode_cls_token", bool, source, False),
        "mean": config_value(cfg, "pooling_mode_mean_tokens", bool, source, False),
        "lasttoken": config_value(cfg, "pooling_mode_lasttoken", bool, source, False),
    }
    unsupported = [
        k
        for k in (
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens",
        )
        if cfg.get(k)
    ]
    chosen = [k for k, on in flags.items() if on]
    if unsupported or len(chosen) != 1:
        raise CheckpointError(
            f"unsupported pooling in {source} ({', '.join(unsupported or chosen) or 'none set'}); "
            f"supported: exactly one of cls, mean, lasttoken"
        )
    return chosen[0]  # type: ignore[return-value]


def read_colbert_head(folder: Path, dim: int) -> ColBERTHeadConfig:
    """PyLate's settings from ``config_sentence_transformers.json``."""
    source = "config_sentence_transformers.json"
    st = dict(read_json_object(folder, source, required=False) or {})
    for old, new in _LEGACY_COLBERT_KEYS.items():
        if old in st and new not in st:
            st[new] = st[old]
    defaults = ColBERTHeadConfig()
    skip = config_value(st, "skiplist_words", list, source, None)
    if skip is not None and not all(isinstance(w, str) for w in skip):
        raise CheckpointError(f"'skiplist_words' in {source} must be a list of strings")
    lengths = {}
    for key in ("query_length", "document_length"):
        lengths[key] = config_value(st, key, int, source, getattr(defaults, key))
        if lengths[key] < 2:
            raise CheckpointError(
                f"{key!r} in {source} must be >= 2 (a prefix token and one more), got {lengths[key]}"
            )
    return ColBERTHeadConfig(
        query_prefix=config_value(st, "query_prefix", str, source, defaults.query_prefix),
        document_prefix=config_value(st, "document_prefix", str, source, defaults.document_prefix),
        query_length=lengths["query_length"],
        document_length=lengths["document_length"],
        attend_to_expansion_tokens=config_value(
            st, "attend_to_expansion_tokens", bool, source, False
        ),
        do_query_expansion=config_value(st, "do_query_expansion", bool, source, True),
        skiplist_words=tuple(skip) if skip is not None else defaults.skiplist_words,
        dim=dim,
    )


@dataclass(frozen=True)
class LinearSpec:
    """A sentence-transformers / PyLate ``Dense`` module: weights and activation."""

    weight: torch.Tensor  # [out_features, in_features]
    bias: torch.Tensor | None  # [out_features]
    activation: Literal["identity", "tanh"]


def read_linear(folder: Path, *, allow_pickle: bool = False) -> LinearSpec:
    """Load a ``Dense`` module folder (``config.json`` + ``model.safetensors``)."""
    source = f"{folder.name}/config.json"
    cfg = read_json_object(folder, "config.json") or {}
    act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
    activation = {"Identity": "identity", "Tanh": "tanh"}.get(act_name.rsplit(".", 1)[-1])
    if activation is None:
        raise CheckpointError(
            f"unknown activation_function {act_name!r} in {source}; supported: Identity, Tanh"
        )
    state = strip_prefix(load_weights(folder, allow_pickle=allow_pickle), ("linear.",))
    if "weight" not in state:
        raise CheckpointError(f"no linear.weight in {folder}")
    weight = state["weight"]
    for key in ("out_features", "in_features"):
        if key not in cfg:
            raise CheckpointError(f"missing key {key!r} in {source}")
    expected = (
        config_value(cfg, "out_features", int, source),
        config_value(cfg, "in_features", int, source),
    )
    if not weight.is_floating_point():
        raise CheckpointError(f"linear.weight in {folder.name} is {weight.dtype}; expected floats")
    if tuple(weight.shape) != expected:
        raise CheckpointError(
            f"linear.weight in {folder.name} has shape {tuple(weight.shape)}; "
            f"{source} says [out_features, in_features] = {list(expected)}"
        )
    use_bias = bool(
        config_value(cfg, "bias", bool, source, config_value(cfg, "use_bias", bool, source, False))
    )
    bias = state.get("bias") if use_bias else None
    if use_bias and bias is None:
        raise CheckpointError(f"{source} declares a bias but {folder.name} has no linear.bias")
    return LinearSpec(weight=weight, bias=bias, activation=activation)  # type: ignore[arg-type]
