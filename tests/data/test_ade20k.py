"""ADE20K loader on a tiny tree in the ADEChallengeData2016 layout, written here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.ade20k import ADE20K
from sbcb.data.validation import DataError


@pytest.fixture
def root(tmp_path):
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        (tmp_path / "images" / folder).mkdir(parents=True)
        (tmp_path / "annotations" / folder).mkdir(parents=True)
        label = np.array([[0, 1, 2, 150], [150, 0, 75, 1]], np.uint8)
        cv2.imwrite(str(tmp_path / "images" / folder / f"{prefix}_00000001.jpg"), np.full((2, 4, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / "annotations" / folder / f"{prefix}_00000001.png"), label)
    return tmp_path


def test_reduce_zero_label(root):
    ds = ADE20K(root, "train")
    assert ds.info.num_classes == 150 and ds.info.class_names[0] == "wall" and ds.info.class_names[149] == "flag"
    assert len(set(ds.info.colors)) == 150
    # 0 -> 255 (ignore), v -> v - 1
    np.testing.assert_array_equal(ds[0]["label"], [[255, 0, 1, 149], [149, 255, 74, 0]])
    assert ADE20K(root, "validation")[0]["meta"]["name"] == "ADE_val_00000001"


def test_other_as_void(root):
    ds = ADE20K(root, "val", reduce_zero_label=False)
    assert ds.info.void_index == 150
    np.testing.assert_array_equal(ds[0]["label"], [[150, 0, 1, 149], [149, 150, 74, 0]])


def test_value_above_150_is_rejected(root):
    path = root / "annotations/training/ADE_train_00000001.png"
    cv2.imwrite(str(path), np.array([[0, 151, 200, 1], [1, 1, 1, 1]], np.uint8))
    with pytest.raises(
        DataError, match=r"151 \(1 px\), 200 \(1 px\) are not ADE20K ids \(0 = other, 1..150\) \(0-150\)"
    ):
        ADE20K(root, "train")[0]
