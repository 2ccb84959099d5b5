"""`sbcb demo`: train a baseline and the same model with SBCB (CASENet) on synthetic streets, compare them.

Everything is built in (no downloads): `SyntheticStreets` images, an smp DeepLabV3+ ResNet-18 trained from scratch
twice with the same seed, data and schedule, once plain and once with the CASENet SBD head. Both are evaluated on
the same validation images (mIoU, boundary F at 3 px, SBD mF for the SBCB model), a side-by-side table is printed,
and ``OUT/report.md``, ``OUT/results.json`` and pictures (prediction, SBD boundaries, error maps) are written. The
run folders ``OUT/baseline`` and ``OUT/sbcb`` are ordinary `sbcb train` folders (resumable, evaluable).

``--render-only`` instead renders samples of the dataset (image | label colours | overlay with instance outlines).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="train a baseline and SBCB (CASENet) on synthetic streets and compare them (about 15 min on 2 cores)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--iters", type=int, default=300, help="training iterations per model (default: 300)")
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

    from sbcb.train.evaluate import sbd_probabilities
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


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.render_only:
        return render_only(args)

    import torch

    from sbcb.train.config import Config
    from sbcb.train.evaluate import evaluate, to_jsonable
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
    }
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
        f"{args.arch} / {args.encoder}, {args.iters} iterations, batch {args.batch_size}, {size[0]}x{size[1]} images, "
        f"{base['num_samples']} training / {args.val_samples} validation images, seed {args.seed}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Same seed, data and schedule for both models; the "
        "SBD head is dropped at inference, so both deploy with the same parameters. A short run on synthetic data is "
        "a smoke test of the method, not a reproduction of the paper's numbers.",
        "",
        *table,
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
        json.dumps(to_jsonable({"metrics": metrics, "seconds": seconds, "config": base}), indent=2)
    )
    print("\n".join(table))
    print(f"wrote {args.out / 'report.md'}, {args.out / 'results.json'} and {len(pictures)} pictures")
    return 0
