"""A whole training run from a `Config`: datasets, model, settings, config.yaml, the loop. Used by `sbcb train`,
`sbcb demo`, `sbcb eval` and the benchmarks, so the CLI only parses flags and calls these.

User mistakes (a missing ``--root``, an unknown architecture, bad JSON) raise `ConfigError` with a one-line message.
"""

from __future__ import annotations

import json
import warnings
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
        "fusion": model.fusion,
        "radius": 2.0 if radius is None else radius,
    }


def has_sbd_head(model_kwargs_or_cfg: Any) -> bool:
    """Whether a model built from these `build_model` kwargs (or this `ModelConfig`) has an SBD head."""
    if isinstance(model_kwargs_or_cfg, ModelConfig):
        return model_kwargs_or_cfg.has_sbd_head
    kwargs = dict(model_kwargs_or_cfg)
    wrapped = kwargs.get("sbcb_head", "none") != "none" or bool(kwargs.get("bbcb"))
    return wrapped and kwargs.get("fusion", "none") == "none"


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
    from sbcb.data.validation import DataError

    data = cfg.data

    def at_scale(transform: Any) -> Any:
        return transform if data.image_scale == 1.0 else Compose([Rescale(data.image_scale), transform])

    def raw(split: str, n: int) -> Any:
        opts: dict[str, Any] = {}
        if data.dataset == "synthetic":
            opts = {"num_samples": n, "size": tuple(data.image_size), "seed": cfg.train.seed}
        elif data.root is None:
            raise ConfigError(f"--dataset {data.dataset} needs --root DIR")
        if data.num_classes is not None:
            opts["num_classes"] = data.num_classes
        try:
            return build_dataset(data.dataset, data.root, split, **opts)
        except (KeyError, TypeError, ValueError, FileNotFoundError, DataError) as e:
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


# Settings a resumed run may change: how long it runs, how often it logs, validates and saves, and where and with how
# many workers it runs. They do not change what one iteration computes. Every other field is the run's recipe.
RESUME_MAY_CHANGE = frozenset(
    {"iters", "log_every", "val_every", "ckpt_every", "keep_last", "workers", "progress", "device", "out", "root"}
)
# What a run folder holds; a new run into a folder holding any of them is refused without --overwrite.
RUN_FILES = ("last.pt", "best.pt", "config.yaml", "train_log.csv", "val_log.csv")
# What the up-front scan of each split found, keyed by the split's fingerprint (`split_fingerprint`). Not a run
# file: a command refused after the scan (say, a misspelt --arch) leaves it, and the corrected command reuses it.
SCAN_RECORD = "data_scan.json"


def check_resume_changes(cfg: Config, stored: Config, *, source: str) -> None:
    """Refuse a resume whose configuration differs from the checkpoint's in a field outside `RESUME_MAY_CHANGE`.

    Raises:
        ConfigError: Naming the first such field and both values.
    """
    new, old = cfg.flat(), stored.flat()
    for key, value in new.items():
        if key not in RESUME_MAY_CHANGE and value != old.get(key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(
                f"{flag} {_shown(value)} differs from the resumed run's {_shown(old.get(key))} ({source}); a resume "
                f"keeps the recipe and may change only {', '.join(sorted(RESUME_MAY_CHANGE))}: start a new --out to "
                "change it"
            )


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def prepare_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check the run folder before any work: a folder (not a file), writable, and not an old run unless asked.

    With ``overwrite`` an old run's checkpoints, logs and config are deleted; without it (and without ``resume``)
    a folder holding a run is refused. Orphan ``.*.tmp`` files of a killed write are removed.

    Raises:
        ConfigError: ``out`` is a file, not writable, or holds a run (the message names --resume and --overwrite).
    """
    import os
    import shutil

    from sbcb.train.checkpoint import CheckpointManager

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is an existing file; give a folder (it is created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out_dir}: can't create the run folder ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"--out {out_dir} is not writable")
    numbered = CheckpointManager(out_dir).numbered()
    found = [p for p in (*numbered, *(out_dir / n for n in RUN_FILES)) if p.exists()]
    if found and not resume:
        if not overwrite:
            raise ConfigError(
                f"--out {out_dir} already holds a run ({found[0].name}); add --resume to continue it, --overwrite to "
                "delete it and start over, or pick another --out"
            )
        for path in found:
            path.unlink(missing_ok=True)  # every torchrun rank runs this check
        shutil.rmtree(out_dir / "tb", ignore_errors=True)
    for tmp in out_dir.glob(".*.tmp"):  # left by a write that was killed before its rename
        tmp.unlink(missing_ok=True)


def scan_split(dataset: Any, *, workers: int = 0, what: str = "split") -> tuple[int, int]:
    """Read every raw sample once (the dataset's own checks: readable files, sizes, label values), before training.

    Used for both splits, so a bad file fails the run before the first step, not after hours.

    Returns:
        The largest image height and the largest image width over the split, in pixels (0, 0 if it is empty).

    Raises:
        ConfigError: The first bad sample (named), with a pointer to ``sbcb check-data`` for the full list.
    """
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(_Checked(dataset), batch_size=1, num_workers=workers, collate_fn=_first)  # type: ignore[arg-type]
    problems, height, width = [], 0, 0
    for message, size in loader:
        if message is not None:
            problems.append(message)
        else:
            height, width = max(height, size[0]), max(width, size[1])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{what}: {problems[0]}{more}; `sbcb check-data` lists every problem")
    return height, width


def crop_warning(
    crop: tuple[int, int], largest: tuple[int, int], *, image_scale: float, scale_range: tuple[float, float]
) -> str | None:
    """A warning when no random scale can fill the training crop, else None.

    Args:
        crop: ``(H, W)`` of the training crop, pixels.
        largest: Largest raw image height and width of the training split (`scan_split`), pixels.
        image_scale: The fixed rescale applied before the transforms.
        scale_range: The random scale range of the training transform.
    """
    top = image_scale * max(scale_range)
    reach = (int(largest[0] * top), int(largest[1] * top))  # the largest scaled image any crop is cut from
    if crop[0] <= reach[0] and crop[1] <= reach[1]:
        return None
    scaled = "" if image_scale == 1.0 else f" after --image-scale {image_scale:g}"
    return (
        f"--crop {crop[0]} {crop[1]} is larger than every training image even at the largest random scale "
        f"({max(scale_range):g} x the largest image {largest[0]}x{largest[1]}{scaled} = {reach[0]}x{reach[1]}): "
        "every crop is partly ignore padding, which costs compute and teaches nothing; "
        f"pass --crop of at most {min(crop[0], reach[0])} {min(crop[1], reach[1])}"
    )


def split_fingerprint(dataset: Any) -> str | None:
    """A hash of what decides a file dataset's scan: its class, split, `DatasetInfo`, and every sample file's path,
    size and modification time. None for datasets that are not lists of files (nothing to compare)."""
    import hashlib
    import os

    from sbcb.data.folder import PairedFileDataset

    if not isinstance(dataset, PairedFileDataset):
        return None
    digest = hashlib.sha256(f"{type(dataset).__name__}|{dataset.split}|{dataset.validate}|{dataset.info!r}".encode())
    for sample in dataset.samples:
        for key, path in sorted(sample.items()):
            if isinstance(path, Path):
                try:
                    st = os.stat(path)
                except OSError:  # gone since the listing: no fingerprint, so the scan runs and names the file
                    return None
                digest.update(f"{key}|{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def scan_once(dataset: Any, out_dir: Path, *, workers: int = 0, what: str = "split") -> tuple[int, int]:
    """`scan_split`, skipped when the run folder's `SCAN_RECORD` holds a clean scan of the same files.

    A resumed run (or a second run into the same folder) then starts without reading every file again; a changed,
    added or removed file changes the fingerprint, so the split is scanned again. ``sbcb check-data`` always
    scans.

    Returns:
        The largest image height and width over the split, in pixels.
    """
    import os

    fingerprint = split_fingerprint(dataset)
    record_path = out_dir / SCAN_RECORD
    record: dict[str, Any] = {}
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}  # unreadable: scan again and rewrite it
    known = record.get(fingerprint) if fingerprint is not None and isinstance(record, dict) else None
    if isinstance(known, dict) and isinstance(known.get("largest"), list) and len(known["largest"]) == 2:
        print(f"{what}: files unchanged since the scan recorded in {record_path} ({known.get('samples')} samples); "
              "not read again", flush=True)  # fmt: skip
        return int(known["largest"][0]), int(known["largest"][1])
    largest = scan_split(dataset, workers=workers, what=what)
    if fingerprint is not None:
        record = record if isinstance(record, dict) else {}
        record[fingerprint] = {"what": what, "samples": len(dataset), "largest": list(largest)}
        tmp = record_path.with_name(f".{record_path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, record_path)
    return largest


class _Checked:
    """Sample i of a raw dataset -> (None, its image's (H, W)), or (the message of the error reading it, None)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[str | None, tuple[int, int] | None]:
        from sbcb.data.validation import DataError

        try:
            image = self.dataset[index]["image"]
        except DataError as e:
            return " ".join(str(e).split()), None
        except Exception as e:  # still a problem with this one sample: name it
            return f"sample {index}: {type(e).__name__}: {e}", None
        return None, (int(image.shape[0]), int(image.shape[1]))


def _first(batch: list) -> Any:
    return batch[0]


class TrainOutcome(NamedTuple):
    """What `run_training` returns: exit code, the loop's result, the trained model and the validation data."""

    code: int
    result: Any
    model: Any
    val_set: Any
    data_info: Any


def run_training(
    cfg: Config, *, resume: str | Path | None = None, overwrite: bool = False, allow_custom: bool = False
) -> TrainOutcome:
    """Build data and model from `cfg` and train (also under torchrun); saves ``config.yaml`` in the run folder.

    Everything a user can get wrong is checked before the first step: the run folder (a run already in it needs
    ``resume`` or ``overwrite``), a resume's changed settings (`check_resume_changes`), the model spec
    (`sbcb.models.check_allowed`; a ``module:function`` architecture needs ``allow_custom``), both data splits.

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
    if cfg.run.logger == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:  # say so before any data or model is built
            raise ConfigError('--logger tensorboard needs tensorboard: pip install "sbcb[tensorboard]"')
    out_dir = Path(cfg.run.out)
    from sbcb.models import check_allowed
    from sbcb.train.checkpoint import load_checkpoint

    start = 0
    if resume is not None:
        try:
            ckpt = load_checkpoint(resume)
            check_allowed(ckpt["model"], allow_custom=allow_custom)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"{resume}: {e}" if str(resume) not in str(e) else str(e)) from None
        if ckpt.get("optimizer") is None or not ckpt.get("config") or "rng" not in ckpt:
            raise ConfigError(
                f"{resume} is not a training checkpoint (no optimizer state, config or RNG state); "
                "a stripped or exported checkpoint can't be resumed"
            )
        check_resume_changes(cfg, config_of_checkpoint(ckpt, source=str(resume)), source=str(resume))
        start = int(ckpt.get("step", 0))
        del ckpt
    prepare_run_folder(out_dir, resume=resume is not None, overwrite=overwrite)
    info = D.init_distributed(device=cfg.run.device)
    try:
        if cfg.train.batch_size % info.world_size:
            raise ConfigError(
                f"--batch-size {cfg.train.batch_size} (the total batch) is not divisible by {info.world_size} processes"
            )
        train_set, val_set, data_info = build_datasets(cfg)
        if info.is_main and cfg.data.dataset != "synthetic":  # every file read once, before the first step
            largest = scan_once(
                train_set.dataset, out_dir, workers=cfg.train.workers, what=f"--train-split {cfg.data.train_split}"
            )
            data = cfg.data
            warning = crop_warning(
                (int(data.crop[0]), int(data.crop[1])),
                largest,
                image_scale=float(data.image_scale),
                scale_range=(float(data.scale_range[0]), float(data.scale_range[1])),
            )
            if warning:
                warnings.warn(warning, stacklevel=2)
            if val_set is not None:
                scan_once(val_set.dataset, out_dir, workers=cfg.train.workers, what=f"--val-split {cfg.data.val_split}")
        seed_everything(cfg.train.seed)  # model initialisation depends on the seed only
        kwargs = model_kwargs(cfg, data_info.num_classes)
        kwargs["ignore_index"] = data_info.ignore_index
        try:
            kwargs = check_allowed(kwargs, allow_custom=allow_custom)
            model = build_model(**kwargs)
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise ConfigError(f"can't build the model: {str(e).strip()}") from None
        # 0 = validate only at the end of the run (the CLI's meaning; the loop's 0 is "never")
        settings = cfg.train
        if not settings.val_every:
            settings = cfg.replace(val_every=settings.iters).train
        if info.is_main:
            save_config(cfg.to_dict(), out_dir / "config.yaml", extra={"world_size": info.world_size})
            params = sum(p.numel() for p in model.parameters()) / 1e6
            sizes = f"{len(train_set)} train" + (f", {len(val_set)} val" if val_set is not None else "")
            if resume is not None:
                print(f"sbcb train: resuming {resume} at iteration {start}")
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
                logger=cfg.run.logger,
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
                if k in ("miou", "bf3", "biou", "sbd_mf") and isinstance(v, float)
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
