"""ANN (Zhu et al., ICCV 2019): asymmetric non-local attention, as in mmseg's ANNHead on a dilated ResNet.

Both blocks are non-local attention whose keys and values are *pyramid pooled* (adaptive average pools of sizes
1, 3, 6, 8 flattened and concatenated: 110 positions instead of H x W), which makes them cheap:

- AFNB (fusion): queries from layer4, keys/values from layer3; the result (projected back to layer4's width) is
  concatenated with layer4 and fused by a 1x1 conv + BN (no activation).
- APNB (pyramid): after a 3x3 conv + BN + ReLU to 512 channels, self-attention on that feature, concatenated with it
  and fused by a 1x1 conv + BN + ReLU.

Queries and keys: one 1x1 conv + BN + ReLU to 256 channels; values and the output projection: a plain 1x1 conv.
Paper Tab. 12: ResNet-101 d8.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import ConvNormAct
from sbcb.models.encoder_decoder import EncoderDecoder, build_encoder, decode_inputs, segmentor
from sbcb.models.registry import register_model


def pooling_matrix(size: int, bins: int, *, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[bins, size] averaging weights of adaptive average pooling along one axis.

    Bin i averages positions floor(i * size / bins) .. ceil((i + 1) * size / bins) - 1, exactly as
    ``F.adaptive_avg_pool2d``; written with tensor arithmetic so an ONNX trace keeps H and W dynamic (the exporter
    cannot export ``adaptive_avg_pool2d`` on inputs of unknown size).
    """
    index = torch.arange(bins, device=device)
    start = index * size // bins
    end = ((index + 1) * size + bins - 1) // bins
    position = torch.arange(size, device=device)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def pyramid_pool(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """[B, C, H, W] -> [B, C, sum(s * s)]: adaptive average pools of each size, flattened and concatenated."""
    h, w = x.shape[-2:]
    pooled = []
    for s in sizes:
        rows = pooling_matrix(h, s, device=x.device, dtype=x.dtype)
        cols = pooling_matrix(w, s, device=x.device, dtype=x.dtype)
        pooled.append(torch.einsum("ih,bchw,jw->bcij", rows, x, cols).flatten(2))
    return torch.cat(pooled, dim=2)


class PyramidAttention(nn.Module):
    """Non-local attention from query pixels to pyramid-pooled key pixels (ANN's asymmetric block).

    Shape: query [B, C_q, H, W], key [B, C_k, h, w] -> [B, out_channels, H, W].
    """

    def __init__(
        self, query_channels: int, key_channels: int, channels: int, out_channels: int, *, pool_sizes: Sequence[int]
    ) -> None:
        super().__init__()
        self.channels = channels
        self.pool_sizes = tuple(pool_sizes)
        self.query = ConvNormAct(query_channels, channels, 1)
        self.key = ConvNormAct(key_channels, channels, 1)
        self.value = nn.Conv2d(key_channels, channels, 1)
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        b, _, h, w = query_feats.shape
        query = self.query(query_feats).flatten(2).transpose(1, 2)  # [B, HW, C']
        key = pyramid_pool(self.key(key_feats), self.pool_sizes)  # [B, C', S]
        value = pyramid_pool(self.value(key_feats), self.pool_sizes).transpose(1, 2)  # [B, S, C']
        attention = F.softmax(torch.matmul(query, key) * self.channels**-0.5, dim=-1)  # [B, HW, S]
        context = torch.matmul(attention, value).transpose(1, 2).reshape(b, self.channels, h, w)
        return self.out(context)


class ANNHead(nn.Module):
    """AFNB(layer3 -> layer4) -> 3x3 conv -> APNB -> dropout -> 1x1 classifier.

    Shape: [layer3 [B, C3, h, w], layer4 [B, C4, h, w]] -> [B, K, h, w] logits.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        channels: int = 512,
        project_channels: int = 256,
        pool_sizes: Sequence[int] = (1, 3, 6, 8),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        low, high = in_channels
        self.fusion_attention = PyramidAttention(high, low, project_channels, high, pool_sizes=pool_sizes)
        self.fusion = ConvNormAct(2 * high, high, 1, act_layer=None)
        self.bottleneck = ConvNormAct(high, channels, 3)
        self.pyramid_attention = PyramidAttention(channels, channels, project_channels, channels, pool_sizes=pool_sizes)
        self.pyramid = ConvNormAct(2 * channels, channels, 1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        low, high = features
        x = self.fusion(torch.cat([self.fusion_attention(high, low), high], dim=1))
        x = self.bottleneck(x)
        x = self.pyramid(torch.cat([self.pyramid_attention(x, x), x], dim=1))
        return self.classifier(self.dropout(x))


@register_model("ann")
def ann(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int = 512,
    project_channels: int = 256,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> EncoderDecoder:
    """ANN on a timm encoder (default ``resnet101``: ResNet-101 d8, paper Tab. 12); the two deepest levels feed the
    head, so the encoder needs a layer3 and a layer4 at the same stride. Arguments shared by the encoder-decoder
    factories: see `sbcb.models.encoder_decoder`.

    Args:
        project_channels: Attention width.
    """
    enc = build_encoder(encoder or "resnet101", output_stride)
    inputs = decode_inputs(enc, levels=(-2, -1))
    if inputs.concat:
        raise ValueError("ANN needs two separate levels (layer3, layer4); HRNet's concatenated branches are one")
    head = ANNHead(inputs.channels, num_classes, channels=channels, project_channels=project_channels, dropout=dropout)
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
