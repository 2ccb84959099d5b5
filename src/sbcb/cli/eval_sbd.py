"""`sbcb eval-sbd`: SBD ODS / OIS / AP of per-class prediction PNGs against a GT folder (spec §8.3).

Evaluate per-class boundary predictions stored as 8-bit PNGs (PRED/class_{k+1:03d}/<sample><pred-suffix>, value =
floor(255 p)) against GT boundaries. Exact maximum matching, so results are deterministic and at least pyEdgeEval's.
See docs/metrics.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval-sbd",
        help="semantic boundary detection metrics (ODS/OIS/AP) of prediction PNG folders",
        description=__doc__.split("\n\n")[1],  # argparse re-wraps it
    )
    io = p.add_argument_group("input and output")
    io.add_argument("--pred", required=True, type=Path, help="prediction folder holding class_001/, class_002/, ...")
    io.add_argument("--gt", required=True, type=Path, help="GT folder; samples are found by --gt-suffix")
    io.add_argument("--num-classes", type=int, default=19, help="K (default 19, Cityscapes)")
    io.add_argument(
        "--gt-format",
        choices=("edges", "labels"),
        default="edges",
        help="edges: bit-packed RGB boundary PNGs at the evaluation size; labels: uint8 label PNGs at full size "
        "(0..K-1, 255 ignore, other values = void classes) + optional <sample>_instance.png, converted with "
        "--protocol (default edges)",
    )
    io.add_argument(
        "--gt-suffix", default="_edge.png", help="GT file suffix (pyEdgeEval: _gtProc_half_thin_isedge.png)"
    )
    io.add_argument("--pred-suffix", default=".png", help="prediction file suffix (pyEdgeEval: _leftImg8bit.png)")
    io.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    io.add_argument("--cache", type=Path, default=None, help="per-image counts cache folder (resume after a stop)")
    io.add_argument("--class-names", default=None, help="comma-separated names (default: Cityscapes when K = 19)")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev = p.add_argument_group("protocol")
    ev.add_argument(
        "--protocol",
        choices=("thin", "raw"),
        default="thin",
        help="thin: thin predictions at each threshold (SBCB setting); raw: no thinning (default thin)",
    )
    ev.add_argument("--scale", type=float, default=0.5, help="evaluation scale for --gt-format labels (default 0.5)")
    ev.add_argument("--max-dist", type=float, default=0.0035, help="matching distance / image diagonal (0.0035)")
    ev.add_argument("--thresholds", type=int, default=99, help="number of thresholds (default 99)")
    ev.add_argument("--quick", action="store_true", help="9 thresholds (fast, ODS biased low; see docs)")
    ev.add_argument("--skip-absent", action="store_true", help="skip images without GT for a class (pre-SEAL)")
    ev.add_argument(
        "--thin-variant",
        choices=("standard", "pyedgeeval"),
        default="standard",
        help="standard thinning (= MATLAB/skimage) or pyEdgeEval's early-stopping one (default standard)",
    )
    ev.add_argument("--workers", type=int, default=1, help="processes over images; results do not depend on it")
    return p


def format_table(results: dict, names: list[str]) -> str:
    """Per-class rows and a mean row, values ×100 with 3 decimals."""
    cols = [("ODS-F", "ods_f"), ("ODS-P", "ods_p"), ("ODS-R", "ods_r"), ("ODS-t", "ods_t"), ("OIS-F", "ois_f")]
    cols.append(("AP", "ap"))
    width = max(12, *(len(n) for n in names))
    lines = [f"{'class':<{width}} " + " ".join(f"{h:>8}" for h, _ in cols)]
    for k, name in enumerate(names):
        vals = [results[key][k] * (1 if key == "ods_t" else 100) for _, key in cols]
        lines.append(f"{name:<{width}} " + " ".join(f"{v:8.3f}" for v in vals))
    means = {
        "ods_f": results["mean_ods_f"],
        "ois_f": results["mean_ois_f"],
        "ap": results["mean_ap"],
    }
    row = [f"{means[key] * 100:8.3f}" if key in means else f"{'':>8}" for _, key in cols]
    lines.append(f"{'mean':<{width}} " + " ".join(row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from sbcb.cli.errors import UserError
    from sbcb.data.cityscapes import CITYSCAPES_CLASSES
    from sbcb.metrics.sbd import SBDEvaluator, evaluate_folders

    if not args.pred.is_dir():
        raise UserError(f"--pred {args.pred} is not a folder")
    if not args.gt.is_dir():
        raise UserError(f"--gt {args.gt} is not a folder")
    if args.num_classes < 1 or args.workers < 1 or args.thresholds < 1:
        raise UserError("--num-classes, --workers and --thresholds must be >= 1")
    if args.gt_format == "edges" and args.num_classes > 24:
        raise UserError("bit-packed edge PNGs hold at most 24 classes; use --gt-format labels")
    if args.out is not None and args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder; give a JSON file path")
    k = args.num_classes
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
        if len(names) != k:
            raise UserError(f"--class-names has {len(names)} names but --num-classes is {k}")
    else:
        names = list(CITYSCAPES_CLASSES) if k == 19 else [f"class_{i}" for i in range(k)]
    evaluator = SBDEvaluator(
        k,
        max_dist=args.max_dist,
        thresholds=9 if args.quick else args.thresholds,
        thin=args.protocol == "thin",
        thin_variant=args.thin_variant,
        skip_absent=args.skip_absent,
        workers=args.workers,
    )
    try:
        results = evaluate_folders(
            evaluator,
            args.pred,
            args.gt,
            gt_format=args.gt_format,
            gt_suffix=args.gt_suffix,
            pred_suffix=args.pred_suffix,
            protocol=args.protocol,
            scale=args.scale,
            cache_dir=args.cache,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    print(format_table(results, names))
    print(f"{results['num_images']} images; mean ODS-F {results['mean_ods_f'] * 100:.3f}")
    if args.out is not None:
        payload = {
            "classes": names,
            "per_class": {
                key: [float(v) for v in results[key]]
                for key in ("ods_f", "ods_p", "ods_r", "ods_t", "ois_f", "ois_p", "ois_r", "ap", "auc")
            },
            "mean_ods_f": results["mean_ods_f"],
            "mean_ois_f": results["mean_ois_f"],
            "mean_ap": results["mean_ap"],
            "mean_auc": results["mean_auc"],
            "num_images": results["num_images"],
            "settings": results["settings"],
            "protocol": args.protocol,
            "command": sys.argv,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out}")
    return 0
