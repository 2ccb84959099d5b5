"""Morphological thinning to 1-px curves (MATLAB `bwmorph(bw, 'thin', Inf)`, = `skimage.morphology.thin`).

The standard two-subiteration algorithm (Lam, Lee & Suen 1992, "Thinning methodologies", algorithm A1): in each
subiteration every foreground pixel whose 8-neighbourhood satisfies G1 ∧ G2 ∧ G3 (resp. G3') is removed in
parallel; the two subiterations alternate until a full iteration removes nothing. Neighbours x1..x8 run
anticlockwise from east: x1 = E, x2 = NE, x3 = N, x4 = NW, x5 = W, x6 = SW, x7 = S, x8 = SE.

- G1: the crossing number X_H = #{i in 1..4 : x_{2i-1} = 0 and (x_{2i} = 1 or x_{2i+1} = 1)} equals 1 (x9 = x1).
- G2: 2 <= min(n1, n2) <= 3 with n1 = sum_k (x_{2k-1} or x_{2k}), n2 = sum_k (x_{2k} or x_{2k+1}).
- G3 (first subiteration): (x2 or x3 or not x8) and x1 is false.
- G3' (second subiteration): (x6 or x7 or not x4) and x5 is false.

A neighbourhood is encoded as the byte sum_i x_i << (i - 1); the two lookup tables map that byte to "delete".
Out-of-image pixels are background.

`variant="pyedgeeval"` reproduces pyEdgeEval 0.2.8's `binary_thin`, which stops right after the first subiteration
that removes nothing (so a few maps keep 1-12 extra pixels); checked equal on random blobs by running it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _thinning_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables [256] bool for the first and the second subiteration."""
    lut1 = np.zeros(256, dtype=bool)
    lut2 = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [None] + [(code >> (i - 1)) & 1 for i in range(1, 9)] + [code & 1]  # x[1..8], x[9] = x1
        crossing = sum(1 for i in range(1, 5) if x[2 * i - 1] == 0 and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(1 for k in range(1, 5) if x[2 * k - 1] or x[2 * k])
        n2 = sum(1 for k in range(1, 5) if x[2 * k] or x[2 * k + 1])
        g12 = crossing == 1 and 2 <= min(n1, n2) <= 3
        lut1[code] = g12 and not ((x[2] or x[3] or not x[8]) and x[1])
        lut2[code] = g12 and not ((x[6] or x[7] or not x[4]) and x[5])
    return lut1, lut2


LUT_FIRST, LUT_SECOND = _thinning_luts()

# Correlation weights that turn a 3x3 neighbourhood into the byte above: E=1, NE=2, N=4, NW=8, W=16, SW=32, S=64,
# SE=128 (rows run north to south).
_WEIGHTS = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], dtype=np.int32)


VARIANTS = ("standard", "pyedgeeval")


def _check_variant(variant: str) -> bool:
    """True for the pyEdgeEval stop rule."""
    if variant not in VARIANTS:
        raise ValueError(f"thinning variant must be one of {VARIANTS}, got {variant!r}")
    return variant == "pyedgeeval"


def _check_mask(mask: np.ndarray) -> np.ndarray:
    """`mask` as a bool [H, W] array."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"thinning needs a 2-D mask, got shape {m.shape}")
    return m


def thin_numpy(mask: np.ndarray, *, max_iter: int | None = None, variant: str = "standard") -> np.ndarray:
    """`thin` with whole-array NumPy/SciPy operations (the pure fallback): same arguments, same result."""
    early = _check_variant(variant)
    m = _check_mask(mask)
    out = np.zeros_like(m)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return out
    # Thinning is local, so work on the bounding box plus a 1-px background frame.
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    skel = np.zeros((y1 - y0 + 2, x1 - x0 + 2), dtype=np.int32)
    skel[1:-1, 1:-1] = m[y0:y1, x0:x1]
    n_iter = 0
    idle_half = False
    while (max_iter is None or n_iter < max_iter) and not idle_half:
        removed = 0
        for lut in (LUT_FIRST, LUT_SECOND):
            code = ndimage.correlate(skel, _WEIGHTS, mode="constant", cval=0)
            delete = lut[code] & (skel == 1)
            n_del = int(delete.sum())
            skel[delete] = 0
            removed += n_del
            if early and n_del == 0:
                idle_half = True
                break
        n_iter += 1
        if removed == 0:
            break
    out[y0:y1, x0:x1] = skel[1:-1, 1:-1].astype(bool)
    return out


def thin(mask: np.ndarray, *, max_iter: int | None = None, variant: str = "standard") -> np.ndarray:
    """Thin a binary image to 1-px curves; numba kernel when available, else `thin_numpy`.

    Args:
        mask: bool [H, W].
        max_iter: Stop after this many full iterations (None = to convergence).
        variant: ``"standard"`` (= skimage / MATLAB) or ``"pyedgeeval"`` (stop at the first idle subiteration).

    Returns:
        bool [H, W], a subset of `mask`, equal to `skimage.morphology.thin(mask, max_iter)`.
    """
    from sbcb.metrics import _kernels

    early = _check_variant(variant)
    m = _check_mask(mask)
    if not _kernels.HAVE_NUMBA:
        return thin_numpy(m, max_iter=max_iter, variant=variant)
    img = np.zeros((m.shape[0] + 2, m.shape[1] + 2), dtype=np.uint8)
    img[1:-1, 1:-1] = m
    ys, xs = np.nonzero(img)
    n = _kernels.thin_points(
        img,
        ys.astype(np.int64),
        xs.astype(np.int64),
        ys.size,
        LUT_FIRST,
        LUT_SECOND,
        -1 if max_iter is None else int(max_iter),
        early,
    )
    return img[1:-1, 1:-1].astype(bool) if n >= 0 else m
