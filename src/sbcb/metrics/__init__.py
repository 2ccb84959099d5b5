"""Evaluation metrics of the paper (spec §8): mIoU, boundary F-score, SBD ODS/OIS/AP.

Names are imported lazily so that `import sbcb.metrics` stays cheap (numba loads only with the SBD evaluator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbcb._lazy import lazy_getattr, lazy_table

_LAZY = lazy_table(
    {
        "sbcb.metrics.miou": ["MeanIoU", "confusion_matrix", "scores_from_confusion"],
        "sbcb.metrics.boundary_f": ["boundary_fscore", "boundary_fscores", "BoundaryFScore", "seg2bmap"],
        "sbcb.metrics.boundary_iou": ["BoundaryIoU"],
        "sbcb.metrics.sbd": [
            "SBDEvaluator",
            "prepare_sbd_gt",
            "cityscapes_sbd_gt",
            "image_counts",
            "sbd_scores",
            "evaluate_folders",
        ],
        "sbcb.metrics.thinning": ["thin"],
        "sbcb.metrics.matching": ["match_count"],
    }
)

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time `__getattr__` imports on first use
    from sbcb.metrics.boundary_f import BoundaryFScore as BoundaryFScore
    from sbcb.metrics.boundary_f import boundary_fscore as boundary_fscore
    from sbcb.metrics.boundary_f import boundary_fscores as boundary_fscores
    from sbcb.metrics.boundary_f import seg2bmap as seg2bmap
    from sbcb.metrics.boundary_iou import BoundaryIoU as BoundaryIoU
    from sbcb.metrics.matching import match_count as match_count
    from sbcb.metrics.miou import MeanIoU as MeanIoU
    from sbcb.metrics.miou import confusion_matrix as confusion_matrix
    from sbcb.metrics.miou import scores_from_confusion as scores_from_confusion
    from sbcb.metrics.sbd import SBDEvaluator as SBDEvaluator
    from sbcb.metrics.sbd import cityscapes_sbd_gt as cityscapes_sbd_gt
    from sbcb.metrics.sbd import evaluate_folders as evaluate_folders
    from sbcb.metrics.sbd import image_counts as image_counts
    from sbcb.metrics.sbd import prepare_sbd_gt as prepare_sbd_gt
    from sbcb.metrics.sbd import sbd_scores as sbd_scores
    from sbcb.metrics.thinning import thin as thin

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
