"""BiSeNetV1 (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation", ECCV 2018).

Two paths meet in a Feature Fusion Module:
- the **spatial path**: four conv + BN + ReLU layers (7x7/2, 3x3/2, 3x3/2, 1x1) keeping 1/8 resolution;
- the **context path**: a ResNet (timm, no weights downloaded) whose 1/16 and 1/32 stages are refined by
  Attention Refinement Modules, summed top-down with a global-average-pooled context and upsampled to 1/8.

Channel widths follow mmseg's published configs and are derived from the encoder, never typed per model:
with c = the encoder's 1/8 channels (ResNet-18: 128, ResNet-50: 512) the spatial path is (c/2, c/2, c/2, c), the
context path outputs c, the FFM and the segmentation head 2c, the two auxiliary heads c/2
(``configs/_base_/models/bisenetv1_r18-d32.py`` and ``bisenetv1_r50-d32_4xb4-160k_cityscapes-1024x1024.py``).

Training: the main CE plus two auxiliary FCN heads on the context path's 1/8 and 1/16 outputs, weight 1 each.
SBCB (paper P§7.2, App. C, Fig. 13; spec §5.7): binary sides = the three spatial-path resolutions (1/2, 1/4, 1/8),
semantic side = the FFM (aggregation) output, or with ``sbcb_semantic_side="context"`` the context path's last
ResNet stage.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.features import FeatureInfo
from sbcb.layers import ConvNormAct, LayerFactory
from sbcb.models.attention_fusion import AttentionRefinement, FeatureFusion, TopDownContext
from sbcb.models.registry import check_fixed_options, register_model
from sbcb.models.seg_head import SEMANTIC_SIDES, SegHead, aux_cross_entropy, check_semantic_side, upsample_to


class SpatialPath(nn.Module):
    """7x7/2, 3x3/2, 3x3/2 and 1x1 conv + norm + act: [B, 3, H, W] -> [B, C4, H/8, W/8]."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int], **layer_kw: Any) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.layer1 = ConvNormAct(in_channels, c1, 7, stride=2, **layer_kw)
        self.layer2 = ConvNormAct(c1, c2, 3, stride=2, **layer_kw)
        self.layer3 = ConvNormAct(c2, c3, 3, stride=2, **layer_kw)
        self.layer4 = ConvNormAct(c3, c4, 1, **layer_kw)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ContextPath(TopDownContext, nn.Module):
    """ResNet stages 1/8, 1/16, 1/32 -> ARM-refined, top-down summed context at 1/8 and 1/16 (`TopDownContext`).

    Args:
        encoder: A module returning [1/8, 1/16, 1/32] feature maps (a timm ``features_only`` ResNet).
        encoder_channels: Channels of those three maps.
        out_channels: Width of the refined context (c).
    """

    def __init__(self, encoder: nn.Module, encoder_channels: list[int], out_channels: int, **layer_kw: Any) -> None:
        super().__init__()
        _, c16, c32 = encoder_channels
        self.encoder = encoder
        self.add_context_modules(c16, c32, out_channels, **layer_kw)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """[B, 3, H, W] -> (context at 1/8 [B, c, H/8, W/8], context at 1/16 [B, c, H/16, W/16])."""
        return self.top_down_context(*self.encoder(x))


class BiSeNetV1(nn.Module):
    """BiSeNetV1 on a ResNet context path.

    ``forward(images)`` returns the logits only (no auxiliary head runs); ``forward_train`` also returns the
    auxiliary heads' logits (`sbcb.contract.HasAuxiliaryHeads`), and ``sbcb_sides`` names the paper's SBD sides
    (`sbcb.contract.DeclaresSides`), so ``SBCB(model, num_classes=K)`` needs no ``sides=``.

    Args:
        encoder: Module mapping [B, 3, H, W] to three maps at 1/8, 1/16, 1/32.
        encoder_channels: Their channels (from the encoder's feature info).
        num_classes: K.
        aux_weight: Weight of each auxiliary CE loss (mmseg: 1.0).
        sbcb_semantic_side: ``"aggregation"`` (FFM output, App. C; default) or ``"context"`` (the encoder's
            last stage, P§7.2).
        encoder_last_stage: Module name (relative to ``encoder``) of its 1/32 stage, for the "context" side.
        ignore_index: Label ignored by the auxiliary losses.
        norm_layer: Norm layer name or class.
        act_layer: Activation name or class.

    Shape: [B, 3, H, W] -> [B, K, H, W] logits (H, W multiples of 32).
    """

    def __init__(
        self,
        encoder: nn.Module,
        encoder_channels: list[int],
        *,
        num_classes: int,
        aux_weight: float = 1.0,
        sbcb_semantic_side: str = "aggregation",
        encoder_last_stage: str = "layer4",
        ignore_index: int = 255,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 3:
            raise ValueError(f"encoder_channels must list the 1/8, 1/16, 1/32 maps, got {encoder_channels}")
        layer_kw = {"norm_layer": norm_layer, "act_layer": act_layer}
        c = encoder_channels[0]
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.sbcb_semantic_side = check_semantic_side(sbcb_semantic_side)
        self.encoder_last_stage = encoder_last_stage
        self.ignore_index = ignore_index
        self.spatial_path = SpatialPath(3, (c // 2, c // 2, c // 2, c), **layer_kw)
        self.context_path = ContextPath(encoder, encoder_channels, c, **layer_kw)
        self.ffm = FeatureFusion(2 * c, 2 * c, **layer_kw)
        # not "head": `sbcb.export` reads ONNX nodes under /head/ as the SBCB wrapper's SBD head
        self.decode_head = SegHead(2 * c, 2 * c, num_classes, **layer_kw)
        self.aux_head8 = SegHead(c, c // 2, num_classes, **layer_kw)
        self.aux_head16 = SegHead(c, c // 2, num_classes, **layer_kw)

    def _features(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        context8, context16 = self.context_path(images)
        fused = self.ffm(self.spatial_path(images), context8)
        return fused, context8, context16

    def forward(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, K, H, W] logits."""
        fused, _, _ = self._features(images)
        return upsample_to(self.decode_head(fused), images.shape[-2:])

    def forward_train(self, images: Tensor) -> TrainOutput:
        """Logits [B, K, H, W] plus auxiliary logits ``aux_8`` [B, K, H/8, W/8] and ``aux_16`` [B, K, H/16, W/16]."""
        fused, context8, context16 = self._features(images)
        logits = upsample_to(self.decode_head(fused), images.shape[-2:])
        return TrainOutput(logits, {"aux_8": self.aux_head8(context8), "aux_16": self.aux_head16(context16)})

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """``loss_aux_8``, ``loss_aux_16``: weighted CE of each auxiliary head against masks [B, H, W]."""
        return aux_cross_entropy(aux, masks, weight=self.aux_weight, ignore_index=self.ignore_index)

    def sbcb_sides(self) -> list[FeatureInfo]:
        """Spatial path at 1/2, 1/4, 1/8 (binary), then the FFM output or the encoder's last stage (semantic)."""
        semantic = (
            "ffm" if self.sbcb_semantic_side == "aggregation" else f"context_path.encoder.{self.encoder_last_stage}"
        )
        names = ["spatial_path.layer1", "spatial_path.layer2", "spatial_path.layer4", semantic]
        return [FeatureInfo(0, 0, name) for name in names]


def _timm_encoder(name: str) -> tuple[nn.Module, list[int], str]:
    """A timm ``features_only`` encoder giving the 1/8, 1/16, 1/32 maps, their channels, its last stage's name."""
    try:
        import timm
    except ImportError as e:
        raise ImportError('BiSeNetV1 builds its ResNet with timm: pip install "sbcb[timm]"') from e
    # out_indices 2, 3, 4 of a timm ResNet = layer2, layer3, layer4 (strides 8, 16, 32); no weights are loaded
    # zero_init_last=False: residual branches start live, as in torchvision's and mmseg's ResNets (timm zeroes the
    # last BN of each block, which leaves the branch convs without gradient at step 0 from a random init)
    encoder = timm.create_model(name, pretrained=False, features_only=True, out_indices=(2, 3, 4), zero_init_last=False)
    reductions = encoder.feature_info.reduction()
    if list(reductions) != [8, 16, 32]:
        raise ValueError(f"BiSeNetV1 needs an encoder with stages at strides 8, 16, 32; {name} has {reductions}")
    return encoder, list(encoder.feature_info.channels()), encoder.feature_info.module_name()[-1]


@register_model("bisenetv1")
def bisenetv1(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    sbcb_semantic_side: str = "aggregation",
    aux_weight: float = 1.0,
) -> BiSeNetV1:
    """BiSeNetV1 with a timm ResNet context path (random init; ``encoder=None`` = ``"resnet18"``).

    Args:
        num_classes: K.
        encoder: A timm ResNet name (``resnet18``, ``resnet50``, ...; SBCB Table 16 uses ``resnet50``).
        output_stride: None or 32 (BiSeNet is a d32 model).
        sbcb_semantic_side: See `BiSeNetV1`.
        aux_weight: Weight of each auxiliary loss.
    """
    check_fixed_options("BiSeNetV1", output_stride=output_stride, own_backbone=False)
    backbone, channels, last_stage = _timm_encoder(encoder or "resnet18")
    return BiSeNetV1(
        backbone,
        channels,
        num_classes=num_classes,
        aux_weight=aux_weight,
        sbcb_semantic_side=sbcb_semantic_side,
        encoder_last_stage=last_stage,
    )


__all__ = [
    "SEMANTIC_SIDES",
    "AttentionRefinement",
    "BiSeNetV1",
    "ContextPath",
    "FeatureFusion",
    "SpatialPath",
    "bisenetv1",
]
