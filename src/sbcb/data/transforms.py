"""Joint image/label/instance augmentation and the training-sample step (spec §2.1).

Every joint transform is a callable ``t(image, label, instance=None) -> (image, label, instance)``:

- ``image``: uint8 ``[H, W, 3]`` RGB until `Normalize`, float32 after it;
- ``label``: integer ``[H, W]`` (uint8 in the datasets); 0..K-1 classes, ``ignore_index`` ignored, other values are
  non-evaluated regions that still form boundaries (`sbcb.data.base`);
- ``instance``: int32 ``[H, W]`` with 0 = none, or ``None``.

Label maps are always resized with nearest neighbour. `ToTrainingSample` is the last step: it computes the boundary
ground truth on the *final* crop, so that the band width is 2r pixels of the network input whatever the scale
(paper Fig. 9), and returns a dict the default torch collate can batch.

Randomness comes from ``rng`` (a `numpy.random.Generator`) when given, else from numpy's global generator, which
PyTorch seeds differently in every DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from sbcb.boundaries import mask_to_packed_boundaries
from sbcb.segmentor import relabel_out_of_range

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "Rescale",
    "RandomScale",
    "RandomCrop",
    "RandomHorizontalFlip",
    "PhotometricDistortion",
    "Normalize",
    "Pad",
    "ToTrainingSample",
    "build_train_transform",
    "build_eval_transform",
]

# ImageNet statistics on the 0..255 pixel scale, RGB order (mmseg / torchvision convention)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

Sample = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def _check(image: np.ndarray, label: np.ndarray, instance: np.ndarray | None) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a numpy array [H, W, 3] (RGB), got {getattr(image, 'shape', type(image))}")
    if not isinstance(label, np.ndarray) or label.shape != image.shape[:2]:
        raise ValueError(
            f"label must be a numpy array [H, W] = {image.shape[:2]}, got {getattr(label, 'shape', label)}"
        )
    if instance is not None and (not isinstance(instance, np.ndarray) or instance.shape != label.shape):
        raise ValueError(f"instance must be None or a numpy array [H, W] = {label.shape}")


class _Random:
    def __init__(self, rng: np.random.Generator | None) -> None:
        self.rng = rng

    def _uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high) if self.rng is not None else np.random.uniform(low, high))

    def _randint(self, low: int, high: int) -> int:  # [low, high)
        return int(self.rng.integers(low, high) if self.rng is not None else np.random.randint(low, high))


class Compose:
    """Apply joint transforms in order; the last one may return a dict (`ToTrainingSample`).

    Args:
        transforms: Callables ``t(image, label, instance) -> (image, label, instance)``.
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None):
        out = (image, label, instance)
        for t in self.transforms:
            out = t(*out)
        return out

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def _resize_nearest(x: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    if x.dtype in (np.uint8, np.uint16, np.int16, np.int32):
        return cv2.resize(x, size_wh, interpolation=cv2.INTER_NEAREST)
    # cv2 has no int64/uint32 resize: resize the row/column indices instead (same nearest rule, any dtype)
    rows = cv2.resize(np.arange(x.shape[0], dtype=np.int32)[:, None], (1, size_wh[1]), interpolation=cv2.INTER_NEAREST)
    cols = cv2.resize(np.arange(x.shape[1], dtype=np.int32)[None], (size_wh[0], 1), interpolation=cv2.INTER_NEAREST)
    return x[rows[:, 0][:, None], cols[0][None, :]]


def _scale_sample(
    image: np.ndarray, label: np.ndarray, instance: np.ndarray | None, factor: float, interpolation: int
) -> Sample:
    """Resize a sample by `factor` (image with `interpolation`, label/instance nearest); sizes round, at least 1."""
    h, w = label.shape
    size_wh = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    image = cv2.resize(image, size_wh, interpolation=interpolation)
    label = _resize_nearest(label, size_wh)
    instance = None if instance is None else _resize_nearest(instance, size_wh)
    return image, label, instance


class Rescale:
    """Resize by a fixed factor (area-averaged image, nearest label/instance): e.g. 0.5 = half resolution.

    Applied before everything else, it sets the scale at which a dataset is trained and evaluated, so boundary
    radii and metric radii are in pixels of the rescaled image.

    Args:
        factor: Size multiplier (> 0); output size is ``round(H * factor), round(W * factor)``.
    """

    def __init__(self, factor: float) -> None:
        if not factor > 0:
            raise ValueError(f"rescale factor must be > 0, got {factor}")
        self.factor = float(factor)

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        # area averaging when shrinking (no aliasing of thin structures), bilinear when enlarging
        interpolation = cv2.INTER_AREA if self.factor < 1 else cv2.INTER_LINEAR
        return _scale_sample(image, label, instance, self.factor, interpolation)

    def __repr__(self) -> str:
        return f"Rescale({self.factor})"


class RandomScale(_Random):
    """Rescale by a factor drawn uniformly from [min_scale, max_scale] (bilinear image, nearest label/instance).

    Args:
        min_scale: Smallest factor (> 0).
        max_scale: Largest factor.
        rng: Optional generator for reproducible draws.
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0, *, rng: np.random.Generator | None = None):
        super().__init__(rng)
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        s = self._uniform(self.min_scale, self.max_scale)
        return _scale_sample(image, label, instance, s, cv2.INTER_LINEAR)

    def __repr__(self) -> str:
        return f"RandomScale({self.min_scale}, {self.max_scale})"


class RandomCrop(_Random):
    """Random crop of at most `size` (smaller images keep their size; `Pad` fills them up).

    With ``cat_max_ratio < 1`` (mmseg), up to 10 crops are checked until no single label covers
    ``cat_max_ratio`` or more of the counted pixels; otherwise one more draw is kept unchecked. Counted pixels exclude
    `ignore_index` and, when `num_classes` is given, every value >= num_classes (trainId mode, spec §11 #22).

    Args:
        size: Crop (height, width), or an int for a square.
        cat_max_ratio: Largest allowed share of one label; 1.0 disables the check.
        ignore_index: Label value not counted.
        num_classes: Optional K; values >= K are not counted either.
        rng: Optional generator.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        *,
        num_classes: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        self.size = _pair(size)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.num_classes = num_classes

    def _offsets(self, h: int, w: int) -> tuple[int, int]:
        return self._randint(0, max(h - self.size[0], 0) + 1), self._randint(0, max(w - self.size[1], 0) + 1)

    def _balanced(self, crop: np.ndarray) -> bool:
        if crop.dtype == np.uint8:  # the common case: one O(N) histogram
            counts = np.bincount(crop.ravel(), minlength=256)
            if 0 <= self.ignore_index <= 255:
                counts[self.ignore_index] = 0
            if self.num_classes is not None:
                counts[self.num_classes :] = 0
        else:
            keep = crop != self.ignore_index
            if self.num_classes is not None:
                keep &= (crop >= 0) & (crop < self.num_classes)
            counts = np.unique(crop[keep], return_counts=True)[1]
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        h, w = label.shape
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        y, x = self._offsets(h, w)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):  # as mmseg: check up to 10 crops, keep the 11th draw if none passed
                if self._balanced(label[y : y + ch, x : x + cw]):
                    break
                y, x = self._offsets(h, w)
        window = (slice(y, y + ch), slice(x, x + cw))
        return image[window], label[window], None if instance is None else instance[window]

    def __repr__(self) -> str:
        return f"RandomCrop({self.size}, cat_max_ratio={self.cat_max_ratio})"


class RandomHorizontalFlip(_Random):
    """Mirror left-right with probability `p`."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__(rng)
        self.p = p

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        if self._uniform(0.0, 1.0) < self.p:
            image, label = image[:, ::-1], label[:, ::-1]
            instance = None if instance is None else instance[:, ::-1]
        return image, label, instance

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PhotometricDistortion(_Random):
    """mmseg-style colour jitter on the uint8 RGB image; label and instance pass through.

    In order, each with probability 1/2: brightness (add U(-delta, delta)), contrast (multiply by U(lo, hi)) either
    here or last, saturation (multiply S in HSV), hue (shift H by U(-hue_delta, hue_delta) on OpenCV's 0..179
    8-bit hue scale), then contrast if not done first. Values are clipped to 0..255.

    Args:
        brightness_delta: Max brightness shift (pixel units).
        contrast_range: Contrast factor range.
        saturation_range: Saturation factor range.
        hue_delta: Max hue shift (OpenCV 8-bit hue units, 180 = full circle).
        rng: Optional generator.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def _coin(self) -> bool:
        return self._randint(0, 2) == 1

    @staticmethod
    def _lut(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        # every step maps each uint8 value independently (then clips and truncates, as mmseg's convert): a table
        table = np.clip(fn(np.arange(256, dtype=np.float32)), 0, 255).astype(np.uint8)
        return cv2.LUT(image, table)

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        if image.dtype != np.uint8:
            raise ValueError("PhotometricDistortion expects the uint8 RGB image: put it before Normalize")
        img = np.ascontiguousarray(image)
        if self._coin():
            delta = self._uniform(-self.brightness_delta, self.brightness_delta)
            img = self._lut(img, lambda v: v + delta)
        contrast_first = self._coin()
        if contrast_first and self._coin():
            alpha = self._uniform(*self.contrast_range)
            img = self._lut(img, lambda v: v * alpha)
        do_saturation, do_hue = self._coin(), self._coin()
        if do_saturation or do_hue:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            h, s, v = cv2.split(hsv)
            if do_saturation:
                alpha = self._uniform(*self.saturation_range)
                s = self._lut(s, lambda x: x * alpha)
            if do_hue:
                shift = self._randint(-self.hue_delta, self.hue_delta + 1)
                h = self._lut(h, lambda x: (x + shift) % 180)
            img = cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2RGB)
        if not contrast_first and self._coin():
            alpha = self._uniform(*self.contrast_range)
            img = self._lut(img, lambda v: v * alpha)
        return img, label, instance

    def __repr__(self) -> str:
        return "PhotometricDistortion()"


class Normalize:
    """(image - mean) / std per RGB channel, on the 0..255 pixel scale; output float32 [H, W, 3].

    Args:
        mean: Per-channel mean (RGB), default ImageNet.
        std: Per-channel standard deviation (RGB), default ImageNet.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)
        if (self.std <= 0).any():
            raise ValueError(f"std must be > 0, got {std}")

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        if image.dtype == np.uint8:  # one float32 table per channel: a single pass over the image
            table = (np.arange(256, dtype=np.float32)[:, None] - self.mean[0]) / self.std[0]  # [256, 3]
            return cv2.LUT(np.ascontiguousarray(image), table.reshape(256, 1, 3)), label, instance
        out = image.astype(np.float32)
        out -= self.mean
        out /= self.std
        return out, label, instance

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class Pad:
    """Pad bottom/right up to `size`: image with 0, label with `ignore_index`, instance with 0.

    Because the label padding is ignore, and ignore counts as inside every class, padding never creates
    boundaries. ``label_pad_value`` = a value that is neither a class nor ignore (e.g. 254) reproduces the
    official code's spurious bands along the pad edge (spec §2.2, `pad_as_class`).

    Args:
        size: Minimum (height, width), or an int for a square.
        ignore_index: Label pad value.
        label_pad_value: Overrides the label pad value.
    """

    def __init__(self, size: int | Sequence[int], ignore_index: int = 255, *, label_pad_value: int | None = None):
        self.size = _pair(size)
        self.label_value = ignore_index if label_pad_value is None else label_pad_value

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> Sample:
        _check(image, label, instance)
        h, w = label.shape
        ph, pw = max(self.size[0] - h, 0), max(self.size[1] - w, 0)
        if ph == 0 and pw == 0:
            return image, label, instance
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=self.label_value)
        instance = None if instance is None else np.pad(instance, ((0, ph), (0, pw)))
        return image, label, instance

    def __repr__(self) -> str:
        return f"Pad({self.size}, label_value={self.label_value})"


class ToTrainingSample:
    """Last step: tensors for the model, the segmentation target and packed boundary GT of the final crop.

    Args:
        num_classes: K.
        radius: Boundary radius r in pixels of the final crop.
        ignore_index: Ignore value (inside every class for the boundaries; ignored by the segmentation loss).
        boundaries: Compute ``"boundaries"``; without it the key is absent (never None, so collate works).

    Returns (from ``__call__``):
        dict with ``"image"`` float32 [3, H, W], ``"label"`` int64 [H, W] (every value outside 0..K-1 becomes
        `ignore_index`) and ``"boundaries"`` uint8 [ceil(K / 8), H, W] (class k = bit k % 8 of byte k // 8; expand
        on the device with `sbcb.boundaries.unpack_boundaries`). Instance-sensitive when an instance map is given.
    """

    def __init__(self, num_classes: int, radius: float = 2.0, ignore_index: int = 255, boundaries: bool = True):
        self.num_classes = num_classes
        self.radius = radius
        self.ignore_index = ignore_index
        self.boundaries = boundaries

    def __call__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray | None = None) -> dict:
        _check(image, label, instance)
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))}
        target = torch.from_numpy(label.astype(np.int64))
        sample["label"] = relabel_out_of_range(target, self.num_classes, self.ignore_index)
        if self.boundaries:
            label_c = np.ascontiguousarray(label)
            inst_c = None if instance is None else np.ascontiguousarray(instance)
            packed = mask_to_packed_boundaries(label_c, self.num_classes, self.radius, self.ignore_index, inst_c)
            sample["boundaries"] = torch.from_numpy(packed)
        return sample

    def __repr__(self) -> str:
        return f"ToTrainingSample({self.num_classes}, radius={self.radius}, boundaries={self.boundaries})"


def build_train_transform(
    crop_size: int | Sequence[int],
    num_classes: int,
    *,
    scale_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    radius: float = 2.0,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    boundaries: bool = True,
    rng: np.random.Generator | None = None,
) -> Compose:
    """The paper's training pipeline (spec §2.1): scale, crop, flip, colour, normalize, pad, then OTF boundaries.

    Args:
        crop_size: (height, width) of the network input, or an int.
        num_classes: K.
        scale_range: Random rescale range.
        cat_max_ratio: `RandomCrop` balance check (1.0 disables it).
        radius: Boundary radius in pixels.
        ignore_index: Ignore value (label padding uses it too).
        mean: Normalization mean (RGB, 0..255 scale).
        std: Normalization std.
        boundaries: Add packed boundary GT.
        rng: Optional generator shared by the random steps.

    Returns:
        Callable ``(image, label, instance=None) -> dict`` (see `ToTrainingSample`).
    """
    return Compose(
        [
            RandomScale(*scale_range, rng=rng),
            RandomCrop(crop_size, cat_max_ratio, ignore_index, num_classes=num_classes, rng=rng),
            RandomHorizontalFlip(0.5, rng=rng),
            PhotometricDistortion(rng=rng),
            Normalize(mean, std),
            Pad(crop_size, ignore_index),
            ToTrainingSample(num_classes, radius, ignore_index, boundaries),
        ]
    )


def build_eval_transform(
    num_classes: int,
    *,
    radius: float = 2.0,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    boundaries: bool = False,
) -> Compose:
    """Evaluation pipeline: normalize and convert, no augmentation; boundary GT optional (off by default).

    Returns:
        Callable ``(image, label, instance=None) -> dict`` (see `ToTrainingSample`).
    """
    return Compose([Normalize(mean, std), ToTrainingSample(num_classes, radius, ignore_index, boundaries)])
