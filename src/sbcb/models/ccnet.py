"""CCNet (Huang et al., ICCV 2019): recurrent criss-cross attention in pure PyTorch, on a dilated backbone.

Each pixel attends to the pixels of its own row and column (H + W - 1 positions: the pixel itself is counted once,
in the row). Applied twice with shared weights ("recurrence 2"), every pixel reaches every other one. The head is
mmseg's CCHead: the FCN decode head (3x3 conv 512, criss-cross x2, 3x3 conv, concat with the input, 3x3 conv,
dropout 0.1, 1x1 classifier) on layer4 of a ResNet-101 d8 (paper Tab. 12).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.models.encoder_decoder import EncoderDecoder, FCNHead, build_encoder, context_head, decode_inputs, segmentor
from sbcb.models.registry import register_model


class CrissCrossAttention(nn.Module):
    """One criss-cross attention step (CCNet Fig. 3), dense einsums over rows and columns.

    q, k = 1x1 convs to C / 8 channels, v = 1x1 conv to C channels (all with bias); for pixel (h, w) the energies are
    q(h, w) . k(h', w) over its column (h' != h) and q(h, w) . k(h, w') over its row, one softmax over both, and the
    output is ``gamma * (sum attn * v) + x`` with the scalar ``gamma`` initialised to 0 (identity at the start).

    Shape: [B, C, H, W] -> [B, C, H, W].
    """

    def __init__(self, channels: int, *, reduction: int = 8) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, channels // reduction, 1)
        self.key = nn.Conv2d(channels, channels // reduction, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        height = x.shape[-2]
        # column energies [B, H, W, H']: the pixel itself is left to the row term, so it is counted once
        energy_col = torch.einsum("bchw,bcgw->bhwg", q, k)
        rows = torch.arange(height, device=x.device)
        self_mask = (rows[:, None] == rows[None, :]).view(1, height, 1, height)
        energy_col = energy_col.masked_fill(self_mask, float("-inf"))
        energy_row = torch.einsum("bchw,bchu->bhwu", q, k)  # [B, H, W, W']
        attention = F.softmax(torch.cat([energy_col, energy_row], dim=-1), dim=-1)
        attn_col, attn_row = attention[..., :height], attention[..., height:]
        out = torch.einsum("bhwg,bcgw->bchw", attn_col, v) + torch.einsum("bhwu,bchu->bchw", attn_row, v)
        return self.gamma * out + x


class RecurrentCrissCross(nn.Module):
    """The same `CrissCrossAttention` applied `recurrence` times (paper: 2, enough to connect any two pixels)."""

    def __init__(self, channels: int, *, recurrence: int = 2) -> None:
        super().__init__()
        if recurrence < 1:
            raise ValueError(f"recurrence must be >= 1, got {recurrence}")
        self.attention = CrissCrossAttention(channels)
        self.recurrence = recurrence

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.recurrence):
            x = self.attention(x)
        return x


def cc_head(
    in_channels: int, num_classes: int, *, channels: int = 512, recurrence: int = 2, dropout: float = 0.1
) -> FCNHead:
    """mmseg's CCHead: `context_head` (two 3x3 convs, input concat) with recurrent criss-cross after the first conv."""
    block = RecurrentCrissCross(channels, recurrence=recurrence)
    return context_head(in_channels, num_classes, block, channels=channels, dropout=dropout)


@register_model("ccnet")
def ccnet(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int = 512,
    recurrence: int = 2,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> EncoderDecoder:
    """CCNet on a timm encoder (default ``resnet101``: ResNet-101 d8, paper Tab. 12). Arguments shared by the
    encoder-decoder factories: see `sbcb.models.encoder_decoder`.

    Args:
        recurrence: Criss-cross steps with shared weights.
    """
    enc = build_encoder(encoder or "resnet101", output_stride)
    inputs = decode_inputs(enc)
    head = cc_head(inputs.channels[0], num_classes, channels=channels, recurrence=recurrence, dropout=dropout)
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
