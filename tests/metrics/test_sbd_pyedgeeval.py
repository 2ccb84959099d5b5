"""Slow: compare with the authors' evaluator pyEdgeEval 0.2.8, run as a black box in `.benchmarks-env`.

Skipped when that env is absent (create it as described in docs/metrics.md). pyEdgeEval's matcher is randomized,
so its counts vary run to run; the checks are one-sided (exact >= reference) or use a tolerance.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sbcb.metrics.sbd import class_scores, image_counts, make_thresholds, sbd_scores
from sbcb.metrics.thinning import thin

PYEDGE = Path(__file__).resolve().parents[2] / ".benchmarks-env" / "bin" / "python"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYEDGE.exists(), reason="pyEdgeEval env .benchmarks-env not installed"),
]

SCRIPT = r"""
import sys, json
import numpy as np
from pyEdgeEval.common.multi_label.calculate_metrics import calculate_metrics, check_thresholds
from pyEdgeEval.common.multi_label.evaluate_boundaries import evaluate_boundaries_threshold
from pyEdgeEval.preprocess.thin import binary_thin
from pyEdgeEval._lib import correspond_pixels
d = np.load(sys.argv[1])
out = {"thresholds99": [float(t) for t in check_thresholds(99)]}
counts = d["counts"]  # [N, T, 4] for the aggregation check
thr = d["thresholds"]
_, _, overall = calculate_metrics(eval_single=lambda s: tuple(counts[s["i"]].T.astype(float)), thresholds=len(thr),
                                  samples=[{"i": i, "name": str(i)} for i in range(len(counts))], nproc=1)
out["overall"] = {k: float(v) for k, v in overall.items()}
out["thin"] = np.stack([binary_thin(m) for m in d["masks"]]).astype(np.uint8).tolist()
pred, gt = d["pred"], d["gt"]
res = []
for i in range(pred.shape[0]):
    for c in range(pred.shape[1]):
        r = evaluate_boundaries_threshold(thr, pred[i, c], gt[i, c], max_dist=float(d["max_dist"]), apply_thinning=True)
        res.append(np.stack(r, axis=1).astype(int).tolist())
out["counts"] = res
m = [correspond_pixels(a.astype(float), b.astype(float), float(d["max_dist"])) for a, b in zip(d["mp"], d["mg"])]
out["correspond"] = [int((x[0] > 0).sum()) for x in m]
print(json.dumps(out))
"""


def _synthetic(seed, n, k, h, w):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from sbd_speed import make_case

    return make_case(seed, n, h, w, k)


def test_against_pyedgeeval(tmp_path):
    rng = np.random.default_rng(0)
    thr = make_thresholds(99)
    # 1) aggregation fed with identical counts (monotone-ish random curves, one image with empty GT)
    n_img = 4
    counts = np.zeros((n_img, 99, 4), dtype=np.int64)
    for i in range(n_img):
        sum_r = 0 if i == 3 else int(rng.integers(50, 200))
        cr = np.sort(rng.integers(0, sum_r + 1, 99))[::-1] if sum_r else np.zeros(99, int)
        sp = np.sort(rng.integers(cr.max(initial=0) + 1, 600, 99))[::-1]
        counts[i] = np.stack([cr, np.full(99, sum_r), cr, sp], axis=1)
    # 2) thinning masks, 3) small synthetic SBD case, 4) matching on fixed maps
    from scipy import ndimage

    masks = [ndimage.binary_dilation(rng.random((40, 60)) < 0.04, iterations=3) & (rng.random((40, 60)) < 0.93)]
    masks = np.stack(masks * 1 + [ndimage.binary_dilation(rng.random((40, 60)) < 0.05, iterations=2)])
    preds, gts = _synthetic(1, 2, 2, 128, 256)
    max_dist = 0.0035 * 2  # 2x the Cityscapes fraction: ~2 px at 128x256, like 0.0035 at 256x512
    mp = np.stack([thin(preds[0][0] >= 0.3), thin(preds[1][1] >= 0.1)])
    mg = np.stack([gts[0][0], gts[1][1]])
    inp = tmp_path / "in.npz"
    np.savez(inp, counts=counts, thresholds=thr, masks=masks, pred=np.stack(preds), gt=np.stack(gts),
             max_dist=max_dist, mp=mp, mg=mg)  # fmt: skip
    res = subprocess.run([str(PYEDGE), "-c", SCRIPT, str(inp)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])

    np.testing.assert_array_equal(np.array(out["thresholds99"]), thr)
    s = class_scores(counts, thr)
    ref = out["overall"]
    for ours, theirs in [("ods_f", "ODS_f1"), ("ods_r", "ODS_recall"), ("ods_p", "ODS_precision"),
                         ("ods_t", "ODS_threshold"), ("ois_f", "OIS_f1"), ("ois_r", "OIS_recall"),
                         ("ois_p", "OIS_precision"), ("ap", "AP"), ("auc", "AUC")]:  # fmt: skip
        assert s[ours] == pytest.approx(ref[theirs], abs=1e-12), ours

    for m, t in zip(masks, out["thin"]):
        np.testing.assert_array_equal(thin(m, variant="pyedgeeval"), np.array(t, bool))

    # Exact matching is never below the randomized CSA on the same maps.
    from sbcb.metrics.matching import match_count

    for a, b, theirs in zip(mp, mg, out["correspond"]):
        ours = match_count(a, b, max_dist * np.hypot(128, 256))
        assert theirs <= ours <= theirs + 10

    ref_counts = np.array(out["counts"]).reshape(2, 2, 99, 4)
    same = np.stack([image_counts(p, g, max_dist=max_dist, thin_variant="pyedgeeval") for p, g in zip(preds, gts)])
    std = np.stack([image_counts(p, g, max_dist=max_dist) for p, g in zip(preds, gts)])
    np.testing.assert_array_equal(same[..., 1], ref_counts[..., 1])
    np.testing.assert_array_equal(same[..., 3], ref_counts[..., 3])  # same thinning -> same predicted pixels
    assert (same[..., 0] >= ref_counts[..., 0]).all()  # exact matching >= CSA, threshold by threshold
    ods_ref = sbd_scores(ref_counts, thr)["mean_ods_f"]
    ods_same = sbd_scores(same, thr)["mean_ods_f"]
    ods_std = sbd_scores(std, thr)["mean_ods_f"]
    assert ods_ref <= ods_same <= ods_ref + 0.005
    assert abs(ods_std - ods_ref) <= 0.005
