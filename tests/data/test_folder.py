"""Plain folder dataset: hand-written trees and the synthetic dataset's own writer (round trip)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.folder import FolderDataset, load_dataset_yaml
from sbcb.data.validation import DataError


def make_tree(root, *, yaml_text="class_names: [road, car]\nthing_classes: [1]\n", instances=True):
    for sub in ("images", "labels", "instances") if instances else ("images", "labels"):
        (root / sub / "train").mkdir(parents=True)
    (root / "dataset.yaml").write_text(yaml_text)
    label = np.array([[0, 0, 1], [255, 1, 1]], np.uint8)
    cv2.imwrite(str(root / "images/train/a.jpg"), np.zeros((2, 3, 3), np.uint8))
    cv2.imwrite(str(root / "labels/train/a.png"), label)
    if instances:
        cv2.imwrite(str(root / "instances/train/a.png"), np.array([[0, 0, 1], [0, 2, 2]], np.uint16))
    return label


def test_reads_yaml_and_samples(tmp_path):
    label = make_tree(tmp_path)
    ds = FolderDataset(tmp_path, "train")
    assert ds.info.class_names == ("road", "car") and ds.info.thing_classes == (1,) and ds.info.ignore_index == 255
    assert ds.info.name == tmp_path.name and len(set(ds.info.colors)) == 2
    s = ds[0]
    np.testing.assert_array_equal(s["label"], label)
    np.testing.assert_array_equal(s["instance"], [[0, 0, 1], [0, 2, 2]])
    assert s["instance"].dtype == np.int32


def test_round_trip_of_synthetic_write_folder(tmp_path):
    synthetic = pytest.importorskip("sbcb.data.synthetic")
    src = synthetic.SyntheticStreets(2, size=(32, 48), seed=5, split="val")
    synthetic.write_folder(src, tmp_path)
    ds = FolderDataset(tmp_path, "val")
    assert ds.info.class_names == src.info.class_names and ds.info.thing_classes == src.info.thing_classes
    assert ds.info.colors == src.info.colors
    for i in range(2):
        a, b = src[i], ds[i]
        assert a["meta"]["name"] == b["meta"]["name"]
        for key in ("image", "label", "instance"):
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("names: [a]\n", "needs a non-empty `class_names"),
        ("class_names: [a, b]\ncolors: [[1, 2, 3]]\n", "2 class_names but 1 colors"),
        ("class_names: [a, b]\nignore_index: 1\n", "ignore_index 1 must be in 2..255"),
        ("class_names: [a, b]\nthing_classes: [2]\n", r"thing_classes \[2\] must be class ids in 0..1"),
        ("class_names: [a\n", "not valid YAML"),
    ],
)
def test_bad_yaml_messages(tmp_path, yaml_text, message):
    (tmp_path / "dataset.yaml").write_text(yaml_text)
    with pytest.raises(DataError, match=message):
        load_dataset_yaml(tmp_path / "dataset.yaml")


def test_value_outside_classes_suggests_remap(tmp_path):
    make_tree(tmp_path, instances=False)
    cv2.imwrite(str(tmp_path / "labels/train/a.png"), np.array([[0, 7, 1], [255, 1, 1]], np.uint8))
    with pytest.raises(DataError, match=r"a.png: label values 7 \(1 px\).*Remap them .* or add classes to class_names"):
        FolderDataset(tmp_path, "train")[0]


def test_instances_auto_detected(tmp_path):
    make_tree(tmp_path, instances=False)
    assert FolderDataset(tmp_path, "train")[0]["instance"] is None
    with pytest.raises(DataError, match="instances=True but"):
        FolderDataset(tmp_path, "train", instances=True)
