"""Evaluation metrics of the paper (spec §8): mIoU, boundary F-score, SBD ODS/OIS/AP.

Names are imported lazily so that `import sbcb.metrics` stays cheap (numba loads only with the SBD evaluator).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MeanIoU": "sbcb.metrics.miou",
    "confusion_matrix": "sbcb.metrics.miou",
    "scores_from_confusion": "sbcb.metrics.miou",
    "boundary_fscore": "sbcb.metrics.boundary_f",
    "boundary_fscores": "sbcb.metrics.boundary_f",
    "BoundaryFScore": "sbcb.metrics.boundary_f",
    "seg2bmap": "sbcb.metrics.boundary_f",
    "BoundaryIoU": "sbcb.metrics.boundary_iou",
    "SBDEvaluator": "sbcb.metrics.sbd",
    "prepare_sbd_gt": "sbcb.metrics.sbd",
    "cityscapes_sbd_gt": "sbcb.metrics.sbd",
    "image_counts": "sbcb.metrics.sbd",
    "sbd_scores": "sbcb.metrics.sbd",
    "evaluate_folders": "sbcb.metrics.sbd",
    "thin": "sbcb.metrics.thinning",
    "match_count": "sbcb.metrics.matching",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbcb.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
