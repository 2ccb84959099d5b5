"""Adapters: find the backbone levels of models users already have (timm, smp, torchvision).

`find_backbone(model)` walks the model's submodules and returns the first one an adapter recognises, with its levels
(`FeatureInfo`s whose module names are relative to `model`, highest resolution first). Detection looks at the class's
defining package (`type(m).__module__`), so this package never imports timm, smp or torchvision itself; the adapter
functions import them only where they need to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sbcb.adapters import smp as smp_adapter
from sbcb.adapters import timm as timm_adapter
from sbcb.adapters import torchvision as tv_adapter
from sbcb.contract import DeclaresSides
from sbcb.features import FeatureInfo, probe_features


@dataclass(frozen=True)
class BackboneSpec:
    """What an adapter found in a model.

    Args:
        family: `"timm"`, `"smp"`, `"torchvision"`, or `"declared"` (the model implements
            `sbcb.contract.DeclaresSides`; its levels are already the chosen sides).
        module: Dotted name of the backbone inside the model (`""` = the model itself).
        levels: All candidate features (measured), highest resolution first; the last is the semantic side.
        seg_output: Maps the model's forward output to the segmentation logits [B, K, H, W] (e.g. `out["out"]` for
            torchvision), or `None` when the forward already returns the logits tensor.
    """

    family: str
    module: str
    levels: list[FeatureInfo]
    seg_output: Callable[[Any], torch.Tensor] | None = None


def _package(module: nn.Module) -> str:
    return type(module).__module__.split(".")[0]


def find_backbone(
    model: nn.Module, *, input_size: tuple[int, int] = (128, 128), in_chans: int = 3, hrnet_stem: str = "1/4"
) -> BackboneSpec:
    """Locate the backbone of `model` and list its levels.

    Args:
        model: A timm / smp / torchvision model, or any module containing one (e.g. `self.backbone = timm...`).
        input_size: Probe image size (H, W) for measuring strides; a multiple of the largest stride.
        in_chans: Input channels.
        hrnet_stem: HRNet first side: `"1/4"` (after conv2, official ModHRNet) or `"1/2"` (after conv1).

    Returns:
        The BackboneSpec, levels measured by a dry-run forward.

    Raises:
        ValueError: nothing recognisable; the message says how to pass `sides` by hand.
    """
    if isinstance(model, DeclaresSides):
        # The model names the paper's sides itself (sbcb's own models): taken as they are, only measured.
        levels = probe_features(model, model.sbcb_sides(), input_size=input_size, in_chans=in_chans)
        return BackboneSpec(family="declared", module="", levels=levels)
    seg_output = tv_adapter.segmentation_output if tv_adapter.is_segmentation_model(model) else None
    for name, module in model.named_modules():
        package = _package(module)
        levels: list[FeatureInfo] | None = None
        if package == "segmentation_models_pytorch" and smp_adapter.is_smp_model(module):
            family, levels = "smp", smp_adapter.smp_levels(module, prefix=name, hrnet_stem=hrnet_stem)
        elif package == "timm" and timm_adapter.is_timm_backbone(module):
            family, levels = "timm", timm_adapter.timm_levels(module, prefix=name, hrnet_stem=hrnet_stem)
        elif package == "torchvision" and tv_adapter.is_torchvision_backbone(module):
            family = "torchvision"
            levels = tv_adapter.torchvision_levels(module, prefix=name, input_size=input_size, in_chans=in_chans)
        if levels is not None:
            levels = probe_features(model, levels, input_size=input_size, in_chans=in_chans)
            return BackboneSpec(family=family, module=name, levels=levels, seg_output=seg_output)
    raise ValueError(
        f"no timm, smp or torchvision backbone found inside {type(model).__name__}; pass the tapped submodules "
        "explicitly, e.g. SBCB(model, num_classes=K, sides=['stem.act', 'stage1', 'stage2', 'stage4']), "
        "highest resolution first and the deepest (semantic) side last"
    )


def list_levels(model: nn.Module, **kwargs: Any) -> list[FeatureInfo]:
    """The candidate side features of `model` (for choosing `sides` by hand); see `find_backbone`."""
    return find_backbone(model, **kwargs).levels


__all__ = ["BackboneSpec", "find_backbone", "list_levels"]
