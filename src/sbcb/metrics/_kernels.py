"""Numba kernels for the SBD evaluator: thinning on a pixel list, Hopcroft–Karp, and the per-class counts loop.

Everything here is optional: `HAVE_NUMBA` is False when numba is missing and callers fall back to the pure
NumPy/SciPy code in `thinning.py` / `matching.py` (same results, slower). Kernels work on a zero-padded frame so
that neighbour reads never leave the array; the frame is restored to all-zero before a kernel returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

numba: Any
try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pure NumPy/SciPy fallback
    numba = None
    HAVE_NUMBA = False


def _njit(fn):
    if not HAVE_NUMBA:
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


@_njit
def _neighbour_code(img, y, x):  # pragma: no cover - compiled
    """Byte of the 8-neighbourhood: bit i-1 = x_i, x1 = E, x2 = NE, ... anticlockwise (see thinning.py)."""
    return (
        img[y, x + 1]
        | (img[y - 1, x + 1] << 1)
        | (img[y - 1, x] << 2)
        | (img[y - 1, x - 1] << 3)
        | (img[y, x - 1] << 4)
        | (img[y + 1, x - 1] << 5)
        | (img[y + 1, x] << 6)
        | (img[y + 1, x + 1] << 7)
    )


@_njit
def thin_points_ws(
    img, ys, xs, n, lut_first, lut_second, max_iter, stamp, step, stop_on_idle_half
):  # pragma: no cover - compiled
    """Thin the foreground of `img` in place; the foreground is exactly the `n` pixels (ys[k], xs[k]).

    Same result as the standard algorithm (every pixel re-examined at every subiteration), but after the first
    two subiterations only pixels next to a pixel deleted in the last two subiterations are examined: a pixel
    whose neighbourhood did not change since its last examination under the same subiteration cannot change its
    verdict. The cost is O(n + deletions) instead of O(n × iterations).

    Args:
        img: uint8 [H', W'] 0/1 frame with a zero border of >= 1 px.
        ys, xs: int64 [>= n] frame coordinates of the foreground pixels; compacted in place to the survivors.
        n: Number of foreground pixels.
        lut_first, lut_second: bool [256] deletion tables of the two subiterations.
        max_iter: Maximum number of full iterations, -1 = to convergence.
        stamp: int64 [H', W'] workspace, all values < `step` on entry.
        step: Current stamp value.
        stop_on_idle_half: Stop as soon as one subiteration removes nothing (pyEdgeEval's `binary_thin`), instead
            of when a full iteration removes nothing (standard, = skimage).

    Returns:
        (surviving pixel count n', next unused stamp value); the survivors are ys[:n'], xs[:n'].
    """
    if n == 0:
        return 0, step
    cy = np.empty(n, dtype=np.int64)
    cx = np.empty(n, dtype=np.int64)
    dy_cur = np.empty(n, dtype=np.int64)
    dx_cur = np.empty(n, dtype=np.int64)
    dy_1 = np.empty(n, dtype=np.int64)  # deletions one subiteration ago
    dx_1 = np.empty(n, dtype=np.int64)
    dy_2 = np.empty(n, dtype=np.int64)  # deletions two subiterations ago
    dx_2 = np.empty(n, dtype=np.int64)
    nd1 = 0
    nd2 = 0
    sub_count = 0
    full_iters = 0
    removed_iter = 0
    while True:
        sub = sub_count % 2
        lut = lut_first if sub == 0 else lut_second
        # Candidates of this subiteration.
        nc = 0
        if sub_count < 2:
            for k in range(n):
                if img[ys[k], xs[k]] != 0:
                    cy[nc] = ys[k]
                    cx[nc] = xs[k]
                    nc += 1
        else:
            for src in range(2):
                nd = nd1 if src == 0 else nd2
                for j in range(nd):
                    qy = dy_1[j] if src == 0 else dy_2[j]
                    qx = dx_1[j] if src == 0 else dx_2[j]
                    for oy in range(-1, 2):
                        for ox in range(-1, 2):
                            py = qy + oy
                            px = qx + ox
                            if img[py, px] != 0 and stamp[py, px] != step:
                                stamp[py, px] = step
                                cy[nc] = py
                                cx[nc] = px
                                nc += 1
        step += 1
        # Decide on the unchanged picture, then delete together.
        nd = 0
        for j in range(nc):
            if lut[_neighbour_code(img, cy[j], cx[j])]:
                dy_cur[nd] = cy[j]
                dx_cur[nd] = cx[j]
                nd += 1
        for j in range(nd):
            img[dy_cur[j], dx_cur[j]] = 0
        removed_iter += nd
        if stop_on_idle_half and nd == 0:
            break
        # Rotate the deletion lists: current -> 1 ago -> 2 ago.
        ty, tx = dy_2, dx_2
        dy_2, dx_2, nd2 = dy_1, dx_1, nd1
        dy_1, dx_1, nd1 = dy_cur, dx_cur, nd
        dy_cur, dx_cur = ty, tx
        sub_count += 1
        if sub == 1:
            full_iters += 1
            if removed_iter == 0:
                break
            removed_iter = 0
            if max_iter >= 0 and full_iters >= max_iter:
                break
    m = 0
    for k in range(n):
        if img[ys[k], xs[k]] != 0:
            ys[m] = ys[k]
            xs[m] = xs[k]
            m += 1
    return m, step


@_njit
def thin_points(img, ys, xs, n, lut_first, lut_second, max_iter, stop_on_idle_half):  # pragma: no cover - compiled
    """`thin_points_ws` with its own workspace; returns the surviving pixel count."""
    stamp = np.zeros(img.shape, dtype=np.int64)
    m, _ = thin_points_ws(img, ys, xs, n, lut_first, lut_second, max_iter, stamp, 1, stop_on_idle_half)
    return m


@_njit
def hopcroft_karp(adj_start, adj, n_left, n_right):  # pragma: no cover - compiled
    """Size of a maximum matching of a bipartite graph in CSR form (Hopcroft–Karp).

    Args:
        adj_start: int64 [n_left + 1]; the neighbours of left vertex u are adj[adj_start[u]:adj_start[u + 1]].
        adj: int64 right-vertex ids in 0..n_right-1.
        n_left, n_right: Vertex counts.

    Returns:
        The number of matched pairs.
    """
    inf = n_left + 1
    match_l = np.full(n_left, -1, dtype=np.int64)
    match_r = np.full(n_right, -1, dtype=np.int64)
    size = 0
    # Greedy start: most vertices of these geometric graphs match at once.
    for u in range(n_left):
        for e in range(adj_start[u], adj_start[u + 1]):
            v = adj[e]
            if match_r[v] < 0:
                match_r[v] = u
                match_l[u] = v
                size += 1
                break
    dist = np.empty(n_left, dtype=np.int64)
    queue = np.empty(n_left, dtype=np.int64)
    it = np.empty(n_left, dtype=np.int64)
    stack = np.empty(n_left, dtype=np.int64)
    while True:
        # BFS layers from the free left vertices.
        qh = 0
        qt = 0
        for u in range(n_left):
            if match_l[u] < 0:
                dist[u] = 0
                queue[qt] = u
                qt += 1
            else:
                dist[u] = inf
        found = False
        while qh < qt:
            u = queue[qh]
            qh += 1
            for e in range(adj_start[u], adj_start[u + 1]):
                w = match_r[adj[e]]
                if w < 0:
                    found = True
                elif dist[w] == inf:
                    dist[w] = dist[u] + 1
                    queue[qt] = w
                    qt += 1
        if not found:
            break
        # DFS along the layers, vertex-disjoint augmenting paths.
        for u in range(n_left):
            it[u] = adj_start[u]
        for root in range(n_left):
            if match_l[root] >= 0:
                continue
            sp = 0
            stack[0] = root
            while sp >= 0:
                x = stack[sp]
                if it[x] < adj_start[x + 1]:
                    v = adj[it[x]]
                    it[x] += 1
                    w = match_r[v]
                    if w < 0:
                        # Augment: stack[j] takes the right vertex it was exploring.
                        for j in range(sp, -1, -1):
                            xj = stack[j]
                            vj = adj[it[xj] - 1]
                            match_l[xj] = vj
                            match_r[vj] = xj
                        size += 1
                        break
                    if dist[w] == dist[x] + 1:
                        sp += 1
                        stack[sp] = w
                else:
                    dist[x] = inf  # dead end for this phase
                    sp -= 1
    return size


@_njit
def class_counts(
    img, gidx, near, py, px, pv, cutoffs, offy, offx, n_gt, do_thin, lut_first, lut_second, stop_on_idle_half
):  # pragma: no cover - compiled
    """(count_r, sum_r, count_p, sum_p) of one image and class at every threshold.

    Args:
        img: uint8 [H', W'] all-zero work frame (padded image); left all-zero on return.
        gidx: int64 [H', W'] index 0..n_gt-1 of the GT pixel there, -1 elsewhere.
        near: uint8 [H', W'] 1 where a GT pixel lies within the matching distance.
        py, px: int64 frame coordinates of the candidate predicted pixels, sorted by value, largest first.
        pv: int64 their quantized values (0..255), non-increasing.
        cutoffs: int64 [T]; at threshold i a pixel is positive when its value >= cutoffs[i].
        offy, offx: int64 offsets (dy, dx) with dy² + dx² <= max_dist².
        n_gt: Number of GT pixels.
        do_thin: Thin the thresholded map first.
        lut_first, lut_second: thinning tables.
        stop_on_idle_half: pyEdgeEval's thinning stop rule (see `thin_points_ws`).

    Returns:
        int64 [T, 4].
    """
    t_count = cutoffs.shape[0]
    out = np.zeros((t_count, 4), dtype=np.int64)
    m = py.shape[0]
    ys = np.empty(m, dtype=np.int64)
    xs = np.empty(m, dtype=np.int64)
    n_off = offy.shape[0]
    n_near = 0
    for k in range(m):
        if near[py[k], px[k]] != 0:
            n_near += 1
    adj_start = np.empty(n_near + 1, dtype=np.int64)
    adj = np.empty(max(n_near * n_off, 1), dtype=np.int64)
    stamp = np.zeros(img.shape, dtype=np.int64)
    step = 1
    prev_n = -1
    for i in range(t_count):
        # The positive set is the prefix of the sorted pixels with value >= cutoff.
        lo = 0
        hi = m
        while lo < hi:
            mid = (lo + hi) // 2
            if pv[mid] >= cutoffs[i]:
                lo = mid + 1
            else:
                hi = mid
        n = lo
        if n == prev_n:  # same map as the previous threshold: same counts
            for j in range(4):
                out[i, j] = out[i - 1, j]
            continue
        prev_n = n
        for k in range(n):
            ys[k] = py[k]
            xs[k] = px[k]
            img[ys[k], xs[k]] = 1
        if do_thin:
            n, step = thin_points_ws(img, ys, xs, n, lut_first, lut_second, -1, stamp, step, stop_on_idle_half)
        matched = 0
        if n_gt > 0 and n > 0:
            nl = 0
            ne = 0
            for k in range(n):
                y = ys[k]
                x = xs[k]
                if near[y, x] == 0:
                    continue
                adj_start[nl] = ne
                for o in range(n_off):
                    g = gidx[y + offy[o], x + offx[o]]
                    if g >= 0:
                        adj[ne] = g
                        ne += 1
                nl += 1
            adj_start[nl] = ne
            matched = hopcroft_karp(adj_start, adj, nl, n_gt)
        out[i, 0] = matched
        out[i, 1] = n_gt
        out[i, 2] = matched
        out[i, 3] = n
        for k in range(n):
            img[ys[k], xs[k]] = 0
    return out
