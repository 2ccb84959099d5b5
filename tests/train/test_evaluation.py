"""Inference modes and metric plumbing of `sbcb.train.evaluation`, against independent references."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from sbcb.train.evaluation import evaluate, format_report, predict_logits, slide_logits


class PerPixel(nn.Module):
    """A 1x1 conv: every output pixel depends only on its input pixel, so any tiling gives the same logits."""

    def __init__(self, k: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 1)

    def forward(self, x):
        return self.conv(x)


class Counter(nn.Module):
    """Returns ones: the slide average of ones is one everywhere; counts windows."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[tuple[int, int]] = []
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.windows.append(tuple(x.shape[-2:]))
        return torch.ones(x.shape[0], 2, *x.shape[-2:])


def test_slide_equals_whole_for_a_per_pixel_model():
    model = PerPixel()
    x = torch.randn(2, 3, 37, 53)
    whole = predict_logits(model, x, size_divisor=1)
    slide = slide_logits(model, x, crop=(16, 24), stride=(10, 13), size_divisor=1)
    assert torch.allclose(slide, whole, atol=1e-6)


def test_slide_window_grid_follows_mmseg():
    # H=37, crop 16, stride 10: rows = max(37 - 16 + 10 - 1, 0) // 10 + 1 = 30 // 10 + 1 = 4 (y1 = 0, 10, 20, 21)
    # W=53, crop 24, stride 13: cols = max(53 - 24 + 13 - 1, 0) // 13 + 1 = 41 // 13 + 1 = 4
    model = Counter()
    out = slide_logits(model, torch.zeros(1, 3, 37, 53), crop=(16, 24), stride=(10, 13), size_divisor=1)
    assert len(model.windows) == 16 and set(model.windows) == {(16, 24)}
    assert torch.equal(out, torch.ones(1, 2, 37, 53))


def test_multiscale_flip_averages_softmax():
    model = PerPixel()
    x = torch.randn(1, 3, 32, 32)
    got = predict_logits(model, x, scales=(1.0,), flip=True, size_divisor=1)
    ref = (model(x).softmax(1) + model(x.flip(-1)).flip(-1).softmax(1)) / 2  # per-pixel: = softmax(model(x))
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(got, model(x).softmax(1), atol=1e-6)
    # two scales: the 0.5 pass is computed at 16x16 then resized back (bilinear) before averaging
    two = predict_logits(model, x, scales=(0.5, 1.0), size_divisor=1)
    half = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    up = nn.functional.interpolate(model(half), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(two, (up.softmax(1) + model(x).softmax(1)) / 2, atol=1e-6)


def test_whole_pads_to_the_divisor_and_crops_back():
    model = PerPixel()
    x = torch.randn(1, 3, 30, 45)
    assert torch.allclose(predict_logits(model, x, size_divisor=32), model(x), atol=1e-6)


def test_evaluate_miou_hand_worked():
    # A model predicting class 0 everywhere on two 2x2 images with 2 classes.
    # GT image a: [[0, 0], [1, 255]]; image b: [[1, 1], [1, 1]].
    # Class 0: intersection 2, union = pred area 7 (255 excluded) + gt area 2 - 2 = 7 -> IoU 2/7.
    # Class 1: intersection 0, union 5 -> IoU 0. mIoU = (2/7 + 0) / 2 = 1/7.
    class Zero(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            out = torch.zeros(x.shape[0], 2, *x.shape[-2:])
            out[:, 0] = 1
            return out

    data = [
        {"image": torch.zeros(3, 2, 2), "label": torch.tensor([[0, 0], [1, 255]])},
        {"image": torch.zeros(3, 2, 2), "label": torch.tensor([[1, 1], [1, 1]])},
    ]
    res = evaluate(Zero(), data, num_classes=2, boundary_radii=(), size_divisor=1, progress=False)
    assert res["miou"] == pytest.approx(1 / 7)
    assert res["iou"] == pytest.approx([2 / 7, 0.0])
    assert res["aacc"] == pytest.approx(2 / 7)
    md = format_report(res, ["road", "car"])
    assert "| miou | 14.29 |" in md and "| car | 0.00 |" in md


def test_evaluate_boundary_iou_hand_worked():
    # One 8x8 image, 2 classes, band width 1 (the image border counts as a contour).
    # GT: class 0 in columns 0-3, class 1 in 4-7. Prediction: class 0 in columns 0-4, class 1 in 5-7.
    # Class 0: GT band = rows 0 and 7 of cols 0-3 (8) + cols 0 and 3 of rows 1-6 (12) = 20; predicted band = rows 0
    #   and 7 of cols 0-4 (10) + cols 0 and 4 of rows 1-6 (12) = 22; both: rows 0/7 cols 0-3 (8) + col 0 rows 1-6
    #   (6) = 14; union 20 + 22 - 14 = 28 -> 1/2.
    # Class 1: GT band 20; predicted band = rows 0/7 cols 5-7 (6) + cols 5 and 7 of rows 1-6 (12) = 18; both:
    #   rows 0/7 cols 5-7 (6) + col 7 rows 1-6 (6) = 12; union 20 + 18 - 12 = 26 -> 6/13.
    # Mean (1/2 + 6/13) / 2 = 25/52. The paper's 2 % of the 8x8 diagonal (0.23 px) rounds up to the 1 px minimum.
    pred = torch.zeros(8, 8, dtype=torch.long)
    pred[:, 5:] = 1
    label = torch.zeros(8, 8, dtype=torch.long)
    label[:, 4:] = 1

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return nn.functional.one_hot(pred, 2).permute(2, 0, 1).float()[None].expand(x.shape[0], -1, -1, -1)

    data = [{"image": torch.zeros(3, 8, 8), "label": label}]
    common = dict(num_classes=2, boundary_radii=(), size_divisor=1, progress=False)
    by_width = evaluate(Fixed(), data, biou_width=1, **common)
    by_ratio = evaluate(Fixed(), data, **common)  # default: the paper's 2 % of the diagonal
    for res in (by_width, by_ratio):
        assert res["biou"] == pytest.approx(25 / 52)
        assert res["biou_per_class"] == pytest.approx([1 / 2, 6 / 13])
    assert by_width["biou_settings"]["width_px"] == 1 and by_ratio["biou_settings"]["dilation_ratio"] == 0.02
    assert "| biou (1 px) | 48.08 |" in format_report(by_width)
    assert "| biou (2% of diagonal) | 48.08 |" in format_report(by_ratio)
    assert "biou" not in evaluate(Fixed(), data, boundary_iou=False, **common)


def test_report_handles_nan():
    res = {"miou": 0.5, "aacc": 0.5, "iou": [0.5, math.nan], "bf3": 0.25, "bf_per_class": {"bf3": [0.5, np.nan]}}
    md = format_report(res)
    assert "| 1 | n/a | n/a |" in md


def test_sbd_probabilities_pad_sizes_the_encoder_cannot_divide():
    # smp encoders need /32 inputs: 72x100 fails unpadded. Padding to 96x128 and cropping back must give the
    # same probabilities as running the padded image directly and cropping by hand (an independent reference).
    smp = pytest.importorskip("segmentation_models_pytorch")
    from sbcb import SBCB
    from sbcb.train.evaluation import sbd_probabilities

    torch.manual_seed(0)
    net = SBCB(smp.FPN("resnet18", encoder_weights=None, encoder_depth=5, classes=3), num_classes=3).eval()
    x = torch.randn(2, 3, 72, 100)
    with torch.no_grad():
        probs = sbd_probabilities(net, x)
        reference = torch.sigmoid(net.forward_outputs(torch.nn.functional.pad(x, (0, 28, 0, 24))).sbd["fuse"])
    assert probs.shape == (2, 3, 72, 100)
    torch.testing.assert_close(probs, reference[..., :72, :100])
