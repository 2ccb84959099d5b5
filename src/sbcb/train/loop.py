"""The training loop: plain PyTorch on the public sbcb API, iteration-based, resumable bit for bit.

`train` runs ``settings.iters`` SGD steps on a model and a dataset of *transformed* samples (dicts with
``"image"`` float [3, H, W], ``"label"`` int [H, W] with 255 = ignore, optionally ``"boundaries"``). Every step is
one call of the sbcb contract, ``net(images, labels, boundaries=...)`` -> flat dict of weighted losses (an
`sbcb.SBCB` wrapper, or a `sbcb.segmentor.Segmentor` around any other model: cross-entropy as ``loss_seg`` plus the
model's own auxiliary losses); the trainer sums every value and logs every key. `train` is a few named steps:
`_resume`, `_loader`, `_step`, `_log_step`, `_validate`, `_checkpoint`.

Resume exactness: everything that influences the future is a function of the checkpoint: model, optimizer,
schedule, AMP scaler, step, every global RNG state (per rank) and the sample stream, which depends only on the
seed and the step (see `sbcb.train.sampler`). On the CPU an interrupted and resumed run therefore ends with
weights ``torch.equal`` to an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sbcb.data.loader import ReadableErrorsDataLoader  # a worker's DataError reaches us with its message
from sbcb.metrics.miou import all_reduce_sum
from sbcb.segmentor import Segmentor
from sbcb.train import distributed as D
from sbcb.train.checkpoint import FORMAT, CheckpointManager, load_checkpoint, rng_state, set_rng_state, versions
from sbcb.train.config import TrainSettings
from sbcb.train.evaluation import evaluate
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
            f"the last good checkpoint (finite, bounded weights) is {last_checkpoint}: resume from it with "
            f"`sbcb train --resume {last_checkpoint}` and a change"
            if last_checkpoint is not None
            else "no good checkpoint had been written yet"
        )
        super().__init__(
            f"non-finite loss at iteration {step} ({terms}); training stopped and {kept}. "
            "Try a lower --lr, --grad-clip 1.0, disabling --amp, or check the data."
        )


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


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, settings: TrainSettings) -> list[dict[str, Any]]:
    """Trainable parameters split by lr multiplier and weight decay (at most four groups, in a fixed order).

    ``settings.head_lr_mult`` applies to the parameters the model itself calls its head
    (`sbcb.segmentor.Segmentor.head_parameters`: decoder, classifier, SBD and auxiliary heads); a module without
    that method has no head parameters.
    """
    no_decay: set[int] = set()
    if not settings.norm_decay:
        for name, module in model.named_modules():
            if isinstance(module, _NORMS) or "pos_block" in name:
                no_decay.update(id(p) for p in module.parameters(recurse=False))
    head: set[int] = set()
    head_parameters = getattr(model, "head_parameters", None)
    if settings.head_lr_mult != 1.0 and callable(head_parameters):
        head = {id(p) for p in head_parameters()}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        mult = settings.head_lr_mult if id(p) in head else 1.0
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


def resolve_amp(amp: str | None, device: torch.device) -> str | None:
    """``"auto"`` -> fp16 on CUDA (with a grad scaler), bf16 elsewhere; other values unchanged."""
    if amp == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    return amp


def _autocast(device: torch.device, amp: str | None):
    if amp is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class _Logger:
    """CSV on rank 0 (always), plus TensorBoard events in ``out_dir/tb`` with ``logger="tensorboard"``.

    On resume, CSV rows after the resume step are dropped (and TensorBoard hides the events after it).
    """

    def __init__(self, out_dir: Path, *, start_step: int, enabled: bool, logger: str = "csv") -> None:
        self.enabled = enabled
        self.files: dict[str, tuple[Any, csv.DictWriter | None, list[str] | None]] = {}
        self.out_dir = out_dir
        self.tb: Any = None
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
        if logger == "tensorboard":  # imported only when chosen; ImportError names the extra
            from sbcb.train.tensorboard_log import TensorBoardLogger

            self.tb = TensorBoardLogger(out_dir, start_step=start_step)
        elif logger != "csv":
            raise ValueError(f"logger must be 'csv' or 'tensorboard', got {logger!r}")

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
            self.tb.log(name, row)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------------------- main loop


@dataclass
class _Progress:
    """What the loop carries from step to step (and a resume restores)."""

    step: int = 0
    best_miou: float | None = None
    last_path: Path | None = None
    good_path: Path | None = None  # the newest checkpoint with finite, bounded weights (`_is_sane`)
    saved_step: int = -1
    last_loss: float = 0.0
    empty_batches: int = 0
    val_metrics: dict[str, Any] = field(default_factory=dict)


# A checkpoint is "good" (named by the NaN guard, never pruned while it is the newest good one) only when every
# parameter is finite and below this magnitude and the last loss is finite and below the loss bound: trained
# segmentation weights are O(1)-O(100); 1e6 means the optimisation has already exploded.
WEIGHT_BOUND = 1e6
LOSS_BOUND = 1e6


def _is_sane(model: nn.Module, loss: float) -> bool:
    if not (math.isfinite(loss) and abs(loss) < LOSS_BOUND):
        return False
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not bool(p.detach().abs().max() < WEIGHT_BOUND):  # NaN compares False
                return False
    return True


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM during training: the current iteration finished and was saved.

    Attributes:
        step: The iteration saved (1-based count of finished iterations).
        path: The checkpoint holding it (None on ranks other than 0).
        signum: The signal that asked to stop; a CLI exits with ``128 + signum`` (130 for Ctrl-C).
    """

    def __init__(self, step: int, path: Path | None, out_dir: Path, signum: int = signal.SIGINT) -> None:
        self.step, self.path, self.signum = step, path, signum
        super().__init__(
            f"interrupted after iteration {step}; saved {path}. Resume with: sbcb train --resume --out {out_dir}"
        )


class _StopRequest:
    """SIGINT / SIGTERM while training: finish the current iteration, save it, stop (`TrainingInterrupted`).

    One process: a second signal acts at once, as it would without us. Under DDP a Ctrl-C reaches every rank more
    than once (the terminal signals torchrun and its workers; torchrun forwards the signal and kills the workers
    30 s later), so repeats are ignored there, and after every iteration the ranks agree (`agreed`) so that all of
    them stop after the same one. Inactive off the main thread (signal handlers can only be set there).
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, *, distributed: bool) -> None:
        self.enabled = threading.current_thread() is threading.main_thread()
        self.distributed = distributed
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        elif not self.distributed:  # asked twice: behave as if we were not there
            self._restore()
            signal.raise_signal(signum)

    def agreed(self) -> int | None:
        """The signal to stop for, if any rank received one (every rank calls this after each iteration)."""
        if not self.distributed:
            return self.signum
        got = np.array([self.signum == signal.SIGINT, self.signum == signal.SIGTERM], dtype=np.int64)
        sigint, sigterm = (int(v) for v in all_reduce_sum(got))
        if sigint or sigterm:
            self.signum = int(signal.SIGINT if sigint else signal.SIGTERM)
        return self.signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> _StopRequest:
        if self.enabled:
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()


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
    logger: str = "csv",
) -> TrainResult:
    """Train ``model`` for ``settings.iters`` iterations, checkpointing and validating along the way.

    Args:
        model: An `sbcb.SBCB` wrapper, an `sbcb.segmentor.Segmentor`, or any module returning [B, K, H, W]
            logits (trained through a `Segmentor`, i.e. with cross-entropy as ``loss_seg``); moved to
            ``dist_info.device``. Checkpoints hold ``model.state_dict()`` of exactly this object.
        train_set: Dataset of transformed training samples (see the module docstring).
        settings: Optimisation and bookkeeping settings.
        out_dir: Run folder: ``last.pt``, ``iter_NNNNNNN.pt``, ``best.pt``, ``train_log.csv``, ``val_log.csv``.
        num_classes: K.
        val_set: Optional dataset of evaluation samples for periodic validation.
        ignore_index: Label value ignored by the loss and the metrics.
        model_spec: ``{"name": ..., "kwargs": {...}}`` stored in checkpoints so `load_model` can rebuild.
        config: The whole run configuration (`sbcb.train.config.Config.to_dict()`), stored in checkpoints.
        resume: A checkpoint to continue from.
        dist_info: From `init_distributed`; default single process on the CPU.
        progress: Show a tqdm bar on rank 0.
        evaluate_fn: Validation function (default `sbcb.train.evaluation.evaluate`).
        eval_options: Extra keyword arguments for it (e.g. ``{"mode": "slide", "crop": (512, 512)}``).
        collate_fn: DataLoader collate function (default: torch's).
        logger: ``"csv"`` (``train_log.csv``, ``val_log.csv``) or ``"tensorboard"`` (the same rows also as
            TensorBoard scalars ``train/*``, ``val/*`` in ``out_dir/tb``; needs ``sbcb[tensorboard]``).

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
    settings = dataclasses.replace(settings, amp=resolve_amp(settings.amp, device))
    set_deterministic(settings.deterministic)
    manager = CheckpointManager(out_dir, keep_last=settings.keep_last)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    model = D.maybe_convert_sync_bn(model, info).to(device)
    # The one call contract: net(images, masks) -> losses, net(images) -> logits.
    net = (
        model if isinstance(model, Segmentor) else Segmentor(model, num_classes=num_classes, ignore_index=ignore_index)
    )
    optimizer = build_optimizer(net, settings)
    schedule = PolySchedule(
        optimizer,
        max_steps=settings.iters,
        power=settings.poly_power,
        min_lr=settings.min_lr,
        warmup_steps=settings.warmup_iters,
        warmup_ratio=settings.warmup_ratio,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16")
    if resume is not None:
        state = _resume(resume, model, optimizer, schedule, scaler, settings=settings, info=info, device=device)
    else:
        state = _Progress()
        seed_everything(settings.seed + info.rank)

    ddp_net = D.wrap_ddp(net, info)
    loader, sampler = _loader(
        train_set, settings, info=info, per_rank=per_rank, start=state.step, collate_fn=collate_fn
    )
    run_log = _Logger(out_dir, start_step=state.step, enabled=info.is_main, logger=logger)
    if evaluate_fn is None and val_set is not None:
        evaluate_fn = evaluate
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.iters, initial=state.step, desc="train", dynamic_ncols=True, unit="it")

    t_start = time.perf_counter()
    t_last = t_start
    data_iter = iter(loader)
    net.train()

    def save(done: int, *, is_best: bool = False) -> Path:
        ckpt = {
            "format": FORMAT,
            "model": dict(model_spec) if model_spec else {"name": None, "kwargs": {}},
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "step": done,
            "sampler": sampler.state_dict(),
            "metrics": _scalars(state.val_metrics),
            "best": {"miou": state.best_miou},
            "config": dict(config or {}),
            "settings": asdict(settings),
            "versions": versions(),
        }
        sane = _is_sane(model, state.last_loss)
        path = _checkpoint(manager, ckpt, is_best=is_best, info=info, keep=state.good_path)
        if sane:
            state.good_path = path
        state.saved_step = done
        return path

    stop = _StopRequest(distributed=info.distributed)
    try:
        with stop:
            for step in range(state.step, settings.iters):
                schedule.set_step(step)
                batch = next(data_iter)
                if not bool((batch["label"] != ignore_index).any()):
                    state.empty_batches += 1  # zero loss by construction (see Segmentor), counted and reported
                total, losses = _step(ddp_net, net, batch, optimizer, scaler, settings, info, step, state)
                state.step = done = step + 1
                state.last_loss = float(total.detach())
                if info.is_main and (done % settings.log_every == 0 or done == settings.iters):
                    now = time.perf_counter()
                    _log_step(run_log, bar, done, optimizer, total, losses, (now - t_last) / settings.log_every)
                    t_last = now
                if bar is not None:
                    bar.update(1)

                validate = bool(
                    val_set is not None
                    and settings.val_every
                    and (done % settings.val_every == 0 or done == settings.iters)
                )
                saving = done % settings.ckpt_every == 0 or done == settings.iters
                if info.distributed and (validate or saving):
                    D.broadcast_buffers(net)  # every rank validates (and rank 0 saves) the same model
                # Save first: a crash, a bad file or Ctrl-C during validation must not lose these iterations.
                if saving:
                    state.last_path = save(done)
                if validate:
                    assert evaluate_fn is not None
                    rngs = rng_state()  # validation must not shift the training RNG streams (resume exactness)
                    is_best = _validate(
                        net, val_set, evaluate_fn, state, settings, num_classes, ignore_index, per_rank, eval_options,
                        info=info, logger=run_log, bar=bar,
                    )  # fmt: skip
                    set_rng_state(rngs)
                    if saving:  # the same checkpoint again, now with this validation's metrics and best mIoU
                        state.last_path = save(done, is_best=is_best)
                signum = stop.agreed()
                if signum is not None and done < settings.iters:
                    if state.saved_step != done and info.distributed:
                        D.broadcast_buffers(net)  # as for a scheduled save: rank 0 saves what every rank holds
                    path = state.last_path if state.saved_step == done else save(done)
                    raise TrainingInterrupted(done, path, out_dir, signum)
    finally:
        if bar is not None:
            bar.close()
        run_log.close()
        del data_iter
    if state.empty_batches and info.is_main:
        warnings.warn(
            f"{state.empty_batches} training batch(es) had no labelled pixel (all ignore); their segmentation loss "
            "was 0. Check the crop size against the images and the labels' ignore regions.",
            stacklevel=2,
        )

    return TrainResult(
        step=settings.iters,
        last_checkpoint=manager.last if info.is_main else None,
        best_checkpoint=manager.best if (info.is_main and manager.best.exists()) else None,
        best_miou=state.best_miou,
        val_metrics=state.val_metrics,
        seconds=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------------------------------- the steps


def _resume(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: PolySchedule,
    scaler: torch.amp.GradScaler,
    *,
    settings: TrainSettings,
    info: D.DistInfo,
    device: torch.device,
) -> _Progress:
    """Restore model, optimizer, schedule, scaler and this rank's RNG states from a checkpoint."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path}: its weights do not fit the model of this run ({first})") from None
    if ckpt.get("optimizer") is None:
        raise ValueError(f"{path} holds no optimizer state (a stripped/exported checkpoint can't be resumed)")
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["scheduler"])
    schedule.max_steps = settings.iters  # a resumed run may be extended with a larger --iters
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    state = _Progress(step=int(ckpt["step"]), best_miou=ckpt.get("best", {}).get("miou"), last_path=Path(path))
    state.saved_step = state.step
    if _is_sane(model, 0.0):
        state.good_path = Path(path)
    rngs = ckpt["rng"]
    if len(rngs) != info.world_size:
        raise ValueError(
            f"{path} was written by {len(rngs)} process(es); resume it with the same number for an exact "
            f"continuation (this job has {info.world_size})"
        )
    set_rng_state(rngs[info.rank])
    if state.step >= settings.iters:
        raise ValueError(f"{path} is already at iteration {state.step} >= --iters {settings.iters}")
    return state


def _loader(
    train_set: Any,
    settings: TrainSettings,
    *,
    info: D.DistInfo,
    per_rank: int,
    start: int,
    collate_fn: Callable | None,
) -> tuple[Any, StreamSampler]:
    """The training DataLoader whose sample stream depends only on the seed and the step (resume-exact)."""
    sampler = StreamSampler(
        len(train_set),
        batch_size=per_rank,
        seed=settings.seed,
        rank=info.rank,
        world_size=info.world_size,
        start_step=start,
    )
    loader = ReadableErrorsDataLoader(
        SeededDataset(train_set),
        batch_size=per_rank,
        sampler=sampler,
        num_workers=settings.workers,
        collate_fn=collate_fn,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=_worker_init,
        # A private generator: creating the iterator must not consume the global torch RNG.
        generator=torch.Generator().manual_seed(settings.seed),
        persistent_workers=False,
    )
    return loader, sampler


def _step(
    ddp_net: nn.Module,
    net: nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: TrainSettings,
    info: D.DistInfo,
    step: int,
    state: _Progress,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimisation step through the call contract; returns (total loss, the loss dict)."""
    images, labels, boundaries = prepare_batch(batch, info.device)
    with _autocast(info.device, settings.amp):
        losses = ddp_net(images, labels, boundaries=boundaries)
    if not isinstance(losses, Mapping) or not losses:
        raise TypeError(f"{type(net).__name__}(images, masks) must return a non-empty dict of scalar losses")
    total = sum(v.float() for v in losses.values())
    assert isinstance(total, torch.Tensor)
    finite = torch.isfinite(total.detach()).to(torch.float32).reshape(1)
    if info.distributed:  # every rank must stop together, or the others hang in the next all-reduce
        finite = D.all_reduce_sum(finite.cpu()) / info.world_size
    if float(finite) < 1.0:
        raise NonFiniteLossError(step + 1, {k: float(v.detach()) for k, v in losses.items()}, state.good_path)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if settings.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return total, dict(losses)


def _log_step(
    logger: _Logger,
    bar: Any,
    done: int,
    optimizer: torch.optim.Optimizer,
    total: torch.Tensor,
    losses: Mapping[str, torch.Tensor],
    sec_per_it: float,
) -> None:
    row = {"step": done, "lr": optimizer.param_groups[0]["lr"], "loss": float(total.detach())}
    row.update({k: float(v.detach()) for k, v in losses.items()})
    row["sec_per_it"] = sec_per_it
    logger.log("train_log.csv", row)
    if bar is not None:
        bar.set_postfix(
            {k.replace("loss_", ""): f"{v:.3f}" for k, v in row.items() if k.startswith("loss")}
            | {"lr": f"{row['lr']:.2e}"},
            refresh=False,
        )


def _validate(
    net: nn.Module,
    val_set: Any,
    evaluate_fn: Callable[..., dict[str, Any]],
    state: _Progress,
    settings: TrainSettings,
    num_classes: int,
    ignore_index: int,
    per_rank: int,
    eval_options: Mapping[str, Any] | None,
    *,
    info: D.DistInfo,
    logger: _Logger,
    bar: Any,
) -> bool:
    """Evaluate, log, and say whether this is the best mIoU so far."""
    state.val_metrics = evaluate_fn(
        net,
        val_set,
        num_classes=num_classes,
        ignore_index=ignore_index,
        device=info.device,
        batch_size=max(1, per_rank),
        workers=settings.workers,
        boundary_radii=tuple(settings.boundary_radii),
        biou_width=settings.biou_width,
        biou_ratio=settings.biou_ratio,
        sbd_thresholds=settings.sbd_thresholds,
        progress=False,
        **dict(eval_options or {}),
    )
    net.train()
    is_best = False
    miou = float(state.val_metrics["miou"])
    if math.isfinite(miou) and (state.best_miou is None or miou > state.best_miou):
        state.best_miou = miou
        is_best = True
    if info.is_main:
        logger.log("val_log.csv", {"step": state.step, **_scalars(state.val_metrics)})
        if bar is not None:
            bar.write(f"[val @ {state.step}] " + _summary(state.val_metrics))
    return is_best


def _checkpoint(
    manager: CheckpointManager, ckpt: dict[str, Any], *, is_best: bool, info: D.DistInfo, keep: Path | None = None
) -> Path:
    """Add every rank's RNG states and save on rank 0; nothing may touch a global RNG before the next step."""
    ckpt["rng"] = D.all_gather_object(rng_state())
    path = manager.save(ckpt, is_best=is_best, keep=keep) if info.is_main else manager.last
    D.barrier()
    return path


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
    keys = [k for k in ("miou", "aacc", "bf3", "biou", "sbd_mf") if k in metrics]
    return "  ".join(f"{k} {100 * float(metrics[k]):.2f}" for k in keys)
