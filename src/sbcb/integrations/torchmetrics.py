"""sbcb's metrics as `torchmetrics.Metric` subclasses (extra: ``pip install "sbcb[torchmetrics]"``).

Each class keeps its state as tensors registered with `add_state`, so torchmetrics synchronizes it across
processes itself (sum for counts, concatenation for per-image SBD counts) and Lightning moves, resets and logs it
like any other metric. The numbers come from the native functions of `sbcb.metrics`, so a result equals the native
class fed the same data (tested, also over two gloo processes).

`compute()` returns a dict of float64 tensors with the native keys (0-dim for the means, [K] per class), like
torchmetrics' own dict-valued metrics (e.g. detection mAP). torchmetrics squeezes one-element tensors, so a
[R] entry with one radius (or [K] with K = 1) comes back 0-dim: index with ``.reshape(-1)``. Log the scalar
entries:

    >>> miou = MeanIoU(19)
    >>> miou.update(logits.argmax(1), target)
    >>> {k: v for k, v in miou.compute().items() if v.ndim == 0}
    {'miou': tensor(...), 'macc': tensor(...), 'aacc': tensor(...)}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

try:
    from torchmetrics import Metric
    from torchmetrics.utilities import dim_zero_cat
except ImportError as e:  # pragma: no cover - the extra is installed in the dev environment
    raise ImportError('sbcb.integrations.torchmetrics needs torchmetrics: pip install "sbcb[torchmetrics]"') from e

from sbcb.metrics.boundary_f import boundary_fscores
from sbcb.metrics.boundary_iou import BoundaryIoU as _NativeBoundaryIoU
from sbcb.metrics.boundary_iou import boundary_iou_scores
from sbcb.metrics.miou import _as_numpy, _image_batch, confusion_matrix, scores_from_confusion
from sbcb.metrics.sbd import SBDEvaluator, image_counts, sbd_scores

__all__ = ["BoundaryFScore", "BoundaryIoU", "MeanIoU", "SBDMaxF", "tensor_dict"]


def tensor_dict(result: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A native result dict as float64 tensors: numbers and arrays converted, other entries (settings) dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in result.items():
        if isinstance(value, (bool, str, dict)) or value is None:
            continue
        array = np.asarray(value)
        if array.dtype.kind in "fiu":
            out[key] = torch.as_tensor(array.astype(np.float64))
    return out


class _Score(Metric):
    """What each metric here tells torchmetrics: a score (higher is better), no gradient, per-batch state updates."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False


class MeanIoU(_Score):
    """mIoU from a dataset-wide confusion matrix, as `sbcb.metrics.MeanIoU` (mmseg 0.27 conventions, spec §8.1).

    Args:
        num_classes: K.
        ignore_index: GT value that is not evaluated.
        kwargs: Options of `torchmetrics.Metric` (e.g. ``sync_on_compute``, ``process_group``).

    State: ``confusion`` int64 [K+1, K+1], summed across processes.
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        k = self.num_classes + 1
        self.add_state("confusion", default=torch.zeros(k, k, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: predicted class ids (argmax of the logits) and GT ids of one shape, e.g. [B, H, W]."""
        conf = confusion_matrix(preds, target, self.num_classes, ignore_index=self.ignore_index)
        self.confusion += torch.as_tensor(conf, device=self.confusion.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``miou``, ``macc``, ``aacc`` (0-dim) and per-class ``iou``, ``acc`` and counts [K]; see
        `sbcb.metrics.scores_from_confusion`."""
        return tensor_dict(scores_from_confusion(self.confusion.cpu().numpy()))


class BoundaryFScore(_Score):
    """Boundary F-score of segmentation masks, as `sbcb.metrics.BoundaryFScore` (spec §8.2).

    Args:
        num_classes: K.
        radii: Tolerances in pixels (values < 1: fractions of the image diagonal).
        ignore_index: Void GT value.
        kwargs: Options of `torchmetrics.Metric`.

    State: ``fsum`` float64 [R, K] (per-image F summed) and ``count`` (images), both summed across processes.
    """

    def __init__(
        self, num_classes: int, *, radii: Sequence[float] = (3, 5, 9, 12), ignore_index: int = 255, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 1 or not radii:
            raise ValueError("num_classes must be >= 1 and radii non-empty")
        self.num_classes = int(num_classes)
        self.radii = tuple(radii)
        self.ignore_index = int(ignore_index)
        shape = (len(self.radii), self.num_classes)
        self.add_state("fsum", default=torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add images: class ids [H, W] or [B, H, W], prediction and GT of one shape."""
        p, g = _image_batch(preds, target, names="preds and target")
        fsum = np.zeros((len(self.radii), self.num_classes))
        for pi, gi in zip(p, g):
            fsum += boundary_fscores(pi, gi, self.num_classes, radii=self.radii, ignore_index=self.ignore_index)
        self.fsum += torch.as_tensor(fsum, device=self.fsum.device)
        self.count += len(p)

    def compute(self) -> dict[str, torch.Tensor]:
        """``radii`` [R], ``fscore`` [R, K] (per-class mean over images) and ``mean_fscore`` [R]."""
        count = int(self.count)
        fsum = self.fsum.cpu().numpy()
        per_class = fsum / count if count else np.full_like(fsum, np.nan)
        return tensor_dict({"radii": self.radii, "fscore": per_class, "mean_fscore": per_class.mean(axis=1)})


class BoundaryIoU(_Score):
    """Boundary IoU for semantic segmentation, as `sbcb.metrics.BoundaryIoU` (spec §8.4).

    Args:
        num_classes: K.
        width: Band width in pixels; excludes `dilation_ratio`.
        dilation_ratio: Band width as a fraction of the image diagonal (default 0.02 when `width` is None).
        ignore_index: Void GT value.
        kwargs: Options of `torchmetrics.Metric`.

    State: ``intersection`` and ``union`` int64 [K], summed across processes. `settings()` says how the band
    width was chosen.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: int | None = None,
        dilation_ratio: float | None = None,
        ignore_index: int = 255,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # The native object validates the options and computes the per-image counts; its own state is unused.
        self._native = _NativeBoundaryIoU(
            num_classes, width=width, dilation_ratio=dilation_ratio, ignore_index=ignore_index
        )
        self.num_classes = self._native.num_classes
        k = self.num_classes
        self.add_state("intersection", default=torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("union", default=torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")

    def settings(self) -> dict[str, Any]:
        """Band width rule, ignore and border handling (as `sbcb.metrics.BoundaryIoU.settings`)."""
        return self._native.settings()

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add images: class ids [H, W] or [B, H, W], prediction and GT of one shape."""
        inter, union = self._native.batch_counts(preds, target)
        self.intersection += torch.as_tensor(inter, device=self.intersection.device)
        self.union += torch.as_tensor(union, device=self.union.device)

    def compute(self) -> dict[str, torch.Tensor]:
        """``mean`` (0-dim), ``iou`` [K] (NaN where the union is empty) and the counts [K]."""
        return tensor_dict(boundary_iou_scores(self.intersection.cpu().numpy(), self.union.cpu().numpy()))


class SBDMaxF(_Score):
    """Semantic boundary detection: maximum F at the optimal dataset scale (ODS), plus OIS and AP, as
    `sbcb.metrics.SBDEvaluator` (spec §8.3).

    Args:
        num_classes: K.
        max_dist: Matching distance as a fraction of the image diagonal.
        thresholds: Number of thresholds or an increasing list (9 is the cheap monitoring setting).
        thin: Thin protocol.
        thin_variant: ``"standard"`` or ``"pyedgeeval"``.
        skip_absent: Images without GT for a class contribute nothing to that class.
        backend: ``"auto"``, ``"numba"`` or ``"numpy"``.
        kwargs: Options of `torchmetrics.Metric`.

    State: ``counts``, a list of int64 [1, K, T, 4] per-image counts, concatenated across processes (OIS needs
    every image's counts, a sum would not do). The pre-SEAL ``kill_internal`` option needs class regions and is
    only in the native evaluator.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        max_dist: float = 0.0035,
        thresholds: int | Sequence[float] = 99,
        thin: bool = True,
        thin_variant: str = "standard",
        skip_absent: bool = False,
        backend: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._native = SBDEvaluator(
            num_classes,
            max_dist=max_dist,
            thresholds=thresholds,
            thin=thin,
            thin_variant=thin_variant,
            skip_absent=skip_absent,
            backend=backend,
        )
        self.num_classes = self._native.num_classes
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    def settings(self) -> dict[str, Any]:
        """Every knob that changes the counts (as `SBDEvaluator.settings`)."""
        return self._native.settings()

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add images.

        Args:
            preds: Per-class probabilities in [0, 1] (e.g. sigmoid of the ``fuse`` logits), [K, H', W'] or
                [B, K, H', W'] (resized to the GT size with nearest when it differs).
            target: bool GT boundaries [K, H, W] or [B, K, H, W].
        """
        p = _as_numpy(preds)
        g = _as_numpy(target)
        if p.ndim == 3:
            p, g = p[None], g[None]
        if p.ndim != 4 or g.ndim != 4 or len(p) != len(g):
            raise ValueError(f"preds and target must be [B, K, H, W] (or [K, H, W]), got {p.shape} and {g.shape}")
        kwargs = self._native._count_kwargs()
        for pi, gi in zip(p, g):
            counts = image_counts(pi, gi, **kwargs)
            self.counts.append(torch.as_tensor(counts[None], device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        """``mean_ods_f`` (the maximum F), ``mean_ois_f``, ``mean_ap``, ``mean_auc``, ``num_images`` (0-dim) and the
        per-class [K] entries of `sbcb.metrics.sbd_scores`."""
        if isinstance(self.counts, torch.Tensor):  # after a sync torchmetrics may hand back one concatenated tensor
            counts = self.counts.cpu().numpy()
        elif self.counts:
            counts = dim_zero_cat(self.counts).cpu().numpy()
        else:
            counts = np.zeros((0, self.num_classes, len(self._native.thresholds), 4), dtype=np.int64)
        return tensor_dict(sbd_scores(counts, self._native.thresholds))
