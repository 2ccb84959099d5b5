"""Small layers shared by the SBD heads and sbcb's own models, with timm-style `norm_layer` / `act_layer` arguments."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch import nn

LayerFactory = Callable[..., nn.Module]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over `channels` with gcd(32, channels) groups: timm's 32 where the channels allow, else fewer
    (a 1-channel side layer gets 1 group)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


_NORMS: dict[str, LayerFactory] = {"batchnorm": nn.BatchNorm2d, "bn": nn.BatchNorm2d, "groupnorm": group_norm}
_ACTS: dict[str, LayerFactory] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU}


def _lookup(layer: str | LayerFactory, table: dict[str, LayerFactory], what: str) -> LayerFactory:
    """`layer` itself when it is callable, else its entry in `table`; an unknown name is a ValueError."""
    if callable(layer):
        return layer
    if layer not in table:
        raise ValueError(f"unknown {what} {layer!r}; use one of {sorted(table)} or a callable")
    return table[layer]


def get_norm_layer(norm_layer: str | LayerFactory) -> LayerFactory:
    """A norm layer from a name (``"batchnorm"``/``"bn"``, ``"groupnorm"``: `group_norm`) or the callable itself;
    called as ``norm_layer(channels)``."""
    return _lookup(norm_layer, _NORMS, "norm_layer")


def get_act_layer(act_layer: str | LayerFactory) -> LayerFactory:
    """An activation class from a name (``"relu"``) or the callable itself; called with no arguments."""
    return _lookup(act_layer, _ACTS, "act_layer")


def create_act_layer(act_layer: str | LayerFactory, *, inplace: bool = False) -> nn.Module:
    """An activation module from a name or callable; `inplace` is passed only to classes that take it (ReLU)."""
    act = get_act_layer(act_layer)
    takes_inplace = isinstance(act, type) and "inplace" in inspect.signature(act).parameters
    return act(inplace=True) if inplace and takes_inplace else act()


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> norm -> activation; ``act_layer=None`` leaves the activation out.

    Shape: [B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride] (padding keeps "same" size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm_layer: str | LayerFactory = "batchnorm",
        act_layer: str | LayerFactory | None = "relu",
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=False),
            get_norm_layer(norm_layer)(out_channels),
        ]
        if act_layer is not None:
            layers.append(get_act_layer(act_layer)())
        super().__init__(*layers)
