"""`sbcb eval`: evaluate a checkpoint (stripped or not) on a dataset; JSON + Markdown report.

mIoU with a per-class IoU table, boundary F-score at 3/5/9/12 px, Boundary IoU (band: --biou-width px, or
--biou-ratio of the image diagonal; default: the checkpoint's setting, the paper's 2 %) and, when the checkpoint
has an SBD head, the SBD ODS/OIS/AP of its fused output. Inference: whole image, sliding window (--mode slide
--crop H W --stride H W) and multi-scale + flip (--scales 0.5 0.75 1.0 1.25 1.5 1.75 2.0 --flip). The dataset
options default to the checkpoint's training config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sbcb.cli import add_allow_custom_arch, add_command, add_inference_arguments, inference_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from sbcb.data.registry import list_datasets

    p = add_command(
        subparsers,
        "eval",
        help="evaluate a checkpoint: mIoU, boundary F (3/5/9/12 px), Boundary IoU, SBD ODS/OIS/AP with a head",
        doc=__doc__,
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint from `sbcb train` or `sbcb export`")
    p.add_argument(
        "--dataset", choices=list_datasets(), help="dataset (default: the one the checkpoint was trained on)"
    )
    p.add_argument("--root", metavar="DIR", help="dataset folder")
    p.add_argument("--split", help="split to evaluate (default: the training run's val split)")
    p.add_argument("--val-samples", type=int, help="synthetic: number of images")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="synthetic: image size")
    add_inference_arguments(p)
    p.add_argument("--radii", type=float, nargs="+", default=[3, 5, 9, 12], help="boundary F radii in px")
    p.add_argument(
        "--biou-width", type=int, metavar="PX", help="Boundary IoU band width in px (default: the checkpoint's)"
    )
    p.add_argument(
        "--biou-ratio",
        type=float,
        metavar="R",
        help="Boundary IoU band as a fraction of the image diagonal, when no width is set (default: the "
        "checkpoint's, 0.02 = the paper's)",
    )
    p.add_argument("--no-sbd", action="store_true", help="skip the SBD evaluation even with a head")
    p.add_argument("--sbd-thresholds", type=int, default=99, help="SBD thresholds (default: 99, the protocol)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default: 1)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: 0)")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write eval.json and eval.md here")
    p.add_argument("--pr-curves", action="store_true", help="with --out and an SBD head: sbd_pr.png (matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_allow_custom_arch(p)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from sbcb.cli.errors import UserError
    from sbcb.train import distributed as D
    from sbcb.train.checkpoint import load_checkpoint, model_from_checkpoint
    from sbcb.train.evaluation import evaluate, format_report, plot_pr_curves, to_jsonable
    from sbcb.train.run import build_datasets, config_of_checkpoint, has_sbd_head

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is an existing file; give a folder for eval.json and eval.md")
    try:
        ckpt = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(ckpt, source=args.checkpoint, allow_custom=args.allow_custom_arch)
        cfg = config_of_checkpoint(ckpt, source=str(args.checkpoint))  # the run's whole configuration
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    overrides = {
        "dataset": args.dataset,
        "root": args.root,
        "val_split": args.split,
        "val_samples": args.val_samples,
        "image_size": args.image_size,
        "biou_ratio": args.biou_ratio,
    }
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
    if args.biou_width is not None:
        cfg = cfg.replace(biou_width=args.biou_width)
    elif args.biou_ratio is not None:  # a ratio given alone replaces a width the run may have set
        cfg = cfg.replace(biou_width=None)
    if cfg.data.val_split in (None, "none"):
        cfg = cfg.replace(val_split="val")
    info = D.init_distributed(device=args.device)
    try:
        kwargs = ckpt["model"]["kwargs"]
        _, dataset, data_info = build_datasets(
            cfg, train=False, val_boundaries=has_sbd_head(kwargs) and not args.no_sbd
        )
        if kwargs.get("num_classes") != data_info.num_classes:
            raise UserError(
                f"the checkpoint predicts {kwargs.get('num_classes')} classes but --dataset {cfg.data.dataset} has "
                f"{data_info.num_classes}"
            )
        model.to(info.device).eval()
        inference = inference_options(args, default_crop=cfg.data.crop)
        metrics = evaluate(
            model,
            dataset,
            num_classes=data_info.num_classes,
            ignore_index=data_info.ignore_index,
            **inference,
            # the metrics
            sbd=not args.no_sbd,
            sbd_thresholds=args.sbd_thresholds,
            boundary_radii=args.radii,
            biou_width=cfg.train.biou_width,
            biou_ratio=cfg.train.biou_ratio,
            # how it runs
            progress=not args.no_progress,
            device=info.device,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        if info.is_main:
            metrics["checkpoint"] = str(args.checkpoint)
            metrics["step"] = int(ckpt.get("step", 0))
            metrics["dataset"] = cfg.data.dataset
            metrics["split"] = cfg.data.val_split
            report = format_report(metrics, data_info.class_names)
            print(report)
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "eval.json").write_text(json.dumps(to_jsonable(metrics), indent=2))
                (args.out / "eval.md").write_text(f"# sbcb eval: {args.checkpoint}\n\n" + report)
                print(f"wrote {args.out / 'eval.json'} and {args.out / 'eval.md'}")
                if args.pr_curves and "sbd_pr" in metrics:
                    try:
                        print(f"wrote {plot_pr_curves(metrics, args.out / 'sbd_pr.png', data_info.class_names)}")
                    except ImportError as e:
                        raise UserError(str(e)) from None
        return 0
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            D.cleanup_distributed()
