"""Boundary F-score: seg2bmap rule, a hand-worked case, empty cases, and a slow direct implementation."""

from __future__ import annotations

import numpy as np
import pytest

from sbcb.metrics.boundary_f import BoundaryFScore, boundary_fscore, boundary_fscores, seg2bmap, tolerance_px


def test_seg2bmap_marks_top_left_side_and_never_the_border():
    m = np.zeros((4, 5), dtype=bool)
    m[1:3, 1:3] = True  # a 2x2 square
    b = seg2bmap(m)
    # Pixel (r, c) is marked when it differs from E, S or SE. Background (0,0) differs from SE (1,1); (0,1) from S;
    # (0,2) from S and SE... worked out cell by cell:
    expected = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(b, expected)
    # A mask touching the image border: the border itself is no boundary; last row compares E only.
    full = np.ones((3, 3), dtype=bool)
    assert not seg2bmap(full).any()
    last_row = np.zeros((3, 3), dtype=bool)
    last_row[2, 1:] = True
    b = seg2bmap(last_row)
    assert b[2, 0] and not b[2, 1] and not b[2, 2]  # (2,0) differs from E; bottom-right never marked


def test_hand_worked_fscore():
    # Class 1 is a vertical half-plane in GT (columns >= 3) and in the prediction (columns >= 5), 6x8 image.
    gt = np.zeros((6, 8), dtype=np.int64)
    gt[:, 3:] = 1
    pred = np.zeros((6, 8), dtype=np.int64)
    pred[:, 5:] = 1
    # seg2bmap of class 1: GT boundary = column 2 (6 px), pred boundary = column 4 (6 px); same for class 0.
    # Distance 2 px. With r = 1: P = R = 0 -> F = 0. With r = 2: every pixel within reach -> F = 1.
    f1 = boundary_fscore(pred, gt, 2, radius=1)
    f2 = boundary_fscore(pred, gt, 2, radius=2)
    np.testing.assert_allclose(f1, [0.0, 0.0])
    np.testing.assert_allclose(f2, [1.0, 1.0])
    # Shorten the predicted boundary: rows 0..2 predicted at column 4, rows 3..5 far away (column 7 only).
    pred2 = np.zeros((6, 8), dtype=np.int64)
    pred2[:3, 5:] = 1
    pred2[3:, 7:] = 1  # boundary pixels at column 6 for rows 3..5, plus the step between them
    f = boundary_fscores(pred2, gt, 2, radii=(2,))[0, 1]
    pb = seg2bmap(pred2 == 1)
    gb = seg2bmap(gt == 1)
    # Brute-force the counts for this tiny case to keep the arithmetic honest.
    pys, pxs = np.nonzero(pb)
    gys, gxs = np.nonzero(gb)
    d2 = (pys[:, None] - gys[None]) ** 2 + (pxs[:, None] - gxs[None]) ** 2
    precision = np.mean(d2.min(axis=1) <= 4)
    recall = np.mean(d2.min(axis=0) <= 4)
    assert f == pytest.approx(2 * precision * recall / (precision + recall))
    assert 0 < f < 1


def test_empty_cases():
    gt = np.zeros((5, 5), dtype=np.int64)
    pred = np.zeros((5, 5), dtype=np.int64)
    gt[1:3, 1:3] = 1
    # class 2 absent from both -> 1; class 1 in GT only -> 0; class 0 has boundaries in both (around the square).
    f = boundary_fscore(pred, gt, 3, radius=1)
    assert f[2] == 1.0 and f[1] == 0.0
    # predicted only -> 0
    f = boundary_fscore(gt, pred, 3, radius=1)
    assert f[1] == 0.0


def test_ignore_becomes_background():
    gt = np.zeros((6, 6), dtype=np.int64)
    gt[:, 3:] = 255  # right half ignored: class 0 is the left half, its boundary is column 2
    pred = np.zeros((6, 6), dtype=np.int64)  # predicts class 0 everywhere
    # Pred class 0 masked by ignore -> also the left half -> identical boundaries -> F = 1 at any radius.
    assert boundary_fscore(pred, gt, 1, radius=1)[0] == 1.0


def _slow_fscore(pred, gt, k, r, ignore):
    """Direct definition: per-pixel loops for seg2bmap and brute-force distances."""
    h, w = gt.shape
    out = np.ones(k)
    for c in range(k):
        maps = []
        for lab in (pred, gt):
            m = (lab == c) & (gt != ignore)
            b = np.zeros((h, w), dtype=bool)
            for y in range(h):
                for x in range(w):
                    nb = []
                    if x + 1 < w:
                        nb.append(m[y, x + 1])
                    if y + 1 < h:
                        nb.append(m[y + 1, x])
                    if x + 1 < w and y + 1 < h:
                        nb.append(m[y + 1, x + 1])
                    b[y, x] = any(v != m[y, x] for v in nb)
            maps.append(b)
        pb, gb = maps
        if not pb.any() and not gb.any():
            continue
        if not pb.any() or not gb.any():
            out[c] = 0.0
            continue
        p = np.argwhere(pb)
        g = np.argwhere(gb)
        d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
        precision = (d2.min(axis=1) <= r * r).mean()
        recall = (d2.min(axis=0) <= r * r).mean()
        out[c] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_slow_direct_implementation(seed):
    rng = np.random.default_rng(seed)
    k = 4
    # Blocky random maps so that there are real regions, plus ignore.
    gt = np.kron(rng.integers(0, k, (5, 6)), np.ones((4, 4), dtype=np.int64))
    gt[rng.random(gt.shape) < 0.05] = 255
    pred = np.kron(rng.integers(0, k, (5, 6)), np.ones((4, 4), dtype=np.int64))
    pred = np.where(rng.random(gt.shape) < 0.5, gt % 255 % k, pred)
    for r in (1, 2, 3, 5):
        np.testing.assert_allclose(boundary_fscore(pred, gt, k, radius=r), _slow_fscore(pred, gt, k, r, 255))


def test_accumulator_means_over_images_then_classes():
    gt = np.zeros((6, 8), dtype=np.int64)
    gt[:, 3:] = 1
    far = np.zeros((6, 8), dtype=np.int64)
    far[:, 5:] = 1  # 2 px away: F = 0 at r = 1, 1 at r = 2 (see the hand-worked test)
    acc = BoundaryFScore(3, radii=(1, 2))
    acc.update(np.stack([gt, far]), np.stack([gt, gt]))  # batch of two
    out = acc.compute()
    # r = 1: classes 0, 1 -> (1 + 0) / 2 = 0.5 each; class 2 absent everywhere -> 1. Mean = 2/3.
    np.testing.assert_allclose(out["fscore"][0], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(out["mean_fscore"], [2 / 3, 1.0])
    acc.sync()  # no-op without torch.distributed
    np.testing.assert_allclose(acc.compute()["mean_fscore"], [2 / 3, 1.0])


def test_fraction_tolerance_like_gscnn():
    # GSCNN's 0.0005 .. 0.005 at 1024x2048 (diagonal 2289.7 px) are 2, 5, 9, 12 px (spec §8.2).
    assert [tolerance_px(f, 1024, 2048) for f in (0.0005, 0.001875, 0.00375, 0.005)] == [2, 5, 9, 12]
    assert tolerance_px(3, 1024, 2048) == 3
    with pytest.raises(ValueError):
        tolerance_px(0, 10, 10)
