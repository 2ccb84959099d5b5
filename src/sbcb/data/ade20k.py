"""ADE20K (SceneParsing / ADEChallengeData2016): 150 classes, `reduce_zero_label`.

Layout under `root` (the unpacked `ADEChallengeData2016/` folder)::

    images/{training,validation}/ADE_*.jpg
    annotations/{training,validation}/ADE_*.png   # uint8: 0 = "other objects", 1..150 = classes

With `reduce_zero_label` (mmseg's convention, our default [inferred], spec §9.4) 0 becomes 255 (ignore) and every
class id moves down by one, giving 0..149. Class names follow the public `objectInfo150` list; the colours are
generated (they are only for pictures). Boundaries are semantic (no instances); K = 150 needs the per-class
boundary algorithm, which has no limit on K.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from sbcb.data.base import DatasetInfo
from sbcb.data.folder import PairedFileDataset
from sbcb.data.validation import check_label_values, read_label

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
assert len(ADE20K_CLASSES) == 150


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    # Golden-ratio hue steps with alternating brightness keep neighbouring ids apart.
    colors = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.7, 0.95 if i % 2 else 0.7)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(colors)


_SPLIT_FOLDERS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """0 -> 255, v -> v - 1 for v in 1..255 (uint8 wrap-around makes 0 - 1 = 255)."""
    return (label.astype(np.uint8) - np.uint8(1)).astype(np.uint8)


class ADE20K(PairedFileDataset):
    """ADE20K SceneParsing (20210 training / 2000 validation images).

    Args:
        root: `ADEChallengeData2016/` folder holding `images/` and `annotations/`.
        split: "train"/"training" or "val"/"validation".
        reduce_zero_label: Classes 1..150 always become 0..149. True (default, mmseg convention): 0 ("other
            objects") becomes 255, ignored everywhere. False: 0 becomes the void value 150, which is not trained
            or evaluated but forms boundaries with the classes.
        validate: Check label values and sizes on every read.
        strict: Raise `DataError` on missing/unpaired files at construction; with False list them in `problems`.
    """

    SPLITS = ("train", "val", "training", "validation")
    FOLDER_HINT = "Pass the unpacked ADEChallengeData2016/ folder as root."

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        reduce_zero_label: bool = True,
        validate: bool = True,
        strict: bool = True,
    ) -> None:
        super().__init__(root, split, validate=validate)
        self.reduce_zero_label = reduce_zero_label
        self.info = DatasetInfo(
            name="ade20k",
            class_names=ADE20K_CLASSES,
            colors=_palette(150),
            ignore_index=255,
            void_index=None if reduce_zero_label else 150,
        )
        self._check_split(split)
        folder = _SPLIT_FOLDERS[split]
        image_dir, label_dir = self._check_folders(f"images/{folder}", f"annotations/{folder}")
        if not self.problems:
            self.samples = self._pair(image_dir, label_dir)
        self._finish(strict=strict, where=image_dir, pattern="*.jpg")

    def load_targets(self, sample: dict) -> tuple[np.ndarray, None]:
        raw = read_label(sample["label"])
        if self.validate:
            check_label_values(raw, range(151), path=sample["label"], what="ADE20K ids (0 = other, 1..150)")
        label = reduce_zero_label(raw)
        if not self.reduce_zero_label:
            label[raw == 0] = 150  # "other" becomes the void value
        return label, None
