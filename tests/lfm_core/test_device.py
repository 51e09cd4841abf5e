"""``device=``: a device this machine lacks is one ``InputError`` line naming the parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lfm_core import DenseEncoder, InputError, LateInteractionEncoder, LoadOptions, resolve_encoder
from lfm_core.devices import available_devices, resolve_device


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU-only torch, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("encoder", [DenseEncoder, LateInteractionEncoder])
def test_cuda_without_cuda_is_one_line_naming_the_parameter(
    no_cuda: None, encoder: type, tiny_dense_dir: Path, tiny_colbert_dir: Path
) -> None:
    folder = tiny_dense_dir if encoder is DenseEncoder else tiny_colbert_dir
    with pytest.raises(InputError) as caught:
        encoder.from_pretrained(folder, device="cuda")
    message = str(caught.value)
    assert message.startswith("device='cuda' is not available: this torch (")
    assert "built without CUDA" in message and "'cpu'" in message
    assert "\n" not in message


def test_a_device_is_checked_before_the_checkpoint_is_read(no_cuda: None, tmp_path: Path) -> None:
    # The folder does not exist: the device is what is reported, before any file is read.
    with pytest.raises(InputError, match=r"^device='cuda:1' is not available"):
        DenseEncoder.from_pretrained(tmp_path / "absent", device="cuda:1")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "CPU"])
def test_a_name_that_is_no_device(device: str) -> None:
    with pytest.raises(InputError, match=rf"^device={device!r} is not a device; use 'auto', 'cpu'"):
        resolve_device(device)


def test_a_cuda_index_past_the_last_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(
        InputError,
        match=r"device='cuda:2' is not available: this machine has 2 CUDA devices; pass device='auto' or one of 'cpu', 'cuda:0', 'cuda:1'",
    ):
        resolve_device("cuda:2")


def test_mps_off_apple_silicon(no_cuda: None) -> None:
    with pytest.raises(
        InputError, match=r"^device='mps' is not available: MPS needs Apple silicon"
    ):
        resolve_device("mps")


def test_auto_and_cpu_always_resolve(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_the_adapters_and_the_writer_get_the_same_error(
    no_cuda: None, tiny_dense_dir: Path
) -> None:
    # Everything that loads a model goes through resolve_encoder.
    with pytest.raises(InputError, match=r"^device='cuda' is not available"):
        resolve_encoder(
            DenseEncoder, str(tiny_dense_dir), options=LoadOptions(device="cuda"), owner="t"
        )


def test_a_loaded_encoder_compared_with_a_bad_device_name(tiny_dense: DenseEncoder) -> None:
    with pytest.raises(InputError, match=r"^device='gpu' is not a device"):
        resolve_encoder(DenseEncoder, tiny_dense, options=LoadOptions(device="gpu"), owner="t")
