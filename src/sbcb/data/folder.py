"""Datasets stored as image files paired with label files, and the plain folder format for a user's own data.

`PairedFileDataset` holds what every file dataset shares (reading, size and value checks, the `sbcb.data.base`
sample dict, problem collection). `FolderDataset` is the user format::

    root/dataset.yaml               # class names, colours, ignore index, thing classes (see below)
    root/images/{split}/NAME.png|.jpg|.jpeg
    root/labels/{split}/NAME.png    # 8-bit single-channel class ids; ignore_index where unlabelled
                                    # (the folder may also be called masks/ or annotations/)
    root/instances/{split}/NAME.png # optional: 8/16-bit instance ids, 0 = no instance

Without a `dataset.yaml`, ``num_classes=K`` (``--num-classes K``) is enough: classes are named ``class_0`` ...,
ignore index 255. The YAML remains the way to name classes and colour them.

`dataset.yaml`::

    name: my-streets            # optional, default: folder name
    class_names: [road, car]    # required, index = class id
    colors: [[128, 64, 128], [0, 0, 142]]  # optional, RGB 0..255
    ignore_index: 255           # optional, default 255
    void_index: null            # optional: a label value that is not trained but still forms boundaries
    thing_classes: [1]          # optional: class ids that have instances
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sbcb.data.base import DatasetInfo
from sbcb.data.validation import (
    DataError,
    check_folders,
    check_label_values,
    check_not_empty,
    check_same_size,
    files_by_stem,
    format_names,
    pair_by_name,
    raise_problems,
    read_image,
    read_label,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Names accepted for the label folder, in this order of preference.
LABEL_FOLDERS = ("labels", "masks", "annotations")


class PairedFileDataset:
    """Base of the file datasets: a list of `{name, image, label[, instance]}` paths plus `info`.

    Subclasses fill `self.samples` and `self.problems` in `__init__`, call `self._finish(...)`, and implement
    `load_targets` to turn the files of one sample into the compact label map and the instance map.
    """

    SPLITS: tuple[str, ...] = ()
    # The sentence that ends a missing-folder message, e.g. which official archives unpack into the root.
    FOLDER_HINT = ""
    info: DatasetInfo

    def __init__(self, root: str | Path, split: str, *, validate: bool = True) -> None:
        self.root = Path(root)
        self.split = split
        self.validate = validate
        self.samples: list[dict] = []
        self.problems: list[str] = []

    def _check_split(self, split: str) -> None:
        if self.SPLITS and split not in self.SPLITS:
            raise DataError(f"{self.info.name}: unknown split {split!r}; expected one of {', '.join(self.SPLITS)}.")

    def _check_folders(self, image_dir: str, label_dir: str) -> tuple[Path, Path]:
        """The image and label folders, given relative to the root, as paths; missing ones go to `self.problems`."""
        self.problems += check_folders(self.root, [image_dir, label_dir], dataset=self.info.name, hint=self.FOLDER_HINT)
        return self.root / image_dir, self.root / label_dir

    def _pair(
        self,
        image_dir: Path,
        label_dir: Path,
        *,
        image_suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
        label_suffixes: tuple[str, ...] = (".png",),
        label_strip: str = "",
    ) -> list[dict]:
        """Samples from two flat folders matched by file stem; mismatches go to `self.problems`."""
        images = files_by_stem(image_dir, image_suffixes)
        labels = files_by_stem(label_dir, label_suffixes, strip=label_strip)
        names, problems = pair_by_name(images, labels, dataset=self.info.name, image_dir=image_dir, label_dir=label_dir)
        self.problems += problems
        return [{"name": n, "image": images[n], "label": labels[n]} for n in names]

    def _finish(self, *, strict: bool, where: Path, pattern: str) -> None:
        if not self.problems:  # an empty split is only news when nothing else explains it
            self.problems += check_not_empty(len(self.samples), dataset=self.info.name, where=where, pattern=pattern)
        if strict:
            raise_problems(self.problems)

    def load_targets(self, sample: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Read one sample's label files.

        Returns:
            `(label, instance)`: uint8 [H, W] compact label map, int32 [H, W] instance ids or None.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = read_image(sample["image"])
        label, instance = self.load_targets(sample)
        if self.validate:
            check_same_size(image, label, image_path=sample["image"], label_path=sample["label"])
            if instance is not None:
                check_same_size(image, instance, image_path=sample["image"], label_path=sample["instance"])
        meta = {"name": sample["name"], "image_path": str(sample["image"]), "label_path": str(sample["label"])}
        return {"image": image, "label": label, "instance": instance, "meta": meta}


def load_dataset_yaml(path: str | Path) -> DatasetInfo:
    """Read a `dataset.yaml` (format in the module docstring) into a `DatasetInfo`.

    Raises:
        DataError: Missing file, bad YAML, or missing/inconsistent fields (the message names the field).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"folder: {path} not found. Write a dataset.yaml with at least `class_names: [...]` (see docs/datasets.md)."
        )
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(spec, dict) or not spec.get("class_names"):
        raise DataError(f"{path}: needs a non-empty `class_names: [name0, name1, ...]` list (index = class id).")
    names = tuple(str(n) for n in spec["class_names"])
    colors = spec.get("colors") or [_default_color(i) for i in range(len(names))]
    try:
        colors = tuple(tuple(int(c) for c in rgb) for rgb in colors)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: `colors` must be a list of [r, g, b] triples of integers 0..255.") from e
    if len(colors) != len(names) or any(len(c) != 3 for c in colors):
        raise DataError(f"{path}: {len(names)} class_names but {len(colors)} colors; give one [r, g, b] per class.")
    ignore = int(spec.get("ignore_index", 255))
    void = spec.get("void_index")
    things = tuple(int(t) for t in spec.get("thing_classes") or ())
    if not len(names) <= ignore <= 255:
        raise DataError(f"{path}: ignore_index {ignore} must be in {len(names)}..255 (above every class id).")
    if void is not None and (not len(names) <= int(void) <= 255 or int(void) == ignore):
        raise DataError(f"{path}: void_index {void} must be in {len(names)}..255 and differ from ignore_index.")
    if any(not 0 <= t < len(names) for t in things):
        raise DataError(f"{path}: thing_classes {list(things)} must be class ids in 0..{len(names) - 1}.")
    return DatasetInfo(
        name=str(spec.get("name") or path.parent.name),
        class_names=names,
        colors=colors,
        ignore_index=ignore,
        thing_classes=things,
        void_index=None if void is None else int(void),
    )


def _default_color(i: int) -> tuple[int, int, int]:
    # Spread hues with the golden ratio so neighbouring ids get distinct colours.
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


class FolderDataset(PairedFileDataset):
    """A user's own data: `images/`, `labels/`, optional `instances/` and a `dataset.yaml` (module docstring).

    Args:
        root: Folder holding `dataset.yaml`, `images/{split}` and `labels/{split}`.
        split: Sub-folder name, e.g. "train" or "val".
        instances: Read `instances/{split}` (None: when that folder exists; True: require it; False: never).
        validate: Check label values and sizes on every read.
        strict: Raise `DataError` at construction on missing/unpaired files; with False list them in
            `self.problems` instead (used by `sbcb check-data`).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        instances: bool | None = None,
        validate: bool = True,
        strict: bool = True,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(root, split, validate=validate)
        labels = next((n for n in LABEL_FOLDERS if (self.root / n).is_dir()), "labels")
        if not self.root.is_dir():
            raise_problems(check_folders(self.root, [f"images/{split}", f"{labels}/{split}"], dataset="folder"))
        if num_classes is not None and num_classes < 1:
            raise DataError(f"folder: num_classes must be >= 1, got {num_classes}")
        if (self.root / "dataset.yaml").is_file() or num_classes is None:
            self.info = load_dataset_yaml(self.root / "dataset.yaml")
            if num_classes is not None and num_classes != self.info.num_classes:
                raise DataError(
                    f"folder: --num-classes {num_classes} but {self.root / 'dataset.yaml'} names "
                    f"{self.info.num_classes} classes; drop one of them"
                )
        else:
            self.info = DatasetInfo(
                name=self.root.name,
                class_names=tuple(f"class_{i}" for i in range(num_classes)),
                colors=tuple(_default_color(i) for i in range(num_classes)),
                ignore_index=255,
            )
        images_root = self.root / "images"
        self.SPLITS = tuple(sorted(p.name for p in images_root.iterdir() if p.is_dir())) if images_root.is_dir() else ()
        self.problems += check_folders(self.root, [f"images/{split}", f"{labels}/{split}"], dataset="folder")
        instance_dir = self.root / "instances" / split
        self.instances = instance_dir.is_dir() if instances is None else instances
        if self.instances and not instance_dir.is_dir():
            self.problems.append(f"folder: instances=True but {instance_dir} does not exist.")
        if not self.problems:
            self.samples = self._pair(self.root / "images" / split, self.root / labels / split)
            if self.instances:
                inst = files_by_stem(instance_dir, (".png",))
                missing = [str(s["label"]) for s in self.samples if s["name"] not in inst]
                if missing:
                    self.problems.append(
                        f"folder: {len(missing)} sample(s) have no instance PNG in {instance_dir}: "
                        f"{format_names(missing)}. Add them, or pass instances=False."
                    )
                self.samples = [{**s, "instance": inst[s["name"]]} for s in self.samples if s["name"] in inst]
        self._finish(strict=strict, where=self.root / "images" / split, pattern="*.png|*.jpg|*.jpeg")

    def load_targets(self, sample: dict) -> tuple[np.ndarray, np.ndarray | None]:
        label = read_label(sample["label"])
        if label.dtype != np.uint8:
            raise DataError(f"{sample['label']} is {label.dtype}; labels must be 8-bit PNGs of class ids.")
        if self.validate:
            info = self.info
            allowed = [*range(info.num_classes), info.ignore_index]
            allowed += [] if info.void_index is None else [info.void_index]
            check_label_values(
                label,
                allowed,
                path=sample["label"],
                what=f"class ids of {info.name} or its ignore/void values",
                suggestion=f"Remap them to a class or to ignore_index {info.ignore_index}, or add classes to "
                f"class_names in {self.root / 'dataset.yaml'}.",
            )
        instance = read_label(sample["instance"]).astype(np.int32) if self.instances else None
        return label, instance
