"""Models no adapter knew before: plain trunks, custom models, tuple/dict outputs, ViT-style single-stride levels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbcb.adapters import find_backbone
from sbcb.adapters.generic import generic_levels, infer_input_spec
from sbcb.adapters.outputs import check_num_classes, select_output, torchvision_aux_loss
from sbcb.features import FeatureInfo, check_sides_order, describe_sides

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from model_matrix import CustomUNet, Pair, check_pair, sequential_trunk  # noqa: E402


def _levels(infos):
    return [(i.module, i.num_chs, i.reduction) for i in infos]


def test_sequential_trunk_one_channel_wraps_trains_and_strips():
    # conv/BN/ReLU x 4 (stride 2 each, widths 8..64) -> the ReLUs "2", "5", "8", "11" at 1/2 .. 1/16; the 1x1
    # classifier (K channels) and the upsampling are not encoder levels. 1 input channel found from the first conv.
    spec = find_backbone(sequential_trunk())
    assert spec.family == "generic" and spec.in_chans == 1
    assert _levels(spec.levels) == [("2", 8, 2), ("5", 16, 4), ("8", 32, 8), ("11", 64, 16)]
    assert spec.describe().startswith("sbcb sides (generic): 2 8ch@1/2, 5 16ch@1/4, 8 32ch@1/8 | semantic: 11")
    row = check_pair(Pair("plain", "trunk", sequential_trunk), export=False)
    assert (row.wrap, row.train.split()[0], row.strip) == ("ok", "ok", "ok")


def test_custom_encoder_decoder_ignores_pooling_pyramid_and_decoder():
    # stem 1/2, down1 1/4, down2 1/8, down3 1/16; the adaptive-pool branch (2x2 at any size) and the decoder
    # (back at 1/4) are excluded.
    levels = generic_levels(CustomUNet(), input_size=(64, 64))
    assert _levels(levels) == [("stem", 8, 2), ("down1", 16, 4), ("down2", 32, 8), ("down3", 64, 16)]
    row = check_pair(Pair("plain", "custom", CustomUNet), export=False)
    assert (row.wrap, row.train.split()[0], row.strip) == ("ok", "ok", "ok")


def test_select_output_forms_and_errors():
    logits = torch.randn(2, 4, 8, 8)
    assert select_output(logits) is logits
    assert select_output({"out": logits, "aux": logits + 1}) is logits
    assert select_output({"logits": logits}) is logits
    assert select_output((logits, torch.randn(2, 4)), 0) is logits
    assert select_output((torch.randn(2, 4), logits), lambda raw: raw[1]) is logits
    with pytest.raises(TypeError, match=r"tuple\(Tensor\[2, 4, 8, 8\], Tensor\[2, 4\]\).*output=0"):
        select_output((logits, torch.randn(2, 4)))
    with pytest.raises(TypeError, match="not \\[B, K, h, w\\] logits"):
        select_output((logits, torch.randn(2, 4)), 1)
    check_num_classes(logits, 4)
    with pytest.raises(ValueError, match="outputs 4 channels .* num_classes=5"):
        check_num_classes(logits, 5)


def test_sides_order_and_single_stride_warning():
    ok = [FeatureInfo(8, 2, "a"), FeatureInfo(16, 4, "b"), FeatureInfo(32, 8, "c")]
    check_sides_order(ok)
    with pytest.raises(ValueError, match="reverse"):
        check_sides_order(ok[::-1])
    with pytest.warns(UserWarning, match="same stride 1/16"):
        check_sides_order([FeatureInfo(64, 16, f"blocks.{i}") for i in range(3)])
    assert describe_sides(ok) == "sbcb sides: a 8ch@1/2, b 16ch@1/4 | semantic: c 32ch@1/8; override with sides=[...]"


@pytest.mark.filterwarnings("error")
def test_hrnet_like_sides_do_not_warn():  # all at 1/4 by design (branches resize-concatenated)
    hrnet = [FeatureInfo(64, 4, "act2"), *(FeatureInfo(0, 4, f"stage{i}", concat_branches=True) for i in (2, 3, 4))]
    check_sides_order(hrnet)


def test_torchvision_aux_loss_hand_worked():
    # aux logits all zero -> softmax uniform over K = 4 -> CE = log 4 per pixel; weight 0.5 -> 0.5 * log 4.
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, 0] = 255  # ignored rows do not change the mean
    losses = torchvision_aux_loss({"out": torch.randn(2, 4, 8, 8), "aux": torch.zeros(2, 4, 8, 8)}, masks)
    assert losses["loss_model_aux"].item() == pytest.approx(0.5 * torch.log(torch.tensor(4.0)).item(), rel=1e-6)
    assert torchvision_aux_loss({"out": torch.randn(2, 4, 8, 8), "aux": None}, masks) == {}
    aux = torch.randn(2, 4, 4, 4, requires_grad=True)  # resized to the mask like the CE of the logits
    up = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
    ref = 0.5 * F.cross_entropy(up, masks, ignore_index=255)
    assert torch.allclose(torchvision_aux_loss({"aux": aux}, masks)["loss_model_aux"], ref)


@pytest.mark.slow  # ~7 s
def test_infer_input_spec_and_probe_retry_for_a_strict_vit():
    timm = pytest.importorskip("timm")
    vit = timm.create_model("vit_tiny_patch16_224", features_only=True, img_size=96, depth=2, out_indices=(0, 1))
    assert infer_input_spec(vit) == (3, (96, 96))
    assert infer_input_spec(nn.Sequential(nn.Conv2d(1, 4, 3))) == (1, (128, 128))
    # timm asserts on a 128x128 probe; find_backbone retries at the model's img_size and warns: one stride only
    with pytest.warns(UserWarning, match="same stride 1/16"):
        spec = find_backbone(vit)
    assert spec.probe_size == (96, 96) and [i.reduction for i in spec.levels] == [16, 16]


def test_smp_dpt_uses_reassemble_taps_and_aux_params_tuple():
    smp = pytest.importorskip("segmentation_models_pytorch")
    spec = find_backbone(smp.DPT("tu-test_vit", encoder_weights=None, classes=4), input_size=(64, 64))
    assert [i.module for i in spec.levels] == [f"decoder.reassemble_blocks.{i}" for i in range(4)]
    assert [i.reduction for i in spec.levels] == [4, 8, 16, 32]

    def build():
        return smp.Unet("resnet18", encoder_weights=None, classes=4, aux_params={"classes": 4})

    row = check_pair(Pair("smp", "unet aux", build), export=False)
    assert (row.wrap, row.train.split()[0], row.strip) == ("ok", "ok", "ok")


@pytest.mark.slow
@pytest.mark.onnx
@pytest.mark.parametrize("arch,size", [("PSPNet", 64), ("PAN", 128), ("UPerNet", 64)])
def test_smp_pooling_models_export_at_their_training_size(arch, size, tmp_path):
    smp = pytest.importorskip("segmentation_models_pytorch")
    pytest.importorskip("onnxruntime")
    from sbcb.export import export_model

    model = getattr(smp, arch)("resnet18", encoder_weights=None, classes=4)
    report = export_model(model, size=(size, size), onnx=tmp_path / "m.onnx")
    assert report.max_abs_diff and max(report.max_abs_diff.values()) < 1e-3
    assert f"1x3x{size}x{size}" in " ".join(report.max_abs_diff)
