"""BiSeNetV2 (Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time Semantic
Segmentation", IJCV 2021).

- **Detail branch** (paper Tab. 1): three stages of 3x3 conv + BN + ReLU, widths 64, 64, 128, strides 2, 2, 2
  (1/2, 1/4, 1/8), with 2, 3 and 3 convs.
- **Semantic branch**: Stem block (16 channels, 1/4), Gather-and-Expansion layers (expansion 6) in stages 3, 4, 5
  (32, 64, 128 channels; 1/8, 1/16, 1/32; 2, 2 and 4 layers, the first with stride 2) and the Context
  Embedding block.
- **Bilateral Guided Aggregation** (128 channels) fuses both at 1/8; an FCN head (128 -> 1024 -> K) classifies.
- **Boosters** (training only): FCN heads with two 3x3 convs on the stem and on stages 3, 4, 5 (hidden widths
  16, 64, 256, 1024), CE weight 1 each (mmseg ``configs/_base_/models/bisenetv2.py``).

SBCB (P§7.2, App. C; spec §5.7): binary sides = the three detail-branch stages, semantic side = the aggregation
(BGA) output, or with ``sbcb_semantic_side="context"`` the semantic branch's last stage (the CE block).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.features import FeatureInfo
from sbcb.layers import ConvNormAct, LayerFactory, get_act_layer, get_norm_layer
from sbcb.models.registry import check_fixed_options, register_model
from sbcb.models.seg_head import SEMANTIC_SIDES, SegHead, aux_cross_entropy, check_semantic_side, upsample_to


class DetailBranch(nn.Module):
    """Three stages of 3x3 conv + norm + act: [B, 3, H, W] -> [B, C3, H/8, W/8]; each stage starts with stride 2."""

    def __init__(
        self, channels: tuple[int, int, int] = (64, 64, 128), depths: tuple[int, int, int] = (2, 3, 3), **kw: Any
    ) -> None:
        super().__init__()
        stages = []
        c_in = 3
        for c, n in zip(channels, depths):
            stages.append(
                nn.Sequential(
                    *(ConvNormAct(c_in if i == 0 else c, c, 3, stride=2 if i == 0 else 1, **kw) for i in range(n))
                )
            )
            c_in = c
        self.stage1, self.stage2, self.stage3 = stages

    def forward(self, x: Tensor) -> Tensor:
        return self.stage3(self.stage2(self.stage1(x)))


class StemBlock(nn.Module):
    """3x3/2 conv, then a conv (1x1 halving, 3x3/2) branch beside a 3x3/2 max-pool, concatenated, 3x3 conv.

    Shape: [B, 3, H, W] -> [B, C, H/4, W/4].
    """

    def __init__(self, in_channels: int, out_channels: int, **kw: Any) -> None:
        super().__init__()
        self.conv = ConvNormAct(in_channels, out_channels, 3, stride=2, **kw)
        self.branch = nn.Sequential(
            ConvNormAct(out_channels, out_channels // 2, 1, **kw),
            ConvNormAct(out_channels // 2, out_channels, 3, stride=2, **kw),
        )
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvNormAct(2 * out_channels, out_channels, 3, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.branch(x), self.pool(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-Expansion layer (paper Fig. 5 b/c).

    3x3 conv + norm + act; depthwise 3x3 expanding to ``in * expansion`` channels (+ norm; stride 2 adds a second
    depthwise 3x3); 1x1 projection + norm; added to the shortcut (identity, or depthwise 3x3/2 + norm and
    1x1 + norm when striding); act.

    Shape: [B, C_in, h, w] -> [B, C_out, h / stride, w / stride].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 6,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"GatherExpand stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 GatherExpand layer keeps its width (identity shortcut)")
        mid = in_channels * expansion
        kw = {"norm_layer": norm_layer, "act_layer": None}
        self.conv = ConvNormAct(in_channels, in_channels, 3, norm_layer=norm_layer, act_layer=act_layer)
        depthwise = [ConvNormAct(in_channels, mid, 3, stride=stride, groups=in_channels, **kw)]
        if stride == 2:
            depthwise.append(ConvNormAct(mid, mid, 3, groups=mid, **kw))
        self.depthwise = nn.Sequential(*depthwise)
        self.project = ConvNormAct(mid, out_channels, 1, **kw)
        self.shortcut = (
            nn.Identity()
            if stride == 1
            else nn.Sequential(
                ConvNormAct(in_channels, in_channels, 3, stride=2, groups=in_channels, **kw),
                ConvNormAct(in_channels, out_channels, 1, **kw),
            )
        )
        self.act = get_act_layer(act_layer)()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.project(self.depthwise(self.conv(x))) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    """CE block: GAP + norm, 1x1 conv + norm + act, broadcast-added to the input, 3x3 conv + norm + act.

    Shape: [B, C, h, w] -> [B, C, h, w].
    """

    def __init__(
        self, channels: int, *, norm_layer: str | LayerFactory = "batchnorm", act_layer: str | LayerFactory = "relu"
    ) -> None:
        super().__init__()
        self.norm = get_norm_layer(norm_layer)(channels)
        self.conv_gap = ConvNormAct(channels, channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv = ConvNormAct(channels, channels, 3, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x + self.conv_gap(self.norm(x.mean(dim=(2, 3), keepdim=True))))


class SemanticBranch(nn.Module):
    """Stem (1/4), GE stages 3, 4, 5 (1/8, 1/16, 1/32) and the CE block.

    ``forward`` returns the stem, stage3, stage4, stage5 and CE outputs (the boosters read the first four).
    """

    def __init__(
        self,
        channels: tuple[int, int, int, int] = (16, 32, 64, 128),
        depths: tuple[int, int, int] = (2, 2, 4),
        *,
        expansion: int = 6,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.stem = StemBlock(3, channels[0], **kw)
        stages = []
        for c_in, c, n in zip(channels, channels[1:], depths):
            layers = [GatherExpand(c_in, c, stride=2, expansion=expansion, **kw)]
            layers += [GatherExpand(c, c, expansion=expansion, **kw) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.stage3, self.stage4, self.stage5 = stages
        self.context = ContextEmbedding(channels[-1], **kw)

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.stem(x)
        s3 = self.stage3(stem)
        s4 = self.stage4(s3)
        s5 = self.stage5(s4)
        return [stem, s3, s4, s5, self.context(s5)]


class BilateralGuidedAggregation(nn.Module):
    """BGA (paper Fig. 6): each branch gates the other at its own resolution; the sum goes through a 3x3 conv.

    detail [B, C, H/8, W/8] and semantic [B, C, H/32, W/32] -> [B, C, H/8, W/8].
    """

    def __init__(
        self, channels: int, *, norm_layer: str | LayerFactory = "batchnorm", act_layer: str | LayerFactory = "relu"
    ) -> None:
        super().__init__()
        no_act = {"norm_layer": norm_layer, "act_layer": None}
        self.detail_keep = nn.Sequential(
            ConvNormAct(channels, channels, 3, groups=channels, **no_act), nn.Conv2d(channels, channels, 1)
        )
        self.detail_down = nn.Sequential(
            ConvNormAct(channels, channels, 3, stride=2, **no_act), nn.AvgPool2d(3, stride=2, padding=1)
        )
        self.semantic_up = ConvNormAct(channels, channels, 3, **no_act)
        self.semantic_keep = nn.Sequential(
            ConvNormAct(channels, channels, 3, groups=channels, **no_act), nn.Conv2d(channels, channels, 1)
        )
        self.conv = ConvNormAct(channels, channels, 3, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, detail: Tensor, semantic: Tensor) -> Tensor:
        size = detail.shape[-2:]
        high = self.detail_keep(detail) * torch.sigmoid(upsample_to(self.semantic_up(semantic), size))
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.conv(high + upsample_to(low, size))


class BiSeNetV2(nn.Module):
    """BiSeNetV2 with its booster heads (training only).

    Args:
        num_classes: K.
        detail_channels: Detail-branch widths (paper: 64, 64, 128).
        semantic_channels: Stem and GE-stage widths (paper: 16, 32, 64, 128, i.e. lambda = 1/4 of detail).
        expansion: GE expansion ratio (paper: 6).
        head_channels: Hidden width of the segmentation head (mmseg: 1024).
        booster_channels: Hidden widths of the four boosters (mmseg: 16, 64, 256, 1024).
        aux_weight: Weight of each booster's CE (mmseg: 1.0).
        sbcb_semantic_side: ``"aggregation"`` (BGA output, default) or ``"context"`` (the CE block).
        ignore_index: Label ignored by the booster losses.
        norm_layer: Norm layer name or class.
        act_layer: Activation name or class.

    Shape: [B, 3, H, W] -> [B, K, H, W] logits (H, W multiples of 32; training batch >= 2 for the CE block's BN).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        detail_channels: tuple[int, int, int] = (64, 64, 128),
        semantic_channels: tuple[int, int, int, int] = (16, 32, 64, 128),
        expansion: int = 6,
        head_channels: int = 1024,
        booster_channels: tuple[int, int, int, int] = (16, 64, 256, 1024),
        aux_weight: float = 1.0,
        sbcb_semantic_side: str = "aggregation",
        ignore_index: int = 255,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        if detail_channels[-1] != semantic_channels[-1]:
            raise ValueError("the BGA needs the detail and semantic branches to end with the same width")
        kw = {"norm_layer": norm_layer, "act_layer": act_layer}
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.sbcb_semantic_side = check_semantic_side(sbcb_semantic_side)
        self.ignore_index = ignore_index
        self.detail = DetailBranch(tuple(detail_channels), **kw)
        self.semantic = SemanticBranch(tuple(semantic_channels), expansion=expansion, **kw)
        self.bga = BilateralGuidedAggregation(detail_channels[-1], **kw)
        # not "head": `sbcb.export` reads ONNX nodes under /head/ as the SBCB wrapper's SBD head
        self.decode_head = SegHead(detail_channels[-1], head_channels, num_classes, **kw)
        self.boosters = nn.ModuleDict(
            {
                name: SegHead(c, hidden, num_classes, num_convs=2, **kw)
                for name, c, hidden in zip(BOOSTER_NAMES, semantic_channels, booster_channels)
            }
        )

    def _run(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        semantic = self.semantic(images)
        fused = self.bga(self.detail(images), semantic[-1])
        return upsample_to(self.decode_head(fused), images.shape[-2:]), semantic

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, K, H, W] logits."""
        return self._run(images)[0]

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits plus booster logits ``aux_stem`` (1/4), ``aux_stage3`` (1/8), ``aux_stage4``, ``aux_stage5``."""
        logits, semantic = self._run(images)
        aux = {f"aux_{name}": self.boosters[name](x) for name, x in zip(BOOSTER_NAMES, semantic)}
        return TrainOutput(logits, aux)

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """``loss_aux_stem`` .. ``loss_aux_stage5``: weighted CE of each booster against masks [B, H, W]."""
        return aux_cross_entropy(aux, masks, weight=self.aux_weight, ignore_index=self.ignore_index)

    def sbcb_sides(self) -> list[FeatureInfo]:
        """Detail stages 1, 2, 3 (1/2, 1/4, 1/8; binary), then the BGA output or the CE block (semantic)."""
        semantic = "bga" if self.sbcb_semantic_side == "aggregation" else "semantic.context"
        names = ["detail.stage1", "detail.stage2", "detail.stage3", semantic]
        return [FeatureInfo(0, 0, name) for name in names]


BOOSTER_NAMES = ("stem", "stage3", "stage4", "stage5")


@register_model("bisenetv2")
def bisenetv2(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    sbcb_semantic_side: str = "aggregation",
    aux_weight: float = 1.0,
) -> BiSeNetV2:
    """BiSeNetV2 as published (its own two branches; random init).

    Args:
        num_classes: K.
        encoder: Must be None (BiSeNetV2 has its own backbone).
        output_stride: None or 32.
        sbcb_semantic_side: See `BiSeNetV2`.
        aux_weight: Weight of each booster loss.
    """
    check_fixed_options("BiSeNetV2", encoder=encoder, output_stride=output_stride)
    return BiSeNetV2(num_classes=num_classes, sbcb_semantic_side=sbcb_semantic_side, aux_weight=aux_weight)


__all__ = [
    "SEMANTIC_SIDES",
    "BiSeNetV2",
    "BilateralGuidedAggregation",
    "ContextEmbedding",
    "DetailBranch",
    "GatherExpand",
    "SemanticBranch",
    "StemBlock",
    "bisenetv2",
]
