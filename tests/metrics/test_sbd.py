"""SBD evaluation: quantization, hand-worked counts and aggregation, GT preparation, backends, workers, cache."""

from __future__ import annotations

import numpy as np
import pytest

from sbcb.metrics import _kernels
from sbcb.metrics.sbd import (
    SBDEvaluator,
    cityscapes_sbd_gt,
    class_scores,
    decode_edge_png,
    encode_edge_png,
    evaluate_folders,
    image_counts,
    load_edge_png,
    make_thresholds,
    prepare_sbd_gt,
    quantize,
    resize_nearest,
    save_edge_png,
    save_prediction,
    value_cutoffs,
)

skimage_morphology = pytest.importorskip("skimage.morphology")


# ---------------------------------------------------------------------------------------------------- thresholds


def test_99_thresholds_and_8bit_cutoffs():
    t = make_thresholds(99)
    np.testing.assert_allclose(t, np.arange(1, 100) / 100, rtol=0, atol=1e-15)
    # v/255 >= i/100  <=>  100 v >= 255 i  <=>  v >= ceil(2.55 i): exact integer arithmetic as the reference.
    expected = (255 * np.arange(1, 100) + 99) // 100
    np.testing.assert_array_equal(value_cutoffs(t), expected)
    # Ties are positive: 51/255 == 0.2 exactly, so t = 0.2 keeps 51 and drops 50.
    assert value_cutoffs(np.array([0.2]))[0] == 51


def test_quantize_truncates_like_the_png_writer():
    p = np.array([0.0, 0.2, 0.19999, 0.999, 1.0, 1.5, -0.1])
    np.testing.assert_array_equal(quantize(p), [0, 51, 50, 254, 255, 255, 0])
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan]))


def test_resize_nearest_samples_odd_pixels_at_half_scale():
    a = np.arange(8 * 6).reshape(8, 6)
    np.testing.assert_array_equal(resize_nearest(a, (4, 3)), a[1::2, 1::2])


# ---------------------------------------------------------------------------------------------------- hand-worked


def _hand_case():
    """GT: a 10-px horizontal line. Prediction: the same line 1 px below at p = 0.5 and 4 far pixels at p = 0.9."""
    h, w = 16, 32
    gt = np.zeros((1, h, w), bool)
    gt[0, 5, 2:12] = True
    pred = np.zeros((1, h, w))
    pred[0, 6, 2:12] = 0.5
    pred[0, 12, 20:24] = 0.9
    max_dist = 1.5 / np.hypot(h, w)  # 1.5 px: offset (1, 0) matches, (2, 0) does not
    return pred, gt, max_dist


def test_hand_worked_counts():
    pred, gt, max_dist = _hand_case()
    for backend in ["numpy"] + (["numba"] if _kernels.HAVE_NUMBA else []):
        c = image_counts(pred, gt, thresholds=[0.3, 0.7], max_dist=max_dist, backend=backend)
        # t = 0.3: B = 10 + 4 px (1-px lines survive thinning), all 10 line px match -> (10, 10, 10, 14).
        # t = 0.7: B = the 4 far px, nothing matches -> (0, 10, 0, 4).
        np.testing.assert_array_equal(c[0], [[10, 10, 10, 14], [0, 10, 0, 4]])


def test_hand_worked_aggregation():
    counts = np.array([[[10, 10, 10, 14], [0, 10, 0, 4]]])  # [N=1, T=2, 4]
    s = class_scores(counts, np.array([0.3, 0.7]))
    # R = [1, 0], P = [5/7, 0]. On the segment, r = 1-d, p = 5/7 (1-d) -> F = (10/12)(1-d): best at d = 0.
    assert s["ods_f"] == pytest.approx(10 / 12)
    assert (s["ods_t"], s["ods_r"], s["ods_p"]) == pytest.approx((0.3, 1.0, 5 / 7))
    assert s["ois_f"] == pytest.approx(10 / 12)
    # AP: every recall level 0..0.99 is reached by threshold 0 (R = 1) -> P~ = 5/7, 100 terms / 101.
    assert s["ap"] == pytest.approx(100 * (5 / 7) / 101)
    # AUC: unique recalls [0, 1] with precisions [0, 5/7]: p(r) = 5/7 r, sum over r = j/100 -> 5/7 * 49.5 * 0.01.
    assert s["auc"] == pytest.approx(5 / 7 * 0.495)


def test_interpolated_ods_beats_the_grid():
    # Two thresholds with (R, P) = (1, 0.2) and (0.2, 1): F = 1/3 at both ends, but the midpoint d = 0.5 gives
    # R = P = 0.6 and F = 0.6, the interpolated maximum (F is symmetric and concave along this segment).
    counts = np.array([[[10, 10, 10, 50], [2, 10, 2, 2]]])
    s = class_scores(counts, np.array([0.2, 0.4]))
    assert s["ods_f"] == pytest.approx(0.6)
    assert s["ods_t"] == pytest.approx(0.3)


def test_ois_empty_gt_quirk_and_skip_absent():
    # Image A: GT line of 10 px, prediction exactly on it at 0.9 -> (10, 10, 10, 10) at both thresholds.
    # Image B: no GT for the class, 20 predicted px at 0.05 -> (0, 0, 0, 20) at t = 0.01, nothing at t = 0.5.
    h, w = 16, 32
    gt_a = np.zeros((1, h, w), bool)
    gt_a[0, 5, 2:12] = True
    pred_a = gt_a * 0.9
    pred_b = np.zeros((1, h, w))
    pred_b[0, 10, 5:25] = 0.05
    gt_b = np.zeros((1, h, w), bool)
    thr = [0.01, 0.5]
    ev = SBDEvaluator(1, thresholds=thr, max_dist=1.5 / np.hypot(h, w))
    ev.update(pred_a, gt_a)
    ev.update(pred_b, gt_b)
    out = ev.compute()
    # ODS: totals at t = 0.5 are (10, 10, 10, 10) -> F = 1.
    assert out["ods_f"][0] == pytest.approx(1.0)
    # OIS: A ties everywhere -> first index; B has F = 0 everywhere -> index 0 with its 20 false positives.
    # Sum = (10, 10, 10, 30): R = 1, P = 1/3, F = 0.5.
    assert out["ois_f"][0] == pytest.approx(0.5)
    ev = SBDEvaluator(1, thresholds=thr, max_dist=1.5 / np.hypot(h, w), skip_absent=True)
    ev.update(pred_a, gt_a)
    ev.update(pred_b, gt_b)
    assert ev.compute()["ois_f"][0] == pytest.approx(1.0)


def test_class_without_gt_anywhere_scores_zero_and_counts_in_the_mean():
    pred, gt, max_dist = _hand_case()
    pred2 = np.concatenate([pred, pred])
    gt2 = np.concatenate([gt, np.zeros_like(gt)])
    ev = SBDEvaluator(2, thresholds=[0.3, 0.7], max_dist=max_dist)
    ev.update(pred2, gt2)
    out = ev.compute()
    assert out["ods_f"][1] == 0.0
    assert out["mean_ods_f"] == pytest.approx((10 / 12 + 0) / 2)


def test_kill_internal_erases_far_predictions_inside_the_region():
    pred, gt, max_dist = _hand_case()
    seg = np.zeros_like(gt)
    seg[0, 8:16, :] = True  # the far pixels (row 12) lie inside the class region, > 1.5 px from the GT line
    c = image_counts(pred, gt, thresholds=[0.3, 0.7], max_dist=max_dist, kill_internal=True, seg=seg)
    np.testing.assert_array_equal(c[0], [[10, 10, 10, 10], [0, 10, 0, 0]])
    with pytest.raises(ValueError, match="seg"):
        image_counts(pred, gt, kill_internal=True)


# ---------------------------------------------------------------------------------------------------- backends


def _random_case(rng, k=2, h=40, w=56):
    gt = np.zeros((k, h, w), bool)
    pred = np.zeros((k, h, w))
    for c in range(k):
        for _ in range(3):
            y = int(rng.integers(3, h - 3))
            gt[c, y, int(rng.integers(0, w // 2)) : int(rng.integers(w // 2, w))] = True
        p = np.roll(gt[c], int(rng.integers(-2, 3)), axis=0).astype(float)
        from scipy import ndimage

        p = ndimage.gaussian_filter(ndimage.binary_dilation(p > 0).astype(float), 1.0)
        pred[c] = np.clip(p / max(p.max(), 1e-6) * rng.uniform(0.5, 1, p.shape) + 0.05 * rng.random(p.shape), 0, 1)
    return pred, gt


@pytest.mark.skipif(not _kernels.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("thin,variant", [(True, "standard"), (True, "pyedgeeval"), (False, "standard")])
def test_numba_equals_plain_numpy(thin, variant):
    rng = np.random.default_rng(11)
    for _ in range(2):
        pred, gt = _random_case(rng)
        kw = dict(thresholds=19, max_dist=0.05, thin=thin, thin_variant=variant)
        a = image_counts(pred, gt, backend="numba", **kw)
        b = image_counts(pred, gt, backend="numpy", **kw)
        np.testing.assert_array_equal(a, b)


def test_counts_against_direct_definition():
    # Independent reference per threshold: skimage thinning + brute-force Kuhn matching on the pixel pairs.
    rng = np.random.default_rng(5)
    pred, gt = _random_case(rng, k=1, h=24, w=30)
    thr = np.array([0.2, 0.5, 0.8])
    max_dist = 0.06  # x diagonal 38.4 px = 2.3 px
    r = max_dist * np.hypot(24, 30)
    got = image_counts(pred, gt, thresholds=thr, max_dist=max_dist)[0]
    q = np.floor(pred[0] * 255) / 255
    g = np.argwhere(gt[0])
    for i, t in enumerate(thr):
        b = skimage_morphology.thin(q >= t)
        p = np.argwhere(b)
        d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
        adj = [list(np.nonzero(row <= r * r)[0]) for row in d2]
        match_r = [-1] * len(g)

        def augment(u, seen, adj=adj, match_r=match_r):
            for v in adj[u]:
                if not seen[v]:
                    seen[v] = True
                    if match_r[v] < 0 or augment(match_r[v], seen):
                        match_r[v] = u
                        return True
            return False

        m = sum(augment(u, [False] * len(g)) for u in range(len(p)))
        np.testing.assert_array_equal(got[i], [m, len(g), m, len(p)])


def test_results_identical_for_any_worker_count():
    rng = np.random.default_rng(2)
    cases = [_random_case(rng) for _ in range(3)]
    outs = []
    for workers in (1, 2):
        ev = SBDEvaluator(2, thresholds=9, max_dist=0.05, workers=workers)
        for pred, gt in cases:
            ev.update(pred, gt)
        outs.append((ev.count_array(), ev.compute()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for key in ("ods_f", "ois_f", "ap"):
        np.testing.assert_array_equal(outs[0][1][key], outs[1][1][key])


def test_evaluator_input_errors():
    ev = SBDEvaluator(2)
    with pytest.raises(ValueError, match="K=2"):
        ev.update(np.zeros((3, 4, 4)), np.zeros((3, 4, 4), bool))
    with pytest.raises(ValueError, match="K = 2"):
        ev.update(np.zeros((3, 4, 4)), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError):
        SBDEvaluator(2, thresholds=[0.5, 0.1])


# ---------------------------------------------------------------------------------------------------- GT


def _r1_band_reference(label, k, ignore, instance=None):
    """Spec §8.3.2 item 2 written directly: p is in band c when it is in M (class c or one instance of c) with a
    4-neighbour neither in M nor ignore, or p is non-M, non-ignore with a 4-neighbour in M."""
    h, w = label.shape
    out = np.zeros((k, h, w), bool)
    segs = [(c, label == c) for c in range(k)]
    if instance is not None:
        segs += [(int(label[instance == i][0]), instance == i) for i in np.unique(instance) if i != 0]
    for c, m in segs:
        for y in range(h):
            for x in range(w):
                if label[y, x] == ignore:
                    continue
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    yy, xx = y + dy, x + dx
                    if not (0 <= yy < h and 0 <= xx < w) or label[yy, xx] == ignore:
                        continue
                    if m[y, x] != m[yy, xx]:
                        out[c, y, x] = True
    return out


def test_thin_protocol_gt_matches_direct_rule():
    pytest.importorskip("sbcb.boundaries")
    rng = np.random.default_rng(4)
    full = np.kron(rng.integers(0, 3, (6, 8)), np.ones((6, 6), dtype=np.uint8)).astype(np.uint8)
    full[rng.random(full.shape) < 0.03] = 255  # ignore specks
    full[:6, :6] = 254  # a foreign (void) region: forms boundaries
    inst = np.zeros(full.shape, np.int32)
    inst[12:24, 12:18] = 7  # two touching instances inside one class-2 block
    inst[12:24, 18:24] = 8
    full[12:24, 12:24] = 2
    got = prepare_sbd_gt(full, 3, instance=inst, protocol="thin")
    half = full[1::2, 1::2]
    ref = _r1_band_reference(half, 3, 255, instance=inst[1::2, 1::2])
    ref = np.stack([skimage_morphology.thin(b) for b in ref])
    np.testing.assert_array_equal(got, ref)
    # The instance border (column 18 at full size = 9 at half) is a class-2 boundary only because of IS.
    non_is = prepare_sbd_gt(full, 3, protocol="thin")
    assert got[2, 6:12, 8:10].any() and not non_is[2, 7:11, 8:10].any()


def test_raw_protocol_is_r2_then_half_scale():
    pytest.importorskip("sbcb.boundaries")
    from sbcb.boundaries import mask_to_boundaries

    label = np.zeros((20, 24), np.uint8)
    label[:, 12:] = 1
    got = prepare_sbd_gt(label, 2, protocol="raw")
    np.testing.assert_array_equal(got, mask_to_boundaries(label, 2, radius=2.0)[:, 1::2, 1::2])
    # r = 2 band at full size: columns 10..13 (2 px each side); odd columns 11, 13 -> half-scale columns 5, 6.
    assert got[0].any(axis=0).nonzero()[0].tolist() == [5, 6]


def test_cityscapes_label_ids():
    pytest.importorskip("sbcb.boundaries")
    ids = np.full((8, 12), 7, np.uint8)  # road
    ids[:, 6:] = 8  # sidewalk
    ids[:4, :] = 3  # out of roi = ignore: no band against it
    gt = cityscapes_sbd_gt(ids, None, scale=1.0)
    assert gt.shape == (19, 8, 12)
    assert not gt[:, :3].any()  # rows next to the ignore region carry no road/ignore band
    assert gt[0, 5:, 5].all() and gt[1, 5:, 5:7].any()


def test_edge_png_roundtrip_and_bit_layout(tmp_path):
    edges = np.zeros((19, 2, 3), bool)
    edges[0, 0, 0] = True  # class 0 -> bit 0 of B
    edges[8, 0, 1] = True  # class 8 -> bit 0 of G
    edges[16, 0, 2] = True  # class 16 -> bit 0 of R
    edges[18, 1, 0] = edges[3, 1, 0] = True  # R bit 2 + B bit 3
    rgb = encode_edge_png(edges)
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 1])
    np.testing.assert_array_equal(rgb[0, 1], [0, 1, 0])
    np.testing.assert_array_equal(rgb[0, 2], [1, 0, 0])
    np.testing.assert_array_equal(rgb[1, 0], [4, 0, 8])
    np.testing.assert_array_equal(decode_edge_png(rgb, 19), edges)
    save_edge_png(tmp_path / "a.png", edges)
    np.testing.assert_array_equal(load_edge_png(tmp_path / "a.png", 19), edges)  # OpenCV BGR corrected
    with pytest.raises(ValueError, match="24"):
        encode_edge_png(np.zeros((25, 2, 2), bool))


# ---------------------------------------------------------------------------------------------------- folders


def test_folder_evaluation_resumes_from_cache(tmp_path):
    rng = np.random.default_rng(9)
    pred_dir, gt_dir, cache = tmp_path / "pred", tmp_path / "gt", tmp_path / "cache"
    names = ["city/a", "city/b", "c"]
    direct = SBDEvaluator(2, thresholds=9, max_dist=0.05)
    for n in names:
        pred, gt = _random_case(rng)
        save_prediction(pred_dir, n, pred, suffix="_leftImg8bit.png")
        save_edge_png(gt_dir / f"{n}_edge.png", gt)
        direct.update(pred, gt)
    ref = direct.compute()
    kw = dict(gt_suffix="_edge.png", pred_suffix="_leftImg8bit.png", cache_dir=cache)
    out = evaluate_folders(SBDEvaluator(2, thresholds=9, max_dist=0.05), pred_dir, gt_dir, **kw)
    np.testing.assert_array_equal(out["ods_f"], ref["ods_f"])
    assert out["num_images"] == 3
    assert sorted(p.name.split(".")[0] for p in cache.glob("*.npy")) == ["c", "city__a", "city__b"]
    # "Interrupted" run: one cache file missing; the others answer (same settings and files).
    next(cache.glob("c.*.npy")).unlink()
    out2 = evaluate_folders(SBDEvaluator(2, thresholds=9, max_dist=0.05, workers=2), pred_dir, gt_dir, **kw)
    np.testing.assert_array_equal(out2["ods_f"], ref["ods_f"])
    np.testing.assert_array_equal(out2["ap"], ref["ap"])
    # Other settings are other cache entries, never the old counts (issue 16 item 3).
    other = evaluate_folders(SBDEvaluator(2, thresholds=19, max_dist=0.05), pred_dir, gt_dir, **kw)
    assert len(other["ods_t"]) == 2 and other["num_images"] == 3


def test_folder_evaluation_from_label_pngs(tmp_path):
    pytest.importorskip("sbcb.boundaries")
    import cv2

    rng = np.random.default_rng(1)
    label = np.kron(rng.integers(0, 3, (4, 5)), np.ones((8, 8), dtype=np.uint8)).astype(np.uint8)
    label[:8, :8] = 255
    inst = np.zeros(label.shape, np.uint16)
    inst[8:24, 8:16] = 300  # 16-bit ids survive the PNG round trip
    inst[8:24, 16:24] = 301
    label[8:24, 8:24] = 1
    cv2.imwrite(str(tmp_path / "s_label.png"), label)
    cv2.imwrite(str(tmp_path / "s_instance.png"), inst)
    gt = prepare_sbd_gt(label, 3, instance=inst.astype(np.int32))
    pred = np.clip(gt * 0.9 + 0.05 * rng.random(gt.shape), 0, 1)
    save_prediction(tmp_path / "pred", "s", pred)
    direct = SBDEvaluator(3, thresholds=9, max_dist=0.05)
    direct.update(pred, gt)
    out = evaluate_folders(
        SBDEvaluator(3, thresholds=9, max_dist=0.05), tmp_path / "pred", tmp_path, gt_format="labels",
        gt_suffix="_label.png",
    )  # fmt: skip
    np.testing.assert_array_equal(out["ods_f"], direct.compute()["ods_f"])
    assert out["ods_f"][1] > 0.9
