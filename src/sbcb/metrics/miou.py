"""Mean intersection-over-union from a dataset-wide confusion matrix (mmseg 0.27 conventions, spec §8.1)."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

_Summable = TypeVar("_Summable", np.ndarray, torch.Tensor)


def _as_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array, without copying when possible."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _image_batch(pred: Any, gt: Any, *, names: str = "pred and gt") -> tuple[np.ndarray, np.ndarray]:
    """Class-id maps [H, W] or [B, H, W] of one shape as numpy batches [B, H, W] (an image gets B = 1).

    Raises:
        ValueError: The shapes differ or are neither [H, W] nor [B, H, W] (`names` names the arguments).
    """
    p = _as_numpy(pred)
    g = _as_numpy(gt)
    if p.shape != g.shape or p.ndim not in (2, 3):
        raise ValueError(f"{names} must be [H, W] or [B, H, W] of one shape, got {p.shape} and {g.shape}")
    return (p[None], g[None]) if p.ndim == 2 else (p, g)


def confusion_matrix(pred: Any, gt: Any, num_classes: int, *, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix of one batch, with one extra bin for values outside 0..K-1.

    Args:
        pred: Predicted class ids, any shape (e.g. [B, H, W] or [H, W]), integer, tensor or array.
        gt: Ground-truth class ids, same shape as `pred`; `ignore_index` pixels are skipped.
        num_classes: K.
        ignore_index: GT value that is not evaluated.

    Returns:
        int64 [K+1, K+1], rows = GT class, columns = predicted class; index K collects every value outside
        0..K-1. mmseg's histograms drop such values one side at a time: a valid GT pixel with an out-of-range
        prediction still counts in the GT area, and a prediction on an out-of-range (non-ignore) GT pixel
        still counts in the predicted area. The extra bin keeps exactly that information.
    """
    if _is_tensor(pred) and _is_tensor(gt) and pred.device == gt.device:
        return _confusion_matrix_torch(pred, gt, num_classes, ignore_index)
    p = _as_numpy(pred)
    g = _as_numpy(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}; pass class ids (argmax), not logits")
    if p.dtype.kind not in "iub" or g.dtype.kind not in "iub":
        raise ValueError(f"pred and gt must hold integer class ids, got {p.dtype} and {g.dtype}")
    k = int(num_classes)
    p = p.reshape(-1).astype(np.int64, copy=False)
    g = g.reshape(-1).astype(np.int64, copy=False)
    keep = g != ignore_index
    p = p[keep]
    g = g[keep]
    p = np.where((p >= 0) & (p < k), p, k)
    g = np.where((g >= 0) & (g < k), g, k)
    return np.bincount(g * (k + 1) + p, minlength=(k + 1) * (k + 1)).reshape(k + 1, k + 1)


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "device")


def _confusion_matrix_torch(pred: Any, gt: Any, num_classes: int, ignore_index: int) -> np.ndarray:
    """`confusion_matrix` computed where the tensors live (no label-map copy to the host), same result."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != gt shape {tuple(gt.shape)}; pass class ids, not logits")
    if pred.is_floating_point() or gt.is_floating_point() or pred.is_complex() or gt.is_complex():
        raise ValueError(f"pred and gt must hold integer class ids, got {pred.dtype} and {gt.dtype}")
    k = int(num_classes)
    p = pred.detach().reshape(-1).long()
    g = gt.detach().reshape(-1).long()
    keep = g != ignore_index
    p = p[keep]
    g = g[keep]
    p = torch.where((p >= 0) & (p < k), p, torch.full_like(p, k))
    g = torch.where((g >= 0) & (g < k), g, torch.full_like(g, k))
    counts = torch.bincount(g * (k + 1) + p, minlength=(k + 1) * (k + 1))
    return counts.cpu().numpy().astype(np.int64).reshape(k + 1, k + 1)


def scores_from_confusion(conf: np.ndarray) -> dict[str, Any]:
    """IoU, accuracy and their means from a confusion matrix.

    Args:
        conf: [K+1, K+1] counts from `confusion_matrix` (rows = GT, columns = prediction, last = out of range).

    Returns:
        Dict with fractions in [0, 1]: ``iou`` [K] (NaN where the union is empty), ``acc`` [K] (per-class
        recall, NaN where the class has no GT pixel), ``miou`` and ``macc`` (NaN-means), ``aacc`` (overall pixel
        accuracy = sum of intersections / sum of GT areas), and the per-class counts ``intersection``,
        ``union``, ``gt_area``, ``pred_area`` [K].
    """
    conf = np.asarray(conf, dtype=np.float64)
    k = conf.shape[0] - 1
    inter = np.diag(conf)[:k]
    gt_area = conf[:k].sum(axis=1)
    pred_area = conf[:, :k].sum(axis=0)
    union = gt_area + pred_area - inter
    iou = np.full(k, np.nan)
    np.divide(inter, union, out=iou, where=union > 0)
    acc = np.full(k, np.nan)
    np.divide(inter, gt_area, out=acc, where=gt_area > 0)
    total = gt_area.sum()
    return {
        "iou": iou,
        "acc": acc,
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "macc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "aacc": float(inter.sum() / total) if total > 0 else float("nan"),
        "intersection": inter,
        "union": union,
        "gt_area": gt_area,
        "pred_area": pred_area,
    }


class MeanIoU:
    """Dataset-level mIoU accumulator: counts summed over images, IoU computed once at the end.

    Args:
        num_classes: K.
        ignore_index: GT value that is not evaluated.

    Example:
        >>> metric = MeanIoU(19)
        >>> metric.update(logits.argmax(1), target)  # [B, H, W] each
        >>> metric.sync()  # under DDP: sum over ranks
        >>> metric.compute()["miou"]
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget every count."""
        self.confusion = np.zeros((self.num_classes + 1, self.num_classes + 1), dtype=np.int64)

    def update(self, pred: Any, gt: Any) -> None:
        """Add a batch.

        Args:
            pred: Predicted class ids, any shape, tensor or array (argmax of the logits).
            gt: GT class ids of the same shape, `ignore_index` skipped.
        """
        self.confusion += confusion_matrix(pred, gt, self.num_classes, ignore_index=self.ignore_index)

    def sync(self) -> None:
        """Sum the confusion matrix over all ranks when torch.distributed is initialized; no-op otherwise."""
        self.confusion = all_reduce_sum(self.confusion)

    all_reduce = sync

    def compute(self) -> dict[str, Any]:
        """Scores of everything added so far; see `scores_from_confusion`."""
        return scores_from_confusion(self.confusion)


def all_reduce_sum(x: _Summable) -> _Summable:
    """Element-wise sum of a numpy array or a tensor over torch.distributed ranks (identity when not distributed).

    Integer arrays travel as int64 and float arrays as float64, so counts stay exact; a tensor is summed in place
    (and returned). Either is moved to the device the process group expects (CUDA for NCCL, CPU for gloo) and back.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return x
    backend = dist.get_backend()
    if isinstance(x, np.ndarray):
        dtype = torch.int64 if x.dtype.kind in "iub" else torch.float64
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = torch.as_tensor(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy().astype(x.dtype, copy=False)
    work = x
    if backend == "nccl" and not x.is_cuda:
        work = x.cuda()
    elif backend == "gloo" and x.is_cuda:
        work = x.cpu()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    if work is not x:
        x.copy_(work)
    return x
