"""`sbcb train`: train a segmentation model with (or without) an SBD head, resumably, on one or many processes.

Defaults are the paper's CNN recipe (SGD lr 0.01, momentum 0.9, wd 5e-4, poly 0.9 to min_lr 1e-4, alpha 5, beta 1).
``--config run.yaml`` sets defaults for any flag (keys = flag names, ``-`` or ``_``); flags on the command line
win; unknown keys are errors. The resolved config is saved as ``OUT/config.yaml``. Multi-process: run the same
command under ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on CUDA); ``--batch-size`` is the total batch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NamedTuple

DATASETS = ("synthetic", "cityscapes", "bdd100k", "synthia", "ade20k", "folder", "camvid")

# Every config key with its default. Flags default to None on the parser so "not given" is visible.
DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "synthetic",
    "root": None,
    "train_split": "train",
    "val_split": "val",
    "num_samples": 64,  # synthetic only
    "val_samples": 16,  # synthetic only
    "image_size": [256, 512],  # synthetic only
    "crop": [512, 1024],
    "scale_range": [0.5, 2.0],
    # model
    "arch": "deeplabv3plus",
    "encoder": "resnet50",
    "encoder_depth": None,
    "output_stride": 8,
    "arch_kwargs": None,
    "sbcb_head": "casenet",
    "bbcb": False,
    "fcn_aux": False,
    "sides": None,
    "backbone_trick": "none",
    # optimisation
    "iters": 40_000,
    "batch_size": 8,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "optimizer": "sgd",
    "head_lr_mult": 1.0,
    "norm_decay": True,
    "poly_power": 0.9,
    "min_lr": 1e-4,
    "warmup_iters": 0,
    "grad_clip": None,
    "amp": None,
    "seed": 0,
    "deterministic": False,
    # run
    "out": None,
    "ckpt_every": 4000,
    "val_every": 4000,
    "keep_last": 3,
    "workers": 4,
    "device": None,
    "progress": True,
    "val_mode": "whole",
    "val_stride": None,
}

# Keys that describe the model (stored in checkpoints as the constructor kwargs).
MODEL_KEYS = ("arch", "encoder", "encoder_depth", "output_stride", "sbcb_head", "bbcb", "fcn_aux", "sides")


def _d(key: str) -> str:
    return f" (default: {DEFAULTS[key]})"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model with an SBD head (or a baseline), resumably",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="CFG.yaml", help="YAML file of defaults for any flag below")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help="dataset name" + _d("dataset"))
    g.add_argument("--root", metavar="DIR", help="dataset folder (not needed for synthetic)")
    g.add_argument("--train-split", help="training split" + _d("train_split"))
    g.add_argument("--val-split", help="validation split; 'none' disables validation" + _d("val_split"))
    g.add_argument("--num-samples", type=int, help="synthetic: training images" + _d("num_samples"))
    g.add_argument("--val-samples", type=int, help="synthetic: validation images" + _d("val_samples"))
    g.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="synthetic: image size")
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="training crop" + _d("crop"))
    g.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"), help="random rescale range")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="smp architecture (deeplabv3plus, fpn, unet, ...) or module:function" + _d("arch"))
    g.add_argument("--encoder", help="smp encoder (resnet50, tu-<timm name>, mit_b0, ...)" + _d("encoder"))
    g.add_argument("--encoder-depth", type=int, help="smp encoder depth")
    g.add_argument("--output-stride", type=int, help="encoder output stride (DeepLab family)" + _d("output_stride"))
    g.add_argument(
        "--arch-kwargs", metavar="JSON", help="extra model kwargs as JSON, e.g. '{\"decoder_channels\": 64}'"
    )
    g.add_argument("--sbcb-head", choices=("casenet", "dff", "dds", "none"), help="SBD head" + _d("sbcb_head"))
    g.add_argument("--bbcb", action=argparse.BooleanOptionalAction, help="binary boundary head (paper §5.4)")
    g.add_argument("--fcn-aux", action=argparse.BooleanOptionalAction, help="FCN auxiliary head (Tab. 4/5)")
    g.add_argument("--sides", nargs="+", metavar="MODULE", help="explicit side taps, highest resolution first")
    g.add_argument("--backbone-trick", choices=("hed", "seg", "none"), help="stride/dilation variant (P§5.7)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--iters", type=int, help="training iterations" + _d("iters"))
    g.add_argument("--batch-size", type=int, help="total batch over all processes" + _d("batch_size"))
    g.add_argument("--lr", type=float, help="SGD learning rate" + _d("lr"))
    g.add_argument("--momentum", type=float, help="SGD momentum" + _d("momentum"))
    g.add_argument("--weight-decay", type=float, help="weight decay" + _d("weight_decay"))
    g.add_argument("--optimizer", choices=("sgd", "adamw"), help="optimizer (adamw: SegFormer)" + _d("optimizer"))
    g.add_argument("--head-lr-mult", type=float, help="lr multiplier of decoder + heads (SegFormer: 10)")
    g.add_argument("--norm-decay", action=argparse.BooleanOptionalAction, help="weight decay on norm layers")
    g.add_argument("--poly-power", type=float, help="poly schedule power" + _d("poly_power"))
    g.add_argument("--min-lr", type=float, help="poly schedule floor" + _d("min_lr"))
    g.add_argument("--warmup-iters", type=int, help="linear warm-up iterations" + _d("warmup_iters"))
    g.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm (off by default)")
    g.add_argument(
        "--amp", nargs="?", const="auto", choices=("auto", "bf16", "fp16"), help="mixed precision (auto: bf16 on CPU)"
    )
    g.add_argument("--seed", type=int, help="random seed" + _d("seed"))
    g.add_argument("--deterministic", action=argparse.BooleanOptionalAction, help="deterministic kernels")
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR", help="run folder: config.yaml, last.pt, iter_*.pt, best.pt, logs")
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="CKPT",
        help="continue from CKPT (default: the newest checkpoint in OUT)",
    )
    g.add_argument("--ckpt-every", type=int, metavar="N", help="checkpoint interval" + _d("ckpt_every"))
    g.add_argument("--val-every", type=int, metavar="N", help="validation interval (0 = only at the end)")
    g.add_argument("--keep-last", type=int, metavar="K", help="numbered checkpoints kept" + _d("keep_last"))
    g.add_argument("--workers", type=int, metavar="N", help="DataLoader workers per process" + _d("workers"))
    g.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bar (default on)")
    g.add_argument("--val-mode", choices=("whole", "slide"), help="validation inference" + _d("val_mode"))
    g.add_argument("--val-stride", type=int, nargs=2, metavar=("H", "W"), help="slide stride (default 2/3 crop)")
    return p


# ------------------------------------------------------------------------------------------------------- helpers


def resolve(args: argparse.Namespace, *, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config: ``base`` (defaults or a resumed checkpoint's config) < ``--config`` YAML < flags."""
    from sbcb.cli.main import UserError
    from sbcb.train.config import ConfigError, resolve_config

    try:
        return resolve_config(vars(args), defaults=base or DEFAULTS, config_path=args.config)
    except ConfigError as e:
        raise UserError(str(e)) from None


def model_kwargs(cfg: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """`sbcb.models.build_model` kwargs (plain JSON types) from a resolved config."""
    from sbcb.cli.main import UserError

    kwargs: dict[str, Any] = {k: cfg[k] for k in MODEL_KEYS}
    kwargs["num_classes"] = num_classes
    kwargs["backbone_trick"] = cfg["backbone_trick"]
    extra = cfg.get("arch_kwargs")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as e:
            raise UserError(f"--arch-kwargs is not valid JSON ({e}): {extra!r}") from None
    if extra is not None and not isinstance(extra, dict):
        raise UserError(f"--arch-kwargs must be a JSON object, got {extra!r}")
    kwargs["factory_kwargs"] = extra
    if ":" not in str(cfg["arch"]) and str(cfg["arch"]).lower().startswith("deeplab") is False:
        kwargs["output_stride"] = None  # only the DeepLab family takes an encoder output stride
    return kwargs


def has_sbd_head(cfg: dict[str, Any]) -> bool:
    return cfg.get("sbcb_head", "none") != "none" or bool(cfg.get("bbcb"))


def build_datasets(
    cfg: dict[str, Any], *, train: bool = True, val_boundaries: bool | None = None
) -> tuple[Any, Any, Any]:
    """(train set, val set or None, DatasetInfo) with the library's transforms applied.

    Validation samples carry boundary GT (for the SBD metric) when ``val_boundaries`` (default: the model has a
    head).
    """
    from sbcb.cli.main import UserError
    from sbcb.data.loader import TransformedDataset
    from sbcb.data.registry import build_dataset
    from sbcb.data.transforms import build_eval_transform, build_train_transform

    def raw(split: str, n: int) -> Any:
        opts: dict[str, Any] = {}
        if cfg["dataset"] == "synthetic":
            opts = {"num_samples": n, "size": tuple(cfg["image_size"]), "seed": cfg["seed"]}
        elif cfg["root"] is None:
            raise UserError(f"--dataset {cfg['dataset']} needs --root DIR")
        try:
            return build_dataset(cfg["dataset"], cfg["root"], split, **opts)
        except (KeyError, TypeError, ValueError, FileNotFoundError) as e:
            raise UserError(str(e).strip("'\"")) from None

    val_split = cfg["val_split"]
    val_raw = None if val_split in (None, "none") else raw(val_split, cfg["val_samples"])
    train_raw = raw(cfg["train_split"], cfg["num_samples"]) if train else None
    info = (train_raw if train_raw is not None else val_raw).info
    train_set = val_set = None
    if train_raw is not None:
        train_set = TransformedDataset(
            train_raw,
            build_train_transform(
                tuple(cfg["crop"]),
                info.num_classes,
                scale_range=tuple(cfg["scale_range"]),
                ignore_index=info.ignore_index,
            ),
        )
    if val_raw is not None:
        if val_boundaries is None:
            val_boundaries = has_sbd_head(cfg)
        val_set = TransformedDataset(
            val_raw, build_eval_transform(info.num_classes, ignore_index=info.ignore_index, boundaries=val_boundaries)
        )
    return train_set, val_set, info


def _amp(cfg: dict[str, Any], device_type: str) -> str | None:
    amp = cfg["amp"]
    if amp == "auto":
        return "fp16" if device_type == "cuda" else "bf16"
    return amp


# ------------------------------------------------------------------------------------------------------- run


class TrainOutcome(NamedTuple):
    """What `run_training` returns: exit code, the loop's result, the trained model and the validation data."""

    code: int
    result: Any
    model: Any
    val_set: Any
    data_info: Any


def run_training(cfg: dict[str, Any], *, resume: str | None = None) -> TrainOutcome:
    """Build data and model from a resolved config and train (also under torchrun); used by `run` and `sbcb demo`."""
    import torch

    from sbcb.cli.main import UserError
    from sbcb.data.validation import DataError
    from sbcb.models import build_model, model_spec
    from sbcb.train import distributed as D
    from sbcb.train.config import save_config
    from sbcb.train.loop import NonFiniteLossError, TrainSettings, seed_everything, train

    if cfg["out"] is None:
        raise UserError("--out DIR is required (the run folder for checkpoints and logs)")
    out_dir = Path(cfg["out"])
    info = D.init_distributed(device=cfg["device"])
    try:
        if cfg["batch_size"] % info.world_size:
            raise UserError(
                f"--batch-size {cfg['batch_size']} (the total batch) is not divisible by {info.world_size} processes"
            )
        if cfg["batch_size"] // info.world_size < 2 and cfg["arch"].lower() in ("deeplabv3", "deeplabv3plus", "pan"):
            print("warning: batch < 2 per process fails in train mode for models with BN after global pooling")
        train_set, val_set, data_info = build_datasets(cfg)
        seed_everything(cfg["seed"])  # model initialisation depends on the seed only
        kwargs = model_kwargs(cfg, data_info.num_classes)
        try:
            model = build_model(**kwargs)
        except (ValueError, TypeError) as e:
            raise UserError(f"can't build the model: {e}") from None
        settings = TrainSettings(
            iters=cfg["iters"],
            batch_size=cfg["batch_size"],
            lr=cfg["lr"],
            momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"],
            optimizer=cfg["optimizer"],
            head_lr_mult=cfg["head_lr_mult"],
            norm_decay=cfg["norm_decay"],
            poly_power=cfg["poly_power"],
            min_lr=cfg["min_lr"],
            warmup_iters=cfg["warmup_iters"],
            seed=cfg["seed"],
            ckpt_every=cfg["ckpt_every"],
            val_every=cfg["val_every"] if cfg["val_every"] else cfg["iters"],
            keep_last=cfg["keep_last"],
            grad_clip=cfg["grad_clip"],
            amp=_amp(cfg, info.device.type),
            workers=cfg["workers"],
            deterministic=cfg["deterministic"],
        )
        if info.is_main:
            save_config(cfg, out_dir / "config.yaml", extra={"world_size": info.world_size, "model": kwargs})
            print(
                f"sbcb train: {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
                f"params) on {cfg['dataset']} ({len(train_set)} train"
                f"{f', {len(val_set)} val' if val_set is not None else ''}), {info.world_size} process(es) on "
                f"{info.device}, {cfg['iters']} iterations -> {out_dir}"
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
                config=cfg,
                resume=resume,
                dist_info=info,
                progress=cfg["progress"],
                eval_options={"mode": cfg["val_mode"], "crop": cfg["crop"], "stride": cfg["val_stride"]},
            )
        except NonFiniteLossError as e:
            if info.is_main:
                print(f"sbcb train: error: {e}")
            return TrainOutcome(1, None, model, val_set, data_info)
        except (ValueError, FileNotFoundError, DataError) as e:
            raise UserError(str(e)) from None
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


def run(args: argparse.Namespace) -> int:
    from sbcb.cli.main import UserError
    from sbcb.train.checkpoint import load_checkpoint

    resume = args.resume
    base = None
    if resume is not None:
        if resume == "auto":
            out = args.out
            if out is None:
                raise UserError("--resume without a checkpoint path needs --out DIR (it resumes DIR/last.pt)")
            from sbcb.train.checkpoint import CheckpointManager

            latest = CheckpointManager(out).latest()
            resume = str(latest if latest is not None else Path(out) / "last.pt")
        try:
            base = dict(DEFAULTS) | dict(load_checkpoint(resume).get("config") or {})
        except (FileNotFoundError, ValueError) as e:
            raise UserError(str(e)) from None
        base = {k: base[k] for k in DEFAULTS}  # the checkpoint's run config, flags and --config on top
    cfg = resolve(args, base=base)
    return run_training(cfg, resume=resume).code
