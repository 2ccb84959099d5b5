"""FCN auxiliary head: the paper's comparison baseline for auxiliary supervision (Tab. 4/5, spec §7).

mmseg `FCNHead` with one conv, as in the official base configs (on ResNet layer3, Side 4: 1024 channels, 1/8):
3x3 conv C -> 256 (no bias) + BN + ReLU, dropout 0.1, 1x1 classifier 256 -> K (with bias), CE loss weight 0.4.
Parameters for C = 1024, K = 19: 2,359,296 + 512 + 4,883 = 2,364,691 (paper: +2.37M).
"""

from __future__ import annotations

from torch import Tensor, nn

from sbcb.layers import LayerFactory, create_act_layer, get_norm_layer


class FCNAuxHead(nn.Module):
    """One-conv FCN head producing auxiliary segmentation logits at the feature's resolution.

    Args:
        in_channels: C of the tapped feature.
        num_classes: K.
        channels: Hidden width (mmseg: 256).
        dropout: Dropout2d probability before the classifier (mmseg: 0.1).
        norm_layer: Norm after the 3x3 conv, a name or a class called as ``norm_layer(channels)`` (default BN).
        act_layer: Activation after it, a name or a class (default ReLU).

    Example:
        >>> head = FCNAuxHead(1024, 19)
        >>> head(torch.randn(2, 1024, 64, 128)).shape  # [2, 19, 64, 128] logits
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 256,
        dropout: float = 0.1,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        if in_channels <= 0 or num_classes <= 0:
            raise ValueError(f"FCNAuxHead needs in_channels > 0 and num_classes > 0, got {in_channels}, {num_classes}")
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn = get_norm_layer(norm_layer)(channels)
        self.act = create_act_layer(act_layer, inplace=True)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:  # always (bias=True); narrows the type
            nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, h, w] feature -> [B, K, h, w] logits."""
        return self.classifier(self.dropout(self.act(self.bn(self.conv(x)))))
