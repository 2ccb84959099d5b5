"""The dataset protocol shared by every loader.

A dataset is a `torch.utils.data.Dataset`-like object with `__len__`, an `info: DatasetInfo` attribute and
`__getitem__(i) -> dict` returning a *raw* sample (before any transform):

- ``"image"``: uint8 ``[H, W, 3]``, RGB.
- ``"label"``: uint8 ``[H, W]``. Values ``0..K-1`` are classes; ``info.ignore_index`` (255) is ignored everywhere
  and counts as *inside every class* for boundary ground truth; any other value (e.g. ``info.void_index`` = 254
  for Cityscapes void labels other than 2/3) is not evaluated and not trained by the segmentation loss, but still
  forms boundaries with the classes (spec §2.2, §2.5). The segmentation target maps such values to ignore.
- ``"instance"``: int32 ``[H, W]`` with 0 = no instance, or ``None`` when the dataset has no instances. Each
  nonzero id is one instance of the class found under it in ``"label"``.
- ``"meta"``: dict with at least ``"name"`` (a stable sample name) and, for file datasets, ``"image_path"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetInfo:
    """Class metadata of a dataset.

    Args:
        name: Dataset name, e.g. ``"cityscapes"``.
        class_names: K class names, index = class id.
        colors: K RGB colours for pictures, each ``(r, g, b)`` in 0..255.
        ignore_index: Label value ignored by every loss and metric; inside every class for boundary GT.
        thing_classes: Class ids that have instances.
        void_index: Optional label value for "not evaluated, but forms boundaries" (``None`` if unused).
    """

    name: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    thing_classes: tuple[int, ...] = ()
    void_index: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.colors) != len(self.class_names):
            raise ValueError(f"{self.name}: {len(self.class_names)} class names but {len(self.colors)} colours")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < len(self.class_names):
            raise ValueError(f"{self.name}: ignore_index {self.ignore_index} collides with a class id or is not uint8")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
