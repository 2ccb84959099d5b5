"""STDC: published backbone counts, the Detail GT by hand and against a loop reference, SBCB without the Detail
Head, training, exact strip, ONNX."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from realtime_checks import check_forward_is_inference_only, check_onnx, check_trains_with_and_without_sbcb

from sbcb.models import build_segmentor
from sbcb.models.detail import detail_loss, detail_targets
from sbcb.models.stdc import STDC_DEPTHS, STDCNet
from sbcb.wrapper import SBCB

AUX = {"loss_aux_8", "loss_aux_16"}
DETAIL = {"loss_detail_bce", "loss_detail_dice"}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("variant", "expected", "published_m", "digits"), [("stdc1", 8_443_552, 8.44, 2), ("stdc2", 12_474_016, 12.5, 1)]
)
def test_backbone_with_imagenet_classifier_matches_the_published_count(variant, expected, published_m, digits):
    # STDC paper (Fan et al., CVPR 2021), ImageNet comparison: STDC1 (STDC813) 8.44M parameters, STDC2 (STDC1446)
    # 12.5M. That network is the backbone plus its classifier: 1x1 conv 1024 -> 1024 + BN, global pooling,
    # FC 1024 -> 1024 (no bias) + BN, FC 1024 -> 1000 (no bias).
    backbone = STDCNet(STDC_DEPTHS[variant])
    classifier = (1024 * 1024 + 2 * 1024) + (1024 * 1024 + 2 * 1024) + 1024 * 1000
    assert n_params(backbone) + classifier == expected
    assert round(expected / 1e6, digits) == published_m
    assert [(i.num_chs, i.reduction) for i in backbone.feature_info] == [
        (32, 2),
        (64, 4),
        (256, 8),
        (512, 16),
        (1024, 32),
    ]


def test_segmentation_model_counts():
    # No count is published for STDC-Seg with the mmseg heads; ours (K = 19), stated so that a change shows:
    # backbone + ARMs/FFM + FCN head (inference), plus 2 auxiliary heads and the Detail Head (training only).
    for variant, inference in (("stdc1", 8_275_443), ("stdc2", 12_305_907)):
        model = build_segmentor(variant, num_classes=19, encoder=None)
        aux = n_params(model.aux_head8) + n_params(model.aux_head16)
        assert aux == 2 * (128 * 64 * 9 + 2 * 64 + 64 * 19 + 19)
        assert n_params(model.detail_head) == 256 * 64 * 9 + 2 * 64 + 64 + 1
        assert n_params(model) - aux - n_params(model.detail_head) == inference
        without = build_segmentor(variant, num_classes=19, encoder=None, factory_kwargs={"detail_head": False})
        assert without.detail_head is None and n_params(without) == n_params(model) - n_params(model.detail_head)


def test_detail_targets_hand_worked_single_pixel():
    # One pixel of class 1 at (4, 4) in an 8x8 map of zeros. Laplacian response 8 L(p) - sum of 8 neighbours:
    # stride 1: only (4, 4) is positive (8 - 0 = 8).
    # stride 2 (centres at even coordinates, output 4x4): centre (4, 4) = output (2, 2) is 8 > 0.1; nearest
    #   upsampling puts it on rows 4-5, cols 4-5.
    # stride 4 (centres 0 and 4, output 2x2): centre (4, 4) = output (1, 1); upsampled to rows 4-7, cols 4-7.
    # fused = 0.6 a + 0.3 b + 0.1 c: (4, 4) 1.0; (4, 5), (5, 4), (5, 5) 0.4; the rest of rows/cols 4-7 exactly
    # 0.1, which is not > 0.1: the stride-4 map alone never marks a pixel.
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[0, 4, 4] = 1
    expected = torch.zeros(8, 8)
    expected[4:6, 4:6] = 1
    assert torch.equal(detail_targets(label)[0, 0], expected)


def test_detail_targets_hand_worked_square_and_border():
    # Class 1 on rows/cols 2-5 of an 8x8 map of zeros.
    # stride 1: the square's outer ring (12 pixels); its 2x2 core has 8 equal neighbours (response 0), and the
    #   zeros outside respond 0 - (#ones) <= 0: only the higher-label side of an edge is marked.
    # stride 2 centres inside the square: (2, 2): 8 - 3 = 5; (2, 4) and (4, 2): 8 - 5 = 3; (4, 4): 8 - 8 = 0.
    #   Upsampled, they cover rows/cols 2-5 except the 2x2 block of (4, 4), i.e. they add (3, 3), (3, 4), (4, 3).
    # stride 4: the only centre inside, (4, 4), has response 0.
    # GT: the 4x4 square without (4, 4).
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[0, 2:6, 2:6] = 1
    expected = torch.zeros(8, 8)
    expected[2:6, 2:6] = 1
    expected[4, 4] = 0
    assert torch.equal(detail_targets(label)[0, 0], expected)
    # A nonzero class filling the image: zero padding makes the image border respond (corner 8 - 3, edge 8 - 5).
    full = detail_targets(torch.full((1, 6, 6), 3, dtype=torch.long))[0, 0]
    assert full[0].all() and full[-1].all() and full[:, 0].all() and full[:, -1].all()


def _reference_detail(label: np.ndarray) -> np.ndarray:
    """The Detail GT rule with explicit loops (zero padding, clamp, threshold, nearest upsampling, fuse)."""
    h, w = label.shape
    padded = np.pad(label.astype(np.float64), 1)
    scales = []
    for s in (1, 2, 4):
        oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
        small = np.zeros((oh, ow))
        for i in range(oh):
            for j in range(ow):
                y, x = i * s + 1, j * s + 1
                response = 9 * padded[y, x] - padded[y - 1 : y + 2, x - 1 : x + 2].sum()
                small[i, j] = max(response, 0.0) > 0.1
        rows = (np.arange(h) * oh) // h  # nearest upsampling (PyTorch's floor(dst * in / out))
        cols = (np.arange(w) * ow) // w
        scales.append(small[rows][:, cols])
    # binary maps: 0.6 a + 0.3 b + 0.1 c > 0.1  <=>  a or b (c alone gives 0.1)
    return ((scales[0] + scales[1]) > 0).astype(np.float32)


def test_detail_targets_match_a_loop_reference_on_random_maps():
    rng = np.random.default_rng(0)
    for h, w in ((16, 16), (13, 21)):
        labels = rng.integers(0, 4, size=(3, h, w))
        labels[0, :4] = 255  # ignore is an ordinary (large) value, as in STDC
        got = detail_targets(torch.from_numpy(labels))[:, 0].numpy()
        for lab, g in zip(labels, got):
            np.testing.assert_array_equal(g, _reference_detail(lab))


def test_detail_loss_hand_worked():
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[0, 4, 4] = 1  # GT: 4 pixels (see the single-pixel case)
    losses = detail_loss(torch.zeros(1, 1, 8, 8), label)
    # logits 0: p = 0.5 everywhere; BCE = ln 2; Dice = 1 - (2 * 4 * 0.5 + 1) / (64 * 0.5 + 4 + 1) = 1 - 5 / 37
    assert math.isclose(float(losses["loss_detail_bce"]), math.log(2), rel_tol=1e-6)
    assert math.isclose(float(losses["loss_detail_dice"]), 1 - 5 / 37, rel_tol=1e-6)


def test_sides_and_output_shapes():
    model = build_segmentor("stdc1", num_classes=5, encoder=None, factory_kwargs={"detail_head": False})
    net = SBCB(model, num_classes=5, probe_size=(64, 128))
    # stages 1-4 (32 @ 1/2, 64 @ 1/4, 256 @ 1/8, 512 @ 1/16) and the FFM (256 @ 1/8)
    assert [(i.module, i.num_chs, i.reduction) for i in net.side_infos] == [
        ("backbone.stage1", 32, 2),
        ("backbone.stage2", 64, 4),
        ("backbone.stage3", 256, 8),
        ("backbone.stage4", 512, 16),
        ("ffm", 256, 8),
    ]
    out = build_segmentor("stdc1", num_classes=5, encoder=None).train().forward_train(torch.randn(2, 3, 64, 128))
    assert out.logits.shape == (2, 5, 64, 128)
    assert {n: tuple(v.shape[1:]) for n, v in out.aux.items()} == {
        "aux_8": (5, 8, 16),
        "aux_16": (5, 4, 8),
        "detail": (1, 8, 16),
    }


def test_factory_rejects_an_encoder_and_other_strides():
    with pytest.raises(ValueError, match="own backbone"):
        build_segmentor("stdc1", num_classes=3, encoder="resnet18")
    with pytest.raises(ValueError, match="output stride 32"):
        build_segmentor("stdc2", num_classes=3, encoder=None, output_stride=8)


def test_forward_never_runs_the_training_heads():
    check_forward_is_inference_only(build_segmentor("stdc1", num_classes=11, encoder=None), 11)


@pytest.mark.parametrize("variant", ["stdc1", pytest.param("stdc2", marks=pytest.mark.slow)])
def test_trains_with_and_without_sbcb_and_strips_exactly(variant):
    # baseline: the Detail Head trains; SBCB: built without it, as the paper does (P§7.3)
    check_trains_with_and_without_sbcb(
        lambda k: build_segmentor(variant, num_classes=k, encoder=None),
        build_for_sbcb=lambda k: build_segmentor(
            variant, num_classes=k, encoder=None, factory_kwargs={"detail_head": False}
        ),
        expected_sides=[(32, 2), (64, 4), (256, 8), (512, 16), (256, 8)],
        aux_loss_names=AUX | DETAIL,
        sbcb_aux_loss_names=AUX,
    )


@pytest.mark.onnx
def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    check_onnx(build_segmentor("stdc1", num_classes=5, encoder=None), tmp_path)
