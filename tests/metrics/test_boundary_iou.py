"""Boundary IoU (spec §8.4): a hand-worked case and a slow reference built on SciPy's chessboard distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from sbcb.metrics import BoundaryIoU
from sbcb.metrics.boundary_iou import boundary_width_px, inner_boundary


def _hand_pair() -> tuple[np.ndarray, np.ndarray]:
    """6×6, K = 2: GT has a 4×4 square of class 1 at rows 1-4, cols 1-4; the prediction shifts it right by one
    (rows 1-4, cols 2-5), so it touches the right image border."""
    gt = np.zeros((6, 6), np.int64)
    gt[1:5, 1:5] = 1
    pred = np.zeros((6, 6), np.int64)
    pred[1:5, 2:6] = 1
    return pred, gt


def test_hand_worked_width_one():
    pred, gt = _hand_pair()
    m = BoundaryIoU(2, width=1)
    m.update(pred, gt)
    out = m.compute()
    # Class 1. G_d = the 4x4 square minus its 2x2 core (rows 2-3, cols 2-3) = 12 px. P_d: the square at cols 2-5
    # minus its core (rows 2-3, cols 3-4; col 5 is eroded from the image border) = 12 px.
    # G_d ∩ P_d: rows 1 and 4 share cols 2-4 (3 + 3); rows 2-3: G_d has cols {1, 4}, P_d cols {2, 5}: nothing.
    # I = 6, U = 12 + 12 - 6 = 18 -> 1/3.
    # Class 0. Every GT class-0 pixel lies on the image border, so G_d = G = 36 - 16 = 20 px. P = rows 0 and 5
    # (12) + cols 0-1 of rows 1-4 (8) = 20 px, all in P_d (image border, or col 1 next to the predicted square).
    # I = rows 0 and 5 (12) + col 0 of rows 1-4 (4) = 16, U = 20 + 20 - 16 = 24 -> 2/3. Mean = 1/2.
    np.testing.assert_array_equal(out["intersection"], [16, 6])
    np.testing.assert_array_equal(out["union"], [24, 18])
    np.testing.assert_allclose(out["iou"], [2 / 3, 1 / 3])
    assert out["mean"] == pytest.approx(0.5)
    assert out["settings"]["width_px"] == 1 and out["settings"]["dilation_ratio"] is None


def test_hand_worked_ignore_and_dataset_accumulation():
    pred, gt = _hand_pair()
    gt[0, 0] = 255  # removed from both masks: class 0 loses pixel (0, 0) in G_d and P_d, no new band pixel
    m = BoundaryIoU(2, width=1)
    m.update(torch.from_numpy(pred), torch.from_numpy(gt))
    # Class 0: I = 16 - 1 = 15, U = 19 + 19 - 15 = 23. Class 1 unchanged (6 / 18).
    np.testing.assert_array_equal(m.compute()["intersection"], [15, 6])
    np.testing.assert_array_equal(m.compute()["union"], [23, 18])
    # A second image of class 0 only, predicted right: G_d = P_d = the 20-px border ring -> I = U = 20.
    # Counts add up (not per-image IoUs): class 0 = (15 + 20) / (23 + 20) = 35/43; class 1 stays 1/3.
    m.update(np.zeros((6, 6), np.int64), np.zeros((6, 6), np.int64))
    np.testing.assert_allclose(m.compute()["iou"], [35 / 43, 1 / 3])
    # A class absent from every GT and prediction has an empty union: NaN, left out of the mean.
    m3 = BoundaryIoU(3, width=1)
    m3.update(pred, gt)
    out = m3.compute()
    assert math.isnan(out["iou"][2])
    assert out["mean"] == pytest.approx((15 / 23 + 1 / 3) / 2)


def test_width_from_ratio_is_recorded():
    # 6x6: diagonal 8.485 px. 0.02 * 8.485 = 0.17 -> rounds to 0 -> at least 1. 0.2 * 8.485 = 1.70 -> 2.
    assert boundary_width_px(6, 6, dilation_ratio=0.02) == 1
    assert boundary_width_px(6, 6, dilation_ratio=0.2) == 2
    # Cityscapes 1024x2048: 0.02 * 2289.7 = 45.8 -> 46 px.
    assert boundary_width_px(1024, 2048, dilation_ratio=0.02) == 46
    pred, gt = _hand_pair()
    m = BoundaryIoU(2, dilation_ratio=0.2)
    m.update(pred, gt)
    out = m.compute()
    assert out["settings"]["dilation_ratio"] == 0.2 and out["settings"]["width_px"] is None
    # d = 2: the 4x4 squares have no core left, G_d = G, P_d = P; class 1 = plain IoU = 12 / 20.
    assert out["iou"][1] == pytest.approx(12 / 20)
    assert BoundaryIoU(2).settings()["dilation_ratio"] == 0.02  # the paper's default
    with pytest.raises(ValueError):
        BoundaryIoU(2, width=3, dilation_ratio=0.02)
    with pytest.raises(ValueError):
        BoundaryIoU(2, width=0)


def _slow_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Reference: chessboard distance of each mask pixel to the nearest non-mask pixel of the zero-padded image."""
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    dist = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
    return mask.astype(bool) & (dist <= d)


def _slow_counts(pred, gt, k, d, ignore):
    inter = np.zeros(k, np.int64)
    union = np.zeros(k, np.int64)
    valid = gt != ignore
    for c in range(k):
        gb = _slow_boundary((gt == c) & valid, d)
        pb = _slow_boundary((pred == c) & valid, d)
        inter[c] += (gb & pb).sum()
        union[c] += (gb | pb).sum()
    return inter, union


@pytest.mark.parametrize("d", [1, 2, 5])
def test_matches_slow_reference_on_random_maps(d):
    rng = np.random.default_rng(d)
    k = 4
    m = BoundaryIoU(k, width=d)
    inter = np.zeros(k, np.int64)
    union = np.zeros(k, np.int64)
    for _ in range(3):
        # blobby maps: nearest-upsampled noise, plus out-of-range predictions and ignore pixels
        gt = np.kron(rng.integers(0, k, (6, 8)), np.ones((5, 5), np.int64))[:27, :37]
        pred = gt.copy()
        flip = rng.random(gt.shape) < 0.15
        pred[flip] = rng.integers(0, k + 1, flip.sum())  # k = out of range, belongs to no class
        gt[rng.random(gt.shape) < 0.05] = 255
        m.update(pred, gt)
        i, u = _slow_counts(pred, gt, k, d, 255)
        inter += i
        union += u
    out = m.compute()
    np.testing.assert_array_equal(out["intersection"], inter)
    np.testing.assert_array_equal(out["union"], union)


def test_inner_boundary_equals_reference_and_border_counts():
    rng = np.random.default_rng(0)
    for d in (1, 3):
        mask = ndimage.binary_opening(rng.random((40, 50)) < 0.6, iterations=1)
        np.testing.assert_array_equal(inner_boundary(mask, d), _slow_boundary(mask, d))
    full = np.ones((5, 7), bool)
    # A mask filling the image: its band is the outer ring of the image (border = contour), core 3x5 stays.
    ring = inner_boundary(full, 1)
    assert ring.sum() == 5 * 7 - 3 * 5


def test_sync_without_process_group_is_a_no_op():
    pred, gt = _hand_pair()
    m = BoundaryIoU(2, width=1)
    m.update(pred[None], gt[None])
    before = m.compute()["iou"].copy()
    m.sync()
    np.testing.assert_array_equal(m.compute()["iou"], before)
    m.reset()
    assert np.isnan(m.compute()["mean"])
