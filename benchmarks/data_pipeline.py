"""Throughput of the full training data pipeline, and the share of it spent on on-the-fly boundary GT.

Pipeline: Cityscapes-layout PNGs written by `SyntheticStreets` (1024x2048, like Cityscapes) -> `Cityscapes` loader
(decode, labelIds -> compact map, instances) -> `build_train_transform` (random scale 0.5-2, 512x1024 crop, flip,
photometric, normalize, pad, OTF boundaries bit-packed) -> default collate, batch 2.

Measured, side by side in one run:
- samples/s with 0, 1 and 2 DataLoader workers (each count run twice, in the order 0, 1, 2, 2, 1, 0, so that
  drifting machine load hits every count alike; the first batch of each run is excluded: worker start-up);
- per-stage time in the main process (decode, transform without OTF, OTF, collate) with one OpenCV thread, as in
  a worker; the OTF time is measured by timing every call the transform makes into `sbcb.boundaries`.

The machine is shared (2 cores, other jobs running), so absolute numbers are noisy; the ratios between worker
counts and the OTF share are the figures to read.

Usage: .venv/bin/python benchmarks/data_pipeline.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

import sbcb.boundaries
from sbcb.data.cityscapes import Cityscapes
from sbcb.data.loader import TransformedDataset, build_dataloader
from sbcb.data.synthetic import SyntheticStreets

RESULTS = Path(__file__).parent / "results"


class _OTFTimer:
    """Wraps the boundary functions the transform calls and accumulates their wall time."""

    NAMES = ("mask_to_packed_boundaries", "mask_to_boundaries")

    def __init__(self, modules) -> None:
        self.total = 0.0
        self.calls = 0
        self._patched = []
        for module in modules:
            for name in self.NAMES:
                fn = getattr(module, name, None)
                if fn is not None:
                    self._patched.append((module, name, fn))
                    setattr(module, name, self._wrap(fn))

    def _wrap(self, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t
                self.calls += 1

        return timed

    def restore(self) -> None:
        for module, name, fn in self._patched:
            setattr(module, name, fn)


def stage_times(raw, transform, transforms_module, *, batch_size: int) -> dict:
    """Median ms per sample of each stage, in this process (one OpenCV thread)."""
    cv2.setNumThreads(1)
    timer = _OTFTimer([transforms_module, sbcb.boundaries])
    decode, transform_total, otf, collate = [], [], [], []
    try:
        outs = []
        for i in range(len(raw)):
            t0 = time.perf_counter()
            s = raw[i]
            t1 = time.perf_counter()
            before = timer.total
            outs.append(transform(s["image"], s["label"], s["instance"]))
            t2 = time.perf_counter()
            decode.append(t1 - t0)
            transform_total.append(t2 - t1)
            otf.append(timer.total - before)
            if len(outs) == batch_size:
                t3 = time.perf_counter()
                default_collate(outs)
                collate.append((time.perf_counter() - t3) / batch_size)
                outs = []
    finally:
        timer.restore()
    if timer.calls == 0:
        raise RuntimeError("the transform made no call into sbcb.boundaries; cannot time OTF GT")
    # drop the first sample: numba JIT / cache load on first use
    decode, transform_total, otf = decode[1:], transform_total[1:], otf[1:]
    per = {
        "decode_ms": 1e3 * statistics.median(decode),
        "transform_without_otf_ms": 1e3 * statistics.median(np.subtract(transform_total, otf)),
        "otf_ms": 1e3 * statistics.median(otf),
        "collate_ms": 1e3 * statistics.median(collate) if collate else 0.0,
    }
    per["total_ms"] = sum(per.values())
    per["otf_share"] = per["otf_ms"] / per["total_ms"]
    per["otf_calls_per_sample"] = timer.calls / len(raw)
    return per


def throughput(dataset, *, workers: int, batch_size: int, seed: int) -> float:
    """Samples/s over one epoch, not counting the first batch (worker start-up, JIT)."""
    loader = build_dataloader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, seed=seed, persistent_workers=False
    )
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    n = 0
    for batch in it:
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small images and few samples (a smoke run)")
    parser.add_argument("--samples", type=int, default=None, help="samples written and loaded per run")
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()

    from sbcb.data import transforms as transforms_module

    load_start = os.getloadavg()[0]
    image_size, crop = ((512, 1024), (256, 512)) if args.quick else ((1024, 2048), (512, 1024))
    samples = args.samples or (9 if args.quick else 17)  # odd: the first batch (excluded) + full batches
    worker_counts = [0, 1, 2, 2, 1, 0]
    print(f"writing {samples} synthetic Cityscapes frames at {image_size[1]}x{image_size[0]} ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        SyntheticStreets(samples, size=image_size, seed=0, split="train").write_cityscapes(tmp)
        raw = Cityscapes(tmp, "train")
        transform = transforms_module.build_train_transform(
            crop, raw.info.num_classes, scale_range=(0.5, 2.0), cat_max_ratio=0.75, radius=2.0, ignore_index=255
        )
        dataset = TransformedDataset(raw, transform)
        stages = stage_times(raw, transform, transforms_module, batch_size=args.batch_size)
        print("per-sample stages (ms, main process, 1 OpenCV thread):")
        for k, v in stages.items():
            print(f"  {k:28s} {v:8.2f}" if k != "otf_share" else f"  {k:28s} {100 * v:7.1f} %")
        runs = {w: [] for w in sorted(set(worker_counts))}
        for w in worker_counts:
            sps = throughput(dataset, workers=w, batch_size=args.batch_size, seed=0)
            runs[w].append(sps)
            print(f"  workers={w}: {sps:6.2f} samples/s", flush=True)
    mean = {w: statistics.mean(v) for w, v in runs.items()}
    result = {
        "benchmark": "data_pipeline",
        "quick": args.quick,
        "image_size_hw": list(image_size),
        "crop_hw": list(crop),
        "samples_per_run": samples,
        "batch_size": args.batch_size,
        "transform": {"scale_range": [0.5, 2.0], "cat_max_ratio": 0.75, "radius": 2.0, "instances": True},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "opencv": cv2.__version__,
            "python": platform.python_version(),
            "load_average_1m_start_end": [load_start, os.getloadavg()[0]],
            "note": "shared 2-core machine with concurrent jobs: absolute numbers are noisy, read the ratios",
        },
        "stages_ms_per_sample": stages,
        "samples_per_s_runs": {str(w): v for w, v in runs.items()},
        "samples_per_s_mean": {str(w): v for w, v in mean.items()},
        "speedup_vs_0_workers": {str(w): v / mean[0] for w, v in mean.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "data_pipeline_quick" if args.quick else "data_pipeline"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# Data pipeline throughput ({'quick' if args.quick else 'full'})",
        "",
        f"{image_size[1]}x{image_size[0]} Cityscapes-layout PNGs -> {crop[1]}x{crop[0]} training crops with IS OTF "
        f"boundaries (r = 2), batch {args.batch_size}, {samples} samples per run. Shared 2-core machine (1-min load "
        f"average {load_start:.1f} at the start): read ratios.",
        "",
        "| workers | samples/s (runs) | mean | vs 0 workers |",
        "|---|---|---|---|",
    ]
    for w in sorted(mean):
        md.append(f"| {w} | {', '.join(f'{x:.2f}' for x in runs[w])} | {mean[w]:.2f} | {mean[w] / mean[0]:.2f}x |")
    md += ["", "| stage (main process, 1 OpenCV thread) | ms / sample |", "|---|---|"]
    for k in ("decode_ms", "transform_without_otf_ms", "otf_ms", "collate_ms", "total_ms"):
        md.append(f"| {k[:-3].replace('_', ' ')} | {stages[k]:.1f} |")
    md += ["", f"OTF GT share of the per-sample time: **{100 * stages['otf_share']:.1f} %**.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("speed-up vs 0 workers: " + ", ".join(f"{w}: {v / mean[0]:.2f}x" for w, v in mean.items()))
    print(f"OTF share: {100 * stages['otf_share']:.1f} %; wrote {RESULTS / name}.json and .md")


if __name__ == "__main__":
    main()
