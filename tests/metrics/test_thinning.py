"""Thinning equals skimage.morphology.thin (the standard algorithm) on random blobs, both code paths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sbcb.metrics import _kernels
from sbcb.metrics.thinning import LUT_FIRST, LUT_SECOND, thin, thin_numpy

skimage_morphology = pytest.importorskip("skimage.morphology")


def _blobs(rng, shape=(32, 48)):
    m = ndimage.binary_dilation(rng.random(shape) < 0.04, iterations=int(rng.integers(1, 5)))
    return m & (rng.random(shape) < 0.95)  # holes make loops and spurs


def test_lut_hand_checked_entries():
    # An isolated pixel (code 0): crossing number 0 -> never deleted. An end point with only E set (code 1): n1 = n2 = 1
    # -> G2 fails -> kept. A pixel on the straight east edge of a thick block: neighbours N, NW, W, SW, S set
    # (codes 4 + 8 + 16 + 32 + 64 = 124), x1 = 0 -> X_H = 1, n1 = n2 = 3, G3: (x2|x3|~x8) & x1 = 0 -> deleted in
    # the first subiteration; in the second, G3': (x6|x7|~x4) & x5 = 1 -> kept.
    assert not LUT_FIRST[0] and not LUT_SECOND[0]
    assert not LUT_FIRST[1] and not LUT_SECOND[1]
    assert LUT_FIRST[124] and not LUT_SECOND[124]


@pytest.mark.parametrize("seed", range(4))
def test_equals_skimage_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(15):
        m = _blobs(rng)
        ref = skimage_morphology.thin(m)
        np.testing.assert_array_equal(thin(m), ref)
        np.testing.assert_array_equal(thin_numpy(m), ref)
        it = int(rng.integers(1, 3))
        np.testing.assert_array_equal(thin(m, max_iter=it), skimage_morphology.thin(m, max_num_iter=it))


def test_edge_cases():
    assert not thin(np.zeros((5, 5), bool)).any()
    full = np.ones((7, 9), bool)  # touches the border: out-of-image pixels are background
    np.testing.assert_array_equal(thin(full), skimage_morphology.thin(full))
    line = np.zeros((5, 9), bool)
    line[2, 1:8] = True  # already 1 px wide: unchanged
    np.testing.assert_array_equal(thin(line), line)
    with pytest.raises(ValueError):
        thin(np.zeros(5, bool))
    with pytest.raises(ValueError):
        thin(line, variant="matlab")


def test_pyedgeeval_variant_stops_at_first_idle_subiteration():
    # The variant can only keep extra pixels: it stops no later than the standard algorithm, and both are subsets
    # of the input. On a 2-px thick L it must agree with the standard one (both halves keep deleting until done).
    rng = np.random.default_rng(7)
    for _ in range(20):
        m = _blobs(rng)
        std = thin_numpy(m)
        var = thin_numpy(m, variant="pyedgeeval")
        assert (std <= var).all() and (var <= m).all()
        np.testing.assert_array_equal(thin(m, variant="pyedgeeval"), var)


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not installed")
def test_kernel_restores_workspace_and_reports_survivors():
    rng = np.random.default_rng(3)
    m = _blobs(rng)
    img = np.pad(m, 1).astype(np.uint8)
    ys, xs = np.nonzero(img)
    n = _kernels.thin_points(img, ys.astype(np.int64), xs.astype(np.int64), ys.size, LUT_FIRST, LUT_SECOND, -1, False)
    assert n == int(skimage_morphology.thin(m).sum()) == int(img.sum())
