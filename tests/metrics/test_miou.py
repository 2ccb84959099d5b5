"""mIoU: hand-worked case, mmseg-style edge cases, and a direct per-class NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbcb.metrics.miou import MeanIoU, confusion_matrix


def test_hand_worked_case():
    # K = 3, one 2x4 image, 255 = ignore.
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    # Non-ignored pixels (7): (gt, pred) = (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,0)
    # class 0: I = 1, GT area = 2, pred area = 3 ((0,0), (2,0), (1,0)) -> U = 4, IoU = 0.25
    # class 1: I = 2, GT area = 3, pred area = 3 ((0,1), (1,1), (1,1)) -> U = 4, IoU = 0.5
    # class 2: I = 1, GT area = 2, pred area = 1 -> U = 2, IoU = 0.5   (pred 2 on the ignore pixel is dropped)
    # mIoU = 1.25 / 3; aAcc = 4 / 7; acc = [1/2, 2/3, 1/2]
    m = MeanIoU(3)
    m.update(pred, gt)
    out = m.compute()
    np.testing.assert_allclose(out["iou"], [0.25, 0.5, 0.5])
    assert out["miou"] == pytest.approx(1.25 / 3)
    assert out["aacc"] == pytest.approx(4 / 7)
    np.testing.assert_allclose(out["acc"], [0.5, 2 / 3, 0.5])


def test_zero_union_is_nan_and_left_out_predicted_absent_counts_zero():
    gt = np.zeros((2, 2), dtype=np.int64)
    pred = np.array([[0, 0], [0, 1]])
    # class 0: I = 3, U = 4 -> 0.75; class 1: absent from GT but predicted -> IoU 0 (counts);
    # class 2: neither -> NaN, excluded. mIoU = (0.75 + 0) / 2.
    m = MeanIoU(3)
    m.update(pred, gt)
    out = m.compute()
    assert out["iou"][0] == pytest.approx(0.75)
    assert out["iou"][1] == 0.0
    assert np.isnan(out["iou"][2])
    assert out["miou"] == pytest.approx(0.375)


def _direct_reference(preds, gts, k, ignore):
    """mmseg 0.27 `intersect_and_union` written directly: per image mask GT != ignore, histograms over 0..K-1."""
    inter = np.zeros(k)
    area_p = np.zeros(k)
    area_g = np.zeros(k)
    for p, g in zip(preds, gts):
        keep = g != ignore
        p, g = p[keep], g[keep]
        for c in range(k):
            inter[c] += np.sum((p == c) & (g == c))
            area_p[c] += np.sum(p == c)
            area_g[c] += np.sum(g == c)
    union = area_p + area_g - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return iou, inter.sum() / area_g.sum()


def test_matches_direct_reference_with_out_of_range_values_and_batches():
    rng = np.random.default_rng(0)
    k = 5
    preds = [rng.integers(0, k + 2, size=(2, 7, 9)) for _ in range(3)]  # k, k+1 are out of range
    gts = [rng.choice([0, 1, 2, 3, 254, 255], size=(2, 7, 9)) for _ in range(3)]  # class 4 never in GT; 254 foreign
    m = MeanIoU(k)
    for p, g in zip(preds, gts):
        m.update(torch.from_numpy(p), torch.from_numpy(g))  # tensors, batch [B, H, W]
    iou_ref, aacc_ref = _direct_reference(preds, gts, k, 255)
    out = m.compute()
    np.testing.assert_allclose(out["iou"], iou_ref, equal_nan=True)
    assert out["miou"] == pytest.approx(np.nanmean(iou_ref))
    assert out["aacc"] == pytest.approx(aacc_ref)


def test_torch_path_equals_numpy_path():
    rng = np.random.default_rng(1)
    p = rng.integers(-1, 6, size=(3, 5, 7))
    g = rng.choice([0, 1, 2, 3, 4, 254, 255], size=(3, 5, 7))
    a = confusion_matrix(torch.from_numpy(p), torch.from_numpy(g).to(torch.uint8), 5)
    b = confusion_matrix(p, g.astype(np.uint8), 5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 2)


def test_sync_is_noop_without_distributed_and_reset():
    m = MeanIoU(2)
    m.update(np.array([0, 1]), np.array([0, 0]))
    before = m.confusion.copy()
    m.sync()
    np.testing.assert_array_equal(m.confusion, before)
    m.reset()
    assert m.confusion.sum() == 0


def test_bad_input_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2), int), 2)
