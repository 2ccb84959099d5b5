"""Hugging Face transformers adapter: Segformer, UperNet (ConvNeXt / Swin / any `BackboneMixin`), DPT, MobileViT.

Sides, highest resolution first (nothing is typed by hand: channels and strides come from the probe):
- Segformer: the four MiT stages `segformer.stages.{0..3}` (NCHW, 1/4 .. 1/32), all four, as the paper's MiT rule
  (spec §5.6).
- UperNet: the backbone's `feature_maps` (the normalised maps its decode head reads), tapped as entries
  `("feature_maps", i)` of `backbone`'s output; ConvNeXt and Swin give 1/4 .. 1/32.
- DPT: the reassemble layers `neck.reassemble_stage.layers.{i}` (1/4, 1/8, 1/16, 1/32 from a 1/16 ViT): the ViT
  itself has one resolution, DPT's reassemble taps are the multi-scale sides (docs/models.md, ViT-style backbones).
- MobileViT: the last encoder layer at each stride (`mobilevit.encoder.layer.{i}`), as the MobileNet rule.

Outputs: these models return a `ModelOutput` whose `logits` are at the model's own resolution (Segformer 1/4,
MobileViT 1/32; UperNet and DPT already at the input size). `segmentation_output` returns `logits` resized
bilinearly (align_corners=False) to a given size, which is exactly what the models' losses and their image
processors' `post_process_semantic_segmentation` do; without a size it returns them as they are (the SBCB loss
resizes logits to the mask the same way).

Auxiliary heads (UperNet's and DPT's `auxiliary_head`, on by default in their configs) run in `forward` but their
logits are not returned, so SBCB cannot train them: they get no gradient. Single-process training is unaffected;
DistributedDataParallel then needs `find_unused_parameters=True`, or build the model with
`use_auxiliary_head=False`. `find_backbone` warns about it.

Strip: the transformers model is returned untouched, so `save_pretrained` / `from_pretrained` work on it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sbcb.features import FeatureInfo

_SEGMENTATION_CLASSES = (
    "SegformerForSemanticSegmentation",
    "UperNetForSemanticSegmentation",
    "DPTForSemanticSegmentation",
    "MobileViTForSemanticSegmentation",
    "MobileViTV2ForSemanticSegmentation",
)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def is_transformers_segmentation_model(module: nn.Module) -> bool:
    """True for the transformers semantic segmentation models this adapter knows."""
    return type(module).__module__.startswith("transformers.") and type(module).__name__ in _SEGMENTATION_CLASSES


def segmentation_output(output: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The logits [B, K, h, w] of a transformers `ModelOutput` (or `{"logits"}` dict / return_dict=False tuple).

    Args:
        output: What the model returned.
        size: (H, W) to resize to, as the model's loss and `post_process_semantic_segmentation` do (bilinear,
            align_corners=False); None = the model's own resolution.
    """
    logits = output["logits"] if isinstance(output, dict) else output[0] if isinstance(output, tuple) else output
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


def _last_per_stride(model: nn.Module, names: list[str], *, input_size: tuple[int, int], in_chans: int) -> list[str]:
    from sbcb.features import probe_features

    measured = probe_features(model, [FeatureInfo(0, 0, n) for n in names], input_size=input_size, in_chans=in_chans)
    last_at: dict[int, str] = {}
    for info in measured:
        last_at[info.reduction] = info.module
    return [last_at[r] for r in sorted(last_at)]


def transformers_levels(
    module: nn.Module, *, prefix: str = "", input_size: tuple[int, int] = (128, 128), in_chans: int = 3
) -> list[FeatureInfo]:
    """Candidate levels of a transformers segmentation model, highest resolution first (measured later).

    Args:
        module: A `*ForSemanticSegmentation` model.
        prefix: Its dotted name inside the wrapped model.
        input_size: Probe size (MobileViT groups its layers by resolution with it).
        in_chans: Input channels.

    Raises:
        ValueError: an architecture this adapter does not know.
    """
    kind = type(module).__name__
    if getattr(module, "auxiliary_head", None) is not None:
        warnings.warn(
            f"{kind} has an auxiliary_head whose logits it does not return: SBCB cannot train it (no gradient). "
            "Fine in one process; under DistributedDataParallel build the model with use_auxiliary_head=False "
            "or pass find_unused_parameters=True.",
            stacklevel=3,
        )
    if kind == "SegformerForSemanticSegmentation":
        stages = module.segformer.stages
        return [FeatureInfo(0, 0, _join(prefix, f"segformer.stages.{i}")) for i in range(len(stages))]
    if kind == "UperNetForSemanticSegmentation":
        count = len(module.backbone.out_features)
        return [FeatureInfo(0, 0, _join(prefix, "backbone"), index=("feature_maps", i)) for i in range(count)]
    if kind == "DPTForSemanticSegmentation":
        layers = module.neck.reassemble_stage.layers
        return [FeatureInfo(0, 0, _join(prefix, f"neck.reassemble_stage.layers.{i}")) for i in range(len(layers))]
    if kind.startswith("MobileViT"):
        names = [f"mobilevit.encoder.layer.{i}" for i in range(len(module.mobilevit.encoder.layer))]
        chosen = _last_per_stride(module, names, input_size=input_size, in_chans=in_chans)
        return [FeatureInfo(0, 0, _join(prefix, n)) for n in chosen]
    raise ValueError(f"no side rule for transformers {kind}; pass sides=[...]")


def transformers_model(name: str, **config_kwargs: Any) -> nn.Module:
    """A randomly initialised `*ForSemanticSegmentation` model from its config class (nothing downloaded).

    Args:
        name: `"segformer"`, `"upernet"`, `"dpt"` or `"mobilevit"`.
        config_kwargs: Config options (e.g. `num_labels=19`); UperNet takes `backbone_config` as a config object.
    """
    try:
        import transformers
    except ImportError as e:
        raise ImportError('transformers models need the transformers extra: pip install "sbcb[transformers]"') from e
    classes = {
        "segformer": ("SegformerConfig", "SegformerForSemanticSegmentation"),
        "upernet": ("UperNetConfig", "UperNetForSemanticSegmentation"),
        "dpt": ("DPTConfig", "DPTForSemanticSegmentation"),
        "mobilevit": ("MobileViTConfig", "MobileViTForSemanticSegmentation"),
    }
    if name not in classes:
        raise ValueError(f"unknown transformers model {name!r}; use one of {', '.join(classes)}")
    config_cls, model_cls = (getattr(transformers, c) for c in classes[name])
    return model_cls(config_cls(**config_kwargs))
