"""BiSeNet's two fusion blocks, shared by BiSeNetV1 and STDC: the Attention Refinement and Feature Fusion Modules.

From the BiSeNet paper (Yu et al., ECCV 2018, Fig. 2 b/c), with the 3x3 channel-reducing conv in front of the ARM
that the authors' and mmseg's code add (STDC keeps both blocks unchanged, Fan et al., CVPR 2021, Fig. 6).
"""

from __future__ import annotations

import torch
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
