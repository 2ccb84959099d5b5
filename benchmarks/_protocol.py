"""Shared protocol of the SBCB-benefit benchmarks: the same model, data order and schedule for every variant.

A *variant* is what is added to the segmentor during training; every variant is stripped back to the same plain
segmentor for evaluation, so segmentation metrics compare like with like:

- ``baseline``: the segmentor alone, cross-entropy.
- ``fcn``: + FCN auxiliary head on the penultimate encoder level (CE weight 0.4). The wrapper always carries an
  SBD head, so here it runs with alpha = beta = 0: it gets no gradient and never touches the backbone.
- ``bbcb``: + binary boundary head (CASENet with K = 1, beta = 1 on the fused and last outputs).
- ``casenet``, ``dff``, ``dds``: + SBCB with that SBD head (alpha = 5, beta = 1; paper defaults).

Fairness rules (enforced here, not per variant):
- For seed ``s`` the segmentor's initial weights are identical across variants (built right after
  ``torch.manual_seed(s)``; heads are built afterwards from another seeded stream).
- The training stream is `sbcb.train.sampler.StreamSampler` seeded with ``s``: the same images, in the same order,
  with the same per-sample augmentation seeds, for every variant.
- The optimiser (SGD, momentum 0.9, wd 5e-4), poly schedule, iterations, batch and crop are shared settings: one
  `sbcb.train.Config` (`make_config`), the configuration ``sbcb train`` uses; the results record `SETTINGS_KEYS`.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sbcb.train.config import Config

VARIANTS = ("baseline", "fcn", "bbcb", "casenet", "dff", "dds")
METRICS = ("miou", "bf3", "bf5", "bf9", "bf12", "sbd_mf")


# The `Config` keys the benchmarks use (stored with each result); every other key keeps its default, unused here.
SETTINGS_KEYS = (
    "arch", "encoder", "output_stride", "crop", "scale_range", "iters", "batch_size", "lr", "momentum",
    "weight_decay", "poly_power", "min_lr", "alpha", "beta", "radius", "sbd_thresholds",
)  # fmt: skip
# Where the benchmarks differ from `Config`'s defaults (the paper's recipe): a small, fast model and schedule.
BENCHMARK_DEFAULTS = {
    "arch": "deeplabv3plus",
    "encoder": "resnet18",
    "output_stride": 16,
    "crop": (64, 128),
    "iters": 200,
    "batch_size": 4,
    "sbd_thresholds": 33,
}


def make_config(**overrides: Any) -> Config:
    """The shared settings of every run: `BENCHMARK_DEFAULTS` and `overrides` (flat `Config` keys) over `Config`."""
    return Config.from_flat({**BENCHMARK_DEFAULTS, **overrides}, source="benchmark settings")


def settings_record(settings: Config, *, threads: int) -> dict[str, Any]:
    """The `SETTINGS_KEYS` values and the torch thread count: what a result records of its settings."""
    flat = settings.flat()
    return {**{key: flat[key] for key in SETTINGS_KEYS}, "threads": threads}


class CachedDataset:
    """A raw dataset held in memory (rendering/decoding once per process, not once per run)."""

    def __init__(self, dataset: Any) -> None:
        self.info = dataset.info
        self.samples = [dataset[i] for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def build_variant(variant: str, *, num_classes: int, seed: int, settings: Config) -> nn.Module:
    """The model to train for ``variant``; the segmentor's init depends only on ``seed`` (not on the variant).

    Returns:
        The plain segmentor (``baseline``) or an `sbcb.SBCB` wrapper around it; ``sbcb.models.strip_model``
        gives the segmentor back for evaluation.
    """
    from sbcb.models import build_segmentor
    from sbcb.wrapper import SBCB

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    torch.manual_seed(seed)
    m = settings.model
    segmentor = build_segmentor(m.arch, num_classes=num_classes, encoder=m.encoder, output_stride=m.output_stride)
    if variant == "baseline":
        return segmentor
    torch.manual_seed(seed + 1_000_003)  # head init: its own stream, so the segmentor above is shared
    probe = (max(64, settings.data.crop[0]), max(64, settings.data.crop[1]))
    common = {"num_classes": num_classes, "radius": settings.data.radius, "probe_size": probe}
    if variant == "fcn":
        return SBCB(segmentor, fcn_aux=True, alpha=0.0, beta=0.0, **common)
    if variant == "bbcb":
        return SBCB(segmentor, binary=True, alpha=m.alpha, beta=m.beta, **common)
    return SBCB(segmentor, head=variant, alpha=m.alpha, beta=m.beta, **common)


def _collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in ("image", "label", "boundaries")}


def train_run(
    model: nn.Module,
    train_raw: Any,
    *,
    seed: int,
    settings: Config,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` in place for ``settings.train.iters`` SGD steps on the seeded sample stream.

    Args:
        model: From `build_variant`.
        train_raw: Raw training dataset (`sbcb.data.base` protocol).
        seed: Data-order seed (the same for every variant of one seed).
        settings: Shared settings.
        log: Progress printer.

    Returns:
        {"train_seconds", "final_loss"} (the last 10 steps' mean total loss).
    """
    from sbcb.data.loader import TransformedDataset
    from sbcb.data.transforms import build_train_transform
    from sbcb.segmentor import Segmentor
    from sbcb.train.sampler import SeededDataset, StreamSampler
    from sbcb.train.schedule import PolySchedule

    info = train_raw.info
    opt = settings.train
    transform = build_train_transform(
        tuple(settings.data.crop),
        info.num_classes,
        scale_range=tuple(settings.data.scale_range),
        radius=settings.data.radius,
        ignore_index=info.ignore_index,
    )
    data = SeededDataset(TransformedDataset(train_raw, transform))
    stream = iter(StreamSampler(len(data), batch_size=opt.batch_size, seed=seed))
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    schedule = PolySchedule(optimizer, max_steps=opt.iters, power=opt.poly_power, min_lr=opt.min_lr)
    net = (
        model
        if isinstance(model, Segmentor)
        else Segmentor(model, num_classes=info.num_classes, ignore_index=info.ignore_index)
    )
    net.train()
    recent: list[float] = []
    start = time.perf_counter()
    for step in range(opt.iters):
        batch = _collate([data[next(stream)] for _ in range(opt.batch_size)])
        schedule.set_step(step)
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        boundaries = batch["boundaries"].to(device)
        losses = net(images, labels, boundaries=boundaries)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise RuntimeError(f"non-finite loss at step {step}: { {k: float(v) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        recent = (recent + [total.item()])[-10:]
        if step % 25 == 0 or step == opt.iters - 1:
            elapsed = time.perf_counter() - start
            log(f"    step {step + 1}/{opt.iters} loss {recent[-1]:.4f} ({elapsed / (step + 1):.2f} s/step)")
    return {"train_seconds": time.perf_counter() - start, "final_loss": statistics.fmean(recent)}


def evaluate_run(model: nn.Module, val_set: Any, *, num_classes: int, settings: Config) -> dict[str, Any]:
    """mIoU and boundary F (3/5/9/12 px) of the stripped segmentor; SBD mF of the semantic head if there is one.

    Args:
        model: A trained `build_variant` model.
        val_set: Evaluation samples with ``"boundaries"`` (packed, radius = ``settings.data.radius``).
        num_classes: K.
        settings: Shared settings.

    Returns:
        The `sbcb.train.evaluation.evaluate` metrics (fractions); ``sbd_mf`` is None without a semantic SBD head
        (baseline, FCN-aux and BBCB, whose 1-channel head has no per-class output).
    """
    from sbcb.models import strip_model
    from sbcb.train.evaluation import evaluate

    seg = evaluate(strip_model(model), val_set, num_classes=num_classes, sbd=False, progress=False)
    head = getattr(model, "head", None)
    semantic = head is not None and not getattr(model, "binary", True) and getattr(model, "alpha", 0.0) > 0
    seg["sbd_mf"] = None
    if semantic:
        seg["sbd_mf"], seg["sbd_ods_f"] = sbd_scores(model, val_set, num_classes=num_classes, settings=settings)
    return seg


def padded_forward(fn: Callable[[torch.Tensor], Any], image: torch.Tensor, divisor: int = 32) -> tuple[Any, int, int]:
    """``fn`` on ``image`` [B, C, H, W] zero-padded (bottom/right) to a multiple of ``divisor``; returns (out, H, W).

    Zero is the mean colour after normalisation, as in `sbcb.train.evaluation`; CamVid's 360 rows are not a
    multiple of the ResNet's stride 32.
    """
    h, w = image.shape[-2:]
    pad = (0, (-w) % divisor, 0, (-h) % divisor)
    return fn(torch.nn.functional.pad(image, pad) if any(pad) else image), h, w


@torch.no_grad()
def sbd_scores(model: nn.Module, val_set: Any, *, num_classes: int, settings: Config) -> tuple[float, list[float]]:
    """SBD mean ODS F and per-class ODS F of the wrapper's fused SBD output (thin protocol, post-SEAL distance).

    Args:
        model: An `sbcb.SBCB` wrapper with a semantic head.
        val_set: Samples with ``"image"`` [3, H, W] and packed ``"boundaries"``.
        num_classes: K.
        settings: ``train.sbd_thresholds`` is used.

    Returns:
        (mean ODS F, [K] ODS F), fractions.
    """
    from sbcb.metrics.sbd import SBDEvaluator
    from sbcb.train.evaluation import dense_boundaries

    evaluator = SBDEvaluator(num_classes, thresholds=settings.train.sbd_thresholds)
    device = next(model.parameters()).device
    model.eval()
    for sample in val_set:
        image = sample["image"][None].to(device).float()
        outputs, h, w = padded_forward(model.forward_outputs, image)
        fuse = outputs.sbd["fuse"].float()
        size = (h + (-h) % 32, w + (-w) % 32)  # the padded input's size
        if fuse.shape[-2:] != size:  # head_scale < 1
            fuse = torch.nn.functional.interpolate(fuse, size=size, mode="bilinear", align_corners=False)
        prob = torch.sigmoid(fuse[..., :h, :w])[0]
        gt = dense_boundaries(sample["boundaries"][None], num_classes)[0]
        evaluator.update(prob.cpu().numpy(), gt.bool().cpu().numpy())
    res = evaluator.compute()
    return float(res["mean_ods_f"]), [float(x) for x in res["ods_f"]]


def run_grid(
    variants: Sequence[str],
    seeds: Sequence[int],
    *,
    train_raw: Any,
    val_set: Any,
    settings: Config,
    threads: int = 1,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    keep_models: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], dict[tuple[str, int], nn.Module]]:
    """Train and evaluate every (seed, variant) pair, seed-major so partial results stay balanced.

    Returns:
        (runs, models): one result dict per run (``variant``, ``seed``, METRICS, ``iou``, timings) and, with
        ``keep_models``, the trained models keyed by (variant, seed).
    """
    torch.set_num_threads(threads)
    num_classes = train_raw.info.num_classes
    runs: list[dict[str, Any]] = []
    models: dict[tuple[str, int], nn.Module] = {}
    for seed in seeds:
        for variant in variants:
            log(f"[{time.strftime('%H:%M:%S')}] seed {seed} variant {variant}")
            model = build_variant(variant, num_classes=num_classes, seed=seed, settings=settings)
            trained = train_run(model, train_raw, seed=seed, settings=settings, log=log)
            t0 = time.perf_counter()
            metrics = evaluate_run(model, val_set, num_classes=num_classes, settings=settings)
            result = {"variant": variant, "seed": seed}
            result.update({m: metrics.get(m) for m in METRICS})
            result["iou"] = metrics["iou"]
            result["bf_per_class"] = metrics.get("bf_per_class")
            result["sbd_ods_f"] = metrics.get("sbd_ods_f")
            result.update(trained)
            result["eval_seconds"] = time.perf_counter() - t0
            result["load_average_1min"] = os.getloadavg()[0]
            log(
                "    -> "
                + " ".join(f"{m}={result[m]:.4f}" for m in METRICS if result[m] is not None)
                + f" ({result['train_seconds']:.0f} s train)"
            )
            runs.append(result)
            if on_result is not None:
                on_result(result)
            if keep_models:
                models[(variant, seed)] = model
    return runs, models


# ------------------------------------------------------------------------------------------------ summaries


class _InlinePool:
    """`multiprocessing.Pool` stand-in for one worker: runs tasks in this process (easier to debug)."""

    def __init__(self, initializer: Callable[..., None], initargs: tuple) -> None:
        initializer(*initargs)

    def imap_unordered(self, fn: Callable, tasks: Sequence[Any]):
        return map(fn, tasks)

    def __enter__(self) -> _InlinePool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def run_pool(workers: int, initializer: Callable[..., None], initargs: tuple) -> Any:
    """A process pool of ``workers`` single-run workers ("spawn": no forked torch/OpenMP state), or inline for 1.

    One process per run with one torch thread each: on a loaded 2-core machine two 1-thread processes get twice
    the CPU of one process and avoid OpenMP spin-waiting, which made 2 threads slower than 1 here.
    """
    if workers <= 1:
        return _InlinePool(initializer, initargs)
    import multiprocessing as mp

    return mp.get_context("spawn").Pool(workers, initializer=initializer, initargs=initargs)


def summarize(runs: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per variant and metric: mean, sample std (n - 1; 0 for one run) and n; plus paired deltas vs baseline.

    The delta of a metric is computed per seed (variant minus baseline of the same seed), then averaged; its std
    says whether the gain is larger than the seed-to-seed spread of the difference.
    """
    out: dict[str, dict[str, Any]] = {}
    base = {r["seed"]: r for r in runs if r["variant"] == "baseline"}
    for variant in variants:
        rows = [r for r in runs if r["variant"] == variant]
        if not rows:
            continue
        entry: dict[str, Any] = {"n": len(rows)}
        for m in METRICS:
            values = [r[m] for r in rows if r[m] is not None]
            if values:
                entry[m] = _mean_std(values)
            pairs = [(r[m], base[r["seed"]][m]) for r in rows if r["seed"] in base]
            deltas = [a - b for a, b in pairs if a is not None and b is not None]
            if deltas and variant != "baseline":
                entry[f"delta_{m}"] = _mean_std(deltas)
        out[variant] = entry
    return out


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def _pct(cell: Mapping[str, float] | None) -> str:
    if cell is None:
        return "—"
    return f"{100 * cell['mean']:.2f} ± {100 * cell['std']:.2f}"


def markdown_report(
    title: str,
    command: str,
    runs: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Mapping[str, Any]],
    settings: Config,
    *,
    threads: int,
    class_names: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The Markdown table: mean ± std per variant, paired deltas vs baseline, per-run numbers, settings."""
    lines = [f"# {title}", "", f"`{command}`", "", f"on {platform.platform()}, {os.cpu_count()} CPUs (shared)", ""]
    lines += [
        "Percent; mean ± sample std over seeds. Segmentation metrics are of the **stripped** segmentor (same",
        "architecture and cost for every variant); SBD mF (thin protocol, OTF GT of the eval "
        f"transform, {settings.train.sbd_thresholds} thresholds) only exists for semantic SBD heads.",
        "",
        "| variant | n | mIoU | BF 3px | BF 5px | BF 9px | BF 12px | SBD mF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, s in summary.items():
        cells = " | ".join(_pct(s.get(m)) for m in METRICS)
        lines.append(f"| {variant} | {s['n']} | {cells} |")
    lines += [
        "",
        "Paired difference vs the baseline of the same seed (mean ± std of the per-seed differences, points):",
        "",
        "| variant | ΔmIoU | ΔBF 3px | ΔBF 5px | ΔBF 9px | ΔBF 12px | beyond 1 std (mIoU, BF3)? |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, s in summary.items():
        if variant == "baseline":
            continue
        cells = [_pct(s.get(f"delta_{m}")) for m in METRICS[:5]]
        verdict = []
        for m in ("miou", "bf3"):
            d = s.get(f"delta_{m}")
            if d is None:
                verdict.append("—")
            elif d["n"] > 1 and abs(d["mean"]) > d["std"]:
                verdict.append("gain" if d["mean"] > 0 else "loss")
            else:
                verdict.append("within noise")
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {', '.join(verdict)} |")
    lines += ["", "Per run:", "", "| variant | seed | mIoU | BF3 | BF5 | BF9 | BF12 | SBD mF | train s | load |"]
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        vals = " | ".join("—" if r[m] is None else f"{100 * r[m]:.2f}" for m in METRICS)
        lines.append(
            f"| {r['variant']} | {r['seed']} | {vals} | {r['train_seconds']:.0f} | {r['load_average_1min']:.1f} |"
        )
    if class_names:
        lines += ["", "Per-class IoU (mean over seeds):", ""]
        lines.append("| variant | " + " | ".join(class_names) + " |")
        lines.append("|---|" + "---|" * len(class_names))
        for variant in summary:
            rows = [r["iou"] for r in runs if r["variant"] == variant]
            means = [np.nanmean([row[k] for row in rows]) for k in range(len(class_names))]
            lines.append(f"| {variant} | " + " | ".join(f"{100 * v:.1f}" for v in means) + " |")
    lines += ["", "Settings (identical for every variant):", "", "```", *_settings_lines(settings, threads), "```"]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _settings_lines(settings: Config, threads: int) -> list[str]:
    return [f"{k}: {v}" for k, v in settings_record(settings, threads=threads).items()]


def write_results(results_dir: Any, stem: str, doc: Mapping[str, Any], markdown: str) -> None:
    """Write ``{stem}.json`` (the runs and settings), ``{stem}.md`` (the tables) and ``{stem}.png`` (the plot)."""
    import json

    (results_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (results_dir / f"{stem}.md").write_text(markdown)
    plot_summary(results_dir / f"{stem}.png", doc["runs"], doc["variants"])


def plot_summary(path: str | os.PathLike, runs: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> None:
    """A small PNG: per variant, each run's mIoU and BF at 3 px as dots, the mean as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [v for v in variants if any(r["variant"] == v for r in runs)]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=90)
    for ax, metric, label in zip(axes, ("miou", "bf3"), ("mIoU (%)", "boundary F @ 3 px (%)")):
        for i, variant in enumerate(present):
            values = [100 * r[metric] for r in runs if r["variant"] == variant]
            ax.bar(i, statistics.fmean(values), color="#9ecae1" if variant == "baseline" else "#fdae6b", width=0.6)
            ax.scatter([i] * len(values), values, color="k", s=10, zorder=3)
        lows = [100 * r[metric] for r in runs]
        span = max(lows) - min(lows)
        ax.set_ylim(min(lows) - max(1.0, span), max(lows) + max(0.5, span / 2))
        ax.set_xticks(range(len(present)), present, rotation=30)
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def environment() -> dict[str, Any]:
    """Versions and machine facts stored with the results."""
    from sbcb.train.checkpoint import versions

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_1min_at_end": os.getloadavg()[0],
    }


def finite(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def sgd(module: nn.Module, lr: float = 1e-3) -> None:
    """A plain SGD step on every parameter with a gradient (then the gradient is cleared): the timing benchmarks'
    optimizer, the same cost for baseline and SBCB."""
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None
