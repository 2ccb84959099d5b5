"""Models no adapter knew before: plain trunks, custom models, tuple/dict outputs, ViT-style single-stride levels."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sbcb.adapters import find_backbone
from sbcb.adapters.generic import generic_levels, infer_input_spec
from sbcb.adapters.outputs import check_num_classes, select_output
from sbcb.features import FeatureInfo, check_sides_order, describe_sides
from sbcb.segmentor import Segmentor
from sbcb.wrapper import SBCB

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
    with pytest.raises(ValueError, match="outputs 4 classes .* num_classes=5"):
        check_num_classes(logits, 5)


def test_sides_order_and_single_stride_warning():
    ok = [FeatureInfo(8, 2, "a"), FeatureInfo(16, 4, "b"), FeatureInfo(32, 8, "c")]
    check_sides_order(ok)
    with pytest.raises(ValueError, match="reverse"):
        check_sides_order(ok[::-1])
    with pytest.raises(ValueError, match="reverse"):
        check_sides_order(ok[1::-1])  # two sides, semantic one finer than the first
    check_sides_order([*ok, FeatureInfo(32, 4, "fused")])  # a fused semantic side (STDC's FFM 1/8 after 1/16)
    with pytest.warns(UserWarning, match="same stride 1/16"):
        check_sides_order([FeatureInfo(64, 16, f"blocks.{i}") for i in range(3)])
    assert describe_sides(ok) == "sbcb sides: a 8ch@1/2, b 16ch@1/4 | semantic: c 32ch@1/8; override with sides=[...]"


@pytest.mark.filterwarnings("error")
def test_hrnet_like_sides_do_not_warn():  # all at 1/4 by design (branches resize-concatenated)
    hrnet = [FeatureInfo(64, 4, "act2"), *(FeatureInfo(0, 4, f"stage{i}", concat_branches=True) for i in (2, 3, 4))]
    check_sides_order(hrnet)


def _tiny_fcn_with_aux(k: int = 4) -> nn.Module:
    """torchvision's FCN over a ResNet-18 with its auxiliary classifier on layer3 (as aux_loss=True builds it)."""
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    backbone = IntermediateLayerGetter(
        torchvision.models.resnet18(weights=None), return_layers={"layer4": "out", "layer3": "aux"}
    )
    return FCN(backbone, FCNHead(512, k), FCNHead(256, k))


def test_torchvision_aux_classifier_is_trained_as_loss_aux_hand_worked():
    torch.manual_seed(0)
    model = _tiny_fcn_with_aux()
    last = model.aux_classifier[-1]  # the aux classifier's final 1x1 conv
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    # aux logits all zero -> softmax uniform over K = 4 -> CE = log 4 at every pixel, whatever the labels; the
    # torchvision recipe's weight 0.5 -> loss_aux = 0.5 * log 4 = 0.6931...
    x = torch.randn(2, 3, 64, 64)
    masks = torch.randint(0, 4, (2, 64, 64))
    masks[:, 0] = 255  # ignored rows do not change the mean
    for net in (Segmentor(model, num_classes=4, probe_size=(64, 64)), SBCB(model, num_classes=4, probe_size=(64, 64))):
        net.train()
        losses = net(x, masks)
        assert losses["loss_aux"].item() == pytest.approx(0.5 * math.log(4), rel=1e-6)
        losses["loss_aux"].backward()
        assert last.weight.grad is not None  # DDP needs the aux classifier in the graph
        last.weight.grad = None
        assert "loss_aux" not in net.eval()(x, masks)  # the aux classifier is a training-only term
    with pytest.raises(ValueError, match="own auxiliary classifier.*aux_loss=False"):
        SBCB(model, num_classes=4, probe_size=(64, 64), fcn_aux=True)


def test_construction_checks_classes_order_outputs_and_channels():
    smp = pytest.importorskip("segmentation_models_pytorch")
    model = smp.FPN("resnet18", encoder_weights=None, classes=4, decoder_pyramid_channels=16)
    with pytest.raises(ValueError, match="FPN outputs 4 classes .* but num_classes=5"):
        Segmentor(model, num_classes=5, probe_size=(64, 64))
    sides = ["encoder.layer1", "encoder.layer2", "encoder.layer4"]
    assert [i.reduction for i in SBCB(model, num_classes=4, sides=sides).side_infos] == [4, 8, 32]
    with pytest.raises(ValueError, match="highest resolution to the deepest.*reverse"):
        SBCB(model, num_classes=4, sides=sides[::-1])

    class TwoHeads(nn.Module):  # a user model returning (logits, something else)
        def __init__(self) -> None:
            super().__init__()
            self.body = sequential_trunk(in_chans=3)

        def forward(self, x):
            return x.mean(), self.body(x)

    with pytest.raises(TypeError, match=r"returned tuple\(Tensor\[\], Tensor\[1, 4, 128, 128\]\).*output=0"):
        Segmentor(TwoHeads(), num_classes=4)
    net = Segmentor(TwoHeads(), num_classes=4, output=1)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), net.strip()(x)[1])
    # a 1-channel trunk: the probe retries with its first conv's channels (no in_chans= needed)
    trunk = sequential_trunk(in_chans=1)
    assert Segmentor(trunk, num_classes=4)._probe["in_chans"] == 1


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
