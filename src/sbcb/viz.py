"""Pictures of samples and predictions: label colours, overlays, instance outlines, PNG files.

Only numpy and OpenCV; matplotlib is never imported here, so rendering works in a bare install and in
DataLoader workers. All images are RGB uint8 ``[H, W, 3]``; `save_png` converts to OpenCV's BGR on write.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from sbcb.data.base import DatasetInfo


def _check_rgb(image: np.ndarray, what: str = "image") -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be uint8 [H, W, 3] RGB, got {image.dtype} {tuple(image.shape)}")


def colorize(
    label: np.ndarray,
    colors: Sequence[Sequence[int]],
    *,
    ignore_index: int = 255,
    ignore_color: Sequence[int] = (0, 0, 0),
    unknown_color: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """Paint a label map with one colour per class.

    Args:
        label: Class ids, integer [H, W], values 0..255.
        colors: K RGB colours; class k gets ``colors[k]``.
        ignore_index: Label value painted with `ignore_color`.
        ignore_color: RGB colour of ignored pixels.
        unknown_color: RGB colour of any other value >= K (e.g. a void label), so it stands out.

    Returns:
        uint8 [H, W, 3] RGB.
    """
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label must be an integer [H, W] map, got {label.dtype} {tuple(label.shape)}")
    if len(colors) > 255:
        raise ValueError(f"colorize supports at most 255 classes, got {len(colors)}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values must be in 0..255, got {int(label.min())}..{int(label.max())}")
    lut = np.empty((256, 3), np.uint8)
    lut[:] = unknown_color
    lut[: len(colors)] = np.asarray(colors, np.uint8).reshape(-1, 3)
    lut[ignore_index] = ignore_color
    return lut[label.astype(np.uint8)]


def overlay(image: np.ndarray, colors_rgb: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour picture over an image: ``(1 - alpha) * image + alpha * colors_rgb``, rounded.

    Args:
        image: uint8 [H, W, 3] RGB.
        colors_rgb: uint8 [H, W, 3] RGB, e.g. from `colorize`.
        alpha: Weight of `colors_rgb`, in [0, 1].

    Returns:
        uint8 [H, W, 3] RGB.
    """
    _check_rgb(image)
    _check_rgb(colors_rgb, "colors_rgb")
    if image.shape != colors_rgb.shape:
        raise ValueError(f"image {image.shape} and colors_rgb {colors_rgb.shape} must have the same shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * colors_rgb.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def instance_outlines(instance: np.ndarray) -> np.ndarray:
    """Pixels on the outline of an instance.

    A pixel is on an outline when it belongs to an instance (id != 0) and one of its 4-neighbours inside the image
    carries a different id (another instance or none), so touching instances get separate outlines.

    Args:
        instance: Instance ids, integer [H, W], 0 = none.

    Returns:
        bool [H, W].
    """
    inst = np.asarray(instance)
    if inst.ndim != 2:
        raise ValueError(f"instance must be an [H, W] map, got shape {tuple(inst.shape)}")
    edge = np.zeros(inst.shape, bool)
    vertical = inst[1:, :] != inst[:-1, :]
    horizontal = inst[:, 1:] != inst[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & (inst != 0)


def draw_outlines(image: np.ndarray, mask: np.ndarray, *, color: Sequence[int] = (255, 255, 255)) -> np.ndarray:
    """Return a copy of `image` with the pixels of `mask` (bool [H, W]) set to `color` (RGB)."""
    _check_rgb(image)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} must match the image size {image.shape[:2]}")
    out = image.copy()
    out[mask] = color
    return out


def side_by_side(
    images: Sequence[np.ndarray], *, gap: int = 4, gap_color: Sequence[int] = (255, 255, 255)
) -> np.ndarray:
    """Concatenate equally tall RGB images left to right with `gap` pixels of `gap_color` between them.

    Returns:
        uint8 [H, sum(W_i) + gap * (n - 1), 3] RGB.
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    for i, im in enumerate(images):
        _check_rgb(im, f"images[{i}]")
    height = images[0].shape[0]
    if any(im.shape[0] != height for im in images):
        raise ValueError(f"all images must have the same height, got {[im.shape[0] for im in images]}")
    spacer = np.empty((height, gap, 3), np.uint8)
    spacer[:] = gap_color
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(spacer)
        parts.append(im)
    return np.concatenate(parts, axis=1)


def render_sample(sample: Mapping, info: DatasetInfo, *, alpha: float = 0.5, gap: int = 4) -> np.ndarray:
    """Picture of one raw sample: image | label colours | label overlay with instance outlines.

    Args:
        sample: Dataset-protocol dict with ``"image"`` uint8 [H, W, 3], ``"label"`` uint8 [H, W] and optionally
            ``"instance"`` int [H, W] (or None).
        info: Class colours and ignore index.
        alpha: Weight of the label colours in the third panel.
        gap: White pixels between panels.

    Returns:
        uint8 [H, 3 W + 2 gap, 3] RGB.
    """
    image, label = sample["image"], sample["label"]
    colors = colorize(label, info.colors, ignore_index=info.ignore_index)
    third = overlay(image, colors, alpha=alpha)
    instance = sample.get("instance")
    if instance is not None:
        third = draw_outlines(third, instance_outlines(instance))
    return side_by_side([image, colors, third], gap=gap)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 [H, W, 3] (or single-channel uint8/uint16 [H, W]) array as a lossless PNG.

    Creates missing parent folders. Raises `OSError` when OpenCV cannot write the file.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: save_png writes PNG files; use a .png suffix")
    if image.ndim == 3:
        _check_rgb(image)
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image must be uint8 [H, W, 3] or uint8/uint16 [H, W], got {image.dtype} {image.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG written by `save_png`: RGB uint8 [H, W, 3], or the single-channel array unchanged."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise OSError(f"could not read {path}")
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    return array
