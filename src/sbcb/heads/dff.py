"""Generalized DFF head: CASENet sides + an adaptive weight learner, for any N >= 2 (spec §3.4, §3.6)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sbcb.heads.base import SBDHead
from sbcb.heads.side_layers import binary_sides, init_weights, make_side_layer
from sbcb.layers import LayerFactory, create_act_layer, get_norm_layer


class AdaptiveWeightLearner(nn.Module):
    """DFF's adaptive weight learner on the weight-branch logits (spec §3.4).

    ``[ReLU] -> (1x1 conv + BN + ReLU) x 2 -> 1x1 conv + BN -> [Sigmoid]``, all at N*K channels, convs without bias.

    Args:
        channels: N*K.
        pre_relu: Leading ReLU (official addition, not in the original DFF).
        sigmoid: Trailing sigmoid (P Fig. 3; absent in the original DFF code and in blette's variant).
        norm_layer: Norm after each conv, a name or a class called as ``norm_layer(channels)`` (default BN).
        act_layer: Activation between them, a name or a class (default ReLU).
    """

    def __init__(
        self,
        channels: int,
        *,
        pre_relu: bool = True,
        sigmoid: bool = True,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory = "relu",
    ) -> None:
        super().__init__()
        self.pre_relu = pre_relu
        self.sigmoid = sigmoid
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(channels, channels, 1, bias=False), get_norm_layer(norm_layer)(channels)]
            if i < 2:
                layers.append(create_act_layer(act_layer, inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, N*K, H, W]`` -> per-pixel weights ``[B, N*K, H, W]`` (in (0, 1) with the sigmoid)."""
        if self.pre_relu:
            x = torch.relu(x)
        x = self.layers(x)
        return torch.sigmoid(x) if self.sigmoid else x


class DFFHead(SBDHead):
    """DFF SBD head: CASENet sides, fused with per-pixel, per-class adaptive weights.

    A weight branch (a side layer C_N -> N*K with a bias, on the semantic-side feature) feeds the adaptive weight
    learner; its output, viewed as ``[B, K, N, H, W]``, weights the sliced channels ``[S_k, s_1, ..., s_{N-1}]``:
    ``fuse_k = w_k0 * S_k + sum_j w_kj * s_j``. The official code is hard-wired to N = 4 (4*K weights); this head
    uses N*K, identical at N = 4. Outputs are at any requested `output_size` (see `CASENetHead`).

    Parameters (ResNet-101 sides [64, 256, 512, 2048], K = 19): 268,730.

    Args:
        in_channels: Channels of the N sides, the last being the semantic side.
        num_classes: K.
        side_bias: Bias on the binary sides' final conv (official: on; blette's variant: off).
        last_bias: Bias on the semantic side's final conv.
        awl_pre_relu: Leading ReLU of the weight learner (official: on).
        awl_sigmoid: Trailing sigmoid of the weight learner (official: on; blette's variant: off).
        side_layer, strides, original_norm, norm_layer, act_layer, init: As in `SBDHead`.
    """

    name = "dff"

    @property
    def loss_plan(self) -> dict[str, str]:
        """Which loss each output gets (`sbcb.losses.sbd_loss_terms`): the multi-label loss on fuse and last."""
        return {"fuse": "multilabel", "last": "multilabel"}

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        side_layer: str = "sbcb",
        strides: Sequence[int] | None = None,
        side_bias: bool = True,
        last_bias: bool = True,
        awl_pre_relu: bool = True,
        awl_sigmoid: bool = True,
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
            flags={"awl_pre_relu": awl_pre_relu, "awl_sigmoid": awl_sigmoid},
        )
        n, k = len(self.in_channels), self.num_classes
        self.sides = nn.ModuleList(self.make_side_layers())
        self.weight_branch = make_side_layer(
            self.in_channels[-1],
            n * k,
            side_layer=side_layer,
            bias=True,
            stride=None if self.strides is None else self.strides[-1],
            original_norm=original_norm,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        self.awl = AdaptiveWeightLearner(
            n * k, pre_relu=awl_pre_relu, sigmoid=awl_sigmoid, norm_layer=norm_layer, act_layer=act_layer
        )
        init_weights(self, init=init)

    def forward(self, features: list[Tensor], output_size: tuple[int, int]) -> dict[str, Tensor]:
        """Compute the adaptively fused and semantic-side logits (arguments as in `SBDHead.check_inputs`).

        Returns:
            ``{"fuse": [B, K, H, W], "last": [B, K, H, W]}`` logits.
        """
        size = self.check_inputs(features, output_size)
        n, k = len(self.in_channels), self.num_classes
        binary = binary_sides(self.sides[:-1], features[:-1], size)  # [B,N-1,H,W]
        last = self.sides[-1](features[-1], size)  # [B, K, H, W]
        # The weight learner runs NCHW: torch's CPU channels-last BatchNorm backward sums in plain fp32, and the
        # gradient reaching these BNs is nearly constant over pixels, so in NHWC their weight gradients were up to
        # ~1e-3 (relative) off float64 with one thread; NCHW matches the float64 reference to ~1e-6.
        weights = self.awl(self.weight_branch(features[-1], size).contiguous())
        weights = weights.reshape(weights.shape[0], k, n, *size)  # channel k*N + j -> [:, k, j]
        fuse = weights[:, :, 0] * last + torch.einsum("bkjhw,bjhw->bkhw", weights[:, :, 1:], binary)
        return {"fuse": fuse, "last": last}
