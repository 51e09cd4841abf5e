"""Checkpoint loading: layouts, configs, safety and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lfm_core import CheckpointError, DenseEncoder, LateInteractionEncoder, Lfm2Config
from lfm_core.config import adjusted_ffn_width
from lfm_core.loading import read_modules, resolve_checkpoint

REAL_CONFIGS = ["lfm2.5-embedding-350m", "lfm2.5-colbert-350m"]


@pytest.mark.parametrize("name", REAL_CONFIGS)
def test_real_configs_parse(shared_data: Path, name: str) -> None:
    raw = json.loads((shared_data / "lfm2-tokenizer" / name / "config.json").read_text())
    cfg = Lfm2Config.from_dict(raw)
    assert cfg.hidden_size == 1024 and cfg.num_hidden_layers == 16
    assert cfg.intermediate_size == 4608, "6656 declared, auto-adjusted to 4608"
    assert [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"] == [
        2,
        5,
        8,
        10,
        12,
        14,
    ]
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (16, 8, 64)
    assert cfg.rope_theta == 1e6 and cfg.conv_L_cache == 3 and cfg.tie_embedding


def test_legacy_full_attn_idxs_equals_layer_types() -> None:
    base = {
        "vocab_size": 10,
        "hidden_size": 8,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 12,
    }
    new = Lfm2Config.from_dict(
        {**base, "layer_types": ["conv", "full_attention", "conv", "full_attention"]}
    )
    old = Lfm2Config.from_dict({**base, "full_attn_idxs": [1, 3]})
    assert new == old


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"layer_types": ["conv"]}, "lists 1 layer_types"),
        ({"layer_types": ["conv", "mamba"]}, r"unknown layer_types\[1\] 'mamba'"),
        ({"num_attention_heads": 3}, "not a multiple"),
        ({"model_type": "bert"}, "is not 'lfm2'"),
    ],
)
def test_bad_config_names_the_key(patch, message) -> None:
    base = {
        "vocab_size": 10,
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 12,
        "layer_types": ["conv", "full_attention"],
    }
    with pytest.raises(CheckpointError, match=message):
        Lfm2Config.from_dict({**base, **patch}, source="x/config.json")


def test_ffn_width_rule() -> None:
    assert adjusted_ffn_width(6656, auto_adjust=True, multiplier=1.0, multiple_of=256) == 4608
    assert adjusted_ffn_width(6656, auto_adjust=False, multiplier=1.0, multiple_of=256) == 6656


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_weight_prefixes_are_stripped(tiny_dense_dir: Path, tmp_path: Path, tiny_dense) -> None:
    for prefix in ("model.", "lfm2."):
        folder = _copy(tiny_dense_dir, tmp_path / prefix.strip("."))
        state = load_file(str(folder / "model.safetensors"))
        save_file({prefix + k: v for k, v in state.items()}, str(folder / "model.safetensors"))
        enc = DenseEncoder.from_pretrained(folder, device="cpu")
        torch.testing.assert_close(
            torch.from_numpy(enc.encode_queries(["hi"])),
            torch.from_numpy(tiny_dense.encode_queries(["hi"])),
        )


def test_config_weight_mismatch_is_clear(tiny_dense_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_dense_dir, tmp_path / "bad")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 128
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"do not match its config.json.*shape mismatches"):
        DenseEncoder.from_pretrained(folder, device="cpu")


def test_pickle_weights_refused_unless_opted_in(
    tiny_dense_dir: Path, tmp_path: Path, tiny_dense
) -> None:
    folder = _copy(tiny_dense_dir, tmp_path / "pickled")
    state = load_file(str(folder / "model.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pickle weights"):
        DenseEncoder.from_pretrained(folder, device="cpu")
    enc = DenseEncoder.from_pretrained(folder, device="cpu", allow_pickle=True)
    torch.testing.assert_close(
        torch.from_numpy(enc.encode_queries(["hi"])),
        torch.from_numpy(tiny_dense.encode_queries(["hi"])),
    )


def test_unknown_module_type_is_refused_not_imported(tiny_dense_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_dense_dir, tmp_path / "mod")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_X", "type": "os.system"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(
        CheckpointError, match=r"unknown module type 'os.system' at modules.json\[2\]"
    ):
        read_modules(folder)


@pytest.mark.parametrize("path", ["../outside", "/etc"])
def test_module_path_cannot_escape(tiny_dense_dir: Path, tmp_path: Path, path: str) -> None:
    folder = _copy(tiny_dense_dir, tmp_path / "escape")
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = path
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(
        CheckpointError, match="relative to the model folder|escapes the model folder"
    ):
        read_modules(folder)


@pytest.mark.parametrize("name", ["../models/x", "/no/such/folder", "not a valid id!"])
def test_bad_names_are_rejected_without_network(name: str) -> None:
    with pytest.raises(CheckpointError):
        resolve_checkpoint(name)


def test_offline_hub_error_names_model_and_local_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        CheckpointError,
        match=r"'LiquidAI/LFM2.5-Embedding-350M'.*hf download LiquidAI/LFM2.5-Embedding-350M.*load that folder",
    ):
        DenseEncoder.from_pretrained("LiquidAI/LFM2.5-Embedding-350M", cache_dir=tmp_path)


def test_revision_and_safe_patterns_reach_the_hub(monkeypatch, tiny_dense_dir: Path) -> None:
    seen = {}

    def fake_download(repo_id, **kwargs):
        seen.update(kwargs, repo_id=repo_id)
        return str(tiny_dense_dir)

    monkeypatch.setattr("lfm_core.loading.snapshot_download", fake_download)
    enc = DenseEncoder.from_pretrained(
        "LiquidAI/LFM2.5-Embedding-350M", revision="abc123", device="cpu"
    )
    assert enc.model_name == "LiquidAI/LFM2.5-Embedding-350M"
    assert seen["repo_id"] == "LiquidAI/LFM2.5-Embedding-350M" and seen["revision"] == "abc123"
    assert not any(p.endswith((".py", ".bin", ".pt", ".pkl")) for p in seen["allow_patterns"])


def test_colbert_needs_its_projection(tiny_colbert_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_colbert_dir, tmp_path / "noproj")
    (folder / "modules.json").write_text(
        json.dumps(json.loads((folder / "modules.json").read_text())[:1])
    )
    with pytest.raises(CheckpointError, match="0 Dense modules"):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_dense_projection_shape_checked(tiny_colbert_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_colbert_dir, tmp_path / "badproj")
    cfg = json.loads((folder / "1_Dense" / "config.json").read_text())
    cfg["out_features"] = 32
    (folder / "1_Dense" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"has shape \(16, 64\)"):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_unknown_pooling_is_named(tiny_dense_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_dense_dir, tmp_path / "pool")
    cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    cfg.update(pooling_mode_cls_token=False, pooling_mode_max_tokens=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError,
        match=r"unsupported pooling in 1_Pooling/config.json \(pooling_mode_max_tokens\)",
    ):
        DenseEncoder.from_pretrained(folder, device="cpu")
