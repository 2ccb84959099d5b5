"""Boundary F-score of segmentation masks (Gated-SCNN / DAVIS style, spec §8.2).

Per class and image: 1-px boundary maps of the predicted and GT masks (`seg2bmap` rule), a disk tolerance of
radius r pixels, precision = predicted boundary pixels within r of a GT boundary pixel, recall the other way round
(many-to-one, no matching), F = 2PR/(P+R). Per class the F values are averaged over images, then over classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from sbcb.metrics.miou import _as_numpy, _image_batch, all_reduce_sum


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """1-px boundary map of a binary mask.

    A pixel is a boundary pixel when it differs from its east, south or south-east neighbour. In the last row
    only east is compared, in the last column only south, and the bottom-right pixel is never a boundary, so
    the image border itself never creates a boundary.

    Args:
        mask: bool [H, W].

    Returns:
        bool [H, W].
    """
    m = np.asarray(mask, dtype=bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]  # east
    b[:-1, :] |= m[:-1, :] != m[1:, :]  # south
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]  # south-east
    return b


def tolerance_px(radius: float, height: int, width: int) -> int:
    """Tolerance in pixels: `radius` itself when >= 1, else ceil(radius * image diagonal) (GSCNN's `bound_th`)."""
    if radius <= 0:
        raise ValueError(f"radius must be > 0 (pixels, or a fraction of the diagonal below 1), got {radius}")
    if radius >= 1:
        return int(math.floor(radius))
    return int(math.ceil(radius * math.hypot(height, width)))


def _within(boundary: np.ndarray, radii: Sequence[int]) -> list[np.ndarray]:
    """For each r: bool map of pixels whose Euclidean distance to a `boundary` pixel is <= r.

    One exact EDT serves every radius: exact distances are sqrt of integers, so `d <= r` equals `dy²+dx² <= r²`
    for integer r (disk dilation).
    """
    dist = cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return [dist <= r for r in radii]


def _fscore_one(pb: np.ndarray, gb: np.ndarray, radii: Sequence[int]) -> np.ndarray:
    """F for each radius from two boundary maps [H, W] bool; the empty cases of spec §8.2 item 6."""
    n_p = int(pb.sum())
    n_g = int(gb.sum())
    if n_p == 0 and n_g == 0:
        return np.ones(len(radii))
    if n_p == 0 or n_g == 0:
        return np.zeros(len(radii))
    # Work on the bounding box of both maps grown by the largest radius: nothing outside can be within reach.
    ys, xs = np.nonzero(pb | gb)
    m = max(radii) + 1
    y0, y1 = max(int(ys.min()) - m, 0), int(ys.max()) + m + 1
    x0, x1 = max(int(xs.min()) - m, 0), int(xs.max()) + m + 1
    pb = pb[y0:y1, x0:x1]
    gb = gb[y0:y1, x0:x1]
    near_g = _within(gb, radii)
    near_p = _within(pb, radii)
    out = np.zeros(len(radii))
    for i in range(len(radii)):
        precision = np.count_nonzero(pb & near_g[i]) / n_p
        recall = np.count_nonzero(gb & near_p[i]) / n_g
        out[i] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return out


def boundary_fscores(
    pred: Any, gt: Any, num_classes: int, *, radii: Sequence[float] = (3,), ignore_index: int = 255
) -> np.ndarray:
    """Per-class boundary F-scores of one image at several tolerances.

    Args:
        pred: Predicted class ids [H, W], integer (tensor or array).
        gt: GT class ids [H, W]; `ignore_index` pixels become background of every class in both maps.
        num_classes: K.
        radii: Tolerances in pixels (values < 1 are fractions of the image diagonal).
        ignore_index: Void GT value.

    Returns:
        float64 [R, K], F in [0, 1]; 1 where class k is absent from both maps.
    """
    p = _as_numpy(pred)
    g = _as_numpy(gt)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(f"pred and gt must be [H, W] of the same size, got {p.shape} and {g.shape}")
    h, w = g.shape
    rs = [tolerance_px(r, h, w) for r in radii]
    valid = g != ignore_index
    out = np.ones((len(rs), num_classes))
    present = np.union1d(np.unique(p[valid]), np.unique(g[valid]))
    for c in present:
        c = int(c)
        if not 0 <= c < num_classes:
            continue
        pb = seg2bmap((p == c) & valid)
        gb = seg2bmap(g == c)  # g == c already excludes ignore
        out[:, c] = _fscore_one(pb, gb, rs)
    return out


def boundary_fscore(pred: Any, gt: Any, num_classes: int, radius: float = 3, ignore_index: int = 255) -> np.ndarray:
    """Per-class boundary F-score of one image at one tolerance.

    Args:
        pred: Predicted class ids [H, W].
        gt: GT class ids [H, W]; `ignore_index` pixels count as background for every class.
        num_classes: K.
        radius: Tolerance in pixels (a value < 1 is a fraction of the image diagonal, as GSCNN's `bound_th`).
        ignore_index: Void GT value.

    Returns:
        float64 [K], F in [0, 1] (1 where the class is absent from both maps).
    """
    return boundary_fscores(pred, gt, num_classes, radii=(radius,), ignore_index=ignore_index)[0]


class BoundaryFScore:
    """Dataset accumulator: per class the mean over images of the per-image F, then the mean over classes.

    Args:
        num_classes: K.
        radii: Tolerances in pixels (the paper's Tab. 10 uses 3, 5, 9, 12 at full Cityscapes resolution).
        ignore_index: Void GT value.
    """

    def __init__(self, num_classes: int, *, radii: Sequence[float] = (3, 5, 9, 12), ignore_index: int = 255) -> None:
        if num_classes < 1 or not radii:
            raise ValueError("num_classes must be >= 1 and radii non-empty")
        self.num_classes = int(num_classes)
        self.radii = tuple(radii)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self.fsum = np.zeros((len(self.radii), self.num_classes), dtype=np.float64)
        self.count = 0

    def update(self, pred: Any, gt: Any) -> None:
        """Add images.

        Args:
            pred: Predicted class ids, [H, W] or [B, H, W].
            gt: GT class ids of the same shape.
        """
        p, g = _image_batch(pred, gt)
        for pi, gi in zip(p, g):
            self.fsum += boundary_fscores(pi, gi, self.num_classes, radii=self.radii, ignore_index=self.ignore_index)
            self.count += 1

    def sync(self) -> None:
        """Sum the per-class F sums and the image count over torch.distributed ranks (no-op otherwise)."""
        self.fsum = all_reduce_sum(self.fsum)
        self.count = int(all_reduce_sum(np.array([self.count], dtype=np.int64))[0])

    all_reduce = sync

    def compute(self) -> dict[str, Any]:
        """Scores so far.

        Returns:
            Dict with ``radii`` (tuple), ``fscore`` float64 [R, K] (per-class mean over images, fractions) and
            ``mean_fscore`` float64 [R] (mean over classes). NaN before any update.
        """
        if self.count == 0:
            per_class = np.full_like(self.fsum, np.nan)
        else:
            per_class = self.fsum / self.count
        return {"radii": self.radii, "fscore": per_class, "mean_fscore": per_class.mean(axis=1)}
