"""What the fused models share: where an smp PSPNet / DeepLabV3+ is cut open, its SBD sides, and boundary GT.

A fused model runs the segmentor's own submodules in the segmentor's own order and changes one tensor on the way:
the **re-entry feature**. `context_features` computes the segmentor's forward up to that feature and `finish` runs
the rest, so ``finish(seg, feats, context_features(seg, feats, r), r)`` equals ``seg(images)`` exactly (tested).

Re-entry points (the paper leaves this open, spec §6.1; ``"context"`` is the spec's proposal):

| re-entry | PSPNet (smp) | DeepLabV3+ (smp) |
|---|---|---|
| ``"context"`` | PPM output (``decoder.psp``), before ``decoder.conv`` | ``decoder.aspp`` output, before ``up`` + C1 |
| ``"decoder"`` | decoder output, before ``segmentation_head`` | decoder output, before ``segmentation_head`` |

The architecture is recognised from the modules (``decoder.psp``; ``decoder.aspp`` + ``decoder.block1``), not from
the class name, so no smp import is needed here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from sbcb.features import FeatureInfo, default_sides

REENTRY_POINTS = ("context", "decoder")


def arch_of(segmentor: nn.Module) -> str:
    """``"pspnet"`` or ``"deeplabv3plus"`` for an smp PSPNet / DeepLabV3Plus.

    Raises:
        ValueError: For any other model, or one with an smp classification head (its second output is not fused).
    """
    decoder = getattr(segmentor, "decoder", None)
    if not hasattr(segmentor, "encoder") or not hasattr(segmentor, "segmentation_head") or decoder is None:
        raise ValueError(
            f"explicit fusion needs an smp PSPNet or DeepLabV3Plus (encoder, decoder, segmentation_head); "
            f"got {type(segmentor).__name__}"
        )
    if getattr(segmentor, "classification_head", None) is not None:
        raise ValueError("explicit fusion does not handle smp's aux_params classification head; build without it")
    if hasattr(decoder, "psp") and hasattr(decoder, "conv"):
        return "pspnet"
    if hasattr(decoder, "aspp") and hasattr(decoder, "block1") and hasattr(decoder, "block2"):
        return "deeplabv3plus"
    raise ValueError(f"explicit fusion supports smp PSPNet and DeepLabV3Plus, got {type(segmentor).__name__}")


def check_reentry(reentry: str) -> str:
    if reentry not in REENTRY_POINTS:
        raise ValueError(f"reentry must be one of {REENTRY_POINTS}, got {reentry!r}")
    return reentry


def context_features(segmentor: nn.Module, features: list[Tensor], reentry: str) -> Tensor:
    """The re-entry feature ``[B, C, h, w]`` from the encoder's outputs (``segmentor.encoder(images)``)."""
    decoder = segmentor.decoder
    if reentry == "decoder":
        return decoder(features)
    if arch_of(segmentor) == "pspnet":
        return decoder.psp(features[-1])
    return decoder.aspp(features[-1])


def finish(segmentor: nn.Module, features: list[Tensor], context: Tensor, reentry: str) -> Tensor:
    """The rest of the segmentor's forward from a (possibly replaced) re-entry feature: logits [B, K, H, W]."""
    decoder = segmentor.decoder
    if reentry == "context":
        if arch_of(segmentor) == "pspnet":
            context = decoder.dropout(decoder.conv(context))
        else:  # smp DeepLabV3PlusDecoder.forward after its `aspp` call; features[2] is smp's own C1 choice
            high_res = decoder.block1(features[2])
            context = decoder.block2(torch.cat([decoder.up(context), high_res], dim=1))
    return segmentor.segmentation_head(context)


def encoder_sides(segmentor: nn.Module, *, all_levels: bool = False) -> list[FeatureInfo]:
    """The paper's SBD sides of an smp model's encoder (spec §5.1): levels 1, 2, 3, 5 of a 5-level encoder.

    Channels and strides come from ``encoder.out_channels`` / ``encoder.output_stride``; ``info.index`` is the entry
    of ``segmentor.encoder(images)`` (entry 0 is the image itself and is never a side).
    """
    from sbcb.adapters.smp import smp_levels

    return default_sides(smp_levels(segmentor), all_levels=all_levels)


def probe_shape(
    module: nn.Module, fn: Callable[[Tensor], Tensor], *, size: tuple[int, int], in_chans: int = 3
) -> tuple[int, int]:
    """(channels, stride) of ``fn(images)`` measured by one eval-mode, no-grad dry run; training flags restored."""
    modes = {m: m.training for m in module.modules()}
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        module.eval()
        with torch.no_grad():
            out = fn(torch.zeros(1, in_chans, *size, device=device))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return int(out.shape[1]), size[0] // int(out.shape[2])


def boundary_targets(masks: Tensor, num_classes: int, *, radius: float, ignore_index: int) -> Tensor:
    """Multi-label boundary GT ``[B, K, H, W]`` bool from labels ``[B, H, W]``, exactly as `sbcb.SBCB` makes it.

    On the CPU the exact scan of `sbcb.boundaries.mask_to_boundaries`, elsewhere its torch twin (same bands).
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be [B, H, W], got shape {tuple(masks.shape)}")
    if masks.device.type == "cpu":
        from sbcb.boundaries import mask_to_boundaries

        bands = [mask_to_boundaries(m, num_classes, radius, ignore_index) for m in masks.long().numpy()]
        return torch.from_numpy(np.stack(bands))
    from sbcb.boundaries import mask_to_boundaries_torch

    return mask_to_boundaries_torch(masks.long(), num_classes, radius=radius, ignore_index=ignore_index)


def output_size(images: Tensor, scale: float) -> tuple[int, int]:
    """SBD output size ``(round(H * scale), round(W * scale))``, as the wrapper's ``head_scale``."""
    if scale == 1.0:  # the traced (ONNX) size stays symbolic
        return images.shape[-2], images.shape[-1]
    return round(int(images.shape[-2]) * scale), round(int(images.shape[-1]) * scale)
