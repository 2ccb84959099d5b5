"""torchvision adapter: FCN / DeepLabV3 / LRASPP (dict outputs) with ResNet and MobileNetV3 backbones."""

from __future__ import annotations

import pytest
from wrap_checks import K, check_wrapped

from sbcb.wrapper import SBCB

torchvision = pytest.importorskip("torchvision")
from torchvision.models import segmentation as tvseg  # noqa: E402


def tiny_fcn_resnet18():
    """torchvision's FCN class over a ResNet-18 IntermediateLayerGetter (torchvision ships no R18 builder)."""
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    backbone = IntermediateLayerGetter(torchvision.models.resnet18(weights=None), return_layers={"layer4": "out"})
    return FCN(backbone, FCNHead(512, K))


# ResNet-18 (torchvision's table): stem 64 @ 1/2, layer1 64 @ 1/4, layer2 128 @ 1/8, layer4 512 @ 1/32.
RESNET18_SIDES = [(64, 2), (64, 4), (128, 8), (512, 32)]
# MobileNetV3-Large, dilated (segmentation builders): last block at each resolution: 16 @ 1/2, 24 @ 1/4, 40 @ 1/8,
# and the final 1x1 conv, 960 @ 1/16 (the stride-2 block of the fifth stage is dilated instead). Four levels: all.
MOBILENET_SIDES = [(16, 2), (24, 4), (40, 8), (960, 16)]


def test_fcn_resnet18():
    net = check_wrapped(tiny_fcn_resnet18, RESNET18_SIDES)
    assert [i.module for i in net.side_infos] == [
        "backbone.relu",
        "backbone.layer1",
        "backbone.layer2",
        "backbone.layer4",
    ]


def test_lraspp_mobilenet_v3():
    check_wrapped(
        lambda: tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K), MOBILENET_SIDES
    )


@pytest.mark.slow
def test_deeplabv3_mobilenet_v3():
    def build():
        return tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=K)

    check_wrapped(build, MOBILENET_SIDES)


@pytest.mark.slow
def test_fcn_resnet50_fcn_aux_or_its_own_aux_classifier():
    # torchvision R50 seg backbone: layer2..4 at 1/8 (replace_stride_with_dilation=[False, True, True])
    def build(aux_loss=False):
        return tvseg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=K, aux_loss=aux_loss)

    net = check_wrapped(build, [(64, 2), (256, 4), (512, 8), (2048, 8)], fcn_aux=True)
    assert net.aux_info.module == "backbone.layer3" and net.aux_info.num_chs == 1024
    # with aux_loss=True the model's own classifier on layer3 is trained as loss_aux: a second one is refused
    with pytest.raises(ValueError, match="own auxiliary classifier"):
        SBCB(build(aux_loss=True), num_classes=K, fcn_aux=True, probe_size=(64, 64))
