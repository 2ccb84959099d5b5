"""Adapters: find the backbone levels of models users already have (timm, smp, torchvision, transformers, any).

`find_backbone(model)` walks the model's submodules and returns the first one an adapter recognises, with its levels
(`FeatureInfo`s whose module names are relative to `model`, highest resolution first). Detection looks at the class's
defining package (`type(m).__module__`), so this package never imports timm, smp, torchvision or transformers itself;
the adapter functions import them only where they need to. A model no adapter knows (an `nn.Sequential` trunk, a
custom network) gets its levels from one probe forward (`sbcb.adapters.generic`).
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
from sbcb.adapters import transformers as hf_adapter
from sbcb.contract import DeclaresSides
from sbcb.features import FeatureInfo, check_sides_order, describe_sides, probe_features


@dataclass(frozen=True)
class BackboneSpec:
    """What an adapter found in a model.

    Args:
        family: `"timm"`, `"smp"`, `"torchvision"`, `"transformers"`, `"generic"` (found by probing every
            module), or `"declared"` (the model implements `sbcb.contract.DeclaresSides`; its levels are already
            the chosen sides).
        module: Dotted name of the backbone inside the model (`""` = the model itself).
        levels: All candidate features (measured), highest resolution first; the last is the semantic side.
        seg_output: Maps the model's forward output to the segmentation logits [B, K, H, W] (e.g. `out["out"]` for
            torchvision, `out[0]` for smp with `aux_params`, `out.logits` for transformers), or `None` when the
            forward already returns the logits tensor.
        in_chans: Input channels the probe used (the model's own when the requested ones did not fit it).
        probe_size: (H, W) the probe used (e.g. a ViT's fixed `img_size`).
    """

    family: str
    module: str
    levels: list[FeatureInfo]
    seg_output: Callable[[Any], torch.Tensor] | None = None
    in_chans: int = 3
    probe_size: tuple[int, int] = (128, 128)

    def describe(self) -> str:
        """One readable line: where the levels come from and which they are (see `sbcb.features.describe_sides`)."""
        where = f"{self.family} backbone at {self.module!r}" if self.module else f"{self.family}"
        return describe_sides(self.levels, source=where)


def _package(module: nn.Module) -> str:
    return type(module).__module__.split(".")[0]


def find_backbone(
    model: nn.Module, *, input_size: tuple[int, int] = (128, 128), in_chans: int = 3, hrnet_stem: str = "1/4"
) -> BackboneSpec:
    """Locate the backbone of `model` and list its levels.

    Adapters are tried in order (a model declaring its sides, smp, timm, torchvision, transformers, on the model and
    then its submodules); when none applies, every module's output is probed (`sbcb.adapters.generic`). When the
    probe fails with the given `in_chans` / `input_size` and the model declares others (first conv's channels, a ViT's
    fixed `img_size`), it is repeated with those; `BackboneSpec.in_chans` / `probe_size` say what was used.

    Args:
        model: A timm / smp / torchvision / transformers model, any module containing one, or any other model.
        input_size: Probe image size (H, W) for measuring strides; a multiple of the largest stride.
        in_chans: Input channels.
        hrnet_stem: HRNet first side: `"1/4"` (after conv2, official ModHRNet) or `"1/2"` (after conv1).

    Returns:
        The BackboneSpec, levels measured by a dry-run forward. Warns when every level has the same stride.

    Raises:
        ValueError: nothing usable found, or the model rejects the probe; the message names the fix.
    """
    input_size = (int(input_size[0]), int(input_size[1]))
    try:
        spec = _find(model, input_size=input_size, in_chans=in_chans, hrnet_stem=hrnet_stem)
    except (RuntimeError, AssertionError, ValueError, TypeError) as first:
        from sbcb.adapters.generic import infer_input_spec

        chans, size = infer_input_spec(model, in_chans=in_chans, probe_size=input_size)
        if (chans, size) == (in_chans, input_size):
            if isinstance(first, ValueError):
                raise
            raise ValueError(
                f"the probe forward of {type(model).__name__} with a 1x{in_chans}x{input_size[0]}x{input_size[1]} "
                f"input failed ({type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''}); pass "
                "in_chans=... / probe_size=(H, W) that the model accepts"
            ) from first
        spec = _find(model, input_size=size, in_chans=chans, hrnet_stem=hrnet_stem)
    check_sides_order(spec.levels)
    return spec


def _find(model: nn.Module, *, input_size: tuple[int, int], in_chans: int, hrnet_stem: str) -> BackboneSpec:
    probe = {"input_size": input_size, "in_chans": in_chans}
    done = {"in_chans": in_chans, "probe_size": input_size}
    if isinstance(model, DeclaresSides):
        # The model names the paper's sides itself (sbcb's own models): taken as they are, only measured.
        levels = probe_features(model, model.sbcb_sides(), **probe)
        return BackboneSpec(family="declared", module="", levels=levels, **done)
    seg_output: Callable[[Any], torch.Tensor] | None = None
    if tv_adapter.is_segmentation_model(model):
        seg_output = tv_adapter.segmentation_output
    elif hf_adapter.is_transformers_segmentation_model(model):
        seg_output = hf_adapter.segmentation_output
    elif _package(model) == "segmentation_models_pytorch" and smp_adapter.has_classification_head(model):
        seg_output = smp_adapter.mask_output  # smp with aux_params returns (mask, label)
    for name, module in model.named_modules():
        package = _package(module)
        levels: list[FeatureInfo] | None = None
        if package == "segmentation_models_pytorch" and smp_adapter.is_smp_model(module):
            family, levels = "smp", smp_adapter.smp_levels(module, prefix=name, hrnet_stem=hrnet_stem)
        elif package == "timm" and timm_adapter.is_timm_backbone(module):
            family, levels = "timm", timm_adapter.timm_levels(module, prefix=name, hrnet_stem=hrnet_stem)
        elif package == "torchvision" and tv_adapter.is_torchvision_backbone(module):
            family = "torchvision"
            levels = tv_adapter.torchvision_levels(module, prefix=name, **probe)
        elif package == "transformers" and hf_adapter.is_transformers_segmentation_model(module):
            family, levels = "transformers", hf_adapter.transformers_levels(module, prefix=name, **probe)
        if levels is not None:
            levels = probe_features(model, levels, **probe)
            return BackboneSpec(family=family, module=name, levels=levels, seg_output=seg_output, **done)
    from sbcb.adapters.generic import generic_levels

    levels = generic_levels(model, **probe)
    return BackboneSpec(family="generic", module="", levels=levels, seg_output=seg_output, **done)


def list_levels(model: nn.Module, **kwargs: Any) -> list[FeatureInfo]:
    """The candidate side features of `model` (for choosing `sides` by hand); see `find_backbone`."""
    return find_backbone(model, **kwargs).levels


__all__ = ["BackboneSpec", "find_backbone", "list_levels"]
