"""Generalized DDS head: side blocks on every side, deep supervision, sliced-concatenation fuse (spec §3.5, §3.6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sbcb.heads.base import SBDHead
from sbcb.heads.side_layers import SideBlock, fuse_sliced, init_weights
from sbcb.layers import LayerFactory


class DDSHead(SBDHead):
    """DDS SBD head: a side block (two BasicBlocks at C_i, then a side layer) on each of the N sides.

    Sides 1..N-1 output 1 channel and are deep-supervised with the binary loss; side N outputs K channels. The fuse
    is CASENet's grouped 1x1 conv (K groups of N) with a bias, computed without building the concat. Outputs are
    at any requested `output_size` (see `CASENetHead`); the BasicBlocks run at the features' own resolution, so a
    reduced output size saves only the side layers' cost.

    Parameters (ResNet-101 sides [64, 256, 512, 1024, 2048], K = 19): 200,763,084, almost all in the 2048-channel
    blocks. Build it on ``torch.device("meta")`` to inspect it without allocating.

    Args:
        in_channels: Channels of the N sides, the last being the semantic side (ResNet: all five levels).
        num_classes: K.
        side_bias: Bias on the binary side layers' final conv (official: on).
        last_bias: Bias on the semantic side layer's final conv (official: on).
        fuse_bias: Bias on the fuse conv (official: on).
        side_layer, strides, original_norm, norm_layer, act_layer, init: As in `SBDHead`.
    """

    name = "dds"

    @property
    def loss_plan(self) -> dict[str, str]:
        """Which loss each output gets (`sbcb.losses.sbd_loss_terms`): multi-label on fuse and the semantic side N,
        the binary loss on the GT union for sides 1..N-1."""
        n = len(self.in_channels)
        return {"fuse": "multilabel", **{f"side{i}": "binary" for i in range(1, n)}, f"side{n}": "multilabel"}

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        side_layer: str = "sbcb",
        strides: Sequence[int] | None = None,
        side_bias: bool = True,
        last_bias: bool = True,
        fuse_bias: bool = True,
        original_norm: bool = True,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
        init: str = "kaiming",
    ) -> None:
        super().__init__(
            in_channels,
            num_classes,
            side_layer=side_layer,
            strides=strides,
            side_bias=side_bias,
            last_bias=last_bias,
            original_norm=original_norm,
            norm_layer=norm_layer,
            act_layer=act_layer,
            init=init,
            flags={"fuse_bias": fuse_bias},
        )
        n, k = len(self.in_channels), self.num_classes
        # Every side layer is built before the blocks (the order of the init's random draws).
        side_layers = self.make_side_layers()
        self.sides = nn.ModuleList(
            SideBlock(layer, c, norm_layer=norm_layer, act_layer=act_layer)
            for layer, c in zip(side_layers, self.in_channels)
        )
        self.fuse = nn.Conv2d(k * n, k, 1, groups=k, bias=fuse_bias)
        init_weights(self, init=init)

    def forward(self, features: list[Tensor], output_size: tuple[int, int]) -> dict[str, Tensor]:
        """Compute every side's logits and the fused logits (arguments as in `SBDHead.check_inputs`).

        Returns:
            ``{"side1": [B, 1, H, W], ..., "side{N-1}": [B, 1, H, W], "side{N}": [B, K, H, W],
            "fuse": [B, K, H, W]}`` logits.
        """
        size = self.check_inputs(features, output_size)
        outputs = {f"side{i + 1}": side(f, size) for i, (side, f) in enumerate(zip(self.sides, features))}
        n = len(self.in_channels)
        binary = torch.cat([outputs[f"side{i}"] for i in range(1, n)], dim=1)
        outputs["fuse"] = fuse_sliced(outputs[f"side{n}"], binary, self.fuse.weight, self.fuse.bias)
        return outputs
