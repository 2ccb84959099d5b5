"""The backbone trick (paper §5.7, Tab. 7; spec §5.3): higher-resolution sides with the same parameters.

Only strides, dilations and paddings of existing convolutions change, so the parameter count and the state_dict are
untouched and pretrained weights still load.

| ResNet variant | stem stride | stage strides | stage dilations | sides (stem, layer1..4) |
|---|---|---|---|---|
| "classification" | 2 | (1, 2, 2, 2) | (1, 1, 1, 1) | 1/2, 1/4, 1/8, 1/16, 1/32 |
| "segmentation" (d8) | 2 | (1, 2, 1, 1) | (1, 1, 2, 4) | 1/2, 1/4, 1/8, 1/8, 1/8 |
| "hed" | 1 | (1, 2, 2, 1) | (2, 2, 2, 4) | 1, 1/2, 1/4, 1/8, 1/8 (max-pool kept) |

Every block of a stage gets the stage's dilation (mmseg's default, no contraction in the first block).

"Mod" ConvNeXt / MiT: the first (patchify) downsampling goes from stride 4 to stride 2, so the four stages sit at
1/2, 1/4, 1/8, 1/16. For MiT this is the paper's Mod-MiT; for ConvNeXt it is this library's proposal (experimental,
the paper gives no configuration).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

RESNET_VARIANTS: dict[str, tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "classification": (2, (1, 2, 2, 2), (1, 1, 1, 1)),
    "segmentation": (2, (1, 2, 1, 1), (1, 1, 2, 4)),
    "hed": (1, (1, 2, 2, 1), (2, 2, 2, 4)),
}


def _find_resnet(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if all(hasattr(module, a) for a in ("conv1", "layer1", "layer2", "layer3", "layer4")):
            return module
    raise ValueError(
        f"no ResNet (a module with conv1 and layer1..layer4) found in {type(model).__name__}; the backbone trick "
        "supports timm and torchvision ResNets (plain or features_only, also inside smp / torchvision models)"
    )


def _first_conv(module: nn.Module) -> nn.Conv2d:
    if isinstance(module, nn.Conv2d):
        return module
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"no Conv2d in {type(module).__name__}")


def _set_block(block: nn.Module, *, stride: int, dilation: int, first: bool) -> None:
    spatial = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
    downsample = getattr(block, "downsample", None)
    if not spatial:
        raise ValueError(f"{type(block).__name__} has no spatial conv to re-stride")
    for i, conv in enumerate(spatial):
        # the first spatial conv of a block carries the stride (torchvision and timm Basic/Bottleneck blocks)
        conv.stride = (stride, stride) if i == 0 else (1, 1)
        conv.dilation = (dilation, dilation)
        conv.padding = (dilation * (conv.kernel_size[0] - 1) // 2, dilation * (conv.kernel_size[1] - 1) // 2)
    if downsample is None:
        if first and stride != 1:
            raise ValueError(f"{type(block).__name__} has no downsample branch, so it cannot get stride {stride}")
        return
    pooled = any(isinstance(m, nn.AvgPool2d) for m in downsample.modules())
    for m in downsample.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1) if pooled else (stride, stride)
        elif isinstance(m, nn.AvgPool2d):  # ResNet-D "avg_down": the pooling carries the stride
            m.kernel_size = stride
            m.stride = stride


def set_resnet_strides(
    model: nn.Module, *, stem_stride: int, strides: Sequence[int], dilations: Sequence[int]
) -> nn.Module:
    """Set the stem stride and the per-stage strides and dilations of the ResNet inside `model`, in place.

    Args:
        model: A timm / torchvision ResNet, or any module containing one (smp encoder, torchvision FCN backbone,
            timm features_only network).
        stem_stride: Stride of the first stem convolution (the max-pool is kept).
        strides: Stride of the first block of layer1..layer4.
        dilations: Dilation of every block of layer1..layer4.

    Returns:
        `model` (modified in place; parameters untouched).
    """
    if len(strides) != 4 or len(dilations) != 4:
        raise ValueError(f"need 4 strides and 4 dilations, got {list(strides)} and {list(dilations)}")
    resnet = _find_resnet(model)
    stem = _first_conv(resnet.conv1)
    stem.stride = (stem_stride, stem_stride)
    for i, (stride, dilation) in enumerate(zip(strides, dilations)):
        for j, block in enumerate(getattr(resnet, f"layer{i + 1}").children()):
            _set_block(block, stride=stride if j == 0 else 1, dilation=dilation, first=j == 0)
    return model


def resnet_variant(model: nn.Module, variant: str) -> nn.Module:
    """Turn the ResNet inside `model` into the "classification", "segmentation" (d8) or "hed" variant, in place.

    Example:
        >>> net = resnet_variant(timm.create_model("resnet50", features_only=True), "hed")
        >>> # sides now at 1, 1/2, 1/4, 1/8, 1/8 of the input
    """
    if variant not in RESNET_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(RESNET_VARIANTS)}, got {variant!r}")
    stem_stride, strides, dilations = RESNET_VARIANTS[variant]
    return set_resnet_strides(model, stem_stride=stem_stride, strides=strides, dilations=dilations)


def mod_first_downsample(model: nn.Module) -> nn.Module:
    """ "Mod" backbone: the first convolution of `model` goes from stride 4 to stride 2, in place.

    The padding becomes (k - 1) // 2 so that an even input size H gives exactly H / 2 (ConvNeXt 4x4: padding 1;
    MiT 7x7: padding 3, unchanged).

    Raises:
        ValueError: the first Conv2d does not have stride 4.
    """
    conv = _first_conv(model)
    if tuple(conv.stride) != (4, 4):
        raise ValueError(
            f"the first convolution of {type(model).__name__} has stride {tuple(conv.stride)}, not 4: this is not a "
            "stride-4 patchify stem (ConvNeXt, MiT), or the trick was applied already"
        )
    conv.stride = (2, 2)
    conv.padding = ((conv.kernel_size[0] - 1) // 2, (conv.kernel_size[1] - 1) // 2)
    return model


def mod_convnext(model: nn.Module) -> nn.Module:
    """Mod ConvNeXt (experimental): 4x4 stride-4 stem -> stride 2, padding 1. Stages at 1/2, 1/4, 1/8, 1/16."""
    conv = _first_conv(model)
    if tuple(conv.kernel_size) != (4, 4):
        raise ValueError(f"expected a ConvNeXt 4x4 patchify stem, found kernel {tuple(conv.kernel_size)}")
    return mod_first_downsample(model)


def mod_mit(model: nn.Module) -> nn.Module:
    """Mod MiT (SegFormer encoder, e.g. smp `mit_b0`): patch-embed strides [2, 2, 2, 2] instead of [4, 2, 2, 2]."""
    conv = _first_conv(model)
    if tuple(conv.kernel_size) != (7, 7):
        raise ValueError(f"expected the MiT 7x7 overlapping patch embedding, found kernel {tuple(conv.kernel_size)}")
    return mod_first_downsample(model)
