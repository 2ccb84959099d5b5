"""Semantic boundary ground truth: label map -> multi-label boundary bands (spec §2, paper App. A).

Definition (the official code's, reproduced exactly for any radius r > 0). For every class c present in the map:

- M_c = pixels of class c; U_c = M_c ∪ ignore (ignore counts as *inside every class*); G_c = valid pixels not in c.
- inner(p) = Euclidean distance from p ∈ U_c to the nearest pixel of G_c; outer(p) = distance from p ∉ M_c to the
  nearest pixel of M_c; boundary B_c = {p : 0 < inner(p) + outer(p) <= r}.
- Pixels outside the image belong to neither set, so the image border never makes a boundary.
- Distances are compared the way the reference (float32 `cv2.distanceTransform`) compares them:
  float32(inner) + float32(outer) <= float32(r), summed in float32.
- Instance-sensitive (IS) mode: every instance segment (instance id i on class-c pixels) gets the same treatment
  with M = the segment, and its band is OR-ed into channel c.

How it is computed (no distance transforms; proofs in docs/boundaries.md). Give every valid pixel a key: its class
(all values that are neither a class nor ignore share one "foreign" class) and, in IS mode, its instance id.
A valid pixel p is a boundary pixel iff the disk D_r(p) holds a valid pixel with another key; it is then positive
in the class of *every* valid pixel of its disk. An ignore pixel x can only be positive when r >= 2: with d the
squared distance to its nearest valid pixel and (m, n) the admissible pair of squared distances with the smallest
m >= d, x is positive in the classes of D_sqrt(n)(x) when that disk holds >= 2 keys (for 2 <= r < 1 + sqrt(2)
this reads: two different keys among its 4-neighbours).

Two exact back-ends compute this: a numba kernel that visits each pixel once (optional, `pip install "sbcb[fast]"`)
and an OpenCV one (grey-level dilation/erosion of the keys, then one binary dilation per class on its bounding box).
`mask_to_boundaries_torch` is the same rule with max-pooling on a whole batch, on the mask's device.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sbcb.boundary_png import decode_rgb_png, encode_rgb_png, read_boundary_png, write_boundary_png

# optional fast path (pip install "sbcb[fast]"); imported on first use only, the OpenCV back-end is identical
_HAS_NUMBA = importlib.util.find_spec("numba") is not None

__all__ = [
    "mask_to_boundaries",
    "mask_to_packed_boundaries",
    "mask_to_boundaries_torch",
    "boundaries_to_binary",
    "pack_boundaries",
    "unpack_boundaries",
    "encode_rgb_png",
    "decode_rgb_png",
    "write_boundary_png",
    "read_boundary_png",
    "disk_offsets",
]

BACKENDS = ("auto", "numba", "opencv")


# ----------------------------------------------------------------------------------------------------------------
# Disk geometry: which offsets are "within r", with the reference's float32 comparison


def _f32_dist(sq: np.ndarray | int) -> np.ndarray:
    # sqrt in float64 then one rounding to float32 equals a correctly rounded float32 sqrt (no double-rounding issue)
    return np.sqrt(np.asarray(sq, dtype=np.float64)).astype(np.float32)


@lru_cache(maxsize=64)
def _disk(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of D_r without the centre, sorted by squared distance, and their squared distances.

    Returns:
        (offsets [N, 2] int64 (dy, dx), sq [N] int64), N = |D_r| - 1.
    """
    reach = int(math.floor(radius))
    d = np.arange(-reach, reach + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    sq = (dy * dy + dx * dx).ravel()
    keep = (_f32_dist(sq) <= np.float32(radius)) & (sq > 0)
    order = np.argsort(sq[keep], kind="stable")
    offsets = np.stack([dy.ravel()[keep], dx.ravel()[keep]], axis=1)[order]
    offsets.setflags(write=False)
    sq_sorted = sq[keep][order]
    sq_sorted.setflags(write=False)
    return offsets, sq_sorted


def disk_offsets(radius: float) -> np.ndarray:
    """Offsets (dy, dx) of the disk D_r = {float32(sqrt(dy² + dx²)) <= r}, centre excluded.

    Args:
        radius: r > 0 in pixels.

    Returns:
        int64 [N, 2], sorted by distance. For r = 2 it has 12 rows (the 3x3 square and (0, ±2), (±2, 0)).
    """
    return np.array(_disk(_check_radius(radius))[0])


@lru_cache(maxsize=64)
def _disk_kernel(radius: float) -> np.ndarray:
    """uint8 [2R+1, 2R+1] structuring element of D_r (centre included), R = floor(r)."""
    reach = int(math.floor(radius))
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1), np.uint8)
    kernel[reach, reach] = 1
    offsets, _ = _disk(radius)
    kernel[offsets[:, 0] + reach, offsets[:, 1] + reach] = 1
    kernel.setflags(write=False)
    return kernel


@lru_cache(maxsize=64)
def _ignore_pairs(radius: float) -> tuple[tuple[int, int], ...]:
    """Admissible squared-distance pairs (m, n) for ignore pixels, sorted by m.

    An ignore pixel has inner >= 1 and outer >= 1. A pair (a², b²) is admissible when
    float32(float32(a) + float32(b)) <= float32(r). For each m with (m, m) admissible, n is the largest squared
    distance with (m, n) admissible, so n >= m. Empty for r < 2; ((1, 1),) for 2 <= r < 1 + sqrt(2).
    """
    reach = int(math.floor(radius))
    d = np.arange(0, reach + 1)
    sq = np.unique((d[:, None] ** 2 + d[None, :] ** 2).ravel())
    sq = sq[sq > 0]
    dist = _f32_dist(sq)
    r32 = np.float32(radius)
    pairs = []
    for m, dm in zip(sq.tolist(), dist):
        ok = (dm + dist).astype(np.float32) <= r32  # float32 + float32 stays float32, as in the reference
        if not ok.any() or not (dm + dm) <= r32:
            continue
        pairs.append((int(m), int(sq[ok].max())))
    return tuple(pairs)


def _check_radius(radius: float) -> float:
    radius = float(radius)
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a finite number > 0 (pixels), got {radius}")
    return radius


# ----------------------------------------------------------------------------------------------------------------
# Input normalisation: class-index map, instance keys


def _class_index(mask: np.ndarray, num_classes: int, ignore_index: int) -> tuple[np.ndarray, int]:
    """Map a label map to class indices: 0..K-1 classes, K = any other valid value, `ign` = ignore.

    Returns:
        (cidx [H, W] uint8 (K <= 254) or uint16, ign code = the dtype's max value).
    """
    K = num_classes
    if mask.dtype == np.uint8 and K <= 254:
        lut = np.full(256, K, np.uint8)
        lut[: min(K, 256)] = np.arange(min(K, 256), dtype=np.uint8)
        if 0 <= ignore_index <= 255:
            lut[ignore_index] = 255
        return cv2.LUT(np.ascontiguousarray(mask), lut), 255
    dtype = np.uint8 if K <= 254 else np.uint16
    ign = int(np.iinfo(dtype).max)
    m = mask.astype(np.int64, copy=False)
    cidx = np.where((m >= 0) & (m < K), m, K).astype(dtype)
    cidx[m == ignore_index] = ign
    return cidx, ign


def _validate(mask: np.ndarray, num_classes: int, ignore_index: int, instance_mask: np.ndarray | None) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D numpy array [H, W] of class ids, got {_describe(mask)}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must hold integer class ids, got dtype {mask.dtype}; cast it with .astype(np.int64)")
    if not 1 <= num_classes <= 65534:
        raise ValueError(f"num_classes must be in 1..65534, got {num_classes}")
    _check_ignore_index(num_classes, ignore_index)
    if instance_mask is not None:
        if not isinstance(instance_mask, np.ndarray) or instance_mask.shape != mask.shape:
            raise ValueError(
                f"instance_mask must be a numpy array of shape {mask.shape}, got {_describe(instance_mask)}"
            )
        if not np.issubdtype(instance_mask.dtype, np.integer):
            raise ValueError(f"instance_mask must hold integer ids (0 = none), got dtype {instance_mask.dtype}")


def _check_ignore_index(num_classes: int, ignore_index: int) -> None:
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index {ignore_index} is also a class id (0..{num_classes - 1}); pick another value")


def _describe(x: object) -> str:
    shape = getattr(x, "shape", None)
    return f"{type(x).__name__} with shape {tuple(shape)}" if shape is not None else type(x).__name__


def _instance_keys(instance_mask: np.ndarray, cidx: np.ndarray, num_classes: int) -> np.ndarray:
    """Instance id on class pixels, 0 elsewhere (ignore and foreign pixels never belong to an instance), int64."""
    inst = instance_mask.astype(np.int64, copy=False)
    return np.where(cidx < num_classes, inst, 0)


# ----------------------------------------------------------------------------------------------------------------
# OpenCV building blocks


def _class_distinct(cidx: np.ndarray, ign: int, kernel: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: 1 where D (the kernel) holds valid pixels of >= 2 class indices (ignore is neutral).

    Ignore pixels with no valid pixel in D also read 1; callers AND with a validity condition.
    """
    if cidx.dtype == np.uint8:
        plus_one = np.arange(1, 257, dtype=np.uint16).astype(np.uint8)  # v -> v + 1, 255 (ignore) -> 0
        hi = cv2.dilate(cv2.LUT(cidx, plus_one), kernel)
    else:
        hi = cv2.dilate(np.where(cidx == ign, 0, cidx + 1).astype(cidx.dtype), kernel)
    lo = cv2.erode(cidx, kernel)  # ignore = dtype max is neutral for the minimum
    # max(v + 1) == min(v) + 1 iff one class (all-ignore: 0 vs saturated max, reads "distinct")
    return (hi != cv2.add(lo, 1)).view(np.uint8)  # type: ignore[call-overload]  # stubs lack cv2.add(array, scalar)


def _instance_distinct(inst_keys: np.ndarray, valid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: 1 where D holds valid pixels of >= 2 instance keys (0 = no instance counts as a key)."""
    keys = inst_keys
    if keys.max(initial=0) >= 2**24 or keys.min(initial=0) < 0:  # float32 is exact below 2^24 only
        keys = np.unique(keys, return_inverse=True)[1].reshape(keys.shape)
    keys = keys.astype(np.float32)
    hi = cv2.dilate(np.where(valid, keys, np.float32(-1)), kernel)
    lo = cv2.erode(np.where(valid, keys, np.float32(2**24)), kernel)
    return (hi != lo).view(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# numba back-end: one pass over the pixels (the compiled kernels live in `sbcb._boundary_kernels`)


def _prepare_uint8(mask, num_classes, ignore_index, reach, width_padded):
    """`_boundary_kernels.prepare` for uint8 masks: one OpenCV look-up table written straight into the padded buffer."""
    H, W = mask.shape
    lut = np.full(256, num_classes, np.uint8)
    lut[:num_classes] = np.arange(num_classes)
    if 0 <= ignore_index <= 255:
        lut[ignore_index] = 255
    code = np.full((H + 2 * reach, width_padded), 255, np.uint8)
    cv2.LUT(mask, lut, dst=code[reach : reach + H, reach : reach + W])
    return code


def _run_numba(mask, num_classes, ignore_index, instance_mask, radius, out, packed) -> None:
    from sbcb import _boundary_kernels as jit  # imports numba, an optional dependency: only for this back-end

    offsets, sq = _disk(radius)
    kernel = _disk_kernel(radius)
    reach = kernel.shape[0] // 2
    H, W = mask.shape
    width_padded = (W + 2 * reach + 7) // 8 * 8
    prepare = _prepare_uint8 if mask.dtype == np.uint8 else jit.prepare
    code = prepare(np.ascontiguousarray(mask), num_classes, ignore_index, reach, width_padded)
    # >= 2 classes in D_r: max(code + 1) > min(code) + 1, where code + 1 wraps ignore (255) to 0, neutral for the
    # maximum; all-ignore windows give 0 > 255 (saturated): false
    hi = cv2.dilate(code + np.uint8(1), kernel)
    distinct = cv2.compare(hi, cv2.add(cv2.erode(code, kernel), 1), cv2.CMP_GT)  # type: ignore[call-overload]
    work = distinct
    if instance_mask is None:
        inst = np.zeros((1, 1), np.int32)
    else:
        # the kernel reads instance ids only on class pixels, so ids on ignore/foreign pixels are dropped there
        inst = np.ascontiguousarray(instance_mask)
        # If q in D_r(p) has another id than p, the L-shaped pixel path from p to q, inside p's (2R+1)² square,
        # crosses a change between 4-neighbours: the dilated change map covers every pixel that IS can add.
        change = jit.instance_change_padded(inst, reach, width_padded)
        work = np.bitwise_or(distinct, cv2.dilate(change, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)))
    pairs = _ignore_pairs(radius)
    len_m = np.array([np.searchsorted(sq, m, side="right") for m, _ in pairs], np.int64)
    len_n = np.array([np.searchsorted(sq, n, side="right") for _, n in pairs], np.int64)
    flat_offsets = offsets[:, 0] * width_padded + offsets[:, 1]
    inst_offsets = offsets[:, 0] * W + offsets[:, 1]
    jit.kernel(code, work, distinct, inst, flat_offsets, inst_offsets, len_m, len_n, num_classes, out, packed)


# ----------------------------------------------------------------------------------------------------------------
# OpenCV back-end: global key morphology, then one dilation per class on its bounding box


def _bounding_boxes(cidx: np.ndarray, ign: int, num_classes: int) -> dict[int, tuple[slice, slice]]:
    from scipy import ndimage

    labels = np.where(cidx == ign, 0, cidx.astype(np.int32) + 1)
    boxes = ndimage.find_objects(labels, max_label=num_classes)
    return {c: box for c, box in enumerate(boxes) if box is not None}


def _run_opencv(cidx, ign, inst_keys, radius, num_classes, out, packed) -> None:
    H, W = cidx.shape
    reach = int(math.floor(radius))
    kernel = _disk_kernel(radius)
    valid = (cidx != ign).view(np.uint8)

    def distinct_in(k: np.ndarray) -> np.ndarray:
        d = _class_distinct(cidx, ign, k)
        if inst_keys is not None:
            d |= _instance_distinct(inst_keys, valid.view(bool), k)
        return d

    terms = [(kernel, distinct_in(kernel) & valid)]  # (disk to dilate M_c with, where that dilation counts)
    for m, n in _ignore_pairs(radius):
        kernel_n = _disk_kernel(math.sqrt(n))
        near_valid = cv2.dilate(valid, _disk_kernel(math.sqrt(m)))
        terms.append((kernel_n, distinct_in(kernel_n) & near_valid & (1 - valid)))
    for c, (ys, xs) in _bounding_boxes(cidx, ign, num_classes).items():
        # every pixel that can be marked lies within r of M_c: grow the box by floor(r)
        y0, y1 = max(ys.start - reach, 0), min(ys.stop + reach, H)
        x0, x1 = max(xs.start - reach, 0), min(xs.stop + reach, W)
        member = (cidx[y0:y1, x0:x1] == c).view(np.uint8)
        band = np.zeros_like(member)
        for k, where in terms:
            band |= cv2.dilate(member, k) & where[y0:y1, x0:x1]
        if packed:
            out[c >> 3, y0:y1, x0:x1] |= band << np.uint8(c & 7)
        else:
            out[c, y0:y1, x0:x1] |= band


# ----------------------------------------------------------------------------------------------------------------
# Public numpy API


def _compute(mask, num_classes, radius, ignore_index, instance_mask, backend, packed) -> np.ndarray:
    _validate(mask, num_classes, ignore_index, instance_mask)
    radius = _check_radius(radius)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and not _HAS_NUMBA:
        raise ImportError('backend="numba" needs numba: pip install "sbcb[fast]"')
    H, W = mask.shape
    channels = (num_classes + 7) // 8 if packed else num_classes
    out = np.zeros((channels, H, W), np.uint8)
    if radius < 1 or H == 0 or W == 0:  # the disk holds only its centre: nothing is within r of another pixel
        return out
    if instance_mask is not None and not instance_mask.any():
        instance_mask = None
    if backend == "numba" and num_classes > 254:
        raise ValueError(f'backend="numba" handles up to 254 classes, got {num_classes}: use backend="opencv"')
    if backend == "numba" or (backend == "auto" and _HAS_NUMBA and num_classes <= 254):
        _run_numba(mask, num_classes, ignore_index, instance_mask, radius, out, packed)
    else:
        cidx, ign = _class_index(mask, num_classes, ignore_index)
        inst_keys = None if instance_mask is None else _instance_keys(instance_mask, cidx, num_classes)
        _run_opencv(cidx, ign, inst_keys, radius, num_classes, out, packed)
    return out


def mask_to_boundaries(
    mask: np.ndarray,
    num_classes: int,
    radius: float = 2.0,
    ignore_index: int = 255,
    instance_mask: np.ndarray | None = None,
    *,
    backend: str = "auto",
) -> np.ndarray:
    """Multi-label semantic boundaries of a label map (exact, spec §2.2/§2.3).

    Args:
        mask: Class ids, integer [H, W]. 0..K-1 are classes; `ignore_index` counts as inside every class (no band
            along class|ignore); any other value is a non-evaluated region that still forms bands with the classes.
        num_classes: K.
        radius: r in pixels (> 0): a pixel is in band c when inner + outer distance <= r. Each band is ~2r px wide.
        ignore_index: Ignore value.
        instance_mask: Optional instance ids, integer [H, W], 0 = no instance. Each id is one instance of the class
            under it (an id on several classes is one instance per class; ids on ignore or non-class pixels are
            dropped). Its own band is OR-ed into its class channel (instance-sensitive GT).
        backend: "auto" (numba if installed, else OpenCV), "numba" or "opencv". All give identical results.

    Returns:
        bool [K, H, W]; channel k is class k's band. The image border never creates a band.
    """
    return _compute(mask, num_classes, radius, ignore_index, instance_mask, backend, packed=False).view(bool)


def mask_to_packed_boundaries(
    mask: np.ndarray,
    num_classes: int,
    radius: float = 2.0,
    ignore_index: int = 255,
    instance_mask: np.ndarray | None = None,
    *,
    backend: str = "auto",
) -> np.ndarray:
    """Like `mask_to_boundaries`, but returns the bands bit-packed, as `pack_boundaries` would.

    Cheaper than packing afterwards: the dense [K, H, W] array is never built.

    Returns:
        uint8 [ceil(K / 8), H, W]; class k is bit k % 8 (LSB first) of byte k // 8.
    """
    return _compute(mask, num_classes, radius, ignore_index, instance_mask, backend, packed=True)


def boundaries_to_binary(boundaries: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Binary boundaries = union of the class channels (the BBCB / DDS binary target, spec §2.4).

    Args:
        boundaries: bool/{0,1} numpy or torch [K, H, W], or torch [B, K, H, W].

    Returns:
        Same library as the input: bool [H, W] for [K, H, W] input, bool [B, 1, H, W] for [B, K, H, W] input.
    """
    if isinstance(boundaries, torch.Tensor):
        if boundaries.dim() == 4:
            return boundaries.bool().any(dim=1, keepdim=True)
        if boundaries.dim() == 3:
            return boundaries.bool().any(dim=0)
    elif isinstance(boundaries, np.ndarray) and boundaries.ndim == 3:
        return np.asarray(boundaries.astype(bool, copy=False).any(axis=0))
    raise ValueError(
        f"boundaries must be [K, H, W] (numpy or torch) or a [B, K, H, W] tensor, got {_describe(boundaries)}"
    )


# ----------------------------------------------------------------------------------------------------------------
# torch variant: the same rule with max-pooling, on a whole batch, on the mask's device


@lru_cache(maxsize=64)
def _disk_rectangles(radius: float) -> tuple[tuple[int, int], ...]:
    """Half-sizes (h, w) of rectangles whose union is D_r: the disk's row profile, dominated ones dropped."""
    kernel = _disk_kernel(radius)
    reach = kernel.shape[0] // 2
    half_width = [int(kernel[reach + h].sum()) // 2 for h in range(reach + 1)]
    return tuple((h, w) for h, w in enumerate(half_width) if h == reach or half_width[h + 1] != w)


def _pool_max(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Max over D_r of x [B, C, H, W]; out-of-image pixels contribute nothing (max_pool2d pads with -inf)."""

    def pool(h: int, w: int) -> torch.Tensor:
        return F.max_pool2d(x, (2 * h + 1, 2 * w + 1), stride=1, padding=(h, w))

    first, *rest = _disk_rectangles(radius)  # never empty: (0, 0) at least
    out = pool(*first)
    for h, w in rest:
        out = torch.maximum(out, pool(h, w))
    return out


def mask_to_boundaries_torch(
    mask: torch.Tensor,
    num_classes: int,
    radius: float = 2.0,
    ignore_index: int = 255,
    instance_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched torch twin of `mask_to_boundaries` (identical output), on the mask's device.

    Args:
        mask: Class ids, integer [B, H, W] (or [H, W]); same conventions as `mask_to_boundaries`.
        num_classes: K.
        radius: r in pixels (> 0).
        ignore_index: Ignore value.
        instance_mask: Optional integer [B, H, W] instance ids, 0 = none.

    Returns:
        bool [B, K, H, W] ([K, H, W] for a 2-D mask) on `mask.device`.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3) or mask.is_floating_point():
        raise ValueError(f"mask must be an integer tensor [B, H, W] or [H, W], got {_describe(mask)}")
    _check_ignore_index(num_classes, ignore_index)
    if instance_mask is not None and (
        not isinstance(instance_mask, torch.Tensor)
        or instance_mask.shape != mask.shape
        or instance_mask.is_floating_point()
    ):
        raise ValueError(f"instance_mask must be an integer tensor of shape {tuple(mask.shape)}")
    radius = _check_radius(radius)
    squeeze = mask.dim() == 2
    if squeeze:
        mask = mask[None]
        instance_mask = None if instance_mask is None else instance_mask[None]
    B, H, W = mask.shape
    K = num_classes
    out = torch.zeros((B, K, H, W), dtype=torch.bool, device=mask.device)
    if radius >= 1 and H > 0 and W > 0:
        _torch_bands(mask.long(), K, radius, ignore_index, instance_mask, out)
    return out[0] if squeeze else out


def _torch_bands(mask, K, radius, ignore_index, instance_mask, out) -> None:
    ign = mask == ignore_index
    valid = ~ign
    cidx = torch.where((mask >= 0) & (mask < K), mask, torch.full_like(mask, K))
    key = cidx
    if instance_mask is not None:
        inst = torch.where(valid & (cidx < K), instance_mask.long(), torch.zeros_like(mask))
        inverse = torch.unique(inst, return_inverse=True)[1]
        key = cidx + (K + 1) * inverse
    # max_pool needs floats; float32 is exact below 2^24
    dtype = torch.float32 if int(key.max()) < 2**24 else torch.float64
    key = key.to(dtype)[:, None]
    valid4 = valid[:, None]
    low = torch.tensor(-1.0, dtype=dtype, device=mask.device)

    def distinct_in(r: float) -> torch.Tensor:  # >= 2 valid keys in D_r, [B, 1, H, W]
        hi = _pool_max(torch.where(valid4, key, low), r)
        lo = -_pool_max(torch.where(valid4, -key, low * 2**25), r)
        return hi != lo

    # one-hot of the classes; uint8 pools on the CPU, float16 elsewhere (exact for 0/1)
    one_dtype = torch.uint8 if mask.device.type == "cpu" else torch.float16
    onehot = torch.zeros((mask.shape[0], K + 1, *mask.shape[1:]), dtype=one_dtype, device=mask.device)
    onehot.scatter_(1, torch.where(valid, cidx, torch.full_like(cidx, K))[:, None], 1)
    onehot = onehot[:, :K]  # ignore and foreign pixels belong to no class

    out |= (_pool_max(onehot, radius) > 0) & distinct_in(radius) & valid4
    for m, n in _ignore_pairs(radius):
        near_valid = _pool_max(valid4.to(one_dtype), math.sqrt(m)) > 0
        where = ign[:, None] & near_valid & distinct_in(math.sqrt(n))
        out |= (_pool_max(onehot, math.sqrt(n)) > 0) & where


# ----------------------------------------------------------------------------------------------------------------
# Packing for transport (RGB-PNG files: `sbcb.boundary_png`)


def pack_boundaries(boundaries: np.ndarray) -> np.ndarray:
    """Bit-pack multi-label boundaries for the data loader.

    Args:
        boundaries: bool/{0,1} [K, H, W].

    Returns:
        uint8 [ceil(K / 8), H, W]; class k is bit k % 8 (LSB first) of byte k // 8.
    """
    if not isinstance(boundaries, np.ndarray) or boundaries.ndim != 3:
        raise ValueError(f"boundaries must be a numpy array [K, H, W], got {_describe(boundaries)}")
    K, H, W = boundaries.shape
    bits = boundaries.astype(bool, copy=False).view(np.uint8)
    packed = np.zeros(((K + 7) // 8, H, W), np.uint8)
    for k in range(K):
        packed[k >> 3] |= bits[k] << np.uint8(k & 7)
    return packed


def unpack_boundaries(packed: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Expand packed boundaries with bit operations on the tensor's device.

    Args:
        packed: uint8 [B, ceil(K / 8), H, W] or [ceil(K / 8), H, W] (numpy is converted to a CPU tensor).
        num_classes: K.

    Returns:
        bool [B, K, H, W] (or [K, H, W] for 3-D input), on `packed.device`.
    """
    if isinstance(packed, np.ndarray):
        packed = torch.from_numpy(packed)
    if packed.dtype != torch.uint8 or packed.dim() not in (3, 4):
        raise ValueError(f"packed must be uint8 [B, P, H, W] or [P, H, W], got {packed.dtype} {tuple(packed.shape)}")
    if packed.shape[-3] != (num_classes + 7) // 8:
        raise ValueError(
            f"packed has {packed.shape[-3]} bytes per pixel, but num_classes={num_classes} "
            f"needs {(num_classes + 7) // 8}"
        )
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device).view(8, 1, 1)
    bits = (packed.unsqueeze(-3) >> shifts) & 1  # [..., P, 8, H, W]
    bits = bits.flatten(-4, -3)[..., :num_classes, :, :]
    return bits.bool()
