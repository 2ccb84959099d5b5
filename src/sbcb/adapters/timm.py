"""timm adapter: levels of timm backbones, `features_only` or not, standalone or inside a user model.

- `features_only` models (FeatureListNet, MobileNetV3Features, ...) return a list: one tap on the network itself, one
  entry per level, channels and strides from `feature_info` (so negative `out_indices`, `output_stride=8` and the
  stride-2 stem are whatever the user built).
- Ordinary timm models (`create_model("resnet50")`) carry `feature_info` as a list of dicts naming the modules that
  produce each level: one hook per named module.
- HRNet (`hrnet_*`, any `feature_location`): paper Fig. 7 / spec §5.4 sides: the stem, then stages 2, 3 and 4 with
  their branches resized to 1/4 and concatenated (W18: 54, 126, 270 channels).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sbcb.features import FeatureInfo


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _is_hrnet(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("act1", "act2", "transition1", "stage2", "stage3", "stage4"))


def is_timm_backbone(module: nn.Module) -> bool:
    """True for a timm model or `features_only` network that declares its feature levels."""
    info = getattr(module, "feature_info", None)
    if _is_hrnet(module):
        return True
    if info is None:
        return False
    return callable(getattr(info, "channels", None)) or (
        isinstance(info, list) and all(isinstance(d, dict) for d in info)
    )


def timm_levels(module: nn.Module, *, prefix: str = "", hrnet_stem: str = "1/4") -> list[FeatureInfo]:
    """Candidate levels of a timm model, highest resolution first (channels to be confirmed by a probe).

    Args:
        module: The timm model or features_only network.
        prefix: Its dotted name inside the wrapped model.
        hrnet_stem: HRNet first side: `"1/4"` (after conv2 + BN + ReLU, official ModHRNet) or `"1/2"` (after conv1).

    Returns:
        FeatureInfo per level, module names relative to the wrapped model.
    """
    if _is_hrnet(module):
        if hrnet_stem not in ("1/4", "1/2"):
            raise ValueError(f"hrnet_stem must be '1/4' or '1/2', got {hrnet_stem!r}")
        stem = FeatureInfo(
            64, 4 if hrnet_stem == "1/4" else 2, _join(prefix, "act2" if hrnet_stem == "1/4" else "act1")
        )
        stages = [FeatureInfo(0, 4, _join(prefix, f"stage{i}"), concat_branches=True) for i in (2, 3, 4)]
        return [stem, *stages]
    info: Any = module.feature_info
    # timm declares NHWC levels (Swin, ...) with `output_fmt`; a probe cannot always tell (when channels == width)
    fmt = getattr(module, "output_fmt", "NCHW")
    nhwc = str(getattr(fmt, "value", fmt)) == "NHWC"
    if callable(getattr(info, "channels", None)):
        # features_only network: its forward returns the list of levels itself.
        return [
            FeatureInfo(int(c), int(r), prefix, index=i, channels_last=nhwc)
            for i, (c, r) in enumerate(zip(info.channels(), info.reduction()))
        ]
    return [
        FeatureInfo(int(d["num_chs"]), int(d["reduction"]), _join(prefix, d["module"]), channels_last=nhwc)
        for d in info
    ]
