"""Model factory from strings (the CLI and checkpoints): a segmentor, optionally wrapped with an SBD head.

The segmentor is either an smp architecture (``arch="deeplabv3plus", encoder="resnet18"``, always built with
``encoder_weights=None``: nothing is downloaded) or any Python factory given as ``"package.module:function"``,
called as ``function(num_classes=K, **factory_kwargs)``. `build_model` takes only plain JSON-able keyword
arguments, and those kwargs are what checkpoints store, so `sbcb.train.load_model` rebuilds a model with no
config file.

Kwargs read from a file go through `check_allowed` first: only the allow-listed builders (smp architectures and
registered sbcb models) are reachable, nothing that could download weights or code is accepted, and a
``module:function`` factory is imported only when the caller opts in (``allow_custom=True``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from sbcb.models.registry import MODELS, list_models, register_model

BACKBONE_TRICKS = ("none", "hed", "seg")

# smp architecture names accepted by `--arch` (lower case) -> smp class name.
SMP_ARCHS = {
    "deeplabv3plus": "DeepLabV3Plus",
    "deeplabv3": "DeepLabV3",
    "fpn": "FPN",
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "pspnet": "PSPNet",
    "pan": "PAN",
    "linknet": "Linknet",
    "manet": "MAnet",
    "upernet": "UPerNet",
    "segformer": "Segformer",
    "dpt": "DPT",
}


# Builder options that fetch weights (or code) from the network; never accepted from a file.
DOWNLOAD_OPTIONS = (
    "encoder_weights",
    "pretrained",
    "weights",
    "weights_backbone",
    "pretrained_backbone",
    "pretrained_cfg_overlay",
)
# Encoder names are plain identifiers: no "hf-hub:" / "hf_hub:" prefixes or "org/repo" paths that timm would fetch.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_allowed(spec: Mapping[str, Any], *, allow_custom: bool = False) -> dict[str, Any]:
    """Check model kwargs that come from a file (checkpoint, config, shared folder) before anything is built.

    Allowed: the smp architectures of `SMP_ARCHS` and the models registered with `register_model`, with plain
    JSON options. Refused, each with a one-line message: a ``"module:function"`` factory unless ``allow_custom``
    (importing it runs code named by the file), an unknown architecture or option, an option that would download
    weights (`DOWNLOAD_OPTIONS` not None/False), and an encoder name timm or smp would fetch from a hub.

    Args:
        spec: `build_model` kwargs, or a checkpoint's model spec ``{"name": "sbcb.models.build_model",
            "kwargs": {...}}``.
        allow_custom: Let a ``"module:function"`` architecture through (the caller trusts the file).

    Returns:
        A plain copy of the `build_model` kwargs.

    Raises:
        ValueError: The spec is refused; the message says why and how to opt in where that is possible.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a model spec must be a mapping of build_model options, got {type(spec).__name__}")
    if "kwargs" in spec and "name" in spec:
        if spec["name"] != "sbcb.models.build_model":
            raise ValueError(f"don't know how to rebuild model {spec['name']!r} (only sbcb.models.build_model)")
        spec = spec["kwargs"]
        if not isinstance(spec, Mapping):
            raise ValueError(f"model kwargs must be a mapping, got {type(spec).__name__}")
    try:
        kwargs = json.loads(json.dumps(dict(spec), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model kwargs must be plain JSON (numbers, strings, lists, objects): {e}") from None
    accepted = set(inspect.signature(build_model).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"unknown model option(s) {', '.join(unknown)}; build_model takes {', '.join(sorted(accepted))}"
        )
    arch = kwargs.get("arch", "deeplabv3plus")
    if not isinstance(arch, str):
        raise ValueError(f"arch must be a string, got {arch!r}")
    if ":" in arch:
        if not allow_custom:
            raise ValueError(
                f"arch {arch!r} is a module:function factory; importing it runs code named by the file, so it needs "
                "an explicit opt-in (--allow-custom-arch, or allow_custom=True)"
            )
    elif arch.lower() not in MODELS and smp_key(arch) not in SMP_ARCHS:
        raise ValueError(
            f"unknown arch {arch!r}; known: {', '.join(SMP_ARCHS)} (smp), {', '.join(list_models()) or 'none'} "
            "(registered sbcb models)"
        )
    factory = kwargs.get("factory_kwargs") or {}
    if not isinstance(factory, dict):
        raise ValueError(f"factory_kwargs must be a mapping, got {factory!r}")
    for key in DOWNLOAD_OPTIONS:
        if factory.get(key) not in (None, False):
            raise ValueError(f"model option {key}={factory[key]!r} would download weights; sbcb never downloads")
    for key, name in (("encoder", kwargs.get("encoder")), ("encoder_name", factory.get("encoder_name"))):
        if name is not None and not (isinstance(name, str) and _PLAIN_NAME.match(name)):
            raise ValueError(f"{key} {name!r} is not a plain encoder name (hub references would download)")
    return kwargs


def _import_factory(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"a model factory path looks like 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"can't import {module_name!r} for --arch {path!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (from --arch {path!r})") from None


def smp_key(arch: str) -> str:
    """The `SMP_ARCHS` key of an ``--arch`` string (case, ``-`` and ``_`` ignored); may be absent from it."""
    return arch.lower().replace("-", "").replace("_", "")


def smp_takes_output_stride(arch: str) -> bool:
    """Whether the smp architecture accepts ``encoder_output_stride`` (the DeepLab family)."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError as e:
        raise ImportError('smp architectures need the smp extra: pip install "sbcb[smp]"') from e
    return "encoder_output_stride" in inspect.signature(getattr(smp, SMP_ARCHS[smp_key(arch)])).parameters


def build_segmentor(
    arch: str,
    *,
    num_classes: int,
    encoder: str | None = "resnet18",
    encoder_depth: int | None = None,
    output_stride: int | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The plain segmentation model (no SBD head).

    Args:
        arch: An smp architecture name (see `SMP_ARCHS`) or ``"module:function"``.
        num_classes: K.
        encoder: smp encoder name (``resnet18``, ``resnet50``, ``tu-<timm model>``, ``mit_b0``, ...).
        encoder_depth: smp ``encoder_depth`` (None = smp's default).
        output_stride: smp ``encoder_output_stride`` for the DeepLab family (None = smp's default; paper: 8).
        factory_kwargs: Extra keyword arguments for an smp model or a Python factory.

    Returns:
        A module mapping [B, 3, H, W] to [B, K, H, W] logits.
    """
    extra = dict(factory_kwargs or {})
    if ":" in arch:
        model = _import_factory(arch)(num_classes=num_classes, **extra)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{arch} returned a {type(model).__name__}, expected an nn.Module")
        return model
    if arch.lower() in MODELS:
        return MODELS[arch.lower()](num_classes=num_classes, encoder=encoder, output_stride=output_stride, **extra)
    key = smp_key(arch)
    if key not in SMP_ARCHS:
        raise ValueError(
            f"unknown --arch {arch!r}; use one of {', '.join(SMP_ARCHS)} (smp), {', '.join(list_models())} (sbcb) "
            "or a 'module:function' factory"
        )
    try:
        import segmentation_models_pytorch as smp
    except ImportError as e:
        raise ImportError('smp architectures need the smp extra: pip install "sbcb[smp]"') from e
    kwargs: dict[str, Any] = {"encoder_name": encoder, "encoder_weights": None, "classes": num_classes}
    if encoder_depth is not None:
        kwargs["encoder_depth"] = encoder_depth
    if output_stride is not None:
        kwargs["encoder_output_stride"] = output_stride
    kwargs.update(extra)
    return getattr(smp, SMP_ARCHS[key])(**kwargs)


def build_model(
    *,
    arch: str = "deeplabv3plus",
    num_classes: int,
    encoder: str | None = "resnet18",
    encoder_depth: int | None = None,
    output_stride: int | None = None,
    sbcb_head: str = "casenet",
    bbcb: bool = False,
    fcn_aux: bool = False,
    sides: Sequence[str] | None = None,
    backbone_trick: str = "none",
    factory_kwargs: Mapping[str, Any] | None = None,
    alpha: float = 5.0,
    beta: float = 1.0,
    head_scale: float = 1.0,
    aux_weight: float = 0.4,
    radius: float = 2.0,
    ignore_index: int = 255,
    fusion: str = "none",
) -> nn.Module:
    """Build a segmentor and, unless ``sbcb_head="none"`` without ``bbcb``/``fcn_aux``, wrap it with `sbcb.SBCB`.

    Args:
        arch, num_classes, encoder, encoder_depth, output_stride, factory_kwargs: See `build_segmentor`.
        sbcb_head: A name in `sbcb.heads.HEADS` (``casenet``, ``dff``, ``dds``) or ``none`` (the baseline).
        bbcb: Binary boundary head instead of the semantic one (paper §5.4; CASENet with K = 1).
        fcn_aux: Add the FCN auxiliary head (paper Tab. 4/5 comparison rows).
        sides: Explicit side taps (module names); default: chosen from the backbone (spec §5.1).
        backbone_trick: ``hed`` (edge-detection strides) | ``seg`` (d8 segmentation strides) | ``none``
            (paper §5.7), applied to a ResNet encoder before wrapping; parameters are unchanged.
        alpha, beta, head_scale, aux_weight, radius, ignore_index: `sbcb.SBCB` options (loss weights, SBD output
            scale, boundary GT radius); unused by a baseline.
        fusion: ``channel-merge`` | ``two-stream`` (`sbcb.fusion`, P§7.5): the segmentor and a CASENet head fused
            into one model instead of the SBCB wrapper (needs ``sbcb_head="casenet"``). With ``sbcb_head="none"``
            the fused model is built in its deployable form (what stripped checkpoints rebuild).

    Returns:
        The model; ``model(images)`` gives [B, K, H, W] logits in eval mode.
    """
    from sbcb.heads import HEADS

    if sbcb_head != "none" and sbcb_head not in HEADS:
        raise ValueError(f"unknown --sbcb-head {sbcb_head!r}; use one of {', '.join([*sorted(HEADS), 'none'])}")
    if backbone_trick not in BACKBONE_TRICKS:
        raise ValueError(f"unknown --backbone-trick {backbone_trick!r}; use one of {', '.join(BACKBONE_TRICKS)}")
    model = build_segmentor(
        arch,
        num_classes=num_classes,
        encoder=encoder,
        encoder_depth=encoder_depth,
        output_stride=output_stride,
        factory_kwargs=factory_kwargs,
    )
    if backbone_trick != "none":
        from sbcb.backbone_trick import resnet_variant

        model = resnet_variant(model, "hed" if backbone_trick == "hed" else "segmentation")
    if fusion != "none":
        from sbcb.fusion import build_fused

        if bbcb or fcn_aux or sbcb_head not in ("casenet", "none"):
            raise ValueError(f"--fusion {fusion} brings its own CASENet head: no --bbcb, --fcn-aux or other heads")
        fused = build_fused(
            model,
            fusion,
            num_classes=num_classes,
            alpha=alpha,
            beta=beta,
            head_scale=head_scale,
            radius=radius,
            ignore_index=ignore_index,
        )
        return fused.deployable() if sbcb_head == "none" else fused
    if sbcb_head == "none" and not bbcb and not fcn_aux:
        return model
    from sbcb.wrapper import SBCB

    if sbcb_head == "none" and fcn_aux and not bbcb:
        raise ValueError("--fcn-aux rides on the SBCB wrapper: combine it with --sbcb-head or --bbcb")
    return SBCB(
        model,
        num_classes=num_classes,
        head="casenet" if sbcb_head == "none" else sbcb_head,
        binary=bbcb,
        fcn_aux=fcn_aux,
        sides=list(sides) if sides else None,
        alpha=alpha,
        beta=beta,
        head_scale=head_scale,
        aux_weight=aux_weight,
        radius=radius,
        ignore_index=ignore_index,
    )


__all__ = [
    "MODELS",
    "SMP_ARCHS",
    "build_model",
    "build_segmentor",
    "check_allowed",
    "list_models",
    "model_spec",
    "register_model",
    "strip_model",
    "stripped_kwargs",
]


def stripped_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `build_model` kwargs of the same model without any auxiliary head (what `strip()` returns); a fused
    model keeps ``fusion`` and is rebuilt in its deployable form."""
    out = dict(kwargs)
    out.update(sbcb_head="none", bbcb=False, fcn_aux=False, sides=None)
    for key in ("alpha", "beta", "head_scale", "aux_weight", "radius", "ignore_index"):
        out.pop(key, None)
    return out


def model_spec(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"model"`` entry of a checkpoint: how `sbcb.train.load_model` rebuilds the model."""
    return {"name": "sbcb.models.build_model", "kwargs": dict(kwargs)}


def strip_model(model: nn.Module) -> nn.Module:
    """The deployable segmentor: ``model.strip()`` for an SBCB wrapper, the model itself otherwise."""
    strip = getattr(model, "strip", None)
    return strip() if callable(strip) else model


# sbcb's own models register themselves on import (torch only; timm and torchvision are imported inside factories):
# BiSeNetV1/V2 and STDC (paper Tab. 16), the encoder-decoder heads (Tab. 11/12), GSCNN (Tab. 6), torchvision's LRASPP.
from sbcb.models import ann as _ann  # noqa: E402, F401
from sbcb.models import bisenetv1 as _bisenetv1  # noqa: E402, F401
from sbcb.models import bisenetv2 as _bisenetv2  # noqa: E402, F401
from sbcb.models import ccnet as _ccnet  # noqa: E402, F401
from sbcb.models import denseaspp as _denseaspp  # noqa: E402, F401
from sbcb.models import dnlnet as _dnlnet  # noqa: E402, F401
from sbcb.models import fcn as _fcn  # noqa: E402, F401
from sbcb.models import gcnet as _gcnet  # noqa: E402, F401
from sbcb.models import gscnn as _gscnn  # noqa: E402, F401
from sbcb.models import ocr as _ocr  # noqa: E402, F401
from sbcb.models import stdc as _stdc  # noqa: E402, F401
from sbcb.models import torchvision_seg as _torchvision_seg  # noqa: E402, F401
