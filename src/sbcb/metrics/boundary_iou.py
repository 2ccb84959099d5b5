"""Boundary IoU for semantic segmentation (Cheng, Girshick, Dollár, Berg, Kirillov, CVPR 2021; spec §8.4).

For a binary mask M and a width d, the inner boundary region M_d is the set of pixels of M within chessboard
distance d of a pixel outside M. Following the reference implementation (boundary-iou-api `mask_to_boundary`),
the image is surrounded by zeros, so the image border counts as a contour: a class touching the border has a
boundary band along it in both the GT and the prediction. Boundary IoU of one class is
|G_d ∩ P_d| / |G_d ∪ P_d| (G_d ⊂ G and P_d ⊂ P, so the paper's ``(G_d ∩ G) ∩ (P_d ∩ P)`` is the same set).

Semantic segmentation, as mIoU (spec §8.1): per class, intersection and union pixel counts are summed over the
whole dataset, then divided once; the mean is over the classes with a non-empty union.

Ignore: pixels whose GT is `ignore_index` are removed from both masks *before* the boundary regions are computed
(the same rule as the boundary F-score, spec §8.2): the prediction there counts for no class, and a class that
meets an ignore region gets a band along it in both maps, so a prediction that simply continues under the ignore
region is not penalized. Values outside 0..K-1 belong to no class.

Width: ``width`` in pixels, or ``dilation_ratio`` × image diagonal, rounded, at least 1 (the paper's 2 %). The
choice and its value are part of every result (``settings``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from sbcb.metrics.miou import _as_numpy, _image_batch, all_reduce_sum

DEFAULT_DILATION_RATIO = 0.02  # the paper's setting: 2 % of the image diagonal


def boundary_width_px(height: int, width: int, *, dilation_ratio: float) -> int:
    """The band width d in pixels for an image: round(ratio × diagonal), at least 1 (the reference's rule)."""
    if not dilation_ratio > 0:
        raise ValueError(f"dilation_ratio must be > 0, got {dilation_ratio}")
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def inner_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Inner boundary region of a binary mask: pixels of the mask within chessboard distance `width` of the
    outside of the mask, the outside of the image included.

    One erosion by a (2d+1)×(2d+1) square with a zero border equals d erosions by the 3×3 square of the
    reference code (a square is the Minkowski sum of d 3×3 squares), at the cost of one pass.

    Args:
        mask: bool [H, W].
        width: d >= 1 in pixels.

    Returns:
        bool [H, W], a subset of `mask`.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return m.astype(bool)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    core = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m > core).astype(bool)


def boundary_iou_counts(
    pred: Any, gt: Any, num_classes: int, *, width: int, ignore_index: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection and union of the boundary regions of one image.

    Args:
        pred: Predicted class ids [H, W], integer (tensor or array).
        gt: GT class ids [H, W]; `ignore_index` pixels are removed from both masks of every class.
        num_classes: K.
        width: Band width d in pixels (see `boundary_width_px` for the ratio rule).
        ignore_index: Void GT value.

    Returns:
        (intersection, union), each int64 [K] pixel counts.
    """
    p = _as_numpy(pred)
    g = _as_numpy(gt)
    if p.ndim != 2 or p.shape != g.shape:
        raise ValueError(f"pred and gt must be [H, W] of the same size, got {p.shape} and {g.shape}")
    if p.dtype.kind not in "iub" or g.dtype.kind not in "iub":
        raise ValueError(f"pred and gt must hold integer class ids, got {p.dtype} and {g.dtype}")
    valid = g != ignore_index
    inter = np.zeros(num_classes, dtype=np.int64)
    union = np.zeros(num_classes, dtype=np.int64)
    present = np.union1d(np.unique(p[valid]), np.unique(g[valid]))
    for c in present:
        c = int(c)
        if not 0 <= c < num_classes:
            continue
        gb = inner_boundary(g == c, width)  # g == c already excludes ignore
        pb = inner_boundary((p == c) & valid, width)
        inter[c] = np.count_nonzero(gb & pb)
        union[c] = np.count_nonzero(gb | pb)
    return inter, union


def boundary_iou_scores(intersection: np.ndarray, union: np.ndarray) -> dict[str, Any]:
    """Boundary IoU per class and its mean from summed counts.

    Args:
        intersection: [K] summed over images.
        union: [K] summed over images.

    Returns:
        Dict with ``iou`` float64 [K] (fractions, NaN where the union is empty), ``mean`` (NaN-mean, NaN when
        every union is empty), and the counts ``intersection`` and ``union`` [K].
    """
    inter = np.asarray(intersection, dtype=np.float64)
    uni = np.asarray(union, dtype=np.float64)
    iou = np.full(inter.shape, np.nan)
    np.divide(inter, uni, out=iou, where=uni > 0)
    mean = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    return {"iou": iou, "mean": mean, "intersection": np.asarray(intersection), "union": np.asarray(union)}


class BoundaryIoU:
    """Dataset-level Boundary IoU accumulator: boundary-region counts summed over images, divided at the end.

    Args:
        num_classes: K.
        width: Band width d in pixels (fixed-size datasets); excludes `dilation_ratio`.
        dilation_ratio: d = max(1, round(ratio × image diagonal)) per image; the paper uses 0.02. Used when
            `width` is None (default 0.02).
        ignore_index: Void GT value; removed from both masks before the boundary regions are computed.

    Example:
        >>> metric = BoundaryIoU(19, width=3)
        >>> metric.update(logits.argmax(1), target)  # [B, H, W] each
        >>> metric.sync()  # under DDP: sum over ranks
        >>> metric.compute()["mean"]
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: int | None = None,
        dilation_ratio: float | None = None,
        ignore_index: int = 255,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if width is not None and dilation_ratio is not None:
            raise ValueError("give either width (pixels) or dilation_ratio (fraction of the diagonal), not both")
        if width is not None and (isinstance(width, bool) or int(width) != width or width < 1):
            raise ValueError(f"width must be a whole number of pixels >= 1, got {width!r}")
        if width is None:
            dilation_ratio = DEFAULT_DILATION_RATIO if dilation_ratio is None else float(dilation_ratio)
            boundary_width_px(1, 1, dilation_ratio=dilation_ratio)  # validates the ratio
        self.num_classes = int(num_classes)
        self.width = None if width is None else int(width)
        self.dilation_ratio = dilation_ratio
        self.ignore_index = int(ignore_index)
        self.reset()

    def settings(self) -> dict[str, Any]:
        """Every knob that changes the numbers (also returned by `compute`)."""
        return {
            "num_classes": self.num_classes,
            "width_px": self.width,
            "dilation_ratio": self.dilation_ratio,
            "width_rule": "fixed pixels" if self.width is not None else "max(1, round(ratio * sqrt(H^2 + W^2)))",
            "distance": "chessboard (3x3 square erosions)",
            "image_border": "counts as a contour (zero padding, as boundary-iou-api)",
            "ignore": "removed from GT and prediction masks before the boundary regions",
            "aggregation": "counts summed over images, mean over classes with a non-empty union",
            "ignore_index": self.ignore_index,
        }

    def width_for(self, height: int, width: int) -> int:
        """The band width in pixels used for an image of this size."""
        if self.width is not None:
            return self.width
        assert self.dilation_ratio is not None
        return boundary_width_px(height, width, dilation_ratio=self.dilation_ratio)

    def reset(self) -> None:
        """Forget every count."""
        self.intersection = np.zeros(self.num_classes, dtype=np.int64)
        self.union = np.zeros(self.num_classes, dtype=np.int64)

    def update(self, pred: Any, gt: Any) -> None:
        """Add images.

        Args:
            pred: Predicted class ids, [H, W] or [B, H, W] (argmax of the logits).
            gt: GT class ids of the same shape.
        """
        inter, union = self.batch_counts(pred, gt)
        self.intersection += inter
        self.union += union

    def batch_counts(self, pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
        """Summed (intersection, union) int64 [K] of a batch, without adding them to the state."""
        p, g = _image_batch(pred, gt)
        inter = np.zeros(self.num_classes, dtype=np.int64)
        union = np.zeros(self.num_classes, dtype=np.int64)
        d = self.width_for(*g.shape[-2:])
        for pi, gi in zip(p, g):
            i, u = boundary_iou_counts(pi, gi, self.num_classes, width=d, ignore_index=self.ignore_index)
            inter += i
            union += u
        return inter, union

    def sync(self) -> None:
        """Sum the counts over all ranks when torch.distributed is initialized; no-op otherwise."""
        self.intersection = all_reduce_sum(self.intersection)
        self.union = all_reduce_sum(self.union)

    all_reduce = sync

    def compute(self) -> dict[str, Any]:
        """Scores so far: see `boundary_iou_scores`, plus ``settings``."""
        out = boundary_iou_scores(self.intersection, self.union)
        out["settings"] = self.settings()
        return out
