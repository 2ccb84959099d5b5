"""torchvision adapter: FCN, DeepLabV3 and LRASPP segmentation models and their ResNet / MobileNet backbones.

torchvision's `IntermediateLayerGetter` returns only the maps the decoder uses, so the taps hook its children:
- ResNet: `relu` (the stem after ReLU, before max-pool, 1/2), `layer1` ... `layer4`;
- MobileNetV2/V3 (`features`): the last block at each resolution, found by a probe (dilated variants merge the deep
  levels, which is what the network computes).
The segmentation models return `{"out": logits, "aux": ...}`; `segmentation_output` picks `"out"`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sbcb.features import FeatureInfo, probe_features

_RESNET_LEVELS = ("relu", "layer1", "layer2", "layer3", "layer4")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def is_segmentation_model(module: nn.Module) -> bool:
    """True for torchvision.models.segmentation FCN / DeepLabV3 / LRASPP."""
    return type(module).__module__.startswith("torchvision.models.segmentation") and hasattr(module, "backbone")


def segmentation_output(output: Any) -> torch.Tensor:
    """The logits of a torchvision segmentation model's dict output, [B, K, H, W]."""
    return output["out"]


def _is_resnet_like(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("conv1", "bn1", "relu", "layer1"))


def _sequential_body(module: nn.Module) -> tuple[str, nn.Module] | None:
    features = getattr(module, "features", None)
    if isinstance(features, nn.Sequential):
        return "features", features
    if type(module).__name__ == "IntermediateLayerGetter" and not _is_resnet_like(module):
        return "", module
    return None


def is_torchvision_backbone(module: nn.Module) -> bool:
    """True for a torchvision ResNet / MobileNet (or an IntermediateLayerGetter over one)."""
    if not type(module).__module__.startswith("torchvision.models"):
        return False
    return _is_resnet_like(module) or _sequential_body(module) is not None


def torchvision_levels(
    module: nn.Module, *, prefix: str = "", input_size: tuple[int, int] = (128, 128), in_chans: int = 3
) -> list[FeatureInfo]:
    """Candidate levels of a torchvision backbone, highest resolution first.

    Args:
        module: ResNet / MobileNet / IntermediateLayerGetter.
        prefix: Its dotted name inside the wrapped model.
        input_size: Probe size for grouping MobileNet blocks by resolution.
        in_chans: Input channels.
    """
    if _is_resnet_like(module):
        return [FeatureInfo(0, 0, _join(prefix, n)) for n in _RESNET_LEVELS if hasattr(module, n)]
    body = _sequential_body(module)
    if body is None:
        raise ValueError(f"{type(module).__name__} is not a torchvision ResNet or MobileNet backbone")
    name, seq = body
    children = [FeatureInfo(0, 0, child) for child, _ in seq.named_children()]
    measured = probe_features(seq, children, input_size=input_size, in_chans=in_chans)
    last_at: dict[int, FeatureInfo] = {}
    for info in measured:
        last_at[info.reduction] = info  # later blocks at the same resolution overwrite earlier ones
    base = _join(prefix, name)
    return [FeatureInfo(0, 0, _join(base, info.module)) for info in sorted(last_at.values(), key=lambda i: i.reduction)]
