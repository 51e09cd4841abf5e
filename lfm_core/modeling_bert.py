"""BERT, RoBERTa and XLM-R encoders (transformers' modules) run on packed tokens.

transformers pads a batch to its longest text, and on short texts much of every linear
layer's work is padding: calls of 8 to 32 all-MiniLM-L6-v2 queries of 11 to 31 tokens,
batched by length, compute 1.23 to 1.35 rows per real token (benchmarks/bench_padded.py).
Here the model's own modules, loaded by ``AutoModel`` with their weights untouched, run on
the packed tokens (:mod:`.packing`): the embeddings, then per layer the query, key and value projections,
attention inside each sequence (only the attention products see a padded copy), and the
layer's output blocks. The model's forward, its mask building and its wrappers are not
called; what each module computes is the same, so the vectors match the padded model's
within float rounding (tests/lfm_core/test_modeling_bert.py).

Only plain encoders are taken: absolute positions, no decoder or cross attention. Any
other ``AutoModel`` keeps the padded path (:class:`~lfm_core.backbones.AutoModelBackbone`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .packing import (
    PackedBatch,
    check_tokens,
    checked_bounds,
    flash_applies,
    packed_attention,
    sequence_ids_from_cu_seqlens,
)

__all__ = ["packed_forward", "runs_packed"]

# How each family numbers positions: BERT from 0; RoBERTa and XLM-R from pad_token_id + 1,
# counting only tokens that are not the pad token (``create_position_ids_from_input_ids``).
_POSITIONS = {"BertModel": "from_zero", "RobertaModel": "after_pad", "XLMRobertaModel": "after_pad"}


def runs_packed(model: nn.Module) -> bool:
    """Whether :func:`packed_forward` computes what ``model`` computes.

    True for transformers' ``BertModel``, ``RobertaModel`` and ``XLMRobertaModel`` (the
    class itself, not a subclass that may change the forward) used as plain encoders.
    """
    if type(model).__name__ not in _POSITIONS or type(model).__module__.split(".")[0] != (
        "transformers"
    ):
        return False
    cfg: Any = model.config
    if _POSITIONS[type(model).__name__] == "after_pad" and cfg.pad_token_id is None:
        return False  # positions count from the pad id: without one, leave it to transformers
    return (
        not getattr(cfg, "is_decoder", False)
        and not getattr(cfg, "add_cross_attention", False)
        and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
        and getattr(cfg, "embedding_size", cfg.hidden_size) == cfg.hidden_size
    )


def packed_forward(
    model: nn.Module, input_ids: Tensor, cu_seqlens: Tensor, key_mask: Tensor | None
) -> Tensor:
    """The last hidden state of every packed token, as ``model`` would give it padded.

    Args:
        model: a model :func:`runs_packed` accepts, in eval mode.
        input_ids: ``[T]`` int64 token ids, the sequences end to end.
        cu_seqlens: ``[n_seqs + 1]`` boundaries, ``0 = cu[0] < ... < cu[-1] = T``.
        key_mask: ``[T]`` bool, False for a token others may not attend to; or None.

    Returns:
        ``[T, hidden]`` in the model's dtype.
    """
    n_tokens = check_tokens(input_ids, key_mask)
    bounds = checked_bounds(cu_seqlens, n_tokens)
    emb: Any = model.embeddings
    if n_tokens == 0:
        return emb.word_embeddings(input_ids)
    device = input_ids.device
    batch = PackedBatch.build(
        cu_seqlens.to(device),
        bounds,
        None if key_mask is None else key_mask.to(device),
        causal=False,
        conv_kernel_size=1,
        allow_flash=flash_applies(emb.word_embeddings.weight),
    )
    positions = _position_ids(model, input_ids, batch)
    # The same sums in the same order as the model's embeddings (token type 0 throughout).
    hidden = emb.word_embeddings(input_ids) + emb.token_type_embeddings.weight[0]
    hidden = emb.LayerNorm(hidden + emb.position_embeddings(positions))
    for layer in model.encoder.layer:  # type: ignore[union-attr]
        hidden = _layer(layer, hidden, batch)
    return hidden


def _layer(layer: Any, hidden: Tensor, batch: PackedBatch) -> Tensor:
    """One encoder layer on ``[T, hidden]``: self-attention block, then feed-forward block."""
    attn = layer.attention.self
    shape = (hidden.shape[0], attn.num_attention_heads, attn.attention_head_size)
    q = attn.query(hidden).view(shape)
    k = attn.key(hidden).view(shape)
    v = attn.value(hidden).view(shape)
    context = packed_attention(q, k, v, batch).reshape(hidden.shape[0], -1)
    attended = layer.attention.output(context, hidden)  # dense, residual, LayerNorm
    out: Tensor = layer.output(layer.intermediate(attended), attended)
    return out


def _position_ids(model: nn.Module, input_ids: Tensor, batch: PackedBatch) -> Tensor:
    if _POSITIONS[type(model).__name__] == "from_zero":
        return batch.positions
    cfg: Any = model.config
    pad = int(cfg.pad_token_id)
    real = input_ids.ne(pad).long()
    seen = real.cumsum(0)
    starts = batch.cu_seqlens[:-1].long()
    seq_ids = sequence_ids_from_cu_seqlens(batch.cu_seqlens, input_ids.shape[0])
    before = (seen[starts] - real[starts])[seq_ids]  # non-pad tokens of earlier sequences
    return (seen - before) * real + pad
