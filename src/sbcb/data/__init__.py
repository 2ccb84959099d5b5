"""Datasets, joint transforms and the training-sample pipeline.

Every dataset yields plain dict samples (see `sbcb.data.base`) and declares its classes in a `DatasetInfo`.
Names are imported lazily so that `import sbcb.data` does not pull in every loader.
"""

from __future__ import annotations

import importlib
from typing import Any

from sbcb.data.base import DatasetInfo

_LAZY = {
    "SyntheticStreets": "sbcb.data.synthetic",
    "Cityscapes": "sbcb.data.cityscapes",
    "BDD100K": "sbcb.data.bdd100k",
    "Synthia": "sbcb.data.synthia",
    "ADE20K": "sbcb.data.ade20k",
    "FolderDataset": "sbcb.data.folder",
    "CamVid": "sbcb.data.camvid",
    "DataError": "sbcb.data.validation",
    "TransformedDataset": "sbcb.data.loader",
    "build_dataloader": "sbcb.data.loader",
    "build_dataset": "sbcb.data.registry",
    "list_datasets": "sbcb.data.registry",
    "build_train_transform": "sbcb.data.transforms",
    "build_eval_transform": "sbcb.data.transforms",
}

__all__ = ["DatasetInfo", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbcb.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
