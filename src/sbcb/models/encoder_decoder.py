"""Encoder + decode head segmentors on a timm features-only backbone (the paper's Tab. 11/12 models).

The encoder is a timm ``features_only`` network built with ``pretrained=False``: dilated ResNets (``output_stride=8``,
the "d8" setting of the paper), HRNet (raw branches via ``feature_location=''``), DenseNet (dilated here, timm has no
``output_stride`` for it), ResNeSt, MobileNetV2, ... Channels and strides come from its ``feature_info``.

`EncoderDecoder` runs the encoder once, feeds the chosen levels to a decode head, and upsamples the logits to the
input size (bilinear, ``align_corners=False``, as mmseg). An optional auxiliary head (mmseg's FCN on the penultimate
level, CE weight 0.4) runs only in `forward_train`; with ``cascade=True`` (OCR) the auxiliary head's logits are an
input of the decode head (OCR's soft object regions), so it also runs at inference, while its loss stays auxiliary.

The segmentor declares the paper's SBD sides (`sbcb_sides`: ResNet-like five-level backbones levels 1, 2, 3, 5;
HRNet the stem and stages 2-4 resize-concatenated, spec §5.4), so ``SBCB(model, num_classes=K)`` needs no ``sides=``.

The model factories built on this module (``ann``, ``ccnet``, ``denseaspp``, ``dnlnet``, ``gcnet``, ``ocr``) share
these keyword arguments, documented here once:

- ``num_classes``: K.
- ``encoder``: timm model name; None = the model's paper setting (named in its docstring).
- ``output_stride``: encoder output stride; None = 8 (the paper's d8), or HRNet's own 1/4 branch.
- ``channels``: width of the decode head (mmseg: 512).
- ``dropout``: Dropout2d before the classifier (mmseg: 0.1).
- ``aux_head``: add mmseg's FCN auxiliary head on the penultimate level (off in the paper's SBCB recipes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.contract import TrainOutput
from sbcb.features import FeatureInfo
from sbcb.layers import ConvNormAct

# -- encoder ---------------------------------------------------------------------------------------------------------


def timm_encoder(name: str, *, output_stride: int | None = 8) -> nn.Module:
    """A timm ``features_only`` encoder with ``pretrained=False`` (nothing is downloaded).

    Args:
        name: timm model name (``resnet101``, ``hrnet_w48``, ``densenet169``, ``resnest101e``, ``mobilenetv2_100``).
        output_stride: 8 or 16 dilates the last stages (mmseg's "d8"); None keeps the model's own strides. HRNet has
            no output stride (its decode input is at 1/4) and must get None.

    Returns:
        A module mapping [B, 3, H, W] to a list of NCHW features with ``feature_info.channels()`` /
        ``feature_info.reduction()``.
    """
    try:
        import timm
        from timm.models import is_model_in_modules
    except ImportError as e:
        raise ImportError('sbcb\'s encoder-decoder models need the timm extra: pip install "sbcb[timm]"') from e
    if is_model_in_modules(name, ["hrnet"]):
        if output_stride is not None:
            raise ValueError(f"HRNet ({name}) keeps its 1/4 high-resolution branch; pass output_stride=None")
        # raw branch outputs (W18: 64, 18, 36, 72, 144), not the classification "incre" features
        return timm.create_model(name, pretrained=False, features_only=True, feature_location="")
    if is_model_in_modules(name, ["densenet"]):
        encoder = timm.create_model(name, pretrained=False, features_only=True)
        if output_stride is not None:
            dilate_densenet(encoder, output_stride)
        return encoder
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    return timm.create_model(name, pretrained=False, features_only=True, **kwargs)


def dilate_densenet(encoder: nn.Module, output_stride: int) -> None:
    """Dilate a timm DenseNet ``features_only`` encoder in place to `output_stride` (DenseASPP, Yang et al. 2018).

    Transitions that would go below `output_stride` lose their 2x2 average pool and the dense blocks after them get
    dilated 3x3 convolutions (2, then 4, ...), as in the DenseASPP paper; no parameter changes, so ImageNet weights
    still load. ``feature_info`` reductions are updated to match.
    """
    from timm.models.densenet import DenseBlock, DenseTransition

    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    stride, dilation = 1, 1
    for child in encoder.children():
        if isinstance(child, DenseTransition):
            if stride * 2 > output_stride:
                child.pool = nn.Identity()  # keep the resolution, widen the receptive field instead
                dilation *= 2
            else:
                stride *= 2
        elif isinstance(child, DenseBlock):
            for conv in child.modules():
                if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                    conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
        else:
            for m in child.modules():
                s = getattr(m, "stride", 1)
                stride *= s[0] if isinstance(s, tuple) else s
    for info in encoder.feature_info.info:
        info["reduction"] = min(info["reduction"], output_stride)


def encoder_channels(encoder: nn.Module) -> list[int]:
    """Channels of each encoder level, from its ``feature_info``."""
    return [int(c) for c in encoder.feature_info.channels()]


# -- heads shared by several models ----------------------------------------------------------------------------------


class FCNHead(nn.Module):
    """mmseg's FCNHead: ``num_convs`` convs, an optional context block after the first, optional input concat.

    - Auxiliary head (mmseg default): channels 256, one 3x3 conv, no concat, dropout 0.1.
    - FCN decode head (``fcn_r101-d8``): channels 512, two 3x3 convs, concat input, dropout 0.1.
    - CCNet / GCNet / DNLNet: the FCN decode head with their attention block after the first conv.

    Shape: [B, C_in, h, w] -> [B, K, h, w] logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int = 256,
        num_convs: int = 1,
        kernel_size: int = 3,
        concat_input: bool = False,
        dropout: float = 0.1,
        context_block: nn.Module | None = None,
        norm_layer: str = "batchnorm",
        act_layer: str = "relu",
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        opts = {"norm_layer": norm_layer, "act_layer": act_layer}
        self.convs = nn.ModuleList(
            [ConvNormAct(in_channels if i == 0 else channels, channels, kernel_size, **opts) for i in range(num_convs)]
        )
        self.context_block = context_block
        self.conv_cat = ConvNormAct(in_channels + channels, channels, kernel_size, **opts) if concat_input else None
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden feature [B, channels, h, w] before dropout and the classifier."""
        y = self.convs[0](x)
        if self.context_block is not None:
            y = self.context_block(y)
        for conv in self.convs[1:]:
            y = conv(y)
        if self.conv_cat is not None:
            y = self.conv_cat(torch.cat([x, y], dim=1))
        return y

    def forward(self, features: list[Tensor]) -> Tensor:
        (x,) = features
        return self.classifier(self.dropout(self.features(x)))


def context_head(
    in_channels: int, num_classes: int, context_block: nn.Module, *, channels: int = 512, dropout: float = 0.1
) -> FCNHead:
    """mmseg's CCHead / GCHead / DNLHead: the FCN decode head (two 3x3 convs to `channels`, input concat) with
    `context_block` ([B, channels, h, w] -> same shape) after the first conv."""
    return FCNHead(
        in_channels,
        num_classes,
        channels=channels,
        num_convs=2,
        concat_input=True,
        dropout=dropout,
        context_block=context_block,
    )


def fcn_aux_head(in_channels: int, num_classes: int) -> FCNHead:
    """mmseg's auxiliary FCN head (on layer3 for ResNets): 3x3 conv to 256 + BN + ReLU, dropout 0.1, 1x1 classifier."""
    return FCNHead(in_channels, num_classes, channels=256, num_convs=1, kernel_size=3, dropout=0.1)


def resize_concat(features: Sequence[Tensor]) -> Tensor:
    """mmseg's ``resize_concat``: every map bilinearly resized to the first one's size, concatenated on channels."""
    size = features[0].shape[-2:]
    resized = [features[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]]
    return torch.cat(resized, dim=1)


# -- segmentor -------------------------------------------------------------------------------------------------------


class EncoderDecoder(nn.Module):
    """Encoder -> decode head -> bilinear upsampling to the input size; optional training-only auxiliary head.

    Args:
        encoder: timm features_only network (see `timm_encoder`).
        decode_head: Module called as ``decode_head(features)`` (or ``decode_head(features, aux_logits)`` with
            `cascade`) with the selected levels as a list, returning [B, K, h, w] logits.
        decode_levels: Encoder levels fed to the decode head (negative = from the deepest).
        concat_levels: Resize the selected levels to the first one's size and concatenate them (HRNet), for both
            the decode and the auxiliary head.
        aux_head: Auxiliary head called as ``aux_head(features)``; None = none.
        aux_levels: Encoder levels fed to the auxiliary head.
        aux_weight: Weight of its CE loss (mmseg: 0.4).
        cascade: The decode head consumes the auxiliary logits (OCR's soft object regions).
        ignore_index: Label ignored by the auxiliary loss.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decode_head: nn.Module,
        *,
        decode_levels: Sequence[int] = (-1,),
        concat_levels: bool = False,
        aux_head: nn.Module | None = None,
        aux_levels: Sequence[int] = (-2,),
        aux_weight: float = 0.4,
        cascade: bool = False,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if cascade and aux_head is None:
            raise ValueError("cascade=True needs the aux_head whose logits the decode head consumes")
        self.encoder = encoder
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.decode_levels = tuple(decode_levels)
        self.aux_levels = tuple(aux_levels)
        self.concat_levels = concat_levels
        self.aux_weight = aux_weight
        self.cascade = cascade
        self.ignore_index = ignore_index

    @classmethod
    def from_inputs(
        cls,
        encoder: nn.Module,
        decode_head: nn.Module,
        inputs: DecodeInputs,
        *,
        aux_head: nn.Module | None = None,
        aux_weight: float = 0.4,
        cascade: bool = False,
    ) -> EncoderDecoder:
        """The segmentor with the level choice of `inputs` (see `decode_inputs`); other arguments as `__init__`."""
        return cls(
            encoder,
            decode_head,
            decode_levels=inputs.levels,
            concat_levels=inputs.concat,
            aux_head=aux_head,
            aux_levels=inputs.aux_levels,
            aux_weight=aux_weight,
            cascade=cascade,
        )

    def _select(self, features: list[Tensor], levels: tuple[int, ...]) -> list[Tensor]:
        chosen = [features[i] for i in levels]
        return [resize_concat(chosen)] if self.concat_levels else chosen

    def _heads(self, images: Tensor, *, with_aux: bool) -> tuple[Tensor, Tensor | None]:
        features = self.encoder(images)
        aux = None
        if self.aux_head is not None and (with_aux or self.cascade):
            aux = self.aux_head(self._select(features, self.aux_levels))
        inputs = self._select(features, self.decode_levels)
        logits = self.decode_head(inputs, aux) if self.cascade else self.decode_head(inputs)
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits, aux

    def forward(self, images: Tensor) -> Tensor:
        """Inference: [B, 3, H, W] -> [B, K, H, W] logits. Runs no auxiliary head unless the decode head needs it."""
        return self._heads(images, with_aux=False)[0]

    def forward_train(self, images: Tensor) -> TrainOutput:
        """The logits of `forward` and ``{"aux": [B, K, h, w]}`` auxiliary logits (empty without an aux head)."""
        logits, aux = self._heads(images, with_aux=True)
        return TrainOutput(logits, {} if aux is None else {"aux": aux})

    def auxiliary_losses(self, aux: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """``{"loss_aux": aux_weight * CE}``, auxiliary logits upsampled to the masks ([B, H, W], 255 = ignore)."""
        if "aux" not in aux:
            return {}
        logits = F.interpolate(aux["aux"], size=masks.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits.float(), masks.long(), ignore_index=self.ignore_index)
        return {"loss_aux": self.aux_weight * loss}

    def sbcb_sides(self) -> list[FeatureInfo]:
        """The paper's SBD sides for this encoder (spec §5.1/5.2/5.4/5.5), highest resolution first."""
        from sbcb.adapters.timm import timm_levels  # imports no timm at module level
        from sbcb.features import default_sides

        return default_sides(timm_levels(self.encoder, prefix="encoder"))


@dataclass(frozen=True)
class DecodeInputs:
    """Which encoder levels feed the heads, and their channels.

    Attributes:
        levels: Levels of the decode head (negative = from the deepest).
        aux_levels: Levels of the auxiliary (FCN) head.
        concat: HRNet: the levels are resized to the highest resolution and concatenated.
        channels: Channels of each decode input as the head receives it (one entry when `concat`).
        aux_channels: Channels of the auxiliary head's input.
    """

    levels: tuple[int, ...]
    aux_levels: tuple[int, ...]
    concat: bool
    channels: list[int]
    aux_channels: int


def decode_inputs(encoder: nn.Module, levels: Sequence[int] = (-1,)) -> DecodeInputs:
    """mmseg's input choice: HRNet feeds all four branches resize-concatenated to both heads (``resize_concat``);
    other encoders feed `levels` to the decode head and the penultimate level (ResNet layer3) to the FCN aux head.
    """
    channels = encoder_channels(encoder)
    if is_hrnet(encoder):
        branches = (-4, -3, -2, -1)
        total = sum(channels[i] for i in branches)
        return DecodeInputs(branches, branches, True, [total], total)
    levels = tuple(levels)
    return DecodeInputs(levels, (-2,), False, [channels[i] for i in levels], channels[-2])


def is_hrnet(encoder: nn.Module) -> bool:
    """True for a timm HRNet encoder (its stages are named; no name sniffing)."""
    return all(hasattr(encoder, a) for a in ("transition1", "stage2", "stage3", "stage4"))


def default_output_stride(encoder: str, output_stride: int | None) -> int | None:
    """The paper's setting: d8 (output stride 8) for every encoder except HRNet (None: its own 1/4 branch)."""
    if output_stride is not None:
        return output_stride
    try:
        from timm.models import is_model_in_modules
    except ImportError as e:
        raise ImportError('sbcb\'s encoder-decoder models need the timm extra: pip install "sbcb[timm]"') from e
    return None if is_model_in_modules(encoder, ["hrnet"]) else 8


def build_encoder(encoder: str, output_stride: int | None) -> nn.Module:
    """`timm_encoder` at the paper's output stride for this encoder (see `default_output_stride`)."""
    return timm_encoder(encoder, output_stride=default_output_stride(encoder, output_stride))


def segmentor(
    encoder: nn.Module,
    decode_head: nn.Module,
    inputs: DecodeInputs,
    *,
    num_classes: int,
    aux_head: bool,
) -> EncoderDecoder:
    """`EncoderDecoder` with `inputs`' level choice and, when `aux_head`, mmseg's FCN auxiliary head."""
    aux = fcn_aux_head(inputs.aux_channels, num_classes) if aux_head else None
    return EncoderDecoder.from_inputs(encoder, decode_head, inputs, aux_head=aux)
