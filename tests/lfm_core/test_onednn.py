"""oneDNN pre-packed float32 linear layers: same numbers as F.linear, and still a good module."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfm_core import DenseEncoder, LateInteractionEncoder, onednn
from lfm_core import encoders as encoders_module
from lfm_core.onednn import (
    OneDNNLinear,
    onednn_linear_available,
    pack_linears_checked,
    pack_linears_for_cpu,
    plain_from_rows,
)

pytestmark = pytest.mark.skipif(
    not onednn_linear_available(), reason="this torch build cannot pack linear weights for oneDNN"
)

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "",
    "日本語のテキスト検索",
    "Arc<Mutex<T>> is the idiomatic way to share mutable state across threads. " * 5,
    "a",
]


@pytest.mark.parametrize("shape", [(1, 40), (7, 40), (3, 5, 40), (0, 40)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_f_linear(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(40, 24, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        torch.testing.assert_close(OneDNNLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)


def test_non_contiguous_input() -> None:
    linear = nn.Linear(16, 8)
    x = torch.randn(16, 9).t()
    with torch.inference_mode():
        torch.testing.assert_close(OneDNNLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)


def test_state_dict_keeps_linear_names_and_values() -> None:
    linear = nn.Linear(12, 6)
    packed = OneDNNLinear(linear)
    state = packed.state_dict()
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], linear.weight.detach())
    other = OneDNNLinear(nn.Linear(12, 6))
    other.load_state_dict(state)
    x = torch.randn(4, 12)
    with torch.inference_mode():
        assert torch.equal(other(x), packed(x))


def test_deepcopy_and_pickle_round_trip() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
    x = torch.randn(5, 10)
    with torch.inference_mode():
        expected = model(x)
        assert pack_linears_for_cpu(model) == 2
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            torch.testing.assert_close(clone(x), expected, rtol=1e-5, atol=1e-5)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert set(torch.load(io.BytesIO(buffer.getvalue()))) == {
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    }


def test_pack_skips_what_it_cannot_serve() -> None:
    model = nn.Sequential(nn.Linear(4, 4).to(torch.bfloat16), nn.Linear(4, 4))
    assert pack_linears_for_cpu(model) == 1
    assert isinstance(model[0], nn.Linear) and isinstance(model[1], OneDNNLinear)


def _unpacked(monkeypatch: pytest.MonkeyPatch, cls, folder):
    with monkeypatch.context() as m:
        m.setattr(encoders_module, "pack_linears_for_cpu", lambda module: 0)
        m.setattr(encoders_module, "pack_linears_checked", lambda module, probe: 0)
        return cls.from_pretrained(folder, device="cpu")


def test_dense_encoder_packs_and_keeps_its_vectors(
    tiny_dense_dir, tiny_dense: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any(isinstance(m, OneDNNLinear) for m in tiny_dense.backbone.modules())
    plain = _unpacked(monkeypatch, DenseEncoder, tiny_dense_dir)
    assert not any(isinstance(m, OneDNNLinear) for m in plain.backbone.modules())
    np.testing.assert_allclose(
        tiny_dense.encode_documents(TEXTS), plain.encode_documents(TEXTS), atol=1e-5
    )


def test_colbert_encoder_packs_and_keeps_its_vectors(
    tiny_colbert_dir, tiny_colbert: LateInteractionEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _unpacked(monkeypatch, LateInteractionEncoder, tiny_colbert_dir)
    for ours, ref in zip(tiny_colbert.encode_documents(TEXTS), plain.encode_documents(TEXTS)):
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_not_packed_for_int8(tiny_dense_dir) -> None:
    int8 = DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu", quantize="int8")
    assert not any(isinstance(m, OneDNNLinear) for m in int8.backbone.modules())


def test_transformers_model_packs_and_keeps_its_vectors(
    minilm_dir, minilm: DenseEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any(isinstance(m, OneDNNLinear) for m in minilm.backbone.modules())
    plain = _unpacked(monkeypatch, DenseEncoder, minilm_dir)
    assert not any(isinstance(m, OneDNNLinear) for m in plain.backbone.modules())
    np.testing.assert_allclose(
        minilm.encode_documents(TEXTS), plain.encode_documents(TEXTS), atol=1e-5
    )


class _ReadsWeight(nn.Module):
    """A model whose forward reads a linear's ``.weight``, as some transformers code does."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x @ self.proj.weight.T)


def test_checked_packing_puts_the_layers_back_when_the_probe_fails() -> None:
    model = _ReadsWeight()
    x = torch.randn(3, 4)
    with torch.inference_mode():
        before = model(x)
    assert pack_linears_checked(model, lambda: model(x)) == 0
    assert isinstance(model.proj, nn.Linear) and isinstance(model.out, nn.Linear)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), before)


def test_checked_packing_keeps_a_model_that_agrees() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    assert pack_linears_checked(model, lambda: model(x)) == 2
    assert isinstance(model[0], OneDNNLinear)


def test_f_linear_reference_is_what_we_compare_to() -> None:
    # Guard against a vacuous comparison: packing must not alias the original module.
    linear = nn.Linear(8, 8)
    packed = OneDNNLinear(linear)
    with torch.no_grad():
        linear.weight.add_(1.0)
    x = torch.randn(2, 8)
    with torch.inference_mode():
        assert not torch.allclose(packed(x), F.linear(x, linear.weight, linear.bias))


# ------------------------------------------------- the kernel chosen by the number of rows


def _packed_kernel_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the packed kernel ran")

    monkeypatch.setattr(onednn, "_linear", refuse)


@pytest.mark.parametrize("bias", [True, False])
def test_rows_from_the_threshold_run_f_linear_on_the_plain_weight(
    bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(40, 24, bias=bias)
    layer = OneDNNLinear(linear, plain_from_rows=4)
    with torch.inference_mode():
        # Rows are every dimension but the last: [2, 2, 40] is 4 rows.
        for shape in [(1, 40), (3, 40), (4, 40), (9, 40), (2, 2, 40), (0, 40)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(layer(x), F.linear(x, linear.weight, linear.bias))
        _packed_kernel_fails(monkeypatch)
        layer(torch.randn(4, 40))
        layer(torch.randn(2, 2, 40))
        with pytest.raises(AssertionError, match="packed kernel ran"):
            layer(torch.randn(3, 40))


def test_without_a_threshold_no_plain_copy_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = OneDNNLinear(nn.Linear(8, 8))
    assert layer.plain_weight is None and layer.plain_from_rows is None
    _packed_kernel_fails(monkeypatch)
    with pytest.raises(AssertionError, match="packed kernel ran"):
        layer(torch.randn(512, 8))


def test_threshold_survives_copies_pickles_and_state_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    layer = OneDNNLinear(linear, plain_from_rows=2)
    reloaded = OneDNNLinear(nn.Linear(16, 8), plain_from_rows=2)
    reloaded.load_state_dict(layer.state_dict())
    x = torch.randn(5, 16)
    expected = F.linear(x, linear.weight, linear.bias)
    clones = [copy.deepcopy(layer), pickle.loads(pickle.dumps(layer)), reloaded]
    _packed_kernel_fails(monkeypatch)  # 5 rows: F.linear on the plain weight
    with torch.inference_mode():
        for clone in clones:
            assert clone.plain_from_rows == 2
            torch.testing.assert_close(clone(x), expected)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert pickle.loads(pickle.dumps(layer)).plain_weight is not None


def test_plain_weight_does_not_alias_the_original() -> None:
    linear = nn.Linear(8, 8)
    layer = OneDNNLinear(linear, plain_from_rows=1)
    with torch.no_grad():
        linear.weight.add_(1.0)
    x = torch.randn(3, 8)
    with torch.inference_mode():
        assert not torch.allclose(layer(x), F.linear(x, linear.weight, linear.bias))


def test_threshold_must_be_a_positive_row_count() -> None:
    with pytest.raises(ValueError, match="plain_from_rows must be >= 1"):
        OneDNNLinear(nn.Linear(4, 4), plain_from_rows=0)


def test_pack_gives_each_layer_the_threshold_chosen_for_its_shape() -> None:
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8, bias=False))
    x = torch.randn(70, 8)
    with torch.inference_mode():
        expected = model(x)
    asked: list[tuple[int, int, bool]] = []

    def choose(in_features: int, out_features: int, bias: bool) -> int | None:
        asked.append((in_features, out_features, bias))
        return 64 if out_features == 32 else None

    assert pack_linears_for_cpu(model, choose) == 2
    assert asked == [(8, 32, True), (32, 8, False)]
    assert model[0].plain_from_rows == 64 and model[0].plain_weight is not None
    assert model[2].plain_from_rows is None and model[2].plain_weight is None
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("f_linear_faster_at", "expected"),
    [
        ((), None),  # the packed kernel wins everywhere (Zen 5)
        ((256,), 256),
        ((64, 256), 64),  # Zen 3, MiniLM shapes
        ((16, 64, 256), 16),
        ((16,), None),  # faster only where it is small: not worth a second copy
        ((16, 256), 256),  # from a row count on means at every larger one too
    ],
)
def test_crossover_is_where_f_linear_wins_from_then_on(
    f_linear_faster_at: tuple[int, ...], expected: int | None
) -> None:
    def seconds(rows: int) -> tuple[float, float]:
        return (0.8, 1.0) if rows in f_linear_faster_at else (1.0, 1.0)

    assert onednn._crossover(seconds) == expected


def test_a_tie_keeps_the_packed_kernel() -> None:
    assert onednn._crossover(lambda rows: (0.97, 1.0)) is None  # within the 5 % margin


def test_timed_choice_is_a_probed_row_count_and_measured_once() -> None:
    first = plain_from_rows(24, 40, True)
    assert first is None or first in onednn._PROBE_ROWS
    hits = onednn._plain_from_rows.cache_info().hits
    assert plain_from_rows(24, 40, True) == first
    assert onednn._plain_from_rows.cache_info().hits == hits + 1
