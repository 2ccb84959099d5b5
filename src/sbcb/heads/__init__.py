"""Semantic boundary detection (SBD) heads: CASENet, DFF, DDS, generalized to any N >= 2 sides.

Every head is built from the sides' channels (last = semantic side) and K, and maps a list of side features to a
dict of logits at an explicit output size. BBCB (binary boundaries) is any head with ``num_classes=1``.

Every head is an `SBDHead` (`sbcb.heads.base`: argument checks, `config`, side layers). Python users construct the
classes directly; `build_head` exists for strings coming from the CLI, YAML or a checkpoint
(``build_head(head.name, **head.config)`` rebuilds a head).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from sbcb.heads.base import SBDHead
from sbcb.heads.casenet import CASENetHead
from sbcb.heads.dds import DDSHead
from sbcb.heads.dff import AdaptiveWeightLearner, DFFHead
from sbcb.heads.side_layers import BasicBlock, OriginalSideLayer, SideBlock, SideLayer

# name -> head class; the names are the CLI / config strings.
HEADS: dict[str, Callable[..., nn.Module]] = {
    "casenet": CASENetHead,
    "dff": DFFHead,
    "dds": DDSHead,
}


def list_heads() -> list[str]:
    """Names accepted by `build_head`, sorted."""
    return sorted(HEADS)


def build_head(name: str, in_channels: Sequence[int], num_classes: int, **options: Any) -> nn.Module:
    """Build a head from its registry name.

    Args:
        name: ``"casenet"``, ``"dff"`` or ``"dds"``.
        in_channels: Channels of the N sides, last = semantic side.
        num_classes: K (1 for a BBCB head).
        **options: Keyword options of the head class; ``None`` values are dropped so unset CLI flags keep the
            class defaults.

    Raises:
        ValueError: If `name` is unknown.
    """
    if name not in HEADS:
        raise ValueError(f"unknown SBD head {name!r}; choose one of {list_heads()}")
    options = {key: value for key, value in options.items() if value is not None}
    return HEADS[name](in_channels, num_classes, **options)


__all__ = [
    "HEADS",
    "AdaptiveWeightLearner",
    "BasicBlock",
    "CASENetHead",
    "DDSHead",
    "DFFHead",
    "OriginalSideLayer",
    "SBDHead",
    "SideBlock",
    "SideLayer",
    "build_head",
    "list_heads",
]
