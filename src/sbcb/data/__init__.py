"""Datasets, joint transforms and the training-sample pipeline.

Every dataset yields plain dict samples (see `sbcb.data.base`) and declares its classes in a `DatasetInfo`.
Names are imported lazily so that `import sbcb.data` does not pull in every loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbcb._lazy import lazy_getattr, lazy_table
from sbcb.data.base import DatasetInfo

_LAZY = lazy_table(
    {
        "sbcb.data.synthetic": ["SyntheticStreets"],
        "sbcb.data.cityscapes": ["Cityscapes"],
        "sbcb.data.bdd100k": ["BDD100K"],
        "sbcb.data.synthia": ["Synthia"],
        "sbcb.data.ade20k": ["ADE20K"],
        "sbcb.data.folder": ["FolderDataset"],
        "sbcb.data.camvid": ["CamVid"],
        "sbcb.data.validation": ["DataError"],
        "sbcb.data.loader": ["TransformedDataset", "build_dataloader"],
        "sbcb.data.registry": ["build_dataset", "list_datasets"],
        "sbcb.data.transforms": ["build_train_transform", "build_eval_transform"],
    }
)

if TYPE_CHECKING:  # the names for type checkers and IDEs; at run time `__getattr__` imports on first use
    from sbcb.data.ade20k import ADE20K as ADE20K
    from sbcb.data.bdd100k import BDD100K as BDD100K
    from sbcb.data.camvid import CamVid as CamVid
    from sbcb.data.cityscapes import Cityscapes as Cityscapes
    from sbcb.data.folder import FolderDataset as FolderDataset
    from sbcb.data.loader import TransformedDataset as TransformedDataset
    from sbcb.data.loader import build_dataloader as build_dataloader
    from sbcb.data.registry import build_dataset as build_dataset
    from sbcb.data.registry import list_datasets as list_datasets
    from sbcb.data.synthetic import SyntheticStreets as SyntheticStreets
    from sbcb.data.synthia import Synthia as Synthia
    from sbcb.data.transforms import build_eval_transform as build_eval_transform
    from sbcb.data.transforms import build_train_transform as build_train_transform
    from sbcb.data.validation import DataError as DataError

__all__ = ["DatasetInfo", *_LAZY]
__getattr__ = lazy_getattr(__name__, _LAZY)
