"""Clear errors at the public entry points: a parameter or a checkpoint file and key named,
never an AttributeError, KeyError or RuntimeError from deep inside, and no unbounded
allocation driven by a config.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lfm_core import CheckpointError, DenseEncoder, InputError, LateInteractionEncoder


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    write_json(path, data)


# --------------------------------------------------------------- batching parameters


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_batch_size": 0}, InputError, "max_batch_size must be >= 1, got 0"),
        ({"max_batch_size": -3}, InputError, "max_batch_size must be >= 1, got -3"),
        ({"max_batch_size": "8"}, TypeError, "max_batch_size must be an int, not str"),
        ({"max_batch_size": True}, TypeError, "max_batch_size must be an int, not bool"),
        ({"max_tokens_per_batch": 0}, InputError, "max_tokens_per_batch must be >= 1"),
        (
            {"max_tokens_per_batch": 2.5},
            TypeError,
            "max_tokens_per_batch must be an int, not float",
        ),
    ],
)
def test_batching_limits_name_the_parameter(tiny_dense_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", **kwargs)


def test_numpy_integers_are_accepted_where_ints_are(tiny_colbert, tiny_dense_dir):
    ranked = tiny_colbert.rerank("q", ["a", "b", "c"], top_k=np.int64(2))
    assert len(ranked) == 2
    enc = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", max_batch_size=np.int32(4))
    assert enc.batching.max_batch_size == 4 and type(enc.batching.max_batch_size) is int


# ------------------------------------------------------------------ checkpoint files


def _break(folder: Path, case: str) -> None:
    if case == "config-list":
        write_json(folder / "config.json", [1, 2])
    elif case == "modules-entry":
        write_json(folder / "modules.json", ["0_Transformer"])
    elif case == "pooling-type":
        edit_json(folder / "1_Pooling" / "config.json", pooling_mode_cls_token="yes")
    elif case == "prompts-type":
        write_json(folder / "config_sentence_transformers.json", {"prompts": ["query: "]})
    elif case == "max-seq-length":
        write_json(folder / "sentence_bert_config.json", {"max_seq_length": "abc"})
    elif case == "config-int":
        edit_json(folder / "config.json", hidden_size="64")


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("config-list", r"config\.json must hold a JSON object, not a list"),
        ("modules-entry", r"modules\.json\[0\] .* must be an object"),
        ("pooling-type", r"'pooling_mode_cls_token' in 1_Pooling/config\.json must be bool"),
        ("prompts-type", r"'prompts' in config_sentence_transformers\.json must be dict"),
        (
            "max-seq-length",
            r"'max_seq_length' in sentence_bert_config\.json must be int, got 'abc'",
        ),
        ("config-int", r"'hidden_size' in .*config\.json must be an integer, got '64'"),
    ],
)
def test_dense_checkpoint_files_of_the_wrong_shape(tiny_dense_dir, tmp_path, case, match):
    folder = copy(tiny_dense_dir, tmp_path / "ckpt")
    _break(folder, case)
    with pytest.raises(CheckpointError, match=match):
        DenseEncoder.from_pretrained(folder, device="cpu")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"query_length": 1}, r"'query_length' .* must be >= 2"),
        ({"query_length": "32"}, r"'query_length' .* must be int"),
        ({"query_prefix": 7}, r"'query_prefix' .* must be str"),
        ({"skiplist_words": "!?"}, r"'skiplist_words' .* must be list"),
        ({"do_query_expansion": "no"}, r"'do_query_expansion' .* must be bool"),
    ],
)
def test_colbert_settings_of_the_wrong_type(tiny_colbert_dir, tmp_path, change, match):
    folder = copy(tiny_colbert_dir, tmp_path / "ckpt")
    edit_json(folder / "config_sentence_transformers.json", **change)
    with pytest.raises(CheckpointError, match=match):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_a_dense_module_without_out_features(tiny_colbert_dir, tmp_path):
    folder = copy(tiny_colbert_dir, tmp_path / "ckpt")
    cfg = json.loads((folder / "1_Dense" / "config.json").read_text())
    cfg.pop("out_features")
    write_json(folder / "1_Dense" / "config.json", cfg)
    with pytest.raises(
        CheckpointError, match=r"missing key 'out_features' in 1_Dense/config\.json"
    ):
        LateInteractionEncoder.from_pretrained(folder, device="cpu")


def test_a_second_dense_module_that_does_not_chain_is_refused_at_load(tiny_dense_dir, tmp_path):
    folder = copy(tiny_dense_dir, tmp_path / "ckpt")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {
            "idx": len(modules),
            "name": "9",
            "path": "9_Dense",
            "type": "sentence_transformers.models.Dense",
        }
    )
    write_json(folder / "modules.json", modules)
    (folder / "9_Dense").mkdir()
    write_json(
        folder / "9_Dense" / "config.json", {"in_features": 7, "out_features": 8, "bias": False}
    )
    save_file({"linear.weight": torch.zeros(8, 7)}, str(folder / "9_Dense" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="Dense module 1 takes 7 inputs"):
        DenseEncoder.from_pretrained(folder, device="cpu")


def test_integer_weights_are_refused_at_load(tiny_dense_dir, tmp_path):
    folder = copy(tiny_dense_dir, tmp_path / "ckpt")
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k in state if k.endswith("embedding_norm.weight"))
    state[name] = state[name].to(torch.int32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"embedding_norm\.weight: dtype torch\.int32, expected floats"
    ):
        DenseEncoder.from_pretrained(folder, device="cpu")


# ------------------------------------------------- AutoModel path: no unbounded memory


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent (pytest,
# over 1 GB by then) into the child; VmHWM belongs to the new process image alone.
_PEAK_RSS_PROBE = """
import sys
from lfm_core import CheckpointError, DenseEncoder
try:
    DenseEncoder.from_pretrained(sys.argv[1], device="cpu")
except CheckpointError as error:
    print("refused:", str(error)[:200])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("peak_mb", int(hwm.split()[1]) // 1024)
"""


@pytest.mark.parametrize(
    "claim",
    [{"intermediate_size": 150_000}, {"intermediate_size": 1_000_000}, {"hidden_size": 49_152}],
)
@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak RSS from /proc/self/status")
def test_a_config_claiming_huge_shapes_fails_before_allocating(minilm_dir, tmp_path, claim):
    folder = copy(minilm_dir, tmp_path / "ckpt")
    edit_json(folder / "config.json", **claim)
    # A fresh process, so that its peak RSS is this load's alone.
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_PROBE, str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "refused:" in out.stdout and "shape mismatches" in out.stdout, out.stderr[-2000:]
    peak = int(out.stdout.split("peak_mb")[1])
    # torch + transformers alone take about 0.5-0.9 GB; the claimed 1e6-wide layers would be 9 GB.
    assert peak < 1500, f"peak RSS {peak} MB"


def test_integer_weights_are_refused_on_the_automodel_path(minilm_dir, tmp_path):
    folder = copy(minilm_dir, tmp_path / "ckpt")
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k in state if k.endswith("attention.self.query.weight"))
    state[name] = state[name].to(torch.int8)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="expected floats"):
        DenseEncoder.from_pretrained(folder, device="cpu")


def test_max_seq_length_beyond_the_position_table_is_capped(minilm_dir, tmp_path, caplog):
    folder = copy(minilm_dir, tmp_path / "ckpt")
    edit_json(folder / "sentence_bert_config.json", max_seq_length=4096)
    with caplog.at_level("WARNING", logger="lfm_core"):
        enc = DenseEncoder.from_pretrained(folder, device="cpu")
    assert enc.max_length == 512
    assert "more than its 512 position embeddings allow; using 512" in caplog.text
    (vector,) = enc.encode_documents(["word " * 3000])  # would index past the table
    assert np.isfinite(vector).all()


# ----------------------------------------------------------------------------- fork


_FORKED: dict[str, Any] = {}  # what a forked child inherits (an encoder cannot be pickled)


def _encode_in_child(_: int) -> tuple[int, ...]:
    return _FORKED["encoder"].encode_documents(["a child encodes this text " * 20] * 16).shape


@pytest.mark.skipif(sys.platform != "linux", reason="the fork start method is Linux's default")
def test_an_encoder_used_before_fork_still_works_in_a_fork_pool(tiny_dense):
    tiny_dense.encode_documents(["warm the thread pool " * 40] * 32)
    _FORKED["encoder"] = tiny_dense
    with multiprocessing.get_context("fork").Pool(2) as pool:
        shapes = pool.map_async(_encode_in_child, [0, 1]).get(timeout=120)
    assert shapes == [(16, tiny_dense.dim)] * 2
