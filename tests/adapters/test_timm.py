"""timm adapter: features_only backbones inside a user model, plain timm models, HRNet, output_stride=8."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from wrap_checks import K, check_wrapped

timm = pytest.importorskip("timm")


class FeaturesOnlySeg(nn.Module):
    """A user's segmentor around a timm `features_only` backbone: 1x1 classifier on the last level, upsampled."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__()
        self.backbone = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        self.classifier = nn.Conv2d(self.backbone.feature_info.channels()[-1], K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.backbone(x)[-1])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class PlainTimmSeg(nn.Module):
    """A user's segmentor calling `forward_features` of an ordinary timm model (no features_only)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.encoder = timm.create_model(name, pretrained=False, num_classes=0)
        self.classifier = nn.Conv2d(self.encoder.num_features, K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.encoder.forward_features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _declared(name: str, levels: list[int], **kwargs) -> list[tuple[int, int]]:
    """(channels, stride) of the chosen levels from timm's own feature_info (independent of the adapter)."""
    info = timm.create_model(name, pretrained=False, features_only=True, **kwargs).feature_info
    return [(info.channels()[i], info.reduction()[i]) for i in levels]


FAST = [
    # five levels with a stride-2 stem: sides 1, 2, 3, 5 (spec §5.1)
    ("resnet18", {}, [0, 1, 2, 4]),
    ("mobilenetv3_small_050", {}, [0, 1, 2, 4]),
    # four levels from 1/4: all
    ("convnext_atto", {}, [0, 1, 2, 3]),
    # negative out_indices drop the stem of a 5-level CNN: the remaining four levels are all used
    ("resnet18", {"out_indices": (-4, -3, -2, -1)}, [0, 1, 2, 3]),
]
SLOW = [
    ("efficientnet_b0", {}, [0, 1, 2, 4]),
    ("resnet50", {"output_stride": 8}, [0, 1, 2, 4]),  # the paper's d8 ResNet: strides 2, 4, 8, 8
    # the other backbones of the paper (Tab. 11): ResNet-101 d8, MobileNetV2, DenseNet-169, ResNeSt
    ("resnet101", {"output_stride": 8}, [0, 1, 2, 4]),
    ("mobilenetv2_100", {}, [0, 1, 2, 4]),
    ("densenet169", {}, [0, 1, 2, 4]),
    ("resnest50d", {}, [0, 1, 2, 4]),
]


@pytest.mark.parametrize("name,kwargs,levels", FAST + [pytest.param(*p, marks=pytest.mark.slow) for p in SLOW])
def test_features_only_backbone_in_user_model(name, kwargs, levels):
    expected = _declared(name, levels, **kwargs)
    net = check_wrapped(lambda: FeaturesOnlySeg(name, **kwargs), expected)
    assert all(i.module == "backbone" for i in net.side_infos)


def test_features_only_taps_equal_backbone_outputs():
    torch.manual_seed(0)
    model = FeaturesOnlySeg("resnet18")
    from sbcb.wrapper import SBCB

    net = SBCB(model, num_classes=K, head="dds", probe_size=(64, 64))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.extract_features(x)
        ref = model.backbone(x)
    assert len(feats) == 5  # DDS: all levels
    assert all(torch.equal(a, b) for a, b in zip(feats, ref))


def test_plain_timm_model_uses_feature_info_modules():
    expected = _declared("resnet18", [0, 1, 2, 4])
    net = check_wrapped(lambda: PlainTimmSeg("resnet18"), expected)
    assert [i.module for i in net.side_infos] == ["encoder.act1", "encoder.layer1", "encoder.layer2", "encoder.layer4"]


def test_explicit_side_names_relative_to_backbone():
    from sbcb.wrapper import SBCB

    net = SBCB(PlainTimmSeg("resnet18"), num_classes=K, sides=["act1", "layer1", "layer4"], probe_size=(64, 64))
    assert [(i.module, i.num_chs, i.reduction) for i in net.side_infos] == [
        ("encoder.act1", 64, 2),
        ("encoder.layer1", 64, 4),
        ("encoder.layer4", 512, 32),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w48"])
def test_hrnet_stages_resized_and_concatenated(name):
    # feature_location='' gives the raw branch widths, e.g. [64 (stem), 16, 32, 64, 128] for hrnet_w18_small; the
    # sides are the 1/4 stem (64) and stages 2, 3, 4 resize-concatenated: 16+32, 16+32+64, 16+32+64+128, all at 1/4.
    # (W48: 144, 336, 720 as in spec §5.4.)
    widths = timm.create_model(name, features_only=True, feature_location="").feature_info.channels()
    expected = [(64, 4), (sum(widths[1:3]), 4), (sum(widths[1:4]), 4), (sum(widths[1:5]), 4)]
    if name == "hrnet_w48":
        assert [c for c, _ in expected[1:]] == [144, 336, 720]
    net = check_wrapped(lambda: FeaturesOnlySeg(name, feature_location=""), expected)
    assert [i.module for i in net.side_infos] == [
        "backbone.act2",
        "backbone.stage2",
        "backbone.stage3",
        "backbone.stage4",
    ]
    assert all(i.concat_branches for i in net.side_infos[1:])


class SwinSeg(nn.Module):
    """A user's segmentor around a tiny timm Swin `features_only` backbone, whose levels are NHWC."""

    def __init__(self) -> None:
        super().__init__()
        tiny = {"img_size": 64, "window_size": 4, "embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
        self.backbone = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, features_only=True, **tiny)
        self.classifier = nn.Conv2d(self.backbone.feature_info.channels()[-1], K, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.backbone(x)[-1].permute(0, 3, 1, 2))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_swin_nhwc_levels_are_permuted_even_when_channels_equal_the_width():
    # At 64x64 the first Swin level is [B, 16, 16, 16] (NHWC, 16 channels): its shape alone reads as NCHW too.
    # timm's output_fmt says NHWC, so every side must be the backbone's output permuted to [B, C, h, w].
    net = check_wrapped(SwinSeg, [(16, 4), (32, 8), (64, 16), (128, 32)])
    assert all(i.channels_last for i in net.side_infos)
    x = torch.randn(2, 3, 64, 64)
    model = net.model.eval()
    with torch.no_grad():
        expected = [f.permute(0, 3, 1, 2) for f in model.backbone(x)]
        got = net.eval().extract_features(x)
    for f, e in zip(got, expected):
        assert torch.equal(f, e)


def test_probe_warns_when_a_square_level_cannot_be_told_nchw_or_nhwc():
    from sbcb.features import FeatureInfo, probe_features

    class SquareNHWC(nn.Module):
        def forward(self, x):  # [B, 8, 8, 8] from a 32x32 input: channels == width
            return F.avg_pool2d(x.repeat(1, 3, 1, 1)[:, :8], 4).permute(0, 2, 3, 1)

    with pytest.warns(UserWarning, match="channels_last=True"):
        probe_features(SquareNHWC(), [FeatureInfo(8, 0, "")], input_size=(32, 32))
    declared = probe_features(SquareNHWC(), [FeatureInfo(8, 0, "", channels_last=True)], input_size=(32, 32))
    assert declared[0].channels_last and declared[0].reduction == 4
