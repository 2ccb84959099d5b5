"""Evaluation: whole / sliding-window / multi-scale+flip inference, then mIoU, boundary F and (with a head) SBD.

Inference modes (spec §7):

- ``whole``: the full image in one pass (padded with zeros to a multiple of ``size_divisor`` and cropped back);
- ``slide``: windows of ``crop`` moved by ``stride`` (mmseg's rule: the last window is shifted back inside the
  image), logits averaged where windows overlap;
- multi-scale + flip: the image is resized by each of ``scales`` (bilinear) and optionally flipped; the softmax
  probabilities of every pass, resized back to the image size, are averaged (mmseg convention).

Metrics (spec §8): `sbcb.metrics.MeanIoU` (dataset confusion matrix), `sbcb.metrics.BoundaryFScore` at the
given pixel radii, `sbcb.metrics.BoundaryIoU` (band of ``biou_width`` px, or ``biou_ratio`` of the image diagonal:
the paper's 2 % by default), and when the model carries an SBD head, the SBD ODS/OIS/AP of the head's ``fuse`` output
against the samples' boundary targets (a "raw", non-thinned GT at evaluation resolution; the paper's thin IS
protocol is `sbcb.metrics.sbd` on half-scale GT).
Distributed: the dataset is split by rank (``i % world == rank``) and every metric is summed over ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbcb.train import distributed as D


def _pad_to_multiple(images: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = images.shape[-2:]
    if divisor <= 1:
        return images, (h, w)
    ph = (divisor - h % divisor) % divisor
    pw = (divisor - w % divisor) % divisor
    if ph or pw:
        images = F.pad(images, (0, pw, 0, ph))
    return images, (h, w)


def _forward_logits(model: nn.Module, images: torch.Tensor, *, size_divisor: int) -> torch.Tensor:
    """Logits [B, K, H, W] at the input size (the model may predict at a lower resolution)."""
    padded, (h, w) = _pad_to_multiple(images, size_divisor)
    logits = model(padded)
    if isinstance(logits, Mapping) and "out" in logits:  # a bare torchvision segmentation model
        logits = logits["out"]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{type(model).__name__}(images) returned {type(logits).__name__}, not a logits tensor")
    if logits.shape[-2:] != padded.shape[-2:]:
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    return logits[..., :h, :w].float()


def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    crop: Sequence[int],
    stride: Sequence[int],
    size_divisor: int = 32,
) -> torch.Tensor:
    """Sliding-window logits, averaged where windows overlap (mmseg 0.27 ``slide_inference`` grid).

    Args:
        model: Returns logits for a batch of crops.
        images: float [B, 3, H, W].
        crop: Window (h, w).
        stride: Step (h, w).
        size_divisor: Windows smaller than ``crop`` (small images) are zero-padded to a multiple of this.

    Returns:
        float [B, K, H, W] logits.
    """
    ch, cw = int(crop[0]), int(crop[1])
    sh, sw = int(stride[0]), int(stride[1])
    if min(ch, cw, sh, sw) < 1:
        raise ValueError(f"slide inference needs positive crop and stride, got crop={crop} stride={stride}")
    b, _, h, w = images.shape
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, h, w), device=images.device)
    for r in range(rows):
        for c in range(cols):
            y2 = min(r * sh + ch, h)
            x2 = min(c * sw + cw, w)
            y1 = max(y2 - ch, 0)
            x1 = max(x2 - cw, 0)
            logits = _forward_logits(model, images[:, :, y1:y2, x1:x2], size_divisor=size_divisor)
            if total is None:
                total = images.new_zeros((b, logits.shape[1], h, w), dtype=torch.float32)
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    assert total is not None
    return total / count


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mode: str = "whole",
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    size_divisor: int = 32,
) -> torch.Tensor:
    """Segmentation scores [B, K, H, W] for a batch, with the chosen inference mode.

    With one scale and no flip the result is logits; with several scales or flip it is the mean of the
    softmax probabilities over passes. Either way ``argmax(1)`` is the prediction.

    Args:
        model: In eval mode; returns [B, K, h, w] logits.
        images: float [B, 3, H, W], normalized.
        mode: ``"whole"`` or ``"slide"``.
        crop: Slide window (h, w); required for ``"slide"``.
        stride: Slide step (h, w); default 2/3 of the crop (spec §7 [inferred]).
        scales: Resize factors for multi-scale testing (paper MS: 0.5..2.0 by 0.25).
        flip: Also run the horizontally flipped image.
        size_divisor: Inputs are zero-padded to a multiple of this (the model's output stride).
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if mode == "slide":
        if crop is None:
            raise ValueError("slide inference needs crop=(h, w)")
        if stride is None:
            stride = (max(1, int(crop[0]) * 2 // 3), max(1, int(crop[1]) * 2 // 3))
    h, w = images.shape[-2:]

    def run(x: torch.Tensor) -> torch.Tensor:
        if mode == "slide":
            return slide_logits(model, x, crop=crop, stride=stride, size_divisor=size_divisor)
        return _forward_logits(model, x, size_divisor=size_divisor)

    scales = tuple(float(s) for s in scales)
    if scales == (1.0,) and not flip:
        return run(images)
    probs: torch.Tensor | None = None
    passes = 0
    for s in scales:
        x = images
        if s != 1.0:
            size = (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5)))
            x = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            xi = x.flip(-1) if flipped else x
            out = run(xi)
            if flipped:
                out = out.flip(-1)
            if out.shape[-2:] != (h, w):
                out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            p = out.softmax(1)
            probs = p if probs is None else probs + p
            passes += 1
    assert probs is not None
    return probs / passes


def sbd_probabilities(model: nn.Module, images: torch.Tensor, *, size_divisor: int = 32) -> torch.Tensor | None:
    """Sigmoid of the SBD head's ``fuse`` output [B, K, H, W] at the image size, or None without an SBD head.

    Works on an `sbcb.SBCB` wrapper (its ``forward_outputs``, the one method that returns SBD outputs); a stripped
    or baseline model gives None. Images are
    zero-padded to a multiple of `size_divisor` (as for the segmentation logits) and the output cropped back, so
    sizes such as CamVid's 360x480 work with encoders that need /32 inputs.
    """
    fn = getattr(model, "forward_outputs", None)
    if fn is None or getattr(model, "head", None) is None:
        return None
    padded, (h, w) = _pad_to_multiple(images, size_divisor)
    fuse = fn(padded).sbd["fuse"].float()
    if fuse.shape[-2:] != padded.shape[-2:]:  # head_scale < 1
        fuse = F.interpolate(fuse, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    return torch.sigmoid(fuse[..., :h, :w])


def dense_boundaries(boundaries: torch.Tensor, num_classes: int) -> torch.Tensor:
    """bool [B, K, H, W] from dense [B, K, H, W] or bit-packed uint8 [B, ceil(K/8), H, W] boundary targets."""
    if boundaries.shape[1] == num_classes:  # dense (for K = 1 the packed layout is the same: bit 0 = class 0)
        return boundaries.bool()
    from sbcb.boundaries import unpack_boundaries

    return unpack_boundaries(boundaries, num_classes).bool()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Any,
    *,
    num_classes: int,
    ignore_index: int = 255,
    device: torch.device | str | None = None,
    batch_size: int = 1,
    workers: int = 0,
    mode: str = "whole",
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    boundary_radii: Sequence[float] = (3, 5, 9, 12),
    boundary_iou: bool = True,
    biou_width: int | None = None,
    biou_ratio: float = 0.02,
    sbd: bool = True,
    sbd_thresholds: int = 99,
    size_divisor: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a segmentation model (and its SBD head, if any) on a dataset of evaluation samples.

    Args:
        model: `sbcb.SBCB` wrapper, stripped model or any module returning [B, K, h, w] logits.
        dataset: Samples with ``"image"`` float [3, H, W], ``"label"`` int [H, W] (255 = ignore) and, for SBD,
            ``"boundaries"`` (packed or [K, H, W]).
        num_classes: K.
        ignore_index: Label value that is not evaluated.
        device: Where to run (default: the model's device).
        batch_size: Images per forward pass (equal-sized images only when > 1).
        workers: DataLoader workers.
        mode, crop, stride, scales, flip, size_divisor: See `predict_logits`.
        boundary_radii: Boundary F-score tolerances in pixels.
        boundary_iou: Also compute Boundary IoU (Cheng et al. 2021).
        biou_width: Its band width d in pixels; None = ``biou_ratio`` of each image's diagonal.
        biou_ratio: d as a fraction of the image diagonal when ``biou_width`` is None (paper: 0.02).
        sbd: Also evaluate the SBD head when present and the samples have boundaries.
        sbd_thresholds: Thresholds for SBD (99 = full protocol; fewer = the quick mode, biased low).
        progress: tqdm bar on rank 0.

    Returns:
        Fractions in [0, 1]: ``miou``, ``aacc``, ``macc``, ``iou`` (list [K], NaN = absent), ``bf{r}`` per radius
        and ``bf_per_class`` {r: list [K]}; ``biou`` (mean Boundary IoU), ``biou_per_class`` (list [K], NaN =
        empty union) and ``biou_settings`` (``width_px``, ``dilation_ratio``, ...); with SBD: ``sbd_mf`` (mean ODS
        F), ``sbd_mois``, ``sbd_map`` and ``sbd_ods_f`` (list [K]); plus ``num_images`` and the settings used.
    """
    from sbcb.metrics.boundary_f import BoundaryFScore
    from sbcb.metrics.boundary_iou import BoundaryIoU
    from sbcb.metrics.miou import MeanIoU

    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    rank, world = D.get_rank(), D.get_world_size()
    indices = list(range(rank, len(dataset), world))
    subset = torch.utils.data.Subset(dataset, indices)
    loader = torch.utils.data.DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        generator=torch.Generator(),  # iterator creation must not consume the global RNG
    )
    miou = MeanIoU(num_classes, ignore_index=ignore_index)
    bf = BoundaryFScore(num_classes, radii=tuple(boundary_radii), ignore_index=ignore_index) if boundary_radii else None
    biou = None
    if boundary_iou:  # a pixel width wins over the ratio
        band = {"width": int(biou_width)} if biou_width is not None else {"dilation_ratio": float(biou_ratio)}
        biou = BoundaryIoU(num_classes, ignore_index=ignore_index, **band)
    sbd_eval = None
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="eval", unit="img", dynamic_ncols=True)
    for batch in loader:
        images = batch["image"].to(device).float()
        labels = batch["label"].to(device).long()
        scores = predict_logits(
            model, images, mode=mode, crop=crop, stride=stride, scales=scales, flip=flip, size_divisor=size_divisor
        )
        if scores.shape[-2:] != labels.shape[-2:]:
            scores = F.interpolate(scores, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        pred = scores.argmax(1)
        miou.update(pred, labels)
        if bf is not None:
            bf.update(pred, labels)
        if biou is not None:
            biou.update(pred, labels)
        if sbd and batch.get("boundaries") is not None:
            probs = sbd_probabilities(model, images)
            if probs is not None:
                gt = dense_boundaries(batch["boundaries"], num_classes)
                if sbd_eval is None:
                    sbd_eval = _make_sbd_evaluator(num_classes, sbd_thresholds)
                for p, g in zip(probs.cpu().numpy(), gt.bool().cpu().numpy()):
                    sbd_eval.update(p, g)
        if bar is not None:
            bar.update(len(images) * world)
    if bar is not None:
        bar.close()

    miou.sync()
    scores_iou = miou.compute()
    out: dict[str, Any] = {
        "miou": float(scores_iou["miou"]),
        "aacc": float(scores_iou["aacc"]),
        "macc": float(scores_iou["macc"]),
        "iou": [float(x) for x in scores_iou["iou"]],
        "num_images": len(dataset),
        "mode": mode,
        "scales": list(scales),
        "flip": bool(flip),
    }
    if bf is not None:
        bf.sync()
        res = bf.compute()
        for r, mean, per_class in zip(res["radii"], res["mean_fscore"], res["fscore"]):
            key = f"bf{r:g}"
            out[key] = float(mean)
            out.setdefault("bf_per_class", {})[key] = [float(x) for x in per_class]
    if biou is not None:
        biou.sync()
        res = biou.compute()
        out["biou"] = float(res["mean"])
        out["biou_per_class"] = [float(x) for x in res["iou"]]
        out["biou_settings"] = res["settings"]
    # Every rank must agree on whether SBD ran (some ranks may have had no images).
    has_sbd = any(D.all_gather_object(sbd_eval is not None))
    if has_sbd:
        if sbd_eval is None:
            sbd_eval = _make_sbd_evaluator(num_classes, sbd_thresholds)
        if hasattr(sbd_eval, "sync"):
            sbd_eval.sync()
        from sbcb.metrics.sbd import class_scores

        counts = sbd_eval.count_array()  # [N, K, T, 4]
        curves = [class_scores(counts[:, c], sbd_eval.thresholds) for c in range(counts.shape[1])]
        res = sbd_eval.compute()
        out["sbd_pr"] = {
            "thresholds": [float(t) for t in sbd_eval.thresholds],
            "precision": [[float(v) for v in c["precision"]] for c in curves],
            "recall": [[float(v) for v in c["recall"]] for c in curves],
        }
        out["sbd_mf"] = float(res["mean_ods_f"])
        out["sbd_mois"] = float(res["mean_ois_f"])
        out["sbd_map"] = float(res["mean_ap"])
        out["sbd_ods_f"] = [float(x) for x in res["ods_f"]]
        out["sbd_thresholds"] = int(sbd_thresholds)
    if was_training:
        model.train()
    return out


def _make_sbd_evaluator(num_classes: int, thresholds: int) -> Any:
    from sbcb.metrics.sbd import SBDEvaluator

    return SBDEvaluator(num_classes, thresholds=thresholds)


def plot_pr_curves(metrics: Mapping[str, Any], path: Any, class_names: Sequence[str] | None = None) -> Any:
    """Per-class SBD precision-recall curves (one line per class, ODS F in the legend) as a PNG.

    Needs matplotlib (``pip install "sbcb[viz]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('PR-curve pictures need matplotlib: pip install "sbcb[viz]"') from e
    from pathlib import Path

    pr = metrics["sbd_pr"]
    k = len(pr["precision"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20")
    for c in range(k):
        ax.plot(pr["recall"][c], pr["precision"][c], color=cmap(c % 20), lw=1.2,
                label=f"{names[c]} (ODS F {100 * metrics['sbd_ods_f'][c]:.1f})")  # fmt: skip
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1),
           title=f"SBD precision-recall, mean ODS F {100 * metrics['sbd_mf']:.2f}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def format_report(metrics: Mapping[str, Any], class_names: Sequence[str] | None = None) -> str:
    """A Markdown report: summary table, then per-class IoU / boundary F / SBD F (percent, 2 decimals)."""

    def pct(x: float) -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"

    k = len(metrics["iou"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    bf_keys = [key for key in metrics if key.startswith("bf") and key != "bf_per_class"]
    has_biou = "biou" in metrics
    summary = (
        ["miou", "aacc", *bf_keys]
        + (["biou"] if has_biou else [])
        + [key for key in ("sbd_mf", "sbd_mois", "sbd_map") if key in metrics]
    )
    lines = ["| metric | value (%) |", "|---|---|"]
    lines += [f"| {_label(key, metrics)} | {pct(metrics[key])} |" for key in summary]
    has_sbd = "sbd_ods_f" in metrics
    header = ["class", "IoU"] + [f"BF {key[2:]}px" for key in bf_keys] + (["Boundary IoU"] if has_biou else [])
    header += ["SBD ODS F"] if has_sbd else []
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in range(k):
        cells = [names[c], pct(metrics["iou"][c])]
        cells += [pct(metrics["bf_per_class"][key][c]) for key in bf_keys]
        if has_biou:
            cells.append(pct(metrics["biou_per_class"][c]))
        if has_sbd:
            cells.append(pct(metrics["sbd_ods_f"][c]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _label(key: str, metrics: Mapping[str, Any]) -> str:
    """Summary-row name; Boundary IoU says its band, which changes the number."""
    settings = metrics.get("biou_settings") or {}
    if key != "biou" or not settings:
        return key
    if settings.get("width_px") is not None:
        return f"biou ({settings['width_px']} px)"
    return f"biou ({100 * settings['dilation_ratio']:g}% of diagonal)"


def to_jsonable(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Replace NaN by None and numpy scalars by floats, for JSON."""

    def conv(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, np.ndarray)):
            return [conv(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(float(v)) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v

    return conv(metrics)
