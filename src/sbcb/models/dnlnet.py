"""DNLNet (Yin et al., ECCV 2020): the disentangled non-local block inside mmseg's DNLHead, on a dilated ResNet.

The non-local pairwise term is computed on *whitened* embeddings (query and key minus their means over positions),
scaled by sqrt(C') and a temperature (0.05), and a separate *unary* term (a 1x1 conv to one channel, softmax over
positions) pools one global value; both are added, projected back (1x1 conv + BN, BN initialised to zero so the block
starts as the identity) and added to the input. DNLHead is the FCN decode head (two 3x3 convs to 512, input concat)
with the block after the first conv (paper Tab. 12: ResNet-101 d8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import ConvNormAct
from sbcb.models.encoder_decoder import EncoderDecoder, build_encoder, context_head, decode_inputs, segmentor
from sbcb.models.registry import register_model


class DisentangledNonLocal(nn.Module):
    """Disentangled non-local block, embedded-Gaussian pairwise term (mmseg defaults: reduction 2, scaled, T = 0.05).

    Shape: [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, channels: int, *, reduction: int = 2, temperature: float = 0.05) -> None:
        super().__init__()
        inner = channels // reduction
        self.inner = inner
        self.temperature = temperature
        self.g = nn.Conv2d(channels, inner, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.unary = nn.Conv2d(channels, 1, 1)
        self.out = ConvNormAct(inner, channels, 1, act_layer=None)
        nn.init.zeros_(self.out[1].weight)  # the block starts as the identity (mmcv NonLocal2d zeros_init)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        value = self.g(x).flatten(2).transpose(1, 2)  # [B, HW, C']
        query = self.theta(x).flatten(2).transpose(1, 2)  # [B, HW, C']
        key = self.phi(x).flatten(2)  # [B, C', HW]
        query = query - query.mean(dim=1, keepdim=True)  # whitening: subtract the mean over positions
        key = key - key.mean(dim=2, keepdim=True)
        pairwise = torch.matmul(query, key) / (self.inner**0.5) / self.temperature  # [B, HW, HW]
        y = torch.matmul(F.softmax(pairwise, dim=-1), value)  # [B, HW, C']
        unary = F.softmax(self.unary(x).flatten(2), dim=-1)  # [B, 1, HW]
        y = y + torch.matmul(unary, value)  # [B, 1, C'] broadcast to every position
        y = y.transpose(1, 2).reshape(b, self.inner, h, w)
        return x + self.out(y)


@register_model("dnlnet")
def dnlnet(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int = 512,
    reduction: int = 2,
    temperature: float = 0.05,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> EncoderDecoder:
    """DNLNet on a timm encoder (default ``resnet101``: ResNet-101 d8, paper Tab. 12). Arguments shared by the
    encoder-decoder factories: see `sbcb.models.encoder_decoder`.

    Args:
        reduction: Embedding channels = channels / reduction.
        temperature: Softmax temperature of the pairwise term.
    """
    enc = build_encoder(encoder or "resnet101", output_stride)
    inputs = decode_inputs(enc)
    block = DisentangledNonLocal(channels, reduction=reduction, temperature=temperature)
    head = context_head(inputs.channels[0], num_classes, block, channels=channels, dropout=dropout)
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
