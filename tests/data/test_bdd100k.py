"""BDD100K loader on a tiny tree in the official 10K layout, written here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sbcb.data.bdd100k import BDD100K
from sbcb.data.validation import DataError


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 1)):
        (tmp_path / "images/10k" / split).mkdir(parents=True)
        (tmp_path / "labels/sem_seg/masks" / split).mkdir(parents=True)
        for i in range(n):
            label = rng.integers(0, 19, (24, 40)).astype(np.uint8)
            label[:4] = 255
            cv2.imwrite(str(tmp_path / "images/10k" / split / f"{split}{i:04d}.jpg"), np.zeros((24, 40, 3), np.uint8))
            cv2.imwrite(str(tmp_path / "labels/sem_seg/masks" / split / f"{split}{i:04d}.png"), label)
    return tmp_path


def test_reads_pairs_and_keeps_255_as_ignore(root):
    ds = BDD100K(root, "train")
    assert len(ds) == 3 and len(BDD100K(root, "val")) == 1
    assert ds.info.num_classes == 19 and ds.info.void_index is None and ds.info.class_names[13] == "car"
    s = ds[1]
    raw = cv2.imread(str(root / "labels/sem_seg/masks/train/train0001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(s["label"], raw)
    assert s["instance"] is None and s["image"].shape == (24, 40, 3)


def test_blette_like_options(root):
    s = BDD100K(root, "train", unlabeled="void", border_ignore=2)[0]
    raw = cv2.imread(str(root / "labels/sem_seg/masks/train/train0000.png"), cv2.IMREAD_UNCHANGED)
    inner = s["label"][2:-2, 2:-2]
    # inside the 2-px frame: unlabelled 255 -> void 254, classes unchanged
    np.testing.assert_array_equal(inner, np.where(raw[2:-2, 2:-2] == 255, 254, raw[2:-2, 2:-2]))
    frame = np.ones_like(s["label"], bool)
    frame[2:-2, 2:-2] = False
    assert (s["label"][frame] == 255).all()


def test_value_19_is_rejected_with_file_name(root):
    path = root / "labels/sem_seg/masks/train/train0002.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 19
    cv2.imwrite(str(path), label)
    with pytest.raises(DataError, match=r"train0002.png: label values 19 \(1 px\)"):
        BDD100K(root, "train")[2]


def test_unknown_split(root):
    with pytest.raises(DataError, match="unknown split 'test'"):
        BDD100K(root, "test")
