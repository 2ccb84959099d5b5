"""Explicit feature fusion of the SBD head into the segmentation head (paper P§7.5, App. E; spec §6).

Unlike SBCB, a fused model needs part of its SBD head at inference. Each fused model is one `nn.Module` that
implements `sbcb.contract.HasAuxiliaryHeads` (``forward`` = inference logits, ``forward_train`` + ``auxiliary_losses``
for the SBD terms) and has ``deployable()`` / ``strip()`` returning exactly what inference needs.

- `ChannelMerge`: PSPNet or DeepLabV3+; side features mixed with the PPM / ASPP output by 1x1 convs (Fig. 15).
- `TwoStreamMerge`: DeepLabV3+; the SBD head's fused output is an extra ASPP branch (Fig. 16).
- `build_fused`: the string entry point (``--fusion channel-merge|two-stream``, ``fusion:`` in a config).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sbcb.fusion.channel_merge import ChannelMerge
from sbcb.fusion.two_stream import TwoStreamMerge

FUSIONS = {"channel-merge": ChannelMerge, "two-stream": TwoStreamMerge}


def build_fused(
    segmentor: nn.Module, fusion: str = "channel-merge", *, num_classes: int, **options: Any
) -> ChannelMerge | TwoStreamMerge:
    """Combine an smp segmentor with a CASENet SBD head by explicit fusion.

    Args:
        segmentor: smp ``PSPNet`` (channel-merge) or ``DeepLabV3Plus`` (both); not an `sbcb.SBCB` wrapper. The
            fused model owns it (its modules are reused; two-stream replaces the ASPP projection conv).
        fusion: ``"channel-merge"`` or ``"two-stream"``.
        num_classes: K.
        **options: Keyword options of `ChannelMerge` / `TwoStreamMerge`; ``None`` values are dropped (unset CLI
            flags keep the defaults).

    Returns:
        The fused model, a `sbcb.contract.HasAuxiliaryHeads`: ``sbcb.Segmentor(model, num_classes=K)(images,
        masks)`` gives ``loss_seg`` + its SBD terms (the trainer does exactly that); deploy ``model.deployable()``.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if hasattr(segmentor, "strip") and hasattr(segmentor, "head") and hasattr(segmentor, "model"):
        raise TypeError("build_fused takes the plain segmentor, not an SBCB wrapper: the fused model has its own head")
    options = {key: value for key, value in options.items() if value is not None}
    return FUSIONS[fusion](segmentor, num_classes=num_classes, **options)


__all__ = ["FUSIONS", "ChannelMerge", "TwoStreamMerge", "build_fused"]
