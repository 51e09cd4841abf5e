"""Backbones behind one packed interface: token ids laid end to end -> one state per token.

``Lfm2Backbone`` is our own bidirectional LFM2 (no remote code); ``AutoModelBackbone``
serves every other sentence-transformers / PyLate checkpoint through transformers'
``AutoModel``: BERT, RoBERTa and XLM-R run packed on the model's own modules
(:mod:`.modeling_bert`), any other architecture padded per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from torch import nn

from .config import Lfm2Config
from .errors import CheckpointError
from .loading import load_weights, read_json, read_json_object, strip_prefix
from .modeling_bert import packed_forward, runs_packed
from .modeling_lfm2 import Lfm2Model

__all__ = ["AutoModelBackbone", "Backbone", "Lfm2Backbone", "load_backbone"]

_LFM2_PREFIXES = ("model.", "lfm2.")
# Heads some LFM2 checkpoints carry that an encoder does not use.
_IGNORED_PREFIXES = ("lm_head.",)


class Backbone(Protocol):
    """What the encoders need from a model."""

    hidden_size: int
    pad_token_id: int
    padded: bool  # runs padded batches: the token budget counts the padding
    bos_token_id: int | None
    eos_token_id: int | None

    def __call__(
        self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``[T] int64`` ids, ``[B+1] int32`` boundaries, ``[T] bool`` keys -> ``[T, H]`` states."""
        ...

    def to(self, *args: object, **kwargs: object) -> Backbone: ...


class Lfm2Backbone(nn.Module):
    """Our bidirectional LFM2 encoder behind the packed interface."""

    def __init__(self, model: Lfm2Model, config: Lfm2Config):
        super().__init__()
        self.model = model
        self.hidden_size = config.hidden_size
        self.pad_token_id = config.pad_token_id
        self.padded = False
        self.bos_token_id: int | None = config.bos_token_id
        self.eos_token_id: int | None = config.eos_token_id

    def forward(
        self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return self.model(input_ids, cu_seqlens, key_mask)

    @classmethod
    def from_folder(cls, folder: Path, *, allow_pickle: bool = False) -> Lfm2Backbone:
        """Build from ``config.json`` + weights; refuses weights that do not fit the config."""
        config = Lfm2Config.from_dict(
            read_json(folder, "config.json"), source=str(folder / "config.json")
        )
        state = strip_prefix(load_weights(folder, allow_pickle=allow_pickle), _LFM2_PREFIXES)
        state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
        # Built on the meta device: the checkpoint's tensors replace the parameters, so
        # 350M weights are never randomly initialised only to be overwritten.
        with torch.device("meta"):
            model = Lfm2Model(config)
        check_state_dict(model, state, folder)
        model.load_state_dict(state, strict=True, assign=True)
        return cls(model.eval(), config)


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Raise ``CheckpointError`` naming missing, unexpected or mis-shaped weights."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    wrong += [
        f"{k}: dtype {state[k].dtype}, expected floats"
        for k, v in expected.items()
        if k in state and v.is_floating_point() and not state[k].is_floating_point()
    ]
    _raise_if_mismatched(folder, missing=missing, unexpected=unexpected, wrong=wrong)


def _raise_if_mismatched(
    folder: Path, *, missing: list[str], unexpected: list[str], wrong: list[str]
) -> None:
    """One ``CheckpointError`` naming a few of each kind of problem, if there is any."""
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} weights (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weights (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:3])})")
    if problems:
        raise CheckpointError(
            f"weights in {folder} do not match its config.json: " + "; ".join(problems)
        )


class AutoModelBackbone(nn.Module):
    """A transformers ``AutoModel`` (no remote code) behind the packed interface.

    BERT, RoBERTa and XLM-R encoders run on the packed tokens (:mod:`.modeling_bert`);
    other models get a padded batch and their padding is dropped from the output.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.padded = not runs_packed(model)
        cfg: Any = model.config
        self.hidden_size = int(cfg.hidden_size)
        self.pad_token_id = int(cfg.pad_token_id or 0)
        self.bos_token_id = None
        self.eos_token_id = getattr(cfg, "eos_token_id", None)

    @classmethod
    def from_folder(cls, folder: Path, *, allow_pickle: bool = False) -> AutoModelBackbone:
        from transformers import AutoModel

        if not allow_pickle and not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")):
            raise CheckpointError(
                f"{folder} has only pickle weights (*.bin); pickles can run code when loaded. "
                f"Convert them to safetensors, or pass allow_pickle=True if you trust this "
                f"checkpoint"
            )
        _check_shapes_before_loading(folder)
        try:
            # ignore_mismatched_sizes + output_loading_info: transformers would only log
            # which weights are wrong (or silently initialize missing ones at random);
            # the report lets the error below name them.
            with _no_transformers_progress():
                model, info = AutoModel.from_pretrained(
                    str(folder),
                    trust_remote_code=False,
                    use_safetensors=None if allow_pickle else True,
                    ignore_mismatched_sizes=True,
                    output_loading_info=True,
                )
        except UnpicklingError as exc:
            raise CheckpointError(
                f"the pickle weights (*.bin) in {folder} hold objects other than tensors, which "
                f"could run code when unpickled; refused even with allow_pickle=True"
            ) from exc
        except SafetensorError as exc:
            raise CheckpointError(
                f"cannot read the safetensors weights in {folder} ({exc}); is the download complete?"
            ) from exc
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"cannot load the model in {folder} with transformers' AutoModel "
                f"(lfm-retrieval never runs a repository's own code): {exc}"
            ) from exc
        _check_loading_info(info, folder)
        return cls(model.eval())

    def forward(
        self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.padded:
            return packed_forward(self.model, input_ids, cu_seqlens, key_mask)
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
        batch, longest = len(lengths), int(lengths.max())
        rows = torch.repeat_interleave(torch.arange(batch, device=input_ids.device), lengths)
        cols = (
            torch.arange(input_ids.numel(), device=input_ids.device) - cu_seqlens[:-1].long()[rows]
        )
        ids = input_ids.new_full((batch, longest), self.pad_token_id)
        ids[rows, cols] = input_ids
        mask = torch.zeros(batch, longest, dtype=torch.long, device=input_ids.device)
        mask[rows, cols] = 1 if key_mask is None else key_mask.long()
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return out[rows, cols]


_PROGRESS_LOCK = threading.Lock()
# Loads in flight, and the switches as they were before the first of them.
_PROGRESS_STATE: dict[str, Any] = {"holders": 0, "transformers_on": False, "hub_off": False}


@contextmanager
def _no_transformers_progress() -> Iterator[None]:
    """transformers' "Loading weights" bar off while a local folder loads, then as it was.

    The encoders draw their own bars when ``show_progress`` asks; a library call, an
    adapter or the service should print nothing of its own. transformers has one global
    switch (which also drives huggingface_hub's bars): the first load in flight turns it
    off, the last one puts both back as they were.
    """
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    state = _PROGRESS_STATE
    with _PROGRESS_LOCK:
        if state["holders"] == 0:
            state["transformers_on"] = hf_logging.is_progress_bar_enabled()
            state["hub_off"] = are_progress_bars_disabled()
            hf_logging.disable_progress_bar()
        state["holders"] += 1
    try:
        yield
    finally:
        with _PROGRESS_LOCK:
            state["holders"] -= 1
            if state["holders"] == 0:
                # transformers' switch turns huggingface_hub's bars off too: put both back
                # as they were, each on its own.
                if state["transformers_on"]:
                    hf_logging.enable_progress_bar()
                if state["hub_off"]:
                    disable_progress_bars()
                else:
                    enable_progress_bars()


def _check_shapes_before_loading(folder: Path) -> None:
    """Compare the shapes ``config.json`` claims with the safetensors headers, allocating nothing.

    transformers builds the claimed shapes before it reads the weights, so a config that
    claims ``intermediate_size: 1e6`` would take all the memory before any error. The model
    is built on the meta device instead, and every parameter checked against the header.
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return  # pickle weights (allow_pickle): transformers reads their sizes itself
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModel.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot load the model in {folder} with transformers' AutoModel "
            f"(lfm-retrieval never runs a repository's own code): {exc}"
        ) from exc
    header: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - a safe_open handle is no dict
                    part = handle.get_slice(key)
                    header[key] = (tuple(part.get_shape()), str(part.get_dtype()))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read the safetensors header in {folder}: {exc}") from exc
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    if header and all(k.startswith(prefix) for k in header) and prefix != ".":
        header = {k[len(prefix) :]: v for k, v in header.items()}
    wrong = []
    for name, param in model.named_parameters():
        if name not in header:
            continue  # missing weights are reported after loading, with transformers' names
        shape, dtype = header[name]
        if shape != tuple(param.shape):
            wrong.append(f"{name}: checkpoint {shape} vs config {tuple(param.shape)}")
        elif dtype not in _FLOAT_DTYPES:
            wrong.append(f"{name}: dtype {dtype}, expected floats")
    _raise_if_mismatched(folder, missing=[], unexpected=[], wrong=wrong)


_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


def _check_loading_info(info: dict[str, Iterable[Any]], folder: Path) -> None:
    """Raise ``CheckpointError`` naming weights transformers reports missing or mis-shaped."""
    wrong = [
        f"{key}: checkpoint {tuple(ckpt)} vs config {tuple(model)}"
        for key, ckpt, model in sorted(info.get("mismatched_keys", []))
    ]
    # The pooler is a head the encoders never read; many checkpoints leave it out.
    missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith("pooler."))
    _raise_if_mismatched(folder, missing=missing, unexpected=[], wrong=wrong)


def load_backbone(folder: Path, *, allow_pickle: bool = False) -> Lfm2Backbone | AutoModelBackbone:
    """Our LFM2 for ``model_type: lfm2``, transformers' AutoModel for anything else."""
    config = read_json_object(folder, "config.json") or {}
    if config.get("model_type") == "lfm2":
        return Lfm2Backbone.from_folder(folder, allow_pickle=allow_pickle)
    return AutoModelBackbone.from_folder(folder, allow_pickle=allow_pickle)
