"""Build random-weight checkpoints in the exact on-disk layouts of the real LFM2.5 models.

The real weights and ``tokenizer.json`` live only on the Hugging Face Hub. Tests and
benchmarks build stand-ins here: the same files (``config.json``, ``model.safetensors``,
``modules.json``, ``config_sentence_transformers.json``, ``1_Pooling``/``1_Dense``), a
byte-level BPE tokenizer trained on the spot with LFM2's special ids (pad 0, BOS 1,
EOS 7) and PyLate's ``[Q] ``/``[D] `` tokens added last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .config import Lfm2Config
from .modeling_lfm2 import Lfm2Model

__all__ = [
    "LFM2_SPECIAL_TOKENS",
    "tiny_lfm2_config",
    "train_tokenizer",
    "write_colbert_checkpoint",
    "write_dense_checkpoint",
    "write_hub_cache",
]

LFM2_SPECIAL_TOKENS = [
    "<|pad|>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|fim_pre|>",
    "<|fim_mid|>",
    "<|fim_suf|>",
    "<|im_start|>",
    "<|im_end|>",
]

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "Rust's borrow checker: not a suggestion.",
    "日本語（にほんご）を勉強中です。日本語のテキスト検索",
    "vector search 🔍 with a 350M encoder",
    "¿Dónde está mi pedido? Où est ma commande ? Wo ist meine Bestellung?",
    "Dov'è il mio ordine? Onde está o meu pedido? Var är min beställning? Hvor er bestillingen min?",
    "주문은 어디에 있나요? أين طلبي؟",
    "how do I stop two threads corrupting shared state",
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads in Rust.",
    "Preheat the oven to 200C, then butter a cake tin.",
    "query: document: search retrieval product catalog support FAQ shipping returns refund",
]


def tiny_lfm2_config(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    """A ``config.json`` mapping with the real LFM2.5 keys and tiny sizes."""
    cfg: dict[str, Any] = {
        "architectures": ["Lfm2BidirectionalModel"],
        "model_type": "lfm2",
        "block_auto_adjust_ff_dim": True,
        "block_ff_dim": 144,  # int(2 * 144 / 3) = 96 -> multiple of 32 -> 96
        "block_ffn_dim_multiplier": 1.0,
        "block_multiple_of": 32,
        "hidden_size": 64,
        "intermediate_size": 144,
        "num_hidden_layers": 4,
        "layer_types": ["conv", "full_attention", "conv", "full_attention"],
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "conv_L_cache": 3,
        "conv_bias": False,
        "norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
        "max_position_embeddings": 128000,
        "vocab_size": vocab_size,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 7,
        "tie_embedding": True,
        "dtype": "float32",
    }
    cfg.update(overrides)
    return cfg


def train_tokenizer(
    folder: Path,
    *,
    vocab_size: int = 400,
    extra_tokens: Iterable[str] = (),
    corpus: Sequence[str] | None = None,
    pad_to: int | None = None,
) -> int:
    """Train a byte-level BPE with LFM2's special ids and save it as the LFM2 files do.

    Args:
        folder: where ``tokenizer.json`` and friends are written.
        vocab_size: BPE vocabulary to train (special tokens included).
        extra_tokens: added last, in order (PyLate's ``[Q] ``/``[D] ``).
        corpus: training texts (default: a small multilingual sample).
        pad_to: fill the id space with unused tokens so the tokenizer has exactly this
            many ids, ``extra_tokens`` included (a real config's ``vocab_size``).

    Returns:
        The tokenizer's vocabulary size (trained tokens + padding + ``extra_tokens``).
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LFM2_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus if corpus is not None else _CORPUS * 4, trainer=trainer)
    extra_tokens = list(extra_tokens)
    if pad_to is not None:
        data = json.loads(tok.to_str())
        vocab = data["model"]["vocab"]
        for i in range(len(vocab), pad_to - len(extra_tokens)):
            vocab[f"<|unused_{i}|>"] = i  # never produced by a merge: only fills the id space
        tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", 1)]
    )
    tok.add_tokens([AddedToken(t, normalized=False) for t in extra_tokens])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|startoftext|>",
            "eos_token": "<|im_end|>",
            "pad_token": "<|pad|>",
            "add_bos_token": True,
            "add_eos_token": False,
            "model_max_length": 1000000000000000019884624838656,
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {"bos_token": "<|startoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"},
    )
    return tok.get_vocab_size()


def random_lfm2_state(
    config: Mapping[str, Any],
    *,
    seed: int,
    prefix: str = "",
    norm_spread: float = 0.2,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Random weights named and shaped as ``Lfm2Model``'s (ours and transformers').

    Matrices are drawn with standard deviation ``fan_in ** -0.5`` (unit-variance activations
    at any width); norm scales around 1 with ``norm_spread``, so that a wrong norm shows in a
    parity test (0 gives ones). Shapes come from a model on the meta device, so a 350M
    config costs only its weights' memory.
    """
    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in Lfm2Model(Lfm2Config.from_dict(config)).state_dict().items()
        }
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        value = torch.empty(shape, dtype=dtype)
        if name.endswith("norm.weight") or "layernorm" in name:
            if norm_spread:
                value.normal_(1.0, norm_spread, generator=gen)
            else:
                value.fill_(1.0)
        else:
            value.normal_(0.0, shape[-1] ** -0.5, generator=gen)
        state[prefix + name] = value
    return state


def write_dense_checkpoint(
    folder: Path, *, seed: int = 0, dtype: torch.dtype = torch.float32, **config_overrides: Any
) -> Path:
    """A tiny sentence-transformers checkpoint like LFM2.5-Embedding-350M (CLS pooling, prompts)."""
    vocab = train_tokenizer(folder)
    config = tiny_lfm2_config(vocab_size=max(vocab, 512), **config_overrides)
    return write_dense_layout(folder, config, random_lfm2_state(config, seed=seed), dtype=dtype)


def write_colbert_checkpoint(
    folder: Path,
    *,
    seed: int = 1,
    dim: int = 16,
    dtype: torch.dtype = torch.bfloat16,
    weight_prefix: str = "model.",
    query_length: int = 32,
    document_length: int = 512,
    **config_overrides: Any,
) -> Path:
    """A tiny PyLate checkpoint like LFM2.5-ColBERT-350M (``[Q] ``/``[D] `` last, ``1_Dense``)."""
    vocab = train_tokenizer(folder, extra_tokens=["[Q] ", "[D] "])
    config = tiny_lfm2_config(vocab_size=vocab, **config_overrides)
    return write_colbert_layout(
        folder,
        config,
        random_lfm2_state(config, seed=seed, prefix=weight_prefix),
        projection_seed=seed + 100,
        dim=dim,
        dtype=dtype,
        query_length=query_length,
        document_length=document_length,
        max_seq_length=document_length - 1,
    )


def write_dense_layout(
    folder: Path,
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype,
) -> Path:
    """Everything but the tokenizer of LFM2.5-Embedding-350M's sentence-transformers layout.

    ``config.json`` and ``model.safetensors`` (``state`` cast to ``dtype``), then
    ``modules.json`` (Transformer, Pooling), the query/document prompts and CLS pooling.
    """
    _write_json(folder / "config.json", config)
    save_file({k: v.to(dtype) for k, v in state.items()}, str(folder / "model.safetensors"))
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ],
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "document": "document: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False}
    )
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": config["hidden_size"],
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    return folder


def write_colbert_layout(
    folder: Path,
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    *,
    projection_seed: int,
    dim: int,
    dtype: torch.dtype,
    query_length: int = 32,
    document_length: int = 512,
    max_seq_length: int = 512,
) -> Path:
    """Everything but the tokenizer of LFM2.5-ColBERT-350M's PyLate layout.

    ``config.json`` and ``model.safetensors`` (``state`` cast to ``dtype``), ``modules.json``
    (Transformer, PyLate Dense), PyLate's ``[Q] ``/``[D] `` settings, and a random
    ``1_Dense`` projection ``hidden -> dim`` drawn from ``projection_seed``.
    """
    _write_json(folder / "config.json", config)
    save_file({k: v.to(dtype) for k, v in state.items()}, str(folder / "model.safetensors"))
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": "[Q] ",
            "document_prefix": "[D] ",
            "query_length": query_length,
            "document_length": document_length,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
        },
    )
    _write_json(
        folder / "sentence_bert_config.json",
        {"max_seq_length": max_seq_length, "do_lower_case": False},
    )
    hidden = int(config["hidden_size"])
    _write_json(
        folder / "1_Dense" / "config.json",
        {
            "in_features": hidden,
            "out_features": dim,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
        },
    )
    gen = torch.Generator().manual_seed(projection_seed)
    weight = torch.randn(dim, hidden, generator=gen) / hidden**0.5
    save_file(
        {"linear.weight": weight.to(dtype).contiguous()},
        str(folder / "1_Dense" / "model.safetensors"),
    )
    return folder


def write_hub_cache(cache_dir: Path, repo_id: str, folder: Path) -> Path:
    """Put a model folder into a Hugging Face cache as ``hf download`` lays it out.

    ``cache_dir/models--{org}--{name}/`` gets ``blobs/`` (the files, named by their
    SHA-256), ``snapshots/<commit>/`` (relative symlinks into ``blobs/``) and ``refs/main``
    (the commit). With ``HF_HUB_CACHE=cache_dir`` and ``HF_HUB_OFFLINE=1``,
    ``from_pretrained(repo_id)`` then loads the folder without any network access.

    Args:
        cache_dir: the cache root (what ``HF_HUB_CACHE`` names).
        repo_id: the hub id the folder stands for, e.g. ``"LiquidAI/LFM2.5-Embedding-350M"``.
        folder: a checkpoint folder (e.g. from :func:`write_dense_checkpoint`).

    Returns:
        The snapshot folder.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1()  # a stand-in commit id: 40 hex digits, fixed by the contents
    for file in files:
        commit.update(str(file.relative_to(folder)).encode() + b"\0" + file.read_bytes())
    root = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit.hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for file in files:
        blob = root / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(commit.hexdigest(), encoding="utf-8")
    return snapshot


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
