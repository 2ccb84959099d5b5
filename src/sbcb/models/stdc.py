"""STDC-Seg (Fan et al., "Rethinking BiSeNet for Real-time Semantic Segmentation", CVPR 2021): the STDC backbone,
its BiSeNet-style context path, and the training-only Detail Head.

- **STDC module** (paper Fig. 3, "cat" type, 4 blocks): 1x1 conv to C/2, then 3x3 convs to C/4, C/8, C/8; the
  outputs are concatenated (C). With stride 2 the first block's output is downsampled by a depthwise 3x3/2 conv
  + BN before the second block, and by a 3x3/2 average pool on the concat path.
- **STDC network** (paper Tab. 1): stage1 3x3/2 conv to 32, stage2 3x3/2 conv to 64, stages 3, 4, 5 of STDC
  modules (256, 512, 1024 channels; 1/8, 1/16, 1/32); STDC1 has 2, 2, 2 modules, STDC2 4, 5, 3.
- **Context path** (as BiSeNetV1): ARMs on stages 4 and 5 and a global-pooled context, 128 channels, upsampled
  top-down to 1/8; an FFM fuses stage 3 with it (384 -> 256); an FCN head (256 -> 256 -> K) classifies.
- **Training-only heads**: two auxiliary FCN heads (128 -> 64 -> K) on the context at 1/8 and 1/16 (CE weight 1
  each; mmseg also OHEM-samples them, which sbcb does not) and the **Detail Head** (256 -> 64 -> 1) on stage 3,
  supervised with `sbcb.models.detail` (BCE + Dice).

SBCB (P§7.3, App. D, Fig. 14; spec §5.7): the Detail Head is removed (``detail_head=False``); binary sides =
stages 1-4 (1/2, 1/4, 1/8, 1/16), semantic side = the FFM output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.features import FeatureInfo
from sbcb.layers import ConvNormAct, LayerFactory
from sbcb.models.attention_fusion import FeatureFusion, TopDownContext
from sbcb.models.detail import detail_loss
from sbcb.models.registry import check_fixed_options, register_model
from sbcb.models.seg_head import SegHead, aux_cross_entropy, upsample_to

# modules per stage 3, 4, 5 (paper Tab. 1)
STDC_DEPTHS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}


class STDCModule(nn.Module):
    """Short-Term Dense Concatenate module, "cat" fusion: [B, C_in, h, w] -> [B, C_out, h / stride, w / stride].

    Args:
        in_channels: C_in.
        out_channels: C_out (divisible by 2 ** (num_blocks - 1)).
        stride: 1 or 2.
        num_blocks: Conv blocks (paper: 4); widths C/2, C/4, ..., with the last two equal.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, num_blocks: int = 4, **kw: Any) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"STDCModule stride must be 1 or 2, got {stride}")
        widths = [out_channels // 2 ** (i + 1) for i in range(num_blocks - 1)]
        widths.append(widths[-1])  # C/2, C/4, C/8, C/8: the widths sum to C
        self.blocks = nn.ModuleList([ConvNormAct(in_channels, widths[0], 1, **kw)])
        self.blocks.extend(ConvNormAct(a, b, 3, **kw) for a, b in zip(widths, widths[1:]))
        self.downsample: nn.Module = nn.Identity()
        self.skip: nn.Module = nn.Identity()
        if stride == 2:
            self.downsample = ConvNormAct(
                widths[0],
                widths[0],
                3,
                stride=2,
                groups=widths[0],
                norm_layer=kw.get("norm_layer", "batchnorm"),
                act_layer=None,
            )
            self.skip = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        first = self.blocks[0](x)
        outs = [self.skip(first)]
        x = self.downsample(first)
        for block in self.blocks[1:]:
            x = block(x)
            outs.append(x)
        return torch.cat(outs, dim=1)


class STDCNet(nn.Module):
    """The STDC backbone: stage1..stage5 at strides 2, 4, 8, 16, 32 (32, 64, 256, 512, 1024 channels).

    ``forward`` returns the five stage outputs; ``feature_info`` lists their channels, strides and module names.
    """

    def __init__(
        self,
        depths: tuple[int, int, int],
        *,
        channels: tuple[int, int, int, int, int] = (32, 64, 256, 512, 1024),
        num_blocks: int = 4,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.stage1 = ConvNormAct(3, channels[0], 3, stride=2, **kw)
        self.stage2 = ConvNormAct(channels[0], channels[1], 3, stride=2, **kw)
        stages = []
        for c_in, c, n in zip(channels[1:], channels[2:], depths):
            mods = [
                STDCModule(c_in if i == 0 else c, c, stride=2 if i == 0 else 1, num_blocks=num_blocks, **kw)
                for i in range(n)
            ]
            stages.append(nn.Sequential(*mods))
        self.stage3, self.stage4, self.stage5 = stages
        self.feature_info = [FeatureInfo(c, 2 ** (i + 1), f"stage{i + 1}") for i, c in enumerate(channels)]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5):
            x = stage(x)
            outs.append(x)
        return outs


class STDCSeg(TopDownContext, nn.Module):
    """STDC-Seg: STDC backbone + ARM/FFM context path + FCN head, with auxiliary and (optional) Detail heads.

    Args:
        backbone: An `STDCNet`.
        num_classes: K.
        context_channels: Width of the ARM/context features (paper: 128).
        fuse_channels: FFM output width (paper: 256).
        detail_head: Build the Detail Head (the STDC baseline). SBCB replaces it: build with False.
        aux_weight: Weight of each auxiliary CE.
        detail_weights: (BCE, Dice) weights of the Detail loss (paper: 1, 1).
        ignore_index: Label ignored by the auxiliary CE losses.
        norm_layer: Norm layer name or class.
        act_layer: Activation name or class.

    Shape: [B, 3, H, W] -> [B, K, H, W] logits (H, W multiples of 32).
    """

    def __init__(
        self,
        backbone: STDCNet,
        *,
        num_classes: int,
        context_channels: int = 128,
        fuse_channels: int = 256,
        detail_head: bool = True,
        aux_weight: float = 1.0,
        detail_weights: tuple[float, float] = (1.0, 1.0),
        ignore_index: int = 255,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        kw = {"norm_layer": norm_layer, "act_layer": act_layer}
        c8, c16, c32 = (info.num_chs for info in backbone.feature_info[2:])
        c = context_channels
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.detail_weights = tuple(detail_weights)
        self.ignore_index = ignore_index
        self.backbone = backbone
        self.add_context_modules(c16, c32, c, **kw)  # BiSeNetV1's context path (`TopDownContext`)
        self.ffm = FeatureFusion(c8 + c, fuse_channels, **kw)
        # not "head": `sbcb.export` reads ONNX nodes under /head/ as the SBCB wrapper's SBD head
        self.decode_head = SegHead(fuse_channels, fuse_channels, num_classes, **kw)
        self.aux_head8 = SegHead(c, c // 2, num_classes, **kw)
        self.aux_head16 = SegHead(c, c // 2, num_classes, **kw)
        self.detail_head = SegHead(c8, 64, 1, **kw) if detail_head else None

    def _features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        _, _, x8, x16, x32 = self.backbone(images)
        context8, context16 = self.top_down_context(x8, x16, x32)
        return self.ffm(x8, context8), context8, context16, x8

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, K, H, W] logits."""
        fused = self._features(images)[0]
        return upsample_to(self.decode_head(fused), images.shape[-2:])

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits plus ``aux_8``, ``aux_16`` (auxiliary logits) and, with the Detail Head, ``detail`` at 1/8."""
        fused, context8, context16, x8 = self._features(images)
        aux = {"aux_8": self.aux_head8(context8), "aux_16": self.aux_head16(context16)}
        if self.detail_head is not None:
            aux["detail"] = self.detail_head(x8)
        return TrainOutput(upsample_to(self.decode_head(fused), images.shape[-2:]), aux)

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """``loss_aux_8``, ``loss_aux_16`` (CE) and ``loss_detail_bce``, ``loss_detail_dice`` (Detail Head)."""
        ce = {name: aux[name] for name in ("aux_8", "aux_16")}
        losses = aux_cross_entropy(ce, masks, weight=self.aux_weight, ignore_index=self.ignore_index)
        if "detail" in aux:
            bce, dice = self.detail_weights
            losses.update(detail_loss(aux["detail"], masks, bce_weight=bce, dice_weight=dice))
        return losses

    def sbcb_sides(self) -> list[FeatureInfo]:
        """Backbone stages 1-4 (1/2 .. 1/16; binary), then the FFM output (semantic)."""
        names = [f"backbone.stage{i}" for i in (1, 2, 3, 4)] + ["ffm"]
        return [FeatureInfo(0, 0, name) for name in names]


def _stdc_factory(variant: str, backbone: str) -> Callable[..., STDCSeg]:
    """The registry factory of one STDC variant; stdc1 and stdc2 differ only in their `STDC_DEPTHS` entry."""

    def factory(
        *,
        num_classes: int,
        encoder: str | None = None,
        output_stride: int | None = None,
        detail_head: bool = True,
        aux_weight: float = 1.0,
    ) -> STDCSeg:
        check_fixed_options("STDC", encoder=encoder, output_stride=output_stride)
        net = STDCNet(STDC_DEPTHS[variant])
        return STDCSeg(net, num_classes=num_classes, detail_head=detail_head, aux_weight=aux_weight)

    factory.__name__ = factory.__qualname__ = variant
    factory.__doc__ = (
        f"{variant.upper()}-Seg ({backbone} backbone; random init); ``detail_head=False`` for SBCB, as the paper."
    )
    return factory


stdc1 = register_model("stdc1")(_stdc_factory("stdc1", "STDC813"))
stdc2 = register_model("stdc2")(_stdc_factory("stdc2", "STDC1446"))


__all__ = ["STDCModule", "STDCNet", "STDCSeg", "stdc1", "stdc2"]
