"""Synthia RAND loader on a tiny tree (RGB/, GT/LABELS/ 16-bit 3-channel PNGs), written here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.synthia import Synthia
from sbcb.data.validation import DataError


def write_sample(root, name, classes, instances):
    (root / "RGB").mkdir(exist_ok=True)
    (root / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "RGB" / f"{name}.png"), np.zeros((*classes.shape, 3), np.uint8))
    # cv2 writes BGR: class id goes to R (index 2), instance id to G (index 1).
    gt = np.dstack([np.zeros_like(classes), instances, classes]).astype(np.uint16)
    cv2.imwrite(str(root / "GT" / "LABELS" / f"{name}.png"), gt)


@pytest.fixture
def root(tmp_path):
    # Synthia ids: 3 road, 8 car, 10 pedestrian, 22 lane-marking, 0 void, 13 parking-slot, 1 sky
    classes = np.array([[3, 3, 8, 8, 8], [22, 0, 8, 10, 10], [13, 1, 1, 10, 3]])
    instances = np.array([[0, 0, 7, 7, 9], [0, 0, 9, 7, 7], [0, 0, 0, 300, 0]])
    write_sample(tmp_path, "0000001", classes, instances)
    write_sample(tmp_path, "0000002", classes, instances)
    return tmp_path


def test_class_mapping_and_instances(root):
    ds = Synthia(root)
    assert len(ds) == 2
    s = ds[0]
    # road 0, car 13, pedestrian(person) 11, lane-marking -> road 0, void/parking-slot -> 254, sky 10
    np.testing.assert_array_equal(s["label"], [[0, 0, 13, 13, 13], [0, 254, 13, 11, 11], [254, 10, 10, 11, 0]])
    # (class, id) pairs: person/7 < person/300 < car/7 < car/9 (sorted by class then id) -> 1, 2, 3, 4;
    # instance ids on non-thing pixels (none here) would be dropped.
    np.testing.assert_array_equal(s["instance"], [[0, 0, 3, 3, 4], [0, 0, 4, 1, 1], [0, 0, 0, 2, 0]])


def test_lanemarking_as_void_and_no_instances(root):
    s = Synthia(root, lanemarking_as_road=False, instances=False)[0]
    assert s["label"][1, 0] == 254 and s["instance"] is None


def test_split_list(root):
    (root / "mysplit.txt").write_text("0000002.png\n")
    ds = Synthia(root, "mysplit")
    assert len(ds) == 1 and ds[0]["meta"]["name"] == "0000002"
    with pytest.raises(DataError, match="unknown split 'val'"):
        Synthia(root, "val")


def test_out_of_range_synthia_id(root):
    write_sample(root, "0000002", np.full((3, 5), 40), np.zeros((3, 5)))
    with pytest.raises(DataError, match=r"0000002.png: label values 40 \(15 px\) are not Synthia class ids"):
        Synthia(root)[1]
