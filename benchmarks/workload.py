"""What the benchmark runs on: checkpoints, documents, queries and the FLOPs they cost.

- Random-weight checkpoints with the real LFM2.5 350M ``config.json`` files (from the data
  folder's ``lfm2-tokenizer/``; weights do not change speed), in the real on-disk layouts
  (sentence-transformers for the dense model, PyLate for ColBERT), stored in bfloat16 like
  the real ones.
- A byte-level BPE tokenizer trained on the spot (the real ``tokenizer.json`` is only on
  the Hub) with LFM2's special ids, padded with unused entries to the config's vocabulary
  size so that ``[Q] ``/``[D] `` get their real ids 64400/64401 and no peer resizes the
  embedding table.
- Documents with a realistic length mix: log-uniform between 16 and 512 tokens (median
  about 90, as passage corpora), cut from SciFact when the data folder is given
  (``--data DIR``, see :func:`add_data_argument`), from seeded synthetic text otherwise.
- Forward FLOPs from the config: ``2 * matmul parameters`` per token plus attention's
  ``4 * L * width`` per token and attention layer.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lfm_core.testing import (
    random_lfm2_state,
    train_tokenizer,
    write_colbert_layout,
    write_dense_layout,
)

# Where each input lies inside the data folder that ``--data DIR`` names.
SCIFACT_DIR = "beir-scifact"
SCIFACT_CORPUS = f"{SCIFACT_DIR}/corpus.jsonl"
NTREX_DIR = "ntrex128"
LFM2_CONFIGS = {
    "lfm2-dense": "lfm2-tokenizer/lfm2.5-embedding-350m/config.json",
    "lfm2-colbert": "lfm2-tokenizer/lfm2.5-colbert-350m/config.json",
}
DATA_FOLDER = (
    "the data folder: beir-scifact/ (BEIR SciFact, "
    "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip), "
    "ntrex128/ (NTREX-128, https://github.com/MicrosoftTranslator/NTREX) and lfm2-tokenizer/ "
    "(the LFM2.5-Embedding-350M and LFM2.5-ColBERT-350M config.json files, in "
    "lfm2.5-embedding-350m/ and lfm2.5-colbert-350m/)"
)
DATA_SHORT = (
    "the data folder holds beir-scifact/, ntrex128/ and lfm2-tokenizer/; --help says where to "
    "get them"
)
PREFIX_TOKENS = ("[Q] ", "[D] ")


def add_data_argument(parser: argparse.ArgumentParser, *, without: str | None = None) -> None:
    """Add ``--data DIR``, the data folder; required unless ``without`` is given.

    Args:
        parser: the benchmark's parser (or sub-parser).
        without: what the benchmark does when ``--data`` is left out (for its help); ``None``
            makes the option required.
    """
    help_text = DATA_FOLDER + (f". Without it: {without}" if without else "")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        required=without is None,
        metavar="DIR",
        help=help_text.replace("%", "%%"),
    )


def require_data(data: Path | None, *needs: str, what: str = "this benchmark") -> Path:
    """``data``, once each of ``needs`` (paths inside it) exists; else a one-line exit.

    Args:
        data: the ``--data`` value.
        needs: paths inside the data folder that the run reads.
        what: what needs them, for the message when ``data`` is ``None``.

    Raises:
        SystemExit: ``data`` is ``None`` or lacks one of ``needs``.
    """
    if data is None:
        raise SystemExit(f"{what} needs --data DIR ({DATA_SHORT})")
    for need in needs:
        if not (data / need).exists():
            raise SystemExit(f"--data {data}: {need} not found in it ({DATA_SHORT})")
    return data


def lfm2_config_path(data: Path, model: str) -> Path:
    """Where the real ``config.json`` of ``model`` (``lfm2-dense``/``lfm2-colbert``) lies."""
    return data / LFM2_CONFIGS[model]


def load_lfm2_config(data: Path, model: str) -> dict[str, Any]:
    """The real ``config.json`` of ``model`` (``lfm2-dense`` or ``lfm2-colbert``).

    Raises:
        FileNotFoundError: the data folder ``data`` does not hold it.
    """
    path = lfm2_config_path(data, model)
    if not path.is_file():
        raise FileNotFoundError(
            f"--data {data}: {LFM2_CONFIGS[model]} not found (the LFM2 benchmarks use the real "
            "350M configs)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def corpus_texts(
    data: Path | None, max_chars: int = 3_000_000, seed: int = 0
) -> tuple[list[str], str]:
    """Natural text to cut documents from: SciFact ("title text"), or seeded synthetic words.

    Args:
        data: the data folder; ``None`` for synthetic words (``seed`` picks them).
        max_chars: stop reading once this many characters are collected.
        seed: seed of the synthetic words.

    Returns:
        ``(texts, source)`` where ``source`` names where the text came from.

    Raises:
        FileNotFoundError: ``data`` is given but holds no ``beir-scifact/corpus.jsonl``.
    """
    if data is not None:
        path = data / SCIFACT_CORPUS
        if not path.is_file():
            raise FileNotFoundError(f"--data {data}: {SCIFACT_CORPUS} not found")
        texts, total = [], 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                text = f"{row.get('title', '')} {row.get('text', '')}".strip()
                texts.append(text)
                total += len(text)
                if total >= max_chars:
                    break
        return texts, f"BEIR SciFact corpus ({path})"
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "an", "el", "or", "is", "um"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(5000)]
    texts = []
    for _ in range(max_chars // 600):
        sentence = " ".join(rng.choices(words, k=100))
        texts.append(sentence[0].upper() + sentence[1:] + ".")
    return texts, "synthetic words (no --data)"


def write_tokenizer(
    folder: Path,
    corpus: Sequence[str],
    *,
    vocab_size: int,
    prefix_tokens: bool,
    bpe_size: int = 8192,
) -> None:
    """Train a byte-level BPE with LFM2's special ids; pad it to ``vocab_size`` entries.

    ``[Q] ``/``[D] `` (when ``prefix_tokens``) are the last two ids, as in LFM2.5-ColBERT.
    """
    n_ids = train_tokenizer(
        folder,
        vocab_size=bpe_size,
        corpus=corpus,
        pad_to=vocab_size,
        extra_tokens=PREFIX_TOKENS if prefix_tokens else (),
    )
    if n_ids != vocab_size:
        raise RuntimeError(f"tokenizer has {n_ids} ids, config says {vocab_size}")


def write_lfm2_checkpoint(
    data: Path,
    folder: Path,
    model: str,
    corpus: Sequence[str],
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """A random-weight LFM2.5 350M checkpoint in the real layout of ``model``.

    Args:
        data: the data folder, holding the real config (``lfm2-tokenizer/``).
        folder: created if missing.
        model: ``lfm2-dense`` (sentence-transformers layout, CLS pooling, prompts) or
            ``lfm2-colbert`` (PyLate layout, ``1_Dense`` 1024 -> 128).
        corpus: text to train the stand-in tokenizer on.
        seed: weight seed.
        dtype: storage dtype (the real checkpoints are bfloat16).
    """
    config = load_lfm2_config(data, model)
    colbert = model == "lfm2-colbert"
    write_tokenizer(folder, corpus, vocab_size=int(config["vocab_size"]), prefix_tokens=colbert)
    state = random_lfm2_state(config, seed=seed, norm_spread=0.0, dtype=dtype)
    if colbert:
        return write_colbert_layout(
            folder, config, state, projection_seed=seed + 1, dim=128, dtype=dtype
        )
    return write_dense_layout(folder, config, state, dtype=dtype)


def log_uniform_lengths(n: int, *, low: int = 16, high: int = 512, seed: int = 0) -> list[int]:
    """``n`` token counts, log-uniform in ``[low, high]`` (median ``sqrt(low * high)``).

    >>> lengths = log_uniform_lengths(1000)
    >>> min(lengths) >= 16 and max(lengths) <= 512
    True
    """
    rng = random.Random(seed)
    return [round(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(n)]


def cut_texts(
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    corpus: Sequence[str],
    lengths: Sequence[int],
    *,
    seed: int = 0,
) -> list[str]:
    """Texts of about ``lengths[i]`` tokens each, cut at random places from ``corpus``.

    ``encode``/``decode`` are the model's tokenizer without special tokens; re-tokenizing
    a cut text may differ by a token or two, so the harness counts tokens again.
    """
    rng = random.Random(seed)
    need = sum(lengths) + max(lengths, default=0)
    stream: list[int] = []
    order = list(range(len(corpus)))
    rng.shuffle(order)
    for i in order:
        stream.extend(encode(corpus[i]))
        if len(stream) >= min(need, 400_000):
            break
    if len(stream) <= max(lengths, default=0):
        raise ValueError(f"corpus has {len(stream)} tokens; need more than {max(lengths)}")
    texts = []
    for n in lengths:
        start = rng.randrange(0, len(stream) - n)
        texts.append(decode(stream[start : start + n]).strip() or "empty")
    return texts


@dataclass(frozen=True)
class ForwardFlops:
    """Forward-pass FLOPs of an encoder, from its config.

    Attributes:
        matmul_params: weights that multiply every token (embeddings excluded).
        attention_layers: layers with full self-attention.
        attention_width: ``heads * head_dim`` of those layers.
    """

    matmul_params: int
    attention_layers: int
    attention_width: int

    def per_sequence(self, n_tokens: int) -> float:
        """FLOPs to encode one sequence of ``n_tokens``.

        >>> ForwardFlops(10, 1, 2).per_sequence(3)  # 2*10*3 + 4*3*3*2
        132.0
        """
        linear = 2.0 * self.matmul_params * n_tokens
        attention = 4.0 * self.attention_layers * n_tokens * n_tokens * self.attention_width
        return linear + attention

    def total(self, lengths: Sequence[int]) -> float:
        return sum(self.per_sequence(n) for n in lengths)


def lfm2_parameter_count(config: Mapping[str, Any]) -> int:
    """All parameters of the LFM2 backbone described by ``config`` (heads excluded).

    A check of :func:`lfm2_flops`: LFM2.5-Embedding-350M's config gives 354,483,968.
    """
    from lfm_core.config import Lfm2Config

    c = Lfm2Config.from_dict(config)
    norms = c.hidden_size * (2 * c.num_hidden_layers + 1) + 2 * c.head_dim * c.layer_types.count(
        "full_attention"
    )
    return c.vocab_size * c.hidden_size + norms + lfm2_flops(config).matmul_params


def lfm2_flops(config: Mapping[str, Any], head_out: int = 0) -> ForwardFlops:
    """FLOPs model of LFM2 (conv blocks, GQA attention blocks, SwiGLU) plus a linear head."""
    from lfm_core.config import Lfm2Config

    c = Lfm2Config.from_dict(config)
    h, kv = c.hidden_size, c.num_key_value_heads * c.head_dim
    ffn = 3 * h * c.intermediate_size
    conv = 3 * h * h + h * c.conv_L_cache + h * h  # in_proj (B, C, x), depthwise conv, out_proj
    attention = h * h + 2 * h * kv + h * h  # q, k, v, out
    n_attn = c.layer_types.count("full_attention")
    n_conv = c.num_hidden_layers - n_attn
    params = n_conv * (conv + ffn) + n_attn * (attention + ffn) + h * head_out
    return ForwardFlops(params, n_attn, c.num_attention_heads * c.head_dim)


def bert_flops(config: Mapping[str, Any]) -> ForwardFlops:
    """FLOPs model of a BERT encoder (MiniLM): Q, K, V, O, two FFN matrices per layer."""
    h, ffn, layers = (
        int(config["hidden_size"]),
        int(config["intermediate_size"]),
        int(config["num_hidden_layers"]),
    )
    return ForwardFlops(layers * (4 * h * h + 2 * h * ffn), layers, h)
