"""The Table 6 and Table 18 recipes in configs/: each builds the variant it names, and the full-size (ResNet-101,
K = 19, built on the meta device) extra parameters of every variant match a hand count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("yaml")

from sbcb.models import build_model, strip_model  # noqa: E402
from sbcb.train.config import Config, resolve  # noqa: E402
from sbcb.train.run import model_kwargs  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
K = 19
PSP = {"encoder_depth": 5, "upsampling": 8}  # as cityscapes_pspnet_r101_*: PSP on the d8 layer4

# config -> (arch, fusion, sbcb_head, arch_kwargs); the paper's number in the comment (Cityscapes val mIoU)
RECIPES = {
    "cityscapes_pspnet_r101_sbcb_casenet_channel_merge": ("pspnet", "channel-merge", "casenet", PSP),  # T18 79.1
    "cityscapes_dlv3p_r101_sbcb_casenet_channel_merge": ("deeplabv3plus", "channel-merge", "casenet", None),  # 80.5
    "cityscapes_dlv3p_r101_sbcb_casenet_two_stream": ("deeplabv3plus", "two-stream", "casenet", None),  # T18 80.5
    "cityscapes_gscnn_r101_baseline": ("gscnn", "none", "none", None),  # T6 80.5
    "cityscapes_gscnn_r101_canny": ("gscnn", "none", "none", {"canny": "cv2"}),  # T6 80.6
    "cityscapes_gscnn_r101_sbd_stream": ("gscnn", "none", "none", {"shape_stream": "sbd"}),  # T6 80.0
    "cityscapes_gscnn_r101_sbcb_casenet": ("gscnn", "none", "casenet", None),  # T6 80.9
}


def kwargs_of(name: str, **override) -> dict:
    cfg = resolve({}, config_path=CONFIG_DIR / f"{name}.yaml").flat() | override
    return model_kwargs(Config.from_flat(cfg), K)


def build(name: str, **override) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device("meta"):
        return build_model(**kwargs_of(name, **override))


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_builds_the_variant_it_names(name):
    arch, fusion, head, extra = RECIPES[name]
    kwargs = kwargs_of(name)
    assert (kwargs["arch"], kwargs["fusion"], kwargs["sbcb_head"], kwargs["factory_kwargs"]) == (
        arch,
        fusion,
        head,
        extra,
    )
    assert (kwargs["encoder"], kwargs["output_stride"]) == ("resnet101", 8 if arch != "pspnet" else None)


def test_full_size_extra_parameters_by_hand():
    # ResNet-101 sides (stem, layer1, layer2, layer4) = 64, 256, 512, 2048 channels; K = 19.
    pre = (64 + 2) + (256 + 2) + (512 + 2) + (2048 * 19 + 2 * 19)  # side 1x1 + BN: 66 + 258 + 514 + 38950 = 39788
    # DeepLabV3+ Channel-Merge: ASPP out C = 256, W = D = 256 + 3 + 19 = 278; used merge 278^2 + 2*278 + 278*256
    base = count(build("cityscapes_dlv3p_r101_sbcb_casenet_channel_merge", fusion="none", sbcb_head="none"))
    cm = build("cityscapes_dlv3p_r101_sbcb_casenet_channel_merge")
    assert count(strip_model(cm)) - base == pre + 278 * 278 + 2 * 278 + 278 * 256 == 188_796
    # training adds the unused merge rows 278 * 22, the 3x3 side convs 2c -> c (3 x 18 + 19 * 38 * 9) and the fuse
    assert count(cm) - count(strip_model(cm)) == 278 * 22 + 3 * 18 + 19 * 38 * 9 + 19 * 4 == 12_744
    # Two-Stream: CASENet head (spec §10.1: 43,140) + edge branch 19 -> 256 (+ BN) + the projection's 256 columns
    ts = build("cityscapes_dlv3p_r101_sbcb_casenet_two_stream")
    assert strip_model(ts) is ts and count(ts) - base == 43_140 + 19 * 256 + 512 + 256 * 256 == 114_052
    # PSPNet Channel-Merge: smp's PPM gives 2048 + 4 x 512 = 4096 channels, so W = D = 4118
    psp_base = count(build("cityscapes_pspnet_r101_sbcb_casenet_channel_merge", fusion="none", sbcb_head="none"))
    psp = strip_model(build("cityscapes_pspnet_r101_sbcb_casenet_channel_merge"))
    assert count(psp) - psp_base == pre + 4118 * 4118 + 2 * 4118 + 4118 * 4096 == 33_873_276


def test_full_size_gscnn_parameters_by_hand():
    gs = build("cityscapes_gscnn_r101_baseline")
    # shape stream: BasicBlock(64), gate maps from 256/512/2048, reductions 64-32-16-8, gated convs, blocks, edge
    stream = 73_984 + (257 + 513 + 2049) + 2_744 + (2_248 + 616 + 184) + (18_560 + 4_672) + 8
    # cw, image pooling 2048 -> 256 (+BN), edge branch, ASPP 1x1 + 3 x 3x3, bottleneck, low level 256 -> 48, final
    head = 1 + (2048 * 256 + 512) + 768 + (2048 * 256 + 512) + 3 * (2048 * 256 * 9 + 512) + 1536 * 256
    head += 256 * 48 + (304 * 256 * 9 + 512) + (256 * 256 * 9 + 512) + 256 * 19
    assert count(gs) - count(gs.encoder) == stream + head == 17_015_148
    # ResNet-101 encoder without the classifier, as in tests/test_configs.py
    assert count(gs.encoder) == 44_549_160 - 2_049_000
    with_sbcb = build("cityscapes_gscnn_r101_sbcb_casenet")
    assert count(with_sbcb.head) == 43_140  # spec §10.1, the same sides as DeepLabV3+
    assert count(strip_model(with_sbcb)) == count(gs)
