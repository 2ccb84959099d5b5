"""Side layers shared by the SBD heads (spec §3.2, §3.5, §3.8).

A side layer maps one backbone feature ``[B, C_in, h, w]`` to logits ``[B, C_out, H, W]`` at a requested output
size. ``C_out`` is 1 for a binary side and K for the semantic side.

- `SideLayer`: the SBCB side layer (paper Fig. 2 "ours", official ``SideConv``): 1x1 conv (no bias) + BN + ReLU at
  the feature's resolution, bilinear resize, reflection-pad + full 3x3 conv.
- `OriginalSideLayer`: the CASENet/DFF side layer: 1x1 conv (+ optional BN), transposed conv upsampling by the
  feature's stride.
- `SideBlock`: the DDS side block: two ResNet BasicBlocks at ``C_in`` channels, then a side layer.

Every layer works at any output size; `side_layer_output` resizes whatever a layer produces to the requested size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sbcb.layers import LayerFactory, create_act_layer, get_norm_layer

SIDE_LAYERS = ("sbcb", "original")
INITS = ("kaiming", "normal")


def init_weights(module: nn.Module, *, init: str = "kaiming") -> None:
    """Initialise every conv and BN under `module` in place (spec §3.8).

    Args:
        module: Any module; all ``Conv2d`` / ``ConvTranspose2d`` / ``BatchNorm2d`` inside it are reset.
        init: ``"kaiming"`` (default): Kaiming-normal, ``mode="fan_out"``, ReLU gain, bias 0, the construction-time
            init of mmcv's ConvModule that the official code inherits. ``"normal"``: N(0, 0.01²), bias 0.

    Raises:
        ValueError: If `init` is not one of ``"kaiming"``, ``"normal"``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if init == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_output_size(output_size: tuple[int, int]) -> tuple[int, int]:
    """Validate an output size ``(H, W)`` in pixels and return it as a tuple of two ints.

    Raises:
        ValueError: If it is not two integers >= 2 (the reflection pad of the 3x3 conv needs at least 2 pixels).
    """
    try:
        h, w = (int(s) for s in output_size)
    except (TypeError, ValueError):
        raise ValueError(f"output_size must be (H, W), two ints, got {output_size!r}") from None
    if h < 2 or w < 2:
        raise ValueError(f"output_size must be at least (2, 2) pixels, got {(h, w)}")
    return h, w


class SideLayer(nn.Module):
    """SBCB side layer: 1x1 conv + BN + ReLU, bilinear resize, reflect-pad 3x3 conv (spec §3.2).

    Parameters: ``C_in*C_out + 2*C_out + 9*C_out**2`` (``+ C_out`` with `bias`).

    Args:
        in_channels: C_in of the side feature.
        out_channels: C_out: 1 for a binary side, K for the semantic side.
        bias: Bias on the final 3x3 conv (the 1x1 conv never has one: BN follows it).
        norm_layer: Norm after the 1x1 conv, a name or a class called as ``norm_layer(C_out)`` (default BN).
        act_layer: Activation after it, a name or a class (default ReLU).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bias: bool = False,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = get_norm_layer(norm_layer)(out_channels)
        self.act = create_act_layer(act_layer)
        self.pad = nn.ReflectionPad2d(1)
        # A full C_out -> C_out conv (it mixes classes), not a depthwise one: matches the official parameter count.
        self.conv = nn.Conv2d(out_channels, out_channels, 3, bias=bias)

    def resized(self, x: Tensor, output_size: tuple[int, int]) -> Tensor:
        """The part before the 3x3 conv: ``[B, C_in, h, w]`` to ``[B, C_out, H, W]`` (1x1 + BN + ReLU, resize)."""
        # 1x1 first, at the feature's own resolution: only C_out channels are upsampled.
        x = self.act(self.norm(self.reduce(x)))
        if x.device.type == "cpu":
            # oneDNN's full-resolution 3x3 conv on few channels runs faster on NHWC; converting the small tensor
            # before the resize makes the resize write NHWC directly (benchmarks/wrapper_overhead.py).
            x = x.contiguous(memory_format=torch.channels_last)
        if tuple(x.shape[-2:]) != tuple(output_size):
            x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: Tensor, output_size: tuple[int, int]) -> Tensor:
        """Map ``[B, C_in, h, w]`` to logits ``[B, C_out, H, W]`` with ``(H, W) = output_size``."""
        return self.conv(self.pad(self.resized(x, output_size)))


class OriginalSideLayer(nn.Module):
    """Original CASENet/DFF side layer: 1x1 conv [+ BN], transposed conv x`stride` (spec §3.2, P Fig. 2).

    The transposed conv has kernel ``2*stride``, stride `stride`, padding ``stride/2`` and no bias, so a feature of
    ``h x w`` becomes ``stride*h x stride*w``. If that is not the requested output size it is cropped (top-left,
    like CASENet's crop layer) when it exceeds it by less than one stride, and bilinearly resized otherwise (e.g.
    when the caller asks for a reduced output size).

    Args:
        in_channels: C_in of the side feature.
        out_channels: C_out: 1 or K.
        stride: The feature's reduction relative to the network input: 1 (no upsampling) or an even integer.
        bias: Bias on the 1x1 conv.
        norm: BN after the 1x1 conv (P Fig. 2 draws it; blette's original-CASENet variant has none).
        norm_layer: That norm, a name or a class called as ``norm_layer(C_out)`` (default BN).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        bias: bool = False,
        norm: bool = True,
        norm_layer: str | LayerFactory = "batchnorm",
    ) -> None:
        super().__init__()
        if int(stride) != stride or stride < 1 or (stride > 1 and stride % 2):
            raise ValueError(
                f"the original side layer needs a feature stride of 1 or an even integer, got {stride}; "
                "use side_layer='sbcb' for other strides"
            )
        self.stride = int(stride)
        self.reduce = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.norm = get_norm_layer(norm_layer)(out_channels) if norm else nn.Identity()
        self.upsample: nn.Module
        if self.stride == 1:
            self.upsample = nn.Identity()
        else:
            s = self.stride
            self.upsample = nn.ConvTranspose2d(out_channels, out_channels, 2 * s, stride=s, padding=s // 2, bias=False)

    def forward(self, x: Tensor, output_size: tuple[int, int]) -> Tensor:
        """Map ``[B, C_in, h, w]`` to logits ``[B, C_out, H, W]`` with ``(H, W) = output_size``."""
        x = self.upsample(self.norm(self.reduce(x)))
        h, w = x.shape[-2:]
        oh, ow = output_size
        if (h, w) == (oh, ow):
            return x
        if oh <= h < oh + self.stride and ow <= w < ow + self.stride:
            return x[..., :oh, :ow]
        return F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """ResNet BasicBlock at constant width: 3x3 conv + BN + ReLU, 3x3 conv + BN, identity add, ReLU.

    Parameters: ``18*C**2 + 4*C``.

    Args:
        channels: C, input = output channels.
        norm_layer: Norm after each conv, a name or a class called as ``norm_layer(C)`` (default BN).
        act_layer: Activation, a name or a class (default ReLU).
    """

    def __init__(
        self, channels: int, *, norm_layer: str | LayerFactory = "batchnorm", act_layer: str | LayerFactory = "relu"
    ) -> None:
        super().__init__()
        norm = get_norm_layer(norm_layer)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm(channels)
        self.act = create_act_layer(act_layer)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, h, w]`` -> ``[B, C, h, w]``."""
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + x)


class SideBlock(nn.Module):
    """DDS side block: two BasicBlocks at the feature's channels, then a side layer (spec §3.5).

    Args:
        side: The side layer applied after the blocks (`SideLayer` or `OriginalSideLayer`).
        in_channels: C_in of the side feature (the blocks' width).
        norm_layer, act_layer: Of the blocks, as in `BasicBlock`.
    """

    def __init__(
        self,
        side: nn.Module,
        in_channels: int,
        *,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        layers = {"norm_layer": norm_layer, "act_layer": act_layer}
        self.blocks = nn.Sequential(BasicBlock(in_channels, **layers), BasicBlock(in_channels, **layers))
        self.side = side

    def forward(self, x: Tensor, output_size: tuple[int, int]) -> Tensor:
        """Map ``[B, C_in, h, w]`` to logits ``[B, C_out, H, W]``."""
        return self.side(self.blocks(x), output_size)


def binary_sides(
    sides: nn.ModuleList | Sequence[nn.Module], features: Sequence[Tensor], output_size: tuple[int, int]
) -> Tensor:
    """Logits of the binary sides 1..N-1 stacked along channels: ``[B, N-1, H, W]``.

    Same values as ``torch.cat([side(f, output_size) ...], dim=1)``. When every side is a 1-channel `SideLayer`,
    their 3x3 convs run as one grouped conv over the stacked resized maps: one full-resolution conv call (and one
    backward) instead of N-1, which the stack for the fuse needs anyway.

    Args:
        sides: The N-1 binary side layers (``C_out = 1``).
        features: Their features, ``[B, C_i, h_i, w_i]``.
        output_size: ``(H, W)`` in pixels.
    """
    plain = [s for s in sides if type(s) is SideLayer and s.conv.out_channels == 1]
    if len(plain) != len(sides):
        return torch.cat([side(f, output_size) for side, f in zip(sides, features)], dim=1)
    x = torch.cat([side.resized(f, output_size) for side, f in zip(plain, features)], dim=1)
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)  # as in SideLayer.resized
    weight = torch.cat([side.conv.weight for side in plain])  # [N-1, 1, 3, 3]
    biases = [side.conv.bias for side in plain]
    bias = None if any(b is None for b in biases) else torch.cat([b for b in biases if b is not None])
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, bias, groups=len(plain))


def make_side_layer(
    in_channels: int,
    out_channels: int,
    *,
    side_layer: str,
    bias: bool,
    stride: int | None = None,
    original_norm: bool = True,
    norm_layer: str | LayerFactory = "batchnorm",
    act_layer: str | LayerFactory = "relu",
) -> nn.Module:
    """Build one side layer of the requested kind.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        side_layer: ``"sbcb"`` (`SideLayer`) or ``"original"`` (`OriginalSideLayer`).
        bias: For ``"sbcb"`` the bias of the 3x3 conv; for ``"original"`` the bias of the 1x1 conv.
        stride: Feature stride, required for ``"original"``.
        original_norm: BN in the original side layer.
        norm_layer, act_layer: Norm and activation layers (a name or a class; the original side layer has no
            activation).
    """
    if side_layer == "sbcb":
        return SideLayer(in_channels, out_channels, bias=bias, norm_layer=norm_layer, act_layer=act_layer)
    if side_layer == "original":
        if stride is None:
            raise ValueError("side_layer='original' needs the sides' strides: pass strides=[...] (one per side)")
        return OriginalSideLayer(
            in_channels, out_channels, stride=stride, bias=bias, norm=original_norm, norm_layer=norm_layer
        )
    raise ValueError(f"side_layer must be one of {SIDE_LAYERS}, got {side_layer!r}")


def make_side_layers(
    in_channels: Sequence[int],
    num_classes: int,
    *,
    side_layer: str,
    side_bias: bool,
    last_bias: bool,
    strides: Sequence[int] | None,
    original_norm: bool,
    norm_layer: str | LayerFactory = "batchnorm",
    act_layer: str | LayerFactory = "relu",
) -> list[nn.Module]:
    """One side layer per side: sides 1..N-1 binary (1 channel), side N semantic (K channels).

    Args:
        in_channels: C_i of each side, side 1 first.
        num_classes: K, the semantic side's output channels.
        side_layer, strides, original_norm, norm_layer, act_layer: As in `make_side_layer`.
        side_bias: Bias of the binary sides' final conv.
        last_bias: Bias of the semantic side's final conv.
    """
    n = len(in_channels)
    return [
        make_side_layer(
            c,
            num_classes if i == n - 1 else 1,
            side_layer=side_layer,
            bias=last_bias if i == n - 1 else side_bias,
            stride=None if strides is None else strides[i],
            original_norm=original_norm,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        for i, c in enumerate(in_channels)
    ]


def fuse_sliced(semantic: Tensor, binary: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """CASENet fuse: the grouped 1x1 conv over the sliced concatenation, without building the concat (spec §3.3).

    With channel ``k*N + 0`` = ``S_k`` and ``k*N + j`` = ``s_j``, the grouped conv gives
    ``fuse_k = w[k, 0] * S_k + sum_j w[k, j] * s_j (+ b_k)``: a per-class scale of S plus a K x (N-1) mixing of the
    binary sides. The ``[B, K*N, H, W]`` concat is never materialised.

    Args:
        semantic: S, ``[B, K, H, W]`` logits.
        binary: The binary sides stacked, ``[B, N-1, H, W]`` logits.
        weight: Grouped-conv weight ``[K, N, 1, 1]``.
        bias: ``[K]`` or None.

    Returns:
        ``[B, K, H, W]`` fused logits.
    """
    k = weight.shape[0]
    nhwc = torch.channels_last
    if semantic.is_contiguous(memory_format=nhwc) and binary.is_contiguous(memory_format=nhwc) and k > 1:
        # Both NHWC (the CPU side layers' layout): per pixel a [K] scale of S plus a [K, N-1] mixing, as two GEMM-
        # shaped ops on [B*H*W, C] views. Nothing is copied and the output stays NHWC, so the loss and every
        # backward op run on one layout (mixed NCHW/NHWC elementwise ops were the slowest part of the old fuse).
        bsz, _, h, w = semantic.shape
        rows = binary.permute(0, 2, 3, 1).reshape(-1, binary.shape[1])  # [P, N-1], a view
        mix = weight[:, 1:, 0, 0].t().to(rows.dtype)  # [N-1, K]
        mixed = rows @ mix if bias is None else torch.addmm(bias.to(rows.dtype), rows, mix)
        sem = semantic.permute(0, 2, 3, 1).reshape(-1, k).to(mixed.dtype)  # [P, K], a view
        fused = mixed + sem * weight[:, 0, 0, 0].to(mixed.dtype)
        return fused.view(bsz, h, w, k).permute(0, 3, 1, 2)
    # A matmul over the N-1 channels (CPU: faster than the 1x1 conv, which has no oneDNN path for 1x1 at small batch)
    mixed = torch.einsum("bjhw,kj->bkhw", binary, weight[:, 1:, 0, 0].to(binary.dtype))  # [B, K, H, W]
    if bias is not None:
        mixed = mixed + bias.view(1, k, 1, 1).to(mixed.dtype)
    # Follow the mixing's dtype (fp16/bf16 under autocast), as the grouped conv itself would. A plain mul + add
    # (not addcmul) keeps the backward to one product per input.
    scale = weight[:, 0].view(1, k, 1, 1).to(mixed.dtype)
    return mixed + semantic.to(mixed.dtype) * scale
