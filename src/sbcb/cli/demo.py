"""`sbcb demo`: render a few built-in synthetic street scenes to PNG files.

Each file shows the image, its label colours and the label overlay with instance outlines, side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="render synthetic street scenes (image | labels | instance outlines) to PNG files",
        description="Render samples of the built-in SyntheticStreets dataset to PNG files: the image, the label "
        "colours and the label overlay with instance outlines, side by side. Needs no downloads.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--num-samples", type=int, default=4, metavar="N", help="how many samples (default: 4)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"), help="image size (default: 256 512)"
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="val", help="split (default: val)")
    return parser


def _validate(args: argparse.Namespace) -> None:
    from sbcb.cli.main import UserError
    from sbcb.data.synthetic import MIN_SIZE

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is an existing file; give a folder (it is created if missing)")
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}")
    height, width = args.size
    if height < MIN_SIZE or width < MIN_SIZE:
        raise UserError(f"--size H W must both be at least {MIN_SIZE} pixels, got {height} {width}")
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")


def run(args: argparse.Namespace) -> int:
    _validate(args)
    from sbcb.data.synthetic import SyntheticStreets
    from sbcb.viz import render_sample, save_png

    dataset = SyntheticStreets(args.num_samples, size=tuple(args.size), seed=args.seed, split=args.split)
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
