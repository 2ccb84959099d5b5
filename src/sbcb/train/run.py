"""A whole training run from a `Config`: datasets, model, settings, config.yaml, the loop. Used by `sbcb train`,
`sbcb demo`, `sbcb eval` and the benchmarks, so the CLI only parses flags and calls these.

User mistakes (a missing ``--root``, an unknown architecture, bad JSON) raise `ConfigError` with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from sbcb.train.config import Config, ConfigError, ModelConfig, save_config

# smp architectures keep the CLI's historical encoder (the paper's ResNet family); other models choose their own.
SMP_DEFAULT_ENCODER = "resnet50"
# The paper's DeepLab output stride, for smp architectures that take one.
SMP_DEFAULT_OUTPUT_STRIDE = 8


def model_kwargs(cfg: Config | ModelConfig, num_classes: int, *, radius: float | None = None) -> dict[str, Any]:
    """`sbcb.models.build_model` kwargs (plain JSON types; what checkpoints store) from a configuration.

    ``encoder`` and ``output_stride`` left at None are resolved per architecture: smp architectures get
    ``resnet50`` and (when the class takes one) output stride 8; registered sbcb models and ``module:function``
    factories get None, i.e. their own defaults.

    Args:
        cfg: The run's `Config` (its data radius is used), or just its model section.
        num_classes: K of the dataset.
        radius: Boundary GT radius for a bare `ModelConfig` (default 2).

    Raises:
        ConfigError: Bad ``arch_kwargs`` or an output stride the architecture does not take.
    """
    from sbcb.models import MODELS, SMP_ARCHS, smp_key, smp_takes_output_stride

    model = cfg.model if isinstance(cfg, Config) else cfg
    if isinstance(cfg, Config):
        radius = cfg.data.radius
    arch = str(model.arch)
    extra = model.arch_kwargs
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--arch-kwargs is not valid JSON ({e}): {extra!r}") from None
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError(f"--arch-kwargs must be a JSON object, got {extra!r}")
    encoder, output_stride = model.encoder, model.output_stride
    is_smp = ":" not in arch and arch.lower() not in MODELS and smp_key(arch) in SMP_ARCHS
    if is_smp:
        encoder = encoder or SMP_DEFAULT_ENCODER
        if smp_takes_output_stride(arch):
            output_stride = output_stride or SMP_DEFAULT_OUTPUT_STRIDE
        elif output_stride is not None:
            raise ConfigError(f"--output-stride applies to the DeepLab family; smp {arch!r} does not take one")
    return {
        "arch": arch,
        "num_classes": num_classes,
        "encoder": encoder,
        "encoder_depth": model.encoder_depth,
        "output_stride": output_stride,
        "sbcb_head": model.sbcb_head,
        "bbcb": model.bbcb,
        "fcn_aux": model.fcn_aux,
        "sides": list(model.sides) if model.sides else None,
        "backbone_trick": model.backbone_trick,
        "factory_kwargs": extra,
        "alpha": model.alpha,
        "beta": model.beta,
        "head_scale": model.head_scale,
        "aux_weight": model.aux_weight,
        "radius": 2.0 if radius is None else radius,
    }


def has_sbd_head(model_kwargs_or_cfg: Any) -> bool:
    """Whether a model built from these `build_model` kwargs (or this `ModelConfig`) has an SBD head."""
    if isinstance(model_kwargs_or_cfg, ModelConfig):
        return model_kwargs_or_cfg.has_sbd_head
    kwargs = dict(model_kwargs_or_cfg)
    return kwargs.get("sbcb_head", "none") != "none" or bool(kwargs.get("bbcb"))


def build_datasets(cfg: Config, *, train: bool = True, val_boundaries: bool | None = None) -> tuple[Any, Any, Any]:
    """(train set, val set or None, DatasetInfo) with the library's transforms applied.

    Boundary GT is made with ``cfg.data.radius``. Validation samples carry boundary GT (for the SBD metric) when
    ``val_boundaries`` (default: the model has a head). With ``cfg.data.image_scale`` != 1 every image (train and
    val) is first rescaled by it, so training, validation and `sbcb eval` all work at that resolution.

    Raises:
        ConfigError: A missing ``root`` or a dataset that can't be opened.
    """
    from sbcb.data.loader import TransformedDataset
    from sbcb.data.registry import build_dataset
    from sbcb.data.transforms import Compose, Rescale, build_eval_transform, build_train_transform

    data = cfg.data

    def at_scale(transform: Any) -> Any:
        return transform if data.image_scale == 1.0 else Compose([Rescale(data.image_scale), transform])

    def raw(split: str, n: int) -> Any:
        opts: dict[str, Any] = {}
        if data.dataset == "synthetic":
            opts = {"num_samples": n, "size": tuple(data.image_size), "seed": cfg.train.seed}
        elif data.root is None:
            raise ConfigError(f"--dataset {data.dataset} needs --root DIR")
        try:
            return build_dataset(data.dataset, data.root, split, **opts)
        except (KeyError, TypeError, ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e).strip("'\"")) from None

    val_raw = None if data.val_split in (None, "none") else raw(data.val_split, data.val_samples)
    train_raw = raw(data.train_split, data.num_samples) if train else None
    source = train_raw if train_raw is not None else val_raw
    if source is None:
        raise ConfigError("nothing to load: no training set requested and --val-split none")
    info = source.info
    train_set = val_set = None
    if train_raw is not None:
        transform = build_train_transform(
            tuple(data.crop),
            info.num_classes,
            scale_range=(float(data.scale_range[0]), float(data.scale_range[1])),
            radius=data.radius,
            ignore_index=info.ignore_index,
        )
        train_set = TransformedDataset(train_raw, at_scale(transform))
    if val_raw is not None:
        if val_boundaries is None:
            val_boundaries = cfg.model.has_sbd_head
        transform = build_eval_transform(
            info.num_classes, radius=data.radius, ignore_index=info.ignore_index, boundaries=val_boundaries
        )
        val_set = TransformedDataset(val_raw, at_scale(transform))
    return train_set, val_set, info


class TrainOutcome(NamedTuple):
    """What `run_training` returns: exit code, the loop's result, the trained model and the validation data."""

    code: int
    result: Any
    model: Any
    val_set: Any
    data_info: Any


def run_training(cfg: Config, *, resume: str | Path | None = None) -> TrainOutcome:
    """Build data and model from `cfg` and train (also under torchrun); saves ``config.yaml`` in the run folder.

    Raises:
        ConfigError: A user mistake (no ``out``, a bad model or dataset option, a resume mismatch).
    """
    import torch

    from sbcb.data.validation import DataError
    from sbcb.models import build_model, model_spec
    from sbcb.train import distributed as D
    from sbcb.train.loop import NonFiniteLossError, seed_everything, train

    if cfg.run.out is None:
        raise ConfigError("--out DIR is required (the run folder for checkpoints and logs)")
    out_dir = Path(cfg.run.out)
    info = D.init_distributed(device=cfg.run.device)
    try:
        if cfg.train.batch_size % info.world_size:
            raise ConfigError(
                f"--batch-size {cfg.train.batch_size} (the total batch) is not divisible by {info.world_size} processes"
            )
        train_set, val_set, data_info = build_datasets(cfg)
        seed_everything(cfg.train.seed)  # model initialisation depends on the seed only
        kwargs = model_kwargs(cfg, data_info.num_classes)
        kwargs["ignore_index"] = data_info.ignore_index
        try:
            model = build_model(**kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"can't build the model: {e}") from None
        # 0 = validate only at the end of the run (the CLI's meaning; the loop's 0 is "never")
        settings = cfg.train
        if not settings.val_every:
            settings = cfg.replace(val_every=settings.iters).train
        if info.is_main:
            save_config(cfg.to_dict(), out_dir / "config.yaml", extra={"world_size": info.world_size})
            params = sum(p.numel() for p in model.parameters()) / 1e6
            sizes = f"{len(train_set)} train" + (f", {len(val_set)} val" if val_set is not None else "")
            print(
                f"sbcb train: {type(model).__name__} ({params:.2f}M params) on {cfg.data.dataset} ({sizes}), "
                f"{info.world_size} process(es) on {info.device}, {settings.iters} iterations -> {out_dir}"
            )
        try:
            result = train(
                model,
                train_set,
                settings=settings,
                out_dir=out_dir,
                num_classes=data_info.num_classes,
                val_set=val_set,
                ignore_index=data_info.ignore_index,
                model_spec=model_spec(kwargs),
                config=cfg.to_dict(),
                resume=resume,
                dist_info=info,
                progress=cfg.run.progress,
                eval_options={"mode": settings.val_mode, "crop": cfg.data.crop, "stride": settings.val_stride},
            )
        except NonFiniteLossError as e:
            if info.is_main:
                print(f"sbcb train: error: {e}")
            return TrainOutcome(1, None, model, val_set, data_info)
        except (ValueError, FileNotFoundError, DataError) as e:
            raise ConfigError(str(e)) from None
        if info.is_main:
            summary = ", ".join(
                f"{k} {100 * v:.2f}"
                for k, v in result.val_metrics.items()
                if k in ("miou", "bf3", "sbd_mf") and isinstance(v, float)
            )
            print(f"done: {result.step} iterations in {result.seconds:.1f} s; last checkpoint {result.last_checkpoint}")
            if summary:
                print(f"validation: {summary}")
        return TrainOutcome(0, result, model, val_set, data_info)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            D.cleanup_distributed()


def config_of_checkpoint(ckpt: dict[str, Any], *, source: str = "checkpoint") -> Config:
    """The `Config` a checkpoint was trained with (sectioned, or the flat dict of sbcb 0.1; unknown keys dropped)."""
    from sbcb.train.config import flat_keys, flatten

    stored = flatten(ckpt.get("config") or {})
    keys = flat_keys()
    return Config.from_flat({k: v for k, v in stored.items() if k in keys}, source=source)
