"""`sbcb demo`: train a baseline and the same model with SBCB (CASENet) on synthetic streets, compare them.

Everything is built in (no downloads): `SyntheticStreets` images, an smp DeepLabV3+ ResNet-18 trained from scratch
twice with the same seed, data and schedule, once plain and once with the CASENet SBD head. Both are evaluated on
the same validation images (mIoU, boundary F at 3 px, SBD mF for the SBCB model), a side-by-side table is printed,
and ``OUT/report.md``, ``OUT/results.json`` and pictures (prediction, SBD boundaries, error maps) are written. The
run folders ``OUT/baseline`` and ``OUT/sbcb`` are ordinary `sbcb train` folders (resumable, evaluable).

Sizing (issue 17): the default run trains DeepLabV3+ at output stride 16 for 150 iterations of batch 4 at 128x256;
the whole demo (both trainings, evaluation, pictures) took 183 s of wall time on an idle 2-core CPU (README). An
estimate timed on this machine, now, is printed before training. ``--long`` is the heavier comparison: output
stride 8 (the paper's) and 300 iterations, about 15 minutes.

``--render-only`` instead renders samples of the dataset (image | label colours | overlay with instance outlines).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sbcb.cli import add_command

# The default run fits in 4 minutes of wall time on an idle 2-core machine (issue 17); --long is the former default.
ITERS, LONG_ITERS = 150, 300
OUTPUT_STRIDE, LONG_OUTPUT_STRIDE = 16, 8


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "demo",
        help="train a baseline and SBCB (CASENet) on synthetic streets and compare them (3 min measured on 2 idle "
        "cores, estimate printed first; --long: the paper's output stride 8, about 15 min)",
        doc=__doc__,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help=f"training iterations per model (default: {ITERS}; --long: {LONG_ITERS})",
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"the heavier comparison: output stride 8 (the paper's) and {LONG_ITERS} iterations (about 4x longer)",
    )
    parser.add_argument("--num-samples", type=int, default=None, metavar="N", help="training images (default: 64; "
                        "with --render-only: pictures to render, default 4)")  # fmt: skip
    parser.add_argument("--val-samples", type=int, default=16, metavar="N", help="validation images (default: 16)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="image size (default: 128 256)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (default: 4)")
    parser.add_argument("--arch", default="deeplabv3plus", help="smp architecture (default: deeplabv3plus)")
    parser.add_argument("--encoder", default="resnet18", help="smp encoder (default: resnet18)")
    parser.add_argument("--arch-kwargs", metavar="JSON", help="extra model kwargs as JSON")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and models (default: 0)")
    parser.add_argument("--pictures", type=int, default=4, help="validation images drawn (default: 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--render-only", action="store_true", help="only render dataset samples to PNG files")
    parser.add_argument("--split", choices=("train", "val", "test"), default="val", help="--render-only split")
    return parser


def _validate(args: argparse.Namespace) -> None:
    from sbcb.cli.errors import UserError
    from sbcb.data.synthetic import MIN_SIZE

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is an existing file; give a folder (it is created if missing)")
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.size is not None:
        height, width = args.size
        if height < MIN_SIZE or width < MIN_SIZE:
            raise UserError(f"--size H W must both be at least {MIN_SIZE} pixels, got {height} {width}")
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.iters is None:
        args.iters = LONG_ITERS if args.long else ITERS
    if args.iters < 1 or args.val_samples < 1 or args.batch_size < 2:
        raise UserError("--iters and --val-samples must be >= 1 and --batch-size >= 2")


def render_only(args: argparse.Namespace) -> int:
    from sbcb.data.synthetic import SyntheticStreets
    from sbcb.viz import render_sample, save_png

    size = tuple(args.size) if args.size is not None else (256, 512)
    dataset = SyntheticStreets(args.num_samples or 4, size=size, seed=args.seed, split=args.split)
    info = dataset.info
    print(f"{dataset}: {info.num_classes} classes, ignore {info.ignore_index}")
    for i in range(len(dataset)):
        sample = dataset[i]
        path = save_png(args.out / f"{sample['meta']['name']}.png", render_sample(sample, info))
        num_instances = len(set(sample["instance"][sample["instance"] > 0].tolist()))
        classes = sorted(set(sample["label"].ravel().tolist()) - {info.ignore_index})
        print(f"wrote {path}  ({len(classes)} classes, {num_instances} instances)")
    print(f"{len(dataset)} pictures (image | label colours | overlay + instance outlines) in {args.out.resolve()}")
    return 0


def _pictures(models: dict[str, Any], val_set: Any, info: Any, out: Path, count: int) -> list[Path]:
    """Per image: image | GT | baseline pred | SBCB pred | SBCB boundaries | baseline errors | SBCB errors."""
    import numpy as np
    import torch

    from sbcb.train.evaluation import sbd_probabilities
    from sbcb.viz import colorize, save_png, side_by_side

    written = []
    raw = val_set.dataset
    for i in range(min(count, len(val_set))):
        sample = val_set[i]
        image = raw[i]["image"]
        gt = sample["label"].numpy()
        panels = [image, colorize(gt.astype(np.uint8), info.colors, ignore_index=info.ignore_index)]
        errors = []
        x = sample["image"].unsqueeze(0)
        for model in models.values():
            model.eval()
            with torch.no_grad():
                pred = model(x).argmax(1)[0].numpy().astype(np.uint8)
                probs = sbd_probabilities(model, x)
            panels.append(colorize(pred, info.colors, ignore_index=info.ignore_index))
            if probs is not None:
                p = probs[0].numpy()
                bnd = colorize(p.argmax(0).astype(np.uint8), info.colors, ignore_index=info.ignore_index)
                bnd[p.max(0) < 0.5] = 0
                panels.append(bnd)
            err = (image.astype(np.float32) * 0.4).astype(np.uint8)
            err[(pred != gt) & (gt != info.ignore_index)] = (255, 0, 0)
            errors.append(err)
        path = save_png(out / "pictures" / f"val_{i:03d}.png", side_by_side(panels + errors))
        written.append(path)
    return written


def _takes_output_stride(arch: str) -> bool:
    """Whether `arch` is an smp DeepLab-family architecture (the only ones the demo sets an output stride for)."""
    from sbcb.models import MODELS, SMP_ARCHS, smp_key, smp_takes_output_stride

    is_smp = ":" not in arch and arch.lower() not in MODELS and smp_key(arch) in SMP_ARCHS
    return is_smp and smp_takes_output_stride(arch)


def _estimate(cfg: Any, *, num_classes: int) -> tuple[float | None, str]:
    """The run-time estimate printed before training: baseline steps timed on this machine, now.

    Two models train (SBCB's step costs ~1.1x the baseline's, benchmarks/results/step_overhead.md), plus data,
    evaluation and pictures (~15 %). A busy machine makes both the steps and the estimate longer.
    """
    import time

    import torch

    from sbcb.models import build_model
    from sbcb.segmentor import Segmentor
    from sbcb.train.run import model_kwargs

    try:
        net = Segmentor(build_model(**model_kwargs(cfg, num_classes)), num_classes=num_classes).train()
    except Exception:  # a model the probe can't build is reported by the training itself
        return None, "estimate: not available for this model"
    h, w = cfg.data.crop or cfg.data.image_size
    images = torch.randn(cfg.train.batch_size, 3, h, w)
    masks = torch.randint(0, num_classes, (cfg.train.batch_size, h, w))
    steps = []
    for _ in range(3):  # the first step warms up the allocator and oneDNN's kernels
        start = time.perf_counter()
        sum(net(images, masks).values()).backward()
        steps.append(time.perf_counter() - start)
    step = min(steps[1:])
    seconds = step * cfg.train.iters * (1.0 + 1.1) * 1.3
    return seconds, (
        f"estimate: about {seconds / 60:.1f} min ({step:.2f} s per baseline step measured now on "
        f"{torch.get_num_threads()} threads; {cfg.train.iters} iterations x 2 models)"
    )


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    _validate(args)
    if args.render_only:
        return render_only(args)

    import torch

    from sbcb.data.synthetic import SyntheticStreets
    from sbcb.train.config import Config
    from sbcb.train.evaluation import evaluate, to_jsonable
    from sbcb.train.run import run_training

    size = list(args.size) if args.size is not None else [128, 256]
    base = {
        "dataset": "synthetic",
        "num_samples": args.num_samples or 64,
        "val_samples": args.val_samples,
        "image_size": size,
        "crop": size,
        "arch": args.arch,
        "encoder": args.encoder,
        "arch_kwargs": args.arch_kwargs,
        "iters": args.iters,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "ckpt_every": args.iters,
        "val_every": args.iters,
        "keep_last": 1,
        "workers": args.workers,
        "progress": not args.no_progress,
        "output_stride": LONG_OUTPUT_STRIDE if args.long else OUTPUT_STRIDE,
    }
    if not _takes_output_stride(args.arch):
        del base["output_stride"]
    first = Config.from_flat(base | {"sbcb_head": "none", "out": str(args.out / "baseline")}, source="sbcb demo")
    estimate, line = _estimate(first, num_classes=SyntheticStreets(1, size=(64, 64)).info.num_classes)
    print(line, flush=True)
    models: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    val_set = info = None
    for name, head in (("baseline", "none"), ("sbcb", "casenet")):
        cfg = Config.from_flat(base | {"sbcb_head": head, "out": str(args.out / name)}, source="sbcb demo")
        outcome = run_training(cfg, overwrite=True)  # the demo regenerates its own folders
        if outcome.code != 0:
            return outcome.code
        models[name] = outcome.model
        seconds[name] = outcome.result.seconds
        val_set, info = outcome.val_set, outcome.data_info
        metrics[name] = evaluate(
            outcome.model,
            val_set,
            num_classes=info.num_classes,
            ignore_index=info.ignore_index,
            boundary_radii=(3,),
            progress=not args.no_progress,
        )
    pictures = _pictures(models, val_set, info, args.out, args.pictures)
    wall = time.perf_counter() - start
    wall_line = f"demo wall time: {wall:.0f} s (both trainings, evaluation and pictures" + (
        f"; the estimate was {estimate:.0f} s)" if estimate is not None else ")"
    )

    def pct(m: dict[str, Any], key: str) -> str:
        return f"{100 * m[key]:.2f}" if key in m else "n/a"

    rows = [("mIoU", "miou"), ("boundary F 3 px", "bf3"), ("SBD mF (ODS)", "sbd_mf")]
    table = ["| metric (%) | baseline | SBCB (CASENet) | delta |", "|---|---|---|---|"]
    for label, key in rows:
        b, s = metrics["baseline"], metrics["sbcb"]
        delta = f"{100 * (s[key] - b[key]):+.2f}" if key in b and key in s else "-"
        table.append(f"| {label} | {pct(b, key)} | {pct(s, key)} | {delta} |")
    table.append(f"| train time (s) | {seconds['baseline']:.0f} | {seconds['sbcb']:.0f} | |")
    names = list(info.class_names)
    per_class = ["| class | IoU baseline | IoU SBCB |", "|---|---|---|"]
    for c, cname in enumerate(names):
        per_class.append(
            f"| {cname} | {100 * metrics['baseline']['iou'][c]:.2f} | {100 * metrics['sbcb']['iou'][c]:.2f} |"
        )
    report = [
        "# sbcb demo: baseline vs SBCB (CASENet) on SyntheticStreets",
        "",
        f"{args.arch} / {args.encoder}"
        + (f" (output stride {base['output_stride']})" if "output_stride" in base else "")
        + f", {args.iters} iterations, batch {args.batch_size}, {size[0]}x{size[1]} images, "
        f"{base['num_samples']} training / {args.val_samples} validation images, seed {args.seed}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Same seed, data and schedule for both models; the "
        "SBD head is dropped at inference, so both deploy with the same parameters. A short run on synthetic data is "
        "a smoke test of the method, not a reproduction of the paper's numbers.",
        "",
        *table,
        "",
        wall_line,
        "",
        *per_class,
        "",
        "Pictures (image | GT | baseline | SBCB | SBCB boundaries | baseline errors | SBCB errors):",
        "",
        *[f"![{p.name}](pictures/{p.name})" for p in pictures],
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("\n".join(report))
    (args.out / "results.json").write_text(
        json.dumps(
            to_jsonable(
                {"metrics": metrics, "seconds": seconds, "wall_seconds": wall, "estimate_seconds": estimate}
                | {"config": base}
            ),
            indent=2,
        )
    )
    print("\n".join(table))
    print(wall_line)
    print(f"wrote {args.out / 'report.md'}, {args.out / 'results.json'} and {len(pictures)} pictures")
    return 0
