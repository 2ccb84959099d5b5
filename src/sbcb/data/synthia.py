"""Synthia RAND (SYNTHIA-RAND-CITYSCAPES), mapped to the 19 Cityscapes classes, with instances.

Layout under `root` (as unpacked from the official archive)::

    RGB/NAME.png          # 1280x760 colour images
    GT/LABELS/NAME.png    # 16-bit, 3-channel: class id in the first (R) channel, instance id in the second (G)
    {split}.txt           # optional: one sample name (or file name) per line, for your own split

Format notes and uncertainty (spec §9.3):
- The official README describes the label PNGs as "two channels": class in the first, instance in the second.
  We read the first channel as R in RGB order (OpenCV returns BGR, so we reverse it), as the commonly used
  domain-adaptation loaders do (`imageio` ... `[:, :, 0]`); this could not be checked on real files here.
- Synthia class ids: 0 void, 1 sky, 2 building, 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole, 8 car,
  9 traffic sign, 10 pedestrian, 11 bicycle, 12 motorcycle, 13 parking-slot, 14 road-work, 15 traffic light,
  16 terrain, 17 rider, 18 truck, 19 bus, 20 train, 21 wall, 22 lane-marking.
- Void, parking-slot and road-work become the void value 254 (not trained, but they form boundaries: Synthia's
  masks are complete and `blette` uses no ignore values for Synthia). Lane markings become road by default, as
  Cityscapes annotates them [inferred]; `lanemarking_as_road=False` makes them void.
- The paper's 10.4K / 1.5K / 1.5K split is not published: use `split="all"` or write `{split}.txt` files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from sbcb.data.cityscapes import CITYSCAPES_INFO, CITYSCAPES_THING_CLASSES, IGNORE, VOID
from sbcb.data.folder import PairedFileDataset
from sbcb.data.validation import DataError, check_label_values, format_names, read_label

# Synthia class id -> Cityscapes trainId; every other id (0, 13, 14, and 22 unless lanemarking_as_road) is void.
SYNTHIA_TO_TRAIN_ID = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15,
    20: 16, 12: 17, 11: 18,
}  # fmt: skip
LANE_MARKING = 22
NUM_SYNTHIA_IDS = 23

SYNTHIA_INFO = replace(CITYSCAPES_INFO, name="synthia")  # the Cityscapes classes, ids and colours


def synthia_lut(*, lanemarking_as_road: bool = True) -> np.ndarray:
    """uint8 [65536]: Synthia class id -> compact value (trainId, or 254 void; ids above 22 -> 255)."""
    lut = np.full(65536, IGNORE, dtype=np.uint8)
    lut[:NUM_SYNTHIA_IDS] = VOID
    for synthia_id, train_id in SYNTHIA_TO_TRAIN_ID.items():
        lut[synthia_id] = train_id
    if lanemarking_as_road:
        lut[LANE_MARKING] = SYNTHIA_TO_TRAIN_ID[3]
    return lut


def synthia_instances(label: np.ndarray, instance_ids: np.ndarray) -> np.ndarray:
    """Instances of the Cityscapes thing classes, renumbered 1..n.

    Args:
        label: uint8 [H, W] compact label map (trainIds).
        instance_ids: [H, W] Synthia instance channel, 0 = none.

    Returns:
        int32 [H, W]: one id per distinct (class, instance id) pair on a thing class, 0 elsewhere.
    """
    keep = (instance_ids > 0) & np.isin(label, CITYSCAPES_THING_CLASSES)
    out = np.zeros(label.shape, dtype=np.int32)
    if keep.any():
        key = label[keep].astype(np.int64) << 32 | instance_ids[keep].astype(np.int64)
        _, inverse = np.unique(key, return_inverse=True)
        out[keep] = inverse.reshape(-1) + 1
    return out


class Synthia(PairedFileDataset):
    """Synthia RAND with Cityscapes classes (paper: 1280x760, 640x640 crops, instance-sensitive boundaries).

    Args:
        root: Folder holding `RGB/` and `GT/LABELS/`.
        split: "all" (every labelled image) or the name of a `{split}.txt` list in `root`.
        instances: Use the instance channel for instance-sensitive boundaries.
        lanemarking_as_road: Map lane markings to road (default) instead of void.
        validate: Check label values and sizes on every read.
        strict: Raise `DataError` on missing/unpaired files at construction; with False list them in `problems`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        *,
        instances: bool = True,
        lanemarking_as_road: bool = True,
        validate: bool = True,
        strict: bool = True,
    ) -> None:
        super().__init__(root, split, validate=validate)
        self.info = SYNTHIA_INFO
        self.instances = instances
        self.lut = synthia_lut(lanemarking_as_road=lanemarking_as_road)
        self.SPLITS = ("all", *sorted(p.stem for p in self.root.glob("*.txt")))
        image_dir, label_dir = self._check_folders("RGB", "GT/LABELS")
        if not self.problems:
            self._check_split(split)
            self.samples = self._pair(image_dir, label_dir)
            if split != "all":
                lines = (self.root / f"{split}.txt").read_text().splitlines()
                wanted = [Path(line.split()[0]).stem for line in lines if line.strip()]
                have = {s["name"] for s in self.samples}
                unknown = [w for w in wanted if w not in have]
                if unknown:
                    self.problems.append(
                        f"synthia: {len(unknown)} name(s) in {self.root / f'{split}.txt'} have no image+label pair: "
                        f"{format_names(unknown)}."
                    )
                by_name = {s["name"]: s for s in self.samples}
                self.samples = [by_name[w] for w in wanted if w in by_name]
            for s in self.samples:
                s["instance"] = s["label"]  # same file, second channel
        self._finish(strict=strict, where=image_dir, pattern="*.png")

    def load_targets(self, sample: dict) -> tuple[np.ndarray, np.ndarray | None]:
        raw = read_label(sample["label"], channels=3)
        classes = raw[..., 0]
        if self.validate:
            check_label_values(classes, range(NUM_SYNTHIA_IDS), path=sample["label"], what="Synthia class ids")
        if classes.dtype not in (np.uint8, np.uint16):
            raise DataError(f"{sample['label']}: expected an 8/16-bit PNG, got {classes.dtype}.")
        label = self.lut[classes]
        instance = synthia_instances(label, raw[..., 1]) if self.instances else None
        return label, instance
