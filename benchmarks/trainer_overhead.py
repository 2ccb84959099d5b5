"""Trainer overhead: iterations/s of `sbcb.train.train` vs a minimal hand-written loop; SBCB vs baseline step time.

Same model (smp DeepLabV3+ ResNet-18, output stride 8), same pre-rendered SyntheticStreets batches (tensors in
memory, so data loading is not measured), batch 2, CPU. Runs are interleaved (minimal, trainer, minimal, ...)
and the medians are compared, because the machine is shared and absolute timings are noisy: read the ratios.

- ``trainer / minimal``: seconds per iteration of the full trainer (DataLoader with the resumable sampler,
  poly schedule, per-step NaN check, CSV log, one final checkpoint) over a bare ``for`` loop doing
  forward + CE + backward + SGD step + poly lr.
- ``SBCB / baseline``: seconds per step of the minimal loop training SBCB (CASENet head, loss Eq. 1, boundary
  targets precomputed and bit-packed as the data pipeline ships them) over the same loop on the baseline.

Usage: ``.venv/bin/python benchmarks/trainer_overhead.py [--quick]``; writes
``benchmarks/results/trainer_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def make_data(n: int, size: tuple[int, int]) -> tuple[list[dict], int]:
    from sbcb.boundaries import mask_to_packed_boundaries
    from sbcb.data.synthetic import SyntheticStreets

    ds = SyntheticStreets(n, size=size, seed=0, split="train")
    k = ds.info.num_classes
    out = []
    for i in range(n):
        s = ds[i]
        image = torch.from_numpy(((s["image"].astype(np.float32) - MEAN) / STD).transpose(2, 0, 1).copy())
        label = s["label"]
        bnd = mask_to_packed_boundaries(label, k, 2.0, ds.info.ignore_index)
        out.append(
            {"image": image, "label": torch.from_numpy(label.astype(np.int64)), "boundaries": torch.from_numpy(bnd)}
        )
    return out, k


def build(k: int, head: str) -> torch.nn.Module:
    from sbcb.models import build_model

    torch.manual_seed(0)
    return build_model(arch="deeplabv3plus", encoder="resnet18", output_stride=8, num_classes=k, sbcb_head=head)


def minimal_loop(model: torch.nn.Module, data: list[dict], iters: int, batch: int) -> tuple[float, float]:
    """(wall, CPU) seconds per iteration of a bare loop, all ``iters`` steps timed (as for the trainer)."""
    from sbcb.train.schedule import poly_lr

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    from sbcb.segmentor import Segmentor

    has_loss = isinstance(model, Segmentor)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(iters):
        idx = [(i * batch + j) % len(data) for j in range(batch)]
        x = torch.stack([data[j]["image"] for j in idx])
        y = torch.stack([data[j]["label"] for j in idx])
        for g in opt.param_groups:
            g["lr"] = poly_lr(i, base_lr=0.01, max_steps=iters)
        if has_loss:
            b = torch.stack([data[j]["boundaries"] for j in idx])
            loss = sum(model(x, y, boundaries=b).values())
        else:
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / iters, (time.process_time() - c0) / iters


def trainer_loop(model: torch.nn.Module, data: list[dict], iters: int, batch: int, k: int) -> tuple[float, float]:
    """(wall, CPU) seconds per iteration of `sbcb.train.train`, everything included (its first step too)."""
    from sbcb.train.loop import TrainSettings, train

    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings(iters=iters, batch_size=batch, ckpt_every=iters, val_every=0, workers=0)
        t0, c0 = time.perf_counter(), time.process_time()
        train(model, data, settings=settings, out_dir=Path(tmp), num_classes=k, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall / iters, cpu / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64x128 images, fewer iterations and rounds")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: 2 threads on the shared 2-core machine oversubscribe and swing by 5x)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    size = (64, 128) if args.quick else (128, 256)
    iters = 5 if args.quick else 15
    rounds = 2 if args.quick else 3
    batch = 2
    data, k = make_data(8, size)
    # Warm-up in this process (first optimizer construction imports torch._dynamo: seconds, not per step).
    minimal_loop(build(k, "none"), data, 1, batch)

    times: dict[str, list[tuple[float, float]]] = {"minimal": [], "trainer": [], "baseline_step": [], "sbcb_step": []}
    for r in range(rounds):
        times["minimal"].append(minimal_loop(build(k, "none"), data, iters, batch))
        times["trainer"].append(trainer_loop(build(k, "none"), data, iters, batch, k))
        times["baseline_step"].append(minimal_loop(build(k, "none"), data, iters, batch))
        times["sbcb_step"].append(minimal_loop(build(k, "casenet"), data, iters, batch))
        print(
            f"round {r + 1}/{rounds} (wall/CPU ms per it): "
            + ", ".join(f"{key} {v[-1][0] * 1e3:.0f}/{v[-1][1] * 1e3:.0f}" for key, v in times.items()),
            flush=True,
        )
    wall = {key: statistics.median(w for w, _ in v) for key, v in times.items()}
    cpu = {key: statistics.median(c for _, c in v) for key, v in times.items()}
    result = {
        "benchmark": "trainer_overhead",
        "command": "python benchmarks/trainer_overhead.py" + (" --quick" if args.quick else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "model": f"smp DeepLabV3+ resnet18 OS8, K={k}",
        "input": f"{batch}x3x{size[0]}x{size[1]}",
        "iters_per_run": iters,
        "rounds": rounds,
        "wall_sec_per_it_median": wall,
        "cpu_sec_per_it_median": cpu,
        "trainer_over_minimal": {"wall": wall["trainer"] / wall["minimal"], "cpu": cpu["trainer"] / cpu["minimal"]},
        "sbcb_over_baseline_step": {
            "wall": wall["sbcb_step"] / wall["baseline_step"],
            "cpu": cpu["sbcb_step"] / cpu["baseline_step"],
        },
        "raw_wall_cpu": times,
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "trainer_overhead.json").write_text(json.dumps(result, indent=2))
    t, b = result["trainer_over_minimal"], result["sbcb_over_baseline_step"]
    md = [
        "# Trainer overhead",
        "",
        f"`{result['command']}` on {result['date']}, torch {result['torch']}, {result['threads']} thread(s), "
        f"{result['model']}, input {result['input']}, {iters} iterations per run (all timed, in-memory batches), "
        f"median of {rounds} interleaved rounds. Shared, contended 2-core machine: read the ratios; the CPU-time "
        "ratio (process CPU seconds, everything runs in one process) is steadier than wall time.",
        "",
        "| what | wall s/it | CPU s/it | ratio (wall) | ratio (CPU) |",
        "|---|---|---|---|---|",
        f"| minimal hand-written loop | {wall['minimal']:.3f} | {cpu['minimal']:.3f} | 1.00 | 1.00 |",
        f"| `sbcb.train.train` | {wall['trainer']:.3f} | {cpu['trainer']:.3f} | {t['wall']:.2f} | {t['cpu']:.2f} |",
        f"| baseline step (minimal loop) | {wall['baseline_step']:.3f} | {cpu['baseline_step']:.3f} | 1.00 | 1.00 |",
        f"| SBCB (CASENet) step (minimal loop) | {wall['sbcb_step']:.3f} | {cpu['sbcb_step']:.3f} | {b['wall']:.2f} | "
        f"{b['cpu']:.2f} |",
        "",
    ]
    (out / "trainer_overhead.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
