"""RGB-PNG boundary files: up to 24 classes bit-packed into the three bytes of a pixel (SBD convention, spec §2.8).

Class t is bit t of the B byte for t < 8, bit t-8 of G for 8..15 and bit t-16 of R for 16..23. numpy and OpenCV only
(no torch), so that the SBD evaluator's worker processes stay light; `sbcb.boundaries` and `sbcb.metrics.sbd` both
use this one codec.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

MAX_CLASSES = 24


def _describe(x: object) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} {dtype} with shape {tuple(shape)}" if shape is not None else type(x).__name__


def encode_rgb_png(boundaries: np.ndarray) -> np.ndarray:
    """Encode up to 24 classes as a 24-bit RGB image.

    Args:
        boundaries: bool (or {0, 1}) [K, H, W], K <= 24.

    Returns:
        uint8 [H, W, 3] in **RGB** channel order. For `cv2.imwrite` reverse it (`rgb[..., ::-1]`) or use
        `write_boundary_png`.
    """
    if not isinstance(boundaries, np.ndarray) or boundaries.ndim != 3:
        raise ValueError(f"boundaries must be a numpy array [K, H, W], got {_describe(boundaries)}")
    if boundaries.shape[0] > MAX_CLASSES:
        raise ValueError(f"the RGB-PNG encoding holds at most 24 classes, got {boundaries.shape[0]}")
    bits = boundaries.astype(bool, copy=False).view(np.uint8)
    rgb = np.zeros((*boundaries.shape[1:], 3), np.uint8)
    for t in range(boundaries.shape[0]):
        rgb[..., 2 - t // 8] |= bits[t] << np.uint8(t % 8)  # byte 0 (classes 0..7) is B, the last RGB channel
    return rgb


def decode_rgb_png(rgb: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse of `encode_rgb_png`.

    Args:
        rgb: uint8 [H, W, 3] in RGB order (an image read with `cv2.imread` is BGR: pass `bgr[..., ::-1]`).
        num_classes: K <= 24.

    Returns:
        bool [K, H, W].
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be a uint8 array [H, W, 3], got {_describe(rgb)}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"the RGB-PNG encoding holds 1..24 classes, got num_classes={num_classes}")
    return np.stack([(rgb[..., 2 - t // 8] >> (t % 8)) & 1 for t in range(num_classes)]).astype(bool)


def write_boundary_png(path: str | os.PathLike, boundaries: np.ndarray) -> None:
    """Write bool [K, H, W] (K <= 24) as an RGB-PNG boundary file (handles OpenCV's BGR order)."""
    if not cv2.imwrite(str(path), encode_rgb_png(boundaries)[..., ::-1]):
        raise OSError(f"could not write {path} (does the folder exist, and does the name end in .png?)")


def read_boundary_png(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """Read an RGB-PNG boundary file written by `write_boundary_png` (or pyEdgeEval/SEAL tools): bool [K, H, W]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"could not read boundary PNG {path}")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit 3-channel PNG, got shape {bgr.shape} dtype {bgr.dtype}")
    return decode_rgb_png(bgr[..., ::-1], num_classes)
