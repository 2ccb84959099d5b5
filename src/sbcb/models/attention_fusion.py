"""BiSeNet's fusion blocks, shared by BiSeNetV1 and STDC: the Attention Refinement and Feature Fusion Modules and
the top-down context they build from the ARMs.

From the BiSeNet paper (Yu et al., ECCV 2018, Fig. 2 b/c), with the 3x3 channel-reducing conv in front of the ARM
that the authors' and mmseg's code add (STDC keeps both blocks unchanged, Fan et al., CVPR 2021, Fig. 6).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import ConvNormAct, LayerFactory, get_act_layer


class AttentionRefinement(nn.Module):
    """ARM: 3x3 conv + norm + act to ``out_channels``, then a channel attention (GAP, 1x1 conv + norm, sigmoid).

    Shape: [B, C_in, h, w] -> [B, C_out, h, w].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, out_channels, 3, norm_layer=norm_layer, act_layer=act_layer)
        self.attention = ConvNormAct(out_channels, out_channels, 1, norm_layer=norm_layer, act_layer=None)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        weight = torch.sigmoid(self.attention(x.mean(dim=(2, 3), keepdim=True)))
        return x * weight


class FeatureFusion(nn.Module):
    """FFM: concatenate two paths, 1x1 conv + norm + act, then an SE-style re-weighting added back.

    ``y = f + f * sigmoid(W2 relu(W1 GAP(f)))`` with ``f = conv1x1(cat(a, b))``; W1 reduces the channels by
    ``reduction`` (BiSeNet paper Fig. 2c; STDC: 4); both attention convs have biases and no norm.

    Shape: [B, C_a, h, w], [B, C_b, h, w] -> [B, C_out, h, w].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        reduction: int = 4,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.attention = nn.Sequential(
            nn.Conv2d(out_channels, out_channels // reduction, 1),
            get_act_layer(act_layer)(),
            nn.Conv2d(out_channels // reduction, out_channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fused = self.conv(torch.cat([a, b], dim=1))
        return fused + fused * self.attention(fused.mean(dim=(2, 3), keepdim=True))


class TopDownContext:
    """BiSeNet's context path on three encoder maps, as a mixin of an `nn.Module` (BiSeNetV1's `ContextPath`, STDC-Seg).

    ARMs refine the 1/32 and 1/16 maps; the 1/32 one plus a global-pooled context is upsampled (nearest) to 1/16
    and refined by a 3x3 conv, added to the 1/16 ARM output, upsampled to 1/8 and refined again. A mixin rather than
    a submodule so the host keeps its modules (``arm32``, ``refine16``, ...) at the top level of its state dict.
    """

    global_context: nn.Module
    arm32: nn.Module
    arm16: nn.Module
    refine32: nn.Module
    refine16: nn.Module

    def add_context_modules(self, c16: int, c32: int, channels: int, **layer_kw: Any) -> None:
        """Register the context modules on the host: 1/16 and 1/32 inputs of `c16` / `c32` channels -> `channels`."""
        self.global_context = ConvNormAct(c32, channels, 1, **layer_kw)
        self.arm32 = AttentionRefinement(c32, channels, **layer_kw)
        self.arm16 = AttentionRefinement(c16, channels, **layer_kw)
        self.refine32 = ConvNormAct(channels, channels, 3, **layer_kw)
        self.refine16 = ConvNormAct(channels, channels, 3, **layer_kw)

    def top_down_context(self, x8: Tensor, x16: Tensor, x32: Tensor) -> tuple[Tensor, Tensor]:
        """Maps at 1/8 (only its size is used), 1/16, 1/32 -> (context at 1/8, context at 1/16), `channels` wide."""
        # the pooled context is constant over the map: broadcasting equals mmseg's nearest upsampling of a 1x1 map
        top = self.arm32(x32) + self.global_context(x32.mean(dim=(2, 3), keepdim=True))
        context16 = self.refine32(F.interpolate(top, size=x16.shape[-2:], mode="nearest"))
        context8 = self.refine16(F.interpolate(self.arm16(x16) + context16, size=x8.shape[-2:], mode="nearest"))
        return context8, context16
