"""What every SBD head shares: its argument checks, the `config` it is rebuilt from, its side layers, input checks.

CASENet, DFF and DDS (one file each) differ only in the layers they add and in how they fuse the sides; the rest
lives here once, in `SBDHead`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from sbcb.heads.side_layers import SIDE_LAYERS, check_output_size, make_side_layers
from sbcb.layers import LayerFactory


class SBDHead(nn.Module):
    """Base of the SBD heads: N sides (the last one semantic) and K classes, checked once and recorded in `config`.

    A head passes its constructor arguments to ``super().__init__``, then builds its layers (the side layers from
    `make_side_layers`, in the order that fixes the state-dict keys and the init's random draws) and ends with
    `sbcb.heads.side_layers.init_weights`. Its forward starts with `check_inputs`.

    Attributes:
        name: The head's registry name (`sbcb.heads.HEADS`), set by each subclass.
        in_channels: C_i of the N sides, side 1 first, as plain ints.
        num_classes: K (1 for BBCB).
        strides: The sides' reductions, or None (only the original side layer needs them).
        config: The keyword arguments that rebuild the head: ``build_head(head.name, **head.config)``.

    Args:
        in_channels: Channels of the N sides in order, the last being the semantic side; take them from the
            backbone's feature info.
        num_classes: K (1 for BBCB).
        side_layer: ``"sbcb"`` (resize + 3x3, the heads' default) or ``"original"`` (transposed conv, needs
            `strides`).
        strides: Reduction of each side relative to the network input; only the original side layer uses them.
        side_bias: Bias on the binary sides' final conv.
        last_bias: Bias on the semantic side's final conv.
        original_norm: BN in the original side layer.
        norm_layer: Norm of the side layers, a name (``"batchnorm"``, the heads' default) or a class called as
            ``norm_layer(channels)``, as in timm.
        act_layer: Activation of the side layers, a name (``"relu"``, the heads' default) or a class.
        init: ``"kaiming"`` (fan_out, the heads' default) or ``"normal"`` (std 0.01), for
            `sbcb.heads.side_layers.init_weights`.
        flags: The head's own on/off options (e.g. ``{"fuse_bias": False}``), recorded in `config` after
            `last_bias`.
    """

    name: ClassVar[str]

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        *,
        side_layer: str,
        strides: Sequence[int] | None,
        side_bias: bool,
        last_bias: bool,
        original_norm: bool,
        norm_layer: str | LayerFactory,
        act_layer: str | LayerFactory,
        init: str,
        flags: Mapping[str, bool],
    ) -> None:
        super().__init__()
        self.in_channels, self.strides = check_head_args(in_channels, num_classes, side_layer, strides)
        self.num_classes = int(num_classes)
        self.config: dict[str, Any] = {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "side_layer": side_layer,
            "strides": self.strides,
            "side_bias": bool(side_bias),
            "last_bias": bool(last_bias),
            **{key: bool(value) for key, value in flags.items()},
            "original_norm": bool(original_norm),
            "norm_layer": norm_layer,
            "act_layer": act_layer,
            "init": init,
        }

    def make_side_layers(self) -> list[nn.Module]:
        """One side layer per side, as `config` asks: sides 1..N-1 binary (1 channel), side N semantic (K)."""
        c = self.config
        return make_side_layers(
            self.in_channels,
            self.num_classes,
            side_layer=c["side_layer"],
            side_bias=c["side_bias"],
            last_bias=c["last_bias"],
            strides=self.strides,
            original_norm=c["original_norm"],
            norm_layer=c["norm_layer"],
            act_layer=c["act_layer"],
        )

    def check_inputs(self, features: list[Tensor], output_size: tuple[int, int]) -> tuple[int, int]:
        """Check the N side features (count and channels) and return `output_size` as two ints ``(H, W)``.

        Args:
            features: N side features, ``[B, C_i, h_i, w_i]``, side 1 first.
            output_size: ``(H, W)`` of the head's outputs in pixels: the network input size, or a reduced one.

        Raises:
            ValueError: If the features do not match the sides, or the output size is not two ints >= 2.
        """
        check_features(features, self.in_channels, type(self).__name__)
        return check_output_size(output_size)


def check_head_args(
    in_channels: Sequence[int], num_classes: int, side_layer: str, strides: Sequence[int] | None
) -> tuple[list[int], list[int] | None]:
    """Validate the arguments every head shares; return them as plain lists of ints.

    Raises:
        ValueError: With a message that says what to pass instead.
    """
    channels = [int(c) for c in in_channels]
    if len(channels) < 2:
        raise ValueError(f"an SBD head needs at least 2 sides (N >= 2), got in_channels={channels}")
    if any(c < 1 for c in channels):
        raise ValueError(f"in_channels must be positive, got {channels}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (1 for a binary BBCB head), got {num_classes!r}")
    if side_layer not in SIDE_LAYERS:
        raise ValueError(f"side_layer must be one of {SIDE_LAYERS}, got {side_layer!r}")
    if strides is None:
        if side_layer == "original":
            raise ValueError("side_layer='original' needs strides=[...], the feature reductions (e.g. [2, 4, 8, 8])")
        return channels, None
    checked = [int(s) for s in strides]
    if len(checked) != len(channels):
        raise ValueError(f"strides needs one entry per side: got {len(checked)} for {len(channels)} sides")
    return channels, checked


def check_features(features: list[Tensor], in_channels: list[int], head: str) -> None:
    """Check that `features` matches the head's sides (count and channels).

    Raises:
        ValueError: If the number of features or a feature's channels differ from `in_channels`.
    """
    if len(features) != len(in_channels):
        raise ValueError(f"{head} was built for {len(in_channels)} sides but got {len(features)} features")
    for i, (f, c) in enumerate(zip(features, in_channels)):
        if f.dim() != 4 or f.shape[1] != c:
            raise ValueError(
                f"{head}: feature {i} (side {i + 1}) must be [B, {c}, h, w], got {list(f.shape)}; "
                "build the head from the backbone's feature_info channels"
            )
