"""segmentation_models_pytorch adapter: tap `model.encoder`.

`model.encoder(x)` returns depth + 1 maps and the first is the input image itself; encoders without a stride-2 stage
(MiT, `tu-convnext_*`) put a 0-channel placeholder there. Both are dropped: entry i is a level with stride 2**i capped
at the encoder's output stride (confirmed by the probe). For `tu-hrnet_*` encoders the HRNet rule of the timm
adapter applies to the wrapped timm network.

smp's ViT encoder (`TimmViTEncoder`, used by smp DPT) returns `(features, prefix_tokens)`, every feature at the
patch stride (1/16). In a DPT model the sides are the decoder's reassemble blocks instead (DPT's own multi-scale
taps, 1/4 .. 1/32; docs/models.md, ViT-style backbones); a bare ViT encoder gives its 1/16 features, entries
`(0, i)`, and the single-stride warning. Models built with `aux_params` return `(mask, label)`: `mask_output`.
"""

from __future__ import annotations

from typing import Any

import torch
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


def has_classification_head(model: nn.Module) -> bool:
    """True for an smp model built with `aux_params` (its forward returns `(mask, label)`)."""
    return getattr(model, "classification_head", None) is not None


def mask_output(output: Any) -> torch.Tensor:
    """The mask logits [B, K, H, W] of an smp model with `aux_params` (`(mask, label)` output)."""
    return output[0]


def _is_vit_encoder(encoder: nn.Module) -> bool:
    return hasattr(encoder, "has_prefix_tokens")


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
    reassemble = getattr(getattr(module, "decoder", None), "reassemble_blocks", None)
    if _is_vit_encoder(encoder) and isinstance(reassemble, nn.ModuleList):
        base = f"{prefix}.decoder.reassemble_blocks" if prefix else "decoder.reassemble_blocks"
        return [FeatureInfo(0, 0, f"{base}.{i}", channels_last=False) for i in range(len(reassemble))]
    if _is_vit_encoder(encoder):
        # (features, prefix_tokens): entry (0, i) is the i-th feature map, all at the patch stride
        return [
            FeatureInfo(int(c), 0, enc_name, index=(0, i), channels_last=False)
            for i, c in enumerate(encoder.out_channels)
        ]
    inner = getattr(encoder, "model", None)
    if isinstance(inner, nn.Module) and _is_hrnet(inner):
        return timm_levels(inner, prefix=f"{enc_name}.model" if enc_name else "model", hrnet_stem=hrnet_stem)
    output_stride = int(getattr(encoder, "output_stride", 0) or 2 ** (len(encoder.out_channels) - 1))
    return [
        FeatureInfo(int(c), min(2**i, output_stride), enc_name, index=i, channels_last=False)  # smp encoders: NCHW
        for i, c in enumerate(encoder.out_channels)
        if i > 0 and c > 0
    ]
