"""BERT, RoBERTa and XLM-R on packed tokens (lfm_core.modeling_bert) vs transformers' padded forward.

Tiny random models of each family, built here from their configs; the real
all-MiniLM-L6-v2 is checked against sentence-transformers in test_minilm_parity.py.
"""

from __future__ import annotations

import shutil
from itertools import accumulate
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from lfm_core.backbones import AutoModelBackbone
from lfm_core.errors import InputError
from lfm_core.modeling_bert import packed_forward, runs_packed

SHAPES = {
    "vocab_size": 97,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 48,
    "max_position_embeddings": 64,
}
FAMILIES = {
    "bert": (BertConfig, BertModel, {"pad_token_id": 0}),
    "roberta": (RobertaConfig, RobertaModel, {"pad_token_id": 1}),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel, {"pad_token_id": 1}),
}


def build(family: str, **overrides: object) -> torch.nn.Module:
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    config = config_cls(**SHAPES, **extra, **overrides)
    return model_cls(config).eval()


def sequences(pad: int, lengths: list[int], seed: int = 1) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, SHAPES["vocab_size"], (n,), generator=gen).tolist()
        out.append([t if t != pad else pad + 2 for t in ids])
    return out


def padded_reference(
    model: torch.nn.Module, seqs: list[list[int]], keys: list[list[bool]] | None = None
) -> list[torch.Tensor]:
    """transformers' own forward on a right-padded batch, padding dropped."""
    pad = model.config.pad_token_id
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1 if keys is None else torch.tensor(keys[i], dtype=torch.long)
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return [hidden[i, : len(s)] for i, s in enumerate(seqs)]


def end_to_end(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, cu_seqlens)`` of ``seqs`` packed."""
    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
    return ids, torch.tensor([0, *accumulate(len(s) for s in seqs)], dtype=torch.int32)


def packed(
    model: torch.nn.Module, seqs: list[list[int]], keys: list[list[bool]] | None = None
) -> list[torch.Tensor]:
    ids, cu = end_to_end(seqs)
    key_mask = None if keys is None else torch.tensor([k for ks in keys for k in ks])
    with torch.inference_mode():
        hidden = packed_forward(model, ids, cu, key_mask)
    return list(hidden.split([len(s) for s in seqs]))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_packed_tokens_get_the_padded_models_states(family: str) -> None:
    model = build(family)
    assert runs_packed(model)
    seqs = sequences(model.config.pad_token_id, [5, 17, 1, 9, 17, 30])
    for got, want in zip(packed(model, seqs), padded_reference(model, seqs)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_sequence_gets_the_same_states_alone_and_packed(family: str) -> None:
    model = build(family)
    seqs = sequences(model.config.pad_token_id, [12, 3, 25])
    together = packed(model, seqs)
    for seq, state in zip(seqs, together):
        torch.testing.assert_close(packed(model, [seq])[0], state, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hidden_keys_are_hidden_as_with_an_attention_mask(family: str) -> None:
    # ColBERT query expansion: tokens that get states but that no token attends to.
    model = build(family)
    seqs = sequences(model.config.pad_token_id, [8, 6])
    keys = [[True] * 5 + [False] * 3, [True, False, True, True, False, True]]
    got = packed(model, seqs, keys)
    for got_seq, want_seq in zip(got, padded_reference(model, seqs, keys)):
        torch.testing.assert_close(got_seq, want_seq, atol=1e-5, rtol=1e-5)
    # and they do change the result: a mask that is ignored would fail above
    unmasked = packed(model, seqs)
    assert not torch.allclose(unmasked[0], got[0], atol=1e-4)


def test_a_pad_token_inside_a_roberta_text_keeps_roberta_positions() -> None:
    # RoBERTa numbers positions by counting non-pad tokens (a pad id used as query
    # expansion, say, gets the pad position and does not advance the count).
    model = build("roberta")
    pad = model.config.pad_token_id
    seqs = [[5, 6, pad, 7, 8], [9, pad, pad, 10]]
    for got, want in zip(packed(model, seqs), padded_reference(model, seqs)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_a_sequence_with_no_visible_key_is_refused() -> None:
    model = build("bert")
    with pytest.raises(InputError, match="key_mask hides every token of sequence 1"):
        packed(model, [[5, 6], [7, 8]], [[True, True], [False, False]])


def test_models_the_packed_path_does_not_cover_stay_padded() -> None:
    assert not runs_packed(build("bert", is_decoder=True))
    assert not runs_packed(build("bert", position_embedding_type="relative_key"))
    no_pad = build("roberta")
    no_pad.config.pad_token_id = None
    assert not runs_packed(no_pad)

    class Custom(BertModel):  # a subclass may change the forward
        pass

    assert not runs_packed(Custom(build("bert").config))
    torch.manual_seed(0)
    distil = DistilBertModel(DistilBertConfig(vocab_size=97, dim=32, n_layers=1, n_heads=4))
    assert not runs_packed(distil)
    backbone = AutoModelBackbone(distil.eval())
    assert backbone.padded
    assert not AutoModelBackbone(build("bert")).padded


@pytest.mark.parametrize("padded", [False, True])
def test_the_backbone_gives_the_same_states_either_way(padded: bool) -> None:
    model = build("xlm-roberta")
    backbone = AutoModelBackbone(model)
    backbone.padded = padded
    seqs = sequences(model.config.pad_token_id, [4, 11, 7])
    with torch.inference_mode():
        got = backbone(*end_to_end(seqs), None)
    want = torch.cat(padded_reference(model, seqs))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta"])
def test_a_sentence_transformers_checkpoint_of_the_family_equals_sentence_transformers(
    family: str, minilm_dir: Path, tmp_path: Path
) -> None:
    # A tiny random RoBERTa / XLM-R body with MiniLM's WordPiece tokenizer (pad id 0, so
    # positions start at 1), saved by sentence-transformers itself: the whole encoder path
    # (tokenizer, packed body, mean pooling, normalize) against SentenceTransformer.encode.
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    from lfm_core import DenseEncoder

    config_cls, model_cls, _ = FAMILIES[family]
    torch.manual_seed(0)
    config = config_cls(**{**SHAPES, "vocab_size": 30522, "max_position_embeddings": 130})
    config.pad_token_id = 0
    body = tmp_path / "body"
    model_cls(config).save_pretrained(body)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, body / name)
    folder = tmp_path / "st"
    modules = [Transformer(str(body), max_seq_length=128), Pooling(32, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))

    texts = ["where is my order?", "a much longer text " * 12, "ok", "Straße und Café", "x " * 200]
    ours = DenseEncoder.from_pretrained(folder, device="cpu")
    assert not ours.backbone.padded
    want = SentenceTransformer(str(folder), device="cpu").encode(texts, batch_size=8)
    np.testing.assert_allclose(ours.encode_documents(texts), want, atol=1e-5)
