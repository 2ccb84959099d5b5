"""Shareable model folders: safetensors weights, a JSON config that rebuilds the model, and a model card.

Layout (the Hugging Face Hub's: a folder that can be uploaded as a model repository as is)::

    my-model/
      config.json          # sbcb format, the `sbcb.models.build_model` kwargs, classes, dataset, metrics
      model.safetensors    # the state dict (no pickle)
      README.md            # generated model card: architecture, dataset, metrics with their settings

The recipe is the run's configuration: `save_pretrained` takes the `sbcb.train.config.Config` a model was trained
with (its model section and boundary radius, resolved to `sbcb.models.build_model` kwargs exactly as `sbcb train`
does), a bare `ModelConfig`, or the build kwargs a checkpoint stores (``ckpt["model"]["kwargs"]``). A function, not a
method of `sbcb.Segmentor`: the wrapper holds a user model it cannot rebuild, modules never hold config objects, and
the core stays free of safetensors and the model builder.

Loading never runs code from the folder and never reaches the network: `config.json` is parsed as JSON, and its
build kwargs must pass `check_model_kwargs` (the checkpoint allow-list, `sbcb.models.check_allowed`: known keys; an
smp architecture or a model registered with `sbcb.models.register_model`, never a ``"module:function"`` factory
path; no option that downloads weights) before `sbcb.models.build_model` sees them. The weights are read with
safetensors, which holds tensors only.

Example:
    >>> save_pretrained(net, "out/my-model", config=cfg, metrics={"miou": 0.71})   # cfg: the run's Config
    >>> save_pretrained(net, "out/my-model-deploy", config=cfg, stripped=True)
    >>> model = sbcb.from_pretrained("out/my-model-deploy")   # the plain segmentor, eval mode
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT = 1
BUILDER = "sbcb.models.build_model"
# smp / timm options that fetch weights from the network; a shared config must not set them.

__all__ = ["build_kwargs", "check_model_kwargs", "from_pretrained", "push_to_hub", "read_config", "save_pretrained"]


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as e:
        raise ImportError('sharing models needs safetensors: pip install "sbcb[hub]"') from e
    return st


# --------------------------------------------------------------------------------------------------- checks


def check_model_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The allow-list: validate `sbcb.models.build_model` kwargs read from (or written to) a shared folder.

    Everything a file may ask `build_model` for passes through here and nothing else; checkpoints store the same
    kwargs (``ckpt["model"]["kwargs"]``), so checkpoint loading can use this function too.

    Args:
        kwargs: Keyword arguments of `sbcb.models.build_model`, plain JSON types.

    Returns:
        A plain copy of `kwargs`.

    Raises:
        ValueError: An unknown key, an architecture sbcb does not know (a ``"module:function"`` path included: a
            shared folder must not name code to import), an option that would download weights, or a value that
            is not plain JSON.
    """
    from sbcb.models import check_allowed

    if not isinstance(kwargs, Mapping):
        raise ValueError(f"model kwargs must be a JSON object, got {type(kwargs).__name__}")
    if "num_classes" not in kwargs:
        raise ValueError("model kwargs lack num_classes")
    try:  # the same allow-list as checkpoint loading; a shared folder never gets the custom-factory opt-in
        return check_allowed(kwargs, allow_custom=False)
    except ValueError as e:
        if ":" in str(kwargs.get("arch", "")):
            raise ValueError(
                f"arch {kwargs['arch']!r}: a shared model must use an smp architecture or a model registered with "
                "sbcb.models.register_model, not a 'module:function' path (loading never imports code named in a file)"
            ) from None
        raise e from None


# --------------------------------------------------------------------------------------------------- saving


def build_kwargs(
    config: Any, *, num_classes: int | None = None, ignore_index: int | None = None, radius: float | None = None
) -> dict[str, Any]:
    """The `sbcb.models.build_model` kwargs of a recipe (not yet checked; see `check_model_kwargs`).

    Args:
        config: The run's `sbcb.train.config.Config` (model section + ``data.radius``), a `ModelConfig`, or build
            kwargs as a checkpoint stores them (``ckpt["model"]["kwargs"]``, returned as given).
        num_classes: K; needed with a `Config` or `ModelConfig` (they leave K to the dataset).
        ignore_index: The dataset's void label (default 255).
        radius: Boundary GT radius for a bare `ModelConfig` (default 2; a `Config` has its own).
    """
    from sbcb.train.config import Config, ModelConfig
    from sbcb.train.run import model_kwargs

    if isinstance(config, (Config, ModelConfig)):
        if num_classes is None:
            raise ValueError("a Config does not know the number of classes: pass num_classes=K")
        kwargs = model_kwargs(config, int(num_classes), radius=radius)
        kwargs["ignore_index"] = 255 if ignore_index is None else int(ignore_index)
        return kwargs
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(
        f"config must be a Config, a ModelConfig or build_model kwargs (ckpt['model']['kwargs']), "
        f"got {type(config).__name__}"
    )


def save_pretrained(
    net: nn.Module,
    directory: str | os.PathLike,
    *,
    config: Any,
    stripped: bool = False,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    dataset: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    title: str | None = None,
    license: str | None = None,
    check: bool = True,
) -> Path:
    """Write a shareable folder: ``config.json``, ``model.safetensors`` and a model card ``README.md``.

    Args:
        net: The trained model: an `sbcb.SBCB` wrapper, an `sbcb.Segmentor` or a plain segmentor, as built by
            `sbcb.models.build_model` from `config`.
        directory: Output folder (created; the three files are replaced if present).
        config: The recipe that built `net` (see `build_kwargs`): the run's `Config` (recommended), a
            `ModelConfig`, or a checkpoint's ``ckpt["model"]["kwargs"]``.
        stripped: Save the deployable segmentor (``net.strip()``, no SBD head) instead of `net`.
        num_classes: K for a `Config` recipe (default: ``net.num_classes`` of an sbcb wrapper).
        class_names: Names of the K classes, for the card and the config.
        dataset: What the model was trained on, plain JSON (default with a `Config`: its dataset and split).
        metrics: Evaluation results by name: a number, or a native result dict such as
            ``BoundaryIoU(...).compute()`` (its ``settings`` go to the card; arrays become lists, NaN null).
        title: Heading of the model card (default: derived from the architecture).
        license: An SPDX id for the card's metadata (e.g. ``"apache-2.0"``); omitted when None.
        check: Rebuild the model from the recipe and compare state-dict keys and shapes before writing, so a
            folder that would not load is never written.

    Returns:
        The folder.

    Raises:
        ValueError: A recipe `from_pretrained` would refuse, or one that builds another model.
    """
    from sbcb.models import build_model, strip_model, stripped_kwargs
    from sbcb.train.config import Config

    st = _safetensors()
    if num_classes is None:
        num_classes = getattr(net, "num_classes", None)
    kwargs = check_model_kwargs(
        build_kwargs(
            config,
            num_classes=num_classes,
            ignore_index=getattr(net, "ignore_index", None),
            radius=getattr(net, "radius", None),
        )
    )
    if dataset is None and isinstance(config, Config):
        dataset = {"name": config.data.dataset, "split": config.data.train_split}
    from sbcb.segmentor import Segmentor
    from sbcb.wrapper import SBCB

    module = net
    if stripped:
        module = strip_model(net)
        kwargs = stripped_kwargs(kwargs)
    elif isinstance(net, Segmentor) and not isinstance(net, SBCB):
        module = net.strip()  # a baseline's call wrapper adds no weights; build_model builds the bare model
    state = module.state_dict()
    if check:
        rebuilt = build_model(**kwargs).state_dict()
        mismatch = sorted(set(rebuilt) ^ set(state))
        mismatch += [k for k in rebuilt.keys() & state.keys() if rebuilt[k].shape != state[k].shape]
        if mismatch:
            raise ValueError(
                f"the recipe builds a different model than the one given ({len(mismatch)} mismatching state-dict "
                f"entries, e.g. {mismatch[:3]}); pass the config that built it"
                + ("" if stripped else ", or stripped=True for the segmentor alone")
            )
    num_classes = int(kwargs["num_classes"])
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    record = {
        "sbcb_format": FORMAT,
        "library_name": "sbcb",
        "builder": BUILDER,
        "model_kwargs": kwargs,
        "stripped": bool(kwargs.get("sbcb_head") == "none" and not kwargs.get("bbcb") and not kwargs.get("fcn_aux")),
        "num_classes": num_classes,
        "class_names": list(class_names) if class_names is not None else None,
        "num_parameters": int(sum(p.numel() for p in module.parameters())),
        "dataset": _jsonable(dict(dataset)) if dataset else None,
        "metrics": _jsonable(dict(metrics)) if metrics else None,
        "weights": WEIGHTS_NAME,
        "versions": _versions(),
    }
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS_NAME}.", suffix=".tmp", dir=out)
    os.close(fd)
    try:
        st.save_model(module, tmp, metadata={"format": "pt", "sbcb_format": str(FORMAT)})
        os.replace(tmp, out / WEIGHTS_NAME)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _write_text(out / CONFIG_NAME, json.dumps(record, indent=2, allow_nan=False) + "\n")
    _write_text(out / CARD_NAME, model_card(record, title=title, license=license))
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import torch

    import sbcb

    out = {"sbcb": str(sbcb.__version__), "torch": str(torch.__version__)}
    for dist in ("safetensors", "timm", "segmentation-models-pytorch"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    """Plain JSON of metric results and dataset notes: arrays to lists, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"can't store a {type(value).__name__} in config.json: {value!r}")


# --------------------------------------------------------------------------------------------------- card


def model_card(config: Mapping[str, Any], *, title: str | None = None, license: str | None = None) -> str:
    """The README.md of a shared folder, from its config: Hub metadata, architecture, data, metrics, usage."""
    kw = config["model_kwargs"]
    arch = kw.get("arch", "deeplabv3plus")
    encoder = kw.get("encoder")
    head = "none" if config["stripped"] else ("BBCB binary" if kw.get("bbcb") else kw.get("sbcb_head", "casenet"))
    dataset = config.get("dataset") or {}
    lines = ["---", "library_name: sbcb", "pipeline_tag: image-segmentation"]
    lines += ["tags:", "- semantic-segmentation", "- sbcb", "- semantic-boundary-detection"]
    if license:
        lines.append(f"license: {license}")
    if dataset.get("name"):
        lines += ["datasets:", f"- {dataset['name']}"]
    lines += ["---", "", f"# {title or f'{arch} ({encoder}) trained with SBCB'}", ""]
    lines += [
        "A semantic segmentation model trained with SBCB (Semantic Boundary Conditioned Backbones): a semantic",
        "boundary detection head conditions the backbone during training and is removed for inference, so the",
        "deployed model has exactly the architecture and cost of the plain segmentor.",
        "",
        "## Model",
        "",
        f"- Architecture: `{arch}`" + (f", encoder `{encoder}`" if encoder else ""),
        f"- Output stride: {kw.get('output_stride') or 'default'}; backbone trick: {kw.get('backbone_trick', 'none')}",
        f"- SBD head in this folder: {head}"
        + (" (stripped: the deployable segmentor)" if config["stripped"] else " (the training-time wrapper)"),
        f"- Classes: {config['num_classes']}",
        f"- Parameters: {config['num_parameters']:,}",
        "",
        "Rebuilt by `sbcb.models.build_model` with these keyword arguments (`config.json`):",
        "",
        "```json",
        json.dumps(kw, indent=2),
        "```",
        "",
    ]
    if config.get("class_names"):
        lines += ["Classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(config["class_names"])), ""]
    lines += ["## Training data", ""]
    if dataset:
        lines += [f"- {k}: {v}" for k, v in dataset.items()]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Evaluation", ""]
    metrics = config.get("metrics") or {}
    if metrics:
        lines += ["| metric | value (fractions in %) | settings |", "|---|---|---|"]
        for name, value in metrics.items():
            lines.append(_metric_row(name, value))
    else:
        lines.append("Not recorded.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import sbcb",
        "",
        'model = sbcb.from_pretrained("path/to/this/folder")  # eval mode; model(images) -> [B, K, H, W] logits',
        "```",
        "",
        "sbcb never downloads: fetch a Hub copy first, e.g. `huggingface_hub.snapshot_download(repo_id)`, and pass",
        "the folder it returns. Loading parses `config.json` as data and reads `model.safetensors`; no code from",
        "the folder runs.",
        "",
        f"Written by sbcb {config['versions'].get('sbcb', '?')} (torch {config['versions'].get('torch', '?')}).",
        "",
    ]
    return "\n".join(lines)


def _metric_row(name: str, value: Any) -> str:
    """One table row: a number, or a result dict's scalars (and short ``mean*`` lists) with its settings."""
    if not isinstance(value, Mapping):
        return f"| {name} | {_fmt(value)} |  |"
    shown = []
    for key, v in value.items():
        if key == "settings" or isinstance(v, bool):
            continue
        if v is None or isinstance(v, (int, float)):
            shown.append(f"{key} {_fmt(v)}")
        elif key.startswith("mean") and isinstance(v, list) and len(v) <= 8:
            shown.append(f"{key} [{', '.join(_fmt(x) for x in v)}]")
    notes = {"radii": value["radii"]} if "radii" in value else {}
    notes.update(value.get("settings") or {})
    text = "; ".join(f"{k}: {v}" for k, v in notes.items() if not isinstance(v, list) or len(v) <= 8)
    return f"| {name} | {', '.join(shown) or 'see config.json'} | {text.replace('|', '/')} |"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{100 * value:.2f}" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return "n/a" if value is None else str(value)


# --------------------------------------------------------------------------------------------------- loading


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Parse and check the ``config.json`` of a shared folder (data only; nothing is imported or executed)."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} is not a folder. sbcb.from_pretrained reads local folders only and never downloads; for a Hub "
            "repository run huggingface_hub.snapshot_download(repo_id) first and pass the folder it returns"
        )
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_NAME}; not a folder written by sbcb.save_pretrained")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "model_kwargs" not in config:
        raise ValueError(f"{cfg_path} is not an sbcb config (no model_kwargs)")
    if int(config.get("sbcb_format", 0)) > FORMAT or int(config.get("sbcb_format", 0)) < 1:
        raise ValueError(f"{cfg_path} has sbcb_format {config.get('sbcb_format')!r}; this sbcb reads 1..{FORMAT}")
    if config.get("builder", BUILDER) != BUILDER:
        raise ValueError(f"{cfg_path}: unknown builder {config.get('builder')!r}; sbcb only uses {BUILDER}")
    config["model_kwargs"] = check_model_kwargs(config["model_kwargs"])
    return config


def from_pretrained(directory: str | os.PathLike, *, map_location: str = "cpu", strict: bool = True) -> nn.Module:
    """Rebuild the model saved by `save_pretrained` and load its weights.

    Args:
        directory: A local folder with ``config.json`` and ``model.safetensors``.
        map_location: Device safetensors reads the tensors to; they are then copied into the model, which is built
            on the CPU and stays there (move it yourself).
        strict: Every state-dict entry must match (missing or unexpected keys raise).

    Returns:
        What was saved (the SBCB wrapper, or the plain segmentor for a stripped folder) in eval mode, on the CPU.
        To share it again: ``save_pretrained(model, new_dir, config=read_config(directory)["model_kwargs"])``.

    Raises:
        FileNotFoundError: Not a local folder, or files missing.
        ValueError: A config sbcb refuses (see `check_model_kwargs`) or weights that do not fit.
    """
    from sbcb.models import build_model

    st = _safetensors()
    config = read_config(directory)
    weights = Path(directory) / config.get("weights", WEIGHTS_NAME)
    if weights.name != WEIGHTS_NAME or not weights.is_file():
        raise FileNotFoundError(f"{Path(directory)} has no {WEIGHTS_NAME}")
    kwargs = config["model_kwargs"]
    model = build_model(**kwargs)
    missing, unexpected = st.load_model(model, weights, strict=False, device=map_location)
    if strict and (missing or unexpected):
        raise ValueError(
            f"{weights} does not fit the model built from config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.eval()


# --------------------------------------------------------------------------------------------------- Hub


def push_to_hub(
    directory: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload sbcb model",
) -> str:
    """Upload a folder written by `save_pretrained` to the Hugging Face Hub as a model repository.

    UNTESTED: sbcb's tests run offline, so this function is exercised by no test. It only checks the folder, then
    calls `huggingface_hub.HfApi.create_repo` and `upload_folder`; it needs network access and a token
    (``huggingface-cli login`` or `token`).

    Returns:
        The URL of the commit, as huggingface_hub reports it.
    """
    read_config(directory)  # refuse to upload a folder that would not load
    try:
        from huggingface_hub import HfApi
    except ImportError as e:
        raise ImportError('push_to_hub needs huggingface_hub: pip install "sbcb[hub]"') from e
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(directory),
        repo_id=repo_id,
        repo_type="model",
        commit_message=commit_message,
        allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME],
    )
    return str(getattr(info, "commit_url", info))
