"""Tests for sbcb.boundaries against an independent, slow scipy-EDT implementation of the definition (spec §2.2)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from sbcb import boundaries as bd
from sbcb.boundaries import (
    mask_to_boundaries,
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_edt_reference_on_random_maps(backend):
    rng = np.random.default_rng(1234)
    n_cases = 0
    for _ in range(300):
        mask, K, instance = random_case(rng)
        radius = RADII[n_cases % len(RADII)]
        n_cases += 1
        expected = reference_boundaries(mask, K, radius, 255, instance)
        got = mask_to_boundaries(mask, K, radius, 255, instance, backend=backend)
        assert got.dtype == bool and got.shape == expected.shape
        if not np.array_equal(got, expected):
            diff = np.argwhere(got != expected)[:5]
            pytest.fail(f"case {n_cases}: r={radius} K={K} shape={mask.shape} IS={instance is not None} diff at {diff}")
