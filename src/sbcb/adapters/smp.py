"""segmentation_models_pytorch adapter: tap `model.encoder`.

`model.encoder(x)` returns depth + 1 maps and the first is the input image itself; encoders without a stride-2 stage
(MiT, `tu-convnext_*`) put a 0-channel placeholder there. Both are dropped: entry i is a level with stride 2**i capped
at the encoder's output stride (confirmed by the probe). For `tu-hrnet_*` encoders the HRNet rule of the timm
adapter applies to the wrapped timm network.
"""

from __future__ import annotations

from torch import nn

from sbcb.adapters.timm import _is_hrnet, timm_levels
from sbcb.features import FeatureInfo


def _encoder(module: nn.Module) -> tuple[str, nn.Module] | None:
    if hasattr(module, "out_channels") and isinstance(module.out_channels, (list, tuple)):
        return "", module
    encoder = getattr(module, "encoder", None)
    if encoder is not None and isinstance(getattr(encoder, "out_channels", None), (list, tuple)):
        return "encoder", encoder
    return None


def is_smp_model(module: nn.Module) -> bool:
    """True for an smp model (with `.encoder`) or an smp encoder."""
    return _encoder(module) is not None


def smp_levels(module: nn.Module, *, prefix: str = "", hrnet_stem: str = "1/4") -> list[FeatureInfo]:
    """Candidate levels of an smp model or encoder, highest resolution first.

    Args:
        module: smp model or encoder.
        prefix: Its dotted name inside the wrapped model.
        hrnet_stem: See `sbcb.adapters.timm.timm_levels`.
    """
    found = _encoder(module)
    if found is None:
        raise ValueError(f"{type(module).__name__} is not an smp model or encoder")
    name, encoder = found
    enc_name = f"{prefix}.{name}" if prefix and name else prefix or name
    inner = getattr(encoder, "model", None)
    if isinstance(inner, nn.Module) and _is_hrnet(inner):
        return timm_levels(inner, prefix=f"{enc_name}.model" if enc_name else "model", hrnet_stem=hrnet_stem)
    output_stride = int(getattr(encoder, "output_stride", 0) or 2 ** (len(encoder.out_channels) - 1))
    return [
        FeatureInfo(int(c), min(2**i, output_stride), enc_name, index=i, channels_last=False)  # smp encoders: NCHW
        for i, c in enumerate(encoder.out_channels)
        if i > 0 and c > 0
    ]
