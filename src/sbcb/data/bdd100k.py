"""BDD100K semantic segmentation (the 10K subset): 19 Cityscapes classes, 255 = unlabelled.

Layout under `root` (as unpacked from `bdd100k_images_10k.zip` and `bdd100k_sem_seg_labels_trainval.zip`)::

    images/10k/{train,val}/NAME.jpg
    labels/sem_seg/masks/{train,val}/NAME.png   # uint8 trainIds 0..18, 255 = unlabelled

The paper's OTF settings for BDD100K are not published (spec §9.2). Default [inferred]: 255 is ignored (inside
every class for boundaries) and boundaries are not instance-sensitive. The author's later `blette` library
instead uses a 5-px border label as its only ignore value; `unlabeled="void", border_ignore=5` is our reading of
that convention [inferred]: unlabelled pixels then form boundaries (but are still not trained), and a 5-px frame
at the image border is ignored.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from sbcb.data.cityscapes import CITYSCAPES_INFO, IGNORE, VOID
from sbcb.data.folder import PairedFileDataset
from sbcb.data.validation import check_label_values, read_label


class BDD100K(PairedFileDataset):
    """BDD100K 10K semantic segmentation (7000 train / 1000 val images at 720x1280).

    Args:
        root: Folder holding `images/10k/` and `labels/sem_seg/masks/`.
        split: "train" or "val".
        unlabeled: "ignore" (default): 255 stays ignore. "void": 255 becomes the void value 254, which is not
            trained or evaluated but forms boundaries with the classes.
        border_ignore: Width in px of a frame at the image border set to ignore (0 = none; blette-style: 5).
        validate: Check label values and sizes on every read.
        strict: Raise `DataError` on missing/unpaired files at construction; with False list them in `problems`.
    """

    SPLITS = ("train", "val")
    FOLDER_HINT = "Unpack bdd100k_images_10k.zip and bdd100k_sem_seg_labels_trainval.zip into the same root."

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        unlabeled: Literal["ignore", "void"] = "ignore",
        border_ignore: int = 0,
        validate: bool = True,
        strict: bool = True,
    ) -> None:
        super().__init__(root, split, validate=validate)
        if unlabeled not in ("ignore", "void"):
            raise ValueError(f"unlabeled must be 'ignore' or 'void', got {unlabeled!r}")
        if border_ignore < 0:
            raise ValueError(f"border_ignore must be >= 0 px, got {border_ignore}")
        self.unlabeled = unlabeled
        self.border_ignore = border_ignore
        # the Cityscapes classes, ids and colours
        self.info = replace(CITYSCAPES_INFO, name="bdd100k", void_index=VOID if unlabeled == "void" else None)
        self._check_split(split)
        image_dir, label_dir = self._check_folders(f"images/10k/{split}", f"labels/sem_seg/masks/{split}")
        if not self.problems:
            self.samples = self._pair(image_dir, label_dir, image_suffixes=(".jpg", ".jpeg", ".png"))
        self._finish(strict=strict, where=image_dir, pattern="*.jpg")

    def load_targets(self, sample: dict) -> tuple[np.ndarray, None]:
        label = read_label(sample["label"])
        if self.validate:
            check_label_values(label, [*range(19), IGNORE], path=sample["label"], what="BDD100K trainIds")
        label = label.astype(np.uint8)
        if self.unlabeled == "void":
            label[label == IGNORE] = VOID
        b = self.border_ignore
        if b:
            label[:b], label[-b:], label[:, :b], label[:, -b:] = IGNORE, IGNORE, IGNORE, IGNORE
        return label, None
