"""STDC's detail guidance: the Detail ground truth and the Detail loss (Fan et al., "Rethinking BiSeNet for
Real-time Semantic Segmentation", CVPR 2021, §3.2 and Fig. 5).

Detail GT: the label map (as float) is convolved with the 3x3 Laplacian ``[[-1,-1,-1], [-1,8,-1], [-1,-1,-1]]``
(zero padding) at strides 1, 2 and 4; each response is clamped at 0, thresholded (> 0.1), the stride-2 and
stride-4 maps are upsampled (nearest) to full size, and the three binary maps are fused by a fixed 1x1 conv with
weights (0.6, 0.3, 0.1) and thresholded again (> 0.1).

Two consequences of that rule, kept as published (authors' code and mmseg ``STDCHead``):
- Only the side of a transition with the *larger* label value is marked (the Laplacian is clamped at 0), and the
  ignore value (255) is an ordinary, large label; a nonzero class touching the image border is marked too (zero
  padding).
- The fused map is ``0.6 a + 0.3 b + 0.1 c > 0.1``: the stride-4 map alone gives exactly 0.1 (float32), so the GT
  is ``a OR b``; the stride-4 scale never adds a pixel.

Detail loss: binary cross-entropy + Dice (smooth 1, per image, averaged), weight 1 each, on the Detail Head's
logits resized (bilinear) to the GT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
FUSE_WEIGHTS = (0.6, 0.3, 0.1)
THRESHOLD = 0.1


def detail_targets(masks: Tensor, *, strides: tuple[int, ...] = (1, 2, 4)) -> Tensor:
    """STDC's binary Detail GT.

    Args:
        masks: [B, H, W] integer labels (255 = ignore is used as a value, as in STDC).
        strides: Laplacian strides, fused with `FUSE_WEIGHTS` (one weight per stride).

    Returns:
        [B, 1, H, W] float32 in {0, 1}.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be [B, H, W], got shape {tuple(masks.shape)}")
    if len(strides) != len(FUSE_WEIGHTS):
        raise ValueError(f"one stride per fuse weight {FUSE_WEIGHTS}, got {strides}")
    label = masks[:, None].float()
    kernel = torch.tensor(LAPLACIAN, dtype=label.dtype, device=label.device).view(1, 1, 3, 3)
    size = label.shape[-2:]
    scales = []
    for stride in strides:
        response = F.conv2d(label, kernel, stride=stride, padding=1).clamp(min=0)
        binary = (response > THRESHOLD).float()
        if stride != 1:
            binary = F.interpolate(binary, size=size, mode="nearest")
        scales.append(binary)
    weights = torch.tensor(FUSE_WEIGHTS, dtype=label.dtype, device=label.device).view(1, -1, 1, 1)
    fused = F.conv2d(torch.cat(scales, dim=1), weights)
    return (fused > THRESHOLD).float()


def dice_loss(logits: Tensor, targets: Tensor, *, smooth: float = 1.0) -> Tensor:
    """``1 - (2 |p t| + s) / (|p| + |t| + s)`` per image, averaged; logits and targets [B, 1, H, W]."""
    p = torch.sigmoid(logits).flatten(1)
    t = targets.flatten(1)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def detail_loss(
    logits: Tensor, masks: Tensor, *, bce_weight: float = 1.0, dice_weight: float = 1.0
) -> dict[str, Tensor]:
    """STDC's Detail loss.

    Args:
        logits: Detail Head output [B, 1, h, w] (resized bilinearly to the masks).
        masks: [B, H, W] integer labels.
        bce_weight: Weight of the BCE term.
        dice_weight: Weight of the Dice term.

    Returns:
        ``{"loss_detail_bce", "loss_detail_dice"}``, weighted float32 scalars.
    """
    targets = detail_targets(masks)
    logits = logits.float()
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    return {
        "loss_detail_bce": bce_weight * F.binary_cross_entropy_with_logits(logits, targets),
        "loss_detail_dice": dice_weight * dice_loss(logits, targets),
    }
