"""SyntheticStreets: generation speed, and how far colour alone gets on it.

Default mode: samples/s of `SyntheticStreets` at 256x512 and 512x1024 (single process, 1 OpenCV thread as in a
DataLoader worker), next to the time of one CPU training step of a small real segmentor (smp Unet-ResNet18,
batch 2, forward + backward + SGD) measured in the same run, and their ratio.

`--colour-baseline`: mIoU of a per-pixel nearest-class-mean colour classifier (means fit on train samples) and of a
tiny CNN trained for a few hundred steps, both on val samples at 64x128. The test
`tests/data/test_synthetic.py` imports the two functions below, so the documented numbers and the test run the
same code.

Usage::

    .venv/bin/python benchmarks/synthetic_speed.py [--quick]
    .venv/bin/python benchmarks/synthetic_speed.py --colour-baseline [--quick]

Results go to benchmarks/results/synthetic_speed.{json,md} (or synthetic_colour_baseline.{json,md}); `--quick` runs
write `*_quick.{json,md}`.
Timings on a shared machine are noisy: compare the ratios printed in one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from sbcb.data.synthetic import SyntheticStreets

RESULTS = Path(__file__).parent / "results"


# ----------------------------------------------------------------------------------------------------------------
# Colour baseline vs tiny CNN (also used by the tests).
# ----------------------------------------------------------------------------------------------------------------


def confusion(pred: np.ndarray, target: np.ndarray, *, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix [K, K] (rows = target, columns = prediction) over pixels whose target is not ignored."""
    keep = target != ignore_index
    idx = target[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou(conf: np.ndarray) -> float:
    """Mean IoU over the classes present in the target (rows with pixels)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = conf.sum(1) > 0
    return float(np.mean(tp[present] / union[present]))


def _stack(dataset: SyntheticStreets) -> tuple[np.ndarray, np.ndarray]:
    samples = [dataset[i] for i in range(len(dataset))]
    return np.stack([s["image"] for s in samples]), np.stack([s["label"] for s in samples])


def colour_nearest_mean_miou(train: SyntheticStreets, val: SyntheticStreets) -> float:
    """mIoU on `val` of classifying each pixel by the nearest class-mean RGB colour (means from `train`)."""
    k, ignore = train.info.num_classes, train.info.ignore_index
    images, labels = _stack(train)
    pixels, classes = images.reshape(-1, 3).astype(np.float64), labels.reshape(-1)
    means = np.full((k, 3), np.inf)
    for c in range(k):
        if np.any(classes == c):
            means[c] = pixels[classes == c].mean(0)
    val_images, val_labels = _stack(val)
    rgb = val_images.reshape(-1, 3).astype(np.float64)
    dist = ((rgb[:, None, :] - means[None, :, :]) ** 2).sum(-1)  # [P, K]; inf for classes absent from train
    pred = dist.argmin(1)
    return miou(confusion(pred, val_labels.reshape(-1), num_classes=k, ignore_index=ignore))


class TinyCNN(nn.Module):
    """Four 3x3 conv layers (two strided, two dilated) + a 1x1 classifier at 1/4 resolution, upsampled back.

    Receptive field 55 px: enough context to tell a grey road from a grey building by where it is.
    """

    def __init__(self, num_classes: int, *, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(3, width // 2, stride=2),
            block(width // 2, width, stride=2),
            block(width, width, dilation=2),
            block(width, width, dilation=4),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float in [0, 1] -> logits [B, K, H, W]."""
        logits = self.classifier(self.body(x))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def tiny_cnn_miou(
    train: SyntheticStreets,
    val: SyntheticStreets,
    *,
    steps: int = 300,
    batch_size: int = 4,
    width: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
) -> float:
    """mIoU on `val` of `TinyCNN` trained for `steps` Adam steps (one-cycle, peak `lr`) on random `train` batches."""
    k, ignore = train.info.num_classes, train.info.ignore_index
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images, labels = _stack(train)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    y_all = torch.from_numpy(labels).long()
    model = TinyCNN(k, width=width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x_all), (batch_size,), generator=gen)
        x, y = x_all[idx], y_all[idx]
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = nn.functional.cross_entropy(model(x), y, ignore_index=ignore)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    val_images, val_labels = _stack(val)
    with torch.no_grad():
        logits = model(torch.from_numpy(val_images).permute(0, 3, 1, 2).float().div_(255.0))
    pred = logits.argmax(1).numpy()
    return miou(confusion(pred.reshape(-1), val_labels.reshape(-1), num_classes=k, ignore_index=ignore))


# ----------------------------------------------------------------------------------------------------------------
# Speed.
# ----------------------------------------------------------------------------------------------------------------


def _time_generation(size: tuple[int, int], n: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per sample; CPU time is the less contention-sensitive of the two."""
    ds = SyntheticStreets(n, size=size, seed=123)
    ds[0]  # warm-up (imports, allocator)
    wall, cpu = [], []
    for i in range(n):
        t, c = time.perf_counter(), time.process_time()
        ds[i]
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def _time_train_step(size: tuple[int, int], n: int) -> list[float] | None:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    model = smp.Unet("resnet18", encoder_weights=None, classes=11)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(2, 3, *size)
    y = torch.randint(0, 11, (2, *size))
    times = []
    for i in range(n + 1):
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # first step is warm-up
            times.append(time.perf_counter() - t)
    return times


def run_speed(quick: bool) -> dict:
    cv2.setNumThreads(1)  # as in a DataLoader worker
    torch.set_num_threads(1)  # on 2 shared cores two threads ran a step 10x slower than one
    n_gen = 10 if quick else 30
    n_step = 1 if quick else 2
    rows = []
    for size in ((256, 512), (512, 1024)):
        gen, gen_cpu = _time_generation(size, n_gen)
        step = _time_train_step(size, n_step)
        gen_ms = 1000 * statistics.median(gen)
        row = {
            "size": list(size),
            "generation_ms_median": round(gen_ms, 2),
            "generation_cpu_ms_median": round(1000 * statistics.median(gen_cpu), 2),
            "samples_per_s": round(1000 / gen_ms, 1),
            "generation_samples": n_gen,
        }
        if step is not None:
            step_ms = 1000 * statistics.median(step)
            row |= {
                "train_step_ms_median": round(step_ms, 1),
                "train_step": f"smp Unet(resnet18), batch 2, fwd+bwd+SGD, CPU, torch threads {torch.get_num_threads()}",
                "generation_per_sample_over_step": round(gen_ms / step_ms, 4),
            }
        rows.append(row)
        extra = ""
        if step is not None:
            ratio = row["generation_per_sample_over_step"]
            extra = f", train step {row['train_step_ms_median']:.0f} ms, ratio gen/step {ratio:.3f}"
        cpu_ms = row["generation_cpu_ms_median"]
        rate = row["samples_per_s"]
        print(f"{size[0]}x{size[1]}: {rate:.1f} samples/s ({gen_ms:.1f} ms/sample wall, {cpu_ms:.1f} ms CPU){extra}")
    return {"rows": rows}


def run_colour_baseline(quick: bool) -> dict:
    torch.set_num_threads(1)  # see run_speed
    size = (64, 128)
    # --quick is the default test's setting, the full run the slow test's (tests/data/test_synthetic.py)
    n_train, n_val, steps, width, batch_size = (32, 8, 120, 16, 4) if quick else (64, 16, 300, 32, 4)
    train = SyntheticStreets(n_train, size=size, seed=0, split="train")
    val = SyntheticStreets(n_val, size=size, seed=0, split="val")
    t = time.perf_counter()
    colour = colour_nearest_mean_miou(train, val)
    t_colour = time.perf_counter() - t
    t = time.perf_counter()
    cnn = tiny_cnn_miou(train, val, steps=steps, batch_size=batch_size, width=width)
    t_cnn = time.perf_counter() - t
    print(f"nearest-class-mean colour classifier: mIoU {100 * colour:.1f}  ({t_colour:.1f} s)")
    print(f"tiny CNN (width {width}), {steps} steps, batch {batch_size}: mIoU {100 * cnn:.1f}  ({t_cnn:.1f} s)")
    print(f"ratio CNN / colour: {cnn / colour:.2f}")
    return {
        "size": list(size),
        "train_samples": n_train,
        "val_samples": n_val,
        "steps": steps,
        "batch_size": batch_size,
        "cnn_width": width,
        "colour_miou": round(100 * colour, 2),
        "cnn_miou": round(100 * cnn, 2),
        "cnn_over_colour": round(cnn / colour, 3),
        "seconds": {"colour": round(t_colour, 2), "cnn": round(t_cnn, 2)},
    }


def _write(name: str, result: dict, args: argparse.Namespace) -> None:
    result = {
        "benchmark": name,
        "command": "benchmarks/synthetic_speed.py"
        + (" --colour-baseline" if args.colour_baseline else "")
        + (" --quick" if args.quick else ""),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "note": "shared, contended CPU: compare ratios within one run",
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    lines = [
        f"# {name}",
        "",
        f"`{result['command']}` on {machine['platform']}, {machine['cpu_count']} CPUs, "
        f"1-min load average {machine['load_average_1min_at_end']} at the end",
        "",
    ]
    if "rows" in result:
        lines += [
            "| size | samples/s | ms/sample (wall) | ms/sample (CPU) | train step ms | gen / step |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['size'][0]}x{r['size'][1]} | {r['samples_per_s']} | {r['generation_ms_median']} | "
                f"{r['generation_cpu_ms_median']} | "
                f"{r.get('train_step_ms_median', '-')} | {r.get('generation_per_sample_over_step', '-')} |"
            )
    else:
        lines += [
            "| classifier | val mIoU |",
            "|---|---|",
            f"| nearest-class-mean colour | {result['colour_miou']} |",
            f"| tiny CNN ({result['steps']} steps) | {result['cnn_miou']} |",
        ]
    lines += ["", result["note"]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / name}.json and .md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions / smaller training")
    parser.add_argument("--colour-baseline", action="store_true", help="colour classifier vs tiny CNN mIoU")
    args = parser.parse_args()
    suffix = "_quick" if args.quick else ""  # quick runs never overwrite the full results
    if args.colour_baseline:
        _write("synthetic_colour_baseline" + suffix, run_colour_baseline(args.quick), args)
    else:
        _write("synthetic_speed" + suffix, run_speed(args.quick), args)


if __name__ == "__main__":
    main()
