"""Tests for sbcb.boundaries against an independent, slow scipy-EDT implementation of the definition (spec §2.2)."""

from __future__ import annotations

import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from sbcb import boundaries as bd
from sbcb.boundaries import (
    boundaries_to_binary,
    decode_rgb_png,
    encode_rgb_png,
    mask_to_boundaries,
    mask_to_boundaries_torch,
    mask_to_packed_boundaries,
    pack_boundaries,
    read_boundary_png,
    unpack_boundaries,
    write_boundary_png,
)

BACKENDS = ["opencv", "numba"] if bd._HAS_NUMBA else ["opencv"]


# ------------------------------------------------------------------------------------------------------------------
# Reference: the definition, literally, with two exact EDTs per segment (like the official code, but scipy)


def _dist_to(target: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of `target` (inf if there is none)."""
    if not target.any():
        return np.full(target.shape, np.inf)
    return ndimage.distance_transform_edt(~target)


def reference_boundaries(mask, num_classes, radius, ignore_index=255, instance_mask=None) -> np.ndarray:
    K = num_classes
    ignore = mask == ignore_index
    segments = [(c, mask == c) for c in range(K) if (mask == c).any()]
    if instance_mask is not None:
        for i in np.unique(instance_mask[instance_mask != 0]):
            for c in range(K):
                member = (instance_mask == i) & (mask == c)
                if member.any():
                    segments.append((c, member))
    out = np.zeros((K, *mask.shape), bool)
    r32 = np.float32(radius)
    for c, member in segments:
        inside = member | ignore  # ignore counts as inside every class
        others = ~inside  # valid pixels of any other value
        inner = np.where(inside, _dist_to(others), 0).astype(np.float32)
        outer = np.where(member, 0, _dist_to(member)).astype(np.float32)
        total = inner + outer  # float32 + float32, as with cv2's float32 distance maps
        out[c] |= (total > 0) & (total <= r32)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Random maps: blobs and noise, foreign values, scattered and blob ignore, touching instances


def random_case(rng: np.random.Generator):
    H, W = (int(v) for v in rng.integers(1, 61, size=2))
    K = int(rng.integers(1, 31))
    style = rng.integers(0, 3)
    if style == 0:  # pixel noise: every pixel its own little region
        mask = rng.integers(0, K + 2, size=(H, W))
    else:  # blocky regions, upscaled from a coarse grid
        gh, gw = max(1, H // int(rng.integers(2, 8))), max(1, W // int(rng.integers(2, 8)))
        coarse = rng.integers(0, K + 2, size=(gh, gw)).astype(np.int32)
        mask = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    mask[mask == K + 1] = 200  # a foreign (non-class, non-ignore) value
    if rng.random() < 0.5:  # scattered ignore
        mask[rng.random((H, W)) < rng.uniform(0, 0.3)] = 255
    if rng.random() < 0.5:  # a blob of ignore
        y, x = rng.integers(0, H), rng.integers(0, W)
        mask[y : y + int(rng.integers(1, 12)), x : x + int(rng.integers(1, 12))] = 255
    instance = None
    if rng.random() < 0.6:
        instance = np.zeros((H, W), np.int32)
        for i in range(int(rng.integers(1, 6))):  # touching or overlapping boxes, later ones on top
            y, x = rng.integers(0, H), rng.integers(0, W)
            instance[y : y + int(rng.integers(1, 15)), x : x + int(rng.integers(1, 15))] = 1000 + i
    return mask, K, instance


RADII = [1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 3.7, 4.5, math.sqrt(5)]


def test_matches_edt_reference_on_random_maps():
    rng = np.random.default_rng(1234)
    marked_ignore = is_only = 0
    for n in range(300):
        mask, K, instance = random_case(rng)
        radius = RADII[n % len(RADII)]
        expected = reference_boundaries(mask, K, radius, 255, instance)
        if n % 2:  # uint8 labels take a different (look-up table) path
            mask = mask.astype(np.uint8)
        for backend in BACKENDS:
            got = mask_to_boundaries(mask, K, radius, 255, instance, backend=backend)
            assert got.dtype == bool and got.shape == expected.shape
            if not np.array_equal(got, expected):
                diff = np.argwhere(got != expected)[:5].tolist()
                pytest.fail(f"{backend}, case {n}: r={radius} K={K} {mask.shape} IS={instance is not None} at {diff}")
        # count the hard cases so that a fuzz set that never reaches them fails
        marked_ignore += int((expected.any(0) & (mask == 255)).any())
        if instance is not None:
            is_only += int(not np.array_equal(expected, mask_to_boundaries(mask, K, radius, 255)))
    assert marked_ignore >= 50 and is_only >= 30


# ------------------------------------------------------------------------------------------------------------------
# Hand-worked cases (r = 2 unless stated; columns are counted from 0)


def _columns(mask_row_pattern: list[int], rows: int = 6) -> np.ndarray:
    return np.tile(np.array(mask_row_pattern, np.int64), (rows, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_edge_gives_4px_band_in_both_channels(backend):
    mask = _columns([0] * 5 + [1] * 5)
    b = mask_to_boundaries(mask, 2, 2.0, backend=backend)
    # class-0 pixels within 2 of class 1: cols 3 (d=2), 4 (d=1); class-1 pixels within 2 of class 0: cols 5, 6
    expected_cols = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], bool)
    for c in (0, 1):
        assert np.array_equal(b[c], np.tile(expected_cols, (6, 1)))  # every row: the border adds nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_ignore_strips(backend):
    # 3-px strip: class 0 at col 3 is 4 px from class 1; ignore col 4 has 1 + 3 = 4 > 2, col 5 has 2 + 2: nothing
    three = _columns([0, 0, 0, 0, 255, 255, 255, 1, 1, 1])
    assert not mask_to_boundaries(three, 2, 2.0, backend=backend).any()
    # 2-px strip: class px 3 apart; ignore col 4: 1 + 2 = 3 > 2: nothing either
    two = _columns([0, 0, 0, 0, 255, 255, 1, 1, 1, 1])
    assert not mask_to_boundaries(two, 2, 2.0, backend=backend).any()
    # 1-px strip: col 4 (class 0, 2 px from class 1), col 5 (ignore, 1 + 1 = 2), col 6 (class 1): a 3-px band
    one = _columns([0, 0, 0, 0, 0, 255, 1, 1, 1, 1])
    b = mask_to_boundaries(one, 2, 2.0, backend=backend)
    expected = np.tile(np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0], bool), (6, 1))
    assert np.array_equal(b[0], expected) and np.array_equal(b[1], expected)
    # below r = 2 the 1-px strip suppresses everything: class pixels are 2 apart, the ignore pixel has 1 + 1 > 1.9
    assert not mask_to_boundaries(one, 2, 1.9, backend=backend).any()
    # r = 3 bridges the 2-px strip: cols 3 and 6 are 3 apart, ignore cols 4 and 5 have 1 + 2 = 3
    b = mask_to_boundaries(two, 2, 3.0, backend=backend)
    expected = np.tile(np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], bool), (6, 1))
    assert np.array_equal(b[0], expected) and np.array_equal(b[1], expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corner_pixel_and_no_border_boundaries(backend):
    mask = np.zeros((5, 6), np.int64)
    mask[0, 0] = 1
    # both channels: the pixel (1 px from class 0) and its two 4-neighbours (1 px from class 1); (1, 1) is sqrt(2)
    b = mask_to_boundaries(mask, 2, 1.0, backend=backend)
    assert np.argwhere(b[0]).tolist() == np.argwhere(b[1]).tolist() == [[0, 0], [0, 1], [1, 0]]
    b = mask_to_boundaries(mask, 2, 1.5, backend=backend)
    assert np.argwhere(b[0]).tolist() == np.argwhere(b[1]).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    # one class (plus ignore) covering the image: the image border is not a boundary
    mask = np.zeros((7, 7), np.int64)
    mask[2:4, 2:5] = 255
    assert not mask_to_boundaries(mask, 3, 3.0, backend=backend).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_touching_instances_and_foreign_values(backend):
    mask = np.full((6, 10), 13, np.int64)
    instance = np.zeros((6, 10), np.int32)
    instance[:, :5] = 26001
    instance[:, 5:] = 26002
    assert not mask_to_boundaries(mask, 19, 2.0, backend=backend).any()  # one class, no IS: nothing
    b = mask_to_boundaries(mask, 19, 2.0, instance_mask=instance, backend=backend)
    expected = np.tile(np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], bool), (6, 1))  # 2 px on each side of the seam
    assert np.array_equal(b[13], expected) and b.sum() == expected.sum()
    # a value that is neither a class nor ignore still forms a band with the classes; its own channel is dropped
    foreign = _columns([0] * 5 + [200] * 5)
    b = mask_to_boundaries(foreign, 2, 2.0, backend=backend)
    assert np.array_equal(b[0], expected) and not b[1].any()


def test_radius_below_one_gives_nothing():
    mask = _columns([0] * 5 + [1] * 5)
    assert not mask_to_boundaries(mask, 2, 0.9).any()
    assert not mask_to_boundaries_torch(torch.from_numpy(mask), 2, 0.9).any()


def test_width_invariance_under_upscale_and_crop():
    # rectangle of class 1 on class 0; the network sees a 2x upscaled crop: bands must still be 2r = 4 px wide
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    up = cv2.resize(mask, (80, 80), interpolation=cv2.INTER_NEAREST)
    crop = up[10:70, 10:70]  # rectangle at rows/cols 10..49 of the crop
    orig_band = mask_to_boundaries(mask, 2, 2.0)[1]
    crop_band = mask_to_boundaries(crop, 2, 2.0)[1]
    assert orig_band[20].sum() == crop_band[30].sum() == 8  # two edges x 4 px across a middle row
    # pre-computed bands, upscaled the same way, would be twice as wide (paper Fig. 9)
    stretched = cv2.resize(orig_band.astype(np.uint8), (80, 80), interpolation=cv2.INTER_NEAREST)[10:70, 10:70]
    assert stretched[30].sum() == 16


# ------------------------------------------------------------------------------------------------------------------
# torch twin


def test_torch_matches_numpy_on_random_batches():
    rng = np.random.default_rng(7)
    for n in range(12):
        mask, K, instance = random_case(rng)
        radius = RADII[n % len(RADII)]
        masks = np.stack([mask, np.flipud(mask).copy(), np.fliplr(mask).copy()])
        inst = None if instance is None else np.stack([instance, np.flipud(instance), np.fliplr(instance)])
        expected = np.stack(
            [mask_to_boundaries(masks[i], K, radius, 255, None if inst is None else inst[i]) for i in range(3)]
        )
        got = mask_to_boundaries_torch(
            torch.from_numpy(masks), K, radius, 255, None if inst is None else torch.from_numpy(inst.copy())
        )
        assert got.dtype == torch.bool and got.shape == (3, K, *mask.shape)
        assert np.array_equal(got.numpy(), expected), f"case {n}: r={radius} K={K}"


def test_torch_2d_input_and_errors():
    mask = _columns([0] * 5 + [1] * 5)
    assert np.array_equal(mask_to_boundaries_torch(torch.from_numpy(mask), 2).numpy(), mask_to_boundaries(mask, 2))
    with pytest.raises(ValueError, match="integer"):
        mask_to_boundaries_torch(torch.zeros(1, 4, 4), 2)
    with pytest.raises(ValueError, match="ignore_index"):
        mask_to_boundaries_torch(torch.zeros(1, 4, 4, dtype=torch.long), 2, ignore_index=1)


# ------------------------------------------------------------------------------------------------------------------
# Packing, binary union, RGB-PNG


@pytest.mark.parametrize("K", [1, 7, 8, 9, 19, 24, 150])
def test_pack_unpack_round_trip(K):
    rng = np.random.default_rng(K)
    b = rng.random((K, 5, 7)) < 0.3
    packed = pack_boundaries(b)
    assert packed.dtype == np.uint8 and packed.shape == ((K + 7) // 8, 5, 7)
    assert np.array_equal(unpack_boundaries(torch.from_numpy(packed), K).numpy(), b)
    batch = torch.from_numpy(np.stack([packed, packed[:, ::-1].copy()]))
    assert np.array_equal(unpack_boundaries(batch, K).numpy(), np.stack([b, b[:, ::-1]]))


def test_pack_bit_layout():
    b = np.zeros((10, 1, 2), bool)
    b[9, 0, 0] = True  # class 9 -> byte 1, bit 1 -> value 2
    b[0, 0, 1] = b[7, 0, 1] = True  # classes 0 and 7 -> byte 0, value 1 + 128
    packed = pack_boundaries(b)
    assert packed[:, 0, 0].tolist() == [0, 2] and packed[:, 0, 1].tolist() == [129, 0]
    with pytest.raises(ValueError, match="num_classes"):
        unpack_boundaries(torch.from_numpy(packed), 17)


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_output_equals_packing_the_dense_output(backend):
    rng = np.random.default_rng(3)
    for n in range(20):
        mask, K, instance = random_case(rng)
        dense = mask_to_boundaries(mask, K, RADII[n % len(RADII)], 255, instance, backend=backend)
        packed = mask_to_packed_boundaries(mask, K, RADII[n % len(RADII)], 255, instance, backend=backend)
        assert np.array_equal(packed, pack_boundaries(dense))


def test_boundaries_to_binary():
    b = np.zeros((3, 2, 2), bool)
    b[0, 0, 0] = b[2, 1, 1] = True
    assert boundaries_to_binary(b).tolist() == [[True, False], [False, True]]
    t = torch.from_numpy(np.stack([b, b[::-1]])).to(torch.uint8)
    out = boundaries_to_binary(t)
    assert out.dtype == torch.bool and out.shape == (2, 1, 2, 2)
    assert out[:, 0].tolist() == [[[True, False], [False, True]]] * 2


def test_rgb_png_bit_layout_and_round_trip(tmp_path):
    b = np.zeros((24, 1, 4), bool)
    b[0, 0, 0] = True  # class 0 -> bit 0 of B
    b[8, 0, 1] = True  # class 8 -> bit 0 of G
    b[23, 0, 2] = True  # class 23 -> bit 7 of R
    b[[1, 9, 17], 0, 3] = True  # B = 2, G = 2, R = 2
    rgb = encode_rgb_png(b)
    assert rgb[0].tolist() == [[0, 0, 1], [0, 1, 0], [128, 0, 0], [2, 2, 2]]
    path = str(tmp_path / "edge.png")
    write_boundary_png(path, b)
    bgr = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # OpenCV gives BGR: the B byte comes first
    assert bgr[0, 0].tolist() == [1, 0, 0] and bgr[0, 2].tolist() == [0, 0, 128]
    assert np.array_equal(read_boundary_png(path, 24), b)
    rng = np.random.default_rng(0)
    r = rng.random((19, 9, 11)) < 0.2
    write_boundary_png(path, r)
    assert np.array_equal(read_boundary_png(path, 19), r)
    assert np.array_equal(decode_rgb_png(encode_rgb_png(r), 19), r)
    with pytest.raises(ValueError, match="24 classes"):
        encode_rgb_png(np.zeros((25, 2, 2), bool))


# ------------------------------------------------------------------------------------------------------------------
# Input errors


def test_clear_errors():
    mask = np.zeros((4, 4), np.int64)
    with pytest.raises(ValueError, match="integer"):
        mask_to_boundaries(mask.astype(np.float32), 2)
    with pytest.raises(ValueError, match="2-D"):
        mask_to_boundaries(mask[None], 2)
    with pytest.raises(ValueError, match="also a class id"):
        mask_to_boundaries(mask, 19, ignore_index=3)
    with pytest.raises(ValueError, match="radius"):
        mask_to_boundaries(mask, 2, radius=0)
    with pytest.raises(ValueError, match="shape"):
        mask_to_boundaries(mask, 2, instance_mask=np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="backend"):
        mask_to_boundaries(mask, 2, backend="gpu")


def test_backend_is_an_explicit_choice_and_numba_loads_only_for_it():
    # opencv never touches numba; backend="numba" imports the compiled kernels (sbcb._boundary_kernels), and both
    # give the same bands on a two-class step (the reference comparison above checks them case by case)
    code = (
        "import sys, numpy as np\n"
        "from sbcb.boundaries import mask_to_boundaries\n"
        "m = np.zeros((6, 8), np.int64); m[:, 4:] = 1\n"
        "a = mask_to_boundaries(m, 2, 2.0, backend='opencv')\n"
        "print('numba' in sys.modules, 'sbcb._boundary_kernels' in sys.modules)\n"
        "if len(sys.argv) > 1:\n"
        "    b = mask_to_boundaries(m, 2, 2.0, backend='numba')\n"
        "    print('sbcb._boundary_kernels' in sys.modules, bool((a == b).all()))\n"
    )
    args = [sys.executable, "-c", code] + (["numba"] if bd._HAS_NUMBA else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "False False"
    if bd._HAS_NUMBA:
        assert lines[1] == "True True"


def test_many_classes_match_reference():
    # K = 150 (ADE20K): class ids >= 64 bypass the numba kernel's 64-bit "already written" set
    rng = np.random.default_rng(5)
    for n in range(4):
        coarse = rng.integers(60, 152, size=(6, 7)).astype(np.int32)
        mask = cv2.resize(coarse, (21, 18), interpolation=cv2.INTER_NEAREST).astype(np.int64)
        mask[rng.random(mask.shape) < 0.1] = 255
        instance = np.where(rng.random(mask.shape) < 0.5, 7, 0).astype(np.int32) if n % 2 else None
        expected = reference_boundaries(mask, 150, 2.0 + n, 255, instance)
        for backend in BACKENDS:
            assert np.array_equal(mask_to_boundaries(mask, 150, 2.0 + n, 255, instance, backend=backend), expected)
        # K = 300 > 254: the auto back-end falls back to OpenCV with uint16 codes; ignore must then be >= 300
        wide = np.where(mask == 255, 1000, mask)
        expected = reference_boundaries(wide, 300, 2.0, 1000, instance)
        assert np.array_equal(mask_to_boundaries(wide, 300, 2.0, 1000, instance), expected)
