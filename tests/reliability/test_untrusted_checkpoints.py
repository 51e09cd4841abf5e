"""Untrusted checkpoints: a model folder or hub repository is data, never code.

- Code shipped in a checkpoint (``auto_map`` + ``modeling_*.py`` that would write a marker
  file when imported) is never run: on the LFM2 path, on the transformers ``AutoModel``
  path, for the tokenizer, for ``modules.json`` types, and for hub downloads (whose
  patterns never fetch ``*.py``).
- Pickle weights are refused unless the caller opts in; with the opt-in, a pickle holding
  more than tensors is still refused, as a ``CheckpointError``.
- Weights that do not fit the config give a ``CheckpointError`` naming the weight, on both
  paths (transformers would otherwise only log it, or silently initialize a missing weight
  at random); unreadable weight files give a ``CheckpointError`` naming the file.
- Paths that escape the model folder (``..``, absolute, in ``modules.json`` or a shard
  index) and malformed model ids are rejected without touching the network; the symlinks
  of a real Hugging Face cache snapshot are not escapes.
- A revision is passed through to the hub download.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file, save_file

import lfm_core.loading
from lfm_core import CheckpointError, DenseEncoder, LateInteractionEncoder

KINDS = {
    "lfm2-dense": ("tiny_dense_dir", DenseEncoder),
    "lfm2-colbert": ("tiny_colbert_dir", LateInteractionEncoder),
    "automodel-minilm": ("minilm_dir", DenseEncoder),
}
PROBE = ["a query about refunds", "¿dónde está mi pedido?", ""]


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> tuple[Path, type[Any]]:
    fixture, cls = KINDS[request.param]
    return request.getfixturevalue(fixture), cls


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def same_outputs(a: Any, b: Any) -> None:
    for x, y in zip(a.encode_documents(PROBE), b.encode_documents(PROBE)):
        np.testing.assert_allclose(x, y, atol=1e-5)


# ------------------------------------------------------------------ code is never run


def plant_remote_code(folder: Path, marker: Path) -> None:
    """``auto_map`` in the configs and Python files that write ``marker`` when imported."""
    payload = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran: ' + __name__)\n"
        "from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
        "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    for name in (
        "modeling_evil.py",
        "configuration_evil.py",
        "tokenization_evil.py",
        "__init__.py",
    ):
        (folder / name).write_text(payload)
    edit_json(
        folder / "config.json",
        auto_map={
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModel": "modeling_evil.EvilModel",
        },
    )
    edit_json(
        folder / "tokenizer_config.json",
        auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
    )


def test_code_in_a_checkpoint_is_never_run(
    kind: tuple[Path, type[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, cls = kind
    folder = copy_checkpoint(original, tmp_path / "evil")
    marker = tmp_path / "MARKER"
    plant_remote_code(folder, marker)
    monkeypatch.syspath_prepend(str(folder))  # importable, yet never imported
    encoder = cls.from_pretrained(folder, device="cpu")
    same_outputs(encoder, cls.from_pretrained(original, device="cpu"))
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "evil"},
        {"model_type": "evil", "architectures": ["EvilModel"]},
    ],
    ids=["unknown-model-type", "unknown-architecture"],
)
def test_an_architecture_that_needs_remote_code_is_refused(
    minilm_dir: Path, tmp_path: Path, change: dict[str, Any]
) -> None:
    folder = copy_checkpoint(minilm_dir, tmp_path / "evil")
    marker = tmp_path / "MARKER"
    plant_remote_code(folder, marker)
    edit_json(folder / "config.json", **change)
    with pytest.raises(CheckpointError, match="never runs a repository's own code"):
        DenseEncoder.from_pretrained(folder, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("fixture", ["tiny_dense_dir", "minilm_dir"])
def test_an_unknown_tokenizer_class_never_runs_its_code(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str
) -> None:
    folder = copy_checkpoint(request.getfixturevalue(fixture), tmp_path / "evil")
    marker = tmp_path / "MARKER"
    plant_remote_code(folder, marker)
    edit_json(folder / "tokenizer_config.json", tokenizer_class="EvilTokenizer")
    # Refusing is fine too; running the code is not.
    with contextlib.suppress(CheckpointError):
        DenseEncoder.from_pretrained(folder, device="cpu").encode_queries(PROBE)
    assert not marker.exists()


@pytest.mark.parametrize("type_name", ["modeling_evil.Pooling", "modeling_evil.EvilModel"])
def test_modules_json_types_are_matched_never_imported(
    tiny_dense_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, type_name: str
) -> None:
    folder = copy_checkpoint(tiny_dense_dir, tmp_path / "evil")
    marker = tmp_path / "MARKER"
    plant_remote_code(folder, marker)
    monkeypatch.syspath_prepend(str(folder))
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = type_name
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match=rf"unknown module type '{type_name}'"):
        DenseEncoder.from_pretrained(folder, device="cpu")
    assert not marker.exists()


# ------------------------------------------------------------ the hub: patterns, revision

# What a real repository holds, code and pickles included.
REPO_FILES = [
    ".gitattributes",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "configuration_lfm2.py",
    "modeling_lfm2.py",
    "modules.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "pytorch_model.bin",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "1_Dense/config.json",
    "1_Dense/model.safetensors",
    "1_Dense/pytorch_model.bin",
    "1_Dense/dense.py",
    "1_Pooling/config.json",
    "custom/__init__.py",
    "onnx/model.onnx",
]
NEEDED = {
    "config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "sentence_bert_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "1_Dense/config.json",
    "1_Dense/model.safetensors",
    "1_Pooling/config.json",
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("allow_pickle", [False, True], ids=["default", "allow_pickle"])
def test_hub_downloads_fetch_no_code_pin_the_revision_and_run_nothing(
    kind: tuple[Path, type[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    allow_pickle: bool,
) -> None:
    original, cls = kind
    snapshot = copy_checkpoint(original, tmp_path / "snapshot")
    marker = tmp_path / "MARKER"
    plant_remote_code(snapshot, marker)
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(lfm_core.loading, "snapshot_download", fake_snapshot_download)
    encoder = cls.from_pretrained(
        "LiquidAI/LFM2.5-Embedding-350M",
        revision=COMMIT,
        cache_dir=tmp_path / "cache",
        allow_pickle=allow_pickle,
        device="cpu",
    )
    encoder.encode_documents(PROBE)
    assert not marker.exists()
    (call,) = calls
    assert call["repo_id"] == "LiquidAI/LFM2.5-Embedding-350M"
    assert call["revision"] == COMMIT
    assert call["cache_dir"] == str(tmp_path / "cache")
    fetched = set(filter_repo_objects(REPO_FILES, allow_patterns=call["allow_patterns"]))
    assert not {f for f in fetched if f.endswith(".py")}, "code would be downloaded"
    assert fetched >= NEEDED, f"needed files not fetched: {NEEDED - fetched}"
    pickles = {f for f in fetched if f.endswith(".bin")}
    assert pickles == (
        {"pytorch_model.bin", "1_Dense/pytorch_model.bin"} if allow_pickle else set()
    )


BAD_NAMES = [
    "../models/x",
    "/no/such/folder",
    "~/no-such-model-folder",
    "LiquidAI/../../etc/passwd",
    "LiquidAI/LFM2.5/extra",
    "https://evil.example/model",
    "LiquidAI/LFM2.5 350M",
    "LiquidAI/LFM2.5\x00",
    "-rf/x",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_ids_are_rejected_without_any_download(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"snapshot_download called for {name!r}")

    monkeypatch.setattr(lfm_core.loading, "snapshot_download", no_network)
    with pytest.raises(CheckpointError):
        DenseEncoder.from_pretrained(name, device="cpu")


# ------------------------------------------------------------------------- pickles


def to_pickle(folder: Path) -> None:
    """Replace ``folder/model.safetensors`` with an equivalent ``pytorch_model.bin``."""
    state = load_file(str(folder / "model.safetensors"))
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    ("fixture", "cls", "part"),
    [
        ("tiny_dense_dir", DenseEncoder, "."),
        ("tiny_colbert_dir", LateInteractionEncoder, "1_Dense"),
        ("minilm_dir", DenseEncoder, "."),
    ],
    ids=["lfm2-body", "colbert-projection", "automodel"],
)
def test_pickle_weights_load_only_with_the_opt_in(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str, cls: type[Any], part: str
) -> None:
    original = request.getfixturevalue(fixture)
    folder = copy_checkpoint(original, tmp_path / "pickled")
    to_pickle(folder / part)
    with pytest.raises(CheckpointError, match=r"pickle weights.*allow_pickle=True"):
        cls.from_pretrained(folder, device="cpu")
    same_outputs(
        cls.from_pretrained(folder, device="cpu", allow_pickle=True),
        cls.from_pretrained(original, device="cpu"),
    )


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


@pytest.mark.parametrize(
    ("fixture", "cls"),
    [("tiny_dense_dir", DenseEncoder), ("minilm_dir", DenseEncoder)],
    ids=["lfm2", "automodel"],
)
def test_a_pickle_that_runs_code_is_refused_even_with_the_opt_in(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str, cls: type[Any]
) -> None:
    folder = copy_checkpoint(request.getfixturevalue(fixture), tmp_path / "evil")
    marker = tmp_path / "MARKER"
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"embed_tokens.weight": _RunsCode(marker)}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused even with allow_pickle=True"):
        cls.from_pretrained(folder, device="cpu", allow_pickle=True)
    assert not marker.exists()


# ------------------------------------------------------------ config vs weights


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"vocab_size": 999},
            r"embed_tokens\.weight: checkpoint \(\d+, 64\) vs config \(999, 64\)",
        ),
        ({"num_key_value_heads": 4}, r"self_attn\.k_proj\.weight"),
        ({"block_ff_dim": 288}, r"feed_forward\.w1\.weight"),
        ({"conv_L_cache": 5}, r"conv\.conv\.weight"),
        (
            {"num_hidden_layers": 3, "layer_types": ["conv", "full_attention", "conv"]},
            r"unexpected weights \(e\.g\. layers\.3\.",
        ),
    ],
    ids=["vocab", "kv-heads", "ffn-width", "conv-kernel", "fewer-layers"],
)
def test_lfm2_config_that_does_not_fit_the_weights_names_the_weight(
    tiny_dense_dir: Path, tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    folder = copy_checkpoint(tiny_dense_dir, tmp_path / "bad")
    edit_json(folder / "config.json", **change)
    with pytest.raises(CheckpointError, match=named):
        DenseEncoder.from_pretrained(folder, device="cpu")


def test_lfm2_missing_weight_is_named(tiny_colbert_dir: Path, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_colbert_dir, tmp_path / "bad")
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.ffn_norm.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing 1 weights \(e\.g\. layers\.1\.ffn_norm"):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_colbert_projection_that_does_not_fit_names_the_weight(
    tiny_colbert_dir: Path, tmp_path: Path
) -> None:
    folder = copy_checkpoint(tiny_colbert_dir, tmp_path / "bad")
    edit_json(folder / "1_Dense" / "config.json", in_features=32)
    with pytest.raises(CheckpointError, match=r"linear\.weight in 1_Dense has shape \(16, 64\)"):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_automodel_config_that_does_not_fit_the_weights_names_the_weight(
    minilm_dir: Path, tmp_path: Path
) -> None:
    folder = copy_checkpoint(minilm_dir, tmp_path / "bad")
    edit_json(folder / "config.json", intermediate_size=1024)
    with pytest.raises(
        CheckpointError,
        match=r"encoder\.layer\.0\.intermediate\.dense\.\w+: checkpoint \(1536.*\) vs config \(1024",
    ):
        DenseEncoder.from_pretrained(folder, device="cpu")


def test_automodel_missing_weight_is_an_error_not_a_random_init(
    minilm_dir: Path, tmp_path: Path
) -> None:
    folder = copy_checkpoint(minilm_dir, tmp_path / "bad")
    state = load_file(str(folder / "model.safetensors"))
    del state["embeddings.word_embeddings.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing 1 weights.*embeddings\.word_embeddings"):
        DenseEncoder.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
@pytest.mark.parametrize(
    ("fixture", "cls", "file"),
    [
        ("tiny_dense_dir", DenseEncoder, "model.safetensors"),
        ("tiny_colbert_dir", LateInteractionEncoder, "1_Dense/model.safetensors"),
        ("minilm_dir", DenseEncoder, "model.safetensors"),
    ],
    ids=["lfm2", "colbert-projection", "automodel"],
)
def test_an_unreadable_weights_file_is_a_checkpoint_error(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fixture: str,
    cls: type[Any],
    file: str,
    how: str,
) -> None:
    folder = copy_checkpoint(request.getfixturevalue(fixture), tmp_path / "bad")
    data = (folder / file).read_bytes()
    broken = {"truncated": data[: len(data) // 2], "garbage": b"\x00junk" * 64, "empty": b""}
    (folder / file).write_bytes(broken[how])
    with pytest.raises(CheckpointError, match=r"cannot read .*safetensors"):
        cls.from_pretrained(folder, device="cpu")


# ---------------------------------------------------------------- escaping paths


@pytest.mark.parametrize(
    "path", ["../outside", "/etc", "1_Pooling/../../outside", "..\\outside", "./../outside"]
)
def test_a_modules_json_path_cannot_leave_the_model_folder(
    tiny_dense_dir: Path, tmp_path: Path, path: str
) -> None:
    folder = copy_checkpoint(tiny_dense_dir, tmp_path / "model")
    copy_checkpoint(tiny_dense_dir / "1_Pooling", tmp_path / "outside")
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = path
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match=r"modules\.json"):
        DenseEncoder.from_pretrained(folder, device="cpu")


def shard(folder: Path, names: tuple[str, str], write_to: tuple[Path, Path]) -> None:
    """Split ``model.safetensors`` in two files and write the index naming them."""
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    weight_map = {}
    for name, target, part in zip(names, write_to, halves):
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: state[k] for k in part}, str(target))
        weight_map.update(dict.fromkeys(part, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


@pytest.mark.parametrize("escape", ["../outside.safetensors", "ABSOLUTE"])
def test_a_shard_index_cannot_point_outside_the_model_folder(
    tiny_dense_dir: Path, tmp_path: Path, escape: str
) -> None:
    folder = copy_checkpoint(tiny_dense_dir, tmp_path / "model")
    outside = tmp_path / "outside.safetensors"
    name = str(outside) if escape == "ABSOLUTE" else escape
    shard(
        folder,
        ("model-00001-of-00002.safetensors", name),
        (folder / "model-00001-of-00002.safetensors", outside),
    )
    with pytest.raises(CheckpointError, match=r"model\.safetensors\.index\.json"):
        DenseEncoder.from_pretrained(folder, device="cpu")


def as_hub_cache(folder: Path, root: Path) -> Path:
    """Lay ``folder`` out as the hub cache does: every file a relative symlink into blobs/."""
    blobs = root / "blobs"
    snapshot = root / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = file.relative_to(folder)
        blob = blobs / hashlib.sha256(file.read_bytes() + str(relative).encode()).hexdigest()
        shutil.copyfile(file, blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.mark.parametrize("sharded", [False, True], ids=["single-file", "sharded"])
def test_a_hub_cache_snapshot_of_symlinks_loads(
    tiny_colbert_dir: Path, tiny_colbert: LateInteractionEncoder, tmp_path: Path, sharded: bool
) -> None:
    folder = copy_checkpoint(tiny_colbert_dir, tmp_path / "plain")
    if sharded:
        names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
        shard(folder, names, (folder / names[0], folder / names[1]))
    snapshot = as_hub_cache(folder, tmp_path / "models--LiquidAI--LFM2.5-ColBERT-350M")
    assert (snapshot / "config.json").is_symlink()
    same_outputs(LateInteractionEncoder.from_pretrained(snapshot, device="cpu"), tiny_colbert)
