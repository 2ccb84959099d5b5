"""Semantic boundary detection (SBD) evaluation: ODS / OIS / AP / AUC of multi-label boundary maps (spec §8.3).

Pipeline per image and class k, at each threshold t_i:
B = thin(p̂_k >= t_i) (thin protocol; raw: no thinning), one-to-one matching of B with the GT pixels within
max_dist × image diagonal, and four integers (count_r, sum_r, count_p, sum_p). Aggregation over the dataset follows
pyEdgeEval 0.2.8 (interpolated ODS, OIS with first-index ties, AP over 100 recall levels divided by 101).

Differences from pyEdgeEval, on purpose: the matching is an exact maximum matching (deterministic, counts >= the
reference's randomized assignment), and thinning runs to convergence (standard algorithm, = skimage).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

from sbcb.boundary_png import decode_rgb_png, encode_rgb_png, read_boundary_png, write_boundary_png
from sbcb.data.cityscapes import CITYSCAPES_CLASSES, INSTANCE_LABEL_IDS, label_ids_to_compact
from sbcb.metrics import _kernels
from sbcb.metrics.matching import disk_offsets, match_count_scipy
from sbcb.metrics.miou import _as_numpy
from sbcb.metrics.thinning import LUT_FIRST, LUT_SECOND, _check_variant, thin, thin_numpy

COUNT_FIELDS = ("count_r", "sum_r", "count_p", "sum_p")


# --------------------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------------------


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize with PIL's centre mapping: output (i, j) = input (floor((i+0.5)·h/H'), ...).

    For an exact factor 2 down this picks the odd pixels (2i+1, 2j+1), like PIL NEAREST and MATLAB imresize,
    unlike OpenCV INTER_NEAREST (even pixels).

    Args:
        array: [..., H, W] any dtype.
        size: (H', W') output size.

    Returns:
        [..., H', W'] same dtype.
    """
    h, w = array.shape[-2:]
    oh, ow = size
    if (oh, ow) == (h, w):
        return array
    ys = np.minimum(np.floor((np.arange(oh) + 0.5) * (h / oh)).astype(np.int64), h - 1)
    xs = np.minimum(np.floor((np.arange(ow) + 0.5) * (w / ow)).astype(np.int64), w - 1)
    return array[..., ys[:, None], xs[None, :]]


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Evaluation size int(h·s + 0.5) × int(w·s + 0.5) (512×1024 for Cityscapes at s = 0.5)."""
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _bands(label: np.ndarray, num_classes: int, radius: float, ignore_index: int, instance: np.ndarray | None):
    """Semantic (+ instance) boundary bands bool [K, H, W] via `sbcb.boundaries.mask_to_boundaries`.

    Values outside 0..K-1 other than `ignore_index` are foreign classes that form bands with the classes.
    """
    from sbcb.boundaries import mask_to_boundaries

    out = mask_to_boundaries(label, num_classes, radius=radius, ignore_index=ignore_index, instance_mask=instance)
    return np.asarray(_as_numpy(out), dtype=bool)


def prepare_sbd_gt(
    label: np.ndarray,
    num_classes: int,
    *,
    instance: np.ndarray | None = None,
    protocol: str = "thin",
    scale: float = 0.5,
    ignore_index: int = 255,
    radius: float | None = None,
) -> np.ndarray:
    """Evaluation GT boundaries from a full-resolution label map (spec §8.3.2, §8.3.7).

    - ``"thin"`` (SBCB / post-SEAL): nearest-downscale label and instances by `scale` (odd pixels), bands with
      r = 1 (IS when `instance` is given), then thin every class map to 1 px.
    - ``"raw"``: bands with r = 2 at full resolution, then nearest-downscale; no thinning.

    Args:
        label: [H, W] integer class ids: 0..K-1 classes, `ignore_index` = inside every class (Cityscapes labelIds
            2/3), any other value (e.g. 254 for the other void labels) = a foreign class that forms boundaries.
        num_classes: K.
        instance: Optional int [H, W], 0 = no instance, other ids = one instance each (IS boundaries).
        protocol: ``"thin"`` or ``"raw"``.
        scale: Evaluation scale (0.5 = half).
        ignore_index: Label value treated as inside every class.
        radius: Band radius; default 1 for thin and 2 for raw.

    Returns:
        bool [K, H', W'] at int(H·scale+0.5) × int(W·scale+0.5).
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be [H, W], got shape {label.shape}")
    if instance is not None and np.asarray(instance).shape != label.shape:
        raise ValueError(f"instance shape {np.asarray(instance).shape} != label shape {label.shape}")
    size = scaled_size(label.shape[0], label.shape[1], scale)
    if protocol == "thin":
        lab = resize_nearest(label, size)
        ins = None if instance is None else resize_nearest(np.asarray(instance), size)
        bands = _bands(lab, num_classes, 1.0 if radius is None else radius, ignore_index, ins)
        return np.stack([thin_fast(b) for b in bands]) if len(bands) else bands
    if protocol == "raw":
        bands = _bands(label, num_classes, 2.0 if radius is None else radius, ignore_index, instance)
        return resize_nearest(bands, size)
    raise ValueError(f"protocol must be 'thin' or 'raw', got {protocol!r}")


def cityscapes_compact_labels(label_ids: np.ndarray) -> np.ndarray:
    """`sbcb.data.cityscapes.label_ids_to_compact` of labelIds checked to lie in 0..255: uint8, trainIds 0..18,
    255 for labelIds 2/3, 254 for the other voids.
    """
    ids = np.asarray(label_ids)
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
        raise ValueError("Cityscapes labelIds must lie in 0..255; pass the *_gtFine_labelIds.png map")
    return label_ids_to_compact(ids.astype(np.uint8))


def cityscapes_sbd_gt(
    label_ids: np.ndarray,
    instance_ids: np.ndarray | None = None,
    *,
    protocol: str = "thin",
    scale: float = 0.5,
) -> np.ndarray:
    """The paper's Cityscapes SBD GT (thin IS protocol) from gtFine labelIds and instanceIds.

    Args:
        label_ids: [H, W] Cityscapes labelIds.
        instance_ids: [H, W] instanceIds (labelId·1000 + k for instances) or None for non-IS GT. Only the
            instance classes' ids >= 24000 count; crowd regions take part through the class mask.
        protocol: ``"thin"`` or ``"raw"``.
        scale: Evaluation scale.

    Returns:
        bool [19, H', W'].
    """
    compact = cityscapes_compact_labels(label_ids)
    instance = None
    if instance_ids is not None:
        ids = np.asarray(instance_ids).astype(np.int64)
        keep = (ids >= 24000) & np.isin(ids // 1000, INSTANCE_LABEL_IDS)
        instance = np.where(keep, ids, 0).astype(np.int32)
    return prepare_sbd_gt(compact, len(CITYSCAPES_CLASSES), instance=instance, protocol=protocol, scale=scale)


def thin_fast(mask: np.ndarray) -> np.ndarray:
    """`thinning.thin` (numba kernel when available)."""
    return thin(mask)


# The RGB-PNG boundary codec of `sbcb.boundary_png` under the evaluator's names.
encode_edge_png = encode_rgb_png
decode_edge_png = decode_rgb_png
load_edge_png = read_boundary_png


def save_edge_png(path: str | os.PathLike, edges: np.ndarray) -> None:
    """Write bool [K, H, W] boundaries as a bit-packed RGB PNG, creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_boundary_png(path, edges)


# --------------------------------------------------------------------------------------------------------------
# Per-image counts
# --------------------------------------------------------------------------------------------------------------


def make_thresholds(thresholds: int | Sequence[float]) -> np.ndarray:
    """Thresholds as float64: n evenly spaced values 1/(n+1) … n/(n+1) (99 -> 0.01 … 0.99), or the given list."""
    if isinstance(thresholds, (int, np.integer)):
        n = int(thresholds)
        if n < 1:
            raise ValueError(f"need at least one threshold, got {n}")
        return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or np.any(np.diff(t) < 0):
        raise ValueError("thresholds must be a non-empty increasing list")
    return t


def value_cutoffs(thresholds: np.ndarray) -> np.ndarray:
    """Smallest 8-bit value v with v/255 >= t, per threshold (256 = nothing is positive), int64 [T]."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.searchsorted(levels, thresholds, side="left").astype(np.int64)


def quantize(pred: Any) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 floor(255·p) (the 8-bit PNG value); uint8 input is taken as is."""
    p = _as_numpy(pred)
    if p.dtype == np.uint8:
        return p
    if p.dtype.kind not in "fiub":
        raise ValueError(f"predictions must be numeric, got {p.dtype}")
    p = p.astype(np.float64)
    if np.isnan(p).any():
        raise ValueError("predictions contain NaN")
    return np.clip(np.floor(p * 255.0), 0, 255).astype(np.uint8)


def max_dist_px(max_dist: float, height: int, width: int) -> float:
    """Matching distance in pixels: `max_dist` × image diagonal (4.007 px at 512×1024 for 0.0035)."""
    return float(max_dist) * math.sqrt(height * height + width * width)


def class_counts(
    pred_u8: np.ndarray,
    gt: np.ndarray,
    cutoffs: np.ndarray,
    dist_px: float,
    *,
    thin: bool = True,
    thin_variant: str = "standard",
    backend: str = "auto",
) -> np.ndarray:
    """Counts of one image and class at every threshold.

    Args:
        pred_u8: uint8 [H, W] quantized prediction (value v means p̂ = v/255).
        gt: bool [H, W] GT boundary pixels.
        cutoffs: int64 [T] from `value_cutoffs`.
        dist_px: Matching distance in pixels.
        thin: Thin the thresholded maps.
        thin_variant: ``"standard"`` (= skimage) or ``"pyedgeeval"`` (its early stop rule).
        backend: ``"numba"``, ``"numpy"`` (plain NumPy/SciPy, slow) or ``"auto"``.

    Returns:
        int64 [T, 4]: count_r, sum_r, count_p, sum_p.
    """
    early = _check_variant(thin_variant)
    if backend == "auto":
        backend = "numba" if _kernels.HAVE_NUMBA else "numpy"
    if backend == "numba" and not _kernels.HAVE_NUMBA:
        raise ImportError('the numba backend needs numba: pip install "sbcb[fast]"')
    if backend == "numpy":
        return _class_counts_numpy(pred_u8, gt, cutoffs, dist_px, thin=thin, thin_variant=thin_variant)
    if backend != "numba":
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
    h, w = gt.shape
    offy, offx = disk_offsets(dist_px)
    pad = int(math.floor(dist_px)) + 2
    frame = (h + 2 * pad, w + 2 * pad)
    gys, gxs = np.nonzero(gt)
    n_gt = gys.size
    gidx = np.full(frame, -1, dtype=np.int64)
    gidx[gys + pad, gxs + pad] = np.arange(n_gt)
    near = np.zeros(frame, dtype=np.uint8)
    if n_gt:
        r = int(math.floor(dist_px))
        kernel = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.uint8)
        kernel[offy + r, offx + r] = 1
        near = cv2.dilate((gidx >= 0).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    cmin = int(cutoffs.min())
    ys, xs = np.nonzero(pred_u8 >= cmin)
    vals_u8 = pred_u8[ys, xs]
    order = np.argsort(255 - vals_u8, kind="stable")  # largest first; radix sort on 8 bits
    vals = vals_u8.astype(np.int64)
    img = np.zeros(frame, dtype=np.uint8)
    return _kernels.class_counts(
        img,
        gidx,
        near,
        (ys[order] + pad).astype(np.int64),
        (xs[order] + pad).astype(np.int64),
        vals[order],
        np.asarray(cutoffs, dtype=np.int64),
        offy,
        offx,
        n_gt,
        bool(thin),
        LUT_FIRST,
        LUT_SECOND,
        early,
    )


def _class_counts_numpy(
    pred_u8: np.ndarray, gt: np.ndarray, cutoffs: np.ndarray, dist_px: float, *, thin: bool, thin_variant: str
) -> np.ndarray:
    """Straightforward NumPy/SciPy version of `class_counts` (whole-image thinning, SciPy matching)."""
    n_gt = int(gt.sum())
    out = np.zeros((len(cutoffs), 4), dtype=np.int64)
    prev = None
    for i, c in enumerate(cutoffs):
        b = pred_u8 >= c
        n_pos = int(b.sum())
        if prev is not None and n_pos == prev:  # thresholds nest: same size means the same map
            out[i] = out[i - 1]
            continue
        prev = n_pos
        if thin:
            b = thin_numpy(b, variant=thin_variant)
        n_b = int(b.sum())
        matched = match_count_scipy(b, gt, dist_px) if n_gt and n_b else 0
        out[i] = (matched, n_gt, matched, n_b)
    return out


def kill_internal_pixels(pred_u8: np.ndarray, gt: np.ndarray, seg: np.ndarray, dist_px: float) -> np.ndarray:
    """Zero predictions inside the class region that are farther than `dist_px` from its GT boundary.

    Args:
        pred_u8: uint8 [H, W].
        gt: bool [H, W] GT boundary of the class.
        seg: bool [H, W] GT region of the class.
        dist_px: Distance in pixels.

    Returns:
        uint8 [H, W] copy.
    """
    out = pred_u8.copy()
    if gt.any():
        dist = cv2.distanceTransform((~gt).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        far = dist > dist_px
    else:
        far = np.ones_like(gt)
    out[seg & far] = 0
    return out


def image_counts(
    pred: Any,
    gt: Any,
    *,
    thresholds: int | Sequence[float] = 99,
    max_dist: float = 0.0035,
    thin: bool = True,
    thin_variant: str = "standard",
    kill_internal: bool = False,
    seg: Any = None,
    skip_absent: bool = False,
    backend: str = "auto",
) -> np.ndarray:
    """Counts of one image for every class and threshold.

    Args:
        pred: [K, H', W'] probabilities in [0, 1] (quantized to floor(255·p)/255) or uint8 values; resized to the
            GT size with PIL-style nearest when the size differs.
        gt: bool [K, H, W] GT boundaries.
        thresholds: Number of thresholds or the list.
        max_dist: Matching distance as a fraction of the image diagonal.
        thin: Thin the thresholded predictions (thin protocol).
        thin_variant: ``"standard"`` thinning (= skimage / MATLAB) or ``"pyedgeeval"`` (its early stop).
        kill_internal: Zero predictions inside the class region farther than max_dist from its boundary (needs
            `seg`).
        seg: bool [K, H, W] class regions, only for `kill_internal`.
        skip_absent: Give all-zero counts for classes without GT pixels in this image.
        backend: ``"auto"``, ``"numba"`` or ``"numpy"``.

    Returns:
        int64 [K, T, 4] (count_r, sum_r, count_p, sum_p).
    """
    g = np.asarray(_as_numpy(gt)).astype(bool, copy=False)
    if g.ndim != 3:
        raise ValueError(f"gt must be bool [K, H, W], got shape {g.shape}")
    p = quantize(pred)
    if p.ndim != 3 or p.shape[0] != g.shape[0]:
        raise ValueError(f"pred must be [K, H, W] with K = {g.shape[0]} like gt, got shape {p.shape}")
    p = resize_nearest(p, g.shape[1:])
    if kill_internal and seg is None:
        raise ValueError("kill_internal needs seg=[K, H, W] class regions")
    s = None if seg is None else np.asarray(_as_numpy(seg)).astype(bool, copy=False)
    cutoffs = value_cutoffs(make_thresholds(thresholds))
    dist = max_dist_px(max_dist, *g.shape[1:])
    out = np.zeros((g.shape[0], len(cutoffs), 4), dtype=np.int64)
    for k in range(g.shape[0]):
        if skip_absent and not g[k].any():
            continue
        pk = kill_internal_pixels(p[k], g[k], s[k], dist) if kill_internal and s is not None else p[k]
        out[k] = class_counts(pk, g[k], cutoffs, dist, thin=thin, thin_variant=thin_variant, backend=backend)
    return out


# --------------------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------------------


def _rpf(count_r, sum_r, count_p, sum_p):
    """Recall, precision and F with x/0 := 0 (elementwise)."""
    count_r, sum_r, count_p, sum_p = (np.asarray(a, dtype=np.float64) for a in (count_r, sum_r, count_p, sum_p))
    r = np.divide(count_r, sum_r, out=np.zeros_like(count_r), where=sum_r > 0)
    p = np.divide(count_p, sum_p, out=np.zeros_like(count_p), where=sum_p > 0)
    s = p + r
    f = np.divide(2 * p * r, s, out=np.zeros_like(s), where=s > 0)
    return r, p, f


def _ods(thresholds: np.ndarray, rec: np.ndarray, prec: np.ndarray) -> tuple[float, float, float, float]:
    """Interpolated optimal dataset scale: (t, R, P, F) maximizing F over 101 steps between neighbours."""
    best_t, best_r, best_p = float(thresholds[0]), float(rec[0]), float(prec[0])
    best_f = 2 * best_p * best_r / (best_p + best_r) if best_p + best_r > 0 else 0.0
    d = np.linspace(0.0, 1.0, 101)
    for i in range(1, len(thresholds)):
        t = (1 - d) * thresholds[i - 1] + d * thresholds[i]
        r = (1 - d) * rec[i - 1] + d * rec[i]
        p = (1 - d) * prec[i - 1] + d * prec[i]
        s = p + r
        f = np.divide(2 * p * r, s, out=np.zeros_like(s), where=s > 0)
        j = int(np.argmax(f))
        if f[j] > best_f:
            best_t, best_r, best_p, best_f = float(t[j]), float(r[j]), float(p[j]), float(f[j])
    return best_t, best_r, best_p, best_f


def class_scores(counts: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """ODS / OIS / AP / AUC of one class from its per-image counts.

    Args:
        counts: int64 [N, T, 4] (count_r, sum_r, count_p, sum_p) of N images.
        thresholds: float64 [T].

    Returns:
        Dict of floats (fractions): ods_f, ods_p, ods_r, ods_t, ois_f, ois_p, ois_r, ap, auc; and the curves
        ``recall``, ``precision``, ``f`` [T].
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = counts.sum(axis=0)  # [T, 4]
    rec, prec, f = _rpf(*total.T)
    ods_t, ods_r, ods_p, ods_f = _ods(thresholds, rec, prec)
    # OIS: each image at its own best threshold (first index on ties, no interpolation).
    if counts.shape[0]:
        _, _, f_img = _rpf(*np.moveaxis(counts, -1, 0))  # [N, T]
        best = np.argmax(f_img, axis=1)
        picked = counts[np.arange(counts.shape[0]), best].sum(axis=0)
    else:
        picked = np.zeros(4, dtype=np.int64)
    ois_r, ois_p, ois_f = (float(v) for v in _rpf(*picked))
    # AP: interpolated precision at recall levels 0, 0.01, ..., 0.99, summed and divided by 101 (reference quirk).
    ap_sum = 0.0
    for j in range(100):
        ok = rec >= j / 100
        ap_sum += float(prec[ok].max()) if ok.any() else 0.0
    ap = ap_sum / 101
    # AUC: precision interpolated on the unique recalls (first occurrences), 0 outside the observed range.
    r_u, first = np.unique(rec, return_index=True)
    if r_u.size >= 2:
        auc = float(np.interp(np.arange(100) / 100, r_u, prec[first], left=0.0, right=0.0).sum() * 0.01)
    else:
        auc = 0.0
    return {
        "ods_f": ods_f,
        "ods_p": ods_p,
        "ods_r": ods_r,
        "ods_t": ods_t,
        "ois_f": ois_f,
        "ois_p": ois_p,
        "ois_r": ois_r,
        "ap": ap,
        "auc": auc,
        "recall": rec,
        "precision": prec,
        "f": f,
    }


def sbd_scores(counts: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """Dataset scores from per-image counts of every class.

    Args:
        counts: int64 [N, K, T, 4].
        thresholds: float64 [T].

    Returns:
        Dict with per-class float64 [K] arrays ``ods_f, ods_p, ods_r, ods_t, ois_f, ois_p, ois_r, ap, auc`` and
        class means ``mean_ods_f, mean_ois_f, mean_ap, mean_auc`` (fractions; a class without GT anywhere scores 0
        and still counts in the mean), plus ``num_images``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 4 or counts.shape[-1] != 4:
        raise ValueError(f"counts must be [N, K, T, 4], got shape {counts.shape}")
    keys = ("ods_f", "ods_p", "ods_r", "ods_t", "ois_f", "ois_p", "ois_r", "ap", "auc")
    per = {k: np.zeros(counts.shape[1]) for k in keys}
    for c in range(counts.shape[1]):
        s = class_scores(counts[:, c], thresholds)
        for k in keys:
            per[k][c] = s[k]
    out: dict[str, Any] = dict(per)
    for k in ("ods_f", "ois_f", "ap", "auc"):
        out[f"mean_{k}"] = float(per[k].mean()) if counts.shape[1] else float("nan")
    out["num_images"] = int(counts.shape[0])
    return out


# --------------------------------------------------------------------------------------------------------------
# Evaluator
# --------------------------------------------------------------------------------------------------------------


def _image_counts_job(args: tuple) -> np.ndarray:
    pred, gt, seg, kwargs = args
    return image_counts(pred, gt, seg=seg, **kwargs)


class SBDEvaluator:
    """Accumulates per-image SBD counts and computes ODS / OIS / AP over the dataset.

    Args:
        num_classes: K.
        max_dist: Matching distance as a fraction of the image diagonal (0.0035 post-SEAL; 0.02 pre-SEAL).
        thresholds: Number of thresholds (99 -> 0.01 … 0.99) or an increasing list. Fewer thresholds (quick mode,
            e.g. 9) are about T/99 of the cost; ODS is then slightly lower (see docs/metrics.md).
        thin: Thin each thresholded prediction (thin protocol); False for the raw protocol.
        thin_variant: ``"standard"`` (default, = skimage / MATLAB bwmorph) or ``"pyedgeeval"`` (its early stop).
        kill_internal: Pre-SEAL: zero predictions inside the class region far from its boundary (pass `seg`).
        skip_absent: Pre-SEAL / non-IS: images without GT for a class contribute nothing to that class.
        workers: Processes over images; results are identical for any value.
        backend: ``"auto"`` (numba when installed), ``"numba"`` or ``"numpy"``.

    Example:
        >>> ev = SBDEvaluator(19)
        >>> ev.update(torch.sigmoid(fuse[0]), gt_edges)  # [K, H, W] each
        >>> ev.compute()["mean_ods_f"]
    """

    def __init__(
        self,
        num_classes: int,
        *,
        max_dist: float = 0.0035,
        thresholds: int | Sequence[float] = 99,
        thin: bool = True,
        thin_variant: str = "standard",
        kill_internal: bool = False,
        skip_absent: bool = False,
        workers: int = 1,
        backend: str = "auto",
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.num_classes = int(num_classes)
        self.thresholds = make_thresholds(thresholds)
        self.max_dist = float(max_dist)
        self.thin = bool(thin)
        _check_variant(thin_variant)
        self.thin_variant = thin_variant
        self.kill_internal = bool(kill_internal)
        self.skip_absent = bool(skip_absent)
        self.workers = int(workers)
        self.backend = backend
        self._pool: ProcessPoolExecutor | None = None
        self.reset()

    @classmethod
    def quick(cls, num_classes: int, **kwargs: Any) -> SBDEvaluator:
        """A cheap evaluator for monitoring during training: 9 thresholds (0.1 … 0.9), otherwise the same."""
        kwargs.setdefault("thresholds", 9)
        return cls(num_classes, **kwargs)

    def settings(self) -> dict[str, Any]:
        """Every knob that changes the counts (stored next to cached counts and in results)."""
        return {
            "num_classes": self.num_classes,
            "thresholds": [float(t) for t in self.thresholds],
            "max_dist": self.max_dist,
            "thin": self.thin,
            "thin_variant": self.thin_variant,
            "kill_internal": self.kill_internal,
            "skip_absent": self.skip_absent,
            "matching": "exact maximum bipartite matching",
            "quantization": "floor(255 p) / 255",
        }

    def _count_kwargs(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "max_dist": self.max_dist,
            "thin": self.thin,
            "thin_variant": self.thin_variant,
            "kill_internal": self.kill_internal,
            "skip_absent": self.skip_absent,
            "backend": self.backend,
        }

    def reset(self) -> None:
        """Forget every image."""
        self.names: list[str | None] = []
        self.counts: list[np.ndarray] = []
        self._pending: list[tuple] = []

    def update(self, pred: Any, gt: Any, *, seg: Any = None, name: str | None = None) -> None:
        """Add one image.

        Args:
            pred: [K, H', W'] per-class probabilities in [0, 1] (e.g. sigmoid of `fuse`), or uint8 PNG values.
            gt: bool [K, H, W] GT boundaries at the evaluation size.
            seg: bool [K, H, W] class regions (only with kill_internal).
            name: Optional sample name kept with the counts.
        """
        g = np.asarray(_as_numpy(gt)).astype(bool, copy=False)
        if g.ndim != 3 or g.shape[0] != self.num_classes:
            raise ValueError(f"gt must be [K={self.num_classes}, H, W], got shape {g.shape}")
        p = quantize(pred)  # 8 bits travel to workers, not float64
        s = None if seg is None else np.asarray(_as_numpy(seg)).astype(bool)
        self.names.append(name)
        self._pending.append((p, g, s, self._count_kwargs()))
        if self.workers == 1 or len(self._pending) >= 4 * self.workers:
            self._flush()

    def update_counts(self, counts: np.ndarray, *, name: str | None = None) -> None:
        """Add precomputed counts int64 [K, T, 4] of one image (e.g. from a cache)."""
        c = np.asarray(counts, dtype=np.int64)
        if c.shape != (self.num_classes, len(self.thresholds), 4):
            raise ValueError(f"counts must be [K, T, 4] = {(self.num_classes, len(self.thresholds), 4)}, got {c.shape}")
        self._flush()
        self.names.append(name)
        self.counts.append(c)

    def _flush(self) -> None:
        if not self._pending:
            return
        jobs, self._pending = self._pending, []
        if self.workers == 1:
            self.counts.extend(_image_counts_job(j) for j in jobs)
            return
        self.counts.extend(self._executor().map(_image_counts_job, jobs))

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        return self._pool

    def close(self) -> None:
        """Shut the worker processes down (also done by `compute`)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def count_array(self) -> np.ndarray:
        """All counts so far, int64 [N, K, T, 4] in update order."""
        self._flush()
        if not self.counts:
            return np.zeros((0, self.num_classes, len(self.thresholds), 4), dtype=np.int64)
        return np.stack(self.counts)

    def sync(self) -> None:
        """Gather the per-image counts of all torch.distributed ranks (rank order), when initialized."""
        import torch.distributed as dist  # here, not at the top: the evaluator's worker processes never need torch

        counts = self.count_array()
        if not (dist.is_available() and dist.is_initialized()):
            return
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self.names, counts))
        self.names = [n for names, _ in gathered for n in names]
        self.counts = [c for _, cs in gathered for c in cs]

    all_reduce = sync

    def compute(self) -> dict[str, Any]:
        """Scores of everything added; see `sbd_scores`. Also returns ``settings``."""
        counts = self.count_array()
        self.close()
        out = sbd_scores(counts, self.thresholds)
        out["settings"] = self.settings()
        return out


# --------------------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------------------


def find_samples(gt_dir: str | os.PathLike, gt_suffix: str) -> list[str]:
    """Sample ids under `gt_dir`: relative paths of files ending in `gt_suffix`, without it, sorted."""
    root = Path(gt_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"GT folder {root} does not exist")
    ids = sorted(str(p.relative_to(root).as_posix())[: -len(gt_suffix)] for p in root.rglob(f"*{gt_suffix}"))
    if not ids:
        raise FileNotFoundError(f"no GT files matching *{gt_suffix} under {root}")
    return ids


def load_prediction(pred_dir: str | os.PathLike, sample_id: str, num_classes: int, *, suffix: str = ".png"):
    """8-bit per-class prediction PNGs ``{pred_dir}/class_{k+1:03d}/{sample_id}{suffix}`` -> uint8 [K, H, W]."""
    maps = []
    for k in range(num_classes):
        path = Path(pred_dir) / f"class_{k + 1:03d}" / f"{sample_id}{suffix}"
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise FileNotFoundError(f"missing prediction {path} (expected class_XXX/<sample>{suffix} PNGs)")
        maps.append(img)
    if len({m.shape for m in maps}) != 1:
        raise ValueError(f"prediction PNGs of {sample_id} differ in size")
    return np.stack(maps)


def save_prediction(pred_dir: str | os.PathLike, sample_id: str, pred: Any, *, suffix: str = ".png") -> None:
    """Write [K, H, W] probabilities (or uint8) as the 8-bit per-class PNG layout (value = floor(255·p))."""
    q = quantize(pred)
    for k in range(q.shape[0]):
        path = Path(pred_dir) / f"class_{k + 1:03d}" / f"{sample_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), q[k]):
            raise OSError(f"could not write {path}")


def load_gt(
    gt_dir: str | os.PathLike,
    sample_id: str,
    num_classes: int,
    *,
    gt_format: str = "edges",
    gt_suffix: str = "_edge.png",
    protocol: str = "thin",
    scale: float = 0.5,
) -> np.ndarray:
    """GT boundaries of one sample, bool [K, H, W].

    Formats:
        ``"edges"``: ``{gt_dir}/{sample_id}{gt_suffix}``, a bit-packed RGB PNG at the evaluation size (K <= 24).
        ``"labels"``: ``{gt_dir}/{sample_id}{gt_suffix}`` a uint8 label PNG at full size (0..K-1, 255 ignore, other
        values = foreign classes) and, if present, ``{gt_dir}/{sample_id}_instance.png`` (16-bit, 0 = none);
        converted with `prepare_sbd_gt(protocol, scale)`.
    """
    path = Path(gt_dir) / f"{sample_id}{gt_suffix}"
    if gt_format == "edges":
        return load_edge_png(path, num_classes)
    if gt_format == "labels":
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise FileNotFoundError(f"cannot read single-channel label PNG {path}")
        inst_path = Path(gt_dir) / f"{sample_id}_instance.png"
        instance = cv2.imread(str(inst_path), cv2.IMREAD_UNCHANGED) if inst_path.exists() else None
        return prepare_sbd_gt(label, num_classes, instance=instance, protocol=protocol, scale=scale)
    raise ValueError(f"gt_format must be 'edges' or 'labels', got {gt_format!r}")


def _folder_job(args: tuple) -> tuple[str, np.ndarray]:
    sample_id, pred_dir, gt_dir, num_classes, load_kwargs, pred_suffix, count_kwargs = args
    gt = load_gt(gt_dir, sample_id, num_classes, **load_kwargs)
    pred = load_prediction(pred_dir, sample_id, num_classes, suffix=pred_suffix)
    return sample_id, image_counts(pred, gt, **count_kwargs)


def _cache_path(cache_dir: Path, sample_id: str, key: str) -> Path:
    return cache_dir / f"{sample_id.replace('/', '__')}.{key}.npy"


def _cache_key(sample_id: str, common: Mapping[str, Any], files: Sequence[Path]) -> str:
    """Hash of everything that changes one image's counts: the settings, the formats and suffixes, and each input
    file's path and content (a missing file hashes as missing, so a new one is never answered from the cache)."""
    import hashlib

    h = hashlib.sha256(json.dumps({"sample": sample_id, **common}, sort_keys=True, default=str).encode())
    for path in files:
        h.update(str(path.resolve()).encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    return h.hexdigest()[:20]


def _sample_files(pred_dir: Path, gt_dir: Path, sample_id: str, num_classes: int, load_kwargs: Mapping[str, Any],
                  pred_suffix: str) -> list[Path]:  # fmt: skip
    files = [pred_dir / f"class_{k + 1:03d}" / f"{sample_id}{pred_suffix}" for k in range(num_classes)]
    files.append(gt_dir / f"{sample_id}{load_kwargs['gt_suffix']}")
    if load_kwargs["gt_format"] == "labels":
        files.append(gt_dir / f"{sample_id}_instance.png")
    return files


def _load_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        counts = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cache file {path} is corrupt ({type(e).__name__}); delete it") from None
    if counts.shape != shape or counts.dtype.kind not in "iu":
        raise ValueError(f"cache file {path} is corrupt (shape {counts.shape}, expected {shape}); delete it")
    return counts


def evaluate_folders(
    evaluator: SBDEvaluator,
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    sample_ids: Iterable[str] | None = None,
    gt_format: str = "edges",
    gt_suffix: str = "_edge.png",
    pred_suffix: str = ".png",
    protocol: str = "thin",
    scale: float = 0.5,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a prediction folder against a GT folder with `evaluator`'s settings and workers.

    Per-image counts are written to `cache_dir` (one .npy per sample, plus ``settings.json``) as they finish, so an
    interrupted run resumes where it stopped. Returns `evaluator.compute()`.
    """
    if evaluator.kill_internal:
        raise ValueError("kill_internal needs class regions; use SBDEvaluator.update(..., seg=...) in Python")
    ids = list(sample_ids) if sample_ids is not None else find_samples(gt_dir, gt_suffix)
    load_kwargs = {"gt_format": gt_format, "gt_suffix": gt_suffix, "protocol": protocol, "scale": scale}
    cache = None
    keys: dict[str, str] = {}
    if cache_dir is not None:
        cache = Path(cache_dir)
        if cache.exists() and not cache.is_dir():
            raise ValueError(f"cache {cache} is a file; give a folder")
        cache.mkdir(parents=True, exist_ok=True)
        common = {"settings": evaluator.settings(), **load_kwargs, "pred_suffix": pred_suffix}
        (cache / "settings.json").write_text(json.dumps(common, indent=1, default=str))  # for people; not the key
        for sid in ids:
            files = _sample_files(Path(pred_dir), Path(gt_dir), sid, evaluator.num_classes, load_kwargs, pred_suffix)
            keys[sid] = _cache_key(sid, common, files)
    shape = (evaluator.num_classes, len(evaluator.thresholds), 4)
    results: dict[str, np.ndarray] = {}
    todo = []
    for sid in ids:
        if cache is not None and _cache_path(cache, sid, keys[sid]).exists():
            results[sid] = _load_cached(_cache_path(cache, sid, keys[sid]), shape)
        else:
            todo.append(sid)
    count_kwargs = evaluator._count_kwargs()
    shared = (str(pred_dir), str(gt_dir), evaluator.num_classes, load_kwargs, pred_suffix, count_kwargs)
    jobs = [(sid, *shared) for sid in todo]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc="sbd", unit="img")
    it = map(_folder_job, jobs) if evaluator.workers == 1 else evaluator._executor().map(_folder_job, jobs)
    for sid, counts in it:
        results[sid] = counts
        if cache is not None:
            final = _cache_path(cache, sid, keys[sid])
            tmp = final.with_name(final.name + ".tmp.npy")
            np.save(tmp, counts)
            os.replace(tmp, final)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for sid in ids:
        evaluator.update_counts(results[sid], name=sid)
    return evaluator.compute()
