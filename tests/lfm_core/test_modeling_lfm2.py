"""The packed LFM2 backbone: parity with transformers (causal), with an independent
reference written here from DESIGN.md (bidirectional), and batch independence."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from lfm_core.config import Lfm2Config
from lfm_core.errors import InputError
from lfm_core.modeling_lfm2 import Lfm2Model
from lfm_core.packing import PackedBatch

TINY = Lfm2Config(
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=96,
    layer_types=("conv", "full_attention", "conv", "full_attention"),
    rope_theta=10_000.0,  # small theta: rotations are large at short positions, so RoPE bugs show
)
CONV_ONLY = dataclasses.replace(TINY, num_hidden_layers=1, layer_types=("conv",))
ATTENTION_ONLY = dataclasses.replace(
    TINY, num_hidden_layers=2, layer_types=("full_attention", "full_attention")
)
MIXED_LENGTHS = (1, 5, 17, 3)
EXACT = {"atol": 1e-5, "rtol": 0.0}


# --------------------------------------------------------------------------- helpers


def random_state(config: Lfm2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in our key layout; norm weights far from 1 so a wrong norm formula shows."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in Lfm2Model(config).state_dict().items():
        if "norm" in name:
            value = 0.5 + torch.rand(tensor.shape, generator=gen)
        elif name == "embed_tokens.weight":
            value = torch.randn(tensor.shape, generator=gen)
        else:
            value = torch.randn(tensor.shape, generator=gen) / math.sqrt(tensor.shape[-1])
        state[name] = value
    return state


def build(config: Lfm2Config, state: dict[str, torch.Tensor], *, causal: bool = False) -> Lfm2Model:
    model = Lfm2Model(config, causal=causal)
    model.load_state_dict(state, strict=True)
    return model.eval()


def random_sequences(lengths: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, TINY.vocab_size, (n,), generator=gen) for n in lengths]


def random_key_masks(lengths: tuple[int, ...], seed: int = 2) -> list[torch.Tensor]:
    """About a third of the keys hidden; the first token of each sequence always visible."""
    gen = torch.Generator().manual_seed(seed)
    masks = [torch.rand(n, generator=gen) > 0.35 for n in lengths]
    for mask in masks:
        mask[0] = True
    return masks


def run_packed(
    model: Lfm2Model, seqs: list[torch.Tensor], key_masks: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Pack ``seqs`` end to end, run one forward, split the output back per sequence."""
    lengths = [len(s) for s in seqs]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    key_mask = None if key_masks is None else torch.cat(key_masks)
    with torch.inference_mode():
        out = model(torch.cat(seqs), cu, key_mask)
    return list(out.split(lengths))


def changed_positions(a: torch.Tensor, b: torch.Tensor) -> set[int]:
    return set((a - b).abs().amax(-1).gt(1e-6).nonzero().flatten().tolist())


def transformers_model(config: Lfm2Config, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    hf_config = transformers.Lfm2Config(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        block_auto_adjust_ff_dim=False,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        layer_types=list(config.layer_types),
        conv_L_cache=config.conv_L_cache,
        conv_bias=config.conv_bias,
        norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attn_implementation="eager",
    )
    model = transformers.Lfm2Model(hf_config)
    model.load_state_dict(state, strict=True)
    return model.eval()


def reference_forward(
    state: dict[str, torch.Tensor],
    config: Lfm2Config,
    ids: torch.Tensor,
    key_mask: torch.Tensor | None,
) -> torch.Tensor:
    """DESIGN.md's bidirectional LFM2, one unpadded sequence: ``[L]`` ids -> ``[L, hidden]``."""
    n, hidden, d = len(ids), config.hidden_size, config.head_dim
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + config.norm_eps)

    angles = torch.arange(n)[:, None] * config.rope_theta ** (-torch.arange(0, d, 2) / d)
    cos, sin = angles.cos(), angles.sin()

    def rope(x: torch.Tensor) -> torch.Tensor:  # [heads, L, d]; pairs (i, i + d/2)
        x1, x2 = x[..., : d // 2], x[..., d // 2 :]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    h = state["embed_tokens.weight"][ids]
    for i, kind in enumerate(config.layer_types):
        w = {
            k.removeprefix(f"layers.{i}."): v
            for k, v in state.items()
            if k.startswith(f"layers.{i}.")
        }
        x = rms(h, w["operator_norm.weight"])
        if kind == "conv":
            b, c, v = (x @ w["conv.in_proj.weight"].T).chunk(3, dim=-1)
            k = config.conv_L_cache
            conv = F.conv1d((b * v).T[None], w["conv.conv.weight"], padding=k // 2, groups=hidden)
            mixed = (c * conv[0].T) @ w["conv.out_proj.weight"].T
        else:
            q = (x @ w["self_attn.q_proj.weight"].T).view(n, heads, d).transpose(0, 1)
            kk = (x @ w["self_attn.k_proj.weight"].T).view(n, kv_heads, d).transpose(0, 1)
            vv = (x @ w["self_attn.v_proj.weight"].T).view(n, kv_heads, d).transpose(0, 1)
            q = rope(rms(q, w["self_attn.q_layernorm.weight"]))
            kk = rope(rms(kk, w["self_attn.k_layernorm.weight"]))
            kk, vv = (t.repeat_interleave(heads // kv_heads, dim=0) for t in (kk, vv))
            scores = q @ kk.transpose(1, 2) / math.sqrt(d)
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, float("-inf"))
            attended = (scores.softmax(-1) @ vv).transpose(0, 1).reshape(n, hidden)
            mixed = attended @ w["self_attn.out_proj.weight"].T
        h = h + mixed
        y = rms(h, w["ffn_norm.weight"])
        ffn = w["feed_forward.w2.weight"]
        h = (
            h
            + (F.silu(y @ w["feed_forward.w1.weight"].T) * (y @ w["feed_forward.w3.weight"].T))
            @ ffn.T
        )
    return rms(h, state["embedding_norm.weight"])


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return random_state(TINY)


@pytest.fixture(scope="module")
def hf_model(tiny_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """transformers' causal ``Lfm2Model`` (eager attention) holding the same weights."""
    return transformers_model(TINY, tiny_state)


# --------------------------------------------------------------------------- parity


def test_state_dict_has_transformers_names_and_shapes(hf_model: torch.nn.Module) -> None:
    ours = {k: tuple(v.shape) for k, v in Lfm2Model(TINY).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in hf_model.state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize(
    "lengths", [(9,), MIXED_LENGTHS, (6, 6, 6)], ids=["single", "mixed", "equal"]
)
def test_causal_matches_transformers(
    tiny_state: dict[str, torch.Tensor], hf_model: torch.nn.Module, lengths: tuple[int, ...]
) -> None:
    seqs = random_sequences(lengths)
    ours = run_packed(build(TINY, tiny_state, causal=True), seqs)
    with torch.inference_mode():
        theirs = [hf_model(input_ids=s[None]).last_hidden_state[0] for s in seqs]
    for got, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(got, want, **EXACT)


@pytest.mark.parametrize("masked", [False, True], ids=["no-key-mask", "key-mask"])
def test_bidirectional_matches_reference(tiny_state: dict[str, torch.Tensor], masked: bool) -> None:
    seqs = random_sequences(MIXED_LENGTHS)
    masks = random_key_masks(MIXED_LENGTHS) if masked else None
    ours = run_packed(build(TINY, tiny_state), seqs, masks)
    for i, (got, ids) in enumerate(zip(ours, seqs, strict=True)):
        want = reference_forward(tiny_state, TINY, ids, None if masks is None else masks[i])
        torch.testing.assert_close(got, want, **EXACT)


# --------------------------------------------------------------------------- semantics


@pytest.mark.parametrize(("causal", "sees_later"), [(False, True), (True, False)])
def test_first_token_sees_last_token_only_when_bidirectional(
    tiny_state: dict[str, torch.Tensor], causal: bool, sees_later: bool
) -> None:
    model = build(TINY, tiny_state, causal=causal)
    ids = random_sequences((12,))[0]
    edited = ids.clone()
    edited[-1] = (ids[-1] + 1) % TINY.vocab_size
    (before,), (after,) = run_packed(model, [ids]), run_packed(model, [edited])
    assert (0 in changed_positions(before, after)) == sees_later


@pytest.mark.parametrize(("causal", "reach"), [(False, {3, 4, 5}), (True, {4, 5, 6})])
def test_convolution_receptive_field(causal: bool, reach: set[int]) -> None:
    """One conv layer, kernel 3: centered reaches t-1..t+1, causal reaches t-2..t."""
    model = build(CONV_ONLY, random_state(CONV_ONLY), causal=causal)
    ids = random_sequences((9,))[0]
    edited = ids.clone()
    edited[4] = (ids[4] + 1) % TINY.vocab_size
    (before,), (after,) = run_packed(model, [ids]), run_packed(model, [edited])
    assert changed_positions(before, after) == reach


def test_key_masked_token_reaches_no_other_token_through_attention() -> None:
    model = build(ATTENTION_ONLY, random_state(ATTENTION_ONLY))
    ids = random_sequences((8,))[0]
    key_mask = torch.tensor([True] * 5 + [False] * 3)
    edited = ids.clone()
    edited[6] = (ids[6] + 1) % TINY.vocab_size
    (before,), (after,) = (
        run_packed(model, [ids], [key_mask]),
        run_packed(model, [edited], [key_mask]),
    )
    assert changed_positions(before, after) == {6}


def test_key_mask_leaves_the_convolution_alone() -> None:
    """Key-masked tokens stay content for the convolution: not zeroed, still seen by neighbours."""
    model = build(CONV_ONLY, random_state(CONV_ONLY))
    ids = random_sequences((8,))[0]
    key_mask = torch.tensor([True] * 5 + [False] * 3)
    (plain,), (masked,) = run_packed(model, [ids]), run_packed(model, [ids], [key_mask])
    torch.testing.assert_close(masked, plain, atol=0.0, rtol=0.0)


# --------------------------------------------------------------------------- packing


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("masked", [False, True], ids=["no-key-mask", "key-mask"])
@pytest.mark.parametrize("lengths", [MIXED_LENGTHS, (6, 6, 6)], ids=["mixed", "equal"])
def test_sequence_alone_equals_sequence_in_batch(
    tiny_state: dict[str, torch.Tensor], lengths: tuple[int, ...], masked: bool, causal: bool
) -> None:
    model = build(TINY, tiny_state, causal=causal)
    seqs = random_sequences(lengths)
    masks = random_key_masks(lengths) if masked else None
    packed = run_packed(model, seqs, masks)
    for i, (got, ids) in enumerate(zip(packed, seqs, strict=True)):
        (alone,) = run_packed(model, [ids], None if masks is None else [masks[i]])
        torch.testing.assert_close(got, alone, **EXACT)


@pytest.mark.parametrize(
    ("lengths", "key_mask", "allow_flash", "path"),
    [
        ((4, 4), None, False, "dense"),
        ((4, 4), [True] * 8, False, "dense"),
        ((4, 4), [True] * 7 + [False], False, "padded"),
        ((3, 5), None, False, "padded"),
        ((3, 5), None, True, "flash"),
        ((3, 5), [True] * 7 + [False], True, "padded"),
    ],
)
def test_attention_path_choice(
    lengths: tuple[int, ...], key_mask: list[bool] | None, allow_flash: bool, path: str
) -> None:
    bounds = [0, *torch.tensor(lengths).cumsum(0).tolist()]
    batch = PackedBatch.build(
        torch.tensor(bounds, dtype=torch.int32),
        bounds,
        None if key_mask is None else torch.tensor(key_mask),
        causal=False,
        conv_kernel_size=3,
        allow_flash=allow_flash,
    )
    assert batch.attention == path


# --------------------------------------------------------------------------- inputs


def test_empty_input_gives_empty_output(tiny_state: dict[str, torch.Tensor]) -> None:
    out = build(TINY, tiny_state)(torch.zeros(0, dtype=torch.long), torch.tensor([0]))
    assert out.shape == (0, TINY.hidden_size)


def test_output_has_model_dtype(tiny_state: dict[str, torch.Tensor]) -> None:
    seqs = random_sequences(MIXED_LENGTHS)
    full = run_packed(build(TINY, tiny_state), seqs)
    half = run_packed(build(TINY, tiny_state).to(torch.bfloat16), seqs)
    assert {t.dtype for t in half} == {torch.bfloat16}
    for got, want in zip(half, full, strict=True):
        torch.testing.assert_close(got.float(), want, atol=0.15, rtol=0.05)


@pytest.mark.parametrize(
    ("cu_seqlens", "key_mask", "causal", "error", "match"),
    [
        ([1, 6], None, False, InputError, "rise strictly from 0"),
        ([0, 5], None, False, InputError, "number of tokens \\(6\\)"),
        ([0, 3, 3, 6], None, False, InputError, "rise strictly"),
        ([0.0, 6.0], None, False, TypeError, "integer tensor"),
        ([0, 3, 6], [True] * 3 + [False] * 3, False, InputError, "every token of sequence 1"),
        ([0, 3, 6], [True, False, True, False, True, True], True, InputError, "first token of seq"),
        ([0, 6], [1, 1, 1, 1, 1, 1], False, TypeError, "key_mask must be a bool tensor"),
    ],
)
def test_bad_inputs_are_refused(
    tiny_state: dict[str, torch.Tensor],
    cu_seqlens: list[float],
    key_mask: list[bool] | None,
    causal: bool,
    error: type[Exception],
    match: str,
) -> None:
    model = build(TINY, tiny_state, causal=causal)
    ids = torch.arange(6)
    with pytest.raises(error, match=match):
        model(ids, torch.tensor(cu_seqlens), None if key_mask is None else torch.tensor(key_mask))


# --------------------------------------------------------------------------- real shapes


@pytest.mark.parametrize(
    ("checkpoint", "n_params"),
    [
        ("lfm2.5-embedding-350m", 354_483_968),
        # The same network with a 64,402-row embedding: 1,134 fewer rows of 1,024.
        ("lfm2.5-colbert-350m", 354_483_968 - 1_134 * 1_024),
    ],
)
def test_real_config_parameter_count(shared_data: Path, checkpoint: str, n_params: int) -> None:
    path = shared_data / "lfm2-tokenizer" / checkpoint / "config.json"
    config = Lfm2Config.from_dict(json.loads(path.read_text()), source=str(path))
    with torch.device("meta"):
        model = Lfm2Model(config)
    assert sum(p.numel() for p in model.parameters()) == n_params
