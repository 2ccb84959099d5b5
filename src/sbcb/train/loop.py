"""The training loop: plain PyTorch on the public sbcb API, iteration-based, resumable bit for bit.

`train` runs ``settings.iters`` SGD steps on a model and a dataset of *transformed* samples (dicts with
``"image"`` float [3, H, W], ``"label"`` int [H, W] with 255 = ignore, optionally ``"boundaries"``). A model
with a ``loss(outputs, labels, target_boundaries=...)`` method (an `sbcb.SBCB` wrapper) supplies its own flat
dict of weighted losses; any other model is trained with cross-entropy as ``loss_seg``. The trainer sums every
value of that dict and logs every key.

Resume exactness: everything that influences the future is a function of the checkpoint: model, optimizer,
schedule, AMP scaler, step, every global RNG state (per rank) and the sample stream, which depends only on the
seed and the step (see `sbcb.train.sampler`). On the CPU an interrupted and resumed run therefore ends with
weights ``torch.equal`` to an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbcb.train import distributed as D
from sbcb.train.checkpoint import FORMAT, CheckpointManager, load_checkpoint, rng_state, set_rng_state, versions
from sbcb.train.sampler import SeededDataset, StreamSampler
from sbcb.train.schedule import PolySchedule


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without saving that step."""

    def __init__(self, step: int, losses: Mapping[str, float], last_checkpoint: Path | None) -> None:
        self.step = step
        self.losses = dict(losses)
        self.last_checkpoint = last_checkpoint
        terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        kept = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"non-finite loss at iteration {step} ({terms}); training stopped and {kept}. "
            "Try a lower --lr, --grad-clip 1.0, disabling --amp, or check the data."
        )


@dataclass
class TrainSettings:
    """Optimisation and bookkeeping settings; the defaults are the paper's CNN recipe (spec §7).

    ``batch_size`` is the **total** over all ranks (paper: 8 on 2 GPUs); each rank gets ``batch_size / world``.
    """

    iters: int = 40_000
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    seed: int = 0
    ckpt_every: int = 4000
    val_every: int = 4000
    keep_last: int = 3
    grad_clip: float | None = None
    amp: str | None = None  # None, "bf16" or "fp16"
    workers: int = 4
    deterministic: bool = False
    log_every: int = 1
    sbd_thresholds: int = 9  # quick SBD during training (full protocol: 99, via `sbcb eval`)
    optimizer: str = "sgd"  # "sgd" (paper CNNs) or "adamw" (official SegFormer recipe)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    head_lr_mult: float = 1.0  # SegFormer recipe: 10 (decoder, segmentation head and SBD head)
    norm_decay: bool = True  # SegFormer recipe: False (no weight decay on norm layers and pos_block)

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be None, 'bf16' or 'fp16', got {self.amp!r}")
        if self.ckpt_every < 1 or self.keep_last < 1:
            raise ValueError("ckpt_every and keep_last must be >= 1")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")


@dataclass
class TrainResult:
    """What `train` returns (rank 0 has the paths; other ranks get the same numbers)."""

    step: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_miou: float | None
    val_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------- pieces


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Ask torch for deterministic kernels (warn, don't fail, where none exists).

    Only touched when needed: `torch.use_deterministic_algorithms` imports torch's compiler stack (seconds).
    CPU training is deterministic without it for a fixed thread count.
    """
    import os

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(False)


# Module name prefixes (relative to the segmentor or the SBCB wrapper) that count as "head" for `head_lr_mult`:
# smp's decoder and segmentation head, and the wrapper's SBD and auxiliary heads. The official SegFormer config's
# `custom_keys={"head": lr_mult 10}` matches mmseg's decode head and, as a side effect, the SBD head (spec §5.6).
HEAD_PREFIXES = ("decoder.", "segmentation_head.", "head.", "aux_head.", "model.decoder.", "model.segmentation_head.")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, settings: TrainSettings) -> list[dict[str, Any]]:
    """Trainable parameters split by lr multiplier and weight decay (at most four groups, in a fixed order)."""
    no_decay: set[int] = set()
    if not settings.norm_decay:
        for name, module in model.named_modules():
            if isinstance(module, _NORMS) or "pos_block" in name:
                no_decay.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = settings.head_lr_mult if name.startswith(HEAD_PREFIXES) else 1.0
        decay = 0.0 if id(p) in no_decay else settings.weight_decay
        groups.setdefault((mult, decay), []).append(p)
    return [
        {"params": params, "lr": settings.lr * mult, "weight_decay": decay}
        for (mult, decay), params in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """SGD with momentum (paper's CNN recipe) or AdamW (official SegFormer recipe), over `param_groups`."""
    groups = param_groups(model, settings)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=settings.lr, betas=tuple(settings.betas), weight_decay=settings.weight_decay
        )
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def prepare_batch(
    batch: Mapping[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Move a collated batch to the device.

    Returns:
        images float [B, 3, H, W]; labels int64 [B, H, W] (255 = ignore); boundaries as the dataset made them
        (bit-packed uint8 [B, ceil(K/8), H, W] or dense [B, K, H, W]; the wrapper's loss unpacks them on the
        device) or None when the batch has none (the wrapper then builds them on the device).
    """
    non_blocking = device.type == "cuda"
    images = batch["image"].to(device, non_blocking=non_blocking).float()
    labels = batch["label"].to(device, non_blocking=non_blocking).long()
    boundaries = batch.get("boundaries")
    if boundaries is not None:
        boundaries = boundaries.to(device, non_blocking=non_blocking)
    return images, labels, boundaries


def segmentation_logits(outputs: Any) -> torch.Tensor:
    """The segmentation logits [B, K, H, W] from a model's output (a tensor, or the wrapper's training output)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    for name in ("seg", "logits", "out"):
        if isinstance(outputs, Mapping) and name in outputs:
            return outputs[name]
        if hasattr(outputs, name):
            return getattr(outputs, name)
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    raise TypeError(f"can't find segmentation logits in a {type(outputs).__name__}")


def compute_losses(
    model: nn.Module,
    outputs: Any,
    labels: torch.Tensor,
    boundaries: torch.Tensor | None,
    *,
    ignore_index: int = 255,
) -> dict[str, torch.Tensor]:
    """The flat dict of weighted scalar losses for one batch (fp32).

    A model with a ``loss`` method (the SBCB wrapper) computes them itself; otherwise cross-entropy on the
    logits, upsampled to the label size when needed, is ``loss_seg``.
    """
    if hasattr(model, "loss") and callable(model.loss):
        losses = model.loss(outputs, labels, target_boundaries=boundaries)
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError(f"{type(model).__name__}.loss must return a non-empty dict of scalar tensors")
        return dict(losses)
    logits = segmentation_logits(outputs).float()
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return {"loss_seg": F.cross_entropy(logits, labels, ignore_index=ignore_index)}


def _autocast(device: torch.device, amp: str | None):
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class _Logger:
    """CSV (rank 0) + TensorBoard when installed. On resume, rows after the resume step are dropped."""

    def __init__(self, out_dir: Path, *, start_step: int, enabled: bool, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.files: dict[str, tuple[Any, csv.DictWriter | None, list[str] | None]] = {}
        self.out_dir = out_dir
        self.tb = None
        if not enabled:
            return
        for name in ("train_log.csv", "val_log.csv"):
            path = out_dir / name
            if path.exists():
                rows = list(csv.DictReader(path.open()))
                kept = [r for r in rows if int(float(r["step"])) <= start_step]
                if kept:
                    with path.open("w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(kept[0]))
                        w.writeheader()
                        w.writerows(kept)
                else:
                    path.unlink()
        import importlib.util

        # Check before importing: a failing `torch.utils.tensorboard` import costs seconds.
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out_dir / "tb"), purge_step=start_step + 1)
            except Exception:  # tensorboard is optional; CSV is always written
                self.tb = None

    def log(self, name: str, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        path = self.out_dir / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            if new:
                fields = list(row)
            else:
                with path.open() as r:
                    fields = next(csv.reader(r))
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            tag = name.split("_")[0]
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{tag}/{k}", v, int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------------------- main loop


def train(
    model: nn.Module,
    train_set: Any,
    *,
    settings: TrainSettings,
    out_dir: str | Path,
    num_classes: int,
    val_set: Any = None,
    ignore_index: int = 255,
    model_spec: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    resume: str | Path | None = None,
    dist_info: D.DistInfo | None = None,
    progress: bool = True,
    evaluate_fn: Callable[..., dict[str, Any]] | None = None,
    eval_options: Mapping[str, Any] | None = None,
    collate_fn: Callable | None = None,
) -> TrainResult:
    """Train ``model`` for ``settings.iters`` iterations, checkpointing and validating along the way.

    Args:
        model: The model to train (an `sbcb.SBCB` wrapper or any module returning [B, K, H, W] logits), on any
            device; it is moved to ``dist_info.device``.
        train_set: Dataset of transformed training samples (see the module docstring).
        settings: Optimisation and bookkeeping settings.
        out_dir: Run folder: ``last.pt``, ``iter_NNNNNNN.pt``, ``best.pt``, ``train_log.csv``, ``val_log.csv``.
        num_classes: K.
        val_set: Optional dataset of evaluation samples for periodic validation.
        ignore_index: Label value ignored by the loss and the metrics.
        model_spec: ``{"name": ..., "kwargs": {...}}`` stored in checkpoints so `load_model` can rebuild.
        config: The resolved run config, stored in checkpoints.
        resume: A checkpoint to continue from.
        dist_info: From `init_distributed`; default single process on the CPU.
        progress: Show a tqdm bar on rank 0.
        evaluate_fn: Validation function (default `sbcb.train.evaluate.evaluate`).
        eval_options: Extra keyword arguments for it (e.g. ``{"mode": "slide", "crop": (512, 512)}``).
        collate_fn: DataLoader collate function (default: torch's).

    Returns:
        A `TrainResult`.

    Raises:
        NonFiniteLossError: The loss became NaN/inf; nothing of that step is saved.
    """
    info = dist_info or D.DistInfo()
    out_dir = Path(out_dir)
    device = info.device
    if settings.batch_size % info.world_size:
        raise ValueError(
            f"--batch-size {settings.batch_size} is the total batch and must be divisible by the "
            f"{info.world_size} processes"
        )
    per_rank = settings.batch_size // info.world_size
    set_deterministic(settings.deterministic)
    manager = CheckpointManager(out_dir, keep_last=settings.keep_last)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    model = D.maybe_convert_sync_bn(model, info).to(device)
    optimizer = build_optimizer(model, settings)
    schedule = PolySchedule(
        optimizer,
        max_steps=settings.iters,
        power=settings.poly_power,
        min_lr=settings.min_lr,
        warmup_steps=settings.warmup_iters,
        warmup_ratio=settings.warmup_ratio,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")

    start_step = 0
    best_miou: float | None = None
    last_path: Path | None = None
    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        if ckpt.get("optimizer") is None:
            raise ValueError(f"{resume} holds no optimizer state (a stripped/exported checkpoint can't be resumed)")
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        schedule.max_steps = settings.iters  # a resumed run may be extended with a larger --iters
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_step = int(ckpt["step"])
        best_miou = ckpt.get("best", {}).get("miou")
        rngs = ckpt["rng"]
        if len(rngs) != info.world_size:
            raise ValueError(
                f"{resume} was written by {len(rngs)} process(es); resume it with the same number for an exact "
                f"continuation (this job has {info.world_size})"
            )
        set_rng_state(rngs[info.rank])
        last_path = Path(resume)
        if start_step >= settings.iters:
            raise ValueError(f"{resume} is already at iteration {start_step} >= --iters {settings.iters}")
    else:
        seed_everything(settings.seed + info.rank)

    ddp_model = D.wrap_ddp(model, info)
    sampler = StreamSampler(
        len(train_set),
        batch_size=per_rank,
        seed=settings.seed,
        rank=info.rank,
        world_size=info.world_size,
        start_step=start_step,
    )
    from sbcb.data.loader import ReadableErrorsDataLoader  # a worker's DataError reaches us with its message

    loader = ReadableErrorsDataLoader(
        SeededDataset(train_set),
        batch_size=per_rank,
        sampler=sampler,
        num_workers=settings.workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
        worker_init_fn=_worker_init,
        # A private generator: creating the iterator must not consume the global torch RNG.
        generator=torch.Generator().manual_seed(settings.seed),
        persistent_workers=False,
    )
    logger = _Logger(out_dir, start_step=start_step, enabled=info.is_main)
    if evaluate_fn is None and val_set is not None:
        from sbcb.train.evaluate import evaluate as evaluate_fn

    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.iters, initial=start_step, desc="train", dynamic_ncols=True, unit="it")

    val_metrics: dict[str, Any] = {}
    t_start = time.perf_counter()
    t_last = t_start
    data_iter = iter(loader)
    model.train()
    try:
        for step in range(start_step, settings.iters):
            schedule.set_step(step)
            batch = next(data_iter)
            images, labels, boundaries = prepare_batch(batch, device)
            with _autocast(device, settings.amp):
                outputs = ddp_model(images)
            losses = compute_losses(model, outputs, labels, boundaries, ignore_index=ignore_index)
            total = sum(v.float() for v in losses.values())
            finite = torch.isfinite(total.detach()).to(torch.float32).reshape(1)
            if info.distributed:  # every rank must stop together, or the others hang in the next all-reduce
                finite = D.all_reduce_sum(finite.cpu()) / info.world_size
            if float(finite) < 1.0:
                values = {k: float(v.detach()) for k, v in losses.items()}
                raise NonFiniteLossError(step + 1, values, last_path)

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if settings.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            done = step + 1

            if info.is_main and (done % settings.log_every == 0 or done == settings.iters):
                now = time.perf_counter()
                row = {"step": done, "lr": optimizer.param_groups[0]["lr"], "loss": float(total.detach())}
                row.update({k: float(v.detach()) for k, v in losses.items()})
                row["sec_per_it"] = (now - t_last) / settings.log_every
                t_last = now
                logger.log("train_log.csv", row)
                if bar is not None:
                    bar.set_postfix(
                        {k.replace("loss_", ""): f"{v:.3f}" for k, v in row.items() if k.startswith("loss")}
                        | {"lr": f"{row['lr']:.2e}"},
                        refresh=False,
                    )
            if bar is not None:
                bar.update(1)

            is_best = False
            validate = bool(
                val_set is not None
                and settings.val_every
                and (done % settings.val_every == 0 or done == settings.iters)
            )
            if info.distributed and (validate or done % settings.ckpt_every == 0 or done == settings.iters):
                D.broadcast_buffers(model)  # every rank validates (and rank 0 saves) the same model
            if validate:
                val_metrics = evaluate_fn(
                    model,
                    val_set,
                    num_classes=num_classes,
                    ignore_index=ignore_index,
                    device=device,
                    batch_size=max(1, per_rank),
                    workers=settings.workers,
                    boundary_radii=(3,),
                    sbd_thresholds=settings.sbd_thresholds,
                    progress=False,
                    **dict(eval_options or {}),
                )
                model.train()
                miou = float(val_metrics["miou"])
                if math.isfinite(miou) and (best_miou is None or miou > best_miou):
                    best_miou = miou
                    is_best = True
                if info.is_main:
                    logger.log("val_log.csv", {"step": done, **_scalars(val_metrics)})
                    if bar is not None:
                        bar.write(f"[val @ {done}] " + _summary(val_metrics))

            if done % settings.ckpt_every == 0 or done == settings.iters:
                ckpt = {
                    "format": FORMAT,
                    "model": dict(model_spec) if model_spec else {"name": None, "kwargs": {}},
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": schedule.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "step": done,
                    # Gather last: nothing after this point may touch a global RNG before the next step.
                    "rng": D.all_gather_object(rng_state()),
                    "sampler": sampler.state_dict(),
                    "metrics": _scalars(val_metrics),
                    "best": {"miou": best_miou},
                    "config": dict(config or {}),
                    "settings": asdict(settings),
                    "versions": versions(),
                }
                if info.is_main:
                    last_path = manager.save(ckpt, is_best=is_best)
                else:
                    last_path = manager.last
                D.barrier()
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        del data_iter

    return TrainResult(
        step=settings.iters,
        last_checkpoint=manager.last if info.is_main else None,
        best_checkpoint=manager.best if (info.is_main and manager.best.exists()) else None,
        best_miou=best_miou,
        val_metrics=val_metrics,
        seconds=time.perf_counter() - t_start,
    )


def _worker_init(worker_id: int) -> None:
    # One OpenCV thread per DataLoader worker: the workers already run in parallel.
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict (for CSV rows and checkpoints)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def _summary(metrics: Mapping[str, Any]) -> str:
    keys = [k for k in ("miou", "aacc", "bf3", "sbd_mf") if k in metrics]
    return "  ".join(f"{k} {100 * float(metrics[k]):.2f}" for k in keys)
