"""The numba back-end of `sbcb.boundaries.mask_to_boundaries`: one pass over the pixels (`backend="numba"`).

Importing this module imports numba (optional, `pip install "sbcb[fast]"`) and defines the compiled kernels; it is
imported only when that back-end is chosen, so `import sbcb.boundaries` stays light. The kernels are module-level
functions so that `cache=True` finds them again in every new process (DataLoader workers).
"""

from __future__ import annotations

import numba
import numpy as np

_njit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_njit
def emit(out, packed, c, y, x, seen):
    # `seen` is a 64-bit set of the classes already written for this pixel (classes >= 64 are re-written)
    if c < 64:
        bit = np.uint64(1) << np.uint64(c)
        if seen & bit:
            return seen
        seen |= bit
    if packed:
        out[c >> 3, y, x] |= np.uint8(1 << (c & 7))
    else:
        out[c, y, x] = 1
    return seen


@_njit
def prepare(mask, num_classes, ignore_index, reach, width_padded):
    """Class codes (0..K-1, K = foreign, 255 = ignore), padded by `reach` (and on the right up to `width_padded`)
    with the ignore code, so that out-of-image pixels act like ignore (both contribute nothing)."""
    H, W = mask.shape
    code = np.full((H + 2 * reach, width_padded), 255, np.uint8)
    for y in range(H):
        for x in range(W):
            v = mask[y, x]
            code[y + reach, x + reach] = 255 if v == ignore_index else (v if 0 <= v < num_classes else num_classes)
    return code


@_njit
def instance_change_padded(inst, reach, width_padded):
    """1 where the right or lower neighbour has another instance id, in the padded layout of `prepare`."""
    H, W = inst.shape
    out = np.zeros((H + 2 * reach, width_padded), np.uint8)
    for y in range(H):
        y1 = min(y + 1, H - 1)
        row = out[y + reach, reach : reach + W]
        a = inst[y]
        below = inst[y1]
        for x in range(W - 1):
            row[x] = (a[x] != a[x + 1]) | (a[x] != below[x])
        row[W - 1] = a[W - 1] != below[W - 1]
    return out


@_njit
def kernel(code, work, distinct, inst, offsets, inst_offsets, pair_len_m, pair_len_n, num_classes, out, packed):
    # code/work/distinct are padded by R = floor(r) (and on the right to a multiple of 8) with neutral values, so
    # neighbours need no bounds checks. inst is not padded: it is read only where `code` says the pixel is valid,
    # hence inside the image. `work` marks the only pixels that can be positive; it is scanned 8 bytes at a time.
    ign = 255
    _, H, W = out.shape
    Wp = code.shape[1]
    R = (code.shape[0] - H) // 2
    flat = code.ravel()
    dflat = distinct.ravel()
    wflat = work.ravel()
    words = wflat.view(np.uint64)
    iflat = inst.ravel()
    use_inst = inst.shape[0] == H and inst.shape[1] == W
    n_disk = offsets.shape[0]
    n_pairs = pair_len_m.shape[0]
    max_len_m = pair_len_m[n_pairs - 1] if n_pairs > 0 else 0
    for y in range(H):
        row = (y + R) * Wp
        for wi in range(Wp // 8):
            if words[(row >> 3) + wi] == 0:
                continue
            for xp in range(max(8 * wi, R), min(8 * wi + 8, R + W)):
                i = row + xp
                if wflat[i] == 0:
                    continue
                x = xp - R
                ibase = y * W + x
                c = flat[i]
                seen = np.uint64(0)
                if c == ign:
                    if n_pairs == 0:
                        continue
                    j = -1  # nearest valid pixel (offsets are sorted by distance)
                    for k in range(max_len_m):
                        if flat[i + offsets[k]] != ign:
                            j = k
                            break
                    if j < 0:
                        continue
                    p = 0
                    while pair_len_m[p] <= j:
                        p += 1
                    len_n = pair_len_n[p]
                    c0 = -1
                    i0 = 0
                    two_keys = False
                    for k in range(len_n):
                        cq = flat[i + offsets[k]]
                        if cq == ign:
                            continue
                        iq = iflat[ibase + inst_offsets[k]] if (use_inst and cq < num_classes) else 0
                        if c0 < 0:
                            c0 = cq
                            i0 = iq
                        elif cq != c0 or iq != i0:
                            two_keys = True
                            break
                    if two_keys:
                        for k in range(len_n):
                            cq = flat[i + offsets[k]]
                            if cq < num_classes:  # ign and the foreign class are >= num_classes
                                seen = emit(out, packed, cq, y, x, seen)
                    continue
                hit = dflat[i] != 0
                if not hit and use_inst and c < num_classes:
                    # one class in the disk, but an instance change nearby: look for another id of that class
                    i0 = iflat[ibase]
                    for k in range(n_disk):
                        if flat[i + offsets[k]] == c and iflat[ibase + inst_offsets[k]] != i0:
                            hit = True
                            break
                if not hit:
                    continue
                if c < num_classes:
                    seen = emit(out, packed, c, y, x, seen)
                for k in range(n_disk):
                    cq = flat[i + offsets[k]]
                    if cq < num_classes:
                        seen = emit(out, packed, cq, y, x, seen)
