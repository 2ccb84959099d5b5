"""Dataset names for the CLI and YAML configs: one flat table name -> class.

Python users construct the classes directly (`sbcb.data.Cityscapes(root, "train")`); names are for strings
coming from the command line. Classes are imported on first use, so listing names imports no loader.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

# name -> (module, class name)
DATASETS: dict[str, tuple[str, str]] = {
    "synthetic": ("sbcb.data.synthetic", "SyntheticStreets"),
    "cityscapes": ("sbcb.data.cityscapes", "Cityscapes"),
    "bdd100k": ("sbcb.data.bdd100k", "BDD100K"),
    "synthia": ("sbcb.data.synthia", "Synthia"),
    "ade20k": ("sbcb.data.ade20k", "ADE20K"),
    "folder": ("sbcb.data.folder", "FolderDataset"),
    "camvid": ("sbcb.data.camvid", "CamVid"),
}


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(DATASETS)


def dataset_class(name: str) -> type:
    """The class registered under `name`.

    Raises:
        KeyError: Unknown name (the message lists the known ones).
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")
    module, attr = DATASETS[name]
    return getattr(importlib.import_module(module), attr)


def build_dataset(name: str, root: str | Path | None, split: str, **kwargs: Any) -> Any:
    """Construct a registered dataset.

    Args:
        name: A name from `list_datasets()`.
        root: Dataset folder; ignored (may be None) for "synthetic", which is generated in memory.
        split: Split name, e.g. "train" or "val".
        **kwargs: Keyword options of that dataset class. Options set to None are dropped, so an unset CLI
            flag keeps the class default.

    Raises:
        KeyError: Unknown dataset name.
        TypeError: An option the class does not accept (the message lists the accepted ones).
    """
    cls = dataset_class(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p not in ("self", "root", "split")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"dataset {name!r} does not accept {', '.join(unknown)}; options: {', '.join(accepted)}")
    if "root" in params:
        if root is None:
            raise TypeError(f"dataset {name!r} needs a root folder")
        return cls(root, split, **kwargs)
    return cls(split=split, **kwargs)
