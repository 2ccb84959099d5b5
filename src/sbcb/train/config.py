"""The run configuration: one typed `Config` with sections model, data, train (optimisation) and run.

- Defaults < YAML file (``--config``) < command-line flags; the ``sbcb train`` flags are generated from the dataclass
  fields (`add_arguments`), so a field is a flag, a YAML key and a saved value at once.
- YAML may be flat (``lr: 0.01``) or sectioned (``train: {lr: 0.01}``); keys may use ``-`` or ``_``. Unknown keys
  are an error with a suggestion, never silently ignored.
- The whole configuration is saved, sectioned, in ``config.yaml`` (with the versions of sbcb/torch/timm/smp) and
  in every checkpoint (``ckpt["config"]``); `Config.from_dict` reads either (and the flat dicts of sbcb 0.1).
- The boundary radius is one value, ``data.radius``: the transforms make the boundary GT with it and the wrapper
  generates on-the-fly GT with it.

This module imports only the standard library (and PyYAML inside the functions that read or write YAML), so the CLI
parser stays cheap to build.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad config file or value; the message says what to fix."""


def _opt(help: str, **argparse_options: Any) -> dict[str, Any]:
    """Field metadata: the flag's help text and extra argparse options (choices, metavar, nargs/const)."""
    return {"help": help, **argparse_options}


BACKBONE_TRICKS = ("none", "hed", "seg")
FUSIONS = ("none", "channel-merge", "two-stream")  # sbcb.fusion.FUSIONS, kept here so the parser imports no torch
OPTIMIZERS = ("sgd", "adamw")
VAL_MODES = ("whole", "slide")
AMP_MODES = (None, "auto", "bf16", "fp16")
LOGGERS = ("csv", "tensorboard")


@dataclass
class ModelConfig:
    """The segmentor and its SBD head (paper defaults: CASENet, alpha 5, beta 1, full-resolution outputs)."""

    arch: str = field(
        default="deeplabv3plus",
        metadata=_opt("smp architecture (deeplabv3plus, fpn, unet, ...), a registered sbcb model, or module:function"),
    )
    encoder: str | None = field(
        default=None, metadata=_opt("encoder (default: resnet50 for smp architectures, the model's own otherwise)")
    )
    encoder_depth: int | None = field(default=None, metadata=_opt("smp encoder depth"))
    output_stride: int | None = field(
        default=None,
        metadata=_opt("encoder output stride (default: 8 for smp models that take one, the paper's; else the model's)"),
    )
    arch_kwargs: dict[str, Any] | None = field(
        default=None, metadata=_opt("extra model kwargs as JSON, e.g. '{\"decoder_channels\": 64}'", metavar="JSON")
    )
    sbcb_head: str = field(default="casenet", metadata=_opt("SBD head: a name in sbcb.heads.HEADS, or none"))
    bbcb: bool = field(default=False, metadata=_opt("binary boundary head (paper §5.4)"))
    fcn_aux: bool = field(default=False, metadata=_opt("FCN auxiliary head (Tab. 4/5)"))
    sides: list[str] | None = field(
        default=None, metadata=_opt("explicit side taps, highest resolution first", metavar="MODULE")
    )
    backbone_trick: str = field(
        default="none", metadata=_opt("stride/dilation variant (P§5.7)", choices=BACKBONE_TRICKS)
    )
    alpha: float = field(default=5.0, metadata=_opt("weight of each multi-label SBD loss term (Eq. 1)"))
    beta: float = field(default=1.0, metadata=_opt("weight of each binary SBD loss term (Eq. 1)"))
    head_scale: float = field(default=1.0, metadata=_opt("SBD output size relative to the input, in (0, 1]"))
    aux_weight: float = field(default=0.4, metadata=_opt("weight of the FCN auxiliary CE loss"))
    fusion: str = field(
        default="none",
        metadata=_opt(
            "feed the CASENet head's features into the segmentation head (P§7.5; kept at inference)", choices=FUSIONS
        ),
    )

    def __post_init__(self) -> None:
        if self.backbone_trick not in BACKBONE_TRICKS:
            raise ConfigError(f"backbone_trick must be one of {BACKBONE_TRICKS}, got {self.backbone_trick!r}")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.fusion != "none" and (self.sbcb_head != "casenet" or self.bbcb or self.fcn_aux):
            raise ConfigError(
                f"fusion {self.fusion!r} brings its own CASENet head: keep sbcb_head casenet, no bbcb or fcn_aux"
            )
        if not 0.0 < self.head_scale <= 1.0:
            raise ConfigError(f"head_scale must be in (0, 1], got {self.head_scale}")

    @property
    def has_sbd_head(self) -> bool:
        """True when the model is wrapped with an SBD head (a semantic one or BBCB); a fused model's head is its own."""
        return (self.sbcb_head != "none" or self.bbcb) and self.fusion == "none"


@dataclass
class DataConfig:
    """The dataset and its transforms."""

    dataset: str = field(default="synthetic", metadata=_opt("dataset name (sbcb.data.registry)"))
    root: str | None = field(default=None, metadata=_opt("dataset folder (not needed for synthetic)", metavar="DIR"))
    num_classes: int | None = field(
        default=None, metadata=_opt("folder dataset without a dataset.yaml: number of classes", metavar="K")
    )
    train_split: str = field(default="train", metadata=_opt("training split"))
    val_split: str = field(default="val", metadata=_opt("validation split; 'none' disables validation"))
    num_samples: int = field(default=64, metadata=_opt("synthetic: training images"))
    val_samples: int = field(default=16, metadata=_opt("synthetic: validation images"))
    image_size: tuple[int, int] = field(default=(256, 512), metadata=_opt("synthetic: image size", metavar=("H", "W")))
    crop: tuple[int, int] = field(default=(512, 1024), metadata=_opt("training crop", metavar=("H", "W")))
    scale_range: tuple[float, float] = field(
        default=(0.5, 2.0), metadata=_opt("random rescale range", metavar=("LO", "HI"))
    )
    radius: float = field(
        default=2.0, metadata=_opt("boundary GT radius in px: the transforms' and the SBD loss's (one value)")
    )
    image_scale: float = field(
        default=1.0,
        metadata=_opt("fixed rescale of every train and val image before the transforms (0.5 = half resolution)"),
    )

    def __post_init__(self) -> None:
        if self.radius <= 0:
            raise ConfigError(f"radius must be > 0 pixels, got {self.radius}")
        if any(int(c) < 1 for c in self.crop):
            raise ConfigError(f"crop must be >= 1 pixel each, got {' '.join(map(str, self.crop))}")
        if self.num_samples < 1 or self.val_samples < 1:
            raise ConfigError(f"num_samples and val_samples must be >= 1, got {self.num_samples}, {self.val_samples}")
        if not self.image_scale > 0:
            raise ConfigError(f"image_scale must be > 0, got {self.image_scale}")


@dataclass
class TrainSettings:
    """Optimisation and bookkeeping of the training loop; the defaults are the paper's CNN recipe (spec §7).

    ``batch_size`` is the **total** over all ranks (paper: 8 on 2 GPUs); each rank gets ``batch_size / world``.
    """

    iters: int = field(default=40_000, metadata=_opt("training iterations"))
    batch_size: int = field(default=8, metadata=_opt("total batch over all processes"))
    lr: float = field(default=0.01, metadata=_opt("learning rate"))
    momentum: float = field(default=0.9, metadata=_opt("SGD momentum"))
    weight_decay: float = field(default=5e-4, metadata=_opt("weight decay"))
    optimizer: str = field(default="sgd", metadata=_opt("optimizer (adamw: SegFormer)", choices=OPTIMIZERS))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=_opt("AdamW betas", metavar=("B1", "B2")))
    head_lr_mult: float = field(default=1.0, metadata=_opt("lr multiplier of decoder + heads (SegFormer: 10)"))
    norm_decay: bool = field(default=True, metadata=_opt("weight decay on norm layers (SegFormer: off)"))
    poly_power: float = field(default=0.9, metadata=_opt("poly schedule power"))
    min_lr: float = field(default=1e-4, metadata=_opt("poly schedule floor"))
    warmup_iters: int = field(default=0, metadata=_opt("linear warm-up iterations"))
    warmup_ratio: float = field(default=1e-6, metadata=_opt("warm-up start lr / lr"))
    grad_clip: float | None = field(default=None, metadata=_opt("clip the gradient norm (off by default)"))
    amp: str | None = field(
        default=None,
        metadata=_opt("mixed precision (auto: fp16 on CUDA, bf16 on CPU)", nargs="?", const="auto", choices=AMP_MODES),
    )
    seed: int = field(default=0, metadata=_opt("random seed"))
    deterministic: bool = field(default=False, metadata=_opt("deterministic kernels"))
    workers: int = field(default=4, metadata=_opt("DataLoader workers per process"))
    ckpt_every: int = field(default=4000, metadata=_opt("checkpoint interval", metavar="N"))
    val_every: int = field(default=4000, metadata=_opt("validation interval (0 = never)", metavar="N"))
    keep_last: int = field(default=3, metadata=_opt("numbered checkpoints kept", metavar="K"))
    log_every: int = field(default=1, metadata=_opt("log interval", metavar="N"))
    val_mode: str = field(default="whole", metadata=_opt("validation inference", choices=VAL_MODES))
    val_stride: tuple[int, int] | None = field(
        default=None, metadata=_opt("slide stride (default 2/3 crop)", metavar=("H", "W"))
    )
    sbd_thresholds: int = field(default=9, metadata=_opt("SBD thresholds during training (full protocol: 99)"))
    boundary_radii: tuple[float, ...] = field(
        default=(3,), metadata=_opt("boundary-F radii (px) of the validation", metavar="R")
    )
    biou_width: int | None = field(
        default=None, metadata=_opt("Boundary IoU band width in px (default: --biou-ratio of the image diagonal)")
    )
    biou_ratio: float = field(
        default=0.02, metadata=_opt("Boundary IoU band width as a fraction of the image diagonal (paper: 2%%)")
    )

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"iters must be >= 1, got {self.iters}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be None, 'auto', 'bf16' or 'fp16', got {self.amp!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.log_every < 1 or self.val_every < 0:
            raise ConfigError(f"log_every must be >= 1 and val_every >= 0, got {self.log_every}, {self.val_every}")
        if self.ckpt_every < 1 or self.keep_last < 1:
            raise ConfigError("ckpt_every and keep_last must be >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.val_mode not in VAL_MODES:
            raise ConfigError(f"val_mode must be one of {VAL_MODES}, got {self.val_mode!r}")
        if self.biou_width is not None and self.biou_width < 1:
            raise ConfigError(f"biou_width must be >= 1 pixel, got {self.biou_width}")
        if not self.biou_ratio > 0:
            raise ConfigError(f"biou_ratio must be > 0, got {self.biou_ratio}")


@dataclass
class RunConfig:
    """Where and how the run executes (not part of the recipe)."""

    out: str | None = field(default=None, metadata=_opt("run folder: config.yaml, last.pt, iter_*.pt, best.pt, logs"))
    device: str | None = field(default=None, metadata=_opt("cpu | cuda (default: cuda when available)"))
    progress: bool = field(default=True, metadata=_opt("progress bar"))
    logger: str = field(
        default="csv",
        metadata=_opt('CSV logs, or CSV + TensorBoard events in OUT/tb (needs "sbcb[tensorboard]")', choices=LOGGERS),
    )

    def __post_init__(self) -> None:
        if self.logger not in LOGGERS:
            raise ConfigError(f"logger must be one of {LOGGERS}, got {self.logger!r}")


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainSettings, "run": RunConfig}
# Keys a saved config.yaml carries besides the configuration; ignored when it is read back.
RECORD_KEYS = ("versions", "world_size", "model_kwargs")


@dataclass
class Config:
    """The whole run configuration; every field of every section is also a flat key (flag / YAML key)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Sectioned plain-YAML/JSON types (tuples as lists): what ``config.yaml`` and checkpoints hold."""
        return {name: _plain(dataclasses.asdict(getattr(self, name))) for name in SECTIONS}

    def flat(self) -> dict[str, Any]:
        """Every field as ``{key: value}`` (keys are unique across sections)."""
        return {k: v for name in SECTIONS for k, v in dataclasses.asdict(getattr(self, name)).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> Config:
        """From a sectioned or flat mapping (a saved config, a checkpoint's, a YAML file); values are typed."""
        return cls.from_flat(flatten(data, source=source), source=source)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], *, source: str = "config") -> Config:
        keys = flat_keys()
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in flat.items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown key {key!r}{_suggest(key, keys)}")
            name, hint = keys[key]
            sections[name][key] = coerce(key, value, hint)
        try:
            return cls(**{name: SECTIONS[name](**values) for name, values in sections.items()})
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def replace(self, **flat: Any) -> Config:
        """A copy with some flat keys changed (typed and validated)."""
        return Config.from_flat(self.flat() | flat)


def flat_keys() -> dict[str, tuple[str, Any]]:
    """Flat key -> (section name, type hint), in section and field order."""
    out: dict[str, tuple[str, Any]] = {}
    for name, section in SECTIONS.items():
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            assert f.name not in out, f"config key {f.name!r} is in two sections"
            out[f.name] = (name, hints[f.name])
    return out


def flatten(data: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """A sectioned or flat mapping as flat ``{key: value}``; ``-`` in keys becomes ``_``; record keys dropped."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key).replace("-", "_")
        if key in SECTIONS and isinstance(value, Mapping):
            flat.update(flatten(value, source=source))
        elif key not in RECORD_KEYS:
            flat[key] = value
    return flat


def _suggest(key: str, valid: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None``; (hint, False) otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Give a YAML / JSON / flag value the field's type (YAML reads 1e-4 as a string, tuples come as lists).

    Raises:
        ConfigError: The value does not fit the type.
    """
    inner, optional = _unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} must not be empty")
    origin = typing.get_origin(inner)
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if inner is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if inner is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if inner is str:
            if isinstance(value, (dict, list, tuple)):
                raise TypeError
            return str(value)
        if origin in (tuple, list):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            args = typing.get_args(inner)
            item = args[0] if args else Any
            if origin is tuple and len(args) >= 2 and args[1] is not Ellipsis and len(value) != len(args):
                raise TypeError
            items = [coerce(key, v, item) for v in value] if item is not Any else list(value)
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if isinstance(value, str):
                import json

                value = json.loads(value)
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {_type_name(hint)}") from None
    return value


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


# ---------------------------------------------------------------------------------------------------- flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field (``--batch-size`` for ``batch_size``), grouped by section, default None (= not given)."""
    titles = {"model": "model", "data": "data", "train": "optimisation", "run": "run"}
    for name, section in SECTIONS.items():
        group = parser.add_argument_group(titles[name])
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            _add_flag(group, f, hints[f.name])


def _add_flag(group: Any, f: dataclasses.Field, hint: Any) -> None:
    meta = dict(f.metadata)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
    help_text = meta.pop("help", "")
    if default is not None and not isinstance(default, bool):
        shown = " ".join(str(v) for v in default) if isinstance(default, (tuple, list)) else default
        help_text += f" (default: {shown})"
    flag = "--" + f.name.replace("_", "-")
    inner, _ = _unwrap_optional(hint)
    origin = typing.get_origin(inner)
    options: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
    if inner is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif origin in (tuple, list):
        args = typing.get_args(inner)
        options["type"] = args[0] if args and args[0] in (int, float, str) else str
        options["nargs"] = len(args) if origin is tuple and len(args) >= 2 and args[1] is not Ellipsis else "+"
    elif origin is dict:
        options["type"] = str  # JSON, parsed by `coerce`
    elif inner in (int, float, str):
        options["type"] = inner
    if "choices" in meta:
        meta["choices"] = [c for c in meta["choices"] if c is not None]
    options.update(meta)
    group.add_argument(flag, **options)


# ---------------------------------------------------------------------------------------------------- resolve


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; keys may use ``-`` or ``_`` (``batch-size`` == ``batch_size``); sections flattened."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of option: value, got {type(data).__name__}")
    return flatten(data, source=str(path))


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Give a YAML value the type of its default (for `resolve_config` on a plain dict of defaults)."""
    if value is None or default is None:
        return value
    if isinstance(default, (list, tuple)):
        hint: Any = list[type(default[0])] if default else list  # type: ignore[misc]
    else:
        hint = type(default)
    return coerce(key, value, hint)


def resolve_config(
    cli: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any],
    config_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Merge built-in defaults, an optional YAML file and the command line (later wins; CLI ``None`` = unset).

    Args:
        cli: Parsed flags (``vars(args)``); keys absent from ``defaults`` are ignored (e.g. the subcommand).
        defaults: Every known key with its default value.
        config_path: Optional YAML file (flat or sectioned).

    Returns:
        A dict with exactly the keys of ``defaults``.

    Raises:
        ConfigError: Unknown YAML key (with the closest valid key) or a value of the wrong type.
    """
    merged = dict(defaults)
    if config_path is not None:
        for key, value in load_yaml(config_path).items():
            if key not in defaults:
                raise ConfigError(f"{config_path}: unknown key {key!r}{_suggest(key, defaults)}")
            merged[key] = _coerce(key, value, defaults[key])
    for key, value in cli.items():
        if key in defaults and value is not None:
            merged[key] = value
    return merged


def resolve(
    cli: Mapping[str, Any], *, base: Config | None = None, config_path: str | os.PathLike | None = None
) -> Config:
    """The run's `Config`: ``base`` (defaults, or a resumed run's) < ``config_path`` YAML < flags (None = unset)."""
    flat = resolve_config(cli, defaults=(base or Config()).flat(), config_path=config_path)
    return Config.from_flat(flat, source=str(config_path) if config_path else "config")


def save_config(config: Mapping[str, Any], path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a configuration (``Config.to_dict()`` or any mapping) plus versions and ``extra`` as YAML, atomically."""
    import yaml

    from sbcb.train.checkpoint import versions

    doc = {k: _plain(v) for k, v in config.items()}
    doc["versions"] = versions()
    if extra:
        doc.update(_plain(dict(extra)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path
