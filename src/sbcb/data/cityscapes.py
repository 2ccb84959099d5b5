"""Cityscapes (fine annotations) in the official folder layout.

Layout under `root`::

    leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
    gtFine/{split}/{city}/{name}_gtFine_labelIds.png       # uint8 labelIds 0..33
    gtFine/{split}/{city}/{name}_gtFine_instanceIds.png    # uint16: labelId*1000+k on instances, else labelId
    gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png  # only with use_train_ids_file=True

Training reads raw labelIds + instanceIds and builds the compact label map of spec §2.5 with one 256-entry lookup
table: trainIds 0..18 for the 19 classes, `VOID` = 254 for every void labelId except 2 and 3 (these still form
boundaries with the classes, as in the official OTF), and 255 for labelIds 2 (rectification border) and
3 (out of roi), which are ignored everywhere. The segmentation target maps 254 to 255.

The label table below is written from the public Cityscapes label definition (cityscapesScripts `labels.py`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from sbcb.data.base import DatasetInfo
from sbcb.data.folder import PairedFileDataset
from sbcb.data.validation import (
    DataError,
    check_label_values,
    format_names,
    pair_by_name,
    read_label,
)

IGNORE = 255
VOID = 254

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
CITYSCAPES_THING_CLASSES = tuple(range(11, 19))  # person ... bicycle (trainIds)

# labelId -> (name, trainId); trainId None = void. License plate (labelId -1) is stored as 255 in uint8 files.
LABELS: dict[int, tuple[str, int | None]] = {
    0: ("unlabeled", None), 1: ("ego vehicle", None), 2: ("rectification border", None), 3: ("out of roi", None),
    4: ("static", None), 5: ("dynamic", None), 6: ("ground", None), 7: ("road", 0), 8: ("sidewalk", 1),
    9: ("parking", None), 10: ("rail track", None), 11: ("building", 2), 12: ("wall", 3), 13: ("fence", 4),
    14: ("guard rail", None), 15: ("bridge", None), 16: ("tunnel", None), 17: ("pole", 5), 18: ("polegroup", None),
    19: ("traffic light", 6), 20: ("traffic sign", 7), 21: ("vegetation", 8), 22: ("terrain", 9), 23: ("sky", 10),
    24: ("person", 11), 25: ("rider", 12), 26: ("car", 13), 27: ("truck", 14), 28: ("bus", 15),
    29: ("caravan", None), 30: ("trailer", None), 31: ("train", 16), 32: ("motorcycle", 17), 33: ("bicycle", 18),
    255: ("license plate", None),
}  # fmt: skip
IGNORED_LABEL_IDS = (2, 3)  # ignored by OTF boundaries and everything else (official)
INSTANCE_LABEL_IDS = (24, 25, 26, 27, 28, 31, 32, 33)  # official: caravan/trailer instances do not count


def _compact_lut() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, (_, train_id) in LABELS.items():
        if train_id is not None:
            lut[label_id] = train_id
        elif label_id not in IGNORED_LABEL_IDS:
            lut[label_id] = VOID
    return lut


LABEL_ID_TO_COMPACT = _compact_lut()
"""uint8 [256]: labelId -> compact value (trainId, 254 = void that forms boundaries, 255 = ignore)."""

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    class_names=CITYSCAPES_CLASSES,
    colors=CITYSCAPES_COLORS,
    ignore_index=IGNORE,
    thing_classes=CITYSCAPES_THING_CLASSES,
    void_index=VOID,
)


def label_ids_to_compact(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes labelIds to the compact label map.

    Args:
        label_ids: uint8 [H, W] labelIds (0..33, 255 = license plate).

    Returns:
        uint8 [H, W]: trainIds 0..18, 254 for void labels that form boundaries, 255 for labelIds 2 and 3.
    """
    if label_ids.dtype == np.uint8:
        return cv2.LUT(label_ids, LABEL_ID_TO_COMPACT)  # several times faster than numpy indexing
    return LABEL_ID_TO_COMPACT[label_ids]


def instance_ids_to_instances(instance_ids: np.ndarray) -> np.ndarray:
    """Keep the instances of the 8 Cityscapes instance classes, renumbered 1..n.

    Args:
        instance_ids: [H, W] integer Cityscapes instanceIds (labelId*1000+k on instances, else the bare labelId).

    Returns:
        int32 [H, W]: 0 = no instance (stuff, crowd/"group" regions, caravan and trailer), 1..n = instances in
        increasing order of their instanceId.
    """
    if instance_ids.dtype == np.uint16:
        # Files are uint16: one bincount finds the present ids, one 65536-entry table renumbers them.
        present = np.bincount(instance_ids.ravel(), minlength=65536).astype(bool) & _IS_TRAIN_INSTANCE_ID
        renumber = np.where(present, np.cumsum(present), 0).astype(np.int32)
        return renumber[instance_ids]
    instance_ids = instance_ids.astype(np.int64, copy=False)
    keep = (instance_ids >= 1000) & np.isin(instance_ids // 1000, INSTANCE_LABEL_IDS)
    out = np.zeros(instance_ids.shape, dtype=np.int32)
    if keep.any():
        _, inverse = np.unique(instance_ids[keep], return_inverse=True)
        out[keep] = inverse.reshape(-1) + 1
    return out


_IS_TRAIN_INSTANCE_ID = np.isin(np.arange(65536) // 1000, INSTANCE_LABEL_IDS) & (np.arange(65536) >= 1000)


class Cityscapes(PairedFileDataset):
    """Cityscapes fine annotations (2975 train / 500 val / 1525 test images at 1024x2048).

    Args:
        root: Folder holding `leftImg8bit/` and `gtFine/`.
        split: "train", "val" or "test".
        instances: Also read `instanceIds` for instance-sensitive boundaries (official OTF default).
        use_train_ids_file: Read `labelTrainIds` instead of converting labelIds (for evaluation). The label map
            then has no void value: every void pixel is 255.
        validate: Check label values and sizes on every read (a few ms per frame).
        strict: Raise `DataError` at construction when files are missing or unpaired; with False, keep the
            complete samples and list the problems in `self.problems` (used by `sbcb check-data`).

    Samples follow `sbcb.data.base`: image uint8 [H, W, 3] RGB, label uint8 [H, W] compact map, instance int32
    [H, W] or None, meta with name and file paths.
    """

    SPLITS = ("train", "val", "test")
    FOLDER_HINT = "Unpack leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into the same root."

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        instances: bool = True,
        use_train_ids_file: bool = False,
        validate: bool = True,
        strict: bool = True,
    ) -> None:
        super().__init__(root, split, validate=validate)
        self.instances = instances
        self.use_train_ids_file = use_train_ids_file
        self.info = CITYSCAPES_INFO if not use_train_ids_file else replace(CITYSCAPES_INFO, void_index=None)
        self._check_split(split)
        image_dir, label_dir = self._check_folders(f"leftImg8bit/{split}", f"gtFine/{split}")
        if not self.problems:
            label_suffix = "_gtFine_labelTrainIds.png" if use_train_ids_file else "_gtFine_labelIds.png"
            images = _by_name(image_dir, "_leftImg8bit.png")
            labels = _by_name(label_dir, label_suffix)
            names, problems = pair_by_name(
                images, labels, dataset="cityscapes", image_dir=image_dir, label_dir=f"{label_dir} (*{label_suffix})"
            )
            self.problems += problems
            self.samples = [{"name": n, "image": images[n], "label": labels[n]} for n in names]
            if instances:
                inst = _by_name(label_dir, "_gtFine_instanceIds.png")
                missing = [str(s["label"]) for s in self.samples if s["name"] not in inst]
                if missing:
                    self.problems.append(
                        f"cityscapes: {len(missing)} label(s) have no *_gtFine_instanceIds.png next to them: "
                        f"{format_names(missing)}. "
                        "Add the instance files or pass instances=False (non-instance-sensitive boundaries)."
                    )
                self.samples = [{**s, "instance": inst[s["name"]]} for s in self.samples if s["name"] in inst]
        self._finish(strict=strict, where=image_dir, pattern="{city}/*_leftImg8bit.png")

    def load_targets(self, sample: dict) -> tuple[np.ndarray, np.ndarray | None]:
        raw = read_label(sample["label"])
        if self.use_train_ids_file:
            if self.validate:
                check_label_values(raw, [*range(19), IGNORE], path=sample["label"], what="Cityscapes trainIds")
            label = raw.astype(np.uint8, copy=False)
        else:
            if self.validate:
                check_label_values(raw, LABELS, path=sample["label"], what="Cityscapes labelIds")
            label = label_ids_to_compact(raw)
        instance = None
        if self.instances:
            ids = read_label(sample["instance"])
            if ids.dtype == np.uint8:  # ids are labelId*1000+k: an 8-bit copy has lost every instance
                raise DataError(
                    f"{sample['instance']} is an 8-bit PNG; Cityscapes instanceIds are 16-bit (labelId*1000+k), so "
                    "none of its instances can be decoded. Re-extract gtFine, or pass instances=False."
                )
            instance = instance_ids_to_instances(ids)
        return label, instance


def _by_name(folder: Path, suffix: str) -> dict[str, Path]:
    """`{city}/{name}{suffix}` files under `folder`, keyed by name."""
    return {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*/*{suffix}"))}
