"""OCRNet (Yuan et al., ECCV 2020): object-contextual representations, as in mmseg's ``ocrnet_hr*`` / ``ocrnet_r*``.

1. An FCN head predicts *soft object regions* (coarse K-class logits); it is OCR's auxiliary head (CE weight 0.4)
   but it also runs at inference, since its output is an input of the OCR head (mmseg's cascade).
2. Object region representations: each class's feature is the average of the pixel features weighted by the
   region's softmax over positions ([B, K, C]).
3. Object contextual representation: every pixel attends to the K region features (query/key: two 1x1 conv + BN +
   ReLU to 256 channels, value and output: one each, scaled dot product), the result is concatenated with the pixel
   feature and fused by a 1x1 conv + BN + ReLU.

Paper settings: HRNet-W18/W48 (Tab. 11: all branches resized to 1/4 and concatenated, FCN 1x1 conv to that width,
no dropout), ResNet-101 d8 (Tab. 12: FCN on layer3, 3x3 conv to 256, OCR on layer4, dropout 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import ConvNormAct
from sbcb.models.encoder_decoder import EncoderDecoder, FCNHead, build_encoder, decode_inputs
from sbcb.models.registry import register_model


def object_region_features(features: Tensor, regions: Tensor) -> Tensor:
    """Soft object region representations (OCR Eq. 2).

    Args:
        features: Pixel features [B, C, H, W].
        regions: Soft object region logits [B, K, H, W].

    Returns:
        [B, K, C]: per class, the features averaged with the region's softmax over positions as weights.
    """
    weights = F.softmax(regions.flatten(2), dim=-1)  # [B, K, HW]
    return torch.matmul(weights, features.flatten(2).transpose(1, 2))


class ObjectContext(nn.Module):
    """Pixel-to-region attention and fusion (OCR Eq. 3-4): [B, C, H, W], [B, K, C] -> [B, C, H, W]."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.query = nn.Sequential(ConvNormAct(channels, key_channels, 1), ConvNormAct(key_channels, key_channels, 1))
        self.key = nn.Sequential(ConvNormAct(channels, key_channels, 1), ConvNormAct(key_channels, key_channels, 1))
        self.value = ConvNormAct(channels, key_channels, 1)
        self.out = ConvNormAct(key_channels, channels, 1)
        self.fuse = ConvNormAct(2 * channels, channels, 1)

    def forward(self, features: Tensor, regions: Tensor) -> Tensor:
        b, _, h, w = features.shape
        region_map = regions.transpose(1, 2).unsqueeze(-1)  # [B, C, K, 1]: 1x1 convs act per region
        query = self.query(features).flatten(2).transpose(1, 2)  # [B, HW, C']
        key = self.key(region_map).flatten(2)  # [B, C', K]
        value = self.value(region_map).flatten(2).transpose(1, 2)  # [B, K, C']
        attention = F.softmax(torch.matmul(query, key) * self.key_channels**-0.5, dim=-1)  # [B, HW, K]
        context = torch.matmul(attention, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.fuse(torch.cat([self.out(context), features], dim=1))


class OCRHead(nn.Module):
    """3x3 conv + BN + ReLU to `channels`, object context, dropout, 1x1 classifier.

    Shape: ([B, C_in, h, w], soft regions [B, K, h', w']) -> [B, K, h, w] logits.
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, channels: int = 512, key_channels: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.bottleneck = ConvNormAct(in_channels, channels, 3)
        self.object_context = ObjectContext(channels, key_channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor], regions: Tensor) -> Tensor:
        (x,) = features
        feats = self.bottleneck(x)
        if regions.shape[-2:] != feats.shape[-2:]:
            regions = F.interpolate(regions, size=feats.shape[-2:], mode="bilinear", align_corners=False)
        context = self.object_context(feats, object_region_features(feats, regions))
        return self.classifier(self.dropout(context))


@register_model("ocr")
def ocrnet(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int = 512,
    key_channels: int = 256,
    dropout: float | None = None,
    aux_weight: float = 0.4,
) -> EncoderDecoder:
    """OCRNet on a timm encoder (default ``hrnet_w48``: HRNet-W48, paper Tab. 11; ``resnet101`` gives the Tab. 12
    row). The soft object regions are its auxiliary head, always built. Arguments shared by the encoder-decoder
    factories: see `sbcb.models.encoder_decoder`.

    Args:
        key_channels: Attention width.
        dropout: Dropout before both classifiers (None = mmseg: 0.1 on ResNets, none on HRNet).
        aux_weight: CE weight of the soft object regions (mmseg: 0.4).
    """
    enc = build_encoder(encoder or "hrnet_w48", output_stride)
    # OCR on the deepest level, regions from the penultimate one (ResNet: layer4 / layer3); HRNet: both on all branches
    inputs = decode_inputs(enc)
    if inputs.concat:  # mmseg ocrnet_hr*: FCN 1x1 conv at the concatenated width, no dropout anywhere
        p = 0.0 if dropout is None else dropout
        regions = FCNHead(inputs.aux_channels, num_classes, channels=inputs.aux_channels, kernel_size=1, dropout=p)
    else:
        p = 0.1 if dropout is None else dropout
        regions = FCNHead(inputs.aux_channels, num_classes, channels=256, kernel_size=3, dropout=p)
    head = OCRHead(inputs.channels[0], num_classes, channels=channels, key_channels=key_channels, dropout=p)
    return EncoderDecoder.from_inputs(enc, head, inputs, aux_head=regions, aux_weight=aux_weight, cascade=True)
