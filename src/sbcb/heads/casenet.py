"""Generalized CASENet head for any number of sides N >= 2 (spec §3.3, §3.6); BBCB is this head with K = 1 (§3.7)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from sbcb.heads.base import SBDHead
from sbcb.heads.side_layers import binary_sides, fuse_sliced, init_weights
from sbcb.layers import LayerFactory


class CASENetHead(SBDHead):
    """CASENet SBD head: binary sides 1..N-1, semantic side N, sliced-concatenation fuse.

    Sides 1..N-1 map their feature to 1 channel, side N to K channels (S). The fuse is the grouped 1x1 conv with K
    groups of N over the sliced concatenation ``[S_k, s_1, ..., s_{N-1}]``, computed without building the
    ``[B, K*N, H, W]`` concat (mathematically identical). Every bias is off by default, as in the official code.

    Outputs are logits at whatever `output_size` the caller asks for: the network input size, or a reduced size
    (e.g. half) to save the full-resolution 3x3 convs, in which case the GT must be resized to match
    (`sbcb.losses.resize_boundaries` does it inside `sbcb.losses.sbd_loss_terms`).

    Parameters (ResNet-101 sides [64, 256, 512, 2048], K = 19): 43,140. With K = 1 (BBCB): 2,928.

    Args:
        in_channels: Channels of the N sides in order, the last being the semantic side; take them from the
            backbone's feature info.
        num_classes: K (1 for BBCB).
        side_bias: Bias on the binary sides' final conv.
        last_bias: Bias on the semantic side's final conv (blette's later choice, with `fuse_bias`).
        fuse_bias: Bias on the fuse conv.
        side_layer, strides, original_norm, norm_layer, act_layer, init: As in `SBDHead`.

    Example:
        >>> head = CASENetHead([64, 256, 512, 2048], 19)
        >>> out = head(features, output_size=(512, 1024))  # {"fuse": [B,19,512,1024], "last": [B,19,512,1024]}
    """

    name = "casenet"

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
        side_bias: bool = False,
        last_bias: bool = False,
        fuse_bias: bool = False,
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
        self.sides = nn.ModuleList(self.make_side_layers())
        # Kept as a real grouped conv so the state dict matches the official layer; forward never builds its input.
        self.fuse = nn.Conv2d(k * n, k, 1, groups=k, bias=fuse_bias)
        init_weights(self, init=init)

    def forward(self, features: list[Tensor], output_size: tuple[int, int]) -> dict[str, Tensor]:
        """Compute the fused and semantic-side logits (arguments as in `SBDHead.check_inputs`).

        Returns:
            ``{"fuse": [B, K, H, W], "last": [B, K, H, W]}`` logits.
        """
        size = self.check_inputs(features, output_size)
        binary = binary_sides(self.sides[:-1], features[:-1], size)
        last = self.sides[-1](features[-1], size)
        fuse = fuse_sliced(last, binary, self.fuse.weight, self.fuse.bias)
        return {"fuse": fuse, "last": last}
