"""The FCN-style segmentation head shared by sbcb's real-time models, its cross-entropy, and the two BiSeNets'
choice of SBCB semantic side.

BiSeNet V1/V2 and STDC all end in (and supervise their auxiliary features with) the same small head: one or two
3x3 conv + BN + ReLU, dropout, and a 1x1 classifier with a bias (mmseg ``FCNHead`` with ``concat_input=False``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import ConvNormAct, LayerFactory

# where the BiSeNets tap SBCB's semantic side: the aggregation (FFM / BGA) output or the context branch's last stage
SEMANTIC_SIDES = ("aggregation", "context")


def check_semantic_side(side: str) -> str:
    """`side` if it is one of `SEMANTIC_SIDES`, else a ValueError."""
    if side not in SEMANTIC_SIDES:
        raise ValueError(f"sbcb_semantic_side must be one of {SEMANTIC_SIDES}, got {side!r}")
    return side


class SegHead(nn.Module):
    """``num_convs`` x (3x3 conv + norm + act), dropout, 1x1 classifier with bias.

    Args:
        in_channels: C of the input feature.
        channels: Hidden width.
        num_classes: Output channels K (1 for a binary head).
        num_convs: Number of 3x3 conv blocks (>= 1).
        dropout: Dropout2d probability before the classifier.
        norm_layer: Norm layer name or class.
        act_layer: Activation name or class.

    Shape: [B, C, h, w] -> [B, K, h, w] logits.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        num_convs: int = 1,
        dropout: float = 0.1,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(
            *(ConvNormAct(a, b, 3, norm_layer=norm_layer, act_layer=act_layer) for a, b in zip(widths, widths[1:]))
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, K, h, w] logits."""
        return self.classifier(self.dropout(self.convs(x)))


def upsample_to(x: Tensor, size: tuple[int, int] | list[int] | Tensor) -> Tensor:
    """Bilinear resize of [B, C, h, w] to ``size`` (align_corners=False, as mmseg's real-time configs)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def seg_cross_entropy(logits: Tensor, masks: Tensor, *, ignore_index: int = 255) -> Tensor:
    """Cross-entropy of logits [B, K, h, w], resized bilinearly to masks [B, H, W] (int64, ``ignore_index``)."""
    if logits.shape[-2:] != masks.shape[-2:]:
        logits = upsample_to(logits, masks.shape[-2:])
    return F.cross_entropy(logits.float(), masks.long(), ignore_index=ignore_index)


def aux_cross_entropy(
    aux: dict[str, Tensor], masks: Tensor, *, weight: float, ignore_index: int = 255
) -> dict[str, Tensor]:
    """``{"loss_<name>": weight * seg_cross_entropy}`` for each auxiliary logits map [B, K, h, w] in `aux`."""
    return {
        f"loss_{name}": weight * seg_cross_entropy(logits, masks, ignore_index=ignore_index)
        for name, logits in aux.items()
    }
