"""One-to-one matching of predicted and GT boundary pixels within a distance (exact maximum matching).

BSDS `correspondPixels` (used by pyEdgeEval and SEAL) solves a randomized min-cost assignment whose optimum is a
maximum-cardinality matching of the pairs within `max_dist`; only its size enters the metric. Here the maximum
matching is computed exactly (Hopcroft–Karp), so counts are deterministic and never below the reference's.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching


def disk_offsets(max_dist_px: float) -> tuple[np.ndarray, np.ndarray]:
    """All integer offsets (dy, dx) with dy² + dx² <= max_dist_px², the pairs that may match.

    Args:
        max_dist_px: Matching distance in pixels (> 0).

    Returns:
        (dy, dx), two int64 arrays, in row-major order of the offsets.
    """
    if not max_dist_px >= 0:
        raise ValueError(f"max_dist_px must be >= 0, got {max_dist_px}")
    r = int(np.floor(max_dist_px))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = (dy * dy + dx * dx) <= max_dist_px * max_dist_px
    return dy[keep].astype(np.int64), dx[keep].astype(np.int64)


def pair_graph(pred: np.ndarray, gt: np.ndarray, max_dist_px: float) -> sparse.csr_matrix:
    """Bipartite graph of predicted × GT pixels within `max_dist_px` (NumPy, vectorized over offsets).

    Args:
        pred: bool [H, W] predicted boundary pixels.
        gt: bool [H, W] GT boundary pixels.
        max_dist_px: Matching distance in pixels.

    Returns:
        CSR [n_pred, n_gt] 0/1 matrix; rows follow np.nonzero(pred), columns np.nonzero(gt).
    """
    h, w = gt.shape
    n_p = int(pred.sum())
    n_g = int(gt.sum())
    pidx = np.full(pred.shape, -1, dtype=np.int64)
    pidx[pred] = np.arange(n_p)
    gidx = np.full(gt.shape, -1, dtype=np.int64)
    gidx[gt] = np.arange(n_g)
    py, px = np.nonzero(pred)
    rows, cols = [], []
    for dy, dx in zip(*disk_offsets(max_dist_px)):
        y = py + dy
        x = px + dx
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        g = np.full(py.shape, -1, dtype=np.int64)
        g[ok] = gidx[y[ok], x[ok]]
        hit = g >= 0
        rows.append(pidx[py[hit], px[hit]])
        cols.append(g[hit])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sparse.csr_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n_p, n_g))


def match_count_scipy(pred: np.ndarray, gt: np.ndarray, max_dist_px: float) -> int:
    """Size of a maximum one-to-one matching of `pred` and `gt` pixels within `max_dist_px` (SciPy fallback).

    Args:
        pred: bool [H, W].
        gt: bool [H, W].
        max_dist_px: Matching distance in pixels (pairs with dy² + dx² <= max_dist_px² may match).

    Returns:
        Number of matched pairs (= matched GT pixels = matched predicted pixels).
    """
    graph = pair_graph(np.asarray(pred, bool), np.asarray(gt, bool), max_dist_px)
    if graph.nnz == 0:
        return 0
    match = maximum_bipartite_matching(graph, perm_type="column")
    return int((match >= 0).sum())


def match_count(pred: np.ndarray, gt: np.ndarray, max_dist_px: float) -> int:
    """Size of a maximum one-to-one matching of `pred` and `gt` pixels within `max_dist_px`.

    Uses the numba Hopcroft–Karp kernel when numba is installed, else SciPy's.

    Args:
        pred: bool [H, W] predicted boundary pixels.
        gt: bool [H, W] GT boundary pixels.
        max_dist_px: Matching distance in pixels.

    Returns:
        Number of matched pairs.
    """
    from sbcb.metrics import _kernels

    if not _kernels.HAVE_NUMBA:
        return match_count_scipy(pred, gt, max_dist_px)
    graph = pair_graph(np.asarray(pred, bool), np.asarray(gt, bool), max_dist_px)
    return int(_kernels.hopcroft_karp(graph.indptr.astype(np.int64), graph.indices.astype(np.int64), *graph.shape))
