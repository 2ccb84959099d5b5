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


def minimal_loop(model: torch.nn.Module, data: list[dict], iters: int, batch: int) -> float:
    """Seconds per iteration of a bare loop (after one warm-up step)."""
    from sbcb.train.schedule import poly_lr

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    has_loss = hasattr(model, "loss")
    t0 = 0.0
    for i in range(iters + 1):
        if i == 1:
            t0 = time.perf_counter()
        idx = [(i * batch + j) % len(data) for j in range(batch)]
        x = torch.stack([data[j]["image"] for j in idx])
        y = torch.stack([data[j]["label"] for j in idx])
        for g in opt.param_groups:
            g["lr"] = poly_lr(i, base_lr=0.01, max_steps=iters + 1)
        out = model(x)
        if has_loss:
            b = torch.stack([data[j]["boundaries"] for j in idx])
            loss = sum(model.loss(out, y, target_boundaries=b).values())
        else:
            loss = F.cross_entropy(out, y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / iters


def trainer_loop(model: torch.nn.Module, data: list[dict], iters: int, batch: int, k: int) -> float:
    """Seconds per iteration of `sbcb.train.train` (warm-up step excluded by timing iters+1 vs 1 step runs)."""
    from sbcb.train.loop import TrainSettings, train

    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings(iters=iters + 1, batch_size=batch, ckpt_every=iters + 1, val_every=0, workers=0)
        t0 = time.perf_counter()
        train(model, data, settings=settings, out_dir=Path(tmp), num_classes=k, progress=False)
        total = time.perf_counter() - t0
    return total / (iters + 1)


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

    times: dict[str, list[float]] = {"minimal": [], "trainer": [], "baseline_step": [], "sbcb_step": []}
    for r in range(rounds):
        times["minimal"].append(minimal_loop(build(k, "none"), data, iters, batch))
        times["trainer"].append(trainer_loop(build(k, "none"), data, iters, batch, k))
        times["baseline_step"].append(minimal_loop(build(k, "none"), data, iters, batch))
        times["sbcb_step"].append(minimal_loop(build(k, "casenet"), data, iters, batch))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{key} {v[-1] * 1e3:.0f} ms" for key, v in times.items()))
    med = {key: statistics.median(v) for key, v in times.items()}
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
        "sec_per_it_median": med,
        "it_per_s": {"minimal": 1 / med["minimal"], "trainer": 1 / med["trainer"]},
        "trainer_over_minimal": med["trainer"] / med["minimal"],
        "sbcb_over_baseline_step": med["sbcb_step"] / med["baseline_step"],
        "raw": times,
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "trainer_overhead.json").write_text(json.dumps(result, indent=2))
    md = [
        "# Trainer overhead",
        "",
        f"`{result['command']}` on {result['date']}, torch {result['torch']}, {result['threads']} threads, "
        f"{result['model']}, input {result['input']}, {iters} timed iterations per run, median of {rounds} "
        "interleaved rounds. Shared, contended 2-core machine: read the ratios.",
        "",
        "| what | s/it (median) | ratio |",
        "|---|---|---|",
        f"| minimal hand-written loop | {med['minimal']:.3f} | 1.00 |",
        f"| `sbcb.train.train` | {med['trainer']:.3f} | {result['trainer_over_minimal']:.2f} |",
        f"| baseline step (minimal loop) | {med['baseline_step']:.3f} | 1.00 |",
        f"| SBCB (CASENet) step (minimal loop) | {med['sbcb_step']:.3f} | {result['sbcb_over_baseline_step']:.2f} |",
        "",
    ]
    (out / "trainer_overhead.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
