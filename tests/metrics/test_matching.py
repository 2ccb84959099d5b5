"""Exact maximum matching: Hopcroft–Karp equals a brute-force augmenting-path matcher and SciPy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import maximum_bipartite_matching

from sbcb.metrics import _kernels
from sbcb.metrics.matching import disk_offsets, match_count, match_count_scipy


def _brute_force_max_matching(adj: list[list[int]], n_right: int) -> int:
    """Kuhn's algorithm: try an augmenting path from every left vertex (obviously correct, O(V·E))."""
    match_r = [-1] * n_right

    def augment(u, seen):
        for v in adj[u]:
            if not seen[v]:
                seen[v] = True
                if match_r[v] < 0 or augment(match_r[v], seen):
                    match_r[v] = u
                    return True
        return False

    return sum(augment(u, [False] * n_right) for u in range(len(adj)))


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("seed", range(3))
def test_hopcroft_karp_equals_brute_force_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        nl, nr = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        dense = rng.random((nl, nr)) < rng.uniform(0.02, 0.4)
        adj = [list(np.nonzero(row)[0]) for row in dense]
        g = sparse.csr_matrix(dense.astype(np.int8))
        got = _kernels.hopcroft_karp(g.indptr.astype(np.int64), g.indices.astype(np.int64), nl, nr)
        assert got == _brute_force_max_matching(adj, nr)
        assert got == int((maximum_bipartite_matching(g, perm_type="column") >= 0).sum())


def test_hand_worked_greedy_trap():
    # Left 0 -- {0, 1}, left 1 -- {0}. Greedy left 0 -> right 0 blocks left 1; the maximum is 2 (0-1, 1-0).
    assert _brute_force_max_matching([[0, 1], [0]], 2) == 2
    if _kernels.HAVE_NUMBA:
        assert _kernels.hopcroft_karp(np.array([0, 2, 3]), np.array([0, 1, 0]), 2, 2) == 2


def test_disk_offsets_at_cityscapes_half_scale():
    # 0.0035 x diagonal of 512x1024 = 4.007 px: (4,0) and (3,2) match, (4,1) and (3,3) do not (spec §8.3.1).
    dy, dx = disk_offsets(0.0035 * np.hypot(512, 1024))
    pairs = set(zip(dy.tolist(), dx.tolist()))
    assert (4, 0) in pairs and (3, 2) in pairs and (0, -4) in pairs
    assert (4, 1) not in pairs and (3, 3) not in pairs
    # Lattice points with d² <= 16.06: d² in {0,1,2,4,5,8,9,10,13,16}: 1+4+4+4+8+4+4+8+8+4 = 49.
    assert len(pairs) == 49


@pytest.mark.parametrize("seed", range(3))
def test_pixel_matching_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    for _ in range(10):
        pred = rng.random((12, 14)) < 0.15
        gt = rng.random((12, 14)) < 0.15
        r = float(rng.choice([1.0, 1.5, 2.004]))
        p = np.argwhere(pred)
        g = np.argwhere(gt)
        d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
        adj = [list(np.nonzero(row <= r * r)[0]) for row in d2]
        expected = _brute_force_max_matching(adj, len(g))
        assert match_count(pred, gt, r) == expected
        assert match_count_scipy(pred, gt, r) == expected
