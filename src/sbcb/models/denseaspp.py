"""DenseASPP (Yang et al., CVPR 2018): densely connected atrous convolutions on an output-stride-8 backbone.

Five atrous layers with dilations 3, 6, 12, 18, 24; layer i sees the backbone feature concatenated with the outputs
of all earlier layers. Each layer is pre-activation: [BN] -> ReLU -> 1x1 conv to `hidden_channels` -> BN -> ReLU ->
dilated 3x3 conv to `growth_channels` -> dropout 0.1 (the first layer has no leading BN: its input already ends in
one). The classifier is dropout 0.1 + a 1x1 conv on everything concatenated. Convs carry biases, as in the paper's
code. Paper Tab. 11: DenseNet-169 (the DenseASPP authors' setting for it: 336 / 168 channels) and ResNet-50 d8.

Difference from the DenseASPP code: its DenseNet gets an extra, randomly initialised transition after block 4 that
halves the channels (1664 -> 832 for DenseNet-169); here the head reads the ImageNet DenseNet's own last feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sbcb.models.encoder_decoder import EncoderDecoder, build_encoder, decode_inputs, segmentor
from sbcb.models.registry import register_model


class DenseASPPLayer(nn.Sequential):
    """[BN] -> ReLU -> 1x1 conv -> BN -> ReLU -> dilated 3x3 conv -> Dropout2d: [B, C_in, h, w] -> [B, growth, h, w]."""

    def __init__(
        self, in_channels: int, hidden_channels: int, growth_channels: int, *, dilation: int, dropout: float, bn: bool
    ) -> None:
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if bn else []
        layers += [
            nn.ReLU(),
            nn.Conv2d(in_channels, hidden_channels, 1),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, growth_channels, 3, padding=dilation, dilation=dilation),
            nn.Dropout2d(dropout),
        ]
        super().__init__(*layers)


class DenseASPPHead(nn.Module):
    """Dense atrous pyramid + classifier: [B, C_in, h, w] -> [B, K, h, w] logits."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        hidden_channels: int = 512,
        growth_channels: int = 128,
        dilations: Sequence[int] = (3, 6, 12, 18, 24),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseASPPLayer(
                in_channels + i * growth_channels,
                hidden_channels,
                growth_channels,
                dilation=d,
                dropout=dropout,
                bn=i > 0,
            )
            for i, d in enumerate(dilations)
        )
        out_channels = in_channels + len(self.layers) * growth_channels
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(out_channels, num_classes, 1))

    def forward(self, features: list[Tensor]) -> Tensor:
        (x,) = features
        for layer in self.layers:
            x = torch.cat([layer(x), x], dim=1)  # newest first, as in the DenseASPP code
        return self.classifier(x)


@register_model("denseaspp")
def denseaspp(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    hidden_channels: int = 512,
    growth_channels: int = 128,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> EncoderDecoder:
    """DenseASPP on a timm encoder (default ``resnet50``: ResNet-50 d8, paper Tab. 11; ``densenet169`` is dilated to
    output stride 8 here, DenseASPP's setting). Arguments shared by the encoder-decoder factories: see
    `sbcb.models.encoder_decoder`.

    Args:
        hidden_channels: Width of each layer's 1x1 conv (DenseASPP code: 512 for DenseNet-161, 336 for -169).
        growth_channels: Output channels of each atrous layer (128 for DenseNet-161, 168 for -169).
        dropout: Dropout of each layer and before the classifier.
    """
    enc = build_encoder(encoder or "resnet50", output_stride)
    inputs = decode_inputs(enc)
    head = DenseASPPHead(
        inputs.channels[0],
        num_classes,
        hidden_channels=hidden_channels,
        growth_channels=growth_channels,
        dropout=dropout,
    )
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
