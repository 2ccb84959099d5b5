"""Start-up cost of `sbcb train`'s up-front data scan on a resume: reading every file vs the recorded fingerprint.

`sbcb train` reads every sample of both splits before the first step (`sbcb.train.run.scan_split`). A resume
whose files are unchanged now compares a fingerprint of the files' paths, sizes and modification times
(`split_fingerprint`) with the run folder's ``data_scan.json`` instead. Measured side by side in one run on the
real CamVid train + val (468 images of 360x480), interleaved (scan, fingerprint, scan, fingerprint, ...), with the
scan in the main process (``--workers 0``) as on a resume of the study. The page cache is warm after the first
repeat (the first is reported apart), so the scan figure is decode time, not disk time.

Usage: .venv/bin/python benchmarks/scan_record.py [--root ../shared/data/camvid] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from sbcb.data.camvid import CamVid
from sbcb.train.run import scan_split, split_fingerprint

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "camvid"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    splits = [CamVid(args.root, "train"), CamVid(args.root, "val")]
    n = sum(len(s) for s in splits)
    scan, fingerprint = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for s in splits:
            scan_split(s)
        scan.append(time.perf_counter() - t)
        t = time.perf_counter()
        for s in splits:
            split_fingerprint(s)
        fingerprint.append(time.perf_counter() - t)
    warm_scan, warm_fp = statistics.median(scan[1:] or scan), statistics.median(fingerprint[1:] or fingerprint)
    lines = [
        "# Resume start-up: data scan vs recorded fingerprint",
        "",
        f"`python benchmarks/scan_record.py --repeats {args.repeats}` — CamVid train + val, {n} samples, one process; "
        f"load average {os.getloadavg()[0]:.1f} at the end (2-core machine).",
        "",
        "| | first repeat (s) | median of the others (s) | per sample (ms) |",
        "|---|---|---|---|",
        f"| read every file (`scan_split`) | {scan[0]:.2f} | {warm_scan:.2f} | {1000 * warm_scan / n:.1f} |",
        f"| fingerprint (`split_fingerprint`) | {fingerprint[0]:.3f} | {warm_fp:.3f} | {1000 * warm_fp / n:.3f} |",
        "",
        f"Ratio scan / fingerprint (warm): **{warm_scan / warm_fp:.0f}x**.",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scan_record.md").write_text("\n".join(lines) + "\n")
    doc = {"samples": n, "scan_seconds": scan, "fingerprint_seconds": fingerprint, "load": os.getloadavg()[0]}
    (RESULTS / "scan_record.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
