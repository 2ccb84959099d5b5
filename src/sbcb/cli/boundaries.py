"""`sbcb boundaries SRC DST`: pre-compute boundary GT files (24-bit RGB-PNG bit encoding) for a folder of labels.

Label PNGs are single-channel class-id maps (0..K-1 classes, `--ignore-index` ignored, any other value a
non-evaluated region that still forms boundaries). Each ``SRC/rel/name<label-suffix>`` becomes
``DST/rel/name<label-suffix>``: class t is bit t of B (t < 8), G (8..15) or R (16..23), see
`sbcb.boundaries.encode_rgb_png`. Finished files are skipped, so an interrupted run can simply be restarted; files
are written to a temporary name first and renamed, so a file in DST is always complete.

Pre-computed GT is for evaluation or fixed-size data: for training, boundaries are computed on the fly after
augmentation (`sbcb.data.transforms.ToTrainingSample`), because rescaling stretches pre-computed bands.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sbcb.cli import add_command

MAX_RGB_CLASSES = 24


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "boundaries",
        help="pre-compute semantic boundary GT (RGB-PNG bit encoding) for a folder of label PNGs",
        doc="\n\n".join(__doc__.split("\n\n")[:2]),
    )
    p.add_argument("src", type=Path, metavar="SRC", help="folder of single-channel label PNGs (searched recursively)")
    p.add_argument("dst", type=Path, metavar="DST", help="output folder (same relative paths and names)")
    p.add_argument("--num-classes", type=int, default=19, help="K, at most 24 for the RGB encoding (default 19)")
    p.add_argument("--radius", type=float, default=2.0, help="boundary radius in pixels (default 2)")
    p.add_argument("--ignore-index", type=int, default=255, help="ignore label, inside every class (default 255)")
    p.add_argument(
        "--instances",
        type=Path,
        default=None,
        metavar="DIR",
        help="instance-id PNGs (0 = none) with the same relative paths: instance-sensitive GT",
    )
    p.add_argument("--label-suffix", default=".png", help="only labels whose name ends so (default .png)")
    p.add_argument(
        "--instance-suffix",
        default=None,
        help="instance file name = label name with --label-suffix "
        "replaced by this (e.g. _instanceIds.png); default: the same name",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all CPUs)")
    p.add_argument("--overwrite", action="store_true", help="recompute files that already exist in DST")
    return p


def _read_label(path: Path, ignore_index: int):
    import cv2
    import numpy as np

    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f"{path}: cannot be read as an image")
    if label.ndim != 2:
        raise ValueError(
            f"{path}: label PNG must be single-channel class ids, got {label.shape[2]} channels "
            "(a colour-coded label? convert it to ids first)"
        )
    if label.dtype != np.uint8:
        if not np.issubdtype(label.dtype, np.integer) or label.min() < 0:
            raise ValueError(f"{path}: label PNG must hold non-negative integer ids, got dtype {label.dtype}")
        high = int(label[label != ignore_index].max(initial=0))
        if high > 255:
            raise ValueError(
                f"{path}: label ids go up to {high}; only 8-bit class ids (0..255) can be encoded "
                "(is this an instance map? pass it with --instances)"
            )
        label = label.astype(np.uint8) if ignore_index <= 255 else label.astype(np.int64)
    return label


def _read_instances(path: Path, shape: tuple[int, int]):
    import cv2
    import numpy as np

    inst = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if inst is None:
        raise ValueError(f"{path}: instance file missing or unreadable")
    if inst.ndim != 2 or inst.shape != shape:
        raise ValueError(f"{path}: instance PNG must be single-channel with the label's size {shape}, got {inst.shape}")
    return inst.astype(np.int32)


def _job(task: tuple) -> tuple[str, str | None]:
    """Process one label file; returns (path, error message or None). Runs in a worker process."""
    import cv2

    from sbcb.boundaries import encode_rgb_png, mask_to_boundaries

    src, dst, inst_path, num_classes, radius, ignore_index = task
    cv2.setNumThreads(1)
    try:
        label = _read_label(src, ignore_index)
        inst = None if inst_path is None else _read_instances(inst_path, label.shape)
        bands = mask_to_boundaries(label, num_classes, radius, ignore_index, inst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp.png")  # cv2 picks the encoder from the extension
        if not cv2.imwrite(str(tmp), encode_rgb_png(bands)[..., ::-1]):  # RGB -> OpenCV's BGR
            raise ValueError(f"{dst}: could not be written")
        os.replace(tmp, dst)
    except (ValueError, OSError) as e:
        return str(src), str(e)
    return str(src), None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sbcb.cli.errors import UserError

    if not args.src.is_dir():
        raise UserError(f"SRC {args.src} is not a folder")
    if not 1 <= args.num_classes <= MAX_RGB_CLASSES:
        raise UserError(f"--num-classes {args.num_classes}: the RGB-PNG encoding holds 1..{MAX_RGB_CLASSES} classes")
    if 0 <= args.ignore_index < args.num_classes:
        raise UserError(f"--ignore-index {args.ignore_index} is also a class id (0..{args.num_classes - 1})")
    if args.radius <= 0:
        raise UserError(f"--radius must be > 0, got {args.radius}")
    if args.instances is not None and not args.instances.is_dir():
        raise UserError(f"--instances {args.instances} is not a folder")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")

    labels = sorted(p for p in args.src.rglob(f"*{args.label_suffix}") if p.is_file() and not p.name.startswith("."))
    if not labels:
        raise UserError(f"no files ending in {args.label_suffix!r} under {args.src}")
    tasks, skipped = [], 0
    for src in labels:
        rel = src.relative_to(args.src)
        dst = args.dst / rel
        if dst.exists() and not args.overwrite:
            skipped += 1
            continue
        inst = None
        if args.instances is not None:
            name = rel.name
            if args.instance_suffix is not None:
                name = name[: len(name) - len(args.label_suffix)] + args.instance_suffix
            inst = args.instances / rel.parent / name
        tasks.append((src, dst, inst, args.num_classes, args.radius, args.ignore_index))

    errors = []
    with tqdm(total=len(tasks), unit="file", desc="boundaries", disable=not tasks) as bar:
        if args.workers == 1 or len(tasks) <= 1:
            results = map(_job, tasks)
            for _src, err in results:
                bar.update()
                if err is not None:
                    errors.append(err)
                    break
        else:
            import multiprocessing

            # fork is cheap and safe here: this process has not started any thread pools (no torch work yet)
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(min(args.workers, len(tasks))) as pool:
                for _src, err in pool.imap_unordered(_job, tasks, chunksize=4):
                    bar.update()
                    if err is not None:
                        errors.append(err)
                        pool.terminate()
                        break
    if errors:
        raise UserError(errors[0] + "\n(files written so far are complete; fix the input and run again to resume)")
    print(f"sbcb boundaries: {len(tasks)} written, {skipped} already done, in {args.dst}")
    return 0
