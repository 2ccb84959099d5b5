"""CamVid (SegNet layout) on a tiny tree written here (never the shared copy)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.camvid import CamVid
from sbcb.data.validation import DataError


@pytest.fixture
def root(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        (tmp_path / f"{split}annot").mkdir()
        for name in ("0001TP_000010", "0001TP_000020"):
            label = np.arange(12, dtype=np.uint8).reshape(3, 4)  # 0..10 classes, 11 void
            cv2.imwrite(str(tmp_path / split / f"{name}.png"), np.zeros((3, 4, 3), np.uint8))
            cv2.imwrite(str(tmp_path / f"{split}annot" / f"{name}.png"), label)
    return tmp_path


def test_void_becomes_ignore(root):
    ds = CamVid(root, "train")
    assert ds.info.num_classes == 11 and ds.info.ignore_index == 255 and ds.info.class_names[4] == "pavement"
    s = ds[0]
    np.testing.assert_array_equal(s["label"], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 255]])
    assert s["instance"] is None


def test_list_file_order_and_segnet_absolute_paths(root):
    # SegNet's own lists use absolute /SegNet/CamVid/... paths; only folder/file is used.
    (root / "val.txt").write_text(
        "/SegNet/CamVid/val/0001TP_000020.png /SegNet/CamVid/valannot/0001TP_000020.png\n"
        "val/0001TP_000010.png valannot/0001TP_000010.png\n"
    )
    assert [CamVid(root, "val")[i]["meta"]["name"] for i in range(2)] == ["0001TP_000020", "0001TP_000010"]


def test_list_with_missing_file(root):
    (root / "val.txt").write_text("val/nope.png valannot/nope.png\nval/0001TP_000010.png valannot/0001TP_000010.png\n")
    with pytest.raises(DataError, match=r"2 file\(s\) listed in .*val.txt do not exist: .*nope.png"):
        CamVid(root, "val")
    lenient = CamVid(root, "val", strict=False)
    assert len(lenient) == 1 and len(lenient.problems) == 1


def test_label_12_is_rejected(root):
    cv2.imwrite(str(root / "trainannot/0001TP_000010.png"), np.full((3, 4), 12, np.uint8))
    with pytest.raises(DataError, match=r"0001TP_000010.png: label values 12 \(12 px\)"):
        CamVid(root, "train")[0]
