"""GCNet (Cao et al., ICCVW 2019): the global context block inside mmseg's GCHead, on a dilated ResNet.

The block pools one global context vector with a learned attention map (a 1x1 conv to one channel, softmax over
positions), transforms it through a bottleneck (1x1 conv to C / 4, LayerNorm, ReLU, 1x1 conv back to C) and adds it
to every position. GCHead is the FCN decode head (two 3x3 convs to 512, input concat) with the block after the
first conv (paper Tab. 12: ResNet-101 d8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.models.encoder_decoder import EncoderDecoder, build_encoder, context_head, decode_inputs, segmentor
from sbcb.models.registry import register_model


class GlobalContextBlock(nn.Module):
    """Attention pooling + channel-add transform (GCNet's default "att" pooling and "channel_add" fusion).

    Shape: [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, channels: int, *, ratio: float = 0.25) -> None:
        super().__init__()
        planes = int(channels * ratio)
        self.mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, planes, 1),
            nn.LayerNorm([planes, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, channels, 1),
        )
        # the block starts as the identity (mmcv ContextBlock zero-initialises the last conv)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        weights = F.softmax(self.mask(x).flatten(2), dim=-1)  # [B, 1, HW], sums to 1 over positions
        context = torch.matmul(x.flatten(2), weights.transpose(1, 2)).view(b, c, 1, 1)  # [B, C, 1, 1]
        return x + self.transform(context)


@register_model("gcnet")
def gcnet(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int = 512,
    ratio: float = 0.25,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> EncoderDecoder:
    """GCNet on a timm encoder (default ``resnet101``: ResNet-101 d8, paper Tab. 12). Arguments shared by the
    encoder-decoder factories: see `sbcb.models.encoder_decoder`.

    Args:
        ratio: Bottleneck ratio of the context transform (mmseg: 1/4).
    """
    enc = build_encoder(encoder or "resnet101", output_stride)
    inputs = decode_inputs(enc)
    block = GlobalContextBlock(channels, ratio=ratio)
    head = context_head(inputs.channels[0], num_classes, block, channels=channels, dropout=dropout)
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
