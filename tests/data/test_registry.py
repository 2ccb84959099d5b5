"""Dataset names for the CLI resolve to the public classes; bad names and options are explained."""

from __future__ import annotations

import numpy as np
import pytest

import sbcb.data
from sbcb.data.registry import build_dataset, dataset_class, list_datasets


def test_names_resolve_to_public_classes():
    assert list_datasets() == ["ade20k", "bdd100k", "camvid", "cityscapes", "folder", "synthetic", "synthia"]
    public = {
        "ade20k": "ADE20K",
        "bdd100k": "BDD100K",
        "camvid": "CamVid",
        "cityscapes": "Cityscapes",
        "folder": "FolderDataset",
        "synthetic": "SyntheticStreets",
        "synthia": "Synthia",
    }
    for name, attr in public.items():
        assert dataset_class(name) is getattr(sbcb.data, attr)


def test_unknown_name_and_option():
    with pytest.raises(KeyError, match="unknown dataset 'kitti'; choose one of: ade20k, bdd100k"):
        dataset_class("kitti")
    with pytest.raises(TypeError, match=r"does not accept reduce_zero_label; options: .*instances"):
        build_dataset("cityscapes", "/nowhere", "train", reduce_zero_label=True)


def test_synthetic_needs_no_root_and_none_options_are_dropped():
    ds = build_dataset("synthetic", None, "val", num_samples=2, size=(16, 24), seed=None)
    ref = sbcb.data.SyntheticStreets(2, size=(16, 24), split="val")  # seed=None dropped -> class default
    np.testing.assert_array_equal(ds[1]["label"], ref[1]["label"])
