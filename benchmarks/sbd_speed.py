"""SBD evaluator speed and agreement: sbcb (numba) vs sbcb's plain NumPy/SciPy path vs pyEdgeEval 0.2.8.

Seconds per image (all K classes, 99 thresholds, thin protocol) on synthetic Cityscapes-like boundaries at
256×512 (and 512×1024 with --full). Predictions are blurred, noisy, shifted versions of the GT boundaries.
pyEdgeEval runs in the separate env `.benchmarks-env` (skipped when absent) on a small subset to bound the time.
All timings of one run are taken side by side on the same machine, so the ratios are meaningful even when the
absolute numbers are noisy (shared CPU).

    .venv/bin/python benchmarks/sbd_speed.py [--quick] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sbcb.metrics.sbd import image_counts, make_thresholds, sbd_scores
from sbcb.metrics.thinning import thin

ROOT = Path(__file__).resolve().parents[1]
PYEDGE = ROOT / ".benchmarks-env" / "bin" / "python"


def synthetic_label(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    """Piecewise-constant label map: a coarse random Voronoi partition with k classes plus a few blobs."""
    n_seeds = 24
    sy = rng.integers(0, h, n_seeds)
    sx = rng.integers(0, w, n_seeds)
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[None] - sy[:, None, None]) ** 2 + (xx[None] - sx[:, None, None]) ** 2
    lab = rng.integers(0, k, n_seeds)[np.argmin(d, axis=0)].astype(np.uint8)
    for _ in range(12):  # small "thing" blobs
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = int(rng.integers(max(h // 40, 2), max(h // 12, 3)))
        cv2.circle(lab, (int(cx), int(cy)), r, int(rng.integers(0, k)), -1)
    return lab


def synthetic_gt(label: np.ndarray, k: int) -> np.ndarray:
    """Thin GT: per class, pixels of the class with a 4-neighbour of another class (and vice versa), thinned."""
    out = np.zeros((k, *label.shape), dtype=bool)
    for c in range(k):
        m = label == c
        if not m.any():
            continue
        other = ~m
        nb_other = np.zeros_like(m)
        nb_m = np.zeros_like(m)
        nb_other[1:] |= other[:-1]
        nb_other[:-1] |= other[1:]
        nb_other[:, 1:] |= other[:, :-1]
        nb_other[:, :-1] |= other[:, 1:]
        nb_m[1:] |= m[:-1]
        nb_m[:-1] |= m[1:]
        nb_m[:, 1:] |= m[:, :-1]
        nb_m[:, :-1] |= m[:, 1:]
        out[c] = thin((m & nb_other) | (other & nb_m))
    return out


def synthetic_pred(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """Probabilities [K, H, W]: GT shifted by up to 2 px, dilated, blurred, with noise and a few false edges."""
    k, h, w = gt.shape
    out = np.zeros((k, h, w), dtype=np.float32)
    for c in range(k):
        g = gt[c].astype(np.float32)
        dy, dx = rng.integers(-2, 3, 2)
        g = np.roll(g, (int(dy), int(dx)), axis=(0, 1))
        g = cv2.dilate(g, np.ones((3, 3), np.uint8))
        for _ in range(3):  # spurious edges
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            cv2.line(g, (int(x0), int(y0)), (int(x0 + rng.integers(-60, 60)), int(y0 + rng.integers(-60, 60))), 0.6, 2)
        g = cv2.GaussianBlur(g, (0, 0), 1.5)
        g = g / max(float(g.max()), 1e-6)
        g = g * rng.uniform(0.6, 1.0, size=g.shape).astype(np.float32) + 0.04 * rng.random(g.shape, dtype=np.float32)
        out[c] = np.clip(g, 0, 1)
    return out


def make_case(seed: int, n: int, h: int, w: int, k: int):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n):
        lab = synthetic_label(rng, 2 * h, 2 * w, k)[1::2, 1::2]  # odd-pixel half scale, as the thin protocol
        gt = synthetic_gt(lab, k)
        gts.append(gt)
        preds.append(np.floor(synthetic_pred(rng, gt) * 255) / 255)
    return preds, gts


PYEDGE_SCRIPT = r"""
import sys, time, json
import numpy as np
from pyEdgeEval.common.multi_label.evaluate_boundaries import evaluate_boundaries_threshold
d = np.load(sys.argv[1])
pred, gt, thr = d["pred"], d["gt"], d["thresholds"]
out = np.zeros(pred.shape[:2] + (len(thr), 4), dtype=np.int64)
t0 = time.perf_counter()
c0 = time.process_time()
for i in range(pred.shape[0]):
    for c in range(pred.shape[1]):
        cr, sr, cp, sp = evaluate_boundaries_threshold(thr, pred[i, c].astype(np.float64), gt[i, c], max_dist=0.0035,
                                                       apply_thinning=True)
        out[i, c] = np.stack([cr, sr, cp, sp], axis=1)
dt = time.perf_counter() - t0
cpu = time.process_time() - c0
np.save(sys.argv[2], out)
print(json.dumps({"seconds": dt, "cpu_seconds": cpu}))
"""


def run_pyedgeeval(preds, gts, thresholds):
    """Counts [N, K, T, 4] and seconds from pyEdgeEval in its own env; None when that env is absent."""
    if not PYEDGE.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.npz"
        outp = Path(tmp) / "out.npy"
        np.savez(inp, pred=np.stack(preds), gt=np.stack(gts), thresholds=thresholds)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run(
            [str(PYEDGE), "-c", PYEDGE_SCRIPT, str(inp), str(outp)], capture_output=True, text=True, env=env, cwd=tmp
        )
        if res.returncode != 0:
            print("pyEdgeEval failed:", res.stderr[-2000:], file=sys.stderr)
            return None
        times = json.loads(res.stdout.strip().splitlines()[-1])
        return np.load(outp), times["seconds"], times["cpu_seconds"]


def timed_counts(preds, gts, thresholds, backend, thin_variant="standard", cpu=False):
    """Counts [N, K, T, 4] and wall seconds (or CPU seconds of this process with cpu=True)."""
    clock = time.process_time if cpu else time.perf_counter
    t0 = clock()
    counts = np.stack(
        [
            image_counts(p, g, thresholds=thresholds, backend=backend, thin_variant=thin_variant)
            for p, g in zip(preds, gts)
        ]
    )
    return counts, clock() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images (CI smoke run)")
    ap.add_argument("--full", action="store_true", help="also time 512x1024")
    ap.add_argument("--images", type=int, default=None, help="images per size (default 6, quick 2)")
    ap.add_argument("--classes", type=int, default=19)
    args = ap.parse_args()
    n = args.images or (2 if args.quick else 6)
    k = args.classes
    thresholds = make_thresholds(99)
    results: dict = {"setup": {"images": n, "classes": k, "thresholds": 99, "max_dist": 0.0035, "protocol": "thin"}}

    # JIT warm-up (compilation is cached on disk, but loading it is not free): not part of the timing.
    wp, wg = make_case(123, 1, 32, 64, 2)
    image_counts(wp[0], wg[0], thresholds=thresholds)

    sizes = [(256, 512)] + ([(512, 1024)] if args.full else [])
    for h, w in sizes:
        key = f"{h}x{w}"
        preds, gts = make_case(0, n, h, w, k)
        c_fast, t_fast = timed_counts(preds, gts, thresholds, "numba")
        cpu_fast = timed_counts(preds, gts, thresholds, "numba", cpu=True)[1]
        row = {"sbcb_numba_s_per_image": t_fast / n, "sbcb_numba_cpu_s_per_image": cpu_fast / n}
        # The plain NumPy/SciPy path on a subset (it is slow): per image-class seconds, scaled to K classes.
        # At 512x1024 SciPy's matcher is very slow on the noise-floor thresholds: one image-class only.
        sub_n, sub_k = (1, 2) if args.quick else ((2, 3) if h * w <= 256 * 512 else (1, 1))
        sp = [p[:sub_k] for p in preds[:sub_n]]
        sg = [g[:sub_k] for g in gts[:sub_n]]
        c_np, t_np = timed_counts(sp, sg, thresholds, "numpy")
        assert np.array_equal(c_np, c_fast[:sub_n, :sub_k]), "numpy and numba paths disagree"
        t_fast_sub = timed_counts(sp, sg, thresholds, "numba")[1]
        row["numpy_s_per_image_class"] = t_np / (sub_n * sub_k)
        row["numba_s_per_image_class_same_subset"] = t_fast_sub / (sub_n * sub_k)
        row["speedup_vs_numpy"] = t_np / t_fast_sub
        scores = sbd_scores(c_fast, thresholds)
        row["mean_ods_f"] = scores["mean_ods_f"]
        # pyEdgeEval on a small subset (about 7 s per image and class at 256x512).
        pe_n, pe_k = (1, 2) if args.quick else (2, 2)
        if h * w <= 256 * 512 or args.full:
            pe = run_pyedgeeval([p[:pe_k] for p in preds[:pe_n]], [g[:pe_k] for g in gts[:pe_n]], thresholds)
        else:
            pe = None
        if pe is not None:
            c_pe, t_pe, cpu_pe = pe
            sub_p, sub_g = [p[:pe_k] for p in preds[:pe_n]], [g[:pe_k] for g in gts[:pe_n]]
            t_ours = timed_counts(sub_p, sub_g, thresholds, "numba")
            cpu_ours = timed_counts(sub_p, sub_g, thresholds, "numba", cpu=True)[1]
            row["pyedgeeval_s_per_image_class"] = t_pe / (pe_n * pe_k)
            row["numba_s_per_image_class_pyedge_subset"] = t_ours[1] / (pe_n * pe_k)
            row["speedup_vs_pyedgeeval_wall"] = t_pe / t_ours[1]
            row["pyedgeeval_cpu_s_per_image_class"] = cpu_pe / (pe_n * pe_k)
            row["numba_cpu_s_per_image_class"] = cpu_ours / (pe_n * pe_k)
            row["speedup_vs_pyedgeeval_cpu"] = cpu_pe / cpu_ours
            ours = sbd_scores(t_ours[0], thresholds)
            ref = sbd_scores(c_pe, thresholds)
            ref = sbd_scores(c_pe, thresholds)
            ours = sbd_scores(t_ours[0], thresholds)
            row["ods_ours_minus_pyedgeeval_pt"] = 100 * (ours["mean_ods_f"] - ref["mean_ods_f"])
            row["ap_ours_minus_pyedgeeval_pt"] = 100 * (ours["mean_ap"] - ref["mean_ap"])
            # Same thinning rule as pyEdgeEval: then only the matching differs (exact >= randomized CSA).
            c_same = timed_counts(
                [p[:pe_k] for p in preds[:pe_n]], [g[:pe_k] for g in gts[:pe_n]], thresholds, "numba", "pyedgeeval"
            )[0]
            same = sbd_scores(c_same, thresholds)
            row["pyedge_thinning_sum_p_equal"] = bool(np.array_equal(c_same[..., 3], c_pe[..., 3]))
            row["pyedge_thinning_matched_minus_ref_min"] = int((c_same[..., 0] - c_pe[..., 0]).min())
            row["pyedge_thinning_matched_minus_ref_max"] = int((c_same[..., 0] - c_pe[..., 0]).max())
            row["pyedge_thinning_ods_minus_ref_pt"] = 100 * (same["mean_ods_f"] - ref["mean_ods_f"])
            row["pyedge_thinning_ap_minus_ref_pt"] = 100 * (same["mean_ap"] - ref["mean_ap"])
        results[key] = row
        print(f"== {key}: {n} images x {k} classes, 99 thresholds, thin protocol")
        for name, value in row.items():
            print(f"  {name:42s} {value:.4g}" if isinstance(value, float) else f"  {name:42s} {value}")
    # Quick mode bias (fewer thresholds) on the 256x512 case; CPU time of this process.
    preds, gts = make_case(0, n, 256, 512, k)
    c99, s99 = timed_counts(preds, gts, thresholds, "numba", cpu=True)
    ref = sbd_scores(c99, thresholds)
    q = {}
    for nt in (9, 19, 33):
        tq = make_thresholds(nt)
        cq, sq = timed_counts(preds, gts, tq, "numba", cpu=True)
        sc = sbd_scores(cq, tq)
        q[f"ods_{nt}_minus_99_pt"] = 100 * (sc["mean_ods_f"] - ref["mean_ods_f"])
        q[f"ap_{nt}_minus_99_pt"] = 100 * (sc["mean_ap"] - ref["mean_ap"])
        q[f"cpu_time_ratio_99_over_{nt}"] = s99 / sq
    results["quick_mode_256x512"] = q
    print("== quick mode (9, 19, 33 thresholds) vs 99 at 256x512")
    for name, value in q.items():
        print(f"  {name:42s} {value:.4g}")
    out = ROOT / "benchmarks" / "results" / "sbd_speed.json"
    out.write_text(json.dumps(results, indent=1))
    md = ["# sbd_speed", "", f"`{' '.join(['.venv/bin/python', 'benchmarks/sbd_speed.py', *sys.argv[1:]])}`", ""]
    for key, row in results.items():
        md.append(f"## {key}")
        md += [f"- {a}: {b:.4g}" if isinstance(b, float) else f"- {a}: {b}" for a, b in row.items()]
        md.append("")
    out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
