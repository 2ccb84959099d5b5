"""`sbcb predict`: images or folders -> label PNGs, colour overlays, SBD boundary maps and error maps.

For each input image ``NAME`` it writes into ``--out``:

- ``NAME_label.png``: predicted class ids (uint8, one channel);
- ``NAME_overlay.png``: the image with the prediction's class colours blended over it;
- ``NAME_boundaries.png`` (checkpoint with an SBD head): each pixel gets the colour of the class with the highest
  boundary probability where that probability is >= ``--boundary-threshold``, black elsewhere;
- ``NAME_error.png`` (with ``--labels DIR`` holding ``NAME.png`` label maps): the image darkened, wrong pixels red,
  ignored pixels black.

The run's own settings come from the checkpoint's configuration: its dataset's class colours, its training crop as
the ``--mode slide`` window, and its image scale (a run trained at ``--image-scale 0.5`` predicts on the image
rescaled by 0.5, as `sbcb eval` does). Every picture is written at the input image's size: the scores are resized
back bilinearly before the argmax.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sbcb.cli import add_allow_custom_arch, add_command, add_inference_arguments, inference_options

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = add_command(
        subparsers,
        "predict",
        help="predict label maps, overlays, SBD boundary maps and error maps for images",
        doc=__doc__,
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint from `sbcb train` or `sbcb export`")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image files and/or folders of images")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--labels", type=Path, metavar="DIR", help="folder of GT label PNGs named like the images")
    add_inference_arguments(p)
    p.add_argument("--boundary-threshold", type=float, default=0.5, help="SBD probability shown (default: 0.5)")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    add_allow_custom_arch(p)
    return p


def _images(inputs: list[Path]) -> list[Path]:
    from sbcb.cli.errors import UserError

    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"input {path} does not exist")
    if not found:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


def _palette(dataset: str | None, num_classes: int) -> tuple[list[tuple[int, int, int]], int]:
    """Class colours and ignore index of the checkpoint's dataset (a fixed random palette if unknown)."""
    import numpy as np

    try:
        from sbcb.data.registry import dataset_class

        info = getattr(dataset_class(dataset or ""), "info", None)
    except (KeyError, ImportError):
        info = None
    if info is not None and getattr(info, "num_classes", None) == num_classes:
        return [tuple(c) for c in info.colors], info.ignore_index
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(num_classes)], 255


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sbcb.cli.errors import UserError
    from sbcb.data.transforms import Compose, Rescale, build_eval_transform
    from sbcb.train.checkpoint import load_checkpoint, model_from_checkpoint
    from sbcb.train.evaluation import predict_logits, sbd_probabilities
    from sbcb.train.run import config_of_checkpoint
    from sbcb.viz import colorize, overlay, save_png

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is an existing file; give a folder for the pictures")
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    try:
        ckpt = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(ckpt, source=args.checkpoint, allow_custom=args.allow_custom_arch)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    images = _images(args.inputs)
    kwargs = ckpt["model"]["kwargs"]
    k = int(kwargs["num_classes"])
    dataset, crop, scale = None, None, 1.0
    if ckpt.get("config"):  # a checkpoint without its run's config (hand-made) predicts at the image's own scale
        data = config_of_checkpoint(ckpt, source=str(args.checkpoint)).data
        dataset, crop, scale = data.dataset, data.crop, data.image_scale
    colors, ignore_index = _palette(dataset, k)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    transform = build_eval_transform(k, ignore_index=ignore_index)
    if scale != 1.0:
        transform = Compose([Rescale(scale), transform])
    inference = inference_options(args, default_crop=crop)
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"can't read image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        dummy = np.zeros(rgb.shape[:2], np.uint8)
        x = transform(rgb, dummy, None)["image"].unsqueeze(0).to(device)
        with torch.no_grad():
            scores = predict_logits(model, x, **inference)
            probs = sbd_probabilities(model, x)
            if tuple(scores.shape[-2:]) != rgb.shape[:2]:  # a run trained at another image scale
                scores = F.interpolate(scores, size=rgb.shape[:2], mode="bilinear", align_corners=False)
                if probs is not None:
                    probs = F.interpolate(probs, size=rgb.shape[:2], mode="bilinear", align_corners=False)
            pred = scores.argmax(1)[0].cpu().numpy().astype(np.uint8)
        stem = path.stem
        save_png(args.out / f"{stem}_label.png", pred)
        save_png(args.out / f"{stem}_overlay.png", overlay(rgb, colorize(pred, colors, ignore_index=ignore_index)))
        written = ["label", "overlay"]
        if probs is not None:
            p = probs[0].cpu().numpy()
            if p.shape[0] == k:
                best = p.argmax(0)
                pic = colorize(best.astype(np.uint8), colors, ignore_index=ignore_index)
            else:  # binary (BBCB) head: white boundaries
                pic = np.full(rgb.shape, 255, np.uint8)
            pic[p.max(0) < args.boundary_threshold] = 0
            save_png(args.out / f"{stem}_boundaries.png", pic)
            written.append("boundaries")
        if args.labels is not None:
            gt_path = args.labels / f"{stem}.png"
            if not gt_path.is_file():
                raise UserError(f"--labels: no label {gt_path} for image {path}")
            gt = cv2.imread(str(gt_path), cv2.IMREAD_UNCHANGED)
            if gt is None or gt.ndim != 2 or gt.shape != pred.shape:
                raise UserError(f"{gt_path}: expected a one-channel label map of size {pred.shape}")
            err = (rgb.astype(np.float32) * 0.4).astype(np.uint8)
            err[(gt != pred) & (gt != ignore_index)] = (255, 0, 0)
            err[gt == ignore_index] = 0
            save_png(args.out / f"{stem}_error.png", err)
            written.append("error")
        print(f"{path} -> {args.out}/{stem}_{{{','.join(written)}}}.png")
    return 0
